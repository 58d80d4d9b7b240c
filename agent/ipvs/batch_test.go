package ipvs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// sentBatch is one send of a batch, split into its messages.
type sentBatch []syscall.NetlinkMessage

// batchKernel is a Kernel whose batches go to refuse instead of a socket: refuse returns the
// kernel's error code for a message (0: done), as ip_vs_genl_set_cmd would.
func batchKernel(t *testing.T, refuse func(m syscall.NetlinkMessage) syscall.Errno) (*Kernel, *[]sentBatch) {
	var sends []sentBatch
	k := &Kernel{family: 30}
	k.sendBatch = func(buf []byte, last uint32) (map[uint32]syscall.Errno, error) {
		msgs, err := syscall.ParseNetlinkMessage(buf)
		if err != nil {
			t.Fatalf("the batch does not parse as netlink messages: %v", err)
		}
		sends = append(sends, msgs)
		replies := map[uint32]syscall.Errno{}
		for _, m := range msgs {
			code := refuse(m)
			// The kernel replies to a failed request, and to one that asks for an ack.
			if code != 0 || m.Header.Flags&unix.NLM_F_ACK != 0 {
				replies[m.Header.Seq] = code
			}
		}
		if _, ok := replies[last]; !ok {
			t.Errorf("the last sequence number %d got no reply: it did not ask for an ack", last)
		}
		return replies, nil
	}
	return k, &sends
}

var (
	batchSvc  = dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 24}
	batchDest = dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 100, Forward: dataplane.ForwardRoute}
)

// TestBatchRequests checks the bytes of each request against struct nlattr built by hand, as
// the kernel's ip_vs_genl_parse_service and ip_vs_genl_parse_dest read them.
func TestBatchRequests(t *testing.T) {
	svcAttr := nla{typ: cmdAttrService, kids: []nla{
		{typ: svcAttrAF, value: n16(syscall.AF_INET)},
		{typ: svcAttrFWMark, value: n32(16)},
		{typ: svcAttrSchedName, value: []byte("wlc\x00")},
		{typ: svcAttrFlags, value: append(n32(svcFlagPersistent), n32(^uint32(0))...)},
		{typ: svcAttrTimeout, value: n32(600)},
		{typ: svcAttrNetmask, value: b32(0xffffff00)}, // network order, as ipvsadm sends it
	}}
	destAttr := nla{typ: cmdAttrDest, kids: []nla{
		{typ: destAttrAddr, value: netip.MustParseAddr("198.51.100.1").AsSlice()},
		{typ: destAttrPort, value: b16(0)},
		{typ: destAttrFwdMethod, value: n32(connFwdRoute)},
		{typ: destAttrWeight, value: n32(100)},
		{typ: destAttrUThresh, value: n32(0)},
		{typ: destAttrLThresh, value: n32(0)},
	}}
	ops := []dataplane.Op{
		{Kind: dataplane.AddService, Service: batchSvc},
		{Kind: dataplane.UpdateService, Service: batchSvc},
		{Kind: dataplane.AddDestination, Service: batchSvc, Dest: batchDest},
		{Kind: dataplane.UpdateDestination, Service: batchSvc, Dest: batchDest},
		{Kind: dataplane.DelDestination, Service: batchSvc, Dest: batchDest},
		{Kind: dataplane.DelService, Service: batchSvc},
	}
	want := [][]byte{
		message(cmdNewService, svcAttr),
		message(cmdSetService, svcAttr),
		append(message(cmdNewDest, svcAttr), destAttr.bytes()...),
		append(message(cmdSetDest, svcAttr), destAttr.bytes()...),
		append(message(cmdDelDest, svcAttr), destAttr.bytes()...),
		message(cmdDelService, svcAttr),
	}
	k, sends := batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return 0 })
	for i, err := range k.Batch(ops) {
		if err != nil {
			t.Errorf("op %d (%s): %v", i, ops[i].Kind, err)
		}
	}
	if len(*sends) != 1 {
		t.Fatalf("%d sends, want 1", len(*sends))
	}
	msgs := (*sends)[0]
	if len(msgs) != len(want) {
		t.Fatalf("%d messages in the send, want %d", len(msgs), len(want))
	}
	seen := map[uint32]bool{}
	for i, m := range msgs {
		if m.Header.Type != 30 {
			t.Errorf("message %d: type %d, want the IPVS family 30", i, m.Header.Type)
		}
		wantFlags := uint16(unix.NLM_F_REQUEST)
		if i == len(msgs)-1 {
			wantFlags |= unix.NLM_F_ACK // only the last asks for an ack: errors come back anyway
		}
		if m.Header.Flags != wantFlags {
			t.Errorf("message %d: flags %#x, want %#x", i, m.Header.Flags, wantFlags)
		}
		if seen[m.Header.Seq] {
			t.Errorf("message %d: sequence number %d used twice", i, m.Header.Seq)
		}
		seen[m.Header.Seq] = true
		if !bytes.Equal(m.Data, want[i]) {
			t.Errorf("message %d (%s):\n got %x\nwant %x", i, ops[i].Kind, m.Data, want[i])
		}
	}
}

// TestBatchErrors: each refusal goes to its own op, mapped as the single calls map it; a send
// that fails fails its ops only; an op refused before sending is not sent.
func TestBatchErrors(t *testing.T) {
	var ops []dataplane.Op
	for i := range 600 {
		d := batchDest
		d.Address = netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 250)})
		d.Port = uint16(i)
		ops = append(ops, dataplane.Op{Kind: dataplane.AddDestination, Service: batchSvc, Dest: d})
	}
	ops[3].Kind = dataplane.AddService // already there
	ops[7].Dest.Weight = 1 << 31       // refused before sending
	ops[300].Service.FWMark = 99       // no such service
	ops[599].Kind = dataplane.DelDestination
	k, sends := batchKernel(t, func(m syscall.NetlinkMessage) syscall.Errno {
		var inner attrSet
		if err := inner.payload(m.Data, cmdAttrService); err != nil {
			t.Fatal(err)
		}
		mark, _ := inner.get(svcAttrFWMark)
		switch {
		case m.Data[0] == cmdNewService:
			return unix.EEXIST
		case len(mark) == 4 && binary.NativeEndian.Uint32(mark) == 99:
			return unix.ESRCH
		case m.Data[0] == cmdDelDest:
			return unix.ENOENT
		}
		return 0
	})
	errs := k.Batch(ops)
	if len(errs) != len(ops) {
		t.Fatalf("%d errors for %d ops", len(errs), len(ops))
	}
	for i, err := range errs {
		switch i {
		case 3:
			if !errors.Is(err, dataplane.ErrExist) {
				t.Errorf("op 3: %v, want ErrExist", err)
			}
		case 7:
			if err == nil {
				t.Error("op 7 (weight 2^31): no error")
			}
		case 300, 599:
			if !errors.Is(err, dataplane.ErrNotExist) {
				t.Errorf("op %d: %v, want ErrNotExist", i, err)
			}
		default:
			if err != nil {
				t.Errorf("op %d: %v", i, err)
			}
		}
	}
	var sizes []int
	for _, s := range *sends {
		sizes = append(sizes, len(s))
	}
	if got, want := fmt.Sprint(sizes), fmt.Sprint([]int{batchMax, batchMax, 599 - 2*batchMax}); got != want {
		t.Errorf("messages per send %s, want %s (op 7 not sent)", got, want)
	}

	// A send that fails: its ops fail with it, the others are made.
	k, _ = batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return 0 })
	inner := k.sendBatch
	calls := 0
	k.sendBatch = func(buf []byte, last uint32) (map[uint32]syscall.Errno, error) {
		if calls++; calls == 2 {
			return nil, unix.ENOBUFS
		}
		return inner(buf, last)
	}
	ops[3].Kind, ops[7].Dest.Weight, ops[300].Service.FWMark, ops[599].Kind = dataplane.AddDestination, 1, 16, dataplane.AddDestination
	for i, err := range k.Batch(ops) {
		if inSecond := i >= batchMax && i < 2*batchMax; inSecond != errors.Is(err, unix.ENOBUFS) {
			t.Errorf("op %d: %v; want ENOBUFS only in the second send", i, err)
			break
		}
	}
}

// TestBatchOutcomeUnknown sends batches to the host's generic-netlink controller (every Linux
// has it, and no privilege is needed): a send the kernel refuses made nothing, and is a plain
// error; a send that went through but whose replies could not be read (here a receive timeout,
// the replies going to a port the socket does not take for its own) may have made its
// requests, and is dataplane.ErrOutcomeUnknown.
func TestBatchOutcomeUnknown(t *testing.T) {
	c, err := openConn(netns.None())
	if err != nil {
		t.Fatalf("openConn: %v", err)
	}
	defer c.close()
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	k := &Kernel{conn: c}
	request := func(seq uint32) []byte {
		req := appendRequest(nil, unix.GENL_ID_CTRL, unix.NLM_F_ACK, unix.CTRL_CMD_GETFAMILY, 1)
		req = finishRequest(appendAttr(req, unix.CTRL_ATTR_FAMILY_NAME, []byte("nlctrl\x00")))
		binary.NativeEndian.PutUint32(req[8:], seq)
		return req
	}

	replies, err := k.sendBatchOnSocket(request(1), 1)
	if err != nil || replies[1] != 0 {
		t.Fatalf("batch answered: replies %v, error %v; want the ack", replies, err)
	}

	// Larger than the socket's send buffer: the kernel refuses the send, so nothing was made.
	var big []byte
	for len(big) < 4<<20 {
		big = append(big, request(2)...)
	}
	if _, err := k.sendBatchOnSocket(big, 2); err == nil || errors.Is(err, dataplane.ErrOutcomeUnknown) {
		t.Errorf("refused send: %v; want an error that is not ErrOutcomeUnknown", err)
	}

	c.pid++ // the kernel's answers now look like someone else's
	_, err = k.sendBatchOnSocket(request(3), 3)
	if !errors.Is(err, dataplane.ErrOutcomeUnknown) || !errors.Is(err, unix.EAGAIN) {
		t.Errorf("sent, answer not received: %v; want ErrOutcomeUnknown wrapping EAGAIN", err)
	}
}

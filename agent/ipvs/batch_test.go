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
		{typ: destAttrTunType, value: []byte{0}},
		{typ: destAttrTunPort, value: b16(0)},
		{typ: destAttrTunFlags, value: n16(0)},
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

// TestBatchRequestsPlain checks a plain service's request bytes: the key is the protocol (u16),
// the address (4 bytes for IPv4, 16 for IPv6) and the port (network order) instead of a
// fwmark; the flags go with a full mask, so an edit clears a flag the cluster dropped; the
// destination carries its own port and thresholds.
func TestBatchRequestsPlain(t *testing.T) {
	tests := []struct {
		name string
		svc  dataplane.Service
		dest dataplane.Destination
		key  []nla
		rest []nla // scheduler, flags, timeout, netmask
		dst  []nla
	}{{
		name: "tcp 192.0.2.20:80, sh with sh-fallback and sh-port, masq to :8080 with thresholds",
		svc: dataplane.Service{
			ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80},
			Scheduler:  "sh", NetmaskBits: 32, Flags: dataplane.FlagSched1 | dataplane.FlagSched2,
		},
		dest: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.5"), Port: 8080, Weight: 3, Forward: dataplane.ForwardMasq, UpperThreshold: 500, LowerThreshold: 400},
		key: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET)},
			{typ: svcAttrProtocol, value: n16(syscall.IPPROTO_TCP)},
			{typ: svcAttrAddr, value: []byte{192, 0, 2, 20}},
			{typ: svcAttrPort, value: b16(80)},
		},
		rest: []nla{
			{typ: svcAttrSchedName, value: []byte("sh\x00")},
			{typ: svcAttrFlags, value: append(n32(0x8|0x10), n32(^uint32(0))...)}, // IP_VS_SVC_F_SCHED1|SCHED2, mask
			{typ: svcAttrTimeout, value: n32(0)},
			{typ: svcAttrNetmask, value: b32(0xffffffff)},
		},
		dst: []nla{
			{typ: destAttrAddr, value: []byte{198, 51, 100, 5}},
			{typ: destAttrPort, value: b16(8080)},
			{typ: destAttrFwdMethod, value: n32(connFwdMasq)},
			{typ: destAttrWeight, value: n32(3)},
			{typ: destAttrUThresh, value: n32(500)},
			{typ: destAttrLThresh, value: n32(400)},
			{typ: destAttrTunType, value: []byte{0}},
			{typ: destAttrTunPort, value: b16(0)},
			{typ: destAttrTunFlags, value: n16(0)},
		},
	}, {
		name: "udp [2001:db8::1]:53 with one-packet scheduling, persistent",
		svc: dataplane.Service{
			ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: netip.MustParseAddr("2001:db8::1"), Port: 53},
			Scheduler:  "rr", Timeout: 30, NetmaskBits: 64, Flags: dataplane.FlagOnePacket,
		},
		dest: dataplane.Destination{Address: netip.MustParseAddr("2001:db8:1::5"), Port: 53, Weight: 1, Forward: dataplane.ForwardRoute},
		key: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET6)},
			{typ: svcAttrProtocol, value: n16(syscall.IPPROTO_UDP)},
			{typ: svcAttrAddr, value: netip.MustParseAddr("2001:db8::1").AsSlice()},
			{typ: svcAttrPort, value: b16(53)},
		},
		rest: []nla{
			{typ: svcAttrSchedName, value: []byte("rr\x00")},
			{typ: svcAttrFlags, value: append(n32(svcFlagPersistent|0x4), n32(^uint32(0))...)}, // PERSISTENT|ONEPACKET
			{typ: svcAttrTimeout, value: n32(30)},
			{typ: svcAttrNetmask, value: n32(64)},
		},
		dst: []nla{
			{typ: destAttrAddr, value: netip.MustParseAddr("2001:db8:1::5").AsSlice()},
			{typ: destAttrPort, value: b16(53)},
			{typ: destAttrFwdMethod, value: n32(connFwdRoute)},
			{typ: destAttrWeight, value: n32(1)},
			{typ: destAttrUThresh, value: n32(0)},
			{typ: destAttrLThresh, value: n32(0)},
			{typ: destAttrTunType, value: []byte{0}},
			{typ: destAttrTunPort, value: b16(0)},
			{typ: destAttrTunFlags, value: n16(0)},
		},
	}, {
		// ipvsadm -a -t 192.0.2.40:80 -r 198.51.100.7 -i --tun-type gue --tun-port 6080 --tun-remcsum
		name: "tcp 192.0.2.40:80, tunnel gue to port 6080 with remcsum",
		svc: dataplane.Service{
			ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.40"), Port: 80},
			Scheduler:  "wlc", NetmaskBits: 32,
		},
		dest: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.7"), Port: 80, Weight: 1, Forward: dataplane.ForwardTunnel,
			Tunnel: dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 6080, Flags: dataplane.TunnelRemCsum}},
		key: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET)},
			{typ: svcAttrProtocol, value: n16(syscall.IPPROTO_TCP)},
			{typ: svcAttrAddr, value: []byte{192, 0, 2, 40}},
			{typ: svcAttrPort, value: b16(80)},
		},
		rest: []nla{
			{typ: svcAttrSchedName, value: []byte("wlc\x00")},
			{typ: svcAttrFlags, value: append(n32(0), n32(^uint32(0))...)},
			{typ: svcAttrTimeout, value: n32(0)},
			{typ: svcAttrNetmask, value: b32(0xffffffff)},
		},
		dst: []nla{
			{typ: destAttrAddr, value: []byte{198, 51, 100, 7}},
			{typ: destAttrPort, value: b16(80)},
			{typ: destAttrFwdMethod, value: n32(connFwdTunnel)},
			{typ: destAttrWeight, value: n32(1)},
			{typ: destAttrUThresh, value: n32(0)},
			{typ: destAttrLThresh, value: n32(0)},
			{typ: destAttrTunType, value: []byte{1}},    // IP_VS_CONN_F_TUNNEL_TYPE_GUE
			{typ: destAttrTunPort, value: b16(6080)},    // network order
			{typ: destAttrTunFlags, value: n16(1 << 1)}, // IP_VS_TUNNEL_ENCAP_FLAG_REMCSUM
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcAttr := nla{typ: cmdAttrService, kids: append(append([]nla{}, tt.key...), tt.rest...)}
			destAttr := nla{typ: cmdAttrDest, kids: tt.dst}
			ops := []dataplane.Op{
				{Kind: dataplane.AddService, Service: tt.svc},
				{Kind: dataplane.UpdateService, Service: tt.svc},
				{Kind: dataplane.AddDestination, Service: tt.svc, Dest: tt.dest},
				{Kind: dataplane.UpdateDestination, Service: tt.svc, Dest: tt.dest},
			}
			want := [][]byte{
				message(cmdNewService, svcAttr),
				message(cmdSetService, svcAttr),
				append(message(cmdNewDest, svcAttr), destAttr.bytes()...),
				append(message(cmdSetDest, svcAttr), destAttr.bytes()...),
			}
			k, sends := batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return 0 })
			for i, err := range k.Batch(ops) {
				if err != nil {
					t.Errorf("op %d (%s): %v", i, ops[i].Kind, err)
				}
			}
			if len(*sends) != 1 || len((*sends)[0]) != len(want) {
				t.Fatalf("sends %v, want one of %d messages", *sends, len(want))
			}
			for i, m := range (*sends)[0] {
				if !bytes.Equal(m.Data, want[i]) {
					t.Errorf("message %d (%s):\n got %x\nwant %x", i, ops[i].Kind, m.Data, want[i])
				}
			}
			// A read of the same service by key (GET_SERVICE, GET_DEST) names it the same way.
			if got, want := appendServiceKey(nil, tt.svc.ServiceKey), (nla{typ: cmdAttrService, kids: tt.key}).bytes(); !bytes.Equal(got, want) {
				t.Errorf("appendServiceKey:\n got %x\nwant %x", got, want)
			}
		})
	}
}

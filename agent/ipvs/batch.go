package ipvs

import (
	"encoding/binary"
	"fmt"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// IPVS generic-netlink commands that change the table (<linux/ip_vs.h>).
const (
	cmdNewService = 1
	cmdSetService = 2
	cmdDelService = 3
	cmdNewDest    = 5
	cmdSetDest    = 6
	cmdDelDest    = 7
)

// A batch goes to the kernel in sends of at most batchMax requests and batchBytes bytes. The
// kernel handles every request of a send, in order, before the send returns, and queues a reply
// only for a failed request and for the last one (the only one that asks for an ack): the
// socket's receive buffer must hold batchMax error replies, a small skb each (about 1 KiB of
// buffer accounting), which recvBuffer does with room to spare. 256 requests a send turn the
// 110,000 changes of a cold start of 10,000 services into about 430 sends instead of 110,000.
const (
	batchMax   = 256
	batchBytes = 64 << 10
	recvBuffer = 4 << 20
)

// nlmsgHeaderLen is sizeof(struct nlmsghdr).
const nlmsgHeaderLen = 16

// tuneSocket prepares the socket for batches: error replies without a copy of the request
// (NETLINK_CAP_ACK), and a receive buffer for a send's worth of them. Best effort: a kernel
// that refuses either still answers every request, just with bigger replies.
func tuneSocket(fd int) {
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, recvBuffer) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, recvBuffer)
	}
}

// sendBatchOnSocket sends buf (whole netlink messages, the last asking for an ack with sequence
// number last) in one send, and returns the kernel's error code for each sequence number it
// answered with one (0 for the acked last request).
func (k *Kernel) sendBatchOnSocket(buf []byte, last uint32) (map[uint32]syscall.Errno, error) {
	if err := k.conn.send(buf); err != nil {
		return nil, err
	}
	replies := map[uint32]syscall.Errno{}
	for {
		// ENOBUFS from receive: replies were dropped, so which requests failed is unknown.
		done, err := k.conn.receive(func(h *nlmsgHeader, p []byte) bool {
			if h.typ != unix.NLMSG_ERROR || len(p) < 4 || h.pid != k.conn.pid {
				return false
			}
			replies[h.seq] = syscall.Errno(-int32(binary.NativeEndian.Uint32(p[:4])))
			return h.seq == last
		})
		if err != nil {
			// The send went through, so the kernel handled every request: which it made is lost.
			return nil, fmt.Errorf("%w: %w", dataplane.ErrOutcomeUnknown, err)
		}
		if done {
			return replies, nil
		}
	}
}

// Batch makes the changes in order, many requests to a send, and returns one error per op
// (nil: made). Each request stands on its own, as with the single calls: the kernel goes on
// after a refused one. An op the kernel would refuse for its form is refused here and not sent.
func (k *Kernel) Batch(ops []dataplane.Op) []error {
	errs := make([]error, len(ops))
	type request struct {
		op  int
		msg []byte
	}
	reqs := make([]request, 0, len(ops))
	for i, op := range ops {
		msg, err := k.encode(op)
		if err != nil {
			errs[i] = err
			continue
		}
		reqs = append(reqs, request{op: i, msg: msg})
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for len(reqs) > 0 {
		n, size := 0, 0
		for n < len(reqs) && n < batchMax && (n == 0 || size+len(reqs[n].msg) <= batchBytes) {
			size += len(reqs[n].msg)
			n++
		}
		chunk := reqs[:n]
		reqs = reqs[n:]
		buf := make([]byte, 0, size)
		seqs := make([]uint32, n)
		for i, r := range chunk {
			k.seq++
			seqs[i] = k.seq
			binary.NativeEndian.PutUint32(r.msg[8:], k.seq)
			flags := uint16(unix.NLM_F_REQUEST)
			if i == n-1 {
				flags |= unix.NLM_F_ACK
			}
			binary.NativeEndian.PutUint16(r.msg[6:], flags)
			buf = append(buf, r.msg...)
		}
		replies, err := k.sendBatch(buf, seqs[n-1])
		for i, r := range chunk {
			switch code, answered := replies[seqs[i]]; {
			case err != nil:
				errs[r.op] = opError(ops[r.op], fmt.Errorf("batch of %d requests: %w", n, err))
			case answered && code != 0:
				errs[r.op] = opError(ops[r.op], code)
			}
		}
	}
	return errs
}

// opError maps the kernel's refusal of an op as the single calls do.
func opError(op dataplane.Op, err error) error {
	key := op.Service.ServiceKey
	switch op.Kind {
	case dataplane.AddService:
		return serviceError("add", key, err)
	case dataplane.UpdateService:
		return serviceError("update", key, err)
	case dataplane.DelService:
		return serviceError("delete", key, err)
	case dataplane.AddDestination:
		return destinationError("add", key, op.Dest, err)
	case dataplane.UpdateDestination:
		return destinationError("update", key, op.Dest, err)
	}
	return destinationError("delete", key, op.Dest, err)
}

// encode makes the netlink message of one op, as moby/ipvs builds it for the single call:
// the whole service (the kernel needs scheduler, flags, timeout and netmask to create or edit
// one), and for a destination its address, port, forwarding method, weight and thresholds. The
// sequence number and flags are set when it is sent.
func (k *Kernel) encode(op dataplane.Op) ([]byte, error) {
	s := op.Service
	var cmd uint8
	verb := map[dataplane.OpKind]string{
		dataplane.AddService: "add", dataplane.UpdateService: "update", dataplane.DelService: "delete",
		dataplane.AddDestination: "add", dataplane.UpdateDestination: "update", dataplane.DelDestination: "delete",
	}[op.Kind]
	switch op.Kind {
	case dataplane.AddService, dataplane.UpdateService:
		if err := validateService(s); err != nil {
			return nil, fmt.Errorf("ipvs: %s service %s: %w", verb, s.ServiceKey, err)
		}
		cmd = cmdNewService
		if op.Kind == dataplane.UpdateService {
			cmd = cmdSetService
		}
	case dataplane.DelService:
		cmd = cmdDelService
	case dataplane.AddDestination, dataplane.UpdateDestination, dataplane.DelDestination:
		cmd = map[dataplane.OpKind]uint8{dataplane.AddDestination: cmdNewDest, dataplane.UpdateDestination: cmdSetDest, dataplane.DelDestination: cmdDelDest}[op.Kind]
	default:
		return nil, fmt.Errorf("ipvs: %s: not an IPVS change: %w", op.Kind, syscall.EINVAL)
	}
	m := toMobyService(s)
	svc := nl.NewRtAttr(cmdAttrService, nil)
	svc.AddRtAttr(svcAttrAF, nl.Uint16Attr(m.AddressFamily))
	if s.IsFWMark() {
		svc.AddRtAttr(svcAttrFWMark, nl.Uint32Attr(m.FWMark))
	} else {
		svc.AddRtAttr(svcAttrProtocol, nl.Uint16Attr(m.Protocol))
		svc.AddRtAttr(svcAttrAddr, s.Address.Unmap().AsSlice())
		svc.AddRtAttr(svcAttrPort, binary.BigEndian.AppendUint16(nil, m.Port)) // network order
	}
	svc.AddRtAttr(svcAttrSchedName, nl.ZeroTerminated(m.SchedName))
	flags := binary.NativeEndian.AppendUint32(nil, m.Flags)
	flags = binary.NativeEndian.AppendUint32(flags, 0xFFFFFFFF) // struct ip_vs_flags: flags, mask
	svc.AddRtAttr(svcAttrFlags, flags)
	svc.AddRtAttr(svcAttrTimeout, nl.Uint32Attr(m.Timeout))
	svc.AddRtAttr(svcAttrNetmask, nl.Uint32Attr(m.Netmask))
	body := append([]byte{cmd, genlVersion, 0, 0}, svc.Serialize()...)
	if cmd >= cmdNewDest {
		md, err := toMobyDestination(op.Dest)
		if err != nil {
			return nil, fmt.Errorf("ipvs: %s destination %s of %s: %w", verb, op.Dest.Address, s.ServiceKey, err)
		}
		dest := nl.NewRtAttr(cmdAttrDest, nil)
		addr := op.Dest.Address.Unmap().AsSlice()
		dest.AddRtAttr(destAttrAddr, addr)
		dest.AddRtAttr(destAttrPort, binary.BigEndian.AppendUint16(nil, md.Port))
		dest.AddRtAttr(destAttrFwdMethod, nl.Uint32Attr(md.ConnectionFlags&connFwdMask))
		dest.AddRtAttr(destAttrWeight, nl.Uint32Attr(uint32(md.Weight)))
		dest.AddRtAttr(destAttrUThresh, nl.Uint32Attr(md.UpperThreshold))
		dest.AddRtAttr(destAttrLThresh, nl.Uint32Attr(md.LowerThreshold))
		body = append(body, dest.Serialize()...)
	}
	msg := make([]byte, nlmsgHeaderLen, nlmsgHeaderLen+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(nlmsgHeaderLen+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], k.family)
	return append(msg, body...), nil
}

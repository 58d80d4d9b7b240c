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
	msg := appendRequest(nil, k.family, 0, cmd, genlVersion)
	start := len(msg)
	msg = appendAttr(msg, cmdAttrService, nil)
	msg = appendKeyAttrs(msg, s.ServiceKey)
	msg = appendAttr(msg, svcAttrSchedName, nl.ZeroTerminated(m.SchedName))
	flags := binary.NativeEndian.AppendUint32(nil, m.Flags)
	flags = binary.NativeEndian.AppendUint32(flags, 0xFFFFFFFF) // struct ip_vs_flags: flags, mask
	msg = appendAttr(msg, svcAttrFlags, flags)
	msg = appendAttr(msg, svcAttrTimeout, binary.NativeEndian.AppendUint32(nil, m.Timeout))
	msg = appendAttr(msg, svcAttrNetmask, binary.NativeEndian.AppendUint32(nil, m.Netmask))
	binary.NativeEndian.PutUint16(msg[start:], uint16(len(msg)-start))
	if cmd >= cmdNewDest {
		md, err := toMobyDestination(op.Dest)
		if err == nil && cmd != cmdDelDest {
			// Not on delete: a destination made by hand with a tunnel lvsctl would not
			// make (flags on ipip, a newer type) must still be removable.
			err = k.checkTunnel(op.Dest)
		}
		if err != nil {
			return nil, fmt.Errorf("ipvs: %s destination %s of %s: %w", verb, op.Dest.Address, s.ServiceKey, err)
		}
		start := len(msg)
		msg = appendAttr(msg, cmdAttrDest, nil)
		msg = appendAttr(msg, destAttrAddr, op.Dest.Address.Unmap().AsSlice())
		msg = appendAttr(msg, destAttrPort, binary.BigEndian.AppendUint16(nil, md.Port)) // network order
		msg = appendAttr(msg, destAttrFwdMethod, binary.NativeEndian.AppendUint32(nil, md.ConnectionFlags&connFwdMask))
		msg = appendAttr(msg, destAttrWeight, binary.NativeEndian.AppendUint32(nil, uint32(md.Weight)))
		msg = appendAttr(msg, destAttrUThresh, binary.NativeEndian.AppendUint32(nil, md.UpperThreshold))
		msg = appendAttr(msg, destAttrLThresh, binary.NativeEndian.AppendUint32(nil, md.LowerThreshold))
		msg = appendTunnelAttrs(msg, op.Dest.Tunnel)
		binary.NativeEndian.PutUint16(msg[start:], uint16(len(msg)-start))
	}
	return finishRequest(msg), nil
}

// checkTunnel refuses, before sending, a tunnel the kernel would refuse (gue without a port:
// EINVAL) or would take and not use: tunnel settings on a masq or route destination, a
// type it does not know, a port on ipip or gre, flags that are not one checksum option. A
// kernel older than the type (gue 5.3, gre 5.8) would take it silently and send ipip (5.3
// to 5.7 store gre as a number they do not use, older ones ignore the attributes): such a
// tunnel is refused as dataplane.ErrUnavailable, naming the version it needs.
func (k *Kernel) checkTunnel(d dataplane.Destination) error {
	t := d.Tunnel
	switch {
	case t == dataplane.Tunnel{}:
		return nil
	case d.Forward != dataplane.ForwardTunnel:
		return fmt.Errorf("tunnel: %s on a %s destination (tunnel forwarding only)", t, d.Forward)
	case t.Type > dataplane.TunnelGRE:
		return fmt.Errorf("tunnel: type %d is not ipip, gue or gre", uint8(t.Type))
	case t.Type == dataplane.TunnelGUE && t.Port == 0:
		return fmt.Errorf("tunnel: gue needs a port: %w", syscall.EINVAL)
	case t.Type != dataplane.TunnelGUE && t.Port != 0:
		return fmt.Errorf("tunnel: port %d on %s (gue only)", t.Port, t.Type)
	case t.Flags != 0 && t.Flags != dataplane.TunnelCsum && t.Flags != dataplane.TunnelRemCsum:
		return fmt.Errorf("tunnel: flags %#x are not one of csum, remcsum", uint16(t.Flags))
	case t.Flags != 0 && t.Type == dataplane.TunnelIPIP, t.Flags == dataplane.TunnelRemCsum && t.Type == dataplane.TunnelGRE:
		return fmt.Errorf("tunnel: %s: %s has no such checksum option", t, t.Type)
	}
	need := map[dataplane.TunnelType]release{dataplane.TunnelGUE: {5, 3}, dataplane.TunnelGRE: {5, 8}}[t.Type]
	if k.release.known() && k.release.before(need) {
		return fmt.Errorf("tunnel: %s needs Linux %d.%d or later, this kernel is %d.%d: %w",
			t.Type, need.major, need.minor, k.release.major, k.release.minor, dataplane.ErrUnavailable)
	}
	return nil
}

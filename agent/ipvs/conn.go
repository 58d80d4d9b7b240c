package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// conn is the Kernel's own generic-netlink socket, for the reads and the batches. It is a plain
// blocking socket with one receive buffer kept for its life, read in place: vishvananda/netlink's
// receive path zeroes and copies a fresh 64 KiB buffer and sets a poller deadline on every
// receive, and a full read of 2,000 services is 4,000 receives (measured in the lab's emulated
// kernel: that path and the per-message attribute maps made the read twice as slow as
// `ipvsadm -Sn`). Not safe for concurrent use: the Kernel's mutex serialises it.
type conn struct {
	fd  int
	pid uint32 // the socket's port id, which the kernel's replies carry
	buf []byte // every receive lands here; replies are decoded before the next one
}

// recvSize holds any one netlink datagram the kernel sends here: a dump's skb is at most
// 32 KiB (netlink_dump caps it there), and the other replies are single messages.
const recvSize = 64 << 10

// errDumpInterrupted: the kernel says the table changed during the dump, so what it listed
// may be inconsistent.
var errDumpInterrupted = errors.New("dump interrupted by a change; read again")

// openConn opens a generic-netlink socket in the network namespace ns (netns.None(): the
// caller's). The kernel's timeouts (SO_RCVTIMEO, SO_SNDTIMEO) bound every send and receive,
// so a wedged kernel call fails instead of hanging the reconciler; they are set once, not per
// call.
func openConn(ns netns.NsHandle) (*conn, error) {
	fd, err := socketAt(ns)
	if err != nil {
		return nil, err
	}
	c := &conn{fd: fd, buf: make([]byte, recvSize)}
	tv := unix.NsecToTimeval(socketTimeout.Nanoseconds())
	err = errors.Join(
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv),
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv),
		unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}),
	)
	if err == nil {
		var sa unix.Sockaddr
		if sa, err = unix.Getsockname(fd); err == nil {
			nsa, ok := sa.(*unix.SockaddrNetlink)
			if !ok {
				err = fmt.Errorf("the socket's address is a %T, not netlink", sa)
			} else {
				c.pid = nsa.Pid
			}
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set up generic netlink socket: %w", err)
	}
	tuneSocket(fd)
	return c, nil
}

// socketAt makes the socket in ns from a thread of its own: the thread enters ns and is never
// unlocked, so Go ends it with its goroutine and no other goroutine runs in ns by mistake.
func socketAt(ns netns.NsHandle) (int, error) {
	open := func() (int, error) {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
		if err != nil {
			return -1, fmt.Errorf("open generic netlink socket: %w", err)
		}
		return fd, nil
	}
	if !ns.IsOpen() {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- result{-1, fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		fd, err := open()
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

func (c *conn) close() { unix.Close(c.fd) }

// send writes whole netlink messages to the kernel in one datagram.
func (c *conn) send(msgs []byte) error {
	if err := unix.Sendto(c.fd, msgs, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// receive reads one datagram from the kernel and calls each with every message in it: its
// header and payload (which alias the receive buffer). Datagrams from other sockets, which
// anyone may send to our port id, are dropped unread.
func (c *conn) receive(each func(h *nlmsgHeader, payload []byte) bool) (stop bool, err error) {
	for {
		// MSG_TRUNC: the datagram's whole length, so a truncated one is seen, not half-read.
		n, from, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_TRUNC)
		if err != nil {
			// EAGAIN: SO_RCVTIMEO ran out. ENOBUFS: the kernel dropped replies.
			return false, fmt.Errorf("receive: %w", err)
		}
		if n > len(c.buf) {
			return false, fmt.Errorf("receive: a datagram of %d bytes exceeds the %d-byte buffer", n, len(c.buf))
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		b := c.buf[:n]
		for len(b) >= nlmsgHeaderLen {
			h := nlmsgHeader{
				len:   binary.NativeEndian.Uint32(b[0:]),
				typ:   binary.NativeEndian.Uint16(b[4:]),
				flags: binary.NativeEndian.Uint16(b[6:]),
				seq:   binary.NativeEndian.Uint32(b[8:]),
				pid:   binary.NativeEndian.Uint32(b[12:]),
			}
			if h.len < nlmsgHeaderLen || int(h.len) > len(b) {
				return false, fmt.Errorf("receive: a message of %d bytes in %d", h.len, len(b))
			}
			if each(&h, b[nlmsgHeaderLen:h.len]) {
				return true, nil
			}
			b = b[min(len(b), align4(int(h.len))):]
		}
		return false, nil
	}
}

// nlmsgHeader is struct nlmsghdr, decoded.
type nlmsgHeader struct {
	len        uint32
	typ, flags uint16
	seq, pid   uint32
}

func align4(n int) int { return (n + 3) &^ 3 }

// exchange sends one request (a whole netlink message; its sequence number is set here to seq)
// and calls each with the payload of every reply, until the dump's NLMSG_DONE, the ack, or
// the one reply of a request that asked for neither. A refusal is returned as its
// syscall.Errno. After each fails the rest of the replies are still read, so that no dump is
// left running (the next would get EBUSY), and the first error is returned.
func (c *conn) exchange(req []byte, seq uint32, each func(payload []byte) error) error {
	binary.NativeEndian.PutUint32(req[8:], seq)
	flags := binary.NativeEndian.Uint16(req[6:])
	if err := c.send(req); err != nil {
		return err
	}
	var first error
	for {
		stop, err := c.receive(func(h *nlmsgHeader, p []byte) bool {
			// Replies to an earlier request, left by a timeout, and to other ports are not ours.
			if h.seq != seq || h.pid != c.pid {
				return false
			}
			if h.flags&unix.NLM_F_DUMP_INTR != 0 && first == nil {
				first = errDumpInterrupted
			}
			switch h.typ {
			case unix.NLMSG_DONE, unix.NLMSG_ERROR:
				if len(p) >= 4 {
					if code := -int32(binary.NativeEndian.Uint32(p)); code != 0 && first == nil {
						first = syscall.Errno(code)
					}
				}
				return true
			}
			if err := each(p); err != nil && first == nil {
				first = err
			}
			// A request without dump or ack gets one reply.
			return h.flags&unix.NLM_F_MULTI == 0 && flags&(unix.NLM_F_ACK|unix.NLM_F_DUMP) == 0
		})
		if err != nil {
			return err
		}
		if stop {
			return first
		}
	}
}

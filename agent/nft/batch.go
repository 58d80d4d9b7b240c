package nft

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// How a change of any size stays one transaction.
//
// The kernel commits an nftables batch only if the whole batch arrives in one sendmsg: begin,
// every message, end. google/nftables v0.3.0 encodes our objects well, but its Conn.Flush does
// not size anything, and some things it cannot say at all:
//   - sendmsg fails with EMSGSIZE once the batch exceeds the socket's send buffer (about 200
//     KiB by default; SO_SNDBUF is capped by net.core.wmem_max): we raise SO_SNDBUFFORCE to
//     the batch's size (we run as root: CAP_NET_ADMIN), falling back to SO_SNDBUF;
//   - Flush asks an ack for every message; the kernel queues them all before sendmsg returns,
//     and past the receive buffer it drops them, so the reader gets ENOBUFS although the batch
//     was committed (the v1 layout, one rule and so one ack per MarkRule, hit this at ~136
//     rules). We ask an ack for the last message alone: the kernel reports every failing
//     message and a failed commit before that ack, so the first reply that is an error means
//     the batch was aborted, and the ack means it was committed. The receive buffer is still
//     sized for an error per message; NETLINK_CAP_ACK keeps an error from echoing its message;
//   - SetAddElements puts all its elements in one message, but the elements' list is one
//     netlink attribute, whose length is 16 bits: elements are queued in chunks of
//     elementsPerMessage, each chunk its own message of the same batch;
//   - a map's data byte order goes in the map's user data (NFTNL_UDATA_SET_DATABYTEORDER), from
//     which nft learns that a mark is in host byte order; the library never writes it, and
//     `nft list` would show mark 16 as 0x10000000;
//   - an element add cannot carry NLM_F_EXCL, without which an add equal to an element already
//     there succeeds unseen.
//
// So the library encodes, and this file sends: a transaction's Conn dials through
// nftables.WithTestDial, whose function receives the encoded batch from Flush (the library's
// documented "single batch") and keeps it; commit then adjusts the flags and the maps' user
// data, and sends the batch on a socket of its own, sized to it.
const (
	// elementsPerMessage keeps a message's element list under the 64 KiB attribute limit:
	// an IPv6 element (24-byte key and key end, 4-byte mark, nested headers) takes 84 bytes.
	elementsPerMessage = 512
	// ackBytes bounds what one ack costs the receive buffer (the skb's truesize, with room
	// for an extended ack's message).
	ackBytes = 2 << 10
	// minBuffer: never shrink a socket buffer below the kernel's usual default.
	minBuffer = 256 << 10
)

// errCaptured stops the library's Flush once its batch is captured: nothing was sent.
var errCaptured = errors.New("batch captured")

// transaction is one nftables batch under construction.
type transaction struct {
	conn *nftables.Conn // encodes only: its "socket" is capture
	nsFd int            // the namespace to send the batch in, or -1
	// excl makes element additions fail on an element already there.
	excl  bool
	batch []netlink.Message // captured by Flush
}

// begin starts a transaction in the Firewall's namespace.
func (tx *transaction) begin(f *Firewall) error {
	conn, err := nftables.New(nftables.WithTestDial(tx.capture))
	if err != nil {
		return classify("open", err)
	}
	tx.conn, tx.nsFd = conn, f.nsFd
	return nil
}

// capture is the library's "netlink socket": it keeps the batch Flush sends.
func (tx *transaction) capture(reqs []netlink.Message) ([]netlink.Message, error) {
	if tx.batch == nil {
		tx.batch = reqs
	}
	return nil, errCaptured
}

// elements queues additions (add) or deletions of elems to set, elementsPerMessage to a
// message.
func (tx *transaction) elements(set *nftables.Set, elems []nftables.SetElement, add bool) error {
	for chunk := range slices.Chunk(elems, elementsPerMessage) {
		op, do := "delete", tx.conn.SetDeleteElements
		if add {
			op, do = "add", tx.conn.SetAddElements
		}
		if err := do(set, chunk); err != nil {
			return fmt.Errorf("nft: %s %d elements of map %s: %w", op, len(chunk), set.Name, err)
		}
	}
	return nil
}

// rules queues the additions (add) or deletions of the elements of rules, each to its map in
// sets.
func (tx *transaction) rules(sets map[*markMap]*nftables.Set, rules []dataplane.MarkRule, add bool) error {
	for _, m := range markMaps {
		var elems []nftables.SetElement
		for _, r := range rules {
			if mapOf(r) == m {
				elems = append(elems, element(r))
			}
		}
		if err := tx.elements(sets[m], elems, add); err != nil {
			return err
		}
	}
	return nil
}

// commit sends the batch and waits for the kernel's verdict. An element or map that does not
// exist gives an error wrapping dataplane.ErrNotExist; an element that is there already or
// clashes with another, dataplane.ErrExist.
func (tx *transaction) commit(what string) error {
	if err := tx.conn.Flush(); !errors.Is(err, errCaptured) {
		if err == nil {
			return nil // nothing queued
		}
		return fmt.Errorf("nft: %s: encode: %w", what, err)
	}
	err := tx.send()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("nft: %s: %w: %w", what, dataplane.ErrNotExist, err)
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("nft: %s: %w: %w", what, dataplane.ErrExist, err)
	}
	return classify(what, err)
}

// send sends the captured batch (begin, messages, end) in one sendmsg and reads the verdict.
func (tx *transaction) send() error {
	msgs := tx.batch
	if len(msgs) < 3 {
		return fmt.Errorf("captured batch of %d messages, want begin, a change and end", len(msgs))
	}
	last := len(msgs) - 2 // the last change; msgs[len-1] is the batch's end
	for i := range msgs {
		m := &msgs[i]
		// The real socket numbers them, and sizes them after the edits below.
		m.Header.Length, m.Header.Sequence, m.Header.PID = 0, 0, 0
		m.Header.Flags &^= netlink.Acknowledge
		switch m.Header.Type & 0xff {
		case unix.NFT_MSG_NEWSET:
			if err := setDataByteOrder(m); err != nil {
				return err
			}
		case unix.NFT_MSG_NEWSETELEM:
			if tx.excl {
				m.Header.Flags |= netlink.Excl
			}
		}
	}
	msgs[last].Header.Flags |= netlink.Acknowledge

	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: max(tx.nsFd, 0)})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := tx.sizeSocket(conn, msgs); err != nil {
		return err
	}
	sent, err := conn.SendMessages(msgs)
	if err != nil {
		return err
	}
	// The kernel handles the batch inside sendmsg: every reply is queued already. The
	// deadline is a guard against a reply that never comes, not a wait.
	if err := conn.SetReadDeadline(time.Now().Add(replyWait)); err != nil {
		return err
	}
	want := sent[last].Header.Sequence
	for {
		replies, err := conn.Receive()
		if err != nil {
			return err // a failed message or commit: the kernel aborted the batch
		}
		for _, r := range replies {
			if r.Header.Type == netlink.Error && r.Header.Sequence == want {
				return nil
			}
		}
	}
}

// replyWait bounds the wait for the kernel's verdict, which is queued before sendmsg returns.
const replyWait = 30 * time.Second

// setDataByteOrder tells nft that a map's data (the mark) is in host byte order.
func setDataByteOrder(m *netlink.Message) error {
	attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
	if err != nil {
		return fmt.Errorf("captured NEWSET: %w", err)
	}
	for i := range attrs {
		if attrs[i].Type == unix.NFTA_SET_USERDATA {
			attrs[i].Data = userdata.AppendUint32(attrs[i].Data, userdata.NFTNL_UDATA_SET_DATABYTEORDER, 1) // BYTEORDER_HOST_ENDIAN
			attrs[i].Length = 0                                                                             // recomputed
		}
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return fmt.Errorf("captured NEWSET: %w", err)
	}
	m.Data = append(m.Data[:4:4], b...)
	return nil
}

// sizeSocket sizes the socket's buffers to the batch.
func (tx *transaction) sizeSocket(c *netlink.Conn, msgs []netlink.Message) error {
	// Best effort: a kernel without NETLINK_CAP_ACK (before 4.3) echoes failed messages.
	_ = c.SetOption(netlink.CapAcknowledge, true)
	size := 0
	for _, m := range msgs {
		size += 16 + len(m.Data) // nlmsghdr and payload, aligned
	}
	send := max(minBuffer, size+64<<10)
	recv := max(minBuffer, len(msgs)*ackBytes)
	if err := forceBuffer(c, unix.SO_SNDBUFFORCE, send, c.SetWriteBuffer); err != nil {
		return fmt.Errorf("send buffer of %d bytes: %w", send, err)
	}
	if err := forceBuffer(c, unix.SO_RCVBUFFORCE, recv, c.SetReadBuffer); err != nil {
		return fmt.Errorf("receive buffer of %d bytes: %w", recv, err)
	}
	return nil
}

// forceBuffer sets a socket buffer with opt (SO_SNDBUFFORCE, SO_RCVBUFFORCE), which passes the
// net.core limits but needs CAP_NET_ADMIN; without it, it asks with set, which the kernel
// caps (a batch past the cap then fails with EMSGSIZE, and says so).
func forceBuffer(c *netlink.Conn, opt, bytes int, set func(int) error) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, bytes) }); err != nil {
		return err
	}
	if errors.Is(serr, unix.EPERM) {
		return set(bytes)
	}
	return serr
}

// Package peer carries what the directors of one group say to each other directly, without
// the controller: PeerHeartbeat datagrams over UDP (Transport) and ICMP echoes to a peer's
// host (Prober), which tell "the agent is down" apart from "the machine is gone".
package peer

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// sendTimeout bounds one Send. A UDP send normally returns at once (a full queue gives
// ENOBUFS, not a wait); the deadline is only there so that a stuck socket can never stall the
// role loop that sends heartbeats, which would be worse than a lost heartbeat.
const sendTimeout = 20 * time.Millisecond

// maxDatagram is the read buffer. A PeerHeartbeat is well under 200 bytes; anything that
// fills the buffer is not one of ours and fails to decode or is dropped as truncated.
const maxDatagram = 2048

// recvQueue is how many decoded heartbeats wait for the reader of Recv. With a 100 ms
// interval and a handful of peers this is seconds of backlog; past it the reader goroutine
// waits and the kernel's socket buffer takes the overflow.
const recvQueue = 64

// tosNetworkControl is DSCP CS6 (IP precedence "internetwork control", 0xc0), which
// keepalived also sets on VRRP: a queue that honours priority (pfifo_fast, a switch with QoS)
// drops these last, so a director whose links are saturated by the traffic it forwards
// still hears and is heard by its peers, instead of being taken for dead.
const tosNetworkControl = 0xc0

// ErrClosed is returned by Send after Close.
var ErrClosed = errors.New("peer transport closed")

// Received is one heartbeat and the address it came from (IPv4 as 4 bytes, never v4-mapped).
type Received struct {
	From netip.Addr
	HB   *lvsctlv1.PeerHeartbeat
}

// Transport sends and receives PeerHeartbeats, one protobuf message per UDP datagram, on the
// director's own address and port.
type Transport struct {
	conn    *net.UDPConn
	log     *slog.Logger
	recv    chan Received
	done    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	dropped atomic.Uint64
}

// Listen binds local, which should be the director's own address and failover port: peers
// see it as the source of our heartbeats and match it against the address the controller
// gave them for us. Port 0 picks a free port (tests); Addr tells which.
func Listen(local netip.AddrPort, log *slog.Logger) (*Transport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !local.Addr().IsValid() {
		return nil, fmt.Errorf("peer: listen address %q: not a valid address", local)
	}
	conn, err := net.ListenUDP(udpNetwork(local.Addr()), net.UDPAddrFromAddrPort(local))
	if err != nil {
		return nil, fmt.Errorf("peer: listen on %s: %w", local, err)
	}
	if err := setTOS(conn, local.Addr().Is6()); err != nil {
		// Not fatal: heartbeats still flow, with ordinary priority.
		log.Warn("peer heartbeats: cannot set DSCP CS6", "error", err)
	}
	t := &Transport{
		conn: conn,
		log:  log.With("local", local.String()),
		recv: make(chan Received, recvQueue),
		done: make(chan struct{}),
	}
	t.wg.Add(1)
	go t.readLoop()
	return t, nil
}

// setTOS marks what the socket sends as network control (tosNetworkControl).
func setTOS(c net.PacketConn, v6 bool) error {
	if v6 {
		return ipv6.NewPacketConn(c).SetTrafficClass(tosNetworkControl)
	}
	return ipv4.NewPacketConn(c).SetTOS(tosNetworkControl)
}

// udpNetwork keeps an IPv4 socket IPv4-only, so its peers' addresses arrive as plain IPv4.
func udpNetwork(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

// Addr is the address and port the transport is bound to.
func (t *Transport) Addr() netip.AddrPort {
	return t.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Send sends hb to one peer. It never waits for the peer and returns within sendTimeout;
// an error means this datagram did not leave (the next interval sends another).
func (t *Transport) Send(to netip.AddrPort, hb *lvsctlv1.PeerHeartbeat) error {
	if t.closed.Load() {
		return ErrClosed
	}
	b, err := proto.Marshal(hb)
	if err != nil {
		return fmt.Errorf("peer: encode heartbeat: %w", err)
	}
	if err := t.conn.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return fmt.Errorf("peer: send to %s: %w", to, err)
	}
	if _, err := t.conn.WriteToUDPAddrPort(b, to); err != nil {
		return fmt.Errorf("peer: send to %s: %w", to, err)
	}
	return nil
}

// Recv delivers decoded heartbeats. It is closed after Close.
func (t *Transport) Recv() <-chan Received { return t.recv }

// Dropped counts datagrams that were not a PeerHeartbeat (undecodable), since Listen.
func (t *Transport) Dropped() uint64 { return t.dropped.Load() }

// Close stops receiving, closes the socket and then the Recv channel. It is safe to call
// more than once.
func (t *Transport) Close() {
	if t.closed.Swap(true) {
		return
	}
	close(t.done)
	_ = t.conn.Close()
	t.wg.Wait()
}

func (t *Transport) readLoop() {
	defer t.wg.Done()
	defer close(t.recv)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := t.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A read error on a UDP socket is transient (an ICMP error queued for an
			// earlier send, say); the socket is still good.
			t.log.Debug("peer heartbeat read", "error", err)
			continue
		}
		hb := &lvsctlv1.PeerHeartbeat{}
		if n == len(buf) {
			t.drop(from, "datagram too large")
			continue
		}
		if err := proto.Unmarshal(buf[:n], hb); err != nil {
			t.drop(from, err.Error())
			continue
		}
		select {
		case t.recv <- Received{From: from.Addr().Unmap(), HB: hb}:
		case <-t.done:
			return
		}
	}
}

func (t *Transport) drop(from netip.AddrPort, why string) {
	n := t.dropped.Add(1)
	// Debug, not Warn: anyone can send datagrams to the port, and a log line per datagram
	// would let them fill the disk. Dropped() counts them for status and metrics.
	t.log.Debug("dropped datagram that is not a peer heartbeat", "from", from.String(), "reason", why, "dropped", n)
}

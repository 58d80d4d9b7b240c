package peer

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// IP protocol numbers for icmp.ParseMessage.
const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// probeTTL is how long an unanswered echo is remembered. An answer later than this is so far
// past any dead_after that it says nothing about the peer now; forgetting it also keeps the
// table small when a peer is gone for good.
const probeTTL = 5 * time.Second

// answerQueue is how many answers wait for the reader of Answers; past it answers are
// dropped (the next probe interval brings another).
const answerQueue = 64

// icmpFilterEchoReplyOnly is the ICMP_FILTER mask (a set bit blocks that type) that lets
// only type 0, echo reply, through.
const icmpFilterEchoReplyOnly = int(^int32(1 << ipv4.ICMPTypeEchoReply))

// ErrNoIPv6 is returned by Probe for an IPv6 peer when this host has no IPv6 ICMP socket
// (IPv6 disabled).
var ErrNoIPv6 = errors.New("no ICMPv6 socket on this host")

// Prober sends ICMP echo requests to peers' hosts and reports which peers answered. An echo
// is answered by the peer's kernel alone, so a host whose agent is stopped or restarting
// still answers: that is what keeps a director whose agent died (its kernel still holding
// the VIPs and forwarding) from being taken for a lost director.
//
// It uses raw ICMP sockets (root or CAP_NET_RAW). A raw socket sees every echo reply that
// reaches the host, so our echoes are told apart by an identifier random per Prober, the
// sequence number and the address they came from.
type Prober struct {
	log  *slog.Logger
	id   uint16
	c4   net.PacketConn   // IPv4 raw socket: reads come without the IP header
	c6   *icmp.PacketConn // nil without IPv6
	ans  chan string
	done chan struct{}
	wg   sync.WaitGroup
	// reads counts the ICMP messages the sockets delivered (tests: the filters work).
	reads atomic.Uint64

	mu      sync.Mutex
	seq     uint16
	pending map[uint16]probe
	closed  bool
}

type probe struct {
	peer string
	addr netip.Addr
	sent time.Time
}

// NewProber opens the raw ICMP sockets. IPv6 is optional: a host without it gets a Prober
// whose Probe fails for IPv6 peers with ErrNoIPv6.
func NewProber(log *slog.Logger) (*Prober, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var idb [2]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, fmt.Errorf("peer: probe identifier: %w", err)
	}
	// A raw ICMP socket gets a copy of every ICMP message the host receives, and a
	// director's VIPs may be pinged from the whole internet: the kernel filter passes only
	// echo replies, so those never wake the agent.
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_RAW, unix.ICMP_FILTER, icmpFilterEchoReplyOnly)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("ICMP_FILTER: %w", serr)
		}
		return nil
	}}
	c4, err := lc.ListenPacket(context.Background(), "ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("peer: open ICMP socket: %w", err)
	}
	if err := ipv4.NewPacketConn(c4).SetTOS(tosNetworkControl); err != nil {
		log.Warn("host probes: cannot set DSCP CS6", "error", err)
	}
	c6, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		log.Warn("no ICMPv6 socket; IPv6 peers cannot be probed", "error", err)
		c6 = nil
	}
	if c6 != nil {
		// Only echo replies: without the filter every neighbour discovery and router
		// advertisement on the host would wake the reader.
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		if err := c6.IPv6PacketConn().SetICMPFilter(&f); err != nil {
			log.Debug("ICMPv6 filter", "error", err)
		}
		if err := c6.IPv6PacketConn().SetTrafficClass(tosNetworkControl); err != nil {
			log.Warn("host probes: cannot set DSCP CS6", "error", err)
		}
	}
	p := &Prober{
		log:     log,
		id:      binary.BigEndian.Uint16(idb[:]),
		c4:      c4,
		c6:      c6,
		ans:     make(chan string, answerQueue),
		done:    make(chan struct{}),
		pending: map[uint16]probe{},
	}
	p.wg.Add(1)
	go p.readLoop(c4, protoICMP)
	if c6 != nil {
		p.wg.Add(1)
		go p.readLoop(c6, protoICMPv6)
	}
	return p, nil
}

// Probe sends one echo request to addr; if it comes back, Answers delivers peer. It does not
// wait for the answer.
func (p *Prober) Probe(peer string, addr netip.Addr) error {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return fmt.Errorf("peer: probe %s: no address", peer)
	}
	c, typ := p.c4, icmp.Type(ipv4.ICMPTypeEcho)
	if addr.Is6() {
		if p.c6 == nil {
			return fmt.Errorf("peer: probe %s at %s: %w", peer, addr, ErrNoIPv6)
		}
		c, typ = net.PacketConn(p.c6), ipv6.ICMPTypeEchoRequest
	}
	now := time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("peer: probe %s: %w", peer, ErrClosed)
	}
	for s, pr := range p.pending {
		if now.Sub(pr.sent) > probeTTL {
			delete(p.pending, s)
		}
	}
	p.seq++
	seq := p.seq
	p.pending[seq] = probe{peer: peer, addr: addr, sent: now}
	p.mu.Unlock()

	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(p.id), Seq: int(seq), Data: []byte("lvsctl")}}
	b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err == nil {
		_ = c.SetWriteDeadline(now.Add(sendTimeout))
		_, err = c.WriteTo(b, &net.IPAddr{IP: addr.AsSlice(), Zone: addr.Zone()})
	}
	if err != nil {
		p.mu.Lock()
		delete(p.pending, seq)
		p.mu.Unlock()
		return fmt.Errorf("peer: probe %s at %s: %w", peer, addr, err)
	}
	return nil
}

// Answers delivers the name of each peer whose echo came back, once per echo. It is closed
// after Close.
func (p *Prober) Answers() <-chan string { return p.ans }

// Close closes the sockets and then the Answers channel. It is safe to call more than once.
func (p *Prober) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.done)
	_ = p.c4.Close()
	if p.c6 != nil {
		_ = p.c6.Close()
	}
	p.wg.Wait()
	close(p.ans)
}

func (p *Prober) readLoop(c net.PacketConn, proto int) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Debug("ICMP read", "error", err)
			continue
		}
		p.reads.Add(1)
		peer, ok := p.match(buf[:n], proto, from)
		if !ok {
			continue
		}
		select {
		case p.ans <- peer:
		case <-p.done:
			return
		default:
			p.log.Debug("probe answer dropped: nobody reads Answers", "peer", peer)
		}
	}
}

// match reports which peer an ICMP message answers, if it is an echo reply to one of our
// pending probes from the address that probe went to.
func (p *Prober) match(b []byte, proto int, from net.Addr) (string, bool) {
	m, err := icmp.ParseMessage(proto, b)
	if err != nil {
		return "", false
	}
	if m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply {
		return "", false
	}
	echo, ok := m.Body.(*icmp.Echo)
	if !ok || echo.ID != int(p.id) {
		return "", false
	}
	ia, ok := from.(*net.IPAddr)
	if !ok {
		return "", false
	}
	src, ok := netip.AddrFromSlice(ia.IP)
	if !ok {
		return "", false
	}
	seq := uint16(echo.Seq)
	p.mu.Lock()
	defer p.mu.Unlock()
	pr, ok := p.pending[seq]
	// Compare without zones: a reply from a link-local peer comes back with the zone of
	// the interface, which the caller may not have written.
	if !ok || pr.addr.WithZone("") != src.Unmap().WithZone("") {
		return "", false
	}
	delete(p.pending, seq)
	return pr.peer, true
}

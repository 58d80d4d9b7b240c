// Package announce tells the local network that addresses just taken over now live at this
// director's MAC address: gratuitous ARP for IPv4, unsolicited neighbour advertisements for
// IPv6. Without it, clients and routers keep sending to the old ACTIVE's MAC until their
// neighbour entry for the VIP expires (tens of seconds to minutes).
//
// What a receiver does with them (Linux, found with the tests in this package): an existing
// neighbour entry, STALE or REACHABLE, is moved to the new MAC at once, for ARP whatever the
// receiver's arp_accept, because a gratuitous ARP overrides the locktime; an NA does it only
// because its override flag is set. The entry is left STALE, so the receiver's next packet
// goes to the new MAC and its confirming unicast probe is answered by the new ACTIVE. A
// receiver with no entry for the address does not create one from a gratuitous ARP unless
// arp_accept is set, nor from an unsolicited NA unless accept_untracked_na is set: that is
// harmless, since it resolves the address afresh, and the new ACTIVE answers.
package announce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// Address is one address to announce on one interface.
type Address struct {
	Interface string
	IP        netip.Addr
}

// repeats are when the announcement is sent again, after the first send. One frame can be
// lost to a switch port still learning or a busy receiver; keepalived's default is 5 at once
// and 5 more 5 s later. We send three spread over a second: the second copy covers a loss in
// the first's burst, the third covers a neighbour that only just came up or had its entry
// refreshed (to the old MAC) by traffic in flight at the moment of takeover.
var repeats = []time.Duration{100 * time.Millisecond, time.Second}

// Announcer sends the announcements. It keeps no state between calls but the goroutines
// that send repeats, which Wait waits for.
type Announcer struct {
	log     *slog.Logger
	repeats []time.Duration
	// open makes the sender for one address; tests replace it.
	open func(a Address) (sender, error)
	// after is time.After; tests replace it to step the repeats without waiting.
	after func(time.Duration) <-chan time.Time
	wg    sync.WaitGroup
}

// sender sends one address's announcement, again each time send is called.
type sender interface {
	send() error
	close() error
}

// New returns an Announcer that logs to log.
func New(log *slog.Logger) *Announcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Announcer{log: log, repeats: repeats, open: openSender, after: time.After}
}

// Announce sends one announcement for each address now, then returns, and sends the repeats
// in the background until they are done or ctx ends. Errors are logged, not returned: a
// takeover does not wait on, or fail for, the announcement; the address is held either way.
//
// The sockets are opened here, on the caller's goroutine, and kept for the repeats: they
// belong to the caller's network namespace whichever thread sends the repeats.
func (a *Announcer) Announce(ctx context.Context, addrs []Address) {
	var live []sender
	var names []string
	for _, ad := range addrs {
		log := a.log.With("interface", ad.Interface, "address", ad.IP.String())
		s, err := a.open(ad)
		if err != nil {
			log.Warn("cannot announce address", "error", err)
			continue
		}
		if err := s.send(); err != nil {
			log.Warn("announce address", "error", err)
		}
		live = append(live, s)
		names = append(names, ad.IP.String())
	}
	if len(live) == 0 {
		return
	}
	a.log.Info("announced addresses", "addresses", names)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer func() {
			for _, s := range live {
				_ = s.close()
			}
		}()
		var elapsed time.Duration
		for _, at := range a.repeats {
			select {
			case <-ctx.Done():
				return
			case <-a.after(at - elapsed):
			}
			elapsed = at
			for i, s := range live {
				if err := s.send(); err != nil {
					a.log.Warn("announce address again", "address", names[i], "error", err)
				}
			}
		}
	}()
}

// Wait waits until every Announce's repeats are sent or abandoned (their ctx ended).
func (a *Announcer) Wait() { a.wg.Wait() }

// ErrNoHardwareAddr: the interface has no MAC address (a tunnel, loopback), so there is no
// neighbour entry to update and nothing to announce.
var ErrNoHardwareAddr = errors.New("interface has no hardware address")

func openSender(a Address) (sender, error) {
	ip := a.IP.Unmap().WithZone("")
	if !ip.IsValid() {
		return nil, fmt.Errorf("announce on %s: no address", a.Interface)
	}
	ifi, err := net.InterfaceByName(a.Interface)
	if err != nil {
		return nil, fmt.Errorf("announce %s: interface %q: %w", ip, a.Interface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce %s on %s: %w", ip, a.Interface, ErrNoHardwareAddr)
	}
	if ip.Is4() {
		return openARP(ifi, ip)
	}
	return openNDP(ifi, ip)
}

// arpSender sends a gratuitous ARP request as keepalived does: an ARP request, broadcast,
// with sender and target IP both the address and sender MAC ours. A request rather than a
// reply because every host on the segment processes a broadcast request, and Linux (with
// any arp_accept) moves an existing entry to the new MAC on it.
type arpSender struct {
	c   *arp.Client
	pkt *arp.Packet
}

func openARP(ifi *net.Interface, ip netip.Addr) (*arpSender, error) {
	// arp.Dial wants an IPv4 address on the interface; the address being announced was
	// just added there, so it has one.
	c, err := arp.Dial(ifi)
	if err != nil {
		return nil, fmt.Errorf("announce %s on %s: open ARP socket: %w", ip, ifi.Name, err)
	}
	pkt, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("announce %s on %s: %w", ip, ifi.Name, err)
	}
	return &arpSender{c: c, pkt: pkt}, nil
}

func (s *arpSender) send() error {
	if err := s.c.WriteTo(s.pkt, ethernet.Broadcast); err != nil {
		return fmt.Errorf("gratuitous ARP for %s: %w", s.pkt.SenderIP, err)
	}
	return nil
}

func (s *arpSender) close() error { return s.c.Close() }

// allNodes is where an unsolicited neighbour advertisement goes (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// ndpSender sends an unsolicited neighbour advertisement: override set, solicited clear,
// target the address, with our MAC in the target link-layer address option, to all nodes.
type ndpSender struct {
	c  *ndp.Conn
	na *ndp.NeighborAdvertisement
}

func openNDP(ifi *net.Interface, ip netip.Addr) (*ndpSender, error) {
	// The source is the announced address itself (it is on the interface, added without
	// DAD), so this works on an interface with no link-local address; the receiver checks
	// only the hop limit (255, set by ndp) and the target.
	c, _, err := ndp.Listen(ifi, ndp.Addr(ip.String()))
	if err != nil {
		return nil, fmt.Errorf("announce %s on %s: open NDP socket: %w", ip, ifi.Name, err)
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      ifi.HardwareAddr,
		}},
	}
	return &ndpSender{c: c, na: na}, nil
}

func (s *ndpSender) send() error {
	if err := s.c.WriteTo(s.na, nil, allNodes); err != nil {
		return fmt.Errorf("unsolicited NA for %s: %w", s.na.TargetAddress, err)
	}
	return nil
}

func (s *ndpSender) close() error { return s.c.Close() }

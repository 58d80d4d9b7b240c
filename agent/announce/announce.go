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
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
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

// Announcer sends the announcements. Between calls it keeps the goroutines that send
// repeats, which Wait waits for, and one ARP socket per interface (Prepare, Close): opening
// one costs an interface lookup and a socket with its filter, tens of milliseconds on a
// starved host, which a takeover should not spend after its addresses are added. The
// sockets belong to the network namespace of the goroutine that opened them: use an
// Announcer from one namespace.
type Announcer struct {
	log     *slog.Logger
	repeats []time.Duration
	// open makes the sender for the addresses of one family on one interface; tests
	// replace it.
	open func(g group) (sender, error)
	// after is time.After; tests replace it to step the repeats without waiting.
	after func(time.Duration) <-chan time.Time
	// lister opens what reads an interface's addresses before each repeat; tests replace it.
	lister func() (addrLister, error)
	wg     sync.WaitGroup
	links  links
}

// addrLister reads the addresses an interface holds now, in the network namespace it was
// opened in.
type addrLister interface {
	held(iface string) (map[netip.Addr]bool, error)
	close()
}

// group is the addresses of one family on one interface: they share one socket, so a
// takeover of hundreds of VIPs opens a few sockets, not hundreds.
type group struct {
	iface string
	v6    bool
	ips   []netip.Addr
}

// sender sends its group's announcements, again each time send is called, for the
// addresses keep accepts.
type sender interface {
	send(keep func(netip.Addr) bool) error
	close() error
}

func all(netip.Addr) bool { return true }

// New returns an Announcer that logs to log.
func New(log *slog.Logger) *Announcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Announcer{log: log, repeats: repeats, after: time.After, lister: openNetlink}
	a.open = a.openSender
	return a
}

// Prepare opens the ARP sockets of the named interfaces, if not open yet, so that a takeover
// announces its IPv4 addresses without opening any. A STANDBY calls it with the interfaces
// of the addresses it would take: it needs no address there (the frames carry the announced
// one). Interfaces that cannot carry ARP, or do not exist yet, are skipped: Announce opens
// what it needs then. (NDP needs a source address on the interface, so IPv6 sockets are
// opened by Announce.)
func (a *Announcer) Prepare(ifaces []string) {
	for _, name := range ifaces {
		if _, err := a.links.get(name); err != nil {
			a.log.Debug("announcements not prepared", "interface", name, "error", err)
		}
	}
}

// Close closes the sockets Prepare and Announce kept open. Repeats still running lose them.
func (a *Announcer) Close() { a.links.closeAll() }

// Announce sends one announcement for each address now, then returns, and sends the repeats
// in the background until they are done or ctx ends. Errors are logged, not returned: a
// takeover does not wait on, or fail for, the announcement; the address is held either way.
//
// Each repeat goes only for the addresses the interface still holds: a director that lost
// its lease a moment after taking over must not, a second later, pull the clients back from
// the director that took over from it. (The caller should also end ctx on release; this
// does not depend on it.)
//
// The sockets are opened here, on the caller's goroutine, and kept for the repeats: they
// belong to the caller's network namespace whichever thread sends the repeats.
func (a *Announcer) Announce(ctx context.Context, addrs []Address) {
	type live struct {
		s     sender
		iface string
		log   *slog.Logger
	}
	var open []live
	for _, g := range groups(addrs, a.log) {
		log := a.log.With("interface", g.iface, "addresses", g.ips)
		s, err := a.open(g)
		if err != nil {
			log.Warn("cannot announce addresses", "error", err)
			continue
		}
		if err := s.send(all); err != nil {
			log.Warn("announce addresses", "error", err)
		} else {
			log.Info("announced addresses")
		}
		open = append(open, live{s, g.iface, log})
	}
	closeAll := func() {
		for _, l := range open {
			_ = l.s.close()
		}
	}
	if len(open) == 0 {
		return
	}
	lister, err := a.lister()
	if err != nil {
		a.log.Warn("no repeated announcements: cannot read interface addresses", "error", err)
		closeAll()
		return
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer lister.close()
		defer closeAll()
		var elapsed time.Duration
		for _, at := range a.repeats {
			select {
			case <-ctx.Done():
				return
			case <-a.after(at - elapsed):
			}
			elapsed = at
			for _, l := range open {
				held, err := lister.held(l.iface)
				if err != nil {
					// Sending for addresses that may be gone could do harm; missing a
					// repeat only costs what the first send did not already do.
					l.log.Warn("repeat announcement skipped: cannot read the interface's addresses", "error", err)
					continue
				}
				if err := l.s.send(func(ip netip.Addr) bool { return held[ip] }); err != nil {
					l.log.Warn("announce addresses again", "error", err)
				}
			}
		}
	}()
}

// groups sorts addrs by interface and family, in the order first seen, dropping invalid
// addresses (logged) and repeats.
func groups(addrs []Address, log *slog.Logger) []group {
	var gs []group
	idx := map[[2]string]int{}
	seen := map[Address]bool{}
	for _, ad := range addrs {
		ip := ad.IP.Unmap().WithZone("")
		if !ip.IsValid() {
			log.Warn("cannot announce an invalid address", "interface", ad.Interface)
			continue
		}
		if seen[Address{ad.Interface, ip}] {
			continue
		}
		seen[Address{ad.Interface, ip}] = true
		k := [2]string{ad.Interface, "4"}
		if ip.Is6() {
			k[1] = "6"
		}
		i, ok := idx[k]
		if !ok {
			i = len(gs)
			idx[k] = i
			gs = append(gs, group{iface: ad.Interface, v6: ip.Is6()})
		}
		gs[i].ips = append(gs[i].ips, ip)
	}
	return gs
}

// Wait waits until every Announce's repeats are sent or abandoned (their ctx ended).
func (a *Announcer) Wait() { a.wg.Wait() }

// ErrNoHardwareAddr: the interface has no MAC address (a tunnel, loopback), so there is no
// neighbour entry to update and nothing to announce.
var ErrNoHardwareAddr = errors.New("interface has no hardware address")

func (a *Announcer) openSender(g group) (sender, error) {
	if len(g.ips) == 0 {
		return nil, fmt.Errorf("announce on %s: no address", g.iface)
	}
	if !g.v6 {
		l, err := a.links.get(g.iface)
		if err != nil {
			return nil, err
		}
		return newARPSender(&a.links, l, g.ips)
	}
	ifi, err := net.InterfaceByName(g.iface)
	if err != nil {
		return nil, fmt.Errorf("announce on interface %q: %w", g.iface, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce on %s: %w", g.iface, ErrNoHardwareAddr)
	}
	return openNDP(ifi, g.ips)
}

// arpSender sends gratuitous ARP requests as keepalived does: an ARP request, broadcast,
// with sender and target IP both the address and sender MAC ours. A request rather than a
// reply because every host on the segment processes a broadcast request, and Linux (with
// any arp_accept) moves an existing entry to the new MAC on it. It writes on its
// interface's kept socket (links); a write that fails drops that socket, so the next
// announcement opens a fresh one (the interface was re-created, say).
type arpSender struct {
	links  *links
	link   *arpLink
	ips    []netip.Addr
	frames [][]byte
}

func newARPSender(ls *links, l *arpLink, ips []netip.Addr) (*arpSender, error) {
	s := &arpSender{links: ls, link: l}
	for _, ip := range ips {
		// mdlayher/arp builds the packet; its Client is not used because it insists on an
		// IPv4 address on the interface, which a STANDBY preparing need not have.
		pkt, err := arp.NewPacket(arp.OperationRequest, l.hw, ip, ethernet.Broadcast, ip)
		if err != nil {
			return nil, fmt.Errorf("announce %s on %s: %w", ip, l.name, err)
		}
		pb, err := pkt.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("announce %s on %s: %w", ip, l.name, err)
		}
		f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: l.hw, EtherType: ethernet.EtherTypeARP, Payload: pb}
		fb, err := f.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("announce %s on %s: %w", ip, l.name, err)
		}
		s.ips = append(s.ips, ip)
		s.frames = append(s.frames, fb)
	}
	return s, nil
}

// send sends every address's frame, whatever happens to one of them.
func (s *arpSender) send(keep func(netip.Addr) bool) error {
	var errs []error
	for i, fb := range s.frames {
		if !keep(s.ips[i]) {
			continue
		}
		if _, err := s.link.c.WriteTo(fb, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
			errs = append(errs, fmt.Errorf("gratuitous ARP for %s: %w", s.ips[i], err))
		}
	}
	if len(errs) > 0 {
		s.links.drop(s.link)
	}
	return errors.Join(errs...)
}

// close leaves the socket open for the next takeover.
func (s *arpSender) close() error { return nil }

// arpLink is a raw packet socket for ARP on one interface, kept between takeovers.
type arpLink struct {
	name string
	hw   net.HardwareAddr
	c    *packet.Conn
}

// links are the kept ARP sockets, by interface name.
type links struct {
	mu sync.Mutex
	m  map[string]*arpLink
	// opened counts the sockets opened, for tests.
	opened int
}

// dropAll is a socket filter that accepts no frame: the socket only sends, and must not
// queue every ARP frame on the segment.
var dropAll = func() []bpf.RawInstruction {
	ins, err := bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
	if err != nil {
		panic(err) // a constant program
	}
	return ins
}()

// get returns the kept socket of interface name, opening it if needed.
func (ls *links) get(name string) (*arpLink, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.m[name]; l != nil {
		return l, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("announce on interface %q: %w", name, err)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("announce on %s: %w", name, ErrNoHardwareAddr)
	}
	c, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: dropAll})
	if err != nil {
		return nil, fmt.Errorf("announce on %s: open ARP socket: %w", name, err)
	}
	l := &arpLink{name: name, hw: ifi.HardwareAddr, c: c}
	if ls.m == nil {
		ls.m = map[string]*arpLink{}
	}
	ls.m[name] = l
	ls.opened++
	return l, nil
}

// drop closes l and forgets it, unless it was replaced already.
func (ls *links) drop(l *arpLink) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m[l.name] == l {
		delete(ls.m, l.name)
		_ = l.c.Close()
	}
}

func (ls *links) closeAll() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for name, l := range ls.m {
		_ = l.c.Close()
		delete(ls.m, name)
	}
}

// allNodes is where an unsolicited neighbour advertisement goes (RFC 4861 7.2.6).
var allNodes = netip.MustParseAddr("ff02::1")

// ndpSender sends unsolicited neighbour advertisements: override set, solicited clear,
// target the address, with our MAC in the target link-layer address option, to all nodes.
type ndpSender struct {
	c   *ndp.Conn
	nas []*ndp.NeighborAdvertisement
}

func openNDP(ifi *net.Interface, ips []netip.Addr) (*ndpSender, error) {
	// The source is an announced address itself (it is on the interface, added without
	// DAD), so this works on an interface with no link-local address; the receiver checks
	// only the hop limit (255, set by ndp) and the target.
	// If none of them is there (yet), the link-local address will do.
	var c *ndp.Conn
	var errs []error
	for _, src := range append(slices.Clone(ips), netip.Addr{}) {
		a := ndp.LinkLocal
		if src.IsValid() {
			a = ndp.Addr(src.String())
		}
		var err error
		if c, _, err = ndp.Listen(ifi, a); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if c == nil {
		return nil, fmt.Errorf("announce on %s: open NDP socket: %w", ifi.Name, errors.Join(errs...))
	}
	s := &ndpSender{c: c}
	for _, ip := range ips {
		s.nas = append(s.nas, &ndp.NeighborAdvertisement{
			Override:      true,
			TargetAddress: ip,
			Options: []ndp.Option{&ndp.LinkLayerAddress{
				Direction: ndp.Target,
				Addr:      ifi.HardwareAddr,
			}},
		})
	}
	return s, nil
}

// send sends every address's advertisement, whatever happens to one of them.
func (s *ndpSender) send(keep func(netip.Addr) bool) error {
	var errs []error
	for _, na := range s.nas {
		if !keep(na.TargetAddress) {
			continue
		}
		if err := s.c.WriteTo(na, nil, allNodes); err != nil {
			errs = append(errs, fmt.Errorf("unsolicited NA for %s: %w", na.TargetAddress, err))
		}
	}
	return errors.Join(errs...)
}

func (s *ndpSender) close() error { return s.c.Close() }

// netlinkLister reads addresses over rtnetlink.
type netlinkLister struct{ h *netlink.Handle }

func openNetlink() (addrLister, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("rtnetlink: %w", err)
	}
	return netlinkLister{h}, nil
}

func (l netlinkLister) held(iface string) (map[netip.Addr]bool, error) {
	link, err := l.h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	addrs, err := l.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", iface, err)
	}
	m := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			m[ip.Unmap()] = true
		}
	}
	return m, nil
}

func (l netlinkLister) close() { l.h.Close() }

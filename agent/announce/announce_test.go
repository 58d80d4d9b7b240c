package announce

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// hangGuard bounds waits for something that should happen at once; it only turns a hang
// into a failure and measures nothing.
const hangGuard = 5 * time.Second

const wrongMAC = "02:00:00:00:00:99"

// mac is the hardware address of dev in ns.
func mac(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", "dev", dev).Output()
	if err != nil {
		t.Fatalf("ip link show %s: %v", dev, err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j link: %v: %s", err, out)
	}
	return links[0].Address
}

// neigh is B's neighbour entry for addr on b0: its MAC and states ("" if none).
func neigh(t *testing.T, ns, addr string) (lladdr string, state []string) {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-j", "neigh", "show", addr, "dev", "b0").Output()
	if err != nil {
		t.Fatalf("ip neigh show: %v", err)
	}
	var entries []struct {
		Lladdr string   `json:"lladdr"`
		State  []string `json:"state"`
	}
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("parse ip -j neigh: %v: %s", err, out)
	}
	if len(entries) == 0 {
		return "", nil
	}
	return entries[0].Lladdr, entries[0].State
}

// waitNeigh waits until B's entry for addr has lladdr want, or fails after hangGuard.
func waitNeigh(t *testing.T, ns, addr, want string) []string {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		got, state := neigh(t, ns, addr)
		if got == want {
			return state
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's neighbour entry for %s is %q %v, want %s", addr, got, state, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A takes over VIPs that B last saw at another MAC (the old ACTIVE): after one Announce, B's
// entry for each VIP holds A's MAC, whatever state it was in. This is what the lab checks on
// the client. The entries are written just before Announce, inside the kernel's locktime
// (1 s), in which only a gratuitous ARP may override them.
func TestAnnounceUpdatesStaleNeighbour(t *testing.T) {
	nsA, nsB := pair(t)
	vips := []struct{ vip, prefix, nud string }{
		{"192.0.2.100", "/32", "stale"},
		{"192.0.2.101", "/32", "reachable"},
		{"2001:db8::100", "/128", "stale"},
		{"2001:db8::101", "/128", "reachable"},
	}
	var addrs []Address
	for _, v := range vips {
		// The VIP is on A's interface, as the reconciler adds it before announcing.
		ip(t, "-n", nsA, "addr", "add", v.vip+v.prefix, "dev", "a0", "nodad")
		ip(t, "-n", nsB, "neigh", "replace", v.vip, "lladdr", wrongMAC, "dev", "b0", "nud", v.nud)
		if got, _ := neigh(t, nsB, v.vip); got != wrongMAC {
			t.Fatalf("setup: B's entry for %s is %q, want %s", v.vip, got, wrongMAC)
		}
		addrs = append(addrs, Address{Interface: "a0", IP: netip.MustParseAddr(v.vip)})
	}
	a := New(nil)
	inNS(t, nsA, func() { a.Announce(t.Context(), addrs) })
	macA := mac(t, nsA, "a0")
	for _, v := range vips {
		state := waitNeigh(t, nsB, v.vip, macA)
		t.Logf("B's entry for %s (was %s) after the announcement: %v", v.vip, v.nud, state)
	}
	a.Wait()
}

// What Linux does with an announcement for an address it has no entry for: by default
// (arp_accept=0, accept_untracked_na=0) nothing; a gratuitous ARP creates an entry only with
// arp_accept=1. The second half shows the frame is a well-formed gratuitous ARP by the
// kernel's own test (arp_is_garp), not just "an ARP from that address".
func TestAnnounceNoEntry(t *testing.T) {
	nsA, nsB := pair(t)
	ip(t, "-n", nsA, "addr", "add", "192.0.2.100/32", "dev", "a0")
	ip(t, "-n", nsA, "addr", "add", "2001:db8::100/128", "dev", "a0", "nodad")
	a := New(nil)
	inNS(t, nsA, func() {
		a.Announce(t.Context(), []Address{
			{Interface: "a0", IP: netip.MustParseAddr("192.0.2.100")},
			{Interface: "a0", IP: netip.MustParseAddr("2001:db8::100")},
		})
	})
	a.Wait() // all three rounds are sent, and a veth delivers synchronously
	for _, vip := range []string{"192.0.2.100", "2001:db8::100"} {
		if got, state := neigh(t, nsB, vip); got != "" {
			t.Errorf("B created an entry %s %v for %s by default; expected none", got, state, vip)
		}
	}

	if out, err := exec.Command("ip", "netns", "exec", nsB, "sysctl", "-qw", "net.ipv4.conf.b0.arp_accept=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl arp_accept: %v: %s", err, out)
	}
	inNS(t, nsA, func() {
		a.Announce(t.Context(), []Address{{Interface: "a0", IP: netip.MustParseAddr("192.0.2.100")}})
	})
	waitNeigh(t, nsB, "192.0.2.100", mac(t, nsA, "a0"))
	a.Wait()
}

// On the wire: for each VIP, three gratuitous ARP requests (now, +100 ms, +1 s), broadcast,
// sender and target IP the VIP, sender MAC A's, and no more; a VIP listed twice is no
// exception.
func TestAnnounceFrames(t *testing.T) {
	nsA, nsB := pair(t)
	ip(t, "-n", nsA, "addr", "add", "192.0.2.100/32", "dev", "a0")
	ip(t, "-n", nsA, "addr", "add", "192.0.2.101/32", "dev", "a0")
	var c *packet.Conn
	inNS(t, nsB, func() {
		ifi, err := net.InterfaceByName("b0")
		if err != nil {
			t.Fatal(err)
		}
		if c, err = packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), nil); err != nil {
			t.Fatal(err)
		}
	})
	defer c.Close()
	a := New(nil)
	inNS(t, nsA, func() {
		a.Announce(t.Context(), []Address{
			{Interface: "a0", IP: netip.MustParseAddr("192.0.2.100")},
			{Interface: "a0", IP: netip.MustParseAddr("192.0.2.101")},
			{Interface: "a0", IP: netip.MustParseAddr("192.0.2.100")}, // twice: announced once
		})
	})
	a.Wait()
	macA := mac(t, nsA, "a0")
	n := map[netip.Addr]int{}
	buf := make([]byte, 1500)
	for {
		// Every frame was delivered before Wait returned; the deadline only ends the read.
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		m, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(buf[:m]); err != nil {
			t.Fatal(err)
		}
		var p arp.Packet
		if err := p.UnmarshalBinary(f.Payload); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.SenderIP.String(), "192.0.2.10") {
			continue // B's own ARP, or A's for its own address
		}
		n[p.SenderIP]++
		if f.Destination.String() != ethernet.Broadcast.String() || p.Operation != arp.OperationRequest ||
			p.TargetIP != p.SenderIP || p.SenderHardwareAddr.String() != macA || f.Source.String() != macA {
			t.Errorf("not a gratuitous ARP from A: %s -> %s %+v", f.Source, f.Destination, p)
		}
	}
	want := map[netip.Addr]int{
		netip.MustParseAddr("192.0.2.100"): len(repeats) + 1,
		netip.MustParseAddr("192.0.2.101"): len(repeats) + 1,
	}
	if !maps.Equal(n, want) {
		t.Errorf("B saw gratuitous ARPs %v, want %v", n, want)
	}
}

// fakeSender counts sends and records its close, and can fail.
type fakeSender struct {
	mu     sync.Mutex
	sends  int
	closed bool
	sent   chan struct{}
	ips    []netip.Addr
	perIP  map[netip.Addr]int // announcements sent for each address
}

// fakeLister says every address is held, but those in gone.
type fakeLister struct {
	mu   sync.Mutex
	gone map[netip.Addr]bool
}

func (l *fakeLister) held(string) (map[netip.Addr]bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := map[netip.Addr]bool{}
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "2001:db8::1"} {
		ip := netip.MustParseAddr(a)
		m[ip] = !l.gone[ip]
	}
	return m, nil
}

func (l *fakeLister) close() {}

func (f *fakeSender) send(keep func(netip.Addr) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("send on a closed socket")
	}
	f.sends++
	if f.perIP == nil {
		f.perIP = map[netip.Addr]int{}
	}
	for _, ip := range f.ips {
		if keep(ip) {
			f.perIP[ip]++
		}
	}
	f.sent <- struct{}{}
	return nil
}

func (f *fakeSender) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("closed twice")
	}
	f.closed = true
	return nil
}

func (f *fakeSender) state() (int, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sends, f.closed
}

type timerReq struct {
	d  time.Duration
	ch chan time.Time
}

// fakeAnnouncer has senders per interface and family ("eth0/4"; one without a sender fails
// to open) and timers the test fires. Each open records the group it was given.
func fakeAnnouncer(senders map[string]*fakeSender) (*Announcer, chan timerReq, *fakeLister) {
	timers := make(chan timerReq, 10)
	a := New(nil)
	a.open = func(g group) (sender, error) {
		k := g.iface + "/4"
		if g.v6 {
			k = g.iface + "/6"
		}
		s, ok := senders[k]
		if !ok {
			return nil, errors.New("no such interface")
		}
		s.ips = append(s.ips, g.ips...)
		return s, nil
	}
	a.after = func(d time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		timers <- timerReq{d, ch}
		return ch
	}
	l := &fakeLister{gone: map[netip.Addr]bool{}}
	a.lister = func() (addrLister, error) { return l, nil }
	return a, timers, l
}

func nextTimer(t *testing.T, timers chan timerReq) timerReq {
	t.Helper()
	select {
	case r := <-timers:
		return r
	case <-time.After(hangGuard):
		t.Fatal("no repeat scheduled")
	}
	return timerReq{}
}

func waitSends(t *testing.T, f *fakeSender, want int) {
	t.Helper()
	for {
		if n, _ := f.state(); n >= want {
			if n > want {
				t.Fatalf("%d sends, want %d", n, want)
			}
			return
		}
		select {
		case <-f.sent:
		case <-time.After(hangGuard):
			n, _ := f.state()
			t.Fatalf("stuck at %d sends, want %d", n, want)
		}
	}
}

func newFake() *fakeSender { return &fakeSender{sent: make(chan struct{}, 10)} }

// The schedule: the first send happens before Announce returns, the repeats at +100 ms and
// +1 s after it, then the sockets are closed. An address that cannot be opened is logged and
// skipped; the others are announced.
func TestAnnounceSchedule(t *testing.T) {
	s1, s2 := newFake(), newFake()
	a, timers, _ := fakeAnnouncer(map[string]*fakeSender{"eth0/4": s1, "eth0/6": s2})
	a.Announce(t.Context(), []Address{
		{"eth0", netip.MustParseAddr("192.0.2.1")},
		{"eth9", netip.MustParseAddr("192.0.2.9")}, // fails to open
		{"eth0", netip.MustParseAddr("2001:db8::1")},
		{"eth0", netip.MustParseAddr("::ffff:192.0.2.2")}, // IPv4, v4-mapped
		{"eth0", netip.MustParseAddr("192.0.2.1")},        // again
		{"eth0", netip.Addr{}},                            // invalid: skipped
	})
	if want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}; !slices.Equal(s1.ips, want) {
		t.Errorf("eth0 IPv4 group %v, want %v", s1.ips, want)
	}
	if want := []netip.Addr{netip.MustParseAddr("2001:db8::1")}; !slices.Equal(s2.ips, want) {
		t.Errorf("eth0 IPv6 group %v, want %v", s2.ips, want)
	}
	for _, s := range []*fakeSender{s1, s2} {
		if n, closed := s.state(); n != 1 || closed {
			t.Fatalf("after Announce returned: %d sends, closed %v; want 1, open", n, closed)
		}
	}
	var waits []time.Duration
	for round := 2; round <= 3; round++ {
		r := nextTimer(t, timers)
		waits = append(waits, r.d)
		r.ch <- time.Time{}
		waitSends(t, s1, round)
		waitSends(t, s2, round)
	}
	a.Wait()
	if want := []time.Duration{100 * time.Millisecond, 900 * time.Millisecond}; !slices.Equal(waits, want) {
		t.Errorf("waits between sends %v, want %v (sends at +0, +100 ms, +1 s)", waits, want)
	}
	for _, s := range []*fakeSender{s1, s2} {
		if n, closed := s.state(); n != 3 || !closed {
			t.Errorf("at the end: %d sends, closed %v; want 3, closed", n, closed)
		}
	}
	if len(timers) != 0 {
		t.Errorf("%d repeats scheduled after the last", len(timers))
	}
}

// When ctx ends (the director released the addresses again), repeats stop and the sockets
// are closed.
func TestAnnounceStopsWithContext(t *testing.T) {
	s := newFake()
	a, timers, _ := fakeAnnouncer(map[string]*fakeSender{"eth0/4": s})
	ctx, cancel := context.WithCancel(t.Context())
	a.Announce(ctx, []Address{{"eth0", netip.MustParseAddr("192.0.2.1")}})
	nextTimer(t, timers) // the first repeat is waiting
	cancel()
	a.Wait()
	if n, closed := s.state(); n != 1 || !closed {
		t.Errorf("after cancel: %d sends, closed %v; want 1, closed", n, closed)
	}
}

// An interface that cannot carry an announcement is refused before any socket is opened.
func TestOpenSenderRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		g     group
		noMAC bool
	}{
		{"no such interface", group{iface: "lvsctl-none0", ips: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, false},
		{"loopback has no MAC", group{iface: "lo", ips: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}, true},
		{"no address", group{iface: "lo"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(nil).openSender(tc.g)
			if err == nil {
				_ = s.close()
				t.Fatalf("openSender(%v) succeeded", tc.g)
			}
			if tc.noMAC != errors.Is(err, ErrNoHardwareAddr) {
				t.Errorf("openSender(%v): %v; want ErrNoHardwareAddr: %v", tc.g, err, tc.noMAC)
			}
		})
	}
}

// A director that releases an address a moment after taking it (its lease ran out) must not
// go on announcing it: each repeat is sent only for what the interface still holds.
func TestAnnounceRepeatsOnlyWhatIsHeld(t *testing.T) {
	s := newFake()
	a, timers, l := fakeAnnouncer(map[string]*fakeSender{"eth0/4": s})
	one, two := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	a.Announce(t.Context(), []Address{{"eth0", one}, {"eth0", two}})
	l.mu.Lock()
	l.gone[two] = true
	l.mu.Unlock()
	for round := 2; round <= 3; round++ {
		nextTimer(t, timers).ch <- time.Time{}
		waitSends(t, s, round)
	}
	a.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if want := map[netip.Addr]int{one: 3, two: 1}; !maps.Equal(s.perIP, want) {
		t.Errorf("announcements per address %v, want %v", s.perIP, want)
	}
}

// The same on the wire, with the kernel's own addresses: A takes two IPv4 and two IPv6 VIPs,
// then loses one of each before the repeats. B sees three announcements for the VIPs A
// still holds, and only the first for the others.
func TestAnnounceRepeatsOnlyWhatIsHeldKernel(t *testing.T) {
	nsA, nsB := pair(t)
	vips := []string{"192.0.2.100", "192.0.2.101", "2001:db8::100", "2001:db8::101"}
	var addrs []Address
	for _, v := range vips {
		ip(t, "-n", nsA, "addr", "add", v, "dev", "a0", "nodad")
		addrs = append(addrs, Address{Interface: "a0", IP: netip.MustParseAddr(v)})
	}
	capture := listenAll(t, nsB)
	a := New(nil)
	timers := make(chan timerReq, 10)
	a.after = func(d time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		timers <- timerReq{d, ch}
		return ch
	}
	inNS(t, nsA, func() { a.Announce(t.Context(), addrs) })
	ip(t, "-n", nsA, "addr", "del", "192.0.2.101/32", "dev", "a0")
	ip(t, "-n", nsA, "addr", "del", "2001:db8::101/128", "dev", "a0")
	for range repeats {
		nextTimer(t, timers).ch <- time.Time{}
	}
	a.Wait()
	got := announcements(t, capture)
	want := map[netip.Addr]int{
		netip.MustParseAddr("192.0.2.100"):   3,
		netip.MustParseAddr("192.0.2.101"):   1,
		netip.MustParseAddr("2001:db8::100"): 3,
		netip.MustParseAddr("2001:db8::101"): 1,
	}
	if !maps.Equal(got, want) {
		t.Errorf("B saw announcements %v, want %v", got, want)
	}
}

// listenAll captures every frame arriving on b0 in ns.
func listenAll(t *testing.T, ns string) *packet.Conn {
	t.Helper()
	var c *packet.Conn
	inNS(t, ns, func() {
		ifi, err := net.InterfaceByName("b0")
		if err != nil {
			t.Fatal(err)
		}
		const ethPAll = 0x0003
		if c, err = packet.Listen(ifi, packet.Raw, ethPAll, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// announcements counts the gratuitous ARPs (by sender IP) and unsolicited NAs (by target)
// captured so far. Call it after Wait: a veth delivers as it sends.
func announcements(t *testing.T, c *packet.Conn) map[netip.Addr]int {
	t.Helper()
	n := map[netip.Addr]int{}
	buf := make([]byte, 2048)
	for {
		// The deadline only ends the read of what is already queued.
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		m, _, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		var f ethernet.Frame
		if err := f.UnmarshalBinary(buf[:m]); err != nil {
			continue
		}
		switch f.EtherType {
		case ethernet.EtherTypeARP:
			var p arp.Packet
			if p.UnmarshalBinary(f.Payload) == nil && p.Operation == arp.OperationRequest && p.SenderIP == p.TargetIP {
				n[p.SenderIP]++
			}
		case ethernet.EtherTypeIPv6:
			h := f.Payload
			const nextHeaderICMPv6, typeNA = 58, 136
			if len(h) >= 40+24 && h[6] == nextHeaderICMPv6 && h[40] == typeNA {
				n[netip.AddrFrom16([16]byte(h[48:64]))]++
			}
		}
	}
}

// A STANDBY prepares its interfaces while it holds none of the addresses (and here no IPv4
// address at all, which mdlayher/arp's client would refuse); the takeover then announces on
// the prepared socket, opening none, and B moves its entry. A socket whose interface went
// away is dropped on the failed write, and the next announcement opens a fresh one.
func TestPreparedSocket(t *testing.T) {
	nsA, nsB := pair(t)
	ip(t, "-n", nsA, "addr", "flush", "dev", "a0")
	a := New(nil)
	defer a.Close()
	inNS(t, nsA, func() { a.Prepare([]string{"a0", "lvsctl-none0", "lo"}) })
	if a.links.opened != 1 {
		t.Fatalf("Prepare opened %d sockets, want 1 (a0; no such interface; loopback has no MAC)", a.links.opened)
	}
	ip(t, "-n", nsA, "addr", "add", "192.0.2.100/32", "dev", "a0")
	ip(t, "-n", nsB, "neigh", "replace", "192.0.2.100", "lladdr", wrongMAC, "dev", "b0", "nud", "stale")
	inNS(t, nsA, func() { a.Announce(t.Context(), []Address{{Interface: "a0", IP: netip.MustParseAddr("192.0.2.100")}}) })
	waitNeigh(t, nsB, "192.0.2.100", mac(t, nsA, "a0"))
	a.Wait()
	if a.links.opened != 1 {
		t.Errorf("the takeover opened %d more sockets, want none", a.links.opened-1)
	}

	// a0 deleted and made again (its peer b0 with it): the kept socket's writes fail.
	ip(t, "-n", nsA, "link", "del", "a0")
	ip(t, "-n", nsA, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", nsB)
	ip(t, "-n", nsA, "link", "set", "a0", "up")
	ip(t, "-n", nsB, "link", "set", "b0", "up")
	ip(t, "-n", nsA, "addr", "add", "192.0.2.100/32", "dev", "a0")
	ip(t, "-n", nsB, "neigh", "replace", "192.0.2.100", "lladdr", wrongMAC, "dev", "b0", "nud", "stale")
	addrs := []Address{{Interface: "a0", IP: netip.MustParseAddr("192.0.2.100")}}
	ctx, cancel := context.WithCancel(t.Context())
	inNS(t, nsA, func() { a.Announce(ctx, addrs) }) // fails on the old socket, drops it
	cancel()
	a.Wait()
	inNS(t, nsA, func() { a.Announce(t.Context(), addrs) })
	waitNeigh(t, nsB, "192.0.2.100", mac(t, nsA, "a0"))
	a.Wait()
	if a.links.opened != 2 {
		t.Errorf("%d sockets opened in all, want 2 (the first, and one after the interface came back)", a.links.opened)
	}
}

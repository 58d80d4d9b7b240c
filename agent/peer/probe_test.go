package peer

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func newProber(t *testing.T, ns string) *Prober {
	t.Helper()
	var p *Prober
	inNS(t, ns, func() {
		var err error
		if p, err = NewProber(nil); err != nil {
			t.Fatalf("NewProber: %v", err)
		}
	})
	t.Cleanup(p.Close)
	return p
}

func answer(t *testing.T, p *Prober) string {
	t.Helper()
	select {
	case a := <-p.Answers():
		return a
	case <-time.After(hangGuard):
		t.Fatalf("no probe answer within %s", hangGuard)
	}
	return ""
}

// B runs no process at all, so nothing listens on its heartbeat port: its kernel alone
// answers A's probes, over IPv4 and IPv6. Once B's link is down, probes go unanswered.
func TestProbeAnsweredByKernel(t *testing.T) {
	nsA, nsB := pair(t)
	p := newProber(t, nsA)
	for _, addr := range []string{addrB4, addrB6} {
		if err := p.Probe("b", netip.MustParseAddr(addr)); err != nil {
			t.Fatalf("Probe %s: %v", addr, err)
		}
		if got := answer(t, p); got != "b" {
			t.Errorf("probe of B at %s answered as %q, want b", addr, got)
		}
	}

	ip(t, "-n", nsB, "link", "set", "b0", "down")
	// Ten probe intervals' worth of probes. Sending may fail (no route, no neighbour) or
	// succeed into a dead link; either way none may be answered.
	for range 10 {
		_ = p.Probe("b-down", netip.MustParseAddr(addrB4))
		_ = p.Probe("b-down", netip.MustParseAddr(addrB6))
		time.Sleep(50 * time.Millisecond)
	}
	// Answers on a veth pair take well under a millisecond when the link is up; half a
	// second of silence after the last probe means they were not answered.
	select {
	case a := <-p.Answers():
		t.Errorf("answer %q while B's link is down", a)
	case <-time.After(500 * time.Millisecond):
	}
}

// Two probers on one host each see only the answers to their own echoes, although raw
// sockets deliver every echo reply to both.
func TestProbersKeepTheirOwnAnswers(t *testing.T) {
	nsA, _ := pair(t)
	p1, p2 := newProber(t, nsA), newProber(t, nsA)
	if p1.id == p2.id {
		p2.id++ // they drew the same random identifier (1 in 65536); no probe sent yet
	}
	b := netip.MustParseAddr(addrB4)
	for range 3 {
		if err := p1.Probe("one", b); err != nil {
			t.Fatal(err)
		}
		if err := p2.Probe("two", b); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if got := answer(t, p1); got != "one" {
			t.Errorf("prober 1 got answer %q", got)
		}
		if got := answer(t, p2); got != "two" {
			t.Errorf("prober 2 got answer %q", got)
		}
	}
	// Each echo is answered once: the three answers each are all there is.
	select {
	case a := <-p1.Answers():
		t.Errorf("prober 1 got a fourth answer %q", a)
	case a := <-p2.Answers():
		t.Errorf("prober 2 got a fourth answer %q", a)
	case <-time.After(200 * time.Millisecond):
	}
}

// Which ICMP messages count as an answer (no sockets, no root): only an echo reply with our
// identifier, to a pending sequence number, from the address probed, and only once.
func TestProbeMatch(t *testing.T) {
	b4 := netip.MustParseAddr("192.0.2.2")
	b6 := netip.MustParseAddr("2001:db8::2")
	reply := func(typ icmp.Type, id, seq int) []byte {
		m := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("lvsctl")}}
		b, err := m.Marshal(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	from := func(a netip.Addr) net.Addr { return &net.IPAddr{IP: a.AsSlice()} }
	for _, tc := range []struct {
		name  string
		b     []byte
		proto int
		from  netip.Addr
		want  string
	}{
		{"our v4 reply", reply(ipv4.ICMPTypeEchoReply, 0x1234, 1), protoICMP, b4, "b"},
		{"our v6 reply", reply(ipv6.ICMPTypeEchoReply, 0x1234, 2), protoICMPv6, b6, "b6"},
		{"another prober's identifier", reply(ipv4.ICMPTypeEchoReply, 0x4321, 1), protoICMP, b4, ""},
		{"unknown sequence", reply(ipv4.ICMPTypeEchoReply, 0x1234, 9), protoICMP, b4, ""},
		{"from another host", reply(ipv4.ICMPTypeEchoReply, 0x1234, 1), protoICMP, netip.MustParseAddr("192.0.2.3"), ""},
		{"a request, not a reply", reply(ipv4.ICMPTypeEcho, 0x1234, 1), protoICMP, b4, ""},
		{"not ICMP", []byte{1, 2}, protoICMP, b4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Prober{id: 0x1234, pending: map[uint16]probe{
				1: {peer: "b", addr: b4, sent: time.Now()},
				2: {peer: "b6", addr: b6, sent: time.Now()},
			}}
			got, ok := p.match(tc.b, tc.proto, from(tc.from))
			if got != tc.want || ok != (tc.want != "") {
				t.Fatalf("match = %q, %v; want %q", got, ok, tc.want)
			}
			if ok {
				if _, again := p.match(tc.b, tc.proto, from(tc.from)); again {
					t.Error("the same reply matched twice")
				}
			}
		})
	}
}

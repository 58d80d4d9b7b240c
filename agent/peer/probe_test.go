package peer

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/packet"
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

// Heartbeats and probes leave marked DSCP CS6 (TOS 0xc0), over IPv4 and IPv6, so queues that
// honour priority keep them when the link is saturated. Checked on the wire, in B.
func TestMarkedNetworkControl(t *testing.T) {
	nsA, nsB := pair(t)
	var capture *packet.Conn
	inNS(t, nsB, func() {
		ifi, err := net.InterfaceByName("b0")
		if err != nil {
			t.Fatal(err)
		}
		const ethPAll = 0x0003
		if capture, err = packet.Listen(ifi, packet.Raw, ethPAll, nil); err != nil {
			t.Fatal(err)
		}
	})
	defer capture.Close()
	var tr4, tr6 *Transport
	inNS(t, nsA, func() {
		tr4 = listen(t, addrA4+":7140")
		tr6 = listen(t, "["+addrA6+"]:7140")
	})
	p := newProber(t, nsA)
	if err := tr4.Send(netip.MustParseAddrPort(addrB4+":7140"), hb("a", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if err := tr6.Send(netip.MustParseAddrPort("["+addrB6+"]:7140"), hb("a", 1, 0)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{addrB4, addrB6} {
		if err := p.Probe("b", netip.MustParseAddr(a)); err != nil {
			t.Fatal(err)
		}
	}

	// What B saw from A: "udp4", "icmp4", "udp6", "icmp6" -> traffic class.
	seen := map[string]byte{}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(hangGuard)
	for len(seen) < 4 {
		_ = capture.SetReadDeadline(deadline)
		n, _, err := capture.ReadFrom(buf)
		if err != nil {
			t.Fatalf("saw only %v: %v", seen, err)
		}
		f := buf[:n]
		if len(f) < 14+20+8 {
			continue
		}
		etherType, ipHdr := uint16(f[12])<<8|uint16(f[13]), f[14:]
		switch {
		case etherType == 0x0800 && net.IP(ipHdr[12:16]).String() == addrA4:
			switch ipHdr[9] {
			case 17:
				seen["udp4"] = ipHdr[1]
			case 1:
				if ipHdr[20] == 8 { // echo request
					seen["icmp4"] = ipHdr[1]
				}
			}
		case etherType == 0x86dd && len(ipHdr) > 40 && net.IP(ipHdr[8:24]).String() == addrA6:
			tc := ipHdr[0]<<4 | ipHdr[1]>>4
			switch ipHdr[6] {
			case 17:
				seen["udp6"] = tc
			case 58:
				if ipHdr[40] == 128 { // echo request
					seen["icmp6"] = tc
				}
			}
		}
	}
	for k, tos := range seen {
		if tos != tosNetworkControl {
			t.Errorf("%s from A has traffic class %#x, want %#x", k, tos, tosNetworkControl)
		}
	}
}

// A director's addresses may be pinged by anyone: the kernel hands the prober echo replies
// only, so 50 pings of A by B (over IPv4 and IPv6, with the neighbour discovery they bring)
// reach A's prober not once. A's own two probes are the only two messages it reads.
func TestProberReadsOnlyEchoReplies(t *testing.T) {
	nsA, nsB := pair(t)
	pa, pb := newProber(t, nsA), newProber(t, nsB)
	for range 50 {
		for _, a := range []string{addrA4, addrA6} {
			if err := pb.Probe("a", netip.MustParseAddr(a)); err != nil {
				t.Fatal(err)
			}
			if got := answer(t, pb); got != "a" {
				t.Fatalf("B's prober got %q", got)
			}
		}
	}
	for _, a := range []string{addrB4, addrB6} {
		if err := pa.Probe("b", netip.MustParseAddr(a)); err != nil {
			t.Fatal(err)
		}
		if got := answer(t, pa); got != "b" {
			t.Fatalf("A's prober got %q", got)
		}
	}
	if n := pa.reads.Load(); n != 2 {
		t.Errorf("A's prober read %d ICMP messages, want 2 (its own two answers)", n)
	}
}

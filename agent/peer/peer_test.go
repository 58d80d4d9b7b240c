package peer

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// hangGuard bounds every wait for something that should arrive at once; it only turns a
// hang into a failure and is not a measure of speed.
const hangGuard = 5 * time.Second

func recv(t *testing.T, tr *Transport) Received {
	t.Helper()
	select {
	case r, ok := <-tr.Recv():
		if !ok {
			t.Fatal("Recv closed")
		}
		return r
	case <-time.After(hangGuard):
		t.Fatalf("no heartbeat at %s within %s", tr.Addr(), hangGuard)
	}
	return Received{}
}

func listen(t *testing.T, ap string) *Transport {
	t.Helper()
	tr, err := Listen(netip.MustParseAddrPort(ap), nil)
	if err != nil {
		t.Fatalf("Listen(%s): %v", ap, err)
	}
	t.Cleanup(tr.Close)
	return tr
}

func hb(director string, sent, echo int64) *lvsctlv1.PeerHeartbeat {
	return &lvsctlv1.PeerHeartbeat{
		Group: "g1", Director: director, Epoch: 7, Role: lvsctlv1.Role_ROLE_ACTIVE,
		Holding: true, Sent: sent, Echo: echo,
	}
}

// Two directors in their own namespaces exchange heartbeats on their own addresses and the
// failover port: each sees the other's heartbeat, intact, from the other's address.
func TestHeartbeatsBothWays(t *testing.T) {
	nsA, nsB := pair(t)
	for _, tc := range []struct{ name, a, b string }{
		{"ipv4", addrA4, addrB4},
		{"ipv6", addrA6, addrB6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			apA := netip.AddrPortFrom(netip.MustParseAddr(tc.a), 7140)
			apB := netip.AddrPortFrom(netip.MustParseAddr(tc.b), 7140)
			var trA, trB *Transport
			inNS(t, nsA, func() { trA = listen(t, apA.String()) })
			inNS(t, nsB, func() { trB = listen(t, apB.String()) })

			if err := trA.Send(apB, hb("a", 100, 0)); err != nil {
				t.Fatalf("A sends: %v", err)
			}
			got := recv(t, trB)
			if got.From != apA.Addr() {
				t.Errorf("B got a heartbeat from %s, want A's address %s", got.From, apA.Addr())
			}
			if !proto.Equal(got.HB, hb("a", 100, 0)) {
				t.Errorf("B got %v, want %v", got.HB, hb("a", 100, 0))
			}

			if err := trB.Send(apA, hb("b", 200, got.HB.Sent)); err != nil {
				t.Fatalf("B answers: %v", err)
			}
			got = recv(t, trA)
			if got.From != apB.Addr() {
				t.Errorf("A got a heartbeat from %s, want B's address %s", got.From, apB.Addr())
			}
			if got.HB.Director != "b" || got.HB.Echo != 100 || got.HB.Sent != 200 {
				t.Errorf("A got %v, want director b echoing 100", got.HB)
			}
		})
	}
}

// A datagram that is not a PeerHeartbeat is dropped and counted; the heartbeat after it is
// delivered, and nothing else was.
func TestGarbageDropped(t *testing.T) {
	nsA, nsB := pair(t)
	apA := netip.AddrPortFrom(netip.MustParseAddr(addrA4), 7140)
	var trA *Transport
	var raw *net.UDPConn
	inNS(t, nsA, func() { trA = listen(t, apA.String()) })
	inNS(t, nsB, func() {
		var err error
		raw, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addrB4+":0")))
		if err != nil {
			t.Fatal(err)
		}
	})
	defer raw.Close()
	// 0xff is field 31 with wire type 7, which does not exist: no protobuf decodes it.
	if _, err := raw.WriteToUDPAddrPort([]byte{0xff, 0xff, 0xff, 0xff}, apA); err != nil {
		t.Fatal(err)
	}
	good, _ := proto.Marshal(hb("b", 5, 0))
	if _, err := raw.WriteToUDPAddrPort(good, apA); err != nil {
		t.Fatal(err)
	}
	got := recv(t, trA)
	if got.HB.Director != "b" || got.HB.Sent != 5 {
		t.Errorf("first delivery %v, want the good heartbeat (garbage must not be delivered)", got.HB)
	}
	if n := trA.Dropped(); n != 1 {
		t.Errorf("Dropped() = %d, want 1", n)
	}
}

// On loopback (no root needed): a transport on port 0 reports its port, Send after Close
// fails with ErrClosed, and Close closes Recv.
func TestLoopbackAndClose(t *testing.T) {
	a := listen(t, "127.0.0.1:0")
	b := listen(t, "127.0.0.1:0")
	if a.Addr().Port() == 0 {
		t.Fatal("Addr() has port 0 after Listen on port 0")
	}
	if err := b.Send(a.Addr(), hb("b", 1, 0)); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, a); got.From != netip.MustParseAddr("127.0.0.1") || got.HB.Director != "b" {
		t.Errorf("got %v from %s", got.HB, got.From)
	}
	a.Close()
	a.Close() // twice is fine
	if _, ok := <-a.Recv(); ok {
		t.Error("Recv still open after Close")
	}
	if err := a.Send(b.Addr(), hb("a", 1, 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v, want ErrClosed", err)
	}
}

func TestListenBadAddress(t *testing.T) {
	if _, err := Listen(netip.AddrPort{}, nil); err == nil {
		t.Error("Listen accepted the zero address")
	}
}

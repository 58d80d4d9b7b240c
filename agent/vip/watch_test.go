package vip

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// signalWithin is how long a change may take to be signalled: the operator's expectation of
// a repair "within about a second", with room for a loaded test machine.
const signalWithin = 2 * time.Second

// quietFor is how long a step that must not be signalled is watched for.
const quietFor = 300 * time.Millisecond

// settle waits until no address of the namespace is tentative: duplicate address detection
// of the interface's link-local IPv6 address ends with an address change of its own, which
// would be signalled in the middle of the test.
func settle(t *testing.T, ns string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(ip(t, "-n", ns, "addr", "show", "tentative"), "inet") {
		if time.Now().After(deadline) {
			t.Fatalf("addresses still tentative after 10s:\n%s", ip(t, "-n", ns, "addr", "show", "tentative"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWatchInNamespace changes a namespace's addresses step by step, the way an operator or
// ifupdown would, and checks which steps Watch signals.
func TestWatchInNamespace(t *testing.T) {
	m, ns := newManager(t)
	settle(t, ns)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := m.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	vip := netip.MustParsePrefix("192.0.2.10/32")
	steps := []struct {
		name   string
		do     func(t *testing.T)
		signal bool
	}{
		{"the Manager adds a VIP", func(t *testing.T) {
			if err := m.AddAddress(iface, vip); err != nil {
				t.Fatal(err)
			}
		}, true},
		// The agent's reconcile loop ends here: reading the addresses changes nothing.
		{"the Manager reads the addresses", func(t *testing.T) {
			if _, err := m.Addresses(iface); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"ip addr del of the VIP", func(t *testing.T) { ip(t, "-n", ns, "addr", "del", vip.String(), "dev", iface) }, true},
		{"ip addr add of an IPv6 address", func(t *testing.T) {
			ip(t, "-n", ns, "addr", "add", "2001:db8::10/128", "dev", iface, "nodad")
		}, true},
		{"ip addr flush (ifdown)", func(t *testing.T) { ip(t, "-n", ns, "addr", "flush", "dev", iface) }, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			limit := quietFor
			if s.signal {
				limit = signalWithin
			}
			start := time.Now()
			s.do(t)
			select {
			case _, ok := <-changes:
				if !ok {
					t.Fatal("the watch ended")
				}
				if !s.signal {
					t.Errorf("signalled, want no signal")
				}
				t.Logf("signalled %s after the change", time.Since(start).Round(time.Millisecond))
			case <-time.After(limit):
				if s.signal {
					t.Errorf("no signal within %s", signalWithin)
				}
			}
			// Let the rest of a burst (flush removes several addresses) arrive and merge.
			time.Sleep(50 * time.Millisecond)
			select {
			case <-changes:
			default:
			}
		})
	}
	cancel()
	select {
	case _, ok := <-changes:
		for ok {
			_, ok = <-changes
		}
	case <-time.After(signalWithin):
		t.Fatal("the watch's channel was not closed after its context ended")
	}
}

// TestWatchOutlivesClose: the watch keeps its own handle on the namespace (newManager has
// closed its descriptor already), so the Manager's Close does not end or misdirect it.
func TestWatchOutlivesClose(t *testing.T) {
	m, ns := newManager(t)
	settle(t, ns)
	changes, err := m.Watch(t.Context())
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	m.Close()
	ip(t, "-n", ns, "addr", "add", "192.0.2.11/32", "dev", iface)
	select {
	case <-changes:
	case <-time.After(signalWithin):
		t.Errorf("no signal within %s after the Manager's Close", signalWithin)
	}
}

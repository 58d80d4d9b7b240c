package ipvs

import (
	"net/netip"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// TestKernelStatsOf: StatsOf returns the services it keeps, with their destinations, and
// leaves the others (another tool's) out, against a real IPVS (the VM lab).
func TestKernelStatsOf(t *testing.T) {
	requireIPVS(t)
	k := newKernel(t, netnsPath(t))
	ours := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc"}
	theirs := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP,
		Address: netip.MustParseAddr("10.96.0.1"), Port: 443}, Scheduler: "rr"}
	for _, s := range []dataplane.Service{ours, theirs} {
		if err := k.AddService(s); err != nil {
			t.Fatalf("AddService(%v): %v", s, err)
		}
		d := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 1, Forward: dataplane.ForwardMasq}
		if s.Port != 0 {
			d.Port = 6443
		}
		if err := k.AddDestination(s, d); err != nil {
			t.Fatalf("AddDestination(%v): %v", s, err)
		}
	}
	got, err := k.StatsOf(func(key dataplane.ServiceKey) bool { return key == ours.ServiceKey })
	if err != nil || len(got) != 1 || got[0].ServiceKey != ours.ServiceKey || len(got[0].Destinations) != 1 {
		t.Errorf("StatsOf(ours) = %+v, %v; want only fwmark 16 with its one destination", got, err)
	}
	if all, err := k.Stats(); err != nil || len(all) != 2 {
		t.Errorf("Stats() = %+v, %v; want both services", all, err)
	}
}

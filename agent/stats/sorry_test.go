package stats

import (
	"net/netip"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// TestReporterSorryInUse: the cluster's stats say the sorry server is in use only once the
// kernel has it; the agent's intent alone claims nothing.
func TestReporterSorryInUse(t *testing.T) {
	k, clusters := kernelWith(t, 1, 2)
	sorry := netip.MustParseAddr("198.51.100.9")
	reals := map[string]*Reals{"c0": {List: []Real{{Addr: sorry, Health: "unknown", Sorry: true}}}}
	r := NewReporter(k)
	rep, err := r.Sample(clusters, ownsAll, reals)
	if err != nil {
		t.Fatal(err)
	}
	if cs := rep.GetChanged()[0]; cs.GetSorryInUse() || len(cs.GetReals()) != 2 {
		t.Fatalf("sorry server not yet in the kernel, reported %v", cs)
	}
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 1}}
	if err := k.AddDestination(svc, dataplane.Destination{Address: sorry, Weight: 1, Forward: dataplane.ForwardMasq}); err != nil {
		t.Fatal(err)
	}
	rep, err = r.Sample(clusters, ownsAll, reals)
	if err != nil {
		t.Fatal(err)
	}
	cs := rep.GetChanged()[0]
	if !cs.GetSorryInUse() {
		t.Fatalf("sorry server in the kernel, reported %v", cs)
	}
	for _, rs := range cs.GetReals() {
		if rs.GetSorry() != (rs.GetAddress() == sorry.String()) {
			t.Errorf("row %v", rs)
		}
	}
}

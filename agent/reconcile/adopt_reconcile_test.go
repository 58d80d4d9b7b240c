package reconcile_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestAdopt: a site moved in with lvsctl apply --adopt. The WMS service made by hand exactly
// as the cluster describes it (and its VIP added by hand) is taken over with no IPVS or
// address operation, recorded as owned, and from then on managed (an edit is made in place,
// a removal deletes it); one that differs is refused, naming the difference, and left as it
// is; a cluster without adopt still refuses a hand-made service.
func TestAdopt(t *testing.T) {
	e := newEnv(t)
	svc := wmsKey()
	vip := netip.MustParsePrefix("192.0.2.10/32")
	mustDo(t, e.ipvs.AddService(svc))
	for _, a := range []string{"198.51.100.3", "198.51.100.1", "198.51.100.2"} { // the kernel's order, not the cluster's
		mustDo(t, e.ipvs.AddDestination(svc, dataplane.Destination{Address: netip.MustParseAddr(a), Weight: 100, Forward: dataplane.ForwardMasq}))
	}
	mustDo(t, e.addrs.AddAddress("eth0", vip))
	handMade := e.ipvs.Dump()

	// Without adopt: foreign, untouched.
	res, _ := e.apply(t, desired(wms()), active)
	if len(res.ClusterErrors) != 1 || !strings.Contains(res.ClusterErrors[0].GetMessage(), "does not own") {
		t.Fatalf("without adopt: cluster errors %v, want wms refused as foreign", res.ClusterErrors)
	}

	// A differing weight: refused, the difference named, nothing changed.
	c := wms()
	c.Adopt = true
	c.Reals[1].Weight = 50
	res, ops := e.apply(t, desired(c), active)
	if len(res.ClusterErrors) != 1 || !strings.Contains(res.ClusterErrors[0].GetMessage(), reconcile.ErrAdoptDiffers.Error()) ||
		!strings.Contains(res.ClusterErrors[0].GetMessage(), "198.51.100.2") ||
		!strings.Contains(res.ClusterErrors[0].GetMessage(), "Weight:50") {
		t.Errorf("adopting a service that differs: cluster errors %v, want one naming 198.51.100.2's weight", res.ClusterErrors)
	}
	if len(ops) != 0 || e.ipvs.Dump() != handMade || e.st.OwnsService(svc.ServiceKey) {
		t.Errorf("a refused adoption changed something: ops %q, owned %v", ops, e.st.OwnedServices())
	}

	// Exactly as described: adopted, no IPVS or address operation.
	c = wms()
	c.Adopt = true
	res, ops = e.apply(t, desired(c), active)
	if len(res.ClusterErrors)+len(res.DirectorErrors) != 0 {
		t.Fatalf("adopting: errors %v %v", res.ClusterErrors, res.DirectorErrors)
	}
	for _, op := range ops {
		if !strings.HasPrefix(op, "SetMarkRules") {
			t.Errorf("adopting did a kernel operation other than lvsctl's own mark rules: %s", op)
		}
	}
	if e.ipvs.Dump() != handMade {
		t.Errorf("the adopted service changed:\n%s\nwas\n%s", e.ipvs.Dump(), handMade)
	}
	if !e.st.OwnsService(svc.ServiceKey) || !e.st.OwnsAddress(state.Address{Interface: "eth0", Prefix: vip}) {
		t.Errorf("after adopting, owned services %v, addresses %v; want the WMS service and its VIP", e.st.OwnedServices(), e.st.OwnedAddresses())
	}

	// Owned now: an apply without adopt keeps it, and an edit is made in place.
	edited := wms()
	edited.Reals[0].Weight = 7
	res, ops = e.apply(t, desired(edited), active)
	if len(res.ClusterErrors) != 0 || len(ops) != 1 || !strings.Contains(ops[0], "198.51.100.1") {
		t.Errorf("editing the adopted cluster: errors %v, ops %q; want one destination update", res.ClusterErrors, ops)
	}
	// Released with the role like any VIP of lvsctl's.
	e.mustClean(t, desired(edited), standby)
	if got, _ := e.addrs.Addresses("eth0"); len(got) != 0 {
		t.Errorf("a STANDBY still holds the adopted VIP: %v", got)
	}
}

// TestAdoptByDelta: an --adopt cluster arriving by ApplyDelta is adopted exactly as by Apply
// (the delta path knows only what it applied, not the kernel's service, so it leaves adopting
// to the full path): no IPVS operation, owned afterwards; one that differs is refused and left
// as it is.
func TestAdoptByDelta(t *testing.T) {
	handMade := func(t *testing.T) *env {
		e := newEnv(t)
		svc := wmsKey()
		mustDo(t, e.ipvs.AddService(svc))
		for _, a := range []string{"198.51.100.3", "198.51.100.1", "198.51.100.2"} {
			mustDo(t, e.ipvs.AddDestination(svc, dataplane.Destination{Address: netip.MustParseAddr(a), Weight: 100, Forward: dataplane.ForwardMasq}))
		}
		mustDo(t, e.addrs.AddAddress("eth0", netip.MustParsePrefix("192.0.2.10/32")))
		e.mustClean(t, desired(web()), active)
		return e
	}
	key := wmsKey().ServiceKey

	t.Run("as described", func(t *testing.T) {
		c := wms()
		c.Adopt = true
		full := handMade(t)
		fullRes, fullOps := full.apply(t, desired(web(), c), active)
		e := handMade(t)
		before := e.ipvs.Dump()
		res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{c}}, active)
		if len(res.clusters)+len(res.director)+len(fullRes.ClusterErrors)+len(fullRes.DirectorErrors) != 0 {
			t.Fatalf("adopting: delta errors %v %v, Apply errors %v %v", res.clusters, res.director, fullRes.ClusterErrors, fullRes.DirectorErrors)
		}
		for _, op := range ops {
			if !strings.HasPrefix(op, "SetMarkRules") && !strings.HasPrefix(op, "ChangeMarkRules") {
				t.Errorf("adopting by delta did a kernel operation other than lvsctl's own mark rules: %s", op)
			}
		}
		if !slices.Equal(ops, fullOps) {
			t.Errorf("delta ops %q, Apply ops %q", ops, fullOps)
		}
		if e.ipvs.Dump() != before || e.dump() != full.dump() {
			t.Errorf("kernel after the delta:\n%s\nafter Apply:\n%s", e.dump(), full.dump())
		}
		if !e.st.OwnsService(key) || !full.st.OwnsService(key) {
			t.Errorf("owned after the delta %v, after Apply %v; want the WMS service in both", e.st.OwnedServices(), full.st.OwnedServices())
		}
	})

	t.Run("differing", func(t *testing.T) {
		c := wms()
		c.Adopt = true
		c.Reals[1].Weight = 50
		e := handMade(t)
		before := e.ipvs.Dump()
		res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{c}}, active)
		if len(res.clusters) != 1 || !strings.Contains(res.clusters[0].GetMessage(), reconcile.ErrAdoptDiffers.Error()) ||
			!strings.Contains(res.clusters[0].GetMessage(), "Weight:50") {
			t.Errorf("adopting a differing service by delta: cluster errors %v, want one naming the weight", res.clusters)
		}
		for _, op := range ops {
			if !strings.HasPrefix(op, "SetMarkRules") && !strings.HasPrefix(op, "ChangeMarkRules") {
				t.Errorf("a refused adoption did a kernel operation: %s", op)
			}
		}
		if e.ipvs.Dump() != before || e.st.OwnsService(key) {
			t.Errorf("a refused adoption changed something: owned %v", e.st.OwnedServices())
		}
	})
}

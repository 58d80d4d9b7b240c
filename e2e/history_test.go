package e2e

import (
	"context"
	"net/netip"
	"os"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// realWeight is the weight the agent's (fake) kernel gives a real server of its one service.
func realWeight(t *testing.T, a *agentProc, addr string) uint32 {
	t.Helper()
	svcs, _ := a.ipvs.Services()
	if len(svcs) != 1 {
		t.Fatalf("%s: %d IPVS services, want 1", a.name, len(svcs))
	}
	dests, _ := a.ipvs.Destinations(svcs[0])
	for _, d := range dests {
		if d.Address == netip.MustParseAddr(addr) {
			return d.Weight
		}
	}
	t.Fatalf("%s: no real server %s in %+v", a.name, addr, dests)
	return 0
}

// TestHistoryRollbackReachesAgents: through the real controller, a weight change and its
// rollback are both in the cluster's history with their revisions, and the director applies
// the rolled-back weight at the rollback's new revision; the dry run before it changes
// neither the store nor the director.
func TestHistoryRollbackReachesAgents(t *testing.T) {
	ctl := newController(t)
	c := dial(t, ctl.cfg.Listen)
	ctx := context.Background()
	dirA := startAgent(t, "dir-a", ctl.cfg.Listen)

	data, err := os.ReadFile("../deploy/examples/wms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	first, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		t.Fatal(err)
	}
	r1 := first.GetRevision()
	waitApplied(t, c, r1, "dir-a")
	if w := realWeight(t, dirA, "198.51.100.1"); w != 100 {
		t.Fatalf("weight applied at %d: %d, want 100", r1, w)
	}

	wms := first.GetObjects()[0].GetCluster()
	wms.Reals[0].Weight = 5
	upd, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: wms}}}})
	if err != nil {
		t.Fatal(err)
	}
	r2 := upd.GetRevision()
	waitApplied(t, c, r2, "dir-a")
	if w := realWeight(t, dirA, "198.51.100.1"); w != 5 {
		t.Fatalf("weight applied at %d: %d, want 5", r2, w)
	}

	dry, err := c.config.Rollback(ctx, &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.GetResult().GetRevision() != r2 || len(dry.GetResult().GetPlans()) != 1 {
		t.Errorf("dry run: revision %d (want the current %d), plans %v", dry.GetResult().GetRevision(), r2, dry.GetResult().GetPlans())
	}
	rb, err := c.config.Rollback(ctx, &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	r3 := rb.GetResult().GetRevision()
	if r3 <= r2 {
		t.Fatalf("rollback revision %d, want a new one after %d", r3, r2)
	}
	waitApplied(t, c, r3, "dir-a")
	if w := realWeight(t, dirA, "198.51.100.1"); w != 100 {
		t.Errorf("weight applied after the rollback to %d: %d, want 100", r1, w)
	}

	h, err := c.config.History(ctx, &lvsctlv1.HistoryRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	for _, e := range h.GetEntries() {
		got = append(got, e.GetRevision())
	}
	if len(got) != 3 || got[0] != r3 || got[1] != r2 || got[2] != r1 {
		t.Fatalf("history revisions %v, want [%d %d %d]", got, r3, r2, r1)
	}
	if e := h.GetEntries()[0]; e.GetAction() != lvsctlv1.HistoryAction_HISTORY_ACTION_ROLLED_BACK || e.GetRolledBackTo() != r1 || e.GetWho() == "" {
		t.Errorf("newest entry: %v", e)
	}
}

package config

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func newServer(t *testing.T) (*Server, *store.Store) {
	st := storetest.Start(t)
	return NewServer(st, storetest.Cache(t, st), slog.New(slog.NewTextHandler(io.Discard, nil))), st
}

func group(name string, directors ...string) *lvsctlv1.Object {
	g := &lvsctlv1.DirectorGroup{Name: name, VipInterface: "eth0"}
	for i, d := range directors {
		// A group of more than one director needs each one's address (validate), and a
		// director's address is its own: 2001:db8:: followed by its name's bytes.
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8}
		copy(a[4:], d)
		g.Directors = append(g.Directors, &lvsctlv1.Director{Name: d, Priority: uint32(200 - i), Address: netip.AddrFrom16(a).String()})
	}
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: g}}
}

func cluster(name, grp, vip string, port uint32) *lvsctlv1.Object {
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: name, DirectorGroup: grp, Vips: []string{vip}, Scheduler: "wlc",
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: port, Last: port}},
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
	}}}
}

func apply(t *testing.T, s *Server, objs ...*lvsctlv1.Object) *lvsctlv1.ApplyResponse {
	t.Helper()
	resp, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return resp
}

// TestConcurrentAppliesCannotBothClaim: writers racing to claim the same VIP+port (each
// through a different cluster, so no key is shared) end with exactly one winner, and every
// fwmark stored is distinct.
func TestConcurrentAppliesCannotBothClaim(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"))
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{cluster(fmt.Sprintf("c%d", i), "edge-1", "192.0.2.10", 80)}})
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch status.Code(err) {
		case codes.OK:
			won++
		case codes.InvalidArgument:
			if !strings.Contains(err.Error(), "already used by cluster") {
				t.Errorf("loser's error %v does not name the conflict", err)
			}
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(snap.Clusters) != 1 {
		t.Fatalf("%d writers won and %d clusters are stored; want exactly 1", won, len(snap.Clusters))
	}
}

func TestConcurrentCreatesGetDistinctMarks(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{cluster(fmt.Sprintf("c%d", i), "edge-1", "192.0.2.10", uint32(80+i))}}); err != nil {
				t.Errorf("apply c%d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	marks := map[uint32]string{}
	for name, c := range snap.Clusters {
		if other, ok := marks[c.GetFwmark()]; ok {
			t.Errorf("clusters %s and %s share fwmark %d", other, name, c.GetFwmark())
		}
		marks[c.GetFwmark()] = name
	}
	if len(snap.Clusters) != 8 {
		t.Errorf("%d clusters stored, want 8", len(snap.Clusters))
	}
}

func TestFwmarkNeverChanges(t *testing.T) {
	s, _ := newServer(t)
	resp := apply(t, s, group("edge-1", "dir-a"), cluster("web", "edge-1", "192.0.2.10", 80))
	mark := resp.GetObjects()[1].GetCluster().GetFwmark()
	c := cluster("web", "edge-1", "192.0.2.10", 80)
	c.GetCluster().Fwmark = mark + 76
	_, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{c}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `cluster "web": fwmark:`) {
		t.Errorf("changing the fwmark: %v, want InvalidArgument naming cluster \"web\" and fwmark", err)
	}
	// Leaving it out keeps the allocated one: nothing changes.
	again := apply(t, s, cluster("web", "edge-1", "192.0.2.10", 80))
	if a := again.GetResults()[0].GetAction(); a != lvsctlv1.Action_ACTION_UNCHANGED {
		t.Errorf("re-apply without fwmark: %v, want UNCHANGED", a)
	}
}

func TestDeleteGroupInUse(t *testing.T) {
	s, _ := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), cluster("web", "edge-1", "192.0.2.10", 80))
	_, err := s.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_GROUP, Name: "edge-1"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `group "edge-1": still in use by cluster "web"`) {
		t.Errorf("deleting a group in use: %v", err)
	}
	if _, err := s.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_GROUP, Name: "edge-1"}); err != nil {
		t.Errorf("deleting an unused group: %v", err)
	}
}

// TestEpochsOnlyGrow: role epochs never go back, across groups and across a group deleted
// and created again, so an agent can always trust a higher epoch.
func TestEpochsOnlyGrow(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	epoch := func(g string) uint64 {
		snap, err := st.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return snap.Roles[g].GetEpoch()
	}
	apply(t, s, group("edge-1", "dir-a"))
	e1 := epoch("edge-1")
	apply(t, s, group("edge-2", "dir-b"))
	e2 := epoch("edge-2")
	apply(t, s, group("edge-1", "dir-c")) // dir-a left: a new assignment
	e3 := epoch("edge-1")
	if _, err := s.Delete(ctx, &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_GROUP, Name: "edge-1"}); err != nil {
		t.Fatal(err)
	}
	apply(t, s, group("edge-1", "dir-a"))
	e4 := epoch("edge-1")
	if !(e1 < e2 && e2 < e3 && e3 < e4) {
		t.Errorf("epochs %d, %d, %d, %d must only grow", e1, e2, e3, e4)
	}
}

// TestRepairingApplyPassesDespiteOldViolations: a violation already in the store (written by
// an older version, say) does not block writes that do not involve it.
func TestRepairingApplyPassesDespiteOldViolations(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), cluster("a", "edge-1", "192.0.2.10", 80))
	// Sneak a conflicting cluster in behind validation.
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := cluster("b", "edge-1", "192.0.2.10", 80).GetCluster()
	bad.Fwmark = 9
	if _, err := st.Commit(context.Background(), store.Write{Head: snap.Head, Puts: map[string]proto.Message{store.ClusterKey("b"): bad}}); err != nil {
		t.Fatal(err)
	}
	apply(t, s, cluster("c", "edge-1", "192.0.2.10", 443))
	if _, err := s.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "b"}); err != nil {
		t.Errorf("deleting the clashing cluster: %v", err)
	}
}

func TestStaleRevisionRefused(t *testing.T) {
	s, _ := newServer(t)
	first := apply(t, s, group("edge-1", "dir-a"), cluster("web", "edge-1", "192.0.2.10", 80))
	old := first.GetObjects()[1].GetCluster()
	upd := cluster("web", "edge-1", "192.0.2.10", 80)
	upd.GetCluster().Reals[0].Weight = 5
	apply(t, s, upd)
	stale := cluster("web", "edge-1", "192.0.2.10", 80)
	stale.GetCluster().Revision = old.GetRevision()
	stale.GetCluster().Reals[0].Weight = 9
	_, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{stale}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), `cluster "web": revision:`) {
		t.Errorf("stale write: %v, want FailedPrecondition naming cluster \"web\" revision", err)
	}
}

// TestTooLargeRefusedEarly: a write past the embedded etcd's transaction limit is refused
// before validation, naming the limit and how many objects were asked, and stores nothing.
func TestTooLargeRefusedEarly(t *testing.T) {
	s, st := newServer(t)
	objs := []*lvsctlv1.Object{group("edge-1", "dir-a")}
	for i := range 40000 {
		objs = append(objs, cluster(fmt.Sprintf("c%d", i), "edge-1", "192.0.2.10", uint32(1+i%60000)))
	}
	_, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: objs})
	// The objects-per-apply limit (20,000) comes before etcd's (whose operations it stays within).
	limit := fmt.Sprintf("40001 objects in one apply, more than the limit of %d", limits.MaxObjectsPerApply)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), limit) {
		t.Errorf("40,001 objects: %v, want InvalidArgument naming %q", err, limit)
	}
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Groups) != 0 || snap.Head != 0 {
		t.Errorf("the refused write stored %d groups (head %d)", len(snap.Groups), snap.Head)
	}
}

// TestPlansPerGroup: the plan is given once per group with its directors, whatever their
// number; a cluster moved between groups leaves one and joins the other.
func TestPlansPerGroup(t *testing.T) {
	s, _ := newServer(t)
	resp := apply(t, s, group("edge-1", "dir-a", "dir-b", "dir-c"), group("edge-2", "dir-d"), cluster("web", "edge-1", "192.0.2.10", 80))
	want := []*lvsctlv1.GroupPlan{
		{Group: "edge-1", Directors: []string{"dir-a", "dir-b", "dir-c"}, Changes: []string{
			"add cluster web: fwmark 1, wlc, 1 real servers, 1 VIPs x 1 port ranges", `vip interface: "" -> "eth0"`}},
		{Group: "edge-2", Directors: []string{"dir-d"}, Changes: []string{`vip interface: "" -> "eth0"`}},
	}
	if !plansEqual(resp.GetPlans(), want) {
		t.Errorf("plans of the first apply:\n%v\nwant\n%v", resp.GetPlans(), want)
	}
	resp = apply(t, s, cluster("web", "edge-2", "192.0.2.10", 80))
	want = []*lvsctlv1.GroupPlan{
		{Group: "edge-1", Directors: []string{"dir-a", "dir-b", "dir-c"}, Changes: []string{"remove cluster web"}},
		{Group: "edge-2", Directors: []string{"dir-d"}, Changes: []string{"add cluster web: fwmark 1, wlc, 1 real servers, 1 VIPs x 1 port ranges"}},
	}
	if !plansEqual(resp.GetPlans(), want) {
		t.Errorf("plans of the move:\n%v\nwant\n%v", resp.GetPlans(), want)
	}
	del, err := s.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "web", DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	want = []*lvsctlv1.GroupPlan{{Group: "edge-2", Directors: []string{"dir-d"}, Changes: []string{"remove cluster web"}}}
	if !plansEqual(del.GetPlans(), want) {
		t.Errorf("plans of the delete:\n%v\nwant\n%v", del.GetPlans(), want)
	}
}

func plansEqual(a, b []*lvsctlv1.GroupPlan) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// TestFreedMarkIsReused: the lowest free mark is handed out, including one freed by a delete.
func TestFreedMarkIsReused(t *testing.T) {
	s, _ := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), cluster("a", "edge-1", "192.0.2.10", 80), cluster("b", "edge-1", "192.0.2.10", 81), cluster("c", "edge-1", "192.0.2.10", 82))
	if _, err := s.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "a"}); err != nil {
		t.Fatal(err)
	}
	resp := apply(t, s, cluster("d", "edge-1", "192.0.2.10", 83), cluster("e", "edge-1", "192.0.2.10", 84))
	got := []uint32{resp.GetObjects()[0].GetCluster().GetFwmark(), resp.GetObjects()[1].GetCluster().GetFwmark()}
	if got[0] != 1 || got[1] != 4 {
		t.Errorf("marks of d and e: %v, want [1 4] (a's freed 1, then the next after c's 3)", got)
	}
}

// TestWriteBehindTheCacheIsSeen: a write that reached etcd but not yet the cache (another
// writer, straight to the store) cannot be overwritten or ignored: the conditional write
// fails, the cache catches up, and the apply is checked again against it.
func TestWriteBehindTheCacheIsSeen(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"))
	for i := range 20 {
		_, head, err := st.Head(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		other := cluster(fmt.Sprintf("other%d", i), "edge-1", "192.0.2.10", uint32(1000+i)).GetCluster()
		other.Fwmark = uint32(100 + i)
		if _, err := st.Commit(context.Background(), store.Write{Head: head, Puts: map[string]proto.Message{store.ClusterKey(other.GetName()): other}}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{cluster(fmt.Sprintf("mine%d", i), "edge-1", "192.0.2.10", uint32(1000+i))}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), fmt.Sprintf("already used by cluster %q", other.GetName())) {
			t.Fatalf("claiming a port just written behind the cache: %v, want the clash with %s named", err, other.GetName())
		}
	}
}

// TestMarksPerGroup: marks are unique per director group, not per store: a new cluster in a
// second group is allocated mark 1 although the first group uses it, a pinned mark 1 there is
// accepted, and within a group a pinned mark already used is refused naming its cluster.
func TestMarksPerGroup(t *testing.T) {
	s, _ := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), group("edge-2", "dir-b"), cluster("a", "edge-1", "192.0.2.10", 80), cluster("b", "edge-1", "192.0.2.10", 81))
	resp := apply(t, s, cluster("c", "edge-2", "192.0.2.20", 80), cluster("d", "edge-1", "192.0.2.10", 82))
	if got := []uint32{resp.GetObjects()[0].GetCluster().GetFwmark(), resp.GetObjects()[1].GetCluster().GetFwmark()}; got[0] != 1 || got[1] != 3 {
		t.Errorf("marks of c (edge-2) and d (edge-1): %v, want [1 3]", got)
	}
	pinned := cluster("e", "edge-2", "192.0.2.20", 81)
	pinned.GetCluster().Fwmark = 2
	if got := apply(t, s, pinned).GetObjects()[0].GetCluster().GetFwmark(); got != 2 {
		t.Errorf("pinned mark 2 in edge-2 (edge-1's b has 2) stored as %d", got)
	}
	clash := cluster("f", "edge-1", "192.0.2.10", 83)
	clash.GetCluster().Fwmark = 2
	_, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{clash}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `fwmark: 2 is already used by cluster "b" of group "edge-1"`) {
		t.Errorf("mark 2 twice in edge-1: %v, want InvalidArgument naming cluster b", err)
	}
}

package config

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// whoKey carries the caller's name in a test's context, as the auth interceptor's identity
// would.
type whoKey struct{}

func as(name string) context.Context { return context.WithValue(context.Background(), whoKey{}, name) }

// newHistoryServer is a server that records who from the context, and its etcd client.
func newHistoryServer(t *testing.T) (*Server, *store.Store, *clientv3.Client) {
	st, client := storetest.StartClient(t)
	s := NewServer(st, storetest.Cache(t, st), slog.New(slog.DiscardHandler)).WithWho(func(ctx context.Context) string {
		who, _ := ctx.Value(whoKey{}).(string)
		return who
	})
	return s, st, client
}

func history(t *testing.T, s *Server, kind lvsctlv1.Kind, name string) []*lvsctlv1.HistoryEntry {
	t.Helper()
	resp, err := s.History(context.Background(), &lvsctlv1.HistoryRequest{Kind: kind, Name: name})
	if err != nil {
		t.Fatalf("history %s: %v", name, err)
	}
	return resp.GetEntries()
}

// line is an entry as an operator reads it: revision, who, action, changes, the weight of
// the first real server as recorded (or "absent").
func line(e *lvsctlv1.HistoryEntry) string {
	obj := "absent"
	if c := e.GetObject().GetCluster(); c != nil {
		obj = fmt.Sprintf("weight %d", c.GetReals()[0].GetWeight())
	} else if g := e.GetObject().GetGroup(); g != nil {
		obj = "group " + g.GetName()
	}
	action := strings.TrimPrefix(e.GetAction().String(), "HISTORY_ACTION_")
	if e.GetRolledBackTo() != 0 {
		action += fmt.Sprintf(" %d", e.GetRolledBackTo())
	}
	return fmt.Sprintf("%d %s %s %q %s", e.GetRevision(), e.GetWho(), action, e.GetChanges(), obj)
}

func lines(entries []*lvsctlv1.HistoryEntry) string {
	var s []string
	for _, e := range entries {
		s = append(s, line(e))
	}
	return strings.Join(s, "\n")
}

func weighted(w uint32) *lvsctlv1.Object {
	o := cluster("wms", "edge-1", "192.0.2.10", 554)
	o.GetCluster().Reals[0].Weight = w
	return o
}

func applyAs(t *testing.T, who string, s *Server, objs ...*lvsctlv1.Object) int64 {
	t.Helper()
	resp, err := s.Apply(as(who), &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return resp.GetRevision()
}

// TestHistoryRecordsEveryChange: apply (create, update), drain, enable and delete each record
// who, when, what and the resulting revision, newest first; an unchanged apply, a dry run
// and a refused write record nothing.
func TestHistoryRecordsEveryChange(t *testing.T) {
	s, _, _ := newHistoryServer(t)
	start := time.Now().UnixMilli()
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"), weighted(1))
	r2 := applyAs(t, "bob", s, weighted(5))
	if r := applyAs(t, "bob", s, weighted(5)); r != r2 {
		t.Fatalf("unchanged apply moved the revision %d -> %d", r2, r)
	}
	if _, err := s.Apply(as("bob"), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{weighted(7)}, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(as("mallory"), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{cluster("wms", "no-such-group", "192.0.2.10", 554)}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("refused apply: %v", err)
	}
	d, err := s.Drain(as("carol"), &lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.1", Drained: true})
	if err != nil {
		t.Fatal(err)
	}
	r3 := d.GetCluster().GetRevision()
	e, err := s.Drain(as("carol"), &lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.1", Drained: false})
	if err != nil {
		t.Fatal(err)
	}
	r4 := e.GetCluster().GetRevision()
	del, err := s.Delete(as(""), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatal(err)
	}
	r5 := del.GetRevision()
	end := time.Now().UnixMilli()

	got := history(t, s, lvsctlv1.Kind_KIND_CLUSTER, "wms")
	want := strings.Join([]string{
		fmt.Sprintf(`%d unknown DELETED [] absent`, r5),
		fmt.Sprintf(`%d carol ENABLED ["real 198.51.100.1 drained: true -> false"] weight 5`, r4),
		fmt.Sprintf(`%d carol DRAINED ["real 198.51.100.1 drained: false -> true"] weight 5`, r3),
		fmt.Sprintf(`%d bob UPDATED ["real 198.51.100.1 weight: 1 -> 5"] weight 5`, r2),
		fmt.Sprintf(`%d alice CREATED ["group edge-1, fwmark 1, wlc, 1 real servers, 1 VIPs x 1 port ranges"] weight 1`, r1),
	}, "\n")
	if lines(got) != want {
		t.Errorf("history:\n%s\nwant:\n%s", lines(got), want)
	}
	for _, e := range got {
		if e.GetTimeUnixMs() < start || e.GetTimeUnixMs() > end {
			t.Errorf("entry %d at %d, not within the test's %d..%d", e.GetRevision(), e.GetTimeUnixMs(), start, end)
		}
	}
	if g := history(t, s, lvsctlv1.Kind_KIND_GROUP, "edge-1"); lines(g) != fmt.Sprintf(`%d alice CREATED ["directors dir-a/200, vip interface \"eth0\""] group edge-1`, r1) {
		t.Errorf("group history:\n%s", lines(g))
	}
	resp, err := s.History(context.Background(), &lvsctlv1.HistoryRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", Limit: 2})
	if err != nil || len(resp.GetEntries()) != 2 || resp.GetEntries()[0].GetRevision() != r5 {
		t.Errorf("limit 2: %v %v", err, lines(resp.GetEntries()))
	}
}

// TestRollback: a rollback restores the value a listed revision recorded, as a new
// revision through apply's path (the fwmark kept), recorded as a rollback by its caller; a
// dry run returns the plan and changes nothing.
func TestRollback(t *testing.T) {
	s, st, _ := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"), weighted(1))
	r2 := applyAs(t, "bob", s, weighted(5))

	dry, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if p := dry.GetResult().GetPlans(); len(p) != 1 || !slices.Equal(p[0].GetChanges(), []string{"cluster wms: real 198.51.100.1 weight: 5 -> 1"}) {
		t.Errorf("dry-run plan: %v", p)
	}
	if snap := load(t, st); snap.Revision != r2 || snap.Clusters["wms"].GetReals()[0].GetWeight() != 5 {
		t.Errorf("dry run changed the store: revision %d (want %d), weight %d", snap.Revision, r2, snap.Clusters["wms"].GetReals()[0].GetWeight())
	}
	if n := len(history(t, s, lvsctlv1.Kind_KIND_CLUSTER, "wms")); n != 2 {
		t.Errorf("dry run recorded history: %d entries", n)
	}

	rb, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	r3 := rb.GetResult().GetRevision()
	if r3 <= r2 || rb.GetResult().GetResults()[0].GetAction() != lvsctlv1.Action_ACTION_UPDATED {
		t.Errorf("rollback: revision %d after %d, result %v", r3, r2, rb.GetResult().GetResults())
	}
	stored := load(t, st).Clusters["wms"]
	if stored.GetReals()[0].GetWeight() != 1 || stored.GetFwmark() != 1 || stored.GetRevision() != r3 {
		t.Errorf("stored after rollback: %v", stored)
	}
	got := history(t, s, lvsctlv1.Kind_KIND_CLUSTER, "wms")[0]
	if want := fmt.Sprintf(`%d alice ROLLED_BACK %d ["real 198.51.100.1 weight: 5 -> 1"] weight 1`, r3, r1); line(got) != want {
		t.Errorf("newest entry %s, want %s", line(got), want)
	}
	// Rolling back to what is stored changes nothing.
	again, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1})
	if err != nil || again.GetResult().GetResults()[0].GetAction() != lvsctlv1.Action_ACTION_UNCHANGED || load(t, st).Revision != r3 {
		t.Errorf("second rollback to %d: %v %v", r1, err, again)
	}
}

// TestRollbackRefusedLikeApply: a rollback that would now conflict (its old VIP and port
// taken by another cluster since) is refused with apply's field error, and writes nothing.
func TestRollbackRefusedLikeApply(t *testing.T) {
	s, st, _ := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"), cluster("wms", "edge-1", "192.0.2.10", 554))
	applyAs(t, "alice", s, cluster("wms", "edge-1", "192.0.2.20", 554))
	r3 := applyAs(t, "bob", s, cluster("web", "edge-1", "192.0.2.10", 554))
	_, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `cluster "wms"`) || !strings.Contains(err.Error(), `already used by cluster "web"`) {
		t.Errorf("conflicting rollback: %v, want InvalidArgument naming the VIP taken by cluster \"web\"", err)
	}
	if snap := load(t, st); snap.Revision != r3 || snap.Clusters["wms"].GetVips()[0] != "192.0.2.20" {
		t.Errorf("refused rollback wrote: revision %d (want %d), vips %v", snap.Revision, r3, snap.Clusters["wms"].GetVips())
	}
}

// TestRollbackToDeletion: a deleted object keeps its history; rolling back to a version of it
// re-creates it, rolling back to its deletion deletes it again.
func TestRollbackToDeletion(t *testing.T) {
	s, st, _ := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"), weighted(3))
	del, err := s.Delete(as("bob"), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	if res := rb.GetResult().GetResults()[0]; res.GetAction() != lvsctlv1.Action_ACTION_CREATED {
		t.Errorf("rollback of a deleted cluster: %v, want created", res)
	}
	if c, ok := load(t, st).Clusters["wms"]; !ok || c.GetReals()[0].GetWeight() != 3 || c.GetFwmark() == 0 {
		t.Errorf("re-created: %v", c)
	}
	dry, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: del.GetRevision(), DryRun: true})
	if err != nil || dry.GetResult().GetResults()[0].GetAction() != lvsctlv1.Action_ACTION_DELETED || len(dry.GetResult().GetPlans()) != 1 {
		t.Fatalf("dry-run rollback to the deletion: %v %v", err, dry)
	}
	if _, ok := load(t, st).Clusters["wms"]; !ok {
		t.Fatal("a dry run deleted the cluster")
	}
	gone, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: del.GetRevision()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := load(t, st).Clusters["wms"]; ok {
		t.Error("rollback to the deletion left the cluster")
	}
	if got := line(history(t, s, lvsctlv1.Kind_KIND_CLUSTER, "wms")[0]); got != fmt.Sprintf("%d alice ROLLED_BACK %d [] absent", gone.GetResult().GetRevision(), del.GetRevision()) {
		t.Errorf("newest entry: %s", got)
	}
}

// TestRollbackToUnknownRevision: a revision the object's history does not list is refused,
// naming the ones it does.
func TestRollbackToUnknownRevision(t *testing.T) {
	s, _, _ := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"), weighted(1))
	r2 := applyAs(t, "alice", s, weighted(2))
	_, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1 + 100})
	want := fmt.Sprintf(`cluster "wms": revision not in history: %d; its history holds revisions %d, %d (lvsctl history cluster wms)`, r1+100, r2, r1)
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != want {
		t.Errorf("got %v\nwant NotFound: %s", err, want)
	}
	_, err = s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "nope", ToRevision: r1})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `cluster "nope": revision not in history: `+fmt.Sprint(r1)+": the object has no recorded history") {
		t.Errorf("rollback of an object without history: %v", err)
	}
	for _, req := range []*lvsctlv1.RollbackRequest{
		{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"},
		{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "w/ms", ToRevision: r1},
		{Name: "wms", ToRevision: r1},
	} {
		if _, err := s.Rollback(as("alice"), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("rollback %v: %v, want InvalidArgument", req, err)
		}
	}
}

// TestHistoryRetentionKeepsNewest: with a retention of 3, an object keeps its 3 newest
// entries, and a rollback to a trimmed revision names the ones kept.
func TestHistoryRetentionKeepsNewest(t *testing.T) {
	s, _, _ := newHistoryServer(t)
	s.WithHistoryRetention(3)
	first := applyAs(t, "alice", s, group("edge-1", "dir-a"), weighted(1))
	var revs []int64
	for w := uint32(2); w <= 6; w++ {
		revs = append(revs, applyAs(t, "alice", s, weighted(w)))
	}
	got := history(t, s, lvsctlv1.Kind_KIND_CLUSTER, "wms")
	var gotRevs []int64
	for _, e := range got {
		gotRevs = append(gotRevs, e.GetRevision())
	}
	if want := []int64{revs[4], revs[3], revs[2]}; !slices.Equal(gotRevs, want) {
		t.Errorf("kept revisions %v, want %v", gotRevs, want)
	}
	if _, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: first}); status.Code(err) != codes.NotFound {
		t.Errorf("rollback to a trimmed revision: %v, want NotFound", err)
	}
}

// TestHistoryAndRollbackSurviveCompaction: once etcd is compacted past every revision, the
// history still lists them and a rollback to the oldest restores its value.
func TestHistoryAndRollbackSurviveCompaction(t *testing.T) {
	s, st, client := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"), weighted(1))
	applyAs(t, "alice", s, weighted(2))
	r3 := applyAs(t, "alice", s, weighted(3))
	if _, err := client.Compact(context.Background(), r3, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// etcd itself no longer has revision r1.
	if _, err := client.Get(context.Background(), store.ClusterKey("wms"), clientv3.WithRev(r1)); err == nil {
		t.Fatal("etcd still serves the compacted revision: the test shows nothing")
	}
	if n := len(history(t, s, lvsctlv1.Kind_KIND_CLUSTER, "wms")); n != 3 {
		t.Errorf("history after compaction: %d entries, want 3", n)
	}
	if _, err := s.Rollback(as("alice"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms", ToRevision: r1}); err != nil {
		t.Fatal(err)
	}
	if w := load(t, st).Clusters["wms"].GetReals()[0].GetWeight(); w != 1 {
		t.Errorf("weight after rollback to %d: %d, want 1", r1, w)
	}
}

type fakeFailover struct{ resp *lvsctlv1.FailoverResponse }

func (f fakeFailover) Failover(context.Context, string, string) (*lvsctlv1.FailoverResponse, error) {
	return proto.CloneOf(f.resp), nil
}

// TestFailoverRecorded: a planned failover records who asked and the outcome in the group's
// history, with the group as it is.
func TestFailoverRecorded(t *testing.T) {
	s, _, _ := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a", "dir-b"))
	f := s.WithFailover(fakeFailover{resp: &lvsctlv1.FailoverResponse{Previous: "dir-a", ReleasedAfterMs: 120,
		Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 4}}})
	if _, err := f.Failover(as("olga"), &lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}); err != nil {
		t.Fatal(err)
	}
	got := history(t, s, lvsctlv1.Kind_KIND_GROUP, "edge-1")
	if len(got) != 2 || got[0].GetRevision() <= r1 || got[0].GetObject().GetGroup().GetName() != "edge-1" {
		t.Fatalf("group history:\n%s", lines(got))
	}
	if want := fmt.Sprintf(`%d olga FAILOVER ["active: dir-a -> dir-b (epoch 4, old ACTIVE released after 120ms)"] group edge-1`, got[0].GetRevision()); line(got[0]) != want {
		t.Errorf("failover entry %s, want %s", line(got[0]), want)
	}
}

// TestRollbackGroup: a group rolls back like a cluster, its roles untouched by the write.
func TestRollbackGroup(t *testing.T) {
	s, st, _ := newHistoryServer(t)
	r1 := applyAs(t, "alice", s, group("edge-1", "dir-a"))
	moved := group("edge-1", "dir-a")
	moved.GetGroup().VipInterface = "eth1"
	r2 := applyAs(t, "alice", s, moved)
	rb, err := s.Rollback(as("bob"), &lvsctlv1.RollbackRequest{Kind: lvsctlv1.Kind_KIND_GROUP, Name: "edge-1", ToRevision: r1})
	if err != nil {
		t.Fatal(err)
	}
	snap := load(t, st)
	if g := snap.Groups["edge-1"]; g.GetVipInterface() != "eth0" || g.GetRevision() != rb.GetResult().GetRevision() || g.GetRevision() <= r2 {
		t.Errorf("group after rollback to %d: %v", r1, g)
	}
	if snap.Roles["edge-1"].GetActive() != "dir-a" {
		t.Errorf("roles after the group's rollback: %v", snap.Roles["edge-1"])
	}
	got := history(t, s, lvsctlv1.Kind_KIND_GROUP, "edge-1")
	if want := fmt.Sprintf(`%d bob ROLLED_BACK %d ["vipInterface: eth1 -> eth0"] group edge-1`, rb.GetResult().GetRevision(), r1); len(got) != 3 || line(got[0]) != want {
		t.Errorf("group history:\n%s\nwant newest: %s", lines(got), want)
	}
}

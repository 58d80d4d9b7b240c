package fanout

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// twoGroups is edge-1 (dir-a, dir-b) with clusters c0..c{n-1}, and edge-2 (dir-c) with one
// cluster; weight goes to every real of edge-1's clusters.
func twoGroups(n int, weight uint32, edge1 ...string) []*lvsctlv1.Object {
	if edge1 == nil {
		edge1 = []string{"dir-a", "dir-b"}
	}
	var members []*lvsctlv1.Director
	for i, d := range edge1 {
		members = append(members, &lvsctlv1.Director{Name: d, Priority: 100, Address: fmt.Sprintf("192.0.2.%d", i+1)})
	}
	objs := []*lvsctlv1.Object{
		{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0", Directors: members}}},
		{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{Name: "edge-2", VipInterface: "eth0",
			Directors: []*lvsctlv1.Director{{Name: "dir-c", Priority: 100}}}}},
		{Kind: &lvsctlv1.Object_Cluster{Cluster: testCluster("other", "edge-2", 0, 1)}},
	}
	for i := range n {
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: testCluster(fmt.Sprintf("c%d", i), "edge-1", i+1, weight)}})
	}
	return objs
}

func testCluster(name, group string, i int, weight uint32) *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{Name: name, DirectorGroup: group, Vips: []string{fmt.Sprintf("192.0.2.%d", 10+i)},
		Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Ports: []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 554, Last: 554}},
		Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: weight}, {Address: "198.51.100.2", Weight: 1}}}
}

func (h *harness) apply(t *testing.T, objs []*lvsctlv1.Object) int64 {
	t.Helper()
	resp, err := h.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		t.Fatal(err)
	}
	h.caughtUp(t, resp.GetRevision())
	return resp.GetRevision()
}

// TestGroupSharesOneEncoding: the directors of a group get the same snapshot and the same
// delta, built and encoded once; a delta names only the cluster that changed; another
// group's directors get nothing for it.
func TestGroupSharesOneEncoding(t *testing.T) {
	h := start(t)
	rev := h.apply(t, twoGroups(3, 1))
	streams := map[string]lvsctlv1.AgentService_ConnectClient{}
	snaps := map[string]*lvsctlv1.Snapshot{}
	for _, d := range []string{"dir-a", "dir-b", "dir-c"} {
		streams[d] = h.connect(t, d)
		snaps[d] = next(t, streams[d]).GetSnapshot()
	}
	if !proto.Equal(snaps["dir-a"], snaps["dir-b"]) || len(snaps["dir-a"].GetState().GetClusters()) != 3 || snaps["dir-a"].GetRevision() != rev {
		t.Fatalf("edge-1's snapshots differ or are wrong: %v / %v", snaps["dir-a"], snaps["dir-b"])
	}
	if len(snaps["dir-c"].GetState().GetClusters()) != 1 {
		t.Fatalf("edge-2's snapshot: %v", snaps["dir-c"])
	}
	h.hub.mu.Lock()
	f := h.hub.state.feeds["edge-1"]
	h.hub.mu.Unlock()
	a, _ := h.hub.next("dir-a", sent{}, true)
	b, _ := h.hub.next("dir-b", sent{}, true)
	if len(a) != 1 || a[0] != b[0] || a[0] != f.snap {
		t.Errorf("dir-a and dir-b were given different snapshot messages: the group's state is built per director")
	}

	objs := twoGroups(3, 1)
	objs[4].GetCluster().Reals[0].Weight = 9 // c1
	rev2 := h.apply(t, objs)
	for _, d := range []string{"dir-a", "dir-b"} {
		delta := next(t, streams[d]).GetDelta()
		if delta.GetPrevRevision() != rev || delta.GetRevision() != rev2 || len(delta.GetUpserted()) != 1 ||
			delta.GetUpserted()[0].GetName() != "c1" || len(delta.GetDeleted()) != 0 || delta.GetGroup() != nil {
			t.Fatalf("%s: %v, want a delta %d -> %d upserting only c1", d, delta, rev, rev2)
		}
	}
	da, _ := h.hub.next("dir-a", sent{started: true, group: "edge-1", revision: rev}, false)
	db, _ := h.hub.next("dir-b", sent{started: true, group: "edge-1", revision: rev}, false)
	if len(da) != 1 || da[0] != db[0] {
		t.Errorf("dir-a and dir-b were given different delta messages")
	}
	// dir-c's group did not change: its next message is the heartbeat-free silence; ask
	// for a snapshot and see that it is still at its old revision.
	if err := streams["dir-c"].Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_SnapshotRequest{SnapshotRequest: &lvsctlv1.SnapshotRequest{}}}); err != nil {
		t.Fatal(err)
	}
	if s := next(t, streams["dir-c"]).GetSnapshot(); s.GetRevision() != snaps["dir-c"].GetRevision() {
		t.Errorf("dir-c got %v after an edge-1 change, want its snapshot at %d again (nothing else)", s, snaps["dir-c"].GetRevision())
	}
}

// TestBehindAgentGetsWhatItMissed: an agent a few revisions behind gets each delta it
// missed, in order; one further behind than the group's log gets a snapshot.
func TestBehindAgentGetsWhatItMissed(t *testing.T) {
	h := start(t)
	rev := h.apply(t, twoGroups(2, 1))
	var revs []int64
	for w := range uint32(3) {
		revs = append(revs, h.apply(t, twoGroups(2, w+2)))
	}
	msgs, now := h.hub.next("dir-a", sent{started: true, group: "edge-1", revision: rev}, false)
	if len(msgs) != 3 || now.revision != revs[2] {
		t.Fatalf("3 revisions behind: %d messages to %d, want 3 deltas to %d", len(msgs), now.revision, revs[2])
	}
	prev := rev
	for i, m := range msgs {
		d := m.msg.GetDelta()
		if d.GetPrevRevision() != prev || d.GetRevision() != revs[i] || d.GetUpserted()[0].GetReals()[0].GetWeight() != uint32(i+2) {
			t.Fatalf("delta %d: %v, want %d -> %d with weight %d", i, d, prev, revs[i], i+2)
		}
		prev = d.GetRevision()
	}
	for w := range uint32(deltaLog) {
		h.apply(t, twoGroups(2, w+10))
	}
	msgs, _ = h.hub.next("dir-a", sent{started: true, group: "edge-1", revision: rev}, false)
	if len(msgs) != 1 || msgs[0].msg.GetSnapshot() == nil {
		t.Fatalf("%d revisions behind: %v, want one snapshot", deltaLog+3, msgs)
	}
	if got := msgs[0].msg.GetSnapshot().GetState().GetClusters()[0].GetReals()[0].GetWeight(); got != deltaLog+9 {
		t.Errorf("snapshot has weight %d, want the latest %d", got, deltaLog+9)
	}
}

// TestMembershipChangeSendsTheNewGroup: a director that joins a group gets its snapshot;
// one that leaves every group gets the empty state at revision 0 (which the agent refuses
// to apply over a working data plane).
func TestMembershipChangeSendsTheNewGroup(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(2, 1))
	s := h.connect(t, "dir-x")
	if snap := next(t, s).GetSnapshot(); snap.GetRevision() != 0 || len(snap.GetState().GetClusters()) != 0 {
		t.Fatalf("a director in no group got %v, want the empty state at 0", snap)
	}
	rev := h.apply(t, twoGroups(2, 1, "dir-a", "dir-x"))
	if snap := next(t, s).GetSnapshot(); snap.GetRevision() != rev || len(snap.GetState().GetClusters()) != 2 {
		t.Fatalf("after joining edge-1: %v, want its snapshot at %d", snap, rev)
	}
	h.apply(t, twoGroups(2, 1, "dir-a"))
	if snap := next(t, s).GetSnapshot(); snap.GetRevision() != 0 || len(snap.GetState().GetClusters()) != 0 {
		t.Fatalf("after leaving edge-1: %v, want the empty state at 0", snap)
	}
}

// TestSnapshotOfTenThousandClustersFits: the largest group the benchmarks promise, 10,000
// clusters of 10 real servers, is a snapshot well within the stream's limit (and over
// gRPC's default 4 MiB, which is why the limit is raised).
func TestSnapshotOfTenThousandClustersFits(t *testing.T) {
	n := proto.Size(bigSnapshot(10000, 10))
	t.Logf("snapshot of 10,000 clusters x 10 reals: %d bytes", n)
	if n > MaxMessageBytes/4 {
		t.Errorf("snapshot is %d bytes: less than 4x headroom under MaxMessageBytes %d", n, MaxMessageBytes)
	}
}

// bigSnapshot is a group of n WMS-like clusters (one VIP, five port ranges) of reals each.
func bigSnapshot(n, reals int) *lvsctlv1.ConnectResponse {
	g := &groups{snap: store.NewSnapshot(), clusters: map[string]map[string]*lvsctlv1.Cluster{}, feeds: map[string]*feed{}}
	g.snap.Groups["edge-1"] = &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0", Revision: 7,
		Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}, {Name: "dir-b", Priority: 100}}}
	g.snap.Generations["edge-1"] = 123456
	for i := range n {
		c := &lvsctlv1.Cluster{Name: fmt.Sprintf("cluster-%05d", i), DirectorGroup: "edge-1", Revision: 123456,
			Vips: []string{fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255)}, Fwmark: uint32(i + 1),
			Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ, Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600}}
		for _, p := range [][3]uint32{{6, 554, 554}, {17, 554, 554}, {6, 1755, 1755}, {17, 1755, 1755}, {17, 1024, 5000}} {
			proto := lvsctlv1.Protocol_PROTOCOL_TCP
			if p[0] == 17 {
				proto = lvsctlv1.Protocol_PROTOCOL_UDP
			}
			c.Ports = append(c.Ports, &lvsctlv1.PortRange{Protocol: proto, First: p[1], Last: p[2]})
		}
		for r := range reals {
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("172.16.%d.%d", r, i&255), Weight: 100})
		}
		g.snap.Clusters[c.Name] = c
		g.add(c.Name, c)
	}
	g.feeds["edge-1"] = g.newFeed("edge-1", nil)
	return g.snapshotOf(g.feeds["edge-1"]).msg
}

// BenchmarkSnapshotSize reports the bytes and encoding time of one group's snapshot at
// 10,000 clusters x 10 reals: encoded once per revision, whatever the number of directors.
func BenchmarkSnapshotSize(b *testing.B) {
	m := bigSnapshot(10000, 10)
	var size int
	start := time.Now()
	for range b.N {
		out, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		size = len(out)
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB")
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/encode")
}

// TestOversizeSnapshotIsRefusedWithItsSize: a group's snapshot over the stream's limit is
// not sent (the agent would refuse it with a bare "larger than max"): the stream ends with
// ResourceExhausted naming the group, its size, the limit and what to do; a group that fits
// is served as usual.
func TestOversizeSnapshotIsRefusedWithItsSize(t *testing.T) {
	h := startWith(t, Config{MaxMessageBytes: 300})
	h.apply(t, twoGroups(5, 1))
	if snap := next(t, h.connect(t, "dir-c")).GetSnapshot(); len(snap.GetState().GetClusters()) != 1 {
		t.Fatalf("edge-2 (small): %v, want its snapshot", snap)
	}
	s := h.connect(t, "dir-a")
	for {
		m, err := s.Recv()
		if err == nil {
			if m.GetSnapshot() != nil {
				t.Fatalf("edge-1's snapshot was sent although over the limit: %d bytes", proto.Size(m))
			}
			continue
		}
		st := status.Convert(err)
		if st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "director group edge-1") ||
			!strings.Contains(st.Message(), "limit of 300 bytes") || !strings.Contains(st.Message(), "split") {
			t.Fatalf("stream ended with %v, want ResourceExhausted naming edge-1, the limit and what to do", err)
		}
		return
	}
}

package fleet

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func realStats(addr string, active, inactive, persistent uint32, conns uint64) *lvsctlv1.RealServerStats {
	return &lvsctlv1.RealServerStats{Address: addr, ActiveConns: active, InactiveConns: inactive, PersistentConns: persistent, Counters: &lvsctlv1.Counters{Conns: conns}}
}

func TestAggregateSumsAcrossDirectors(t *testing.T) {
	dirs := []*lvsctlv1.DirectorStatus{
		{Director: "dir-a", Clusters: []*lvsctlv1.ClusterStats{
			{Cluster: "wms", Fwmark: 1, Counters: &lvsctlv1.Counters{Conns: 10, InBytes: 100},
				Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.1", 3, 1, 2, 6), realStats("198.51.100.2", 2, 0, 1, 4)}},
			{Cluster: "web", Fwmark: 2, Counters: &lvsctlv1.Counters{Conns: 1}, Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.9", 1, 0, 0, 1)}},
		}},
		{Director: "dir-b", Clusters: []*lvsctlv1.ClusterStats{
			{Cluster: "wms", Fwmark: 1, Counters: &lvsctlv1.Counters{Conns: 5, InBytes: 50},
				Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.1", 1, 1, 1, 5), realStats("198.51.100.3", 4, 0, 0, 0)}},
		}},
		{Director: "dir-c"}, // connected but reports nothing
	}
	got := Aggregate(dirs)
	if len(got) != 2 || got[0].GetCluster() != "web" || got[1].GetCluster() != "wms" {
		t.Fatalf("clusters = %v, want [web wms] sorted", got)
	}
	wms := got[1]
	if wms.GetCounters().GetConns() != 15 || wms.GetCounters().GetInBytes() != 150 {
		t.Errorf("wms counters = %v, want conns 15 inBytes 150", wms.GetCounters())
	}
	want := []struct {
		addr                         string
		active, inactive, persistent uint32
		conns                        uint64
	}{
		{"198.51.100.1", 4, 2, 3, 11},
		{"198.51.100.2", 2, 0, 1, 4},
		{"198.51.100.3", 4, 0, 0, 0},
	}
	if len(wms.GetReals()) != len(want) {
		t.Fatalf("wms reals = %v", wms.GetReals())
	}
	for i, w := range want {
		r := wms.GetReals()[i]
		if r.GetAddress() != w.addr || r.GetActiveConns() != w.active || r.GetInactiveConns() != w.inactive || r.GetPersistentConns() != w.persistent || r.GetCounters().GetConns() != w.conns {
			t.Errorf("real %d = %v, want %+v", i, r, w)
		}
	}
}

func TestReportMergesDeltas(t *testing.T) {
	f := New()
	f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}})
	f.Report("dir-a", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{{Cluster: "a"}, {Cluster: "b"}}})
	f.Report("dir-a", &lvsctlv1.StatusReport{Changed: []*lvsctlv1.ClusterStats{{Cluster: "b", Fwmark: 9}}, Removed: []string{"a"}})
	got := f.List("")[0].GetClusters()
	if len(got) != 1 || got[0].GetCluster() != "b" || got[0].GetFwmark() != 9 {
		t.Errorf("after delta: %v, want only b with fwmark 9", got)
	}
	f.Report("dir-a", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{{Cluster: "c"}}})
	if got := f.List("")[0].GetClusters(); len(got) != 1 || got[0].GetCluster() != "c" {
		t.Errorf("a full report must replace everything: %v", got)
	}
	if got := f.List("nothing")[0].GetClusters(); len(got) != 0 {
		t.Errorf("filter by an unknown cluster kept %v", got)
	}
}

// TestSlowWatcherDoesNotBlock: a watcher that never reads must not slow updates nor the
// other watchers, and a reading watcher ends up with the latest state.
func TestSlowWatcherDoesNotBlock(t *testing.T) {
	f := New()
	f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	NewServer(f).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := lvsctlv1.NewStatusServiceClient(conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The slow one reads its first view, so it is registered, and then never reads again.
	slow, err := client.Watch(ctx, &lvsctlv1.StatusServiceWatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Recv(); err != nil {
		t.Fatal(err)
	}
	fast, err := client.Watch(ctx, &lvsctlv1.StatusServiceWatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fast.Recv(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	watchers := len(f.watchers)
	f.mu.Unlock()
	if watchers != 2 {
		t.Fatalf("%d watchers registered before the updates, want 2", watchers)
	}
	// Big reports fill the slow watcher's flow-control window quickly.
	big := &lvsctlv1.ClusterStats{Cluster: "wms"}
	for i := range 2000 {
		big.Reals = append(big.Reals, realStats("198.51.100.1", uint32(i), 0, 0, 0))
	}
	start := time.Now()
	const updates = 300
	for i := range updates {
		f.Update("dir-a", func(d *lvsctlv1.DirectorStatus) { d.AppliedRevision = int64(i + 1) })
		f.Report("dir-a", &lvsctlv1.StatusReport{Changed: []*lvsctlv1.ClusterStats{big}})
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("%d updates took %v with a stalled watcher", updates, took)
	}
	deadline := time.After(10 * time.Second)
	for {
		got := make(chan *lvsctlv1.StatusServiceWatchResponse, 1)
		errc := make(chan error, 1)
		go func() {
			m, err := fast.Recv()
			if err != nil {
				errc <- err
				return
			}
			got <- m
		}()
		select {
		case m := <-got:
			if m.GetDirector().GetAppliedRevision() == updates {
				return
			}

		case err := <-errc:
			t.Fatal(err)
		case <-deadline:
			t.Fatal("the reading watcher never saw the latest revision")
		}
	}
}

// TestWatchStartsWithTheWholeFleet: the first message is the complete fleet, and a change
// right after it (here a director forgotten) is never lost between the two.
func TestWatchStartsWithTheWholeFleet(t *testing.T) {
	f := New()
	f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}})
	f.Update("dir-x", func(d *lvsctlv1.DirectorStatus) { d.Connected = true }) // connected, in no group
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	NewServer(f).Register(srv)
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := lvsctlv1.NewStatusServiceClient(conn).Watch(context.Background(), &lvsctlv1.StatusServiceWatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range first.GetInitial().GetDirectors() {
		names = append(names, d.GetDirector())
	}
	if len(names) != 2 || names[0] != "dir-a" || names[1] != "dir-x" || first.GetDirector() != nil {
		t.Fatalf("first message = %v, want the initial fleet [dir-a dir-x] only", first)
	}
	f.Disconnected("dir-x")
	next, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if next.GetDirector().GetDirector() != "dir-x" || next.GetDirector().GetConnected() {
		t.Errorf("after forgetting dir-x: %v, want dir-x with only its name", next)
	}
}

// BenchmarkReport measures the controller's side of one sampling period of one director
// with 10,000 clusters of 10 real servers: merging its report (decoded from the wire, as the
// stream delivers it) into the registry.
func BenchmarkReport(b *testing.B) {
	full := &lvsctlv1.StatusReport{Full: true}
	for i := range 10000 {
		cs := &lvsctlv1.ClusterStats{Cluster: fmt.Sprintf("c%d", i), Fwmark: uint32(i + 1), Counters: &lvsctlv1.Counters{}}
		for r := range 10 {
			cs.Reals = append(cs.Reals, realStats(fmt.Sprintf("198.51.100.%d", r+1), uint32(r), 0, 0, 0))
		}
		full.Changed = append(full.Changed, cs)
	}
	busy := &lvsctlv1.StatusReport{Changed: full.Changed[:100]}
	for _, tc := range []struct {
		name string
		rep  *lvsctlv1.StatusReport
	}{{"1pct-busy", busy}, {"full", full}} {
		b.Run(tc.name, func(b *testing.B) {
			wire, err := proto.Marshal(tc.rep)
			if err != nil {
				b.Fatal(err)
			}
			f := New()
			f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}})
			f.Report("dir-a", full)
			b.ResetTimer()
			for range b.N {
				rep := &lvsctlv1.StatusReport{}
				if err := proto.Unmarshal(wire, rep); err != nil {
					b.Fatal(err)
				}
				f.Report("dir-a", rep)
			}
			b.ReportMetric(float64(len(wire)), "wire-bytes")
		})
	}
}

// TestDisconnectedDirectorCountsDropped: a configured director whose agent is gone keeps its
// place in the fleet, but its last counts no longer add to the totals.
func TestDisconnectedDirectorCountsDropped(t *testing.T) {
	f := New()
	f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}, "dir-b": {Group: "edge-1"}})
	for _, d := range []string{"dir-a", "dir-b"} {
		f.Update(d, func(s *lvsctlv1.DirectorStatus) { s.Connected = true })
		f.Report(d, &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{
			{Cluster: "wms", Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.1", 5, 0, 0, 0)}}}})
	}
	if got := Aggregate(f.List(""))[0].GetReals()[0].GetActiveConns(); got != 10 {
		t.Fatalf("both connected: %d active, want 10", got)
	}
	f.Disconnected("dir-b")
	dirs := f.List("")
	if len(dirs) != 2 || dirs[1].GetConnected() {
		t.Fatalf("after dir-b left: %v, want dir-b still listed, not connected", dirs)
	}
	if got := Aggregate(dirs)[0].GetReals()[0].GetActiveConns(); got != 5 {
		t.Errorf("after dir-b left: %d active, want only dir-a's 5", got)
	}
}

// TestTotalsFollowReports: each director's totals sum its clusters' connections and rates
// as reports replace, remove and fully renew them, and a view of totals only carries no
// cluster's stats.
func TestTotalsFollowReports(t *testing.T) {
	f := New()
	f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}})
	wms := func(active, cps uint64) *lvsctlv1.ClusterStats {
		return &lvsctlv1.ClusterStats{Cluster: "wms", Counters: &lvsctlv1.Counters{Cps: cps},
			Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.1", uint32(active), 1, 2, 0), realStats("198.51.100.2", 1, 0, 0, 0)}}
	}
	web := &lvsctlv1.ClusterStats{Cluster: "web", Counters: &lvsctlv1.Counters{Cps: 7}, Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.9", 10, 0, 0, 0)}}
	totals := func() *lvsctlv1.DirectorTotals {
		t.Helper()
		ds := f.ListView(View{TotalsOnly: true})
		if len(ds) != 1 || len(ds[0].GetClusters()) != 0 {
			t.Fatalf("totals-only view: %v, want dir-a without cluster stats", ds)
		}
		return ds[0].GetTotals()
	}
	check := func(step string, want *lvsctlv1.DirectorTotals) {
		t.Helper()
		if got := totals(); !proto.Equal(got, want) {
			t.Errorf("%s: totals %v, want %v", step, got, want)
		}
	}
	check("before any report", &lvsctlv1.DirectorTotals{})
	f.Report("dir-a", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{wms(3, 5), web}})
	check("full report", &lvsctlv1.DirectorTotals{Clusters: 2, ActiveConns: 14, InactiveConns: 1, PersistentConns: 2, Cps: 12})
	f.Report("dir-a", &lvsctlv1.StatusReport{Changed: []*lvsctlv1.ClusterStats{wms(0, 1)}})
	check("wms changed", &lvsctlv1.DirectorTotals{Clusters: 2, ActiveConns: 11, InactiveConns: 1, PersistentConns: 2, Cps: 8})
	f.Report("dir-a", &lvsctlv1.StatusReport{Removed: []string{"web", "never-reported"}})
	check("web removed", &lvsctlv1.DirectorTotals{Clusters: 1, ActiveConns: 1, InactiveConns: 1, PersistentConns: 2, Cps: 1})
	f.Report("dir-a", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{web}})
	check("full report again", &lvsctlv1.DirectorTotals{Clusters: 1, ActiveConns: 10, Cps: 7})
	if got := f.List("web")[0]; len(got.GetClusters()) != 1 || got.GetTotals().GetActiveConns() != 10 {
		t.Errorf("one cluster's view: %v, want web's stats and the totals", got)
	}
	f.Disconnected("dir-a")
	check("disconnected", &lvsctlv1.DirectorTotals{})
}

// TestSetConfigWakesOnlyChangedDirectors: the fan-out sets the configuration on every
// change; a watcher must hear of the directors whose desired state moved, not of all.
func TestSetConfigWakesOnlyChangedDirectors(t *testing.T) {
	f := New()
	cfg := map[string]Desired{}
	for i := range 100 {
		cfg[fmt.Sprintf("dir-%03d", i)] = Desired{Group: fmt.Sprintf("g%d", i%10), Revision: 5}
	}
	f.SetConfig(cfg)
	w := &watcher{notify: make(chan struct{}, 1), dirty: map[string]bool{}}
	f.mu.Lock()
	f.watchers[w] = struct{}{}
	f.mu.Unlock()
	next := map[string]Desired{}
	for name, d := range cfg {
		if d.Group == "g3" {
			d.Revision = 6
		}
		next[name] = d
	}
	f.SetConfig(next)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(w.dirty) != 10 {
		t.Errorf("%d directors marked changed, want the 10 of g3: %v", len(w.dirty), w.dirty)
	}
	for name := range w.dirty {
		if f.dirs[name].GetDesiredRevision() != 6 {
			t.Errorf("%s marked changed but its desired revision is %d", name, f.dirs[name].GetDesiredRevision())
		}
	}
}

package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func activeReal(addr string, active uint32) *lvsctlv1.RealServerStats {
	return &lvsctlv1.RealServerStats{Address: addr, ActiveConns: active, Counters: &lvsctlv1.Counters{}}
}

// keptReals lists a director's reals as "cluster/address", in the order the status has them.
func keptReals(d *lvsctlv1.DirectorStatus) []string {
	var out []string
	for _, c := range d.GetClusters() {
		for _, r := range c.GetReals() {
			out = append(out, c.GetCluster()+"/"+r.GetAddress())
		}
	}
	return out
}

// TestTopRealsKeepsEachDirectorsBusiest: each director keeps its N busiest reals, equally
// busy ones by cluster then address, in their clusters' order; the clusters with none kept
// go; totals and errors are the director's, not the kept reals'.
func TestTopRealsKeepsEachDirectorsBusiest(t *testing.T) {
	f := New()
	f.Report("dir-a", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{
		{Cluster: "c", Fwmark: 3, Reals: []*lvsctlv1.RealServerStats{activeReal("10.0.0.1", 9)}},
		{Cluster: "a", Fwmark: 1, Counters: &lvsctlv1.Counters{Cps: 7}, Reals: []*lvsctlv1.RealServerStats{
			activeReal("10.0.0.3", 5), activeReal("10.0.0.1", 5), activeReal("10.0.0.2", 9)}},
		{Cluster: "b", Fwmark: 2, Reals: []*lvsctlv1.RealServerStats{activeReal("10.0.0.1", 5), activeReal("10.0.0.2", 0)}},
	}})
	f.Update("dir-a", func(d *lvsctlv1.DirectorStatus) {
		d.Connected = true
		d.Errors = []*lvsctlv1.ClusterError{{Cluster: "b", Message: "port in use"}}
	})
	f.Report("dir-b", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{
		{Cluster: "b", Reals: []*lvsctlv1.RealServerStats{activeReal("10.0.0.1", 1)}},
	}})
	all := f.ListView(View{})
	got := f.ListView(View{TopReals: 3})
	// Of the three 5s, a/10.0.0.1 comes first (cluster a, then the lower address); a's reals
	// stay in the order the agent reported them.
	if want := []string{"a/10.0.0.1", "a/10.0.0.2", "c/10.0.0.1"}; !slices.Equal(keptReals(got[0]), want) || got[0].GetRealsLeftOut() != 3 {
		t.Errorf("dir-a kept %v, %d left out; want %v, 3 left out", keptReals(got[0]), got[0].GetRealsLeftOut(), want)
	}
	if a := got[0].GetClusters()[0]; a.GetFwmark() != 1 || a.GetCounters().GetCps() != 7 {
		t.Errorf("trimmed cluster a = %v, want its fwmark and counters", a)
	}
	if want := []string{"b/10.0.0.1"}; !slices.Equal(keptReals(got[1]), want) || got[1].GetRealsLeftOut() != 0 {
		t.Errorf("dir-b kept %v, %d left out; want %v, none left out", keptReals(got[1]), got[1].GetRealsLeftOut(), want)
	}
	for i := range all {
		if !proto.Equal(all[i].GetTotals(), got[i].GetTotals()) || !proto.Equal(&lvsctlv1.DirectorStatus{Errors: all[i].GetErrors()}, &lvsctlv1.DirectorStatus{Errors: got[i].GetErrors()}) {
			t.Errorf("%s: totals %v errors %v with top_reals, want %v %v", all[i].GetDirector(), got[i].GetTotals(), got[i].GetErrors(), all[i].GetTotals(), all[i].GetErrors())
		}
	}
	// Trimming copies: the registry still has every real.
	if again := f.ListView(View{}); len(keptReals(again[0])) != 6 {
		t.Errorf("after a trimmed view the registry has %v", keptReals(again[0]))
	}
	// With --cluster, the busiest of that cluster only.
	if one := f.ListView(View{Cluster: "b", TopReals: 1}); !slices.Equal(keptReals(one[0]), []string{"b/10.0.0.1"}) || one[0].GetRealsLeftOut() != 1 {
		t.Errorf("cluster b, top 1: %v, %d left out", keptReals(one[0]), one[0].GetRealsLeftOut())
	}
	if none := f.ListView(View{TotalsOnly: true, TopReals: 3}); len(none[0].GetClusters()) != 0 || none[0].GetRealsLeftOut() != 0 {
		t.Errorf("totals only and top 3: %v", none[0])
	}
}

// TestTopRealsMatchesSortingAll: over many random fleets with many ties, the kept reals are
// exactly the first N of every real sorted by CompareReals.
func TestTopRealsMatchesSortingAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var clusters []*lvsctlv1.ClusterStats
		type row struct {
			cluster string
			r       *lvsctlv1.RealServerStats
		}
		var rows []row
		for c := range rng.IntN(8) {
			cs := &lvsctlv1.ClusterStats{Cluster: fmt.Sprintf("c%02d", c)}
			for r := range rng.IntN(6) {
				rs := activeReal(fmt.Sprintf("10.0.0.%d", r), uint32(rng.IntN(4)))
				cs.Reals = append(cs.Reals, rs)
				rows = append(rows, row{cs.Cluster, rs})
			}
			clusters = append(clusters, cs)
		}
		n := 1 + rng.IntN(10)
		slices.SortFunc(rows, func(a, b row) int { return CompareReals("d", a.cluster, a.r, "d", b.cluster, b.r) })
		want := map[string]bool{}
		for _, r := range rows[:min(n, len(rows))] {
			want[r.cluster+"/"+r.r.GetAddress()] = true
		}
		// The registry hands them over in map order.
		rng.Shuffle(len(clusters), func(i, j int) { clusters[i], clusters[j] = clusters[j], clusters[i] })
		kept, left := topReals(clusters, n)
		got := keptReals(&lvsctlv1.DirectorStatus{Clusters: kept})
		if len(got) != len(want) || int(left) != len(rows)-len(want) {
			t.Fatalf("round %d, top %d of %d: kept %v, %d left out; want %v", round, n, len(rows), got, left, want)
		}
		for _, g := range got {
			if !want[g] {
				t.Fatalf("round %d, top %d: kept %s, not among %v", round, n, g, want)
			}
		}
		if !slices.IsSortedFunc(kept, func(a, b *lvsctlv1.ClusterStats) int { return strings.Compare(a.GetCluster(), b.GetCluster()) }) {
			t.Fatalf("round %d: clusters out of order: %v", round, got)
		}
	}
}

// TestWatchTopRealsAtScale: with thousands of clusters per director, the watch's first
// message and each change carry only N reals per director, however many there are.
func TestWatchTopRealsAtScale(t *testing.T) {
	const directors, clusters, reals, top = 3, 2000, 10, 25
	f := New()
	for d := range directors {
		var cs []*lvsctlv1.ClusterStats
		for c := range clusters {
			st := &lvsctlv1.ClusterStats{Cluster: fmt.Sprintf("cluster-%05d", c), Counters: &lvsctlv1.Counters{Cps: 1}}
			for r := range reals {
				st.Reals = append(st.Reals, activeReal(fmt.Sprintf("10.%d.0.%d", d, r), uint32(c*reals+r)))
			}
			cs = append(cs, st)
		}
		name := fmt.Sprintf("dir-%d", d)
		f.Report(name, &lvsctlv1.StatusReport{Full: true, Changed: cs})
		f.Update(name, func(s *lvsctlv1.DirectorStatus) { s.Connected = true })
	}
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
	stream, err := lvsctlv1.NewStatusServiceClient(conn).Watch(context.Background(), &lvsctlv1.StatusServiceWatchRequest{TopReals: top})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, d *lvsctlv1.DirectorStatus) {
		t.Helper()
		kept := keptReals(d)
		// The busiest are the last clusters' reals: cluster-01997's three busiest and
		// cluster-01998's and cluster-01999's every one, here.
		if len(kept) != top || d.GetRealsLeftOut() != clusters*reals-top || len(d.GetClusters()) != 3 ||
			d.GetClusters()[0].GetCluster() != "cluster-01997" || d.GetTotals().GetClusters() != clusters {
			t.Errorf("%s: %s has %d reals in %d clusters (first %s), %d left out, totals %v; want %d, %d left out, totals of %d clusters",
				what, d.GetDirector(), len(kept), len(d.GetClusters()), d.GetClusters()[0].GetCluster(), d.GetRealsLeftOut(), d.GetTotals(), top, clusters*reals-top, clusters)
		}
	}
	if len(first.GetInitial().GetDirectors()) != directors || len(first.GetInitial().GetClusters()) != 0 {
		t.Fatalf("first message: %d directors, %d fleet clusters; want %d directors and no partial sums",
			len(first.GetInitial().GetDirectors()), len(first.GetInitial().GetClusters()), directors)
	}
	for _, d := range first.GetInitial().GetDirectors() {
		check("first message", d)
	}
	if size := proto.Size(first); size > 16<<10 {
		t.Errorf("first message is %d bytes; %d directors' %d reals should fit in 16 KiB", size, directors, top)
	}
	// A change is trimmed the same way.
	f.Report("dir-1", &lvsctlv1.StatusReport{Changed: []*lvsctlv1.ClusterStats{
		{Cluster: "cluster-00000", Reals: []*lvsctlv1.RealServerStats{activeReal("10.1.0.0", 1_000_000)}},
	}})
	next, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	d := next.GetDirector()
	if len(keptReals(d)) != top || d.GetClusters()[0].GetCluster() != "cluster-00000" || len(d.GetClusters()[0].GetReals()) != 1 {
		t.Errorf("after cluster-00000 became the busiest: %s kept %v", d.GetDirector(), keptReals(d))
	}
}

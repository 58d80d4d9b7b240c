package stats

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// kernelWith makes a fake kernel holding n fwmark services of `reals` destinations each, and
// the clusters they come from.
func kernelWith(t testing.TB, n, reals int) (*fake.IPVS, []*lvsctlv1.Cluster) {
	k := fake.NewIPVS()
	var clusters []*lvsctlv1.Cluster
	for i := range n {
		mark := uint32(i + 1)
		svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: mark}, Scheduler: "wlc", NetmaskBits: 32}
		if err := k.AddService(svc); err != nil {
			t.Fatal(err)
		}
		c := &lvsctlv1.Cluster{Name: fmt.Sprintf("c%d", i), Fwmark: mark, Vips: []string{"192.0.2.10"}}
		for r := range reals {
			addr := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + r)}) // reals <= 250: the documentation range
			if err := k.AddDestination(svc, dataplane.Destination{Address: addr, Weight: 1, Forward: dataplane.ForwardMasq}); err != nil {
				t.Fatal(err)
			}
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: addr.String(), Weight: 1})
		}
		clusters = append(clusters, c)
	}
	return k, clusters
}

func setActive(t testing.TB, k *fake.IPVS, mark uint32, real string, active uint32) {
	err := k.SetDestinationStats(dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: mark},
		dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr(real)}, ActiveConns: active, PersistentConns: active})
	if err != nil {
		t.Fatal(err)
	}
}

func names(r *lvsctlv1.StatusReport) (changed []string) {
	for _, c := range r.GetChanged() {
		changed = append(changed, c.GetCluster())
	}
	return changed
}

func TestReporterSendsOnlyChanges(t *testing.T) {
	k, clusters := kernelWith(t, 3, 2)
	r := NewReporter(k)

	steps := []struct {
		name        string
		change      func()
		clusters    []*lvsctlv1.Cluster
		wantNil     bool
		wantFull    bool
		wantChanged []string
		wantRemoved []string
	}{
		{name: "first report is full", clusters: clusters, wantFull: true, wantChanged: []string{"c0", "c1", "c2"}},
		{name: "unchanged sample sends nothing", clusters: clusters, wantNil: true},
		{name: "one real's count changes", change: func() { setActive(t, k, 2, "198.51.100.2", 7) }, clusters: clusters, wantChanged: []string{"c1"}},
		{name: "same counts again send nothing", clusters: clusters, wantNil: true},
		{name: "a cluster leaves the desired state", clusters: clusters[:2], wantRemoved: []string{"c2"}},
		{name: "after a reset everything is sent", change: r.Reset, clusters: clusters[:2], wantFull: true, wantChanged: []string{"c0", "c1"}},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		rep, err := r.Sample(s.clusters, ownsAll, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.wantNil {
			if rep != nil {
				t.Errorf("%s: got report %v, want none", s.name, rep)
			}
			continue
		}
		if rep == nil {
			t.Fatalf("%s: got no report", s.name)
		}
		if rep.GetFull() != s.wantFull || fmt.Sprint(names(rep)) != fmt.Sprint(s.wantChanged) || fmt.Sprint(rep.GetRemoved()) != fmt.Sprint(s.wantRemoved) {
			t.Errorf("%s: got full=%v changed=%v removed=%v, want full=%v changed=%v removed=%v",
				s.name, rep.GetFull(), names(rep), rep.GetRemoved(), s.wantFull, s.wantChanged, s.wantRemoved)
		}
	}
}

func TestReporterCarriesKernelCounts(t *testing.T) {
	k, clusters := kernelWith(t, 1, 3)
	setActive(t, k, 1, "198.51.100.1", 5)
	setActive(t, k, 1, "198.51.100.3", 7)
	rep, err := NewReporter(k).Sample(clusters, ownsAll, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint32{}
	for _, rs := range rep.GetChanged()[0].GetReals() {
		got[rs.GetAddress()] = rs.GetActiveConns()
		if rs.GetPersistentConns() != rs.GetActiveConns() {
			t.Errorf("%s: persistent %d, want %d", rs.GetAddress(), rs.GetPersistentConns(), rs.GetActiveConns())
		}
	}
	want := map[string]uint32{"198.51.100.1": 5, "198.51.100.2": 0, "198.51.100.3": 7}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("active conns = %v, want %v", got, want)
	}
}

func ownsAll(dataplane.ServiceKey) bool { return true }

func TestReporterReportsOnlyWhatItApplies(t *testing.T) {
	k, clusters := kernelWith(t, 3, 1)
	tests := []struct {
		name     string
		clusters []*lvsctlv1.Cluster
		owns     func(dataplane.ServiceKey) bool
		want     string
	}{
		// The kernel's other services (someone else's, or not yet removed) are no cluster.
		{"only desired clusters", clusters[:1], ownsAll, "[c0]"},
		// A desired cluster whose mark a service the agent did not make holds is not that
		// cluster: the agent reports that as an error, not as the cluster's traffic.
		{"only owned services", clusters, func(k dataplane.ServiceKey) bool { return k.FWMark != 2 }, "[c0 c2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReporter(k)
			rep, err := r.Sample(tt.clusters, tt.owns, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(rep); fmt.Sprint(got) != tt.want {
				t.Errorf("reported %v, want %s", got, tt.want)
			}
			if got := fmt.Sprint(slices.Sorted(maps.Keys(r.Last()))); got != tt.want {
				t.Errorf("Last() has %s, want %s", got, tt.want)
			}
		})
	}
}

// TestRefresh: a refresh updates Last without a report, and the report after it is full.
func TestRefresh(t *testing.T) {
	k, clusters := kernelWith(t, 2, 1)
	r := NewReporter(k)
	if _, err := r.Sample(clusters, ownsAll, nil); err != nil {
		t.Fatal(err)
	}
	setActive(t, k, 1, "198.51.100.1", 9)
	if err := r.Refresh(clusters, ownsAll); err != nil {
		t.Fatal(err)
	}
	if got := r.Last()["c0"].Destinations[0].ActiveConns; got != 9 {
		t.Errorf("after Refresh, Last() has c0 with %d active connections, want 9", got)
	}
	rep, err := r.Sample(clusters, ownsAll, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.GetFull() || fmt.Sprint(names(rep)) != "[c0 c1]" {
		t.Errorf("report after Refresh: full=%v changed=%v, want a full one of [c0 c1]", rep.GetFull(), names(rep))
	}
}

// BenchmarkSample measures one sampling period at fleet scale: 10,000 services of 10 real
// servers each on the fake kernel, including encoding the report for the wire. Divide ns/op
// by the period to get the fraction of one core (e.g. at 5 s: ns/op / 5e9).
func BenchmarkSample(b *testing.B) {
	for _, tc := range []struct {
		name    string
		changed int // services whose counters change between samples
	}{
		{"idle", 0},
		{"1pct-busy", 100},
		{"all-busy", 10000},
	} {
		b.Run(tc.name, func(b *testing.B) {
			k, clusters := kernelWith(b, 10000, 10)
			r := NewReporter(k)
			if _, err := r.Sample(clusters, ownsAll, nil); err != nil {
				b.Fatal(err)
			}
			var bytes int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for s := range tc.changed {
					setActive(b, k, uint32(s+1), "198.51.100.1", uint32(i+1))
				}
				b.StartTimer()
				rep, err := r.Sample(clusters, ownsAll, nil)
				if err != nil {
					b.Fatal(err)
				}
				if rep != nil {
					out, err := proto.Marshal(rep)
					if err != nil {
						b.Fatal(err)
					}
					bytes = len(out)
				}
			}
			b.ReportMetric(float64(bytes), "report-bytes")
		})
	}
}

// TestReporterReals: what the agent knows beyond the counters goes into the report; a
// cluster whose Reals value is replaced is reported again with unchanged counters, one whose
// value stays is not; a server its check took out of the service is reported with no counts.
func TestReporterReals(t *testing.T) {
	k, clusters := kernelWith(t, 2, 2)
	r := NewReporter(k)
	since := time.UnixMilli(1_700_000_000_000)
	up := &Reals{List: []Real{
		{Addr: netip.MustParseAddr("198.51.100.1"), Checked: true, Health: "up", Since: since},
		{Addr: netip.MustParseAddr("198.51.100.2"), Health: "unknown", Drained: true},
	}}
	reals := map[string]*Reals{"c0": up}
	rep, err := r.Sample(clusters, ownsAll, reals)
	if err != nil {
		t.Fatal(err)
	}
	byAddr := func(rep *lvsctlv1.StatusReport, cluster string) map[string]*lvsctlv1.RealServerStats {
		out := map[string]*lvsctlv1.RealServerStats{}
		for _, c := range rep.GetChanged() {
			if c.GetCluster() == cluster {
				for _, rs := range c.GetReals() {
					out[rs.GetAddress()] = rs
				}
			}
		}
		return out
	}
	got := byAddr(rep, "c0")
	if rs := got["198.51.100.1"]; rs.GetHealth() != "up" || rs.GetHealthSinceUnixMs() != since.UnixMilli() || rs.GetDrained() {
		t.Errorf("c0 .1: %v", rs)
	}
	if rs := got["198.51.100.2"]; rs.GetHealth() != "unknown" || !rs.GetDrained() {
		t.Errorf("c0 .2: %v", rs)
	}
	if rs := byAddr(rep, "c1")["198.51.100.1"]; rs.GetHealth() != "unknown" || rs.GetHealthSinceUnixMs() != 0 {
		t.Errorf("c1 .1, with nothing known: %v", rs)
	}

	// The same value: nothing to report.
	if rep, err := r.Sample(clusters, ownsAll, map[string]*Reals{"c0": up}); err != nil || rep != nil {
		t.Fatalf("unchanged: %v %v", rep, err)
	}

	// .1 goes down, and its cluster removes it: the kernel no longer has it (the agent took
	// it out), and the report still lists it.
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 1}, Scheduler: "wlc", NetmaskBits: 32}
	if err := k.DelDestination(svc, dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1")}); err != nil {
		t.Fatal(err)
	}
	down := &Reals{List: []Real{
		{Addr: netip.MustParseAddr("198.51.100.1"), Checked: true, Health: "down", Since: since.Add(time.Second), Error: "connection refused", Out: true},
		{Addr: netip.MustParseAddr("198.51.100.2"), Health: "unknown", Drained: true},
	}}
	rep, err = r.Sample(clusters, ownsAll, map[string]*Reals{"c0": down})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(names(rep)) != "[c0]" {
		t.Fatalf("reported %v, want c0 alone", names(rep))
	}
	rs := byAddr(rep, "c0")["198.51.100.1"]
	if rs.GetHealth() != "down" || rs.GetHealthError() != "connection refused" || rs.GetWeight() != 0 || rs.GetActiveConns() != 0 || rs.GetCounters() == nil {
		t.Errorf("the server taken out: %v", rs)
	}

	// A removal: flagged with its deadline.
	until := since.Add(time.Minute)
	rep, err = r.Sample(clusters, ownsAll, map[string]*Reals{"c1": {List: []Real{{Addr: netip.MustParseAddr("198.51.100.2"), Health: "unknown", Removing: true, RemovingUntil: until}}}})
	if err != nil {
		t.Fatal(err)
	}
	if rs := byAddr(rep, "c1")["198.51.100.2"]; !rs.GetRemoving() || rs.GetRemovingUntilUnixMs() != until.UnixMilli() {
		t.Errorf("the removal: %v", rs)
	}
	if fmt.Sprint(names(rep)) != "[c0 c1]" {
		t.Errorf("reported %v, want c1, and c0 too: its Reals are gone", names(rep))
	}
}

// TestReporterPlainService: a plain service's cluster is reported by its key (protocol,
// address, port), with its destinations' ports; a plain service of the same address on another
// port is not it.
func TestReporterPlainService(t *testing.T) {
	k := fake.NewIPVS()
	key := dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80}
	other := key
	other.Port = 443
	for _, kk := range []dataplane.ServiceKey{key, other} {
		if err := k.AddService(dataplane.Service{ServiceKey: kk, Scheduler: "rr", NetmaskBits: 32}); err != nil {
			t.Fatal(err)
		}
	}
	d := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.5"), Port: 8080, Weight: 1, Forward: dataplane.ForwardMasq}
	if err := k.AddDestination(dataplane.Service{ServiceKey: key}, d); err != nil {
		t.Fatal(err)
	}
	if err := k.SetDestinationStats(key, dataplane.DestinationStats{Destination: d, ActiveConns: 4}); err != nil {
		t.Fatal(err)
	}
	c := &lvsctlv1.Cluster{Name: "http", Service: &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
		Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.5", Port: 8080, Weight: 1}}}
	rep, err := NewReporter(k).Sample([]*lvsctlv1.Cluster{c}, func(k dataplane.ServiceKey) bool { return k == key }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.GetChanged()) != 1 || rep.GetChanged()[0].GetCluster() != "http" || len(rep.GetChanged()[0].GetReals()) != 1 ||
		rep.GetChanged()[0].GetReals()[0].GetActiveConns() != 4 {
		t.Errorf("report = %v; want cluster http with its one real's 4 active connections", rep)
	}
}

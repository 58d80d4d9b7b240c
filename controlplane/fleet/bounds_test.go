package fleet

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestText: a text over its bound is cut at a character boundary and says how long it was.
func TestText(t *testing.T) {
	if got := Text("short", 10); got != "short" {
		t.Errorf("Text(short) = %q", got)
	}
	long := strings.Repeat("é", 600) // 1,200 bytes, 2 per character
	got := Text(long, MaxTextBytes)
	if len(got) > MaxTextBytes || !utf8.ValidString(got) || !strings.HasSuffix(got, "... (1200 bytes)") {
		t.Errorf("Text of 1,200 bytes = %d bytes, valid %v, ending %q", len(got), utf8.ValidString(got), got[len(got)-20:])
	}
}

// TestDropStatsAndForget: stats dropped leave the totals as if never reported; a forgotten
// director is gone from the list, and forgetting one never listed changes nothing.
func TestDropStatsAndForget(t *testing.T) {
	f := New()
	f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1"}})
	f.Report("dir-a", &lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{
		{Cluster: "wms", Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.1", 5, 0, 0, 0)}},
		{Cluster: "web", Reals: []*lvsctlv1.RealServerStats{realStats("198.51.100.2", 7, 0, 0, 0)}},
	}})
	f.DropStats("dir-a", []string{"web", "never-reported"})
	d := f.List("")[0]
	if got := f.StatsClusters("dir-a"); len(got) != 1 || got[0] != "wms" {
		t.Errorf("stats of %v after dropping web, want wms", got)
	}
	if d.GetTotals().GetClusters() != 1 || d.GetTotals().GetActiveConns() != 5 {
		t.Errorf("totals %v after dropping web, want wms's alone (1 cluster, 5 active)", d.GetTotals())
	}
	f.Forget("dir-z")
	f.Forget("dir-a")
	if l := f.List(""); len(l) != 0 {
		t.Errorf("after forgetting dir-a: %v, want nothing", l)
	}
}

// TestBoundHello: the version and capability errors an agent sends are kept bounded, with
// the count of what was left out.
func TestBoundHello(t *testing.T) {
	h := &lvsctlv1.Hello{Version: strings.Repeat("v", 1000), Capabilities: &lvsctlv1.Capabilities{}}
	for range 100 {
		h.Capabilities.Errors = append(h.Capabilities.Errors, strings.Repeat("e", 5000))
	}
	BoundHello(h)
	errs := h.GetCapabilities().GetErrors()
	if len(h.GetVersion()) > MaxVersionBytes || len(errs) != MaxCapabilityErrors || len(errs[0]) > MaxTextBytes ||
		errs[len(errs)-1] != "85 more capability errors not kept" {
		t.Errorf("bounded Hello: version %d bytes, %d errors, the last %q", len(h.GetVersion()), len(errs), errs[len(errs)-1])
	}
}

// BenchmarkBoundReport is what the hub adds, under its lock, to each stats report of a
// director with 10,000 clusters of 10 real servers: the full report and a period's 1%.
func BenchmarkBoundReport(b *testing.B) {
	clusters := map[string]*lvsctlv1.Cluster{}
	full := &lvsctlv1.StatusReport{Full: true}
	for i := range 10000 {
		name := fmt.Sprintf("c%d", i)
		c := &lvsctlv1.Cluster{Name: name}
		cs := &lvsctlv1.ClusterStats{Cluster: name, Counters: &lvsctlv1.Counters{}}
		for r := range 10 {
			addr := fmt.Sprintf("198.51.100.%d", r+1)
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: addr})
			cs.Reals = append(cs.Reals, realStats(addr, uint32(r), 0, 0, 0))
		}
		clusters[name] = c
		full.Changed = append(full.Changed, cs)
	}
	for _, tc := range []struct {
		name    string
		changed []*lvsctlv1.ClusterStats
	}{{"1pct-busy", full.Changed[:100]}, {"full", full.Changed}} {
		b.Run(tc.name, func(b *testing.B) {
			for range b.N {
				r := &lvsctlv1.StatusReport{Changed: slices.Clone(tc.changed)}
				BoundReport(r, clusters)
			}
		})
	}
}

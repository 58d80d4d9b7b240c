package printer

import (
	"bytes"
	"strings"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestClusterStatusSorry: a director whose kernel has the sorry server shows it in its row
// (STATE sorry) and under "Sorry server in use"; JSON has sorryInUse and the row's sorry.
func TestClusterStatusSorry(t *testing.T) {
	ds := []*lvsctlv1.DirectorStatus{{Director: "dir-a", Group: "edge-1", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE,
		Clusters: []*lvsctlv1.ClusterStats{{Cluster: "web", SorryInUse: true, Reals: []*lvsctlv1.RealServerStats{
			{Address: "198.51.100.5", Weight: 0, Health: "down", HealthError: "connection refused"},
			{Address: "198.51.100.9", Weight: 1, ActiveConns: 3, Health: "unknown", Sorry: true},
		}}}}}
	v := ViewClusterStatus("web", "edge-1", ds, nil)
	if !v.Directors[0].SorryInUse || !v.Directors[0].Reals[1].Sorry || v.Directors[0].Reals[0].Sorry {
		t.Fatalf("view %+v", v.Directors[0])
	}
	p, err := New(Table)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.ClusterStatus(&b, v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"dir-a     198.51.100.9  1       unknown  sorry",
		"Sorry server in use:\n  dir-a 198.51.100.9: no real server can take new connections\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

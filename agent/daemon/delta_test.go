package daemon

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/desired"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func cluster(name string, weight uint32) *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{Name: name, DirectorGroup: "edge-1", Fwmark: 1, Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: weight}}}
}

// TestDeltaRoundTrip: what the controller computes as a delta, applied by the agent on top
// of the state it was computed from, gives exactly the controller's new state.
func TestDeltaRoundTrip(t *testing.T) {
	g1 := &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}}}
	g2 := proto.CloneOf(g1)
	g2.VipInterface = "eth1"
	for _, tc := range []struct {
		name     string
		from, to *lvsctlv1.DesiredState
	}{
		{"add a cluster", &lvsctlv1.DesiredState{Group: g1}, &lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1)}}},
		{"change one", &lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1), cluster("b", 1)}},
			&lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1), cluster("b", 5)}}},
		{"remove one", &lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1), cluster("b", 1)}},
			&lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("b", 1)}}},
		{"group changes", &lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1)}},
			&lvsctlv1.DesiredState{Group: g2, Clusters: []*lvsctlv1.Cluster{cluster("a", 1)}}},
		{"director leaves its group", &lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1)}},
			&lvsctlv1.DesiredState{}},
		{"add one that sorts first", &lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("b", 1)}},
			&lvsctlv1.DesiredState{Group: g1, Clusters: []*lvsctlv1.Cluster{cluster("a", 1), cluster("b", 1)}}},
		{"nothing changes", &lvsctlv1.DesiredState{Group: g1}, &lvsctlv1.DesiredState{Group: g1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.CloneOf(tc.from)
			up, del, group, _ := desired.Delta(tc.from, tc.to)
			set := newDesiredSet(tc.from)
			d := &lvsctlv1.Delta{Upserted: up, Deleted: del, Group: group}
			set.apply(d)
			got := set.state()
			if !proto.Equal(got, tc.to) {
				t.Errorf("applied delta = %v, want %v", got, tc.to)
			}
			if !proto.Equal(before, tc.from) {
				t.Errorf("applying the delta changed the state it applied to")
			}
		})
	}
}

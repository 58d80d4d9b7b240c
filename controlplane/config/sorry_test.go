package config

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestApplySorryServer: a sorry server added, moved or removed alone is a change (stored, so
// the directors get it); the same again is not.
func TestApplySorryServer(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), withReals("wms", 2))
	o := withReals("wms", 2)
	c := o.GetCluster()
	for _, tc := range []struct {
		sorry *lvsctlv1.SorryServer
		want  []string
	}{
		{&lvsctlv1.SorryServer{Address: "198.51.100.9"}, []string{"sorryServer: none -> 198.51.100.9"}},
		{&lvsctlv1.SorryServer{Address: "198.51.100.9"}, nil},
		{&lvsctlv1.SorryServer{Address: "198.51.100.8"}, []string{"sorryServer: 198.51.100.9 -> 198.51.100.8"}},
		{nil, []string{"sorryServer: 198.51.100.8 -> none"}},
	} {
		c.SorryServer = tc.sorry
		r := apply(t, s, o).GetResults()[0]
		if !slices.Equal(r.GetChanges(), tc.want) {
			t.Errorf("sorry server %v: changes %q, want %q", tc.sorry, r.GetChanges(), tc.want)
		}
		if got := load(t, st).Clusters["wms"].GetSorryServer(); !proto.Equal(got, tc.sorry) {
			t.Errorf("stored sorry server %v, want %v", got, tc.sorry)
		}
	}
}

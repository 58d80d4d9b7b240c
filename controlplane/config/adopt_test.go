package config

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestApplyAdopt: --adopt marks every cluster of the apply for adoption, needs an fwmark
// cluster's mark pinned (refused otherwise, naming the field, nothing written), and the next
// apply without it clears the mark.
func TestApplyAdopt(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"))
	ctx := context.Background()
	before, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}

	unpinned := cluster("wms", "edge-1", "192.0.2.10", 554)
	_, err = s.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{unpinned}, Adopt: true})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "fwmark") || !strings.Contains(err.Error(), "wms") {
		t.Fatalf("adopting a cluster without its mark: %v; want InvalidArgument naming wms and fwmark", err)
	}
	after, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision != before.Revision || len(after.Clusters) != 0 {
		t.Fatalf("a refused adopt wrote: revision %d -> %d, %d clusters", before.Revision, after.Revision, len(after.Clusters))
	}

	pinned := cluster("wms", "edge-1", "192.0.2.10", 554)
	pinned.GetCluster().Fwmark = 1
	if _, err := s.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{pinned}, Adopt: true}); err != nil {
		t.Fatalf("adopting a pinned cluster: %v", err)
	}
	snap, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c := snap.Clusters["wms"]; !c.GetAdopt() || c.GetFwmark() != 1 {
		t.Fatalf("stored after apply --adopt: adopt %v fwmark %d; want true, 1", c.GetAdopt(), c.GetFwmark())
	}

	again := cluster("wms", "edge-1", "192.0.2.10", 554)
	again.GetCluster().Fwmark = 1
	again.GetCluster().Adopt = true // a client cannot set it without --adopt
	apply(t, s, again)
	if snap, err = st.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if snap.Clusters["wms"].GetAdopt() {
		t.Fatal("an apply without --adopt left the cluster marked for adoption")
	}
}

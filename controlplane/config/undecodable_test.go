package config

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestUndecodableValueBlocksNothing: garbage written by hand under /lvsctl/v1/clusters/ and
// /lvsctl/v1/groups/ of a real etcd is reported by key (List's warnings, Get's DataLoss) and
// skipped: get, apply and delete of everything else work, and apply or delete of the object
// it names replaces or removes it.
func TestUndecodableValueBlocksNothing(t *testing.T) {
	s, _, etcd, client := hostileServer(t)
	ctx := context.Background()
	base, err := manifest.Parse([]byte(hostileBase))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, base...)
	for _, key := range []string{store.ClusterKey("x"), store.ClusterKey("y"), store.GroupKey("bad")} {
		if _, err := etcd.Put(ctx, key, "garbage \xff"); err != nil {
			t.Fatal(err)
		}
	}

	// get clusters: the others, and a warning naming each bad key.
	var header metadata.MD
	list, err := client.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER}, grpc.Header(&header))
	if err != nil {
		t.Fatalf("list next to undecodable values: %v", err)
	}
	if len(list.GetObjects()) != 1 || list.GetObjects()[0].GetCluster().GetName() != "web" {
		t.Errorf("list: %v, want web alone", list.GetObjects())
	}
	warnings := strings.Join(header.Get(WarningHeader), "\n")
	for _, key := range []string{store.ClusterKey("x"), store.ClusterKey("y"), store.GroupKey("bad")} {
		if !strings.Contains(warnings, `"`+key+`" (revision `) {
			t.Errorf("no warning names %s:\n%s", key, warnings)
		}
	}

	// get cluster x: DataLoss, saying how to repair it; get web: as ever.
	if _, err := client.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "x"}); status.Code(err) != codes.DataLoss ||
		!strings.Contains(err.Error(), store.ClusterKey("x")) || !strings.Contains(err.Error(), "lvsctl delete cluster x removes it") {
		t.Errorf("get x: %v, want DataLoss naming the key and the repair", err)
	}
	if _, err := client.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "web"}); err != nil {
		t.Errorf("get web: %v", err)
	}

	// apply and delete of everything else.
	_, c := baseObjects(t)
	c.Name, c.Vips = "web2", []string{"192.0.2.11"}
	if _, err := client.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}}}); err != nil {
		t.Fatalf("apply next to undecodable values: %v", err)
	}
	if _, err := client.Delete(ctx, &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "web2"}); err != nil {
		t.Fatalf("delete next to undecodable values: %v", err)
	}

	// apply of x replaces the garbage (and says so); delete of y and of the group removes it.
	c.Name, c.Vips = "x", []string{"192.0.2.12"}
	resp, err := client.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}}})
	if err != nil {
		t.Fatalf("apply over the garbage of x: %v", err)
	}
	if r := resp.GetResults()[0]; r.GetAction() != lvsctlv1.Action_ACTION_CREATED || !strings.Contains(strings.Join(r.GetChanges(), ""), "which does not decode") {
		t.Errorf("apply over garbage: %v", r)
	}
	if got, err := client.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "x"}); err != nil || got.GetObject().GetCluster().GetVips()[0] != "192.0.2.12" {
		t.Errorf("get x after the repair: %v, %v", got, err)
	}
	for _, req := range []*lvsctlv1.DeleteRequest{{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "y"}, {Kind: lvsctlv1.Kind_KIND_GROUP, Name: "bad"}} {
		if _, err := client.Delete(ctx, req); err != nil {
			t.Errorf("delete %v over garbage: %v", req, err)
		}
	}
	for _, key := range []string{store.ClusterKey("y"), store.GroupKey("bad")} {
		if r, err := etcd.Get(ctx, key); err != nil || len(r.Kvs) != 0 {
			t.Errorf("%s after its delete: %v %v", key, r.Kvs, err)
		}
	}
	header = nil
	if _, err := client.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_GROUP}, grpc.Header(&header)); err != nil || len(header.Get(WarningHeader)) != 0 {
		t.Errorf("list after the repairs: %v, warnings %v", err, header.Get(WarningHeader))
	}
}

package config

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// withReals is cluster() with n real servers 198.51.100.1..n.
func withReals(name string, n int) *lvsctlv1.Object {
	o := cluster(name, "edge-1", "192.0.2.10", 554)
	o.GetCluster().Reals = nil
	for i := range n {
		o.GetCluster().Reals = append(o.GetCluster().Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("198.51.100.%d", i+1), Weight: 100})
	}
	return o
}

func load(t *testing.T, st *store.Store) *store.Snapshot {
	t.Helper()
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func drained(c *lvsctlv1.Cluster) []string {
	var out []string
	for _, r := range c.GetReals() {
		if r.GetDrained() {
			out = append(out, r.GetAddress())
		}
	}
	return out
}

func TestDrain(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	apply(t, s, group("edge-1", "dir-a"), withReals("wms", 3))
	before := load(t, st)

	resp, err := s.Drain(ctx, &lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.2", Drained: true})
	if err != nil {
		t.Fatal(err)
	}
	after := load(t, st)
	stored := after.Clusters["wms"]
	if got := drained(stored); !slices.Equal(got, []string{"198.51.100.2"}) {
		t.Errorf("stored drained reals %v, want [198.51.100.2]", got)
	}
	if after.Revision != before.Revision+1 || resp.GetCluster().GetRevision() != after.Revision {
		t.Errorf("revision %d -> %d, response at %d: want one write, and the response at it", before.Revision, after.Revision, resp.GetCluster().GetRevision())
	}
	if !proto.Equal(resp.GetCluster(), stored) {
		t.Errorf("response:\n%v\nstored:\n%v", resp.GetCluster(), stored)
	}
	// The group's directors are told: its generation moved with the write.
	if g := after.GroupRevision("edge-1"); g != after.Revision {
		t.Errorf("group edge-1 at revision %d after the drain at %d: its directors would not be sent it", g, after.Revision)
	}
	// Everything else of the cluster is as it was.
	was := proto.CloneOf(before.Clusters["wms"])
	was.Reals[1].Drained, was.Revision = true, stored.GetRevision()
	if !proto.Equal(was, stored) {
		t.Errorf("the drain changed more than the flag:\n%v\nwant\n%v", stored, was)
	}

	// Again: nothing is written, the stored cluster is returned.
	again, err := s.Drain(ctx, &lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.2", Drained: true})
	if err != nil {
		t.Fatal(err)
	}
	if now := load(t, st).Revision; now != after.Revision || !proto.Equal(again.GetCluster(), stored) {
		t.Errorf("draining a drained real wrote (revision %d -> %d) or returned %v", after.Revision, now, again.GetCluster())
	}

	// enable clears it.
	if _, err := s.Drain(ctx, &lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.2"}); err != nil {
		t.Fatal(err)
	}
	if got := drained(load(t, st).Clusters["wms"]); len(got) != 0 {
		t.Errorf("after enable, drained reals %v", got)
	}
}

// TestDrainIPv6: the address is matched as an address, not as text.
func TestDrainIPv6(t *testing.T) {
	s, st := newServer(t)
	c := cluster("v6", "edge-1", "2001:db8::10", 554)
	c.GetCluster().Reals = []*lvsctlv1.RealServer{{Address: "2001:db8:1::1", Weight: 1}, {Address: "2001:db8:1::2", Weight: 1}}
	apply(t, s, group("edge-1", "dir-a"), c)
	if _, err := s.Drain(context.Background(), &lvsctlv1.DrainRequest{Cluster: "v6", Real: "2001:0db8:1:0::2", Drained: true}); err != nil {
		t.Fatal(err)
	}
	if got := drained(load(t, st).Clusters["v6"]); !slices.Equal(got, []string{"2001:db8:1::2"}) {
		t.Errorf("drained %v, want [2001:db8:1::2]", got)
	}
}

func TestDrainRefused(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), withReals("wms", 2))
	rev := load(t, st).Revision
	for _, tt := range []struct {
		req  *lvsctlv1.DrainRequest
		code codes.Code
		msg  string
	}{
		{&lvsctlv1.DrainRequest{Cluster: "nope", Real: "198.51.100.1", Drained: true}, codes.NotFound, `cluster "nope": not found`},
		{&lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.9", Drained: true}, codes.NotFound, `cluster "wms": real server 198.51.100.9: not found`},
		{&lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.300", Drained: true}, codes.InvalidArgument, `invalid object: real: "198.51.100.300" is not an IP address`},
		{&lvsctlv1.DrainRequest{Cluster: "wms", Drained: true}, codes.InvalidArgument, `invalid object: real: required: the real server's address, as the cluster lists it`},
		{&lvsctlv1.DrainRequest{Real: "198.51.100.1", Drained: true}, codes.InvalidArgument, `invalid object: cluster: required: the cluster of the real server`},
	} {
		_, err := s.Drain(context.Background(), tt.req)
		if st, _ := status.FromError(err); st.Code() != tt.code || st.Message() != tt.msg {
			t.Errorf("%v: got %v, want %v %q", tt.req, err, tt.code, tt.msg)
		}
	}
	if now := load(t, st).Revision; now != rev {
		t.Errorf("refused drains wrote: revision %d -> %d", rev, now)
	}
}

// TestDrainsRace: drains of every real server of a cluster at once all land: each write is
// conditional on the revision it read and is computed again after a conflict, so none
// undoes another.
func TestDrainsRace(t *testing.T) {
	s, st := newServer(t)
	const n = 8
	apply(t, s, group("edge-1", "dir-a"), withReals("wms", n))
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := s.Drain(context.Background(), &lvsctlv1.DrainRequest{Cluster: "wms", Real: fmt.Sprintf("198.51.100.%d", i+1), Drained: true}); err != nil {
				t.Errorf("drain %d: %v", i+1, err)
			}
		})
	}
	wg.Wait()
	if got := drained(load(t, st).Clusters["wms"]); len(got) != n {
		t.Errorf("drained %v; want all %d", got, n)
	}
}

// TestApplyHealthAndDrained: the health fields and the drained flags are part of the stored
// cluster like the rest: a change to them alone is a change (stored, planned), and a
// manifest applied without drained clears it.
func TestApplyHealthAndDrained(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), withReals("wms", 2))

	o := withReals("wms", 2)
	c := o.GetCluster()
	c.Health = &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000}
	c.RemoveGraceMs = 5000
	c.Reals[1].Health = &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755}
	resp := apply(t, s, o)
	wantChanges := []string{
		"health: none -> {check: rtsp, port: 554, interval: 1s}",
		"removeGrace: default -> 5s",
		"real 198.51.100.2 health: none -> {check: tcp, port: 1755}",
	}
	if r := resp.GetResults()[0]; r.GetAction() != lvsctlv1.Action_ACTION_UPDATED || !slices.Equal(r.GetChanges(), wantChanges) {
		t.Errorf("result %v %q, want UPDATED %q", r.GetAction(), r.GetChanges(), wantChanges)
	}
	if p := resp.GetPlans(); len(p) != 1 || len(p[0].GetChanges()) != 3 || p[0].GetChanges()[0] != "cluster wms: "+wantChanges[0] {
		t.Errorf("plans %v", p)
	}
	if got := load(t, st).Clusters["wms"]; !proto.Equal(got.GetHealth(), c.GetHealth()) || got.GetRemoveGraceMs() != 5000 ||
		!proto.Equal(got.GetReals()[1].GetHealth(), c.Reals[1].GetHealth()) {
		t.Errorf("stored %v", got)
	}

	if _, err := s.Drain(context.Background(), &lvsctlv1.DrainRequest{Cluster: "wms", Real: "198.51.100.1", Drained: true}); err != nil {
		t.Fatal(err)
	}
	// The same manifest again, without drained: the manifest is the whole truth.
	resp = apply(t, s, o)
	if r := resp.GetResults()[0]; !slices.Equal(r.GetChanges(), []string{"real 198.51.100.1 drained: true -> false"}) {
		t.Errorf("re-applying without drained: %v %q", r.GetAction(), r.GetChanges())
	}
	if got := drained(load(t, st).Clusters["wms"]); len(got) != 0 {
		t.Errorf("drained %v after a manifest without drained", got)
	}
	// remove_now is a change too.
	c.RemoveGraceMs, c.RemoveNow = 0, true
	if r := apply(t, s, o).GetResults()[0]; !slices.Equal(r.GetChanges(), []string{"removeGrace: 5s -> 0s (at once)"}) {
		t.Errorf("remove_now: %q", r.GetChanges())
	}
	// And an invalid check is refused with its field.
	c.Health.TimeoutMs = 3000
	_, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{o}})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || st.Message() != `cluster "wms": health.timeout: 3s is more than health.interval (1s)` {
		t.Errorf("invalid check: %v", err)
	}
}

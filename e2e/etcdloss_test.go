package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestEtcdOutage: a controller on an external etcd that goes away keeps serving its agents
// (their data planes untouched, status still answered) and picks up where it was when etcd
// comes back: nothing is lost, and new writes flow to the agents again.
func TestEtcdOutage(t *testing.T) {
	ports := storetest.FreePorts(t, 3)
	etcdCfg := store.EmbeddedConfig{DataDir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "http://" + ports[0], PeerURL: "http://" + ports[1], LogLevel: "fatal"}
	startEtcd := func() *store.Embedded {
		e, err := store.StartEmbedded(context.Background(), etcdCfg)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	etcd := startEtcd()
	defer func() { etcd.Close() }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := controller.Start(ctx, controller.Config{Listen: ports[2], EtcdEndpoints: []string{etcdCfg.ClientURL}, Insecure: true, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	cl := dial(t, ports[2])
	dirA := startAgent(t, "dir-a", ports[2])
	resp, err := cl.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)})
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, cl, resp.GetRevision(), "dir-a")
	// The ACTIVE adds its VIPs once its lease starts (the controller's first answer to its
	// heartbeats): the data plane is complete when status says it holds them.
	waitUntil(t, 10*time.Second, "dir-a holding its VIPs", func() bool { return directorStatus(t, cl, "dir-a").GetHolding() })
	before := dirA.kernel()
	dirA.ipvs.ResetOps()

	etcd.Close()
	// Writes fail clearly while etcd is gone; the agents and the status keep going.
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	_, err = cl.config.Apply(short, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)})
	cancelShort()
	if err == nil {
		t.Fatal("an apply succeeded with etcd down")
	}
	st, err := cl.status.List(ctx, &lvsctlv1.StatusServiceListRequest{})
	if err != nil {
		t.Fatalf("status while etcd is down: %v", err)
	}
	connected := map[string]bool{}
	for _, d := range st.GetDirectors() {
		connected[d.GetDirector()] = d.GetConnected()
	}
	if !connected["dir-a"] {
		t.Errorf("status while only etcd is down: %v, want dir-a connected", st.GetDirectors())
	}
	if dirA.kernel() != before || len(dirA.ipvs.Ops()) != 0 {
		t.Errorf("the data plane changed during the etcd outage: %v", dirA.ipvs.Ops())
	}

	etcd = startEtcd()
	// Nothing was lost: the cluster comes back as it was stored.
	var got *lvsctlv1.GetResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err = cl.config.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("get after etcd came back: %v", err)
	}
	if c := got.GetObject().GetCluster(); c.GetRevision() != resp.GetRevision() || len(c.GetReals()) != 3 {
		t.Errorf("after the outage the cluster is %v, want it as stored at revision %d", c, resp.GetRevision())
	}
	// The controller finds its store again: the data is there, and a new write reaches the agent.
	wms := twoDirectorWMS(t)
	wms[0].GetCluster().Reals[0].Weight = 42
	var upd *lvsctlv1.ApplyResponse
	deadline = time.Now().Add(30 * time.Second)
	for {
		upd, err = cl.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: wms})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("apply after etcd came back: %v", err)
	}
	waitApplied(t, cl, upd.GetRevision(), "dir-a")
	if ops := dirA.ipvs.Ops(); len(ops) != 1 {
		t.Errorf("after etcd came back one weight change made %d IPVS operations, want 1: %v", len(ops), ops)
	}
}

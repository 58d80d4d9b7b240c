package ha_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/ha"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	ports := storetest.FreePorts(t, 2)
	e, err := store.StartEmbedded(context.Background(), store.EmbeddedConfig{DataDir: filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "http://" + ports[0], PeerURL: "http://" + ports[1], LogLevel: "fatal"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestLeaderDeposedWritesRefused: two controllers that both believe they lead, as after a
// paused leader resumes once its lease expired: the stale one's role write is refused with
// ErrNotLeader, the new leader's lands.
func TestLeaderDeposedWritesRefused(t *testing.T) {
	client := etcdClient(t)
	st := store.New(client)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fences := make(chan store.LeaderFence, 2)
	leads := make(chan context.Context, 2)
	run := func(addr string) {
		e := ha.New(ha.Config{Client: client, Address: addr})
		go func() {
			_ = e.Run(ctx, func(lctx context.Context, f store.LeaderFence) {
				fences <- f
				leads <- lctx
				<-lctx.Done()
			})
		}()
	}
	run("a:7443")
	stale := <-fences
	staleCtx := <-leads
	run("b:7443")
	// The first leader's lease is revoked behind its back (what an expiry does); it is
	// not told in time and keeps writing.
	resp, err := client.Get(ctx, stale.Key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election key %s: %v %v", stale.Key, resp, err)
	}
	if _, err := client.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	var fresh store.LeaderFence
	select {
	case fresh = <-fences:
	case <-time.After(5 * time.Second):
		t.Fatal("the second controller did not lead after the first one's lease ended")
	}
	write := func(f store.LeaderFence, active string) error {
		snap, err := st.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, err = st.Commit(ctx, store.Write{Head: snap.Head, Expect: map[string]int64{store.RolesKey("edge-1"): snap.RolesRevision["edge-1"]},
			Puts: map[string]proto.Message{store.RolesKey("edge-1"): &lvsctlv1.GroupRoles{Group: "edge-1", Active: active, Epoch: 7}}, Fence: &f})
		return err
	}
	if err := write(stale, "dir-a"); !errors.Is(err, store.ErrNotLeader) {
		t.Errorf("the deposed leader's role write: %v, want ErrNotLeader", err)
	}
	if err := write(fresh, "dir-b"); err != nil {
		t.Errorf("the new leader's role write: %v", err)
	}
	snap, _ := st.Load(ctx)
	if got := snap.Roles["edge-1"].GetActive(); got != "dir-b" {
		t.Errorf("stored ACTIVE %q, want the new leader's dir-b", got)
	}
	select {
	case <-staleCtx.Done():
	case <-time.After(5 * time.Second):
		t.Error("the deposed leader's term did not end once its session did")
	}
	ms, err := ha.List(ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Address != "b:7443" || !ms[0].Leader {
		t.Errorf("controllers: %+v, want b:7443 alone, leading (a's registration went with its lease)", ms)
	}
}

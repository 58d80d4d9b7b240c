package fanout

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/auth"
	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

type harness struct {
	hub    *Hub
	config *config.Server
	fleet  *fleet.Fleet
	agents lvsctlv1.AgentServiceClient
}

func start(t *testing.T) *harness { return startWith(t, Config{}) }

// startWith starts a hub of cfg (store, fleet, logger and heartbeat are filled in).
func startWith(t *testing.T, cfg Config) *harness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := storetest.Start(t)
	fl := fleet.New()
	cfg.Store, cfg.Fleet, cfg.Logger, cfg.Heartbeat = st, fl, log, time.Hour
	hub := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = hub.Run(ctx) }()
	cache := store.NewCache(st, log)
	go func() { _ = cache.Run(ctx) }()
	// As the controller serves it: the auth interceptors of an --insecure controller, and a
	// test one that gives a stream the certificate identity named in its metadata.
	a := auth.New(auth.Config{Insecure: true, Logger: log})
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.ChainUnaryInterceptor(a.Unary), grpc.ChainStreamInterceptor(a.Stream, asCertificate))
	hub.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); srv.Stop(); cancel() })
	return &harness{hub: hub, config: config.NewServer(st, cache, log), fleet: fl, agents: lvsctlv1.NewAgentServiceClient(conn)}
}

func (h *harness) connect(t *testing.T, director string) lvsctlv1.AgentService_ConnectClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := h.agents.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: director}}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// caughtUp waits until the hub has followed the store to rev for dir-a: a snapshot sent
// before that would be an older (still correct) state followed by a delta.
func (h *harness) caughtUp(t *testing.T, rev int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, d := range h.fleet.List("") {
			if d.GetDirector() == "dir-a" && d.GetDesiredRevision() == rev {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub never reached revision %d", rev)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// next returns the next message that is not a heartbeat.
func next(t *testing.T, s lvsctlv1.AgentService_ConnectClient) *lvsctlv1.ConnectResponse {
	t.Helper()
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("recv: %v", err)
		}
		if m.GetHeartbeat() == nil {
			return m
		}
	}
}

func wmsObjects(weight uint32) []*lvsctlv1.Object {
	return []*lvsctlv1.Object{
		{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0",
			Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}}}}},
		{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"},
			Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
			Ports: []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 554, Last: 554}},
			Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: weight}}}}},
	}
}

// TestSnapshotThenOrderedDeltas: an agent gets one snapshot, then only deltas, each stamped
// with the revision it follows; a snapshot request gets a snapshot again.
func TestSnapshotThenOrderedDeltas(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	first, err := h.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: wmsObjects(1)})
	if err != nil {
		t.Fatal(err)
	}
	h.caughtUp(t, first.GetRevision())
	s := h.connect(t, "dir-a")
	snap := next(t, s).GetSnapshot()
	if snap == nil || len(snap.GetState().GetClusters()) != 1 || snap.GetRevision() == 0 {
		t.Fatalf("first message: %v, want a snapshot with wms", snap)
	}
	rev := snap.GetRevision()
	for i, weight := range []uint32{5, 9} {
		resp, err := h.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: wmsObjects(weight)})
		if err != nil {
			t.Fatal(err)
		}
		d := next(t, s).GetDelta()
		if d == nil || d.GetPrevRevision() != rev || d.GetRevision() != resp.GetRevision() ||
			len(d.GetUpserted()) != 1 || d.GetUpserted()[0].GetReals()[0].GetWeight() != weight || d.GetGroup() != nil {
			t.Fatalf("change %d: %v, want a delta %d -> %d upserting wms with weight %d", i, d, rev, resp.GetRevision(), weight)
		}
		rev = d.GetRevision()
	}
	del, err := h.config.Delete(ctx, &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatal(err)
	}
	d := next(t, s).GetDelta()
	if d.GetPrevRevision() != rev || d.GetRevision() != del.GetRevision() || len(d.GetDeleted()) != 1 || d.GetDeleted()[0] != "wms" {
		t.Fatalf("delete: %v, want a delta deleting wms", d)
	}
	if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_SnapshotRequest{SnapshotRequest: &lvsctlv1.SnapshotRequest{Reason: "test"}}}); err != nil {
		t.Fatal(err)
	}
	again := next(t, s).GetSnapshot()
	if again == nil || again.GetRevision() != del.GetRevision() || len(again.GetState().GetClusters()) != 0 {
		t.Fatalf("after a snapshot request: %v, want a snapshot at %d without clusters", again, del.GetRevision())
	}
}

// TestNewSessionReplacesHungOne: a director that reconnects while its old stream hangs (its
// agent stopped reading) gets the new session; the old stream is ended, and the fleet shows
// the director connected.
func TestNewSessionReplacesHungOne(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	first, err := h.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: wmsObjects(1)})
	if err != nil {
		t.Fatal(err)
	}
	h.caughtUp(t, first.GetRevision())
	old := h.connect(t, "dir-a")
	next(t, old) // its snapshot; then it stops reading
	fresh := h.connect(t, "dir-a")
	if next(t, fresh).GetSnapshot() == nil {
		t.Fatal("the new session got no snapshot")
	}
	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := old.Recv(); err != nil {
				ended <- err
				return
			}
		}
	}()
	select {
	case err := <-ended:
		if status.Code(err) != codes.Aborted {
			t.Errorf("the old stream ended with %v, want Aborted (replaced)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced stream is still open")
	}
	// The old session's goodbye must not mark the director disconnected.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := h.fleet.List("")
		if len(d) == 1 && d[0].GetConnected() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet after the replacement: %v, want dir-a connected", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And the new session still works.
	resp, err := h.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: wmsObjects(7)})
	if err != nil {
		t.Fatal(err)
	}
	if d := next(t, fresh).GetDelta(); d.GetRevision() != resp.GetRevision() {
		t.Errorf("the new session got %v, want the delta to %d", d, resp.GetRevision())
	}
}

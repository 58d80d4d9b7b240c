// Package fanout serves AgentService: it follows the desired state in etcd and streams each
// director its own part, a snapshot on connect and then ordered deltas stamped with
// revisions. Each agent has its own sender; a slow agent delays only itself, because the hub
// only marks sessions as behind and each sender computes its delta from the latest state
// when it gets to it.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lvsctl/lvsctl/controlplane/desired"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Config tunes the hub.
type Config struct {
	Store  *store.Store
	Fleet  *fleet.Fleet
	Logger *slog.Logger
	// Heartbeat is how often the controller tells an idle agent it is alive.
	Heartbeat time.Duration
	// HelloTimeout bounds how long a new stream may stay silent before its Hello.
	HelloTimeout time.Duration
}

// Hub follows the store and serves agents.
type Hub struct {
	lvsctlv1.UnimplementedAgentServiceServer
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	snap     *store.Snapshot // nil until the first load
	ready    chan struct{}
	sessions map[string]*session
}

// ErrNoHello is returned to a stream whose first message is not a Hello.
var ErrNoHello = errors.New("the first message must be a Hello naming the director")

// New returns a hub; Run must be running for agents to get their state.
func New(cfg Config) *Hub {
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.HelloTimeout == 0 {
		cfg.HelloTimeout = 10 * time.Second
	}
	return &Hub{cfg: cfg, log: cfg.Logger.With("service", "agent"), ready: make(chan struct{}), sessions: map[string]*session{}}
}

// Register adds the service to a gRPC server.
func (h *Hub) Register(g *grpc.Server) { lvsctlv1.RegisterAgentServiceServer(g, h) }

// Run loads the desired state and follows it until ctx ends. A lost etcd connection or a
// compacted watch makes it load again; sessions keep what they have meanwhile.
func (h *Hub) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := h.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		h.log.Warn("following the store failed; reloading", "error", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	return nil
}

func (h *Hub) follow(ctx context.Context) error {
	snap, err := h.cfg.Store.Load(ctx)
	if err != nil {
		return err
	}
	h.publish(snap)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches, errc := h.cfg.Store.Watch(wctx, snap.Revision)
	for b := range batches {
		next := h.current().clone()
		for _, ev := range b.Events {
			if err := next.Set(ev.Key, ev.Value, ev.ModRevision); err != nil {
				return err
			}
		}
		next.Revision = b.Revision
		h.publish(next.Snapshot)
	}
	return <-errc
}

// snapshotView wraps a snapshot for copy-on-write updates.
type snapshotView struct{ *store.Snapshot }

func (v snapshotView) clone() snapshotView {
	s := v.Snapshot
	n := store.NewSnapshot()
	n.Revision = s.Revision
	for k, x := range s.Clusters {
		n.Clusters[k] = x
	}
	for k, x := range s.Groups {
		n.Groups[k] = x
	}
	for k, x := range s.Roles {
		n.Roles[k] = x
	}
	for k, x := range s.RolesRevision {
		n.RolesRevision[k] = x
	}
	for k, x := range s.Generations {
		n.Generations[k] = x
	}
	return snapshotView{n}
}

func (h *Hub) current() snapshotView {
	h.mu.Lock()
	defer h.mu.Unlock()
	return snapshotView{h.snap}
}

// publish makes snap current, updates the fleet's view of the configuration, and wakes
// every session. Snapshots are never mutated once published.
func (h *Hub) publish(snap *store.Snapshot) {
	h.mu.Lock()
	first := h.snap == nil
	h.snap = snap
	for _, s := range h.sessions {
		s.wake()
	}
	h.mu.Unlock()
	if first {
		close(h.ready)
	}
	dirs := map[string]fleet.Desired{}
	for _, name := range desired.Directors(snap) {
		d := desired.For(snap, name)
		dirs[name] = fleet.Desired{Group: d.Group, Role: d.Role, Revision: d.Revision}
	}
	h.cfg.Fleet.SetConfig(dirs)
}

type session struct {
	director string
	notify   chan struct{}
	// full asks the sender for a snapshot (the agent saw a gap).
	full   chan struct{}
	cancel context.CancelFunc
}

func (s *session) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Connect serves one agent's stream.
func (h *Hub) Connect(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
	hello, err := h.recvHello(stream)
	if err != nil {
		return err
	}
	name := hello.GetDirector()
	log := h.log.With("director", name)
	select {
	case <-h.ready:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	s := &session{director: name, notify: make(chan struct{}, 1), full: make(chan struct{}, 1), cancel: cancel}
	// Registration and the fleet's connected flag change together under h.mu, so an old
	// session's goodbye can never land after a new session's hello.
	h.mu.Lock()
	if old, ok := h.sessions[name]; ok {
		// The newest stream wins: the old one is from an agent that restarted or reconnected.
		old.cancel()
		log.Warn("replacing an existing session")
	}
	h.sessions[name] = s
	h.cfg.Fleet.Update(name, func(d *lvsctlv1.DirectorStatus) {
		d.Connected = true
		d.AgentVersion = hello.GetVersion()
		d.Capabilities = hello.GetCapabilities()
		d.AppliedRevision = hello.GetLastAppliedRevision()
		d.LastSeen = timestamppb.Now()
	})
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if h.sessions[name] == s {
			delete(h.sessions, name)
			h.cfg.Fleet.Disconnected(name)
		}
		h.mu.Unlock()
		log.Info("agent disconnected")
	}()
	log.Info("agent connected", "version", hello.GetVersion(), "last_applied_revision", hello.GetLastAppliedRevision())

	errc := make(chan error, 2)
	go func() { errc <- h.receive(ctx, stream, s) }()
	go func() { errc <- h.send(ctx, stream, s) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
		// Replaced, or the stream ended. Returning ends the stream, which also unblocks a
		// Send stuck on a hung agent's flow control; the goroutines then finish.
	}
	cancel()
	if stream.Context().Err() == nil && err == nil {
		// Replaced by a newer session of the same director.
		return status.Error(codes.Aborted, "replaced by a newer session of the same director")
	}
	return err
}

func (h *Hub) recvHello(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) (*lvsctlv1.Hello, error) {
	type result struct {
		msg *lvsctlv1.ConnectRequest
		err error
	}
	ch := make(chan result, 1)
	go func() {
		m, err := stream.Recv()
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		hello := r.msg.GetHello()
		if hello == nil || hello.GetDirector() == "" {
			return nil, status.Error(codes.InvalidArgument, ErrNoHello.Error())
		}
		return hello, nil
	case <-time.After(h.cfg.HelloTimeout):
		return nil, status.Error(codes.DeadlineExceeded, fmt.Sprintf("no Hello within %s", h.cfg.HelloTimeout))
	}
}

func (h *Hub) receive(ctx context.Context, stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse], s *session) error {
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch msg := m.GetMsg().(type) {
		case *lvsctlv1.ConnectRequest_Ack:
			a := msg.Ack
			h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) {
				d.AppliedRevision = a.GetRevision()
				d.Errors = a.GetErrors()
				d.DirectorErrors = a.GetDirectorErrors()
				d.LastSeen = timestamppb.Now()
			})
			h.log.Debug("ack", "director", s.director, "revision", a.GetRevision(), "errors", len(a.GetErrors()), "operations", a.GetOperations())
		case *lvsctlv1.ConnectRequest_Status:
			h.cfg.Fleet.Report(s.director, msg.Status)
		case *lvsctlv1.ConnectRequest_Heartbeat:
			h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) { d.LastSeen = timestamppb.Now() })
		case *lvsctlv1.ConnectRequest_SnapshotRequest:
			h.log.Info("agent asked for a snapshot", "director", s.director, "reason", msg.SnapshotRequest.GetReason())
			select {
			case s.full <- struct{}{}:
			default:
			}
		case *lvsctlv1.ConnectRequest_Hello:
			h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) { d.Capabilities = msg.Hello.GetCapabilities() })
		}
	}
}

// send is the session's only writer to the stream.
func (h *Hub) send(ctx context.Context, stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse], s *session) error {
	var last *desired.Director
	var lastRole *lvsctlv1.RoleAssignment
	sendState := func(full bool) error {
		d := desired.For(h.current().Snapshot, s.director)
		if d.Role != nil && (lastRole == nil || !proto.Equal(d.Role, lastRole)) {
			if err := stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Role{Role: d.Role}}); err != nil {
				return err
			}
			lastRole = d.Role
		}
		switch {
		case full || last == nil:
			if err := stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{
				Snapshot: &lvsctlv1.Snapshot{Revision: d.Revision, State: d.State},
			}}); err != nil {
				return err
			}
		case d.Revision != last.Revision:
			up, del, group, _ := desired.Delta(last.State, d.State)
			if err := stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
				PrevRevision: last.Revision, Revision: d.Revision, Upserted: up, Deleted: del, Group: group,
			}}}); err != nil {
				return err
			}
		default:
			return nil
		}
		last = d
		return nil
	}
	if err := sendState(true); err != nil {
		return err
	}
	hb := time.NewTicker(h.cfg.Heartbeat)
	defer hb.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.notify:
			err = sendState(false)
		case <-s.full:
			err = sendState(true)
		case <-hb.C:
			err = stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{}}})
		}
		if err != nil {
			return err
		}
	}
}

// Package fanout serves AgentService: it follows the desired state in etcd and streams each
// director its own part, a snapshot on connect and then ordered deltas stamped with
// revisions. Each agent has its own sender; a slow agent delays only itself, because the hub
// only marks sessions as behind and each sender picks what it missed when it gets to it.
//
// Work is per change and per group, not per director: each watch batch updates the hub's
// copy of the state in place and makes one delta per group it touched, from the keys it
// changed; a group's snapshot is built once per revision when first needed; and each
// message is encoded once and sent as the same bytes to every director of the group.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lvsctl/lvsctl/controlplane/auth"
	"github.com/lvsctl/lvsctl/controlplane/desired"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/limits"
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
	// MaxMessageBytes is the largest message sent to an agent (default MaxMessageBytes, the
	// limit the agents' and the controller's gRPC use).
	MaxMessageBytes int
	// Roles hears what the streams say of each director (nil: nobody does) and gives the
	// epoch heartbeat answers carry.
	Roles Roles
	// LastSeenEvery bounds how often a director's heartbeats update its LastSeen in the
	// fleet (default 1 s): at 10 Hz per director they would wake every status watcher.
	LastSeenEvery time.Duration
}

// Roles is what the hub tells the controller's role logic, and asks of it.
type Roles interface {
	// Heard: a message arrived from the director's agent.
	Heard(director string)
	// Disconnected: the director's stream ended.
	Disconnected(director string)
	// Reported: the agent sent its RoleStatus.
	Reported(director string, st *lvsctlv1.RoleStatus)
	// Epoch is the group's epoch now, an assignment being written included.
	Epoch(group string) uint64
}

// noRoles is the Roles of a hub without role logic: epoch 0 renews nobody's lease, and no
// agent fences on it.
type noRoles struct{}

func (noRoles) Heard(string)                          {}
func (noRoles) Disconnected(string)                   {}
func (noRoles) Reported(string, *lvsctlv1.RoleStatus) {}
func (noRoles) Epoch(string) uint64                   { return 0 }

// Hub follows the store and serves agents.
type Hub struct {
	lvsctlv1.UnimplementedAgentServiceServer
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	state    *groups // nil until the first load
	ready    chan struct{}
	sessions map[string]*session
	// gen grows with every change that may leave a connected director with status it may
	// no longer hold (it left its group, or clusters left its group): a stats report merged
	// outside the lock checks it afterwards, and prunes if it moved meanwhile.
	gen uint64
	// noGroup is the snapshot of a director in no group: empty, at revision 0.
	noGroup *prepared
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
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = MaxMessageBytes
	}
	if cfg.Roles == nil {
		cfg.Roles = noRoles{}
	}
	if cfg.LastSeenEvery == 0 {
		cfg.LastSeenEvery = time.Second
	}
	return &Hub{cfg: cfg, log: cfg.Logger.With("service", "agent"), ready: make(chan struct{}), sessions: map[string]*session{},
		noGroup: &prepared{what: "the empty snapshot", msg: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{
			Snapshot: &lvsctlv1.Snapshot{State: &lvsctlv1.DesiredState{}}}}}}
}

// Register adds the service to a gRPC server.
func (h *Hub) Register(g *grpc.Server) { lvsctlv1.RegisterAgentServiceServer(g, h) }

// Run loads the desired state and follows it until ctx ends (store.Store.Follow: a lost
// etcd connection or a compacted watch makes it load again, after a backoff); sessions keep
// what they have meanwhile.
func (h *Hub) Run(ctx context.Context) error {
	h.cfg.Store.Follow(ctx, h.log, h.load, h.apply)
	return nil
}

// load replaces the hub's working copy with a whole snapshot (the first load or a reload).
func (h *Hub) load(snap *store.Snapshot) {
	h.mu.Lock()
	first := h.state == nil
	h.state = newGroups(snap)
	h.gen++
	h.wakeLocked()
	h.mu.Unlock()
	if first {
		close(h.ready)
	}
	h.setFleetConfig()
	// A reload does not say what changed: every connected director is checked.
	h.prune(nil)
}

// apply applies one watch batch to the hub's working copy in place: the cost of a batch is
// proportional to its changes, not to the stored state.
func (h *Hub) apply(b store.Batch) error {
	h.mu.Lock()
	err := h.state.apply(b)
	affected := h.state.affected
	if err == nil {
		if len(affected) > 0 {
			h.gen++
		}
		h.wakeLocked()
	}
	h.mu.Unlock()
	if err != nil {
		return err
	}
	h.setFleetConfig()
	if len(affected) > 0 {
		h.prune(affected)
	}
	return nil
}

// prune makes the status of the named connected directors (all, when nil) hold only what
// their group allows, after the configuration changed: a director in no group has no entry
// (its agent's reports are not kept), one that joined a group gets its entry, and stats of
// clusters no longer in a director's desired state are dropped. It runs after SetConfig,
// which leaves a connected director that left every group listed without a group.
func (h *Hub) prune(directors map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, s := range h.sessions {
		if !s.ended.Load() && (directors == nil || directors[name]) {
			h.pruneLocked(s)
		}
	}
}

func (h *Hub) pruneLocked(s *session) {
	group := h.state.dirGroup[s.director]
	if group == "" {
		s.listed = false
		h.cfg.Fleet.Forget(s.director)
		return
	}
	if !s.listed {
		// Joined a group while connected: what it said in its Hello, and nothing applied
		// yet (it applied no revision of this group; its ack of the snapshot says).
		s.listed = true
		h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) {
			d.Connected = true
			d.AgentVersion = s.hello.GetVersion()
			d.Capabilities = s.hello.GetCapabilities()
			d.AppliedRevision = 0
			d.LastSeen = timestamppb.Now()
		})
	}
	clusters := h.state.clusters[group]
	var stale []string
	for _, name := range h.cfg.Fleet.StatsClusters(s.director) {
		if _, ok := clusters[name]; !ok {
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		h.cfg.Fleet.DropStats(s.director, stale)
	}
}

// wakeLocked tells every session to look at the state again. A session whose group did
// not change finds nothing to send at the cost of a map lookup.
func (h *Hub) wakeLocked() {
	for _, s := range h.sessions {
		s.grouped.Store(h.state.dirGroup[s.director] != "")
		s.wake()
	}
}

// RolesStored sends a group's role assignment, just stored, to the group's connected
// directors ahead of the delta that will carry it: the delta waits for the store's watch,
// one more hop, and a takeover's new ACTIVE should not. Safe because it is stored already:
// it is what the delta will say. It does not block.
func (h *Hub) RolesStored(r *lvsctlv1.GroupRoles) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == nil {
		return
	}
	for name, s := range h.sessions {
		if h.state.dirGroup[name] != r.GetGroup() {
			continue
		}
		s.stored.Store(r)
		select {
		case s.storedCh <- struct{}{}:
		default:
		}
	}
}

// setFleetConfig tells the fleet every configured director's group, role and desired
// revision: O(directors), whatever the number of clusters.
func (h *Hub) setFleetConfig() {
	h.mu.Lock()
	dirs := make(map[string]fleet.Desired, len(h.state.dirGroup))
	for name, group := range h.state.dirGroup {
		dirs[name] = fleet.Desired{Group: group, Role: desired.RoleOf(h.state.snap, group, name), Revision: h.state.snap.GroupRevision(group)}
	}
	h.mu.Unlock()
	h.cfg.Fleet.SetConfig(dirs)
}

type session struct {
	director string
	notify   chan struct{}
	// full asks the sender for a snapshot (the agent saw a gap).
	full   chan struct{}
	cancel context.CancelFunc
	// echo holds the latest heartbeat sent value to answer (0: none pending), and beat
	// wakes the sender for it: an answer not yet sent is replaced by a newer one, as only
	// the latest renews the agent's lease for the longest.
	echo atomic.Int64
	beat chan struct{}
	// mu is held while a message of the stream is handled; over (under mu) is set once the
	// session was replaced or ended: nothing its stream says reaches the role logic or
	// status after that, so a replaced stream's report cannot outlive its replacement.
	// ended is over, readable without mu (a new session of the director waits for it).
	// Lock order: mu, then the hub's, then the fleet's.
	mu    sync.Mutex
	over  bool
	ended atomic.Bool
	// replaced: ended by a newer session of the director, whose hello stands for its
	// goodbye (it must not mark the director disconnected, even before that one registers).
	replaced atomic.Bool
	// hello is what the agent said of itself (bounded): its status entry when it joins a
	// group while connected.
	hello *lvsctlv1.Hello
	// listed (under the hub's lock): the fleet has this director's entry, as the director
	// is in a group. A director in no group has none, and nothing its stream reports is
	// kept: forged names cannot fill the controller's memory or lvsctl status.
	listed bool
	// sentMax is the highest revision this stream was sent, or is about to be: its group's
	// revision when it connected (what its first snapshot carries at least), then each one
	// the sender picks. An ack above it acknowledges what the controller never sent.
	sentMax atomic.Int64
	// warnedStats (under mu): the log said once that this stream's stats were cut.
	warnedStats bool
	// grouped: the director is in a group as of the hub's state. A director in no group is
	// never answered: epoch 0 would renew the lease of a removed ACTIVE that still holds.
	grouped atomic.Bool
	// stored holds roles the controller just stored, to send ahead of their delta, and
	// storedCh wakes the sender for them (a newer assignment replaces one not sent yet).
	stored   atomic.Pointer[lvsctlv1.GroupRoles]
	storedCh chan struct{}
}

// end stops the session's messages from counting; it waits for the one being handled.
func (s *session) end() {
	s.mu.Lock()
	s.over = true
	s.ended.Store(true)
	s.mu.Unlock()
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
	// Only a director's own certificate speaks for it (an --insecure controller trusts
	// the name, as before TLS): anyone else could take its group's state and kick the real
	// agent off by reconnecting as it.
	if err := auth.SpeakFor(stream.Context(), name); err != nil {
		log.Warn("agent stream refused", "who", auth.Who(stream.Context()), "error", err)
		return err
	}
	fleet.BoundHello(hello)
	select {
	case <-h.ready:
	case <-stream.Context().Done():
		return stream.Context().Err()
	}

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	s := &session{director: name, notify: make(chan struct{}, 1), full: make(chan struct{}, 1), beat: make(chan struct{}, 1),
		storedCh: make(chan struct{}, 1), cancel: cancel, hello: hello}
	// Registration and the fleet's connected flag change together under h.mu, so an old
	// session's goodbye can never land after a new session's hello. The old session is
	// ended outside h.mu (its message being handled may be waiting for h.mu), and nothing
	// it says counts after that; registration waits until the current session is one that
	// has ended (another new stream may have registered meanwhile).
	var old *session
	for {
		h.mu.Lock()
		cur := h.sessions[name]
		if cur == nil || cur.ended.Load() {
			break
		}
		h.mu.Unlock()
		// The newest stream wins: the old one is from an agent that restarted or reconnected.
		cur.replaced.Store(true)
		cur.cancel()
		cur.end()
		old = cur
		log.Warn("replacing an existing session")
	}
	h.sessions[name] = s
	group := h.state.dirGroup[name]
	s.grouped.Store(group != "")
	if f := h.state.feeds[group]; f != nil {
		s.sentMax.Store(f.revision)
	}
	if group != "" {
		s.listed = true
		applied := hello.GetLastAppliedRevision()
		if applied < 0 || applied > s.sentMax.Load() {
			// Not a revision of this group's store: the agent's saved state is from
			// elsewhere (a wiped store), or the claim is forged. Its ack will say.
			log.Warn("agent claims a revision the group never had", "last_applied_revision", applied, "group_revision", s.sentMax.Load())
			applied = 0
		}
		h.cfg.Fleet.Update(name, func(d *lvsctlv1.DirectorStatus) {
			d.Connected = true
			d.AgentVersion = hello.GetVersion()
			d.Capabilities = hello.GetCapabilities()
			d.AppliedRevision = applied
			d.LastSeen = timestamppb.Now()
		})
		// What an earlier stream reported is not what this one obeys.
		h.cfg.Fleet.RoleStatus(name, nil)
	}
	h.mu.Unlock()
	if old != nil {
		// What the old stream reported (its peers, its holding) is not what this one obeys:
		// the role logic forgets it, as at the end of a stream, before hearing the new one.
		h.cfg.Roles.Disconnected(name)
	}
	h.cfg.Roles.Heard(name)
	defer func() {
		s.end()
		h.mu.Lock()
		current := h.sessions[name] == s && !s.replaced.Load()
		if current {
			delete(h.sessions, name)
			h.cfg.Fleet.Disconnected(name)
		}
		h.mu.Unlock()
		if current {
			// A replaced session says nothing: its director is still connected, by the
			// newer stream.
			h.cfg.Roles.Disconnected(name)
		}
		log.Info("agent disconnected")
	}()
	log.Info("agent connected", "who", auth.Who(stream.Context()), "group", group, "version", hello.GetVersion(),
		"last_applied_revision", hello.GetLastAppliedRevision())

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
		if n := len(hello.GetDirector()); n > limits.MaxNameLen {
			// No group can name it; it would only fill logs and the session table.
			err := &limits.Error{Where: "hello: director", What: "bytes in a director's name", Got: int64(n), Max: limits.MaxNameLen}
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return hello, nil
	case <-time.After(h.cfg.HelloTimeout):
		return nil, status.Error(codes.DeadlineExceeded, fmt.Sprintf("no Hello within %s", h.cfg.HelloTimeout))
	}
}

func (h *Hub) receive(ctx context.Context, stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse], s *session) error {
	lastSeen := time.Now()
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.mu.Lock()
		if s.over {
			s.mu.Unlock()
			return context.Canceled
		}
		err = h.handle(s, m, &lastSeen)
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// ErrForged is wrapped by the refusal of a message that claims what the controller never
// said: the stream is ended, and nothing of the message is kept.
var ErrForged = errors.New("claims what the controller never sent")

// withStatus changes the fleet's entry of the session's director under h.mu, when it has one
// (it is in a group): a message of a director in no group is not kept. fn gets the
// director's desired clusters.
func (h *Hub) withStatus(s *session, fn func(clusters map[string]*lvsctlv1.Cluster)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !s.listed {
		return
	}
	fn(h.state.clusters[h.state.dirGroup[s.director]])
}

// report merges a stats report bounded by the director's desired state. The merge runs
// outside h.mu (it is the biggest message an agent sends, every period): if the
// configuration changed meanwhile, what was merged is checked again against it.
func (h *Hub) report(s *session, r *lvsctlv1.StatusReport) error {
	// No agent has more clusters to report than a group may hold: a report of more is
	// refused outright (and ends the stream), whatever the director's group.
	for _, n := range []struct {
		where string
		got   int
	}{{"status report: changed", len(r.GetChanged())}, {"status report: removed", len(r.GetRemoved())}} {
		if n.got > limits.MaxClustersPerGroup {
			err := &limits.Error{Where: n.where, What: "clusters (limits.MaxClustersPerGroup: no director applies more)", Got: int64(n.got), Max: limits.MaxClustersPerGroup}
			h.log.Warn("agent stream ended: status report over the limit", "director", s.director, "error", err)
			return status.Error(codes.ResourceExhausted, err.Error())
		}
	}
	h.mu.Lock()
	if !s.listed {
		h.mu.Unlock()
		return nil
	}
	dropped := fleet.BoundReport(r, h.state.clusters[h.state.dirGroup[s.director]])
	gen := h.gen
	h.mu.Unlock()
	fleet.ClipReport(r)
	if dropped > 0 && !s.warnedStats {
		// Once per stream: a forger would fill the log otherwise, and an agent a change
		// behind (a cluster just deleted) does it once.
		s.warnedStats = true
		h.log.Warn("stats not kept: clusters not in the director's desired state, or more real servers than a cluster may list (twice its own plus a few)",
			"director", s.director, "dropped", dropped)
	}
	h.cfg.Fleet.Report(s.director, r)
	h.mu.Lock()
	if h.gen != gen {
		h.pruneLocked(s)
	}
	h.mu.Unlock()
	return nil
}

// handle acts on one message of a session's stream (under s.mu); an error ends the stream.
func (h *Hub) handle(s *session, m *lvsctlv1.ConnectRequest, lastSeen *time.Time) error {
	switch msg := m.GetMsg().(type) {
	case *lvsctlv1.ConnectRequest_Ack:
		a := msg.Ack
		if rev, sent := a.GetRevision(), s.sentMax.Load(); rev < 0 || rev > sent {
			h.log.Warn("agent stream ended: ack for a revision never sent on it", "director", s.director, "revision", rev, "sent", sent)
			return status.Errorf(codes.InvalidArgument, "ack for revision %d %v: this stream was sent revisions up to %d", rev, ErrForged, sent)
		}
		h.withStatus(s, func(clusters map[string]*lvsctlv1.Cluster) {
			errs, dirErrs := fleet.BoundAck(a, clusters)
			h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) {
				d.AppliedRevision = a.GetRevision()
				d.Errors = errs
				d.DirectorErrors = dirErrs
				d.LastSeen = timestamppb.Now()
			})
		})
		h.log.Debug("ack", "director", s.director, "revision", a.GetRevision(), "errors", len(a.GetErrors()), "operations", a.GetOperations())
	case *lvsctlv1.ConnectRequest_Status:
		if err := h.report(s, msg.Status); err != nil {
			return err
		}
	case *lvsctlv1.ConnectRequest_Heartbeat:
		// The role logic hears of it before its answer is queued: a decision it takes
		// after this either knows of this heartbeat or announced an epoch the answer
		// carries (roles.Manager.Heard).
		h.cfg.Roles.Heard(s.director)
		if sent := msg.Heartbeat.GetSent(); sent != 0 {
			s.echo.Store(sent)
			select {
			case s.beat <- struct{}{}:
			default:
			}
		}
		if now := time.Now(); now.Sub(*lastSeen) >= h.cfg.LastSeenEvery {
			*lastSeen = now
			h.withStatus(s, func(map[string]*lvsctlv1.Cluster) {
				h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) { d.LastSeen = timestamppb.New(now) })
			})
		}
		return nil
	case *lvsctlv1.ConnectRequest_RoleStatus:
		// Bounded by the director's group: only its members are peers.
		h.mu.Lock()
		st := fleet.BoundRoleStatus(msg.RoleStatus, h.state.snap.Groups[h.state.dirGroup[s.director]])
		if s.listed {
			h.cfg.Fleet.RoleStatus(s.director, st)
		}
		h.mu.Unlock()
		// A report counts as hearing from the director.
		h.cfg.Roles.Reported(s.director, st)
		return nil
	case *lvsctlv1.ConnectRequest_SnapshotRequest:
		h.log.Info("agent asked for a snapshot", "director", s.director, "reason", msg.SnapshotRequest.GetReason())
		select {
		case s.full <- struct{}{}:
		default:
		}
	case *lvsctlv1.ConnectRequest_Hello:
		// Its capabilities again (a module was loaded); not another name.
		fleet.BoundHello(msg.Hello)
		h.mu.Lock()
		s.hello = &lvsctlv1.Hello{Version: s.hello.GetVersion(), Capabilities: msg.Hello.GetCapabilities()}
		if s.listed {
			h.cfg.Fleet.Update(s.director, func(d *lvsctlv1.DirectorStatus) { d.Capabilities = msg.Hello.GetCapabilities() })
		}
		h.mu.Unlock()
	}
	h.cfg.Roles.Heard(s.director)
	return nil
}

// sent is what a session last sent: the group (feed) and revision its agent has.
type sent struct {
	started  bool
	group    string
	revision int64
}

// next returns what a session must send to bring its agent from last to the current state:
// the deltas it missed or a snapshot; the group's roles travel inside them. Everything
// returned is shared by every session that needs it; the lock is held only to pick it.
func (h *Hub) next(director string, last sent, full bool) (msgs []*prepared, now sent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.state
	group := st.dirGroup[director]
	now = sent{started: true, group: group}
	f := st.feeds[group]
	if f == nil {
		// In no group (or the group is gone): the empty state at revision 0.
		if full || !last.started || last.group != "" || last.revision != 0 {
			msgs = []*prepared{h.noGroup}
		}
		now.group = ""
		return msgs, now
	}
	now.revision = f.revision
	if !full && last.started && last.group == group {
		if last.revision == f.revision {
			return nil, now
		}
		if ds, ok := f.deltasAfter(last.revision); ok {
			return ds, now
		}
	}
	return []*prepared{st.snapshotOf(f)}, now
}

// send is the session's only writer to the stream.
func (h *Hub) send(ctx context.Context, stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse], s *session) error {
	var last sent
	sendState := func(full bool) error {
		msgs, now := h.next(s.director, last, full)
		// Before it is sent: an ack of it can only follow.
		if now.revision > s.sentMax.Load() {
			s.sentMax.Store(now.revision)
		}
		for _, m := range msgs {
			enc, err := m.encoded(stream, h.cfg.MaxMessageBytes)
			if err != nil {
				h.log.Error("cannot send the desired state", "director", s.director, "error", err)
				return err
			}
			if err := stream.SendMsg(enc); err != nil {
				return err
			}
		}
		last = now
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
		case <-s.beat:
			// The answer to the agent's latest heartbeat, with the epoch of the group the
			// agent was last sent: the one whose lease it holds. None for a director in no
			// group (now, or as last sent): nothing it holds is the controller's to renew.
			if echo := s.echo.Swap(0); echo != 0 && last.group != "" && s.grouped.Load() {
				err = stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{
					Echo: echo, Epoch: h.cfg.Roles.Epoch(last.group)}}})
			}
		case <-hb.C:
			err = stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Epoch: h.cfg.Roles.Epoch(last.group)}}})
		case <-s.storedCh:
			// Only to a director last sent that group's state: the roles go with it.
			if r := s.stored.Swap(nil); r != nil && last.group == r.GetGroup() {
				err = stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_RolesStored{RolesStored: &lvsctlv1.RolesStored{
					Roles: r, SentUnixMs: sentUnixMs(r)}}})
			}
		}
		if err != nil {
			return err
		}
	}
}

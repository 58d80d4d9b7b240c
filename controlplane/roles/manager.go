package roles

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// ErrNotReady is returned while the manager has not loaded the store yet.
var ErrNotReady = errors.New("the controller has not loaded the store yet")

// Store is what the Manager needs of the store: to follow groups and roles, and to write
// an assignment.
type Store interface {
	Follow(ctx context.Context, log *slog.Logger, loaded func(*store.Snapshot), apply func(store.Batch) error)
	Commit(ctx context.Context, w store.Write) (int64, error)
	// Head reads the store's current revision (and the head key's): a request is answered
	// on a view of the store at least that recent.
	Head(ctx context.Context) (rev, head int64, err error)
}

// machine is one group's decision logic (*Machine); the driver's tests script it.
type machine interface {
	Step(now time.Time, ev Event) Actions
	Next() time.Time
	Epoch() uint64
}

// ManagerConfig configures a Manager.
type ManagerConfig struct {
	Store  Store
	Logger *slog.Logger
	// Stored is told every assignment the moment it is stored (nil: nobody), so that the
	// directors hear it before the store's watch brings it: fanout.Hub.RolesStored.
	Stored func(*lvsctlv1.GroupRoles)
	// Fence, when set, is the leading controller's election key: every assignment written
	// is conditional on it, so a manager whose controller was deposed (its session expired
	// while it kept running) writes nothing (store.ErrNotLeader).
	Fence *store.LeaderFence
	// newMachine makes a group's machine: New unless a test scripts one.
	newMachine func(group string) machine
}

// maxWriteAttempts bounds how often one assignment is written again after a conflict that
// left the group's roles key as it was (another writer moved only the store's head).
const maxWriteAttempts = 10

// Manager drives one Machine per director group: it feeds them the store's groups and
// roles, what the agents' streams say and the passing time, writes the assignments they
// decide with a compare-and-swap on the group's roles key, and answers operator requests.
// One goroutine (Run) owns every machine; the others talk to it through channels, so the
// machines need no lock.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	agents   chan agentEvent
	configs  chan configUpdate
	requests chan *request
	written  chan writeResult

	ready     chan struct{}
	readyOnce sync.Once
	// stopped is closed when Run returns: nobody takes events any more.
	stopped chan struct{}
	// epochs: group -> *atomic.Uint64, the machine's Epoch after its last step: read at
	// every heartbeat answer without a trip through the loop.
	epochs sync.Map
	ids    atomic.Uint64

	// decideMu orders heartbeat answers against decisions. Heard holds it shared while it
	// queues; the loop holds it exclusively while it takes every queued event and steps
	// (and publishes the epochs). So a Heard that returned before a decision was seen by it,
	// and one that returns after reads (in the hub's answer, sent after Heard returns) the
	// epoch the decision announced: no answer renews a lease a decision counted as ended.
	decideMu sync.RWMutex
	// heardQueued: director -> *atomic.Bool, set while a Heard of it waits in agents or
	// overflow; a Heard then adds nothing (the queued one is stepped later, so at a later
	// time) and is dropped: at most one per director is queued.
	heardQueued sync.Map
	// overflow holds the Heards that found agents full (Heard never blocks: it holds
	// decideMu), and kick wakes the loop for them.
	overflowMu sync.Mutex
	overflow   map[string]bool
	kick       chan struct{}
}

// NewManager returns a manager; Run must be running for it to decide anything.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.newMachine == nil {
		cfg.newMachine = func(group string) machine { return New(group) }
	}
	return &Manager{
		cfg: cfg, log: cfg.Logger.With("component", "roles"),
		// Heartbeats of 1,000 directors at 10 Hz are 10,000 events a second; the buffer
		// absorbs a loop busy for a few hundred milliseconds without stalling a stream.
		agents:   make(chan agentEvent, 4096),
		configs:  make(chan configUpdate, 16),
		requests: make(chan *request),
		written:  make(chan writeResult, 16),
		ready:    make(chan struct{}),
		stopped:  make(chan struct{}),
		overflow: map[string]bool{},
		kick:     make(chan struct{}, 1),
	}
}

type agentEvent struct {
	director string
	ev       Event // Heard, Disconnected or Reported (its Director set)
}

// configUpdate is what the store says of the groups a load or a batch touched.
type configUpdate struct {
	full     bool // a (re)load: groups absent from it are gone
	revision int64
	head     int64
	groups   map[string]*groupConfig // nil value: the group was deleted
}

type groupConfig struct {
	group    *lvsctlv1.DirectorGroup
	roles    *lvsctlv1.GroupRoles
	rolesRev int64
}

type request struct {
	group string
	ev    FailoverRequested
	reply chan Reply
	// atLeast is the store's head revision when the request was made: it is handled once
	// the loop has followed the store that far, so a group just applied is known to it.
	atLeast int64
}

type writeResult struct {
	group string
	roles *lvsctlv1.GroupRoles
	// expect is the roles key's mod revision the write was conditional on.
	expect int64
	rev    int64
	err    error
}

// Heard tells the manager a message arrived from a director's agent. The hub calls it before
// it answers a heartbeat (see decideMu). It never blocks for long: a Heard of a director
// already queued is dropped, and one that finds the queue full waits in overflow.
func (m *Manager) Heard(director string) {
	q := m.heardFlag(director)
	m.decideMu.RLock()
	defer m.decideMu.RUnlock()
	if q.Swap(true) {
		return
	}
	select {
	case m.agents <- agentEvent{director: director, ev: Heard{Director: director}}:
	default:
		m.overflowMu.Lock()
		m.overflow[director] = true
		m.overflowMu.Unlock()
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
}

func (m *Manager) heardFlag(director string) *atomic.Bool {
	v, ok := m.heardQueued.Load(director)
	if !ok {
		v, _ = m.heardQueued.LoadOrStore(director, new(atomic.Bool))
	}
	return v.(*atomic.Bool)
}

// Disconnected tells the manager a director's stream ended.
func (m *Manager) Disconnected(director string) {
	// A Heard still in overflow is older than the end of the stream: it must not be stepped
	// after it, and the next stream's first Heard must be queued, not dropped.
	m.overflowMu.Lock()
	delete(m.overflow, director)
	m.overflowMu.Unlock()
	m.heardFlag(director).Store(false)
	m.agent(director, Disconnected{Director: director})
}

// Reported passes on a director's RoleStatus.
func (m *Manager) Reported(director string, st *lvsctlv1.RoleStatus) {
	m.agent(director, Reported{Director: director, Status: st})
}

func (m *Manager) agent(director string, ev Event) {
	// Blocking is the back-pressure of a loop that cannot keep up: the stream's receiver
	// waits, and TCP slows the agent down. Nothing is dropped while Run runs: a lost
	// Disconnected would leave a dead director looking connected.
	select {
	case m.agents <- agentEvent{director: director, ev: ev}:
	case <-m.stopped:
	}
}

// Epoch is the group's epoch as the controller sees it now (0: unknown group, or not
// loaded yet): what heartbeat answers carry.
func (m *Manager) Epoch(group string) uint64 {
	v, ok := m.epochs.Load(group)
	if !ok {
		return 0
	}
	return v.(*atomic.Uint64).Load()
}

func (m *Manager) setEpoch(group string, e uint64) {
	v, ok := m.epochs.Load(group)
	if !ok {
		v, _ = m.epochs.LoadOrStore(group, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Store(e)
}

// Failover asks to move a group's ACTIVE role (to empty: the best STANDBY) and waits for the
// group's machine to answer. A request whose ctx ends goes on in the controller: the handover
// it started is not undone half-way.
func (m *Manager) Failover(ctx context.Context, group, to string) (*lvsctlv1.FailoverResponse, error) {
	select {
	case <-m.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
	}
	// A group applied a moment ago may not have reached this manager's view of the store
	// yet: the request waits until it has, rather than answer "no such group".
	// The head key's revision is the last write of lvsctl's (every write rewrites it), which
	// the store's watch brings this manager; etcd's own revision may be past it for writes
	// outside lvsctl's keys, which no watch event would ever reach.
	_, head, err := m.cfg.Store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("failover of group %s: %w", group, err)
	}
	r := &request{group: group, ev: FailoverRequested{ID: m.ids.Add(1), To: to}, reply: make(chan Reply, 1), atLeast: head}
	select {
	case m.requests <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("failover of group %s: %w", group, ctx.Err())
	case <-m.stopped:
		return nil, fmt.Errorf("failover of group %s: %w: the controller is stopping", group, ErrNotReady)
	}
	select {
	case rep := <-r.reply:
		return rep.Resp, rep.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("failover of group %s: waiting for the handover: %w", group, ctx.Err())
	case <-m.stopped:
		return nil, fmt.Errorf("failover of group %s: %w: the controller stopped before the handover ended", group, ErrNotReady)
	}
}

// Run follows the store and drives the machines until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	defer close(m.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		f := &follower{out: m.configs, ctx: ctx}
		m.cfg.Store.Follow(ctx, m.log, f.load, f.apply)
	}()
	l := newLoop(m)
	err := l.run(ctx)
	cancel()
	<-followed
	return err
}

// follower turns the store's loads and batches into configUpdates of groups and roles; it
// runs on the store's follow goroutine and keeps its own copy of groups and roles only.
type follower struct {
	out  chan<- configUpdate
	ctx  context.Context
	snap *store.Snapshot
}

func (f *follower) load(snap *store.Snapshot) {
	// Only groups and roles matter here: the clusters go with the loaded snapshot.
	f.snap = store.NewSnapshot()
	f.snap.Revision, f.snap.Head = snap.Revision, snap.Head
	maps.Copy(f.snap.Groups, snap.Groups)
	maps.Copy(f.snap.Roles, snap.Roles)
	maps.Copy(f.snap.RolesRevision, snap.RolesRevision)
	u := configUpdate{full: true, revision: snap.Revision, head: snap.Head, groups: map[string]*groupConfig{}}
	for name := range f.snap.Groups {
		u.groups[name] = f.groupConfig(name)
	}
	f.send(u)
}

func (f *follower) groupConfig(name string) *groupConfig {
	g, ok := f.snap.Groups[name]
	if !ok {
		return nil
	}
	return &groupConfig{group: g, roles: f.snap.Roles[name], rolesRev: f.snap.RolesRevision[name]}
}

func (f *follower) apply(b store.Batch) error {
	touched := map[string]bool{}
	for _, ev := range b.Events {
		if strings.HasPrefix(ev.Key, store.ClusterKey("")) {
			continue
		}
		if err := f.snap.Set(ev.Key, ev.Value, ev.ModRevision); err != nil {
			return err
		}
		if name, ok := strings.CutPrefix(ev.Key, store.GroupKey("")); ok {
			touched[name] = true
		} else if name, ok := strings.CutPrefix(ev.Key, store.RolesKey("")); ok {
			touched[name] = true
		}
	}
	f.snap.Revision = b.Revision
	u := configUpdate{revision: b.Revision, head: f.snap.Head, groups: map[string]*groupConfig{}}
	for name := range touched {
		u.groups[name] = f.groupConfig(name)
	}
	// Sent even when no group changed: the head moved, and a write waiting on a conflict
	// may go again.
	f.send(u)
	return nil
}

func (f *follower) send(u configUpdate) {
	select {
	case f.out <- u:
	case <-f.ctx.Done():
	}
}

// loop is the state of Run's goroutine.
type loop struct {
	m *Manager
	// ctx is Run's: writes in flight end with it.
	ctx      context.Context
	machines map[string]machine
	conf     map[string]*groupConfig
	dirGroup map[string]string // director -> group
	// former: director in no group -> the group it was last in, whose machine may be waiting
	// for it to release (a removed ACTIVE).
	former   map[string]string
	revision int64
	head     int64
	loaded   bool

	// What the agents said, kept so a machine made later (a group created, a director moved
	// into it) learns who is connected and what they last reported.
	connected map[string]bool
	reports   map[string]*lvsctlv1.RoleStatus

	pending map[uint64]*request
	// parked are requests made at a store revision the loop has not followed to yet.
	parked []*request
	writes map[string]*write // group -> its write in flight
	// queued is a group's next assignment, decided while its write was in flight: the
	// machine saw that write in the store (the watch can beat Commit's return) and decided
	// the next step, e.g. a handover's new ACTIVE once the old one released. It is written
	// as soon as the one in flight returns, never alongside it.
	queued map[string]*lvsctlv1.GroupRoles
	timers timerHeap
	next   map[string]time.Time
	// blocked is each group's last logged Blocked().
	blocked map[string]string
	// armed is what the timer is set for (zero: nothing, an hour away); fired: it went off
	// since.
	armed time.Time
	fired bool
}

// write is an assignment being stored.
type write struct {
	roles    *lvsctlv1.GroupRoles
	expect   int64 // the roles key's mod revision it is conditional on
	attempts int
	// waiting: the store refused the last attempt at waitRev; the write goes again once the
	// follower has seen that revision, if the roles key is still as expected.
	waiting bool
	waitRev int64
}

func newLoop(m *Manager) *loop {
	return &loop{m: m, machines: map[string]machine{}, conf: map[string]*groupConfig{}, dirGroup: map[string]string{}, former: map[string]string{},
		connected: map[string]bool{}, reports: map[string]*lvsctlv1.RoleStatus{},
		pending: map[uint64]*request{}, writes: map[string]*write{}, queued: map[string]*lvsctlv1.GroupRoles{}, next: map[string]time.Time{}, blocked: map[string]string{}}
}

func (l *loop) run(ctx context.Context) error {
	l.ctx = ctx
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.resetTimer(timer)
		select {
		case <-ctx.Done():
			return nil
		case a := <-l.m.agents:
			l.m.decideMu.Lock()
			l.agent(a)
			l.drainAgents()
			l.m.decideMu.Unlock()
		case <-l.m.kick:
			l.m.decideMu.Lock()
			l.drainAgents()
			l.m.decideMu.Unlock()
		case u := <-l.m.configs:
			l.m.decideMu.Lock()
			l.drainAgents()
			l.configure(ctx, u)
			l.unpark()
			l.m.decideMu.Unlock()
		case r := <-l.m.requests:
			l.m.decideMu.Lock()
			l.drainAgents()
			l.request(r)
			l.m.decideMu.Unlock()
		case w := <-l.m.written:
			l.m.decideMu.Lock()
			l.drainAgents()
			l.writtenResult(ctx, w)
			l.m.decideMu.Unlock()
		case <-timer.C:
			l.fired = true
			l.onTimer()
		}
	}
}

// onTimer steps the Ticks due, after every Heard queued before them: a decision on a
// last-heard older than a heartbeat already answered could take over from an ACTIVE whose
// lease that answer renewed.
func (l *loop) onTimer() {
	l.m.decideMu.Lock()
	defer l.m.decideMu.Unlock()
	l.drainAgents()
	l.tick()
}

// drainAgents steps every agent event queued now, and the Heards in overflow (under
// decideMu: no Heard is queued meanwhile). It takes only what is queued when it starts:
// Disconnected and Reported keep coming, and must not starve the rest of the loop.
func (l *loop) drainAgents() {
	for n := len(l.m.agents); n > 0; n-- {
		l.agent(<-l.m.agents)
	}
	l.m.overflowMu.Lock()
	over := l.m.overflow
	if len(over) > 0 {
		l.m.overflow = map[string]bool{}
	}
	l.m.overflowMu.Unlock()
	for _, d := range slices.Sorted(maps.Keys(over)) {
		l.agent(agentEvent{director: d, ev: Heard{Director: d}})
	}
}

// resetTimer arms the timer for the earliest Next of any machine; it leaves it alone when
// that did not change (most heartbeats move a later Next, not the earliest).
func (l *loop) resetTimer(t *time.Timer) {
	for len(l.timers) > 0 {
		top := l.timers[0]
		if n, ok := l.next[top.group]; ok && n.Equal(top.at) {
			break
		}
		heap.Pop(&l.timers) // stale: the machine's Next moved since
	}
	var at time.Time
	if len(l.timers) > 0 {
		at = l.timers[0].at
	}
	if at.Equal(l.armed) && !l.fired {
		return
	}
	l.armed, l.fired = at, false
	d := time.Hour
	if !at.IsZero() {
		d = max(time.Until(at), 0)
	}
	t.Stop()
	select {
	case <-t.C:
	default:
	}
	t.Reset(d)
}

func (l *loop) tick() {
	now := time.Now()
	for len(l.timers) > 0 && !l.timers[0].at.After(now) {
		e := heap.Pop(&l.timers).(timerEntry)
		if n, ok := l.next[e.group]; !ok || !n.Equal(e.at) {
			continue
		}
		delete(l.next, e.group)
		l.step(e.group, Tick{})
	}
}

// step feeds one event to a group's machine and carries out what it decides.
func (l *loop) step(group string, ev Event) {
	mc := l.machines[group]
	if mc == nil {
		return
	}
	acts := mc.Step(time.Now(), ev)
	l.m.setEpoch(group, mc.Epoch())
	if b, ok := mc.(interface{ Blocked() string }); ok {
		// What holds back a takeover or a handover (a director the controller cannot hear
		// may be renewing the ACTIVE's lease), said once each time it changes.
		if why := b.Blocked(); why != l.blocked[group] {
			if why != "" {
				l.m.log.Info("role change waits", "group", group, "why", why)
			}
			l.blocked[group] = why
		}
	}
	if n := mc.Next(); !n.IsZero() {
		if old, ok := l.next[group]; !ok || !old.Equal(n) {
			l.next[group] = n
			heap.Push(&l.timers, timerEntry{at: n, group: group})
		}
	} else {
		delete(l.next, group)
	}
	if acts.Write != nil {
		l.startWrite(l.ctx, group, acts.Write)
	}
	for _, r := range acts.Replies {
		req, ok := l.pending[r.ID]
		if !ok {
			continue
		}
		delete(l.pending, r.ID)
		req.reply <- r
	}
}

func (l *loop) startWrite(ctx context.Context, group string, r *lvsctlv1.GroupRoles) {
	if _, busy := l.writes[group]; busy {
		// The machine decides again once it sees its write in the store, which may be before
		// Commit returns here. Writing both at once could store the older one last: the new
		// one waits for the one in flight (a later decision replaces it; its epoch is higher).
		l.m.log.Debug("role decision queued behind the write in flight", "group", group,
			"active", r.GetActive(), "epoch", r.GetEpoch())
		l.queued[group] = r
		return
	}
	c := l.conf[group]
	w := &write{roles: r}
	if c != nil {
		w.expect = c.rolesRev
	}
	l.m.log.Info("role decision", "group", group, "active", r.GetActive(), "epoch", r.GetEpoch(), "reason", r.GetReason(),
		"previous", r.GetPrevious(), "handover_to", r.GetHandoverTo(), "fence_ms", fenceLeft(r))
	l.writes[group] = w
	l.commit(ctx, group, w)
}

// commit writes w on a goroutine of its own: the loop keeps answering heartbeats meanwhile.
func (l *loop) commit(ctx context.Context, group string, w *write) {
	w.attempts++
	wr := store.Write{Head: l.head,
		Expect: map[string]int64{store.RolesKey(group): w.expect},
		Puts:   map[string]proto.Message{store.RolesKey(group): w.roles},
		Fence:  l.m.cfg.Fence}
	go func() {
		// A write that etcd does not answer must not hold the group's decisions forever.
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		rev, err := l.m.cfg.Store.Commit(wctx, wr)
		select {
		case l.m.written <- writeResult{group: group, roles: w.roles, expect: w.expect, rev: rev, err: err}:
		case <-ctx.Done():
		}
	}()
}

func (l *loop) writtenResult(ctx context.Context, res writeResult) {
	w := l.writes[res.group]
	if w == nil || w.roles != res.roles {
		return
	}
	if errors.Is(res.err, store.ErrConflict) && w.attempts < maxWriteAttempts && ctx.Err() == nil {
		// Refused because something else was written since the head this loop knew: go
		// again once the follower has seen that revision, if the roles key did not move.
		w.waiting, w.waitRev = true, res.rev
		l.retryWrite(ctx, res.group)
		return
	}
	delete(l.writes, res.group)
	if res.err != nil {
		l.m.log.Warn("storing the role assignment failed", "group", res.group, "active", res.roles.GetActive(),
			"epoch", res.roles.GetEpoch(), "error", res.err)
	} else {
		l.m.log.Info("role assignment stored", "group", res.group, "active", res.roles.GetActive(),
			"epoch", res.roles.GetEpoch(), "revision", res.rev)
		if l.m.cfg.Stored != nil {
			l.m.cfg.Stored(res.roles)
		}
	}
	l.step(res.group, Written{Roles: res.roles, Err: res.err})
	l.startQueued(ctx, res.group)
}

// startQueued writes the assignment decided while the last one was in flight, if any and if
// nothing else is in flight now (the step above may have started a write of its own, which
// then supersedes the queued one: the machine decided it later).
func (l *loop) startQueued(ctx context.Context, group string) {
	q := l.queued[group]
	if q == nil {
		return
	}
	delete(l.queued, group)
	if _, busy := l.writes[group]; busy {
		return
	}
	l.startWrite(ctx, group, q)
}

// retryWrite sends a write refused on a conflict again once the follower is at the revision
// that refused it, or gives up if the group's roles key changed meanwhile.
func (l *loop) retryWrite(ctx context.Context, group string) {
	w := l.writes[group]
	if w == nil || !w.waiting || l.revision < w.waitRev {
		return
	}
	w.waiting = false
	c := l.conf[group]
	if c == nil || c.rolesRev != w.expect {
		delete(l.writes, group)
		err := fmt.Errorf("group %s: %w: its roles changed while the assignment was written", group, store.ErrConflict)
		l.m.log.Warn("storing the role assignment failed", "group", group, "epoch", w.roles.GetEpoch(), "error", err)
		l.step(group, Written{Roles: w.roles, Err: err})
		l.startQueued(ctx, group)
		return
	}
	l.commit(ctx, group, w)
}

func (l *loop) agent(a agentEvent) {
	switch ev := a.ev.(type) {
	case Heard:
		// Cleared before the step reads the clock: a Heard dropped until now happened
		// before that time.
		l.m.heardFlag(a.director).Store(false)
		l.connected[a.director] = true
	case Disconnected:
		delete(l.connected, a.director)
		delete(l.reports, a.director)
	case Reported:
		l.connected[a.director] = true
		l.reports[a.director] = ev.Status
	}
	if g, ok := l.dirGroup[a.director]; ok {
		l.step(g, a.ev)
	} else if g, ok := l.former[a.director]; ok {
		l.step(g, a.ev)
	}
}

func (l *loop) request(r *request) {
	if l.revision < r.atLeast {
		l.parked = append(l.parked, r)
		return
	}
	if _, ok := l.machines[r.group]; !ok {
		r.reply <- Reply{ID: r.ev.ID, Err: fmt.Errorf("group: %w: %q", ErrUnknownGroup, r.group)}
		return
	}
	l.pending[r.ev.ID] = r
	l.step(r.group, r.ev)
}

func (l *loop) configure(ctx context.Context, u configUpdate) {
	l.revision, l.head = u.revision, u.head
	if u.full {
		for name := range l.conf {
			if _, ok := u.groups[name]; !ok {
				u.groups[name] = nil
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(u.groups)) {
		c := u.groups[name]
		if c == nil {
			l.removeGroup(name)
			continue
		}
		l.conf[name] = c
		_, existed := l.machines[name]
		if !existed {
			l.machines[name] = l.m.cfg.newMachine(name)
		}
		l.step(name, Configured{Group: c.group, Roles: c.roles, Revision: u.revision})
		if !existed {
			l.replay(name)
		}
	}
	l.indexDirectors()
	for _, g := range slices.Sorted(maps.Keys(l.writes)) {
		l.retryWrite(ctx, g)
	}
	if !l.loaded {
		l.loaded = true
		l.m.readyOnce.Do(func() { close(l.m.ready) })
	}
}

// replay tells a new machine what is known of its directors' agents.
func (l *loop) replay(group string) {
	for _, d := range l.conf[group].group.GetDirectors() {
		name := d.GetName()
		if !l.connected[name] {
			continue
		}
		l.step(group, Heard{Director: name})
		if st := l.reports[name]; st != nil {
			l.step(group, Reported{Director: name, Status: st})
		}
	}
}

func (l *loop) removeGroup(name string) {
	// The machine answers the requests it holds; any left are answered here.
	l.step(name, Configured{Revision: l.revision})
	delete(l.conf, name)
	delete(l.machines, name)
	delete(l.next, name)
	delete(l.writes, name)
	delete(l.queued, name)
	delete(l.blocked, name)
	l.m.epochs.Delete(name)
	for id, r := range l.pending {
		if r.group == name {
			delete(l.pending, id)
			r.reply <- Reply{ID: id, Err: fmt.Errorf("group: %w: %q was deleted", ErrUnknownGroup, name)}
		}
	}
}

// indexDirectors maps directors to groups; a director named by two groups (validation
// refuses it) belongs to the first by name, as the fan-out decides.
func (l *loop) indexDirectors() {
	prev := l.dirGroup
	l.dirGroup = map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(l.conf)) {
		for _, d := range l.conf[name].group.GetDirectors() {
			if _, ok := l.dirGroup[d.GetName()]; !ok {
				l.dirGroup[d.GetName()] = name
			}
		}
	}
	for d, g := range prev {
		if _, ok := l.dirGroup[d]; !ok {
			l.former[d] = g
		}
	}
	for d := range l.dirGroup {
		delete(l.former, d)
	}
	for d, g := range l.former {
		if _, ok := l.conf[g]; !ok {
			delete(l.former, d)
		}
	}
}

type timerEntry struct {
	at    time.Time
	group string
}

type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// fenceLeft is how long the new ACTIVE of r must still wait for the fence, in ms (0: none),
// for the decision's log line.
func fenceLeft(r *lvsctlv1.GroupRoles) int64 {
	if r.GetFenceUntilUnixMs() == 0 {
		return 0
	}
	return max(0, r.GetFenceUntilUnixMs()-time.Now().UnixMilli())
}

// unpark handles the parked requests the loop has now followed the store far enough for.
func (l *loop) unpark() {
	parked := l.parked
	l.parked = nil
	for _, r := range parked {
		l.request(r)
	}
}

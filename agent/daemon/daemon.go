// Package daemon is the agent's main loop: it takes desired states from the controller
// session (or, when the controller is unreachable at start, from the state file), runs the
// reconciler on every change and every resync period, saves what it applied, and acks.
//
// What it applies is the desired state as this director serves it (health.go): real servers
// its health checks find down, drained ones, and removed ones in their grace period get
// weight 0 (or leave the service), while the desired state saved and acked stays the
// controller's.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/announce"
	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/peer"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/role"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/stats"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Config of an agent.
type Config struct {
	Director string
	Version  string
	Logger   *slog.Logger
	State    *state.State
	// Reconciler applies desired states to the kernel (a *reconcile.Reconciler).
	Reconciler Reconciler
	// Session is the controller connection (a *session.Session); Run starts it.
	Session Session
	// Capabilities tells the controller what this kernel can do; called for every Hello.
	Capabilities func() *lvsctlv1.Capabilities
	// Resync is the period of drift repair against the kernel.
	Resync time.Duration
	// OfflineAfter is how long the agent waits for the controller's first snapshot before it
	// applies the last saved one (a restart during a controller outage).
	OfflineAfter time.Duration
	// Applied, when set, is called after each reconcile (tests, metrics).
	Applied func(rev int64, res reconcile.Result)
	// Stats samples IPVS counters every StatsPeriod; nil turns status reports off.
	Stats       *stats.Reporter
	StatsPeriod time.Duration
	// Metrics, when set, records reconciles and the sampled stats for /metrics.
	Metrics *metrics.Agent
	// Watchers, when set, tell of changes made to the kernel behind the agent's back (`nft
	// flush ruleset` by `systemctl reload nftables`, a VIP removed by ifupdown): once a
	// desired state is held, each is repaired RepairDelay later instead of at the next
	// resync. A Watcher that cannot start is logged, and the resync alone repairs drift.
	Watchers []Watcher
	// Role is the failover logic; nil: role.New(Director). Tests pass their own.
	Role RoleMachine
	// Peers opens the peer heartbeat transport on the director's address in its group (nil:
	// no peer heartbeats).
	Peers func(local netip.AddrPort) (PeerTransport, error)
	// Prober probes peers' hosts (nil: none).
	Prober Prober
	// Announcer sends gratuitous ARP / unsolicited NA after a takeover (nil: none).
	Announcer Announcer
	// Addresses reads an interface's addresses (a *vip.Manager): at start, the addresses the
	// state file says the agent holds are looked for in the kernel, since after a reboot
	// they are gone. Nil: the state file is believed.
	Addresses AddressReader
	// RepairDelay gathers a burst of changes (a flush, an interface's addresses going one by
	// one) into one reconcile.
	RepairDelay time.Duration
	// Health runs the real servers' health checks (nil: none run, and every real server
	// keeps its weight). Its transitions must reach HealthChanged; Run starts it.
	Health HealthChecker
	// Kernel reads IPVS at start (nil: not read): a real server of an owned service that its
	// cluster no longer has is held at weight 0 for the grace again, as it may have been when
	// the agent stopped.
	Kernel stats.Sampler
	// AcceptOlderRevision accepts the first snapshot of a group even if its revision is older
	// than the one this agent applied (and obeys its roles whatever their epochs): the
	// operator's word that the controller's store was restored from a backup or replaced.
	// Once per Run: later snapshots are refused again below the revision accepted.
	AcceptOlderRevision bool
}

// Watcher tells of changes to kernel state the agent keeps (*nft.Firewall, *vip.Manager).
type Watcher interface {
	// Watch signals after changes (several may be one signal) until ctx ends, then closes
	// the channel.
	Watch(ctx context.Context) (<-chan struct{}, error)
}

// Session is the agent's connection to the controller.
type Session interface {
	// Run connects, and reconnects, until ctx ends. hello is called for each new stream;
	// handle gets the controller's messages in order.
	Run(ctx context.Context, hello func() *lvsctlv1.Hello, handle func(*lvsctlv1.ConnectResponse)) error
	// Send queues a message on the current stream; without one it returns an error wrapping
	// session.ErrNotConnected.
	Send(*lvsctlv1.ConnectRequest) error
}

// Reconciler makes the kernel match a desired state: Apply reads the whole kernel back (a
// snapshot, drift repair); ApplyDelta reconciles only the clusters a delta names, on top of
// what the last Apply or ApplyDelta applied, and takes the full path itself when the group or
// the role it is given differs from what it last applied.
type Reconciler interface {
	Apply(ctx context.Context, desired *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result
	ApplyDelta(ctx context.Context, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) reconcile.Result
}

// HoldingReconciler takes or releases the group's addresses alone: a takeover changes
// addresses only, so it is not a full reconcile. A Reconciler without it gets a full Apply.
type HoldingReconciler interface {
	ApplyHolding(ctx context.Context, hold bool) reconcile.Result
}

// GenReconciler applies a hold only if no release started since it was decided: a reconcile
// queued before a release, which starts after the release ran, must not put the addresses
// back for its whole run. A Reconciler without it is released again after such a reconcile.
type GenReconciler interface {
	// ReleaseGen is read before deciding whether to hold, and passed with the decision.
	ReleaseGen() uint64
	ApplyAt(ctx context.Context, gen uint64, desired *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result
	ApplyDeltaAt(ctx context.Context, gen uint64, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) reconcile.Result
}

var _ GenReconciler = (*reconcile.Reconciler)(nil)

// PeerTransport carries heartbeats between the directors of a group (UDP).
type PeerTransport interface {
	Send(to netip.AddrPort, hb *lvsctlv1.PeerHeartbeat) error
	// Recv delivers the heartbeats received until Close.
	Recv() <-chan peer.Received
	Close()
}

// Prober probes peers' hosts (ICMP echo), whose kernels may forward while their agents do not.
type Prober interface {
	// Probe sends one probe; it does not wait for the answer.
	Probe(peer string, addr netip.Addr) error
	// Answers delivers the name of each peer whose host answered.
	Answers() <-chan string
}

// Announcer tells the network where addresses just taken are.
type Announcer interface {
	// Announce sends gratuitous ARP (IPv4) or unsolicited NA (IPv6) for each, with its
	// repeats, until done or ctx ends.
	Announce(ctx context.Context, addrs []announce.Address)
	// Prepare readies what Announce needs on these interfaces, so that a takeover does not
	// spend its first milliseconds opening sockets.
	Prepare(ifaces []string)
}

// Agent is a running agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	// newStream is set by each Hello: the controller on the other end may know nothing of
	// this director's stats, so the next report is a full one.
	newStream atomic.Bool
	// disconnected: a report found no stream, so until the next Hello, stats are sampled for
	// the metrics only. Used by Run's goroutine alone.
	disconnected bool
	// healthQ carries the checker's transitions to the loop.
	healthQ *healthQueue
}

// New returns an agent. A nil Logger discards logs.
func New(cfg Config) *Agent {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = 10 * time.Second
	}
	if cfg.StatsPeriod == 0 {
		cfg.StatsPeriod = time.Second
	}
	if cfg.RepairDelay == 0 {
		// Long enough for a burst of notifications to arrive, short next to the second an
		// operator expects a repair in.
		cfg.RepairDelay = 150 * time.Millisecond
	}
	return &Agent{cfg: cfg, log: cfg.Logger.With("director", cfg.Director), healthQ: newHealthQueue()}
}

// AddressReader lists an interface's addresses.
type AddressReader interface {
	Addresses(iface string) ([]netip.Prefix, error)
}

// kernelHolds reports whether the kernel still has any of the owned addresses: an agent
// restarted on a running director keeps what its kernel holds for one fence time, but one
// started after a reboot holds nothing, and must not claim (in its heartbeats) what it has
// not, which would make the group's current ACTIVE wait for a release that means nothing.
func (a *Agent) kernelHolds(owned []state.Address) bool {
	if len(owned) == 0 {
		return false
	}
	if a.cfg.Addresses == nil {
		return true
	}
	byIface := map[string][]netip.Prefix{}
	for _, o := range owned {
		have, ok := byIface[o.Interface]
		if !ok {
			var err error
			if have, err = a.cfg.Addresses.Addresses(o.Interface); err != nil {
				a.log.Debug("cannot read addresses at start", "interface", o.Interface, "error", err)
			}
			byIface[o.Interface] = have
		}
		if slices.Contains(have, o.Prefix) {
			return true
		}
	}
	return false
}

// ErrSessionEnded is returned when the session stops for a reason other than ctx.
var ErrSessionEnded = errors.New("controller session ended")

// Run runs until ctx ends. Ending never changes the data plane.
//
// Run waits for events, hands each to the loop's step, and carries out the actions it returns.
// The kernel work (reconciles, taking and releasing addresses, stats, and the messages whose
// order on the stream matters) runs on one worker goroutine in order, so that the role logic
// keeps heartbeating and hearing answers while a large reconcile runs: a slow reconcile must
// not cost the ACTIVE its lease.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := newInbox()
	ctlBeats := make(chan *lvsctlv1.Heartbeat, 16)
	hellos := make(chan struct{}, 1)
	sessErr := make(chan error, 1)
	go func() {
		sessErr <- a.cfg.Session.Run(ctx, func() *lvsctlv1.Hello {
			h := a.hello()
			select {
			case hellos <- struct{}{}:
			default: // one is waiting already
			}
			return h
		}, func(m *lvsctlv1.ConnectResponse) {
			if hb := m.GetHeartbeat(); hb != nil {
				// Never behind a snapshot waiting for a reconcile: an answer late by a
				// reconcile is no answer to the lease.
				select {
				case ctlBeats <- hb:
				default: // the loop is behind; the next one carries the latest echo
				}
				return
			}
			// Never blocks: the session's Recv must go on reading the controller's heartbeat
			// answers behind this message while a long reconcile runs.
			msgs.push(m)
		})
	}()

	l := &loop{director: a.cfg.Director, log: a.log, hasDataPlane: a.hasDataPlane, repairDelay: a.cfg.RepairDelay, machine: a.cfg.Role,
		acceptOlder: a.cfg.AcceptOlderRevision, journal: a.cfg.State.JournalPath(), floor: a.cfg.State.AppliedRevision()}
	if l.machine == nil {
		l.machine = role.New(a.cfg.Director)
	}
	held := false
	integrity := a.cfg.State.Integrity()
	if saved, ok := a.cfg.State.Desired(); ok {
		// An intact journal's role and revision still fence what the controller sends when
		// state.json is the damaged one; its state is not applied offline all the same.
		l.role, l.floor = saved.Role, max(l.floor, saved.Revision)
		if integrity == nil {
			l.saved, l.savedRv = saved.State, saved.Revision
			if l.saved == nil {
				l.saved = &lvsctlv1.DesiredState{}
			}
		}
		held = saved.Role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && a.kernelHolds(a.cfg.State.OwnedAddresses())
	}
	if integrity != nil {
		// Nothing saved is applied: the kernel stays as it is until the controller's state
		// arrives, which is applied as after any start (what state.json listed is adopted).
		a.log.Error("the saved state failed its integrity check: not applying it; waiting for the controller, the kernel kept as it is",
			"state_file", a.cfg.State.Path(), "journal", a.cfg.State.JournalPath(), "error", integrity)
		a.countRefusal(integrity)
		l.integrity = fmt.Errorf("%w: the saved state is not applied; waiting for the controller's, the kernel kept as it is", integrity)
	}

	w := &worker{a: a, ctx: ctx, jobs: make(chan func(), 256), done: make(chan struct{}, 64), behind: make(chan struct{}, 1), preempted: make(chan struct{}, 1), releaseFailed: make(chan struct{}, 1), finished: make(chan struct{}),
		counts: make(chan []removalCount, 1)}
	go w.run()
	defer w.stop()
	r := &runner{a: a, ctx: ctx, l: l, w: w}
	defer r.closePeers()
	// A release runs on its own goroutine; it must not change the kernel or the state file
	// after Run returned (ctx is cancelled first: it ends early).
	defer func() { cancel(); r.releasing.Wait() }()

	offline := time.NewTimer(a.cfg.OfflineAfter)
	defer offline.Stop()
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	sample := time.NewTicker(a.cfg.StatsPeriod)
	defer sample.Stop()
	changes := a.watch(ctx)
	var repair, roleTick deadline
	defer repair.stop()
	defer roleTick.stop()
	var answers <-chan string
	if a.cfg.Prober != nil {
		answers = a.cfg.Prober.Answers()
	}
	if a.cfg.Health != nil {
		checks := make(chan struct{})
		go func() {
			defer close(checks)
			_ = a.cfg.Health.Run(ctx)
		}()
		// The checks end with Run: ctx is cancelled first.
		defer func() { cancel(); <-checks }()
	}
	var removals deadline
	defer removals.stop()
	r.handle(evStart{held: held, kernel: a.kernelReals()})
	for {
		repair.set(l.repairAt)
		roleTick.set(l.machine.Next())
		removals.set(l.hs.removalAt)
		var (
			msgsC, healthC           <-chan struct{}
			offlineC, resyncC, sampC <-chan time.Time
			repairC, removalsC       <-chan time.Time
			countsC                  <-chan []removalCount
		)
		if w.busy == 0 {
			// A snapshot or delta waits in msgs while a reconcile runs: each is stepped
			// on the state the one before it left. So do health transitions and the ends of
			// removals, which a long reconcile gathers into one.
			msgsC, healthC, countsC = msgs.notify, a.healthQ.notify, w.counts
			offlineC, resyncC, sampC, repairC, removalsC = offline.C, resync.C, sample.C, repair.c(), removals.c()
		}
		var ev event
		select {
		case <-ctx.Done():
			return nil
		case err := <-sessErr:
			if ctx.Err() != nil {
				return nil
			}
			return errors.Join(ErrSessionEnded, err)
		case <-w.done:
			w.busy--
			continue
		case <-msgsC:
			m, ok := msgs.pop()
			if !ok {
				continue
			}
			ev = evMessage{m: m}
		case hb := <-ctlBeats:
			ev = evCtlHeartbeat{hb: hb}
		case <-w.behind:
			ev = evSaveBehind{}
		case <-w.preempted:
			ev = evPreempted{}
		case <-w.releaseFailed:
			ev = evReleaseFailed{}
		case <-hellos:
			r.ctlUp = true
			ev = evHello{}
		case <-offlineC:
			ev = evOffline{}
		case <-resyncC:
			ev = evResync{}
		case <-changes:
			ev = evKernelChange{}
		case <-repairC:
			repair.fired()
			ev = evRepairDue{}
		case <-sampC:
			ev = evStatsTick{}
		case <-roleTick.c():
			roleTick.fired()
			ev = evRoleTick{}
		case <-healthC:
			ev = evHealth{statuses: a.healthQ.take()}
		case <-removalsC:
			removals.fired()
			ev = evRemovalDue{}
		case c := <-countsC:
			ev = evRemovalCounts{counts: c}
		case pm, ok := <-r.peerIn:
			if !ok {
				r.peerIn = nil
				continue
			}
			ev = evPeerHeartbeat{from: pm.From, hb: pm.HB}
		case p := <-answers:
			ev = evProbeAnswer{peer: p}
		}
		r.handle(ev)
	}
}

// inbox holds the controller's snapshots and deltas until Run's goroutine steps them, in the
// order they came. The session's callback pushes and never waits: were it to block behind a
// long reconcile, the session would stop reading its stream, and the controller's answers to
// the ACTIVE's heartbeats, which keep its lease, would go unread behind the messages.
type inbox struct {
	mu    sync.Mutex
	queue []*lvsctlv1.ConnectResponse
	// notify has a value while queue is not empty (pop puts it back when more are left).
	notify chan struct{}
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1)} }

// push queues m. A snapshot replaces the whole desired state and the roles, so what waits
// before it would be applied only to be replaced: dropped, which also bounds the queue to one
// snapshot and the deltas after it.
func (q *inbox) push(m *lvsctlv1.ConnectResponse) {
	q.mu.Lock()
	if m.GetSnapshot() != nil {
		clear(q.queue)
		q.queue = q.queue[:0]
	}
	q.queue = append(q.queue, m)
	q.mu.Unlock()
	q.signal()
}

// pop takes the oldest message (false: none).
func (q *inbox) pop() (*lvsctlv1.ConnectResponse, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		return nil, false
	}
	m := q.queue[0]
	q.queue[0] = nil
	q.queue = q.queue[1:]
	if len(q.queue) > 0 {
		q.signal()
	}
	return m, true
}

func (q *inbox) signal() {
	select {
	case q.notify <- struct{}{}:
	default: // one is pending already
	}
}

// runner carries out the loop's actions.
type runner struct {
	a   *Agent
	ctx context.Context
	l   *loop
	w   *worker
	// ctlUp: a stream is up, as far as the runner knows (a Hello came, no send failed since).
	ctlUp bool
	// peers is the peer heartbeat transport, bound to l.local; nil without one.
	peers  PeerTransport
	peerIn <-chan peer.Received
	// releasing counts the releases running.
	releasing sync.WaitGroup
	// bindFailed is the address the transport last failed to open on (logged once).
	bindFailed netip.AddrPort
}

// handle steps ev and carries out the actions, and the events they lead to.
func (r *runner) handle(ev event) {
	queue := []event{ev}
	for len(queue) > 0 {
		ev, queue = queue[0], queue[1:]
		acts := r.l.step(time.Now(), ev)
		r.w.hold.Store(r.l.hold)
		for _, err := range r.l.refusals {
			r.a.log.Error("refused", "reason", refusalReason(err), "error", err)
			r.a.countRefusal(err)
		}
		r.l.refusals = r.l.refusals[:0]
		for _, act := range acts {
			queue = append(queue, r.do(act)...)
		}
	}
}

// do carries out one action; it returns the events it led to.
func (r *runner) do(act action) []event {
	a := r.a
	switch act := act.(type) {
	case actHeartbeat:
		// Sent at once, not behind a reconcile: it is what keeps the lease.
		err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: act.hb}})
		if errors.Is(err, session.ErrNotConnected) && r.ctlUp {
			r.ctlUp = false
			return []event{evSessionLost{}}
		}
	case actPeers:
		if r.peers == nil {
			return nil
		}
		for _, o := range act.out {
			if err := r.peers.Send(o.To, o.HB); err != nil {
				a.log.Debug("peer heartbeat not sent", "peer", o.Peer, "to", o.To, "error", err)
			}
		}
	case actProbe:
		if a.cfg.Prober == nil {
			// A director that cannot probe reports its peers' probes never answered, which
			// the controller does not take for a dead host (PeerStatus.probes_answered): it
			// cannot tell a dead host from a dead agent whose kernel still holds the VIPs.
			return nil
		}
		for _, o := range act.out {
			if err := a.cfg.Prober.Probe(o.Peer, o.To.Addr()); err != nil {
				a.log.Debug("probe not sent", "peer", o.Peer, "to", o.To, "error", err)
			}
		}
	case actBind:
		if !r.bind(act.local) {
			return []event{evBindFailed(act)}
		}
	case actHolding:
		h, ok := a.cfg.Reconciler.(HoldingReconciler)
		if act.hold || !ok {
			act.queued = time.Now()
			r.w.jobs <- func() { r.w.do(act) }
			return nil
		}
		// A release does not queue behind a reconcile: the lease says when the addresses
		// must be gone. It runs now and stops the reconcile running; the worker waits for it
		// before anything else, so what follows (a status saying not holding) is true.
		start, preempts := time.Now(), r.w.busy > 0
		r.w.releases.Add(1) // after hold was stored: a job that sees this sees hold false
		done := make(chan reconcile.Result, 1)
		r.releasing.Go(func() { done <- h.ApplyHolding(r.ctx, false) })
		r.w.jobs <- func() {
			r.w.held(false, <-done, start, 0)
			if preempts {
				select {
				case r.w.preempted <- struct{}{}:
				default: // one is waiting already
				}
			}
		}
	case actRoleStatus:
		r.w.queueStatus(act.status)
	case actSetTargets:
		// At once: Set only hands the targets over, and a new real server must not wait
		// behind a reconcile to be checked.
		if a.cfg.Health != nil {
			a.cfg.Health.Set(act.targets)
		}
	case actReconcile:
		r.w.busy++
		r.w.jobs <- func() {
			a.reconcile(r.ctx, act, r.w)
			r.w.done <- struct{}{}
		}
	default:
		r.w.jobs <- func() { r.w.do(act) }
	}
	return nil
}

// bind moves the peer transport to local (closes it when local is invalid); false: it could
// not be opened there (the loop tries again).
func (r *runner) bind(local netip.AddrPort) bool {
	r.closePeers()
	if !local.IsValid() || r.a.cfg.Peers == nil {
		return true
	}
	tr, err := r.a.cfg.Peers(local)
	if err != nil {
		// The controller still answers heartbeats; the peers will report this one
		// unreachable, which is the truth. Retried at every role tick: logged once.
		if r.bindFailed != local {
			r.bindFailed = local
			r.a.log.Error("no peer heartbeats: cannot listen (retrying)", "address", local, "error", err)
		}
		return false
	}
	r.bindFailed = netip.AddrPort{}
	r.a.log.Info("peer heartbeats", "address", local)
	r.peers, r.peerIn = tr, tr.Recv()
	return true
}

func (r *runner) closePeers() {
	if r.peers == nil {
		return
	}
	r.peers.Close()
	r.peers, r.peerIn = nil, nil
}

// worker runs the kernel work and the stream messages that must follow it, in order.
type worker struct {
	a    *Agent
	ctx  context.Context
	jobs chan func()
	done chan struct{} // one per reconcile job finished
	// behind: a delta could not be saved on top of the saved state.
	behind   chan struct{}
	finished chan struct{}
	// busy counts reconcile jobs queued and not done. Used by Run's goroutine alone.
	busy int
	// The rest is used by the worker goroutine alone.
	// holding is whether the last reconcile or holding job applied the group's addresses:
	// a status never says more than that.
	holding bool
	sync    *lvsctlv1.SyncStatus
	// added is what the jobs added to the interfaces since the last announce or release.
	added []state.Address
	// hold is what the role machine says now, set by Run's goroutine after each step: a
	// reconcile queued before a release must not take the addresses back after it.
	hold atomic.Bool
	// lastStatus is the role machine's last status, sent again when what is held changes.
	lastStatus *lvsctlv1.RoleStatus
	// pendingStatus, guarded by statusMu, is the status waiting to be sent (nil: none).
	statusMu      sync.Mutex
	pendingStatus *lvsctlv1.RoleStatus
	// releases counts the releases started (by Run's goroutine, which runs them at once).
	releases atomic.Uint64
	// preempted: a release stopped a running reconcile, which must be done again.
	preempted chan struct{}
	// releaseFailed: a release left owned addresses behind; the loop retries it.
	releaseFailed chan struct{}
	// counts carries the connection counts of removals from a stats sample to the loop.
	counts chan []removalCount
}

func (w *worker) run() {
	defer close(w.finished)
	for j := range w.jobs {
		if w.ctx.Err() != nil {
			// Ending never changes the data plane: what was queued is dropped.
			continue
		}
		j()
	}
}

// stop waits for the jobs queued to finish (ctx is cancelled: they end early).
func (w *worker) stop() {
	close(w.jobs)
	<-w.finished
}

func (w *worker) do(act action) {
	a := w.a
	switch act := act.(type) {
	case actHolding:
		gen := w.releases.Load()
		if act.hold && !w.hold.Load() {
			return // released since: the release is queued or done
		}
		start := time.Now()
		var res reconcile.Result
		if h, ok := a.cfg.Reconciler.(HoldingReconciler); ok {
			res = h.ApplyHolding(w.ctx, act.hold)
		} else if act.desired != nil {
			res = a.cfg.Reconciler.Apply(w.ctx, act.desired, act.role)
		}
		w.held(act.hold && !w.releasedSince(gen), res, start, start.Sub(act.queued))
	case actPrepareAnnounce:
		if a.cfg.Announcer != nil {
			a.cfg.Announcer.Prepare(act.ifaces)
		}
	case actAnnounce:
		w.announce()
	case actSave:
		if err := a.cfg.State.SetDesired(state.Desired{Revision: act.rev, State: act.desired, Role: act.assigned}); err != nil {
			a.log.Error("saving the desired state", "revision", act.rev, "error", err)
		}
	case actAckRefusal:
		a.ackRefusal(act.why)
	case actRequestSnapshot:
		_ = a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_SnapshotRequest{
			SnapshotRequest: &lvsctlv1.SnapshotRequest{Reason: act.reason}}})
	case actReport:
		if a.cfg.Metrics != nil {
			a.cfg.Metrics.SetHealth(act.reals)
		}
		if a.cfg.Stats != nil && a.report(act.desired, act.reals) && len(act.removing) > 0 {
			w.countRemovals(act.removing)
		}
	}
}

// queueStatus has st sent after the kernel work queued so far. Statuses waiting are one: the
// latest replaces the one not sent yet, so peers flapping during a long reconcile cannot fill
// the queue and block Run's goroutine, which must keep heartbeating.
func (w *worker) queueStatus(st *lvsctlv1.RoleStatus) {
	w.statusMu.Lock()
	queued := w.pendingStatus != nil
	w.pendingStatus = st
	w.statusMu.Unlock()
	if !queued {
		w.jobs <- func() {
			w.statusMu.Lock()
			st := w.pendingStatus
			w.pendingStatus = nil
			w.statusMu.Unlock()
			w.lastStatus = st
			w.sendStatus()
		}
	}
}

// sendStatus sends the last status from the role machine with what the kernel holds: holding
// is what the jobs applied, not what the machine wants (a release not yet done is still
// holding, and the controller must not hear otherwise: it would promote another).
func (w *worker) sendStatus() {
	if w.lastStatus == nil {
		return
	}
	st := proto.CloneOf(w.lastStatus)
	st.Holding = w.holding
	st.Sync = w.sync
	if err := w.a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: st}}); err != nil {
		w.a.log.Debug("role status not sent", "error", err)
	}
}

// applied records what a reconcile or holding job left in the kernel.
func (w *worker) applied(hold bool, res reconcile.Result) {
	if !hold && w.holding && len(res.DirectorErrors) > 0 && len(w.a.cfg.State.OwnedAddresses()) > 0 {
		// Removing an address failed (the errors name it): it may still be on its interface,
		// so the status still says holding, which keeps a planned failover from promoting
		// another director, and the loop releases again.
		if !proto.Equal(res.Sync, w.sync) {
			w.sync = res.Sync
			defer w.sendStatus()
		}
		select {
		case w.releaseFailed <- struct{}{}:
		default: // one is waiting already
		}
		return
	}
	changed := hold != w.holding || !proto.Equal(res.Sync, w.sync)
	w.holding = hold
	w.sync = res.Sync
	if changed {
		// The controller decides on holding (a planned failover waits for the release).
		defer w.sendStatus()
	}
	if hold {
		// Announced at once, whichever job added them: a reconcile that runs after the
		// machine said hold (a takeover's delta, queued before the fence ended) may add the
		// addresses before the holding job does, and the clients' neighbour entries name
		// the old ACTIVE until the announcement (in the lab it once waited 120 ms for the
		// holding job and the announce job behind it).
		w.added = append(w.added, res.Added...)
		w.announce()
	} else {
		w.added = nil
	}
}

// announce sends gratuitous ARP / unsolicited NA for the addresses added since the last
// announcement.
func (w *worker) announce() {
	if w.a.cfg.Announcer != nil && len(w.added) > 0 {
		addrs := make([]announce.Address, len(w.added))
		for i, ad := range w.added {
			addrs[i] = announce.Address{Interface: ad.Interface, IP: ad.Prefix.Addr()}
		}
		// It sends once and returns; the repeats run in the background.
		w.a.cfg.Announcer.Announce(w.ctx, addrs)
	}
	w.added = nil
}

// releasedSince reports whether a release was started since gen was read, and if so releases
// again. A job that read hold before the loop released may call the reconciler after the
// release ran (the release stops only what runs when it starts): its addresses must not stay.
func (w *worker) releasedSince(gen uint64) bool {
	if w.releases.Load() == gen {
		return false
	}
	if h, ok := w.a.cfg.Reconciler.(HoldingReconciler); ok && !w.hold.Load() {
		w.held(false, h.ApplyHolding(w.ctx, false), time.Now(), 0)
	}
	return true
}

// held records and logs a holding job; waited is how long it was queued (0: not).
func (w *worker) held(hold bool, res reconcile.Result, start time.Time, waited time.Duration) {
	w.applied(hold, res)
	log := w.a.log.With("hold", hold, "operations", res.Operations, "duration", time.Since(start).Round(time.Microsecond))
	if waited > 0 {
		log = log.With("waited", waited.Round(time.Microsecond))
	}
	if len(res.DirectorErrors) > 0 {
		log.Warn("group addresses changed with errors", "director_errors", res.DirectorErrors)
	} else {
		log.Info("group addresses changed")
	}
}

// deadline is a timer set to an instant, reset only when the instant changes.
type deadline struct {
	t  *time.Timer
	at time.Time
}

func (d *deadline) set(at time.Time) {
	if at.Equal(d.at) {
		return
	}
	d.stop()
	d.at = at
	if !at.IsZero() {
		d.t = time.NewTimer(time.Until(at))
	}
}

// fired: the timer's value was received; the same instant is not waited for again.
func (d *deadline) fired() { d.t, d.at = nil, time.Time{} }

func (d *deadline) stop() {
	if d.t != nil {
		d.t.Stop()
		d.t = nil
	}
	d.at = time.Time{}
}

func (d *deadline) c() <-chan time.Time {
	if d.t == nil {
		return nil
	}
	return d.t.C
}

// roleOf is a director's role in its group's assignment.
func roleOf(r *lvsctlv1.GroupRoles, group, director string) *lvsctlv1.RoleAssignment {
	if group == "" || r == nil || r.GetGroup() != group {
		return &lvsctlv1.RoleAssignment{Group: group}
	}
	role := lvsctlv1.Role_ROLE_STANDBY
	if r.GetActive() == director {
		role = lvsctlv1.Role_ROLE_ACTIVE
	}
	return &lvsctlv1.RoleAssignment{Group: group, Role: role, Epoch: r.GetEpoch()}
}

// desiredSet is the desired state the agent holds, kept by cluster name so that a delta
// changes it in O(change). Its messages are never changed: a delta replaces them.
type desiredSet struct {
	clusters state.Clusters
	sorted   *lvsctlv1.DesiredState // built on demand, dropped on change
}

func newDesiredSet(st *lvsctlv1.DesiredState) *desiredSet {
	return &desiredSet{clusters: state.NewClusters(st)}
}

// state is the desired state with its clusters sorted by name, as the controller sends them.
func (d *desiredSet) state() *lvsctlv1.DesiredState {
	if d.sorted == nil {
		d.sorted = d.clusters.State()
	}
	return d.sorted
}

func (d *desiredSet) apply(delta *lvsctlv1.Delta) {
	d.clusters.Apply(delta)
	d.sorted = nil // not changed in place: whoever holds the old one keeps it
}

// hasDataPlane reports whether the agent has anything in the kernel to lose: services or
// addresses it owns, or the mark rules of its saved desired state's clusters (its nftables
// table is its own, so rules are not recorded one by one).
func (a *Agent) hasDataPlane() bool {
	if len(a.cfg.State.OwnedServices()) > 0 || len(a.cfg.State.OwnedAddresses()) > 0 {
		return true
	}
	if a.cfg.State.Integrity() != nil {
		return true // what it owns is not known: assume the worst
	}
	return a.cfg.State.DesiredClusters() > 0
}

// countRefusal counts a refusal in the metrics.
func (a *Agent) countRefusal(err error) {
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.Refused(refusalReason(err))
	}
}

// ackRefusal tells the controller its state was not applied: revision 0, and why. (The
// refusal was logged and counted when it was decided.)
func (a *Agent) ackRefusal(why error) {
	ack := &lvsctlv1.Ack{DirectorErrors: []string{why.Error()}}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: ack}}); err != nil {
		a.log.Debug("ack not sent", "error", err)
	}
}

// report sends what changed in the kernel's counters, and in reals, since the last report;
// false: the kernel could not be sampled.
func (a *Agent) report(cur *lvsctlv1.DesiredState, reals map[string]*stats.Reals) bool {
	if a.newStream.Swap(false) {
		a.cfg.Stats.Reset()
		a.disconnected = false
	}
	if a.disconnected {
		// Nobody to send a report to: sample for the metrics only.
		if err := a.cfg.Stats.Refresh(cur.GetClusters(), a.cfg.State.OwnsService); err != nil {
			a.log.Debug("no stats", "error", err)
			return false
		}
		a.setMetrics()
		return true
	}
	rep, err := a.cfg.Stats.Sample(cur.GetClusters(), a.cfg.State.OwnsService, reals)
	if err != nil {
		a.log.Debug("no stats", "error", err)
		return false
	}
	a.setMetrics()
	if rep == nil {
		return true
	}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Status{Status: rep}}); err != nil {
		// Lost: the next report must carry everything again.
		a.cfg.Stats.Reset()
		a.disconnected = errors.Is(err, session.ErrNotConnected)
	}
	return true
}

// countRemovals hands the loop the connections left to the real servers being removed, as the
// sample just taken found them. A server the sample shows gone from its cluster's service has
// none; a cluster the sample lacks (its service missing, or not the agent's) is not counted:
// its removals end with their grace.
func (w *worker) countRemovals(refs []removalRef) {
	last := w.a.cfg.Stats.Last()
	var counts []removalCount
	for _, ref := range refs {
		svc := last[ref.cluster]
		if svc == nil {
			continue
		}
		c := removalCount{removalRef: ref}
		for _, d := range svc.Destinations {
			if d.Address == ref.addr {
				c.conns = uint64(d.ActiveConns) + uint64(d.InactiveConns) + uint64(d.PersistentConns)
			}
		}
		counts = append(counts, c)
	}
	if len(counts) == 0 {
		return
	}
	select {
	case w.counts <- counts:
	default:
		// The loop has not taken the last counts yet: they are dropped, and the next sample
		// counts again.
	}
}

func (a *Agent) setMetrics() {
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.SetStats(a.cfg.Stats.Last())
	}
}

func (a *Agent) hello() *lvsctlv1.Hello {
	a.newStream.Store(true)
	h := &lvsctlv1.Hello{Director: a.cfg.Director, Version: a.cfg.Version, LastAppliedRevision: a.cfg.State.AppliedRevision()}
	if a.cfg.Capabilities != nil {
		h.Capabilities = a.cfg.Capabilities()
	}
	return h
}

// watch starts the Watchers, and returns one channel for all their signals (nil without any).
func (a *Agent) watch(ctx context.Context) <-chan struct{} {
	if len(a.cfg.Watchers) == 0 {
		return nil
	}
	merged := make(chan struct{}, 1)
	for _, w := range a.cfg.Watchers {
		ch, err := w.Watch(ctx)
		if err != nil {
			a.log.Warn("cannot watch the kernel for changes: drift is repaired at each resync only", "error", err, "resync", a.cfg.Resync)
			continue
		}
		go func() {
			for range ch {
				select {
				case merged <- struct{}{}:
				default: // one is waiting already, and covers this one
				}
			}
		}()
	}
	return merged
}

// reconcile carries out act: applies, saves, sets the applied revision and acks.
func (a *Agent) reconcile(ctx context.Context, act actReconcile, w *worker) {
	start := time.Now()
	// What the role machine says now, which a release may have changed since the step (a
	// delta then takes the reconciler's full path, as for any change of role).
	gr, hasGen := a.cfg.Reconciler.(GenReconciler)
	var rgen uint64
	if hasGen {
		rgen = gr.ReleaseGen() // before hold is read: a release after this one stales it
	}
	if act.save == saveSnapshot {
		// Before the reconcile, so that what a damaged state.json listed and the controller
		// wants is edited in place rather than refused as foreign.
		a.adopt(act.desired)
	}
	gen := w.releases.Load()
	role := heldRole(act.assigned, w.hold.Load())
	var res reconcile.Result
	switch {
	case act.delta != nil && hasGen:
		res = gr.ApplyDeltaAt(ctx, rgen, act.delta, role)
	case act.delta != nil:
		res = a.cfg.Reconciler.ApplyDelta(ctx, act.delta, role)
	case hasGen:
		res = gr.ApplyAt(ctx, rgen, act.effective, role)
	default:
		res = a.cfg.Reconciler.Apply(ctx, act.effective, role)
	}
	w.applied(role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && !w.releasedSince(gen), res)
	took := time.Since(start)
	rev := act.rev
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.ObserveReconcile(took, rev, res.Operations, len(res.ClusterErrors), len(res.DirectorErrors))
	}
	log := a.log.With("revision", rev, "operations", res.Operations, "duration", took.Round(time.Microsecond), "trigger", act.trigger)
	if len(res.ClusterErrors)+len(res.DirectorErrors) > 0 {
		log.Warn("reconciled with errors", "cluster_errors", len(res.ClusterErrors), "director_errors", res.DirectorErrors)
	} else if res.Operations > 0 {
		log.Info("reconciled")
	}
	if err := a.save(act, w.behind); err != nil {
		log.Error("saving the desired state", "error", err)
	}
	if err := a.cfg.State.SetAppliedRevision(rev); err != nil {
		log.Error("saving the applied revision", "error", err)
	}
	ack := &lvsctlv1.Ack{Revision: rev, Errors: res.ClusterErrors, DirectorErrors: res.DirectorErrors, Operations: uint32(res.Operations)}
	if act.refused != nil {
		// What was applied is not the controller's latest state: claim no revision of it.
		ack.Revision = 0
		ack.DirectorErrors = append(ack.DirectorErrors, act.refused.Error())
	}
	if act.roleRefused != nil {
		// The state is applied, the role is not: the revision stands, with why.
		ack.DirectorErrors = append(ack.DirectorErrors, act.roleRefused.Error())
	}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: ack}}); err != nil {
		log.Debug("ack not sent", "error", err)
	}
	if a.cfg.Applied != nil {
		a.cfg.Applied(rev, res)
	}
}

// adopt settles what a damaged state.json listed against the controller's desired state
// (state.State.Adopt), and says what it decided.
func (a *Agent) adopt(desired *lvsctlv1.DesiredState) {
	ad, err := a.cfg.State.Adopt(desired)
	if err != nil {
		a.log.Error("adopting what the damaged state file listed", "state_file", a.cfg.State.Path(), "error", err)
		return
	}
	if ad.Empty() {
		return
	}
	a.log.Warn("the damaged state file's objects settled against the controller's state: those of its clusters owned again, the rest left in the kernel untouched",
		"state_file", a.cfg.State.Path(), "adopted_services", ad.Services, "adopted_addresses", ad.Addresses,
		"left_services", ad.LeftServices, "left_addresses", ad.LeftAddresses)
}

// save records what the controller wants after a reconcile, whether it succeeded or not: it
// is what an offline start applies.
func (a *Agent) save(act actReconcile, behind chan<- struct{}) error {
	switch act.save {
	case saveSnapshot:
		return a.cfg.State.SetDesired(state.Desired{Revision: act.rev, State: act.desired, Role: act.assigned})
	case saveDelta:
		d := act.savedDelta
		err := a.cfg.State.ApplyDelta(d)
		if err == nil && d.GetRoles() != nil {
			err = a.cfg.State.SetRole(act.assigned)
		}
		if errors.Is(err, state.ErrNotFollowing) {
			// The saved state is not the one the delta follows (an earlier save failed): the
			// loop, which holds the whole state, has it saved instead.
			a.log.Warn("the saved state is behind; saving the whole desired state", "revision", act.rev)
			select {
			case behind <- struct{}{}:
			default: // one is waiting already
			}
			return nil
		}
		return err
	}
	return nil
}

// Package daemon is the agent's main loop: it takes desired states from the controller
// session (or, when the controller is unreachable at start, from the state file), runs the
// reconciler on every change and every resync period, saves what it applied, and acks.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"


	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/reconcile"
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
	// RepairDelay gathers a burst of changes (a flush, an interface's addresses going one by
	// one) into one reconcile.
	RepairDelay time.Duration
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
// snapshot, a role change, drift repair); ApplyDelta reconciles only the clusters a delta
// names, on top of what the last Apply or ApplyDelta applied.
type Reconciler interface {
	Apply(ctx context.Context, desired *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result
	ApplyDelta(ctx context.Context, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) reconcile.Result
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
	return &Agent{cfg: cfg, log: cfg.Logger.With("director", cfg.Director)}
}

// ErrSessionEnded is returned when the session stops for a reason other than ctx.
var ErrSessionEnded = errors.New("controller session ended")

// Run runs until ctx ends. Ending never changes the data plane.
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan *lvsctlv1.ConnectResponse)
	sessErr := make(chan error, 1)
	go func() {
		sessErr <- a.cfg.Session.Run(ctx, a.hello, func(m *lvsctlv1.ConnectResponse) {
			select {
			case msgs <- m:
			case <-ctx.Done():
			}
		})
	}()

	var (
		cur     *desiredSet // nil until a snapshot (controller or saved) arrives
		rev     int64
		role    *lvsctlv1.RoleAssignment
		fromCtl bool
		// refused is why the controller's latest state was not applied; every ack says so
		// until it sends one that is.
		refused error
	)
	saved, haveSaved := a.cfg.State.Desired()
	if haveSaved {
		role = saved.Role
	}
	offline := time.NewTimer(a.cfg.OfflineAfter)
	defer offline.Stop()
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	sample := time.NewTicker(a.cfg.StatsPeriod)
	defer sample.Stop()
	changes := a.watch(ctx)
	// repair fires RepairDelay after the first kernel change since the last reconcile; nil
	// while none is pending.
	var repair <-chan time.Time

	for {
		var (
			trigger string
			delta   *lvsctlv1.Delta // set: only the clusters it names are reconciled
			save    func() error    // what to save after the reconcile
		)
		dirty := false
		select {
		case <-ctx.Done():
			return nil
		case err := <-sessErr:
			if ctx.Err() != nil {
				return nil
			}
			return errors.Join(ErrSessionEnded, err)
		case <-offline.C:
			if !fromCtl && haveSaved && cur == nil {
				a.log.Warn("controller unreachable: applying the last saved desired state", "revision", saved.Revision)
				cur, rev, dirty, trigger = newDesiredSet(saved.State), saved.Revision, true, "saved-state"
			}
		case <-resync.C:
			dirty, trigger = cur != nil, "resync"
		case <-changes:
			// Ignored until a desired state is held: the agent changes nothing before then.
			// The reconcile's own changes come back here too, and make one more reconcile that
			// finds nothing to do, so changes nothing and is not signalled: no loop.
			if cur != nil && repair == nil {
				repair = time.After(a.cfg.RepairDelay)
			}
		case <-repair:
			repair = nil
			dirty, trigger = cur != nil, "kernel-change"
		case <-sample.C:
			if cur != nil && a.cfg.Stats != nil {
				a.report(cur.state())
			}
		case m := <-msgs:
			switch msg := m.GetMsg().(type) {
			case *lvsctlv1.ConnectResponse_Snapshot:
				next := msg.Snapshot.GetState()
				if next == nil {
					next = &lvsctlv1.DesiredState{} // nil is "no desired state yet" here
				}
				if refused = a.refuseGroupless(next.GetGroup()); refused != nil {
					a.ackRefusal(refused)
					continue
				}
				role = a.obey(role, roleOf(msg.Snapshot.GetRoles(), next.GetGroup().GetName(), a.cfg.Director))
				cur, rev, fromCtl, dirty, trigger = newDesiredSet(next), msg.Snapshot.GetRevision(), true, true, "snapshot"
				snapRev, snapRole := rev, role
				save = func() error {
					return a.cfg.State.SetDesired(state.Desired{Revision: snapRev, State: next, Role: snapRole})
				}
			case *lvsctlv1.ConnectResponse_Delta:
				d := msg.Delta
				if cur == nil || !fromCtl || d.GetPrevRevision() != rev {
					// A gap: deltas apply only on top of the revision they were computed from.
					a.log.Warn("delta does not follow the applied revision; asking for a snapshot", "have", rev, "prev", d.GetPrevRevision())
					_ = a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_SnapshotRequest{
						SnapshotRequest: &lvsctlv1.SnapshotRequest{Reason: "revision gap"}}})
					continue
				}
				g := cur.clusters.Group
				if d.GetGroup() != nil {
					g = d.GetGroup()
				}
				if refused = a.refuseGroupless(g); refused != nil {
					a.ackRefusal(refused)
					continue
				}
				cur.apply(d)
				rev, dirty, trigger, delta = d.GetRevision(), true, "delta", d
				if d.GetRoles() != nil {
					// A role change reads the addresses back: the full path.
					role, delta = a.obey(role, roleOf(d.GetRoles(), g.GetName(), a.cfg.Director)), nil
				}
				role := role
				save = func() error {
					err := a.cfg.State.ApplyDelta(d)
					if err == nil && d.GetRoles() != nil {
						err = a.cfg.State.SetRole(role)
					}
					if errors.Is(err, state.ErrNotFollowing) {
						// The saved state is not the one the delta follows (an earlier save
						// failed): save the whole state instead.
						err = a.cfg.State.SetDesired(state.Desired{Revision: d.GetRevision(), State: cur.state(), Role: role})
					}
					return err
				}
			}
		}
		if dirty {
			// This reconcile reads the kernel after any change seen so far: it repairs them too.
			if delta == nil {
				repair = nil
			}
			a.reconcile(ctx, cur, delta, rev, role, refused, trigger, save)
		}
	}
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

// obey returns the role to follow after next arrives: a lower epoch of the same group is
// never obeyed, whatever arrived in between (epochs count per group).
func (a *Agent) obey(cur, next *lvsctlv1.RoleAssignment) *lvsctlv1.RoleAssignment {
	if cur != nil && next.GetGroup() == cur.GetGroup() && next.GetEpoch() < cur.GetEpoch() {
		a.log.Warn("ignoring a stale role assignment", "group", next.GetGroup(), "epoch", next.GetEpoch(), "have", cur.GetEpoch())
		return cur
	}
	return next
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

// refuseGroupless returns why next is not applied: a director named in no group (a typo in
// --director, a renamed host) gets an empty state, and obeying it would tear down a working
// data plane.
func (a *Agent) refuseGroupless(group *lvsctlv1.DirectorGroup) error {
	if group.GetName() != "" || !a.hasDataPlane() {
		return nil
	}
	return fmt.Errorf("director %q is in no director group: keeping the data plane as it is "+
		"(remove what it owns by deleting its clusters first, or fix --director)", a.cfg.Director)
}

// hasDataPlane reports whether the agent has anything in the kernel to lose: services or
// addresses it owns, or the mark rules of its saved desired state's clusters (its nftables
// table is its own, so rules are not recorded one by one).
func (a *Agent) hasDataPlane() bool {
	if len(a.cfg.State.OwnedServices()) > 0 || len(a.cfg.State.OwnedAddresses()) > 0 {
		return true
	}
	return a.cfg.State.DesiredClusters() > 0
}

// ackRefusal tells the controller its state was not applied: revision 0, and why.
func (a *Agent) ackRefusal(why error) {
	a.log.Error("desired state not applied", "error", why)
	ack := &lvsctlv1.Ack{DirectorErrors: []string{why.Error()}}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: ack}}); err != nil {
		a.log.Debug("ack not sent", "error", err)
	}
}

// report sends what changed in the kernel's counters since the last report.
func (a *Agent) report(cur *lvsctlv1.DesiredState) {
	if a.newStream.Swap(false) {
		a.cfg.Stats.Reset()
		a.disconnected = false
	}
	if a.disconnected {
		// Nobody to send a report to: sample for the metrics only.
		if err := a.cfg.Stats.Refresh(cur.GetClusters(), a.cfg.State.OwnsService); err != nil {
			a.log.Debug("no stats", "error", err)
			return
		}
		a.setMetrics()
		return
	}
	rep, err := a.cfg.Stats.Sample(cur.GetClusters(), a.cfg.State.OwnsService)
	if err != nil {
		a.log.Debug("no stats", "error", err)
		return
	}
	a.setMetrics()
	if rep == nil {
		return
	}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Status{Status: rep}}); err != nil {
		// Lost: the next report must carry everything again.
		a.cfg.Stats.Reset()
		a.disconnected = errors.Is(err, session.ErrNotConnected)
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

// reconcile applies cur (only what delta names, when set), saves it and acks it; trigger
// says why, in the log. save, when set, records the desired state after a successful or
// failed apply alike: it is what the controller wants, kept for an offline start.
func (a *Agent) reconcile(ctx context.Context, cur *desiredSet, delta *lvsctlv1.Delta, rev int64, role *lvsctlv1.RoleAssignment, refused error, trigger string, save func() error) {
	start := time.Now()
	var res reconcile.Result
	if delta != nil {
		res = a.cfg.Reconciler.ApplyDelta(ctx, delta, role)
	} else {
		res = a.cfg.Reconciler.Apply(ctx, cur.state(), role)
	}
	took := time.Since(start)
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.ObserveReconcile(took, rev, res.Operations, len(res.ClusterErrors), len(res.DirectorErrors))
	}
	log := a.log.With("revision", rev, "operations", res.Operations, "duration", took.Round(time.Microsecond), "trigger", trigger)
	if len(res.ClusterErrors)+len(res.DirectorErrors) > 0 {
		log.Warn("reconciled with errors", "cluster_errors", len(res.ClusterErrors), "director_errors", res.DirectorErrors)
	} else if res.Operations > 0 {
		log.Info("reconciled")
	}
	if save != nil {
		if err := save(); err != nil {
			log.Error("saving the desired state", "error", err)
		}
	}
	if err := a.cfg.State.SetAppliedRevision(rev); err != nil {
		log.Error("saving the applied revision", "error", err)
	}
	ack := &lvsctlv1.Ack{Revision: rev, Errors: res.ClusterErrors, DirectorErrors: res.DirectorErrors, Operations: uint32(res.Operations)}
	if refused != nil {
		// What was applied is not the controller's latest state: claim no revision of it.
		ack.Revision = 0
		ack.DirectorErrors = append(ack.DirectorErrors, refused.Error())
	}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: ack}}); err != nil {
		log.Debug("ack not sent", "error", err)
	}
	if a.cfg.Applied != nil {
		a.cfg.Applied(rev, res)
	}
}

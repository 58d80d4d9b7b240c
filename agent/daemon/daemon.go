// Package daemon is the agent's main loop: it takes desired states from the controller
// session (or, when the controller is unreachable at start, from the state file), runs the
// reconciler on every change and every resync period, saves what it applied, and acks.
package daemon

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

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
	// Reconciler applies desired states to the kernel.
	Reconciler *reconcile.Reconciler
	// Session is the controller connection; Run starts it.
	Session *session.Session
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
}

// Agent is a running agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	// newStream is set by each Hello: the controller on the other end may know nothing of
	// this director's stats, so the next report is a full one.
	newStream atomic.Bool
}

// New returns an agent.
func New(cfg Config) *Agent {
	if cfg.Resync == 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = 10 * time.Second
	}
	if cfg.StatsPeriod == 0 {
		cfg.StatsPeriod = time.Second
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
		cur     *lvsctlv1.DesiredState // nil until a snapshot (controller or saved) arrives
		rev     int64
		role    *lvsctlv1.RoleAssignment
		fromCtl bool
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

	for {
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
				cur, rev, dirty = saved.State, saved.Revision, true
			}
		case <-resync.C:
			dirty = cur != nil
		case <-sample.C:
			if cur != nil && a.cfg.Stats != nil {
				a.report(cur)
			}
		case m := <-msgs:
			switch msg := m.GetMsg().(type) {
			case *lvsctlv1.ConnectResponse_Snapshot:
				cur, rev, fromCtl, dirty = msg.Snapshot.GetState(), msg.Snapshot.GetRevision(), true, true
			case *lvsctlv1.ConnectResponse_Delta:
				d := msg.Delta
				if cur == nil || !fromCtl || d.GetPrevRevision() != rev {
					// A gap: deltas apply only on top of the revision they were computed from.
					a.log.Warn("delta does not follow the applied revision; asking for a snapshot", "have", rev, "prev", d.GetPrevRevision())
					_ = a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_SnapshotRequest{
						SnapshotRequest: &lvsctlv1.SnapshotRequest{Reason: "revision gap"}}})
					continue
				}
				cur, rev, dirty = applyDelta(cur, d), d.GetRevision(), true
			case *lvsctlv1.ConnectResponse_Role:
				// A stale assignment (lower epoch) is ignored: only a higher epoch may move VIPs.
				if role == nil || msg.Role.GetEpoch() >= role.GetEpoch() {
					dirty = role == nil || !proto.Equal(role, msg.Role)
					role = msg.Role
				}
				dirty = dirty && cur != nil
			}
		}
		if dirty {
			a.reconcile(ctx, cur, rev, role, fromCtl)
		}
	}
}

// report sends what changed in the kernel's counters since the last report.
func (a *Agent) report(cur *lvsctlv1.DesiredState) {
	if a.newStream.Swap(false) {
		a.cfg.Stats.Reset()
	}
	rep, err := a.cfg.Stats.Sample(cur.GetClusters())
	if err != nil {
		a.log.Debug("no stats", "error", err)
		return
	}
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.SetStats(a.cfg.Stats.Last())
	}
	if rep == nil {
		return
	}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Status{Status: rep}}); err != nil {
		// Lost: the next report must carry everything again.
		a.cfg.Stats.Reset()
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

func (a *Agent) reconcile(ctx context.Context, cur *lvsctlv1.DesiredState, rev int64, role *lvsctlv1.RoleAssignment, fromCtl bool) {
	start := time.Now()
	res := a.cfg.Reconciler.Apply(ctx, cur, role)
	took := time.Since(start)
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.ObserveReconcile(took, rev, res.Operations, len(res.ClusterErrors), len(res.DirectorErrors))
	}
	log := a.log.With("revision", rev, "operations", res.Operations, "duration", took.Round(time.Microsecond))
	if len(res.ClusterErrors)+len(res.DirectorErrors) > 0 {
		log.Warn("reconciled with errors", "cluster_errors", len(res.ClusterErrors), "director_errors", res.DirectorErrors)
	} else if res.Operations > 0 {
		log.Info("reconciled")
	}
	if fromCtl {
		if err := a.cfg.State.SetDesired(state.Desired{Revision: rev, State: cur, Role: role}); err != nil {
			log.Error("saving the desired state", "error", err)
		}
	}
	if err := a.cfg.State.SetAppliedRevision(rev); err != nil {
		log.Error("saving the applied revision", "error", err)
	}
	ack := &lvsctlv1.Ack{Revision: rev, Errors: res.ClusterErrors, DirectorErrors: res.DirectorErrors, Operations: uint32(res.Operations)}
	if err := a.cfg.Session.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: ack}}); err != nil {
		log.Debug("ack not sent", "error", err)
	}
	if a.cfg.Applied != nil {
		a.cfg.Applied(rev, res)
	}
}

// applyDelta returns a new state: deltas never mutate the state they apply to, which may
// still be referenced by the saved copy.
func applyDelta(cur *lvsctlv1.DesiredState, d *lvsctlv1.Delta) *lvsctlv1.DesiredState {
	next := &lvsctlv1.DesiredState{Group: cur.GetGroup()}
	if d.GetGroup() != nil {
		next.Group = d.GetGroup()
		if next.Group.GetName() == "" {
			next.Group = nil
		}
	}
	gone := map[string]bool{}
	for _, n := range d.GetDeleted() {
		gone[n] = true
	}
	up := map[string]*lvsctlv1.Cluster{}
	for _, c := range d.GetUpserted() {
		up[c.GetName()] = c
	}
	for _, c := range cur.GetClusters() {
		switch {
		case gone[c.GetName()]:
		case up[c.GetName()] != nil:
			next.Clusters = append(next.Clusters, up[c.GetName()])
			delete(up, c.GetName())
		default:
			next.Clusters = append(next.Clusters, c)
		}
	}
	for _, c := range d.GetUpserted() {
		if up[c.GetName()] != nil {
			next.Clusters = append(next.Clusters, c)
		}
	}
	// Sorted by name, as the controller's snapshots are, so equal states compare equal.
	slices.SortFunc(next.Clusters, func(a, b *lvsctlv1.Cluster) int { return strings.Compare(a.GetName(), b.GetName()) })
	return next
}

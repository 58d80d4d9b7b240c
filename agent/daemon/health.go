package daemon

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Health checks and the removal grace, as the loop keeps them. The controller's desired state
// (loop.cur) is never changed: it is what is saved and acked. What the reconciler applies is
// the effective state, each cluster as this director serves it now:
//
//   - a drained real server has weight 0;
//   - a real server its check finds down has weight 0 (onFailure quiesce) or is left out of
//     the IPVS service (onFailure remove); up, or not yet known, it has its weight;
//   - a real server that left its cluster (a delta, a snapshot, or found in the kernel at
//     start and not desired) stays at weight 0 until its connections are gone or the
//     cluster's remove grace passed, whichever first (remove_now: it goes at once). A deleted
//     cluster is not held: its service goes at once, as before.
//
// Each director checks on its own, so an ACTIVE and its STANDBY agree on weights without
// talking to each other.

// HealthChecker runs the health checks of the real servers (a *checker.Checker, whose
// Options.OnChange must call Agent.HealthChanged).
type HealthChecker interface {
	// Set replaces the targets: a target whose key stays keeps its state.
	Set([]checker.Target)
	// Run checks until ctx ends.
	Run(ctx context.Context) error
}

var _ HealthChecker = (*checker.Checker)(nil)

// removeGrace is c's grace for a removed real server.
func removeGrace(c *lvsctlv1.Cluster) time.Duration {
	if ms := c.GetRemoveGraceMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return health.DefaultRemoveGrace
}

// HealthChanged takes a transition from the checker (its Options.OnChange). It never blocks:
// the loop reads the latest status of each target when it is free.
func (a *Agent) HealthChanged(st checker.Status) {
	if a.cfg.Metrics != nil {
		a.cfg.Metrics.HealthTransition(st.Addr.String())
	}
	a.healthQ.push(st)
}

// healthQueue holds the checker's transitions until the loop takes them. Only a target's
// latest status is kept: it is all the weights depend on, and it bounds the queue to one
// entry per target however long a reconcile keeps the loop busy.
type healthQueue struct {
	mu      sync.Mutex
	pending map[string]checker.Status
	// notify has a value while pending is not empty.
	notify chan struct{}
}

func newHealthQueue() *healthQueue {
	return &healthQueue{pending: map[string]checker.Status{}, notify: make(chan struct{}, 1)}
}

func (q *healthQueue) push(st checker.Status) {
	q.mu.Lock()
	q.pending[st.Key] = st
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default: // one is pending already
	}
}

func (q *healthQueue) take() []checker.Status {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := slices.Collect(maps.Values(q.pending))
	clear(q.pending)
	return out
}

// target is one probe: an address and the check made of it, shared by every cluster that has
// that real server with that check (10,000 clusters over 1,000 servers are 1,000 probes).
type target struct {
	key   string    // the checker's key
	ident targetKey // the address and the check, exactly
	addr  netip.Addr
	kind  string
	spec  health.Spec
	refs  map[string]struct{} // the clusters that use it
	state checker.State
	since time.Time
	err   string
}

// targetKey is what a probe is: an address and a check (checkIdent).
type targetKey struct {
	addr  netip.Addr
	check string
}

// healthIndex maps the desired clusters' real servers to the targets the checker probes.
type healthIndex struct {
	targets   map[targetKey]*target
	byKey     map[string]*target // by the checker's key
	byCluster map[string]map[netip.Addr]*target
	nextID    uint64
	// changed: targets were added or removed since the checker was last given them.
	changed bool
}

func newHealthIndex() healthIndex {
	return healthIndex{targets: map[targetKey]*target{}, byKey: map[string]*target{}, byCluster: map[string]map[netip.Addr]*target{}}
}

// checkIdent is a check as probed: on_failure says what to do with the verdict, not how to
// reach it, so clusters that differ only there share a probe.
func checkIdent(h *lvsctlv1.HealthCheck) string {
	if h.GetOnFailure() != "" {
		h = proto.CloneOf(h)
		h.OnFailure = ""
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(h)
	if err != nil {
		// Only a string that is not UTF-8 fails; the text form still tells checks apart.
		return "text:" + h.String()
	}
	return string(b)
}

// setCluster makes the index follow cluster name (c nil: gone). A real server whose check
// changed gets a new target, which starts from the state of the one it replaces: a server
// found down stays out until its new check decides, rather than serving again on an edit of
// the check's timeout.
func (x *healthIndex) setCluster(name string, c *lvsctlv1.Cluster, now time.Time) {
	old := x.byCluster[name]
	var next map[netip.Addr]*target
	if c != nil {
		var clusterIdent string // the cluster's check, shared by the reals without their own
		for _, r := range c.GetReals() {
			addr, err := netip.ParseAddr(r.GetAddress())
			if err != nil {
				continue // the reconciler reports the cluster invalid
			}
			addr = addr.Unmap()
			h := health.Effective(c.GetHealth(), r.GetHealth())
			if h == nil || h.GetCheck() == string(health.KindNone) {
				continue
			}
			var ci string
			if h == c.GetHealth() {
				if clusterIdent == "" {
					clusterIdent = checkIdent(h)
				}
				ci = clusterIdent
			} else {
				ci = checkIdent(h)
			}
			ident := targetKey{addr, ci}
			t := old[addr]
			if t != nil && t.ident == ident {
				// Unchanged (a snapshot repeats most clusters): already referenced.
				if next == nil {
					next = make(map[netip.Addr]*target, len(c.GetReals()))
				}
				next[addr] = t
				continue
			}
			t = x.targets[ident]
			if t == nil {
				x.nextID++
				spec := health.FromProto(h)
				t = &target{
					key:   fmt.Sprintf("%s/%s:%d#%d", addr, h.GetCheck(), h.GetPort(), x.nextID),
					ident: ident, addr: addr, kind: h.GetCheck(), spec: spec,
					refs: map[string]struct{}{}, since: now,
				}
				if prev := old[addr]; prev != nil {
					t.state, t.since, t.err = prev.state, prev.since, prev.err
				}
				if err := spec.Validate(); err != nil {
					// The checker never probes it (it serves); status says why.
					t.err = err.Error()
				}
				x.targets[ident], x.byKey[t.key] = t, t
				x.changed = true
			}
			t.refs[name] = struct{}{}
			if next == nil {
				next = make(map[netip.Addr]*target, len(c.GetReals()))
			}
			next[addr] = t
		}
	}
	for addr, t := range old {
		if next[addr] == t {
			continue
		}
		delete(t.refs, name)
		if len(t.refs) == 0 {
			delete(x.targets, t.ident)
			delete(x.byKey, t.key)
			x.changed = true
		}
	}
	if next == nil {
		delete(x.byCluster, name)
	} else {
		x.byCluster[name] = next
	}
}

// list is the checker's targets.
func (x *healthIndex) list() []checker.Target {
	out := make([]checker.Target, 0, len(x.targets))
	for _, t := range x.targets {
		out = append(out, checker.Target{Key: t.key, Addr: t.addr, Spec: t.spec})
	}
	return out
}

// removal is a real server that left its cluster, held at weight 0 until until or until its
// connections are gone.
type removal struct {
	address string // as the cluster had it
	until   time.Time
	// id tells this removal from an earlier one of the same server: connection counts
	// sampled for that one must not end this one.
	id uint64
}

// removalRef names a removal whose connections the stats sampling counts.
type removalRef struct {
	cluster string
	addr    netip.Addr
	id      uint64
}

// removalCount is what a sample found of a removal: its connections, active, inactive and
// persistent together.
type removalCount struct {
	removalRef
	conns uint64
}

// effective is cluster c as this director applies it: drained and down (quiesce) real servers
// at weight 0, down (remove) ones left out, the real servers being removed added at weight 0,
// sorted by address after c's own. state is a real server's health (Unknown when not checked).
// sorry adds c's sorry server last, at weight 1 (sorryNeeded decides; sorry.go), in place of
// a removal of the same address. It returns c itself when nothing differs, so the reconciler
// knows the message unchanged.
func effective(c *lvsctlv1.Cluster, state func(netip.Addr) checker.State, removing map[netip.Addr]*removal, sorry bool) *lvsctlv1.Cluster {
	var reals []*lvsctlv1.RealServer // nil while nothing differs
	for i, r := range c.GetReals() {
		weight, keep := r.GetWeight(), true
		if addr, err := netip.ParseAddr(r.GetAddress()); err == nil {
			down := state(addr.Unmap()) == checker.Down
			switch {
			case down && health.OnFailure(health.Effective(c.GetHealth(), r.GetHealth())) == health.OnFailureRemove:
				// A dead server's connections are dead with it: the operator chose to cut them.
				keep = false
			case down || r.GetDrained():
				weight = 0
			}
		} else if r.GetDrained() {
			weight = 0
		}
		if keep && weight == r.GetWeight() {
			if reals != nil {
				reals = append(reals, r)
			}
			continue
		}
		if reals == nil {
			reals = append(make([]*lvsctlv1.RealServer, 0, len(c.GetReals())+len(removing)), c.GetReals()[:i]...)
		}
		if keep {
			reals = append(reals, &lvsctlv1.RealServer{Address: r.GetAddress(), Weight: weight, Health: r.GetHealth(), Drained: r.GetDrained()})
		}
	}
	if len(removing) > 0 {
		if reals == nil {
			reals = slices.Clone(c.GetReals())
		}
		for _, a := range slices.SortedFunc(maps.Keys(removing), netip.Addr.Compare) {
			if sorry && a == sorryAddr(c) {
				continue // one destination per address: the sorry server's weight wins
			}
			reals = append(reals, &lvsctlv1.RealServer{Address: removing[a].address})
		}
	}
	if sorry {
		if reals == nil {
			reals = append(make([]*lvsctlv1.RealServer, 0, len(c.GetReals())+1), c.GetReals()...)
		}
		reals = append(reals, sorryReal(c))
	}
	if reals == nil {
		return c
	}
	e := proto.CloneOf(c)
	e.Reals = reals
	return e
}

// realsOf is what status says of c's real servers beyond the kernel's counters (nil: nothing,
// as for a cluster without checks, drained servers or removals).
func realsOf(c *lvsctlv1.Cluster, targets map[netip.Addr]*target, removing map[netip.Addr]*removal, sorry bool) *stats.Reals {
	list := appendReals(nil, c, targets, removing, sorry)
	if len(list) == 0 {
		return nil
	}
	return &stats.Reals{List: list}
}

// appendReals appends realsOf's list to list; sorry: the sorry server is in use.
func appendReals(list []stats.Real, c *lvsctlv1.Cluster, targets map[netip.Addr]*target, removing map[netip.Addr]*removal, sorry bool) []stats.Real {
	if !sorry && len(targets) == 0 && len(removing) == 0 && !slices.ContainsFunc(c.GetReals(), (*lvsctlv1.RealServer).GetDrained) {
		return list
	}
	for _, r := range c.GetReals() {
		addr, err := netip.ParseAddr(r.GetAddress())
		if err != nil {
			continue
		}
		addr = addr.Unmap()
		t := targets[addr]
		if t == nil && !r.GetDrained() {
			continue
		}
		rs := stats.Real{Addr: addr, Health: checker.Unknown.String(), Drained: r.GetDrained()}
		if t != nil {
			rs.Checked, rs.Health, rs.Since, rs.Error = true, t.state.String(), t.since, t.err
			rs.Out = t.state == checker.Down && health.OnFailure(health.Effective(c.GetHealth(), r.GetHealth())) == health.OnFailureRemove
		}
		list = append(list, rs)
	}
	var sa netip.Addr
	if sorry {
		sa = sorryAddr(c)
		list = append(list, stats.Real{Addr: sa, Health: checker.Unknown.String(), Sorry: true})
	}
	for a, rm := range removing {
		if sorry && a == sa {
			continue // effective replaced it with the sorry server
		}
		list = append(list, stats.Real{Addr: a, Health: checker.Unknown.String(), Removing: true, RemovingUntil: rm.until})
	}
	byAddr := func(x, y stats.Real) int { return x.Addr.Compare(y.Addr) }
	if !slices.IsSortedFunc(list, byAddr) {
		slices.SortFunc(list, byAddr)
	}
	return list
}

// sameReals reports whether two clusters' Reals say the same.
func sameReals(a, b *stats.Reals) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameList(a.List, b.List)
}

func sameList(a, b []stats.Real) bool {
	return slices.EqualFunc(a, b, func(x, y stats.Real) bool {
		return x.Addr == y.Addr && x.Checked == y.Checked && x.Health == y.Health && x.Since.Equal(y.Since) &&
			x.Error == y.Error && x.Drained == y.Drained && x.Out == y.Out && x.Removing == y.Removing &&
			x.RemovingUntil.Equal(y.RemovingUntil) && x.Sorry == y.Sorry
	})
}

// kernelReals reads the real servers of the services the agent owns, at start: one that its
// cluster no longer has is held for the grace again (the agent may have stopped during one),
// rather than cut. Nil when IPVS cannot be read (it then has nothing to hold either).
func (a *Agent) kernelReals() map[dataplane.ServiceKey][]netip.Addr {
	if a.cfg.Kernel == nil {
		return nil
	}
	svcs, err := a.cfg.Kernel.StatsOf(a.cfg.State.OwnsService)
	if err != nil {
		a.log.Debug("cannot read IPVS at start: no removal grace resumed", "error", err)
		return nil
	}
	out := map[dataplane.ServiceKey][]netip.Addr{}
	for _, s := range svcs {
		for _, d := range s.Destinations {
			out[s.ServiceKey] = append(out[s.ServiceKey], d.Address)
		}
	}
	return out
}

package daemon

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/stats"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The loop's side of health checks and the removal grace (health.go says what they do).

// healthState is what the loop keeps of health checks and removals.
type healthState struct {
	hx healthIndex
	// eff is the effective state: what the reconciler applies (cur stays the controller's).
	eff *desiredSet
	// removing holds the real servers being removed, by cluster.
	removing map[string]map[netip.Addr]*removal
	// removalAt is the earliest removal deadline (zero: none).
	removalAt time.Time
	removals  uint64 // removal ids given so far
	// reals is what status says of each cluster's real servers; published is the copy last
	// handed to the stats worker (never changed), pubDirty that reals changed since.
	reals     map[string]*stats.Reals
	published map[string]*stats.Reals
	pubDirty  bool
	scratch   []stats.Real // rebuild's
	// kernelAtStart holds the real servers of the owned services found in the kernel at
	// start, until the first desired state: those it lacks are held for the grace again.
	kernelAtStart map[dataplane.ServiceKey][]netip.Addr
	started       bool
	// sorry holds the clusters whose sorry server is in use (sorry.go).
	sorry map[string]bool
}

// ensure makes the health state usable (a loop built by a test may lack it).
func (l *loop) ensure() {
	if l.hs.eff != nil {
		return
	}
	l.hs.hx = newHealthIndex()
	l.hs.eff = newDesiredSet(nil)
	l.hs.removing = map[string]map[netip.Addr]*removal{}
	l.hs.reals = map[string]*stats.Reals{}
	l.hs.sorry = map[string]bool{}
}

// effState is the effective state, sorted by name.
func (l *loop) effState() *lvsctlv1.DesiredState { return l.hs.eff.state() }

// track follows a change of the desired state from old (the clusters before, by name; nil
// before the first desired state): names are the clusters that changed (nil: every one of
// old and cur). It updates the targets, the removals and the effective clusters, and returns
// the names whose effective cluster changed.
func (l *loop) track(now time.Time, old map[string]*lvsctlv1.Cluster, names []string) []string {
	hs := &l.hs
	first := !hs.started
	hs.started = true
	if names == nil {
		for n := range old {
			names = append(names, n)
		}
		for n := range l.cur.clusters.ByName {
			if _, ok := old[n]; !ok {
				names = append(names, n)
			}
		}
	}
	if len(hs.eff.clusters.ByName) == 0 {
		// The first desired state: sized at once rather than grown through 10,000 inserts.
		hs.eff.clusters.ByName = make(map[string]*lvsctlv1.Cluster, len(l.cur.clusters.ByName))
		hs.reals = make(map[string]*stats.Reals, len(l.cur.clusters.ByName))
	}
	if hs.eff.clusters.Group != l.cur.clusters.Group {
		hs.eff.clusters.Group = l.cur.clusters.Group
		hs.eff.sorted = nil
	}
	var changed []string
	for _, n := range names {
		c := l.cur.clusters.ByName[n]
		var prior []*lvsctlv1.RealServer
		switch e := hs.eff.clusters.ByName[n]; {
		case e != nil:
			prior = e.GetReals()
		case first && c != nil:
			if k, ok := dataplane.KeyOf(c); ok {
				sa := sorryAddr(c)
				for _, a := range hs.kernelAtStart[k] {
					prior = append(prior, &lvsctlv1.RealServer{Address: a.String()})
					if a == sa {
						// In use when the agent stopped: kept until a real server is
						// known to serve again (sorryNeeded).
						hs.sorry[n] = true
					}
				}
			}
		}
		// The sorry server in use is among prior's destinations: not a real server, so it
		// is not held for a grace when it goes (it comes and goes with health, deleted at
		// once as keepalived deletes it; its connections outlive the destination).
		var sorryWas netip.Addr
		if hs.sorry[n] {
			if o := old[n]; o != nil {
				sorryWas = sorryAddr(o)
			} else {
				sorryWas = sorryAddr(c) // found in the kernel at start
			}
		}
		l.trackRemovals(now, n, prior, c, sorryWas)
		hs.hx.setCluster(n, c, now)
		if l.rebuild(n) {
			changed = append(changed, n)
		}
	}
	hs.kernelAtStart = nil
	l.setRemovalAt()
	return changed
}

// trackRemovals starts the removal of prior's real servers that c (nil: the cluster is
// deleted) no longer has, and ends those c has again. sorryWas is the sorry server among
// prior (invalid: none), which is no real server.
func (l *loop) trackRemovals(now time.Time, name string, prior []*lvsctlv1.RealServer, c *lvsctlv1.Cluster, sorryWas netip.Addr) {
	rm := l.hs.removing[name]
	if c == nil {
		// A deleted cluster's service goes at once, connections and all, as it always did:
		// holding a whole service would keep its VIPs' traffic going to a cluster the
		// operator deleted.
		delete(l.hs.removing, name)
		return
	}
	if n := len(prior); sorryWas.IsValid() && n > 0 && prior[n-1].GetAddress() == sorryWas.String() {
		prior = prior[:n-1] // effective puts the sorry server last: the fast path below stays fast
	}
	if len(rm) == 0 && contains(c.GetReals(), prior) {
		return // the common case: no real server left, none being removed
	}
	has := make(map[netip.Addr]bool, len(c.GetReals()))
	for _, r := range c.GetReals() {
		if a, err := netip.ParseAddr(r.GetAddress()); err == nil {
			has[a.Unmap()] = true
		}
	}
	for a := range rm {
		if has[a] || c.GetRemoveNow() {
			delete(rm, a)
		}
	}
	if !c.GetRemoveNow() {
		for _, r := range prior {
			a, err := netip.ParseAddr(r.GetAddress())
			if err != nil {
				continue
			}
			a = a.Unmap()
			if has[a] || rm[a] != nil || a == sorryWas {
				continue // kept, or held already (a removal keeps its first deadline), or the sorry server
			}
			if rm == nil {
				rm = map[netip.Addr]*removal{}
				l.hs.removing[name] = rm
			}
			l.hs.removals++
			rm[a] = &removal{address: r.GetAddress(), until: now.Add(removeGrace(c)), id: l.hs.removals}
			l.log.Info("real server removed: held at weight 0 until its connections end or its grace passes",
				"cluster", name, "real", r.GetAddress(), "until", rm[a].until)
		}
	}
	if len(rm) == 0 {
		delete(l.hs.removing, name)
	}
}

// contains reports whether reals has every address of prior, as written (a server written
// otherwise is compared by its parsed address by the caller).
func contains(reals, prior []*lvsctlv1.RealServer) bool {
	if len(prior) > 16 {
		has := make(map[string]bool, len(reals))
		for _, r := range reals {
			has[r.GetAddress()] = true
		}
		for _, p := range prior {
			if !has[p.GetAddress()] {
				return false
			}
		}
		return true
	}
	for _, p := range prior {
		if !slices.ContainsFunc(reals, func(r *lvsctlv1.RealServer) bool { return r.GetAddress() == p.GetAddress() }) {
			return false
		}
	}
	return true
}

// rebuild recomputes cluster name's effective cluster and what status says of its real
// servers; true when the effective cluster changed.
func (l *loop) rebuild(name string) bool {
	hs := &l.hs
	c := l.cur.clusters.ByName[name]
	old := hs.eff.clusters.ByName[name]
	if c == nil {
		delete(hs.eff.clusters.ByName, name)
		delete(hs.sorry, name)
		if hs.reals[name] != nil {
			delete(hs.reals, name)
			hs.pubDirty = true
		}
		hs.eff.sorted = nil
		return old != nil
	}
	targets := hs.hx.byCluster[name]
	rm := hs.removing[name]
	sorry := sorryNeeded(c, func(a netip.Addr) checker.State {
		if t := targets[a]; t != nil {
			return t.state
		}
		return checker.Up // no check: it serves as given
	}, hs.sorry[name])
	if sorry != hs.sorry[name] {
		if sorry {
			hs.sorry[name] = true
			l.log.Info("no real server can take new connections: sorry server in", "cluster", name, "sorry", c.GetSorryServer().GetAddress())
		} else {
			delete(hs.sorry, name)
			l.log.Info("a real server can take new connections: sorry server out", "cluster", name, "sorry", c.GetSorryServer().GetAddress())
		}
	}
	e := effective(c, func(a netip.Addr) checker.State {
		if t := targets[a]; t != nil {
			return t.state
		}
		return checker.Unknown
	}, rm, sorry)
	if e != c && old != nil && old != c && proto.Equal(old, e) {
		e = old // the same content: the reconciler keeps what it translated
	}
	// Built in a scratch list, and kept only when it differs: most rebuilds change nothing
	// status shows.
	hs.scratch = appendReals(hs.scratch[:0], c, targets, rm, sorry)
	if cur := hs.reals[name]; (cur == nil) != (len(hs.scratch) == 0) || (cur != nil && !sameList(cur.List, hs.scratch)) {
		if len(hs.scratch) == 0 {
			delete(hs.reals, name)
		} else {
			hs.reals[name] = &stats.Reals{List: slices.Clone(hs.scratch)}
		}
		hs.pubDirty = true
	}
	if e == old {
		return false
	}
	hs.eff.clusters.ByName[name] = e
	hs.eff.sorted = nil
	return true
}

// effDelta is the controller's delta d as the reconciler applies it: its clusters effective.
func (l *loop) effDelta(d *lvsctlv1.Delta) *lvsctlv1.Delta {
	same := true
	up := make([]*lvsctlv1.Cluster, len(d.GetUpserted()))
	for i, c := range d.GetUpserted() {
		up[i] = l.hs.eff.clusters.ByName[c.GetName()]
		same = same && up[i] == c
	}
	if same {
		return d
	}
	return &lvsctlv1.Delta{PrevRevision: d.GetPrevRevision(), Revision: d.GetRevision(), Upserted: up, Deleted: d.GetDeleted(),
		Group: d.GetGroup(), Roles: d.GetRoles(), SentUnixMs: d.GetSentUnixMs()}
}

// reconcileLocal reconciles the clusters named, whose effective clusters changed on this
// director alone (a health transition, a removal's end): a delta at the applied revision,
// neither saved nor a new revision.
func (l *loop) reconcileLocal(acts []action, trigger string, names []string) []action {
	if len(names) == 0 || l.cur == nil {
		return acts
	}
	slices.Sort(names)
	names = slices.Compact(names)
	d := &lvsctlv1.Delta{PrevRevision: l.rev, Revision: l.rev}
	for _, n := range names {
		if e := l.hs.eff.clusters.ByName[n]; e != nil {
			d.Upserted = append(d.Upserted, e)
		} else {
			d.Deleted = append(d.Deleted, n)
		}
	}
	return l.reconcile(acts, trigger, d, saveNothing, nil)
}

// setTargets gives the checker the targets when they changed.
func (l *loop) setTargets(acts []action) []action {
	if !l.hs.hx.changed {
		return acts
	}
	l.hs.hx.changed = false
	return append(acts, actSetTargets{targets: l.hs.hx.list()})
}

// healthChanged takes the checker's transitions and reconciles the clusters whose weights
// they change.
func (l *loop) healthChanged(statuses []checker.Status, acts []action) []action {
	if l.cur == nil {
		return acts
	}
	affected := map[string]struct{}{}
	for _, st := range statuses {
		t := l.hs.hx.byKey[st.Key]
		if t == nil {
			continue // dropped since: no cluster has it
		}
		t.state, t.since, t.err = st.State, st.Since, ""
		if st.LastError != nil {
			t.err = st.LastError.Error()
		}
		for n := range t.refs {
			affected[n] = struct{}{}
		}
	}
	var changed []string
	for n := range affected {
		if l.rebuild(n) {
			changed = append(changed, n)
		}
	}
	return l.reconcileLocal(acts, "health", changed)
}

// removalsDue ends the removals whose grace passed.
func (l *loop) removalsDue(now time.Time, acts []action) []action {
	var names []string
	for n, rm := range l.hs.removing {
		for a, r := range rm {
			if !r.until.After(now) {
				l.log.Info("real server removed: grace passed", "cluster", n, "real", r.address)
				delete(rm, a)
				names = append(names, n)
			}
		}
		if len(rm) == 0 {
			delete(l.hs.removing, n)
		}
	}
	return l.endRemovals(names, acts)
}

// removalCounts ends the removals whose connections are all gone.
func (l *loop) removalCounts(counts []removalCount, acts []action) []action {
	var names []string
	for _, c := range counts {
		rm := l.hs.removing[c.cluster]
		r := rm[c.addr]
		if r == nil || r.id != c.id || c.conns > 0 {
			continue
		}
		l.log.Info("real server removed: no connections left", "cluster", c.cluster, "real", r.address)
		delete(rm, c.addr)
		if len(rm) == 0 {
			delete(l.hs.removing, c.cluster)
		}
		names = append(names, c.cluster)
	}
	return l.endRemovals(names, acts)
}

func (l *loop) endRemovals(names []string, acts []action) []action {
	if len(names) == 0 {
		return acts
	}
	l.setRemovalAt()
	var changed []string
	for _, n := range names {
		if l.rebuild(n) {
			changed = append(changed, n)
		}
	}
	return l.reconcileLocal(acts, "removal", changed)
}

func (l *loop) setRemovalAt() {
	var at time.Time
	for _, rm := range l.hs.removing {
		for _, r := range rm {
			if at.IsZero() || r.until.Before(at) {
				at = r.until
			}
		}
	}
	l.hs.removalAt = at
}

// removingRefs lists the removals, for the stats sampling to count their connections.
func (l *loop) removingRefs() []removalRef {
	var out []removalRef
	for n, rm := range l.hs.removing {
		for a, r := range rm {
			out = append(out, removalRef{cluster: n, addr: a, id: r.id})
		}
	}
	slices.SortFunc(out, func(x, y removalRef) int {
		if c := strings.Compare(x.cluster, y.cluster); c != 0 {
			return c
		}
		return x.addr.Compare(y.addr)
	})
	return out
}

// publishReals returns what status says of the real servers, as a map never changed after.
func (l *loop) publishReals() map[string]*stats.Reals {
	if l.hs.pubDirty || l.hs.published == nil {
		l.hs.published = maps.Clone(l.hs.reals)
		if l.hs.published == nil {
			l.hs.published = map[string]*stats.Reals{}
		}
		l.hs.pubDirty = false
	}
	return l.hs.published
}

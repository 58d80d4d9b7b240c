package reconcile

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// memory is what the last reconcile applied, so a delta knows each cluster's old service,
// destinations, rules and VIPs without reading the kernel.
type memory struct {
	desired state.Clusters // the desired group and clusters, as given
	active  bool
	specs   map[string]*clusterSpec // the clusters that have a spec (translated or kept)
	byKey   map[dataplane.ServiceKey]string
	rules   map[dataplane.MarkRule]int // how many clusters want each rule
	// addrs counts the clusters (and the gateway) that want each address held: the addresses
	// an ACTIVE holds, or a STANDBY would. nil when unknown (IPVS or the rules unreadable, or a
	// group whose addresses cannot all be named).
	addrs map[state.Address]int
	// sync is the sync daemons' status after the last reconcile that managed them.
	sync *lvsctlv1.SyncStatus
	// errs are the clusters' errors, kept until a reconcile of the cluster has none: an ack
	// after a delta that did not touch a failing cluster still reports it.
	errs map[string][]*lvsctlv1.ClusterError
	// full: the next delta takes the full path (the last reconcile had director errors, was
	// interrupted, or has kept or clashing clusters).
	full bool
}

// remember keeps what a full reconcile applied.
func (a *apply) remember(desired *lvsctlv1.DesiredState, active bool, specs []*clusterSpec, rules map[dataplane.MarkRule]int, addrs map[state.Address]int) {
	m := &memory{
		desired: state.NewClusters(desired),
		active:  active,
		specs:   make(map[string]*clusterSpec, len(specs)),
		byKey:   make(map[dataplane.ServiceKey]string, len(specs)),
		rules:   rules,
		addrs:   addrs,
		errs:    a.errs,
		sync:    a.res.Sync,
		full:    a.needFull || a.stopped || len(a.res.DirectorErrors) > 0 || rules == nil || (active && addrs == nil),
	}
	for _, s := range specs {
		m.specs[s.name] = s
		m.byKey[s.svc.ServiceKey] = s.name
	}
	a.r.mem = m
}

// desiredAfter is the remembered desired state with the delta applied: what a delta that takes
// the full path applies.
func (m *memory) desiredAfter(d *lvsctlv1.Delta) *lvsctlv1.DesiredState {
	next := m.desired.Clone()
	next.Apply(d)
	return next.State()
}

// ApplyDelta makes the kernel match the last applied desired state changed by d, reconciling
// only the clusters d names: one read of each named service's destinations, the IPVS changes
// in one batch, the mark rules that appear or disappear in one transaction, and the addresses
// only if the set of wanted VIPs changes. The other clusters are taken to be as the last
// reconcile left them; drift there is the full Apply's to repair (the periodic resync).
//
// The full path is taken when the group or the role changes, when the last reconcile had
// director errors (so a delta's ack never hides them), or when a cluster must be kept as the
// kernel has it or clashes with another. ApplyDelta before any Apply reports a director error
// and changes nothing.
//
// The Result's cluster errors are those of every cluster that has one, changed by d or not.
func (r *Reconciler) ApplyDelta(ctx context.Context, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) Result {
	return r.ApplyDeltaAt(ctx, anyGen, d, role)
}

// ApplyDeltaAt is ApplyDelta of a role decided at release generation gen, as ApplyAt: if a
// release started since, an ACTIVE role is applied as not holding (the full path, as for any
// change of role).
func (r *Reconciler) ApplyDeltaAt(ctx context.Context, gen uint64, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, end := r.begin(ctx)
	defer end()
	a := r.newApply(ctx)
	if missing := r.missingConfig(); missing != "" {
		a.directorErr(fmt.Errorf("reconcile: config has no %s", missing))
		return a.res
	}
	m := r.mem
	if m == nil {
		a.directorErr(errors.New("reconcile: a delta before any desired state was applied"))
		return a.res
	}
	group := m.desired.Group
	if d.GetGroup() != nil {
		group = d.GetGroup()
	}
	active := role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && role.GetGroup() == group.GetName() && !r.releasedSince(gen)
	if active && !m.active && !m.full && d.GetGroup() == nil && m.addrs != nil && m.desired.Group.GetVipInterface() != "" {
		// A takeover: the role machine said hold while this delta waited its turn (the fence
		// ended meanwhile). The addresses go on the holding fast path, as ApplyHolding adds
		// them, and the delta stays a delta: a full reconcile would read the whole kernel back
		// on the takeover's path (in the lab, 240 ms before the VIP was added).
		a.hold(true)
		a.commitForgets()
		if a.stopped || len(a.res.DirectorErrors) > 0 {
			m.full = true // the full path below retries what failed
		} else {
			m.active = true
		}
	}
	if m.full || d.GetGroup() != nil || active != m.active || (active && m.desired.Group.GetVipInterface() == "") || !a.runDelta(d) {
		// What the fast path added is the caller's to announce, whatever the full path finds.
		took := a.res
		a = r.newApply(ctx)
		a.res.Added, a.res.Operations = took.Added, took.Operations
		a.run(m.desiredAfter(d), active)
		return a.res
	}
	a.res.Sync = m.sync
	return a.res
}

// runDelta reconciles the clusters d names; false, having changed nothing, when the delta
// needs the full path.
func (a *apply) runDelta(d *lvsctlv1.Delta) bool {
	defer a.commitForgets()
	m := a.r.mem
	now := map[string]*clusterSpec{} // the changed clusters' new specs; nil: none (deleted, invalid)
	for _, n := range d.GetDeleted() {
		now[n] = nil
	}
	for _, c := range d.GetUpserted() {
		s, err := translate(c)
		if err != nil {
			if _, owned := a.ownedKeyOf(c); owned {
				return false // kept as the kernel has it: that needs the kernel's rules
			}
			s = nil
		} else {
			s.cluster = c
			if c.GetAdopt() && !a.r.owned.OwnsService(s.svc.ServiceKey) {
				// Adopting compares the kernel's service and reals with the cluster, and
				// only the full path reads them: the delta path knows only what it applied.
				return false
			}
		}
		now[c.GetName()] = s
	}
	names := make([]string, 0, len(now))
	for n := range now {
		if old := m.specs[n]; old != nil && old.kept {
			return false
		}
		names = append(names, n)
	}
	slices.Sort(names)
	claimed := map[dataplane.ServiceKey]string{}
	for _, n := range names {
		s := now[n]
		if s == nil {
			continue
		}
		if other, ok := m.byKey[s.svc.ServiceKey]; ok && other != n {
			if _, changing := now[other]; !changing {
				return false // a clash: which cluster wins depends on every cluster
			}
		}
		if _, ok := claimed[s.svc.ServiceKey]; ok {
			return false
		}
		claimed[s.svc.ServiceKey] = n
	}

	// From here on the delta is applied. Invalid clusters are reported as the full path does.
	for _, c := range d.GetUpserted() {
		if now[c.GetName()] == nil {
			_, err := translate(c)
			a.clusterErr(c.GetName(), fmt.Errorf("invalid cluster: %w", err))
		}
	}
	var olds, news, syncing []*clusterSpec
	for _, n := range names {
		if old := m.specs[n]; old != nil && !old.foreign {
			olds = append(olds, old)
		}
		if s := now[n]; s != nil {
			syncing = append(syncing, s)
		}
	}
	if a.interrupted() {
		// Nothing changed in the kernel: the next reconcile takes the full path, and applies
		// this delta's clusters with its own. (A delta with a group takes the full path.)
		m.desired.Apply(d)
		m.full = true
		return true
	}

	// Services and destinations: one read of each named service.
	a.syncServices(syncing, func(s *clusterSpec) (*dataplane.Service, []dataplane.Destination, bool) {
		dests, err := a.r.ipvs.Destinations(s.svc)
		switch {
		case errors.Is(err, dataplane.ErrNotExist):
			return nil, nil, false
		case err != nil:
			// Treated as present and left as it is; the error stays with the cluster until
			// a reconcile reads it.
			a.clusterErr(s.name, fmt.Errorf("read destinations of service %s: %w", s.svc.ServiceKey, err))
			svc := s.svc
			return &svc, s.dests, true
		}
		// The service's settings are compared with what was last applied to it, if that
		// succeeded: the memory holds the spec even when its UpdateService failed, so after an
		// error the kernel's settings are unknown and the (idempotent) update is sent again.
		var cur *dataplane.Service
		if old := m.specs[s.name]; old != nil && old.svc.ServiceKey == s.svc.ServiceKey && !old.foreign && len(m.errs[s.name]) == 0 {
			svc := old.svc
			cur = &svc
		}
		return cur, dests, true
	})
	for _, s := range syncing {
		if !s.foreign {
			news = append(news, s)
		}
	}

	// Addresses: only those whose count of wanting clusters rises from or falls to zero. A
	// STANDBY keeps the counts, for ApplyHolding, and changes no address.
	var claim, release []wantedAddress
	if m.addrs != nil && !m.active && m.desired.Group.GetVipInterface() == "" {
		m.addrs = nil // VIPs without an interface: unknown, so ApplyHolding takes the full path
	}
	if m.addrs != nil {
		claim, release = a.addressChanges(m, olds, news)
	}
	if !m.active {
		claim, release = nil, nil
	}
	var present map[string]*linkAddresses
	if len(claim)+len(release) > 0 && !a.interrupted() {
		present = a.readAddresses(append(slices.Clone(claim), release...), false)
		var owned []state.Address
		for _, w := range release {
			if a.r.owned.OwnsAddress(w.addr) {
				owned = append(owned, w.addr)
			}
		}
		a.release(owned, present)
	}

	if a.interrupted() {
		a.rememberDelta(names, now, d)
		return true
	}
	all := func() []*clusterSpec {
		// Every cluster's spec after the delta, in name order: the unchanged ones remembered.
		var specs []*clusterSpec
		for n, s := range m.specs {
			if _, changed := now[n]; !changed && !s.foreign {
				specs = append(specs, s)
			}
		}
		specs = append(specs, news...)
		slices.SortFunc(specs, func(x, y *clusterSpec) int { return strings.Compare(x.name, y.name) })
		return specs
	}
	if counts := a.changeRules(m.rules, olds, news, all); counts != nil {
		m.rules = counts
	}

	// Services no cluster wants any more: the old keys of changed clusters, not taken up.
	var del []dataplane.ServiceKey
	oldSvc := map[dataplane.ServiceKey]dataplane.Service{}
	for _, old := range olds {
		k := old.svc.ServiceKey
		if _, ok := claimed[k]; ok || !a.r.owned.OwnsService(k) {
			continue
		}
		del = append(del, k)
		oldSvc[k] = old.svc
	}
	a.delServices(del, func(k dataplane.ServiceKey) dataplane.Service { return oldSvc[k] })

	if len(claim) > 0 && !a.interrupted() {
		a.claimAddresses(claim, present)
	}
	a.rememberDelta(names, now, d)
	return true
}

// addressChanges moves the address counts from the old to the new specs of changed clusters,
// and returns the addresses that become wanted and those no longer wanted.
func (a *apply) addressChanges(m *memory, olds, news []*clusterSpec) (claim, release []wantedAddress) {
	iface := m.desired.Group.GetVipInterface()
	before := map[state.Address]int{}
	cluster := map[state.Address]string{}
	count := func(specs []*clusterSpec, by int) {
		for _, s := range specs {
			if !s.serving {
				continue
			}
			for _, vip := range s.vips {
				addr := state.Address{Interface: iface, Prefix: netip.PrefixFrom(vip, vip.BitLen())}
				if _, ok := before[addr]; !ok {
					before[addr] = m.addrs[addr]
				}
				m.addrs[addr] += by
				if by > 0 {
					cluster[addr] = s.name
				}
			}
		}
	}
	count(olds, -1)
	count(news, +1)
	for addr, was := range before {
		is := m.addrs[addr]
		switch {
		case was > 0 && is <= 0:
			release = append(release, wantedAddress{addr: addr})
		case was <= 0 && is > 0:
			claim = append(claim, wantedAddress{addr: addr, cluster: cluster[addr]})
		}
		if is <= 0 {
			delete(m.addrs, addr)
		}
	}
	byAddr := func(x, y wantedAddress) int { return x.addr.Prefix.Addr().Compare(y.addr.Prefix.Addr()) }
	slices.SortFunc(claim, byAddr)
	slices.SortFunc(release, byAddr)
	return claim, release
}

// rememberDelta updates the memory with the changed clusters.
func (a *apply) rememberDelta(names []string, now map[string]*clusterSpec, d *lvsctlv1.Delta) {
	m := a.r.mem
	m.desired.Apply(d) // a delta with a group takes the full path
	for _, n := range names {
		if old := m.specs[n]; old != nil && m.byKey[old.svc.ServiceKey] == n {
			delete(m.byKey, old.svc.ServiceKey)
		}
		delete(m.specs, n)
		if s := now[n]; s != nil {
			m.specs[n] = s
			m.byKey[s.svc.ServiceKey] = n
		}
		if errs := a.errs[n]; len(errs) > 0 {
			m.errs[n] = errs
		} else {
			delete(m.errs, n)
		}
	}
	// Errors of clusters the delta does not name: their rules left out for overlapping a
	// changed cluster's.
	for n, errs := range a.errs {
		if _, named := now[n]; !named {
			m.errs[n] = append(m.errs[n], errs...)
		}
	}
	if a.stopped || len(a.res.DirectorErrors) > 0 || a.needFull {
		m.full = true
	}
	// Every failing cluster's errors, in name order, not only this delta's.
	a.res.ClusterErrors = m.clusterErrors()
}

// clusterErrors are the remembered errors of every failing cluster, in name order.
func (m *memory) clusterErrors() []*lvsctlv1.ClusterError {
	failing := make([]string, 0, len(m.errs))
	for n := range m.errs {
		failing = append(failing, n)
	}
	slices.Sort(failing)
	var out []*lvsctlv1.ClusterError
	for _, n := range failing {
		out = append(out, m.errs[n]...)
	}
	return out
}

// Package reconcile makes the kernel match a director's desired state: one IPVS firewall-mark
// service per cluster, the nftables mark rules that steer the clusters' VIP:ports into them, and,
// on the ACTIVE director, the VIPs and the group's gateway address.
//
// Every Apply reads the kernel back and makes only the differences, so it also repairs drift.
// The agent touches only what its state records as created by it, and keeps going past errors,
// reporting each against its cluster.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// IPVS is the kernel's IPVS, as far as firewall-mark services go.
type IPVS interface {
	// Stats dumps every firewall-mark service with its destinations (the counters are not used
	// here): a full reconcile's one bulk read of IPVS.
	Stats() ([]dataplane.ServiceStats, error)
	// Destinations lists one service's destinations; a missing service is dataplane.ErrNotExist.
	// A delta reads the services it names with it.
	Destinations(dataplane.Service) ([]dataplane.Destination, error)
	// Batch makes the changes in order and returns one error per op (nil: made). Each op stands
	// on its own: one after a failed one still runs. Services are edited in place
	// (UpdateService: scheduler, timeout/persistent flag, netmask), never deleted and recreated.
	Batch([]dataplane.Op) []error
	SyncDaemons
}

// SyncDaemons are IPVS's connection-sync daemons: at most one master and one backup per
// network namespace, both at once if asked.
type SyncDaemons interface {
	// SyncDaemons lists the running daemons.
	SyncDaemons() ([]dataplane.SyncDaemon, error)
	// StartSyncDaemon starts one; a running one of the same state is dataplane.ErrExist, a
	// missing interface dataplane.ErrNotExist.
	StartSyncDaemon(dataplane.SyncDaemon) error
	// StopSyncDaemon stops the daemon of a state; none running is dataplane.ErrNotExist.
	StopSyncDaemon(dataplane.SyncState) error
}

// Firewall is the agent's own nftables table of mark rules (package nft): fixed rules that look
// a packet's VIP, protocol and port up in maps, so a MarkRule is one map element (single ports
// and ranges in separate maps). A port may lie inside a range of its mark; overlapping ranges of
// one mark share an element; ports that overlap with different marks are refused (ErrExist).
type Firewall interface {
	// MarkRules dumps the table's marks (bulk), sorted.
	MarkRules() ([]dataplane.MarkRule, error)
	// SetMarkRules makes the table hold exactly these, reading the kernel first; one transaction;
	// returns elements added+deleted; equal => 0 and no transaction. Creates/repairs table, chain, maps.
	SetMarkRules([]dataplane.MarkRule) (int, error)
	// ChangeMarkRules deletes del and adds add in ONE transaction without dumping the table (O(change)).
	// All or nothing: a del that is absent or an add that clashes with another element fails the whole
	// transaction, kernel unchanged (errors.Is dataplane.ErrNotExist / ErrExist where identifiable); the
	// caller then falls back to SetMarkRules. So does any call before a SetMarkRules succeeded, or after
	// a failed transaction (ErrNotExist). Returns elements added+deleted.
	ChangeMarkRules(add, del []dataplane.MarkRule) (int, error)
}

// Addresses are the interfaces' addresses.
type Addresses interface {
	Addresses(iface string) ([]netip.Prefix, error)
	AddAddress(iface string, p netip.Prefix) error
	DelAddress(iface string, p netip.Prefix) error
}

// Ownership records which kernel objects the agent created; *state.State implements it.
// Commit saves a batch of changes in one write: a reconcile records every service and address
// it is about to create in one Commit before creating them, and forgets what it deleted or
// failed to create in one more at the end, instead of a save per kernel object.
type Ownership interface {
	OwnsService(dataplane.ServiceKey) bool
	OwnedServices() []dataplane.ServiceKey
	OwnsAddress(state.Address) bool
	OwnedAddresses() []state.Address
	Commit(state.Changes) error
}

// Config is what a Reconciler works on. All fields but Logger are required.
type Config struct {
	Logger    *slog.Logger
	IPVS      IPVS
	Firewall  Firewall
	Addresses Addresses
	State     Ownership
}

// Result is what one Apply did: the number of kernel changes and the errors, per cluster and
// for the director as a whole (capabilities, mark rules, addresses). It maps onto an Ack.
type Result struct {
	Operations     int
	ClusterErrors  []*lvsctlv1.ClusterError
	DirectorErrors []string
	// Sync is the state of the IPVS sync daemons when the group has sync (nil when it has
	// none): as read back after the last reconcile that managed them (Apply, or a delta that
	// changed the group); a delta or ApplyHolding repeats it.
	Sync *lvsctlv1.SyncStatus
	// Added lists the addresses this call added to an interface, in the order added, for the
	// caller's gratuitous ARP / unsolicited neighbour advertisements.
	Added []state.Address
}

// Reconciler applies desired states to the kernel. Its Apply and ApplyDelta calls are
// serialized, so a change-driven apply and the periodic resync may call it from different
// goroutines.
type Reconciler struct {
	log   *slog.Logger
	ipvs  IPVS
	fw    Firewall
	addrs Addresses
	owned Ownership

	mu sync.Mutex
	// mem is what the last Apply or ApplyDelta left, for the next ApplyDelta; nil before the
	// first Apply.
	mem *memory

	// A release (ApplyHolding(ctx, false)) must not wait behind a reconcile that may take
	// seconds: the lease says when the addresses must be gone. releasing counts the releases
	// waiting for mu; cancelRun, guarded by runMu, stops the reconcile that holds mu.
	releasing atomic.Int32
	runMu     sync.Mutex
	cancelRun context.CancelCauseFunc
	// released is the release generation (ReleaseGen): the releases started so far.
	released atomic.Uint64
}

// anyGen is the generation Apply and ApplyDelta pass: their role is taken as it is.
const anyGen = ^uint64(0)

// ErrPreempted is why an Apply or ApplyDelta stopped early: a release of the group's
// addresses (ApplyHolding without hold) was waiting for it. Its Result reports it as an
// interruption, and the next reconcile takes the full path.
var ErrPreempted = errors.New("preempted by a release of the group's addresses")

// begin makes the context of an Apply or ApplyDelta that holds mu, cancellable by a release;
// the returned func ends it.
func (r *Reconciler) begin(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	r.runMu.Lock()
	r.cancelRun = cancel
	r.runMu.Unlock()
	if r.releasing.Load() > 0 {
		cancel(ErrPreempted) // a release waits: it goes first
	}
	return ctx, func() {
		r.runMu.Lock()
		r.cancelRun = nil
		r.runMu.Unlock()
		cancel(nil)
	}
}

// preempt stops the running Apply or ApplyDelta, if any, at its next step, and any that
// starts before the release has run.
func (r *Reconciler) preempt() (done func()) {
	r.released.Add(1)
	r.runMu.Lock()
	if r.cancelRun != nil {
		r.cancelRun(ErrPreempted)
	}
	// Counted under runMu, after the running one was stopped: one that begins later sees the
	// count (begin reads it after taking runMu), and whoever sees it knows the running one
	// was told to stop.
	r.releasing.Add(1)
	r.runMu.Unlock()
	return func() { r.releasing.Add(-1) }
}

// New returns a Reconciler. A nil Logger discards logs.
func New(cfg Config) *Reconciler {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{log: log, ipvs: cfg.IPVS, fw: cfg.Firewall, addrs: cfg.Addresses, owned: cfg.State}
}

// Apply makes the kernel match desired, with the VIPs present only if role is ACTIVE in the
// desired state's group (a role of another group says nothing about this one). A nil
// desired is an empty one: everything the agent owns is removed, so callers must not call Apply
// before they have a desired state (the controller's snapshot or the saved one).
//
// It reads the whole kernel back, in bulk (one dump of IPVS, one of the mark rules, the
// addresses of the interfaces involved), so it also repairs drift. It never stops at an error:
// each is reported and the rest is still applied; the next Apply retries what failed.
func (r *Reconciler) Apply(ctx context.Context, desired *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) Result {
	return r.ApplyAt(ctx, anyGen, desired, role)
}

// ReleaseGen is the release generation: it grows when a release (ApplyHolding without hold)
// starts. A caller that decides whether to hold reads it first and passes it to ApplyAt or
// ApplyDeltaAt.
func (r *Reconciler) ReleaseGen() uint64 { return r.released.Load() }

// ApplyAt is Apply of a role decided at release generation gen (ReleaseGen read before the
// decision): if a release started since, an ACTIVE role is applied as not holding. A reconcile
// queued before a release may start only after it finished (the release stops only the one
// running), and would otherwise put the addresses back for its whole run, while another
// director may hold them.
func (r *Reconciler) ApplyAt(ctx context.Context, gen uint64, desired *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, end := r.begin(ctx)
	defer end()
	a := r.newApply(ctx)
	if missing := r.missingConfig(); missing != "" {
		a.directorErr(fmt.Errorf("reconcile: config has no %s", missing))
		return a.res
	}
	active := role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && role.GetGroup() == desired.GetGroup().GetName()
	a.run(desired, active && !r.releasedSince(gen))
	return a.res
}

// releasedSince reports whether a release started since generation gen (with r.mu held).
func (r *Reconciler) releasedSince(gen uint64) bool {
	if gen == anyGen || r.released.Load() == gen {
		return false
	}
	r.log.Info("a hold decided before the latest release of the group's addresses: applied as not holding")
	return true
}

func (r *Reconciler) newApply(ctx context.Context) *apply {
	return &apply{r: r, ctx: ctx, errs: map[string][]*lvsctlv1.ClusterError{}}
}

func (r *Reconciler) missingConfig() string {
	switch {
	case r.ipvs == nil:
		return "IPVS"
	case r.fw == nil:
		return "Firewall"
	case r.addrs == nil:
		return "Addresses"
	case r.owned == nil:
		return "State"
	}
	return ""
}

// apply is the work of one Apply or ApplyDelta call.
type apply struct {
	r       *Reconciler
	ctx     context.Context
	res     Result
	stopped bool
	// errs are this call's errors by cluster; they become the clusters' remembered errors.
	errs map[string][]*lvsctlv1.ClusterError
	// forget collects what is no longer owned, saved in one Commit at the end.
	forget state.Changes
	// quiet: this call makes so many changes that each is logged at debug level only, and
	// their count at info level.
	quiet bool
	// The kernel's mark rules, read at most once, and only when a cluster must be kept as it
	// is; rulesFrozen: they could not be read, so they must not be replaced either.
	kernelRules []dataplane.MarkRule
	rulesRead   bool
	rulesFrozen bool
	// needFull: the next delta must take the full path (clusters kept or clashing).
	needFull bool
}

func (a *apply) clusterErr(cluster string, err error) {
	a.r.log.Warn("reconcile failed", "cluster", cluster, "error", err)
	ce := &lvsctlv1.ClusterError{Cluster: cluster, Message: err.Error()}
	a.res.ClusterErrors = append(a.res.ClusterErrors, ce)
	a.errs[cluster] = append(a.errs[cluster], ce)
}

func (a *apply) directorErr(err error) {
	a.r.log.Warn("reconcile failed", "error", err)
	a.res.DirectorErrors = append(a.res.DirectorErrors, err.Error())
}

// interrupted reports, once, that the context ended; the rest is left for the next Apply.
func (a *apply) interrupted() bool {
	if a.stopped {
		return true
	}
	if err := context.Cause(a.ctx); err != nil {
		a.stopped = true
		a.directorErr(fmt.Errorf("reconcile interrupted: %w", err))
		return true
	}
	return false
}

// commitForgets saves what the call no longer owns.
func (a *apply) commitForgets() {
	if a.forget.Empty() {
		return
	}
	if err := a.r.owned.Commit(a.forget); err != nil {
		a.directorErr(fmt.Errorf("forget %d services and %d addresses: %w", len(a.forget.ForgetServices), len(a.forget.ForgetAddresses), err))
		if a.r.mem != nil {
			a.r.mem.full = true // retried, and reported again, by the next reconcile
		}
	}
	a.forget = state.Changes{}
}

// addressMode is what the address step may do this time.
type addressMode int

const (
	addressesNormal addressMode = iota
	// addressesRelease removes every owned address: IPVS is missing, so a VIP here would
	// attract traffic that nothing can balance.
	addressesRelease
	// addressesFreeze leaves addresses alone: the IPVS state could not be read, and dropping
	// VIPs over a transient read error would be an outage.
	addressesFreeze
)

// run orders the steps so that traffic is never attracted to something half-built: services
// and destinations first, then the mark rules, then the VIPs; on the way out, VIPs go first,
// then rules, then services.
func (a *apply) run(desired *lvsctlv1.DesiredState, active bool) {
	defer a.commitForgets()
	specs := a.plan(desired)
	desiredKeys := make(map[dataplane.ServiceKey]bool, len(specs))
	for _, s := range specs {
		desiredKeys[s.svc.ServiceKey] = true
	}

	mode := addressesNormal
	if !active {
		mode = addressesRelease
	}
	kernel, err := a.r.ipvs.Stats()
	ipvsOK := err == nil
	if err != nil {
		a.directorErr(fmt.Errorf("read IPVS services: %w", err))
		if errors.Is(err, dataplane.ErrUnavailable) {
			mode = addressesRelease
		} else if mode == addressesNormal {
			mode = addressesFreeze
		}
	}
	var lastSync *lvsctlv1.Sync
	if a.r.mem != nil {
		lastSync = a.r.mem.desired.Group.GetSync()
	}
	a.res.Sync = a.syncDaemons(desired.GetGroup(), lastSync, err)
	if a.rulesFrozen && mode == addressesNormal {
		// Which VIPs a kept cluster has is in the rules that could not be read.
		mode = addressesFreeze
	}
	inKernel := make(map[dataplane.ServiceKey]*dataplane.ServiceStats, len(kernel))
	for i := range kernel {
		inKernel[kernel[i].ServiceKey] = &kernel[i]
	}

	// Clusters whose service belongs to someone else get neither rules nor VIPs: marking their
	// traffic would hand it to a service lvsctl does not manage.
	var usable []*clusterSpec
	var syncing []*clusterSpec
	for _, s := range specs {
		if s.kept {
			_, s.serving = inKernel[s.svc.ServiceKey]
			continue
		}
		if ipvsOK {
			syncing = append(syncing, s)
		}
	}
	if ipvsOK {
		if a.interrupted() {
			a.remember(desired, active, specs, nil, nil)
			return
		}
		a.syncServices(syncing, func(s *clusterSpec) (*dataplane.Service, []dataplane.Destination, bool) {
			k, ok := inKernel[s.svc.ServiceKey]
			if !ok {
				return nil, nil, false
			}
			dests := make([]dataplane.Destination, len(k.Destinations))
			for i, d := range k.Destinations {
				dests[i] = d.Destination
			}
			return &k.Service, dests, true
		})
	}
	for _, s := range specs {
		if !s.foreign {
			usable = append(usable, s)
		}
	}

	if a.interrupted() {
		a.remember(desired, active, specs, nil, nil)
		return
	}
	var want []wantedAddress
	if mode == addressesNormal {
		want, _ = a.wantedAddresses(desired.GetGroup(), usable)
	}
	var present map[string]*linkAddresses
	if mode != addressesFreeze {
		present = a.readAddresses(want, true)
		a.releaseAddresses(want, present)
	}

	if a.interrupted() {
		a.remember(desired, active, specs, nil, nil)
		return
	}
	rules := a.syncRules(usable)

	if ipvsOK {
		a.deleteServices(desiredKeys, inKernel)
	}

	if mode == addressesNormal && !a.interrupted() {
		a.claimAddresses(want, present)
	}
	var wanted map[state.Address]int
	switch {
	case mode == addressesNormal:
		wanted = countAddresses(want)
	case active:
		a.needFull = true
	case ipvsOK && !a.rulesFrozen:
		// A STANDBY remembers what it would hold too, so that ApplyHolding can take the
		// addresses without reading the rest of the kernel. A group whose addresses cannot all
		// be named leaves it unknown: ApplyHolding then takes the full path, which reports why.
		if hold, ok := a.groupAddresses(desired.GetGroup(), usable, nil); ok {
			wanted = countAddresses(hold)
		}
	}
	a.remember(desired, active, specs, rules, wanted)
}

func countAddresses(want []wantedAddress) map[state.Address]int {
	n := make(map[state.Address]int, len(want))
	for _, w := range want {
		n[w.addr] += w.refs
	}
	return n
}

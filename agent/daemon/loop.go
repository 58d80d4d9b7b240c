package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/role"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/failover"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The agent's decisions are one function, (*loop).step: an event and the time in, the
// actions to take out. Run only waits for events and carries the actions out, so every
// decision is tested without goroutines, sockets or a clock (loop_test.go).

// event is one input to the loop.
type event interface{ isEvent() }

type (
	// evStart: Run started. held: the kernel holds addresses the agent owns under a saved
	// ACTIVE role (an agent restart). kernel: the real servers of the owned services in the
	// kernel (nil: unknown).
	evStart struct {
		held   bool
		kernel map[dataplane.ServiceKey][]netip.Addr
	}
	// evMessage: the controller sent a snapshot or a delta (heartbeats are evCtlHeartbeat).
	evMessage struct{ m *lvsctlv1.ConnectResponse }
	// evOffline: OfflineAfter passed since start.
	evOffline struct{}
	// evResync: the resync period passed.
	evResync struct{}
	// evKernelChange: a Watcher saw a change made behind the agent's back.
	evKernelChange struct{}
	// evRepairDue: RepairDelay passed since the first kernel change not yet repaired.
	evRepairDue struct{}
	// evStatsTick: the stats period passed.
	evStatsTick struct{}
	// evHello: the session opened a new stream and said Hello on it.
	evHello struct{}
	// evSessionLost: a send found no stream.
	evSessionLost struct{}
	// evCtlHeartbeat: the controller's heartbeat arrived on the stream.
	evCtlHeartbeat struct{ hb *lvsctlv1.Heartbeat }
	// evPeerHeartbeat: a peer director's heartbeat arrived over UDP.
	evPeerHeartbeat struct {
		from netip.Addr
		hb   *lvsctlv1.PeerHeartbeat
	}
	// evProbeAnswer: a peer's host answered a probe.
	evProbeAnswer struct{ peer string }
	// evRoleTick: the role machine's deadline (Next) passed.
	evRoleTick struct{}
	// evPreempted: a release stopped the reconcile that was running; what it left undone is
	// done now.
	evPreempted struct{}
	// evSaveBehind: a delta could not be saved on top of the saved state (an earlier save
	// failed).
	evSaveBehind struct{}
	// evReleaseFailed: a release left addresses the agent owns on their interfaces (removing
	// one failed).
	evReleaseFailed struct{}
	// evBindFailed: the peer transport could not be opened on local.
	evBindFailed struct{ local netip.AddrPort }
	// evHealth: the checker's latest statuses of targets that changed state.
	evHealth struct{ statuses []checker.Status }
	// evRemovalDue: the earliest removal deadline (removalAt) passed.
	evRemovalDue struct{}
	// evRemovalCounts: a stats sample counted the connections of removals.
	evRemovalCounts struct{ counts []removalCount }
)

func (evStart) isEvent()         {}
func (evMessage) isEvent()       {}
func (evOffline) isEvent()       {}
func (evResync) isEvent()        {}
func (evKernelChange) isEvent()  {}
func (evRepairDue) isEvent()     {}
func (evStatsTick) isEvent()     {}
func (evHello) isEvent()         {}
func (evSessionLost) isEvent()   {}
func (evCtlHeartbeat) isEvent()  {}
func (evPeerHeartbeat) isEvent() {}
func (evProbeAnswer) isEvent()   {}
func (evRoleTick) isEvent()      {}
func (evSaveBehind) isEvent()    {}
func (evPreempted) isEvent()     {}
func (evReleaseFailed) isEvent() {}
func (evBindFailed) isEvent()    {}
func (evHealth) isEvent()        {}
func (evRemovalDue) isEvent()    {}
func (evRemovalCounts) isEvent() {}

// action is one thing Run must do, in the order step returned them.
type action interface{ isAction() }

// saveKind is what a reconcile saves after it applies (whether it succeeded or not: it is what
// the controller wants, kept for an offline start).
type saveKind int

const (
	saveNothing saveKind = iota
	// saveSnapshot: the whole desired state, revision and role.
	saveSnapshot
	// saveDelta: the delta on top of the saved state (the whole state if the saved one is
	// not the one it follows), and the role when the delta carried roles.
	saveDelta
)

type (
	// actReconcile applies effective (delta == nil: the full path, which reads the kernel
	// back) or only delta, with role; then saves, sets the applied revision and acks.
	actReconcile struct {
		trigger string
		desired *lvsctlv1.DesiredState // the whole state after the change, sorted (saved)
		// effective is desired as this director applies it (health, drains, removals).
		effective *lvsctlv1.DesiredState
		// delta is what the reconciler applies: the controller's delta of effective clusters,
		// or one of this director's own at the applied revision.
		delta *lvsctlv1.Delta
		rev   int64
		// role is what the reconciler applies: ACTIVE only while the role machine says Hold.
		role *lvsctlv1.RoleAssignment
		// refused: the controller's latest state was not applied; the ack claims no revision.
		refused error
		// roleRefused: the latest role assignment was not obeyed; the ack says so.
		roleRefused error
		save        saveKind
		// savedDelta is the delta saved with saveDelta (also when the reconcile takes the full
		// path).
		savedDelta *lvsctlv1.Delta
		// assigned is the role to save: the assignment obeyed, not what is held.
		assigned *lvsctlv1.RoleAssignment
	}
	// actHolding takes (hold) or releases the group's addresses, and nothing else: a
	// takeover is not a full reconcile.
	actHolding struct {
		hold    bool
		desired *lvsctlv1.DesiredState // nil: no desired state is held yet
		role    *lvsctlv1.RoleAssignment
		// queued is when Run's goroutine queued it (set there): the log says how long a
		// take waited behind other kernel work.
		queued time.Time
	}
	// actSave saves the whole desired state, its revision and the assignment.
	actSave struct {
		desired  *lvsctlv1.DesiredState
		rev      int64
		assigned *lvsctlv1.RoleAssignment
	}
	// actAnnounce sends gratuitous ARP / unsolicited NA for the addresses the kernel work
	// just before it added (Result.Added): those just taken.
	actAnnounce struct{}
	// actPrepareAnnounce readies announcements on the interfaces of the group's addresses.
	actPrepareAnnounce struct{ ifaces []string }
	// actAckRefusal acks revision 0 with why.
	actAckRefusal struct{ why error }
	// actRequestSnapshot asks the controller for a snapshot.
	actRequestSnapshot struct{ reason string }
	// actReport samples the IPVS counters of desired's clusters and reports what changed, with
	// reals (what the agent knows of the real servers beyond the counters), and counts the
	// connections of the removals.
	actReport struct {
		desired  *lvsctlv1.DesiredState
		reals    map[string]*stats.Reals
		removing []removalRef
	}
	// actSetTargets gives the checker its targets.
	actSetTargets struct{ targets []checker.Target }
	// actHeartbeat sends the controller a heartbeat on the stream.
	actHeartbeat struct{ hb *lvsctlv1.Heartbeat }
	// actPeers sends heartbeats to peer directors over UDP.
	actPeers struct{ out []role.Outgoing }
	// actProbe probes peers' hosts.
	actProbe struct{ out []role.Outgoing }
	// actRoleStatus sends what the role logic sees (the runner adds the sync daemons).
	actRoleStatus struct{ status *lvsctlv1.RoleStatus }
	// actBind moves the peer transport to local (invalid: no transport).
	actBind struct{ local netip.AddrPort }
)

func (actReconcile) isAction()       {}
func (actHolding) isAction()         {}
func (actSave) isAction()            {}
func (actAnnounce) isAction()        {}
func (actPrepareAnnounce) isAction() {}
func (actAckRefusal) isAction()      {}
func (actRequestSnapshot) isAction() {}
func (actReport) isAction()          {}
func (actHeartbeat) isAction()       {}
func (actPeers) isAction()           {}
func (actProbe) isAction()           {}
func (actRoleStatus) isAction()      {}
func (actBind) isAction()            {}
func (actSetTargets) isAction()      {}

// RoleMachine is the agent's failover logic (a *role.Machine).
type RoleMachine interface {
	Step(now time.Time, ev role.Event) role.Actions
	Next() time.Time
	Status(now time.Time) *lvsctlv1.RoleStatus
}

var _ RoleMachine = (*role.Machine)(nil)

// loop is the agent's state between events. Only step changes it.
type loop struct {
	director string
	log      *slog.Logger
	// hasDataPlane reports whether the kernel holds anything the agent would lose to an
	// empty desired state.
	hasDataPlane func() bool
	repairDelay  time.Duration
	machine      RoleMachine

	cur *desiredSet // nil until a snapshot (controller or saved) arrives
	rev int64
	// role is the assignment obeyed (a lower epoch of its group never replaces it).
	role *lvsctlv1.RoleAssignment
	// fromCtl: cur came from the controller (deltas follow only its snapshots).
	fromCtl bool
	// refused is why the controller's latest state was not applied; every ack says so until
	// it sends one that is.
	refused error
	// roleRefused is why the latest role assignment was not obeyed (ErrEpochBackwards); every
	// ack says so until one is.
	roleRefused error
	// refusals are the refusals decided since the runner last took them: it logs and counts
	// each once (step itself only decides).
	refusals []error
	// floor is the highest revision this agent applied (saved, or accepted since start): an
	// older one is refused (ErrRevisionBackwards).
	floor int64
	// acceptOlder: the next snapshot is accepted even if older than floor, once
	// (Config.AcceptOlderRevision).
	acceptOlder bool
	// journal is the saved desired state's path, named in the refusal of an older revision.
	journal string
	// integrity is why the saved state was not believed at start (state.ErrIntegrity): said
	// at every Hello until the controller's state is applied.
	integrity error
	saved     *lvsctlv1.DesiredState // the saved desired state, for an offline start
	savedRv   int64
	// repairAt is when drift seen by a Watcher is repaired (zero: none pending).
	repairAt time.Time
	// hold is what the role machine said last: the group's addresses are to be held.
	hold bool
	// assignedGroup and assignedRole are what the role machine was last told (assigned:
	// it was told something).
	assigned      bool
	assignedGroup *lvsctlv1.DirectorGroup
	assignedRole  *lvsctlv1.RoleAssignment
	// fenceEnd is when the fence of the takeover in the latest roles received ends (zero:
	// none), told to the role machine with the role.
	fenceEnd time.Time
	// local is the address the peer transport is bound to (invalid: none).
	local netip.AddrPort
	// releaseFailed: the last release left addresses behind; it is done again at the next
	// role tick, until it succeeds or the machine says hold again.
	releaseFailed bool
	// bindFailed: the transport could not be opened on local (the address not yet on the
	// host, the port taken); opening it is tried again at each role tick.
	bindFailed bool
	// hs: health checks, removals and the effective state (loop_health.go).
	hs healthState
}

// step feeds one event at now and returns what to do, in order.
func (l *loop) step(now time.Time, ev event) []action {
	l.ensure()
	var acts []action
	switch ev := ev.(type) {
	case evStart:
		l.hs.kernelAtStart = ev.kernel
		acts = l.roleStep(now, role.Started{Held: ev.held}, acts, false)
		if l.saved != nil {
			// The saved group's peers can renew the saved ACTIVE's lease while the
			// controller is away: they are the reason the lease may outlive Fence.
			acts = l.assign(now, l.saved.GetGroup(), acts, false)
		}
	case evOffline:
		if !l.fromCtl && l.saved != nil && l.cur == nil {
			l.log.Warn("controller unreachable: applying the last saved desired state", "revision", l.savedRv)
			l.cur, l.rev = newDesiredSet(l.saved), l.savedRv
			l.track(now, nil, nil)
			acts = l.setTargets(acts)
			acts = l.reconcile(acts, "saved-state", nil, saveNothing, nil)
		}
	case evResync:
		if l.cur != nil {
			acts = l.reconcile(acts, "resync", nil, saveNothing, nil)
		}
	case evKernelChange:
		// Ignored until a desired state is held: the agent changes nothing before then. The
		// reconcile's own changes come back here too, and make one more reconcile that finds
		// nothing to do, so changes nothing and is not signalled: no loop.
		if l.cur != nil && l.repairAt.IsZero() {
			l.repairAt = now.Add(l.repairDelay)
		}
	case evRepairDue:
		l.repairAt = time.Time{}
		if l.cur != nil {
			acts = l.reconcile(acts, "kernel-change", nil, saveNothing, nil)
		}
	case evPreempted:
		if l.cur != nil {
			acts = l.reconcile(acts, "after-release", nil, saveNothing, nil)
		}
	case evSaveBehind:
		if l.cur != nil && l.fromCtl {
			acts = append(acts, actSave{desired: l.cur.state(), rev: l.rev, assigned: l.role})
		}
	case evStatsTick:
		if l.cur != nil {
			acts = append(acts, actReport{desired: l.effState(), reals: l.publishReals(), removing: l.removingRefs()})
		}
	case evHealth:
		acts = l.healthChanged(ev.statuses, acts)
	case evRemovalDue:
		acts = l.removalsDue(now, acts)
	case evRemovalCounts:
		acts = l.removalCounts(ev.counts, acts)
	case evMessage:
		acts = l.message(now, ev.m, acts)
	case evHello:
		// The controller on a new stream may know nothing of this director's role.
		acts = append(acts, actRoleStatus{status: l.machine.Status(now)})
		if l.integrity != nil && !l.fromCtl {
			acts = append(acts, actAckRefusal{why: l.integrity})
		}
	case evSessionLost:
		acts = l.roleStep(now, role.ControllerLost{}, acts, false)
	case evCtlHeartbeat:
		acts = l.roleStep(now, role.ControllerHeartbeat{HB: ev.hb}, acts, false)
	case evPeerHeartbeat:
		acts = l.roleStep(now, role.PeerHeartbeat{From: ev.from, HB: ev.hb}, acts, false)
	case evProbeAnswer:
		acts = l.roleStep(now, role.ProbeAnswered{Peer: ev.peer}, acts, false)
	case evRoleTick:
		acts = l.roleStep(now, role.Tick{}, acts, false)
		if l.releaseFailed && !l.hold {
			l.releaseFailed = false
			acts = append(acts, l.holding())
		}
		if l.bindFailed {
			l.bindFailed = false
			acts = append(acts, actBind{local: l.local})
		}
	case evBindFailed:
		// Only the latest address counts: a failure to open one left since is moot.
		l.bindFailed = ev.local == l.local && ev.local.IsValid()
	case evReleaseFailed:
		// The release may be behind the machine: one that says hold again has the addresses.
		l.releaseFailed = !l.hold
	}
	return acts
}

// message handles a snapshot or a delta.
func (l *loop) message(now time.Time, m *lvsctlv1.ConnectResponse, acts []action) []action {
	switch msg := m.GetMsg().(type) {
	case *lvsctlv1.ConnectResponse_Snapshot:
		next := msg.Snapshot.GetState()
		if next == nil {
			next = &lvsctlv1.DesiredState{} // nil is "no desired state yet" here
		}
		rev := msg.Snapshot.GetRevision()
		if err := l.refuseNotListed(next.GetGroup(), "snapshot", rev); err != nil {
			return l.refuse(acts, err)
		}
		if err := l.refuseGroupless(next.GetGroup()); err != nil {
			return l.refuse(l.leave(now, acts), err)
		}
		// The empty state of no group comes at revision 0, which says nothing of the store.
		if next.GetGroup().GetName() != "" {
			if rev < l.floor && !l.acceptOlder {
				return l.refuse(acts, l.olderRevision("snapshot", rev))
			}
			if rev < l.floor {
				// The operator said the store was restored: its revisions, and the epochs of
				// its roles, start over from this snapshot's.
				l.log.Warn("accepting a snapshot older than the revision applied (--accept-older-revision)", "revision", rev,
					"applied", l.floor, "group", next.GetGroup().GetName())
				l.floor, l.role = rev, nil
			}
			l.acceptOlder = false // once: the first snapshot of a group
			l.floor = max(l.floor, rev)
		}
		l.refused = nil
		l.obey(roleOf(msg.Snapshot.GetRoles(), next.GetGroup().GetName(), l.director))
		l.fenceEnd = fenceEnd(now, msg.Snapshot.GetRoles(), msg.Snapshot.GetSentUnixMs(), next.GetGroup())
		var old map[string]*lvsctlv1.Cluster
		if l.cur != nil {
			old = l.cur.clusters.ByName
		}
		l.cur, l.rev, l.fromCtl = newDesiredSet(next), rev, true
		l.track(now, old, nil)
		acts = l.setTargets(acts)
		// The machine hears of the new role first, so that the reconcile applies what it
		// says about holding; what else it says (an announce, a status) follows the reconcile.
		after := l.assign(now, next.GetGroup(), nil, true)
		return append(l.reconcile(acts, "snapshot", nil, saveSnapshot, nil), after...)
	case *lvsctlv1.ConnectResponse_Delta:
		d := msg.Delta
		// A delta out of the group (to no group: revision 0, which says nothing of the store)
		// is refuseGroupless's.
		leaves := d.GetGroup() != nil && d.GetGroup().GetName() == ""
		if !leaves && (d.GetRevision() < l.floor || d.GetRevision() < d.GetPrevRevision()) {
			// Not a gap to fill with a snapshot: the controller's revisions went back.
			return l.refuse(acts, l.olderRevision("delta", d.GetRevision()))
		}
		if l.cur == nil || !l.fromCtl || d.GetPrevRevision() != l.rev {
			// A gap: deltas apply only on top of the revision they were computed from.
			l.log.Warn("delta does not follow the applied revision; asking for a snapshot", "have", l.rev, "prev", d.GetPrevRevision())
			return append(acts, actRequestSnapshot{reason: "revision gap"})
		}
		g := l.cur.clusters.Group
		if d.GetGroup() != nil {
			g = d.GetGroup()
		}
		if err := l.refuseNotListed(g, "delta", d.GetRevision()); err != nil {
			return l.refuse(acts, err)
		}
		if err := l.refuseGroupless(g); err != nil {
			return l.refuse(l.leave(now, acts), err)
		}
		l.refused = nil
		l.cur.apply(d)
		l.rev = d.GetRevision()
		l.floor = max(l.floor, l.rev)
		// Never nil: nil would be every cluster, and a delta of roles alone (a takeover) must
		// stay O(change).
		names := append(make([]string, 0, len(d.GetDeleted())+len(d.GetUpserted())), d.GetDeleted()...)
		for _, c := range d.GetUpserted() {
			names = append(names, c.GetName())
		}
		l.track(now, nil, names)
		acts = l.setTargets(acts)
		if d.GetRoles() != nil {
			l.obey(roleOf(d.GetRoles(), g.GetName(), l.director))
			l.fenceEnd = fenceEnd(now, d.GetRoles(), d.GetSentUnixMs(), g)
		}
		// A takeover or a release comes as a delta of roles: the addresses change first, on
		// the fast path, and the delta then finds the reconciler already of the new role, so
		// a delta it stays (a full reconcile reads the whole kernel back: not on a takeover).
		acts = l.assign(now, g, acts, false)
		return l.reconcile(acts, "delta", l.effDelta(d), saveDelta, d)
	case *lvsctlv1.ConnectResponse_RolesStored:
		// The group's assignment, stored a moment ago, ahead of its delta: the role machine
		// hears it now (a takeover's new ACTIVE takes the addresses on the fast path, the
		// worker idle), and the delta that follows finds the role unchanged. Nothing is
		// reconciled, saved or acked for it; roles of another group than the state held are
		// left to the delta or snapshot that brings that group.
		r := msg.RolesStored.GetRoles()
		if l.cur == nil || !l.fromCtl {
			return acts
		}
		g := l.cur.clusters.Group
		if g.GetName() == "" || r.GetGroup() != g.GetName() {
			return acts
		}
		next := roleOf(r, g.GetName(), l.director)
		if l.role != nil && l.role.GetGroup() == next.GetGroup() && next.GetEpoch() <= l.role.GetEpoch() {
			// Nothing new (the delta got here first), or older: not obeyed, and no refusal.
			// The controller's sender may send a RolesStored it holds after the delta of a
			// newer assignment stored since (the delta comes by the store's watch, which may
			// beat the writer's notice): an older one here is a race, not a restored store.
			// The delta and the snapshot are what refuse older epochs.
			return acts
		}
		l.obey(next)
		l.fenceEnd = fenceEnd(now, r, msg.RolesStored.GetSentUnixMs(), g)
		return l.assign(now, g, acts, false)
	}
	return acts
}

// reconcile appends the reconcile of cur, of only apply when set; saved is the delta to save
// with saveDelta. A full reconcile reads the kernel after every change seen so far: it repairs
// them too.
func (l *loop) reconcile(acts []action, trigger string, apply *lvsctlv1.Delta, save saveKind, saved *lvsctlv1.Delta) []action {
	a := actReconcile{trigger: trigger, rev: l.rev, role: l.held(), refused: l.refused, roleRefused: l.roleRefused, save: save,
		assigned: l.role, delta: apply, savedDelta: saved}
	if apply == nil {
		l.repairAt = time.Time{}
		a.desired, a.effective = l.cur.state(), l.effState()
	}
	return append(acts, a)
}

// held is the role the reconciler applies: ACTIVE iff the role machine says Hold.
func (l *loop) held() *lvsctlv1.RoleAssignment { return heldRole(l.role, l.hold) }

// heldRole is assigned as the reconciler applies it: ACTIVE iff hold, STANDBY for an ACTIVE
// that may not hold.
func heldRole(assigned *lvsctlv1.RoleAssignment, hold bool) *lvsctlv1.RoleAssignment {
	r := &lvsctlv1.RoleAssignment{Group: assigned.GetGroup(), Role: assigned.GetRole(), Epoch: assigned.GetEpoch()}
	switch {
	case hold:
		r.Role = lvsctlv1.Role_ROLE_ACTIVE
	case r.Role == lvsctlv1.Role_ROLE_ACTIVE:
		r.Role = lvsctlv1.Role_ROLE_STANDBY
	}
	return r
}

// assign tells the role machine the group and role obeyed now, when either changed, and
// moves the peer transport to the director's address in the group. reconciling: a reconcile
// follows in this step, and applies what the machine says about holding.
func (l *loop) assign(now time.Time, g *lvsctlv1.DirectorGroup, acts []action, reconciling bool) []action {
	return l.tell(now, g, l.role, acts, reconciling)
}

// leave tells the role machine the director is in no group, when the controller says so but
// its state is refused (refuseGroupless): the services and rules stay, but an ACTIVE removed
// from its group must not hold the group's addresses, which its old group's new ACTIVE may
// take. The machine releases them; the obeyed role stays, for the epochs it fences.
func (l *loop) leave(now time.Time, acts []action) []action {
	return l.tell(now, nil, nil, acts, false)
}

// tell tells the role machine group g and role r, when either changed since it was last told.
func (l *loop) tell(now time.Time, g *lvsctlv1.DirectorGroup, r *lvsctlv1.RoleAssignment, acts []action, reconciling bool) []action {
	if l.assigned && proto.Equal(g, l.assignedGroup) && proto.Equal(r, l.assignedRole) {
		return acts
	}
	if r.GetRole() != l.assignedRole.GetRole() || r.GetEpoch() != l.assignedRole.GetEpoch() {
		var wait time.Duration
		if l.fenceEnd.After(now) {
			wait = l.fenceEnd.Sub(now)
		}
		l.log.Info("role assigned", "group", r.GetGroup(), "role", r.GetRole(), "epoch", r.GetEpoch(), "fence_wait", wait)
	}
	if (!l.assigned || !proto.Equal(g, l.assignedGroup)) && len(g.GetDirectors()) > 1 {
		// A director that may take the addresses over readies their announcement now.
		var ifaces []string
		for _, i := range []string{g.GetVipInterface(), g.GetGateway().GetInterface()} {
			if i != "" && !slices.Contains(ifaces, i) {
				ifaces = append(ifaces, i)
			}
		}
		if len(ifaces) > 0 {
			acts = append(acts, actPrepareAnnounce{ifaces: ifaces})
		}
	}
	l.assigned, l.assignedGroup, l.assignedRole = true, g, r
	if local := l.localAddr(g); local != l.local {
		l.local, l.bindFailed = local, false
		acts = append(acts, actBind{local: local})
	}
	return l.roleStep(now, role.Assigned{Group: g, Role: r, NotBefore: l.fenceEnd}, acts, reconciling)
}

// fenceEnd is when the fence of a takeover ends for this agent (zero: none): the roles'
// fence_until counted from the message's sent time, from now (the message's arrival or
// later, so never earlier than the controller meant), at most the group's Fence (more would
// be a controller clock stepped back between the decision and the message; the fence never
// lasts longer than that after a decision). Roles with a fence but no sent time wait a Fence.
func fenceEnd(now time.Time, r *lvsctlv1.GroupRoles, sentMs int64, g *lvsctlv1.DirectorGroup) time.Time {
	until := r.GetFenceUntilUnixMs()
	if until == 0 {
		return time.Time{}
	}
	fence := failover.Of(g).Fence
	wait := fence
	if sentMs != 0 {
		wait = min(time.Duration(until-sentMs)*time.Millisecond, fence)
	}
	if wait <= 0 {
		return time.Time{}
	}
	return now.Add(wait)
}

// localAddr is where this director receives its peers' heartbeats: its address in the group,
// at the group's port; none in a group of one (nobody to hear) or without an address.
func (l *loop) localAddr(g *lvsctlv1.DirectorGroup) netip.AddrPort {
	if len(g.GetDirectors()) < 2 {
		return netip.AddrPort{}
	}
	for _, d := range g.GetDirectors() {
		if d.GetName() != l.director {
			continue
		}
		ip, err := netip.ParseAddr(d.GetAddress())
		if err != nil {
			l.log.Error("no peer heartbeats: this director's address in its group is not an IP address", "group", g.GetName(), "address", d.GetAddress(), "error", err)
			return netip.AddrPort{}
		}
		return netip.AddrPortFrom(ip, failover.Of(g).Port)
	}
	return netip.AddrPort{}
}

// roleStep feeds the role machine and turns what it says into actions. reconciling: a full
// reconcile follows in this step with what the machine says about holding, so a change of
// hold needs no action of its own.
func (l *loop) roleStep(now time.Time, ev role.Event, acts []action, reconciling bool) []action {
	ra := l.machine.Step(now, ev)
	if ra.HoldChanged {
		l.hold = ra.Hold
		l.releaseFailed = false // a new take or release supersedes the retry
		if !ra.Hold && l.role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE {
			// An ACTIVE letting its addresses go is an outage for its clients: say why, with
			// what it heard of its peers (a lease lapsed while peers are heard points at the
			// echoes, not at the network).
			st := l.machine.Status(now)
			attrs := []any{"group", l.role.GetGroup(), "epoch", l.role.GetEpoch(), "why", st.GetFenced()}
			for _, p := range st.GetPeers() {
				attrs = append(attrs, slog.Group("peer_"+p.GetDirector(), "heard_ago_ms", p.GetHeardAgoMs()))
			}
			l.log.Warn("an ACTIVE releases the group's addresses", attrs...)
		}
		// Before any desired state there is nothing to take: the kernel still holds what it
		// held before a restart, and the first reconcile adds the rest. Releasing needs no
		// desired state: what the agent owns is known.
		if !reconciling && (l.cur != nil || !ra.Hold) {
			acts = append(acts, l.holding())
		}
	}
	if ra.Conflict != "" {
		// The epoch fences the pair; the operator should still know (a split network, a
		// controller's assignment not yet heard).
		l.log.Error("a peer says it holds the group's addresses at this director's epoch", "peer", ra.Conflict, "group", l.role.GetGroup(), "epoch", l.role.GetEpoch())
	}
	if ra.Announce && ra.Hold && l.cur != nil {
		acts = append(acts, actAnnounce{})
	}
	if ra.Controller != nil {
		acts = append(acts, actHeartbeat{hb: ra.Controller})
	}
	if len(ra.Peers) > 0 {
		acts = append(acts, actPeers{out: ra.Peers})
	}
	if len(ra.Probes) > 0 {
		acts = append(acts, actProbe{out: ra.Probes})
	}
	if ra.Status != nil {
		acts = append(acts, actRoleStatus{status: ra.Status})
	}
	return acts
}

// holding is the action that takes or releases the addresses, as the machine says now.
func (l *loop) holding() actHolding {
	h := actHolding{hold: l.hold, role: l.held()}
	if l.cur != nil {
		h.desired = l.effState()
	}
	return h
}

// obey sets the role to follow after next arrives: a lower epoch of the same group is never
// obeyed, whatever arrived in between (epochs count per group), and is refused
// (ErrEpochBackwards) if it is an assignment; a state of the same group without one (epoch 0)
// changes nothing.
func (l *loop) obey(next *lvsctlv1.RoleAssignment) {
	cur := l.role
	if cur != nil && next.GetGroup() == cur.GetGroup() && next.GetEpoch() < cur.GetEpoch() {
		if next.GetEpoch() != 0 {
			l.roleRefused = roleOlder(next, cur)
			l.refusals = append(l.refusals, l.roleRefused)
		}
		return
	}
	l.role, l.roleRefused = next, nil
}

// refuseGroupless returns why next is not applied: a director named in no group (a typo in
// --director, a renamed host) gets an empty state, and obeying it would tear down a working
// data plane.
func (l *loop) refuseGroupless(group *lvsctlv1.DirectorGroup) error {
	if group.GetName() != "" || !l.hasDataPlane() {
		return nil
	}
	return fmt.Errorf("director %q %w: keeping the data plane as it is "+
		"(remove what it owns by deleting its clusters first, or fix --director)", l.director, ErrNoGroup)
}

// Package roles owns director roles: which director of a group is ACTIVE, under which epoch,
// and when that changes (takeover of a lost ACTIVE, planned failover, preemption). The
// decisions are a pure state machine per group: events in (heartbeats, disconnects, what the
// agents report, time, operator requests, write results), actions out (an assignment to
// write, replies); the driver (Manager) owns the clock, the store and the streams.
//
// The rule (docs/design.md section 5): a STANDBY is promoted only when the controller has lost
// the ACTIVE, every other director of the group reports the ACTIVE's heartbeats and host lost,
// and the ACTIVE's fence time has surely passed since the last time anyone heard it. A
// partition between the controller and a healthy ACTIVE is not a failover; a controller outage
// changes nothing.
//
// The machine's rules, precisely (S = failover.Of(group)):
//   - A director is connected from a Heard (or Reported) until its Disconnected or until
//     S.DeadAfter passes without one. lost(A): A is not connected; a director never heard since
//     the machine started is lost only S.DeadAfter after the start (a restarted controller
//     first gives everyone time to reconnect), and was last heard, as far as the controller
//     knows, at the start (the previous controller may have renewed its lease until then).
//   - Takeover of the ACTIVE A: lost(A), and every other director of the group connected, with
//     a RoleStatus whose peer entry for A says reachable=false and host_reachable=false. A
//     director that is not connected, has not reported, or reports A reachable or A's host
//     answering blocks it (Blocked says which: it may be renewing A's lease, or A's agent is
//     down on a live host that still forwards). The write happens as soon as that holds, and
//     carries fence_until = max(T_c, T_x for every reporter) + S.Fence: T_c is when the
//     controller last heard A, T_x = (arrival of x's report) - heard_ago_ms (the arrival itself
//     when x never heard A: its previous incarnation ended before it). The new ACTIVE holds
//     nothing before fence_until (agent/role), so A's lease has surely run out; the store write
//     and the delivery happen meanwhile instead of after it. The new ACTIVE is the best of the
//     others: highest priority, then name. Reason "takeover", previous A.
//   - Epochs: a new assignment's epoch is max(stored+1, revision+1, any epoch already
//     announced). Epoch() announces it the moment it is decided, before the write is stored,
//     so a heartbeat answer never renews the lease of an ACTIVE being replaced; and it never
//     goes down: if the write fails and the fresh decision is to change nothing, the stored
//     assignment is written again under the announced epoch (an ACTIVE that saw it has
//     released and waits for an assignment at least that high). An epoch a director reports
//     as seen (RoleStatus.seen_epoch) counts as announced: a previous controller may have
//     announced it and stopped before storing it.
//   - Writes: one in flight at a time. Written with an error: a fresh decision at the first
//     Tick S.Interval later (Next says when). Configured with stored roles that differ from
//     ours (another controller, or the operator write path, wrote them) are adopted, unless
//     their epoch is lower than ours (a stale read: epochs only grow in the store). Nil roles
//     in Configured mean "none stored": the machine keeps what it has and, with none, waits
//     for the write path's initial assignment (AfterGroupWrite).
//   - Planned failover (FailoverRequested): write {active:"", handover_to:D, previous:A,
//     reason "failover", epoch e1}; once it is stored, wait until A reports epoch>=e1 and
//     holding=false, or A is lost and the takeover rule above holds for it; then write
//     {active:D, previous:A, epoch e2} and reply FailoverResponse{roles, previous A,
//     released_after_ms (from the decision to A's release; S.Fence if A never answered)}. If D
//     is no longer connected when A has released, the best connected director is made ACTIVE
//     instead (the group must not stay without one) and the reply carries ErrNotConnected. The
//     same steps finish a handover found in the store (controller restart) without a reply.
//   - Preemption (S.Preempt): when the ACTIVE is not lost, a director of higher priority
//     that has been connected for 3 x S.DeadAfter without a break, has reported the stored
//     epoch and reports the ACTIVE reachable gets a handover, reason "preempt" (best first).
//   - A handover whose previous ACTIVE is no longer a director of the group (the write path
//     stores one when the ACTIVE is removed, AfterGroupWrite) is finished once that director
//     reported holding=false after the handover was first seen, or is lost and a fence time
//     has passed since it was last heard, or S.Fence + S.DeadAfter have passed since the
//     handover was first seen (removed, nobody answers its heartbeats: the hub does not
//     answer a director in no group), whichever comes first. The manager keeps feeding a
//     removed director's events to its former group's machine for this.
//   - Groups with one director never change roles (nobody to take over). An ACTIVE that is not a
//     director of the group, or an assignment naming nobody, is the write path's to repair
//     (AfterGroupWrite); the machine leaves it alone.
package roles

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/failover"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Errors of a FailoverRequested, for the RPC layer to map to status codes.
var (
	// ErrUnknownGroup: the machine has no group (never configured, or deleted). NotFound.
	ErrUnknownGroup = errors.New("no such director group")
	// ErrUnknownDirector: the target is not a director of the group. InvalidArgument.
	ErrUnknownDirector = errors.New("not a director of the group")
	// ErrSingleDirector: the group has one director, nobody to fail over to. FailedPrecondition.
	ErrSingleDirector = errors.New("the group has a single director")
	// ErrAlreadyActive: the target is the ACTIVE already. FailedPrecondition.
	ErrAlreadyActive = errors.New("already ACTIVE")
	// ErrNotConnected: the target's agent is not connected to the controller (or was lost
	// during the handover). Unavailable.
	ErrNotConnected = errors.New("director not connected")
	// ErrNoCandidate: no target named and no other director connected. Unavailable.
	ErrNoCandidate = errors.New("no connected director to fail over to")
	// ErrHandoverRunning: a planned handover of the group is already under way. Aborted.
	ErrHandoverRunning = errors.New("a handover is already running")
	// ErrBusy: another assignment (a takeover, say) is being written; try again. Unavailable.
	ErrBusy = errors.New("an assignment is being written")
	// ErrNotReleased: the old ACTIVE stayed connected but did not report its release within
	// HandoverTimeout: it was made ACTIVE again (the group never stays without one). Aborted.
	ErrNotReleased = errors.New("the ACTIVE did not release its addresses in time")
	// ErrSuperseded: another assignment replaced the handover before it finished. Aborted.
	ErrSuperseded = errors.New("the handover was replaced by another assignment")
)

// Event is one input to a group's machine.
type Event interface{ isEvent() }

// Configured: the group's definition or stored assignment changed (or the machine starts).
// Revision is the store revision they were read at: new epochs are above it. Group nil: the
// group was deleted. Roles nil: none stored.
type Configured struct {
	Group    *lvsctlv1.DirectorGroup
	Roles    *lvsctlv1.GroupRoles
	Revision int64
}

// Heard: a heartbeat (or any message) arrived from a director's agent on its stream.
type Heard struct{ Director string }

// Disconnected: a director's stream ended.
type Disconnected struct{ Director string }

// Reported: a director's agent sent its RoleStatus (it counts as Heard too).
type Reported struct {
	Director string
	Status   *lvsctlv1.RoleStatus
}

// FailoverRequested: an operator asked to move the ACTIVE role (To empty: the best STANDBY).
// ID names the request in the Reply that answers it.
type FailoverRequested struct {
	ID uint64
	To string
}

// Written: the driver's write of an assignment finished (Err nil: stored). Roles is the
// assignment of the Write it answers.
type Written struct {
	Roles *lvsctlv1.GroupRoles
	Err   error
}

// Tick: time passed.
type Tick struct{}

func (Configured) isEvent()        {}
func (Heard) isEvent()             {}
func (Disconnected) isEvent()      {}
func (Reported) isEvent()          {}
func (FailoverRequested) isEvent() {}
func (Written) isEvent()           {}
func (Tick) isEvent()              {}

// Reply answers a FailoverRequested. Resp is set once an assignment naming an ACTIVE ended
// the handover (also with ErrNotConnected or ErrSuperseded: what the group ended up with).
type Reply struct {
	ID   uint64
	Resp *lvsctlv1.FailoverResponse
	Err  error
}

// Actions are what the driver must do after a Step.
type Actions struct {
	// Write is an assignment to store (compare-and-swap on the stored one); the driver
	// answers with Written. Nil: nothing to write.
	Write *lvsctlv1.GroupRoles
	// Replies answer operator requests.
	Replies []Reply
}

// peer is what the controller knows of one director's agent.
type peer struct {
	connected bool
	heard     time.Time // last message; zero: none since the machine started
	since     time.Time // start of the current unbroken run of messages
	report    *lvsctlv1.RoleStatus
	reportAt  time.Time
	// released is the highest epoch at which the director reported holding=false since it
	// last reported holding (a fact that outlives its stream: it obeys that epoch).
	released uint64
}

// pendingFailover is the operator's handover being carried out.
type pendingFailover struct {
	id       uint64
	to       string
	previous string
	at       time.Time
	epoch    uint64 // e1
}

// Machine is one group's role logic. Not safe for concurrent use: the driver serialises
// Steps and reads.
type Machine struct {
	group    string
	g        *lvsctlv1.DirectorGroup
	set      failover.Settings
	stored   *lvsctlv1.GroupRoles
	rev      int64
	started  time.Time
	now      time.Time
	dirs     map[string]*peer
	pending  *lvsctlv1.GroupRoles
	promised uint64
	retryAt  time.Time
	req      *pendingFailover
	// releasedAfter is how long the old ACTIVE of the handover being finished took.
	releasedAfter time.Duration
	// handoverSince is when the machine first saw the stored handover of handoverEpoch.
	handoverEpoch uint64
	handoverSince time.Time
	// abandoned: the handover being answered gave the role back to a silent old ACTIVE.
	abandoned bool
	blocked   string
}

// New returns the machine of a group.
func New(group string) *Machine {
	return &Machine{group: group, dirs: map[string]*peer{}, set: failover.Of(nil)}
}

// Step feeds one event at time now.
func (m *Machine) Step(now time.Time, ev Event) Actions {
	if m.started.IsZero() {
		m.started = now
	}
	m.now = now
	var acts Actions
	switch e := ev.(type) {
	case Configured:
		m.configure(e, &acts)
	case Heard:
		m.hear(now, e.Director)
	case Disconnected:
		if p := m.dirs[e.Director]; p != nil {
			p.connected, p.report = false, nil
		}
	case Reported:
		if g := e.Status.GetGroup(); g != "" && g != m.group {
			break
		}
		p := m.hear(now, e.Director)
		p.report, p.reportAt = e.Status, now
		// An epoch announced in heartbeat answers but never stored (a controller restarted,
		// or its write failed, in between): the director released for it and waits for an
		// assignment at least that high, so it counts as announced here too.
		m.promised = max(m.promised, e.Status.GetSeenEpoch())
		if e.Status.GetHolding() {
			p.released = 0
		} else {
			p.released = max(p.released, e.Status.GetEpoch())
		}
	case FailoverRequested:
		m.requested(now, e, &acts)
	case Written:
		m.written(now, e, &acts)
	case Tick:
	}
	m.decide(now, &acts)
	return acts
}

// Next is when the driver must Step a Tick at the latest (zero: nothing pending).
func (m *Machine) Next() time.Time {
	var ts []time.Time
	if m.g != nil {
		for _, d := range m.g.GetDirectors() {
			p := m.dirs[d.GetName()]
			switch {
			case p == nil || p.heard.IsZero():
				ts = append(ts, m.started.Add(m.set.DeadAfter))
			case m.alive(p, m.now):
				ts = append(ts, p.heard.Add(m.set.DeadAfter))
				if m.set.Preempt {
					ts = append(ts, p.since.Add(3*m.set.DeadAfter))
				}
			}
		}
	}
	ts = append(ts, m.retryAt)
	if m.stored.GetActive() == "" && m.handoverEpoch == m.stored.GetEpoch() && !m.handoverSince.IsZero() {
		ts = append(ts, m.handoverSince.Add(m.handoverTimeout()))
		if old := m.stored.GetPrevious(); old != "" && !member(m.g, old) {
			// The times removedHolds changes its answer at.
			ts = append(ts, m.handoverSince.Add(m.set.Fence+m.set.DeadAfter), m.started.Add(m.set.DeadAfter))
			if p := m.dirs[old]; p != nil && !p.heard.IsZero() {
				ts = append(ts, p.heard.Add(m.set.DeadAfter), p.heard.Add(m.set.Fence))
			}
		}
	}
	var next time.Time
	for _, t := range ts {
		if t.After(m.now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	return next
}

// Epoch is the group's epoch as the controller sees it now, an assignment being written
// included: what heartbeat answers carry, so that an ACTIVE about to be replaced stops
// renewing its lease before the new assignment is even stored. It never goes down.
func (m *Machine) Epoch() uint64 { return max(m.stored.GetEpoch(), m.promised) }

// Roles is the stored assignment as the machine knows it (nil: none). Do not modify it.
func (m *Machine) Roles() *lvsctlv1.GroupRoles { return m.stored }

// Blocked says why the ACTIVE's loss has not (yet) led to a takeover, or what a handover waits
// for, as of the last Step ("" when nothing waits): for status and logs.
func (m *Machine) Blocked() string { return m.blocked }

func (m *Machine) configure(e Configured, acts *Actions) {
	m.rev = max(m.rev, e.Revision)
	m.g = e.Group
	if m.g == nil {
		if m.req != nil {
			acts.Replies = append(acts.Replies, Reply{ID: m.req.id, Err: fmt.Errorf("%w: %s was deleted", ErrUnknownGroup, m.group)})
			m.req = nil
		}
		return
	}
	m.set = failover.Of(m.g)
	r := e.Roles
	if r == nil || proto.Equal(r, m.stored) || r.GetEpoch() < m.stored.GetEpoch() {
		return
	}
	if m.pending != nil && proto.Equal(r, m.pending) {
		// Our write, seen in the store before its Written.
		m.pending = nil
	}
	m.stored = proto.CloneOf(r)
	m.afterStored(acts)
}

func (m *Machine) hear(now time.Time, name string) *peer {
	p := m.dirs[name]
	if p == nil {
		p = &peer{}
		m.dirs[name] = p
	}
	if !m.alive(p, now) {
		p.since = now
	}
	p.connected, p.heard = true, now
	return p
}

func (m *Machine) alive(p *peer, now time.Time) bool {
	return p != nil && p.connected && now.Sub(p.heard) < m.set.DeadAfter
}

// lost reports whether the controller has lost a director, and when it last heard it.
func (m *Machine) lost(name string, now time.Time) (bool, time.Time) {
	p := m.dirs[name]
	if p == nil || p.heard.IsZero() {
		return now.Sub(m.started) >= m.set.DeadAfter, m.started
	}
	return !m.alive(p, now), p.heard
}

// best is the best connected director of the group other than the excluded one ("" if none).
func (m *Machine) best(now time.Time, exclude string) string {
	ds := slices.Clone(m.g.GetDirectors())
	slices.SortFunc(ds, byPriority)
	for _, d := range ds {
		if d.GetName() != exclude && m.alive(m.dirs[d.GetName()], now) {
			return d.GetName()
		}
	}
	return ""
}

// takeoverCheck applies the takeover rule to director a. ok: a is lost and every other
// director agrees; then cand is the director to promote, and fence when a's lease has surely
// run out. Otherwise why says what blocks it ("" when a is not lost).
func (m *Machine) takeoverCheck(a string, now time.Time) (cand string, fence time.Time, ok bool, why string) {
	isLost, last := m.lost(a, now)
	if !isLost {
		return "", time.Time{}, false, ""
	}
	var others []*lvsctlv1.Director
	for _, d := range m.g.GetDirectors() {
		if d.GetName() != a {
			others = append(others, d)
		}
	}
	if len(others) == 0 {
		return "", time.Time{}, false, fmt.Sprintf("%s lost; it is the group's only director", a)
	}
	slices.SortFunc(others, byPriority)
	for _, d := range others {
		n := d.GetName()
		p := m.dirs[n]
		if !m.alive(p, now) {
			return "", time.Time{}, false, fmt.Sprintf("%s lost; %s is not connected: it may still be renewing %s's lease", a, n, a)
		}
		var ps *lvsctlv1.PeerStatus
		for _, x := range p.report.GetPeers() {
			if x.GetDirector() == a {
				ps = x
			}
		}
		switch {
		case ps == nil:
			return "", time.Time{}, false, fmt.Sprintf("%s lost; %s has not reported on it", a, n)
		case ps.GetReachable():
			return "", time.Time{}, false, fmt.Sprintf("%s lost; %s still hears it", a, n)
		case ps.GetHostReachable():
			return "", time.Time{}, false, fmt.Sprintf("%s lost; its host answers %s's probes (an agent down on a live host still holds the addresses)", a, n)
		case !ps.GetProbesAnswered():
			return "", time.Time{}, false, fmt.Sprintf("%s lost; its host never answered %s's probes (allow ICMP echo between directors): "+
				"a dead agent on a live host, which still holds the addresses, cannot be told from a dead director", a, n)
		}
		tx := p.reportAt
		if ago := ps.GetHeardAgoMs(); ago >= 0 {
			tx = tx.Add(-time.Duration(ago) * time.Millisecond)
		}
		if tx.After(last) {
			last = tx
		}
	}
	return others[0].GetName(), last.Add(m.set.Fence), true, ""
}

// fenceUntil is GroupRoles.fence_until_unix_ms for a fence ending at t: 0 when it has ended,
// rounded up to the millisecond (never earlier than t).
func fenceUntil(t, now time.Time) int64 {
	if !t.After(now) {
		return 0
	}
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

func (m *Machine) decide(now time.Time, acts *Actions) {
	m.blocked = ""
	s := m.stored
	if m.g == nil || s == nil || m.pending != nil || now.Before(m.retryAt) {
		return
	}
	m.retryAt = time.Time{}
	var next *lvsctlv1.GroupRoles
	switch {
	case s.GetActive() == "" && member(m.g, s.GetHandoverTo()):
		next = m.handover(now, s)
	case member(m.g, s.GetActive()):
		cand, fence, ok, why := m.takeoverCheck(s.GetActive(), now)
		m.blocked = why
		switch {
		case ok:
			next = &lvsctlv1.GroupRoles{Active: cand, Reason: ReasonTakeover, Previous: s.GetActive(), FenceUntilUnixMs: fenceUntil(fence, now)}
		case why == "":
			next = m.preempt(now, s)
		}
	}
	if next == nil && m.promised > s.GetEpoch() {
		next = proto.CloneOf(s)
	}
	if next == nil {
		return
	}
	next.Group = m.group
	next.Epoch = max(s.GetEpoch()+1, uint64(m.rev)+1, m.promised)
	m.pending, m.promised = next, next.Epoch
	acts.Write = next
}

// handoverTimeout is how long a connected old ACTIVE may take to report its release: ten
// fence times, at least 3 s (an agent answers within a heartbeat or two).
func (m *Machine) handoverTimeout() time.Duration { return max(10*m.set.Fence, 3*time.Second) }

// handover finishes a stored handover once the old ACTIVE has released.
func (m *Machine) handover(now time.Time, s *lvsctlv1.GroupRoles) *lvsctlv1.GroupRoles {
	old := s.GetPrevious()
	var start, fence time.Time
	if m.req != nil {
		start = m.req.at
	}
	if m.handoverEpoch != s.GetEpoch() {
		m.handoverEpoch, m.handoverSince = s.GetEpoch(), now
	}
	switch {
	case old == "":
		m.releasedAfter = 0
	case !member(m.g, old):
		// A removed ACTIVE: it may hold the addresses until its lease ends.
		if why := m.removedHolds(old, s, now); why != "" {
			m.blocked = fmt.Sprintf("handover to %s waits for %s, removed from the group, to release (epoch %d): %s",
				s.GetHandoverTo(), old, s.GetEpoch(), why)
			return nil
		}
		m.releasedAfter = 0
	case m.dirs[old] != nil && m.dirs[old].released >= s.GetEpoch():
		m.releasedAfter = 0
		if !start.IsZero() {
			m.releasedAfter = m.dirs[old].reportAt.Sub(start)
		}
	default:
		var ok bool
		var why string
		_, fence, ok, why = m.takeoverCheck(old, now)
		if !ok && m.alive(m.dirs[old], now) && !now.Before(m.handoverSince.Add(m.handoverTimeout())) {
			// Connected, yet silent about its release: a broken agent. Give the role back
			// rather than leave the group without an ACTIVE.
			m.blocked = fmt.Sprintf("handover to %s abandoned: %s did not release within %v", s.GetHandoverTo(), old, m.handoverTimeout())
			m.abandoned = true
			return &lvsctlv1.GroupRoles{Active: old, Reason: s.GetReason(), Previous: old}
		}
		if !ok {
			m.blocked = fmt.Sprintf("handover to %s waits for %s to release (epoch %d)", s.GetHandoverTo(), old, s.GetEpoch())
			if why != "" {
				m.blocked += "; " + why
			}
			return nil
		}
		m.releasedAfter = m.set.Fence
	}
	to := s.GetHandoverTo()
	if !m.alive(m.dirs[to], now) {
		if b := m.best(now, ""); b != "" {
			to = b
		}
	}
	return &lvsctlv1.GroupRoles{Active: to, Reason: s.GetReason(), Previous: old, FenceUntilUnixMs: fenceUntil(fence, now)}
}

// removedHolds says why a removed director, the previous ACTIVE of the stored handover s, may
// still hold the group's addresses ("" when it surely does not). It has released once it
// reported holding=false after the handover was stored; or it is lost to the controller and
// a fence time has passed since it was last heard; or Fence + DeadAfter have passed since
// the handover was first seen: removed, it gets answers from nobody (the hub does not answer
// a director in no group, its former peers no longer count it), so its lease ran out by then.
func (m *Machine) removedHolds(old string, s *lvsctlv1.GroupRoles, now time.Time) string {
	p := m.dirs[old]
	if p != nil && (p.released >= s.GetEpoch() ||
		(p.report != nil && !p.report.GetHolding() && !p.reportAt.Before(m.handoverSince))) {
		return ""
	}
	if isLost, last := m.lost(old, now); isLost && !now.Before(last.Add(m.set.Fence)) {
		return ""
	}
	if !now.Before(m.handoverSince.Add(m.set.Fence + m.set.DeadAfter)) {
		return ""
	}
	return "it has not reported its release and is not lost"
}

// preempt starts a handover to a healthy director of higher priority than the ACTIVE.
func (m *Machine) preempt(now time.Time, s *lvsctlv1.GroupRoles) *lvsctlv1.GroupRoles {
	if !m.set.Preempt {
		return nil
	}
	a := s.GetActive()
	ds := slices.Clone(m.g.GetDirectors())
	slices.SortFunc(ds, byPriority)
	for _, d := range ds {
		if d.GetName() == a || d.GetPriority() <= director(m.g, a).GetPriority() {
			break
		}
		p := m.dirs[d.GetName()]
		if !m.alive(p, now) || now.Sub(p.since) < 3*m.set.DeadAfter || p.report.GetEpoch() != s.GetEpoch() {
			continue
		}
		for _, x := range p.report.GetPeers() {
			if x.GetDirector() == a && x.GetReachable() {
				return &lvsctlv1.GroupRoles{HandoverTo: d.GetName(), Reason: ReasonPreempt, Previous: a}
			}
		}
	}
	return nil
}

func (m *Machine) requested(now time.Time, e FailoverRequested, acts *Actions) {
	fail := func(err error) { acts.Replies = append(acts.Replies, Reply{ID: e.ID, Err: err}) }
	s := m.stored
	switch {
	case m.g == nil || s == nil:
		fail(fmt.Errorf("%w: %s", ErrUnknownGroup, m.group))
		return
	case len(m.g.GetDirectors()) < 2:
		fail(fmt.Errorf("%w: %s", ErrSingleDirector, m.group))
		return
	case m.req != nil || (s.GetActive() == "" && s.GetHandoverTo() != ""):
		fail(fmt.Errorf("%w: group %s, to %s", ErrHandoverRunning, m.group, s.GetHandoverTo()))
		return
	case m.pending != nil:
		fail(fmt.Errorf("%w: group %s", ErrBusy, m.group))
		return
	}
	to := e.To
	switch {
	case to == "":
		if to = m.best(now, s.GetActive()); to == "" {
			fail(fmt.Errorf("%w: group %s", ErrNoCandidate, m.group))
			return
		}
	case !member(m.g, to):
		fail(fmt.Errorf("%w: %s is not in group %s", ErrUnknownDirector, to, m.group))
		return
	case to == s.GetActive():
		fail(fmt.Errorf("%w: %s in group %s", ErrAlreadyActive, to, m.group))
		return
	case !m.alive(m.dirs[to], now):
		fail(fmt.Errorf("%w: %s", ErrNotConnected, to))
		return
	}
	w := &lvsctlv1.GroupRoles{Group: m.group, HandoverTo: to, Reason: ReasonFailover, Previous: s.GetActive(),
		Epoch: max(s.GetEpoch()+1, uint64(m.rev)+1, m.promised)}
	m.pending, m.promised, m.retryAt = w, w.Epoch, time.Time{}
	m.req = &pendingFailover{id: e.ID, to: to, previous: s.GetActive(), at: now, epoch: w.Epoch}
	acts.Write = w
}

func (m *Machine) written(now time.Time, e Written, acts *Actions) {
	if m.pending == nil || !proto.Equal(e.Roles, m.pending) {
		return // answered already (the store showed it first), or not ours
	}
	w := m.pending
	m.pending = nil
	if e.Err != nil {
		m.retryAt = now.Add(m.set.Interval)
		if m.req != nil && m.req.epoch == w.GetEpoch() {
			acts.Replies = append(acts.Replies, Reply{ID: m.req.id, Err: fmt.Errorf("storing the handover of %s: %w", m.group, e.Err)})
			m.req = nil
		}
		return
	}
	if w.GetEpoch() >= m.stored.GetEpoch() {
		m.stored = w
	}
	m.afterStored(acts)
}

// afterStored answers the operator's request once the stored assignment ends its handover.
func (m *Machine) afterStored(acts *Actions) {
	r, s := m.req, m.stored
	if r == nil || s.GetEpoch() < r.epoch {
		return
	}
	if s.GetActive() == "" && s.GetHandoverTo() == r.to {
		return // still under way (the handover stored, or written again under a higher epoch)
	}
	m.req = nil
	defer func() { m.abandoned = false }()
	rep := Reply{ID: r.id, Resp: &lvsctlv1.FailoverResponse{Roles: proto.CloneOf(s), Previous: r.previous,
		ReleasedAfterMs: m.releasedAfter.Milliseconds()}}
	switch {
	case s.GetActive() == "" || s.GetReason() != ReasonFailover || s.GetPrevious() != r.previous:
		rep.Resp = nil
		rep.Err = fmt.Errorf("%w: group %s is now %q at epoch %d", ErrSuperseded, m.group, s.GetActive(), s.GetEpoch())
	case m.abandoned:
		rep.Err = fmt.Errorf("%w: %s did not report its release within %v; it stays ACTIVE", ErrNotReleased, r.previous, m.handoverTimeout())
	case s.GetActive() != r.to:
		rep.Err = fmt.Errorf("%w: %s was lost during the handover; %s was made ACTIVE instead", ErrNotConnected, r.to, s.GetActive())
	}
	acts.Replies = append(acts.Replies, rep)
}

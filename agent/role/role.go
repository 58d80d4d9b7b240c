// Package role is the agent's failover logic: whether this director may hold its group's
// addresses (VIPs and gateway) now, from its assignment, the answers to its heartbeats and
// what its peers say of themselves. It is a pure state machine: events in, actions out, the
// time passed in with each event; no goroutines, no sockets, no clock of its own.
//
// The rule (docs/design.md section 5): an ACTIVE holds its addresses only while it has a
// lease, renewed by an answer to one of its own heartbeats (an echo of its sent value, from
// the controller or from any peer) that carries no epoch higher than its own; the lease runs
// Fence from when the answered heartbeat was sent. A director that hears a higher epoch of its
// group releases at once and waits for the assignment that goes with it.
//
// Additions to the first skeleton (all compatible):
//   - Actions.Conflict: a peer says it holds the addresses at our epoch while we are ACTIVE.
//   - The heartbeat to the controller also carries Echo (the controller's latest sent value
//     received) and Epoch (this director's epoch).
//
// Driver contract: Step a Tick at Next() (or later); Status(now) reports the flags of the last
// Step (holding is what the last Actions.Hold said), with heard_ago_ms computed at now.
package role

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/failover"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Event is one input to the machine.
type Event interface{ isEvent() }

// Started: the agent started. Held: the kernel holds the group's addresses under a saved
// ACTIVE role (an agent restart), which the machine keeps for one Fence while it waits for
// answers, so that an agent restart is not an outage.
type Started struct{ Held bool }

// Assigned: the role the daemon obeys now, with the group it belongs to (its directors,
// addresses and Failover settings). The daemon has already refused stale epochs. A nil Group
// means the director is in no group: no heartbeats, no peers, nothing held. NotBefore (zero:
// none) is when a takeover's fence ends, from GroupRoles.fence_until_unix_ms counted from the
// message's arrival: an ACTIVE holds nothing before it. A later NotBefore for the same epoch
// and role extends the wait; it never shortens.
type Assigned struct {
	Group     *lvsctlv1.DirectorGroup
	Role      *lvsctlv1.RoleAssignment
	NotBefore time.Time
}

// ControllerHeartbeat: the controller's heartbeat arrived on the stream.
type ControllerHeartbeat struct{ HB *lvsctlv1.Heartbeat }

// ControllerLost: the stream to the controller is down.
type ControllerLost struct{}

// PeerHeartbeat: a peer's heartbeat arrived over UDP, from address From. It counts only if
// it names this group and a known peer whose address is From.
type PeerHeartbeat struct {
	From netip.Addr
	HB   *lvsctlv1.PeerHeartbeat
}

// ProbeAnswered: a peer's host answered a probe (ICMP echo): its kernel is up even if its
// agent is not.
type ProbeAnswered struct{ Peer string }

// Tick: time passed (the driver calls Step with Tick at Next()).
type Tick struct{}

func (Started) isEvent()             {}
func (Assigned) isEvent()            {}
func (ControllerHeartbeat) isEvent() {}
func (ControllerLost) isEvent()      {}
func (PeerHeartbeat) isEvent()       {}
func (ProbeAnswered) isEvent()       {}
func (Tick) isEvent()                {}

// Outgoing is one heartbeat to send to a peer, or one probe.
type Outgoing struct {
	Peer string
	To   netip.AddrPort
	HB   *lvsctlv1.PeerHeartbeat // nil for a probe
}

// Actions are what the driver must do after a Step, in this order.
type Actions struct {
	// Hold is whether the group's addresses must be held now; HoldChanged: it differs from
	// what the previous Step said (the driver reconciles the addresses then).
	Hold, HoldChanged bool
	// Announce: the addresses were just taken: send gratuitous ARP / unsolicited NA.
	Announce bool
	// Controller is a heartbeat to send on the stream (nil: none now).
	Controller *lvsctlv1.Heartbeat
	// Peers are heartbeats to send now; Probes are peers to probe now.
	Peers, Probes []Outgoing
	// Status is set when what the controller must know changed (the driver adds the sync
	// daemons' state and sends it).
	Status *lvsctlv1.RoleStatus
	// Conflict names a peer that just started to claim the addresses at this director's own
	// epoch while this director is assigned ACTIVE (holding them or not). Only one ACTIVE exists per epoch, so this is a
	// bug elsewhere: the driver logs it; the machine does not release on it (releasing both
	// would be an outage, and the controller sees both claims in the status).
	Conflict string
}

// maxSent bounds the remembered sent values whatever the settings: a lease needs only those
// sent within the last Fence, Fence/Interval of them (3 with the defaults).
const maxSent = 1024

// sentAt is one heartbeat value this process sent, and when.
type sentAt struct {
	value int64
	at    time.Time
}

// peer is what this director knows of another director of its group.
type peer struct {
	name string
	addr netip.AddrPort
	// heard and probed are when its last heartbeat and probe answer arrived (zero: never).
	heard, probed time.Time
	// echo is the latest sent value received from it, which our heartbeats echo.
	echo int64
	// What it last said of itself.
	epoch   uint64
	role    lvsctlv1.Role
	holding bool
	// reachable and hostReachable as of the last Step; conflict: it was reported.
	reachable, hostReachable, conflict bool
	// replyDue: a periodic heartbeat of the peer awaits our immediate reply.
	replyDue bool
}

// Machine is one director's role logic.
type Machine struct {
	director string

	inGroup  bool
	group    string
	settings failover.Settings
	// others counts the other directors of the group, with or without a usable address: a
	// director alone in its group never fences, one whose peers cannot be reached does.
	others int
	peers  map[string]*peer

	role  lvsctlv1.Role
	epoch uint64
	// seenEpoch is the highest epoch of the group heard from the controller or a peer; above
	// the assigned epoch, it forbids holding. seenFrom names who said it.
	seenEpoch uint64
	seenFrom  string

	// leaseUntil is when the lease from answered heartbeats ends; heldAtStart is when the
	// agent started with the addresses held (zero: it did not), which grants one lease.
	leaseUntil, heldAtStart time.Time
	// notBefore is when the fence of the takeover that made this director ACTIVE ends.
	notBefore time.Time
	// now is the time of the last Step.
	now      time.Time
	sent     []sentAt
	lastSent int64
	lastBeat time.Time
	beaten   bool
	// controllerEcho is the controller's latest sent value, echoed in our heartbeats.
	controllerEcho int64

	hold   bool
	fenced string
	// reported is the last status emitted, without heard_ago_ms, to detect changes.
	reported *lvsctlv1.RoleStatus
}

// New returns the machine of a director.
func New(director string) *Machine {
	m := &Machine{director: director, settings: failover.Of(nil), peers: map[string]*peer{}}
	m.reported = m.key(time.Time{})
	return m
}

// Step feeds one event at time now and returns what to do.
func (m *Machine) Step(now time.Time, ev Event) Actions {
	m.now = now
	switch ev := ev.(type) {
	case Started:
		if ev.Held {
			m.heldAtStart = now
		}
	case Assigned:
		m.assign(ev)
	case ControllerHeartbeat:
		m.controllerHeartbeat(now, ev.HB)
	case ControllerLost:
		// The lease simply stops being renewed by the controller; peers may keep it.
		m.controllerEcho = 0
	case PeerHeartbeat:
		m.peerHeartbeat(now, ev)
	case ProbeAnswered:
		if p := m.peers[ev.Peer]; p != nil {
			p.probed = now
		}
	case Tick:
	}
	return m.advance(now)
}

func (m *Machine) assign(ev Assigned) {
	if ev.Role.GetEpoch() != m.epoch || ev.Role.GetRole() != m.role {
		// Tell the peers at once: an old ACTIVE releases on the first heartbeat that carries
		// the new epoch, and a new one waits for that release when it still hears it.
		m.beaten = false
		m.notBefore = ev.NotBefore
	} else if ev.NotBefore.After(m.notBefore) {
		m.notBefore = ev.NotBefore
	}
	m.role = ev.Role.GetRole()
	m.epoch = ev.Role.GetEpoch()
	g := ev.Group
	if g.GetName() == "" {
		m.inGroup, m.group, m.others = false, "", 0
		m.peers = map[string]*peer{}
		m.seenEpoch, m.seenFrom = 0, ""
		m.settings = failover.Of(nil)
		return
	}
	if !m.inGroup || g.GetName() != m.group {
		// Epochs seen and peers known belong to the group left.
		m.peers = map[string]*peer{}
		m.seenEpoch, m.seenFrom = 0, ""
	}
	m.inGroup, m.group = true, g.GetName()
	m.settings = failover.Of(g)
	m.others = 0
	keep := map[string]*peer{}
	for _, d := range g.GetDirectors() {
		if d.GetName() == m.director {
			continue
		}
		m.others++
		a, err := netip.ParseAddr(d.GetAddress())
		if err != nil {
			// Validation requires an address in a group of several; without one the
			// director cannot be heartbeated or probed, but still counts in others.
			continue
		}
		to := netip.AddrPortFrom(a.Unmap(), m.settings.Port)
		p := m.peers[d.GetName()]
		if p == nil || p.addr.Addr() != to.Addr() {
			// A new address is a new host: nothing heard from the old one counts for it.
			p = &peer{name: d.GetName()}
		}
		p.addr = to
		keep[d.GetName()] = p
	}
	m.peers = keep
}

func (m *Machine) controllerHeartbeat(now time.Time, hb *lvsctlv1.Heartbeat) {
	m.controllerEcho = hb.GetSent()
	if !m.inGroup {
		return
	}
	m.answer(now, hb.GetEcho(), hb.GetEpoch(), "the controller")
}

func (m *Machine) peerHeartbeat(now time.Time, ev PeerHeartbeat) {
	hb := ev.HB
	if !m.inGroup || hb.GetGroup() != m.group {
		return
	}
	p := m.peers[hb.GetDirector()]
	if p == nil || ev.From.Unmap() != p.addr.Addr() {
		return
	}
	p.heard = now
	p.echo = hb.GetSent()
	p.replyDue = p.replyDue || !hb.GetReply()
	p.epoch, p.role, p.holding = hb.GetEpoch(), hb.GetRole(), hb.GetHolding()
	m.answer(now, hb.GetEcho(), hb.GetEpoch(), p.name)
}

// answer handles an answer to our heartbeats: a higher epoch fences, an echo of a value
// this process sent within the last Fence renews the lease. An answer with a higher epoch
// renews too: holding needs our epoch to be at least every epoch seen, so the renewal is
// harmless to an ACTIVE being replaced, and a STANDBY being promoted (whose answers carry
// its new epoch before the assignment arrives) holds as soon as the assignment does, not one
// heartbeat later.
func (m *Machine) answer(now time.Time, echo int64, epoch uint64, from string) {
	if epoch > m.epoch && epoch > m.seenEpoch {
		m.seenEpoch, m.seenFrom = epoch, from
	}
	if echo == 0 {
		return
	}
	m.prune(now)
	i, ok := slices.BinarySearchFunc(m.sent, echo, func(s sentAt, v int64) int { return cmp.Compare(s.value, v) })
	if !ok {
		return
	}
	if end := m.sent[i].at.Add(m.settings.Lease()); end.After(m.leaseUntil) {
		m.leaseUntil = end
	}
}

// prune forgets the sent values whose echo could no longer extend the lease.
func (m *Machine) prune(now time.Time) {
	i := 0
	for i < len(m.sent) && !m.sent[i].at.Add(m.settings.Lease()).After(now) {
		i++
	}
	m.sent = m.sent[i:]
}

// lease is when the current lease ends.
func (m *Machine) lease() time.Time {
	l := m.leaseUntil
	if !m.heldAtStart.IsZero() {
		if s := m.heldAtStart.Add(m.settings.Lease()); s.After(l) {
			l = s
		}
	}
	return l
}

// decide returns whether the addresses may be held at now, and if an assigned ACTIVE may
// not, why.
func (m *Machine) decide(now time.Time) (bool, string) {
	if !m.inGroup || m.role != lvsctlv1.Role_ROLE_ACTIVE {
		return false, ""
	}
	if m.seenEpoch > m.epoch {
		return false, fmt.Sprintf("epoch %d seen from %s", m.seenEpoch, m.seenFrom)
	}
	if m.others == 0 {
		return true, ""
	}
	if !m.hold {
		if why := m.fencing(now); why != "" {
			return false, why
		}
	}
	for _, name := range m.names() {
		// A new ACTIVE that still hears the old one holding (a report of it lost that was
		// already stale when the controller decided) waits for its release, which the
		// first heartbeat under our epoch causes: never two holders, even for a moment.
		// Only before taking: an ACTIVE already holding keeps its addresses when an old
		// one comes back claiming its old epoch (a restarted agent): that one releases on
		// our first heartbeat, and dropping ours too would only make an outage.
		if p := m.peers[name]; !m.hold && p.reachable && p.holding && p.epoch < m.epoch {
			return false, fmt.Sprintf("waiting for %s to release (it holds under epoch %d)", name, p.epoch)
		}
	}
	l := m.lease()
	if now.Before(l) {
		return true, ""
	}
	if l.IsZero() {
		return false, "no answer to heartbeats yet"
	}
	return false, fmt.Sprintf("no answer to heartbeats for %v", m.settings.Lease())
}

// fencing says why a new ACTIVE may not take the addresses yet because the one it replaces
// may still hold them ("" when it may): the controller's fence for the takeover (NotBefore),
// and, as this director knows it without the controller, Fence after it last heard a peer
// that held them under a lower epoch and went silent (its own answers may have renewed that
// peer's lease until then). Both end no earlier than the lost ACTIVE's lease.
func (m *Machine) fencing(now time.Time) string {
	if now.Before(m.notBefore) {
		return fmt.Sprintf("waiting for the lost ACTIVE's fence time, %v more", m.notBefore.Sub(now).Round(time.Millisecond))
	}
	for _, name := range m.names() {
		p := m.peers[name]
		if end := p.heard.Add(m.settings.Fence); p.holding && p.epoch < m.epoch && !p.reachable && !p.heard.IsZero() && now.Before(end) {
			return fmt.Sprintf("waiting for %s's lease to run out, %v more (it was last heard holding under epoch %d)",
				name, end.Sub(now).Round(time.Millisecond), p.epoch)
		}
	}
	return ""
}

func (m *Machine) advance(now time.Time) Actions {
	var act Actions
	for _, p := range m.peers {
		p.reachable = !p.heard.IsZero() && now.Before(p.heard.Add(m.settings.DeadAfter))
		p.hostReachable = !p.probed.IsZero() && now.Before(p.probed.Add(m.settings.DeadAfter))
	}
	hold, fenced := m.decide(now)
	act.Hold = hold
	act.HoldChanged = hold != m.hold
	act.Announce = hold && !m.hold
	m.hold, m.fenced = hold, fenced

	for _, name := range m.names() {
		p := m.peers[name]
		c := m.role == lvsctlv1.Role_ROLE_ACTIVE && p.holding && p.epoch == m.epoch
		if c && !p.conflict && act.Conflict == "" {
			act.Conflict = name
		}
		p.conflict = c
	}

	if m.inGroup && (!m.beaten || !now.Before(m.lastBeat.Add(m.settings.Interval))) {
		m.beat(now, &act)
	} else if m.inGroup {
		m.reply(now, &act)
	}

	if k := m.key(now); !proto.Equal(k, m.reported) {
		m.reported = k
		act.Status = m.Status(now)
	}
	return act
}

// newSent returns a new sent value, remembered with its time so that its echo renews.
func (m *Machine) newSent(now time.Time) int64 {
	v := now.UnixNano()
	if v <= m.lastSent {
		// Values must be unique and increasing to be found again: the wall clock may step back.
		v = m.lastSent + 1
	}
	m.lastSent = v
	m.prune(now)
	m.sent = append(m.sent, sentAt{value: v, at: now})
	if len(m.sent) > maxSent {
		m.sent = m.sent[len(m.sent)-maxSent:]
	}
	return v
}

// reply answers the periodic heartbeats that arrived since the last Step at once, so that
// the sender's lease is renewed a round trip after it sent, not up to an interval later.
func (m *Machine) reply(now time.Time, act *Actions) {
	for _, name := range m.names() {
		p := m.peers[name]
		if !p.replyDue {
			continue
		}
		p.replyDue = false
		act.Peers = append(act.Peers, Outgoing{Peer: name, To: p.addr, HB: &lvsctlv1.PeerHeartbeat{
			Group: m.group, Director: m.director, Epoch: m.epoch, Role: m.role,
			Holding: m.hold, Sent: m.newSent(now), Echo: p.echo, Reply: true,
		}})
	}
}

// beat sends one round of heartbeats and probes, and remembers the sent value.
func (m *Machine) beat(now time.Time, act *Actions) {
	m.lastBeat, m.beaten = now, true
	v := m.newSent(now)
	for _, p := range m.peers {
		p.replyDue = false // this round answers them
	}
	act.Controller = &lvsctlv1.Heartbeat{Sent: v, Echo: m.controllerEcho, Epoch: m.epoch}
	for _, name := range m.names() {
		p := m.peers[name]
		act.Peers = append(act.Peers, Outgoing{Peer: name, To: p.addr, HB: &lvsctlv1.PeerHeartbeat{
			Group: m.group, Director: m.director, Epoch: m.epoch, Role: m.role,
			Holding: m.hold, Sent: v, Echo: p.echo,
		}})
		act.Probes = append(act.Probes, Outgoing{Peer: name, To: p.addr})
	}
}

func (m *Machine) names() []string {
	names := make([]string, 0, len(m.peers))
	for n := range m.peers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Next is when the driver must Step a Tick at the latest (zero: no deadline pending).
func (m *Machine) Next() time.Time {
	if !m.inGroup {
		return time.Time{}
	}
	next := m.lastBeat.Add(m.settings.Interval)
	earlier := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}
	if m.hold && m.others > 0 {
		earlier(m.lease())
	}
	if !m.hold && m.role == lvsctlv1.Role_ROLE_ACTIVE {
		// The ends of a takeover's fence (fencing).
		if m.notBefore.After(m.now) {
			earlier(m.notBefore)
		}
		for _, p := range m.peers {
			if end := p.heard.Add(m.settings.Fence); p.holding && p.epoch < m.epoch && !p.heard.IsZero() && end.After(m.now) {
				earlier(end)
			}
		}
	}
	for _, p := range m.peers {
		if p.reachable {
			earlier(p.heard.Add(m.settings.DeadAfter))
		}
		if p.hostReachable {
			earlier(p.probed.Add(m.settings.DeadAfter))
		}
	}
	return next
}

// key is the status without what changes on its own (heard_ago_ms): a change in it is one
// the controller decides on.
func (m *Machine) key(now time.Time) *lvsctlv1.RoleStatus {
	s := m.Status(now)
	for _, p := range s.Peers {
		p.HeardAgoMs = 0
	}
	return s
}

// Status is what the controller should know now.
func (m *Machine) Status(now time.Time) *lvsctlv1.RoleStatus {
	s := &lvsctlv1.RoleStatus{
		Group: m.group, Epoch: m.epoch, Role: m.role, Holding: m.hold, Fenced: m.fenced,
	}
	if m.seenEpoch > m.epoch {
		s.SeenEpoch = m.seenEpoch
	}
	for _, name := range m.names() {
		p := m.peers[name]
		ago := int64(-1)
		if !p.heard.IsZero() {
			ago = now.Sub(p.heard).Milliseconds()
		}
		s.Peers = append(s.Peers, &lvsctlv1.PeerStatus{
			Director: name, Reachable: p.reachable, HostReachable: p.hostReachable,
			HeardAgoMs: ago, Epoch: p.epoch, Role: p.role, Holding: p.holding,
			ProbesAnswered: !p.probed.IsZero(),
		})
	}
	return s
}

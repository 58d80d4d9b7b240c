package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/role"
	"github.com/lvsctl/lvsctl/failover"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// scriptedMachine stands for the role machine: it records the events it gets and answers
// each with what say returns (nothing when say is nil), keeping Hold as a machine does.
type scriptedMachine struct {
	say    func(ev role.Event) role.Actions
	events []string
	hold   bool
}

func (m *scriptedMachine) Step(_ time.Time, ev role.Event) role.Actions {
	m.events = append(m.events, describeRoleEvent(ev))
	a := role.Actions{Hold: m.hold}
	if m.say != nil {
		a = m.say(ev)
		a.HoldChanged = a.Hold != m.hold
		m.hold = a.Hold
	}
	return a
}

func (m *scriptedMachine) Next() time.Time { return time.Time{} }

func (m *scriptedMachine) Status(time.Time) *lvsctlv1.RoleStatus {
	return &lvsctlv1.RoleStatus{Holding: m.hold}
}

func describeRoleEvent(ev role.Event) string {
	switch ev := ev.(type) {
	case role.Started:
		return fmt.Sprintf("started held=%v", ev.Held)
	case role.Assigned:
		return fmt.Sprintf("assigned %s %d directors %s/%d", ev.Group.GetName(), len(ev.Group.GetDirectors()), ev.Role.GetRole(), ev.Role.GetEpoch())
	case role.PeerHeartbeat:
		return fmt.Sprintf("peer %s %s", ev.From, ev.HB.GetDirector())
	case role.ControllerHeartbeat:
		return fmt.Sprintf("controller sent=%d", ev.HB.GetSent())
	case role.ControllerLost:
		return "controller lost"
	case role.ProbeAnswered:
		return "probe " + ev.Peer
	case role.Tick:
		return "tick"
	}
	return fmt.Sprintf("%T", ev)
}

// describe is one line per action, with what a reviewer checks.
func describe(acts []action) []string {
	var out []string
	for _, a := range acts {
		switch a := a.(type) {
		case actPrepareAnnounce:
			out = append(out, "prepare announcements "+strings.Join(a.ifaces, ","))
			continue
		case actReconcile:
			path := "full"
			if a.delta != nil {
				path = "delta"
			}
			s := fmt.Sprintf("reconcile %s %s rev=%d role=%s", path, a.trigger, a.rev, a.role.GetRole())
			if a.refused != nil {
				s += " refused"
			}
			switch a.save {
			case saveSnapshot:
				s += fmt.Sprintf(" save=snapshot(%s)", a.assigned.GetRole())
			case saveDelta:
				s += fmt.Sprintf(" save=delta(%d)", a.savedDelta.GetRevision())
			}
			out = append(out, s)
		case actHolding:
			out = append(out, fmt.Sprintf("holding %v role=%s", a.hold, a.role.GetRole()))
		case actAnnounce:
			out = append(out, "announce")
		case actAckRefusal:
			out = append(out, "ack refusal")
		case actRequestSnapshot:
			out = append(out, "request snapshot")
		case actReport:
			out = append(out, "report")
		case actHeartbeat:
			out = append(out, fmt.Sprintf("heartbeat sent=%d", a.hb.GetSent()))
		case actPeers:
			out = append(out, fmt.Sprintf("peers %d", len(a.out)))
		case actProbe:
			out = append(out, fmt.Sprintf("probe %d", len(a.out)))
		case actRoleStatus:
			out = append(out, fmt.Sprintf("status holding=%v", a.status.GetHolding()))
		case actBind:
			out = append(out, fmt.Sprintf("bind %v", a.local))
		case actSave:
			out = append(out, fmt.Sprintf("save rev=%d", a.rev))
		case actSetTargets:
			out = append(out, fmt.Sprintf("set %d targets", len(a.targets)))
		default:
			out = append(out, fmt.Sprintf("%T", a))
		}
	}
	return out
}

func pairGroup(name string) *lvsctlv1.DirectorGroup {
	return &lvsctlv1.DirectorGroup{Name: name, VipInterface: "eth0",
		Gateway: &lvsctlv1.Gateway{Address: "10.1.0.1/24", Interface: "eth1"},
		Directors: []*lvsctlv1.Director{
			{Name: "dir-a", Priority: 100, Address: "192.0.2.1"},
			{Name: "dir-b", Priority: 50, Address: "192.0.2.2"},
		}}
}

func snapshotOf(rev int64, g *lvsctlv1.DirectorGroup, active string, epoch uint64, clusters ...*lvsctlv1.Cluster) evMessage {
	return evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{
		Revision: rev, State: &lvsctlv1.DesiredState{Group: g, Clusters: clusters},
		Roles: &lvsctlv1.GroupRoles{Group: g.GetName(), Active: active, Epoch: epoch}}}}}
}

func deltaOf(prev, rev int64, roles *lvsctlv1.GroupRoles, upserted ...*lvsctlv1.Cluster) evMessage {
	return evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
		PrevRevision: prev, Revision: rev, Upserted: upserted, Roles: roles}}}}
}

// holdWhileActive is a machine that holds whenever assigned ACTIVE (a group of one).
func holdWhileActive() func(role.Event) role.Actions {
	hold := false
	return func(ev role.Event) role.Actions {
		if a, ok := ev.(role.Assigned); ok {
			hold = a.Role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE
			return role.Actions{Hold: hold, Announce: hold}
		}
		return role.Actions{Hold: hold}
	}
}

func TestStep(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	g := pairGroup("edge-1")
	type at struct {
		d  time.Duration
		ev event
	}
	tests := []struct {
		name       string
		saved      *lvsctlv1.DesiredState // with an ACTIVE role at epoch 3, revision 4
		dataPlane  bool                   // the kernel holds something the agent owns
		say        func(role.Event) role.Actions
		events     []at
		want       []string // the actions of the last event
		wantRole   []string // every event the machine got, when set
		wantRepair time.Duration
	}{
		{
			name:   "a snapshot makes ACTIVE: one full reconcile that holds, the announce after it",
			say:    holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))}},
			want: []string{
				"reconcile full snapshot rev=1 role=ROLE_ACTIVE save=snapshot(ROLE_ACTIVE)",
				"prepare announcements eth0,eth1",
				"bind 192.0.2.1:7140",
				"announce",
			},
			wantRole: []string{"started held=false", "assigned edge-1 2 directors ROLE_ACTIVE/5"},
		},
		{
			name:   "assigned ACTIVE without a lease: reconciled as STANDBY, saved as ACTIVE",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))}},
			want: []string{
				"reconcile full snapshot rev=1 role=ROLE_STANDBY save=snapshot(ROLE_ACTIVE)",
				"prepare announcements eth0,eth1",
				"bind 192.0.2.1:7140",
			},
		},
		{
			name: "the lease ends: the addresses alone are released, then the status",
			say: func(ev role.Event) role.Actions {
				_, tick := ev.(role.Tick)
				hold := !tick
				a := role.Actions{Hold: hold}
				if tick {
					a.Status = &lvsctlv1.RoleStatus{Fenced: "no answer"}
				}
				return a
			},
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))}, {400 * ms, evRoleTick{}}},
			want:   []string{"holding false role=ROLE_STANDBY", "status holding=false"},
		},
		{
			name:     "restarted holding: nothing to take before a desired state",
			say:      func(role.Event) role.Actions { return role.Actions{Hold: true} },
			events:   []at{{0, evStart{held: true}}},
			want:     nil,
			wantRole: []string{"started held=true"},
		},
		{
			name: "a release that left addresses behind: done again at the next role tick",
			say: func(ev role.Event) role.Actions {
				_, tick := ev.(role.Tick)
				return role.Actions{Hold: !tick}
			},
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))}, {400 * ms, evRoleTick{}},
				{401 * ms, evReleaseFailed{}}, {500 * ms, evRoleTick{}}},
			want: []string{"holding false role=ROLE_STANDBY"},
		},
		{
			name: "a release retried once: the tick after it does nothing more",
			say: func(ev role.Event) role.Actions {
				_, tick := ev.(role.Tick)
				return role.Actions{Hold: !tick}
			},
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))}, {400 * ms, evRoleTick{}},
				{401 * ms, evReleaseFailed{}}, {500 * ms, evRoleTick{}}, {600 * ms, evRoleTick{}}},
			want: nil,
		},
		{
			name: "a failed release reported after the machine said hold again: not retried",
			say: func() func(role.Event) role.Actions {
				n := 0
				return func(ev role.Event) role.Actions {
					if _, tick := ev.(role.Tick); tick {
						n++
					}
					return role.Actions{Hold: n != 1} // released at the first tick, held again at the second
				}
			}(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))}, {400 * ms, evRoleTick{}},
				{450 * ms, evRoleTick{}}, {451 * ms, evReleaseFailed{}}, {500 * ms, evRoleTick{}}},
			want: nil,
		},
		{
			name: "the peer transport could not be opened: opened again at the next role tick",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)},
				{2 * ms, evBindFailed{local: netip.MustParseAddrPort("192.0.2.1:7140")}}, {100 * ms, evRoleTick{}}},
			want: []string{"bind 192.0.2.1:7140"},
		},
		{
			name: "a failure to open an address left since: not retried",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)},
				{2 * ms, evBindFailed{local: netip.MustParseAddrPort("192.0.2.9:7140")}}, {100 * ms, evRoleTick{}}},
			want: nil,
		},
		{
			name: "retried once per failure: the tick after a retry does nothing more",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)},
				{2 * ms, evBindFailed{local: netip.MustParseAddrPort("192.0.2.1:7140")}}, {100 * ms, evRoleTick{}}, {200 * ms, evRoleTick{}}},
			want: nil,
		},
		{
			name: "the lease ends before any desired state: released all the same",
			say: func(ev role.Event) role.Actions {
				_, tick := ev.(role.Tick)
				return role.Actions{Hold: !tick}
			},
			events: []at{{0, evStart{held: true}}, {400 * ms, evRoleTick{}}},
			want:   []string{"holding false role=ROLE_UNSPECIFIED"},
		},
		{
			name: "a following delta: the delta path",
			say:  holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, deltaOf(1, 2, nil, cluster("web", 3))}},
			want: []string{"reconcile delta delta rev=2 role=ROLE_ACTIVE save=delta(2)"},
		},
		{
			name: "a delta with roles: the addresses released first, then the delta",
			say:  holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, deltaOf(1, 2, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 6})}},
			want: []string{"holding false role=ROLE_STANDBY", "reconcile delta delta rev=2 role=ROLE_STANDBY save=delta(2)"},
		},
		{
			name: "a takeover in a delta: the addresses first, announced, then the delta",
			say:  holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-b", 5, web("edge-1"))},
				{2 * ms, deltaOf(1, 2, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 6})}},
			want: []string{"holding true role=ROLE_ACTIVE", "announce", "reconcile delta delta rev=2 role=ROLE_ACTIVE save=delta(2)"},
		},
		{
			name: "a stale epoch is not obeyed: still ACTIVE, the machine not told again",
			say:  holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, deltaOf(1, 2, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 4})}},
			want:     []string{"reconcile delta delta rev=2 role=ROLE_ACTIVE save=delta(2)"},
			wantRole: []string{"started held=false", "assigned edge-1 2 directors ROLE_ACTIVE/5"},
		},
		{
			name:   "a delta after another revision asks for a snapshot",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {2 * ms, deltaOf(3, 4, nil)}},
			want:   []string{"request snapshot"},
		},
		{
			name:   "a delta before any snapshot asks for one",
			events: []at{{0, evStart{}}, {2 * ms, deltaOf(0, 4, nil)}},
			want:   []string{"request snapshot"},
		},
		{
			name:      "no group, a data plane to lose: refused",
			dataPlane: true,
			events:    []at{{0, evStart{}}, {ms, evMessage{m: snapshot(2, "")}}},
			want:      []string{"ack refusal"},
		},
		{
			name:      "the ACTIVE removed from its group: refused, but the machine told no group, so the addresses are released",
			dataPlane: true,
			say:       holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, evMessage{m: snapshot(2, "")}}},
			want: []string{"bind invalid AddrPort", "holding false role=ROLE_STANDBY", "ack refusal"},
			wantRole: []string{"started held=false", "assigned edge-1 2 directors ROLE_ACTIVE/5",
				"assigned  0 directors ROLE_UNSPECIFIED/0"},
		},
		{
			name:      "the ACTIVE's group gone in a delta: the same release",
			dataPlane: true,
			say:       holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
					PrevRevision: 1, Revision: 2, Group: &lvsctlv1.DirectorGroup{}}}}}}},
			want: []string{"bind invalid AddrPort", "holding false role=ROLE_STANDBY", "ack refusal"},
		},
		{
			name:      "refused twice: the machine told once",
			dataPlane: true,
			say:       holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, evMessage{m: snapshot(2, "")}}, {3 * ms, evMessage{m: snapshot(3, "")}}},
			want: []string{"ack refusal"},
			wantRole: []string{"started held=false", "assigned edge-1 2 directors ROLE_ACTIVE/5",
				"assigned  0 directors ROLE_UNSPECIFIED/0"},
		},
		{
			name:      "back in the group after a refusal: the machine told, the addresses taken again",
			dataPlane: true,
			say:       holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5, web("edge-1"))},
				{2 * ms, evMessage{m: snapshot(2, "")}}, {3 * ms, snapshotOf(3, g, "dir-a", 5, web("edge-1"))}},
			want: []string{
				"reconcile full snapshot rev=3 role=ROLE_ACTIVE save=snapshot(ROLE_ACTIVE)",
				"prepare announcements eth0,eth1",
				"bind 192.0.2.1:7140",
				"announce",
			},
		},
		{
			name:   "no group, nothing to lose: applied",
			events: []at{{0, evStart{}}, {ms, evMessage{m: snapshot(2, "")}}},
			want:   []string{"reconcile full snapshot rev=2 role=ROLE_UNSPECIFIED save=snapshot(ROLE_UNSPECIFIED)"},
		},
		{
			name:      "resync after a refusal still says so",
			dataPlane: true,
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)},
				{2 * ms, evMessage{m: snapshot(2, "")}}, {3 * ms, evResync{}}},
			want: []string{"reconcile full resync rev=1 role=ROLE_STANDBY refused"},
		},
		{
			name:     "offline start: the saved state and role, the saved group's peers",
			say:      holdWhileActive(),
			saved:    &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{web("edge-1")}},
			events:   []at{{0, evStart{held: true}}, {10 * ms, evOffline{}}},
			want:     []string{"reconcile full saved-state rev=4 role=ROLE_ACTIVE"},
			wantRole: []string{"started held=true", "assigned edge-1 2 directors ROLE_ACTIVE/3"},
		},
		{
			name:   "offline timer after the controller's snapshot: nothing",
			saved:  &lvsctlv1.DesiredState{Group: g},
			events: []at{{0, evStart{}}, {ms, snapshotOf(7, g, "dir-a", 5)}, {10 * ms, evOffline{}}},
			want:   nil,
		},
		{
			name:   "a kernel change before any desired state: ignored",
			events: []at{{0, evStart{}}, {ms, evKernelChange{}}},
			want:   nil,
		},
		{
			name:       "kernel changes: the repair is due RepairDelay after the first",
			events:     []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {10 * ms, evKernelChange{}}, {20 * ms, evKernelChange{}}},
			want:       nil,
			wantRepair: 10*ms + 150*ms,
		},
		{
			name:       "a delta does not repair: the repair stays due",
			events:     []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {10 * ms, evKernelChange{}}, {20 * ms, deltaOf(1, 2, nil, cluster("web", 2))}},
			want:       []string{"reconcile delta delta rev=2 role=ROLE_STANDBY save=delta(2)"},
			wantRepair: 10*ms + 150*ms,
		},
		{
			name:   "the repair: a full reconcile",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {10 * ms, evKernelChange{}}, {160 * ms, evRepairDue{}}},
			want:   []string{"reconcile full kernel-change rev=1 role=ROLE_STANDBY"},
		},
		{
			name:   "stats tick with a desired state: a report",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {2 * ms, evStatsTick{}}},
			want:   []string{"report"},
		},
		{
			name:   "stats tick without: nothing",
			events: []at{{0, evStart{}}, {2 * ms, evStatsTick{}}},
			want:   nil,
		},
		{
			name:   "Hello: the role status",
			say:    holdWhileActive(),
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {2 * ms, evHello{}}},
			want:   []string{"status holding=true"},
		},
		{
			name: "heartbeats out: to the controller, the peers, the probes",
			say: func(ev role.Event) role.Actions {
				return role.Actions{Controller: &lvsctlv1.Heartbeat{Sent: 42},
					Peers: []role.Outgoing{{Peer: "dir-b"}}, Probes: []role.Outgoing{{Peer: "dir-b"}}}
			},
			events: []at{{0, evStart{}}, {100 * ms, evRoleTick{}}},
			want:   []string{"heartbeat sent=42", "peers 1", "probe 1"},
		},
		{
			name: "answers in: each to the machine",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)},
				{2 * ms, evCtlHeartbeat{hb: &lvsctlv1.Heartbeat{Sent: 7}}},
				{3 * ms, evPeerHeartbeat{from: netip.MustParseAddr("192.0.2.2"), hb: &lvsctlv1.PeerHeartbeat{Director: "dir-b"}}},
				{4 * ms, evProbeAnswer{peer: "dir-b"}}, {5 * ms, evSessionLost{}}},
			wantRole: []string{"started held=false", "assigned edge-1 2 directors ROLE_ACTIVE/5",
				"controller sent=7", "peer 192.0.2.2 dir-b", "probe dir-b", "controller lost"},
		},
		{
			name:   "a group of one: no transport",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {2 * ms, evMessage{m: withRoles(snapshot(2, "edge-1"), "edge-1", "dir-a", 5)}}},
			want:   []string{"reconcile full snapshot rev=2 role=ROLE_STANDBY save=snapshot(ROLE_ACTIVE)", "bind invalid AddrPort"},
		},
		{
			name:     "the same group again: no rebind, the machine not told again",
			events:   []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {2 * ms, snapshotOf(2, pairGroup("edge-1"), "dir-a", 5)}},
			want:     []string{"reconcile full snapshot rev=2 role=ROLE_STANDBY save=snapshot(ROLE_ACTIVE)"},
			wantRole: []string{"started held=false", "assigned edge-1 2 directors ROLE_ACTIVE/5"},
		},
		{
			name:   "a save behind: the whole state saved",
			events: []at{{0, evStart{}}, {ms, snapshotOf(1, g, "dir-a", 5)}, {2 * ms, deltaOf(1, 2, nil)}, {3 * ms, evSaveBehind{}}},
			want:   []string{"save rev=2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &scriptedMachine{say: tt.say}
			l := &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), repairDelay: 150 * time.Millisecond, machine: m,
				hasDataPlane: func() bool { return tt.dataPlane }}
			if tt.saved != nil {
				l.saved, l.savedRv = tt.saved, 4
				l.role = &lvsctlv1.RoleAssignment{Group: tt.saved.GetGroup().GetName(), Role: active, Epoch: 3}
			}
			var got []string
			for _, e := range tt.events {
				got = describe(l.step(t0.Add(e.d), e.ev))
			}
			if tt.wantRole == nil || tt.want != nil {
				if !slices.Equal(got, tt.want) {
					t.Errorf("actions:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
				}
			}
			if tt.wantRole != nil && !slices.Equal(m.events, tt.wantRole) {
				t.Errorf("the role machine got:\n  %s\nwant\n  %s", strings.Join(m.events, "\n  "), strings.Join(tt.wantRole, "\n  "))
			}
			var wantRepair time.Time
			if tt.wantRepair > 0 {
				wantRepair = t0.Add(tt.wantRepair)
			}
			if !l.repairAt.Equal(wantRepair) {
				t.Errorf("repair due at %v, want %v", l.repairAt, wantRepair)
			}
		})
	}
}

// TestTakeoverFence: roles that carry a takeover's fence make the new ACTIVE wait the rest of
// it, counted from the message's arrival: fence_until - sent_unix_ms, at most the group's
// Fence; with the real role machine, the addresses are taken exactly then, not before.
func TestTakeoverFence(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	g := pairGroup("edge-1") // default failover timings
	fence := failover.Of(g).Fence
	sent := t0.Add(-40 * ms).UnixMilli()
	for _, tc := range []struct {
		name  string
		until int64 // fence_until_unix_ms
		sent  int64
		want  time.Duration // NotBefore - arrival (0: none)
	}{
		{"no fence", 0, sent, 0},
		{"the rest of the fence, from the arrival", sent + 150, sent, 150 * ms},
		{"a fence already over", sent - 5, sent, 0},
		{"at most the group's Fence", sent + 5000, sent, fence},
		{"a fence without a sent time: one Fence", sent + 100, 0, fence},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 7, Reason: "takeover", Previous: "dir-b", FenceUntilUnixMs: tc.until}
			got := fenceEnd(t0, r, tc.sent, g)
			if want := t0.Add(tc.want); (tc.want == 0 && !got.IsZero()) || (tc.want != 0 && !got.Equal(want)) {
				t.Errorf("fenceEnd = %v, want arrival + %v", got.Sub(t0), tc.want)
			}
		})
	}

	// The loop with the real machine: dir-a STANDBY at epoch 5, then a delta promoting it
	// with 120ms of fence left. Answers to its heartbeats arrive all along.
	l := &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), repairDelay: 150 * ms, machine: role.New("dir-a"),
		hasDataPlane: func() bool { return false }}
	l.step(t0, evStart{})
	l.step(t0.Add(ms), snapshotOf(1, g, "dir-b", 5))
	promote := deltaOf(1, 2, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 6, Reason: "takeover", Previous: "dir-b",
		FenceUntilUnixMs: t0.Add(10*ms).UnixMilli() + 120})
	promote.m.GetDelta().SentUnixMs = t0.Add(10 * ms).UnixMilli()
	arrival := t0.Add(30 * ms) // 20ms in transit: the wait counts from here
	acts := l.step(arrival, promote)
	holds := func(acts []action) bool {
		for _, a := range acts {
			if h, ok := a.(actHolding); ok && h.hold {
				return true
			}
		}
		return false
	}
	if holds(acts) || l.hold {
		t.Fatalf("held on arrival: %v", describe(acts))
	}
	// Heartbeat answers (the controller echoes each heartbeat the machine sent) renew the
	// lease; only the fence keeps it from holding.
	var lastSent int64
	for _, a := range acts {
		if hb, ok := a.(actHeartbeat); ok {
			lastSent = hb.hb.GetSent()
		}
	}
	l.step(arrival.Add(ms), evCtlHeartbeat{hb: &lvsctlv1.Heartbeat{Sent: 1, Echo: lastSent, Epoch: 6}})
	l.step(arrival.Add(100*ms), evRoleTick{}) // the next heartbeat round
	if got := l.machine.Next(); !got.Equal(arrival.Add(120 * ms)) {
		t.Errorf("role tick due at arrival + %v, want + 120ms", got.Sub(arrival))
	}
	if acts := l.step(arrival.Add(120*ms-1), evRoleTick{}); holds(acts) {
		t.Fatalf("held 1ns before the fence's end")
	}
	if acts := l.step(arrival.Add(120*ms), evRoleTick{}); !holds(acts) {
		t.Fatalf("not held at the fence's end: %v", describe(acts))
	}
}

// TestRolesStoredAheadOfTheDelta: the controller's RolesStored, ahead of the delta, tells the
// role machine at once and reconciles nothing; the new ACTIVE holds at its fence's end; the
// delta that follows with the same roles is reconciled as ACTIVE and tells the machine nothing
// new. Roles of another group, or not newer than the role held, change nothing.
func TestRolesStoredAheadOfTheDelta(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	g := pairGroup("edge-1")
	m := &scriptedMachine{say: func(ev role.Event) role.Actions {
		if a, ok := ev.(role.Assigned); ok && a.Role.GetRole() == lvsctlv1.Role_ROLE_ACTIVE {
			return role.Actions{Hold: true, Announce: true}
		}
		return role.Actions{}
	}}
	l := &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), repairDelay: 150 * ms, machine: m,
		hasDataPlane: func() bool { return false }}
	l.step(t0, evStart{})
	l.step(t0.Add(ms), snapshotOf(1, g, "dir-b", 5))
	m.events = nil
	stored := func(group, active string, epoch uint64) evMessage {
		return evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_RolesStored{RolesStored: &lvsctlv1.RolesStored{
			Roles: &lvsctlv1.GroupRoles{Group: group, Active: active, Epoch: epoch, Reason: "takeover"}}}}}
	}
	for _, ev := range []evMessage{stored("edge-2", "dir-a", 9), stored("edge-1", "dir-b", 5), stored("edge-1", "dir-a", 4)} {
		if acts := l.step(t0.Add(2*ms), ev); len(acts) != 0 || len(m.events) != 0 {
			t.Fatalf("%v: actions %v, machine told %v; want nothing", ev.m.GetRolesStored().GetRoles(), describe(acts), m.events)
		}
	}
	got := describe(l.step(t0.Add(3*ms), stored("edge-1", "dir-a", 6)))
	if want := []string{"holding true role=ROLE_ACTIVE", "announce"}; !slices.Equal(got, want) {
		t.Errorf("on RolesStored: %v, want %v (the fast path, no reconcile)", got, want)
	}
	got = describe(l.step(t0.Add(40*ms), deltaOf(1, 2, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 6, Reason: "takeover"})))
	if want := []string{"reconcile delta delta rev=2 role=ROLE_ACTIVE save=delta(2)"}; !slices.Equal(got, want) {
		t.Errorf("on the delta: %v, want %v", got, want)
	}
	if want := []string{"assigned edge-1 2 directors ROLE_ACTIVE/6"}; !slices.Equal(m.events, want) {
		t.Errorf("the machine was told %v, want %v (once)", m.events, want)
	}
}

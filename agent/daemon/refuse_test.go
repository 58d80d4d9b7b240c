package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// otherGroup is a group of two that does not list dir-a.
func otherGroup() *lvsctlv1.DirectorGroup {
	return &lvsctlv1.DirectorGroup{Name: "edge-9", VipInterface: "eth0", Directors: []*lvsctlv1.Director{
		{Name: "dir-x", Priority: 100, Address: "192.0.2.8"}, {Name: "dir-y", Priority: 50, Address: "192.0.2.9"}}}
}

func rolesStored(group, active string, epoch uint64) evMessage {
	return evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_RolesStored{RolesStored: &lvsctlv1.RolesStored{
		Roles: &lvsctlv1.GroupRoles{Group: group, Active: active, Epoch: epoch}}}}}
}

// TestStepRefusals: what the controller sends is refused when it names a group without this
// director, goes back in revision, or goes back in epoch: each refusal is decided once
// (l.refusals: the runner logs and counts it), reported (an ack refusal, or on the ack of the
// reconcile that applies the rest), and changes neither the state held nor the role obeyed.
// The loop starts ACTIVE at revision 5, epoch 5, of edge-1 (web).
func TestStepRefusals(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	g := pairGroup("edge-1")
	start := []event{evStart{}, snapshotOf(5, g, "dir-a", 5, web("edge-1"))}
	tests := []struct {
		name        string
		acceptOlder bool
		fromSaved   bool     // started from a saved state at revision 5, epoch 5, no controller yet
		events      []event  // after start
		want        []string // the actions of the last event
		wantRefused error    // the last event's refusal (nil: none)
		wantRev     int64    // the revision held after
		wantEpoch   uint64   // the epoch obeyed after
		wantAck     string   // in the director errors of the last reconcile's ack, when set
	}{
		{
			name:        "a snapshot for a group that does not list this director",
			events:      []event{snapshotOf(6, otherGroup(), "dir-x", 9, web("edge-9"))},
			want:        []string{"ack refusal"},
			wantRefused: ErrNotInGroup, wantRev: 5, wantEpoch: 5,
		},
		{
			name: "a delta into a group that does not list this director",
			events: []event{evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
				PrevRevision: 5, Revision: 6, Group: otherGroup()}}}}},
			want:        []string{"ack refusal"},
			wantRefused: ErrNotInGroup, wantRev: 5, wantEpoch: 5,
		},
		{
			name:      "saved at revision 5: the controller's first snapshot, older, refused",
			fromSaved: true,
			events:    []event{snapshotOf(4, g, "dir-a", 5, web("edge-1")), evOffline{}},
			// The controller's state refused, the saved one is applied offline, as when the
			// controller is unreachable; its ack still says why the controller's was not.
			want:        []string{"reconcile full saved-state rev=5 role=ROLE_ACTIVE refused"},
			wantRefused: nil, wantRev: 5, wantEpoch: 5,
		},
		{
			name:        "a snapshot older than the revision applied",
			events:      []event{snapshotOf(4, g, "dir-a", 5, web("edge-1"))},
			want:        []string{"ack refusal"},
			wantRefused: ErrRevisionBackwards, wantRev: 5, wantEpoch: 5,
		},
		{
			name:        "a delta older than the revision applied: no snapshot asked for",
			events:      []event{deltaOf(3, 4, nil, web("edge-1"))},
			want:        []string{"ack refusal"},
			wantRefused: ErrRevisionBackwards, wantRev: 5, wantEpoch: 5,
		},
		{
			name:        "a delta that goes back from its own previous revision",
			events:      []event{deltaOf(5, 3, nil, web("edge-1"))},
			want:        []string{"ack refusal"},
			wantRefused: ErrRevisionBackwards, wantRev: 5, wantEpoch: 5,
		},
		{
			name:    "the same revision again (a restarted controller): applied",
			events:  []event{snapshotOf(5, g, "dir-a", 5, web("edge-1"))},
			want:    []string{"reconcile full snapshot rev=5 role=ROLE_ACTIVE save=snapshot(ROLE_ACTIVE)"},
			wantRev: 5, wantEpoch: 5,
		},
		{
			name:        "--accept-older-revision: the first older snapshot is applied, its lower epoch obeyed",
			acceptOlder: true, fromSaved: true,
			events:  []event{snapshotOf(3, g, "dir-b", 2, web("edge-1"))},
			want:    []string{"reconcile full snapshot rev=3 role=ROLE_STANDBY save=snapshot(ROLE_STANDBY)"},
			wantRev: 3, wantEpoch: 2,
		},
		{
			name:        "--accept-older-revision is once: the next one below it is refused",
			acceptOlder: true, fromSaved: true,
			events:      []event{snapshotOf(3, g, "dir-a", 5, web("edge-1")), snapshotOf(2, g, "dir-a", 5, web("edge-1"))},
			want:        []string{"ack refusal"},
			wantRefused: ErrRevisionBackwards, wantRev: 3, wantEpoch: 5,
		},
		{
			name:        "a snapshot with an older epoch: the state applied, the role kept, the ack says why",
			events:      []event{snapshotOf(6, g, "dir-b", 4, web("edge-1"))},
			want:        []string{"reconcile full snapshot rev=6 role=ROLE_ACTIVE save=snapshot(ROLE_ACTIVE)"},
			wantRefused: ErrEpochBackwards, wantRev: 6, wantEpoch: 5,
			wantAck: `role assignment of director group "edge-1" at epoch 4 is older than the epoch this director obeys (5)`,
		},
		{
			name:        "a delta with an older epoch: the same",
			events:      []event{deltaOf(5, 6, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 4})},
			want:        []string{"reconcile delta delta rev=6 role=ROLE_ACTIVE save=delta(6)"},
			wantRefused: ErrEpochBackwards, wantRev: 6, wantEpoch: 5,
			wantAck: "at epoch 4 is older than the epoch this director obeys (5)",
		},
		{
			name:    "the epoch refusal stays on the acks until a role is obeyed",
			events:  []event{deltaOf(5, 6, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 4}), evResync{}},
			want:    []string{"reconcile full resync rev=6 role=ROLE_ACTIVE"},
			wantRev: 6, wantEpoch: 5,
			wantAck: "at epoch 4 is older",
		},
		{
			name: "the same epoch again clears it",
			events: []event{deltaOf(5, 6, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 4}),
				deltaOf(6, 7, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 5})},
			want:    []string{"reconcile delta delta rev=7 role=ROLE_ACTIVE save=delta(7)"},
			wantRev: 7, wantEpoch: 5,
		},
		{
			// Not a refusal: the controller's sender may send a RolesStored it held after the
			// delta of a newer assignment (see the loop); never obeyed all the same.
			name:    "a RolesStored with an older epoch: not obeyed, nothing done",
			events:  []event{rolesStored("edge-1", "dir-b", 4)},
			want:    nil,
			wantRev: 5, wantEpoch: 5,
		},
		{
			name:    "a state without roles changes no role and refuses nothing",
			events:  []event{noRoles(snapshotOf(6, g, "dir-b", 9, web("edge-1")))},
			want:    []string{"reconcile full snapshot rev=6 role=ROLE_ACTIVE save=snapshot(ROLE_ACTIVE)"},
			wantRev: 6, wantEpoch: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &scriptedMachine{say: holdWhileActive()}
			l := &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), repairDelay: 150 * ms, machine: m,
				hasDataPlane: func() bool { return true }, acceptOlder: tt.acceptOlder, journal: "/var/lib/lvsctl/agent/desired.log"}
			now := t0
			first := start
			if tt.fromSaved {
				l.saved, l.savedRv, l.floor = &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{web("edge-1")}}, 5, 5
				l.role = &lvsctlv1.RoleAssignment{Group: "edge-1", Role: active, Epoch: 5}
				first = start[:1]
			}
			for _, ev := range first {
				now = now.Add(ms)
				l.step(now, ev)
			}
			l.refusals = nil
			var acts []action
			for _, ev := range tt.events {
				now = now.Add(ms)
				l.refusals = nil
				acts = l.step(now, ev)
			}
			if got := describe(acts); !slices.Equal(got, tt.want) {
				t.Errorf("actions:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
			switch {
			case tt.wantRefused == nil && len(l.refusals) != 0:
				t.Errorf("refusals %v, want none", l.refusals)
			case tt.wantRefused != nil && (len(l.refusals) != 1 || !errors.Is(l.refusals[0], tt.wantRefused)):
				t.Errorf("refusals %v, want one that is %v", l.refusals, tt.wantRefused)
			}
			for _, a := range acts {
				if ar, ok := a.(actAckRefusal); ok && (tt.wantRefused == nil || !errors.Is(ar.why, tt.wantRefused)) {
					t.Errorf("ack refusal %v, want %v", ar.why, tt.wantRefused)
				}
				if r, ok := a.(actReconcile); ok {
					got := ""
					if r.roleRefused != nil {
						got = r.roleRefused.Error()
					}
					if (tt.wantAck == "") != (got == "") || !strings.Contains(got, tt.wantAck) {
						t.Errorf("the reconcile's ack says %q, want %q", got, tt.wantAck)
					}
				}
			}
			if l.rev != tt.wantRev || l.cur.clusters.Group.GetName() != "edge-1" {
				t.Errorf("holds revision %d of %s, want %d of edge-1", l.rev, l.cur.clusters.Group.GetName(), tt.wantRev)
			}
			if l.role.GetEpoch() != tt.wantEpoch {
				t.Errorf("obeys epoch %d, want %d", l.role.GetEpoch(), tt.wantEpoch)
			}
		})
	}
}

func noRoles(ev evMessage) evMessage {
	ev.m.GetSnapshot().Roles = nil
	return ev
}

// TestStepRefusalMessages: each refusal names what was refused and why, for an operator
// reading lvsctl status.
func TestStepRefusalMessages(t *testing.T) {
	l := &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), machine: &scriptedMachine{}, hasDataPlane: func() bool { return true },
		journal: "/var/lib/lvsctl/agent/desired.log", floor: 5000}
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{l.refuseNotListed(otherGroup(), "snapshot", 12), []string{`snapshot at revision 12`, `director group "edge-9"`, `"dir-a"`, "not applied"}},
		{l.olderRevision("snapshot", 12), []string{"snapshot at revision 12", "(5000)", "--accept-older-revision", "/var/lib/lvsctl/agent/desired.log"}},
		{roleOlder(&lvsctlv1.RoleAssignment{Group: "edge-1", Epoch: 4}, &lvsctlv1.RoleAssignment{Group: "edge-1", Role: active, Epoch: 5}),
			[]string{`director group "edge-1"`, "epoch 4", "(5)", "ROLE_ACTIVE"}},
	} {
		for _, w := range tc.want {
			if !strings.Contains(tc.err.Error(), w) {
				t.Errorf("%q does not say %q", tc.err, w)
			}
		}
	}
	if err := l.refuseNotListed(pairGroup("edge-1"), "snapshot", 1); err != nil {
		t.Errorf("a group that lists dir-a refused: %v", err)
	}
	if err := l.refuseNotListed(&lvsctlv1.DirectorGroup{}, "snapshot", 0); err != nil {
		t.Errorf("no group refused as another's: %v", err)
	}
}

// TestStepIntegrity: after a saved state failed its check, nothing is applied offline; every
// Hello says why until the controller's state is applied, which is applied as usual.
func TestStepIntegrity(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	g := pairGroup("edge-1")
	damage := fmt.Errorf("%w: /var/lib/lvsctl/agent/desired.log: record at byte 12: checksum does not match", state.ErrIntegrity)
	l := &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), repairDelay: 150 * ms, machine: &scriptedMachine{},
		hasDataPlane: func() bool { return true }, integrity: damage}
	for i, step := range []struct {
		ev   event
		want []string
	}{
		{evStart{}, nil},
		{evHello{}, []string{"status holding=false", "ack refusal"}},
		{evOffline{}, nil},
		{evResync{}, nil},
		{evKernelChange{}, nil},
		{evSessionLost{}, nil},
		{evHello{}, []string{"status holding=false", "ack refusal"}},
		{snapshotOf(7, g, "dir-b", 5, web("edge-1")), []string{
			"reconcile full snapshot rev=7 role=ROLE_STANDBY save=snapshot(ROLE_STANDBY)", "prepare announcements eth0,eth1", "bind 192.0.2.1:7140"}},
		{evHello{}, []string{"status holding=false"}},
	} {
		acts := l.step(t0.Add(time.Duration(i)*ms), step.ev)
		if got := describe(acts); !slices.Equal(got, step.want) {
			t.Errorf("step %d (%T): %v, want %v", i, step.ev, got, step.want)
		}
		for _, a := range acts {
			if ar, ok := a.(actAckRefusal); ok && !errors.Is(ar.why, state.ErrIntegrity) {
				t.Errorf("step %d: ack refusal %v, want the integrity failure", i, ar.why)
			}
		}
	}
}

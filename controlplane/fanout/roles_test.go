package fanout

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// recordingRoles is the role logic as the hub sees it: it records what it is told and
// gives each group a fixed epoch.
type recordingRoles struct {
	mu     sync.Mutex
	events []string
	epochs map[string]uint64
}

func (r *recordingRoles) add(ev string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.events); n > 0 && r.events[n-1] == ev && strings.HasPrefix(ev, "heard ") {
		return // a run of heartbeats is one entry
	}
	r.events = append(r.events, ev)
}

func (r *recordingRoles) Heard(d string)        { r.add("heard " + d) }
func (r *recordingRoles) Disconnected(d string) { r.add("disconnected " + d) }
func (r *recordingRoles) Reported(d string, st *lvsctlv1.RoleStatus) {
	r.add("reported " + d + " " + st.GetRole().String())
}
func (r *recordingRoles) Epoch(g string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.epochs[g]
}

func (r *recordingRoles) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// TestHeartbeatsAreAnsweredWithEchoAndEpoch: each heartbeat from an agent is answered on its
// stream with the value it sent and its group's epoch; the role logic hears of the agent's
// messages, its report and the end of its stream, in order; status shows the report and
// forgets what it claimed once the stream is gone.
func TestHeartbeatsAreAnsweredWithEchoAndEpoch(t *testing.T) {
	roles := &recordingRoles{epochs: map[string]uint64{"edge-1": 42}}
	h := startWith(t, Config{Roles: roles})
	resp, err := h.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: wmsObjects(100)})
	if err != nil {
		t.Fatal(err)
	}
	h.caughtUp(t, resp.GetRevision())
	s := h.connect(t, "dir-a")
	if m := next(t, s); m.GetSnapshot() == nil {
		t.Fatalf("first message %v, want the snapshot", m)
	}
	for _, sent := range []int64{1001, 1002, 1003} {
		if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: sent}}}); err != nil {
			t.Fatal(err)
		}
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if hb := m.GetHeartbeat(); hb.GetEcho() != sent || hb.GetEpoch() != 42 {
			t.Fatalf("answer to heartbeat %d: %v, want echo %d, epoch 42", sent, m, sent)
		}
	}
	st := &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 42, Role: lvsctlv1.Role_ROLE_ACTIVE, Holding: true}
	if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: st}}); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(what string, ok func(*lvsctlv1.DirectorStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if l := h.fleet.List(""); len(l) == 1 && ok(l[0]) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("status never showed %s: %v", what, h.fleet.List(""))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitStatus("the report", func(d *lvsctlv1.DirectorStatus) bool { return d.GetHolding() && d.GetEpoch() == 42 })
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	waitStatus("the director gone", func(d *lvsctlv1.DirectorStatus) bool { return !d.GetConnected() && !d.GetHolding() })
	deadline := time.Now().Add(10 * time.Second)
	want := []string{"heard dir-a", "reported dir-a ROLE_ACTIVE", "disconnected dir-a"}
	for !slices.Equal(roles.seen(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("role logic told %q, want %q", roles.seen(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDirectorInNoGroupIsNotAnswered: a director removed from its group gets no answer to
// its heartbeats (an answer would renew the lease of a removed ACTIVE that still holds the
// addresses); once it is in a group again, its heartbeats are answered again.
func TestDirectorInNoGroupIsNotAnswered(t *testing.T) {
	roles := &recordingRoles{epochs: map[string]uint64{"edge-1": 42}}
	h := startWith(t, Config{Roles: roles})
	h.apply(t, twoGroups(2, 1, "dir-a", "dir-x"))
	s := h.connect(t, "dir-x")
	if next(t, s).GetSnapshot() == nil {
		t.Fatal("first message is not the snapshot")
	}
	beat := func(sent int64) {
		t.Helper()
		if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: sent}}}); err != nil {
			t.Fatal(err)
		}
	}
	// recvUntilEcho reads up to the answer to sent; any other answer fails.
	recvUntilEcho := func(sent int64) {
		t.Helper()
		for {
			m, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if hb := m.GetHeartbeat(); hb != nil && hb.GetEcho() != 0 {
				if hb.GetEcho() != sent {
					t.Fatalf("answer %v, want only the answer to %d", hb, sent)
				}
				return
			}
		}
	}
	beat(1)
	recvUntilEcho(1)
	h.apply(t, twoGroups(2, 1, "dir-a"))
	if snap := next(t, s).GetSnapshot(); snap.GetRevision() != 0 {
		t.Fatalf("after leaving edge-1: %v, want the empty state", snap)
	}
	beat(2) // unanswered
	rev := h.apply(t, twoGroups(2, 1, "dir-a", "dir-x"))
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if hb := m.GetHeartbeat(); hb.GetEcho() != 0 {
			t.Fatalf("a director in no group was answered: %v", hb)
		}
		if snap := m.GetSnapshot(); snap != nil {
			if snap.GetRevision() != rev {
				t.Fatalf("after joining edge-1 again: %v, want its snapshot at %d", snap, rev)
			}
			break
		}
	}
	beat(3)
	recvUntilEcho(3)
}

// TestReplacedSessionsReportIsForgotten: when a director's agent reconnects, the role logic
// forgets what the replaced stream reported (as at the end of a stream) before it hears the
// new one, and nothing the old stream says reaches it any more.
func TestReplacedSessionsReportIsForgotten(t *testing.T) {
	roles := &recordingRoles{epochs: map[string]uint64{"edge-1": 42}}
	h := startWith(t, Config{Roles: roles})
	h.apply(t, twoGroups(1, 1))
	report := func(s lvsctlv1.AgentService_ConnectClient, role lvsctlv1.Role) {
		t.Helper()
		if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: &lvsctlv1.RoleStatus{
			Group: "edge-1", Epoch: 42, Role: role}}}); err != nil {
			t.Fatal(err)
		}
	}
	waitEvents := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(roles.seen(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("role logic told %q, want %q", roles.seen(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	old := h.connect(t, "dir-a")
	next(t, old)
	report(old, lvsctlv1.Role_ROLE_ACTIVE)
	waitEvents([]string{"heard dir-a", "reported dir-a ROLE_ACTIVE"})
	fresh := h.connect(t, "dir-a")
	next(t, fresh)
	// The replaced stream, ended: not heard (its Send may fail, the server closed it).
	_ = old.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: &lvsctlv1.RoleStatus{
		Group: "edge-1", Epoch: 42, Role: lvsctlv1.Role_ROLE_ACTIVE}}})
	report(fresh, lvsctlv1.Role_ROLE_STANDBY)
	waitEvents([]string{"heard dir-a", "reported dir-a ROLE_ACTIVE", "disconnected dir-a", "heard dir-a", "reported dir-a ROLE_STANDBY"})
}

// TestRolesStoredGoesToTheGroupAtOnce: roles the controller just stored reach the group's
// connected directors at once, stamped for their fence, without a revision (the delta comes
// with the store's watch); another group's directors get nothing.
func TestRolesStoredGoesToTheGroupAtOnce(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(1, 1))
	a, c := h.connect(t, "dir-a"), h.connect(t, "dir-c")
	if next(t, a).GetSnapshot() == nil || next(t, c).GetSnapshot() == nil {
		t.Fatal("no snapshot first")
	}
	r := &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 42, Reason: "takeover", Previous: "dir-a",
		FenceUntilUnixMs: time.Now().Add(time.Second).UnixMilli()}
	before := time.Now().UnixMilli()
	h.hub.RolesStored(r)
	got := next(t, a).GetRolesStored()
	if !proto.Equal(got.GetRoles(), r) || got.GetSentUnixMs() < before || got.GetSentUnixMs() > time.Now().UnixMilli() {
		t.Fatalf("dir-a got %v, want the roles stamped between %d and now", got, before)
	}
	// dir-c (edge-2) is told nothing: its next message is the answer to its heartbeat.
	if err := c.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: 7}}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Recv()
	if err != nil || m.GetHeartbeat().GetEcho() != 7 {
		t.Fatalf("dir-c got %v (%v), want only the heartbeat answer", m, err)
	}
}

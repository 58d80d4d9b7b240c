package role

import (
	"net/netip"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/failover"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

const (
	active  = lvsctlv1.Role_ROLE_ACTIVE
	standby = lvsctlv1.Role_ROLE_STANDBY
	ms      = time.Millisecond
)

var t0 = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

var addrs = map[string]string{"dir-a": "10.0.0.1", "dir-b": "10.0.0.2", "dir-c": "10.0.0.3"}

// tableTimings are the timings the tables' timelines are written for (heartbeats every
// 100 ms, dead after 200 ms, fence 250 ms), pinned so that a change of the defaults does not
// rewrite every table; a group given nil gets them.
var tableTimings = &lvsctlv1.Failover{HeartbeatIntervalMs: 100, DeadAfterMs: 200, FenceMs: 250}

// group is edge-1 with the named directors; dir-a is the machine under test.
func group(f *lvsctlv1.Failover, names ...string) *lvsctlv1.DirectorGroup {
	if f == nil {
		f = tableTimings
	}
	g := &lvsctlv1.DirectorGroup{Name: "edge-1", Failover: f}
	for i, n := range names {
		g.Directors = append(g.Directors, &lvsctlv1.Director{Name: n, Priority: uint32(200 - i), Address: addrs[n]})
	}
	return g
}

func pair() *lvsctlv1.DirectorGroup { return group(nil, "dir-a", "dir-b") }

func assign(g *lvsctlv1.DirectorGroup, r lvsctlv1.Role, epoch uint64) Assigned {
	return Assigned{Group: g, Role: &lvsctlv1.RoleAssignment{Group: g.GetName(), Role: r, Epoch: epoch}}
}

// sent is the value dir-a's heartbeat sent at t0+d carries.
func sent(d time.Duration) int64 { return t0.Add(d).UnixNano() }

// fromController is the controller's answer echoing the heartbeat sent at t0+echo.
func fromController(echo time.Duration, epoch uint64) ControllerHeartbeat {
	return ControllerHeartbeat{HB: &lvsctlv1.Heartbeat{Sent: 42, Echo: sent(echo), Epoch: epoch}}
}

// fromPeer is a STANDBY peer's heartbeat echoing the heartbeat sent at t0+echo (echo < 0:
// none).
func fromPeer(name string, echo time.Duration, epoch uint64) PeerHeartbeat {
	hb := &lvsctlv1.PeerHeartbeat{Group: "edge-1", Director: name, Epoch: epoch, Role: standby, Sent: 1000 + int64(echo)}
	if echo >= 0 {
		hb.Echo = sent(echo)
	}
	return PeerHeartbeat{From: netip.MustParseAddr(addrs[name]), HB: hb}
}

type step struct {
	at   time.Duration
	ev   Event
	hold bool
	// then checks more of the step's result.
	then func(t *testing.T, m *Machine, a Actions)
}

func run(t *testing.T, m *Machine, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := t0.Add(s.at)
		a := m.Step(now, s.ev)
		if a.Hold != s.hold {
			t.Fatalf("step %d (%T at %v): hold %v, want %v (status %v)", i, s.ev, s.at, a.Hold, s.hold, m.Status(now))
		}
		if s.then != nil {
			s.then(t, m, a)
		}
	}
}

func fenced(want string) func(*testing.T, *Machine, Actions) {
	return func(t *testing.T, m *Machine, _ Actions) {
		t.Helper()
		if got := m.Status(t0).GetFenced(); got != want {
			t.Errorf("fenced %q, want %q", got, want)
		}
	}
}

func edge(changed, announce bool) func(*testing.T, *Machine, Actions) {
	return func(t *testing.T, _ *Machine, a Actions) {
		t.Helper()
		if a.HoldChanged != changed || a.Announce != announce {
			t.Errorf("HoldChanged %v Announce %v, want %v %v", a.HoldChanged, a.Announce, changed, announce)
		}
	}
}

func next(want time.Duration) func(*testing.T, *Machine, Actions) {
	return func(t *testing.T, m *Machine, _ Actions) {
		t.Helper()
		if got := m.Next(); !got.Equal(t0.Add(want)) {
			t.Errorf("Next() = t0+%v, want t0+%v", got.Sub(t0), want)
		}
	}
}

func TestHold(t *testing.T) {
	lease := failover.Of(pair()).Lease() // 225ms: Fence less a quarter interval
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"one-director group holds without answers and never fences", []step{
			{0, assign(group(nil, "dir-a"), active, 1), true, edge(true, true)},
			{time.Second, Tick{}, true, edge(false, false)},
			{time.Second, ControllerLost{}, true, nil},
			{time.Hour, Tick{}, true, fenced("")},
		}},
		{"two-director ACTIVE waits for a first answer", []step{
			{0, assign(pair(), active, 1), false, fenced("no answer to heartbeats yet")},
			{2 * ms, fromController(0, 1), true, edge(true, true)},
		}},
		{"no answer for the lease: released exactly at sent+Lease", []step{
			{0, assign(pair(), active, 1), false, nil},
			{1 * ms, fromPeer("dir-b", 0, 1), true, nil},
			{100 * ms, Tick{}, true, nil},
			{200 * ms, Tick{}, true, next(201 * ms)}, // dir-b lost: DeadAfter after 1ms
			{201 * ms, Tick{}, true, next(lease)},
			{lease - 1, Tick{}, true, edge(false, false)},
			{lease, Tick{}, false, func(t *testing.T, m *Machine, a Actions) {
				edge(true, false)(t, m, a)
				fenced("no answer to heartbeats for 225ms")(t, m, a)
				if a.Status == nil || a.Status.Holding || a.Status.Fenced == "" {
					t.Errorf("release not reported: %v", a.Status)
				}
			}},
			// A late echo of the latest heartbeat (sent at 200ms) takes the lease back.
			{350 * ms, fromController(200*ms, 1), true, edge(true, true)},
		}},
		{"the latest answered heartbeat sets the lease, an older echo does not shorten it", []step{
			{0, assign(pair(), active, 1), false, nil},
			{100 * ms, Tick{}, false, nil},
			{150 * ms, fromController(100*ms, 1), true, nil},
			{160 * ms, fromPeer("dir-b", 0, 1), true, nil},
			{100*ms + lease - 1, Tick{}, true, nil},
			{100*ms + lease, Tick{}, false, nil},
		}},
		{"echo of a value never sent does not renew", []step{
			{0, assign(pair(), active, 1), false, nil},
			{10 * ms, fromPeer("dir-b", 50*ms, 1), false, nil},
			{20 * ms, fromController(1, 1), false, nil},
			{30 * ms, fromPeer("dir-b", -1, 1), false, nil},
		}},
		{"echo arriving after sent+Lease does not renew", []step{
			{0, assign(pair(), active, 1), false, nil},
			{100 * ms, Tick{}, false, nil},
			{lease + 50*ms, fromPeer("dir-b", 0, 1), false, nil},
		}},
		{"a lower epoch in an answer still renews (a peer not yet told)", []step{
			{0, assign(pair(), active, 5), false, nil},
			{1 * ms, fromPeer("dir-b", 0, 4), true, nil},
		}},
		{"higher epoch from the controller: release at once until assigned at least that epoch", []step{
			{0, assign(pair(), active, 1), false, nil},
			{1 * ms, fromController(0, 1), true, nil},
			{10 * ms, fromController(0, 3), false, func(t *testing.T, m *Machine, a Actions) {
				edge(true, false)(t, m, a)
				fenced("epoch 3 seen from the controller")(t, m, a)
			}},
			{20 * ms, fromPeer("dir-b", 0, 1), false, nil},
			{30 * ms, assign(pair(), active, 2), false, fenced("epoch 3 seen from the controller")},
			{40 * ms, assign(pair(), standby, 3), false, fenced("")},
			// Assigned ACTIVE at the epoch seen: the lease (echo of 0ms) still runs.
			{50 * ms, assign(pair(), active, 3), true, edge(true, true)},
			{lease, Tick{}, false, nil},
		}},
		{"higher epoch from a peer: release at once until assigned at least that epoch", []step{
			{0, assign(pair(), active, 1), false, nil},
			{1 * ms, fromController(0, 1), true, nil},
			{10 * ms, fromPeer("dir-b", 0, 2), false, fenced("epoch 2 seen from dir-b")},
			{20 * ms, fromController(0, 1), false, nil},
			{30 * ms, assign(pair(), active, 4), true, nil},
		}},
		// A STANDBY being promoted: the controller's answers carry the new epoch before the
		// assignment arrives; they renew, so it holds as soon as it is assigned.
		{"an answer with a higher epoch renews, but holding waits for that epoch", []step{
			{0, assign(pair(), standby, 1), false, nil},
			{1 * ms, fromController(0, 2), false, nil},
			{2 * ms, assign(pair(), active, 2), true, edge(true, true)},
			{lease - 1, Tick{}, true, nil},
			{lease, Tick{}, false, fenced("no answer to heartbeats for 225ms")},
		}},
		{"an answer with a higher epoch releases an ACTIVE even as it renews", []step{
			{0, assign(pair(), active, 1), false, nil},
			{1 * ms, fromController(0, 1), true, edge(true, true)},
			{2 * ms, fromController(0, 2), false, fenced("epoch 2 seen from the controller")},
		}},
		{"Started{Held}: kept for one lease, released without answers", []step{
			{0, Started{Held: true}, false, nil},
			{0, assign(pair(), active, 1), true, edge(true, true)},
			{lease - 1, Tick{}, true, nil},
			{lease, Tick{}, false, fenced("no answer to heartbeats for 225ms")},
		}},
		{"Started{Held}: answers keep it", []step{
			{0, Started{Held: true}, false, nil},
			{0, assign(pair(), active, 1), true, nil},
			{100 * ms, Tick{}, true, nil},
			{101 * ms, fromPeer("dir-b", 100*ms, 1), true, nil},
			{lease, Tick{}, true, edge(false, false)},
			{100*ms + lease, Tick{}, false, nil},
		}},
		{"Started without addresses held grants no lease", []step{
			{0, Started{}, false, nil},
			{0, assign(pair(), active, 1), false, nil},
		}},
		{"STANDBY never holds", []step{
			{0, Started{Held: true}, false, nil},
			{0, assign(pair(), standby, 1), false, fenced("")},
			{1 * ms, fromController(0, 1), false, nil},
			{2 * ms, fromPeer("dir-b", 0, 1), false, nil},
			{3 * ms, assign(pair(), lvsctlv1.Role_ROLE_UNSPECIFIED, 1), false, nil},
		}},
		{"ACTIVE of no group holds nothing", []step{
			{0, Started{Held: true}, false, nil},
			{0, Assigned{Role: &lvsctlv1.RoleAssignment{Role: active, Epoch: 1}}, false, func(t *testing.T, m *Machine, a Actions) {
				if !m.Next().IsZero() || a.Controller != nil {
					t.Errorf("out of any group: Next() %v, heartbeat %v", m.Next(), a.Controller)
				}
			}},
		}},
		{"demoted to STANDBY: released; promoted again: taken again", []step{
			{0, assign(pair(), active, 1), false, nil},
			{1 * ms, fromController(0, 1), true, edge(true, true)},
			{2 * ms, assign(pair(), standby, 2), false, edge(true, false)},
			{3 * ms, assign(pair(), active, 3), true, edge(true, true)},
			{4 * ms, fromController(0, 3), true, edge(false, false)},
		}},
		{"group settings: Fence 1s, a lease of 975ms", []step{
			{0, assign(group(&lvsctlv1.Failover{HeartbeatIntervalMs: 100, FenceMs: 1000}, "dir-a", "dir-b"), active, 1), false, nil},
			{1 * ms, fromController(0, 1), true, nil},
			{975*ms - 1, Tick{}, true, nil},
			{975 * ms, Tick{}, false, fenced("no answer to heartbeats for 975ms")},
		}},
		{"answers from strangers do not renew", []step{
			{0, assign(pair(), active, 1), false, nil},
			{1 * ms, fromPeer("dir-c", 0, 1), false, nil}, // not in the group
			{2 * ms, func() Event {
				e := fromPeer("dir-b", 0, 1)
				e.HB.Group = "edge-2"
				return e
			}(), false, nil},
			{3 * ms, func() Event {
				e := fromPeer("dir-b", 0, 1)
				e.From = netip.MustParseAddr("10.0.0.9") // not dir-b's address
				return e
			}(), false, nil},
			{4 * ms, func() Event {
				e := fromPeer("dir-b", 0, 1)
				e.HB.Director = "dir-a" // itself
				return e
			}(), false, nil},
			{5 * ms, func() Event {
				e := fromPeer("dir-b", 0, 1)
				e.From = netip.MustParseAddr("::ffff:10.0.0.2") // dir-b, seen by a dual-stack socket
				return e
			}(), true, nil},
		}},
		{"a director without an address still counts: the group fences", []step{
			{0, assign(func() *lvsctlv1.DirectorGroup {
				g := pair()
				g.Directors[1].Address = ""
				return g
			}(), active, 1), false, func(t *testing.T, m *Machine, a Actions) {
				if len(a.Peers) != 0 || len(m.Status(t0).Peers) != 0 {
					t.Errorf("a director without address is heartbeated: %v", a.Peers)
				}
			}},
			{1 * ms, fromController(0, 1), true, nil},
			{lease, Tick{}, false, nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { run(t, New("dir-a"), tc.steps) })
	}
}

// TestPeerEchoKeepsLeaseThroughControllerOutage drives the machine like the daemon, stepping
// at every Next(): the controller answers each heartbeat after 1ms until 1s, then its stream
// goes down; dir-b answers until 5s; dir-c is down all along. The lease holds through the
// controller outage on dir-b's answers alone and ends exactly one lease after the last
// heartbeat dir-b answered (sent at 4.9s).
func TestPeerEchoKeepsLeaseThroughControllerOutage(t *testing.T) {
	m := New("dir-a")
	g := group(nil, "dir-a", "dir-b", "dir-c")
	type answer struct {
		at time.Time
		ev Event
	}
	var pending []answer
	queue := func(now time.Time, a Actions) {
		if a.Controller != nil && now.Before(t0.Add(time.Second)) {
			pending = append(pending, answer{now.Add(ms), ControllerHeartbeat{HB: &lvsctlv1.Heartbeat{Echo: a.Controller.Sent, Epoch: 7}}})
		}
		for _, o := range a.Peers {
			// dir-b replies at once to periodic heartbeats, as the machine does.
			if o.Peer == "dir-b" && !o.HB.GetReply() && now.Before(t0.Add(5*time.Second)) {
				pending = append(pending, answer{now.Add(ms), PeerHeartbeat{From: o.To.Addr(), HB: &lvsctlv1.PeerHeartbeat{
					Group: "edge-1", Director: "dir-b", Epoch: 7, Role: standby, Sent: now.UnixNano(), Echo: o.HB.Sent, Reply: true}}})
			}
		}
	}
	a := m.Step(t0, assign(g, active, 7))
	queue(t0, a)
	var takenAt, releasedAt []time.Time
	beats, lost := 1, false
	end := t0.Add(6 * time.Second)
	for now := t0; now.Before(end); {
		n := m.Next()
		var ev Event = Tick{}
		if len(pending) > 0 && !pending[0].at.After(n) {
			n, ev = pending[0].at, pending[0].ev
			pending = pending[1:]
		}
		if n.Before(now) {
			t.Fatalf("Next() %v is before the previous step %v", n, now)
		}
		now = n
		if !lost && !now.Before(t0.Add(time.Second)) {
			lost = true
			m.Step(now, ControllerLost{})
		}
		a := m.Step(now, ev)
		if a.Controller != nil {
			beats++
		}
		if a.HoldChanged && a.Hold {
			takenAt = append(takenAt, now)
		}
		if a.HoldChanged && !a.Hold {
			releasedAt = append(releasedAt, now)
		}
		queue(now, a)
	}
	if len(takenAt) != 1 || !takenAt[0].Equal(t0.Add(ms)) {
		t.Errorf("taken at %v, want once at t0+1ms", takenAt)
	}
	if want := t0.Add(4900*ms + failover.Of(g).Lease()); len(releasedAt) != 1 || !releasedAt[0].Equal(want) {
		t.Errorf("released at %v, want once at %v", releasedAt, want)
	}
	if beats != 60 {
		t.Errorf("%d heartbeat rounds in 6s at 100ms, want 60", beats)
	}
	st := m.Status(end)
	if len(st.Peers) != 2 || st.Peers[0].Reachable || st.Peers[1].Reachable || st.Holding || st.Fenced == "" {
		t.Errorf("status %v: want fenced, no peer reachable", st)
	}
}

func TestRestartedAgentRefusesPreviousProcessValues(t *testing.T) {
	old := New("dir-a")
	a := old.Step(t0, assign(pair(), active, 1))
	prev := a.Controller.Sent

	m := New("dir-a")
	start := t0.Add(2 * time.Second)
	m.Step(start, Started{})
	m.Step(start, assign(pair(), active, 1))
	for _, ev := range []Event{
		ControllerHeartbeat{HB: &lvsctlv1.Heartbeat{Echo: prev, Epoch: 1}},
		PeerHeartbeat{From: netip.MustParseAddr(addrs["dir-b"]), HB: &lvsctlv1.PeerHeartbeat{Group: "edge-1", Director: "dir-b", Epoch: 1, Echo: prev}},
	} {
		if a := m.Step(start.Add(ms), ev); a.Hold {
			t.Fatalf("%T echoing the previous process's value %d renewed the lease", ev, prev)
		}
	}
}

func TestHeartbeats(t *testing.T) {
	m := New("dir-a")
	g := group(&lvsctlv1.Failover{HeartbeatIntervalMs: 100, Port: 7999}, "dir-a", "dir-c", "dir-b")
	a := m.Step(t0, assign(g, standby, 3))
	if a.Controller == nil || !proto.Equal(a.Controller, &lvsctlv1.Heartbeat{Sent: sent(0), Epoch: 3}) {
		t.Fatalf("controller heartbeat %v", a.Controller)
	}
	wantTo := []string{"10.0.0.2:7999", "10.0.0.3:7999"}
	check := func(a Actions, echoB int64) {
		t.Helper()
		if len(a.Peers) != 2 || len(a.Probes) != 2 {
			t.Fatalf("peers %v probes %v", a.Peers, a.Probes)
		}
		for i, o := range a.Peers {
			if o.To.String() != wantTo[i] || a.Probes[i].To != o.To || a.Probes[i].Peer != o.Peer || a.Probes[i].HB != nil {
				t.Errorf("heartbeat %d to %s %v, probe %+v", i, o.Peer, o.To, a.Probes[i])
			}
			echo := int64(0)
			if o.Peer == "dir-b" {
				echo = echoB
			}
			want := &lvsctlv1.PeerHeartbeat{Group: "edge-1", Director: "dir-a", Epoch: 3, Role: standby,
				Sent: a.Controller.Sent, Echo: echo}
			if !proto.Equal(o.HB, want) {
				t.Errorf("heartbeat to %s: %v, want %v", o.Peer, o.HB, want)
			}
		}
	}
	check(a, 0)
	if n := m.Next(); !n.Equal(t0.Add(100 * ms)) {
		t.Errorf("Next() t0+%v, want t0+100ms", n.Sub(t0))
	}
	// Answers in between send nothing...
	for _, ev := range []Event{
		ControllerHeartbeat{HB: &lvsctlv1.Heartbeat{Sent: 555, Epoch: 3}},
		PeerHeartbeat{From: netip.MustParseAddr(addrs["dir-b"]), HB: &lvsctlv1.PeerHeartbeat{Group: "edge-1", Director: "dir-b", Epoch: 3, Sent: 776, Reply: true}},
		Tick{},
	} {
		if a := m.Step(t0.Add(100*ms-1), ev); a.Controller != nil || a.Peers != nil || a.Probes != nil {
			t.Fatalf("%T before the interval sent %v", ev, a)
		}
	}
	// ...but a peer's periodic heartbeat is answered at once, with a reply (never answered
	// itself) echoing it, whose sent value is remembered: its echo renews.
	a = m.Step(t0.Add(100*ms-1), PeerHeartbeat{From: netip.MustParseAddr(addrs["dir-b"]), HB: &lvsctlv1.PeerHeartbeat{Group: "edge-1", Director: "dir-b", Epoch: 3, Sent: 777}})
	if a.Controller != nil || a.Probes != nil || len(a.Peers) != 1 || a.Peers[0].Peer != "dir-b" ||
		!a.Peers[0].HB.GetReply() || a.Peers[0].HB.GetEcho() != 777 || a.Peers[0].HB.GetSent() != sent(100*ms-1) {
		t.Fatalf("answer to a periodic heartbeat: %+v", a)
	}
	a = m.Step(t0.Add(100*ms), Tick{})
	if !proto.Equal(a.Controller, &lvsctlv1.Heartbeat{Sent: sent(100 * ms), Echo: 555, Epoch: 3}) {
		t.Errorf("controller heartbeat %v", a.Controller)
	}
	check(a, 777)
}

func TestNotInAGroup(t *testing.T) {
	m := New("dir-a")
	for _, ev := range []Event{Started{Held: true}, Tick{}, ControllerHeartbeat{HB: &lvsctlv1.Heartbeat{Sent: 1, Epoch: 9}},
		Assigned{Role: &lvsctlv1.RoleAssignment{}}, ProbeAnswered{Peer: "dir-b"}, ControllerLost{}} {
		a := m.Step(t0, ev)
		if a.Hold || a.Controller != nil || a.Peers != nil || a.Probes != nil || a.Status != nil {
			t.Errorf("%T out of any group: %+v", ev, a)
		}
		if !m.Next().IsZero() {
			t.Errorf("%T: Next() %v, want zero", ev, m.Next())
		}
	}
	// Leaving the group stops everything and forgets the peers.
	m.Step(t0, assign(pair(), active, 2))
	m.Step(t0.Add(ms), fromController(0, 2))
	a := m.Step(t0.Add(2*ms), Assigned{Role: &lvsctlv1.RoleAssignment{Epoch: 3}})
	if a.Hold || !a.HoldChanged || a.Status == nil || a.Status.Group != "" || len(a.Status.Peers) != 0 || !m.Next().IsZero() {
		t.Errorf("leaving the group: %+v, Next %v", a, m.Next())
	}
}

func TestNext(t *testing.T) {
	f := &lvsctlv1.Failover{HeartbeatIntervalMs: 1000, DeadAfterMs: 300, FenceMs: 2500}
	run(t, New("dir-a"), []step{
		{0, assign(group(f, "dir-a", "dir-b"), active, 1), false, next(time.Second)},
		{10 * ms, fromPeer("dir-b", 0, 1), true, next(310 * ms)},
		{20 * ms, ProbeAnswered{Peer: "dir-b"}, true, next(310 * ms)},
		{310 * ms, Tick{}, true, next(320 * ms)},
		{320 * ms, Tick{}, true, next(time.Second)},
		{time.Second, Tick{}, true, next(2 * time.Second)},
		{2 * time.Second, Tick{}, true, next(2250 * ms)}, // the lease (2.5s less 250ms) before the next beat
		{2250 * ms, Tick{}, false, next(3 * time.Second)},
	})
	// A one-director group has no lease deadline.
	run(t, New("dir-a"), []step{
		{0, assign(group(f, "dir-a"), active, 1), true, next(time.Second)},
	})
}

func TestPeerDetection(t *testing.T) {
	status := func(want bool, check func(*testing.T, *lvsctlv1.PeerStatus)) func(*testing.T, *Machine, Actions) {
		return func(t *testing.T, _ *Machine, a Actions) {
			t.Helper()
			if (a.Status != nil) != want {
				t.Fatalf("status sent %v, want %v: %v", a.Status != nil, want, a.Status)
			}
			if a.Status != nil && check != nil {
				check(t, a.Status.Peers[0])
			}
		}
	}
	flags := func(reachable, host bool) func(*testing.T, *lvsctlv1.PeerStatus) {
		return func(t *testing.T, p *lvsctlv1.PeerStatus) {
			t.Helper()
			if p.Reachable != reachable || p.HostReachable != host {
				t.Errorf("%s reachable %v host_reachable %v, want %v %v", p.Director, p.Reachable, p.HostReachable, reachable, host)
			}
		}
	}
	// The numbers below are for a dead_after of 300ms.
	g := group(&lvsctlv1.Failover{DeadAfterMs: 300, FenceMs: 300}, "dir-a", "dir-b")
	st := func(m *Machine, at time.Duration) *lvsctlv1.PeerStatus { return m.Status(t0.Add(at)).Peers[0] }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"peer lost after DeadAfter: reachable flips and Status is sent once", []step{
			{0, assign(g, standby, 1), false, status(true, flags(false, false))},
			{10 * ms, fromPeer("dir-b", -1, 1), false, status(true, flags(true, false))},
			{110 * ms, fromPeer("dir-b", -1, 1), false, status(false, nil)}, // only heard_ago changed
			{200 * ms, Tick{}, false, status(false, nil)},
			{410*ms - 1, Tick{}, false, status(false, nil)},
			{410 * ms, Tick{}, false, status(true, flags(false, false))},
			{500 * ms, Tick{}, false, func(t *testing.T, m *Machine, a Actions) {
				status(false, nil)(t, m, a)
				if ago := st(m, 500*ms).HeardAgoMs; ago != 390 {
					t.Errorf("heard_ago_ms %d, want 390", ago)
				}
			}},
		}},
		{"agent restart: heartbeats stop, probes answered: host reachable only", []step{
			{0, assign(g, standby, 1), false, nil},
			{10 * ms, fromPeer("dir-b", -1, 1), false, status(true, flags(true, false))},
			{20 * ms, ProbeAnswered{Peer: "dir-b"}, false, status(true, flags(true, true))},
			{120 * ms, ProbeAnswered{Peer: "dir-b"}, false, status(false, nil)},
			{220 * ms, ProbeAnswered{Peer: "dir-b"}, false, status(false, nil)},
			{310 * ms, Tick{}, false, status(true, flags(false, true))},
			{320 * ms, ProbeAnswered{Peer: "dir-b"}, false, status(false, nil)},
			{620*ms - 1, Tick{}, false, status(false, nil)},
			{620 * ms, Tick{}, false, status(true, flags(false, false))},
			{630 * ms, ProbeAnswered{Peer: "nobody"}, false, status(false, nil)},
		}},
		{"probes unanswered, heartbeats arrive: agent reachable, host not", []step{
			{0, assign(g, standby, 1), false, nil},
			{10 * ms, fromPeer("dir-b", -1, 1), false, status(true, flags(true, false))},
		}},
		{"a peer's epoch, role or holding change is sent", []step{
			{0, assign(g, standby, 1), false, nil},
			{10 * ms, fromPeer("dir-b", -1, 1), false, status(true, nil)},
			{20 * ms, fromPeer("dir-b", -1, 2), false, status(true, func(t *testing.T, p *lvsctlv1.PeerStatus) {
				if p.Epoch != 2 {
					t.Errorf("epoch %d", p.Epoch)
				}
			})},
			{30 * ms, func() Event { e := fromPeer("dir-b", -1, 2); e.HB.Role = active; return e }(), false, status(true, nil)},
			{40 * ms, func() Event {
				e := fromPeer("dir-b", -1, 2)
				e.HB.Role, e.HB.Holding = active, true
				return e
			}(), false, status(true, func(t *testing.T, p *lvsctlv1.PeerStatus) {
				if p.Role != active || !p.Holding || p.HeardAgoMs != 0 {
					t.Errorf("peer %v", p)
				}
			})},
			{50 * ms, func() Event {
				e := fromPeer("dir-b", -1, 2)
				e.HB.Role, e.HB.Holding = active, true
				return e
			}(), false, status(false, nil)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { run(t, New("dir-a"), tc.steps) })
	}
}

func TestStatus(t *testing.T) {
	m := New("dir-a")
	if s := m.Status(t0); !proto.Equal(s, &lvsctlv1.RoleStatus{}) {
		t.Errorf("fresh status %v", s)
	}
	g := group(nil, "dir-c", "dir-a", "dir-b")
	m.Step(t0, assign(g, active, 4))
	m.Step(t0.Add(5*ms), fromPeer("dir-c", 0, 4))
	m.Step(t0.Add(6*ms), ProbeAnswered{Peer: "dir-b"})
	want := &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 4, Role: active, Holding: true, Peers: []*lvsctlv1.PeerStatus{
		{Director: "dir-b", HostReachable: true, HeardAgoMs: -1, ProbesAnswered: true},
		{Director: "dir-c", Reachable: true, HeardAgoMs: 45, Epoch: 4, Role: standby},
	}}
	if s := m.Status(t0.Add(50 * ms)); !proto.Equal(s, want) {
		t.Errorf("status\n got %v\nwant %v", s, want)
	}

	// Removing a director forgets it: no status entry, no heartbeat, its messages ignored.
	a := m.Step(t0.Add(60*ms), assign(group(nil, "dir-a", "dir-b"), active, 4))
	if a.Status == nil || len(a.Status.Peers) != 1 || a.Status.Peers[0].Director != "dir-b" {
		t.Fatalf("after removing dir-c: %v", a.Status)
	}
	a = m.Step(t0.Add(100*ms), fromPeer("dir-c", 100*ms, 4))
	if a.Status != nil || len(a.Peers) != 1 || a.Peers[0].Peer != "dir-b" {
		t.Errorf("removed dir-c still counts: %+v", a)
	}
	// Adding it back starts from nothing.
	a = m.Step(t0.Add(110*ms), assign(group(nil, "dir-a", "dir-b", "dir-c"), active, 4))
	if s := m.Status(t0.Add(110 * ms)); s.Peers[1].HeardAgoMs != -1 || s.Peers[1].Reachable {
		t.Errorf("re-added dir-c remembered: %v", s.Peers[1])
	}
	// A moved address is a new host.
	m.Step(t0.Add(120*ms), fromPeer("dir-b", -1, 4))
	g2 := group(nil, "dir-a", "dir-b", "dir-c")
	g2.Directors[1].Address = "10.0.0.22"
	m.Step(t0.Add(130*ms), assign(g2, active, 4))
	if s := m.Status(t0.Add(130 * ms)); s.Peers[0].Reachable || s.Peers[0].HeardAgoMs != -1 {
		t.Errorf("dir-b at a new address still reachable: %v", s.Peers[0])
	}
}

func TestConflictReportedOnceAndNotObeyed(t *testing.T) {
	holding := func(epoch uint64, h bool) PeerHeartbeat {
		e := fromPeer("dir-b", 0, epoch)
		e.HB.Role, e.HB.Holding = active, h
		return e
	}
	conflict := func(want string) func(*testing.T, *Machine, Actions) {
		return func(t *testing.T, _ *Machine, a Actions) {
			t.Helper()
			if a.Conflict != want {
				t.Errorf("Conflict %q, want %q", a.Conflict, want)
			}
		}
	}
	run(t, New("dir-a"), []step{
		{0, assign(pair(), active, 2), false, nil},
		{1 * ms, fromController(0, 2), true, conflict("")},
		{2 * ms, holding(1, true), true, conflict("")}, // an old ACTIVE not yet told: it releases on our heartbeat
		{3 * ms, holding(2, true), true, conflict("dir-b")},
		{4 * ms, holding(2, true), true, conflict("")},
		{5 * ms, holding(2, false), true, conflict("")},
		{6 * ms, holding(2, true), true, conflict("dir-b")},
	})
	// Fenced (no answers yet), still ACTIVE at that epoch: the claim is as wrong.
	run(t, New("dir-a"), []step{
		{0, assign(pair(), active, 2), false, nil},
		{1 * ms, func() Event { e := holding(2, true); e.HB.Echo = 0; return e }(), false, conflict("dir-b")},
	})
	// A STANDBY sees the ACTIVE hold: that is the normal case.
	run(t, New("dir-a"), []step{
		{0, assign(pair(), standby, 2), false, nil},
		{1 * ms, holding(2, true), false, conflict("")},
	})
}

// TestWaitsForTheOldActiveToRelease: a new ACTIVE that still hears the old one holding under
// a lower epoch (the controller decided on a report that was stale by then) holds only once
// the old one says it released, which the new epoch in our heartbeats makes it do.
func TestWaitsForTheOldActiveToRelease(t *testing.T) {
	old := func(h bool) PeerHeartbeat {
		e := fromPeer("dir-b", 0, 1)
		e.HB.Role, e.HB.Holding = active, h
		return e
	}
	m := New("dir-a")
	run(t, m, []step{
		{0, assign(pair(), standby, 1), false, nil},
		{1 * ms, old(true), false, nil},
		{2 * ms, fromController(0, 2), false, nil},
		{3 * ms, assign(pair(), active, 2), false, fenced("waiting for dir-b to release (it holds under epoch 1)")},
		{4 * ms, old(false), true, edge(true, true)},
	})
	// Told at once: the assignment sends a heartbeat round without waiting for the interval.
	m2 := New("dir-a")
	m2.Step(t0, assign(pair(), standby, 1))
	if a := m2.Step(t0.Add(time.Millisecond), assign(pair(), active, 2)); len(a.Peers) != 1 || a.Peers[0].HB.GetEpoch() != 2 {
		t.Errorf("no heartbeat under the new epoch at once: %+v", a.Peers)
	}
	// Holding already, an old ACTIVE coming back (its agent restarted, claiming its old epoch)
	// does not make us release: it releases on our heartbeat.
	run(t, m, []step{
		{5 * ms, old(true), true, nil},
		{6 * ms, Tick{}, true, nil},
	})
	// An old ACTIVE silent for a fence time is no reason to wait.
	m3 := New("dir-a")
	run(t, m3, []step{
		{0, assign(pair(), standby, 1), false, nil},
		{1 * ms, old(true), false, nil},
		{2 * ms, fromController(0, 2), false, nil},
		{400 * ms, assign(pair(), active, 2), false, fenced("no answer to heartbeats for 225ms")},
		{401 * ms, fromController(400*ms, 2), true, edge(true, true)},
	})
}

// BenchmarkStep measures one heartbeat round of a three-director group: a Tick that sends
// heartbeats and probes, and two peer answers.
func BenchmarkStep(b *testing.B) {
	m := New("dir-a")
	now := t0
	a := m.Step(now, assign(group(nil, "dir-a", "dir-b", "dir-c"), active, 1))
	b.ReportAllocs()
	for b.Loop() {
		for _, o := range a.Peers {
			m.Step(now.Add(ms), PeerHeartbeat{From: o.To.Addr(), HB: &lvsctlv1.PeerHeartbeat{
				Group: "edge-1", Director: o.Peer, Epoch: 1, Role: standby, Sent: now.UnixNano(), Echo: o.HB.Sent}})
		}
		now = now.Add(100 * ms)
		a = m.Step(now, Tick{})
	}
}

// TestProbesAnsweredOutlivesTheHost: once a peer's host answered, a host that stops answering
// is reported unreachable with probes_answered still set (the controller then trusts the
// "host unreachable"); a peer never answering is reported without it (ICMP filtered?).
func TestProbesAnsweredOutlivesTheHost(t *testing.T) {
	m := New("dir-a")
	m.Step(t0, assign(pair(), standby, 1))
	if p := m.Status(t0).Peers[0]; p.GetProbesAnswered() || p.GetHostReachable() {
		t.Fatalf("before any answer: %v", p)
	}
	m.Step(t0.Add(10*ms), ProbeAnswered{Peer: "dir-b"})
	m.Step(t0.Add(400*ms), Tick{})
	if p := m.Status(t0.Add(400 * ms)).Peers[0]; !p.GetProbesAnswered() || p.GetHostReachable() {
		t.Errorf("host silent for more than dead_after: %v, want host unreachable, probes answered", p)
	}
}

// TestSeenEpochReported: a director fenced by a higher epoch says which, so a controller that
// announced that epoch and restarted before storing it can store it.
func TestSeenEpochReported(t *testing.T) {
	m := New("dir-a")
	m.Step(t0, assign(pair(), active, 5))
	if s := m.Status(t0); s.GetSeenEpoch() != 0 {
		t.Fatalf("seen epoch %d before any higher one", s.GetSeenEpoch())
	}
	a := m.Step(t0.Add(ms), fromController(0, 11))
	if a.Status.GetSeenEpoch() != 11 || a.Status.GetHolding() {
		t.Errorf("status %v, want seen_epoch 11, not holding", a.Status)
	}
	m.Step(t0.Add(2*ms), assign(pair(), active, 11))
	if s := m.Status(t0.Add(2 * ms)); s.GetSeenEpoch() != 0 {
		t.Errorf("seen epoch %d once assigned it", s.GetSeenEpoch())
	}
}

// TestTakeoverWaitsForTheFence: a STANDBY promoted by a takeover holds nothing before the
// controller's fence (NotBefore) nor, on its own knowledge, before Fence after it last heard
// the old ACTIVE holding; a later NotBefore for the same assignment extends the wait, an
// earlier one does not shorten it, and a new assignment replaces it.
func TestTakeoverWaitsForTheFence(t *testing.T) {
	fence := failover.Of(pair()).Fence // 250ms
	oldHolding := func() PeerHeartbeat {
		e := fromPeer("dir-b", -1, 1)
		e.HB.Role, e.HB.Holding = active, true
		return e
	}
	promoted := func(notBefore time.Duration) Assigned {
		a := assign(pair(), active, 2)
		a.NotBefore = t0.Add(notBefore)
		return a
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"NotBefore: nothing held before it, held at it", []step{
			{0, assign(pair(), standby, 1), false, nil},
			{10 * ms, fromController(0, 2), false, nil},
			{20 * ms, promoted(150 * ms), false, fenced("waiting for the lost ACTIVE's fence time, 130ms more")},
			{120 * ms, Tick{}, false, next(150 * ms)}, // after the heartbeat round at 120ms
			{150*ms - 1, Tick{}, false, nil},
			{150 * ms, Tick{}, true, edge(true, true)},
		}},
		{"a later NotBefore for the same assignment extends the wait, an earlier one does not shorten it", []step{
			{0, assign(pair(), standby, 1), false, nil},
			{10 * ms, fromController(0, 2), false, nil},
			{20 * ms, promoted(100 * ms), false, nil},
			{30 * ms, promoted(180 * ms), false, nil},
			{40 * ms, promoted(50 * ms), false, nil},
			{120 * ms, Tick{}, false, next(180 * ms)},
			{180*ms - 1, Tick{}, false, nil},
			{180 * ms, Tick{}, true, nil},
		}},
		{"a new assignment replaces the wait", []step{
			{0, assign(pair(), standby, 1), false, nil},
			{10 * ms, fromController(0, 3), false, nil},
			{20 * ms, promoted(200 * ms), false, nil},
			{30 * ms, assign(pair(), active, 3), true, edge(true, true)},
		}},
		{"Fence after the old ACTIVE was last heard holding, without the controller's word", []step{
			{0, assign(pair(), standby, 1), false, nil},
			{5 * ms, oldHolding(), false, nil},
			{10 * ms, fromController(0, 2), false, nil},
			// dir-b unreachable since 205ms: no release to wait for, its lease to outwait.
			{220 * ms, assign(pair(), active, 2), false, func(t *testing.T, m *Machine, a Actions) {
				fenced("waiting for dir-b's lease to run out, 35ms more (it was last heard holding under epoch 1)")(t, m, a)
				next(5*ms+fence)(t, m, a)
			}},
			{221 * ms, fromController(220*ms, 2), false, nil},
			{5*ms + fence - 1, Tick{}, false, nil},
			{5*ms + fence, Tick{}, true, edge(true, true)},
		}},
		{"an old ACTIVE last heard released is no reason to wait", []step{
			{0, assign(pair(), standby, 1), false, nil},
			{5 * ms, fromPeer("dir-b", -1, 1), false, nil},
			{10 * ms, fromController(0, 2), false, nil},
			{220 * ms, fromController(200*ms, 2), false, nil},
			{221 * ms, assign(pair(), active, 2), true, nil},
		}},
		{"holding already: a NotBefore changes nothing", []step{
			{0, assign(pair(), active, 2), false, nil},
			{1 * ms, fromController(0, 2), true, nil},
			{2 * ms, promoted(200 * ms), true, edge(false, false)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { run(t, New("dir-a"), tc.steps) })
	}
}

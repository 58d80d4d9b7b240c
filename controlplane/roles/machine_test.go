package roles

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The tests drive a Machine with a fake clock the way the Manager does: events at scripted
// times, and a Tick whenever the machine's Next comes before the next event.

var t0 = time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)

const (
	ms = time.Millisecond
	a  = "dir-a" // priority 200, ACTIVE at the start
	b  = "dir-b" // priority 100
	c  = "dir-c" // priority 50
)

var priorities = map[string]uint32{a: 200, b: 100, c: 50}

func grp(f *lvsctlv1.Failover, names ...string) *lvsctlv1.DirectorGroup {
	if f == nil {
		// The tables' timelines are written for heartbeats every 100 ms, dead after 200 ms,
		// fence 250 ms: pinned, so that a change of the defaults does not rewrite them.
		f = &lvsctlv1.Failover{HeartbeatIntervalMs: 100, DeadAfterMs: 200, FenceMs: 250}
	}
	g := &lvsctlv1.DirectorGroup{Name: "edge-1", Failover: f}
	for i, n := range names {
		g.Directors = append(g.Directors, &lvsctlv1.Director{Name: n, Priority: priorities[n], Address: "192.0.2." + string(rune('1'+i))})
	}
	return g
}

// start is the stored assignment every test begins with: dir-a ACTIVE at epoch 5, read at
// store revision 10.
func start(g *lvsctlv1.DirectorGroup) timed {
	return timed{0, Configured{Group: g, Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: a, Epoch: 5, Reason: ReasonInitial}, Revision: 10}}
}

type timed struct {
	at time.Duration
	ev Event
}

// every is a director's heartbeats, every 100 ms from from to to (both included).
func every(d string, from, to time.Duration) []timed {
	var out []timed
	for t := from; t <= to; t += 100 * ms {
		out = append(out, timed{t, Heard{Director: d}})
	}
	return out
}

// lostPeer is a report's entry for a peer whose heartbeats and host are both lost, last
// heard agoMs before the report (-1: never).
func lostPeer(d string, agoMs int64) *lvsctlv1.PeerStatus {
	return &lvsctlv1.PeerStatus{Director: d, HeardAgoMs: agoMs, ProbesAnswered: true}
}

func report(at time.Duration, from string, epoch uint64, holding bool, peers ...*lvsctlv1.PeerStatus) timed {
	return timed{at, Reported{Director: from, Status: &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: epoch, Holding: holding, Peers: peers}}}
}

type rec struct {
	at    time.Duration
	write *lvsctlv1.GroupRoles
}

type sim struct {
	t       *testing.T
	m       *Machine
	now     time.Duration
	ack     bool // a store that answers every Write with success at once
	writes  []rec
	replies []Reply
	epochs  []uint64 // Epoch after every step
}

func newSim(t *testing.T, ack bool) *sim {
	return &sim{t: t, m: New("edge-1"), ack: ack}
}

// at steps ev at time at, after the Ticks the machine asked for before it.
func (s *sim) at(at time.Duration, ev Event) Actions {
	s.t.Helper()
	for range 100000 { // hang guard
		n := s.m.Next()
		if n.IsZero() || !n.Before(t0.Add(at)) {
			return s.do(at, ev)
		}
		s.do(n.Sub(t0), Tick{})
	}
	s.t.Fatalf("Next never reached %v", at)
	return Actions{}
}

func (s *sim) do(at time.Duration, ev Event) Actions {
	s.t.Helper()
	if at < s.now {
		s.t.Fatalf("event at %v before the clock's %v", at, s.now)
	}
	s.now = at
	acts := s.m.Step(t0.Add(at), ev)
	if e := s.m.Epoch(); len(s.epochs) > 0 && e < s.epochs[len(s.epochs)-1] {
		s.t.Errorf("at %v: Epoch went down from %d to %d", at, s.epochs[len(s.epochs)-1], e)
	}
	s.epochs = append(s.epochs, s.m.Epoch())
	s.replies = append(s.replies, acts.Replies...)
	if acts.Write != nil {
		s.writes = append(s.writes, rec{at, proto.CloneOf(acts.Write)})
		if acts.Write.GetEpoch() != s.m.Epoch() {
			s.t.Errorf("at %v: writing epoch %d while Epoch() says %d", at, acts.Write.GetEpoch(), s.m.Epoch())
		}
		if s.ack {
			s.do(at, Written{Roles: acts.Write})
		}
	}
	return acts
}

func (s *sim) run(evs ...[]timed) {
	s.t.Helper()
	var all []timed
	for _, e := range evs {
		all = append(all, e...)
	}
	slices.SortStableFunc(all, func(x, y timed) int { return int(x.at - y.at) })
	for _, e := range all {
		s.at(e.at, e.ev)
	}
}

func one(e ...timed) []timed { return e }

func roles(active string, epoch uint64, reason, previous string) *lvsctlv1.GroupRoles {
	return &lvsctlv1.GroupRoles{Group: "edge-1", Active: active, Epoch: epoch, Reason: reason, Previous: previous}
}

// fenced is r with the fence of a takeover ending at t0+until.
func fenced(r *lvsctlv1.GroupRoles, until time.Duration) *lvsctlv1.GroupRoles {
	r.FenceUntilUnixMs = t0.Add(until).UnixMilli()
	return r
}

func handoverRoles(to string, epoch uint64, reason, previous string) *lvsctlv1.GroupRoles {
	return &lvsctlv1.GroupRoles{Group: "edge-1", HandoverTo: to, Epoch: epoch, Reason: reason, Previous: previous}
}

func TestTakeover(t *testing.T) {
	two, three := grp(nil, a, b), grp(nil, a, b, c)
	slow := grp(&lvsctlv1.Failover{DeadAfterMs: 500, FenceMs: 100}, a, b)
	restart := grp(&lvsctlv1.Failover{DeadAfterMs: 500, FenceMs: 300}, a, b)
	reachable := func(d string, ago int64) *lvsctlv1.PeerStatus {
		return &lvsctlv1.PeerStatus{Director: d, Reachable: true, HostReachable: true, HeardAgoMs: ago}
	}
	hostUp := func(d string, ago int64) *lvsctlv1.PeerStatus {
		return &lvsctlv1.PeerStatus{Director: d, HostReachable: true, HeardAgoMs: ago}
	}
	aDies := one(timed{1050 * ms, Disconnected{Director: a}})
	for _, tc := range []struct {
		name   string
		events [][]timed
		want   *lvsctlv1.GroupRoles // nil: no write up to 5 s
		wantAt time.Duration
		// blocked is in Blocked() at 5 s when nothing is written.
		blocked string
	}{{
		name: "decided once the loss is agreed, fenced until the STANDBY's time + fence",
		// The controller last heard dir-a at 1000, dir-b at 1200-150 = 1050; fence 250.
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, lostPeer(a, 150)))},
		want: fenced(roles(b, 11, ReasonTakeover, a), 1300*ms), wantAt: 1200 * ms,
	}, {
		name: "the controller heard dir-a last: fenced until its time + fence",
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, lostPeer(a, 500)))},
		want: fenced(roles(b, 11, ReasonTakeover, a), 1250*ms), wantAt: 1200 * ms,
	}, {
		name: "dir-a silent without a disconnect: lost only dead_after after it was last heard",
		// Fence passed at 1050+100; dir-a is lost at 1000+500: no fence left to wait for.
		events: [][]timed{one(start(slow)), every(a, 0, 1000*ms), every(b, 0, 5000*ms),
			one(report(1100*ms, b, 5, false, lostPeer(a, 50)))},
		want: roles(b, 11, ReasonTakeover, a), wantAt: 1500 * ms,
	}, {
		name: "the STANDBY never heard dir-a: fenced until its report's arrival + fence",
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, lostPeer(a, -1)))},
		want: fenced(roles(b, 11, ReasonTakeover, a), 1450*ms), wantAt: 1200 * ms,
	}, {
		name: "three directors: decided on the last report, the latest heard counts, the higher priority is promoted",
		events: [][]timed{one(start(three)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), every(c, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, lostPeer(a, 150), lostPeer(c, 10))),
			one(report(1250*ms, c, 5, false, lostPeer(a, 50), lostPeer(b, 10)))},
		want: fenced(roles(b, 11, ReasonTakeover, a), 1450*ms), wantAt: 1250 * ms,
	}, {
		name: "a restarted controller loses nobody before dead_after",
		// dir-a is never heard; dir-b last heard it long ago. Its fence (from the start) passed
		// at 300, but the controller gives everyone dead_after (500) to connect.
		events: [][]timed{one(start(restart)), every(b, 0, 5000*ms),
			one(report(10*ms, b, 5, false, lostPeer(a, 5000)))},
		want: roles(b, 11, ReasonTakeover, a), wantAt: 500 * ms,
	}, {
		name: "dir-a's host never answered the STANDBY's probes (ICMP filtered)",
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, &lvsctlv1.PeerStatus{Director: a, HeardAgoMs: 150}))},
		blocked: "its host never answered dir-b's probes",
	}, {
		name: "the STANDBY still hears dir-a",
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, reachable(a, 20)))},
		blocked: "dir-b still hears it",
	}, {
		name: "partition between the controller and dir-a only",
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms),
			one(report(100*ms, b, 5, false, reachable(a, 20)))},
		blocked: "dir-b still hears it",
	}, {
		name: "dir-a's host answers probes (agent killed on a live host)",
		events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1400*ms, b, 5, false, hostUp(a, 400)))},
		blocked: "its host answers dir-b's probes",
	}, {
		name: "a third director the controller never heard",
		events: [][]timed{one(start(three)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, lostPeer(a, 150)))},
		blocked: "dir-c is not connected",
	}, {
		name: "a third director still hears dir-a",
		events: [][]timed{one(start(three)), every(a, 0, 1000*ms), every(b, 0, 5000*ms), every(c, 0, 5000*ms), aDies,
			one(report(1200*ms, b, 5, false, lostPeer(a, 150))),
			one(report(1200*ms, c, 5, false, reachable(a, 20)))},
		blocked: "dir-c still hears it",
	}, {
		name: "the STANDBY reconnected and has not reported since",
		// dir-a silent from 1000 (no disconnect) is lost at 1500, after dir-b reconnected.
		events: [][]timed{one(start(slow)), every(a, 0, 1000*ms), every(b, 0, 1250*ms), every(b, 1400*ms, 5000*ms),
			one(report(1200*ms, b, 5, false, lostPeer(a, 150))), one(timed{1260 * ms, Disconnected{Director: b}})},
		blocked: "dir-b has not reported on it",
	}, {
		name:    "a one-director group",
		events:  [][]timed{one(start(grp(nil, a))), every(a, 0, 1000*ms), aDies},
		blocked: "the group's only director",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, false)
			evs := append(slices.Clone(tc.events), one(timed{5000 * ms, Tick{}}))
			if tc.want != nil {
				// The machine is asked 1 ns before the takeover is due, whatever Next says.
				evs = append(evs, one(timed{tc.wantAt - 1, Tick{}}))
			}
			s.run(evs...)
			if tc.want == nil {
				if len(s.writes) != 0 {
					t.Fatalf("wrote %v at %v; want no takeover", s.writes[0].write, s.writes[0].at)
				}
				if got := s.m.Blocked(); !strings.Contains(got, tc.blocked) {
					t.Errorf("Blocked() = %q, want it to contain %q", got, tc.blocked)
				}
				return
			}
			if len(s.writes) != 1 {
				t.Fatalf("writes: %v, want exactly one", s.writes)
			}
			if w := s.writes[0]; w.at != tc.wantAt || !proto.Equal(w.write, tc.want) {
				t.Errorf("wrote %v at %v, want %v at %v", w.write, w.at, tc.want, tc.wantAt)
			}
			if got := s.m.Epoch(); got != tc.want.GetEpoch() {
				t.Errorf("Epoch() = %d before the write is stored, want %d", got, tc.want.GetEpoch())
			}
			if got := s.m.Roles().GetActive(); got != a {
				t.Errorf("stored ACTIVE %q before Written, want %q", got, a)
			}
		})
	}
}

// aLost is the common takeover: dir-a gone at 1050, dir-b agrees, due at 1350; dir-b
// heartbeats until bUntil.
func aLost(g *lvsctlv1.DirectorGroup, bUntil time.Duration) [][]timed {
	return [][]timed{one(start(g)), every(a, 0, 1000*ms), every(b, 0, bUntil), one(timed{bUntil, Tick{}}),
		one(timed{1050 * ms, Disconnected{Director: a}}), one(report(1200*ms, b, 5, false, lostPeer(a, 150)))}
}

func TestEpochs(t *testing.T) {
	for _, tc := range []struct {
		name         string
		stored       uint64
		rev          int64
		want         uint64
		configuredAt int64 // a later Configured with the same roles at this revision (0: none)
	}{
		{name: "revision above the epoch", stored: 5, rev: 10, want: 11},
		{name: "epoch above the revision", stored: 20, rev: 10, want: 21},
		{name: "a later revision counts", stored: 5, rev: 10, configuredAt: 30, want: 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, true)
			g := grp(nil, a, b)
			r := &lvsctlv1.GroupRoles{Group: "edge-1", Active: a, Epoch: tc.stored}
			evs := [][]timed{one(timed{0, Configured{Group: g, Roles: r, Revision: tc.rev}}), every(a, 0, 1000*ms), every(b, 0, 3000*ms),
				one(timed{1050 * ms, Disconnected{Director: a}}), one(report(1200*ms, b, tc.stored, false, lostPeer(a, 150)))}
			if tc.configuredAt != 0 {
				evs = append(evs, one(timed{500 * ms, Configured{Group: g, Roles: r, Revision: tc.configuredAt}}))
			}
			s.run(evs...)
			if len(s.writes) != 1 || s.writes[0].write.GetEpoch() != tc.want {
				t.Fatalf("writes %v, want one at epoch %d", s.writes, tc.want)
			}
			if got := s.m.Roles(); !proto.Equal(got, s.writes[0].write) {
				t.Errorf("stored %v after Written, want %v", got, s.writes[0].write)
			}
			if s.m.Epoch() != tc.want {
				t.Errorf("Epoch() = %d, want %d", s.m.Epoch(), tc.want)
			}
		})
	}
}

func TestWriteFailure(t *testing.T) {
	errStore := errors.New("etcd unavailable")
	t.Run("retried with a fresh decision", func(t *testing.T) {
		s := newSim(t, false)
		s.run(aLost(grp(nil, a, b), 1350*ms)...)
		if len(s.writes) != 1 {
			t.Fatalf("writes %v, want the takeover", s.writes)
		}
		w := s.writes[0]
		if acts := s.at(1360*ms, Written{Roles: w.write, Err: errStore}); acts.Write != nil {
			t.Fatalf("wrote again in the failure's own step: %v", acts.Write)
		}
		if got := s.m.Epoch(); got != w.write.GetEpoch() {
			t.Errorf("Epoch() = %d after the failure, want the announced %d kept", got, w.write.GetEpoch())
		}
		if got := s.m.Roles().GetActive(); got != a {
			t.Errorf("stored ACTIVE %q after a failed write, want %q", got, a)
		}
		s.run(every(b, 1400*ms, 2000*ms), one(timed{2000 * ms, Tick{}}))
		if len(s.writes) != 2 {
			t.Fatalf("writes %v, want the takeover again", s.writes)
		}
		// The same assignment, its fence (1300ms) over by then.
		again := proto.CloneOf(w.write)
		again.FenceUntilUnixMs = 0
		if r := s.writes[1]; r.at <= 1360*ms || !proto.Equal(r.write, again) {
			t.Errorf("retried %v at %v, want %v after 1360ms", r.write, r.at, again)
		}
	})
	t.Run("the ACTIVE came back: the announced epoch is still written", func(t *testing.T) {
		// dir-a may have seen epoch 11 in a heartbeat answer and released: it waits for an
		// assignment at least that high, so the stored one is written again under it.
		s := newSim(t, false)
		s.run(aLost(grp(nil, a, b), 1350*ms)...)
		w := s.writes[0]
		s.run(every(a, 1355*ms, 1455*ms), every(b, 1400*ms, 1500*ms),
			one(report(1356*ms, b, 5, false, &lvsctlv1.PeerStatus{Director: a, Reachable: true, HostReachable: true})),
			one(timed{1360 * ms, Written{Roles: w.write, Err: errStore}}), one(timed{1500 * ms, Tick{}}))
		if len(s.writes) != 2 {
			t.Fatalf("writes %v, want the stored assignment again", s.writes)
		}
		want := roles(a, w.write.GetEpoch(), ReasonInitial, "")
		if got := s.writes[1].write; !proto.Equal(got, want) {
			t.Errorf("wrote %v, want %v", got, want)
		}
	})
}

func TestAdoptStored(t *testing.T) {
	g := grp(nil, a, b)
	t.Run("another writer's assignment", func(t *testing.T) {
		s := newSim(t, true)
		other := roles(b, 40, ReasonFailover, a)
		s.run(one(start(g)), every(a, 0, 1000*ms), every(b, 0, 1000*ms), one(timed{500 * ms, Configured{Group: g, Roles: other, Revision: 39}}))
		if !proto.Equal(s.m.Roles(), other) || s.m.Epoch() != 40 || len(s.writes) != 0 {
			t.Errorf("Roles %v, Epoch %d, writes %v; want %v adopted, 40, none", s.m.Roles(), s.m.Epoch(), s.writes, other)
		}
		stale := roles(a, 12, ReasonInitial, "")
		s.run(one(timed{1100 * ms, Configured{Group: g, Roles: stale, Revision: 12}}))
		if !proto.Equal(s.m.Roles(), other) {
			t.Errorf("a stale read at epoch 12 replaced %v: %v", other, s.m.Roles())
		}
	})
	t.Run("while our write is in flight", func(t *testing.T) {
		s := newSim(t, false)
		s.run(aLost(g, 1350*ms)...)
		ours := s.writes[0].write // epoch 11
		// An operator's write landed first (epoch 11 too: the same revision was known), so
		// ours fails its compare-and-swap.
		theirs := roles(b, 11, ReasonFailover, a)
		s.run(every(b, 1400*ms, 2000*ms), one(timed{1355 * ms, Configured{Group: g, Roles: theirs, Revision: 11}}),
			one(timed{1360 * ms, Written{Roles: ours, Err: errors.New("compare failed")}}), one(timed{2000 * ms, Tick{}}))
		if !proto.Equal(s.m.Roles(), theirs) || len(s.writes) != 1 {
			t.Errorf("Roles %v, writes %v: want theirs adopted and nothing more written", s.m.Roles(), s.writes)
		}
	})
	t.Run("a lower epoch than announced is written again", func(t *testing.T) {
		s := newSim(t, false)
		s.run(aLost(g, 1350*ms)...)
		ours := s.writes[0].write // epoch 11, announced
		theirs := roles(b, 8, ReasonFailover, a)
		s.run(every(b, 1400*ms, 2000*ms), one(timed{1355 * ms, Configured{Group: g, Roles: theirs, Revision: 10}}),
			one(timed{1360 * ms, Written{Roles: ours, Err: errors.New("compare failed")}}), one(timed{2000 * ms, Tick{}}))
		if want := roles(b, 11, ReasonFailover, a); len(s.writes) != 2 || !proto.Equal(s.writes[1].write, want) {
			t.Fatalf("writes %v: want %v second", s.writes, want)
		}
	})
}

// handoverStart runs the group's directors connected and reporting until the request at 1 s.
func handoverStart(g *lvsctlv1.DirectorGroup, to string) [][]timed {
	evs := [][]timed{one(start(g)), beats(g, 0, 1000*ms)}
	for _, d := range g.GetDirectors() {
		evs = append(evs, one(report(50*ms, d.GetName(), 5, d.GetName() == a)))
	}
	return append(evs, one(timed{1000 * ms, FailoverRequested{ID: 7, To: to}}))
}

// beats are the heartbeats of every director of g (but the excluded ones) from from to to.
func beats(g *lvsctlv1.DirectorGroup, from, to time.Duration, except ...string) []timed {
	var out []timed
	for _, d := range g.GetDirectors() {
		if !slices.Contains(except, d.GetName()) {
			out = append(out, every(d.GetName(), from, to)...)
		}
	}
	return out
}

func TestHandover(t *testing.T) {
	for _, tc := range []struct {
		name   string
		g      *lvsctlv1.DirectorGroup
		to     string
		wantTo string
	}{
		{name: "to a named director", g: grp(nil, a, b, c), to: c, wantTo: c},
		{name: "to the best STANDBY", g: grp(nil, a, b, c), wantTo: b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, true)
			s.run(handoverStart(tc.g, tc.to)...)
			e1 := handoverRoles(tc.wantTo, 11, ReasonFailover, a)
			if len(s.writes) != 1 || !proto.Equal(s.writes[0].write, e1) || s.writes[0].at != 1000*ms {
				t.Fatalf("writes %v, want %v at 1s", s.writes, e1)
			}
			// Nothing moves before dir-a says it released under epoch 11: an old epoch's
			// report, or one still holding, does not count.
			s.run(beats(tc.g, 1100*ms, 1500*ms), one(report(1010*ms, a, 5, false)), one(report(1020*ms, a, 11, true)), one(timed{1500 * ms, Tick{}}))
			if len(s.writes) != 1 || len(s.replies) != 0 {
				t.Fatalf("writes %v, replies %v before dir-a released", s.writes, s.replies)
			}
			if !strings.Contains(s.m.Blocked(), "waits for dir-a to release") {
				t.Errorf("Blocked() = %q", s.m.Blocked())
			}
			s.run(one(report(1540*ms, a, 11, false)))
			e2 := roles(tc.wantTo, 12, ReasonFailover, a)
			if len(s.writes) != 2 || !proto.Equal(s.writes[1].write, e2) || s.writes[1].at != 1540*ms {
				t.Fatalf("writes %v, want %v at 1540ms", s.writes, e2)
			}
			want := &lvsctlv1.FailoverResponse{Roles: e2, Previous: a, ReleasedAfterMs: 540}
			if len(s.replies) != 1 || s.replies[0].ID != 7 || s.replies[0].Err != nil || !proto.Equal(s.replies[0].Resp, want) {
				t.Errorf("replies %v, want one: %v", s.replies, want)
			}
		})
	}
}

func TestHandoverErrors(t *testing.T) {
	two := grp(nil, a, b)
	for _, tc := range []struct {
		name   string
		events [][]timed
		req    FailoverRequested
		want   error
	}{
		{name: "unknown group", events: nil, req: FailoverRequested{ID: 1, To: b}, want: ErrUnknownGroup},
		{name: "deleted group", events: [][]timed{one(start(two)), one(timed{10 * ms, Configured{}})}, req: FailoverRequested{ID: 1, To: b}, want: ErrUnknownGroup},
		{name: "unknown director", events: [][]timed{one(start(two)), every(b, 0, 1000*ms)}, req: FailoverRequested{ID: 1, To: "dir-x"}, want: ErrUnknownDirector},
		{name: "already ACTIVE", events: [][]timed{one(start(two)), every(a, 0, 1000*ms)}, req: FailoverRequested{ID: 1, To: a}, want: ErrAlreadyActive},
		{name: "target not connected", events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 500*ms)}, req: FailoverRequested{ID: 1, To: b}, want: ErrNotConnected},
		{name: "no connected STANDBY", events: [][]timed{one(start(two)), every(a, 0, 1000*ms)}, req: FailoverRequested{ID: 1}, want: ErrNoCandidate},
		{name: "one director", events: [][]timed{one(start(grp(nil, a))), every(a, 0, 1000*ms)}, req: FailoverRequested{ID: 1}, want: ErrSingleDirector},
		{name: "a handover already running", events: [][]timed{one(start(two)), every(a, 0, 1000*ms), every(b, 0, 1000*ms),
			one(timed{900 * ms, FailoverRequested{ID: 9, To: b}})}, req: FailoverRequested{ID: 1, To: b}, want: ErrHandoverRunning},
		{name: "a handover found in the store", events: [][]timed{
			one(timed{0, Configured{Group: two, Roles: handoverRoles(b, 7, ReasonFailover, a), Revision: 7}}), every(a, 0, 1000*ms), every(b, 0, 1000*ms)},
			req: FailoverRequested{ID: 1, To: b}, want: ErrHandoverRunning},
		{name: "a takeover being written", events: aLost(two, 3000*ms), req: FailoverRequested{ID: 1, To: b}, want: ErrBusy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, false)
			s.run(tc.events...)
			before := len(s.writes)
			acts := s.at(s.now+10*ms, tc.req)
			if acts.Write != nil {
				t.Errorf("wrote %v for a refused request", acts.Write)
			}
			if len(acts.Replies) != 1 || acts.Replies[0].ID != 1 || !errors.Is(acts.Replies[0].Err, tc.want) {
				t.Fatalf("replies %v, want one for request 1 with %v", acts.Replies, tc.want)
			}
			if len(s.writes) != before {
				t.Errorf("writes %v", s.writes[before:])
			}
		})
	}
}

func TestHandoverOfLostActive(t *testing.T) {
	s := newSim(t, true)
	g := grp(nil, a, b)
	// dir-a is lost at 1050 (dir-b last heard it at 1050), then the operator asks.
	s.run(append(aLost(g, 3000*ms), one(timed{1100 * ms, FailoverRequested{ID: 3, To: b}}))...)
	if len(s.writes) == 0 || !proto.Equal(s.writes[0].write, handoverRoles(b, 11, ReasonFailover, a)) {
		t.Fatalf("writes %v, want the handover first", s.writes)
	}
	// Promoted once dir-b's report agrees (1200ms), fenced until dir-a's fence time.
	e2 := fenced(roles(b, 12, ReasonFailover, a), 1300*ms)
	if len(s.writes) != 2 || s.writes[1].at != 1200*ms || !proto.Equal(s.writes[1].write, e2) {
		t.Fatalf("writes %v, want %v at 1200ms", s.writes, e2)
	}
	want := &lvsctlv1.FailoverResponse{Roles: e2, Previous: a, ReleasedAfterMs: 250}
	if len(s.replies) != 1 || s.replies[0].Err != nil || !proto.Equal(s.replies[0].Resp, want) {
		t.Errorf("replies %v, want %v", s.replies, want)
	}
}

func TestHandoverTargetLost(t *testing.T) {
	s := newSim(t, true)
	s.run(append(handoverStart(grp(nil, a, b, c), b),
		beats(grp(nil, a, b, c), 1100*ms, 1200*ms, b), one(timed{1100 * ms, Disconnected{Director: b}}), one(report(1200*ms, a, 11, false)))...)
	e2 := roles(a, 12, ReasonFailover, a)
	if len(s.writes) != 2 || !proto.Equal(s.writes[1].write, e2) {
		t.Fatalf("writes %v, want %v: the best connected director, not the lost target", s.writes, e2)
	}
	if len(s.replies) != 1 || !errors.Is(s.replies[0].Err, ErrNotConnected) || !proto.Equal(s.replies[0].Resp.GetRoles(), e2) {
		t.Errorf("replies %v, want ErrNotConnected with the roles", s.replies)
	}
}

func TestHandoverWriteFails(t *testing.T) {
	errStore := errors.New("etcd unavailable")
	s := newSim(t, false)
	s.run(handoverStart(grp(nil, a, b), b)...)
	e1 := s.writes[0].write
	s.run(beats(grp(nil, a, b), 1100*ms, 2000*ms), one(timed{1010 * ms, Written{Roles: e1, Err: errStore}}), one(timed{2000 * ms, Tick{}}))
	if len(s.replies) != 1 || !errors.Is(s.replies[0].Err, errStore) {
		t.Fatalf("replies %v, want the store's error", s.replies)
	}
	// dir-a may have seen epoch 11 and released: the stored assignment is written again under it.
	if len(s.writes) != 2 || !proto.Equal(s.writes[1].write, roles(a, 11, ReasonInitial, "")) {
		t.Errorf("writes %v, want dir-a ACTIVE again at epoch 11", s.writes)
	}
}

func TestHandoverFoundInStore(t *testing.T) {
	// A controller restarted in the middle of a handover finishes it, with nobody to answer.
	s := newSim(t, true)
	g := grp(nil, a, b)
	s.run(one(timed{0, Configured{Group: g, Roles: handoverRoles(b, 7, ReasonFailover, a), Revision: 7}}),
		every(a, 0, 1000*ms), every(b, 0, 1000*ms), one(report(200*ms, a, 7, false)))
	want := roles(b, 8, ReasonFailover, a)
	if len(s.writes) != 1 || s.writes[0].at != 200*ms || !proto.Equal(s.writes[0].write, want) || len(s.replies) != 0 {
		t.Errorf("writes %v, replies %v; want %v at 200ms and no reply", s.writes, s.replies, want)
	}
}

func TestPreempt(t *testing.T) {
	// dir-a (200) is lost and replaced by dir-b (100); it comes back at 2000, reports the
	// epoch and hears dir-b.
	// Until 5 s: less than the handover timeout (3 s) after a preemption at 2.9 s.
	back := func(s *sim, g *lvsctlv1.DirectorGroup) {
		s.run(append(aLost(g, 3000*ms), every(a, 2000*ms, 5000*ms), every(b, 3100*ms, 5000*ms),
			one(report(2000*ms, a, 11, false, &lvsctlv1.PeerStatus{Director: b, Reachable: true, HostReachable: true})),
			one(report(2000*ms, b, 11, true, &lvsctlv1.PeerStatus{Director: a, Reachable: true, HostReachable: true})),
			one(timed{2900*ms - 1, Tick{}}), one(timed{5000 * ms, Tick{}}))...)
	}
	t.Run("off", func(t *testing.T) {
		s := newSim(t, true)
		back(s, grp(nil, a, b))
		if len(s.writes) != 1 || s.m.Roles().GetActive() != b {
			t.Errorf("writes %v, ACTIVE %q; want only the takeover, dir-b kept", s.writes, s.m.Roles().GetActive())
		}
	})
	t.Run("on", func(t *testing.T) {
		s := newSim(t, true)
		back(s, grp(&lvsctlv1.Failover{Preempt: true, DeadAfterMs: 300, FenceMs: 300}, a, b))
		// dir-a heard without a break from 2000: 3 x dead_after later, a handover, at 2900.
		if len(s.writes) < 2 {
			t.Fatalf("writes %v, want a preemption", s.writes)
		}
		want := handoverRoles(a, 12, ReasonPreempt, b)
		if w := s.writes[1]; w.at != 2900*ms || !proto.Equal(w.write, want) {
			t.Errorf("wrote %v at %v, want %v at 2900ms", w.write, w.at, want)
		}
		// dir-b has not reported the release: nothing more.
		if len(s.writes) != 2 {
			t.Errorf("writes %v", s.writes[2:])
		}
		s.run(one(report(5100*ms, b, 12, false)))
		if want := roles(a, 13, ReasonPreempt, b); len(s.writes) != 3 || !proto.Equal(s.writes[2].write, want) {
			t.Errorf("writes %v, want %v last", s.writes, want)
		}
	})
	t.Run("on, but the returning director has not caught up", func(t *testing.T) {
		s := newSim(t, true)
		g := grp(&lvsctlv1.Failover{Preempt: true}, a, b)
		s.run(append(aLost(g, 3000*ms), every(a, 2000*ms, 6000*ms), every(b, 3100*ms, 6000*ms),
			one(report(2000*ms, a, 5, false, &lvsctlv1.PeerStatus{Director: b, Reachable: true, HostReachable: true})))...)
		if len(s.writes) != 1 {
			t.Errorf("writes %v, want only the takeover", s.writes)
		}
	})
}

func TestHandoverWaitsForReleaseUnderItsEpoch(t *testing.T) {
	// dir-a reported holding nothing at epoch 10 (fenced for a moment, say) before the
	// request: only a release under the handover's epoch 11 lets dir-b in.
	s := newSim(t, true)
	g := grp(nil, a, b)
	r := &lvsctlv1.GroupRoles{Group: "edge-1", Active: a, Epoch: 10}
	s.run(one(timed{0, Configured{Group: g, Roles: r, Revision: 10}}), beats(g, 0, 1500*ms),
		one(report(50*ms, a, 10, false)), one(timed{1000 * ms, FailoverRequested{ID: 1, To: b}}), one(timed{1500 * ms, Tick{}}))
	if len(s.writes) != 1 || s.writes[0].write.GetEpoch() != 11 || s.writes[0].write.GetActive() != "" {
		t.Fatalf("writes %v, want only the handover at epoch 11", s.writes)
	}
	s.run(one(report(1550*ms, a, 11, false)))
	if want := roles(b, 12, ReasonFailover, a); len(s.writes) != 2 || !proto.Equal(s.writes[1].write, want) {
		t.Errorf("writes %v, want %v last", s.writes, want)
	}
}

// TestHandoverAbandoned: an old ACTIVE that stays connected but never reports its release (a
// broken agent) gets the role back after the handover timeout: the group is never left
// without an ACTIVE, and the operator is told.
func TestHandoverAbandoned(t *testing.T) {
	s := newSim(t, true)
	g := grp(nil, a, b)
	s.run(append(handoverStart(g, b), beats(g, 1000*ms, 3999*ms), one(timed{3999 * ms, Tick{}}))...)
	// 3 s (the timeout's floor, ten 300 ms fences being less) after the handover was stored.
	if len(s.writes) != 1 || s.writes[0].write.GetActive() != "" {
		t.Fatalf("writes %v, want the handover only before the timeout", s.writes)
	}
	s.run(beats(g, 4000*ms, 4000*ms), one(timed{4000 * ms, Tick{}}))
	if want := roles(a, 12, ReasonFailover, a); len(s.writes) != 2 || !proto.Equal(s.writes[1].write, want) || s.writes[1].at != 4000*ms {
		t.Fatalf("writes %v, want %v at 4s", s.writes, want)
	}
	if len(s.replies) != 1 || !errors.Is(s.replies[0].Err, ErrNotReleased) {
		t.Errorf("replies %v, want one with ErrNotReleased", s.replies)
	}
}

func TestRemovedActiveHandover(t *testing.T) {
	// dir-a, the ACTIVE, is removed from the group at 500ms: the write path stores a handover
	// to dir-b (AfterGroupWrite). dir-b becomes ACTIVE only once dir-a surely holds nothing.
	// The times below are for dead_after and fence of 300ms.
	f := &lvsctlv1.Failover{DeadAfterMs: 300, FenceMs: 300}
	removed := func() timed {
		return timed{500 * ms, Configured{Group: grp(f, b), Roles: handoverRoles(b, 11, ReasonRemoved, a), Revision: 10}}
	}
	want := roles(b, 12, ReasonRemoved, a)
	for _, tc := range []struct {
		name   string
		evs    [][]timed
		wantAt time.Duration
	}{
		{name: "released: it reports holding=false after the handover",
			evs: [][]timed{every(a, 0, 2000*ms), one(report(400*ms, a, 5, false), report(600*ms, a, 5, true), report(700*ms, a, 5, false))},
			// The report at 400ms came before the handover: it says nothing of it.
			wantAt: 700 * ms},
		{name: "lost: its stream ends, then a fence time after it was last heard",
			evs:    [][]timed{every(a, 0, 500*ms), one(timed{550 * ms, Disconnected{Director: a}})},
			wantAt: 800 * ms},
		{name: "connected but silent about it: fence + dead_after after the handover",
			evs:    [][]timed{every(a, 0, 2000*ms)},
			wantAt: 1100 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, true)
			s.run(append(tc.evs, one(start(grp(f, a, b)), removed()), every(b, 0, 2000*ms))...)
			if len(s.writes) != 1 || s.writes[0].at != tc.wantAt || !proto.Equal(s.writes[0].write, want) {
				t.Fatalf("writes %v, want %v at %v", s.writes, want, tc.wantAt)
			}
			if got := s.m.Roles(); !proto.Equal(got, want) {
				t.Errorf("stored %v, want %v", got, want)
			}
		})
	}
}

func TestSeenEpochIsStored(t *testing.T) {
	// A previous controller announced epoch 11 for a takeover in heartbeat answers and
	// stopped before storing it; dir-a heard it, released, and waits for an assignment of at
	// least 11. This controller starts from the stored dir-a at 5: dir-a's report of the
	// epoch it saw makes it store the assignment again under 11, and dir-a holds again.
	s := newSim(t, true)
	g := grp(nil, a, b)
	seen := timed{300 * ms, Reported{Director: a, Status: &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 5, SeenEpoch: 11}}}
	s.run(one(start(g), seen), every(a, 0, 1000*ms), every(b, 0, 1000*ms))
	want := roles(a, 11, ReasonInitial, "")
	if len(s.writes) != 1 || s.writes[0].at != 300*ms || !proto.Equal(s.writes[0].write, want) {
		t.Fatalf("writes %v, want %v at 300ms", s.writes, want)
	}
	if got := s.m.Epoch(); got != 11 {
		t.Errorf("Epoch() = %d, want 11", got)
	}
}

package checker

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func tcpTarget(i int, interval time.Duration) Target {
	return Target{
		Key:  fmt.Sprintf("c/198.51.100.%d:%d", i%250+1, i),
		Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i%250 + 1)}),
		Spec: health.Spec{Kind: health.KindTCP, Port: 554, Interval: interval, Timeout: interval / 2},
	}
}

// run drives s from..to in steps, finishing every started check at once with result(e).
func run(s *sched, from, to, step time.Duration, result func(*entry) error, started func(time.Duration, *entry)) {
	for d := from; d <= to; d += step {
		now := t0.Add(d)
		start, _ := s.advance(now)
		for len(start) > 0 {
			e := start[0]
			start = start[1:]
			if started != nil {
				started(d, e)
			}
			more, _ := s.finish(now, e, result(e))
			start = append(start, more...)
		}
	}
}

func ok(*entry) error { return nil }

// 10,000 targets do not fire at once: their first checks spread evenly over the interval, and
// each is then checked exactly once per interval.
func TestSchedSpreadsTargets(t *testing.T) {
	const n, interval = 10000, 10 * time.Second
	s := newSched(n)
	targets := make([]Target, n)
	for i := range targets {
		targets[i] = tcpTarget(i, interval)
	}
	s.set(t0, targets)
	perSecond := make([]int, 31)
	perTarget := map[string]int{}
	run(s, 0, 30*time.Second, 10*time.Millisecond, ok, func(d time.Duration, e *entry) {
		perSecond[d/time.Second]++
		perTarget[e.key]++
	})
	for sec, c := range perSecond[:30] {
		// 1,000 expected per second; a hash spreads them within a few percent.
		if c < 850 || c > 1150 {
			t.Errorf("second %d: %d checks started, want about 1,000", sec, c)
		}
	}
	for key, c := range perTarget {
		if c != 3 {
			t.Fatalf("%s checked %d times in 3 intervals", key, c)
		}
	}
	if len(perTarget) != n {
		t.Errorf("%d targets checked, want %d", len(perTarget), n)
	}
}

func TestSchedIntervalAndSkip(t *testing.T) {
	s := newSched(4)
	tg := tcpTarget(1, 2*time.Second)
	s.set(t0, []Target{tg})
	ph := phase(tg.Key, 2*time.Second)

	// Nothing before the phase, one check at it.
	if start, _ := s.advance(t0.Add(ph - time.Millisecond)); len(start) != 0 && ph > 0 {
		t.Fatalf("started before its phase: %d", len(start))
	}
	start, _ := s.advance(t0.Add(ph))
	if len(start) != 1 {
		t.Fatalf("at its phase: %d started", len(start))
	}
	e := start[0]
	// Still running at the next two due times: skipped, never started twice.
	for k := 1; k <= 2; k++ {
		if again, _ := s.advance(t0.Add(ph + time.Duration(k)*2*time.Second)); len(again) != 0 {
			t.Fatalf("started again while running")
		}
	}
	if e.skipped != 2 {
		t.Errorf("skipped %d, want 2", e.skipped)
	}
	// Finished late: the next check is on its grid, not at once.
	now := t0.Add(ph + 5*time.Second)
	if more, _ := s.finish(now, e, nil); len(more) != 0 {
		t.Fatalf("finish started %d", len(more))
	}
	next, _ := s.next()
	if want := t0.Add(ph + 6*time.Second); !next.Equal(want) {
		t.Errorf("next %v, want %v (the grid)", next.Sub(t0), want.Sub(t0))
	}
	// A loop that wakes up three intervals late runs one check, not three.
	late := t0.Add(ph + 12*time.Second + time.Millisecond)
	if start, _ := s.advance(late); len(start) != 1 {
		t.Fatalf("late: %d started, want 1", len(start))
	}
	if next, _ := s.next(); !next.Equal(t0.Add(ph + 14*time.Second)) {
		t.Errorf("after a late wake-up next is %v, want %v", next.Sub(t0), ph+14*time.Second)
	}
	if e.m.Checks() != 1 || e.m.State() != Up {
		t.Errorf("checks %d, state %v", e.m.Checks(), e.m.State())
	}
}

// Targets whose last check timed out hold at most half the workers: the healthy ones always
// find one.
func TestSchedSlowLane(t *testing.T) {
	const interval = time.Second
	s := newSched(4) // at most 2 slow
	var targets []Target
	for i := range 10 {
		targets = append(targets, tcpTarget(i, interval))
	}
	s.set(t0, targets)
	hungKeys := map[string]bool{}
	for _, tg := range targets[:8] { // 8 hung, 2 healthy
		hungKeys[tg.Key] = true
	}
	hung := func(e *entry) bool { return hungKeys[e.key] }
	timeout := fmt.Errorf("read: %w", ErrTimeout)
	// First round: everyone checked once; the hung ones time out.
	run(s, 0, interval, 10*time.Millisecond, func(e *entry) error {
		if hung(e) {
			return timeout
		}
		return nil
	}, nil)
	for _, e := range s.entries {
		if e.slow != hung(e) {
			t.Fatalf("%s: slow %v", e.key, e.slow)
		}
	}
	// Second round, nothing finishes: at most 2 slow run, and both healthy ones start
	// whenever they are due.
	var running []*entry
	for d := interval; d < 2*interval; d += 10 * time.Millisecond {
		start, _ := s.advance(t0.Add(d))
		running = append(running, start...)
		if s.runningSlow > 2 || s.running > 4 {
			t.Fatalf("at %v: %d running, %d slow", d, s.running, s.runningSlow)
		}
	}
	healthy := 0
	for _, e := range running {
		if !hung(e) {
			healthy++
		}
	}
	if healthy != 2 || len(running) != 4 {
		t.Errorf("started %d checks of which %d healthy; want 4 and 2", len(running), healthy)
	}
	// A healthy one finishing frees a worker the slow queue may not take (its share is full).
	for _, e := range running {
		if !hung(e) {
			if more, _ := s.finish(t0.Add(2*interval), e, nil); len(more) != 0 {
				t.Errorf("a slow check took the healthy one's worker")
			}
			break
		}
	}
	// A slow one finishing lets the next slow one start.
	for _, e := range running {
		if hung(e) {
			if more, _ := s.finish(t0.Add(2*interval), e, timeout); len(more) != 1 || !hung(more[0]) {
				t.Errorf("after a slow check ended: started %d", len(more))
			}
			break
		}
	}
}

func TestSchedSet(t *testing.T) {
	s := newSched(8)
	a, b, c := tcpTarget(1, time.Second), tcpTarget(2, time.Second), tcpTarget(3, time.Second)
	none := Target{Key: "c/none", Addr: a.Addr, Spec: health.Spec{Kind: health.KindNone}}
	bad := Target{Key: "c/bad", Addr: a.Addr, Spec: health.Spec{Kind: health.KindRTSP}} // no port
	s.set(t0, []Target{a, b, c, none, bad})

	// none is up at the first advance and never scheduled again; bad is never scheduled.
	start, changes := s.advance(t0)
	if len(changes) != 1 || changes[0].Key != none.Key || changes[0].State != Up {
		t.Fatalf("none: changes %+v", changes)
	}
	for _, e := range start {
		if e.key == none.Key || e.key == bad.Key {
			t.Fatalf("%s started", e.key)
		}
	}
	var runningB *entry
	run(s, 0, time.Second, 10*time.Millisecond, func(e *entry) error { return errors.New("down") }, nil)
	for _, e := range s.entries {
		if e.index >= 0 && (e.key == none.Key || e.key == bad.Key) {
			t.Fatalf("%s is scheduled", e.key)
		}
	}
	if st := s.entries[bad.Key].status(); st.State != Unknown || !errors.Is(st.LastError, health.ErrInvalid) || st.Checks != 0 {
		t.Errorf("bad: %+v", st)
	}
	// b's next check is left running across the Set that removes it.
	for d := time.Second; runningB == nil; d += 10 * time.Millisecond {
		start, _ := s.advance(t0.Add(d))
		for _, e := range start {
			if e.key == b.Key {
				runningB = e
			} else {
				s.finish(t0.Add(d), e, errors.New("down"))
			}
		}
	}

	// a stays (its state kept), b goes, c changes address (a new target), d is new.
	aBefore := s.entries[a.Key].m
	c2 := c
	c2.Addr = netip.MustParseAddr("198.51.100.200")
	d := tcpTarget(4, time.Second)
	a2 := a
	a2.Spec.Fall = 10
	s.set(t0.Add(3*time.Second), []Target{a2, c2, d})
	if s.entries[a.Key].m != aBefore || aBefore.Checks() == 0 || aBefore.fall != 10 {
		t.Errorf("a lost its state or its new fall")
	}
	if _, ok := s.entries[b.Key]; ok {
		t.Errorf("b kept")
	}
	if e := s.entries[c.Key]; e.addr != c2.Addr || e.m.Checks() != 0 || e.m.State() != Unknown {
		t.Errorf("c with a new address kept its old state: %+v", e.status())
	}
	if e := s.entries[d.Key]; e.m.State() != Unknown {
		t.Errorf("d: %v", e.m.State())
	}
	// b's result arrives after its removal: discarded, its worker freed.
	running := s.running
	if _, change := s.finish(t0.Add(3*time.Second), runningB, nil); change != nil || s.running != running-1 {
		t.Errorf("removed target's result: change %+v, running %d -> %d", change, running, s.running)
	}
	seen := map[string]bool{}
	run(s, 3*time.Second, 6*time.Second, 10*time.Millisecond, ok, func(_ time.Duration, e *entry) { seen[e.key] = true })
	if seen[b.Key] || !seen[a.Key] || !seen[c.Key] || !seen[d.Key] {
		t.Errorf("checked after the second Set: %v", seen)
	}
	if s.running != 0 {
		t.Errorf("%d running at rest", s.running)
	}

	// A Down target whose spec becomes invalid is not kept out: Unknown, never probed.
	run(s, 6*time.Second, 18*time.Second, 10*time.Millisecond, func(*entry) error { return errors.New("down") }, nil) // fall 10
	if st := s.entries[a.Key].status(); st.State != Down {
		t.Fatalf("a: %v", st.State)
	}
	a3 := a
	a3.Spec.Port = 0
	s.set(t0.Add(18*time.Second), []Target{a3})
	if st := s.entries[a.Key].status(); st.State != Unknown || !errors.Is(st.LastError, health.ErrInvalid) || s.entries[a.Key].index >= 0 {
		t.Errorf("a with an invalid spec: %+v", st)
	}
}

func TestQueueCompacts(t *testing.T) {
	var q queue
	es := make([]*entry, 1000)
	for i := range es {
		es[i] = &entry{key: fmt.Sprint(i)}
	}
	// A backlog of 10 that never empties (one in, one out, for ever): the storage must stay
	// bounded and the order FIFO.
	for i := range 10 {
		q.push(es[i])
	}
	for i := 10; i < 100000; i++ {
		q.push(es[i%1000])
		if e := q.pop(); e != es[(i-10)%1000] {
			t.Fatalf("pop %d: got %v", i-10, e.key)
		}
		if cap(q.items) > 512 {
			t.Fatalf("a backlog of %d holds %d slots", len(q.items)-q.head, cap(q.items))
		}
	}
}

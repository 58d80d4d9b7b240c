package checker

import (
	"container/heap"
	"errors"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// entry is one target as the scheduler keeps it.
type entry struct {
	key     string
	addr    netip.Addr
	spec    health.Spec // defaulted
	invalid error       // the spec's validation error: never probed
	m       *Machine

	next    time.Time // when it is due, while in the heap
	index   int       // in the heap, -1 when not
	busy    bool      // queued or running
	slow    bool      // its last check timed out: it runs in the slow lane
	lane    bool      // the lane of the check running now (true: slow)
	removed bool      // dropped by set; a result still running is discarded
	skipped uint64
}

// sched is the checker's scheduling logic, with no goroutines and no clock: set, advance and
// finish are called with the time by the Checker's loop, which runs what they return.
//
// Each target is due every Interval at a phase fixed by its key; a due target is queued for a
// worker unless its previous check is still queued or running (then it is skipped). Queued
// checks start in due order as workers free up; targets whose last check timed out wait in a
// second queue and may hold at most maxSlow workers at once, so hung targets never take the
// workers of the healthy ones.
type sched struct {
	workers, maxSlow     int
	entries              map[string]*entry
	due                  entryHeap
	ready, readySlow     queue
	running, runningSlow int
}

func newSched(workers int) *sched {
	return &sched{
		workers: workers,
		maxSlow: max(1, workers/2),
		entries: make(map[string]*entry),
	}
}

// phase is where in its interval a target is checked: a hash of its key, so targets spread
// evenly over the interval, and the same target keeps its phase across Set calls.
func phase(key string, interval time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(interval))
}

// set replaces the targets: kept keys (same key and address) keep their state, new ones start
// Unknown, the others are dropped.
func (s *sched) set(now time.Time, targets []Target) {
	seen := make(map[string]bool, len(targets))
	for _, t := range targets {
		seen[t.Key] = true
		spec := t.Spec.Defaults()
		invalid := t.Spec.Validate()
		if invalid == nil && !t.Addr.IsValid() {
			invalid = &health.FieldError{Field: "address", Reason: "not an IP address"}
		}
		e := s.entries[t.Key]
		if e != nil && e.addr != t.Addr {
			s.drop(e)
			e = nil
		}
		if e == nil {
			e = &entry{key: t.Key, addr: t.Addr, index: -1, m: NewMachine(spec.Rise, spec.Fall, now)}
			s.entries[t.Key] = e
		}
		old := e.spec
		e.spec, e.invalid = spec, invalid
		e.m.SetThresholds(spec.Rise, spec.Fall)
		switch {
		case invalid != nil:
			// Never probed; Unknown still serves (a target Down under its old spec must not
			// stay out for ever), and status shows why.
			s.unschedule(e)
			if e.m.State() != Unknown {
				e.m = NewMachine(spec.Rise, spec.Fall, now)
			}
		case spec.Kind == health.KindNone:
			if e.m.State() != Up {
				s.schedule(e, now) // once: made Up by advance, never rescheduled
			} else {
				s.unschedule(e)
			}
		case e.index < 0 || old.Interval != spec.Interval || old.Kind == health.KindNone:
			s.schedule(e, now.Add(phase(e.key, spec.Interval)))
		}
	}
	for key, e := range s.entries {
		if !seen[key] {
			s.drop(e)
		}
	}
}

func (s *sched) drop(e *entry) {
	s.unschedule(e)
	e.removed = true
	delete(s.entries, e.key)
}

func (s *sched) schedule(e *entry, at time.Time) {
	e.next = at
	if e.index >= 0 {
		heap.Fix(&s.due, e.index)
	} else {
		heap.Push(&s.due, e)
	}
}

func (s *sched) unschedule(e *entry) {
	if e.index >= 0 {
		heap.Remove(&s.due, e.index)
	}
}

// advance queues every target due at now and returns the checks to start now (each marked
// running: the caller must report each to finish) and the transitions of kind none.
func (s *sched) advance(now time.Time) (start []*entry, changes []Status) {
	for len(s.due) > 0 && !s.due[0].next.After(now) {
		e := s.due[0]
		if e.spec.Kind == health.KindNone {
			heap.Pop(&s.due)
			if t := e.m.Step(now, nil); t.Changed() {
				changes = append(changes, e.status())
			}
			continue
		}
		// The next slot after now on the target's grid: a late loop skips the missed slots
		// rather than firing them in a burst.
		iv := e.spec.Interval
		e.next = e.next.Add((now.Sub(e.next)/iv + 1) * iv)
		heap.Fix(&s.due, 0)
		if e.busy {
			e.skipped++
			continue
		}
		e.busy = true
		if e.slow {
			s.readySlow.push(e)
		} else {
			s.ready.push(e)
		}
	}
	return s.dispatch(nil), changes
}

// dispatch starts queued checks while workers are free: the normal queue first, the slow one
// within its share.
func (s *sched) dispatch(start []*entry) []*entry {
	for s.running < s.workers {
		e, slow := s.ready.pop(), false
		if e == nil && s.runningSlow < s.maxSlow {
			e, slow = s.readySlow.pop(), true
		}
		if e == nil {
			break
		}
		if e.removed {
			continue
		}
		e.lane = slow
		s.running++
		if slow {
			s.runningSlow++
		}
		start = append(start, e)
	}
	return start
}

// finish records the result of a check that advance or finish started, and returns the checks
// to start now and the status if the state changed.
func (s *sched) finish(now time.Time, e *entry, result error) (start []*entry, change *Status) {
	s.running--
	if e.lane {
		s.runningSlow--
	}
	e.busy = false
	if !e.removed && e.invalid == nil && e.spec.Kind != health.KindNone {
		e.slow = errors.Is(result, ErrTimeout)
		if t := e.m.Step(now, result); t.Changed() {
			st := e.status()
			change = &st
		}
	}
	return s.dispatch(nil), change
}

// next is when the earliest target is due.
func (s *sched) next() (time.Time, bool) {
	if len(s.due) == 0 {
		return time.Time{}, false
	}
	return s.due[0].next, true
}

func (e *entry) status() Status {
	st := Status{
		Key:         e.key,
		Addr:        e.addr,
		Kind:        e.spec.Kind,
		State:       e.m.State(),
		Since:       e.m.Since(),
		LastError:   e.m.LastError(),
		Transitions: e.m.Transitions(),
		Checks:      e.m.Checks(),
		Skipped:     e.skipped,
	}
	if e.invalid != nil {
		st.LastError = e.invalid
	}
	return st
}

// entryHeap orders entries by next due time.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}

// queue is a FIFO of entries.
type queue struct {
	items []*entry
	head  int
}

func (q *queue) push(e *entry) { q.items = append(q.items, e) }

func (q *queue) pop() *entry {
	if q.head == len(q.items) {
		return nil
	}
	e := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	switch {
	case q.head == len(q.items):
		q.items, q.head = q.items[:0], 0
	case q.head > len(q.items)/2 && q.head >= 64:
		// A queue that never empties must not grow for ever.
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return e
}

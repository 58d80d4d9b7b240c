package checker

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// DefaultWorkers is the size of the checker's pool when Options.Workers is not set. Checks of
// healthy servers on a LAN take a few milliseconds: 10,000 targets at the default interval are
// 5,000 checks a second, about 10-20 busy workers; 30 hung targets at the default timeout
// keep about 15 of the slow half busy.
const DefaultWorkers = 32

// Target is one real server to check, as the agent knows it.
type Target struct {
	// Key names the target, stable across Set calls: "cluster/address" (with the port for
	// a real server listed twice). A key that stays keeps its state.
	Key string
	// Addr is the address probed.
	Addr netip.Addr
	// health.Spec is the check (zero fields defaulted).
	Spec health.Spec
}

// Status is a target's health as Snapshot and OnChange report it.
type Status struct {
	Key  string
	Addr netip.Addr
	Kind health.Kind
	// State and since when (the last transition, or when the target was first set).
	State State
	Since time.Time
	// LastError: see Machine.LastError; or why the target's spec is refused (the target is
	// then never probed and stays Unknown, that is serving).
	LastError error
	// Transitions, Checks: counters since the target was first set.
	Transitions uint64
	Checks      uint64
	// Skipped counts checks not run because the previous one was still queued or running
	// when the next was due (a pool too small for the hung targets).
	Skipped uint64
}

// ProbeFunc is the signature of Probe.
type ProbeFunc func(ctx context.Context, target netip.Addr, spec health.Spec) error

// Clock is the time as the Checker sees it; tests swap it.
type Clock interface {
	Now() time.Time
	// NewTimer returns a stopped-or-running timer that fires once d has passed.
	NewTimer(d time.Duration) Timer
}

// Timer is a Clock's timer, with time.Timer's semantics (Go 1.23 and later: after Reset or
// Stop no stale value is received).
type Timer interface {
	C() <-chan time.Time
	Reset(d time.Duration)
	Stop()
}

// Options configure a Checker; the zero value is usable.
type Options struct {
	// Workers is the number of checks that may run at once (DefaultWorkers if below 1).
	Workers int
	// OnChange, if set, is called with the new status of every target whose state changes,
	// in order, from Run's goroutine. It must not block: hand the status off (a buffered
	// channel, a mutex-guarded map); checks are not started while it runs.
	OnChange func(Status)
	// Probe runs one check (Probe if nil).
	Probe ProbeFunc
	// Clock (the real time if nil).
	Clock Clock
}

// Checker checks a set of targets on a fixed pool of workers: see the package documentation.
// Set and Snapshot may be called from any goroutine, before, during or after Run.
type Checker struct {
	log      *slog.Logger
	workers  int
	onChange func(Status)
	probe    ProbeFunc
	clock    Clock
	running  atomic.Bool
	wake     chan struct{}

	mu sync.Mutex
	s  *sched
}

// New returns a Checker with no targets; Run starts it.
func New(log *slog.Logger, opts Options) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Checker{
		log:      log,
		workers:  opts.Workers,
		onChange: opts.OnChange,
		probe:    opts.Probe,
		clock:    opts.Clock,
		wake:     make(chan struct{}, 1),
	}
	if c.probe == nil {
		c.probe = Probe
	}
	if c.workers < 1 {
		c.workers = DefaultWorkers
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	c.s = newSched(c.workers)
	return c
}

// Set replaces the targets: a target whose key (and address) stays keeps its state, and its
// spec changes take effect at once (a Down target stays Down until Rise successes of the new
// check); new keys start Unknown, at their phase in their interval; removed keys are dropped
// (a check of theirs still running is discarded). A target whose spec is invalid (Validate) is
// kept Unknown and never probed, its LastError says why; the same key twice: the last wins.
func (c *Checker) Set(targets []Target) {
	c.mu.Lock()
	c.s.set(c.clock.Now(), targets)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Snapshot returns every target's status, sorted by key.
func (c *Checker) Snapshot() []Status {
	c.mu.Lock()
	out := make([]Status, 0, len(c.s.entries))
	for _, e := range c.s.entries {
		out = append(out, e.status())
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

type result struct {
	e   *entry
	err error
}

type job struct {
	e    *entry
	addr netip.Addr
	spec health.Spec
}

// Run checks the targets until ctx ends, then waits for the checks running (each ends within
// its timeout, or at once since ctx ended) and returns nil. A Checker runs once.
func (c *Checker) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("health: Checker.Run called twice")
	}
	// Both channels hold a whole pool's worth: the loop never has more than c.workers
	// checks out, so neither side ever blocks on the other.
	jobs := make(chan job, c.workers)
	results := make(chan result, c.workers)
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for j := range jobs {
				results <- result{j.e, c.check(ctx, j)}
			}
		})
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()

	timer := c.clock.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time // the deadline the timer is set for, zero when stopped
	var start []*entry
	var changes []Status
	for {
		now := c.clock.Now()
		c.mu.Lock()
		s, ch := c.s.advance(now)
		start, changes = append(start, s...), append(changes, ch...)
		jobsOut := make([]job, len(start))
		for i, e := range start {
			jobsOut[i] = job{e: e, addr: e.addr, spec: e.spec}
		}
		next, ok := c.s.next()
		c.mu.Unlock()
		for _, j := range jobsOut {
			jobs <- j
		}
		c.report(changes)
		start, changes = start[:0], changes[:0]

		switch {
		case !ok:
			if !armed.IsZero() {
				timer.Stop()
				armed = time.Time{}
			}
		case !next.Equal(armed):
			timer.Reset(next.Sub(now))
			armed = next
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
			armed = time.Time{}
		case <-c.wake:
		case r := <-results:
			if ctx.Err() != nil {
				return nil // a check cut short by the end of ctx is no verdict
			}
			c.mu.Lock()
			s, change := c.s.finish(c.clock.Now(), r.e, r.err)
			c.mu.Unlock()
			start = append(start, s...)
			if change != nil {
				changes = append(changes, *change)
			}
		}
	}
}

// check runs one probe, bounded by the spec's timeout whatever the probe does with it.
func (c *Checker) check(ctx context.Context, j job) error {
	pctx, cancel := context.WithTimeout(ctx, j.spec.Timeout)
	defer cancel()
	return c.probe(pctx, j.addr, j.spec)
}

func (c *Checker) report(changes []Status) {
	for _, st := range changes {
		switch {
		case st.State == Down:
			c.log.Warn("real server down", "target", st.Key, "address", st.Addr.String(), "check", string(st.Kind), "error", st.LastError)
		case st.Transitions > 1:
			c.log.Info("real server up", "target", st.Key, "address", st.Addr.String(), "check", string(st.Kind))
		default:
			c.log.Debug("real server up (first check)", "target", st.Key, "address", st.Addr.String(), "check", string(st.Kind))
		}
		if c.onChange != nil {
			c.onChange(st)
		}
	}
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time   { return t.t.C }
func (t realTimer) Reset(d time.Duration) { t.t.Reset(d) }
func (t realTimer) Stop()                 { t.t.Stop() }

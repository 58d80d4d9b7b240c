package checker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// fleet is n RTSP servers on 127.0.0.1, each on its own port, counting the connections it
// accepted; the hung ones accept and never answer. Each has exactly one goroutine (its accept
// loop, which also answers), so the test's own goroutines do not grow with the checks.
type fleet struct {
	ports    []uint16
	accepted []atomic.Int64
	hung     []bool
}

func startFleet(t *testing.T, n int, hung func(i int) bool) *fleet {
	t.Helper()
	f := &fleet{ports: make([]uint16, n), accepted: make([]atomic.Int64, n), hung: make([]bool, n)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn // the hung servers' connections, closed at the end
	var listeners []net.Listener
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.ports[i] = portOf(t, l.Addr().String())
		f.hung[i] = hung(i)
		listeners = append(listeners, l)
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				f.accepted[i].Add(1)
				if f.hung[i] {
					mu.Lock()
					held = append(held, c)
					mu.Unlock()
					continue
				}
				answerOptions(c)
			}
		})
	}
	t.Cleanup(func() {
		for _, l := range listeners {
			l.Close()
		}
		wg.Wait()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	return f
}

func answerOptions(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	tp := textproto.NewReader(bufio.NewReader(c))
	if _, err := tp.ReadLine(); err != nil {
		return
	}
	if _, err := tp.ReadMIMEHeader(); err != nil {
		return
	}
	io.WriteString(c, "RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS\r\n\r\n")
}

func (f *fleet) targets(interval, timeout time.Duration, which func(i int) bool) []Target {
	var ts []Target
	for i, port := range f.ports {
		if which(i) {
			ts = append(ts, Target{
				Key:  fmt.Sprintf("wms/%d", i),
				Addr: localhost,
				Spec: health.Spec{Kind: health.KindRTSP, Port: port, Interval: interval, Timeout: timeout, Rise: 1, Fall: 2},
			})
		}
	}
	return ts
}

// 100 real servers of which 30 hang: every healthy one is checked at its interval, the hung
// ones go down, and the goroutine count stays flat (bounded by the pool); a Set that removes
// targets stops their checks.
func TestCheckerBoundedWithHungTargets(t *testing.T) {
	const (
		n        = 100
		interval = 500 * time.Millisecond
		timeout  = 250 * time.Millisecond
		workers  = DefaultWorkers
	)
	isHung := func(i int) bool { return i%10 < 3 } // 30 of 100
	f := startFleet(t, n, isHung)
	var changes atomic.Int64
	c := New(nil, Options{OnChange: func(Status) { changes.Add(1) }})
	c.Set(f.targets(interval, timeout, func(int) bool { return true }))

	runtime.GC()
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Six intervals, the goroutine count sampled every 50 ms.
	start := time.Now()
	var samples []int
	for time.Since(start) < 6*interval {
		time.Sleep(50 * time.Millisecond)
		samples = append(samples, runtime.NumGoroutine()-base)
	}
	elapsed := time.Since(start)
	counts := make([]int64, n)
	for i := range counts {
		counts[i] = f.accepted[i].Load()
	}
	t.Logf("goroutines above the %d before Run, every 50 ms: %v", base, samples)

	// The pool (32) + the scheduler + what a running check may hold for a moment (a
	// context.AfterFunc, a timer) and the Run goroutine: never more, whatever hangs.
	limit := workers + 1 + workers + 2
	if m := slices.Max(samples); m > limit {
		t.Errorf("up to %d goroutines above the base, want at most %d", m, limit)
	}
	// Flat: the last intervals hold no more than the first ones (no pile-up).
	half := len(samples) / 2
	if a, b := slices.Max(samples[:half]), slices.Max(samples[half:]); b > a+5 {
		t.Errorf("goroutines grew: first half up to %d, second half up to %d", a, b)
	}

	wantChecks := int64(elapsed / interval)
	snap := c.Snapshot()
	if len(snap) != n {
		t.Fatalf("snapshot of %d targets", len(snap))
	}
	for _, st := range snap {
		idx := 0
		fmt.Sscanf(st.Key, "wms/%d", &idx)
		switch {
		case isHung(idx):
			if st.State != Down || !errors.Is(st.LastError, ErrTimeout) {
				t.Errorf("hung %s: %v, %v", st.Key, st.State, st.LastError)
			}
		default:
			got := counts[idx]
			// Checked at every due time in the window: the phase puts the first check
			// anywhere in the first interval, so one more or one less than elapsed/interval.
			if got < wantChecks-1 || got > wantChecks+1 || st.Skipped != 0 {
				t.Errorf("healthy %s: %d checks in %v (want %d±1), %d skipped", st.Key, got, elapsed.Round(time.Millisecond), wantChecks, st.Skipped)
			}
			if st.State != Up || st.LastError != nil {
				t.Errorf("healthy %s: %v, %v", st.Key, st.State, st.LastError)
			}
		}
	}
	if got := changes.Load(); got != n {
		t.Errorf("%d changes reported, want %d (70 up, 30 down)", got, n)
	}

	// Keep the first 50 servers: the other 50 are no longer checked (one check may still
	// have been running at the Set).
	c.Set(f.targets(interval, timeout, func(i int) bool { return i < 50 }))
	for i := range counts {
		counts[i] = f.accepted[i].Load()
	}
	time.Sleep(3 * interval)
	for i := range n {
		got := f.accepted[i].Load() - counts[i]
		switch {
		case i >= 50 && got > 1:
			t.Errorf("removed wms/%d still checked: %d checks", i, got)
		case i < 50 && !isHung(i) && got < 2:
			t.Errorf("kept wms/%d: %d checks in 3 intervals", i, got)
		}
	}
	if got := len(c.Snapshot()); got != 50 {
		t.Errorf("snapshot of %d targets after Set, want 50", got)
	}
}

// fakeClock is a manual Clock: time moves only by Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clock *fakeClock
	c     chan time.Time
	at    time.Time
	armed bool
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: f, c: make(chan time.Time, 1)}
	f.mu.Lock()
	f.timers = append(f.timers, t)
	f.mu.Unlock()
	t.Reset(d)
	return t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	for _, t := range f.timers {
		t.fireLocked()
	}
}

func (t *fakeTimer) fireLocked() {
	if t.armed && !t.at.After(t.clock.now) {
		t.armed = false
		t.c <- t.clock.now
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.drainLocked()
	t.at, t.armed = t.clock.now.Add(d), true
	t.fireLocked()
}

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.armed = false
	t.drainLocked()
}

func (t *fakeTimer) drainLocked() {
	select {
	case <-t.c:
	default:
	}
}

// With an injected clock and probe the checker is driven step by step: rise and fall as the
// probe's answers change, OnChange in order, and a check exactly every interval.
func TestCheckerFakeClock(t *testing.T) {
	clock := &fakeClock{now: t0}
	var mu sync.Mutex
	failing := map[netip.Addr]bool{}
	probes := map[netip.Addr]int{}
	probe := func(ctx context.Context, a netip.Addr, spec health.Spec) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("probe without a deadline")
		}
		mu.Lock()
		defer mu.Unlock()
		probes[a]++
		if failing[a] {
			return fmt.Errorf("read: %w", ErrTimeout)
		}
		return nil
	}
	var changes []Status
	var chMu sync.Mutex
	c := New(nil, Options{Workers: 2, Clock: clock, Probe: probe, OnChange: func(st Status) {
		chMu.Lock()
		changes = append(changes, st)
		chMu.Unlock()
	}})
	a, b := netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")
	spec := health.Spec{Kind: health.KindTCP, Port: 554, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	c.Set([]Target{{Key: "wms/a", Addr: a, Spec: spec}, {Key: "wms/b", Addr: b, Spec: spec}})
	failing[b] = true

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// checksAt: how many checks each target has had once the clock reads t0+d.
	checksAt := func(key string, d time.Duration) uint64 {
		ph := phase(key, time.Second)
		if d < ph {
			return 0
		}
		return uint64((d-ph)/time.Second) + 1
	}
	// step advances the clock to d and waits until the checker has run and recorded every
	// check due by then.
	step := func(d time.Duration) []Status {
		clock.Advance(t0.Add(d).Sub(clock.Now()))
		deadline := time.Now().Add(5 * time.Second)
		for {
			snap := c.Snapshot()
			if snap[0].Checks == checksAt("wms/a", d) && snap[1].Checks == checksAt("wms/b", d) {
				return snap
			}
			if time.Now().After(deadline) {
				t.Fatalf("at %v: checks %d, %d; want %d, %d", d, snap[0].Checks, snap[1].Checks, checksAt("wms/a", d), checksAt("wms/b", d))
			}
			time.Sleep(time.Millisecond)
		}
	}
	var snap []Status
	for d := time.Duration(0); d <= 2*time.Second; d += 100 * time.Millisecond {
		snap = step(d)
	}
	if snap[0].State != Up || snap[1].State != Down || !errors.Is(snap[1].LastError, ErrTimeout) {
		t.Fatalf("after 2 s: %v, %v (%v)", snap[0].State, snap[1].State, snap[1].LastError)
	}
	mu.Lock()
	failing[b] = false
	mu.Unlock()
	for d := 2100 * time.Millisecond; d <= 4*time.Second; d += 100 * time.Millisecond {
		snap = step(d)
	}
	if snap[1].State != Up || snap[1].Transitions != 2 {
		t.Fatalf("b after recovering: %+v", snap[1])
	}
	chMu.Lock()
	defer chMu.Unlock()
	var got []string
	for _, st := range changes {
		got = append(got, st.Key+" "+st.State.String())
	}
	want := []string{"wms/a up", "wms/b down", "wms/b up"}
	if !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if probes[a] != 4 && probes[a] != 5 {
		t.Errorf("a probed %d times in 4 s at 1 s", probes[a])
	}
}

func TestCheckerRunTwice(t *testing.T) {
	c := New(nil, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Run(ctx); err == nil {
		t.Error("a second Run did not fail")
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// scriptedSource answers each Load with the next step of its script: an error, or a
// snapshot whose watch then delivers one batch and fails with ErrCompacted. When the script
// is done it ends the test's context, as a shutdown would.
type scriptedSource struct {
	steps []error // nil: the load succeeds
	loads int
	stop  context.CancelFunc
}

var errDown = errors.New("etcd down")

func (s *scriptedSource) Load(ctx context.Context) (*Snapshot, error) {
	if s.loads == len(s.steps) {
		s.stop()
		return nil, ctx.Err()
	}
	err := s.steps[s.loads]
	s.loads++
	if err != nil {
		return nil, err
	}
	snap := NewSnapshot()
	snap.Revision = int64(10 * s.loads)
	return snap, nil
}

func (s *scriptedSource) Watch(ctx context.Context, after int64) (<-chan Batch, <-chan error) {
	out := make(chan Batch, 1)
	errc := make(chan error, 1)
	out <- Batch{Revision: after + 1}
	close(out)
	errc <- fmt.Errorf("%w at %d", ErrCompacted, after)
	return out, errc
}

// TestFollowBackoffStartsOverAfterALoad: the wait before a reload doubles with each failure in
// a row, up to the maximum, and starts again from the minimum once a load succeeded, so a
// long outage earlier does not delay the reload after a later compaction. The waits are
// recorded, not slept.
func TestFollowBackoffStartsOverAfterALoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &scriptedSource{stop: cancel, steps: []error{
		nil,                                                                // loads; its watch is compacted
		errDown, errDown, errDown, errDown, errDown, errDown, errDown, nil, // an outage, then a load
		nil,          // the watch is compacted again: a short wait
		errDown, nil, // one failure: one doubling, then a load
		nil,
	}}
	var waits []time.Duration
	wait := func(_ context.Context, d time.Duration) bool {
		waits = append(waits, d)
		return true
	}
	var loadedAt, appliedAt []int64
	loaded := func(s *Snapshot) { loadedAt = append(loadedAt, s.Revision) }
	apply := func(b Batch) error {
		appliedAt = append(appliedAt, b.Revision)
		return nil
	}
	follow(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), src, loaded, apply, wait)

	ms := time.Millisecond
	want := []time.Duration{
		100 * ms,                                                      // the first load's watch failed
		200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms, 5000 * ms, // an outage doubles the wait
		5000 * ms, // up to the maximum
		100 * ms,  // a load succeeded (its watch failed): short again, not 5 s
		100 * ms,  // and again
		200 * ms,  // a failed load doubles it
		100 * ms,  // the load succeeded: short again
		100 * ms,
	}
	if !slices.Equal(waits, want) {
		t.Errorf("waits before each reload:\n got %v\nwant %v", waits, want)
	}
	if wantLoads := []int64{10, 90, 100, 120, 130}; !slices.Equal(loadedAt, wantLoads) {
		t.Errorf("loads handed over at revisions %v, want %v", loadedAt, wantLoads)
	}
	if wantBatches := []int64{11, 91, 101, 121, 131}; !slices.Equal(appliedAt, wantBatches) {
		t.Errorf("batches applied at revisions %v, want %v", appliedAt, wantBatches)
	}
}

// TestFollowReloadsWhenApplyFails: a follower that no longer matches the store (apply fails)
// gets the whole state again, after the short wait.
func TestFollowReloadsWhenApplyFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &scriptedSource{stop: cancel, steps: []error{nil, nil}}
	var waits []time.Duration
	wait := func(_ context.Context, d time.Duration) bool {
		waits = append(waits, d)
		return true
	}
	loads := 0
	follow(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), src,
		func(*Snapshot) { loads++ },
		func(Batch) error { return errors.New("cannot decode") }, wait)
	if loads != 2 {
		t.Errorf("loaded %d times, want 2 (the load and the reload after apply failed)", loads)
	}
	if want := []time.Duration{100 * time.Millisecond, 100 * time.Millisecond}; !slices.Equal(waits, want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
}

// TestSleepEndsWithTheContext: a cancelled context ends the wait between reloads.
func TestSleepEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if sleep(ctx, time.Hour) {
		t.Error("sleep reported the hour passed in a cancelled context")
	}
}

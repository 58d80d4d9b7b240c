package store

import (
	"context"
	"log/slog"
	"time"
)

// The wait before a reload: the first after a successful load is short (a compaction or a
// leader change is over in moments), each failure in a row doubles it up to the maximum, so
// an etcd that is down is not asked ten times a second. A load that succeeds starts again
// from the minimum: waits that grew during one outage must not slow the recovery from the
// next, while the writes that wait for a follower to catch up are blocked.
const (
	minReloadBackoff = 100 * time.Millisecond
	maxReloadBackoff = 5 * time.Second
)

// source is what following needs of the store; *Store is one.
type source interface {
	Load(ctx context.Context) (*Snapshot, error)
	Watch(ctx context.Context, after int64) (<-chan Batch, <-chan error)
}

// Follow loads the whole state, hands it to loaded, then hands each watched batch after it to
// apply, in order, until ctx ends. A lost watch (etcd unreachable, the revision compacted),
// a failed load, or an error from apply (the follower no longer matches the store) loads the
// whole state again after a backoff, and loaded is given it again.
func (s *Store) Follow(ctx context.Context, log *slog.Logger, loaded func(*Snapshot), apply func(Batch) error) {
	follow(ctx, log, s, loaded, apply, sleep)
}

// follow is Follow with the store and the wait given, so a test can script failures and see
// each backoff without waiting for it.
func follow(ctx context.Context, log *slog.Logger, src source, loaded func(*Snapshot), apply func(Batch) error,
	wait func(context.Context, time.Duration) bool) {
	backoff := minReloadBackoff
	for {
		ok, err := followOnce(ctx, src, loaded, apply)
		if ctx.Err() != nil {
			return
		}
		if ok {
			backoff = minReloadBackoff
		}
		log.Warn("following the store failed; reloading", "error", err, "backoff", backoff)
		if !wait(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, maxReloadBackoff)
	}
}

// followOnce loads and follows until the watch or apply fails; loadedOK says whether the
// load succeeded.
func followOnce(ctx context.Context, src source, loaded func(*Snapshot), apply func(Batch) error) (loadedOK bool, err error) {
	snap, err := src.Load(ctx)
	if err != nil {
		return false, err
	}
	loaded(snap)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches, errc := src.Watch(wctx, snap.Revision)
	for b := range batches {
		if err := apply(b); err != nil {
			return true, err
		}
	}
	return true, <-errc
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

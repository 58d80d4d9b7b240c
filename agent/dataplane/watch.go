package dataplane

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Signal queues one signal on out unless one is already waiting: a watcher merges a burst of
// kernel notifications into one, so it never blocks on a slow reader.
func Signal(out chan<- struct{}) {
	select {
	case out <- struct{}{}:
	default:
	}
}

// Subscription is one open source of kernel change notifications (an nftables monitor, an
// rtnetlink subscription).
type Subscription interface {
	// Follow signals out for each change that matters until ctx ends or the subscription
	// fails.
	Follow(ctx context.Context, out chan<- struct{})
	// Close releases the subscription and waits for its reader to end.
	Close()
}

// Resubscribe backoff: how soon a subscription that ended (its socket overflowed, say) is
// opened again, doubling up to the cap while that fails. The periodic resync covers the gap.
const (
	resubscribeMin = 100 * time.Millisecond
	resubscribeMax = 10 * time.Second
)

// KeepSubscribed follows one subscription after another until ctx ends. A subscription that
// fails may have missed changes, so its end is signalled, and so is the reopening: whatever
// changed while none was open is unseen.
func KeepSubscribed(ctx context.Context, log *slog.Logger, what string, sub Subscription, open func() (Subscription, error), out chan<- struct{}) {
	for {
		sub.Follow(ctx, out)
		sub.Close()
		if ctx.Err() != nil {
			return
		}
		log.Warn(what+" ended; opening a new one", "what", what)
		Signal(out)
		retry := resubscribeMin
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
			var err error
			if sub, err = open(); err == nil {
				break
			}
			log.Warn(what, "error", err, "retry_in", retry)
			retry = min(2*retry, resubscribeMax)
		}
		Signal(out)
	}
}

// DupNetNS duplicates a network-namespace descriptor (-1: the current namespace, kept as
// -1), so a watch can outlive the backend that opened the namespace.
func DupNetNS(fd int) (int, error) {
	if fd < 0 {
		return -1, nil
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("duplicate network namespace fd: %w", err)
	}
	return dup, nil
}

// Watch opens a subscription in the namespace nsFd (which it owns and closes; -1 for the
// current one) and keeps it open until ctx ends, signalling the returned channel for each
// change; the channel is closed once ctx ends.
func Watch(ctx context.Context, log *slog.Logger, what string, nsFd int, open func(nsFd int) (Subscription, error)) (<-chan struct{}, error) {
	closeNS := func() {
		if nsFd >= 0 {
			_ = unix.Close(nsFd) // a dup'd fd: nothing to lose if closing it fails
		}
	}
	sub, err := open(nsFd)
	if err != nil {
		closeNS()
		return nil, err
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer closeNS()
		KeepSubscribed(ctx, log, what, sub, func() (Subscription, error) { return open(nsFd) }, out)
	}()
	return out, nil
}

package dataplane

import (
	"context"
	"log/slog"
	"time"
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

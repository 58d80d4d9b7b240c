package vip

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Watch tells of addresses added to or removed from any interface of the Manager's
// namespace, by anyone (the Manager's own changes included): ifupdown or systemd-networkd
// reconfiguring an interface, say. Signals not yet taken are merged into one, so a burst
// never blocks the watch.
//
// When the subscription ends on an error (its socket overflowed and notifications were
// lost), Watch signals, since it may have missed a change, and subscribes again. The channel
// is closed once ctx ends.
func (m *Manager) Watch(ctx context.Context) (<-chan struct{}, error) {
	// The watch may outlive the backend's Close, so it keeps its own descriptor.
	m.mu.Lock()
	nsFd, err := dataplane.DupNetNS(m.nsFd)
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("vip: watch: %w", err)
	}
	return dataplane.Watch(ctx, m.log, "address subscription", nsFd, func(fd int) (dataplane.Subscription, error) {
		s, err := subscribe(fd, m.log)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	})
}

// subscription is one rtnetlink subscription to IPv4 and IPv6 address changes.
type subscription struct {
	updates chan netlink.AddrUpdate
	done    chan struct{}
}

func subscribe(nsFd int, log *slog.Logger) (*subscription, error) {
	ns := netns.None()
	if nsFd >= 0 {
		ns = netns.NsHandle(nsFd)
	}
	s := &subscription{updates: make(chan netlink.AddrUpdate, 64), done: make(chan struct{})}
	err := netlink.AddrSubscribeWithOptions(s.updates, s.done, netlink.AddrSubscribeOptions{
		Namespace: &ns,
		// Called for messages the library cannot read, and once when the subscription ends
		// (closed by us, or failed): what matters is told by the channel's closing.
		ErrorCallback: func(err error) { log.Debug("address subscription", "error", err) },
	})
	if err != nil {
		close(s.done) // frees the library's socket, if it got as far as opening one
		return nil, fmt.Errorf("vip: watch: subscribe to address changes: %w", err)
	}
	return s, nil
}

// Close ends the subscription and waits for the library's reader to end.
func (s *subscription) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	// Drain: the library's reader blocks on a full channel, and closes it when it ends.
	for range s.updates {
	}
}

// Follow signals each address change until ctx ends or the subscription does.
func (s *subscription) Follow(ctx context.Context, out chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-s.updates:
			if !ok {
				return
			}
			dataplane.Signal(out)
		}
	}
}

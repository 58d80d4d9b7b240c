package nft

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

const (
	// watchReadBuffer is the monitor socket's receive buffer: `flush ruleset` of a large
	// ruleset sends one message per rule, and an overflow costs a monitor restart.
	watchReadBuffer = 4 << 20
)

// Watch tells of changes to table inet lvsctl, its chains and its rules, made by anyone (the
// Firewall's own transactions included): `systemctl reload nftables` running `flush ruleset`,
// say. Each nftables transaction touching the table is at most one signal, and signals not
// yet taken are merged into one, so a burst never blocks the watch. Changes to other tables
// are not signalled: the agent reads and keeps only its own.
//
// When the kernel drops notifications (the socket overflowed), Watch signals, since it may
// have missed a change, and opens a new monitor. The channel is closed once ctx ends.
func (f *Firewall) Watch(ctx context.Context) (<-chan struct{}, error) {
	// The watch may outlive the backend's Close, so it keeps its own descriptor.
	f.mu.Lock()
	nsFd, err := dataplane.DupNetNS(f.nsFd)
	f.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("nft: watch: %w", err)
	}
	return dataplane.Watch(ctx, f.log, "nftables monitor", nsFd, func(fd int) (dataplane.Subscription, error) {
		s, err := openMonitor(fd, f.log)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return s, nil
	})
}

// monitor is one nftables monitor on its own netlink socket.
type monitor struct {
	conn   *nftables.Conn
	events chan *nftables.MonitorEvents
	log    *slog.Logger
}

func openMonitor(nsFd int, log *slog.Logger) (*monitor, error) {
	// A lasting connection, so the monitor's socket is ours to close: the library's monitor
	// leaves its socket open when it stops on an error.
	opts := []nftables.ConnOption{nftables.AsLasting(),
		nftables.WithSockOptions(func(c *netlink.Conn) error { return c.SetReadBuffer(watchReadBuffer) })}
	if nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(nsFd))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return nil, classify("watch: open", err)
	}
	// Buffered so the library's reader keeps up with a burst while we look at each batch.
	events, err := conn.AddGenerationalMonitor(nftables.NewMonitor(nftables.WithMonitorEventBuffer(64)))
	if err != nil {
		_ = conn.CloseLasting()
		return nil, classify("watch: monitor", err)
	}
	return &monitor{conn: conn, events: events, log: log}, nil
}

// Close stops the monitor and waits for its reader to end.
func (m *monitor) Close() {
	_ = m.conn.CloseLasting() // nothing to do about a socket that will not close
	// Drain: the library's reader blocks on a full channel, and closes it when it ends.
	for range m.events {
	}
}

// Follow signals the batches that touch our table until ctx ends or the monitor stops.
func (m *monitor) Follow(ctx context.Context, out chan<- struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case batch, ok := <-m.events:
			if !ok {
				return
			}
			if g := batch.GeneratedBy; g != nil && g.Type == nftables.MonitorEventTypeOOB {
				m.log.Warn("nftables monitor", "error", g.Error)
			}
			if concernsUs(batch) {
				dataplane.Signal(out)
			}
		}
	}
}

// concernsUs reports whether a transaction's changes touch table inet lvsctl, its chains or
// rules; a change it cannot attribute counts as ours, to be safe. Sets, elements and objects
// are not ours: the table has none, and deleting the table is itself a table event.
func concernsUs(batch *nftables.MonitorEvents) bool {
	if g := batch.GeneratedBy; g != nil && g.Type == nftables.MonitorEventTypeOOB {
		return true // the monitor's socket failed: anything may have been missed
	}
	for _, ev := range batch.Changes {
		var t *nftables.Table
		switch d := ev.Data.(type) {
		case *nftables.Table:
			t = d
		case *nftables.Chain:
			if d != nil {
				t = d.Table
			}
		case *nftables.Rule:
			if d != nil {
				t = d.Table
			}
		default:
			if ev.Type == nftables.MonitorEventTypeOOB {
				return true
			}
			continue
		}
		switch {
		case t == nil || t.Name == "":
			// Undecodable: a parse error, or a message the library did not expect.
			return true
		case t.Family == nftables.TableFamilyINet && t.Name == TableName:
			return true
		}
	}
	return false
}

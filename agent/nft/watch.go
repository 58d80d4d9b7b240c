package nft

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// watchReadBuffer is the monitor socket's receive buffer. The kernel notifies every element
// a transaction adds or deletes (50,000 for a cold apply at 10,000 clusters, about 5 MiB of
// notifications) and `flush ruleset` every rule; an overflow is not lost (the monitor restarts
// and signals) but costs a second repair pass.
const watchReadBuffer = 16 << 20

// Watch tells of changes to table inet lvsctl, its chains, rules, maps and their elements,
// made by anyone (the
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

// monitor is one subscription to the kernel's nftables notifications (what `nft monitor`
// reads), on its own netlink socket.
//
// It reads the socket itself rather than through the library's monitor: that one decodes
// every element of every set of every table (50,000 allocations for our own cold apply) and
// leaves out the table a set or an element belongs to, which is all that matters here.
type monitor struct {
	conn *netlink.Conn
	log  *slog.Logger
}

func openMonitor(nsFd int, log *slog.Logger) (*monitor, error) {
	cfg := &netlink.Config{NetNS: max(nsFd, 0)}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, classify("watch: open", err)
	}
	if err := forceBuffer(conn, unix.SO_RCVBUFFORCE, watchReadBuffer, conn.SetReadBuffer); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("nft: watch: receive buffer: %w", err)
	}
	if err := conn.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		_ = conn.Close()
		return nil, classify("watch: join the nftables group", err)
	}
	return &monitor{conn: conn, log: log}, nil
}

// Close stops the monitor. Follow has returned by then (dataplane.KeepSubscribed's order).
func (m *monitor) Close() {
	_ = m.conn.Close() // nothing to do about a socket that will not close
}

// Follow signals the transactions that touch our table until ctx ends or the socket fails
// (overflowed: changes may have been missed, and dataplane.KeepSubscribed signals that).
func (m *monitor) Follow(ctx context.Context, out chan<- struct{}) {
	stop := context.AfterFunc(ctx, func() { _ = m.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	ours := false // the current transaction touched our table
	for {
		msgs, err := m.conn.Receive()
		if err != nil {
			if ctx.Err() == nil {
				// ENOBUFS after an overflow, most likely; the caller reopens.
				m.log.Warn("nftables monitor", "error", err)
			}
			return
		}
		for _, msg := range msgs {
			if ours && msg.Header.Type&0xff != unix.NFT_MSG_NEWGEN {
				continue // decided: a cold apply's 50,000 element notifications need no decoding
			}
			switch concerns(msg) {
			case endOfTransaction:
				if ours {
					dataplane.Signal(out)
				}
				ours = false
			case ourTable:
				ours = true
			}
		}
	}
}

// verdict is what one notification says about our table.
type verdict int

const (
	otherTable verdict = iota
	ourTable
	endOfTransaction
)

// concerns classifies one notification. The kernel sends a transaction's changes and then
// NFT_MSG_NEWGEN, the new generation, so a transaction is one signal however many objects it
// touched. Every object message (table, chain, rule, set, element, object, flowtable) starts
// with struct nfgenmsg, whose first byte is the family, and names its table in attribute 1
// (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_SET_ELEM_LIST_TABLE, ...); a message that does not
// decode counts as ours, to be safe.
func concerns(msg netlink.Message) verdict {
	if msg.Header.Type>>8 != unix.NFNL_SUBSYS_NFTABLES {
		return otherTable
	}
	if msg.Header.Type&0xff == unix.NFT_MSG_NEWGEN {
		return endOfTransaction
	}
	if len(msg.Data) < 4 {
		return ourTable
	}
	if msg.Data[0] != unix.NFPROTO_INET {
		return otherTable
	}
	ad, err := netlink.NewAttributeDecoder(msg.Data[4:])
	if err != nil {
		return ourTable
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == 1 {
			if ad.String() == TableName {
				return ourTable
			}
			return otherTable
		}
	}
	return ourTable
}

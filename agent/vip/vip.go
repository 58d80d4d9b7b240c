// Package vip adds and removes the virtual IP addresses a director holds on an interface.
package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// ErrNoInterface is returned, wrapped with the interface's name, for an interface the
// namespace does not have.
var ErrNoInterface = fmt.Errorf("no such interface: %w", dataplane.ErrNotExist)

// Option configures New.
type Option func(*options)

type options struct {
	netNSFd int
	log     *slog.Logger
}

// WithNetNSFd makes the Manager work in the network namespace the file descriptor refers to
// (an open /run/netns/NAME, say). New duplicates the descriptor, so the caller may close its
// own after New returns.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netNSFd = fd } }

// WithLogger sets where Watch reports trouble with its subscription; the default discards it.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Manager reads and changes interface addresses in one network namespace.
type Manager struct {
	h   *netlink.Handle
	log *slog.Logger

	mu   sync.Mutex // guards nsFd against Close
	nsFd int        // our duplicate of the namespace fd for Watch, or -1
}

// New opens a rtnetlink handle in the chosen network namespace.
func New(opts ...Option) (*Manager, error) {
	o := options{netNSFd: -1}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{log: o.log, nsFd: -1}
	ns := netns.None()
	if o.netNSFd >= 0 {
		// Watch subscribes later, in the namespace this fd names: keep our own.
		fd, err := unix.FcntlInt(uintptr(o.netNSFd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("vip: duplicate network namespace fd %d: %w", o.netNSFd, err)
		}
		m.nsFd = fd
		ns = netns.NsHandle(fd)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		m.closeNS()
		return nil, fmt.Errorf("vip: open rtnetlink: %w", err)
	}
	m.h = h
	return m, nil
}

// Close releases the Manager's socket. The addresses stay; watches go on until their
// contexts end.
func (m *Manager) Close() {
	m.h.Close()
	m.closeNS()
}

func (m *Manager) closeNS() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nsFd >= 0 {
		_ = unix.Close(m.nsFd) // a dup'd fd: nothing to lose if closing it fails
		m.nsFd = -1
	}
}

func (m *Manager) link(iface string) (netlink.Link, error) {
	l, err := m.h.LinkByName(iface)
	if _, missing := errors.AsType[netlink.LinkNotFoundError](err); missing {
		return nil, fmt.Errorf("vip: interface %q: %w", iface, ErrNoInterface)
	}
	if err != nil {
		return nil, fmt.Errorf("vip: interface %q: %w", iface, err)
	}
	return l, nil
}

// Addresses lists every address on the interface, the agent's and anyone else's.
func (m *Manager) Addresses(iface string) ([]netip.Prefix, error) {
	l, err := m.link(iface)
	if err != nil {
		return nil, err
	}
	addrs, err := m.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("vip: list addresses of %q: %w", iface, err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		if ip.Is4In6() && len(a.Mask) == net.IPv4len {
			ip = ip.Unmap()
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip, ones))
	}
	return out, nil
}

func toAddr(p netip.Prefix) (*netlink.Addr, error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("prefix: %s is not a valid address/length", p)
	}
	if p.Addr().Is4In6() {
		// The kernel would store it as an IPv6 address, which no IPv4 client reaches.
		return nil, fmt.Errorf("prefix: %s is IPv4-mapped IPv6; give the IPv4 form", p)
	}
	bitLen := p.Addr().BitLen()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bitLen)}}
	if p.Addr().Is6() {
		// Duplicate address detection would hold a taken-over VIP unusable for a second or
		// more; the failover protocol, not DAD, guarantees a VIP lives on one director.
		a.Flags = unix.IFA_F_NODAD
	}
	return a, nil
}

// AddAddress adds p to the interface; an address already there is dataplane.ErrExist.
func (m *Manager) AddAddress(iface string, p netip.Prefix) error {
	a, err := toAddr(p)
	if err != nil {
		return fmt.Errorf("vip: add address to %q: %w", iface, err)
	}
	l, err := m.link(iface)
	if err != nil {
		return err
	}
	if err := m.h.AddrAdd(l, a); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("vip: add %s to %q: %w (%w)", p, iface, dataplane.ErrExist, err)
		}
		return fmt.Errorf("vip: add %s to %q: %w", p, iface, err)
	}
	return nil
}

// DelAddress removes p from the interface; an address not there is dataplane.ErrNotExist.
func (m *Manager) DelAddress(iface string, p netip.Prefix) error {
	a, err := toAddr(p)
	if err != nil {
		return fmt.Errorf("vip: delete address from %q: %w", iface, err)
	}
	l, err := m.link(iface)
	if err != nil {
		return err
	}
	if err := m.h.AddrDel(l, a); err != nil {
		// The kernel says EADDRNOTAVAIL for an address the interface lacks.
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("vip: delete %s from %q: %w (%w)", p, iface, dataplane.ErrNotExist, err)
		}
		return fmt.Errorf("vip: delete %s from %q: %w", p, iface, err)
	}
	return nil
}

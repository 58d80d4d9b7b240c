// Package vip adds and removes the virtual IP addresses a director holds on an interface.
package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

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

type options struct{ netNSFd int }

// WithNetNSFd makes the Manager work in the network namespace the file descriptor refers to
// (an open /run/netns/NAME, say). New opens its sockets there at once, so the caller may
// close the descriptor after New returns.
func WithNetNSFd(fd int) Option { return func(o *options) { o.netNSFd = fd } }

// Manager reads and changes interface addresses in one network namespace.
type Manager struct {
	h *netlink.Handle
}

// New opens a rtnetlink handle in the chosen network namespace.
func New(opts ...Option) (*Manager, error) {
	o := options{netNSFd: -1}
	for _, opt := range opts {
		opt(&o)
	}
	ns := netns.None()
	if o.netNSFd >= 0 {
		ns = netns.NsHandle(o.netNSFd)
	}
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("vip: open rtnetlink: %w", err)
	}
	return &Manager{h: h}, nil
}

// Close releases the Manager's socket. The addresses stay.
func (m *Manager) Close() { m.h.Close() }

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

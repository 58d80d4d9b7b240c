package fake

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Addresses is a fake of the interfaces' addresses.
type Addresses struct {
	recorder
	links map[string]map[netip.Prefix]struct{}
}

// NewAddresses returns interfaces named ifaces, with no addresses.
func NewAddresses(ifaces ...string) *Addresses {
	f := &Addresses{links: map[string]map[netip.Prefix]struct{}{}}
	for _, name := range ifaces {
		f.links[name] = map[netip.Prefix]struct{}{}
	}
	return f
}

// Addresses lists an interface's addresses, sorted.
func (f *Addresses) Addresses(iface string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults.check(Op{Name: "Addresses", Interface: iface}); err != nil {
		return nil, err
	}
	link, err := f.linkLocked(iface)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	return sortedPrefixes(link), nil
}

// AddAddress adds an address. Like Linux, an IPv4 address is keyed by address and prefix
// length, an IPv6 address by address alone; an existing one is refused with dataplane.ErrExist.
func (f *Addresses) AddAddress(iface string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "AddAddress", Interface: iface, Prefix: p}
	if err := f.faults.check(op); err != nil {
		return err
	}
	link, err := f.linkLocked(iface)
	if err != nil {
		return fmt.Errorf("add address %s: %w", p, err)
	}
	if !p.IsValid() {
		return fmt.Errorf("add address to %s: prefix is not valid: %w", iface, syscall.EINVAL)
	}
	if _, ok := link[p]; ok {
		return fmt.Errorf("add address %s dev %s: %w", p, iface, dataplane.ErrExist)
	}
	if p.Addr().Is6() {
		// Keyed by address alone: any prefix length of it is the same address. Looked up
		// per length, not by a scan of the link, so 10,000 adds stay linear.
		for bits := 0; bits <= 128; bits++ {
			if _, ok := link[netip.PrefixFrom(p.Addr(), bits)]; ok {
				return fmt.Errorf("add address %s dev %s: %w", p, iface, dataplane.ErrExist)
			}
		}
	}
	link[p] = struct{}{}
	f.ops = append(f.ops, op)
	return nil
}

// DelAddress deletes an address (same address and prefix length).
func (f *Addresses) DelAddress(iface string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "DelAddress", Interface: iface, Prefix: p}
	if err := f.faults.check(op); err != nil {
		return err
	}
	link, err := f.linkLocked(iface)
	if err != nil {
		return fmt.Errorf("delete address %s: %w", p, err)
	}
	if _, ok := link[p]; !ok {
		return fmt.Errorf("delete address %s dev %s: %w", p, iface, dataplane.ErrNotExist)
	}
	delete(link, p)
	f.ops = append(f.ops, op)
	return nil
}

func (f *Addresses) linkLocked(iface string) (map[netip.Prefix]struct{}, error) {
	link, ok := f.links[iface]
	if !ok {
		// Both: the kernel's errno, and the sentinel callers test for a missing link.
		return nil, fmt.Errorf("interface %q: %w: %w", iface, dataplane.ErrNotExist, syscall.ENODEV)
	}
	return link, nil
}

// Dump returns every interface's addresses as sorted text, one a line: "eth0 192.0.2.10/32".
func (f *Addresses) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.links))
	for n := range f.links {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		for _, p := range sortedPrefixes(f.links[n]) {
			fmt.Fprintf(&b, "%s %s\n", n, p)
		}
	}
	return b.String()
}

func sortedPrefixes(set map[netip.Prefix]struct{}) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

package reconcile

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// wantedAddress is an address the ACTIVE director must hold, and the cluster it is for ("" for
// the group's gateway).
type wantedAddress struct {
	addr    state.Address
	cluster string
}

// wantedAddresses lists the VIPs of the clusters whose service is in the kernel (a VIP without
// its service would attract traffic nothing balances) and the group's gateway address.
func (a *apply) wantedAddresses(group *lvsctlv1.DirectorGroup, specs []*clusterSpec, serving map[*clusterSpec]bool) []wantedAddress {
	var want []wantedAddress
	seen := map[state.Address]bool{}
	add := func(w wantedAddress) {
		if !seen[w.addr] {
			seen[w.addr] = true
			want = append(want, w)
		}
	}
	iface := group.GetVipInterface()
	for _, s := range specs {
		if !serving[s] {
			continue
		}
		if iface == "" {
			a.directorErr(fmt.Errorf("director group %q: vip_interface is empty; VIPs not added", group.GetName()))
			break
		}
		for _, vip := range s.vips {
			add(wantedAddress{addr: state.Address{Interface: iface, Prefix: netip.PrefixFrom(vip, vip.BitLen())}, cluster: s.name})
		}
	}
	if gw := group.GetGateway(); gw.GetAddress() != "" || gw.GetInterface() != "" {
		p, err := netip.ParsePrefix(gw.GetAddress())
		switch {
		case err != nil:
			a.directorErr(fmt.Errorf("director group %q: gateway.address: %w", group.GetName(), err))
		case gw.GetInterface() == "":
			a.directorErr(fmt.Errorf("director group %q: gateway.interface is empty", group.GetName()))
		default:
			add(wantedAddress{addr: state.Address{Interface: gw.GetInterface(), Prefix: p}})
		}
	}
	return want
}

// linkAddresses is what readAddresses found on one interface.
type linkAddresses struct {
	prefixes []netip.Prefix
	// gone: the interface does not exist, so neither do the addresses the agent had on it.
	gone bool
}

// readAddresses reads every interface that holds a wanted or an owned address. An interface
// that cannot be read is absent from the result, and left alone this time.
func (a *apply) readAddresses(want []wantedAddress) map[string]*linkAddresses {
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.addr.Interface] = true
	}
	ifaces := map[string]bool{}
	for _, o := range a.r.owned.OwnedAddresses() {
		ifaces[o.Interface] = true
	}
	for i := range wanted {
		ifaces[i] = true
	}
	names := make([]string, 0, len(ifaces))
	for i := range ifaces {
		names = append(names, i)
	}
	slices.Sort(names)
	out := map[string]*linkAddresses{}
	for _, name := range names {
		ps, err := a.r.addrs.Addresses(name)
		switch {
		case err == nil:
			out[name] = &linkAddresses{prefixes: ps}
		case errors.Is(err, dataplane.ErrNotExist):
			out[name] = &linkAddresses{gone: true}
			if wanted[name] {
				a.directorErr(fmt.Errorf("read addresses of %s: %w", name, err))
			}
		default:
			a.directorErr(fmt.Errorf("read addresses of %s: %w", name, err))
		}
	}
	return out
}

// releaseAddresses removes the owned addresses that are not wanted, and forgets owned ones
// that are already gone.
func (a *apply) releaseAddresses(want []wantedAddress, present map[string]*linkAddresses) {
	wanted := map[state.Address]bool{}
	for _, w := range want {
		wanted[w.addr] = true
	}
	for _, o := range a.r.owned.OwnedAddresses() {
		if wanted[o] {
			continue
		}
		link, ok := present[o.Interface]
		if !ok {
			continue
		}
		if !link.gone && slices.Contains(link.prefixes, o.Prefix) {
			if a.interrupted() {
				return
			}
			err := a.r.addrs.DelAddress(o.Interface, o.Prefix)
			switch {
			case err == nil:
				a.addressDone("delete-address", o, "")
			case !errors.Is(err, dataplane.ErrNotExist):
				a.directorErr(fmt.Errorf("delete address %s: %w", o, err))
				continue
			}
			link.prefixes = slices.DeleteFunc(link.prefixes, func(p netip.Prefix) bool { return p == o.Prefix })
		}
		if err := a.r.owned.ForgetAddress(o); err != nil {
			a.directorErr(fmt.Errorf("forget address %s: %w", o, err))
		}
	}
}

// claimAddresses adds the wanted addresses that are missing. An address already on the
// interface that the agent did not add is left alone and not claimed: removing it later would
// break whoever put it there.
func (a *apply) claimAddresses(want []wantedAddress, present map[string]*linkAddresses) {
	for _, w := range want {
		link, ok := present[w.addr.Interface]
		if !ok || link.gone {
			continue
		}
		if slices.ContainsFunc(link.prefixes, func(p netip.Prefix) bool { return p.Addr() == w.addr.Prefix.Addr() }) {
			continue
		}
		if a.interrupted() {
			return
		}
		if err := a.r.owned.RecordAddress(w.addr); err != nil {
			a.directorErr(fmt.Errorf("record ownership of address %s: %w", w.addr, err))
			continue
		}
		if err := a.r.addrs.AddAddress(w.addr.Interface, w.addr.Prefix); err != nil {
			a.directorErr(fmt.Errorf("add address %s: %w", w.addr, err))
			if ferr := a.r.owned.ForgetAddress(w.addr); ferr != nil {
				a.directorErr(fmt.Errorf("forget address %s: %w", w.addr, ferr))
			}
			continue
		}
		a.addressDone("add-address", w.addr, w.cluster)
	}
}

func (a *apply) addressDone(op string, addr state.Address, cluster string) {
	a.res.Operations++
	attrs := []any{"op", op, "iface", addr.Interface, "address", addr.Prefix.String()}
	if cluster != "" {
		attrs = append(attrs, "cluster", cluster)
	}
	a.r.log.Info("kernel change", attrs...)
}

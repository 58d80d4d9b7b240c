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
	refs    int // how many clusters (or the gateway) want it
	// adopt: a cluster marked for adoption (lvsctl apply --adopt) wants it: found on its
	// interface, not added by the agent, it is taken over as owned rather than left alone.
	adopt bool
}

// wantedAddresses lists the VIPs of the clusters whose service is in the kernel (a VIP without
// its service would attract traffic nothing balances) and the group's gateway address. A
// group whose addresses cannot all be named (no vip_interface, a bad gateway) gets a director
// error for each problem, and ok false.
func (a *apply) wantedAddresses(group *lvsctlv1.DirectorGroup, specs []*clusterSpec) (want []wantedAddress, ok bool) {
	return a.groupAddresses(group, specs, a.directorErr)
}

// groupAddresses is wantedAddresses reporting its problems to report (nil: not reported): a
// STANDBY works out the addresses it would hold without erring about a group it holds nothing
// for.
func (a *apply) groupAddresses(group *lvsctlv1.DirectorGroup, specs []*clusterSpec, report func(error)) (want []wantedAddress, ok bool) {
	ok = true
	fail := func(err error) {
		ok = false
		if report != nil {
			report(err)
		}
	}
	seen := map[state.Address]int{}
	add := func(w wantedAddress) {
		if i, ok := seen[w.addr]; ok {
			want[i].refs++
			want[i].adopt = want[i].adopt || w.adopt
			return
		}
		seen[w.addr] = len(want)
		w.refs = 1
		want = append(want, w)
	}
	iface := group.GetVipInterface()
	for _, s := range specs {
		if !s.serving {
			continue
		}
		if iface == "" {
			fail(fmt.Errorf("director group %q: vip_interface is empty; VIPs not added", group.GetName()))
			break
		}
		for _, vip := range s.vips {
			add(wantedAddress{addr: state.Address{Interface: iface, Prefix: netip.PrefixFrom(vip, vip.BitLen())}, cluster: s.name,
				adopt: s.cluster.GetAdopt()})
		}
	}
	if gw := group.GetGateway(); gw.GetAddress() != "" || gw.GetInterface() != "" {
		p, err := netip.ParsePrefix(gw.GetAddress())
		switch {
		case err != nil:
			fail(fmt.Errorf("director group %q: gateway.address: %w", group.GetName(), err))
		case gw.GetInterface() == "":
			fail(fmt.Errorf("director group %q: gateway.interface is empty", group.GetName()))
		default:
			add(wantedAddress{addr: state.Address{Interface: gw.GetInterface(), Prefix: p}})
		}
	}
	return want, ok
}

// linkAddresses is what readAddresses found on one interface, as sets: a link may hold
// thousands of VIPs, and each claim and release looks one up.
type linkAddresses struct {
	prefixes map[netip.Prefix]struct{}
	addrs    map[netip.Addr]int // how many of prefixes have each address
	// gone: the interface does not exist, so neither do the addresses the agent had on it.
	gone bool
}

func newLinkAddresses(ps []netip.Prefix) *linkAddresses {
	l := &linkAddresses{prefixes: make(map[netip.Prefix]struct{}, len(ps)), addrs: make(map[netip.Addr]int, len(ps))}
	for _, p := range ps {
		if _, dup := l.prefixes[p]; !dup {
			l.prefixes[p] = struct{}{}
			l.addrs[p.Addr()]++
		}
	}
	return l
}

func (l *linkAddresses) has(p netip.Prefix) bool {
	_, ok := l.prefixes[p]
	return ok
}

// hasAddr: the link holds the address, with any prefix length.
func (l *linkAddresses) hasAddr(a netip.Addr) bool { return l.addrs[a] > 0 }

func (l *linkAddresses) remove(p netip.Prefix) {
	if _, ok := l.prefixes[p]; !ok {
		return
	}
	delete(l.prefixes, p)
	if l.addrs[p.Addr()]--; l.addrs[p.Addr()] <= 0 {
		delete(l.addrs, p.Addr())
	}
}

// readAddresses reads every interface that holds a wanted address, and with owned, every
// one that holds an owned address. An interface that cannot be read is absent from the
// result, and left alone this time.
func (a *apply) readAddresses(want []wantedAddress, owned bool) map[string]*linkAddresses {
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.addr.Interface] = true
	}
	ifaces := map[string]bool{}
	if owned {
		for _, o := range a.r.owned.OwnedAddresses() {
			ifaces[o.Interface] = true
		}
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
			out[name] = newLinkAddresses(ps)
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
	var release []state.Address
	for _, o := range a.r.owned.OwnedAddresses() {
		if !wanted[o] {
			release = append(release, o)
		}
	}
	a.release(release, present)
}

// release removes owned addresses, and forgets them.
func (a *apply) release(addrs []state.Address, present map[string]*linkAddresses) {
	for _, o := range addrs {
		link, ok := present[o.Interface]
		if !ok {
			continue
		}
		if !link.gone && link.has(o.Prefix) {
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
			link.remove(o.Prefix)
		}
		a.forget.ForgetAddresses = append(a.forget.ForgetAddresses, o)
	}
}

// claimAddresses adds the wanted addresses that are missing. An address already on the
// interface that the agent did not add is left alone and not claimed: removing it later would
// break whoever put it there; unless a cluster being adopted wants it (lvsctl apply --adopt:
// the site moves in with its VIPs), which takes it over as owned, with no kernel operation.
func (a *apply) claimAddresses(want []wantedAddress, present map[string]*linkAddresses) {
	var claim []wantedAddress
	var adopted []state.Address
	for _, w := range want {
		link, ok := present[w.addr.Interface]
		if !ok || link.gone {
			continue
		}
		if link.hasAddr(w.addr.Prefix.Addr()) {
			if w.adopt && link.has(w.addr.Prefix) && !a.r.owned.OwnsAddress(w.addr) {
				adopted = append(adopted, w.addr)
			}
			continue
		}
		claim = append(claim, w)
	}
	if len(adopted) > 0 {
		if err := a.r.owned.Commit(state.Changes{RecordAddresses: adopted}); err != nil {
			a.directorErr(fmt.Errorf("record ownership of %d adopted addresses: %w", len(adopted), err))
		} else {
			a.r.log.Info("addresses adopted", "addresses", len(adopted))
		}
	}
	if len(claim) == 0 || a.interrupted() {
		return
	}
	// Recorded, all in one save, before any is added.
	record := make([]state.Address, len(claim))
	for i, w := range claim {
		record[i] = w.addr
	}
	if err := a.r.owned.Commit(state.Changes{RecordAddresses: record}); err != nil {
		a.directorErr(fmt.Errorf("record ownership of %d addresses: %w", len(record), err))
		return
	}
	for _, w := range claim {
		if err := a.r.addrs.AddAddress(w.addr.Interface, w.addr.Prefix); err != nil {
			a.directorErr(fmt.Errorf("add address %s: %w", w.addr, err))
			a.forget.ForgetAddresses = append(a.forget.ForgetAddresses, w.addr)
			continue
		}
		a.addressDone("add-address", w.addr, w.cluster)
		a.res.Added = append(a.res.Added, w.addr)
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

package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ApplyHolding is the failover's fast path: with hold, it adds the addresses an ACTIVE holds
// (the VIPs of the clusters whose service is in the kernel, and the group's gateway), as the
// last Apply or ApplyDelta worked them out; without, it removes every address the agent owns.
// It reads nothing but the addresses of the interfaces involved (no IPVS dump, no rules) and
// changes nothing else, so it costs O(addresses), not O(clusters). Ownership is recorded as
// Apply records it: before an address is added, and forgotten when removed or not added. An
// address already on its interface is left alone; one that cannot be added or removed is a
// director error, and the others are still done.
//
// Afterwards the Reconciler takes the director to be ACTIVE (hold) or not, so that the next
// ApplyDelta with that role stays a delta. When the last reconcile could not work out the
// addresses (IPVS or the rules unreadable, a group whose addresses cannot all be named), hold
// takes the full path instead: an Apply of the remembered desired state as ACTIVE. Holding
// before any Apply is a director error; releasing is not, since what the agent owns is known.
//
// A release does not wait for a running Apply or ApplyDelta to finish: it stops it at its
// next step (ErrPreempted), and any that starts meanwhile, and runs first. It may be called
// from another goroutine than the reconciles for that.
//
// Result.Added lists the addresses added; its cluster errors are the remembered ones, and its
// Sync the last status, as a delta's are.
func (r *Reconciler) ApplyHolding(ctx context.Context, hold bool) Result {
	if !hold {
		defer r.preempt()()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.newApply(ctx)
	if missing := r.missingConfig(); missing != "" {
		a.directorErr(fmt.Errorf("reconcile: config has no %s", missing))
		return a.res
	}
	m := r.mem
	if hold && m == nil {
		a.directorErr(errors.New("reconcile: holding the addresses before any desired state was applied"))
		return a.res
	}
	if hold && m.addrs == nil {
		a.run(m.desired.State(), true)
		return a.res
	}
	a.hold(hold)
	a.commitForgets()
	if m != nil {
		m.active = hold
		if a.stopped || len(a.res.DirectorErrors) > 0 {
			m.full = true // the next delta reconciles in full, and so retries
		}
		a.res.Sync = m.sync
		a.res.ClusterErrors = m.clusterErrors()
	}
	return a.res
}

// hold adds the remembered addresses, or removes the owned ones.
func (a *apply) hold(hold bool) {
	if !hold {
		owned := a.r.owned.OwnedAddresses()
		involved := make([]wantedAddress, len(owned))
		for i, o := range owned {
			involved[i] = wantedAddress{addr: o}
		}
		a.release(owned, a.readAddresses(involved, false))
		return
	}
	m := a.r.mem
	want := make([]wantedAddress, 0, len(m.addrs))
	for addr, n := range m.addrs {
		if n > 0 {
			want = append(want, wantedAddress{addr: addr, refs: n})
		}
	}
	slices.SortFunc(want, func(x, y wantedAddress) int {
		if c := strings.Compare(x.addr.Interface, y.addr.Interface); c != 0 {
			return c
		}
		return x.addr.Prefix.Addr().Compare(y.addr.Prefix.Addr())
	})
	if a.interrupted() {
		return
	}
	a.claimAddresses(want, a.readAddresses(want, false))
}

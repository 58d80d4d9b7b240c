package reconcile

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// serviceStatus is where a cluster's IPVS service stands after syncService.
type serviceStatus int

const (
	// serviceReady: the service is in the kernel (its destinations may still have failed).
	serviceReady serviceStatus = iota
	// serviceMissing: the service could not be created.
	serviceMissing
	// serviceForeign: the kernel's service with this key is not the agent's.
	serviceForeign
)

// syncService makes the cluster's service and destinations match, with the fewest operations:
// a changed service is edited in place, never deleted and recreated (that would drop its
// connections and persistence entries).
func (a *apply) syncService(s *clusterSpec, inKernel map[dataplane.ServiceKey]dataplane.Service) serviceStatus {
	key := s.svc.ServiceKey
	cur, exists := inKernel[key]
	owned := a.r.owned.OwnsService(key)
	if exists && !owned {
		a.clusterErr(s.name, fmt.Errorf("fwmark %d %s is used by an IPVS service lvsctl does not own", key.FWMark, key.Family))
		return serviceForeign
	}

	var curDests []dataplane.Destination
	if !exists {
		// Recorded before it is created, so a crash between the two leaves an owned service
		// that is missing (recreated or forgotten by the next Apply), never an unowned one of
		// ours that would block its own cluster.
		if err := a.r.owned.RecordService(key); err != nil {
			a.clusterErr(s.name, fmt.Errorf("record ownership of service %s: %w", key, err))
			return serviceMissing
		}
		if err := a.r.ipvs.AddService(s.svc); err != nil {
			a.clusterErr(s.name, fmt.Errorf("add service %s: %w", key, err))
			// Not in the kernel, so not ours: if ErrExist, someone else created it meanwhile.
			if ferr := a.r.owned.ForgetService(key); ferr != nil {
				a.clusterErr(s.name, fmt.Errorf("forget service %s: %w", key, ferr))
			}
			return serviceMissing
		}
		a.done("add-service", s.name, key, netip.AddrPort{})
	} else {
		if cur != s.svc {
			if err := a.r.ipvs.UpdateService(s.svc); err != nil {
				a.clusterErr(s.name, fmt.Errorf("update service %s: %w", key, err))
			} else {
				a.done("update-service", s.name, key, netip.AddrPort{})
			}
		}
		var err error
		curDests, err = a.r.ipvs.Destinations(cur)
		if err != nil {
			a.clusterErr(s.name, fmt.Errorf("read destinations of service %s: %w", key, err))
			return serviceReady
		}
	}
	a.syncDestinations(s, curDests)
	return serviceReady
}

// syncDestinations adds and edits first and deletes last, so the service keeps as much capacity
// as it can while the set of reals changes.
func (a *apply) syncDestinations(s *clusterSpec, curDests []dataplane.Destination) {
	key := s.svc.ServiceKey
	cur := map[netip.AddrPort]dataplane.Destination{}
	for _, d := range curDests {
		cur[netip.AddrPortFrom(d.Address, d.Port)] = d
	}
	want := map[netip.AddrPort]bool{}
	for _, d := range s.dests {
		ap := netip.AddrPortFrom(d.Address, d.Port)
		want[ap] = true
		have, ok := cur[ap]
		switch {
		case !ok:
			if err := a.r.ipvs.AddDestination(s.svc, d); err != nil {
				a.clusterErr(s.name, fmt.Errorf("add destination %s to service %s: %w", ap, key, err))
				continue
			}
			a.done("add-destination", s.name, key, ap)
		case have.Weight != d.Weight || have.Forward != d.Forward:
			if err := a.r.ipvs.UpdateDestination(s.svc, d); err != nil {
				a.clusterErr(s.name, fmt.Errorf("update destination %s of service %s: %w", ap, key, err))
				continue
			}
			a.done("update-destination", s.name, key, ap)
		}
	}
	for _, d := range curDests {
		ap := netip.AddrPortFrom(d.Address, d.Port)
		if want[ap] {
			continue
		}
		if err := a.r.ipvs.DelDestination(s.svc, d); err != nil {
			a.clusterErr(s.name, fmt.Errorf("delete destination %s of service %s: %w", ap, key, err))
			continue
		}
		a.done("delete-destination", s.name, key, ap)
	}
}

// deleteServices removes the owned services that no cluster wants any more, and forgets owned
// services that are gone from the kernel. Services the agent does not own are never looked at.
func (a *apply) deleteServices(desired map[dataplane.ServiceKey]bool, inKernel map[dataplane.ServiceKey]dataplane.Service) {
	for _, key := range a.r.owned.OwnedServices() {
		if desired[key] {
			continue
		}
		if svc, ok := inKernel[key]; ok {
			if a.interrupted() {
				return
			}
			if err := a.r.ipvs.DelService(svc); err != nil && !errors.Is(err, dataplane.ErrNotExist) {
				a.directorErr(fmt.Errorf("delete service %s: %w", key, err))
				continue
			} else if err == nil {
				a.done("delete-service", "", key, netip.AddrPort{})
			}
		}
		if err := a.r.owned.ForgetService(key); err != nil {
			a.directorErr(fmt.Errorf("forget service %s: %w", key, err))
		}
	}
}

// done counts and logs one successful kernel change.
func (a *apply) done(op, cluster string, key dataplane.ServiceKey, dest netip.AddrPort) {
	a.res.Operations++
	attrs := []any{"op", op, "service", key.String()}
	if cluster != "" {
		attrs = append(attrs, "cluster", cluster)
	}
	if dest.IsValid() {
		attrs = append(attrs, "dest", dest.String())
	}
	a.r.log.Info("kernel change", attrs...)
}

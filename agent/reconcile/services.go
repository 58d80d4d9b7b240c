package reconcile

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/state"
)

// quietAbove is the number of kernel changes above which each is logged at debug level and
// only their count at info: a cold start of 10,000 services is 110,000 changes.
const quietAbove = 1000

// kernelOf tells what the kernel has for a spec's service: the service (nil when not known,
// e.g. not read), its destinations, and whether it exists.
type kernelOf func(*clusterSpec) (svc *dataplane.Service, dests []dataplane.Destination, exists bool)

// servicePlan is the IPVS changes of one cluster.
type servicePlan struct {
	s   *clusterSpec
	ops []dataplane.Op
	// record: the service is not owned yet: to be created, or adopted.
	record bool
}

// syncServices makes the clusters' services and destinations match, with the fewest
// operations, all sent to IPVS as one batch: a changed service is edited in place, never
// deleted and recreated (that would drop its connections and persistence entries). The
// services to be created are recorded as owned, in one save, before the batch.
func (a *apply) syncServices(specs []*clusterSpec, kernel kernelOf) {
	plans := make([]servicePlan, 0, len(specs))
	var record []dataplane.ServiceKey
	for _, s := range specs {
		key := s.svc.ServiceKey
		cur, curDests, exists := kernel(s)
		owned := a.r.owned.OwnsService(key)
		if exists && !owned && s.cluster.GetAdopt() {
			// lvsctl apply --adopt: a migration takes the service over as it is, recorded
			// as owned with no kernel operation (its connections and persistence stay, and
			// being as described, the owned path below plans none), or leaves it alone when
			// it differs: adopting must never edit it.
			if diff := adoptDiff(cur, curDests, s); diff != "" {
				s.foreign, s.serving = true, false
				a.clusterErr(s.name, fmt.Errorf("%s: %w: %s", describeKey(key), ErrAdoptDiffers, diff))
				continue
			}
			a.r.log.Info("kernel service adopted", "cluster", s.name, "service", describeKey(key))
		} else if exists && !owned {
			s.foreign, s.serving = true, false
			a.clusterErr(s.name, fmt.Errorf("%s is used by an IPVS service lvsctl does not own", describeKey(key)))
			continue
		}
		s.foreign, s.serving = false, true
		p := servicePlan{s: s, record: !owned}
		if p.record {
			record = append(record, key)
		}
		if !exists {
			p.ops = append(p.ops, dataplane.Op{Kind: dataplane.AddService, Service: s.svc})
			for _, d := range s.dests {
				p.ops = append(p.ops, dataplane.Op{Kind: dataplane.AddDestination, Service: s.svc, Dest: d})
			}
		} else {
			if cur == nil || *cur != s.svc {
				p.ops = append(p.ops, dataplane.Op{Kind: dataplane.UpdateService, Service: s.svc})
			}
			p.ops = destinationOps(p.ops, s, curDests)
		}
		plans = append(plans, p)
	}

	// Recorded before they are created, so a crash between the two leaves owned services that
	// are missing (recreated or forgotten by the next Apply), never unowned ones of ours that
	// would block their own clusters.
	if len(record) > 0 {
		if err := a.r.owned.Commit(state.Changes{RecordServices: record}); err != nil {
			for i := range plans {
				if p := &plans[i]; p.record {
					a.clusterErr(p.s.name, fmt.Errorf("record ownership of service %s: %w", p.s.svc.ServiceKey, err))
					p.ops, p.s.serving = nil, false
				}
			}
		}
	}

	n := 0
	for _, p := range plans {
		n += len(p.ops)
	}
	ops := make([]dataplane.Op, 0, n)
	for _, p := range plans {
		ops = append(ops, p.ops...)
	}
	if len(ops) == 0 {
		return
	}
	a.quiet = len(ops) > quietAbove
	errs := a.r.ipvs.Batch(ops)
	i := 0
	for _, p := range plans {
		key := p.s.svc.ServiceKey
		created := true
		for _, op := range p.ops {
			err := errors.New("no answer from IPVS")
			if i < len(errs) {
				err = errs[i]
			}
			i++
			ap := netip.AddrPortFrom(op.Dest.Address, op.Dest.Port)
			switch {
			case !created:
				// The service is not there: its destinations' refusals say nothing more.
			case err == nil:
				a.done(op.Kind.String(), p.s.name, key, ap)
			case op.Kind == dataplane.AddService:
				created, p.s.serving = false, false
				a.clusterErr(p.s.name, fmt.Errorf("add service %s: %w", key, err))
				// Refused, so not in the kernel, so not ours: if ErrExist, someone else created
				// it meanwhile. With the answer lost it may be there, so it stays owned: an owned
				// service that is missing is forgotten or recreated by the next reconcile, while
				// one of ours forgotten would block its cluster as foreign for good.
				if !errors.Is(err, dataplane.ErrOutcomeUnknown) {
					a.forget.ForgetServices = append(a.forget.ForgetServices, key)
				}
			case op.Kind == dataplane.UpdateService:
				a.clusterErr(p.s.name, fmt.Errorf("update service %s: %w", key, err))
			case op.Kind == dataplane.AddDestination:
				a.clusterErr(p.s.name, fmt.Errorf("add destination %s to service %s: %w", ap, key, err))
			case op.Kind == dataplane.UpdateDestination:
				a.clusterErr(p.s.name, fmt.Errorf("update destination %s of service %s: %w", ap, key, err))
			default:
				a.clusterErr(p.s.name, fmt.Errorf("delete destination %s of service %s: %w", ap, key, err))
			}
		}
	}
	if a.quiet {
		a.r.log.Info("kernel changes", "ipvs_operations", len(ops), "note", "one line each at debug level")
	}
}

// destinationOps adds and edits first and deletes last, so the service keeps as much capacity
// as it can while the set of reals changes.
func destinationOps(ops []dataplane.Op, s *clusterSpec, cur []dataplane.Destination) []dataplane.Op {
	find := func(list []dataplane.Destination, d dataplane.Destination) (dataplane.Destination, bool) {
		// A service has a handful of reals: a scan beats building a map for each of 10,000.
		for _, c := range list {
			if c.Address == d.Address && c.Port == d.Port {
				return c, true
			}
		}
		return dataplane.Destination{}, false
	}
	for _, d := range s.dests {
		have, ok := find(cur, d)
		switch {
		case !ok:
			ops = append(ops, dataplane.Op{Kind: dataplane.AddDestination, Service: s.svc, Dest: d})
		case have != d:
			// Weight, forwarding or thresholds: edited in place, the connections stay.
			ops = append(ops, dataplane.Op{Kind: dataplane.UpdateDestination, Service: s.svc, Dest: d})
		}
	}
	for _, d := range cur {
		if _, ok := find(s.dests, d); !ok {
			ops = append(ops, dataplane.Op{Kind: dataplane.DelDestination, Service: s.svc, Dest: d})
		}
	}
	return ops
}

// deleteServices removes the owned services that no cluster wants any more, and forgets owned
// services that are gone from the kernel. Services the agent does not own are never looked at.
func (a *apply) deleteServices(desired map[dataplane.ServiceKey]bool, inKernel map[dataplane.ServiceKey]*dataplane.ServiceStats) {
	var del []dataplane.ServiceKey
	for _, key := range a.r.owned.OwnedServices() {
		if desired[key] {
			continue
		}
		if _, ok := inKernel[key]; ok {
			del = append(del, key)
			continue
		}
		a.forget.ForgetServices = append(a.forget.ForgetServices, key)
	}
	a.delServices(del, func(k dataplane.ServiceKey) dataplane.Service { return inKernel[k].Service })
}

// delServices deletes services in one batch and forgets those that are gone.
func (a *apply) delServices(keys []dataplane.ServiceKey, svc func(dataplane.ServiceKey) dataplane.Service) {
	if len(keys) == 0 || a.interrupted() {
		return
	}
	a.quiet = a.quiet || len(keys) > quietAbove
	ops := make([]dataplane.Op, len(keys))
	for i, k := range keys {
		ops[i] = dataplane.Op{Kind: dataplane.DelService, Service: svc(k)}
	}
	errs := a.r.ipvs.Batch(ops)
	for i, k := range keys {
		err := errors.New("no answer from IPVS")
		if i < len(errs) {
			err = errs[i]
		}
		switch {
		case err == nil:
			a.done("delete-service", "", k, netip.AddrPort{})
		case !errors.Is(err, dataplane.ErrNotExist):
			a.directorErr(fmt.Errorf("delete service %s: %w", k, err))
			continue
		}
		a.forget.ForgetServices = append(a.forget.ForgetServices, k)
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
	if a.quiet {
		a.r.log.Debug("kernel change", attrs...)
		return
	}
	a.r.log.Info("kernel change", attrs...)
}

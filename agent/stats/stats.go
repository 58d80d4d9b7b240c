// Package stats samples IPVS's counters for the clusters the agent applies and turns them
// into status reports that carry only what changed since the previous report, so a fleet of
// idle directors sends nothing, and a busy one sends only its busy clusters.
package stats

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Sampler dumps the kernel's IPVS services with their counters: those keep keeps (the
// agent's own; another tool's are not read).
type Sampler interface {
	StatsOf(keep func(dataplane.ServiceKey) bool) ([]dataplane.ServiceStats, error)
}

// Real is what the agent knows of one real server beyond IPVS's counters: its health as this
// director's checks see it, and why its weight in the kernel may differ from the desired one.
type Real struct {
	Addr netip.Addr
	// Checked: a health check runs for it. Health is "up", "down" or "unknown" (no check
	// decided yet, or none configured), since Since (zero: not known).
	Checked bool
	Health  string
	Since   time.Time
	// Error is the check's last failure.
	Error string
	// Drained: an operator drained it (weight 0).
	Drained bool
	// Out: its check found it down and its cluster removes such servers, so it is not in the
	// IPVS service (it is reported all the same, with no counts).
	Out bool
	// Removing: it left its cluster and stays at weight 0 until RemovingUntil, or until its
	// connections are gone.
	Removing      bool
	RemovingUntil time.Time
	// Sorry: it is the cluster's sorry server, put in the service because no real server
	// can take new connections.
	Sorry bool
}

// Reals is one cluster's real servers as the agent sees them, sorted by address. A value is
// never changed once given to Sample: a new one replaces it, which is how Sample knows that a
// cluster must be reported again although its counters did not change (a health transition).
type Reals struct {
	List []Real
}

// find returns the server of address a (nil: none).
func (r *Reals) find(a netip.Addr) *Real {
	if r == nil {
		return nil
	}
	i, ok := slices.BinarySearchFunc(r.List, a, func(x Real, a netip.Addr) int { return x.Addr.Compare(a) })
	if !ok {
		return nil
	}
	return &r.List[i]
}

// Reporter keeps the last reported stats of each cluster.
type Reporter struct {
	sampler Sampler
	// last holds the kernel's values as sampled, not their protobuf form: comparing plain
	// structs is an order of magnitude cheaper than proto.Equal, and only changed clusters
	// are converted at all (10,000 services x 10 reals is the scale to plan for).
	last map[string]*dataplane.ServiceStats
	// lastReals is what was reported of each cluster's real servers beyond the counters;
	// compared by identity (Reals values are never changed).
	lastReals map[string]*Reals
	full      bool
}

// NewReporter returns a reporter whose first report is full.
func NewReporter(s Sampler) *Reporter {
	return &Reporter{sampler: s, last: map[string]*dataplane.ServiceStats{}, full: true}
}

// Reset makes the next report full: the controller it goes to may have nothing (a new
// stream, a restarted controller).
func (r *Reporter) Reset() { r.full = true }

// Sample reads the kernel once and returns the report to send, or nil when nothing changed.
// Only services of the desired clusters that owns says the agent owns are reported: the agent
// speaks for what it made, not for a foreign service that holds a desired cluster's mark.
// reals, by cluster name (nil, or a cluster missing: nothing to add), adds the health,
// drained and removing flags to the real servers; a cluster whose Reals value was replaced
// since the last report is reported again.
func (r *Reporter) Sample(clusters []*lvsctlv1.Cluster, owns func(dataplane.ServiceKey) bool, reals map[string]*Reals) (*lvsctlv1.StatusReport, error) {
	now, err := r.sample(clusters, owns)
	if err != nil {
		return nil, err
	}
	rep := &lvsctlv1.StatusReport{Full: r.full}
	for name, cs := range now {
		if old, ok := r.last[name]; r.full || !ok || !same(old, cs) || r.lastReals[name] != reals[name] {
			rep.Changed = append(rep.Changed, convert(name, cs, reals[name]))
		}
	}
	for name := range r.last {
		if _, ok := now[name]; !ok && !r.full {
			rep.Removed = append(rep.Removed, name)
		}
	}
	r.last, r.lastReals = now, reals
	if !r.full && len(rep.Changed) == 0 && len(rep.Removed) == 0 {
		return nil, nil
	}
	r.full = false
	slices.SortFunc(rep.Changed, func(a, b *lvsctlv1.ClusterStats) int { return strings.Compare(a.GetCluster(), b.GetCluster()) })
	slices.Sort(rep.Removed)
	return rep, nil
}

// Refresh reads the kernel once for Last, as Sample does, but builds no report: with no
// stream to the controller, converting one would be wasted work. The next report is full.
func (r *Reporter) Refresh(clusters []*lvsctlv1.Cluster, owns func(dataplane.ServiceKey) bool) error {
	now, err := r.sample(clusters, owns)
	if err != nil {
		return err
	}
	r.last, r.lastReals, r.full = now, nil, true
	return nil
}

func (r *Reporter) sample(clusters []*lvsctlv1.Cluster, owns func(dataplane.ServiceKey) bool) (map[string]*dataplane.ServiceStats, error) {
	raw, err := r.sampler.StatsOf(owns)
	if err != nil {
		return nil, fmt.Errorf("sampling IPVS stats: %w", err)
	}
	byKey := make(map[dataplane.ServiceKey]*dataplane.ServiceStats, len(raw))
	for i := range raw {
		byKey[raw[i].ServiceKey] = &raw[i]
	}
	now := make(map[string]*dataplane.ServiceStats, len(clusters))
	for _, c := range clusters {
		k, ok := dataplane.KeyOf(c)
		if !ok || !owns(k) {
			continue
		}
		if s := byKey[k]; s != nil {
			now[c.GetName()] = s
		}
	}
	return now, nil
}

// Last returns the latest sample of every cluster, by cluster name (for /metrics).
func (r *Reporter) Last() map[string]*dataplane.ServiceStats { return r.last }

func same(a, b *dataplane.ServiceStats) bool {
	return a.Service == b.Service && a.Counters == b.Counters && slices.Equal(a.Destinations, b.Destinations)
}

func convert(cluster string, s *dataplane.ServiceStats, reals *Reals) *lvsctlv1.ClusterStats {
	cs := &lvsctlv1.ClusterStats{Cluster: cluster, Fwmark: s.FWMark, Counters: counters(s.Counters)}
	for _, d := range s.Destinations {
		rs := &lvsctlv1.RealServerStats{
			Address:         d.Address.String(),
			Weight:          d.Weight,
			ActiveConns:     d.ActiveConns,
			InactiveConns:   d.InactiveConns,
			PersistentConns: d.PersistentConns,
			Counters:        counters(d.Counters),
		}
		r := reals.find(d.Address)
		annotate(rs, r)
		// Said of what the kernel has: a sorry server the agent means to add but has not yet
		// is not in use.
		cs.SorryInUse = cs.SorryInUse || rs.Sorry
		cs.Reals = append(cs.Reals, rs)
	}
	if reals != nil {
		// A server its check took out of the service is not in the kernel: reported all the
		// same, so that status shows it down rather than not at all.
		for i := range reals.List {
			r := &reals.List[i]
			if !r.Out || slices.ContainsFunc(s.Destinations, func(d dataplane.DestinationStats) bool { return d.Address == r.Addr }) {
				continue
			}
			rs := &lvsctlv1.RealServerStats{Address: r.Addr.String(), Counters: &lvsctlv1.Counters{}}
			annotate(rs, r)
			cs.Reals = append(cs.Reals, rs)
		}
	}
	slices.SortFunc(cs.Reals, func(a, b *lvsctlv1.RealServerStats) int { return strings.Compare(a.GetAddress(), b.GetAddress()) })
	return cs
}

// annotate sets what the agent knows of a real server beyond its counters (r nil: nothing, its
// health unknown).
func annotate(rs *lvsctlv1.RealServerStats, r *Real) {
	rs.Health = "unknown"
	if r == nil {
		return
	}
	if r.Health != "" {
		rs.Health = r.Health
	}
	if !r.Since.IsZero() {
		rs.HealthSinceUnixMs = r.Since.UnixMilli()
	}
	rs.HealthError = r.Error
	rs.Drained = r.Drained
	rs.Removing = r.Removing
	rs.Sorry = r.Sorry
	if r.Removing {
		rs.RemovingUntilUnixMs = r.RemovingUntil.UnixMilli()
	}
}

func counters(c dataplane.Counters) *lvsctlv1.Counters {
	return &lvsctlv1.Counters{
		Conns: c.Conns, InPackets: c.InPackets, OutPackets: c.OutPackets, InBytes: c.InBytes, OutBytes: c.OutBytes,
		Cps: c.CPS, InPps: c.InPPS, OutPps: c.OutPPS, InBps: c.InBPS, OutBps: c.OutBPS,
	}
}

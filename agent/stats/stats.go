// Package stats samples IPVS's counters for the clusters the agent applies and turns them
// into status reports that carry only what changed since the previous report, so a fleet of
// idle directors sends nothing, and a busy one sends only its busy clusters.
package stats

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Sampler dumps the kernel's IPVS services with their counters.
type Sampler interface {
	Stats() ([]dataplane.ServiceStats, error)
}

// Reporter keeps the last reported stats of each cluster.
type Reporter struct {
	sampler Sampler
	// last holds the kernel's values as sampled, not their protobuf form: comparing plain
	// structs is an order of magnitude cheaper than proto.Equal, and only changed clusters
	// are converted at all (10,000 services x 10 reals is the scale to plan for).
	last map[string]*dataplane.ServiceStats
	full bool
}

// NewReporter returns a reporter whose first report is full.
func NewReporter(s Sampler) *Reporter {
	return &Reporter{sampler: s, last: map[string]*dataplane.ServiceStats{}, full: true}
}

// Reset makes the next report full: the controller it goes to may have nothing (a new
// stream, a restarted controller).
func (r *Reporter) Reset() { r.full = true }

// keyOf is the IPVS service a cluster becomes: its VIPs' family and its mark.
func keyOf(c *lvsctlv1.Cluster) (dataplane.ServiceKey, bool) {
	if len(c.GetVips()) == 0 {
		return dataplane.ServiceKey{}, false
	}
	a, err := netip.ParseAddr(c.GetVips()[0])
	if err != nil {
		return dataplane.ServiceKey{}, false
	}
	return dataplane.ServiceKey{Family: dataplane.FamilyOf(a), FWMark: c.GetFwmark()}, true
}

// Sample reads the kernel once and returns the report to send, or nil when nothing changed.
// Only services of the desired clusters that owns says the agent owns are reported: the agent
// speaks for what it made, not for a foreign service that holds a desired cluster's mark.
func (r *Reporter) Sample(clusters []*lvsctlv1.Cluster, owns func(dataplane.ServiceKey) bool) (*lvsctlv1.StatusReport, error) {
	now, err := r.sample(clusters, owns)
	if err != nil {
		return nil, err
	}
	rep := &lvsctlv1.StatusReport{Full: r.full}
	for name, cs := range now {
		if old, ok := r.last[name]; r.full || !ok || !same(old, cs) {
			rep.Changed = append(rep.Changed, convert(name, cs))
		}
	}
	for name := range r.last {
		if _, ok := now[name]; !ok && !r.full {
			rep.Removed = append(rep.Removed, name)
		}
	}
	r.last = now
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
	r.last, r.full = now, true
	return nil
}

func (r *Reporter) sample(clusters []*lvsctlv1.Cluster, owns func(dataplane.ServiceKey) bool) (map[string]*dataplane.ServiceStats, error) {
	raw, err := r.sampler.Stats()
	if err != nil {
		return nil, fmt.Errorf("sampling IPVS stats: %w", err)
	}
	byKey := make(map[dataplane.ServiceKey]*dataplane.ServiceStats, len(raw))
	for i := range raw {
		byKey[raw[i].ServiceKey] = &raw[i]
	}
	now := make(map[string]*dataplane.ServiceStats, len(clusters))
	for _, c := range clusters {
		k, ok := keyOf(c)
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

func convert(cluster string, s *dataplane.ServiceStats) *lvsctlv1.ClusterStats {
	cs := &lvsctlv1.ClusterStats{Cluster: cluster, Fwmark: s.FWMark, Counters: counters(s.Counters)}
	for _, d := range s.Destinations {
		cs.Reals = append(cs.Reals, &lvsctlv1.RealServerStats{
			Address:         d.Address.String(),
			Weight:          d.Weight,
			ActiveConns:     d.ActiveConns,
			InactiveConns:   d.InactiveConns,
			PersistentConns: d.PersistentConns,
			Counters:        counters(d.Counters),
		})
	}
	slices.SortFunc(cs.Reals, func(a, b *lvsctlv1.RealServerStats) int { return strings.Compare(a.GetAddress(), b.GetAddress()) })
	return cs
}

func counters(c dataplane.Counters) *lvsctlv1.Counters {
	return &lvsctlv1.Counters{
		Conns: c.Conns, InPackets: c.InPackets, OutPackets: c.OutPackets, InBytes: c.InBytes, OutBytes: c.OutBytes,
		Cps: c.CPS, InPps: c.InPPS, OutPps: c.OutPPS, InBps: c.InBPS, OutBps: c.OutBPS,
	}
}

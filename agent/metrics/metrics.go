// Package metrics exposes the agent's Prometheus metrics: the connection counts and
// counters of every cluster and real server it applies, as last sampled from the kernel, the
// real servers' health as this director's checks see it, how its reconciles go, and what it
// refused (lvsctl_agent_refused_total{reason}).
//
// Cardinality: every series of a real server is labelled (cluster, real), as the kernel has
// one destination per cluster and real server: at 10,000 clusters x 10 real servers, 100,000
// series per per-real metric, lvsctl_real_health included (it has one series per checked real
// server only). lvsctl_real_health_transitions_total is labelled by the real server's address
// alone, since a real server shared by many clusters is probed once: one series per distinct
// checked address (1,000 for 10,000 clusters sharing 1,000 servers).
package metrics

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/stats"
)

// Agent holds the agent's metrics. The zero value is not usable; use New.
type Agent struct {
	reconcileSeconds prometheus.Histogram
	operations       prometheus.Counter
	clusterErrors    prometheus.Gauge
	directorErrors   prometheus.Gauge
	applied          prometheus.Gauge
	transitions      *prometheus.CounterVec
	refused          *prometheus.CounterVec

	mu     sync.Mutex
	stats  map[string]*dataplane.ServiceStats
	health map[string]*stats.Reals
}

var (
	realLabels    = []string{"cluster", "real"}
	clusterLabels = []string{"cluster"}

	descRealActive     = prometheus.NewDesc("lvsctl_real_active_connections", "Active (established) connections to a real server, from IPVS.", realLabels, nil)
	descRealInactive   = prometheus.NewDesc("lvsctl_real_inactive_connections", "Inactive connections to a real server, from IPVS.", realLabels, nil)
	descRealPersistent = prometheus.NewDesc("lvsctl_real_persistent_connections", "Persistence templates pointing at a real server, from IPVS.", realLabels, nil)
	descRealWeight     = prometheus.NewDesc("lvsctl_real_weight", "Weight of a real server in the kernel.", realLabels, nil)
	descRealConns      = prometheus.NewDesc("lvsctl_real_connections_total", "Connections scheduled to a real server.", realLabels, nil)
	descRealInBytes    = prometheus.NewDesc("lvsctl_real_in_bytes_total", "Bytes from clients to a real server.", realLabels, nil)
	descRealOutBytes   = prometheus.NewDesc("lvsctl_real_out_bytes_total", "Bytes from a real server to clients.", realLabels, nil)
	descRealInPackets  = prometheus.NewDesc("lvsctl_real_in_packets_total", "Packets from clients to a real server.", realLabels, nil)
	descRealOutPackets = prometheus.NewDesc("lvsctl_real_out_packets_total", "Packets from a real server to clients.", realLabels, nil)
	descConns          = prometheus.NewDesc("lvsctl_cluster_connections_total", "Connections scheduled by a cluster's IPVS service.", clusterLabels, nil)
	descInBytes        = prometheus.NewDesc("lvsctl_cluster_in_bytes_total", "Bytes from clients through a cluster's service.", clusterLabels, nil)
	descOutBytes       = prometheus.NewDesc("lvsctl_cluster_out_bytes_total", "Bytes to clients through a cluster's service.", clusterLabels, nil)
	descInPackets      = prometheus.NewDesc("lvsctl_cluster_in_packets_total", "Packets from clients through a cluster's service.", clusterLabels, nil)
	descOutPackets     = prometheus.NewDesc("lvsctl_cluster_out_packets_total", "Packets to clients through a cluster's service.", clusterLabels, nil)
	descRealHealth     = prometheus.NewDesc("lvsctl_real_health", "Health of a checked real server as this director's checks see it: 1 up or not yet known (it serves), 0 down.", realLabels, nil)
)

// Refusal reasons: the values of lvsctl_agent_refused_total's reason label, one per way the
// agent refuses what it was told or what it saved (agent/daemon says which is which).
const (
	// RefusedNotInGroup: a snapshot or delta for a director group that does not list this
	// director.
	RefusedNotInGroup = "not_in_group"
	// RefusedNoGroup: the empty state of a director in no group, while the kernel holds what
	// the agent would lose to it.
	RefusedNoGroup = "no_group"
	// RefusedRevision: a snapshot or delta older than the revision the agent applied.
	RefusedRevision = "revision_backwards"
	// RefusedEpoch: a role assignment older than the epoch the agent obeys in its group.
	RefusedEpoch = "epoch_backwards"
	// RefusedStateIntegrity: the saved state failed its integrity check at start; it is not
	// applied.
	RefusedStateIntegrity = "state_integrity"
)

// RefusalReasons are the reason label's values, each exported from the start (at 0), so that
// an alert on an increase sees the first refusal.
var RefusalReasons = []string{RefusedNotInGroup, RefusedNoGroup, RefusedRevision, RefusedEpoch, RefusedStateIntegrity}

// New registers the agent's metrics on reg.
func New(reg prometheus.Registerer) *Agent {
	m := &Agent{
		reconcileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lvsctl_agent_reconcile_duration_seconds", Help: "Duration of one reconcile of the kernel against the desired state.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}),
		operations:     prometheus.NewCounter(prometheus.CounterOpts{Name: "lvsctl_agent_kernel_operations_total", Help: "Kernel changes made by reconciles."}),
		clusterErrors:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvsctl_agent_cluster_errors", Help: "Clusters that failed to apply in the last reconcile."}),
		directorErrors: prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvsctl_agent_director_errors", Help: "Director-wide errors in the last reconcile."}),
		applied:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "lvsctl_agent_applied_revision", Help: "Revision of the desired state last applied."}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvsctl_real_health_transitions_total",
			Help: "Changes of a real server's health (its first verdict included), per address: a server shared by clusters is checked once."}, []string{"real"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lvsctl_agent_refused_total",
			Help: "Desired states, role assignments and saved states the agent refused to apply, by reason."}, []string{"reason"}),
	}
	for _, r := range RefusalReasons {
		m.refused.WithLabelValues(r)
	}
	reg.MustRegister(m.reconcileSeconds, m.operations, m.clusterErrors, m.directorErrors, m.applied, m.transitions, m.refused, m)
	return m
}

// Refused counts one refusal; reason is one of RefusalReasons.
func (m *Agent) Refused(reason string) {
	m.refused.WithLabelValues(reason).Inc()
}

// HealthTransition counts one change of a checked address's health.
func (m *Agent) HealthTransition(real string) {
	m.transitions.WithLabelValues(real).Inc()
}

// SetHealth replaces the real servers' health, by cluster name. The map and its values must
// not be changed afterwards.
func (m *Agent) SetHealth(h map[string]*stats.Reals) {
	m.mu.Lock()
	m.health = h
	m.mu.Unlock()
}

// ObserveReconcile records one reconcile.
func (m *Agent) ObserveReconcile(d time.Duration, rev int64, operations, clusterErrors, directorErrors int) {
	m.reconcileSeconds.Observe(d.Seconds())
	m.operations.Add(float64(operations))
	m.clusterErrors.Set(float64(clusterErrors))
	m.directorErrors.Set(float64(directorErrors))
	m.applied.Set(float64(rev))
}

// SetStats replaces the sampled stats, by cluster name. The map and its values must not be
// changed afterwards (the stats reporter makes a new one each sample).
func (m *Agent) SetStats(s map[string]*dataplane.ServiceStats) {
	m.mu.Lock()
	m.stats = s
	m.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (m *Agent) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRealHealth, descRealActive, descRealInactive, descRealPersistent, descRealWeight, descRealConns,
		descRealInBytes, descRealOutBytes, descRealInPackets, descRealOutPackets, descConns, descInBytes, descOutBytes, descInPackets, descOutPackets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the last sample.
func (m *Agent) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	s, h := m.stats, m.health
	m.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(h)) {
		for _, r := range h[name].List {
			if !r.Checked {
				continue
			}
			v := 1.0
			if r.Health == "down" {
				v = 0
			}
			ch <- prometheus.MustNewConstMetric(descRealHealth, prometheus.GaugeValue, v, name, r.Addr.String())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s)) {
		svc := s[name]
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		counter(descConns, svc.Counters.Conns, name)
		counter(descInBytes, svc.Counters.InBytes, name)
		counter(descOutBytes, svc.Counters.OutBytes, name)
		counter(descInPackets, svc.Counters.InPackets, name)
		counter(descOutPackets, svc.Counters.OutPackets, name)
		for _, d := range svc.Destinations {
			real := d.Address.String()
			gauge(descRealActive, float64(d.ActiveConns), name, real)
			gauge(descRealInactive, float64(d.InactiveConns), name, real)
			gauge(descRealPersistent, float64(d.PersistentConns), name, real)
			gauge(descRealWeight, float64(d.Weight), name, real)
			counter(descRealConns, d.Counters.Conns, name, real)
			counter(descRealInBytes, d.Counters.InBytes, name, real)
			counter(descRealOutBytes, d.Counters.OutBytes, name, real)
			counter(descRealInPackets, d.Counters.InPackets, name, real)
			counter(descRealOutPackets, d.Counters.OutPackets, name, real)
		}
	}
}

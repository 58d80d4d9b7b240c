package fleet

import (
	"github.com/prometheus/client_golang/prometheus"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

var (
	descConnected = prometheus.NewDesc("lvsctl_director_connected", "1 when the director's agent has a stream to this controller.", []string{"director", "group"}, nil)
	descLag       = prometheus.NewDesc("lvsctl_director_revision_lag", "Desired revision minus the revision the director applied (0 when in sync).", []string{"director", "group"}, nil)
	descErrors    = prometheus.NewDesc("lvsctl_director_errors", "Cluster and director errors the director reported with its last ack.", []string{"director", "group"}, nil)
	descStreams   = prometheus.NewDesc("lvsctl_agent_streams", "Agent streams open on this controller.", nil, nil)
	realLabels    = []string{"cluster", "real"}
	descActive    = prometheus.NewDesc("lvsctl_fleet_real_active_connections", "Active connections to a real server, summed over the directors.", realLabels, nil)
	descInactive  = prometheus.NewDesc("lvsctl_fleet_real_inactive_connections", "Inactive connections to a real server, summed over the directors.", realLabels, nil)
	descPersist   = prometheus.NewDesc("lvsctl_fleet_real_persistent_connections", "Persistence templates for a real server, summed over the directors.", realLabels, nil)
	descConns     = prometheus.NewDesc("lvsctl_fleet_cluster_connections_total", "Connections scheduled by a cluster, summed over the directors.", []string{"cluster"}, nil)
	descInBytes   = prometheus.NewDesc("lvsctl_fleet_cluster_in_bytes_total", "Bytes from clients through a cluster, summed over the directors.", []string{"cluster"}, nil)
	descOutBytes  = prometheus.NewDesc("lvsctl_fleet_cluster_out_bytes_total", "Bytes to clients through a cluster, summed over the directors.", []string{"cluster"}, nil)
)

// Collector exposes the fleet's status as Prometheus metrics, computed at scrape time from
// the registry (nothing is kept twice).
type Collector struct{ f *Fleet }

// NewCollector returns a collector over f.
func NewCollector(f *Fleet) *Collector { return &Collector{f: f} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnected, descLag, descErrors, descStreams, descActive, descInactive, descPersist, descConns, descInBytes, descOutBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	dirs := c.f.List("")
	streams := 0
	for _, d := range dirs {
		connected := 0.0
		if d.GetConnected() {
			connected = 1
			streams++
		}
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected, d.GetDirector(), d.GetGroup())
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(d.GetDesiredRevision()-d.GetAppliedRevision()), d.GetDirector(), d.GetGroup())
		ch <- prometheus.MustNewConstMetric(descErrors, prometheus.GaugeValue, float64(len(d.GetErrors())+len(d.GetDirectorErrors())), d.GetDirector(), d.GetGroup())
	}
	ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(streams))
	for _, cs := range Aggregate(dirs) {
		collectCluster(ch, cs)
	}
}

func collectCluster(ch chan<- prometheus.Metric, cs *lvsctlv1.ClusterStats) {
	name := cs.GetCluster()
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.CounterValue, float64(cs.GetCounters().GetConns()), name)
	ch <- prometheus.MustNewConstMetric(descInBytes, prometheus.CounterValue, float64(cs.GetCounters().GetInBytes()), name)
	ch <- prometheus.MustNewConstMetric(descOutBytes, prometheus.CounterValue, float64(cs.GetCounters().GetOutBytes()), name)
	for _, r := range cs.GetReals() {
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(r.GetActiveConns()), name, r.GetAddress())
		ch <- prometheus.MustNewConstMetric(descInactive, prometheus.GaugeValue, float64(r.GetInactiveConns()), name, r.GetAddress())
		ch <- prometheus.MustNewConstMetric(descPersist, prometheus.GaugeValue, float64(r.GetPersistentConns()), name, r.GetAddress())
	}
}

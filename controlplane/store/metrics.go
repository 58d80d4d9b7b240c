package store

import "github.com/prometheus/client_golang/prometheus"

var descUndecodable = prometheus.NewDesc("lvsctl_store_undecodable_values",
	"Keys under /lvsctl/v1/ whose values do not decode: their objects are skipped (the controller's log names each key).",
	nil, nil)

// Collector exposes the cache's health as Prometheus metrics, read at scrape time.
type Collector struct{ c *Cache }

// NewCollector returns a collector over the cache.
func NewCollector(c *Cache) *Collector { return &Collector{c: c} }

// Describe implements prometheus.Collector.
func (m *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- descUndecodable }

// Collect implements prometheus.Collector.
func (m *Collector) Collect(ch chan<- prometheus.Metric) {
	m.c.mu.RLock()
	n := len(m.c.undecodable)
	m.c.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(descUndecodable, prometheus.GaugeValue, float64(n))
}

package metrics

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvsctl/lvsctl/agent/stats"
)

// series returns name's series as "label=value,...": value.
func series(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, lp := range m.GetLabel() {
				key += lp.GetName() + "=" + lp.GetValue() + ","
			}
			switch {
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestHealthMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	m.SetHealth(map[string]*stats.Reals{
		"wms": {List: []stats.Real{
			{Addr: netip.MustParseAddr("198.51.100.1"), Checked: true, Health: "up"},
			{Addr: netip.MustParseAddr("198.51.100.2"), Checked: true, Health: "down"},
			{Addr: netip.MustParseAddr("198.51.100.3"), Checked: true, Health: "unknown"},
			// Not checked (drained, no check): no health series.
			{Addr: netip.MustParseAddr("198.51.100.4"), Health: "unknown", Drained: true},
		}},
	})
	m.HealthTransition("198.51.100.2")
	m.HealthTransition("198.51.100.2")
	got := series(t, reg, "lvsctl_real_health")
	want := map[string]float64{
		"cluster=wms,real=198.51.100.1,": 1,
		"cluster=wms,real=198.51.100.2,": 0,
		"cluster=wms,real=198.51.100.3,": 1, // unknown serves
	}
	if len(got) != len(want) {
		t.Errorf("lvsctl_real_health: %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("lvsctl_real_health{%s} = %v (present %v), want %v", k, g, ok, v)
		}
	}
	if got := series(t, reg, "lvsctl_real_health_transitions_total"); len(got) != 1 || got["real=198.51.100.2,"] != 2 {
		t.Errorf("lvsctl_real_health_transitions_total: %v, want 2 for .2", got)
	}
}

// TestRefused: every reason is exported at 0 from the start; each refusal counts under its own.
func TestRefused(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	got := series(t, reg, "lvsctl_agent_refused_total")
	if len(got) != len(RefusalReasons) {
		t.Fatalf("lvsctl_agent_refused_total before any refusal: %v, want the %d reasons at 0", got, len(RefusalReasons))
	}
	for _, r := range RefusalReasons {
		if v, ok := got["reason="+r+","]; !ok || v != 0 {
			t.Errorf("reason %s: %v (present %v), want 0", r, v, ok)
		}
	}
	m.Refused(RefusedRevision)
	m.Refused(RefusedRevision)
	m.Refused(RefusedEpoch)
	got = series(t, reg, "lvsctl_agent_refused_total")
	if got["reason=revision_backwards,"] != 2 || got["reason=epoch_backwards,"] != 1 || got["reason=not_in_group,"] != 0 {
		t.Errorf("lvsctl_agent_refused_total: %v, want revision_backwards 2, epoch_backwards 1, the rest 0", got)
	}
}

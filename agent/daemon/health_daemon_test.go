package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The agent with health checks, drains and removals, end to end over the fake kernel: a real
// checker (its probes answered by the test), the real reconciler, the stats reporter.

// probes answers the checker's probes: a failing address is refused, the others answer.
type probes struct {
	mu      sync.Mutex
	failing map[netip.Addr]bool
}

func newProbes() *probes { return &probes{failing: map[netip.Addr]bool{}} }

func (p *probes) probe(_ context.Context, a netip.Addr, _ health.Spec) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing[a] {
		return fmt.Errorf("connect %s: %w", a, checker.ErrRefused)
	}
	return nil
}

func (p *probes) fail(a string, failing bool) {
	p.mu.Lock()
	p.failing[netip.MustParseAddr(a)] = failing
	p.mu.Unlock()
}

// fastCheck is a check the tests can wait for: down after 2 x 20 ms, up after 2.
func fastCheck(onFailure string) *lvsctlv1.HealthCheck {
	return &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 20, TimeoutMs: 10, Rise: 2, Fall: 2, OnFailure: onFailure}
}

var wmsKey = dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 17}

// kernelWeight is the weight of real a in wms's service ("absent": not there).
func kernelWeight(t *testing.T, e *agentEnv, a string) string {
	t.Helper()
	svcs, err := e.ipvs.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svcs {
		if s.ServiceKey != wmsKey {
			continue
		}
		for _, d := range s.Destinations {
			if d.Address.String() == a {
				return fmt.Sprint(d.Weight)
			}
		}
	}
	return "absent"
}

// waitWeight waits until real a has weight want in the kernel.
func waitWeight(t *testing.T, e *agentEnv, a, want string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := kernelWeight(t, e, a)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("real %s has weight %s in the kernel after %s, want %s:\n%s", a, got, wait, want, e.ipvs.Dump())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitReal waits for a status report that says of real a in wms what match accepts.
func waitReal(t *testing.T, e *agentEnv, a string, match func(*lvsctlv1.RealServerStats) bool) *lvsctlv1.RealServerStats {
	t.Helper()
	var found *lvsctlv1.RealServerStats
	e.waitSent(t, func(m *lvsctlv1.ConnectRequest) bool {
		for _, c := range m.GetStatus().GetChanged() {
			for _, r := range c.GetReals() {
				if c.GetCluster() == "wms" && r.GetAddress() == a && match(r) {
					found = r
					return true
				}
			}
		}
		return false
	})
	return found
}

func setConns(t *testing.T, e *agentEnv, a string, active, persistent uint32) {
	t.Helper()
	err := e.ipvs.SetDestinationStats(wmsKey, dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr(a)},
		ActiveConns: active, PersistentConns: persistent})
	if err != nil {
		t.Fatal(err)
	}
}

func wmsDelta(prev, rev int64, c *lvsctlv1.Cluster) *lvsctlv1.ConnectResponse {
	return &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
		PrevRevision: prev, Revision: rev, Upserted: []*lvsctlv1.Cluster{c}}}}
}

// TestHealthWeights: a real server whose check fails gets weight 0 (quiesce) or leaves the
// service (remove) within fall x interval, status and /metrics say it is down and why, and
// it gets its weight back once it answers again.
func TestHealthWeights(t *testing.T) {
	for _, tc := range []struct {
		onFailure, whileDown string
	}{
		{"quiesce", "0"},
		{"remove", "absent"},
	} {
		t.Run(tc.onFailure, func(t *testing.T) {
			p := newProbes()
			e := startAgentWith(t, t.TempDir(), newFakeSession(true), envOptions{probe: p.probe}, func(c *Config) { c.StatsPeriod = statsPeriod })
			c := wms(tc.onFailure)
			c.Health = fastCheck(tc.onFailure)
			e.deliver(t, snapshot(1, "edge-1", c))
			e.waitApplied(t, 1)
			waitReal(t, e, "198.51.100.2", func(r *lvsctlv1.RealServerStats) bool { return r.GetHealth() == "up" })

			p.fail("198.51.100.2", true)
			waitWeight(t, e, "198.51.100.2", tc.whileDown)
			for _, other := range []string{"198.51.100.1", "198.51.100.3"} {
				if w := kernelWeight(t, e, other); w != "100" {
					t.Errorf("healthy %s has weight %s", other, w)
				}
			}
			r := waitReal(t, e, "198.51.100.2", func(r *lvsctlv1.RealServerStats) bool { return r.GetHealth() == "down" })
			if r.GetHealthSinceUnixMs() < e.started.UnixMilli() || r.GetHealthError() == "" || r.GetWeight() != 0 {
				t.Errorf("status of the down server: %v", r)
			}
			if v := gauge(t, e.reg, "lvsctl_real_health", "198.51.100.2"); v != 0 {
				t.Errorf("lvsctl_real_health of the down server: %v", v)
			}
			// The desired state saved is the controller's, weights and all.
			if d, _ := e.st.Desired(); weights(d.State.GetClusters()[0]) != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" {
				t.Errorf("saved %s", weights(d.State.GetClusters()[0]))
			}

			p.fail("198.51.100.2", false)
			waitWeight(t, e, "198.51.100.2", "100")
			waitReal(t, e, "198.51.100.2", func(r *lvsctlv1.RealServerStats) bool { return r.GetHealth() == "up" && r.GetHealthError() == "" })
			// The first verdict, down, up: three transitions.
			if v := counter(t, e.reg, "lvsctl_real_health_transitions_total", "198.51.100.2"); v != 3 {
				t.Errorf("lvsctl_real_health_transitions_total of .2: %v, want 3", v)
			}
		})
	}
}

// gauge and counter read a metric of real a (-1: absent).
func gauge(t *testing.T, reg *prometheus.Registry, name, a string) float64 {
	return metricOf(t, reg, name, a, false)
}

func counter(t *testing.T, reg *prometheus.Registry, name, a string) float64 {
	return metricOf(t, reg, name, a, true)
}

func metricOf(t *testing.T, reg *prometheus.Registry, name, a string, isCounter bool) float64 {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "real" && lp.GetValue() == a {
						if isCounter {
							return m.GetCounter().GetValue()
						}
						return m.GetGauge().GetValue()
					}
				}
			}
		}
		// The metrics follow the stats period.
		if time.Now().After(deadline) {
			return -1
		}
		time.Sleep(statsPeriod)
	}
}

// TestDrained: a drained real server has weight 0 from the start, status says drained, and
// enabling it gives its weight back; with no check configured its health is unknown.
func TestDrained(t *testing.T) {
	e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) { c.StatsPeriod = statsPeriod })
	c := wms("")
	c.Health = nil
	c.Reals[0].Drained = true
	e.deliver(t, snapshot(1, "edge-1", c))
	e.waitApplied(t, 1)
	if w := kernelWeight(t, e, "198.51.100.1"); w != "0" {
		t.Fatalf("drained real has weight %s", w)
	}
	r := waitReal(t, e, "198.51.100.1", func(r *lvsctlv1.RealServerStats) bool { return r.GetDrained() })
	if r.GetHealth() != "unknown" || r.GetRemoving() {
		t.Errorf("status %v", r)
	}
	enabled := wms("")
	enabled.Health = nil
	e.deliver(t, wmsDelta(1, 2, enabled))
	e.waitApplied(t, 2)
	if w := kernelWeight(t, e, "198.51.100.1"); w != "100" {
		t.Errorf("enabled real has weight %s", w)
	}
	waitReal(t, e, "198.51.100.1", func(r *lvsctlv1.RealServerStats) bool { return !r.GetDrained() })
}

// TestRemovalGrace: a real server removed from its cluster stays at weight 0 while it has
// connections, and leaves the kernel when its grace passes or its connections end.
func TestRemovalGrace(t *testing.T) {
	for _, tc := range []struct {
		name      string
		grace     uint32 // ms
		removeNow bool
		endConns  bool // the connections end (before the grace)
	}{
		{"grace passes with a connection left", 400, false, false},
		{"connections end before the grace", 3600 * 1000, false, true},
		{"remove_now: cut at once", 3600 * 1000, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) { c.StatsPeriod = statsPeriod })
			c := wms("")
			c.Health = nil
			e.deliver(t, snapshot(1, "edge-1", c))
			e.waitApplied(t, 1)
			setConns(t, e, "198.51.100.3", 1, 1)

			two := wms("")
			two.Health, two.Reals, two.RemoveGraceMs, two.RemoveNow = nil, two.Reals[:2], tc.grace, tc.removeNow
			removed := time.Now()
			e.deliver(t, wmsDelta(1, 2, two))
			e.waitApplied(t, 2)
			if tc.removeNow {
				if w := kernelWeight(t, e, "198.51.100.3"); w != "absent" {
					t.Errorf("with remove_now, the real is still there at weight %s", w)
				}
				return
			}
			if w := kernelWeight(t, e, "198.51.100.3"); w != "0" {
				t.Fatalf("the removed real has weight %s, want 0 (held)", w)
			}
			r := waitReal(t, e, "198.51.100.3", func(r *lvsctlv1.RealServerStats) bool { return r.GetRemoving() })
			// (Milliseconds on the wire: until may be up to one short of removed + grace.)
			if until := time.UnixMilli(r.GetRemovingUntilUnixMs()); until.Before(removed.Add(time.Duration(tc.grace-1)*time.Millisecond)) || r.GetActiveConns() != 1 {
				t.Errorf("status of the removed real %v", r)
			}
			// Samples that find its connection keep it.
			time.Sleep(10 * statsPeriod)
			if w := kernelWeight(t, e, "198.51.100.3"); w != "0" && time.Since(removed) < time.Duration(tc.grace)*time.Millisecond {
				t.Fatalf("the removed real is %s before its grace passed, with a connection", w)
			}
			if tc.endConns {
				setConns(t, e, "198.51.100.3", 0, 0)
			}
			waitWeight(t, e, "198.51.100.3", "absent")
			if took := time.Since(removed); !tc.endConns && took < time.Duration(tc.grace)*time.Millisecond {
				t.Errorf("removed %s after, before its grace (%d ms)", took, tc.grace)
			}
			for _, a := range []string{"198.51.100.1", "198.51.100.2"} {
				if w := kernelWeight(t, e, a); w != "100" {
					t.Errorf("%s has weight %s", a, w)
				}
			}
		})
	}
}

// TestRestartKeepsDrainAndRemoval: an agent restarted during a controller outage keeps a
// drained real drained (the saved desired state says so) and holds a real server being
// removed for a grace again, instead of cutting its connections.
func TestRestartKeepsDrainAndRemoval(t *testing.T) {
	dir := t.TempDir()
	first := startAgent(t, dir, newFakeSession(true), nil)
	c := wms("")
	c.Health = nil
	first.deliver(t, snapshot(1, "edge-1", c))
	first.waitApplied(t, 1)
	setConns(t, first, "198.51.100.3", 2, 0)
	next := wms("")
	next.Health, next.Reals, next.RemoveGraceMs = nil, next.Reals[:2], 500
	next.Reals[0].Drained = true
	first.deliver(t, wmsDelta(1, 2, next))
	first.waitApplied(t, 2)
	first.stop()
	if w := kernelWeight(t, first, "198.51.100.3"); w != "0" {
		t.Fatalf("before the restart, the removed real has weight %s, want 0", w)
	}

	first.ipvs.ResetOps()
	second := startAgentWith(t, dir, newFakeSession(false), envOptions{ipvs: first.ipvs}, func(c *Config) { c.OfflineAfter = 10 * time.Millisecond })
	restarted := time.Now()
	second.waitApplied(t, 2)
	if w := kernelWeight(t, second, "198.51.100.1"); w != "0" {
		t.Errorf("the drained real has weight %s after the restart", w)
	}
	if w := kernelWeight(t, second, "198.51.100.3"); w != "0" {
		t.Fatalf("the removed real has weight %s after the restart, want 0: held for a grace again", w)
	}
	for _, op := range second.ipvs.Ops() {
		t.Errorf("the restart changed the kernel: %s", op)
	}
	waitWeight(t, second, "198.51.100.3", "absent")
	if took := time.Since(restarted); took < 500*time.Millisecond {
		t.Errorf("removed %s after the restart, before a whole grace (500 ms)", took)
	}
}

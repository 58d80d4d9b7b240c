package daemon

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

const sorryIP = "198.51.100.9"

// wmsSorry is wms with a sorry server.
func wmsSorry(onFailure string) *lvsctlv1.Cluster {
	c := wms(onFailure)
	c.SorryServer = &lvsctlv1.SorryServer{Address: sorryIP}
	return c
}

// TestSorryNeeded is the decision alone (sorry.go says why each case is so).
func TestSorryNeeded(t *testing.T) {
	states := func(m map[string]checker.State) func(netip.Addr) checker.State {
		return func(a netip.Addr) checker.State {
			if s, ok := m[a.String()]; ok {
				return s
			}
			return checker.Up
		}
	}
	const u, d, up = checker.Unknown, checker.Down, checker.Up
	all := func(s checker.State) map[string]checker.State {
		return map[string]checker.State{"198.51.100.1": s, "198.51.100.2": s, "198.51.100.3": s}
	}
	drained := func(idx ...int) *lvsctlv1.Cluster {
		c := wmsSorry("")
		for _, i := range idx {
			c.Reals[i].Drained = true
		}
		return c
	}
	weight0 := wmsSorry("")
	for _, r := range weight0.Reals {
		r.Weight = 0
	}
	noReals := wmsSorry("")
	noReals.Reals = nil
	for _, tc := range []struct {
		name   string
		c      *lvsctlv1.Cluster
		state  map[string]checker.State
		before bool
		want   bool
	}{
		{"no sorry server", wms(""), all(d), false, false},
		{"every real up", wmsSorry(""), all(up), false, false},
		{"every real down", wmsSorry(""), all(d), false, true},
		{"every real down, onFailure remove", wmsSorry("remove"), all(d), false, true},
		{"one real up of three", wmsSorry(""), map[string]checker.State{"198.51.100.1": d, "198.51.100.2": up, "198.51.100.3": d}, true, false},
		{"every real drained, up", drained(0, 1, 2), all(up), false, true},
		{"two down, the third drained", drained(2), map[string]checker.State{"198.51.100.1": d, "198.51.100.2": d}, false, true},
		{"the only up real is drained", drained(1), map[string]checker.State{"198.51.100.1": d, "198.51.100.2": up, "198.51.100.3": d}, false, true},
		{"every weight 0 in the manifest", weight0, all(up), false, true},
		{"no real servers at all", noReals, nil, false, true},
		{"reals without a check serve", wmsSorry(""), nil, false, false},
		// Unknown keeps the decision in force: a restarted agent keeps the sorry server it
		// found in the kernel, and a fresh one does not add it before a check decides.
		{"all unknown, in use before (restart)", wmsSorry(""), all(u), true, true},
		{"all unknown, not in use before (start)", wmsSorry(""), all(u), false, false},
		{"down and unknown, in use before", wmsSorry(""), map[string]checker.State{"198.51.100.1": d, "198.51.100.2": u, "198.51.100.3": d}, true, true},
		{"unknown and one up: out", wmsSorry(""), map[string]checker.State{"198.51.100.1": u, "198.51.100.2": up, "198.51.100.3": u}, true, false},
		{"unknown but drained counts as down", drained(0, 1, 2), all(u), false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sorryNeeded(tc.c, states(tc.state), tc.before); got != tc.want {
				t.Errorf("sorryNeeded = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestEffectiveSorry: the sorry server is the last destination, at weight 1, with its port;
// the real servers keep their effective weights; a removal of the same address yields to it.
func TestEffectiveSorry(t *testing.T) {
	c := wmsSorry("")
	c.SorryServer.Port = 8080
	down := func(netip.Addr) checker.State { return checker.Down }
	e := effective(c, down, nil, true)
	if got := weights(e); got != "198.51.100.1:0 198.51.100.2:0 198.51.100.3:0 198.51.100.9:1" {
		t.Errorf("effective reals %s", got)
	}
	if p := e.GetReals()[3].GetPort(); p != 8080 {
		t.Errorf("sorry port %d", p)
	}
	if c.GetReals()[0].GetWeight() != 100 || len(c.GetReals()) != 3 {
		t.Error("effective changed the desired cluster")
	}
	rm := map[netip.Addr]*removal{addr(sorryIP): {address: sorryIP}, addr("198.51.100.7"): {address: "198.51.100.7"}}
	if got := weights(effective(c, down, rm, true)); got != "198.51.100.1:0 198.51.100.2:0 198.51.100.3:0 198.51.100.7:0 198.51.100.9:1" {
		t.Errorf("with removals %s", got)
	}
	up := func(netip.Addr) checker.State { return checker.Up }
	if e := effective(c, up, nil, false); e != c {
		t.Errorf("not in use: effective is not the cluster itself: %s", weights(e))
	}
	if got := weights(effective(c, up, nil, true)); got != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100 198.51.100.9:1" {
		t.Errorf("in use beside serving reals (a new check still Unknown): %s", got)
	}
}

// waitSorry waits for a status report of wms that says the sorry server is in use (or not),
// and returns the sorry server's row (nil when not in use).
func waitSorry(t *testing.T, e *agentEnv, inUse bool) *lvsctlv1.RealServerStats {
	t.Helper()
	var row *lvsctlv1.RealServerStats
	e.waitSent(t, func(m *lvsctlv1.ConnectRequest) bool {
		for _, c := range m.GetStatus().GetChanged() {
			if c.GetCluster() != "wms" || c.GetSorryInUse() != inUse {
				continue
			}
			row = nil
			for _, r := range c.GetReals() {
				if r.GetSorry() {
					row = r
				}
			}
			return true
		}
		return false
	})
	return row
}

// TestSorryServer: every real server's check fails -> the sorry server is a destination at
// weight 1 within fall x interval, and status says it is in use; it is read back like any
// destination (a kernel edit behind the agent's back is repaired); one real server answers
// again -> the sorry server leaves and the real server has its weight.
func TestSorryServer(t *testing.T) {
	for _, onFailure := range []string{"quiesce", "remove"} {
		t.Run(onFailure, func(t *testing.T) {
			p := newProbes()
			e := startAgentWith(t, t.TempDir(), newFakeSession(true), envOptions{probe: p.probe}, func(c *Config) {
				c.StatsPeriod, c.Resync = statsPeriod, 50*time.Millisecond
			})
			c := wmsSorry(onFailure)
			c.Health = fastCheck(onFailure)
			e.deliver(t, snapshot(1, "edge-1", c))
			e.waitApplied(t, 1)
			waitReal(t, e, "198.51.100.2", func(r *lvsctlv1.RealServerStats) bool { return r.GetHealth() == "up" })
			if w := kernelWeight(t, e, sorryIP); w != "absent" {
				t.Fatalf("sorry server at weight %s while every real is up", w)
			}

			p.fail("198.51.100.1", true)
			p.fail("198.51.100.2", true)
			waitWeight(t, e, "198.51.100.2", map[string]string{"quiesce": "0", "remove": "absent"}[onFailure])
			if w := kernelWeight(t, e, sorryIP); w != "absent" {
				t.Fatalf("sorry server at weight %s while .3 is up", w)
			}
			p.fail("198.51.100.3", true)
			waitWeight(t, e, sorryIP, "1")
			if row := waitSorry(t, e, true); row.GetAddress() != sorryIP || row.GetWeight() != 1 {
				t.Errorf("status of the sorry server: %v", row)
			}

			// Drift: the sorry server deleted behind the agent's back comes back at the resync.
			svc := dataplane.Service{ServiceKey: wmsKey}
			if err := e.ipvs.DelDestination(svc, dataplane.Destination{Address: addr(sorryIP)}); err != nil {
				t.Fatal(err)
			}
			waitWeight(t, e, sorryIP, "1")

			p.fail("198.51.100.2", false)
			waitWeight(t, e, sorryIP, "absent")
			if w := kernelWeight(t, e, "198.51.100.2"); w != "100" {
				t.Errorf("the real back has weight %s", w)
			}
			waitSorry(t, e, false)
			// The desired state saved is the controller's: no sorry server among the reals.
			if d, _ := e.st.Desired(); weights(d.State.GetClusters()[0]) != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" {
				t.Errorf("saved %s", weights(d.State.GetClusters()[0]))
			}
		})
	}
}

// TestSorryServerDrainAll: an operator who drains every real server gets the sorry server
// (no check needed), which an edit keeps; enabling one takes it out at once (not held for a
// grace as a removed real server is).
func TestSorryServerDrainAll(t *testing.T) {
	e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) { c.StatsPeriod = statsPeriod })
	c := wmsSorry("")
	c.Health = nil
	for _, r := range c.Reals {
		r.Drained = true
	}
	e.deliver(t, snapshot(1, "edge-1", c))
	e.waitApplied(t, 1)
	if w := kernelWeight(t, e, sorryIP); w != "1" {
		t.Fatalf("every real drained: sorry server %s, want weight 1", w)
	}
	waitSorry(t, e, true)
	// An edit while it is in use (a weight): it stays, at 1, not held as a removal.
	edited := proto.CloneOf(c)
	edited.Reals[0].Weight = 50
	e.deliver(t, wmsDelta(1, 2, edited))
	e.waitApplied(t, 2)
	if w := kernelWeight(t, e, sorryIP); w != "1" {
		t.Fatalf("after an edit, sorry server %s, want weight 1", w)
	}
	one := wmsSorry("")
	one.Health = nil
	one.Reals[0].Drained, one.Reals[1].Drained = true, true
	e.deliver(t, wmsDelta(2, 3, one))
	e.waitApplied(t, 3)
	if w := kernelWeight(t, e, sorryIP); w != "absent" {
		t.Errorf("one real enabled: sorry server at weight %s", w)
	}
	if w := kernelWeight(t, e, "198.51.100.3"); w != "100" {
		t.Errorf("the enabled real has weight %s", w)
	}
}

// TestSorryServerRestart: an agent restarted while the sorry server is in use neither takes
// it out (its checks start unknown) nor adds it twice: the restart changes nothing in the
// kernel; once a real server answers again, the sorry server goes.
func TestSorryServerRestart(t *testing.T) {
	dir := t.TempDir()
	p := newProbes()
	for _, a := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		p.fail(a, true)
	}
	first := startAgentWith(t, dir, newFakeSession(true), envOptions{probe: p.probe}, nil)
	c := wmsSorry("")
	c.Health = fastCheck("quiesce")
	first.deliver(t, snapshot(1, "edge-1", c))
	first.waitApplied(t, 1)
	waitWeight(t, first, sorryIP, "1")
	first.stop()

	first.ipvs.ResetOps()
	second := startAgentWith(t, dir, newFakeSession(false), envOptions{ipvs: first.ipvs, probe: p.probe}, func(c *Config) { c.OfflineAfter = 10 * time.Millisecond })
	second.waitApplied(t, 1)
	time.Sleep(100 * time.Millisecond) // the checks decide (down again)
	if w := kernelWeight(t, second, sorryIP); w != "1" {
		t.Fatalf("after the restart the sorry server is %s, want weight 1", w)
	}
	// (The down reals' weights do change: their checks start unknown, which serves, as
	// health.go says; the sorry server is what must stay.)
	for _, op := range second.ipvs.Ops() {
		if strings.Contains(op.String(), sorryIP) {
			t.Errorf("the restart touched the sorry server: %s", op)
		}
	}
	p.fail("198.51.100.1", false)
	waitWeight(t, second, sorryIP, "absent")
	waitWeight(t, second, "198.51.100.1", "100")
}

// TestSorryServerWasAReal: a real server removed from the cluster and named its sorry server
// in the same edit is held at weight 0 for its grace like any removed server while the sorry
// server is not in use (its connections are not cut).
func TestSorryServerWasAReal(t *testing.T) {
	e := startAgent(t, t.TempDir(), newFakeSession(true), nil)
	c := wms("")
	c.Health = nil
	e.deliver(t, snapshot(1, "edge-1", c))
	e.waitApplied(t, 1)
	next := wms("")
	next.Health, next.Reals, next.RemoveGraceMs = nil, next.Reals[:2], 3600*1000
	next.SorryServer = &lvsctlv1.SorryServer{Address: "198.51.100.3"}
	e.deliver(t, wmsDelta(1, 2, next))
	e.waitApplied(t, 2)
	if w := kernelWeight(t, e, "198.51.100.3"); w != "0" {
		t.Fatalf("the removed real, now the sorry server, has weight %s; want 0 (held)", w)
	}
}

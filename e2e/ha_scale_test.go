package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestHAControllersAtScale is TestHAControllers at the size: 10,000 WMS clusters
// (LVSCTL_HA_CLUSTERS) in one group of two directors (real agent daemons, fake kernels), two
// controllers on a three-member etcd cluster. The apply goes through the follower (which
// writes to etcd itself); the leader is killed: the other leads, both agents' streams move to
// it and resume from their applied revision with no kernel operation (no snapshot of 10,000
// clusters reconciled again), a change after that reaches both as a delta, and a failover
// decided by the new leader moves every address.
func TestHAControllersAtScale(t *testing.T) {
	n := envInt("LVSCTL_HA_CLUSTERS", 10000)
	_, endpoints := startEtcdCluster(t, 3)
	ctls := []*haController{startHAController(t, endpoints), startHAController(t, endpoints)}
	waitUntil(t, 10*time.Second, "one controller leading", func() bool { return leaderOf(ctls) != nil })
	leader := leaderOf(ctls)
	follower := ctls[0]
	if follower == leader {
		follower = ctls[1]
	}
	ctx := context.Background()
	viaFollower := dial(t, follower.c.Addr())
	objs := takeoverObjects(n)
	// Timings of a loaded LAN rather than the defaults: this test is about the controllers
	// (the takeover at the defaults is TestTakeover10k's), and every part of the fleet shares
	// this process: at a 200 ms fence a starved agent's lease lapses and it lets its
	// addresses go, which would be a change of the kernel the leader's death did not cause.
	objs[0].GetGroup().Failover = &lvsctlv1.Failover{HeartbeatIntervalMs: 200, DeadAfterMs: 2000, FenceMs: 2000}
	start := time.Now()
	// In parts of 2,500 clusters: three etcd members, two controllers and two agents share
	// this process, and on a loaded machine one write of 10,000 (5 MB, replicated twice) can
	// outlast etcd's request timeout (5 s + 2 election timeouts), which a LAN cluster would not.
	var ap *lvsctlv1.ApplyResponse
	for i := 0; i < len(objs); i += 2500 {
		var err error
		if ap, err = viaFollower.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs[i:min(i+2500, len(objs))]}); err != nil {
			t.Fatalf("apply of clusters %d.. through the follower: %v", i, err)
		}
	}
	t.Logf("apply of %d clusters through the follower, in parts of 2,500: %v", n, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	both := leader.c.Addr() + "," + follower.c.Addr()
	dirA := runAgent(t, "dir-a", both, discardLogger(), time.Second, nil)
	dirB := runAgent(t, "dir-b", follower.c.Addr()+","+leader.c.Addr(), discardLogger(), time.Second, nil)
	firstVIP, lastVIP := scaleCluster(0, 1, 1).GetVips()[0], scaleCluster(n-1, 1, 1).GetVips()[0]
	waitUntil(t, 2*time.Minute, "dir-a holding every VIP", func() bool {
		return holds(dirA, firstVIP) && holds(dirA, lastVIP) && !holds(dirB, firstVIP)
	})
	waitAppliedAtScale(t, viaFollower, ap.GetRevision(), 2*time.Minute, "dir-a", "dir-b")
	t.Logf("both agents applied %d clusters (one through the follower's relay): %v", n, time.Since(start).Round(time.Millisecond))

	// Who leads now: a loaded host may have let the 1 s session lapse during the apply.
	waitUntil(t, 10*time.Second, "one controller leading", func() bool { return leaderOf(ctls) != nil })
	if l := leaderOf(ctls); l != leader {
		t.Logf("the leadership moved during the apply (a session lapsed)")
		leader, follower = l, leader
		viaFollower = dial(t, follower.c.Addr())
	}
	// /metrics: the fleet is the leader's; a follower says it does not lead and reports no
	// director (its agent streams are relayed).
	for _, c := range ctls {
		m := scrape(t, c.metrics)
		want := map[bool]string{true: "lvsctl_controller_leader 1\n", false: "lvsctl_controller_leader 0\n"}[c == leader]
		hasFleet := strings.Contains(m, `lvsctl_director_connected{director="dir-a",group="edge-1"} 1`)
		if !strings.Contains(m, want) || hasFleet != (c == leader) {
			t.Errorf("/metrics of the %s: want %q and the fleet's directors %v", map[bool]string{true: "leader", false: "follower"}[c == leader], want, c == leader)
		}
	}

	// Kill the leader: the follower leads, the agents resume with it, nothing is done again.
	beforeA, beforeB := dirA.kernel(), dirB.kernel()
	dirA.ipvs.ResetOps()
	dirB.ipvs.ResetOps()
	killed := time.Now()
	leader.crash()
	waitUntil(t, 5*time.Second, "the follower leading", func() bool { return leaderOf(ctls) == follower })
	t.Logf("a new leader %v after the leader was killed", time.Since(killed).Round(time.Millisecond))
	waitAppliedAtScale(t, viaFollower, ap.GetRevision(), time.Minute, "dir-a", "dir-b")
	t.Logf("both agents connected and applied under the new leader %v after the kill", time.Since(killed).Round(time.Millisecond))
	if m := scrape(t, follower.metrics); !strings.Contains(m, "lvsctl_controller_leader 1\n") ||
		!strings.Contains(m, `lvsctl_director_connected{director="dir-b",group="edge-1"} 1`) {
		t.Error("/metrics of the new leader: not leading, or without the fleet's directors")
	}
	for _, d := range []struct {
		a      *agentProc
		before string
	}{{dirA, beforeA}, {dirB, beforeB}} {
		if ops := len(d.a.ipvs.Ops()); ops != 0 || d.a.kernel() != d.before {
			t.Errorf("%s's kernel changed when it moved controllers (%d IPVS operations; addresses now %d lines, %d before)",
				d.a.name, ops, strings.Count(d.a.addrs.Dump(), "\n"), strings.Count(d.before, "\n"))
		}
	}

	// A change after that: one cluster's weight, a delta to both.
	objs[1].GetCluster().Reals[0].Weight = 50
	start = time.Now()
	ap2, err := viaFollower.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs[1:2]})
	if err != nil {
		t.Fatalf("apply under the new leader: %v", err)
	}
	t.Logf("the apply call: %v", time.Since(start).Round(time.Millisecond))
	waitAppliedAtScale(t, viaFollower, ap2.GetRevision(), time.Minute, "dir-a", "dir-b")
	t.Logf("one weight changed among %d clusters, applied by both: %v", n, time.Since(start).Round(time.Millisecond))
	if ops := len(dirA.ipvs.Ops()); ops != 1 {
		t.Errorf("dir-a did %d IPVS operations for one weight change, want 1: %v", ops, dirA.ipvs.Ops())
	}

	// A failover decided by the new leader moves every address.
	start = time.Now()
	if _, err := viaFollower.config.Failover(ctx, &lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}); err != nil {
		t.Fatalf("failover under the new leader: %v", err)
	}
	waitUntil(t, time.Minute, "dir-b alone holding every VIP", func() bool {
		return holds(dirB, firstVIP) && holds(dirB, lastVIP) && !holds(dirA, firstVIP) && !holds(dirA, lastVIP)
	})
	t.Logf("planned failover of %d VIPs under the new leader: %v", n, time.Since(start).Round(time.Millisecond))
}

// waitAppliedAtScale waits until every director is connected, applied at rev at least, with
// no error, as the controller at c reports it.
func waitAppliedAtScale(t *testing.T, c clients, rev int64, limit time.Duration, directors ...string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for {
		resp, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{TotalsOnly: true})
		if err == nil {
			byName := map[string]*lvsctlv1.DirectorStatus{}
			for _, d := range resp.GetDirectors() {
				byName[d.GetDirector()] = d
			}
			ok := true
			last = ""
			for _, name := range directors {
				d := byName[name]
				if d == nil || !d.GetConnected() || d.GetAppliedRevision() < rev || len(d.GetErrors())+len(d.GetDirectorErrors()) != 0 {
					ok = false
					last += fmt.Sprintf("%s: connected %v applied %d errors %v %v; ", name, d.GetConnected(), d.GetAppliedRevision(), d.GetErrors(), d.GetDirectorErrors())
				}
			}
			if ok {
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %v not connected and applied at revision %d: %s", limit, directors, rev, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

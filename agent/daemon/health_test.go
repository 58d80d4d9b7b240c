package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/role"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// wms is a cluster of three real servers (.1 .2 .3, weight 100) checked by RTSP on 554.
func wms(onFailure string) *lvsctlv1.Cluster {
	c := &lvsctlv1.Cluster{
		Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.20"}, Fwmark: 17, Scheduler: "wlc",
		Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 554, Last: 554}},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Health:     &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000, TimeoutMs: 1000, Rise: 2, Fall: 2, OnFailure: onFailure},
	}
	for i := 1; i <= 3; i++ {
		c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("198.51.100.%d", i), Weight: 100})
	}
	return c
}

// weights is a cluster's real servers as "address:weight", in order.
func weights(c *lvsctlv1.Cluster) string {
	var out []string
	for _, r := range c.GetReals() {
		out = append(out, fmt.Sprintf("%s:%d", r.GetAddress(), r.GetWeight()))
	}
	return strings.Join(out, " ")
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestEffective(t *testing.T) {
	down := func(addrs ...string) func(netip.Addr) checker.State {
		return func(a netip.Addr) checker.State {
			if slices.Contains(addrs, a.String()) {
				return checker.Down
			}
			return checker.Up
		}
	}
	unknown := func(netip.Addr) checker.State { return checker.Unknown }
	drained := func(c *lvsctlv1.Cluster, i int) *lvsctlv1.Cluster { c.Reals[i].Drained = true; return c }
	override := func(c *lvsctlv1.Cluster, i int, onFailure string) *lvsctlv1.Cluster {
		c.Reals[i].Health = &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755, OnFailure: onFailure}
		return c
	}
	removing := map[netip.Addr]*removal{addr("198.51.100.9"): {address: "198.51.100.9"}, addr("198.51.100.4"): {address: "198.51.100.4"}}
	for _, tc := range []struct {
		name     string
		c        *lvsctlv1.Cluster
		state    func(netip.Addr) checker.State
		removing map[netip.Addr]*removal
		want     string // "same": the desired message itself
	}{
		{"nothing to change: the message itself", wms(""), unknown, nil, "same"},
		{"all up: the message itself", wms(""), down(), nil, "same"},
		{"not yet checked (unknown) serves", wms("remove"), unknown, nil, "same"},
		{"down, quiesce (the default): weight 0", wms(""), down("198.51.100.2"), nil,
			"198.51.100.1:100 198.51.100.2:0 198.51.100.3:100"},
		{"down, remove: left out", wms("remove"), down("198.51.100.2"), nil, "198.51.100.1:100 198.51.100.3:100"},
		{"all down, remove: an empty service", wms("remove"), down("198.51.100.1", "198.51.100.2", "198.51.100.3"), nil, ""},
		{"drained: weight 0", drained(wms(""), 0), down(), nil, "198.51.100.1:0 198.51.100.2:100 198.51.100.3:100"},
		{"drained and down, remove: left out (a dead server's connections are dead)", drained(wms("remove"), 0), down("198.51.100.1"), nil,
			"198.51.100.2:100 198.51.100.3:100"},
		{"a real's own onFailure wins: quiesce in a remove cluster", override(wms("remove"), 1, "quiesce"), down("198.51.100.2", "198.51.100.3"), nil,
			"198.51.100.1:100 198.51.100.2:0"},
		{"a real's override without onFailure takes the cluster's", override(wms("remove"), 1, ""), down("198.51.100.2"), nil,
			"198.51.100.1:100 198.51.100.3:100"},
		{"removals at weight 0, after the reals, by address", wms(""), down(), removing,
			"198.51.100.1:100 198.51.100.2:100 198.51.100.3:100 198.51.100.4:0 198.51.100.9:0"},
		{"removals with a down real", wms(""), down("198.51.100.3"), removing,
			"198.51.100.1:100 198.51.100.2:100 198.51.100.3:0 198.51.100.4:0 198.51.100.9:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := proto.CloneOf(tc.c)
			got := effective(tc.c, tc.state, tc.removing, false)
			if !proto.Equal(tc.c, before) {
				t.Fatalf("the desired cluster was changed: %v", tc.c)
			}
			if tc.want == "same" {
				if got != tc.c {
					t.Errorf("got a new message %s, want the desired one", weights(got))
				}
				return
			}
			if got == tc.c {
				t.Fatalf("got the desired message, want %s", tc.want)
			}
			if w := weights(got); w != tc.want {
				t.Errorf("effective reals %q, want %q", w, tc.want)
			}
			// Everything but the reals is the desired cluster's.
			a, b := proto.CloneOf(got), proto.CloneOf(tc.c)
			a.Reals, b.Reals = nil, nil
			if !proto.Equal(a, b) {
				t.Errorf("effective cluster differs beyond its reals: %v", a)
			}
		})
	}
}

func TestHealthIndex(t *testing.T) {
	now := time.Unix(1000, 0)
	x := newHealthIndex()
	a, b := wms("quiesce"), wms("remove")
	b.Name, b.Fwmark = "wms-b", 18
	x.setCluster("wms", a, now)
	x.setCluster("wms-b", b, now)
	// Same servers, same check (onFailure aside): one probe each.
	if len(x.targets) != 3 || !x.changed {
		t.Fatalf("%d targets (changed %v), want 3 shared by both clusters", len(x.targets), x.changed)
	}
	for _, tg := range x.targets {
		if len(tg.refs) != 2 {
			t.Errorf("target %s used by %d clusters, want 2", tg.key, len(tg.refs))
		}
	}
	x.changed = false

	// An override on one real: a fourth target for that server, the shared one stays for wms.
	b2 := proto.CloneOf(b)
	b2.Reals[1].Health = &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755}
	x.setCluster("wms-b", b2, now)
	if len(x.targets) != 4 || !x.changed {
		t.Fatalf("%d targets (changed %v), want 4 after an override", len(x.targets), x.changed)
	}
	if k := x.byCluster["wms-b"][addr("198.51.100.2")].key; !strings.HasPrefix(k, "198.51.100.2/tcp:1755#") {
		t.Errorf("the override's key %q", k)
	}

	// A changed check: a new target that starts from the old one's state (down stays down).
	x.changed = false
	old := x.byCluster["wms"][addr("198.51.100.1")]
	old.state, old.err = checker.Down, "timeout"
	a2 := proto.CloneOf(a)
	a2.Health.TimeoutMs = 500
	x.setCluster("wms", a2, now.Add(time.Minute))
	nt := x.byCluster["wms"][addr("198.51.100.1")]
	if nt == old || nt.state != checker.Down || nt.err != "timeout" || !nt.since.Equal(old.since) {
		t.Errorf("after the check changed: %+v, want a new target still down since %v", nt, old.since)
	}
	if len(old.refs) != 1 {
		t.Errorf("the old target is used by %d clusters, want wms-b alone", len(old.refs))
	}

	// No check, check none, and an unparsable address: not checked.
	c := wms("")
	c.Name, c.Health = "plain", nil
	c.Reals[0].Health = &lvsctlv1.HealthCheck{Check: "none"}
	c.Reals[1].Health = &lvsctlv1.HealthCheck{Check: "tcp", Port: 80}
	c.Reals[2].Address = "not-an-address"
	x.setCluster("plain", c, now)
	if got := len(x.byCluster["plain"]); got != 1 {
		t.Errorf("plain has %d checked reals, want 1 (its override)", got)
	}

	// Clusters gone: their targets go.
	for _, n := range []string{"wms", "wms-b", "plain"} {
		x.setCluster(n, nil, now)
	}
	if len(x.targets)+len(x.byKey)+len(x.byCluster) != 0 {
		t.Errorf("left: %d targets, %d keys, %d clusters", len(x.targets), len(x.byKey), len(x.byCluster))
	}
}

func TestRealsOf(t *testing.T) {
	since := time.Unix(2000, 0)
	c := wms("remove")
	c.Reals[2].Drained = true
	targets := map[netip.Addr]*target{
		addr("198.51.100.1"): {state: checker.Up, since: since},
		addr("198.51.100.2"): {state: checker.Down, since: since, err: "connection refused"},
	}
	until := since.Add(time.Minute)
	got := realsOf(c, targets, map[netip.Addr]*removal{addr("198.51.100.7"): {address: "198.51.100.7", until: until}}, false)
	want := &stats.Reals{List: []stats.Real{
		{Addr: addr("198.51.100.1"), Checked: true, Health: "up", Since: since},
		{Addr: addr("198.51.100.2"), Checked: true, Health: "down", Since: since, Error: "connection refused", Out: true},
		{Addr: addr("198.51.100.3"), Health: "unknown", Drained: true},
		{Addr: addr("198.51.100.7"), Health: "unknown", Removing: true, RemovingUntil: until},
	}}
	if !sameReals(got, want) {
		t.Errorf("realsOf:\n%+v\nwant\n%+v", got.List, want.List)
	}
	plain := wms("")
	plain.Health = nil
	if r := realsOf(plain, nil, nil, false); r != nil {
		t.Errorf("a cluster without checks, drains or removals: %+v, want nothing", r.List)
	}
}

// healthLoop is a loop as Run makes it, with the role machine of a group of one.
func healthLoop() *loop {
	return &loop{director: "dir-a", log: slog.New(slog.DiscardHandler), repairDelay: 150 * time.Millisecond, machine: role.New("dir-a"),
		hasDataPlane: func() bool { return false }}
}

// reconciles are the reconciles among acts.
func reconciles(acts []action) []actReconcile {
	var out []actReconcile
	for _, a := range acts {
		if r, ok := a.(actReconcile); ok {
			out = append(out, r)
		}
	}
	return out
}

// applied is what a reconcile applies of cluster name: its reals' weights ("absent": not in
// the delta or the state).
func applied(r actReconcile, name string) string {
	var clusters []*lvsctlv1.Cluster
	if r.delta != nil {
		clusters = r.delta.GetUpserted()
	} else {
		clusters = r.effective.GetClusters()
	}
	for _, c := range clusters {
		if c.GetName() == name {
			return weights(c)
		}
	}
	return "absent"
}

func status(l *loop, address string, st checker.State, now time.Time) checker.Status {
	t := l.hs.hx.byCluster["wms"][addr(address)]
	return checker.Status{Key: t.key, Addr: t.addr, State: st, Since: now}
}

// TestLoopHealth: the loop's decisions on health transitions, drains and removals.
func TestLoopHealth(t *testing.T) {
	g := group("edge-1")
	t0 := time.Unix(10000, 0)
	snap := func(rev int64, clusters ...*lvsctlv1.Cluster) evMessage {
		return snapshotOf(rev, g, "dir-a", 1, clusters...)
	}
	delta := func(prev, rev int64, clusters ...*lvsctlv1.Cluster) evMessage {
		return deltaOf(prev, rev, nil, clusters...)
	}

	t.Run("snapshot: the targets, and the desired weights while unknown", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		acts := l.step(t0, snap(1, wms("")))
		var set *actSetTargets
		for _, a := range acts {
			if s, ok := a.(actSetTargets); ok {
				set = &s
			}
		}
		if set == nil || len(set.targets) != 3 {
			t.Fatalf("actions %v, want the checker given 3 targets", describe(acts))
		}
		r := reconciles(acts)
		if len(r) != 1 || applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" || r[0].save != saveSnapshot {
			t.Fatalf("reconciles %v", describe(acts))
		}
		if r[0].effective.GetClusters()[0] != r[0].desired.GetClusters()[0] {
			t.Errorf("nothing differs, yet the effective cluster is a new message")
		}
	})

	t.Run("down, quiesce: a local delta at weight 0, nothing saved; up: the weight back", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		acts := l.step(t0.Add(time.Second), evHealth{statuses: []checker.Status{status(l, "198.51.100.2", checker.Down, t0.Add(time.Second))}})
		r := reconciles(acts)
		if len(r) != 1 || r[0].delta == nil || r[0].trigger != "health" || r[0].rev != 1 || r[0].delta.GetRevision() != 1 || r[0].save != saveNothing {
			t.Fatalf("actions %v, want one local delta at revision 1, not saved", describe(acts))
		}
		if got := applied(r[0], "wms"); got != "198.51.100.1:100 198.51.100.2:0 198.51.100.3:100" {
			t.Errorf("applied %s", got)
		}
		if got := weights(l.cur.clusters.ByName["wms"]); got != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" {
			t.Errorf("the desired state changed: %s", got)
		}
		// A resync applies the effective state, and would save the desired one.
		r = reconciles(l.step(t0.Add(2*time.Second), evResync{}))
		if applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:0 198.51.100.3:100" || weights(r[0].desired.GetClusters()[0]) != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" {
			t.Errorf("resync applies %s, carries desired %s", applied(r[0], "wms"), weights(r[0].desired.GetClusters()[0]))
		}
		acts = l.step(t0.Add(3*time.Second), evHealth{statuses: []checker.Status{status(l, "198.51.100.2", checker.Up, t0.Add(3*time.Second))}})
		if r := reconciles(acts); len(r) != 1 || applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" {
			t.Errorf("on recovery: %v", describe(acts))
		}
	})

	t.Run("unknown to up changes no weight: no reconcile, but status says up", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		acts := l.step(t0.Add(time.Second), evHealth{statuses: []checker.Status{status(l, "198.51.100.1", checker.Up, t0.Add(time.Second))}})
		if len(reconciles(acts)) != 0 {
			t.Errorf("actions %v, want none", describe(acts))
		}
		acts = l.step(t0.Add(2*time.Second), evStatsTick{})
		rep := acts[0].(actReport)
		if r := rep.reals["wms"].List[0]; r.Health != "up" || !r.Since.Equal(t0.Add(time.Second)) {
			t.Errorf("status of .1: %+v", r)
		}
	})

	t.Run("down, remove: left out; a stale status of a dropped target is ignored", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("remove")))
		stale := status(l, "198.51.100.3", checker.Down, t0)
		acts := l.step(t0, evHealth{statuses: []checker.Status{status(l, "198.51.100.1", checker.Down, t0)}})
		if r := reconciles(acts); len(r) != 1 || applied(r[0], "wms") != "198.51.100.2:100 198.51.100.3:100" {
			t.Fatalf("actions %v", describe(acts))
		}
		// .3's check changes: a new target; the old one's late verdict means nothing.
		c := wms("remove")
		c.Reals[2].Health = &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755}
		l.step(t0, delta(1, 2, c))
		if acts := l.step(t0, evHealth{statuses: []checker.Status{stale}}); len(reconciles(acts)) != 0 {
			t.Errorf("a stale status reconciled: %v", describe(acts))
		}
	})

	t.Run("drained: weight 0 from the first reconcile", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		c := wms("")
		c.Health = nil
		c.Reals[0].Drained = true
		r := reconciles(l.step(t0, snap(1, c)))
		if got := applied(r[0], "wms"); got != "198.51.100.1:0 198.51.100.2:100 198.51.100.3:100" {
			t.Errorf("applied %s", got)
		}
		if weights(r[0].desired.GetClusters()[0]) != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" || !r[0].desired.GetClusters()[0].GetReals()[0].GetDrained() {
			t.Errorf("saved %v, want the desired cluster as sent", r[0].desired.GetClusters()[0])
		}
	})

	t.Run("removed real: held at weight 0 until its grace passes", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		two := wms("")
		two.Reals = two.Reals[:2]
		two.RemoveGraceMs = 5000
		acts := l.step(t0.Add(time.Second), delta(1, 2, two))
		r := reconciles(acts)
		if len(r) != 1 || r[0].save != saveDelta || r[0].savedDelta.GetUpserted()[0] != two {
			t.Fatalf("actions %v, want the controller's delta saved", describe(acts))
		}
		if got := applied(r[0], "wms"); got != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:0" {
			t.Errorf("applied %s, want .3 held at weight 0", got)
		}
		if want := t0.Add(6 * time.Second); !l.hs.removalAt.Equal(want) {
			t.Errorf("removal due %v, want %v", l.hs.removalAt, want)
		}
		rep := l.step(t0.Add(2*time.Second), evStatsTick{})[0].(actReport)
		if len(rep.removing) != 1 || rep.removing[0].addr != addr("198.51.100.3") {
			t.Errorf("report counts %v, want .3's removal", rep.removing)
		}
		if r := rep.reals["wms"].List[2]; !r.Removing || !r.RemovingUntil.Equal(t0.Add(6*time.Second)) {
			t.Errorf("status of .3: %+v", r)
		}
		// Connections left: held.
		acts = l.step(t0.Add(3*time.Second), evRemovalCounts{counts: []removalCount{{removalRef: rep.removing[0], conns: 2}}})
		if len(reconciles(acts)) != 0 {
			t.Errorf("with connections left: %v", describe(acts))
		}
		acts = l.step(t0.Add(6*time.Second), evRemovalDue{})
		if r := reconciles(acts); len(r) != 1 || r[0].trigger != "removal" || applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100" || r[0].save != saveNothing {
			t.Errorf("at the deadline: %v", describe(acts))
		}
		if !l.hs.removalAt.IsZero() || len(l.hs.removing) != 0 {
			t.Errorf("removals left: %v at %v", l.hs.removing, l.hs.removalAt)
		}
	})

	t.Run("removed real: gone once its connections are", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		two := wms("")
		two.Reals = two.Reals[:2]
		l.step(t0, delta(1, 2, two))
		if want := t0.Add(health.DefaultRemoveGrace); !l.hs.removalAt.Equal(want) {
			t.Errorf("removal due %v, want the default grace (%v)", l.hs.removalAt, want)
		}
		ref := l.removingRefs()[0]
		stale := ref
		stale.id--
		if acts := l.step(t0, evRemovalCounts{counts: []removalCount{{removalRef: stale}}}); len(reconciles(acts)) != 0 {
			t.Errorf("an earlier removal's count ended this one: %v", describe(acts))
		}
		acts := l.step(t0, evRemovalCounts{counts: []removalCount{{removalRef: ref}}})
		if r := reconciles(acts); len(r) != 1 || applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100" {
			t.Errorf("no connections left: %v", describe(acts))
		}
	})

	t.Run("removed then added back: the removal ends, with its weight", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		two := wms("")
		two.Reals = two.Reals[:2]
		l.step(t0, delta(1, 2, two))
		r := reconciles(l.step(t0, delta(2, 3, wms(""))))
		if applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100" || len(l.hs.removing) != 0 {
			t.Errorf("applied %s, removals %v", applied(r[0], "wms"), l.hs.removing)
		}
	})

	t.Run("remove_now: cut at once", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		two := wms("")
		two.Reals, two.RemoveNow = two.Reals[:2], true
		r := reconciles(l.step(t0, delta(1, 2, two)))
		if applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100" || len(l.hs.removing) != 0 {
			t.Errorf("applied %s, removals %v", applied(r[0], "wms"), l.hs.removing)
		}
	})

	t.Run("a deleted cluster is not held", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		acts := l.step(t0, evMessage{m: &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
			PrevRevision: 1, Revision: 2, Deleted: []string{"wms"}}}}})
		if r := reconciles(acts); len(r) != 1 || len(r[0].delta.GetDeleted()) != 1 || len(l.hs.removing) != 0 || len(l.hs.hx.targets) != 0 {
			t.Errorf("actions %v, removals %v, targets %d", describe(acts), l.hs.removing, len(l.hs.hx.targets))
		}
	})

	t.Run("a snapshot without a real: held as a delta's removal is", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		two := wms("")
		two.Reals = two.Reals[:2]
		r := reconciles(l.step(t0, snap(2, two)))
		if applied(r[0], "wms") != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:0" {
			t.Errorf("applied %s", applied(r[0], "wms"))
		}
	})

	t.Run("restart: an owned real server the desired state lacks is held again", func(t *testing.T) {
		l := healthLoop()
		l.saved, l.savedRv = &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{wms("")}}, 4
		k, _ := dataplane.KeyOf(wms(""))
		l.step(t0, evStart{kernel: map[dataplane.ServiceKey][]netip.Addr{k: {addr("198.51.100.1"), addr("198.51.100.8")}}})
		r := reconciles(l.step(t0.Add(time.Second), evOffline{}))
		if got := applied(r[0], "wms"); got != "198.51.100.1:100 198.51.100.2:100 198.51.100.3:100 198.51.100.8:0" {
			t.Errorf("applied %s, want .8 held", got)
		}
		if want := t0.Add(time.Second + health.DefaultRemoveGrace); !l.hs.removalAt.Equal(want) {
			t.Errorf("removal due %v, want a whole grace from now (%v)", l.hs.removalAt, want)
		}
		// The controller's snapshot later keeps the removal and its deadline.
		r = reconciles(l.step(t0.Add(2*time.Second), snap(5, wms(""))))
		if got := applied(r[0], "wms"); !strings.HasSuffix(got, "198.51.100.8:0") || !l.hs.removalAt.Equal(t0.Add(time.Second+health.DefaultRemoveGrace)) {
			t.Errorf("after the snapshot: applied %s, due %v", got, l.hs.removalAt)
		}
	})

	t.Run("a roles-only delta looks at no cluster", func(t *testing.T) {
		l := healthLoop()
		l.step(t0, evStart{})
		l.step(t0, snap(1, wms("")))
		l.hs.eff.clusters.ByName["wms"] = nil // would be rebuilt by a look at every cluster
		acts := l.step(t0, deltaOf(1, 2, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 2}))
		if len(reconciles(acts)) != 1 || l.hs.eff.clusters.ByName["wms"] != nil {
			t.Errorf("actions %v; wms rebuilt: %v", describe(acts), l.hs.eff.clusters.ByName["wms"] != nil)
		}
	})
}

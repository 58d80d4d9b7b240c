package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// applyDelta runs one ApplyDelta and returns its result and the kernel operations it made,
// checking that the result counts exactly those.
func (e *env) applyDelta(t *testing.T, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) (res reconcileResult, ops []string) {
	t.Helper()
	e.resetOps()
	r := e.r.ApplyDelta(context.Background(), d, role)
	for _, o := range slices.Concat(e.ipvs.Ops(), e.fw.Ops(), e.addrs.Ops()) {
		ops = append(ops, o.String())
	}
	slices.Sort(ops)
	if r.Operations != len(ops) {
		t.Errorf("Result.Operations = %d, but the kernel saw %d: %q", r.Operations, len(ops), ops)
	}
	e.resetOps()
	return reconcileResult{r.ClusterErrors, r.DirectorErrors}, ops
}

type reconcileResult struct {
	clusters []*lvsctlv1.ClusterError
	director []string
}

func (r reconcileResult) clusterNames() []string {
	var out []string
	for _, e := range r.clusters {
		out = append(out, e.GetCluster())
	}
	return out
}

// reads counts the fakes' read calls by name, through their failure hook (which sees every
// call), so a test can tell a delta that reads one service from one that reads them all.
func (e *env) countReads() map[string]int {
	n := map[string]int{}
	count := func(o fake.Op) error {
		switch o.Name {
		case "Stats", "Services", "Destinations", "MarkRules", "Addresses":
			n[o.Name]++
		}
		return nil
	}
	e.ipvs.FailWhen(count)
	e.fw.FailWhen(count)
	e.addrs.FailWhen(count)
	return n
}

// TestDeltaLikeFull: each edit, applied as a delta, makes the same kernel operations as the
// full reconcile of the whole state makes, and the same kernel as one built from scratch; it
// reads only the changed cluster's service, and no other.
func TestDeltaLikeFull(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *lvsctlv1.Cluster)
	}{
		{"scheduler", func(c *lvsctlv1.Cluster) { c.Scheduler = "sh" }},
		{"persistence off", func(c *lvsctlv1.Cluster) { c.Persistence = nil }},
		{"one weight", func(c *lvsctlv1.Cluster) { c.Reals[1].Weight = 50 }},
		{"add a real", func(c *lvsctlv1.Cluster) {
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: "198.51.100.4", Weight: 100})
		}},
		{"remove a real", func(c *lvsctlv1.Cluster) { c.Reals = c.Reals[:2] }},
		{"forwarding", func(c *lvsctlv1.Cluster) { c.Forwarding = lvsctlv1.Forwarding_FORWARDING_ROUTE }},
		{"add a port", func(c *lvsctlv1.Cluster) { c.Ports = append(c.Ports, port(tcp, 8080, 8081)) }},
		{"add a VIP", func(c *lvsctlv1.Cluster) { c.Vips = append(c.Vips, "192.0.2.11") }},
		{"move to another VIP", func(c *lvsctlv1.Cluster) { c.Vips = []string{"192.0.2.12"} }},
		{"share web's VIP", func(c *lvsctlv1.Cluster) { c.Vips = []string{"192.0.2.20"} }},
		{"new fwmark", func(c *lvsctlv1.Cluster) { c.Fwmark = 40 }},
		{"nothing", func(*lvsctlv1.Cluster) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edited := wms()
			tt.edit(edited)
			// The full path's operations for the same edit.
			full := newEnv(t)
			full.mustClean(t, desired(wms(), web()), active)
			wantOps := full.mustClean(t, desired(edited, web()), active)

			e := newEnv(t)
			e.mustClean(t, desired(wms(), web()), active)
			reads := e.countReads()
			res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{edited}}, active)
			if len(res.clusters)+len(res.director) > 0 {
				t.Fatalf("errors: %v %v", res.clusters, res.director)
			}
			// Both change the rules in one transaction: the delta without reading them first.
			for i, o := range wantOps {
				if o == "SetMarkRules" {
					wantOps[i] = "ChangeMarkRules"
				}
			}
			slices.Sort(wantOps)
			if !slices.Equal(ops, wantOps) {
				t.Errorf("delta ops = %q, full ops = %q", ops, wantOps)
			}
			if reads["Stats"]+reads["Services"]+reads["MarkRules"] != 0 || reads["Destinations"] != 1 {
				t.Errorf("the delta read %v; want one Destinations and no dump", reads)
			}
			if e.dump() != full.dump() {
				t.Errorf("kernel after the delta:\n%s\nafter the full reconcile:\n%s", e.dump(), full.dump())
			}
			// Then a full reconcile finds nothing to do: the delta left no drift.
			e.ipvs.FailWhen(nil)
			e.fw.FailWhen(nil)
			e.addrs.FailWhen(nil)
			if ops := e.mustClean(t, desired(edited, web()), active); len(ops) != 0 {
				t.Errorf("a full reconcile after the delta made %q", ops)
			}
		})
	}
}

// TestDeltaAddRemove: clusters added and deleted by deltas, in the order the full path keeps
// (services, rules, VIPs; on removal the reverse), with ownership saved.
func TestDeltaAddRemove(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(web()), active)
	res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{wms()}}, active)
	want := []string{
		"AddAddress 192.0.2.10/32 dev eth0",
		"AddDestination fwm 16 ipv4 198.51.100.1:0", "AddDestination fwm 16 ipv4 198.51.100.2:0", "AddDestination fwm 16 ipv4 198.51.100.3:0",
		"AddService fwm 16 ipv4", "ChangeMarkRules",
	}
	if len(res.clusters)+len(res.director) > 0 || !slices.Equal(ops, want) {
		t.Errorf("adding wms: ops %q errors %v %v; want %q", ops, res.clusters, res.director, want)
	}
	k16 := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	e.restart(t) // ownership is on disk, not only in memory
	if !e.st.OwnsService(k16) || !e.st.OwnsAddress(state.Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/32")}) {
		t.Errorf("owned after the delta and a restart: %v %v", e.st.OwnedServices(), e.st.OwnedAddresses())
	}
	e.mustClean(t, desired(wms(), web()), active) // a restarted reconciler starts with a full one

	_, ops = e.applyDelta(t, &lvsctlv1.Delta{Deleted: []string{"wms"}}, active)
	if want := []string{"ChangeMarkRules", "DelAddress 192.0.2.10/32 dev eth0", "DelService fwm 16 ipv4"}; !slices.Equal(ops, want) {
		t.Errorf("deleting wms: ops %q, want %q", ops, want)
	}
	if e.st.OwnsService(k16) || len(e.st.OwnedAddresses()) != 1 {
		t.Errorf("still owned after the delete: %v %v", e.st.OwnedServices(), e.st.OwnedAddresses())
	}
	fresh := newEnv(t)
	fresh.mustClean(t, desired(web()), active)
	if e.dump() != fresh.dump() {
		t.Errorf("kernel:\n%s\nwant\n%s", e.dump(), fresh.dump())
	}
}

// TestDeltaErrorsPersist: a failing cluster's error is in every later result, deltas about
// other clusters included, until a reconcile of it succeeds or it is deleted.
func TestDeltaErrorsPersist(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms(), web()), active)
	boom := errors.New("injected")
	e.ipvs.FailWhen(func(o fake.Op) error {
		if o.Name == "UpdateDestination" && o.Service.FWMark == 16 {
			return boom
		}
		return nil
	})
	bad := wms()
	bad.Reals[0].Weight = 5
	res, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{bad}}, active)
	if got := res.clusterNames(); !slices.Equal(got, []string{"wms"}) {
		t.Fatalf("cluster errors %v, want wms's", res.clusters)
	}
	e.ipvs.FailWhen(nil)
	w := web()
	w.Reals[0].Weight = 3
	res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
	if got := res.clusterNames(); !slices.Equal(got, []string{"wms"}) || !strings.Contains(res.clusters[0].GetMessage(), "injected") {
		t.Errorf("a delta about web: cluster errors %v, want wms's still", res.clusters)
	}
	if want := []string{"UpdateDestination fwm 17 ipv4 198.51.100.11:0"}; !slices.Equal(ops, want) {
		t.Errorf("ops %q, want %q", ops, want)
	}
	// The resync retries wms and clears its error.
	r := e.r.Apply(context.Background(), desired(bad, w), active)
	if len(r.ClusterErrors) != 0 || r.Operations != 1 {
		t.Errorf("full reconcile: %d operations, errors %v; want the retried weight and none", r.Operations, r.ClusterErrors)
	}
	w.Reals[0].Weight = 4
	if res, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active); len(res.clusters) != 0 {
		t.Errorf("after the repair: cluster errors %v", res.clusters)
	}

	// A deleted cluster's error goes with it.
	invalid := wms()
	invalid.Fwmark = 0
	if res, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{invalid}}, active); !slices.Equal(res.clusterNames(), []string{"wms"}) {
		t.Errorf("invalid wms: cluster errors %v", res.clusters)
	}
	if res, _ := e.applyDelta(t, &lvsctlv1.Delta{Deleted: []string{"wms"}}, active); len(res.clusters) != 0 {
		t.Errorf("after deleting wms: cluster errors %v", res.clusters)
	}
}

// TestDeltaAfterFailedUpdateService: after a failed UpdateService, by a delta or a full
// reconcile, the kernel still runs the old settings although the reconciler remembers the new
// ones; the next delta about the cluster sends the update again rather than clearing its error
// over a weight change.
func TestDeltaAfterFailedUpdateService(t *testing.T) {
	failUpdate := func(e *env) {
		e.ipvs.FailWhen(func(o fake.Op) error {
			if o.Name == "UpdateService" && o.Service.FWMark == 17 {
				return errors.New("injected")
			}
			return nil
		})
	}
	for _, by := range []string{"delta", "full"} {
		t.Run(by, func(t *testing.T) {
			e := newEnv(t)
			e.mustClean(t, desired(wms(), web()), active)
			failUpdate(e)
			w := web()
			w.Scheduler = "wrr"
			var res reconcileResult
			if by == "delta" {
				res, _ = e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
			} else {
				r, _ := e.apply(t, desired(wms(), w), active)
				res = reconcileResult{r.ClusterErrors, r.DirectorErrors}
			}
			if !slices.Equal(res.clusterNames(), []string{"web"}) {
				t.Fatalf("cluster errors %v, want web's", res.clusters)
			}
			e.ipvs.FailWhen(nil)
			w = web()
			w.Scheduler = "wrr"
			w.Reals[0].Weight = 3
			res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
			if len(res.clusters) != 0 || !slices.Contains(ops, "UpdateService fwm 17 ipv4") {
				t.Errorf("next delta: ops %q, cluster errors %v; want the update sent again and no error", ops, res.clusters)
			}
			if d := e.ipvs.Dump(); !strings.Contains(d, "fwm 17 ipv4 wrr") {
				t.Errorf("kernel:\n%s\nwant web on wrr", d)
			}
		})
	}
}

// TestDeltaInterrupted: a delta whose context ends before it changes anything reports it, and
// the next delta takes the full path, applying the interrupted delta's change with its own.
func TestDeltaInterrupted(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms(), web()), active)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := web()
	w.Reals[0].Weight = 3
	res := e.r.ApplyDelta(ctx, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
	if len(res.DirectorErrors) != 1 || res.Operations != 0 {
		t.Fatalf("canceled delta: %d operations, director errors %q; want none and one", res.Operations, res.DirectorErrors)
	}
	reads := e.countReads()
	m := wms()
	m.Reals[0].Weight = 5
	r, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{m}}, active)
	if len(r.clusters)+len(r.director) != 0 || reads["Stats"] != 1 {
		t.Errorf("next delta: errors %v %q, %d bulk reads; want the full path, clean", r.clusters, r.director, reads["Stats"])
	}
	want := []string{"UpdateDestination fwm 16 ipv4 198.51.100.1:0", "UpdateDestination fwm 17 ipv4 198.51.100.11:0"}
	if !slices.Equal(ops, want) {
		t.Errorf("next delta: ops %q, want %q", ops, want)
	}
}

// TestDeltaAfterDirectorError: a delta after a reconcile with a director error takes the full
// path, so the error is retried (and reported again if it persists), never hidden.
func TestDeltaAfterDirectorError(t *testing.T) {
	e := newEnv(t)
	e.addrs.FailWhen(func(o fake.Op) error {
		if o.Name == "AddAddress" && o.Prefix.Addr() == netip.MustParseAddr("192.0.2.10") {
			return errors.New("injected")
		}
		return nil
	})
	res, _ := e.apply(t, desired(wms(), web()), active)
	if len(res.DirectorErrors) != 1 {
		t.Fatalf("director errors %q, want the VIP's", res.DirectorErrors)
	}
	w := web()
	w.Reals[0].Weight = 3
	r, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
	if len(r.director) != 1 || !strings.Contains(r.director[0], "192.0.2.10") {
		t.Errorf("the next delta's director errors %q, want the VIP's again", r.director)
	}
	e.addrs.FailWhen(nil)
	w.Reals[0].Weight = 4
	r, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
	if len(r.director) != 0 || !slices.Contains(ops, "AddAddress 192.0.2.10/32 dev eth0") {
		t.Errorf("once the fault is gone: ops %q, director errors %q; want the VIP added", ops, r.director)
	}
}

// TestDeltaRulesDrift: when the table does not hold what the reconciler remembers (a rule was
// removed behind its back), a delta's change that deletes that rule is refused, and all the
// rules are set again.
func TestDeltaRulesDrift(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms(), web()), active)
	rules, err := e.fw.MarkRules()
	if err != nil {
		t.Fatal(err)
	}
	port80 := slices.IndexFunc(rules, func(r dataplane.MarkRule) bool { return r.FirstPort == 80 })
	if _, err := e.fw.SetMarkRules(slices.Delete(rules, port80, port80+1)); err != nil {
		t.Fatal(err)
	}
	edited := web()
	edited.Ports = []*lvsctlv1.PortRange{port(tcp, 443, 443), port(tcp, 8443, 8443)} // 80 goes
	res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{edited}}, active)
	if len(res.director) != 0 || !slices.Equal(ops, []string{"SetMarkRules"}) {
		t.Errorf("ops %q director errors %q; want one SetMarkRules", ops, res.director)
	}
	fresh := newEnv(t)
	fresh.mustClean(t, desired(wms(), edited), active)
	if e.fw.Dump() != fresh.fw.Dump() {
		t.Errorf("rules:\n%s\nwant\n%s", e.fw.Dump(), fresh.fw.Dump())
	}
}

// TestDeltaFullPath: a change of group or role, or a delta before any Apply, is not applied
// as a delta.
func TestDeltaFullPath(t *testing.T) {
	e := newEnv(t)
	res, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{wms()}}, active)
	if len(res.director) != 1 || len(ops) != 0 {
		t.Errorf("a delta before any Apply: ops %q director errors %q; want none and one", ops, res.director)
	}
	e.mustClean(t, desired(wms()), active)
	// Going STANDBY with a delta: the VIPs go.
	_, ops = e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{web()}}, standby)
	if !slices.Contains(ops, "DelAddress 192.0.2.10/32 dev eth0") || slices.Contains(ops, "AddAddress 192.0.2.20/32 dev eth0") {
		t.Errorf("a delta with a STANDBY role: ops %q", ops)
	}
	// A new gateway comes with the group.
	g := group()
	g.Gateway = &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}
	_, ops = e.applyDelta(t, &lvsctlv1.Delta{Group: g}, active)
	for _, want := range []string{"AddAddress 198.51.100.254/24 dev eth1", "AddAddress 192.0.2.10/32 dev eth0", "AddAddress 192.0.2.20/32 dev eth0"} {
		if !slices.Contains(ops, want) {
			t.Errorf("a delta with a new group and ACTIVE again: ops %q lack %q", ops, want)
		}
	}
}

// countingOwnership counts the saves of ownership.
type countingOwnership struct {
	*state.State
	commits int
}

func (c *countingOwnership) Commit(ch state.Changes) error {
	c.commits++
	return c.State.Commit(ch)
}

// TestOwnershipSavedPerBatch: a cold start saves ownership once for all its services and
// once for all its addresses, not once per object; a weight change saves nothing.
func TestOwnershipSavedPerBatch(t *testing.T) {
	st, err := state.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	own := &countingOwnership{State: st}
	ipvs, fw, addrs := fake.NewIPVS(), fake.NewFirewall(), fake.NewAddresses("eth0")
	r := reconcile.New(reconcile.Config{IPVS: ipvs, Firewall: fw, Addresses: addrs, State: own})
	var clusters []*lvsctlv1.Cluster
	for i := range 50 {
		c := web()
		c.Name, c.Fwmark = fmt.Sprintf("web%02d", i), uint32(100+i)
		c.Vips = []string{fmt.Sprintf("192.0.2.%d", 100+i)}
		clusters = append(clusters, c)
	}
	res := r.Apply(context.Background(), desired(clusters...), active)
	if len(res.ClusterErrors)+len(res.DirectorErrors) > 0 {
		t.Fatalf("errors %v %v", res.ClusterErrors, res.DirectorErrors)
	}
	if len(st.OwnedServices()) != 50 || len(st.OwnedAddresses()) != 50 {
		t.Fatalf("owns %d services and %d addresses, want 50 and 50", len(st.OwnedServices()), len(st.OwnedAddresses()))
	}
	if own.commits != 2 {
		t.Errorf("%d saves of ownership for 50 services and 50 addresses, want 2", own.commits)
	}
	own.commits = 0
	c := proto.CloneOf(clusters[7])
	c.Reals[0].Weight = 9
	if res := r.ApplyDelta(context.Background(), &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{c}}, active); res.Operations != 1 || own.commits != 0 {
		t.Errorf("a weight change: %d operations, %d saves; want 1 and 0", res.Operations, own.commits)
	}
}

// onVIP30 is a cluster on 192.0.2.30 with tcp ports, for clusters whose ports overlap.
func onVIP30(name string, mark uint32, ports ...uint32) *lvsctlv1.Cluster {
	c := &lvsctlv1.Cluster{
		Name: name, DirectorGroup: "edge-1", Vips: []string{"192.0.2.30"}, Scheduler: "rr",
		Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.31", Weight: 1}},
		Fwmark:     mark,
	}
	for _, p := range ports {
		c.Ports = append(c.Ports, port(tcp, p, p))
	}
	return c
}

// TestOverlappingPorts: two clusters claim the same VIP and port with different marks (a
// store may hold that from before validation refused it). The firewall would refuse the whole
// transaction, leaving every cluster without marks; instead the cluster later in name order
// goes without the overlapping rule, with an error naming the other, and every other mark is
// set. Deltas take the full path while the overlap lasts; one that brings an overlap sets
// the marks as the full path does.
func TestOverlappingPorts(t *testing.T) {
	a, b := onVIP30("a", 20, 80, 443), onVIP30("b", 21, 80, 8080)
	wantRules := func(t *testing.T, e *env, bGets80 bool) {
		t.Helper()
		want := "192.0.2.20 tcp dport 80 mark 17\n192.0.2.20 tcp dport 443 mark 17\n"
		if bGets80 {
			want += "192.0.2.30 tcp dport 80 mark 21\n192.0.2.30 tcp dport 8080 mark 21\n"
		} else {
			want += "192.0.2.30 tcp dport 80 mark 20\n192.0.2.30 tcp dport 443 mark 20\n192.0.2.30 tcp dport 8080 mark 21\n"
		}
		if got := e.fw.Dump(); got != want {
			t.Errorf("rules:\n%swant\n%s", got, want)
		}
	}
	wantBError := func(t *testing.T, res reconcileResult) {
		t.Helper()
		if len(res.director) != 0 || !slices.Equal(res.clusterNames(), []string{"b"}) || !strings.Contains(res.clusters[0].GetMessage(), `cluster "a"`) {
			t.Errorf("errors: clusters %v, director %q; want b's naming cluster \"a\"", res.clusters, res.director)
		}
	}

	t.Run("full", func(t *testing.T) {
		e := newEnv(t)
		r, _ := e.apply(t, desired(web(), b, a), active)
		wantBError(t, reconcileResult{r.ClusterErrors, r.DirectorErrors})
		wantRules(t, e, false)

		// A delta about another cluster: the full path, the overlap reported again.
		reads := e.countReads()
		w := web()
		w.Reals[0].Weight = 3
		res, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active)
		wantBError(t, res)
		if reads["Stats"] != 1 {
			t.Errorf("delta while clusters overlap: %d bulk reads, want the full path's one", reads["Stats"])
		}
		// a goes: b gets its port.
		res, _ = e.applyDelta(t, &lvsctlv1.Delta{Deleted: []string{"a"}}, active)
		if len(res.clusters)+len(res.director) != 0 {
			t.Errorf("after deleting a: errors %v %q", res.clusters, res.director)
		}
		wantRules(t, e, true)
	})

	// A delta brings the overlap: the cluster it names loses, or the one it does not.
	for _, add := range []string{"b", "a"} {
		t.Run("delta adds "+add, func(t *testing.T) {
			e := newEnv(t)
			first, second := a, b
			if add == "a" {
				first, second = b, a
			}
			e.mustClean(t, desired(web(), first), active)
			res, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{second}}, active)
			wantBError(t, res)
			wantRules(t, e, false)
			if r := e.r.Apply(context.Background(), desired(web(), a, b), active); r.Operations != 0 {
				t.Errorf("full reconcile after the delta: %d operations, want none", r.Operations)
			}
		})
	}
}

package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// withGateway is the seed's two clusters with the group's gateway.
func withGateway(clusters ...*lvsctlv1.Cluster) *lvsctlv1.DesiredState {
	d := desired(clusters...)
	d.Group.Gateway = &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}
	return d
}

// holding runs one ApplyHolding with every IPVS and firewall call refused (the fast path must
// make none) and returns its result and the address operations it made, checking that the
// result counts them.
func (e *env) holding(t *testing.T, hold bool) (reconcile.Result, []string) {
	t.Helper()
	e.resetOps()
	var touched []string
	refuse := func(o fake.Op) error {
		touched = append(touched, o.String())
		return errors.New("the holding fast path touched IPVS or the firewall")
	}
	e.ipvs.FailWhen(refuse)
	e.fw.FailWhen(refuse)
	defer func() {
		e.ipvs.FailWhen(nil)
		e.fw.FailWhen(nil)
	}()
	res := e.r.ApplyHolding(context.Background(), hold)
	if len(touched) > 0 {
		t.Errorf("ApplyHolding(%v) called IPVS or the firewall: %q", hold, touched)
	}
	var ops []string
	for _, o := range e.addrs.Ops() {
		ops = append(ops, o.String())
	}
	slices.Sort(ops)
	if res.Operations != len(ops) {
		t.Errorf("Result.Operations = %d, but the kernel saw %d: %q", res.Operations, len(ops), ops)
	}
	e.resetOps()
	return res, ops
}

func addrStrings(as []state.Address) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

// TestApplyHolding: a STANDBY takes the VIPs of its serving clusters and the gateway, and
// gives them back, touching nothing else, recording ownership as Apply does; the deltas that
// follow stay deltas.
func TestApplyHolding(t *testing.T) {
	e := newEnv(t)
	mustDo(t, e.addrs.AddAddress("eth0", netip.MustParsePrefix("203.0.113.5/24"))) // the host's own
	e.mustClean(t, withGateway(wms(), web()), standby)
	ipvs, rules := e.ipvs.Dump(), e.fw.Dump()

	res, ops := e.holding(t, true)
	want := []string{"AddAddress 192.0.2.10/32 dev eth0", "AddAddress 192.0.2.20/32 dev eth0", "AddAddress 198.51.100.254/24 dev eth1"}
	if len(res.DirectorErrors) > 0 || !slices.Equal(ops, want) {
		t.Fatalf("hold: errors %v, ops %q; want %q", res.DirectorErrors, ops, want)
	}
	wantAdded := []string{"192.0.2.10/32 dev eth0", "192.0.2.20/32 dev eth0", "198.51.100.254/24 dev eth1"}
	if got := addrStrings(res.Added); !slices.Equal(got, wantAdded) {
		t.Errorf("Result.Added = %q, want %q", got, wantAdded)
	}
	if got := addrStrings(e.st.OwnedAddresses()); !slices.Equal(got, wantAdded) {
		t.Errorf("owned after hold: %q, want %q", got, wantAdded)
	}
	if e.ipvs.Dump() != ipvs || e.fw.Dump() != rules {
		t.Errorf("IPVS or rules changed:\n%s", e.dump())
	}

	// Holding again adds nothing.
	if res, ops := e.holding(t, true); len(ops) != 0 || len(res.Added) != 0 || len(res.DirectorErrors) != 0 {
		t.Errorf("second hold: ops %q, added %v, errors %v; want nothing", ops, res.Added, res.DirectorErrors)
	}

	// Now ACTIVE, a delta with role ACTIVE stays a delta: no full IPVS read.
	reads := e.countReads()
	if r, _ := e.applyDelta(t, &lvsctlv1.Delta{Deleted: []string{"web"}}, active); len(r.director) > 0 {
		t.Fatal(r.director)
	}
	if reads["Stats"] != 0 || reads["MarkRules"] != 0 {
		t.Errorf("the delta after holding read %v: it took the full path", reads)
	}
	e.ipvs.FailWhen(nil)
	e.fw.FailWhen(nil)
	e.addrs.FailWhen(nil)
	if got := e.addrs.Dump(); strings.Contains(got, "192.0.2.20") {
		t.Errorf("the deleted cluster's VIP is still held:\n%s", got)
	}

	res, ops = e.holding(t, false)
	want = []string{"DelAddress 192.0.2.10/32 dev eth0", "DelAddress 198.51.100.254/24 dev eth1"}
	if len(res.DirectorErrors) > 0 || !slices.Equal(ops, want) {
		t.Fatalf("release: errors %v, ops %q; want %q", res.DirectorErrors, ops, want)
	}
	if got := e.addrs.Dump(); got != "eth0 203.0.113.5/24\n" {
		t.Errorf("after release the addresses are\n%s", got)
	}
	if owned := e.st.OwnedAddresses(); len(owned) != 0 {
		t.Errorf("still owned after release: %v", owned)
	}
	// And a STANDBY delta stays a delta too, keeping count of what it would hold.
	reads = e.countReads()
	if r, ops := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{web()}}, standby); len(r.director) > 0 || slices.ContainsFunc(ops, func(o string) bool { return strings.Contains(o, "Address") }) {
		t.Fatalf("standby delta: errors %v, ops %q", r.director, ops)
	}
	if reads["Stats"] != 0 {
		t.Errorf("the delta after releasing read %v: it took the full path", reads)
	}
	e.ipvs.FailWhen(nil)
	e.fw.FailWhen(nil)
	e.addrs.FailWhen(nil)
	_, ops = e.holding(t, true)
	if want := []string{"AddAddress 192.0.2.10/32 dev eth0", "AddAddress 192.0.2.20/32 dev eth0", "AddAddress 198.51.100.254/24 dev eth1"}; !slices.Equal(ops, want) {
		t.Errorf("hold after the standby delta: ops %q, want %q", ops, want)
	}
}

// TestApplyHoldingEdges: errors per address, addresses that are not the agent's, clusters
// without a service, before any Apply, and the full path when the addresses are unknown.
func TestApplyHoldingEdges(t *testing.T) {
	t.Run("one address refused", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms(), web()), standby)
		e.addrs.FailWhen(func(o fake.Op) error {
			if o.Name == "AddAddress" && o.Prefix.Addr() == netip.MustParseAddr("192.0.2.20") {
				return fmt.Errorf("no: %w", syscall.EPERM)
			}
			return nil
		})
		res, ops := e.holding(t, true)
		if len(res.DirectorErrors) != 1 || !strings.Contains(res.DirectorErrors[0], "192.0.2.20/32") {
			t.Errorf("director errors %q, want one naming 192.0.2.20/32", res.DirectorErrors)
		}
		if want := []string{"AddAddress 192.0.2.10/32 dev eth0", "AddAddress 198.51.100.254/24 dev eth1"}; !slices.Equal(ops, want) {
			t.Errorf("ops %q, want the others added: %q", ops, want)
		}
		if e.st.OwnsAddress(state.Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.20/32")}) {
			t.Error("the refused address is owned")
		}
		if got := addrStrings(res.Added); len(got) != 2 {
			t.Errorf("Result.Added = %q, want the two added", got)
		}
		// The director error sends the next delta down the full path, which retries it.
		e.addrs.FailWhen(nil)
		if r, ops := e.applyDelta(t, &lvsctlv1.Delta{}, active); len(r.director) > 0 || !slices.Equal(ops, []string{"AddAddress 192.0.2.20/32 dev eth0"}) {
			t.Errorf("retry: errors %v, ops %q", r.director, ops)
		}
	})
	t.Run("an address someone else added", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms()), standby)
		mustDo(t, e.addrs.AddAddress("eth0", netip.MustParsePrefix("192.0.2.10/32")))
		res, ops := e.holding(t, true)
		if want := []string{"AddAddress 198.51.100.254/24 dev eth1"}; !slices.Equal(ops, want) || len(res.DirectorErrors) > 0 {
			t.Errorf("ops %q, errors %v; want only %q", ops, res.DirectorErrors, want)
		}
		if _, ops := e.holding(t, false); slices.Contains(ops, "DelAddress 192.0.2.10/32 dev eth0") {
			t.Error("release removed an address the agent did not add")
		}
	})
	t.Run("a cluster without its service", func(t *testing.T) {
		e := newEnv(t)
		e.ipvs.SetSchedulers("wlc") // web's rr is missing
		res, _ := e.apply(t, withGateway(wms(), web()), standby)
		if len(res.ClusterErrors) != 1 {
			t.Fatalf("cluster errors %v, want web's", res.ClusterErrors)
		}
		hres, ops := e.holding(t, true)
		if want := []string{"AddAddress 192.0.2.10/32 dev eth0", "AddAddress 198.51.100.254/24 dev eth1"}; !slices.Equal(ops, want) {
			t.Errorf("ops %q, want %q: no VIP without its service", ops, want)
		}
		if len(hres.ClusterErrors) != 1 || hres.ClusterErrors[0].GetCluster() != "web" {
			t.Errorf("Result.ClusterErrors = %v, want web's, remembered", hres.ClusterErrors)
		}
	})
	t.Run("before any Apply", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms()), active)
		e.restart(t) // a new agent: owns the addresses, has applied nothing yet
		if res, ops := e.holding(t, true); len(res.DirectorErrors) != 1 || len(ops) != 0 {
			t.Errorf("hold before Apply: errors %v, ops %q; want one error, nothing done", res.DirectorErrors, ops)
		}
		res, ops := e.holding(t, false)
		if want := []string{"DelAddress 192.0.2.10/32 dev eth0", "DelAddress 198.51.100.254/24 dev eth1"}; !slices.Equal(ops, want) || len(res.DirectorErrors) > 0 {
			t.Errorf("release before Apply: ops %q, errors %v; want %q", ops, res.DirectorErrors, want)
		}
	})
	t.Run("addresses unknown: the full path", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms()), standby)
		e.ipvs.FailNext("Stats", fmt.Errorf("read: %w", syscall.EAGAIN))
		if res, _ := e.apply(t, withGateway(wms()), standby); len(res.DirectorErrors) != 1 {
			t.Fatalf("director errors %v, want the failed read", res.DirectorErrors)
		}
		res := e.r.ApplyHolding(context.Background(), true)
		if len(res.DirectorErrors) > 0 || len(res.Added) != 2 {
			t.Errorf("hold: errors %v, added %v; want both added by the full path", res.DirectorErrors, res.Added)
		}
	})
	t.Run("a group without vip_interface", func(t *testing.T) {
		e := newEnv(t)
		d := withGateway(wms())
		d.Group.VipInterface = ""
		e.mustClean(t, d, standby)
		res := e.r.ApplyHolding(context.Background(), true)
		if len(res.DirectorErrors) != 1 || !strings.Contains(res.DirectorErrors[0], "vip_interface") {
			t.Errorf("director errors %q, want vip_interface's", res.DirectorErrors)
		}
		if got := addrStrings(res.Added); !slices.Equal(got, []string{"198.51.100.254/24 dev eth1"}) {
			t.Errorf("Result.Added = %q, want the gateway", got)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms()), standby)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		res := e.r.ApplyHolding(ctx, true)
		if len(res.DirectorErrors) != 1 || !errors.Is(ctx.Err(), context.Canceled) || e.addrs.Dump() != "" {
			t.Errorf("canceled hold: errors %v, addresses\n%s", res.DirectorErrors, e.addrs.Dump())
		}
	})
}

// memOwnership is Ownership in memory: what the reconciler itself costs, without
// state.json's rewrite.
type memOwnership struct {
	services map[dataplane.ServiceKey]bool
	addrs    map[state.Address]bool
}

func (m *memOwnership) OwnsService(k dataplane.ServiceKey) bool { return m.services[k] }
func (m *memOwnership) OwnedServices() []dataplane.ServiceKey {
	var out []dataplane.ServiceKey
	for k := range m.services {
		out = append(out, k)
	}
	return out
}
func (m *memOwnership) OwnsAddress(a state.Address) bool { return m.addrs[a] }
func (m *memOwnership) OwnedAddresses() []state.Address {
	var out []state.Address
	for a := range m.addrs {
		out = append(out, a)
	}
	return out
}
func (m *memOwnership) Commit(c state.Changes) error {
	for _, k := range c.RecordServices {
		m.services[k] = true
	}
	for _, a := range c.RecordAddresses {
		m.addrs[a] = true
	}
	for _, k := range c.ForgetServices {
		delete(m.services, k)
	}
	for _, a := range c.ForgetAddresses {
		delete(m.addrs, a)
	}
	return nil
}

// BenchmarkApplyHolding: taking and giving back the addresses of 1,000 and 10,000 clusters
// that share 300 VIPs (and a gateway), with the fakes, against the full Apply that a role
// change would otherwise cost. state=file saves ownership in state.json as the agent does;
// state=memory shows the reconciler's own cost.
func BenchmarkApplyHolding(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, store := range []string{"file", "memory"} {
			b.Run(fmt.Sprintf("clusters=%d/vips=300/state=%s", n, store), func(b *testing.B) {
				benchHolding(b, n, store == "file")
			})
		}
	}
}

func benchHolding(b *testing.B, n int, file bool) {
	ctx := context.Background()
	var owned reconcile.Ownership = &memOwnership{services: map[dataplane.ServiceKey]bool{}, addrs: map[state.Address]bool{}}
	if file {
		st, err := state.Load(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		owned = st
	}
	addrs := fake.NewAddresses("eth0", "eth1")
	r := reconcile.New(reconcile.Config{IPVS: fake.NewIPVS(), Firewall: fake.NewFirewall(), Addresses: addrs, State: owned})
	d := withGateway()
	for i := range n {
		vip := netip.AddrFrom4([4]byte{10, 1, byte(i % 300 / 250), byte(i % 300 % 250)})
		d.Clusters = append(d.Clusters, &lvsctlv1.Cluster{
			Name: fmt.Sprintf("c%05d", i), Vips: []string{vip.String()}, Fwmark: uint32(i + 1),
			Ports:      []*lvsctlv1.PortRange{port(tcp, uint32(1000+i/300), uint32(1000+i/300))},
			Scheduler:  "wlc",
			Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
			Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
		})
	}
	if res := r.Apply(ctx, d, standby); len(res.DirectorErrors)+len(res.ClusterErrors) > 0 {
		b.Fatalf("Apply: %v %v", res.DirectorErrors, res.ClusterErrors)
	}
	b.Run("hold", func(b *testing.B) {
		for b.Loop() {
			if res := r.ApplyHolding(ctx, true); len(res.Added) != 301 {
				b.Fatalf("added %d, want 301: %v", len(res.Added), res.DirectorErrors)
			}
			b.StopTimer()
			r.ApplyHolding(ctx, false)
			b.StartTimer()
		}
	})
	b.Run("release", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			r.ApplyHolding(ctx, true)
			b.StartTimer()
			if res := r.ApplyHolding(ctx, false); res.Operations != 301 {
				b.Fatalf("removed %d, want 301: %v", res.Operations, res.DirectorErrors)
			}
		}
	})
	b.Run("full-apply-as-active", func(b *testing.B) {
		for b.Loop() {
			if res := r.Apply(ctx, d, active); res.Operations != 301 {
				b.Fatalf("%d operations, want 301: %v", res.Operations, res.DirectorErrors)
			}
			b.StopTimer()
			r.Apply(ctx, d, standby)
			b.StartTimer()
		}
	})
}

// TestReleasePreemptsApply: a release does not wait behind a reconcile in progress: the
// reconcile stops at its next step, before it adds the VIPs it was about to, and the release
// runs; the next reconcile takes the full path.
func TestReleasePreemptsApply(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, withGateway(wms()), standby)
	inStats, goOn := make(chan struct{}), make(chan struct{})
	e.ipvs.FailWhen(func(o fake.Op) error {
		if o.Name == "Stats" {
			inStats <- struct{}{}
			<-goOn
		}
		return nil
	})
	applied := make(chan reconcile.Result)
	go func() { applied <- e.r.Apply(context.Background(), withGateway(wms()), active) }()
	<-inStats // the ACTIVE's Apply holds the reconciler, reading IPVS
	released := make(chan reconcile.Result)
	go func() { released <- e.r.ApplyHolding(context.Background(), false) }()
	for e.r.Releasing() == 0 {
		runtime.Gosched() // until the release has asked the Apply to stop
	}
	close(goOn)
	res := <-applied
	if len(res.Added) != 0 || !slices.ContainsFunc(res.DirectorErrors, func(s string) bool { return strings.Contains(s, reconcile.ErrPreempted.Error()) }) {
		t.Errorf("the preempted Apply: added %v, director errors %q; want nothing added, preempted", res.Added, res.DirectorErrors)
	}
	if rel := <-released; len(rel.DirectorErrors) > 0 {
		t.Errorf("release: %v", rel.DirectorErrors)
	}
	e.ipvs.FailWhen(nil)
	if got := e.addrs.Dump(); got != "" {
		t.Errorf("addresses after the release:\n%s", got)
	}
	// The next reconcile is whole again, and holds as told.
	reads := e.countReads()
	r, _ := e.applyDelta(t, &lvsctlv1.Delta{}, active)
	if len(r.director) > 0 || reads["Stats"] != 1 {
		t.Errorf("after the preemption: errors %v, reads %v; want the full path", r.director, reads)
	}
	if got := e.addrs.Dump(); !strings.Contains(got, "192.0.2.10/32") {
		t.Errorf("the full reconcile as ACTIVE did not hold the VIP:\n%s", got)
	}
}

// TestApplyAtAfterRelease: a reconcile whose hold was decided before a release, and which
// starts only after the release ran, does not put the addresses back; one decided after the
// release holds as told.
func TestApplyAtAfterRelease(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	e.mustClean(t, withGateway(wms()), active)
	if got := e.addrs.Dump(); !strings.Contains(got, "192.0.2.10/32") {
		t.Fatalf("the ACTIVE does not hold the VIP:\n%s", got)
	}
	gen := e.r.ReleaseGen() // the caller decides to hold
	if rel := e.r.ApplyHolding(ctx, false); len(rel.DirectorErrors) > 0 {
		t.Fatalf("release: %v", rel.DirectorErrors)
	}
	for _, step := range []struct {
		name string
		run  func() reconcile.Result
	}{
		{"ApplyAt", func() reconcile.Result { return e.r.ApplyAt(ctx, gen, withGateway(wms()), active) }},
		{"ApplyDeltaAt", func() reconcile.Result { return e.r.ApplyDeltaAt(ctx, gen, &lvsctlv1.Delta{}, active) }},
	} {
		res := step.run()
		if got := e.addrs.Dump(); got != "" || len(res.Added) > 0 {
			t.Errorf("%s of a hold decided before the release: added %v, addresses:\n%s", step.name, addrStrings(res.Added), got)
		}
		if len(res.DirectorErrors)+len(res.ClusterErrors) > 0 {
			t.Errorf("%s: errors %v %v", step.name, res.DirectorErrors, res.ClusterErrors)
		}
	}
	if got := e.ipvs.Dump(); !strings.Contains(got, "fwm 16") {
		t.Errorf("the services must stay:\n%s", got)
	}
	res := e.r.ApplyDeltaAt(ctx, e.r.ReleaseGen(), &lvsctlv1.Delta{}, active)
	if got := e.addrs.Dump(); !strings.Contains(got, "192.0.2.10/32") || len(res.Added) == 0 {
		t.Errorf("a hold decided after the release: added %v, addresses:\n%s", addrStrings(res.Added), got)
	}
}

// TestDeltaTakesOver: a delta that reaches the reconciler after the role machine said hold (the
// fence ended while it was queued) takes the addresses on the holding fast path and stays a
// delta: no IPVS dump or rule read on a takeover's path, the addresses listed for the announce,
// the delta's own change applied. One whose holding fails takes the full path, which still
// lists what the fast path added.
func TestDeltaTakesOver(t *testing.T) {
	wantAdded := []string{"192.0.2.10/32 dev eth0", "192.0.2.20/32 dev eth0", "198.51.100.254/24 dev eth1"}
	t.Run("delta", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms(), web()), standby)
		edited := web()
		edited.Reals[0].Weight = 7
		reads := e.countReads()
		res := e.r.ApplyDelta(context.Background(), &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{edited}}, active)
		if len(res.DirectorErrors)+len(res.ClusterErrors) > 0 {
			t.Fatalf("errors: director %v, clusters %v", res.DirectorErrors, res.ClusterErrors)
		}
		if reads["Stats"] != 0 || reads["MarkRules"] != 0 {
			t.Errorf("the takeover's delta read %v: it took the full path", reads)
		}
		if got := addrStrings(res.Added); !slices.Equal(got, wantAdded) {
			t.Errorf("Result.Added = %q, want %q", got, wantAdded)
		}
		if got := e.addrs.Dump(); !strings.Contains(got, "192.0.2.10/32") || !strings.Contains(got, "198.51.100.254/24") {
			t.Errorf("the addresses after the takeover's delta:\n%s", got)
		}
		if !strings.Contains(e.ipvs.Dump(), "198.51.100.11:0 route weight 7") {
			t.Errorf("the delta's weight was not applied:\n%s", e.ipvs.Dump())
		}
		// The reconciler is ACTIVE now: the next delta stays a delta and changes no address.
		e.ipvs.FailWhen(nil)
		e.fw.FailWhen(nil)
		e.addrs.FailWhen(nil)
		if _, ops := e.applyDelta(t, &lvsctlv1.Delta{}, active); len(ops) != 0 {
			t.Errorf("an empty delta after the takeover: ops %q", ops)
		}
	})
	t.Run("holding fails", func(t *testing.T) {
		e := newEnv(t)
		e.mustClean(t, withGateway(wms(), web()), standby)
		e.addrs.FailWhen(func(o fake.Op) error {
			if o.Name == "AddAddress" && strings.Contains(o.String(), "198.51.100.254") {
				return syscall.EBUSY
			}
			return nil
		})
		res := e.r.ApplyDelta(context.Background(), &lvsctlv1.Delta{}, active)
		if len(res.DirectorErrors) == 0 {
			t.Errorf("a gateway that could not be added is no error")
		}
		if got := addrStrings(res.Added); !slices.Equal(got, wantAdded[:2]) {
			t.Errorf("Result.Added = %q, want the VIPs the fast path added, %q", got, wantAdded[:2])
		}
		e.addrs.FailWhen(nil)
		res = e.r.ApplyDelta(context.Background(), &lvsctlv1.Delta{}, active)
		if len(res.DirectorErrors) > 0 || !slices.Equal(addrStrings(res.Added), wantAdded[2:]) {
			t.Errorf("the next delta: errors %v, added %q; want the gateway retried", res.DirectorErrors, addrStrings(res.Added))
		}
	})
}

package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

var (
	_ reconcile.IPVS      = (*fake.IPVS)(nil)
	_ reconcile.Firewall  = (*fake.Firewall)(nil)
	_ reconcile.Addresses = (*fake.Addresses)(nil)
	_ reconcile.Ownership = (*state.State)(nil)
)

// env is a reconciler over fresh fakes, with its state in a temporary directory.
type env struct {
	ipvs  *fake.IPVS
	fw    *fake.Firewall
	addrs *fake.Addresses
	st    *state.State
	dir   string
	r     *reconcile.Reconciler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		ipvs:  fake.NewIPVS(),
		fw:    fake.NewFirewall(),
		addrs: fake.NewAddresses("lo", "eth0", "eth1"),
		dir:   t.TempDir(),
	}
	e.restart(t)
	return e
}

// restart makes a new Reconciler from the state on disk, as a restarted agent would.
func (e *env) restart(t *testing.T) {
	t.Helper()
	st, err := state.Load(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	e.r = reconcile.New(reconcile.Config{
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		IPVS:      e.ipvs,
		Firewall:  e.fw,
		Addresses: e.addrs,
		State:     st,
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// apply runs one Apply and returns its result and the kernel operations it made, checking
// that the result counts exactly those.
func (e *env) apply(t *testing.T, d *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) (reconcile.Result, []string) {
	t.Helper()
	e.resetOps()
	res := e.r.Apply(context.Background(), d, role)
	var ops []string
	for _, o := range slices.Concat(e.ipvs.Ops(), e.fw.Ops(), e.addrs.Ops()) {
		ops = append(ops, o.String())
	}
	slices.Sort(ops)
	if res.Operations != len(ops) {
		t.Errorf("Result.Operations = %d, but the kernel saw %d: %q", res.Operations, len(ops), ops)
	}
	e.resetOps()
	return res, ops
}

func (e *env) resetOps() {
	e.ipvs.ResetOps()
	e.fw.ResetOps()
	e.addrs.ResetOps()
}

// mustClean applies and fails the test on any error.
func (e *env) mustClean(t *testing.T, d *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) []string {
	t.Helper()
	res, ops := e.apply(t, d, role)
	if len(res.ClusterErrors) > 0 || len(res.DirectorErrors) > 0 {
		t.Fatalf("Apply errors: clusters %v, director %v", res.ClusterErrors, res.DirectorErrors)
	}
	return ops
}

func (e *env) dump() string {
	return "ipvs:\n" + e.ipvs.Dump() + "rules:\n" + e.fw.Dump() + "addresses:\n" + e.addrs.Dump()
}

var (
	active  = &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 1}
	standby = &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_STANDBY, Epoch: 2}
)

func port(p lvsctlv1.Protocol, first, last uint32) *lvsctlv1.PortRange {
	return &lvsctlv1.PortRange{Protocol: p, First: first, Last: last}
}

const (
	tcp = lvsctlv1.Protocol_PROTOCOL_TCP
	udp = lvsctlv1.Protocol_PROTOCOL_UDP
)

// wms is the seed's Windows Media cluster (deploy/examples/wms.yaml).
func wms() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"},
		Ports: []*lvsctlv1.PortRange{
			port(tcp, 554, 554), port(udp, 554, 554), port(tcp, 1755, 1755), port(udp, 1755, 1755), port(udp, 1024, 5000),
		},
		Scheduler:   "wlc",
		Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600},
		Forwarding:  lvsctlv1.Forwarding_FORWARDING_MASQ,
		Reals: []*lvsctlv1.RealServer{
			{Address: "198.51.100.1", Weight: 100}, {Address: "198.51.100.2", Weight: 100}, {Address: "198.51.100.3", Weight: 100},
		},
		Fwmark: 16,
	}
}

func web() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "web", DirectorGroup: "edge-1", Vips: []string{"192.0.2.20"},
		Ports:      []*lvsctlv1.PortRange{port(tcp, 80, 80), port(tcp, 443, 443)},
		Scheduler:  "rr",
		Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.11", Weight: 1}, {Address: "198.51.100.12", Weight: 1}},
		Fwmark:     17,
	}
}

func group() *lvsctlv1.DirectorGroup {
	return &lvsctlv1.DirectorGroup{
		Name: "edge-1", VipInterface: "eth0",
		Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}},
	}
}

func desired(clusters ...*lvsctlv1.Cluster) *lvsctlv1.DesiredState {
	return &lvsctlv1.DesiredState{Group: group(), Clusters: clusters}
}

func TestCreateWMS(t *testing.T) {
	e := newEnv(t)
	ops := e.mustClean(t, desired(wms()), active)
	wantOps := []string{
		"AddAddress 192.0.2.10/32 dev eth0",
		"AddDestination fwm 16 ipv4 198.51.100.1:0",
		"AddDestination fwm 16 ipv4 198.51.100.2:0",
		"AddDestination fwm 16 ipv4 198.51.100.3:0",
		"AddService fwm 16 ipv4",
		"SetMarkRules",
	}
	if !slices.Equal(ops, wantOps) {
		t.Errorf("ops =\n%s\nwant\n%s", strings.Join(ops, "\n"), strings.Join(wantOps, "\n"))
	}
	want := `ipvs:
fwm 16 ipv4 wlc timeout 600 netmask /32
fwm 16 ipv4 -> 198.51.100.1:0 masq weight 100
fwm 16 ipv4 -> 198.51.100.2:0 masq weight 100
fwm 16 ipv4 -> 198.51.100.3:0 masq weight 100
rules:
192.0.2.10 tcp dport 554 mark 16
192.0.2.10 tcp dport 1755 mark 16
192.0.2.10 udp dport 554 mark 16
192.0.2.10 udp dport 1024-5000 mark 16
192.0.2.10 udp dport 1755 mark 16
addresses:
eth0 192.0.2.10/32
`
	if got := e.dump(); got != want {
		t.Errorf("kernel =\n%s\nwant\n%s", got, want)
	}
	k := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	if !e.st.OwnsService(k) || !e.st.OwnsAddress(state.Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/32")}) {
		t.Errorf("state does not record what was created: %v %v", e.st.OwnedServices(), e.st.OwnedAddresses())
	}

	// The same desired state again changes nothing, also after a restart from the state file.
	if ops := e.mustClean(t, desired(wms()), active); len(ops) != 0 {
		t.Errorf("second identical Apply made %q", ops)
	}
	e.restart(t)
	if ops := e.mustClean(t, desired(wms()), active); len(ops) != 0 {
		t.Errorf("identical Apply after a restart made %q", ops)
	}
}

func TestEditInPlace(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *lvsctlv1.Cluster)
		want []string
	}{
		{"scheduler", func(c *lvsctlv1.Cluster) { c.Scheduler = "sh" }, []string{"UpdateService fwm 16 ipv4"}},
		{"persistence timeout", func(c *lvsctlv1.Cluster) { c.Persistence.TimeoutSeconds = 900 }, []string{"UpdateService fwm 16 ipv4"}},
		{"persistence off", func(c *lvsctlv1.Cluster) { c.Persistence = nil }, []string{"UpdateService fwm 16 ipv4"}},
		{"netmask", func(c *lvsctlv1.Cluster) { c.Persistence.NetmaskBits = 24 }, []string{"UpdateService fwm 16 ipv4"}},
		{"scheduler and timeout", func(c *lvsctlv1.Cluster) { c.Scheduler = "rr"; c.Persistence.TimeoutSeconds = 60 }, []string{"UpdateService fwm 16 ipv4"}},
		{"one weight", func(c *lvsctlv1.Cluster) { c.Reals[1].Weight = 50 }, []string{"UpdateDestination fwm 16 ipv4 198.51.100.2:0"}},
		{"quiesce", func(c *lvsctlv1.Cluster) { c.Reals[0].Weight = 0 }, []string{"UpdateDestination fwm 16 ipv4 198.51.100.1:0"}},
		{"add a real", func(c *lvsctlv1.Cluster) {
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: "198.51.100.4", Weight: 100})
		}, []string{"AddDestination fwm 16 ipv4 198.51.100.4:0"}},
		{"remove a real", func(c *lvsctlv1.Cluster) { c.Reals = c.Reals[:2] }, []string{"DelDestination fwm 16 ipv4 198.51.100.3:0"}},
		{"forwarding", func(c *lvsctlv1.Cluster) { c.Forwarding = lvsctlv1.Forwarding_FORWARDING_ROUTE }, []string{
			"UpdateDestination fwm 16 ipv4 198.51.100.1:0", "UpdateDestination fwm 16 ipv4 198.51.100.2:0", "UpdateDestination fwm 16 ipv4 198.51.100.3:0",
		}},
		{"add a port", func(c *lvsctlv1.Cluster) { c.Ports = append(c.Ports, port(tcp, 8080, 8081)) }, []string{"SetMarkRules"}},
		{"add a VIP", func(c *lvsctlv1.Cluster) { c.Vips = append(c.Vips, "192.0.2.11") }, []string{"AddAddress 192.0.2.11/32 dev eth0", "SetMarkRules"}},
		{"replace a real and change a weight", func(c *lvsctlv1.Cluster) {
			c.Reals[0].Address = "198.51.100.9"
			c.Reals[2].Weight = 7
		}, []string{
			"AddDestination fwm 16 ipv4 198.51.100.9:0", "DelDestination fwm 16 ipv4 198.51.100.1:0", "UpdateDestination fwm 16 ipv4 198.51.100.3:0",
		}},
		{"nothing", func(*lvsctlv1.Cluster) {}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustClean(t, desired(wms(), web()), active)
			edited := wms()
			tt.edit(edited)
			got := e.mustClean(t, desired(edited, web()), active)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("ops = %q, want %q", got, want)
			}
			// The edited kernel equals one built from scratch with the edited cluster.
			fresh := newEnv(t)
			fresh.mustClean(t, desired(edited, web()), active)
			if e.dump() != fresh.dump() {
				t.Errorf("edited kernel:\n%s\ndiffers from one built from scratch:\n%s", e.dump(), fresh.dump())
			}
			if ops := e.mustClean(t, desired(edited, web()), active); len(ops) != 0 {
				t.Errorf("Apply after the edit made %q", ops)
			}
		})
	}
}

func TestRemoveCluster(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms(), web()), active)
	got := e.mustClean(t, desired(web()), active)
	want := []string{"DelAddress 192.0.2.10/32 dev eth0", "DelService fwm 16 ipv4", "SetMarkRules"}
	if !slices.Equal(got, want) {
		t.Errorf("ops = %q, want %q", got, want)
	}
	if e.st.OwnsService(dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}) {
		t.Error("the deleted service is still recorded as owned")
	}
	fresh := newEnv(t)
	fresh.mustClean(t, desired(web()), active)
	if e.dump() != fresh.dump() {
		t.Errorf("kernel after removal:\n%s\nwant\n%s", e.dump(), fresh.dump())
	}
	// An empty desired state removes everything the agent owns, and forgets it.
	e.mustClean(t, desired(), active)
	if d := e.dump(); d != "ipvs:\nrules:\naddresses:\n" {
		t.Errorf("kernel after removing every cluster:\n%s", d)
	}
	if len(e.st.OwnedServices()) != 0 || len(e.st.OwnedAddresses()) != 0 {
		t.Errorf("state still owns %v %v", e.st.OwnedServices(), e.st.OwnedAddresses())
	}
}

// TestForeignObjectsUntouched pre-populates the kernel with objects someone else made (kube-proxy,
// an operator), one of them on the fwmark a desired cluster wants.
func TestForeignObjectsUntouched(t *testing.T) {
	e := newEnv(t)
	handSame := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "rr", NetmaskBits: 32}
	handOther := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 99}, Scheduler: "lc", NetmaskBits: 32}
	realAddr := netip.MustParseAddr("198.51.100.50")
	for _, err := range []error{
		e.ipvs.AddService(handSame),
		e.ipvs.AddDestination(handSame, dataplane.Destination{Address: realAddr, Weight: 3, Forward: dataplane.ForwardRoute}),
		e.ipvs.AddService(handOther),
		e.ipvs.AddDestination(handOther, dataplane.Destination{Address: realAddr, Weight: 1, Forward: dataplane.ForwardMasq}),
		// The web cluster's VIP, already on the interface with another prefix.
		e.addrs.AddAddress("eth0", netip.MustParsePrefix("192.0.2.20/24")),
		e.addrs.AddAddress("eth0", netip.MustParsePrefix("203.0.113.5/24")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	handMade := e.dump()

	res, _ := e.apply(t, desired(wms(), web()), active)
	if len(res.ClusterErrors) != 1 || res.ClusterErrors[0].GetCluster() != "wms" ||
		res.ClusterErrors[0].GetMessage() != "fwmark 16 ipv4 is used by an IPVS service lvsctl does not own" {
		t.Errorf("cluster errors = %v, want one for wms about fwmark 16", res.ClusterErrors)
	}
	if len(res.DirectorErrors) != 0 {
		t.Errorf("director errors = %v", res.DirectorErrors)
	}
	want := `ipvs:
fwm 16 ipv4 rr timeout 0 netmask /32
fwm 16 ipv4 -> 198.51.100.50:0 route weight 3
fwm 17 ipv4 rr timeout 0 netmask /32
fwm 17 ipv4 -> 198.51.100.11:0 route weight 1
fwm 17 ipv4 -> 198.51.100.12:0 route weight 1
fwm 99 ipv4 lc timeout 0 netmask /32
fwm 99 ipv4 -> 198.51.100.50:0 masq weight 1
rules:
192.0.2.20 tcp dport 80 mark 17
192.0.2.20 tcp dport 443 mark 17
addresses:
eth0 192.0.2.20/24
eth0 203.0.113.5/24
`
	if got := e.dump(); got != want {
		t.Errorf("kernel =\n%s\nwant\n%s", got, want)
	}
	for _, a := range e.st.OwnedAddresses() {
		t.Errorf("claimed an address it did not add: %s", a)
	}
	if e.st.OwnsService(handSame.ServiceKey) || e.st.OwnsService(handOther.ServiceKey) {
		t.Errorf("adopted a hand-made service: %v", e.st.OwnedServices())
	}

	// Going STANDBY, then removing every cluster, leaves exactly the hand-made objects.
	e.apply(t, desired(wms(), web()), standby)
	e.mustClean(t, desired(), active)
	if got := e.dump(); got != handMade {
		t.Errorf("after removing every cluster the kernel is\n%s\nwant the hand-made objects only\n%s", got, handMade)
	}
}

func TestFailureIsReportedAndRepaired(t *testing.T) {
	boom := errors.New("injected")
	tests := []struct {
		name    string
		inject  func(e *env)
		cluster string // the cluster whose error is expected; "" for a director error
		// kernel changes that fail and are redone by the next Apply
		repairs []string
	}{
		{"add destination", func(e *env) {
			e.ipvs.FailWhen(func(o fake.Op) error {
				if o.Name == "AddDestination" && o.Dest.Addr() == netip.MustParseAddr("198.51.100.1") {
					return boom
				}
				return nil
			})
		}, "wms",
			[]string{"AddDestination fwm 16 ipv4 198.51.100.1:0"}},
		{"add service", func(e *env) {
			e.ipvs.FailWhen(func(o fake.Op) error {
				if o.Name == "AddService" && o.Service.FWMark == 16 {
					return boom
				}
				return nil
			})
		}, "wms", []string{
			"AddAddress 192.0.2.10/32 dev eth0", "AddService fwm 16 ipv4",
			"AddDestination fwm 16 ipv4 198.51.100.1:0", "AddDestination fwm 16 ipv4 198.51.100.2:0", "AddDestination fwm 16 ipv4 198.51.100.3:0",
		}},
		{"unknown scheduler", func(e *env) { e.ipvs.SetSchedulers("rr") }, "wms", []string{
			"AddAddress 192.0.2.10/32 dev eth0", "AddService fwm 16 ipv4",
			"AddDestination fwm 16 ipv4 198.51.100.1:0", "AddDestination fwm 16 ipv4 198.51.100.2:0", "AddDestination fwm 16 ipv4 198.51.100.3:0",
		}},
		{"mark rules", func(e *env) { e.fw.FailNext("SetMarkRules", boom) }, "", []string{"SetMarkRules"}},
		{"add address", func(e *env) {
			e.addrs.FailWhen(func(o fake.Op) error {
				if o.Name == "AddAddress" && o.Prefix.Addr() == netip.MustParseAddr("192.0.2.10") {
					return boom
				}
				return nil
			})
		}, "", []string{"AddAddress 192.0.2.10/32 dev eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.inject(e)
			res, _ := e.apply(t, desired(wms(), web()), active)
			switch {
			case tt.cluster != "":
				if len(res.ClusterErrors) != 1 || res.ClusterErrors[0].GetCluster() != tt.cluster || len(res.DirectorErrors) != 0 {
					t.Errorf("errors: cluster %v director %q; want one for %s", res.ClusterErrors, res.DirectorErrors, tt.cluster)
				}
			default:
				if len(res.DirectorErrors) != 1 || len(res.ClusterErrors) != 0 {
					t.Errorf("errors: cluster %v director %q; want one director error", res.ClusterErrors, res.DirectorErrors)
				}
			}
			// Everything else was applied: the web cluster is complete.
			for _, want := range []string{"fwm 17 ipv4 -> 198.51.100.12:0 route weight 1"} {
				if !strings.Contains(e.ipvs.Dump(), want) {
					t.Errorf("kernel lacks %q:\n%s", want, e.dump())
				}
			}
			if !strings.Contains(e.addrs.Dump(), "eth0 192.0.2.20/32") {
				t.Errorf("web's VIP was not added:\n%s", e.addrs.Dump())
			}

			e.ipvs.FailWhen(nil)
			e.addrs.FailWhen(nil)
			e.ipvs.SetSchedulers("wlc", "rr")
			got := e.mustClean(t, desired(wms(), web()), active)
			if want := slices.Sorted(slices.Values(tt.repairs)); !slices.Equal(got, want) {
				t.Errorf("repair ops = %q, want %q", got, want)
			}
			fresh := newEnv(t)
			fresh.mustClean(t, desired(wms(), web()), active)
			if e.dump() != fresh.dump() {
				t.Errorf("repaired kernel:\n%s\nwant\n%s", e.dump(), fresh.dump())
			}
		})
	}
}

func TestUnknownSchedulerErrorWrapsENOENT(t *testing.T) {
	// The fake says what the kernel says; the message names the operation and the service.
	e := newEnv(t)
	c := wms()
	c.Scheduler = "nope"
	res, _ := e.apply(t, desired(c), active)
	if len(res.ClusterErrors) != 1 {
		t.Fatalf("cluster errors = %v", res.ClusterErrors)
	}
	msg := res.ClusterErrors[0].GetMessage()
	if want := fmt.Sprintf("add service fwm 16 ipv4: add service fwm 16 ipv4: scheduler \"nope\" not found: %v", syscall.ENOENT); msg != want {
		t.Errorf("message = %q, want %q", msg, want)
	}
	if e.st.OwnsService(dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}) {
		t.Error("a service that could not be created is recorded as owned")
	}
	if e.addrs.Dump() != "" {
		t.Errorf("a VIP was added for a cluster without a service: %s", e.addrs.Dump())
	}
}

func TestIPVSUnavailable(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(web()), active)
	e.ipvs.FailWhen(func(o fake.Op) error {
		if o.Name == "Stats" {
			return fmt.Errorf("ip_vs module not loaded (modprobe ip_vs): %w", dataplane.ErrUnavailable)
		}
		return nil
	})
	res, ops := e.apply(t, desired(wms(), web()), active)
	if len(res.DirectorErrors) != 1 || !strings.Contains(res.DirectorErrors[0], "read IPVS services") {
		t.Errorf("director errors = %q, want one about IPVS", res.DirectorErrors)
	}
	// The VIP it held is released, none is added; the mark rules are still kept up to date.
	if want := []string{"DelAddress 192.0.2.20/32 dev eth0", "SetMarkRules"}; !slices.Equal(ops, want) {
		t.Errorf("ops = %q, want %q", ops, want)
	}
	if e.addrs.Dump() != "" {
		t.Errorf("addresses while IPVS is unavailable: %s", e.addrs.Dump())
	}
	// Owned services are not forgotten because IPVS could not be read.
	if !e.st.OwnsService(dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 17}) {
		t.Error("an unreadable IPVS made the agent forget its services")
	}

	// A read error that is not ErrUnavailable leaves the addresses as they are.
	e.ipvs.FailWhen(nil)
	e.mustClean(t, desired(wms(), web()), active)
	before := e.addrs.Dump()
	e.ipvs.FailNext("Stats", errors.New("netlink: transient"))
	res, _ = e.apply(t, desired(web()), active)
	if len(res.DirectorErrors) != 1 {
		t.Errorf("director errors = %q", res.DirectorErrors)
	}
	if e.addrs.Dump() != before {
		t.Errorf("addresses changed on a transient IPVS error:\n%s\nwas\n%s", e.addrs.Dump(), before)
	}
}

func TestRoles(t *testing.T) {
	e := newEnv(t)
	if err := e.addrs.AddAddress("eth0", netip.MustParsePrefix("203.0.113.5/24")); err != nil {
		t.Fatal(err)
	}
	d := desired(wms(), web())
	d.Group.Gateway = &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}

	// ACTIVE in another group (the director moved, and the new group's role came first) is not
	// ACTIVE in this one.
	activeElsewhere := &lvsctlv1.RoleAssignment{Group: "edge-2", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 7}
	for _, role := range []*lvsctlv1.RoleAssignment{standby, nil, activeElsewhere} {
		e.mustClean(t, d, role)
		if got := e.addrs.Dump(); got != "eth0 203.0.113.5/24\n" {
			t.Errorf("role %v holds addresses:\n%s", role.GetRole(), got)
		}
		if !strings.Contains(e.ipvs.Dump(), "fwm 16 ipv4 wlc") || e.fw.Dump() == "" {
			t.Errorf("role %v lacks the IPVS and nftables state:\n%s", role.GetRole(), e.dump())
		}
	}

	got := e.mustClean(t, d, active)
	want := []string{"AddAddress 192.0.2.10/32 dev eth0", "AddAddress 192.0.2.20/32 dev eth0", "AddAddress 198.51.100.254/24 dev eth1"}
	if !slices.Equal(got, want) {
		t.Errorf("going ACTIVE: ops = %q, want %q", got, want)
	}

	got = e.mustClean(t, d, standby)
	want = []string{"DelAddress 192.0.2.10/32 dev eth0", "DelAddress 192.0.2.20/32 dev eth0", "DelAddress 198.51.100.254/24 dev eth1"}
	if !slices.Equal(got, want) {
		t.Errorf("going STANDBY: ops = %q, want %q", got, want)
	}
	if got := e.addrs.Dump(); got != "eth0 203.0.113.5/24\n" {
		t.Errorf("after going STANDBY the addresses are\n%s", got)
	}
	if len(e.st.OwnedAddresses()) != 0 {
		t.Errorf("state still owns %v", e.st.OwnedAddresses())
	}
}

func TestDriftRepair(t *testing.T) {
	tests := []struct {
		name  string
		drift func(t *testing.T, e *env)
		want  []string
	}{
		{"destination deleted", func(t *testing.T, e *env) {
			mustDo(t, e.ipvs.DelDestination(wmsKey(), dataplane.Destination{Address: netip.MustParseAddr("198.51.100.2")}))
		}, []string{"AddDestination fwm 16 ipv4 198.51.100.2:0"}},
		{"weight changed", func(t *testing.T, e *env) {
			mustDo(t, e.ipvs.UpdateDestination(wmsKey(), dataplane.Destination{Address: netip.MustParseAddr("198.51.100.3"), Weight: 1, Forward: dataplane.ForwardMasq}))
		}, []string{"UpdateDestination fwm 16 ipv4 198.51.100.3:0"}},
		{"foreign destination added", func(t *testing.T, e *env) {
			mustDo(t, e.ipvs.AddDestination(wmsKey(), dataplane.Destination{Address: netip.MustParseAddr("198.51.100.99"), Weight: 1, Forward: dataplane.ForwardMasq}))
		}, []string{"DelDestination fwm 16 ipv4 198.51.100.99:0"}},
		{"scheduler changed", func(t *testing.T, e *env) {
			s := wmsKey()
			s.Scheduler = "rr"
			mustDo(t, e.ipvs.UpdateService(s))
		}, []string{"UpdateService fwm 16 ipv4"}},
		{"service deleted", func(t *testing.T, e *env) { mustDo(t, e.ipvs.DelService(wmsKey())) }, []string{
			"AddService fwm 16 ipv4",
			"AddDestination fwm 16 ipv4 198.51.100.1:0", "AddDestination fwm 16 ipv4 198.51.100.2:0", "AddDestination fwm 16 ipv4 198.51.100.3:0",
		}},
		{"rules flushed", func(t *testing.T, e *env) {
			_, err := e.fw.SetMarkRules(nil)
			mustDo(t, err)
		}, []string{"SetMarkRules"}},
		{"VIP deleted", func(t *testing.T, e *env) {
			mustDo(t, e.addrs.DelAddress("eth0", netip.MustParsePrefix("192.0.2.10/32")))
		}, []string{"AddAddress 192.0.2.10/32 dev eth0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustClean(t, desired(wms(), web()), active)
			good := e.dump()
			tt.drift(t, e)
			got := e.mustClean(t, desired(wms(), web()), active)
			if want := slices.Sorted(slices.Values(tt.want)); !slices.Equal(got, want) {
				t.Errorf("ops = %q, want %q", got, want)
			}
			if e.dump() != good {
				t.Errorf("kernel after repair:\n%s\nwant\n%s", e.dump(), good)
			}
		})
	}
}

func wmsKey() dataplane.Service {
	return dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 32}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrashAfterRecord is the state a crash leaves between recording a service and creating
// it, or after deleting it and before forgetting it: owned, but not in the kernel.
func TestOwnedButMissing(t *testing.T) {
	e := newEnv(t)
	k16 := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	k40 := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 40}
	gone := state.Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.99/32")}
	noLink := state.Address{Interface: "eth9", Prefix: netip.MustParsePrefix("192.0.2.98/32")}
	mustDo(t, e.st.Commit(state.Changes{RecordServices: []dataplane.ServiceKey{k16, k40}, RecordAddresses: []state.Address{gone, noLink}}))
	got := e.mustClean(t, desired(wms()), active)
	if !slices.Contains(got, "AddService fwm 16 ipv4") {
		t.Errorf("owned, desired and missing service not created: %q", got)
	}
	if want := []dataplane.ServiceKey{k16}; !slices.Equal(e.st.OwnedServices(), want) {
		t.Errorf("owned services = %v, want %v (the undesired missing one forgotten)", e.st.OwnedServices(), want)
	}
	if e.st.OwnsAddress(gone) || e.st.OwnsAddress(noLink) {
		t.Errorf("owned addresses that are gone were kept: %v", e.st.OwnedAddresses())
	}
}

// TestOutcomeUnknown: IPVS took a batch but its answer was lost, so every op is reported
// failed although the kernel made them. The services stay owned, and the next reconcile
// finds them as its own and finishes cleanly, in the full and the delta path alike.
func TestOutcomeUnknown(t *testing.T) {
	for _, by := range []string{"full", "delta"} {
		t.Run(by, func(t *testing.T) {
			e := newEnv(t)
			// Called directly: the result counts fewer operations than the kernel made.
			var r reconcile.Result
			if by == "full" {
				e.ipvs.LoseReplies(1)
				r = e.r.Apply(context.Background(), desired(wms()), active)
			} else {
				e.mustClean(t, desired(wms()), active)
				e.ipvs.LoseReplies(1)
				r = e.r.ApplyDelta(context.Background(), &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{web()}}, active)
			}
			res := reconcileResult{r.ClusterErrors, r.DirectorErrors}
			name := map[string]string{"full": "wms", "delta": "web"}[by]
			if !slices.Equal(res.clusterNames(), []string{name}) || !strings.Contains(res.clusters[0].GetMessage(), "outcome unknown") {
				t.Fatalf("cluster errors %v, want %s's outcome unknown", res.clusters, name)
			}
			if by == "full" {
				e.mustClean(t, desired(wms()), active)
			} else {
				w := web()
				w.Reals[0].Weight = 3
				if r, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{w}}, active); len(r.clusters)+len(r.director) != 0 {
					t.Fatalf("next delta: errors %v %q", r.clusters, r.director)
				}
				e.mustClean(t, desired(wms(), w), active)
			}
			fresh := newEnv(t)
			if by == "full" {
				fresh.mustClean(t, desired(wms()), active)
			} else {
				w := web()
				w.Reals[0].Weight = 3
				fresh.mustClean(t, desired(wms(), w), active)
			}
			if e.dump() != fresh.dump() {
				t.Errorf("kernel =\n%s\nwant\n%s", e.dump(), fresh.dump())
			}
		})
	}
}

func TestInvalidCluster(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *lvsctlv1.Cluster)
		field string
		// kept: when wms was applied before, its untranslatable update keeps it as it was (it
		// is still its own service); otherwise the update moves wms to a service it cannot have.
		kept bool
	}{
		{"bad VIP", func(c *lvsctlv1.Cluster) { c.Vips = []string{"192.0.2.300"} }, "vips[0]", true},
		{"no VIP", func(c *lvsctlv1.Cluster) { c.Vips = nil }, "vips", true},
		{"mixed families", func(c *lvsctlv1.Cluster) { c.Vips = append(c.Vips, "2001:db8::10") }, "vips[1]", true},
		{"no fwmark", func(c *lvsctlv1.Cluster) { c.Fwmark = 0 }, "fwmark", false},
		{"bad real", func(c *lvsctlv1.Cluster) { c.Reals[2].Address = "real-3" }, "reals[2].address", true},
		{"duplicate real", func(c *lvsctlv1.Cluster) { c.Reals[2].Address = c.Reals[0].Address }, "reals[2].address", true},
		{"real of another family", func(c *lvsctlv1.Cluster) { c.Reals[2].Address = "2001:db8:1::3" }, "reals[2].address: 2001:db8:1::3 is ipv6 but the vips are ipv4", true},
		{"no protocol", func(c *lvsctlv1.Cluster) { c.Ports[1].Protocol = lvsctlv1.Protocol_PROTOCOL_UNSPECIFIED }, "ports[1].protocol", true},
		{"unknown protocol (a newer controller)", func(c *lvsctlv1.Cluster) { c.Ports[1].Protocol = 99 }, "ports[1].protocol", true},
		{"inverted range", func(c *lvsctlv1.Cluster) { c.Ports[4].Last = 1000 }, "ports[4].last", true},
		{"port 0", func(c *lvsctlv1.Cluster) { c.Ports[0].First = 0 }, "ports[0].first", true},
		{"no forwarding", func(c *lvsctlv1.Cluster) { c.Forwarding = lvsctlv1.Forwarding_FORWARDING_UNSPECIFIED }, "forwarding", true},
		{"unknown forwarding (a newer controller)", func(c *lvsctlv1.Cluster) { c.Forwarding = 99 }, "forwarding", true},
		{"netmask too long", func(c *lvsctlv1.Cluster) { c.Persistence.NetmaskBits = 33 }, "persistence.netmask_bits", true},
		{"fwmark of another cluster", func(c *lvsctlv1.Cluster) { c.Fwmark = 17 }, "fwmark 17 ipv4 is also used by cluster \"web\"", false},
	}
	for _, tt := range tests {
		for _, appliedFirst := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/applied first %v", tt.name, appliedFirst), func(t *testing.T) {
				e := newEnv(t)
				if appliedFirst {
					e.mustClean(t, desired(wms(), web()), active)
				}
				c := wms()
				tt.edit(c)
				res, _ := e.apply(t, desired(c, web()), active)
				if len(res.ClusterErrors) != 1 || res.ClusterErrors[0].GetCluster() != "wms" ||
					!strings.Contains(res.ClusterErrors[0].GetMessage(), tt.field) {
					t.Errorf("cluster errors = %v, want one for wms naming %s", res.ClusterErrors, tt.field)
				}
				if len(res.DirectorErrors) != 0 {
					t.Errorf("director errors = %q", res.DirectorErrors)
				}
				fresh := newEnv(t)
				if appliedFirst && tt.kept {
					// The service, its destinations, its mark rules and its VIP: all as before.
					fresh.mustClean(t, desired(wms(), web()), active)
				} else {
					fresh.mustClean(t, desired(web()), active)
				}
				if e.dump() != fresh.dump() {
					t.Errorf("kernel:\n%s\nwant:\n%s", e.dump(), fresh.dump())
				}
				// A kept cluster is kept at every resync, not only once.
				res, ops := e.apply(t, desired(c, web()), active)
				if len(ops) != 0 || len(res.ClusterErrors) != 1 {
					t.Errorf("second Apply: ops %q, cluster errors %v; want none and one", ops, res.ClusterErrors)
				}
			})
		}
	}
}

// TestKeptClusterRulesUnreadable: when the mark rules of a cluster that must be kept cannot be
// read, neither they nor the VIPs are changed (that would drop the kept cluster's).
func TestKeptClusterRulesUnreadable(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms(), web()), active)
	rulesBefore, addrsBefore := e.fw.Dump(), e.addrs.Dump()
	e.fw.FailNext("MarkRules", errors.New("injected"))
	c := wms()
	c.Forwarding = 99
	res, ops := e.apply(t, desired(c), active)
	if len(res.DirectorErrors) != 1 || !strings.Contains(res.DirectorErrors[0], "read mark rules") {
		t.Errorf("director errors = %q, want one about reading the mark rules", res.DirectorErrors)
	}
	if slices.Contains(ops, "SetMarkRules") {
		t.Errorf("ops = %q: the mark rules were replaced without being read", ops)
	}
	// web's service is removed and wms's kept; the rules and the VIPs (which a kept cluster's
	// rules tell) stay as they were.
	wmsOnly := newEnv(t)
	wmsOnly.mustClean(t, desired(wms()), active)
	if e.ipvs.Dump() != wmsOnly.ipvs.Dump() || e.fw.Dump() != rulesBefore || e.addrs.Dump() != addrsBefore {
		t.Errorf("kernel:\n%s\nwant wms's service, and these rules and addresses as they were:\n%s%s", e.dump(), rulesBefore, addrsBefore)
	}
}

func TestIPv6Cluster(t *testing.T) {
	e := newEnv(t)
	c := web()
	c.Vips = []string{"2001:db8::20"}
	c.Reals = []*lvsctlv1.RealServer{{Address: "2001:db8:1::11", Weight: 5}}
	c.Persistence = &lvsctlv1.Persistence{TimeoutSeconds: 30, NetmaskBits: 64}
	e.mustClean(t, desired(c), active)
	want := `ipvs:
fwm 17 ipv6 rr timeout 30 netmask /64
fwm 17 ipv6 -> [2001:db8:1::11]:0 route weight 5
rules:
2001:db8::20 tcp dport 80 mark 17
2001:db8::20 tcp dport 443 mark 17
addresses:
eth0 2001:db8::20/128
`
	if got := e.dump(); got != want {
		t.Errorf("kernel =\n%s\nwant\n%s", got, want)
	}
}

func TestCanceledContext(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := e.r.Apply(ctx, desired(wms()), active)
	if len(res.DirectorErrors) != 1 || !strings.Contains(res.DirectorErrors[0], context.Canceled.Error()) {
		t.Errorf("director errors = %q, want one saying the context was canceled", res.DirectorErrors)
	}
	if res.Operations != 0 || e.dump() != "ipvs:\nrules:\naddresses:\n" {
		t.Errorf("a canceled Apply changed the kernel (%d ops):\n%s", res.Operations, e.dump())
	}
}

func TestDesiredIsNotModified(t *testing.T) {
	e := newEnv(t)
	d := desired(web(), wms())
	before := proto.Clone(d)
	e.mustClean(t, d, active)
	if !proto.Equal(d, before) {
		t.Error("Apply modified the desired state it was given")
	}
}

// TestCanceledMidway cancels the context from inside a kernel call: the Apply stops, reports
// once, and the next Apply finishes the work.
func TestCanceledMidway(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.ipvs.FailWhen(func(o fake.Op) error {
		if o.Name == "AddService" {
			cancel()
		}
		return nil
	})
	res := e.r.Apply(ctx, desired(wms(), web()), active)
	if len(res.DirectorErrors) != 1 {
		t.Errorf("director errors = %q, want exactly one", res.DirectorErrors)
	}
	if e.addrs.Dump() != "" {
		t.Errorf("an interrupted Apply added addresses: %s", e.addrs.Dump())
	}
	e.ipvs.FailWhen(nil)
	e.mustClean(t, desired(wms(), web()), active)
	fresh := newEnv(t)
	fresh.mustClean(t, desired(wms(), web()), active)
	if e.dump() != fresh.dump() {
		t.Errorf("kernel after an interrupted then a full Apply:\n%s\nwant\n%s", e.dump(), fresh.dump())
	}
}

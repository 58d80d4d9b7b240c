package reconcile_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The plain-service clusters of issue 12: a TCP service with port mapping and thresholds, a
// UDP one with one-packet scheduling, an IPv6 one and an mh one with mh-port.

func httpPlain() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "http", DirectorGroup: "edge-1", Scheduler: "wlc",
		Service:    &lvsctlv1.VirtualService{Address: "192.0.2.30", Protocol: tcp, Port: 80},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Reals: []*lvsctlv1.RealServer{
			{Address: "198.51.100.21", Weight: 1, Port: 8080, UpperThreshold: 500, LowerThreshold: 400},
			{Address: "198.51.100.22", Weight: 1, Port: 8080},
		},
	}
}

func dnsPlain() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "dns", DirectorGroup: "edge-1", Scheduler: "rr", Ops: true,
		Service:    &lvsctlv1.VirtualService{Address: "192.0.2.30", Protocol: udp, Port: 53},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.21", Weight: 1}, {Address: "198.51.100.22", Weight: 1}},
	}
}

func v6Plain() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "v6", DirectorGroup: "edge-1", Scheduler: "rr",
		Service:    &lvsctlv1.VirtualService{Address: "2001:db8::30", Protocol: tcp, Port: 80},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Reals:      []*lvsctlv1.RealServer{{Address: "2001:db8:1::21", Weight: 1, Port: 8080}},
	}
}

func mhPlain() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "mh", DirectorGroup: "edge-1", Scheduler: "mh",
		SchedulerFlags: []lvsctlv1.SchedulerFlag{lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT},
		Service:        &lvsctlv1.VirtualService{Address: "192.0.2.31", Protocol: tcp, Port: 443},
		Forwarding:     lvsctlv1.Forwarding_FORWARDING_ROUTE,
		Reals:          []*lvsctlv1.RealServer{{Address: "198.51.100.21", Weight: 1}, {Address: "198.51.100.22", Weight: 1}},
	}
}

// TestPlainServices: each plain cluster is one IPVS service with its key, no mark rule, and its
// address held as a VIP (once for two services on it); the reals get their ports (the
// service's when they name none) and thresholds; ownership is recorded by the whole key.
func TestPlainServices(t *testing.T) {
	e := newEnv(t)
	ops := e.mustClean(t, desired(wms(), httpPlain(), dnsPlain(), v6Plain(), mhPlain()), active)
	for _, want := range []string{
		"AddService tcp 192.0.2.30:80", "AddService udp 192.0.2.30:53", "AddService tcp [2001:db8::30]:80", "AddService tcp 192.0.2.31:443",
		"AddDestination tcp 192.0.2.30:80 198.51.100.21:8080", "AddDestination udp 192.0.2.30:53 198.51.100.21:53",
		"AddAddress 192.0.2.30/32 dev eth0", "AddAddress 2001:db8::30/128 dev eth0", "AddAddress 192.0.2.31/32 dev eth0",
	} {
		if !slices.Contains(ops, want) {
			t.Errorf("ops lack %q:\n%s", want, strings.Join(ops, "\n"))
		}
	}
	want := `ipvs:
fwm 16 ipv4 wlc timeout 600 netmask /32
fwm 16 ipv4 -> 198.51.100.1:0 masq weight 100
fwm 16 ipv4 -> 198.51.100.2:0 masq weight 100
fwm 16 ipv4 -> 198.51.100.3:0 masq weight 100
tcp 192.0.2.30:80 wlc timeout 0 netmask /32
tcp 192.0.2.30:80 -> 198.51.100.21:8080 masq weight 1 thresholds 400-500
tcp 192.0.2.30:80 -> 198.51.100.22:8080 masq weight 1
udp 192.0.2.30:53 rr timeout 0 netmask /32 flags 0x4
udp 192.0.2.30:53 -> 198.51.100.21:53 route weight 1
udp 192.0.2.30:53 -> 198.51.100.22:53 route weight 1
tcp 192.0.2.31:443 mh timeout 0 netmask /32 flags 0x10
tcp 192.0.2.31:443 -> 198.51.100.21:443 route weight 1
tcp 192.0.2.31:443 -> 198.51.100.22:443 route weight 1
tcp [2001:db8::30]:80 rr timeout 0 netmask /128
tcp [2001:db8::30]:80 -> [2001:db8:1::21]:8080 masq weight 1
rules:
192.0.2.10 tcp dport 554 mark 16
192.0.2.10 tcp dport 1755 mark 16
192.0.2.10 udp dport 554 mark 16
192.0.2.10 udp dport 1024-5000 mark 16
192.0.2.10 udp dport 1755 mark 16
addresses:
eth0 192.0.2.10/32
eth0 192.0.2.30/32
eth0 192.0.2.31/32
eth0 2001:db8::30/128
`
	if got := e.dump(); got != want {
		t.Errorf("kernel =\n%s\nwant\n%s", got, want)
	}
	http := dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.30"), Port: 80}
	if !e.st.OwnsService(http) || !e.st.OwnsAddress(state.Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.30/32")}) {
		t.Errorf("owned: %v %v", e.st.OwnedServices(), e.st.OwnedAddresses())
	}

	// Restarted and applied again: nothing to do.
	e.restart(t)
	if ops := e.mustClean(t, desired(wms(), httpPlain(), dnsPlain(), v6Plain(), mhPlain()), active); len(ops) != 0 {
		t.Errorf("second apply after a restart: ops %q, want none", ops)
	}

	// One of the two services on 192.0.2.30 goes: its address stays for the other.
	if ops := e.mustClean(t, desired(wms(), httpPlain(), v6Plain(), mhPlain()), active); !slices.Equal(ops, []string{"DelService udp 192.0.2.30:53"}) {
		t.Errorf("deleting dns: ops %q, want only its service deleted", ops)
	}
	if e.st.OwnsService(dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.UDP, Address: netip.MustParseAddr("192.0.2.30"), Port: 53}) {
		t.Error("the deleted service is still owned")
	}
}

// TestPlainEditsInPlace: a changed flag, ops, scheduler or threshold is an edit of the
// service or destination (its connections stay), never a delete and add; so is a kernel that
// drifted from them. A real's new port is another destination (the kernel keys them by
// address and port).
func TestPlainEditsInPlace(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(httpPlain(), mhPlain()), active)

	mh := mhPlain()
	mh.SchedulerFlags = []lvsctlv1.SchedulerFlag{lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_FALLBACK, lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT}
	h := httpPlain()
	h.Reals[0].UpperThreshold, h.Reals[0].LowerThreshold = 50, 0
	ops := e.mustClean(t, desired(h, mh), active)
	if want := []string{"UpdateDestination tcp 192.0.2.30:80 198.51.100.21:8080", "UpdateService tcp 192.0.2.31:443"}; !slices.Equal(ops, want) {
		t.Errorf("edit: ops %q, want %q", ops, want)
	}
	if d := e.ipvs.Dump(); !strings.Contains(d, "tcp 192.0.2.31:443 mh timeout 0 netmask /32 flags 0x18\n") ||
		!strings.Contains(d, "198.51.100.21:8080 masq weight 1 thresholds 0-50\n") {
		t.Errorf("kernel after the edit:\n%s", d)
	}

	// Someone clears the flags and the threshold behind the agent's back: edited back.
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.31"), Port: 443}, Scheduler: "mh", NetmaskBits: 32}
	mustDo(t, e.ipvs.UpdateService(svc))
	httpSvc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.30"), Port: 80}, Scheduler: "wlc", NetmaskBits: 32}
	mustDo(t, e.ipvs.UpdateDestination(httpSvc, dataplane.Destination{Address: netip.MustParseAddr("198.51.100.21"), Port: 8080, Weight: 1, Forward: dataplane.ForwardMasq}))
	e.restart(t) // a fresh reconciler reads the kernel
	ops = e.mustClean(t, desired(h, mh), active)
	if want := []string{"UpdateDestination tcp 192.0.2.30:80 198.51.100.21:8080", "UpdateService tcp 192.0.2.31:443"}; !slices.Equal(ops, want) {
		t.Errorf("drift: ops %q, want %q", ops, want)
	}

	// A new real port: the old destination goes, the new one comes, the service stays. (A
	// new message: the reconciler takes a message it saw before as unchanged.)
	h = proto.Clone(h).(*lvsctlv1.Cluster)
	h.Reals[1].Port = 8081
	ops = e.mustClean(t, desired(h, mh), active)
	if want := []string{"AddDestination tcp 192.0.2.30:80 198.51.100.22:8081", "DelDestination tcp 192.0.2.30:80 198.51.100.22:8080"}; !slices.Equal(ops, want) {
		t.Errorf("new port: ops %q, want %q", ops, want)
	}
}

// TestPlainDeltaLikeFull: a plain cluster upserted and edited by deltas gives the kernel a
// full reconcile gives.
func TestPlainDeltaLikeFull(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms()), active)
	for _, c := range []*lvsctlv1.Cluster{httpPlain(), dnsPlain(), func() *lvsctlv1.Cluster { c := dnsPlain(); c.Ops = false; return c }()} {
		if r, _ := e.applyDelta(t, &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{c}}, active); len(r.clusters)+len(r.director) != 0 {
			t.Fatalf("delta upserting %s: errors %v %q", c.GetName(), r.clusters, r.director)
		}
	}
	fresh := newEnv(t)
	d := dnsPlain()
	d.Ops = false
	fresh.mustClean(t, desired(wms(), httpPlain(), d), active)
	if e.dump() != fresh.dump() {
		t.Errorf("kernel after deltas =\n%s\nwant\n%s", e.dump(), fresh.dump())
	}
}

// TestPlainHolding: a STANDBY holds a plain service's address like any VIP, and gives it back.
func TestPlainHolding(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(httpPlain(), v6Plain()), standby)
	if _, ops := e.holding(t, true); !slices.Equal(ops, []string{"AddAddress 192.0.2.30/32 dev eth0", "AddAddress 2001:db8::30/128 dev eth0"}) {
		t.Errorf("hold: ops %q", ops)
	}
	if _, ops := e.holding(t, false); !slices.Equal(ops, []string{"DelAddress 192.0.2.30/32 dev eth0", "DelAddress 2001:db8::30/128 dev eth0"}) {
		t.Errorf("release: ops %q", ops)
	}
}

// TestPlainForeign: a plain service that is in the kernel but not the agent's is reported and
// left alone, and its address is not taken.
func TestPlainForeign(t *testing.T) {
	e := newEnv(t)
	mustDo(t, e.ipvs.AddService(dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.30"), Port: 80}, Scheduler: "rr", NetmaskBits: 32}))
	before := e.ipvs.Dump()
	res, _ := e.apply(t, desired(httpPlain()), active)
	if len(res.ClusterErrors) != 1 || res.ClusterErrors[0].GetMessage() != "service tcp 192.0.2.30:80 is used by an IPVS service lvsctl does not own" {
		t.Errorf("cluster errors %v", res.ClusterErrors)
	}
	if e.ipvs.Dump() != before || e.addrs.Dump() != "" {
		t.Errorf("kernel changed:\n%s", e.dump())
	}
}

// TestInvalidPlainCluster: what a plain service cannot be is the cluster's error naming the
// field; a cluster applied before keeps its service and address as they are, unless the
// edit moved it to another service (another port), which it cannot have.
func TestInvalidPlainCluster(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(c *lvsctlv1.Cluster)
		field string
		moved bool
	}{
		{"a fwmark too", func(c *lvsctlv1.Cluster) { c.Fwmark = 20 }, "fwmark: 20 with service set", false},
		{"vips too", func(c *lvsctlv1.Cluster) { c.Vips = []string{"192.0.2.30"} }, "vips: set with service", false},
		{"ports too", func(c *lvsctlv1.Cluster) { c.Ports = []*lvsctlv1.PortRange{port(tcp, 80, 80)} }, "ports: set with service", false},
		{"port 0 without persistence", func(c *lvsctlv1.Cluster) { c.Service.Port = 0 }, "service.port: 0", true},
		{"port above 65535", func(c *lvsctlv1.Cluster) { c.Service.Port = 65536 }, "service.port", true},
		{"ops on tcp", func(c *lvsctlv1.Cluster) { c.Ops = true }, "ops:", false},
		{"sh flag on wlc", func(c *lvsctlv1.Cluster) {
			c.SchedulerFlags = []lvsctlv1.SchedulerFlag{lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT}
		}, `scheduler_flags[0]: sh-port is for the sh scheduler, not "wlc"`, false},
		{"unknown flag", func(c *lvsctlv1.Cluster) { c.SchedulerFlags = []lvsctlv1.SchedulerFlag{99} }, "scheduler_flags[0]", false},
		{"lower threshold above upper", func(c *lvsctlv1.Cluster) { c.Reals[0].LowerThreshold = 501 }, "reals[0].lower_threshold", false},
		{"real port above 65535", func(c *lvsctlv1.Cluster) { c.Reals[1].Port = 70000 }, "reals[1].port", false},
		{"port mapping by direct routing", func(c *lvsctlv1.Cluster) { c.Forwarding = lvsctlv1.Forwarding_FORWARDING_ROUTE }, "reals[0].port: 8080 differs from service.port 80", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustClean(t, desired(httpPlain(), wms()), active)
			before := e.dump()
			c := httpPlain()
			tt.edit(c)
			res, _ := e.apply(t, desired(c, wms()), active)
			if len(res.ClusterErrors) != 1 || res.ClusterErrors[0].GetCluster() != "http" || !strings.Contains(res.ClusterErrors[0].GetMessage(), tt.field) {
				t.Errorf("cluster errors = %v, want one for http naming %s", res.ClusterErrors, tt.field)
			}
			if tt.moved {
				fresh := newEnv(t)
				fresh.mustClean(t, desired(wms()), active)
				before = fresh.dump()
			}
			if e.dump() != before {
				t.Errorf("kernel:\n%s\nwant:\n%s", e.dump(), before)
			}
		})
	}
	// A firewall-mark cluster's real may not name a port: the client's is kept.
	e := newEnv(t)
	w := wms()
	w.Reals[0].Port = 80
	if res, _ := e.apply(t, desired(w), active); len(res.ClusterErrors) != 1 || !strings.Contains(res.ClusterErrors[0].GetMessage(), "reals[0].port: 80 on a firewall-mark service") {
		t.Errorf("cluster errors = %v", res.ClusterErrors)
	}
}

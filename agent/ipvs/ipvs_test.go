package ipvs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/netnstest"
)

// The reconciler's and the stats collector's views of IPVS, copied here because their
// packages may not exist yet; the assignments fail to compile if Kernel drifts from them.
var (
	_ interface {
		Services() ([]dataplane.Service, error)
		AddService(dataplane.Service) error
		UpdateService(dataplane.Service) error
		DelService(dataplane.Service) error
		Destinations(dataplane.Service) ([]dataplane.Destination, error)
		AddDestination(dataplane.Service, dataplane.Destination) error
		UpdateDestination(dataplane.Service, dataplane.Destination) error
		DelDestination(dataplane.Service, dataplane.Destination) error
	} = (*Kernel)(nil)
	_ interface {
		Stats() ([]dataplane.ServiceStats, error)
		StatsOf(func(dataplane.ServiceKey) bool) ([]dataplane.ServiceStats, error)
	} = (*Kernel)(nil)
)

// privileged: netnstest's (root and the ip command, or fail under LVSCTL_REQUIRE_PRIVILEGED=1).
func privileged(t *testing.T) {
	t.Helper()
	netnstest.Privileged(t)
}

// netnsPath creates a network namespace removed when the test ends and returns its path.
func netnsPath(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "lvsctl-ipvs-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	// With lo down the kernel refuses every IPv4 real server ("address not unicast").
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up in %s: %v: %s", name, err, out)
	}
	return "/run/netns/" + name
}

// kernelHasIPVS tells, independently of the code under test, whether IPVS is loaded: the
// module (or built-in code) shows in /sys/module, and the host namespace has /proc/net/ip_vs.
// requireIPVS: the test needs root and a kernel with IPVS (the VM lab's): it fails without
// them under LVSCTL_REQUIRE_PRIVILEGED=1 / LVSCTL_REQUIRE_IPVS=1, and is skipped otherwise.
func requireIPVS(t *testing.T) {
	t.Helper()
	privileged(t)
	if !kernelHasIPVS() {
		if os.Getenv("LVSCTL_REQUIRE_IPVS") == "1" {
			t.Fatal("IPVS is not loaded (LVSCTL_REQUIRE_IPVS=1): modprobe ip_vs ip_vs_wlc ip_vs_rr")
		}
		t.Skip("this kernel has no IPVS loaded; the VM lab runs this test")
	}
}

// newKernel opens IPVS in the network namespace at path, closed when the test ends.
func newKernel(t *testing.T, path string) *Kernel {
	t.Helper()
	k, err := New(WithNetNSPath(path))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func kernelHasIPVS() bool {
	for _, p := range []string{"/sys/module/ip_vs", "/proc/net/ip_vs"} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func TestNewWithoutIPVS(t *testing.T) {
	privileged(t)
	if kernelHasIPVS() {
		t.Skip("this kernel has IPVS; TestKernelRoundTrip covers it")
	}
	k, err := New(WithNetNSPath(netnsPath(t)))
	if err == nil {
		k.Close()
		t.Fatal("New succeeded on a kernel without IPVS")
	}
	if !errors.Is(err, dataplane.ErrUnavailable) {
		t.Errorf("New error %v does not wrap dataplane.ErrUnavailable", err)
	}
	for _, want := range []string{`generic netlink family "IPVS" not found`, `modprobe ip_vs`, "ip_vs_wlc"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("New error %q does not say %q", err, want)
		}
	}
}

func TestNewBadNamespace(t *testing.T) {
	_, err := New(WithNetNSPath("/nonexistent/netns"))
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("New with a missing namespace: %v, want an error naming the path and wrapping ErrNotExist", err)
	}
}

// TestKernelRoundTrip drives a real IPVS in a fresh namespace. This host has none; the VM lab
// runs it with LVSCTL_REQUIRE_IPVS=1, which turns the skip into a failure.
func TestKernelRoundTrip(t *testing.T) {
	requireIPVS(t)
	k := newKernel(t, netnsPath(t))

	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 32}
	if err := k.AddService(svc); err != nil {
		t.Fatalf("AddService: %v", err)
	}
	if err := k.AddService(svc); !errors.Is(err, dataplane.ErrExist) {
		t.Errorf("AddService twice: %v, want ErrExist", err)
	}
	if got, err := k.Services(); err != nil || !slices.Equal(got, []dataplane.Service{svc}) {
		t.Errorf("Services() = %v, %v; want [%v]", got, err, svc)
	}
	reals := []dataplane.Destination{
		{Address: netip.MustParseAddr("198.51.100.1"), Weight: 100, Forward: dataplane.ForwardMasq},
		{Address: netip.MustParseAddr("198.51.100.2"), Weight: 100, Forward: dataplane.ForwardRoute},
		{Address: netip.MustParseAddr("198.51.100.3"), Weight: 50, Forward: dataplane.ForwardTunnel},
	}
	for _, d := range reals {
		if err := k.AddDestination(svc, d); err != nil {
			t.Fatalf("AddDestination(%v): %v", d, err)
		}
	}
	if err := k.AddDestination(svc, reals[0]); !errors.Is(err, dataplane.ErrExist) {
		t.Errorf("AddDestination twice: %v, want ErrExist", err)
	}
	sortDests := func(ds []dataplane.Destination) []dataplane.Destination {
		slices.SortFunc(ds, func(a, b dataplane.Destination) int { return a.Address.Compare(b.Address) })
		return ds
	}
	if got, err := k.Destinations(svc); err != nil || !slices.Equal(sortDests(got), reals) {
		t.Errorf("Destinations() = %v, %v; want %v", got, err, reals)
	}

	// Edit in place: the service keeps its destinations.
	edited := svc
	edited.Scheduler, edited.Timeout, edited.NetmaskBits = "rr", 0, 24
	if err := k.UpdateService(edited); err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	if got, err := k.Services(); err != nil || !slices.Equal(got, []dataplane.Service{edited}) {
		t.Errorf("Services() after update = %v, %v; want [%v]", got, err, edited)
	}
	reweighted := reals[1]
	reweighted.Weight = 7
	if err := k.UpdateDestination(edited, reweighted); err != nil {
		t.Fatalf("UpdateDestination: %v", err)
	}
	want := []dataplane.Destination{reals[0], reweighted, reals[2]}
	if got, err := k.Destinations(edited); err != nil || !slices.Equal(sortDests(got), want) {
		t.Errorf("Destinations() after update = %v, %v; want %v", got, err, want)
	}

	stats, err := k.Stats()
	if err != nil || len(stats) != 1 || stats[0].Service != edited || len(stats[0].Destinations) != 3 {
		t.Errorf("Stats() = %+v, %v; want one service %v with 3 destinations", stats, err, edited)
	}

	if err := k.DelDestination(edited, reals[2]); err != nil {
		t.Fatalf("DelDestination: %v", err)
	}
	if err := k.DelDestination(edited, reals[2]); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("DelDestination twice: %v, want ErrNotExist", err)
	}
	if err := k.DelService(edited); err != nil {
		t.Fatalf("DelService: %v", err)
	}
	if err := k.DelService(edited); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("DelService twice: %v, want ErrNotExist", err)
	}
	if _, err := k.Destinations(edited); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("Destinations of a deleted service: %v, want ErrNotExist", err)
	}
	if err := k.AddDestination(edited, reals[0]); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("AddDestination to a deleted service: %v, want ErrNotExist", err)
	}
}

// TestKernelBatch drives Batch against a real IPVS (the VM lab): each refusal lands on its own
// op and the rest is made, and a cold start's worth of changes (1,000 services of 10 reals,
// several sends) reads back whole.
func TestKernelBatch(t *testing.T) {
	requireIPVS(t)
	k := newKernel(t, netnsPath(t))

	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 24}
	missing := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 17}, Scheduler: "rr", NetmaskBits: 32}
	real1 := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 100, Forward: dataplane.ForwardMasq}
	real2 := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.2"), Weight: 50, Forward: dataplane.ForwardRoute}
	reweighted := real2
	reweighted.Weight = 7
	edited := svc
	edited.Scheduler, edited.Timeout, edited.NetmaskBits = "rr", 0, 32
	ops := []dataplane.Op{
		{Kind: dataplane.AddService, Service: svc},
		{Kind: dataplane.AddDestination, Service: svc, Dest: real1},
		{Kind: dataplane.AddDestination, Service: svc, Dest: real2},
		{Kind: dataplane.AddService, Service: svc},                      // 3: exists
		{Kind: dataplane.AddDestination, Service: missing, Dest: real1}, // 4: no such service
		{Kind: dataplane.DelDestination, Service: svc, Dest: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.9"), Forward: dataplane.ForwardMasq}}, // 5: no such real
		{Kind: dataplane.UpdateDestination, Service: svc, Dest: reweighted},
		{Kind: dataplane.UpdateService, Service: edited},
	}
	errs := k.Batch(ops)
	for i, err := range errs {
		var want error
		switch i {
		case 3:
			want = dataplane.ErrExist
		case 4, 5:
			want = dataplane.ErrNotExist
		}
		if (want == nil && err != nil) || (want != nil && !errors.Is(err, want)) {
			t.Errorf("op %d (%s): %v, want %v", i, ops[i].Kind, err, want)
		}
	}
	if got, err := k.Services(); err != nil || !slices.Equal(got, []dataplane.Service{edited}) {
		t.Errorf("Services() = %v, %v; want [%v]", got, err, edited)
	}
	got, err := k.Destinations(edited)
	slices.SortFunc(got, func(a, b dataplane.Destination) int { return a.Address.Compare(b.Address) })
	if want := []dataplane.Destination{real1, reweighted}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Destinations() = %v, %v; want %v", got, err, want)
	}

	// A cold start: 1,000 services of 10 reals in one Batch, then all deleted in another.
	ops = ops[:0]
	var dels []dataplane.Op
	for i := range 1000 {
		s := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: uint32(1000 + i)}, Scheduler: "wlc", NetmaskBits: 32}
		ops = append(ops, dataplane.Op{Kind: dataplane.AddService, Service: s})
		for j := range 10 {
			d := dataplane.Destination{Address: netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + j)}), Weight: uint32(i%100 + 1), Forward: dataplane.ForwardMasq}
			ops = append(ops, dataplane.Op{Kind: dataplane.AddDestination, Service: s, Dest: d})
		}
		dels = append(dels, dataplane.Op{Kind: dataplane.DelService, Service: s})
	}
	for i, err := range k.Batch(ops) {
		if err != nil {
			t.Fatalf("cold start op %d (%s %s): %v", i, ops[i].Kind, ops[i].Service.ServiceKey, err)
		}
	}
	stats, err := k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	n, dests := 0, 0
	for _, s := range stats {
		if s.FWMark >= 1000 {
			n++
			dests += len(s.Destinations)
		}
	}
	if n != 1000 || dests != 10000 {
		t.Errorf("after the batch the kernel has %d services and %d reals, want 1000 and 10000", n, dests)
	}
	dels = append(dels, dataplane.Op{Kind: dataplane.DelService, Service: edited})
	for i, err := range k.Batch(dels) {
		if err != nil {
			t.Errorf("delete op %d: %v", i, err)
		}
	}
	if got, err := k.Services(); err != nil || len(got) != 0 {
		t.Errorf("Services() after deleting all = %v, %v; want none", got, err)
	}
}

// TestKernelPlainServices: plain services (protocol, address, port), IPv4 and IPv6, with
// scheduler flags, one-packet scheduling, destination ports and thresholds, made by the single
// calls and by Batch, read back as made; flags and thresholds edited in place.
func TestKernelPlainServices(t *testing.T) {
	requireIPVS(t)
	ns := netnsPath(t)
	k := newKernel(t, ns)

	http := dataplane.Service{
		ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80},
		Scheduler:  "rr", NetmaskBits: 32,
	}
	dns := dataplane.Service{
		ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: netip.MustParseAddr("2001:db8::53"), Port: 53},
		Scheduler:  "rr", NetmaskBits: 128, Flags: dataplane.FlagOnePacket,
	}
	fwm := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 80}, Scheduler: "rr", NetmaskBits: 32}
	if err := k.AddService(http); err != nil {
		t.Fatalf("AddService(%s): %v", http.ServiceKey, err)
	}
	mapped := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.5"), Port: 8080, Weight: 1, Forward: dataplane.ForwardMasq, UpperThreshold: 500, LowerThreshold: 400}
	if err := k.AddDestination(http, mapped); err != nil {
		t.Fatalf("AddDestination(%v): %v", mapped, err)
	}
	v6real := dataplane.Destination{Address: netip.MustParseAddr("2001:db8:1::5"), Port: 53, Weight: 1, Forward: dataplane.ForwardMasq}
	for i, err := range k.Batch([]dataplane.Op{
		{Kind: dataplane.AddService, Service: dns},
		{Kind: dataplane.AddDestination, Service: dns, Dest: v6real},
		{Kind: dataplane.AddService, Service: fwm}, // a mark beside plain services on the same numbers
	}) {
		if err != nil {
			t.Fatalf("Batch op %d: %v", i, err)
		}
	}
	got, err := k.Services()
	slices.SortFunc(got, func(a, b dataplane.Service) int { return a.ServiceKey.Compare(b.ServiceKey) })
	if want := []dataplane.Service{fwm, http, dns}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Services() = %v, %v; want %v", got, err, want)
	}
	if ds, err := k.Destinations(http); err != nil || !slices.Equal(ds, []dataplane.Destination{mapped}) {
		t.Errorf("Destinations(%s) = %v, %v; want [%v]", http.ServiceKey, ds, err, mapped)
	}
	if ds, err := k.Destinations(dns); err != nil || !slices.Equal(ds, []dataplane.Destination{v6real}) {
		t.Errorf("Destinations(%s) = %v, %v; want [%v]", dns.ServiceKey, ds, err, v6real)
	}

	// Edited in place: sh with both flags, one threshold cleared; then ops dropped by a batch.
	edited := http
	edited.Scheduler, edited.Flags = "sh", dataplane.FlagSched1|dataplane.FlagSched2
	if err := k.UpdateService(edited); err != nil {
		t.Fatalf("UpdateService: %v", err)
	}
	mapped.LowerThreshold = 0
	if err := k.UpdateDestination(edited, mapped); err != nil {
		t.Fatalf("UpdateDestination: %v", err)
	}
	noOps := dns
	noOps.Flags = 0
	if errs := k.Batch([]dataplane.Op{{Kind: dataplane.UpdateService, Service: noOps}}); errs[0] != nil {
		t.Fatalf("Batch update: %v", errs[0])
	}
	stats, err := k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(stats, func(a, b dataplane.ServiceStats) int { return a.ServiceKey.Compare(b.ServiceKey) })
	if len(stats) != 3 || stats[1].Service != edited || stats[2].Service != noOps ||
		len(stats[1].Destinations) != 1 || stats[1].Destinations[0].Destination != mapped {
		t.Errorf("Stats() after the edits = %+v; want %v with %v, and %v", stats, edited, mapped, noOps)
	}
	// What ipvsadm, the operator's tool, reads back from the same kernel.
	if out, err := exec.Command("ip", "netns", "exec", strings.TrimPrefix(ns, "/run/netns/"), "ipvsadm", "-Sn").CombinedOutput(); err == nil {
		t.Logf("ipvsadm -Sn:\n%s", out)
	}
	for _, s := range []dataplane.Service{edited, noOps, fwm} {
		if err := k.DelService(s); err != nil {
			t.Errorf("DelService(%s): %v", s.ServiceKey, err)
		}
	}
}

// TestKernelTunnel: tunnelled destinations of each type (ipip, gue with port and checksum,
// gre), made by the single call and by Batch, read back as made, edited in place from one type
// to another; what ipvsadm shows of them is logged.
func TestKernelTunnel(t *testing.T) {
	requireIPVS(t)
	ns := netnsPath(t)
	k := newKernel(t, ns)
	if k.release.before(release{5, 8}) {
		t.Skipf("kernel %d.%d predates gre tunnels (5.8)", k.release.major, k.release.minor)
	}

	svc := dataplane.Service{
		ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.40"), Port: 80},
		Scheduler:  "rr", NetmaskBits: 32,
	}
	tunnelled := func(last byte, tn dataplane.Tunnel) dataplane.Destination {
		return dataplane.Destination{Address: netip.AddrFrom4([4]byte{198, 51, 100, last}), Port: 80, Weight: 1, Forward: dataplane.ForwardTunnel, Tunnel: tn}
	}
	ipip := tunnelled(1, dataplane.Tunnel{})
	gue := tunnelled(2, dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 6080, Flags: dataplane.TunnelRemCsum})
	gre := tunnelled(3, dataplane.Tunnel{Type: dataplane.TunnelGRE, Flags: dataplane.TunnelCsum})
	if err := k.AddService(svc); err != nil {
		t.Fatalf("AddService: %v", err)
	}
	if err := k.AddDestination(svc, gue); err != nil {
		t.Fatalf("AddDestination(%v): %v", gue, err)
	}
	for i, err := range k.Batch([]dataplane.Op{
		{Kind: dataplane.AddDestination, Service: svc, Dest: ipip},
		{Kind: dataplane.AddDestination, Service: svc, Dest: gre},
	}) {
		if err != nil {
			t.Fatalf("Batch op %d: %v", i, err)
		}
	}
	sortDests := func(ds []dataplane.Destination) []dataplane.Destination {
		slices.SortFunc(ds, func(a, b dataplane.Destination) int { return a.Address.Compare(b.Address) })
		return ds
	}
	if ds, err := k.Destinations(svc); err != nil || !slices.Equal(sortDests(ds), []dataplane.Destination{ipip, gue, gre}) {
		t.Errorf("Destinations = %v, %v; want %v", ds, err, []dataplane.Destination{ipip, gue, gre})
	}
	if out, err := exec.Command("ip", "netns", "exec", strings.TrimPrefix(ns, "/run/netns/"), "ipvsadm", "-Sn").CombinedOutput(); err == nil {
		t.Logf("ipvsadm -Sn:\n%s", out)
	}

	// Edited in place: gue to ipip (what a hand edit does), gre to gue by a batch.
	gueNow := gue
	gueNow.Tunnel = dataplane.Tunnel{}
	if err := k.UpdateDestination(svc, gueNow); err != nil {
		t.Fatalf("UpdateDestination: %v", err)
	}
	greNow := gre
	greNow.Tunnel = dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 5555}
	if errs := k.Batch([]dataplane.Op{{Kind: dataplane.UpdateDestination, Service: svc, Dest: greNow}}); errs[0] != nil {
		t.Fatalf("Batch update: %v", errs[0])
	}
	if ds, err := k.Destinations(svc); err != nil || !slices.Equal(sortDests(ds), []dataplane.Destination{ipip, gueNow, greNow}) {
		t.Errorf("Destinations after the edits = %v, %v; want %v", ds, err, []dataplane.Destination{ipip, gueNow, greNow})
	}
	if err := k.DelService(svc); err != nil {
		t.Errorf("DelService: %v", err)
	}
}

package validate_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// wmsYAML is the seed's WMS cluster and its group, read from the example every operator sees.
func wmsYAML(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/examples/wms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// edit applies old->new replacements to the WMS manifest; each old text must occur.
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	s := wmsYAML(t)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("test bug: %q not in the WMS manifest", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

// check runs what lvsctl runs: parse, then Object on each object, then Set; and holds the
// controller's Written to the same answers (crossCheck).
func check(t *testing.T, text string) error {
	t.Helper()
	objs, err := manifest.Parse([]byte(text))
	if err != nil {
		return err
	}
	crossCheck(t, objs)
	var errs []error
	for _, o := range objs {
		errs = append(errs, validate.Object(o))
	}
	errs = append(errs, validate.Set(objs))
	return errors.Join(errs...)
}

const group2 = `
---
kind: DirectorGroup
name: edge-2
directors: [{name: dir-c, priority: 100}]
vipInterface: eth0
`

const rtsp = `
---
kind: Cluster
name: rtsp
directorGroup: edge-1
vips: [192.0.2.10]
ports: [{protocol: tcp, port: 8554}]
reals: [{address: 198.51.100.9}]
`

func TestBadManifests(t *testing.T) {
	const wmsReal0 = "  - {address: 198.51.100.1, weight: 100}"
	const wmsReal1 = "  - {address: 198.51.100.2, weight: 100}"
	const wmsPort0 = "  - {protocol: tcp, port: 554}"
	const wmsPort1 = "  - {protocol: udp, port: 554}"
	const wmsRange = "  - {protocol: udp, ports: 1024-5000}"
	const wmsDirs = "directors: [{name: dir-a, priority: 200}]"
	tests := []struct {
		name string
		text func(t *testing.T) string
		want string // one full line of the error
	}{
		{"reversed range", func(t *testing.T) string { return edit(t, wmsRange, "  - {protocol: udp, ports: 5000-1024}") },
			`cluster "wms": ports[4].ports: range 5000-1024 is reversed`},
		{"port 0", func(t *testing.T) string { return edit(t, wmsPort0, "  - {protocol: tcp, port: 0}") },
			`cluster "wms": ports[0].port: 0 is out of range 1-65535`},
		{"port too big", func(t *testing.T) string { return edit(t, wmsPort0, "  - {protocol: tcp, port: 70000}") },
			`cluster "wms": ports[0].port: 70000 is out of range 1-65535`},
		{"range too big", func(t *testing.T) string { return edit(t, wmsRange, "  - {protocol: udp, ports: 60000-70000}") },
			`cluster "wms": ports[4].ports: 60000-70000 is out of range 1-65535`},
		{"negative port", func(t *testing.T) string { return edit(t, wmsPort0, "  - {protocol: tcp, port: -5}") },
			`cluster "wms": ports[0].port: -5 is negative`},
		{"port as string", func(t *testing.T) string { return edit(t, wmsPort0, `  - {protocol: tcp, port: "554"}`) },
			`cluster "wms": ports[0].port: must be a number, not the string "554"`},
		{"bad range text", func(t *testing.T) string { return edit(t, wmsRange, "  - {protocol: udp, ports: 1024..5000}") },
			`cluster "wms": ports[4].ports: must be a port range like 1024-5000, not the string "1024..5000"`},
		{"unknown protocol", func(t *testing.T) string { return edit(t, wmsPort0, "  - {protocol: icmp, port: 554}") },
			`cluster "wms": ports[0].protocol: unknown protocol "icmp" (want tcp, udp or sctp)`},
		{"missing protocol", func(t *testing.T) string { return edit(t, wmsPort0, "  - {port: 554}") },
			`cluster "wms": ports[0].protocol: required (tcp, udp or sctp)`},
		{"port and ports", func(t *testing.T) string { return edit(t, wmsPort0, "  - {protocol: tcp, port: 554, ports: 554-555}") },
			`cluster "wms": ports[0]: set port or ports, not both`},
		{"no port", func(t *testing.T) string { return edit(t, wmsPort0, "  - {protocol: tcp}") },
			`cluster "wms": ports[0]: port or ports is required`},
		{"duplicate port entry", func(t *testing.T) string { return edit(t, wmsPort1, "  - {protocol: tcp, port: 554}") },
			`cluster "wms": ports[1]: tcp 554 is listed twice (ports[0])`},
		{"no ports", func(t *testing.T) string {
			return edit(t, "ports:                        # all of these share one fwmark: one IPVS virtual service\n"+
				"  - {protocol: tcp, port: 554}\n  - {protocol: udp, port: 554}\n  - {protocol: tcp, port: 1755}\n"+
				"  - {protocol: udp, port: 1755}\n  - {protocol: udp, ports: 1024-5000}\n", "ports: []\n")
		}, `cluster "wms": ports: at least one port is required`},
		{"no vips", func(t *testing.T) string { return edit(t, "vips: [192.0.2.10]", "vips: []") },
			`cluster "wms": vips: at least one VIP is required`},
		{"vips not a list", func(t *testing.T) string { return edit(t, "vips: [192.0.2.10]", "vips: 192.0.2.10") },
			`cluster "wms": vips: must be a list, not the string "192.0.2.10"`},
		{"bad vip", func(t *testing.T) string { return edit(t, "vips: [192.0.2.10]", "vips: [192.0.2.300]") },
			`cluster "wms": vips[0]: "192.0.2.300" is not an IP address`},
		{"duplicate vip", func(t *testing.T) string { return edit(t, "vips: [192.0.2.10]", "vips: [192.0.2.10, 192.0.2.10]") },
			`cluster "wms": vips[1]: 192.0.2.10 is listed twice (vips[0])`},
		{"mixed vip families", func(t *testing.T) string { return edit(t, "vips: [192.0.2.10]", `vips: [192.0.2.10, "2001:db8::10"]`) },
			`cluster "wms": vips[1]: 2001:db8::10 is IPv6 but the cluster's first VIP is IPv4 (one IPVS service has one address family)`},
		{"multicast vip", func(t *testing.T) string { return edit(t, "vips: [192.0.2.10]", "vips: [224.0.0.1]") },
			`cluster "wms": vips[0]: 224.0.0.1 is a multicast address`},
		{"real of the other family", func(t *testing.T) string { return edit(t, wmsReal0, `  - {address: "2001:db8::1"}`) },
			`cluster "wms": reals[0].address: 2001:db8::1 is IPv6 but the VIPs are IPv4 (one IPVS service has one address family)`},
		{"duplicate real", func(t *testing.T) string { return edit(t, wmsReal1, wmsReal0) },
			`cluster "wms": reals[1].address: 198.51.100.1 is listed twice (reals[0])`},
		{"real is the vip", func(t *testing.T) string { return edit(t, wmsReal0, "  - {address: 192.0.2.10}") },
			`cluster "wms": reals[0].address: 192.0.2.10 is the cluster's VIP (vips[0])`},
		{"real without address", func(t *testing.T) string { return edit(t, wmsReal0, "  - {weight: 100}") },
			`cluster "wms": reals[0].address: required`},
		{"weight too big", func(t *testing.T) string { return edit(t, wmsReal0, "  - {address: 198.51.100.1, weight: 70000}") },
			`cluster "wms": reals[0].weight: 70000 is more than 65535`},
		{"negative weight", func(t *testing.T) string { return edit(t, wmsReal0, "  - {address: 198.51.100.1, weight: -1}") },
			`cluster "wms": reals[0].weight: -1 is negative`},
		{"fractional weight", func(t *testing.T) string { return edit(t, wmsReal0, "  - {address: 198.51.100.1, weight: 1.5}") },
			`cluster "wms": reals[0].weight: 1.5 is not a plain decimal integer (it has a fraction or an exponent)`},
		{"unknown scheduler", func(t *testing.T) string { return edit(t, "scheduler: wlc", "scheduler: fastest") },
			`cluster "wms": scheduler: unknown scheduler "fastest" (want one of rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh twos)`},
		{"unknown forwarding", func(t *testing.T) string { return edit(t, "forwarding: masq", "forwarding: nat") },
			`cluster "wms": forwarding: unknown forwarding "nat" (want masq, route or tunnel)`},
		{"persistence too long", func(t *testing.T) string { return edit(t, "{timeout: 600s}", "{timeout: 745h}") },
			`cluster "wms": persistence.timeout: 2682000s is longer than 2678400s (31 days, ipvsadm's limit)`},
		{"persistence not a duration", func(t *testing.T) string { return edit(t, "{timeout: 600s}", "{timeout: ten minutes}") },
			`cluster "wms": persistence.timeout: "ten minutes" is not a duration (e.g. 600s or 10m)`},
		{"persistence fraction", func(t *testing.T) string { return edit(t, "{timeout: 600s}", "{timeout: 1.5s}") },
			`cluster "wms": persistence.timeout: 1.5s is not a whole number of seconds`},
		{"persistence zero", func(t *testing.T) string { return edit(t, "{timeout: 600s}", "{timeout: 0}") },
			`cluster "wms": persistence.timeout: 0s is less than 1s; leave persistence out for none`},
		{"persistence without timeout", func(t *testing.T) string { return edit(t, "{timeout: 600s}", "{netmask: 24}") },
			`cluster "wms": persistence.timeout: required (e.g. 600s); leave persistence out for none`},
		{"netmask too long", func(t *testing.T) string { return edit(t, "{timeout: 600s}", "{timeout: 600s, netmask: 33}") },
			`cluster "wms": persistence.netmask: /33 is longer than /32 for IPv4`},
		{"unknown field", func(t *testing.T) string { return edit(t, "scheduler: wlc", "scheduler: wlc\nschedular: rr") },
			`cluster "wms": schedular: unknown field`},
		{"unknown nested field", func(t *testing.T) string { return edit(t, wmsReal0, "  - {address: 198.51.100.1, wieght: 100}") },
			`cluster "wms": reals[0].wieght: unknown field`},
		{"name not a DNS label", func(t *testing.T) string { return edit(t, "name: wms", "name: WMS") },
			`cluster "WMS": name: "WMS" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`},
		{"name too long", func(t *testing.T) string { return edit(t, "name: wms", "name: "+strings.Repeat("w", 64)) },
			`cluster "` + strings.Repeat("w", 64) + `": name: "` + strings.Repeat("w", 64) + `" is longer than 63 characters`},
		{"no name", func(t *testing.T) string { return edit(t, "name: wms\n", "") },
			`document 1 (Cluster): name: required`},
		{"no name in the second document", func(t *testing.T) string { return edit(t, "name: edge-1\n", "") },
			`document 2 (DirectorGroup): name: required`},
		{"unknown kind", func(t *testing.T) string { return edit(t, "kind: Cluster", "kind: Service") },
			`document 1: kind: unknown kind "Service" (want Cluster or DirectorGroup)`},
		{"no kind", func(t *testing.T) string { return edit(t, "kind: Cluster\n", "") },
			`document 1: kind: required (Cluster or DirectorGroup)`},
		{"no director group", func(t *testing.T) string { return edit(t, "directorGroup: edge-1\n", "") },
			`cluster "wms": directorGroup: required`},
		{"fwmark too big", func(t *testing.T) string { return edit(t, "scheduler: wlc", "scheduler: wlc\nfwmark: 2147483648") },
			`cluster "wms": fwmark: 2147483648 is more than 2147483647 (0 lets the controller allocate one)`},
		{"negative revision", func(t *testing.T) string { return edit(t, "scheduler: wlc", "scheduler: wlc\nrevision: -1") },
			`cluster "wms": revision: -1 is negative`},
		{"group does not exist", func(t *testing.T) string { return edit(t, "directorGroup: edge-1", "directorGroup: edge-9") },
			`cluster "wms": directorGroup: group "edge-9" does not exist`},
		{"no directors", func(t *testing.T) string { return edit(t, wmsDirs, "directors: []") },
			`group "edge-1": directors: at least one director is required`},
		{"priority 0", func(t *testing.T) string { return edit(t, wmsDirs, "directors: [{name: dir-a, priority: 0}]") },
			`group "edge-1": directors[0].priority: 0 is out of range 1-255`},
		{"priority 256", func(t *testing.T) string { return edit(t, wmsDirs, "directors: [{name: dir-a, priority: 256}]") },
			`group "edge-1": directors[0].priority: 256 is out of range 1-255`},
		{"director twice", func(t *testing.T) string {
			return edit(t, wmsDirs, "directors: [{name: dir-a, priority: 200}, {name: dir-a, priority: 100}]")
		}, `group "edge-1": directors[1].name: "dir-a" is listed twice (directors[0])`},
		{"director name", func(t *testing.T) string { return edit(t, wmsDirs, "directors: [{name: dir_a, priority: 200}]") },
			`group "edge-1": directors[0].name: "dir_a" is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`},
		{"no vip interface", func(t *testing.T) string { return edit(t, "vipInterface: eth0\n", "") },
			`group "edge-1": vipInterface: required`},
		{"vip interface too long", func(t *testing.T) string { return edit(t, "vipInterface: eth0", "vipInterface: enp0s31f6-uplink0") },
			`group "edge-1": vipInterface: "enp0s31f6-uplink0" is longer than 15 characters (IFNAMSIZ)`},
		{"vip interface with slash", func(t *testing.T) string { return edit(t, "vipInterface: eth0", "vipInterface: eth0/1") },
			`group "edge-1": vipInterface: "eth0/1" contains '/', ':' or white space`},
		{"gateway without prefix", func(t *testing.T) string {
			return edit(t, "vipInterface: eth0", "vipInterface: eth0\ngateway: {address: 198.51.100.254, interface: eth1}")
		}, `group "edge-1": gateway.address: "198.51.100.254" is not an address with a prefix length (e.g. 198.51.100.254/24)`},
		{"gateway without interface", func(t *testing.T) string {
			return edit(t, "vipInterface: eth0", "vipInterface: eth0\ngateway: {address: 198.51.100.254/24}")
		}, `group "edge-1": gateway.interface: required`},
		{"sync id too big", func(t *testing.T) string {
			return edit(t, "vipInterface: eth0", "vipInterface: eth0\nsync: {interface: eth1, syncId: 256}")
		}, `group "edge-1": sync.syncId: 256 is more than 255 (the kernel's sync id is one byte)`},
		{"sync without interface", func(t *testing.T) string {
			return edit(t, "vipInterface: eth0", "vipInterface: eth0\nsync: {syncId: 7}")
		}, `group "edge-1": sync.interface: required`},
		{"unknown group field", func(t *testing.T) string {
			return edit(t, "vipInterface: eth0", "vipInterface: eth0\nsync: {interface: eth1, syncid: 7}")
		}, `group "edge-1": sync.syncid: unknown field`},
		{"cluster defined twice", func(t *testing.T) string { return wmsYAML(t) + "---\n" + strings.Split(wmsYAML(t), "---")[0] },
			`cluster "wms": name: defined twice`},
		{"port taken by another cluster", func(t *testing.T) string {
			return wmsYAML(t) + strings.Replace(rtsp, "port: 8554", "port: 554", 1)
		}, `cluster "rtsp": ports[0]: tcp 554 on 192.0.2.10 is already used by cluster "wms" (ports[0] tcp 554)`},
		{"range taken by another cluster", func(t *testing.T) string {
			return wmsYAML(t) + strings.Replace(rtsp, "{protocol: tcp, port: 8554}", "{protocol: udp, ports: 4000-6000}", 1)
		}, `cluster "rtsp": ports[0]: udp 4000-6000 on 192.0.2.10 is already used by cluster "wms" (ports[4] udp 1024-5000)`},
		{"fwmark clash", func(t *testing.T) string {
			return edit(t, "scheduler: wlc", "scheduler: wlc\nfwmark: 7") + strings.Replace(rtsp, "reals:", "fwmark: 7\nreals:", 1)
		}, `cluster "rtsp": fwmark: 7 is already used by cluster "wms" of group "edge-1" (a mark is unique within a director group)`},
		{"director in two groups", func(t *testing.T) string { return wmsYAML(t) + strings.Replace(group2, "dir-c", "dir-a", 1) },
			`group "edge-2": directors[0].name: director "dir-a" is already in group "edge-1" (a director serves one group)`},
		{"vip in two groups", func(t *testing.T) string {
			return wmsYAML(t) + group2 + strings.Replace(rtsp, "directorGroup: edge-1", "directorGroup: edge-2", 1)
		}, `cluster "rtsp": vips[0]: 192.0.2.10 is already served by group "edge-1" (cluster "wms"); a VIP belongs to one director group`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(t, tt.text(t))
			if err == nil {
				t.Fatalf("accepted; want error %q", tt.want)
			}
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if lines := strings.Split(err.Error(), "\n"); !contains(lines, tt.want) {
				t.Errorf("error:\n%v\nwant a line:\n%s", err, tt.want)
			}
		})
	}
}

// TestFWMarkPerGroup: two director groups (two imported sites) may both keep fwmark 1, since
// a director programs only its own group's clusters; within one group the mark stays unique.
func TestFWMarkPerGroup(t *testing.T) {
	other := strings.NewReplacer("directorGroup: edge-1", "directorGroup: edge-2", "192.0.2.10", "192.0.2.11", "reals:", "fwmark: 1\nreals:").Replace(rtsp)
	text := edit(t, "scheduler: wlc", "scheduler: wlc\nfwmark: 1") + group2 + other
	if err := check(t, text); err != nil {
		t.Fatalf("fwmark 1 in two groups refused: %v", err)
	}
	same := strings.NewReplacer("192.0.2.10", "192.0.2.11", "reals:", "fwmark: 1\nreals:").Replace(rtsp)
	err := check(t, edit(t, "scheduler: wlc", "scheduler: wlc\nfwmark: 1")+same)
	want := `cluster "rtsp": fwmark: 1 is already used by cluster "wms" of group "edge-1" (a mark is unique within a director group)`
	if err == nil || !contains(strings.Split(err.Error(), "\n"), want) {
		t.Fatalf("fwmark 1 twice in one group: %v, want a line %s", err, want)
	}
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestGoodManifests(t *testing.T) {
	tests := []struct {
		name string
		text func(t *testing.T) string
	}{
		{"wms example", wmsYAML},
		{"failover group with gateway and sync", func(t *testing.T) string {
			return edit(t, "directors: [{name: dir-a, priority: 200}]", "directors: [{name: dir-a, priority: 200, address: 198.51.100.252}, {name: dir-b, priority: 100, address: 198.51.100.253}]\n"+
				"gateway: {address: 198.51.100.254/24, interface: eth1}\nsync: {interface: eth1, syncId: 7}")
		}},
		{"ipv6 cluster", func(t *testing.T) string {
			return edit(t, "vips: [192.0.2.10]", `vips: ["2001:db8::10"]`,
				"{timeout: 600s}", "{timeout: 10m, netmask: 64}",
				"198.51.100.1", "2001:db8:1::1", "198.51.100.2", "2001:db8:1::2", "198.51.100.3", "2001:db8:1::3")
		}},
		{"no reals, quiesced weight, defaults", func(t *testing.T) string {
			return wmsYAML(t) + "---\nkind: Cluster\nname: empty\ndirectorGroup: edge-1\nvips: [192.0.2.11]\nports: [{protocol: sctp, port: 9}]\n"
		}},
		{"quiesced real", func(t *testing.T) string {
			return edit(t, "{address: 198.51.100.1, weight: 100}", "{address: 198.51.100.1, weight: 0}")
		}},
		{"same vip, other ports, own fwmarks", func(t *testing.T) string {
			return edit(t, "scheduler: wlc", "scheduler: wlc\nfwmark: 7") + strings.Replace(rtsp, "reals:", "fwmark: 8\nreals:", 1)
		}},
		{"same port on another vip", func(t *testing.T) string {
			return wmsYAML(t) + strings.Replace(strings.Replace(rtsp, "8554", "554", 1), "192.0.2.10", "192.0.2.20", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := check(t, tt.text(t)); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

func TestFieldError(t *testing.T) {
	err := validate.Cluster(&lvsctlv1.Cluster{
		Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"}, Scheduler: "wlc",
		Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
		Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 5000, Last: 1024}},
	})
	var fe *validate.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a *FieldError, got %v", err)
	}
	want := validate.FieldError{Kind: "cluster", Name: "wms", Path: "ports[0].ports", Reason: "range 5000-1024 is reversed"}
	if *fe != want {
		t.Errorf("got %+v, want %+v", *fe, want)
	}
	if !errors.Is(err, validate.ErrInvalid) {
		t.Error("does not match ErrInvalid")
	}
	if err := validate.Object(&lvsctlv1.Object{}); !errors.Is(err, validate.ErrInvalid) || err.Error() != `object "": kind: required (Cluster or DirectorGroup)` {
		t.Errorf("empty object: %v", err)
	}
}

func TestAllocateFWMark(t *testing.T) {
	marks := func(ms ...uint32) []*lvsctlv1.Cluster {
		var cs []*lvsctlv1.Cluster
		for _, m := range ms {
			cs = append(cs, &lvsctlv1.Cluster{Fwmark: m})
		}
		return cs
	}
	tests := []struct {
		existing []*lvsctlv1.Cluster
		want     uint32
	}{
		{nil, 1},
		{marks(1), 2},
		{marks(2, 3), 1},
		{marks(1, 2, 4), 3},
		{marks(3, 1, 2), 4},
		{marks(0, 1), 2}, // a cluster not yet allocated holds no mark
	}
	for _, tt := range tests {
		if got := validate.AllocateFWMark(tt.existing); got != tt.want {
			t.Errorf("AllocateFWMark(%v) = %d, want %d", tt.existing, got, tt.want)
		}
	}
}

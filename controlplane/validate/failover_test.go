package validate_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/validate"
)

// haYAML is the WMS cluster on the two-director group of deploy/examples/edge-1-ha.yaml
// (the manifest), with old->new replacements applied to the group; each old text
// must occur.
func haYAML(t *testing.T, pairs ...string) string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/examples/edge-1-ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	group := string(b)
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(group, pairs[i]) {
			t.Fatalf("test bug: %q not in the example group", pairs[i])
		}
		group = strings.Replace(group, pairs[i], pairs[i+1], 1)
	}
	cluster, _, _ := strings.Cut(wmsYAML(t), "---")
	return cluster + "---\n" + group
}

const (
	haDirB    = "{name: dir-b, priority: 100, address: 198.51.100.253}"
	haGateway = "gateway: {address: 198.51.100.254/24, interface: eth1}"
	haSync    = "sync: {interface: eth1, syncId: 7}"
)

func TestBadFailoverGroups(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // one full line of the error
	}{
		{"address missing in a two-director group", haYAML(t, haDirB, "{name: dir-b, priority: 100}"),
			`group "edge-1": directors[1].address: required in a group of more than one director (where its peers reach it, e.g. 198.51.100.252)`},
		{"address with a prefix", haYAML(t, "198.51.100.253}", "198.51.100.253/24}"),
			`group "edge-1": directors[1].address: "198.51.100.253/24" has a prefix length; write the address alone`},
		{"address with a zone", haYAML(t, "198.51.100.253}", `"fe80::1%eth1"}`),
			`group "edge-1": directors[1].address: "fe80::1%eth1" has a zone; IPVS addresses have none`},
		{"ipv6 link-local address", haYAML(t, "198.51.100.252}", `"fe80::252"}`, "198.51.100.253}", `"fe80::253"}`,
			haGateway, `gateway: {address: "2001:db8::254/64", interface: eth1}`),
			`group "edge-1": directors[1].address: fe80::253 is link-local: peers cannot reach it without a zone (use a global or unique local address)`},
		{"host name", haYAML(t, "198.51.100.253}", "dir-b.example.net}"),
			`group "edge-1": directors[1].address: "dir-b.example.net" is not an IP address`},
		{"unspecified address", haYAML(t, "198.51.100.253}", "0.0.0.0}"),
			`group "edge-1": directors[1].address: 0.0.0.0 is the unspecified address`},
		{"duplicate address", haYAML(t, "198.51.100.253}", "198.51.100.252}"),
			`group "edge-1": directors[1].address: 198.51.100.252 is listed twice (directors[0].address)`},
		{"mixed address families", haYAML(t, "198.51.100.253}", `"2001:db8::253"}`),
			`group "edge-1": directors[1].address: 2001:db8::253 is IPv6 but directors[0].address is IPv4 (directors heartbeat each other over one address family)`},
		{"address is the gateway's", haYAML(t, "198.51.100.253}", "198.51.100.254}"),
			`group "edge-1": directors[1].address: 198.51.100.254 is the gateway's address (gateway.address); the gateway moves between directors, a director's address does not`},
		{"gateway of another family", haYAML(t, haGateway, `gateway: {address: "2001:db8::254/64", interface: eth1}`),
			`group "edge-1": gateway.address: 2001:db8::254 is IPv6 but the directors' addresses are IPv4 (directors[0].address)`},
		{"address is a VIP", haYAML(t, "198.51.100.253}", "192.0.2.10}"),
			`group "edge-1": directors[1].address: 192.0.2.10 is a VIP of cluster "wms" (group "edge-1"); a director's own address must not move with the ACTIVE role`},
		{"VIP is an address (on the cluster)", haYAML(t, "198.51.100.253}", "192.0.2.10}"),
			`cluster "wms": vips[0]: 192.0.2.10 is the address of director "dir-b" of group "edge-1"; a VIP moves with the ACTIVE role, a director's address does not`},
		{"address of another group's director", haYAML(t) + "---\nkind: DirectorGroup\nname: edge-2\n" +
			"directors: [{name: dir-c, priority: 100, address: 198.51.100.9}, {name: dir-d, priority: 50, address: 198.51.100.253}]\nvipInterface: eth0\n",
			`group "edge-2": directors[1].address: 198.51.100.253 is already the address of director "dir-b" of group "edge-1"`},
		{"sync id too big", haYAML(t, haSync, "sync: {interface: eth1, syncId: 256}"),
			`group "edge-1": sync.syncId: 256 is more than 255 (the kernel's sync id is one byte)`},
		{"sync without interface", haYAML(t, haSync, "sync: {syncId: 7}"),
			`group "edge-1": sync.interface: required`},
		{"interval too short", haYAML(t, haSync, haSync+"\nfailover: {heartbeatInterval: 5ms}"),
			`group "edge-1": failover.heartbeatInterval: 5ms is less than 10ms`},
		{"deadAfter under two intervals", haYAML(t, haSync, haSync+"\nfailover: {heartbeatInterval: 100ms, deadAfter: 150ms, fenceTime: 150ms}"),
			`group "edge-1": failover.deadAfter: 150ms is less than twice heartbeatInterval (100ms)`},
		{"deadAfter under two default intervals", haYAML(t, haSync, haSync+"\nfailover: {deadAfter: 90ms, fenceTime: 1s}"),
			`group "edge-1": failover.deadAfter: 90ms is less than twice the default heartbeatInterval (50ms)`},
		{"interval over half the default deadAfter", haYAML(t, haSync, haSync+"\nfailover: {heartbeatInterval: 100ms, fenceTime: 1s}"),
			`group "edge-1": failover.heartbeatInterval: 100ms is more than half the default deadAfter (150ms)`},
		{"fence shorter than deadAfter", haYAML(t, haSync, haSync+"\nfailover: {deadAfter: 500ms, fenceTime: 400ms}"),
			`group "edge-1": failover.fenceTime: 400ms is less than deadAfter (500ms)`},
		{"deadAfter over the default fence", haYAML(t, haSync, haSync+"\nfailover: {deadAfter: 500ms}"),
			`group "edge-1": failover.deadAfter: 500ms is more than the default fenceTime (200ms)`},
		{"fence over a minute", haYAML(t, haSync, haSync+"\nfailover: {fenceTime: 61s}"),
			`group "edge-1": failover.fenceTime: 1m1s is longer than 1m0s`},
		{"port too big", haYAML(t, haSync, haSync+"\nfailover: {port: 70000}"),
			`group "edge-1": failover.port: 70000 is out of range 1-65535`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(t, tt.text)
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

// TestBadFailoverGroupReportsOnce: a mistake is one error, not one per rule it trips.
func TestBadFailoverGroupReportsOnce(t *testing.T) {
	err := check(t, haYAML(t, haSync, haSync+"\nfailover: {heartbeatInterval: 100ms, deadAfter: 150ms, fenceTime: 150ms}"))
	if n := len(strings.Split(err.Error(), "\n")); n != 1 {
		t.Errorf("%d errors, want 1:\n%v", n, err)
	}
}

func TestGoodFailoverGroups(t *testing.T) {
	tests := []struct{ name, text string }{
		{"the example", haYAML(t)},
		{"every setting", haYAML(t, haSync, haSync+"\nfailover: {heartbeatInterval: 10ms, deadAfter: 20ms, fenceTime: 20ms, preempt: true, port: 65535}")},
		{"the longest timings", haYAML(t, haSync, haSync+"\nfailover: {heartbeatInterval: 30s, deadAfter: 60s, fenceTime: 60s}")},
		{"ipv6 directors and gateway", haYAML(t, "198.51.100.252}", `"2001:db8::252"}`, "198.51.100.253}", `"2001:db8::253"}`,
			haGateway, `gateway: {address: "2001:db8::254/64", interface: eth1}`)},
		// A one-director group needs no address (it has no peer) and may already run sync,
		// for the director that will join it: a warning would be noise.
		{"one director, sync, no address", haYAML(t, "  - "+haDirB+"\n", "", "address: 198.51.100.252", "")},
		// Loopback addresses are kept for directors in namespaces or on one test host.
		{"loopback addresses", haYAML(t, "198.51.100.252}", "127.0.0.2}", "198.51.100.253}", "127.0.0.3}",
			haGateway, "gateway: {address: 127.0.1.254/24, interface: eth1}")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := check(t, tt.text); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

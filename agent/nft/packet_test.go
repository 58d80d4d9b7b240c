package nft

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// TestMarksPackets sends packets through the layout: a client namespace, joined to the
// director's namespace by a veth pair, sends TCP and UDP to VIPs, and counters in a table of
// the director's that runs after ours (priority 0, after mangle) count each packet under the
// mark it arrived with. What the maps hold must be what packets get, IPv4 and IPv6, single
// ports, ranges, a port inside a range, and no mark where no rule is.
func TestMarksPackets(t *testing.T) {
	fw, ns, _ := newFirewall(t)
	privileged(t, "bash", "timeout")
	client := addNetns(t)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", client).Run() })
	for _, args := range [][]string{
		{"-n", client, "link", "add", "vc", "type", "veth", "peer", "name", "vd", "netns", ns},
		{"-n", client, "link", "set", "vc", "up"},
		{"-n", ns, "link", "set", "vd", "up"},
		{"-n", client, "addr", "add", "10.99.0.1/24", "dev", "vc"},
		{"-n", ns, "addr", "add", "10.99.0.2/24", "dev", "vd"},
		{"-n", client, "-6", "addr", "add", "fd00:99::1/64", "dev", "vc", "nodad"},
		{"-n", ns, "-6", "addr", "add", "fd00:99::2/64", "dev", "vd", "nodad"},
		{"-n", client, "route", "add", "192.0.2.0/24", "via", "10.99.0.2"},
		{"-n", client, "-6", "route", "add", "2001:db8::/64", "via", "fd00:99::2"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	vip6 := netip.MustParseAddr("2001:db8::10")
	rules := append(append([]dataplane.MarkRule(nil), wms...),
		dataplane.MarkRule{VIP: netip.MustParseAddr("192.0.2.11"), Protocol: dataplane.TCP, FirstPort: 80, LastPort: 80, Mark: 17},
		dataplane.MarkRule{VIP: netip.MustParseAddr("192.0.2.11"), Protocol: dataplane.UDP, FirstPort: 6000, LastPort: 7000, Mark: 17},
		dataplane.MarkRule{VIP: vip6, Protocol: dataplane.UDP, FirstPort: 1755, LastPort: 1755, Mark: 18},
		dataplane.MarkRule{VIP: vip6, Protocol: dataplane.TCP, FirstPort: 8000, LastPort: 8100, Mark: 18},
	)
	if _, err := fw.SetMarkRules(rules); err != nil {
		t.Fatal(err)
	}

	probes := []struct {
		proto string
		vip   string
		port  int
		mark  uint32 // 0: no mark
	}{
		{"tcp", "192.0.2.10", 554, 16},
		{"udp", "192.0.2.10", 554, 16},
		{"tcp", "192.0.2.10", 1755, 16},
		{"udp", "192.0.2.10", 1755, 16}, // a single port inside udp 1024-5000
		{"udp", "192.0.2.10", 1024, 16},
		{"udp", "192.0.2.10", 3000, 16},
		{"udp", "192.0.2.10", 5000, 16},
		{"udp", "192.0.2.10", 5001, 0},
		{"tcp", "192.0.2.10", 3000, 0}, // the range is udp's
		{"tcp", "192.0.2.11", 80, 17},
		{"udp", "192.0.2.11", 6500, 17},
		{"udp", "192.0.2.11", 80, 0},
		{"tcp", "192.0.2.12", 554, 0}, // no cluster
		{"udp", "2001:db8::10", 1755, 18},
		{"tcp", "2001:db8::10", 8050, 18},
		{"tcp", "2001:db8::10", 554, 0},
	}
	// One counter per probe, matching its packet and the mark it should carry.
	nft(t, ns, "add", "table", "inet", "probe")
	nft(t, ns, "add", "chain", "inet", "probe", "c", "{ type filter hook prerouting priority 0; policy accept; }")
	for i, p := range probes {
		family := "ip"
		if strings.Contains(p.vip, ":") {
			family = "ip6"
		}
		nft(t, ns, "add", "rule", "inet", "probe", "c", family, "daddr", p.vip, p.proto, "dport", fmt.Sprint(p.port),
			"meta", "mark", fmt.Sprint(p.mark), "counter", "comment", fmt.Sprintf(`"probe %d"`, i))
	}
	for _, p := range probes {
		// bash opens the socket and sends: one datagram, or a SYN (no one answers it:
		// timeout ends the wait).
		cmd := fmt.Sprintf("echo x >/dev/%s/%s/%d", p.proto, p.vip, p.port)
		_ = exec.Command("ip", "netns", "exec", client, "timeout", "0.3", "bash", "-c", cmd).Run()
	}

	var doc struct {
		Nftables []struct {
			Rule *struct {
				Comment string
				Expr    []struct {
					Counter *struct{ Packets int }
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(nft(t, ns, "-j", "list", "table", "inet", "probe")), &doc); err != nil {
		t.Fatal(err)
	}
	counted := map[string]int{}
	for _, item := range doc.Nftables {
		if r := item.Rule; r != nil {
			for _, e := range r.Expr {
				if e.Counter != nil {
					counted[r.Comment] = e.Counter.Packets
				}
			}
		}
	}
	for i, p := range probes {
		if counted[fmt.Sprintf("probe %d", i)] == 0 {
			t.Errorf("%s %s port %d: no packet arrived with mark %d", p.proto, p.vip, p.port, p.mark)
		}
	}
}

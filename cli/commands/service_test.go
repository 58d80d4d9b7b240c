package commands_test

import (
	"strings"
	"testing"
)

// TestDescribePlainService: describe shows a plain service, its scheduler flags, one-packet
// scheduling, each real's port (its own or the service's) and thresholds, the sorry server.
func TestDescribePlainService(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	if got := lvsctl(t, addr, "", "apply", "-f", wmsFile); got.code != 0 {
		t.Fatalf("apply: %+v", got)
	}
	const dns = `kind: Cluster
name: dns
directorGroup: edge-1
service: {address: 192.0.2.53, protocol: udp, port: 53}
scheduler: sh
schedulerFlags: [sh-fallback, sh-port]
ops: true
forwarding: masq
reals:
  - {address: 198.51.100.5, port: 5353, weight: 1, upperThreshold: 1000, lowerThreshold: 800}
  - {address: 198.51.100.6, weight: 2}
sorryServer: {address: 198.51.100.9, port: 8053}
`
	if got := lvsctl(t, addr, dns, "apply", "-f", "-"); got.code != 0 {
		t.Fatalf("apply: %+v", got)
	}
	got := lvsctl(t, addr, "", "describe", "cluster", "dns")
	for _, want := range []string{
		"\nService:          udp 192.0.2.53:53 (plain: no fwmark)\nScheduler:        sh\n",
		"\nScheduler flags:  sh-fallback, sh-port\nOne-packet:       yes (each UDP datagram scheduled on its own)\n",
		"\nSorry server:     198.51.100.9:8053 (while no real server can take new connections)\n",
		"\n  ADDRESS       PORT  WEIGHT  THRESHOLDS             DRAINED  CHECK\n" +
			"  198.51.100.5  5353  1       upper 1000, lower 800  no       -\n" +
			"  198.51.100.6  53    2       -                      no       -\n",
	} {
		if !strings.Contains(got.out, want) {
			t.Errorf("describe lacks\n%s\nin:\n%s", want, got.out)
		}
	}
	if strings.Contains(got.out, "FWMark:") || strings.Contains(got.out, "VIPs:") {
		t.Errorf("describe of a plain service shows fwmark fields:\n%s", got.out)
	}
	list := lvsctl(t, addr, "", "get", "clusters")
	if !strings.Contains(list.out, "dns   edge-1  udp 192.0.2.53:53") {
		t.Errorf("get clusters:\n%s", list.out)
	}
}

package commands_test

import (
	"regexp"
	"strings"
	"testing"
)

// TestDescribeTunnel: describe shows a cluster's tunnel under its forwarding; get prints the
// block back as written.
func TestDescribeTunnel(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	if got := lvsctl(t, addr, "", "apply", "-f", wmsFile); got.code != 0 {
		t.Fatalf("apply: %+v", got)
	}
	const api = `kind: Cluster
name: api
directorGroup: edge-1
service: {address: 192.0.2.40, protocol: tcp, port: 443}
scheduler: wlc
forwarding: tunnel
tunnel: {type: gue, port: 6080, checksum: csum}
reals:
  - {address: 198.51.100.9, weight: 1}
`
	if got := lvsctl(t, addr, api, "apply", "-f", "-"); got.code != 0 {
		t.Fatalf("apply: %+v", got)
	}
	got := lvsctl(t, addr, "", "describe", "cluster", "api")
	if want := regexp.MustCompile(`\nForwarding: +tunnel\nTunnel: +gue port 6080 csum\n`); !want.MatchString(got.out) {
		t.Errorf("describe lacks %s in:\n%s", want, got.out)
	}
	if y := lvsctl(t, addr, "", "get", "cluster", "api", "-o", "yaml"); !strings.Contains(y.out, "\ntunnel: {type: gue, port: 6080, checksum: csum}\n") {
		t.Errorf("get -o yaml:\n%s", y.out)
	}
	// A tunnel on a masq cluster is refused naming the field, and nothing is written.
	bad := strings.Replace(strings.Replace(api, "forwarding: tunnel", "forwarding: masq", 1), "name: api", "name: api2", 1)
	if r := lvsctl(t, addr, bad, "apply", "-f", "-"); r.code == 0 || !strings.Contains(r.out+r.err, "tunnel: set with forwarding masq") {
		t.Errorf("apply of a masq cluster with a tunnel: %+v", r)
	}
	if r := lvsctl(t, addr, "", "get", "cluster", "api2"); r.code == 0 {
		t.Errorf("the refused cluster was written: %+v", r)
	}
}

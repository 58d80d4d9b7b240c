package validate_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

const (
	wmsPersistence = "persistence: {timeout: 600s}"
	wmsReal1       = "  - {address: 198.51.100.2, weight: 100}"
)

// withHealth is the WMS example with a cluster-level check (and more lines) after its
// persistence, and the second real server's line replaced when real1 is set.
func withHealth(t *testing.T, lines, real1 string) string {
	if real1 == "" {
		real1 = wmsReal1
	}
	return edit(t, wmsPersistence, wmsPersistence+"\n"+lines, wmsReal1, real1)
}

func TestHealthRefused(t *testing.T) {
	const rtsp = "health: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}"
	tests := []struct {
		name         string
		lines, real1 string
		want         []string // every line of the error, in order
	}{
		{"a check without its port", "health: {check: rtsp}", "",
			[]string{`cluster "wms": health.port: required for a fwmark service: its real servers have port 0, so a rtsp check names the port it probes (e.g. port: 554)`}},
		{"an override without its port", rtsp, "  - {address: 198.51.100.2, weight: 100, health: {check: tcp}}",
			[]string{`cluster "wms": reals[1].health.port: required for a fwmark service: its real servers have port 0, so a tcp check names the port it probes (e.g. port: 554)`}},
		{"timeout over interval", "health: {check: tcp, port: 554, interval: 2s, timeout: 3s}", "",
			[]string{`cluster "wms": health.timeout: 3s is more than health.interval (2s)`}},
		{"timeout over the default interval", "health: {check: tcp, port: 554, timeout: 3s}", "",
			[]string{`cluster "wms": health.timeout: 3s is more than health.interval (2s)`}},
		{"an override's timeout over the cluster's interval", rtsp, "  - {address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755, timeout: 3s}}",
			[]string{`cluster "wms": reals[1].health.timeout: 3s is more than health.interval (1s)`}},
		{"an error the override inherits is reported once", "health: {check: rtsp, port: 554, interval: 1s, timeout: 2s}",
			"  - {address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755}}",
			[]string{`cluster "wms": health.timeout: 2s is more than health.interval (1s)`}},
		{"no check", "health: {port: 554}", "",
			[]string{`cluster "wms": health.check: required: one of tcp http https rtsp udp exec none`}},
		{"unknown check", "health: {check: ping, port: 554}", "",
			[]string{`cluster "wms": health.check: unknown check "ping": one of tcp http https rtsp udp exec none`}},
		{"unknown onFailure", "health: {check: tcp, port: 554, onFailure: drop}", "",
			[]string{`cluster "wms": health.onFailure: "drop" is not "quiesce" or "remove"`}},
		{"an override's onFailure", rtsp, "  - {address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755, onFailure: cut}}",
			[]string{`cluster "wms": reals[1].health.onFailure: "cut" is not "quiesce" or "remove"`}},
		{"port too big", "health: {check: tcp, port: 70000}", "",
			[]string{`cluster "wms": health.port: is more than 65535`}},
		{"a field of another kind", "health: {check: rtsp, port: 554, path: /live}", "",
			[]string{`cluster "wms": health.path: only for http and https checks`}},
		{"bad status range", "health: {check: http, port: 80, expect: 399-200}", "",
			[]string{`cluster "wms": health.expect: range "399-200" is reversed`}},
		{"exec without command", "health: {check: exec}", "",
			[]string{`cluster "wms": health.command: required for an exec check`}},
		{"bad rtsp url", "health: {check: rtsp, port: 554, url: \"http://x/\"}", "",
			[]string{`cluster "wms": health.url: "http://x/" is not an rtsp://HOST[:PORT]/PATH URL`}},
		{"several at once", "health: {check: https, timeout: 5s, body: ok, udpMode: reply}", "",
			[]string{
				`cluster "wms": health.port: required for a fwmark service: its real servers have port 0, so a https check names the port it probes (e.g. port: 554)`,
				`cluster "wms": health.timeout: 5s is more than health.interval (2s)`,
				`cluster "wms": health.udpMode: only for udp checks`,
			}},
		{"grace over a day", "removeGrace: 24h0m1s", "",
			[]string{`cluster "wms": removeGrace: 24h0m1s is longer than 24h0m0s`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(t, withHealth(t, tt.lines, tt.real1))
			if err == nil {
				t.Fatalf("accepted; want %s", strings.Join(tt.want, "\n"))
			}
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if got := err.Error(); got != strings.Join(tt.want, "\n") {
				t.Errorf("error:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestHealthAccepted(t *testing.T) {
	for _, tt := range []struct{ name, lines, real1 string }{
		{"the contract", "health: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}\nremoveGrace: 60s",
			"  - {address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755}, drained: true}"},
		{"defaults", "health: {check: tcp, port: 554}", ""},
		{"exec names no port", "health: {check: exec, command: [/usr/lib/nagios/plugins/check_rtsp, -H, x]}", ""},
		{"none names no port", "health: {check: none}", ""},
		{"only an override", "", "  - {address: 198.51.100.2, weight: 100, health: {check: http, port: 80, path: /health, expect: \"200\", onFailure: remove}}"},
		{"an override of another kind", "health: {check: udp, port: 1755, payload: \"ping\\n\", expect: pong}",
			"  - {address: 198.51.100.2, weight: 100, health: {check: https, port: 443, serverName: media.example.com, verify: true}}"},
		{"remove at once", "removeGrace: 0s", ""},
		{"a day", "removeGrace: 24h", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := check(t, withHealth(t, tt.lines, tt.real1)); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

// TestHealthProtoOnly: what a manifest cannot write but an API client can send.
func TestHealthProtoOnly(t *testing.T) {
	base := func() *lvsctlv1.Cluster {
		return &lvsctlv1.Cluster{
			Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"}, Scheduler: "wlc",
			Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
			Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 53, Last: 53}},
			Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
		}
	}
	for _, tt := range []struct {
		name string
		edit func(c *lvsctlv1.Cluster)
		want string
	}{
		{"grace with remove_now", func(c *lvsctlv1.Cluster) { c.RemoveNow, c.RemoveGraceMs = true, 5000 },
			`cluster "wms": removeGrace: 5s is set together with remove_now (removeGrace 0s): one or the other`},
		{"a payload that is not text", func(c *lvsctlv1.Cluster) {
			c.Reals[0].Health = &lvsctlv1.HealthCheck{Check: "udp", Port: 53, Payload: []byte{0x12, 0xff}}
		}, `cluster "wms": reals[0].health.payload: is not UTF-8 text (a manifest writes the payload as text)`},
		{"grace too long", func(c *lvsctlv1.Cluster) { c.RemoveGraceMs = uint32((25 * time.Hour).Milliseconds()) },
			`cluster "wms": removeGrace: 25h0m0s is longer than 24h0m0s`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(c)
			err := validate.Cluster(c)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
	if err := validate.Cluster(base()); err != nil {
		t.Fatalf("the base cluster is refused: %v", err)
	}
}

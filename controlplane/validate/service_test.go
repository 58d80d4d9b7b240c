package validate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/validate"
)

// web is issue 12's plain service, beside the WMS example (cluster wms on 192.0.2.10, fwmark).
const web = `
---
kind: Cluster
name: web
directorGroup: edge-1
service: {address: 192.0.2.20, protocol: tcp, port: 80}
scheduler: sh
schedulerFlags: [sh-fallback, sh-port]
forwarding: masq
reals:
  - {address: 198.51.100.5, port: 8080, weight: 1, upperThreshold: 1000, lowerThreshold: 800}
`

// editWeb applies old->new replacements to web; each old text must occur.
func editWeb(t *testing.T, pairs ...string) string {
	t.Helper()
	s := web
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("test bug: %q not in web", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return wmsYAML(t) + s
}

func TestPlainServiceRefused(t *testing.T) {
	tests := []struct {
		name string
		text func(t *testing.T) string
		want string
	}{
		{"vips with service", func(t *testing.T) string { return editWeb(t, "scheduler: sh", "vips: [192.0.2.21]\nscheduler: sh") },
			`cluster "web": vips: set together with service: a plain service's VIP is service.address (leave vips out)`},
		{"ports with service", func(t *testing.T) string {
			return editWeb(t, "scheduler: sh", "ports: [{protocol: tcp, port: 81}]\nscheduler: sh")
		}, `cluster "web": ports: set together with service: a plain service's port is service.port (leave ports out)`},
		{"fwmark with service", func(t *testing.T) string { return editWeb(t, "scheduler: sh", "fwmark: 5\nscheduler: sh") },
			`cluster "web": fwmark: 5 is set on a plain service (service): it has no mark; leave fwmark out`},
		{"bad address", func(t *testing.T) string { return editWeb(t, "192.0.2.20", "192.0.2.300") },
			`cluster "web": service.address: "192.0.2.300" is not an IP address`},
		{"no address", func(t *testing.T) string { return editWeb(t, "address: 192.0.2.20, ", "") },
			`cluster "web": service.address: required`},
		{"loopback address", func(t *testing.T) string { return editWeb(t, "192.0.2.20", "127.0.0.5") },
			`cluster "web": service.address: 127.0.0.5 is a loopback address`},
		{"multicast address", func(t *testing.T) string {
			return editWeb(t, "192.0.2.20", `"ff02::1"`, "198.51.100.5", `"2001:db8::5"`)
		},
			`cluster "web": service.address: ff02::1 is a multicast address`},
		{"unspecified address", func(t *testing.T) string { return editWeb(t, "192.0.2.20", "0.0.0.0") },
			`cluster "web": service.address: 0.0.0.0 is the unspecified address`},
		{"no protocol", func(t *testing.T) string { return editWeb(t, "protocol: tcp, ", "") },
			`cluster "web": service.protocol: required (tcp, udp or sctp)`},
		{"port too big", func(t *testing.T) string { return editWeb(t, "port: 80}", "port: 65536}") },
			`cluster "web": service.port: 65536 is out of range 0-65535`},
		{"port 0 without persistence", func(t *testing.T) string { return editWeb(t, "port: 80}", "port: 0}", "port: 8080, ", "") },
			`cluster "web": service.port: 0 (every port) needs persistence: set persistence.timeout or a port`},
		{"flag of another scheduler", func(t *testing.T) string { return editWeb(t, "[sh-fallback, sh-port]", "[sh-fallback, mh-port]") },
			`cluster "web": schedulerFlags[1]: mh-port is a flag of the mh scheduler, not of sh (other schedulers ignore it)`},
		{"flag without its scheduler", func(t *testing.T) string { return editWeb(t, "scheduler: sh", "scheduler: wlc") },
			`cluster "web": schedulerFlags[0]: sh-fallback is a flag of the sh scheduler, not of wlc (other schedulers ignore it)`},
		{"flag twice", func(t *testing.T) string { return editWeb(t, "[sh-fallback, sh-port]", "[sh-port, sh-port]") },
			`cluster "web": schedulerFlags[1]: sh-port is listed twice (schedulerFlags[0])`},
		{"unknown flag", func(t *testing.T) string { return editWeb(t, "[sh-fallback, sh-port]", "[flag-1]") },
			`cluster "web": schedulerFlags[0]: unknown scheduler flag "flag-1" (want sh-fallback, sh-port, mh-fallback or mh-port)`},
		{"ops on tcp", func(t *testing.T) string { return editWeb(t, "scheduler: sh", "ops: true\nscheduler: sh") },
			`cluster "web": ops: one-packet scheduling is for UDP services; the service is tcp`},
		{"ops on sctp", func(t *testing.T) string {
			return editWeb(t, "protocol: tcp", "protocol: sctp", "scheduler: sh", "ops: true\nscheduler: sh")
		},
			`cluster "web": ops: one-packet scheduling is for UDP services; the service is sctp`},
		{"ops on a fwmark cluster without udp", func(t *testing.T) string {
			return wmsYAML(t) + strings.Replace(rtsp, "reals:", "ops: true\nreals:", 1)
		}, `cluster "rtsp": ops: one-packet scheduling applies to UDP datagrams only, and the cluster marks no udp port`},
		{"real port on a fwmark cluster", func(t *testing.T) string {
			return edit(t, "{address: 198.51.100.1, weight: 100}", "{address: 198.51.100.1, port: 8554, weight: 100}")
		}, `cluster "wms": reals[0].port: 8554 is set on a fwmark cluster, which keeps the port the client asked for (leave it out)`},
		{"real port under route", func(t *testing.T) string { return editWeb(t, "forwarding: masq", "forwarding: route") },
			`cluster "web": reals[0].port: 8080 differs from service.port 80: only masq (NAT) rewrites the port; route and tunnel forward the packet as it came`},
		{"real port under tunnel", func(t *testing.T) string { return editWeb(t, "forwarding: masq", "forwarding: tunnel") },
			`cluster "web": reals[0].port: 8080 differs from service.port 80: only masq (NAT) rewrites the port; route and tunnel forward the packet as it came`},
		{"real port on an every-port service", func(t *testing.T) string {
			return editWeb(t, "port: 80}", "port: 0}", "forwarding: masq", "forwarding: masq\npersistence: {timeout: 300s}")
		}, `cluster "web": reals[0].port: 8080 is set on a service of every port (service.port 0), which keeps the port the client asked for (leave it out)`},
		{"real port too big", func(t *testing.T) string { return editWeb(t, "port: 8080", "port: 80800") },
			`cluster "web": reals[0].port: 80800 is out of range 1-65535`},
		{"lower over upper", func(t *testing.T) string { return editWeb(t, "lowerThreshold: 800", "lowerThreshold: 1001") },
			`cluster "web": reals[0].lowerThreshold: 1001 is more than upperThreshold 1000`},
		{"lower without upper", func(t *testing.T) string { return editWeb(t, "upperThreshold: 1000, ", "") },
			`cluster "web": reals[0].lowerThreshold: 800 is set without upperThreshold (a server takes connections again below the lower threshold once over the upper one)`},
		{"threshold too big", func(t *testing.T) string { return editWeb(t, "upperThreshold: 1000", "upperThreshold: 2147483648") },
			`cluster "web": reals[0].upperThreshold: 2147483648 is more than 2147483647`},
		{"real of the other family", func(t *testing.T) string { return editWeb(t, "198.51.100.5", `"2001:db8::5"`) },
			`cluster "web": reals[0].address: 2001:db8::5 is IPv6 but the service's address is IPv4 (one IPVS service has one address family)`},
		{"real of the other family under tunnel", func(t *testing.T) string {
			return editWeb(t, "198.51.100.5", `"2001:db8::5"`, "forwarding: masq", "forwarding: tunnel", "port: 8080, ", "")
		}, `cluster "web": reals[0].address: 2001:db8::5 is IPv6 but the service's address is IPv4 (one IPVS service has one address family)`},
		{"real is the service address", func(t *testing.T) string { return editWeb(t, "198.51.100.5", "192.0.2.20") },
			`cluster "web": reals[0].address: 192.0.2.20 is the cluster's VIP (service.address)`},
		{"netmask too long for IPv6", func(t *testing.T) string {
			return editWeb(t, "192.0.2.20", `"2001:db8::20"`, "198.51.100.5", `"2001:db8:1::5"`, "forwarding: masq", "forwarding: masq\npersistence: {timeout: 60s, netmask: 129}")
		}, `cluster "web": persistence.netmask: /129 is longer than /128 for IPv6`},
		{"health port required", func(t *testing.T) string {
			return editWeb(t, "forwarding: masq", "forwarding: masq\nhealth: {check: tcp}")
		},
			`cluster "web": health.port: required: a tcp check names the port it probes (e.g. the real server's port)`},
		// Between clusters of one group.
		{"same service twice", func(t *testing.T) string {
			return editWeb(t) + strings.Replace(web, "name: web", "name: web2", 1)
		}, `cluster "web2": service: tcp 192.0.2.20:80 is already the service of cluster "web"`},
		{"service marked by a fwmark cluster", func(t *testing.T) string {
			return wmsYAML(t) + strings.Replace(web, "192.0.2.20", "192.0.2.10", 1) + strings.Replace(rtsp, "port: 8554", "ports: 80-90", 1)
		}, `cluster "rtsp": ports[0]: tcp 80-90 on 192.0.2.10 would take the packets of cluster "web"'s plain service tcp 192.0.2.10:80 (IPVS looks firewall-mark services up first)`},
		{"fwmark cluster before the service", func(t *testing.T) string {
			return wmsYAML(t) + strings.NewReplacer("192.0.2.20", "192.0.2.10", "port: 80}", "port: 554}").Replace(web)
		}, `cluster "web": service: tcp 192.0.2.10:554 is also marked by cluster "wms" (ports[0] tcp 554 on 192.0.2.10); IPVS looks firewall-mark services up first, so that cluster would take its packets`},
		{"every-port service marked by a fwmark cluster", func(t *testing.T) string {
			return wmsYAML(t) + strings.NewReplacer("192.0.2.20", "192.0.2.10", "protocol: tcp, port: 80}", "protocol: udp, port: 0}", "port: 8080, ", "",
				"forwarding: masq", "forwarding: masq\npersistence: {timeout: 60s}", "scheduler: sh\nschedulerFlags: [sh-fallback, sh-port]", "scheduler: wlc").Replace(web)
		}, `cluster "web": service: udp 192.0.2.10:0 is also marked by cluster "wms" (ports[1] udp 554 on 192.0.2.10); IPVS looks firewall-mark services up first, so that cluster would take its packets`},
		{"service address in another group", func(t *testing.T) string {
			return wmsYAML(t) + group2 + strings.NewReplacer("192.0.2.20", "192.0.2.10", "port: 80}", "port: 80}", "directorGroup: edge-1", "directorGroup: edge-2").Replace(web)
		}, `cluster "web": service.address: 192.0.2.10 is already served by group "edge-1" (cluster "wms"); a VIP belongs to one director group`},
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

func TestPlainServiceAccepted(t *testing.T) {
	tests := []struct {
		name string
		text func(t *testing.T) string
	}{
		{"issue 12's service", func(t *testing.T) string { return editWeb(t) }},
		{"VIP shared with a fwmark cluster on other ports", func(t *testing.T) string {
			return editWeb(t, "192.0.2.20", "192.0.2.10")
		}},
		{"same address and port, other protocol", func(t *testing.T) string {
			return editWeb(t) + strings.NewReplacer("name: web", "name: dns", "protocol: tcp", "protocol: udp", "scheduler: sh", "ops: true\nscheduler: sh").Replace(web)
		}},
		{"every-port service beside a port's", func(t *testing.T) string {
			return editWeb(t) + strings.NewReplacer("name: web", "name: any", "port: 80}", "port: 0}", "port: 8080, ", "",
				"forwarding: masq", "forwarding: masq\npersistence: {timeout: 60s}").Replace(web)
		}},
		{"IPv6 service with a /64 netmask", func(t *testing.T) string {
			return editWeb(t, "192.0.2.20", `"2001:db8::20"`, "198.51.100.5", `"2001:db8:1::5"`, "forwarding: masq", "forwarding: masq\npersistence: {timeout: 60s, netmask: 128}")
		}},
		{"real port equal to the service's under route", func(t *testing.T) string {
			return editWeb(t, "forwarding: masq", "forwarding: route", "port: 8080", "port: 80")
		}},
		{"mh flags", func(t *testing.T) string {
			return editWeb(t, "scheduler: sh", "scheduler: mh", "[sh-fallback, sh-port]", "[mh-fallback, mh-port]")
		}},
		{"ops on a fwmark cluster with udp ports", func(t *testing.T) string {
			return edit(t, "scheduler: wlc", "scheduler: wlc\nops: true")
		}},
		{"thresholds on a fwmark cluster", func(t *testing.T) string {
			return edit(t, "{address: 198.51.100.1, weight: 100}", "{address: 198.51.100.1, weight: 100, upperThreshold: 50}")
		}},
		{"health check with its port", func(t *testing.T) string {
			return editWeb(t, "forwarding: masq", "forwarding: masq\nhealth: {check: tcp, port: 8080}")
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

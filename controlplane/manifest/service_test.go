package manifest

import (
	"strings"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// serviceYAML is the plain service of issue 12 as an operator writes it.
const serviceYAML = `kind: Cluster
name: web
directorGroup: edge-1
service: {address: 192.0.2.20, protocol: tcp, port: 80}
scheduler: sh
schedulerFlags: [sh-fallback, sh-port]
forwarding: masq
reals:
  - {address: 198.51.100.5, port: 8080, weight: 1, upperThreshold: 1000, lowerThreshold: 800}
`

func TestParseService(t *testing.T) {
	objs, err := Parse([]byte(serviceYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "web", DirectorGroup: "edge-1",
		Service:   &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
		Scheduler: "sh",
		SchedulerFlags: []lvsctlv1.SchedulerFlag{
			lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_FALLBACK, lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.5", Port: 8080, Weight: 1, UpperThreshold: 1000, LowerThreshold: 800}},
	}}}}
	equalObjects(t, objs, want)
	// What get prints is what was written: vips and ports stay out of a plain service.
	out, err := Marshal(objs, YAML)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != serviceYAML {
		t.Errorf("got:\n%s\nwant:\n%s", out, serviceYAML)
	}
	js, err := Marshal(objs, JSON)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), `"vips"`) || strings.Contains(string(js), `"ports": [`) {
		t.Errorf("JSON of a plain service lists vips or ports:\n%s", js)
	}
}

// TestServiceRoundTrip: every new field, on a plain and on a fwmark cluster, comes back
// equal from YAML and JSON.
func TestServiceRoundTrip(t *testing.T) {
	objs := []*lvsctlv1.Object{
		{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: "dns6", DirectorGroup: "edge-1",
			Service:   &lvsctlv1.VirtualService{Address: "2001:db8::53", Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, Port: 53},
			Scheduler: "mh", SchedulerFlags: []lvsctlv1.SchedulerFlag{lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT},
			Ops: true, Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
			Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 60, NetmaskBits: 64},
			Reals: []*lvsctlv1.RealServer{
				{Address: "2001:db8:1::1", Weight: 2, UpperThreshold: 10},
				{Address: "2001:db8:1::2", Weight: 0, LowerThreshold: 3, UpperThreshold: 5, Drained: true},
			},
			Revision: 9,
		}}},
		{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: "any", DirectorGroup: "edge-1",
			Service:     &lvsctlv1.VirtualService{Address: "192.0.2.21", Protocol: lvsctlv1.Protocol_PROTOCOL_SCTP},
			Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 300},
			Scheduler:   "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL,
		}}},
		{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: "rtp", DirectorGroup: "edge-1", Vips: []string{"192.0.2.30"},
			Ports:     []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 5004, Last: 5005}},
			Scheduler: "sh", SchedulerFlags: []lvsctlv1.SchedulerFlag{lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_FALLBACK},
			Ops: true, Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE, Fwmark: 4,
			Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.9", Weight: 1, UpperThreshold: 100, LowerThreshold: 50}},
		}}},
	}
	for _, f := range []Format{YAML, JSON} {
		t.Run(string(f), func(t *testing.T) {
			out, err := Marshal(objs, f)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("parse of\n%s: %v", out, err)
			}
			equalObjects(t, back, objs)
		})
	}
}

func TestServiceParseErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"service: {address: 192.0.2.20, protocol: icmp, port: 80}", `cluster "web": service.protocol: unknown protocol "icmp" (want tcp, udp or sctp)`},
		{"service: {address: 192.0.2.20, protocol: tcp}", `cluster "web": service.port: required (0 is every port, for a persistent service only)`},
		{"service: {address: 192.0.2.20, protocol: tcp, port: 80, ports: 80-81}", `cluster "web": service.ports: unknown field`},
		{"service: 192.0.2.20:80", `cluster "web": service: must be a mapping, not the string "192.0.2.20:80"`},
		{"service: {address: 192.0.2.20, protocol: tcp, port: -1}", `cluster "web": service.port: -1 is negative`},
		{"schedulerFlags: [sh-fallback, sh_port]", `cluster "web": schedulerFlags[1]: unknown scheduler flag "sh_port" (want sh-fallback, sh-port, mh-fallback or mh-port)`},
		{"schedulerFlags: sh-port", `cluster "web": schedulerFlags: must be a list, not the string "sh-port"`},
		{"ops: yes please", `cluster "web": ops: must be true or false, not the string "yes please"`},
		{"reals: [{address: 198.51.100.5, port: 1.5}]", `cluster "web": reals[0].port: 1.5 is not a plain decimal integer (it has a fraction or an exponent)`},
		{"reals: [{address: 198.51.100.5, upperThreshold: -3}]", `cluster "web": reals[0].upperThreshold: -3 is negative`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			text := "kind: Cluster\nname: web\ndirectorGroup: edge-1\n" + tt.text + "\n"
			_, err := Parse([]byte(text))
			if err == nil {
				t.Fatalf("accepted:\n%s", text)
			}
			found := false
			for _, l := range strings.Split(err.Error(), "\n") {
				found = found || l == tt.want
			}
			if !found {
				t.Errorf("error:\n%v\nwant a line:\n%s", err, tt.want)
			}
		})
	}
}

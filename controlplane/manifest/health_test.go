package manifest

import (
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// healthCluster is the contract (health on the cluster, an override on one real, one
// real drained) as get -o yaml prints it.
const healthCluster = `kind: Cluster
name: wms
directorGroup: edge-1
vips: [192.0.2.10]
ports:
  - {protocol: tcp, port: 554}
  - {protocol: tcp, port: 1755}
scheduler: wlc
persistence: {timeout: 600s}
forwarding: masq
health: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}
removeGrace: 1m0s
reals:
  - {address: 198.51.100.1, weight: 100}
  - {address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755}}
  - {address: 198.51.100.3, weight: 100, drained: true}
`

func healthClusterObject() *lvsctlv1.Object {
	tcp := lvsctlv1.Protocol_PROTOCOL_TCP
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"},
		Ports:       []*lvsctlv1.PortRange{{Protocol: tcp, First: 554, Last: 554}, {Protocol: tcp, First: 1755, Last: 1755}},
		Scheduler:   "wlc",
		Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600},
		Forwarding:  lvsctlv1.Forwarding_FORWARDING_MASQ,
		Health: &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554, IntervalMs: 1000, TimeoutMs: 1000, Rise: 2, Fall: 2,
			OnFailure: "quiesce"},
		RemoveGraceMs: 60000,
		Reals: []*lvsctlv1.RealServer{
			{Address: "198.51.100.1", Weight: 100},
			{Address: "198.51.100.2", Weight: 100, Health: &lvsctlv1.HealthCheck{Check: "tcp", Port: 1755}},
			{Address: "198.51.100.3", Weight: 100, Drained: true},
		},
	}}}
}

// TestHealthContract: the contract's manifest parses to the stored fields, and get -o yaml
// prints it back byte for byte.
func TestHealthContract(t *testing.T) {
	objs, err := Parse([]byte(healthCluster))
	if err != nil {
		t.Fatal(err)
	}
	equalObjects(t, objs, []*lvsctlv1.Object{healthClusterObject()})
	out, err := Marshal(objs, YAML)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != healthCluster {
		t.Errorf("marshalled:\n%s\nwant:\n%s", out, healthCluster)
	}
	// The issue writes the grace as 60s: the same value.
	objs, err = Parse([]byte(strings.Replace(healthCluster, "removeGrace: 1m0s", "removeGrace: 60s", 1)))
	if err != nil {
		t.Fatal(err)
	}
	equalObjects(t, objs, []*lvsctlv1.Object{healthClusterObject()})
}

// TestHealthRoundTrip: every field of a check, of every kind, and the grace settings come
// back from get's YAML and JSON as they were stored.
func TestHealthRoundTrip(t *testing.T) {
	checks := []*lvsctlv1.HealthCheck{
		{Check: "http", Port: 8080, IntervalMs: 1500, TimeoutMs: 250, Rise: 1, Fall: 5, OnFailure: "remove",
			Path: "/healthz?full=1", Expect: "200", Body: `"status": "ok"`},
		{Check: "https", Port: 443, Path: "/", Expect: "200-399", ServerName: "media.example.com", Verify: true},
		{Check: "rtsp", Port: 554, Url: "rtsp://198.51.100.1:554/live", Describe: true},
		{Check: "udp", Port: 53, Payload: []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01\x7f\n\t\"\\"), Expect: "PONG", UdpMode: "reply"},
		{Check: "udp", Port: 1755, UdpMode: "noUnreachable", Payload: []byte("ping \u0085\u2028é")},
		{Check: "exec", Command: []string{"/usr/lib/nagios/plugins/check_rtsp", "-H", "$LVSCTL_REAL_ADDRESS", "a b", "true", "--x=1:2"}},
		{Check: "none"},
		{Check: "tcp", Port: 1755, Rise: 3},
		{},
	}
	for _, grace := range []struct {
		ms  uint32
		now bool
	}{{0, false}, {0, true}, {5000, false}, {1500, false}, {86_400_000, false}} {
		var objs []*lvsctlv1.Object
		for i, h := range checks {
			o := healthClusterObject()
			c := o.GetCluster()
			c.Name = "c" + string(rune('a'+i))
			c.Health = h
			c.Reals[1].Health = h
			c.RemoveGraceMs, c.RemoveNow = grace.ms, grace.now
			objs = append(objs, o)
		}
		for _, f := range []Format{YAML, JSON} {
			out, err := Marshal(objs, f)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("%s: parse of\n%s: %v", f, out, err)
			}
			equalObjects(t, back, objs)
		}
	}
}

func TestRemoveGrace(t *testing.T) {
	for _, tt := range []struct {
		text    string // "" leaves removeGrace out
		ms      uint32
		now     bool
		printed string
	}{
		{"", 0, false, ""},
		{"0s", 0, true, "removeGrace: 0s\n"},
		{"0", 0, true, "removeGrace: 0s\n"}, // time.ParseDuration takes a bare 0
		{"5s", 5000, false, "removeGrace: 5s\n"},
		{"90s", 90000, false, "removeGrace: 1m30s\n"},
		{"2.5s", 2500, false, "removeGrace: 2.5s\n"},
	} {
		t.Run(tt.text, func(t *testing.T) {
			text := strings.Replace(healthCluster, "removeGrace: 1m0s\n", "", 1)
			if tt.text != "" {
				text = strings.Replace(healthCluster, "removeGrace: 1m0s", "removeGrace: \""+tt.text+"\"", 1)
			}
			objs, err := Parse([]byte(text))
			if err != nil {
				t.Fatal(err)
			}
			c := objs[0].GetCluster()
			if c.GetRemoveGraceMs() != tt.ms || c.GetRemoveNow() != tt.now {
				t.Errorf("remove_grace_ms %d, remove_now %v; want %d, %v", c.GetRemoveGraceMs(), c.GetRemoveNow(), tt.ms, tt.now)
			}
			out, err := Marshal(objs, YAML)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(string(out), "removeGrace"); (tt.printed == "") != (got == 0) || !strings.Contains(string(out), tt.printed) {
				t.Errorf("printed:\n%s\nwant it to hold %q", out, tt.printed)
			}
		})
	}
}

func TestHealthParseErrors(t *testing.T) {
	const cluster = "health: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}"
	const real1 = "  - {address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755}}"
	const real2 = "  - {address: 198.51.100.3, weight: 100, drained: true}"
	tests := []struct{ old, new, want string }{
		{cluster, "health: rtsp", `cluster "wms": health: must be a mapping, not the string "rtsp"`},
		{cluster, "health: {check: rtsp, port: 554, intervall: 1s}", `cluster "wms": health.intervall: unknown field`},
		{cluster, "health: {check: rtsp, port: 554, interval: 1}", `cluster "wms": health.interval: must be a duration with its unit like 100ms or 0.3s, not the number 1`},
		{cluster, "health: {check: rtsp, port: 554, timeout: 0s}", `cluster "wms": health.timeout: 0s is not positive; leave timeout out for the default`},
		{cluster, "health: {check: rtsp, port: 554, interval: 1500us}", `cluster "wms": health.interval: 1500us is not a whole number of milliseconds`},
		{cluster, "health: {check: rtsp, port: 554, rise: 0}", `cluster "wms": health.rise: 0 is not at least 1; leave rise out for the default`},
		{cluster, "health: {check: rtsp, port: 554, fall: -1}", `cluster "wms": health.fall: -1 is negative`},
		{cluster, "health: {check: rtsp, port: \"554\"}", `cluster "wms": health.port: must be a number, not the string "554"`},
		{cluster, "health: {check: rtsp, port: 554, describe: \"yes\"}", `cluster "wms": health.describe: must be true or false, not the string "yes"`},
		{cluster, "health: {check: exec, command: /bin/true}", `cluster "wms": health.command: must be a list, not the string "/bin/true"`},
		{cluster, "health: {check: exec, command: [/bin/sleep, 1]}", `cluster "wms": health.command[1]: must be a string, not the number 1`},
		{cluster, "health: {check: 3}", `cluster "wms": health.check: must be a string, not the number 3`},
		{real1, "  - {address: 198.51.100.2, weight: 100, health: {check: tcp, prot: 1755}}", `cluster "wms": reals[1].health.prot: unknown field`},
		{real1, "  - {address: 198.51.100.2, weight: 100, health: tcp}", `cluster "wms": reals[1].health: must be a mapping, not the string "tcp"`},
		{real2, "  - {address: 198.51.100.3, weight: 100, drained: 1}", `cluster "wms": reals[2].drained: must be true or false, not the number 1`},
		{"removeGrace: 1m0s", "removeGrace: 60", `cluster "wms": removeGrace: must be a duration with its unit like 60s, or 0s to remove at once, not the number 60`},
		{"removeGrace: 1m0s", "removeGrace: -1s", `cluster "wms": removeGrace: -1s is negative (0s removes at once)`},
		{"removeGrace: 1m0s", "removeGrace: soon", `cluster "wms": removeGrace: "soon" is not a duration (e.g. 60s or 5m, or 0s to remove at once)`},
		{"removeGrace: 1m0s", "removeGrace: 1.5ms", `cluster "wms": removeGrace: 1.5ms is not a whole number of milliseconds`},
		{"removeGrace: 1m0s", "removeGrace: 2000h", `cluster "wms": removeGrace: 2000h is too long`},
	}
	for _, tt := range tests {
		t.Run(tt.new, func(t *testing.T) {
			if !strings.Contains(healthCluster, tt.old) {
				t.Fatalf("test bug: %q not in the manifest", tt.old)
			}
			_, err := Parse([]byte(strings.Replace(healthCluster, tt.old, tt.new, 1)))
			if !errors.Is(err, validate.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}

// TestDrainedIsStored: a manifest is the whole truth: leaving drained out clears it.
func TestDrainedIsStored(t *testing.T) {
	objs, err := Parse([]byte(strings.Replace(healthCluster, ", drained: true", "", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetCluster().GetReals()[2].GetDrained() {
		t.Error("a real without drained: true was read as drained")
	}
	objs, err = Parse([]byte(strings.Replace(healthCluster, ", drained: true", ", drained: false", 1)))
	if err != nil || objs[0].GetCluster().GetReals()[2].GetDrained() {
		t.Errorf("drained: false: %v, %v", err, objs)
	}
}

func TestHealthText(t *testing.T) {
	for _, tt := range []struct {
		h    *lvsctlv1.HealthCheck
		want string
	}{
		{nil, "none"},
		{healthClusterObject().GetCluster().GetHealth(), "{check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}"},
		{&lvsctlv1.HealthCheck{Check: "http", Port: 80, Path: "/", Expect: "200"}, `{check: http, port: 80, path: "/", expect: "200"}`},
		{&lvsctlv1.HealthCheck{Check: "exec", Command: []string{"/bin/check", "a b"}}, `{check: exec, command: ["/bin/check", "a b"]}`},
	} {
		if got := HealthText(tt.h); got != tt.want {
			t.Errorf("HealthText(%v) = %s, want %s", tt.h, got, tt.want)
		}
	}
}

// TestScalarFastPaths: the words and durations written without asking the YAML parser read
// back as the same strings.
func TestScalarFastPaths(t *testing.T) {
	for _, s := range []string{"tcp", "http", "https", "rtsp", "udp", "exec", "none", "reply", "1s", "1.5s", "1m0s", "100ms", "24h0m0s", "0s", "2h"} {
		got := scalar(s)
		if got != s {
			t.Errorf("scalar(%q) = %s, want it plain", s, got)
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte("k: "+got), &m); err != nil || m["k"] != s {
			t.Errorf("%q reads back as %#v (%v)", s, m["k"], err)
		}
	}
	for _, s := range []string{"0", "1e3", "1", "yes"} {
		if got := scalar(s); got != `"`+s+`"` {
			t.Errorf("scalar(%q) = %s, want it quoted", s, got)
		}
	}
}

package manifest

import (
	"errors"
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func readWMS(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../deploy/examples/wms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wmsObjects is the WMS example as the controller should receive it, defaults included.
func wmsObjects() []*lvsctlv1.Object {
	tcp, udp := lvsctlv1.Protocol_PROTOCOL_TCP, lvsctlv1.Protocol_PROTOCOL_UDP
	return []*lvsctlv1.Object{
		{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"},
			Ports: []*lvsctlv1.PortRange{
				{Protocol: tcp, First: 554, Last: 554}, {Protocol: udp, First: 554, Last: 554},
				{Protocol: tcp, First: 1755, Last: 1755}, {Protocol: udp, First: 1755, Last: 1755},
				{Protocol: udp, First: 1024, Last: 5000},
			},
			Scheduler:   "wlc",
			Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600},
			Forwarding:  lvsctlv1.Forwarding_FORWARDING_MASQ,
			Reals: []*lvsctlv1.RealServer{
				{Address: "198.51.100.1", Weight: 100}, {Address: "198.51.100.2", Weight: 100}, {Address: "198.51.100.3", Weight: 100},
			},
		}}},
		{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
			Name: "edge-1", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}}, VipInterface: "eth0",
		}}},
	}
}

func equalObjects(t *testing.T, got, want []*lvsctlv1.Object) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d objects, want %d: %v", len(got), len(want), got)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("object %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestParseWMS(t *testing.T) {
	objs, err := Parse(readWMS(t))
	if err != nil {
		t.Fatal(err)
	}
	equalObjects(t, objs, wmsObjects())
}

func TestParseDefaults(t *testing.T) {
	objs, err := Parse([]byte(`
kind: Cluster
name: min
directorGroup: g
vips: [192.0.2.10]
ports: [{protocol: tcp, ports: 80}]
reals: [{address: 198.51.100.1}, {address: 198.51.100.2, weight: 0}]
---
kind: DirectorGroup
name: g
directors: [{name: dir-a}]
vipInterface: eth0
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []*lvsctlv1.Object{
		{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: "min", DirectorGroup: "g", Vips: []string{"192.0.2.10"},
			Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 80, Last: 80}},
			Scheduler:  "wlc",
			Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
			Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}, {Address: "198.51.100.2", Weight: 0}},
		}}},
		{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
			Name: "g", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 100}}, VipInterface: "eth0",
		}}},
	}
	equalObjects(t, objs, want)
}

// TestRoundTrip proves that what get prints, apply reads back to the same object.
func TestRoundTrip(t *testing.T) {
	objs := wmsObjects()
	c := objs[0].GetCluster()
	c.Fwmark, c.Revision = 7, 42
	c.Persistence.NetmaskBits = 24
	c.Reals[2].Weight = 0
	g := objs[1].GetGroup()
	g.Directors = append(g.Directors, &lvsctlv1.Director{Name: "dir-b", Priority: 100})
	g.Gateway = &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}
	g.Sync = &lvsctlv1.Sync{Interface: "eth1", SyncId: 7}
	g.Revision = 41
	v6 := &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "v6", DirectorGroup: "true", Vips: []string{"2001:db8::10"},
		Ports:     []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_SCTP, First: 9, Last: 9}},
		Scheduler: "mh", Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL,
	}}}
	objs = append(objs, v6)
	for _, f := range []Format{YAML, JSON} {
		t.Run(string(f), func(t *testing.T) {
			for _, set := range [][]*lvsctlv1.Object{objs, objs[:1]} {
				out, err := Marshal(set, f)
				if err != nil {
					t.Fatal(err)
				}
				back, err := Parse(out)
				if err != nil {
					t.Fatalf("parse of\n%s: %v", out, err)
				}
				equalObjects(t, back, set)
			}
		})
	}
}

func TestMarshalYAML(t *testing.T) {
	objs := wmsObjects()
	objs[0].GetCluster().Fwmark = 3
	objs[0].GetCluster().Revision = 12
	out, err := Marshal(objs, YAML)
	if err != nil {
		t.Fatal(err)
	}
	want := `kind: Cluster
name: wms
directorGroup: edge-1
vips: [192.0.2.10]
ports:
  - {protocol: tcp, port: 554}
  - {protocol: udp, port: 554}
  - {protocol: tcp, port: 1755}
  - {protocol: udp, port: 1755}
  - {protocol: udp, ports: 1024-5000}
scheduler: wlc
persistence: {timeout: 600s}
forwarding: masq
reals:
  - {address: 198.51.100.1, weight: 100}
  - {address: 198.51.100.2, weight: 100}
  - {address: 198.51.100.3, weight: 100}
fwmark: 3
revision: 12
---
kind: DirectorGroup
name: edge-1
directors:
  - {name: dir-a, priority: 200}
vipInterface: eth0
`
	if string(out) != want {
		t.Errorf("got:\n%s\nwant:\n%s", out, want)
	}
	if _, err := Marshal(objs, "xml"); err == nil {
		t.Error("format xml accepted")
	}
}

func TestScalar(t *testing.T) {
	tests := []struct{ in, want string }{
		{"wms", "wms"},
		{"192.0.2.10", "192.0.2.10"},
		{"198.51.100.254/24", "198.51.100.254/24"},
		{"1024-5000", "1024-5000"},
		{"2001:db8::1", `"2001:db8::1"`}, // ':' would end a plain scalar in flow context
		{"true", `"true"`},               // would read back as a boolean
		{"no", `"no"`},                   // YAML 1.1 boolean
		{"null", `"null"`},
		{"123", `"123"`},
		{"1e3", `"1e3"`},
		{"", `""`},
		{"a b", `"a b"`},
		{"x, y", `"x, y"`},
		{"-x", `"-x"`},
	}
	for _, tt := range tests {
		if got := scalar(tt.in); got != tt.want {
			t.Errorf("scalar(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseDocuments(t *testing.T) {
	const group = "kind: DirectorGroup\nname: g%s\ndirectors: [{name: d%s, priority: 1}]\nvipInterface: eth0\n"
	g := func(n string) string { return strings.ReplaceAll(group, "%s", n) }
	tests := []struct {
		name  string
		input string
		names []string
	}{
		{"leading separator and comments", "# header\n---\n" + g("1") + "--- # second\n" + g("2"), []string{"g1", "g2"}},
		{"empty documents", "---\n---\n" + g("1") + "---\n\n---\n" + g("2") + "---\n", []string{"g1", "g2"}},
		{"json object", `{"kind": "DirectorGroup", "name": "g1", "directors": [{"name": "d1", "priority": 1}], "vipInterface": "eth0"}`, []string{"g1"}},
		{"json array", `[{"kind": "DirectorGroup", "name": "g1", "directors": [], "vipInterface": "eth0"},
			{"kind": "DirectorGroup", "name": "g2", "directors": [], "vipInterface": "eth0"}]`, []string{"g1", "g2"}},
		{"json stream", `{"kind": "DirectorGroup", "name": "g1", "vipInterface": "eth0"}
			{"kind": "DirectorGroup", "name": "g2", "vipInterface": "eth0"}`, []string{"g1", "g2"}},
		{"yaml list", "- " + strings.ReplaceAll(strings.TrimSpace(g("1")), "\n", "\n  ") + "\n", []string{"g1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Parse([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, o := range objs {
				names = append(names, o.GetGroup().GetName())
			}
			if strings.Join(names, ",") != strings.Join(tt.names, ",") {
				t.Errorf("got %v, want %v", names, tt.names)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		is    error
		want  string // the whole error text
	}{
		{"empty", "", ErrEmpty, "manifest holds no objects"},
		{"only comments", "# nothing\n---\n# here\n", ErrEmpty, "manifest holds no objects"},
		{"not a mapping", "just a string\n", validate.ErrInvalid, `document 1: must be a mapping with kind and name, not the string "just a string"`},
		{"kind not a string", "kind: 3\nname: x\n", validate.ErrInvalid, `document 1: kind: unknown kind the number 3 (want Cluster or DirectorGroup)`},
		{"name not a string", "kind: Cluster\nname: [a]\n", validate.ErrInvalid,
			"document 1 (Cluster): name: must be a string, not a list\ndocument 1 (Cluster): name: required"},
		{"errors of several documents", "kind: DirectorGroup\nname: a\nvipInterface: eth0\nextra: 1\n---\nkind: Cluster\n", validate.ErrInvalid,
			"group \"a\": extra: unknown field\ndocument 2 (Cluster): name: required"},
		{"json unknown field", `{"kind": "Cluster", "name": "x", "reals": [{"address": "198.51.100.1", "prot": 80}]}`, validate.ErrInvalid,
			`cluster "x": reals[0].prot: unknown field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.input))
			if !errors.Is(err, tt.is) {
				t.Fatalf("error %v does not match %v", err, tt.is)
			}
			if err.Error() != tt.want {
				t.Errorf("got:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, input, prefix string
	}{
		{"bad yaml in document 2", "kind: DirectorGroup\nname: a\n---\nkind: Cluster\nname: [x\n", "document 2 (starting at line 4): "},
		{"duplicate key", "kind: Cluster\nname: a\nname: b\n", "document 1 (starting at line 1): "},
		{"bad json", `{"kind": "Cluster",}`, "document 1: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.input))
			if err == nil || !strings.HasPrefix(err.Error(), tt.prefix) {
				t.Fatalf("got %v, want prefix %q", err, tt.prefix)
			}
		})
	}
}

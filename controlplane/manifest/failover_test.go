package manifest

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// issueGroup is the two-director group exactly as issue 7 writes it: other tools rely on
// this shape.
const issueGroup = `kind: DirectorGroup
name: edge-1
directors:
  - {name: dir-a, priority: 200, address: 198.51.100.252}
  - {name: dir-b, priority: 100, address: 198.51.100.253}
vipInterface: eth0
gateway: {address: 198.51.100.254/24, interface: eth1}
sync: {interface: eth1, syncId: 7}
`

func issueGroupObject() *lvsctlv1.Object {
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
		Name: "edge-1",
		Directors: []*lvsctlv1.Director{
			{Name: "dir-a", Priority: 200, Address: "198.51.100.252"},
			{Name: "dir-b", Priority: 100, Address: "198.51.100.253"},
		},
		VipInterface: "eth0",
		Gateway:      &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"},
		Sync:         &lvsctlv1.Sync{Interface: "eth1", SyncId: 7},
	}}}
}

// TestIssueGroup: the issue's manifest parses to the expected group, and get -o yaml prints
// it back byte for byte.
func TestIssueGroup(t *testing.T) {
	objs, err := Parse([]byte(issueGroup))
	if err != nil {
		t.Fatal(err)
	}
	equalObjects(t, objs, []*lvsctlv1.Object{issueGroupObject()})
	out, err := Marshal(objs, YAML)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != issueGroup {
		t.Errorf("marshalled:\n%s\nwant:\n%s", out, issueGroup)
	}
}

func TestFailoverSettings(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       *lvsctlv1.Failover
		// marshalled is the failover line get -o yaml prints.
		marshalled string
	}{
		{"all set", `{heartbeatInterval: 100ms, deadAfter: 300ms, fenceTime: 300ms, preempt: false, port: 7140}`,
			&lvsctlv1.Failover{HeartbeatIntervalMs: 100, DeadAfterMs: 300, FenceMs: 300, Port: 7140},
			"failover: {heartbeatInterval: 100ms, deadAfter: 300ms, fenceTime: 300ms, port: 7140}"},
		{"fractions of a second and preempt", `{heartbeatInterval: 0.05s, deadAfter: 0.3s, fenceTime: 1.5s, preempt: true}`,
			&lvsctlv1.Failover{HeartbeatIntervalMs: 50, DeadAfterMs: 300, FenceMs: 1500, Preempt: true},
			"failover: {heartbeatInterval: 50ms, deadAfter: 300ms, fenceTime: 1.5s, preempt: true}"},
		{"a minute", `{fenceTime: 1m}`, &lvsctlv1.Failover{FenceMs: 60000}, "failover: {fenceTime: 1m0s}"},
		{"empty takes every default", `{}`, &lvsctlv1.Failover{}, "failover: {}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := Parse([]byte(issueGroup + "failover: " + tt.yaml + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			want := issueGroupObject()
			want.GetGroup().Failover = tt.want
			equalObjects(t, objs, []*lvsctlv1.Object{want})
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
				if f == YAML && !strings.HasSuffix(string(out), "\n"+tt.marshalled+"\n") {
					t.Errorf("yaml:\n%s\nwant it to end with %s", out, tt.marshalled)
				}
			}
		})
	}
}

func TestFailoverParseErrors(t *testing.T) {
	tests := []struct{ failover, want string }{
		{`{heartbeatInterval: 100}`, `group "edge-1": failover.heartbeatInterval: must be a duration with its unit like 100ms or 0.3s, not the number 100`},
		{`{deadAfter: soon}`, `group "edge-1": failover.deadAfter: "soon" is not a duration (e.g. 100ms or 0.3s)`},
		{`{fenceTime: 0s}`, `group "edge-1": failover.fenceTime: 0s is not positive; leave fenceTime out for the default`},
		{`{fenceTime: 1500us}`, `group "edge-1": failover.fenceTime: 1500us is not a whole number of milliseconds`},
		{`{preempt: "yes"}`, `group "edge-1": failover.preempt: must be true or false, not the string "yes"`},
		{`{port: -1}`, `group "edge-1": failover.port: -1 is negative`},
		{`{advertInt: 1}`, `group "edge-1": failover.advertInt: unknown field`},
		{`100ms`, `group "edge-1": failover: must be a mapping, not the string "100ms"`},
	}
	for _, tt := range tests {
		t.Run(tt.failover, func(t *testing.T) {
			_, err := Parse([]byte(issueGroup + "failover: " + tt.failover + "\n"))
			if !errors.Is(err, validate.ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
	_, err := Parse([]byte(strings.Replace(issueGroup, "address: 198.51.100.253", "address: 7", 1)))
	if err == nil || err.Error() != `group "edge-1": directors[1].address: must be a string, not the number 7` {
		t.Errorf("numeric address: got %v", err)
	}
}

// TestExampleGroup: the example an operator copies is the issue's group.
func TestExampleGroup(t *testing.T) {
	b, err := os.ReadFile("../../deploy/examples/edge-1-ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	equalObjects(t, objs, []*lvsctlv1.Object{issueGroupObject()})
}

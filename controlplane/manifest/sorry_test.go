package manifest

import (
	"strings"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestSorryServerRoundTrip: issue 12's sorry server is read as written, and get prints it
// back in YAML and JSON so that re-applying it changes nothing.
func TestSorryServerRoundTrip(t *testing.T) {
	text := serviceYAML + "sorryServer: {address: 198.51.100.9, port: 8080}\n"
	objs, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	got := objs[0].GetCluster().GetSorryServer()
	if got.GetAddress() != "198.51.100.9" || got.GetPort() != 8080 {
		t.Fatalf("sorry server read as %v", got)
	}
	out, err := Marshal(objs, YAML)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != text {
		t.Errorf("got:\n%s\nwant:\n%s", out, text)
	}
	fw := []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"},
		Ports:     []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 554, Last: 554}},
		Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE,
		Reals:       []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
		SorryServer: &lvsctlv1.SorryServer{Address: "198.51.100.9"},
	}}}}
	for _, f := range []Format{YAML, JSON} {
		for _, o := range [][]*lvsctlv1.Object{objs, fw} {
			out, err := Marshal(o, f)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("parse of\n%s: %v", out, err)
			}
			equalObjects(t, back, o)
		}
	}
}

func TestSorryServerParseErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"sorryServer: 198.51.100.9", `cluster "web": sorryServer: must be a mapping, not the string "198.51.100.9"`},
		{"sorryServer: {address: 198.51.100.9, weight: 5}", `cluster "web": sorryServer.weight: unknown field`},
		{"sorryServer: {address: 198.51.100.9, port: -1}", `cluster "web": sorryServer.port: -1 is negative`},
		{"sorryServer: {address: 198.51.100.9, port: 80.5}", `cluster "web": sorryServer.port: 80.5 is not a plain decimal integer (it has a fraction or an exponent)`},
		{"sorryServer: {address: [198.51.100.9]}", `cluster "web": sorryServer.address: must be a string, not a list`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			text := "kind: Cluster\nname: web\ndirectorGroup: edge-1\n" + tt.text + "\n"
			_, err := Parse([]byte(text))
			if err == nil {
				t.Fatalf("accepted:\n%s", text)
			}
			if !strings.Contains("\n"+err.Error()+"\n", "\n"+tt.want+"\n") {
				t.Errorf("error:\n%v\nwant a line:\n%s", err, tt.want)
			}
		})
	}
}

package manifest

import (
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// tunnelYAML is a gue tunnel as an operator writes it; get prints it back unchanged.
const tunnelYAML = `kind: Cluster
name: web
directorGroup: edge-1
service: {address: 192.0.2.20, protocol: tcp, port: 80}
scheduler: wlc
forwarding: tunnel
tunnel: {type: gue, port: 6080, checksum: remcsum}
reals:
  - {address: 198.51.100.5, weight: 1}
`

func TestParseTunnel(t *testing.T) {
	objs, err := Parse([]byte(tunnelYAML))
	if err != nil {
		t.Fatal(err)
	}
	want := []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "web", DirectorGroup: "edge-1",
		Service:    &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
		Scheduler:  "wlc",
		Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL,
		Tunnel: &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GUE, Port: 6080,
			Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM},
		Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.5", Weight: 1}},
	}}}}
	equalObjects(t, objs, want)
	out, err := Marshal(objs, YAML)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != tunnelYAML {
		t.Errorf("got:\n%s\nwant:\n%s", out, tunnelYAML)
	}
}

// TestTunnelDefaults: a tunnel block without a type is ipip, as the kernel's and ipvsadm's
// default; checksum none is written by leaving it out.
func TestTunnelDefaults(t *testing.T) {
	for text, want := range map[string]*lvsctlv1.Tunnel{
		"tunnel: {}":                          {Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP},
		"tunnel: {checksum: none}":            {Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP},
		"tunnel: {type: gre, checksum: csum}": {Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GRE, Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM},
	} {
		objs, err := Parse([]byte("kind: Cluster\nname: web\ndirectorGroup: edge-1\nforwarding: tunnel\n" + text + "\n"))
		if err != nil {
			t.Fatalf("%s: %v", text, err)
		}
		got := objs[0].GetCluster().GetTunnel()
		if got.GetType() != want.GetType() || got.GetPort() != want.GetPort() || got.GetChecksum() != want.GetChecksum() {
			t.Errorf("%s: got %v, want %v", text, got, want)
		}
	}
}

// TestTunnelRoundTrip: every type and checksum comes back equal from YAML and JSON; a
// tunnel cluster without a block stays without one.
func TestTunnelRoundTrip(t *testing.T) {
	cluster := func(name string, tn *lvsctlv1.Tunnel) *lvsctlv1.Object {
		return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: name, DirectorGroup: "edge-1", Vips: []string{"192.0.2.30"},
			Ports:     []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 80, Last: 80}},
			Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL, Tunnel: tn, Fwmark: 3,
			Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.9", Weight: 1}},
		}}}
	}
	objs := []*lvsctlv1.Object{
		cluster("plain", nil),
		cluster("ipip", &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP}),
		cluster("gue", &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GUE, Port: 6080, Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM}),
		cluster("gre", &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GRE, Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM}),
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

package validate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// tunnelled turns web into a tunnelled service (route's rules for real ports) with the given
// tunnel line.
func tunnelled(t *testing.T, tunnel string) string {
	return editWeb(t, "forwarding: masq", "forwarding: tunnel\n"+tunnel, "port: 8080, ", "")
}

func TestTunnelRefused(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"tunnel without forwarding tunnel", "", `cluster "web": tunnel: set with forwarding masq: only a tunnel has one (set forwarding: tunnel, or leave tunnel out)`},
		{"gue without port", "tunnel: {type: gue}", `cluster "web": tunnel.port: required for gue: the real servers' GUE (fou) port, 1-65535`},
		{"gue port too big", "tunnel: {type: gue, port: 65536}", `cluster "web": tunnel.port: 65536 is out of range 1-65535`},
		{"ipip with port", "tunnel: {type: ipip, port: 6080}", `cluster "web": tunnel.port: set for ipip: only gue has a port`},
		{"default type with port", "tunnel: {port: 6080}", `cluster "web": tunnel.port: set for ipip: only gue has a port`},
		{"gre with port", "tunnel: {type: gre, port: 6080}", `cluster "web": tunnel.port: set for gre: only gue has a port`},
		{"ipip with csum", "tunnel: {type: ipip, checksum: csum}", `cluster "web": tunnel.checksum: csum with ipip: ipip has no checksum option (gue and gre have)`},
		{"gre with remcsum", "tunnel: {type: gre, checksum: remcsum}", `cluster "web": tunnel.checksum: remcsum with gre: remote checksum offload is gue's only (want none or csum)`},
		{"unknown type", "tunnel: {type: vxlan}", `cluster "web": tunnel.type: unknown tunnel type "vxlan" (want ipip, gue or gre)`},
		{"unknown checksum", "tunnel: {type: gue, port: 6080, checksum: crc}", `cluster "web": tunnel.checksum: unknown checksum option "crc" (want none, csum or remcsum)`},
		{"unknown field", "tunnel: {type: gue, port: 6080, ttl: 3}", `cluster "web": tunnel.ttl: unknown field`},
		{"not a mapping", "tunnel: gue", `cluster "web": tunnel: must be a mapping, not the string "gue"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var text string
			if tt.text == "" {
				text = editWeb(t, "forwarding: masq", "forwarding: masq\ntunnel: {type: ipip}")
			} else {
				text = tunnelled(t, tt.text)
			}
			err := check(t, text)
			if err == nil {
				t.Fatalf("accepted; want error %q", tt.want)
			}
			if !errors.Is(err, validate.ErrInvalid) && !strings.Contains(tt.name, "unknown") && tt.name != "not a mapping" {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if lines := strings.Split(err.Error(), "\n"); !contains(lines, tt.want) {
				t.Errorf("error:\n%v\nwant a line:\n%s", err, tt.want)
			}
		})
	}
}

func TestTunnelAccepted(t *testing.T) {
	for _, tunnel := range []string{
		"", // forwarding tunnel alone: ipip
		"tunnel: {}",
		"tunnel: {type: ipip}",
		"tunnel: {type: ipip, checksum: none}",
		"tunnel: {type: gue, port: 6080}",
		"tunnel: {type: gue, port: 1, checksum: csum}",
		"tunnel: {type: gue, port: 65535, checksum: remcsum}",
		"tunnel: {type: gre}",
		"tunnel: {type: gre, checksum: csum}",
	} {
		t.Run(tunnel, func(t *testing.T) {
			if err := check(t, tunnelled(t, tunnel)); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

// TestTunnelRefusedOverAPI: what the manifest cannot say (no type, numbers outside the
// enums) comes from the API alone, and is refused naming the field.
func TestTunnelRefusedOverAPI(t *testing.T) {
	base := func(tn *lvsctlv1.Tunnel) *lvsctlv1.Cluster {
		return &lvsctlv1.Cluster{Name: "web", DirectorGroup: "edge-1",
			Service:   &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
			Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL, Tunnel: tn,
			Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.5", Weight: 1}}}
	}
	tests := []struct {
		tn   *lvsctlv1.Tunnel
		want string
	}{
		{&lvsctlv1.Tunnel{}, `tunnel.type: required (ipip, gue or gre)`},
		{&lvsctlv1.Tunnel{Type: 9}, `tunnel.type: unknown tunnel type 9 (want ipip, gue or gre)`},
		{&lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GUE, Port: 6080, Checksum: 7}, `tunnel.checksum: unknown checksum option 7 (want none, csum or remcsum)`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			err := validate.Object(&lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: base(tt.tn)}})
			if err == nil || !errors.Is(err, validate.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want ErrInvalid with %q", err, tt.want)
			}
		})
	}
	if err := validate.Object(&lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: base(nil)}}); err != nil {
		t.Fatalf("a tunnel cluster without a tunnel block refused: %v", err)
	}
}

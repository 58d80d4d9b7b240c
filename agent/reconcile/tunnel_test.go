package reconcile_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// gueTunnel is a plain TCP service tunnelled to its reals over GUE to port 6080 with remote
// checksum offload (keepalived: lvs_method TUN type gue port 6080 remcsum).
func gueTunnel() *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "tun", DirectorGroup: "edge-1", Scheduler: "rr",
		Service:    &lvsctlv1.VirtualService{Address: "192.0.2.40", Protocol: tcp, Port: 80},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL,
		Tunnel: &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GUE, Port: 6080,
			Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM},
		Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.21", Weight: 1}, {Address: "198.51.100.22", Weight: 1}},
	}
}

// TestTunnelTypes: the cluster's tunnel reaches every destination; a changed tunnel, and a
// kernel edited behind the agent's back (ipvsadm -e ... -i --tun-type ipip), are edits in
// place, never a delete and add; a tunnel cluster without a block is ipip.
func TestTunnelTypes(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(gueTunnel()), active)
	want := "tcp 192.0.2.40:80 -> 198.51.100.21:80 tunnel weight 1 tunnel gue:6080:r+c\n" +
		"tcp 192.0.2.40:80 -> 198.51.100.22:80 tunnel weight 1 tunnel gue:6080:r+c\n"
	if d := e.ipvs.Dump(); !strings.Contains(d, want) {
		t.Errorf("kernel =\n%s\nwant lines\n%s", d, want)
	}

	// Drift: one destination set back to plain ipip by hand.
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.40"), Port: 80}, Scheduler: "rr", NetmaskBits: 32}
	mustDo(t, e.ipvs.UpdateDestination(svc, dataplane.Destination{Address: netip.MustParseAddr("198.51.100.22"), Port: 80, Weight: 1, Forward: dataplane.ForwardTunnel}))
	e.restart(t)
	if ops, want := e.mustClean(t, desired(gueTunnel()), active), []string{"UpdateDestination tcp 192.0.2.40:80 198.51.100.22:80"}; !slices.Equal(ops, want) {
		t.Errorf("drift: ops %q, want %q", ops, want)
	}
	if d := e.ipvs.Dump(); !strings.Contains(d, want) {
		t.Errorf("kernel after the drift was fixed =\n%s", d)
	}

	// gue to gre: both destinations edited in place.
	c := proto.Clone(gueTunnel()).(*lvsctlv1.Cluster)
	c.Tunnel = &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GRE, Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM}
	if ops, want := e.mustClean(t, desired(c), active), []string{"UpdateDestination tcp 192.0.2.40:80 198.51.100.21:80", "UpdateDestination tcp 192.0.2.40:80 198.51.100.22:80"}; !slices.Equal(ops, want) {
		t.Errorf("gue to gre: ops %q, want %q", ops, want)
	}
	if d := e.ipvs.Dump(); !strings.Contains(d, "198.51.100.21:80 tunnel weight 1 tunnel gre:+c\n") {
		t.Errorf("kernel after gre =\n%s", d)
	}

	// The block removed: ipip, the kernel's default, which the dump shows without a tunnel.
	c = proto.Clone(c).(*lvsctlv1.Cluster)
	c.Tunnel = nil
	if ops := e.mustClean(t, desired(c), active); len(ops) != 2 {
		t.Errorf("gre to ipip: ops %q, want 2 destination updates", ops)
	}
	if d := e.ipvs.Dump(); !strings.Contains(d, "198.51.100.21:80 tunnel weight 1\n") {
		t.Errorf("kernel after ipip =\n%s", d)
	}
}

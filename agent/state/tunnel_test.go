package state

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestDesiredTunnel: a cluster's tunnel survives a restart; one without a tunnel block is
// stored in the same bytes as before Cluster.tunnel existed (field 18 absent), so an older
// agent reads it as it wrote it.
func TestDesiredTunnel(t *testing.T) {
	cluster := func(tn *lvsctlv1.Tunnel) *lvsctlv1.DesiredState {
		return &lvsctlv1.DesiredState{Clusters: []*lvsctlv1.Cluster{{
			Name: "tun", DirectorGroup: "edge-1", Scheduler: "rr",
			Service:    &lvsctlv1.VirtualService{Address: "192.0.2.40", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
			Forwarding: lvsctlv1.Forwarding_FORWARDING_TUNNEL, Tunnel: tn,
			Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
		}}}
	}
	gue := cluster(&lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GUE, Port: 6080, Checksum: lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM})
	dir := t.TempDir()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetDesired(Desired{Revision: 7, State: gue}); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := got.Desired(); !ok || !proto.Equal(d.State, gue) {
		t.Errorf("reloaded desired state %v, want %v", d.State, gue)
	}

	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(cluster(nil))
	if err != nil {
		t.Fatal(err)
	}
	withTunnel, err := proto.MarshalOptions{Deterministic: true}.Marshal(gue)
	if err != nil {
		t.Fatal(err)
	}
	// Cluster.tunnel is field 18, length-delimited: tag bytes 0x92 0x01.
	if bytes.Contains(plain, []byte{0x92, 0x01}) || !bytes.Contains(withTunnel, []byte{0x92, 0x01}) {
		t.Errorf("field 18 in the bytes without a tunnel (%x) or missing with one (%x)", plain, withTunnel)
	}
}

package dataplane_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func TestServiceKeyString(t *testing.T) {
	for want, k := range map[string]dataplane.ServiceKey{
		"fwm 7 ipv4":           {Family: dataplane.IPv4, FWMark: 7},
		"fwm 7 ipv6":           {Family: dataplane.IPv6, FWMark: 7},
		"tcp 192.0.2.20:80":    {Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80},
		"udp [2001:db8::1]:53": {Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: netip.MustParseAddr("2001:db8::1"), Port: 53},
		"sctp 192.0.2.21:0":    {Family: dataplane.IPv4, Protocol: dataplane.SCTP, Address: netip.MustParseAddr("192.0.2.21")},
	} {
		if got := k.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", k, got, want)
		}
	}
}

func TestServiceKeyCompare(t *testing.T) {
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	want := []dataplane.ServiceKey{
		{Family: dataplane.IPv4, FWMark: 1},
		{Family: dataplane.IPv4, FWMark: 16},
		{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: a("192.0.2.20"), Port: 80},
		{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: a("192.0.2.20"), Port: 443},
		{Family: dataplane.IPv4, Protocol: dataplane.UDP, Address: a("192.0.2.20"), Port: 53},
		{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: a("192.0.2.21"), Port: 80},
		{Family: dataplane.IPv6, FWMark: 1},
		{Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: a("2001:db8::1"), Port: 53},
	}
	got := slices.Clone(want)
	slices.Reverse(got)
	slices.SortFunc(got, dataplane.ServiceKey.Compare)
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %v, want %v", got, want)
	}
	for i, k := range want {
		if k.Compare(k) != 0 || (i > 0 && want[i-1].Compare(k) >= 0) {
			t.Errorf("Compare is not a strict order at %v", k)
		}
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		name string
		c    *lvsctlv1.Cluster
		want dataplane.ServiceKey
		ok   bool
	}{
		{"fwmark", &lvsctlv1.Cluster{Vips: []string{"2001:db8::10"}, Fwmark: 16}, dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 16}, true},
		{"fwmark 0", &lvsctlv1.Cluster{Vips: []string{"192.0.2.10"}}, dataplane.ServiceKey{}, false},
		{"no vips", &lvsctlv1.Cluster{Fwmark: 16}, dataplane.ServiceKey{}, false},
		{"plain", &lvsctlv1.Cluster{Service: &lvsctlv1.VirtualService{Address: "::ffff:192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80}},
			dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80}, true},
		{"plain without protocol", &lvsctlv1.Cluster{Service: &lvsctlv1.VirtualService{Address: "192.0.2.20", Port: 80}}, dataplane.ServiceKey{}, false},
		{"plain with a port above 65535", &lvsctlv1.Cluster{Service: &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, Port: 65536}}, dataplane.ServiceKey{}, false},
		{"plain, bad address", &lvsctlv1.Cluster{Service: &lvsctlv1.VirtualService{Address: "web", Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, Port: 53}}, dataplane.ServiceKey{}, false},
	}
	for _, tt := range tests {
		got, ok := dataplane.KeyOf(tt.c)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: KeyOf = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

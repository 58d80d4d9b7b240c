package dataplane

import (
	"net/netip"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// ProtocolOf maps a cluster's protocol to the IP protocol; false for an unspecified or
// unknown one.
func ProtocolOf(p lvsctlv1.Protocol) (Protocol, bool) {
	switch p {
	case lvsctlv1.Protocol_PROTOCOL_TCP:
		return TCP, true
	case lvsctlv1.Protocol_PROTOCOL_UDP:
		return UDP, true
	case lvsctlv1.Protocol_PROTOCOL_SCTP:
		return SCTP, true
	}
	return 0, false
}

// KeyOf is the key of the IPVS service cluster c becomes, without checking the rest of it
// (package reconcile translates and checks the whole cluster): for a plain service
// (c.service set) its address's family, protocol, address and port; for a firewall-mark one
// its first VIP's family and its mark. False when c names neither well enough to find it.
// The stats, the health checks and the state's adoption all find a cluster's service by it.
func KeyOf(c *lvsctlv1.Cluster) (ServiceKey, bool) {
	if vs := c.GetService(); vs != nil {
		a, err := netip.ParseAddr(vs.GetAddress())
		proto, ok := ProtocolOf(vs.GetProtocol())
		if err != nil || !ok || vs.GetPort() > 65535 {
			return ServiceKey{}, false
		}
		a = a.Unmap()
		return ServiceKey{Family: FamilyOf(a), Protocol: proto, Address: a, Port: uint16(vs.GetPort())}, true
	}
	if len(c.GetVips()) == 0 || c.GetFwmark() == 0 {
		return ServiceKey{}, false
	}
	a, err := netip.ParseAddr(c.GetVips()[0])
	if err != nil {
		return ServiceKey{}, false
	}
	return ServiceKey{Family: FamilyOf(a.Unmap()), FWMark: c.GetFwmark()}, true
}

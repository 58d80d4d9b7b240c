package validate

import (
	"net/netip"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// checkSorry checks the cluster's sorry server as a real server is checked (it becomes one of
// the service's destinations while in use): an address of the service's family, neither a
// VIP nor one of the cluster's real servers (the agent adds and removes it on its own, and
// IPVS has one destination per address and port), and a port by the same rules as a real
// server's. fam is the service's family ("" when unknown), vips and svcAddr its addresses,
// reals the real servers' addresses.
func checkSorry(c *collector, cl *lvsctlv1.Cluster, fam string, vips map[netip.Addr]int, svcAddr netip.Addr, reals map[netip.Addr]int) {
	s := cl.GetSorryServer()
	if s == nil {
		return
	}
	const path = "sorryServer.address"
	a, reason := serviceAddr(s.GetAddress())
	switch {
	case s.GetAddress() == "":
		c.add(path, "required (or leave sorryServer out)")
	case reason != "":
		c.add(path, "%s", reason)
	case fam != "" && family(a) != fam:
		c.add(path, "%s is %s but the cluster's service is %s (one IPVS service has one address family)", a, family(a), fam)
	default:
		if j, isReal := reals[a]; isReal {
			c.add(path, "%s is one of the cluster's real servers (reals[%d]): a sorry server takes over when they are all down", a, j)
		} else if j, isVIP := vips[a]; isVIP {
			c.add(path, "%s is the cluster's VIP (vips[%d])", a, j)
		} else if a == svcAddr {
			c.add(path, "%s is the cluster's VIP (service.address)", a)
		}
	}
	port := s.GetPort()
	if port == 0 {
		return
	}
	const portPath = "sorryServer.port"
	svc := cl.GetService()
	switch {
	case port > MaxPort:
		c.add(portPath, "%d is out of range 1-%d", port, MaxPort)
	case svc == nil:
		c.add(portPath, "%d is set on a fwmark cluster, which keeps the port the client asked for (leave it out)", port)
	case svc.GetPort() == 0:
		c.add(portPath, "%d is set on a service of every port (service.port 0), which keeps the port the client asked for (leave it out)", port)
	case port != svc.GetPort() && cl.GetForwarding() != lvsctlv1.Forwarding_FORWARDING_MASQ:
		c.add(portPath, "%d differs from service.port %d: only masq (NAT) rewrites the port; route and tunnel forward the packet as it came", port, svc.GetPort())
	}
}

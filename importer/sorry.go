package importer

import (
	"net/netip"
	"strconv"
	"strings"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// kaSorry is what a virtual_server says of its sorry server, gathered while its settings are
// read and carried over once the forwarding and the real servers are known.
type kaSorry struct {
	server, inhibit, method *node
}

// take records s when it is a sorry server setting.
func (s *kaSorry) take(n *node) bool {
	switch n.key {
	case "sorry_server":
		s.server = n
	case "sorry_server_inhibit":
		s.inhibit = n
	case "sorry_server_lvs_method":
		s.method = n
	default:
		return false
	}
	return true
}

// carry sets c's sorry server from keepalived's settings (c's forwarding and reals read):
//   - sorry_server IP [PORT]: carried; the port as a real server's (masq on a plain service
//     only), else warned;
//   - sorry_server_inhibit: warned: lvsctl deletes the sorry server when a real server is
//     back, and its connections stay anyway (a deleted IPVS destination keeps them);
//   - sorry_server_lvs_method: carried when it is the cluster's lb_kind (lvsctl gives the
//     sorry server the cluster's forwarding), else warned.
func (s *kaSorry) carry(k *kaImport, c *lvsctlv1.Cluster, t vsTarget, plain bool, what string) {
	if s.inhibit != nil {
		k.res.warn(s.inhibit.file, s.inhibit.line, "%s: sorry_server_inhibit: not carried over: lvsctl deletes the sorry server once a real server is back, and its established connections stay until they end (IPVS keeps a deleted destination's connections)", what)
	}
	n := s.server
	if n == nil {
		if s.method != nil {
			k.res.warn(s.method.file, s.method.line, "%s: sorry_server_lvs_method without sorry_server: nothing to carry over", what)
		}
		return
	}
	if len(n.args) == 0 {
		k.res.warn(n.file, n.line, "%s: sorry_server without an address: not carried over", what)
		return
	}
	a, err := netip.ParseAddr(n.args[0])
	if err != nil {
		k.res.warn(n.file, n.line, "%s: sorry_server %q is not an address: not carried over", what, n.args[0])
		return
	}
	a = a.Unmap()
	var port uint32
	if len(n.args) > 1 {
		p, err := strconv.ParseUint(n.args[1], 10, 16)
		if err != nil {
			k.res.warn(n.file, n.line, "%s: sorry_server %s: port %q is not a port: not carried over", what, a, n.args[1])
			return
		}
		port = uint32(p)
	}
	family := netip.Addr{}
	switch {
	case plain:
		family = t.addr
	case len(c.Reals) > 0:
		family, _ = netip.ParseAddr(c.Reals[0].Address)
	}
	if family.IsValid() && family.Is4() != a.Is4() {
		// keepalived skips it too ("Address family of virtual server and sorry server ...
		// don't match - skipping sorry server").
		k.res.warn(n.file, n.line, "%s: sorry_server %s is not of the service's address family: not carried over (keepalived skips it too)", what, a)
		return
	}
	for _, r := range c.Reals {
		if r.Address == a.String() {
			k.res.warn(n.file, n.line, "%s: sorry_server %s is also a real_server: not carried over (lvsctl's sorry server is none of the cluster's real servers)", what, a)
			return
		}
	}
	if plain && a == t.addr {
		k.res.warn(n.file, n.line, "%s: sorry_server %s is the service's own address: not carried over", what, a)
		return
	}
	if s.method != nil {
		m := strings.ToUpper(firstArg(s.method))
		if m != lbKinds[c.Forwarding] {
			k.res.warn(s.method.file, s.method.line, "%s: sorry_server_lvs_method %s: lvsctl's sorry server has the cluster's forwarding (lb_kind %s): not carried over", what, firstArg(s.method), lbKinds[c.Forwarding])
		}
	}
	sorry := &lvsctlv1.SorryServer{Address: a.String()}
	switch {
	case port == 0:
	case !plain:
		k.res.warn(n.file, n.line, "%s: sorry_server %s %d: lvsctl's fwmark clusters keep the port the client asked for: the port is not carried over", what, a, port)
	case port == t.port:
		// The port the packet has anyway.
	case c.Forwarding == lvsctlv1.Forwarding_FORWARDING_MASQ:
		sorry.Port = port
	case t.port == 0:
		k.res.warn(n.file, n.line, "%s: sorry_server %s %d: a service of every port keeps the port the client asked for: the port is not carried over", what, a, port)
	default:
		k.res.warn(n.file, n.line, "%s: sorry_server %s %d: under %s the packet keeps the service's port %d (only NAT maps ports): the port is not carried over", what, a, port, lbKinds[c.Forwarding], t.port)
	}
	c.SorryServer = sorry
}

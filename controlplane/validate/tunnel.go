package validate

import (
	"fmt"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// tunnelTypeNames and tunnelChecksumNames are the names ipvsadm (--tun-type, --tun-*csum) and
// keepalived (lvs_method TUN type ... nocsum|csum|remcsum) give them, which manifests use.
var (
	tunnelTypeNames = map[lvsctlv1.TunnelType]string{
		lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP: "ipip",
		lvsctlv1.TunnelType_TUNNEL_TYPE_GUE:  "gue",
		lvsctlv1.TunnelType_TUNNEL_TYPE_GRE:  "gre",
	}
	tunnelChecksumNames = map[lvsctlv1.TunnelChecksum]string{
		lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED: "none",
		lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM:        "csum",
		lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM:     "remcsum",
	}
)

// TunnelTypeName is a tunnel type's name (ipip, gue, gre); "" for one lvsctl does not know.
func TunnelTypeName(t lvsctlv1.TunnelType) string { return tunnelTypeNames[t] }

// TunnelChecksumName is a checksum option's name (none, csum, remcsum); "" for an unknown one.
func TunnelChecksumName(c lvsctlv1.TunnelChecksum) string { return tunnelChecksumNames[c] }

// checkTunnel checks cluster.tunnel. The kernel itself refuses only a gue tunnel without a
// port (ip_vs_add_dest/ip_vs_edit_dest: EINVAL) and takes the rest silently: a port or a
// checksum flag on ipip is stored and never used, remcsum on gre likewise. lvsctl refuses
// what keepalived's parser and ipvsadm's tunnel option table refuse, so that nothing is
// written that does not do what it says and every tunnel exports to both tools.
func checkTunnel(c *collector, cl *lvsctlv1.Cluster) {
	t := cl.GetTunnel()
	if t == nil {
		return
	}
	if fw := cl.GetForwarding(); fw != lvsctlv1.Forwarding_FORWARDING_TUNNEL {
		c.add("tunnel", "set with forwarding %s: only a tunnel has one (set forwarding: tunnel, or leave tunnel out)", forwardingName(fw))
		return
	}
	typ := t.GetType()
	name := TunnelTypeName(typ)
	switch {
	case typ == lvsctlv1.TunnelType_TUNNEL_TYPE_UNSPECIFIED:
		c.add("tunnel.type", "required (ipip, gue or gre)")
		return
	case name == "":
		c.add("tunnel.type", "unknown tunnel type %d (want ipip, gue or gre)", int32(typ))
		return
	}
	switch {
	case typ == lvsctlv1.TunnelType_TUNNEL_TYPE_GUE && t.GetPort() == 0:
		c.add("tunnel.port", "required for gue: the real servers' GUE (fou) port, 1-%d", MaxPort)
	case typ == lvsctlv1.TunnelType_TUNNEL_TYPE_GUE && t.GetPort() > MaxPort:
		c.add("tunnel.port", "%d is out of range 1-%d", t.GetPort(), MaxPort)
	case typ != lvsctlv1.TunnelType_TUNNEL_TYPE_GUE && t.GetPort() != 0:
		c.add("tunnel.port", "set for %s: only gue has a port", name)
	}
	sum := t.GetChecksum()
	switch {
	case TunnelChecksumName(sum) == "":
		c.add("tunnel.checksum", "unknown checksum option %d (want none, csum or remcsum)", int32(sum))
	case typ == lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP && sum != lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED:
		c.add("tunnel.checksum", "%s with ipip: ipip has no checksum option (gue and gre have)", TunnelChecksumName(sum))
	case typ == lvsctlv1.TunnelType_TUNNEL_TYPE_GRE && sum == lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM:
		c.add("tunnel.checksum", "remcsum with gre: remote checksum offload is gue's only (want none or csum)")
	}
}

func forwardingName(f lvsctlv1.Forwarding) string {
	switch f {
	case lvsctlv1.Forwarding_FORWARDING_MASQ:
		return "masq"
	case lvsctlv1.Forwarding_FORWARDING_ROUTE:
		return "route"
	case lvsctlv1.Forwarding_FORWARDING_TUNNEL:
		return "tunnel"
	}
	return "unset"
}

// FormatTunnel writes a tunnel as lvsctl shows it: "gue port 6080 csum", "ipip"; "none" for
// none (a tunnel cluster without a block is ipip).
func FormatTunnel(t *lvsctlv1.Tunnel) string {
	if t == nil {
		return "none"
	}
	s := TunnelTypeName(t.GetType())
	if s == "" {
		s = fmt.Sprintf("type(%d)", int32(t.GetType()))
	}
	if t.GetPort() != 0 {
		s += fmt.Sprintf(" port %d", t.GetPort())
	}
	if c := t.GetChecksum(); c != lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED {
		s += " " + TunnelChecksumName(c)
	}
	return s
}

package importer

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// A tunnel's encapsulation is per real server in IPVS (and in ipvsadm and keepalived), per
// cluster in lvsctl, like the forwarding method it belongs to: one cluster is one way of
// reaching its real servers, and every site we know of tunnels all the reals of a service
// alike. An import that finds reals of one service tunnelled differently keeps one way and
// says so with the file and line of each one that differs.

var tunnelTypeByName = map[string]lvsctlv1.TunnelType{
	"ipip": lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP,
	"gue":  lvsctlv1.TunnelType_TUNNEL_TYPE_GUE,
	"gre":  lvsctlv1.TunnelType_TUNNEL_TYPE_GRE,
}

var tunnelChecksumByName = map[string]lvsctlv1.TunnelChecksum{
	"nocsum":  lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED,
	"csum":    lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM,
	"remcsum": lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM,
}

// tunnelOrNil is t, or nil for plain ipip: the default a cluster without a tunnel block has,
// which ipvsadm-save 1.31 still writes (--tun-type ipip) for every tunnelled real server.
func tunnelOrNil(t *lvsctlv1.Tunnel) *lvsctlv1.Tunnel {
	if t == nil || (t.GetType() == lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP && t.GetPort() == 0 && t.GetChecksum() == 0) {
		return nil
	}
	return t
}

// tunnelProblem says what keepalived's parser and ipvsadm refuse of a tunnel ("" when
// nothing), in their words: gue needs a port and only gue has one, ipip has no checksum
// option, gre no remote checksum.
func tunnelProblem(t *lvsctlv1.Tunnel) string {
	gue := t.GetType() == lvsctlv1.TunnelType_TUNNEL_TYPE_GUE
	switch {
	case gue && t.GetPort() == 0:
		return "gue needs a port"
	case !gue && t.GetPort() != 0:
		return "only gue has a port"
	case t.GetType() == lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP && t.GetChecksum() != lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED:
		return "ipip has no checksum option"
	case t.GetType() == lvsctlv1.TunnelType_TUNNEL_TYPE_GRE && t.GetChecksum() == lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM:
		return "gre has no remote checksum"
	}
	return ""
}

// kaMethod is a keepalived lvs_method (lb_kind) line: NAT, DR, or TUN with its tunnel
// options (type ipip|gue|gre, port N, nocsum|csum|remcsum), as svr_forwarding_handler reads it.
type kaMethod struct {
	fwd    lvsctlv1.Forwarding
	tunnel *lvsctlv1.Tunnel
	line   int
}

// parseKaMethod reads an lvs_method line's arguments. problem is why the tunnel options
// were not carried over (the method still is, as keepalived keeps it); ok is false for an
// unknown method.
func parseKaMethod(args []string) (m kaMethod, problem string, ok bool) {
	if len(args) == 0 {
		return m, "", false
	}
	switch strings.ToUpper(args[0]) {
	case "NAT":
		m.fwd = lvsctlv1.Forwarding_FORWARDING_MASQ
	case "DR":
		m.fwd = lvsctlv1.Forwarding_FORWARDING_ROUTE
	case "TUN":
		m.fwd = lvsctlv1.Forwarding_FORWARDING_TUNNEL
	default:
		return m, "", false
	}
	if len(args) == 1 {
		return m, "", true
	}
	if m.fwd != lvsctlv1.Forwarding_FORWARDING_TUNNEL {
		return m, fmt.Sprintf("options %s after %s (tunnel options are TUN's)", strings.Join(args[1:], " "), args[0]), true
	}
	t := &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP}
	for i := 1; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "type" && i+1 < len(args):
			typ, known := tunnelTypeByName[args[i+1]]
			if !known {
				return m, fmt.Sprintf("unknown tunnel type %q (want ipip, gue or gre)", args[i+1]), true
			}
			t.Type = typ
			i++
		case a == "port" && i+1 < len(args):
			p, err := strconv.ParseUint(args[i+1], 10, 16)
			if err != nil || p == 0 {
				return m, fmt.Sprintf("tunnel port %q is not a port", args[i+1]), true
			}
			t.Port = uint32(p)
			i++
		default:
			sum, known := tunnelChecksumByName[a]
			if !known {
				return m, fmt.Sprintf("unknown tunnel option %q", a), true
			}
			t.Checksum = sum
		}
	}
	if p := tunnelProblem(t); p != "" {
		return m, p, true
	}
	m.tunnel = tunnelOrNil(t)
	return m, "", true
}

// methodText writes a forwarding and tunnel as keepalived's lvs_method arguments:
// "TUN type gue port 6080 csum", "DR".
func methodText(fwd lvsctlv1.Forwarding, t *lvsctlv1.Tunnel) string {
	s := lbKinds[fwd]
	if t == nil || fwd != lvsctlv1.Forwarding_FORWARDING_TUNNEL {
		return s
	}
	s += " type " + validate.TunnelTypeName(t.GetType())
	if t.GetPort() != 0 {
		s += fmt.Sprintf(" port %d", t.GetPort())
	}
	if c := t.GetChecksum(); c != lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED {
		s += " " + validate.TunnelChecksumName(c)
	}
	return s
}

// ipvsadmTunnel reads a real server's --tun-type, --tun-port and --tun-*csum options
// (ipvsadm 1.30+); problem says why they were not carried over.
func ipvsadmTunnel(opts map[string]string) (t *lvsctlv1.Tunnel, problem string) {
	typ, hasType := opts["--tun-type"]
	port, hasPort := opts["--tun-port"]
	var sums []string
	for _, o := range []string{"--tun-nocsum", "--tun-csum", "--tun-remcsum"} {
		if _, ok := opts[o]; ok {
			sums = append(sums, o)
		}
	}
	if !hasType && !hasPort && len(sums) == 0 {
		return nil, ""
	}
	t = &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP}
	if hasType {
		known := false
		if t.Type, known = tunnelTypeByName[typ]; !known {
			return nil, fmt.Sprintf("--tun-type %q is not ipip, gue or gre", typ)
		}
	}
	if hasPort {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Sprintf("--tun-port %q is not a port", port)
		}
		t.Port = uint32(p)
	}
	switch {
	case len(sums) > 1:
		return nil, fmt.Sprintf("%s together: one checksum option at most", strings.Join(sums, " "))
	case len(sums) == 1:
		t.Checksum = tunnelChecksumByName[strings.TrimPrefix(sums[0], "--tun-")]
	}
	if p := tunnelProblem(t); p != "" {
		return nil, p
	}
	return tunnelOrNil(t), ""
}

// ipvsadmTunnelOptions writes a tunnel as ipvsadm-save 1.31 does after -i: "--tun-type gue
// --tun-port 6080 --tun-nocsum", "--tun-type gre --tun-nocsum" (the lab's ipvsadm -Sn).
// Nothing without a tunnel block: plain -i is what every ipvsadm restores, older ones too.
func ipvsadmTunnelOptions(t *lvsctlv1.Tunnel) string {
	if t == nil {
		return ""
	}
	s := " --tun-type " + validate.TunnelTypeName(t.GetType())
	if t.GetPort() != 0 {
		s += fmt.Sprintf(" --tun-port %d", t.GetPort())
	}
	switch c := t.GetChecksum(); {
	case c != lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED:
		s += " --tun-" + validate.TunnelChecksumName(c)
	case t.GetType() != lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP:
		s += " --tun-nocsum" // ipvsadm-save writes gue's and gre's checksum option always
	}
	return s
}

// tunnelOr is t, or plain ipip for nil, for a message that names both.
func tunnelOr(t *lvsctlv1.Tunnel) *lvsctlv1.Tunnel {
	if t == nil {
		return &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP}
	}
	return t
}

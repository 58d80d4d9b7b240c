package importer

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// IpvsadmOptions are the choices of `lvsctl import ipvsadm`.
type IpvsadmOptions struct {
	// Group names the director group the clusters belong to (it must exist).
	Group string
	// Marks gives each fwmark service's VIPs and ports.
	Marks Marks
}

// ipvsadmProtocols are ipvsadm's service options of a plain service.
var ipvsadmProtocols = map[string]lvsctlv1.Protocol{
	"-t": lvsctlv1.Protocol_PROTOCOL_TCP, "--tcp-service": lvsctlv1.Protocol_PROTOCOL_TCP,
	"-u": lvsctlv1.Protocol_PROTOCOL_UDP, "--udp-service": lvsctlv1.Protocol_PROTOCOL_UDP,
	"--sctp-service": lvsctlv1.Protocol_PROTOCOL_SCTP,
}

// Ipvsadm imports `ipvsadm-save -n` output: each fwmark service (-A -f N) is a cluster with
// its mark pinned, so traffic keeps its marks during the move; each plain service (-A -t, -u
// or --sctp-service ADDRESS:PORT) a cluster of its own.
func Ipvsadm(file string, data []byte, opt IpvsadmOptions) (*Result, error) {
	res := &Result{}
	type svc struct {
		im      *Imported
		fwdLine int
	}
	svcs := map[string]*svc{}
	var order []string
	for i, text := range strings.Split(string(data), "\n") {
		line := i + 1
		f := strings.Fields(text)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		what := strings.Join(f, " ")
		var add, real bool
		switch f[0] {
		case "-A", "--add-service":
			add = true
		case "-a", "--add-server":
			real = true
		default:
			res.warn(file, line, "%s: not an ipvsadm-save -n line: not imported", what)
			continue
		}
		var mark uint32
		var service *lvsctlv1.VirtualService
		bad := false
		opts := map[string]string{}
		var flags []string
		for j := 1; j < len(f); j++ {
			arg := ""
			if j+1 < len(f) && !strings.HasPrefix(f[j+1], "-") {
				arg = f[j+1]
			}
			if p, ok := ipvsadmProtocols[f[j]]; ok {
				ap, err := netip.ParseAddrPort(arg)
				if err != nil || ap.Addr().Zone() != "" {
					res.warn(file, line, "%s: %q is not ADDRESS:PORT: not imported", what, arg)
					bad = true
				}
				service = &lvsctlv1.VirtualService{Address: ap.Addr().Unmap().String(), Protocol: p, Port: uint32(ap.Port())}
				j++
				continue
			}
			switch f[j] {
			case "-f", "--fwmark-service":
				m, err := strconv.ParseUint(arg, 10, 32)
				if err != nil || m == 0 {
					res.warn(file, line, "%s: %q is not a firewall mark: not imported", what, arg)
					bad = true
				}
				mark = uint32(m)
				j++
			case "-s", "--scheduler", "-p", "--persistent", "-M", "--netmask", "-r", "--real-server", "-w", "--weight", "-x", "--u-threshold", "-y", "--l-threshold", "-b", "--sched-flags", "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum", "--pe":
				if arg != "" {
					opts[f[j]] = arg
					j++
				} else {
					opts[f[j]] = ""
				}
			default:
				flags = append(flags, f[j])
			}
		}
		if bad {
			continue
		}
		key := fmt.Sprintf("-f %d", mark)
		if service != nil {
			key = ipvsadmService(service)
		}
		if add {
			c := &lvsctlv1.Cluster{Name: fmt.Sprintf("fwmark-%d", mark), DirectorGroup: opt.Group, Fwmark: mark, Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE, Reals: []*lvsctlv1.RealServer{}}
			if service != nil {
				c.Name, c.Fwmark, c.Service = Label(validate.FormatService(service)), 0, service
			}
			if s, ok := opts["-s"]; ok {
				c.Scheduler = s
			} else if s, ok := opts["--scheduler"]; ok {
				c.Scheduler = s
			}
			for _, fl := range flags {
				switch fl {
				case "-o", "--ops":
					c.Ops = true
				case "-6", "--ipv6":
					// A fwmark service's family: lvsctl takes it from the VIPs (--marks).
				default:
					res.warn(file, line, "%s: %s: not modelled yet: not carried over", what, fl)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(opts)) {
				v := opts[k]
				switch k {
				case "-s", "--scheduler":
				case "-p", "--persistent":
					t := uint64(300) // ipvsadm's default with -p alone
					if v != "" {
						var err error
						if t, err = strconv.ParseUint(v, 10, 32); err != nil {
							res.warn(file, line, "%s: -p %q is not a number of seconds: not carried over", what, v)
							continue
						}
					}
					if c.Persistence == nil {
						c.Persistence = &lvsctlv1.Persistence{}
					}
					c.Persistence.TimeoutSeconds = uint32(t)
				case "-M", "--netmask":
					bits, ok := maskBits(v)
					if !ok {
						res.warn(file, line, "%s: -M %q is not a netmask: not carried over", what, v)
						continue
					}
					if c.Persistence == nil {
						c.Persistence = &lvsctlv1.Persistence{}
					}
					c.Persistence.NetmaskBits = bits
				case "-b", "--sched-flags":
					for _, name := range strings.Split(v, ",") {
						// ipvsadm -b takes keepalived's names: flag-N, sh-port, mh-fallback...
						fl, ok := kaFlag(name, c.Scheduler)
						if !ok {
							res.warn(file, line, "%s: -b %s: no flag of scheduler %s: not carried over", what, name, c.Scheduler)
							continue
						}
						c.SchedulerFlags = append(c.SchedulerFlags, fl)
					}
				default:
					res.warn(file, line, "%s: %s %s: not modelled yet: not carried over", what, k, v)
				}
			}
			if _, dup := svcs[key]; dup {
				res.warn(file, line, "%s: %s is added twice; the first is kept", what, key)
				continue
			}
			svcs[key] = &svc{im: &Imported{Object: &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}, File: file, Line: line, From: "-A " + key}}
			order = append(order, key)
			continue
		}
		s := svcs[key]
		if !real || s == nil {
			res.warn(file, line, "%s: no service -A %s before it: not imported", what, key)
			continue
		}
		c := s.im.Object.GetCluster()
		rs := opts["-r"] + opts["--real-server"]
		ap, err := netip.ParseAddrPort(rs)
		if err != nil {
			if a, err2 := netip.ParseAddr(rs); err2 == nil {
				ap = netip.AddrPortFrom(a, 0)
			} else {
				res.warn(file, line, "%s: real server %q is not ADDRESS:PORT: not imported", what, rs)
				continue
			}
		}
		r := &lvsctlv1.RealServer{Address: ap.Addr().Unmap().String(), Weight: 1}
		for _, o := range []struct {
			short, long string
			to          *uint32
		}{{"-w", "--weight", &r.Weight}, {"-x", "--u-threshold", &r.UpperThreshold}, {"-y", "--l-threshold", &r.LowerThreshold}} {
			v, ok := opts[o.short]
			if !ok {
				v, ok = opts[o.long]
			}
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				res.warn(file, line, "%s: %s %q is not a number: not carried over", what, o.short, v)
				continue
			}
			*o.to = uint32(n)
		}
		fwd := lvsctlv1.Forwarding_FORWARDING_ROUTE
		for _, fl := range flags {
			switch fl {
			case "-m", "--masquerading":
				fwd = lvsctlv1.Forwarding_FORWARDING_MASQ
			case "-g", "--gatewaying":
				fwd = lvsctlv1.Forwarding_FORWARDING_ROUTE
			case "-i", "--ipip":
				fwd = lvsctlv1.Forwarding_FORWARDING_TUNNEL
			default:
				res.warn(file, line, "%s: %s: not modelled yet: not carried over", what, fl)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(opts)) {
			v := opts[k]
			switch k {
			case "-r", "--real-server", "-w", "--weight", "-x", "--u-threshold", "-y", "--l-threshold":
			case "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum":
			default:
				res.warn(file, line, "%s: %s %s: not modelled yet: not carried over", what, k, v)
			}
		}
		switch svc := c.GetService(); {
		case ap.Port() == 0:
		case svc == nil && fwd == lvsctlv1.Forwarding_FORWARDING_MASQ:
			res.warn(file, line, "%s: a port on a fwmark service's real server sends every marked port to that one; lvsctl's fwmark clusters keep the port the client asked for: not carried over", what)
		case svc == nil, uint32(ap.Port()) == svc.GetPort():
			// The port the packet has anyway (ipvsadm-save writes the service's under -g and -i).
		case fwd == lvsctlv1.Forwarding_FORWARDING_MASQ:
			r.Port = uint32(ap.Port())
		default:
			res.warn(file, line, "%s: port %d differs from the service's %d, which only masquerading maps: not carried over", what, ap.Port(), svc.GetPort())
		}
		tunnel, problem := ipvsadmTunnel(opts)
		switch {
		case problem != "":
			res.warn(file, line, "%s: %s: the tunnel options are not carried over (ipip)", what, problem)
		case tunnel != nil && fwd != lvsctlv1.Forwarding_FORWARDING_TUNNEL:
			res.warn(file, line, "%s: tunnel options without -i: not carried over", what)
			tunnel = nil
		}
		// Forwarding and the tunnel are per real server in IPVS and per cluster in lvsctl:
		// the first real server's set them.
		if len(c.Reals) == 0 {
			c.Forwarding, c.Tunnel = fwd, tunnel
			s.fwdLine = line
		} else if fwd != c.Forwarding {
			res.warn(file, line, "%s: forwarding differs from the first real server's (line %d); lvsctl forwards one way per cluster: that one is kept", what, s.fwdLine)
		} else if !protoEqual(tunnel, c.Tunnel) {
			res.warn(file, line, "%s: tunnel %s differs from the first real server's %s (line %d); lvsctl tunnels one way per cluster: that one is kept",
				what, validate.FormatTunnel(tunnelOr(tunnel)), validate.FormatTunnel(tunnelOr(c.Tunnel)), s.fwdLine)
		}
		c.Reals = append(c.Reals, r)
	}
	for _, key := range order {
		s := svcs[key]
		c := s.im.Object.GetCluster()
		if c.GetService() == nil {
			m := c.GetFwmark()
			if opt.Marks == nil || len(opt.Marks[m]) == 0 {
				res.warn(s.im.File, s.im.Line, "-A -f %d: its VIPs and ports are in the firewall rules; give them with --marks FILE (iptables-save -t mangle, nft list ruleset or an iptables script): not imported", m)
				continue
			}
			vips, ports, warns := opt.Marks.clusterTraffic(m)
			res.Warnings = append(res.Warnings, warns...)
			c.Vips, c.Ports = vips, ports
		}
		res.Objects = append(res.Objects, *s.im)
	}
	res.sortObjects()
	if len(res.Objects) == 0 {
		return res, ErrNothing
	}
	return res, nil
}

// ipvsadmService is a plain service as ipvsadm-save -n writes it: "-t 192.0.2.20:80",
// "-u [2001:db8::53]:53", "--sctp-service 192.0.2.9:9".
func ipvsadmService(s *lvsctlv1.VirtualService) string {
	opt := map[lvsctlv1.Protocol]string{lvsctlv1.Protocol_PROTOCOL_TCP: "-t", lvsctlv1.Protocol_PROTOCOL_UDP: "-u", lvsctlv1.Protocol_PROTOCOL_SCTP: "--sctp-service"}[s.GetProtocol()]
	a, err := netip.ParseAddr(s.GetAddress())
	if err != nil {
		return opt + " " + s.GetAddress()
	}
	return opt + " " + netip.AddrPortFrom(a, uint16(s.GetPort())).String()
}

package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// IpvsadmOptions are the choices of `lvsctl import ipvsadm`.
type IpvsadmOptions struct {
	// Group names the director group the clusters belong to (it must exist).
	Group string
	// Marks gives each fwmark service's VIPs and ports.
	Marks Marks
}

// Ipvsadm imports `ipvsadm-save -n` output: each fwmark service (-A -f N) is a cluster with
// its mark pinned, so traffic keeps its marks during the move.
func Ipvsadm(file string, data []byte, opt IpvsadmOptions) (*Result, error) {
	res := &Result{}
	type svc struct {
		im      *Imported
		fwdLine int
	}
	svcs := map[uint32]*svc{}
	var order []uint32
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
		plain := ""
		opts := map[string]string{}
		var flags []string
		for j := 1; j < len(f); j++ {
			arg := ""
			if j+1 < len(f) && !strings.HasPrefix(f[j+1], "-") {
				arg = f[j+1]
			}
			switch f[j] {
			case "-f", "--fwmark-service":
				m, err := strconv.ParseUint(arg, 10, 32)
				if err != nil || m == 0 {
					res.warn(file, line, "%s: %q is not a firewall mark: not imported", what, arg)
					plain = "bad"
				}
				mark = uint32(m)
				j++
			case "-t", "--tcp-service", "-u", "--udp-service", "--sctp-service":
				plain = f[j] + " " + arg
				j++
			case "-s", "--scheduler", "-p", "--persistent", "-M", "--netmask", "-r", "--real-server", "-w", "--weight", "-x", "--u-threshold", "-y", "--l-threshold", "-b", "--sched-flags", "--tun-type", "--tun-port", "--tun-nocsum", "--tun-csum", "--tun-remcsum", "-O", "--ops", "--pe":
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
		if plain == "bad" {
			continue
		}
		if plain != "" {
			if add {
				res.warn(file, line, "%s: plain (VIP:port) services are not modelled yet (fwmark only); not imported", what)
			}
			continue
		}
		if add {
			c := &lvsctlv1.Cluster{Name: fmt.Sprintf("fwmark-%d", mark), DirectorGroup: opt.Group, Fwmark: mark, Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE, Reals: []*lvsctlv1.RealServer{}}
			for k, v := range opts {
				switch k {
				case "-s", "--scheduler":
					c.Scheduler = v
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
				default:
					res.warn(file, line, "%s: %s %s: not modelled yet: not carried over", what, k, v)
				}
			}
			if _, dup := svcs[mark]; dup {
				res.warn(file, line, "%s: fwmark %d is added twice; the first is kept", what, mark)
				continue
			}
			svcs[mark] = &svc{im: &Imported{Object: &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}, File: file, Line: line, From: fmt.Sprintf("-A -f %d", mark)}}
			order = append(order, mark)
			continue
		}
		s := svcs[mark]
		if !real || s == nil {
			res.warn(file, line, "%s: no service -A -f %d before it: not imported", what, mark)
			continue
		}
		c := s.im.Object.GetCluster()
		ap, err := netip.ParseAddrPort(opts["-r"] + opts["--real-server"])
		if err != nil {
			if a, err2 := netip.ParseAddr(opts["-r"] + opts["--real-server"]); err2 == nil {
				ap = netip.AddrPortFrom(a, 0)
			} else {
				res.warn(file, line, "%s: real server %q is not ADDRESS:PORT: not imported", what, opts["-r"])
				continue
			}
		}
		r := &lvsctlv1.RealServer{Address: ap.Addr().String(), Weight: 1}
		if w, ok := opts["-w"]; ok {
			n, err := strconv.ParseUint(w, 10, 32)
			if err != nil {
				res.warn(file, line, "%s: weight %q is not a number: 1 kept", what, w)
			} else {
				r.Weight = uint32(n)
			}
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
		for k, v := range opts {
			if k != "-r" && k != "--real-server" && k != "-w" && k != "--weight" {
				res.warn(file, line, "%s: %s %s: not modelled yet: not carried over", what, k, v)
			}
		}
		if ap.Port() != 0 && fwd == lvsctlv1.Forwarding_FORWARDING_MASQ {
			res.warn(file, line, "%s: real server port %d under masquerading maps the port; not modelled yet (lvsctl forwards to the port the client asked for)", what, ap.Port())
		}
		// Forwarding is per real server in IPVS and per cluster in lvsctl: the first real
		// server's sets it.
		if len(c.Reals) == 0 {
			c.Forwarding = fwd
			s.fwdLine = line
		} else if fwd != c.Forwarding {
			res.warn(file, line, "%s: forwarding differs from the first real server's (line %d); lvsctl forwards one way per cluster: that one is kept", what, s.fwdLine)
		}
		c.Reals = append(c.Reals, r)
	}
	for _, m := range order {
		s := svcs[m]
		c := s.im.Object.GetCluster()
		if opt.Marks == nil || len(opt.Marks[m]) == 0 {
			res.warn(s.im.File, s.im.Line, "-A -f %d: its VIPs and ports are in the firewall rules; give them with --marks FILE (iptables-save -t mangle, nft list ruleset or an iptables script): not imported", m)
			continue
		}
		vips, ports, warns := opt.Marks.clusterTraffic(m)
		res.Warnings = append(res.Warnings, warns...)
		c.Vips, c.Ports = vips, ports
		res.Objects = append(res.Objects, *s.im)
	}
	res.sortObjects()
	if len(res.Objects) == 0 {
		return res, ErrNothing
	}
	return res, nil
}

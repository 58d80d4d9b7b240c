package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// MarkRule is one firewall rule that sets a mark: traffic to VIP on ports First-Last of
// Protocol gets Mark.
type MarkRule struct {
	Mark     uint32
	VIP      string
	Protocol lvsctlv1.Protocol
	First    uint32
	Last     uint32
	File     string
	Line     int
}

// Marks maps each mark to the rules that set it, in file order.
type Marks map[uint32][]MarkRule

var protoByName = map[string]lvsctlv1.Protocol{
	"tcp": lvsctlv1.Protocol_PROTOCOL_TCP, "udp": lvsctlv1.Protocol_PROTOCOL_UDP, "sctp": lvsctlv1.Protocol_PROTOCOL_SCTP,
}

// ParseMarks reads the rules that set firewall marks from iptables-save -t mangle output, a
// shell script of `iptables -t mangle ... -j MARK --set-mark N` lines (the Windows Media
// guide's), or nft list ruleset output; the format is told line by line, so a file may mix
// them. Rules it cannot express as VIP + protocol + ports are warnings.
func ParseMarks(file string, data []byte) (Marks, []Warning) {
	m := Marks{}
	var warns []Warning
	warn := func(line int, format string, args ...any) {
		warns = append(warns, Warning{File: file, Line: line, What: fmt.Sprintf(format, args...)})
	}
	for i, text := range strings.Split(string(data), "\n") {
		line := i + 1
		text = strings.TrimSpace(text)
		if j := strings.IndexByte(text, '#'); j >= 0 {
			text = strings.TrimSpace(text[:j])
		}
		if text == "" {
			continue
		}
		var rules []MarkRule
		var why string
		switch {
		case strings.Contains(text, "mark set"):
			rules, why = nftRule(text)
		case strings.Contains(text, "-j MARK") || strings.Contains(text, "--set-mark") || strings.Contains(text, "--set-xmark"):
			rules, why = iptablesRule(text)
		default:
			continue
		}
		if why != "" {
			warn(line, "%s: not imported", why)
			continue
		}
		for _, r := range rules {
			r.File, r.Line = file, line
			m[r.Mark] = append(m[r.Mark], r)
		}
	}
	return m, warns
}

// expand gives one rule per VIP x protocol x port range.
func expand(mark uint32, vips []string, protos []lvsctlv1.Protocol, ranges [][2]uint32) ([]MarkRule, string) {
	if len(vips) == 0 {
		return nil, fmt.Sprintf("mark %d: the rule names no destination address (lvsctl marks traffic to its VIPs only)", mark)
	}
	if len(protos) == 0 || len(ranges) == 0 {
		return nil, fmt.Sprintf("mark %d: the rule names no protocol and destination port (lvsctl marks VIP, protocol and ports)", mark)
	}
	var out []MarkRule
	for _, v := range vips {
		for _, p := range protos {
			for _, r := range ranges {
				out = append(out, MarkRule{Mark: mark, VIP: v, Protocol: p, First: r[0], Last: r[1]})
			}
		}
	}
	return out, ""
}

func hostAddr(s string) (string, string) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Bits() != p.Addr().BitLen() {
			return "", fmt.Sprintf("destination %s is a network, not one VIP", s)
		}
		return p.Addr().String(), ""
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String(), ""
	}
	return "", fmt.Sprintf("destination %q is not an address", s)
}

// portRanges reads "554", "1024:5000" (iptables), "1024-5000" (nft), or lists of them.
func portRanges(s string) ([][2]uint32, string) {
	var out [][2]uint32
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, b, isRange := strings.Cut(strings.ReplaceAll(p, "-", ":"), ":")
		if !isRange {
			b = a
		}
		x, err1 := strconv.ParseUint(a, 10, 16)
		y, err2 := strconv.ParseUint(b, 10, 16)
		if err1 != nil || err2 != nil || x > y {
			return nil, fmt.Sprintf("port %q is not a port or range", p)
		}
		out = append(out, [2]uint32{uint32(x), uint32(y)})
	}
	return out, ""
}

func markValue(s string) (uint32, string) {
	v, mask, hasMask := strings.Cut(s, "/")
	n, err := strconv.ParseUint(v, 0, 32)
	if err != nil {
		return 0, fmt.Sprintf("mark %q is not a number", s)
	}
	if hasMask {
		mk, err := strconv.ParseUint(mask, 0, 32)
		if err != nil || mk != 0xffffffff {
			return 0, fmt.Sprintf("mark %q sets some bits only (lvsctl sets the whole mark)", s)
		}
	}
	if n == 0 {
		return 0, "mark 0 is no mark"
	}
	return uint32(n), ""
}

// iptablesRule reads one iptables-save rule or iptables command that jumps to MARK.
func iptablesRule(text string) ([]MarkRule, string) {
	f := strings.Fields(text)
	var vips []string
	var protos []lvsctlv1.Protocol
	var ranges [][2]uint32
	var mark uint32
	table := "mangle"
	target := ""
	for i := 0; i < len(f); i++ {
		arg := func() string {
			if i+1 < len(f) {
				i++
				return f[i]
			}
			return ""
		}
		switch f[i] {
		case "!":
			return nil, "a negated match (!)"
		case "-t", "--table":
			table = arg()
		case "-d", "--destination", "--dst":
			for _, d := range strings.Split(arg(), ",") {
				a, why := hostAddr(d)
				if why != "" {
					return nil, why
				}
				vips = append(vips, a)
			}
		case "-s", "--source", "--src", "-i", "--in-interface", "-o", "--out-interface", "--sport", "--source-port", "--sports", "--source-ports":
			opt := f[i]
			return nil, fmt.Sprintf("the rule matches %s %s too (lvsctl marks by VIP, protocol and port alone)", opt, arg())
		case "-p", "--protocol":
			p, ok := protoByName[strings.ToLower(arg())]
			if !ok {
				return nil, fmt.Sprintf("protocol %q (want tcp, udp or sctp)", f[i])
			}
			protos = append(protos, p)
		case "--dport", "--destination-port", "--dports", "--destination-ports":
			var why string
			if ranges, why = portRanges(arg()); why != "" {
				return nil, why
			}
		case "-j", "--jump":
			target = arg()
		case "--set-mark", "--set-xmark":
			var why string
			if mark, why = markValue(arg()); why != "" {
				return nil, why
			}
		}
	}
	if table != "mangle" || target != "MARK" || mark == 0 {
		return nil, "not a mangle rule jumping to MARK with --set-mark"
	}
	return expand(mark, vips, protos, ranges)
}

// nftRule reads one nft rule that sets a mark: ip daddr 192.0.2.10 tcp dport { 554, 1755 }
// meta mark set 0x00000001.
func nftRule(text string) ([]MarkRule, string) {
	text = strings.NewReplacer("{", " { ", "}", " } ", ",", " , ").Replace(text)
	f := strings.Fields(text)
	// values reads one value or a { set } at f[i+1:], returning them and the last index.
	values := func(i int) ([]string, int) {
		if i+1 >= len(f) {
			return nil, i
		}
		if f[i+1] != "{" {
			return []string{f[i+1]}, i + 1
		}
		var out []string
		j := i + 2
		for ; j < len(f) && f[j] != "}"; j++ {
			if f[j] != "," {
				out = append(out, f[j])
			}
		}
		return out, j
	}
	var vips []string
	var protos []lvsctlv1.Protocol
	var ranges [][2]uint32
	var mark uint32
	for i := 0; i < len(f); i++ {
		switch {
		case f[i] == "!=":
			return nil, "a negated match (!=)"
		case (f[i] == "ip" || f[i] == "ip6") && i+1 < len(f) && f[i+1] == "daddr":
			var vs []string
			vs, i = values(i + 1)
			for _, v := range vs {
				a, why := hostAddr(v)
				if why != "" {
					return nil, why
				}
				vips = append(vips, a)
			}
		case (f[i] == "ip" || f[i] == "ip6") && i+1 < len(f) && f[i+1] == "saddr", f[i] == "iif", f[i] == "iifname", f[i] == "oif", f[i] == "oifname", f[i] == "sport":
			return nil, fmt.Sprintf("the rule matches %s too (lvsctl marks by VIP, protocol and port alone)", f[i])
		case protoByName[f[i]] != 0 && i+1 < len(f) && f[i+1] == "dport":
			protos = append(protos, protoByName[f[i]])
			var ps []string
			ps, i = values(i + 1)
			var why string
			if ranges, why = portRanges(strings.Join(ps, ",")); why != "" {
				return nil, why
			}
		case f[i] == "mark" && i+2 < len(f) && f[i+1] == "set":
			var why string
			if mark, why = markValue(f[i+2]); why != "" {
				return nil, why
			}
			i += 2
		}
	}
	if mark == 0 {
		return nil, "no mark set"
	}
	return expand(mark, vips, protos, ranges)
}

// clusterTraffic turns a mark's rules into a cluster's VIPs and ports. A cluster marks every
// VIP x port entry; rules that are not such a product are carried over with a warning naming
// the combinations the cluster adds.
func (m Marks) clusterTraffic(mark uint32) (vips []string, ports []*lvsctlv1.PortRange, warns []Warning) {
	rules := m[mark]
	type entry struct {
		p           lvsctlv1.Protocol
		first, last uint32
	}
	seenV := map[string]bool{}
	seenP := map[entry]bool{}
	have := map[string]bool{}
	for _, r := range rules {
		if !seenV[r.VIP] {
			seenV[r.VIP] = true
			vips = append(vips, r.VIP)
		}
		e := entry{r.Protocol, r.First, r.Last}
		if !seenP[e] {
			seenP[e] = true
			ports = append(ports, &lvsctlv1.PortRange{Protocol: r.Protocol, First: r.First, Last: r.Last})
		}
		have[fmt.Sprint(r.VIP, e)] = true
	}
	for _, v := range vips {
		for _, p := range ports {
			if !have[fmt.Sprint(v, entry{p.Protocol, p.First, p.Last})] {
				warns = append(warns, Warning{File: rules[0].File, Line: rules[0].Line,
					What: fmt.Sprintf("mark %d: the rules do not mark %s %s, but the cluster will (it marks every VIP x port entry)", mark, v, portsText(p))})
			}
		}
	}
	return vips, ports, warns
}

func portsText(p *lvsctlv1.PortRange) string {
	n := map[lvsctlv1.Protocol]string{1: "tcp", 2: "udp", 3: "sctp"}[p.GetProtocol()]
	if p.GetFirst() == p.GetLast() {
		return fmt.Sprintf("%s %d", n, p.GetFirst())
	}
	return fmt.Sprintf("%s %d-%d", n, p.GetFirst(), p.GetLast())
}

package importer

import (
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Files reads the files a keepalived.conf includes.
type Files interface {
	Glob(pattern string) ([]string, error)
	ReadFile(name string) ([]byte, error)
}

// OSFiles reads the local file system.
type OSFiles struct{}

func (OSFiles) Glob(p string) ([]string, error)   { return filepath.Glob(p) }
func (OSFiles) ReadFile(n string) ([]byte, error) { return os.ReadFile(n) }

// maxIncludeDepth bounds include nesting: keepalived itself stops at 8 levels.
const maxIncludeDepth = 8

// node is one keepalived statement: a keyword, its arguments, and a block's children.
type node struct {
	key      string
	args     []string
	file     string
	line     int
	block    bool
	children []*node
}

type token struct {
	text string
	line int
	nl   bool // a line ended before this token
}

// lex splits keepalived.conf text into tokens: words, quoted strings, { and }. # and ! start
// a comment that runs to the end of the line.
func lex(data string) []token {
	var out []token
	for i, l := range strings.Split(data, "\n") {
		first := true
		for j := 0; j < len(l); {
			c := l[j]
			switch {
			case c == ' ' || c == '\t' || c == '\r':
				j++
				continue
			case c == '#' || c == '!':
				j = len(l)
				continue
			case c == '{' || c == '}':
				out = append(out, token{text: string(c), line: i + 1, nl: first})
				j++
			case c == '"':
				k := strings.IndexByte(l[j+1:], '"')
				end := len(l)
				if k >= 0 {
					end = j + 1 + k
				}
				out = append(out, token{text: l[j+1 : end], line: i + 1, nl: first})
				j = end + 1
			default:
				k := j
				for k < len(l) && !strings.ContainsRune(" \t\r{}\"", rune(l[k])) {
					k++
				}
				out = append(out, token{text: l[j:k], line: i + 1, nl: first})
				j = k
			}
			first = false
		}
	}
	return out
}

type confParser struct {
	files Files
	res   *Result
	seen  map[string]bool
}

// parseFile reads a file into statements, with includes spliced in place.
func (p *confParser) parseFile(name string, depth int) ([]*node, error) {
	data, err := p.files.ReadFile(name)
	if err != nil {
		return nil, err
	}
	toks := lex(string(data))
	i := 0
	nodes := p.block(name, toks, &i, depth, false)
	return nodes, nil
}

func (p *confParser) block(file string, toks []token, i *int, depth int, nested bool) []*node {
	var out []*node
	for *i < len(toks) {
		t := toks[*i]
		if t.text == "}" {
			*i++
			if nested {
				return out
			}
			p.res.warn(file, t.line, "} without a block to close: ignored")
			continue
		}
		n := &node{key: t.text, file: file, line: t.line}
		*i++
		for *i < len(toks) && !toks[*i].nl && toks[*i].text != "{" && toks[*i].text != "}" {
			n.args = append(n.args, toks[*i].text)
			*i++
		}
		if *i < len(toks) && toks[*i].text == "{" {
			*i++
			n.block = true
			n.children = p.block(file, toks, i, depth, true)
		}
		if n.key == "include" && len(n.args) > 0 {
			out = append(out, p.include(n, depth)...)
			continue
		}
		out = append(out, n)
	}
	if nested {
		p.res.warn(file, len(toks), "a block is not closed with }")
	}
	return out
}

func (p *confParser) include(n *node, depth int) []*node {
	if depth >= maxIncludeDepth {
		p.res.warn(n.file, n.line, "include %s: more than %d levels of include: not followed", n.args[0], maxIncludeDepth)
		return nil
	}
	pat := n.args[0]
	if !filepath.IsAbs(pat) {
		pat = filepath.Join(filepath.Dir(n.file), pat)
	}
	names, err := p.files.Glob(pat)
	if err != nil || len(names) == 0 {
		p.res.warn(n.file, n.line, "include %s: no file matches", n.args[0])
		return nil
	}
	var out []*node
	for _, name := range names {
		if p.seen[name] {
			p.res.warn(n.file, n.line, "include %s: %s is already included: not followed again", n.args[0], name)
			continue
		}
		p.seen[name] = true
		nodes, err := p.parseFile(name, depth+1)
		if err != nil {
			p.res.warn(n.file, n.line, "include %s: %v", n.args[0], err)
			continue
		}
		out = append(out, nodes...)
	}
	return out
}

// KeepalivedOptions are the choices of `lvsctl import keepalived`.
type KeepalivedOptions struct {
	// Group names the director group; "" takes it from the first vrrp_instance's name.
	Group string
	// Marks gives the VIPs and ports of fwmark services (they are in the firewall, not in
	// keepalived.conf); nil: fwmark services without them are not imported.
	Marks Marks
	Files Files
}

// Keepalived imports one keepalived.conf per director of one group. It fails only when a
// file cannot be read at all.
func Keepalived(files []string, opt KeepalivedOptions) (*Result, error) {
	if opt.Files == nil {
		opt.Files = OSFiles{}
	}
	res := &Result{}
	k := &kaImport{res: res, opt: opt, clusters: map[string]*Imported{}, beforeRetry: map[*lvsctlv1.HealthCheck]retryAt{}}
	for _, f := range files {
		p := &confParser{files: opt.Files, res: res, seen: map[string]bool{f: true}}
		nodes, err := p.parseFile(f, 0)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f, err)
		}
		k.file(f, nodes)
	}
	k.finish()
	res.sortObjects()
	if len(res.Objects) == 0 {
		return res, ErrNothing
	}
	return res, nil
}

type retryAt struct {
	n     *node
	where string
}

type kaImport struct {
	res      *Result
	opt      KeepalivedOptions
	group    *lvsctlv1.DirectorGroup
	groupAt  Imported
	clusters map[string]*Imported
	order    []string
	vsgs     map[string]*node
	// globalSync is the file's global_defs lvs_sync_daemon.
	globalSync *node
	// beforeRetry holds each check's delay_before_retry.
	beforeRetry map[*lvsctlv1.HealthCheck]retryAt
	gwLines     []*node
}

func (k *kaImport) warnUnknown(n *node, where string) {
	k.res.warn(n.file, n.line, "%s%s: not carried over (lvsctl has no such setting)", where, n.key)
}

func (k *kaImport) file(name string, nodes []*node) {
	k.vsgs = map[string]*node{}
	k.globalSync = nil
	routerID := ""
	for _, n := range nodes {
		switch n.key {
		case "virtual_server_group":
			if len(n.args) > 0 {
				k.vsgs[n.args[0]] = n
			}
		case "global_defs":
			for _, c := range n.children {
				if c.key == "router_id" && len(c.args) > 0 {
					routerID = c.args[0]
					continue
				}
				if c.key == "lvs_sync_daemon" && len(c.args) > 0 {
					// keepalived 2.x reads it here (in a vrrp_instance it is 1.x's).
					k.globalSync = c
					continue
				}
				k.warnUnknown(c, "global_defs: ")
			}
		}
	}
	var instances []*node
	for _, n := range nodes {
		switch n.key {
		case "virtual_server":
			k.virtualServer(n)
		case "virtual_server_group", "global_defs":
		case "vrrp_instance":
			instances = append(instances, n)
		default:
			k.warnUnknown(n, "")
		}
	}
	for i, n := range instances {
		if i == 0 {
			k.vrrp(name, routerID, n)
			continue
		}
		k.res.warn(n.file, n.line, "vrrp_instance %s: a director group has one VIP interface and one ACTIVE; only the first vrrp_instance (%s) makes the group: not carried over", strings.Join(n.args, " "), strings.Join(instances[0].args, " "))
	}
}

func (k *kaImport) groupName() string {
	if k.opt.Group != "" {
		return k.opt.Group
	}
	if k.group != nil {
		return k.group.Name
	}
	return ""
}

func (k *kaImport) virtualServer(n *node) {
	what := "virtual_server " + strings.Join(n.args, " ")
	switch {
	case len(n.args) == 2 && n.args[0] == "fwmark":
		mark, err := strconv.ParseUint(n.args[1], 10, 32)
		if err != nil || mark == 0 {
			k.res.warn(n.file, n.line, "%s: %q is not a firewall mark: not imported", what, n.args[1])
			return
		}
		k.fwmarkCluster(n, uint32(mark), what)
	case len(n.args) == 2 && n.args[0] == "group":
		g := k.vsgs[n.args[1]]
		if g == nil {
			k.res.warn(n.file, n.line, "%s: no virtual_server_group %s: not imported", what, n.args[1])
			return
		}
		// A group's fwmark entries are one IPVS service each with the same real servers:
		// one cluster each, faithfully. Its VIP:port entries are plain services.
		for _, e := range g.children {
			if e.key == "fwmark" && len(e.args) == 1 {
				if mark, err := strconv.ParseUint(e.args[0], 10, 32); err == nil && mark != 0 {
					k.fwmarkCluster(n, uint32(mark), what+" (fwmark "+e.args[0]+")")
					continue
				}
			}
			k.res.warn(e.file, e.line, "virtual_server_group %s: %s: plain (VIP:port) services are not modelled yet (fwmark only); not imported", n.args[1], strings.Join(append([]string{e.key}, e.args...), " "))
		}
	default:
		k.res.warn(n.file, n.line, "%s: plain (VIP:port) services are not modelled yet (fwmark only); not imported", what)
	}
}

// checkerKinds maps keepalived's checkers to lvsctl's health check kinds.
var checkerKinds = map[string]string{"TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https", "MISC_CHECK": "exec", "UDP_CHECK": "udp"}

func seconds(s string) (uint32, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f*1000 > math.MaxUint32 {
		return 0, false
	}
	return uint32(math.Round(f * 1000)), true
}

func (k *kaImport) fwmarkCluster(n *node, mark uint32, what string) {
	name := fmt.Sprintf("fwmark-%d", mark)
	c := &lvsctlv1.Cluster{Name: name, Fwmark: mark, Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE, Reals: []*lvsctlv1.RealServer{}}
	var delayLoop uint32
	type realAt struct {
		r    *lvsctlv1.RealServer
		n    *node
		port uint32
	}
	var reals []realAt
	for _, s := range n.children {
		arg := ""
		if len(s.args) > 0 {
			arg = s.args[0]
		}
		switch s.key {
		case "delay_loop":
			if ms, ok := seconds(arg); ok {
				delayLoop = ms
			} else {
				k.res.warn(s.file, s.line, "%s: delay_loop %q is not a number of seconds: not carried over", what, arg)
			}
		case "lb_algo", "lvs_sched":
			c.Scheduler = arg
		case "lb_kind", "lvs_method":
			switch strings.ToUpper(arg) {
			case "NAT":
				c.Forwarding = lvsctlv1.Forwarding_FORWARDING_MASQ
			case "DR":
				c.Forwarding = lvsctlv1.Forwarding_FORWARDING_ROUTE
			case "TUN":
				c.Forwarding = lvsctlv1.Forwarding_FORWARDING_TUNNEL
			default:
				k.res.warn(s.file, s.line, "%s: lb_kind %s: unknown (want NAT, DR or TUN); direct routing (ipvsadm's default) kept", what, arg)
			}
		case "persistence_timeout":
			t, err := strconv.ParseUint(arg, 10, 32)
			if err != nil {
				k.res.warn(s.file, s.line, "%s: persistence_timeout %q is not a number of seconds: not carried over", what, arg)
				continue
			}
			if c.Persistence == nil {
				c.Persistence = &lvsctlv1.Persistence{}
			}
			c.Persistence.TimeoutSeconds = uint32(t)
		case "persistence_granularity":
			bits, ok := maskBits(arg)
			if !ok {
				k.res.warn(s.file, s.line, "%s: persistence_granularity %q is not a netmask: not carried over", what, arg)
				continue
			}
			if c.Persistence == nil {
				c.Persistence = &lvsctlv1.Persistence{}
			}
			c.Persistence.NetmaskBits = bits
		case "protocol":
			// A fwmark service matches whatever the mark matches: the protocols are the
			// marks' (--marks).
		case "real_server":
			r, port := k.real(s, what)
			if r != nil {
				reals = append(reals, realAt{r: r, n: s, port: port})
			}
		default:
			k.warnUnknown(s, what+": ")
		}
	}
	// Checkers: keepalived's delay_loop is the service's, a checker may override it.
	for _, ra := range reals {
		h := ra.r.Health
		if h == nil {
			continue
		}
		if h.IntervalMs == 0 && delayLoop != 0 {
			h.IntervalMs = delayLoop
		}
		// keepalived re-checks a failed server delay_before_retry apart, lvsctl at the
		// interval: equal, they take it out at the same time.
		if br, ok := k.beforeRetry[h]; ok {
			if ms, ok := seconds(firstArg(br.n)); !ok || ms != h.IntervalMs {
				k.res.warn(br.n.file, br.n.line, "%sdelay_before_retry %s: lvsctl re-checks a failed server at the check interval: not carried over", br.where, firstArg(br.n))
			}
		}
		if h.Port == 0 && h.Check != "exec" {
			if ra.port == 0 {
				k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s: its %s check names no port (connect_port) and the real server has none: check not carried over", what, ra.r.Address, h.Check)
				ra.r.Health = nil
				continue
			}
			h.Port = ra.port
		}
		if h.TimeoutMs > h.IntervalMs && h.IntervalMs != 0 {
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s: connect_timeout %s is longer than the check interval %s; lvsctl caps it at the interval", what, ra.r.Address, msText(h.TimeoutMs), msText(h.IntervalMs))
			h.TimeoutMs = h.IntervalMs
		}
	}
	for _, ra := range reals {
		c.Reals = append(c.Reals, ra.r)
		if ra.port != 0 && c.Forwarding == lvsctlv1.Forwarding_FORWARDING_MASQ {
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s %d: a real server port under NAT maps the port; not modelled yet (lvsctl forwards to the port the client asked for)", what, ra.r.Address, ra.port)
		}
	}
	// One check for every real server is the cluster's.
	if len(c.Reals) > 0 && c.Reals[0].Health != nil {
		same := true
		for _, r := range c.Reals[1:] {
			if r.Health == nil || !protoEqual(r.Health, c.Reals[0].Health) {
				same = false
			}
		}
		if same {
			c.Health = c.Reals[0].Health
			for _, r := range c.Reals {
				r.Health = nil
			}
		}
	}
	if old, dup := k.clusters[name]; dup {
		c.Vips, c.Ports, c.DirectorGroup = old.Object.GetCluster().GetVips(), old.Object.GetCluster().GetPorts(), old.Object.GetCluster().GetDirectorGroup()
		// The same service in each director's file: keep the first, say when they differ.
		if !protoEqual(old.Object.GetCluster(), c) {
			k.res.warn(n.file, n.line, "%s differs from the one in %s:%d; that one is kept", what, old.File, old.Line)
		}
		return
	}
	if k.opt.Marks == nil || len(k.opt.Marks[mark]) == 0 {
		k.res.warn(n.file, n.line, "%s: its VIPs and ports are in the firewall rules, not in keepalived.conf; give them with --marks FILE (iptables-save -t mangle, nft list ruleset or an iptables script): not imported", what)
		return
	}
	vips, ports, warns := k.opt.Marks.clusterTraffic(mark)
	k.res.Warnings = append(k.res.Warnings, warns...)
	c.Vips, c.Ports = vips, ports
	k.clusters[name] = &Imported{Object: &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}, File: n.file, Line: n.line, From: what}
	k.order = append(k.order, name)
}

func firstArg(n *node) string {
	if len(n.args) == 0 {
		return ""
	}
	return n.args[0]
}

func msText(ms uint32) string {
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64) + "s"
}

func maskBits(s string) (uint32, bool) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && n <= 128 {
		return uint32(n), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := uint32(0)
	for v&0x80000000 != 0 {
		ones++
		v <<= 1
	}
	return ones, v == 0
}

// real reads a real_server block; the port is the one written (0 when none).
func (k *kaImport) real(n *node, what string) (*lvsctlv1.RealServer, uint32) {
	if len(n.args) == 0 {
		k.res.warn(n.file, n.line, "%s: real_server without an address: not imported", what)
		return nil, 0
	}
	a, err := netip.ParseAddr(n.args[0])
	if err != nil {
		k.res.warn(n.file, n.line, "%s: real_server %q is not an address: not imported", what, n.args[0])
		return nil, 0
	}
	var port uint32
	if len(n.args) > 1 {
		p, err := strconv.ParseUint(n.args[1], 10, 16)
		if err != nil {
			k.res.warn(n.file, n.line, "%s: real_server %s: port %q is not a port: not imported", what, a, n.args[1])
			return nil, 0
		}
		port = uint32(p)
	}
	r := &lvsctlv1.RealServer{Address: a.String(), Weight: 1}
	where := fmt.Sprintf("%s: real_server %s: ", what, a)
	var inhibit *node
	for _, s := range n.children {
		switch {
		case s.key == "inhibit_on_failure" && (len(s.args) == 0 || isTrue(s.args[0])):
			inhibit = s
		case s.key == "inhibit_on_failure" && isFalse(s.args[0]):
		case s.key == "weight" && len(s.args) > 0:
			w, err := strconv.ParseUint(s.args[0], 10, 32)
			if err != nil {
				k.res.warn(s.file, s.line, "%sweight %q is not a number: 1 kept", where, s.args[0])
				continue
			}
			r.Weight = uint32(w)
		case checkerKinds[s.key] != "":
			if r.Health != nil {
				k.res.warn(s.file, s.line, "%s%s: lvsctl runs one check per real server; the first (%s) is kept", where, s.key, r.Health.Check)
				continue
			}
			r.Health = k.checker(s, where)
		case strings.HasSuffix(s.key, "_CHECK") || s.key == "HTTP_GET" || s.key == "SSL_GET":
			k.res.warn(s.file, s.line, "%s%s: no such check in lvsctl (tcp, http, https, rtsp, udp, exec): not carried over", where, s.key)
		default:
			k.warnUnknown(s, where)
		}
	}
	// A failing checker takes the real server out of the service (remove), or sets its
	// weight 0 with inhibit_on_failure (quiesce).
	switch {
	case r.Health != nil && inhibit != nil:
		r.Health.OnFailure = "quiesce"
	case r.Health != nil:
		r.Health.OnFailure = "remove"
	case inhibit != nil:
		k.res.warn(inhibit.file, inhibit.line, "%sinhibit_on_failure without a checker: nothing to carry over", where)
	}
	return r, port
}

func isTrue(s string) bool  { return s == "on" || s == "true" || s == "yes" }
func isFalse(s string) bool { return s == "off" || s == "false" || s == "no" }

func (k *kaImport) checker(n *node, where string) *lvsctlv1.HealthCheck {
	h := &lvsctlv1.HealthCheck{Check: checkerKinds[n.key]}
	where += n.key + ": "
	urls := 0
	var beforeRetry *node
	if h.Check == "udp" {
		// Without require_reply, UDP_CHECK is up unless an ICMP port unreachable comes back.
		h.UdpMode = "noUnreachable"
	}
	for _, s := range n.children {
		arg := ""
		if len(s.args) > 0 {
			arg = s.args[0]
		}
		switch s.key {
		case "connect_port":
			p, err := strconv.ParseUint(arg, 10, 16)
			if err != nil || p == 0 {
				k.res.warn(s.file, s.line, "%sconnect_port %q is not a port: not carried over", where, arg)
				continue
			}
			h.Port = uint32(p)
		case "connect_timeout", "misc_timeout":
			if ms, ok := seconds(arg); ok {
				h.TimeoutMs = ms
			} else {
				k.res.warn(s.file, s.line, "%s%s %q is not a number of seconds: not carried over", where, s.key, arg)
			}
		case "delay_loop":
			if ms, ok := seconds(arg); ok {
				h.IntervalMs = ms
			}
		case "retry", "nb_get_retry":
			// keepalived takes a server out after the first failure and retry more: fall is
			// retry + 1 consecutive failures.
			r, err := strconv.ParseUint(arg, 10, 16)
			if err != nil {
				k.res.warn(s.file, s.line, "%s%s %q is not a number: not carried over", where, s.key, arg)
				continue
			}
			h.Fall = uint32(r) + 1
		case "misc_path":
			if h.Check == "exec" {
				h.Command = strings.Fields(arg)
				if len(s.args) > 1 {
					h.Command = append(h.Command, s.args[1:]...)
				}
				continue
			}
			k.warnUnknown(s, where)
		case "url":
			urls++
			if urls > 1 {
				k.res.warn(s.file, s.line, "%surl: lvsctl checks one URL; the first is kept", where)
				continue
			}
			for _, u := range s.children {
				switch {
				case u.key == "path" && len(u.args) > 0:
					h.Path = u.args[0]
				case u.key == "status_code" && len(u.args) > 0:
					h.Expect = u.args[0]
				default:
					k.warnUnknown(u, where+"url: ")
				}
			}
		case "virtualhost":
			if h.Check == "https" {
				h.ServerName = arg
				continue
			}
			k.warnUnknown(s, where)
		case "enable_sni":
			// lvsctl's https check sends its serverName as SNI.
			if h.Check != "https" {
				k.warnUnknown(s, where)
			}
		case "delay_before_retry":
			beforeRetry = s
		case "payload":
			p, err := hex.DecodeString(arg)
			if h.Check != "udp" || err != nil {
				k.res.warn(s.file, s.line, "%spayload %q: not hex bytes of a UDP_CHECK: not carried over", where, arg)
				continue
			}
			h.Payload = p
		case "require_reply":
			if h.Check != "udp" {
				k.warnUnknown(s, where)
				continue
			}
			h.UdpMode = "reply"
			if arg != "" {
				k.res.warn(s.file, s.line, "%srequire_reply %s: lvsctl checks that a reply comes, not its bytes: not carried over", where, arg)
			}
		default:
			k.warnUnknown(s, where)
		}
	}
	if (h.Check == "http" || h.Check == "https") && h.Expect == "" {
		// keepalived's HTTP_GET without status_code wants 200 exactly (lvsctl: 200-399).
		h.Expect = "200"
	}
	if beforeRetry != nil {
		// Compared with the interval once the service's delay_loop is known.
		k.beforeRetry[h] = retryAt{n: beforeRetry, where: where}
	}
	if h.Check == "exec" && len(h.Command) == 0 {
		k.res.warn(n.file, n.line, "%sno misc_path: check not carried over", where)
		return nil
	}
	return h
}

func (k *kaImport) vrrp(file, routerID string, n *node) {
	what := "vrrp_instance " + strings.Join(n.args, " ")
	inst := ""
	if len(n.args) > 0 {
		inst = n.args[0]
	}
	dirName := Label(routerID)
	if dirName == "" {
		dirName = Label(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)))
	}
	d := &lvsctlv1.Director{Name: dirName, Priority: 100}
	iface := ""
	var vrid uint32
	var sync *lvsctlv1.Sync
	syncID := false
	if k.globalSync != nil {
		sync, syncID = syncDaemon(k.globalSync)
		if len(k.globalSync.args) > 1 && k.globalSync.args[1] != inst && !(k.globalSync.args[1] == "inst" && len(k.globalSync.args) > 2 && k.globalSync.args[2] == inst) {
			k.res.warn(k.globalSync.file, k.globalSync.line, "lvs_sync_daemon follows instance %s, not %s: taken for the group anyway", k.globalSync.args[1], inst)
		}
	}

	preempt := true
	var vipNodes []*node
	for _, s := range n.children {
		arg := ""
		if len(s.args) > 0 {
			arg = s.args[0]
		}
		switch s.key {
		case "interface":
			iface = arg
		case "priority":
			if p, err := strconv.ParseUint(arg, 10, 8); err == nil {
				d.Priority = uint32(p)
			}
		case "unicast_src_ip":
			d.Address = arg
		case "virtual_router_id":
			if v, err := strconv.ParseUint(arg, 10, 8); err == nil {
				vrid = uint32(v)
			}
		case "nopreempt":
			preempt = false
		case "lvs_sync_daemon":
			sync, syncID = syncDaemon(s)
		case "lvs_sync_daemon_interface":
			sync = &lvsctlv1.Sync{Interface: arg}
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			vipNodes = append(vipNodes, s.children...)
		case "advert_int":
			k.res.warn(s.file, s.line, "%s: advert_int %s: not carried over: lvsctl's failover.heartbeatInterval is not VRRP's advertisement (directors heartbeat each other and the controller; defaults 100ms, dead after 200ms)", what, arg)
		case "state":
			k.res.warn(s.file, s.line, "%s: state %s: not carried over: lvsctl makes the director of highest priority ACTIVE", what, arg)
		default:
			k.warnUnknown(s, what+": ")
		}
	}
	if sync != nil && !syncID {
		// keepalived's sync id defaults to the instance's virtual_router_id.
		sync.SyncId = vrid
	}
	if k.group == nil {
		name := k.opt.Group
		if name == "" {
			name = Label(inst)
		}
		k.group = &lvsctlv1.DirectorGroup{Name: name, VipInterface: iface, Sync: sync, Directors: []*lvsctlv1.Director{}}
		if preempt {
			// keepalived preempts by default: a recovered MASTER of higher priority takes
			// its role back. lvsctl does not unless told.
			k.group.Failover = &lvsctlv1.Failover{Preempt: true}
		}
		k.groupAt = Imported{File: n.file, Line: n.line, From: what}
	} else {
		if iface != k.group.VipInterface {
			k.res.warn(n.file, n.line, "%s: interface %s differs from %s's %s; the first is kept", what, iface, k.groupAt.File, k.group.VipInterface)
		}
	}
	for _, o := range k.group.Directors {
		if o.Name == d.Name {
			k.res.warn(n.file, n.line, "%s: director %s (router_id, else the file name) is already in the group: not added twice", what, d.Name)
			return
		}
	}
	k.group.Directors = append(k.group.Directors, d)
	k.gwLines = append(k.gwLines, vipNodes...)
}

// syncDaemon reads lvs_sync_daemon IFACE [[inst] INSTANCE] [id N] ...; the bool says whether
// it names its id.
func syncDaemon(n *node) (*lvsctlv1.Sync, bool) {
	s := &lvsctlv1.Sync{Interface: n.args[0]}
	for i := 1; i+1 < len(n.args); i++ {
		if n.args[i] == "id" {
			if v, err := strconv.ParseUint(n.args[i+1], 10, 8); err == nil {
				s.SyncId = uint32(v)
				return s, true
			}
		}
	}
	return s, false
}

// finish places the virtual_ipaddress entries (now that every cluster's VIPs are known) and
// emits the objects.
func (k *kaImport) finish() {
	vips := map[string]bool{}
	for _, name := range k.order {
		for _, v := range k.clusters[name].Object.GetCluster().GetVips() {
			vips[v] = true
		}
	}
	if k.group != nil {
		seen := map[string]bool{}
		for _, e := range k.gwLines {
			addr := e.key
			a, err := netip.ParsePrefix(addr)
			if err != nil {
				ip, err2 := netip.ParseAddr(addr)
				if err2 != nil {
					k.res.warn(e.file, e.line, "virtual_ipaddress %s: not an address: not carried over", addr)
					continue
				}
				a = netip.PrefixFrom(ip, ip.BitLen())
			}
			dev := ""
			for i := 0; i+1 < len(e.args); i++ {
				if e.args[i] == "dev" {
					dev = e.args[i+1]
				}
			}
			if seen[a.String()] {
				continue
			}
			seen[a.String()] = true
			switch {
			case vips[a.Addr().String()] && (dev == "" || dev == k.group.VipInterface):
				// A VIP of an imported cluster: the ACTIVE holds it on vipInterface.
			case dev != "" && dev != k.group.VipInterface && k.group.Gateway == nil:
				k.group.Gateway = &lvsctlv1.Gateway{Address: a.String(), Interface: dev}
			default:
				k.res.warn(e.file, e.line, "virtual_ipaddress %s: not a VIP of an imported cluster nor the gateway (an address on another interface): not carried over", strings.Join(append([]string{addr}, e.args...), " "))
			}
		}
		if len(k.group.Directors) > 1 {
			for _, d := range k.group.Directors {
				if d.Address == "" {
					k.res.warn(k.groupAt.File, k.groupAt.Line, "director %s: no unicast_src_ip; a group of more than one director needs each one's address: set directors[].address", d.Name)
				}
			}
		}
		k.groupAt.Object = &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: k.group}}
		k.res.Objects = append(k.res.Objects, k.groupAt)
	}
	group := k.groupName()
	if group == "" && len(k.order) > 0 {
		group = "imported"
		k.res.warn(k.clusters[k.order[0]].File, 0, "no vrrp_instance and no --group: the clusters name director group %q, which must exist", group)
	}
	for _, name := range k.order {
		im := k.clusters[name]
		im.Object.GetCluster().DirectorGroup = group
		k.res.Objects = append(k.res.Objects, *im)
	}
}

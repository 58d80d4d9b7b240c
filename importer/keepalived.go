package importer

import (
	"encoding/hex"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	"github.com/lvsctl/lvsctl/failover"
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
		k.cluster(n, vsTarget{mark: uint32(mark)}, what, what)
	case len(n.args) == 2 && n.args[0] == "group":
		g := k.vsgs[n.args[1]]
		if g == nil {
			k.res.warn(n.file, n.line, "%s: no virtual_server_group %s: not imported", what, n.args[1])
			return
		}
		// A group's entries are one IPVS service each with the same real servers (keepalived
		// programs them so): one cluster each, faithfully.
		for _, e := range g.children {
			if e.key == "fwmark" && len(e.args) == 1 {
				if mark, err := strconv.ParseUint(e.args[0], 10, 32); err == nil && mark != 0 {
					k.cluster(n, vsTarget{mark: uint32(mark)}, what, what+" (fwmark "+e.args[0]+")")
					continue
				}
			}
			// addrs is empty when the entry is not imported (groupEntry said why).
			addrs, port := k.groupEntry(e, n.args[1])
			for _, a := range addrs {
				k.cluster(n, vsTarget{addr: a, port: port}, what, fmt.Sprintf("%s (%s %d)", what, a, port))
			}
		}
	case len(n.args) == 2:
		a, err := netip.ParseAddr(n.args[0])
		port, err2 := strconv.ParseUint(n.args[1], 10, 16)
		if err != nil || err2 != nil || a.Zone() != "" {
			k.res.warn(n.file, n.line, "%s: not an address and a port: not imported", what)
			return
		}
		k.cluster(n, vsTarget{addr: a.Unmap(), port: uint32(port)}, what, what)
	default:
		k.res.warn(n.file, n.line, "%s: not fwmark MARK, group NAME or ADDRESS PORT: not imported", what)
	}
}

// maxRangeExpand is the most addresses a virtual_server_group range (192.0.2.1-10 80) is
// expanded to: each is a cluster of its own, and a range of hundreds is better written by
// hand (or as a fwmark cluster, one IPVS service for all of them) than imported blindly.
const maxRangeExpand = 16

// groupEntry reads a virtual_server_group entry "ADDRESS PORT" or "ADDRESS-LAST PORT", where
// LAST replaces the address's last byte (IPv4, decimal) or last 16-bit group (IPv6, hex), as
// keepalived reads it. No address (and a warning saying why) when it is not imported.
func (k *kaImport) groupEntry(e *node, group string) (addrs []netip.Addr, port uint32) {
	where := "virtual_server_group " + group + ": " + strings.Join(append([]string{e.key}, e.args...), " ")
	if len(e.args) != 1 {
		k.res.warn(e.file, e.line, "%s: not ADDRESS PORT, ADDRESS-LAST PORT or fwmark MARK: not imported", where)
		return nil, 0
	}
	p, err := strconv.ParseUint(e.args[0], 10, 16)
	if err != nil {
		k.res.warn(e.file, e.line, "%s: %q is not a port: not imported", where, e.args[0])
		return nil, 0
	}
	first, last, isRange := strings.Cut(e.key, "-")
	a, err := netip.ParseAddr(first)
	if err != nil || a.Zone() != "" {
		k.res.warn(e.file, e.line, "%s: %q is not an address: not imported", where, first)
		return nil, 0
	}
	a = a.Unmap()
	if !isRange {
		return []netip.Addr{a}, uint32(p)
	}
	b := a.AsSlice()
	var from, to uint64
	if a.Is4() {
		from = uint64(b[3])
		to, err = strconv.ParseUint(last, 10, 8)
	} else {
		from = uint64(b[14])<<8 | uint64(b[15])
		to, err = strconv.ParseUint(last, 16, 16)
	}
	switch {
	case err != nil || to < from:
		k.res.warn(e.file, e.line, "%s: %q is not a range of the address's last part: not imported", where, e.key)
		return nil, 0
	case to-from+1 > maxRangeExpand:
		k.res.warn(e.file, e.line, "%s: %d addresses, more than the %d an import expands (each is a cluster): not imported; write them as clusters, or mark them into one fwmark cluster", where, to-from+1, maxRangeExpand)
		return nil, 0
	}
	for v := from; v <= to; v++ {
		if a.Is4() {
			b[3] = byte(v)
		} else {
			b[14], b[15] = byte(v>>8), byte(v)
		}
		n, _ := netip.AddrFromSlice(b)
		addrs = append(addrs, n)
	}
	return addrs, uint32(p)
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

// vsTarget is what a virtual_server matches: a firewall mark, or an address and a port (a
// plain service, whose protocol the block says).
type vsTarget struct {
	mark uint32
	addr netip.Addr
	port uint32
}

// kaPersistenceTimeout is keepalived's IPVS_SVC_PERSISTENT_TIMEOUT (6 minutes): the timeout of
// persistence_timeout without a value, or of persistence_granularity without a timeout.
const kaPersistenceTimeout = 6 * 60

// kaProtocols are keepalived's protocol names (it reads them in any case).
var kaProtocols = map[string]lvsctlv1.Protocol{"TCP": lvsctlv1.Protocol_PROTOCOL_TCP, "UDP": lvsctlv1.Protocol_PROTOCOL_UDP, "SCTP": lvsctlv1.Protocol_PROTOCOL_SCTP}

// kaFlag maps keepalived's scheduler flag keywords, for the scheduler set when they are
// read (keepalived takes sh-port and the like only after lvs_sched sh), to lvsctl's flags.
// flag-1 and flag-2 are IP_VS_SVC_F_SCHED1 and 2, which sh and mh read as fallback and port.
func kaFlag(key, scheduler string) (lvsctlv1.SchedulerFlag, bool) {
	switch {
	case scheduler == "sh" && (key == "sh-fallback" || key == "flag-1"):
		return lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_FALLBACK, true
	case scheduler == "sh" && (key == "sh-port" || key == "flag-2"):
		return lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT, true
	case scheduler == "mh" && (key == "mh-fallback" || key == "flag-1"):
		return lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_FALLBACK, true
	case scheduler == "mh" && (key == "mh-port" || key == "flag-2"):
		return lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT, true
	}
	return 0, false
}

// cluster imports one virtual_server block (or one entry of its group) as a cluster: a
// fwmark cluster with its mark pinned, or a plain service. what names the block (in the
// warnings about its settings, said once for all the entries of a group), from the entry.
func (k *kaImport) cluster(n *node, t vsTarget, what, from string) {
	plain := t.mark == 0
	c := &lvsctlv1.Cluster{Fwmark: t.mark, Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE, Reals: []*lvsctlv1.RealServer{}}
	var protoAt *node
	var delayLoop uint32
	type realAt struct {
		r    *lvsctlv1.RealServer
		n    *node
		port uint32
		// method is the real_server's own lvs_method, if it says one.
		method *kaMethod
	}
	var reals []realAt
	// vsMethod is the virtual_server's lvs_method, which its real servers take unless they
	// say their own (keepalived copies it into each).
	var vsMethod *kaMethod
	var sorry kaSorry
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
			m, problem, ok := parseKaMethod(s.args)
			if !ok {
				k.res.warn(s.file, s.line, "%s: lb_kind %s: unknown (want NAT, DR or TUN); direct routing (ipvsadm's default) kept", what, arg)
				continue
			}
			if problem != "" {
				k.res.warn(s.file, s.line, "%s: %s %s: %s: the tunnel options are not carried over", what, s.key, strings.Join(s.args, " "), problem)
			}
			c.Forwarding, c.Tunnel = m.fwd, m.tunnel
			vsMethod = &kaMethod{fwd: m.fwd, tunnel: m.tunnel, line: s.line}
		case "persistence_timeout":
			if arg == "" {
				arg = strconv.Itoa(kaPersistenceTimeout)
			}
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
			// marks' (--marks). A plain service's is this one.
			if plain {
				if _, known := kaProtocols[strings.ToUpper(arg)]; !known {
					k.res.warn(s.file, s.line, "%s: protocol %s: unknown (TCP, UDP or SCTP): not carried over", what, arg)
					continue
				}
				protoAt = s
			}
		case "ops":
			c.Ops = true
		case "sh-fallback", "sh-port", "mh-fallback", "mh-port", "flag-1", "flag-2", "flag-3":
			f, ok := kaFlag(s.key, c.Scheduler)
			if !ok {
				k.res.warn(s.file, s.line, "%s: %s: no flag of scheduler %s (keepalived takes sh-* after lvs_sched sh, mh-* after lvs_sched mh; flag-3 is read by none): not carried over", what, s.key, c.Scheduler)
				continue
			}
			if !slices.Contains(c.SchedulerFlags, f) {
				c.SchedulerFlags = append(c.SchedulerFlags, f)
			}
		case "real_server":
			r, port, method := k.real(s, what)
			if r != nil {
				reals = append(reals, realAt{r: r, n: s, port: port, method: method})
			}
		default:
			if !sorry.take(s) {
				k.warnUnknown(s, what+": ")
			}
		}
	}
	// Forwarding and tunnel are per real server in keepalived (each takes the
	// virtual_server's lvs_method unless it says its own) and per cluster in lvsctl: the
	// virtual_server's is the cluster's, else the first real server's own.
	method := vsMethod
	for _, ra := range reals {
		m := ra.method
		switch {
		case m == nil:
		case method == nil:
			method = m
			c.Forwarding, c.Tunnel = m.fwd, m.tunnel
		case m.fwd != method.fwd || !protoEqual(m.tunnel, method.tunnel):
			whose := "the virtual_server's"
			if method != vsMethod {
				whose = "the first real server's"
			}
			k.res.warn(ra.n.file, m.line, "%s: real_server %s: lvs_method %s differs from %s %s (line %d); lvsctl forwards one way per cluster: that one is kept",
				what, ra.r.Address, methodText(m.fwd, m.tunnel), whose, methodText(method.fwd, method.tunnel), method.line)
		}
	}
	// keepalived makes a service with persistence_granularity alone persistent for its
	// default timeout (pgr_handler).
	if p := c.Persistence; p != nil && p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = kaPersistenceTimeout
	}
	// A scheduler changed after its flags leaves them to a scheduler that ignores them.
	kept := c.SchedulerFlags[:0]
	for _, f := range c.SchedulerFlags {
		if want := validate.FlagScheduler(f); want != c.Scheduler {
			k.res.warn(n.file, n.line, "%s: flag %s was set for scheduler %s, but lvs_sched %s came after it: not carried over", what, validate.SchedulerFlagName(f), want, c.Scheduler)
			continue
		}
		kept = append(kept, f)
	}
	c.SchedulerFlags = kept
	if len(c.SchedulerFlags) == 0 {
		c.SchedulerFlags = nil
	}
	if plain {
		c.Service = &lvsctlv1.VirtualService{Address: t.addr.String(), Port: t.port}
		if protoAt != nil {
			c.Service.Protocol = kaProtocols[strings.ToUpper(protoAt.args[0])]
		} else {
			// keepalived sets UDP itself ("no protocol set - defaulting to UDP"): the
			// kernel would take protocol 0 as UDP anyway.
			c.Service.Protocol = lvsctlv1.Protocol_PROTOCOL_UDP
			k.res.warn(n.file, n.line, "%s: no protocol: UDP, as keepalived defaults it", what)
		}
		if c.Ops && c.Service.Protocol != lvsctlv1.Protocol_PROTOCOL_UDP {
			k.res.warn(n.file, n.line, "%s: ops on a %s service: keepalived resets it (one-packet scheduling is for UDP): not carried over", what, protoNames[c.Service.Protocol])
			c.Ops = false
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
			// keepalived checks the real server's port: its own, else (plain) the service's.
			port := ra.port
			if port == 0 && plain {
				port = t.port
			}
			if port == 0 {
				k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s: its %s check names no port (connect_port) and the real server has none: check not carried over", what, ra.r.Address, h.Check)
				ra.r.Health = nil
				continue
			}
			h.Port = port
		}
		if h.TimeoutMs > h.IntervalMs && h.IntervalMs != 0 {
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s: connect_timeout %s is longer than the check interval %s; lvsctl caps it at the interval", what, ra.r.Address, msText(h.TimeoutMs), msText(h.IntervalMs))
			h.TimeoutMs = h.IntervalMs
		}
	}
	for _, ra := range reals {
		if plain && ra.r.Address == t.addr.String() {
			// keepalived's own sample lists one: IPVS cannot forward to the director's own
			// VIP (lvsctl refuses a real server at the cluster's VIP).
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s is the service's own address: not imported", from, ra.r.Address)
			continue
		}
		c.Reals = append(c.Reals, ra.r)
		switch {
		case ra.port == 0:
		case !plain && c.Forwarding == lvsctlv1.Forwarding_FORWARDING_MASQ:
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s %d: a port on a fwmark service's real server sends every marked port to that one; lvsctl's fwmark clusters keep the port the client asked for: not carried over", what, ra.r.Address, ra.port)
		case !plain, ra.port == t.port:
			// The port the packet has anyway.
		case c.Forwarding == lvsctlv1.Forwarding_FORWARDING_MASQ:
			ra.r.Port = ra.port
		case t.port == 0:
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s %d: a service of every port keeps the port the client asked for: the port is not carried over", what, ra.r.Address, ra.port)
		default:
			k.res.warn(ra.n.file, ra.n.line, "%s: real_server %s %d: under %s the packet keeps the service's port %d (only NAT maps ports): the port is not carried over", what, ra.r.Address, ra.port, lbKinds[c.Forwarding], t.port)
		}
	}
	sorry.carry(k, c, t, plain, what)
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
	c.Name = fmt.Sprintf("fwmark-%d", t.mark)
	if plain {
		c.Name = Label(validate.FormatService(c.Service))
	}
	if old, dup := k.clusters[c.Name]; dup {
		oc := old.Object.GetCluster()
		c.Vips, c.Ports, c.DirectorGroup = oc.GetVips(), oc.GetPorts(), oc.GetDirectorGroup()
		// The same service in each director's file: keep the first, say when they differ.
		if !protoEqual(oc, c) {
			k.res.warn(n.file, n.line, "%s differs from the one in %s:%d; that one is kept", from, old.File, old.Line)
		}
		return
	}
	if !plain {
		if k.opt.Marks == nil || len(k.opt.Marks[t.mark]) == 0 {
			k.res.warn(n.file, n.line, "%s: its VIPs and ports are in the firewall rules, not in keepalived.conf; give them with --marks FILE (iptables-save -t mangle, nft list ruleset or an iptables script): not imported", from)
			return
		}
		vips, ports, warns := k.opt.Marks.clusterTraffic(t.mark)
		k.res.Warnings = append(k.res.Warnings, warns...)
		c.Vips, c.Ports = vips, ports
	}
	k.clusters[c.Name] = &Imported{Object: &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}, File: n.file, Line: n.line, From: from}
	k.order = append(k.order, c.Name)
}

// flagScheduler is the scheduler that reads a flag.
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
func (k *kaImport) real(n *node, what string) (*lvsctlv1.RealServer, uint32, *kaMethod) {
	if len(n.args) == 0 {
		k.res.warn(n.file, n.line, "%s: real_server without an address: not imported", what)
		return nil, 0, nil
	}
	a, err := netip.ParseAddr(n.args[0])
	if err != nil {
		k.res.warn(n.file, n.line, "%s: real_server %q is not an address: not imported", what, n.args[0])
		return nil, 0, nil
	}
	var port uint32
	if len(n.args) > 1 {
		p, err := strconv.ParseUint(n.args[1], 10, 16)
		if err != nil {
			k.res.warn(n.file, n.line, "%s: real_server %s: port %q is not a port: not imported", what, a, n.args[1])
			return nil, 0, nil
		}
		port = uint32(p)
	}
	r := &lvsctlv1.RealServer{Address: a.String(), Weight: 1}
	where := fmt.Sprintf("%s: real_server %s: ", what, a)
	var inhibit *node
	var method *kaMethod
	for _, s := range n.children {
		switch {
		case s.key == "lvs_method" || s.key == "lb_kind":
			m, problem, ok := parseKaMethod(s.args)
			if !ok {
				k.res.warn(s.file, s.line, "%s%s %s: unknown (want NAT, DR or TUN): not carried over", where, s.key, strings.Join(s.args, " "))
				continue
			}
			if problem != "" {
				k.res.warn(s.file, s.line, "%s%s %s: %s: the tunnel options are not carried over", where, s.key, strings.Join(s.args, " "), problem)
			}
			m.line = s.line
			method = &m
		case s.key == "inhibit_on_failure" && (len(s.args) == 0 || isTrue(s.args[0])):
			inhibit = s
		case s.key == "inhibit_on_failure" && isFalse(s.args[0]):
		case (s.key == "uthreshold" || s.key == "lthreshold") && len(s.args) > 0:
			v, err := strconv.ParseUint(s.args[0], 10, 32)
			if err != nil {
				k.res.warn(s.file, s.line, "%s%s %q is not a number: not carried over", where, s.key, s.args[0])
				continue
			}
			if s.key == "uthreshold" {
				r.UpperThreshold = uint32(v)
			} else {
				r.LowerThreshold = uint32(v)
			}
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
	return r, port, method
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
			k.res.warn(s.file, s.line, "%s: advert_int %s: not carried over: lvsctl's failover.heartbeatInterval is not VRRP's advertisement (directors heartbeat each other and the controller; defaults %s, dead after %s)", what, arg, failover.DefaultInterval, failover.DefaultDeadAfter)
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
		c := k.clusters[name].Object.GetCluster()
		for _, v := range c.GetVips() {
			vips[v] = true
		}
		if s := c.GetService(); s != nil {
			vips[s.GetAddress()] = true
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

package validate

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/failover"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Limits of the fields, each from the kernel or the tool whose convention we follow.
const (
	// MaxPort is the highest TCP/UDP/SCTP port.
	MaxPort = 65535
	// MaxWeight is ipvsadm's limit for -w (the kernel takes an int, ipvsadm refuses more).
	MaxWeight = 65535
	// MaxPersistenceTimeout is ipvsadm's MAX_TIMEOUT (31 days). The kernel stores the timeout
	// in jiffies in an unsigned int, so a larger value could overflow at HZ=1000 (49.7 days).
	MaxPersistenceTimeout = 86400 * 31
	// MaxFWMark is the highest mark an operator may pin. The kernel and nftables take any u32,
	// but we keep the top bit free: the controller allocates marks from 1 upwards, and a
	// positive signed 32-bit value survives every tool that parses marks as int (ipvsadm
	// -f on 32-bit builds, iptables-save readers, JSON consumers without uint32).
	MaxFWMark = 1<<31 - 1
	// MinPriority and MaxPriority follow keepalived's VRRP priority range.
	MinPriority = 1
	MaxPriority = 255
	// MaxSyncID is the IPVS sync daemon's syncid, a u8 in the kernel.
	MaxSyncID = 255
	// maxNameLen is the RFC 1123 label limit.
	maxNameLen = limits.MaxNameLen
	// maxIfNameLen is IFNAMSIZ-1: the kernel refuses longer interface names.
	maxIfNameLen = limits.MaxIfNameLen
)

// schedulers are the IPVS schedulers the kernel ships (ip_vs_*.ko), in ipvsadm's spelling.
var schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Object checks one object on its own. It returns nil or an error joining one *FieldError per
// problem; every one matches ErrInvalid.
func Object(o *lvsctlv1.Object) error {
	switch k := o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		return Cluster(k.Cluster)
	case *lvsctlv1.Object_Group:
		return Group(k.Group)
	}
	return &FieldError{Path: "kind", Reason: "required (Cluster or DirectorGroup)"}
}

// KindName returns the kind (KindCluster, KindGroup) and name of an object, "" for neither.
func KindName(o *lvsctlv1.Object) (kind, name string) {
	switch k := o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		return KindCluster, k.Cluster.GetName()
	case *lvsctlv1.Object_Group:
		return KindGroup, k.Group.GetName()
	}
	return "", ""
}

func checkName(c *collector, path, name string) {
	switch {
	case name == "":
		c.add(path, "required")
	case len(name) > maxNameLen:
		c.add(path, "%s is longer than %d characters", limits.Quote(name), maxNameLen)
	case !dnsLabel.MatchString(name):
		c.add(path, "%s is not a DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)", limits.Quote(name))
	}
}

// limitedBroadcast is 255.255.255.255, which no host owns. A subnet's directed broadcast
// cannot be known from an address alone, so it is not refused.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// parseAddr parses an address (of a VIP, a real server, a director or a gateway); it refuses
// what no host can be: the unspecified, multicast and limited broadcast addresses.
func parseAddr(s string) (netip.Addr, string) {
	if s == "" {
		return netip.Addr{}, "required"
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, fmt.Sprintf("%s is not an IP address", limits.Quote(s))
	case a.Zone() != "":
		return netip.Addr{}, fmt.Sprintf("%s has a zone; IPVS addresses have none", limits.Quote(s))
	case a.Is4In6():
		return netip.Addr{}, fmt.Sprintf("%q is an IPv4-mapped IPv6 address; write %s", s, a.Unmap())
	case a.IsUnspecified():
		return netip.Addr{}, fmt.Sprintf("%s is the unspecified address", s)
	case a.IsMulticast():
		return netip.Addr{}, fmt.Sprintf("%s is a multicast address", s)
	case a == limitedBroadcast:
		return netip.Addr{}, fmt.Sprintf("%s is the broadcast address", s)
	}
	return a, ""
}

// serviceAddr parses the address of a VIP or a real server: parseAddr's, and not loopback.
// A loopback VIP is reachable from the director alone, and a loopback real server is the
// director itself, which IPVS cannot forward to (martian destinations are dropped unless
// route_localnet is set). Directors' own addresses and the gateway may be loopback: directors
// in network namespaces or on one test host heartbeat each other there.
func serviceAddr(s string) (netip.Addr, string) {
	a, reason := parseAddr(s)
	if reason == "" && a.IsLoopback() {
		return netip.Addr{}, fmt.Sprintf("%s is a loopback address", a)
	}
	return a, reason
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// PortPath is the manifest path of a port entry: ports[i].port for a single port, ports[i].ports
// for a range (reversed ones included).
func PortPath(i int, p *lvsctlv1.PortRange) string {
	if p.GetFirst() == p.GetLast() {
		return fmt.Sprintf("ports[%d].port", i)
	}
	return fmt.Sprintf("ports[%d].ports", i)
}

// FormatPorts prints a port entry as "udp 1024-5000" or "tcp 554".
func FormatPorts(p *lvsctlv1.PortRange) string {
	return protoName(p.GetProtocol()) + " " + portText(p)
}

func portText(p *lvsctlv1.PortRange) string {
	if p.GetFirst() == p.GetLast() {
		return fmt.Sprint(p.GetFirst())
	}
	return fmt.Sprintf("%d-%d", p.GetFirst(), p.GetLast())
}

func protoName(p lvsctlv1.Protocol) string {
	switch p {
	case lvsctlv1.Protocol_PROTOCOL_TCP:
		return "tcp"
	case lvsctlv1.Protocol_PROTOCOL_UDP:
		return "udp"
	case lvsctlv1.Protocol_PROTOCOL_SCTP:
		return "sctp"
	}
	return fmt.Sprintf("protocol(%d)", int32(p))
}

func overlaps(a, b *lvsctlv1.PortRange) bool {
	return a.GetProtocol() == b.GetProtocol() && a.GetFirst() <= b.GetLast() && b.GetFirst() <= a.GetLast()
}

// Cluster checks one cluster. A cluster with no reals is valid: IPVS accepts a service without
// destinations (it drops the traffic), which is how an operator drains the last server or
// prepares a cluster before its servers exist.
func Cluster(cl *lvsctlv1.Cluster) error {
	c := &collector{kind: KindCluster, name: cl.GetName()}
	checkName(c, "name", cl.GetName())
	if cl.GetDirectorGroup() == "" {
		c.add("directorGroup", "required")
	} else {
		checkName(c, "directorGroup", cl.GetDirectorGroup())
	}
	// Counts first: a cluster past them is refused on them alone, before any work in
	// proportion to its lists (the port entries are compared pairwise).
	over := checkCount(c, "vips", len(cl.GetVips()), limits.MaxVIPsPerCluster, "VIPs per cluster")
	over = checkCount(c, "ports", len(cl.GetPorts()), limits.MaxPortsPerCluster, "port entries per cluster") || over
	over = checkCount(c, "reals", len(cl.GetReals()), limits.MaxRealsPerCluster, "real servers per cluster") || over
	if over {
		return c.err()
	}

	// One IPVS service has one address family: the service's address, or the first valid
	// VIP, sets it.
	var fam string
	vips := map[netip.Addr]int{}
	// A plain service's vips and ports, if any, are refused whole by checkService.
	svc := cl.GetService()
	fwVIPs, fwPorts := cl.GetVips(), cl.GetPorts()
	var svcAddr netip.Addr
	if svc != nil {
		fwVIPs, fwPorts = nil, nil
		svcAddr = checkService(c, cl)
		if svcAddr.IsValid() {
			fam = family(svcAddr)
		}
	} else if len(cl.GetVips()) == 0 {
		c.add("vips", "at least one VIP is required")
	}
	for i, s := range fwVIPs {
		path := fmt.Sprintf("vips[%d]", i)
		a, reason := serviceAddr(s)
		if reason != "" {
			c.add(path, "%s", reason)
			continue
		}
		if j, dup := vips[a]; dup {
			c.add(path, "%s is listed twice (vips[%d])", a, j)
			continue
		}
		vips[a] = i
		if fam == "" {
			fam = family(a)
		} else if family(a) != fam {
			c.add(path, "%s is %s but the cluster's first VIP is %s (one IPVS service has one address family)", a, family(a), fam)
		}
	}

	if len(cl.GetPorts()) == 0 && svc == nil {
		c.add("ports", "at least one port is required")
	}
	for i, p := range fwPorts {
		switch p.GetProtocol() {
		case lvsctlv1.Protocol_PROTOCOL_TCP, lvsctlv1.Protocol_PROTOCOL_UDP, lvsctlv1.Protocol_PROTOCOL_SCTP:
		case lvsctlv1.Protocol_PROTOCOL_UNSPECIFIED:
			c.add(fmt.Sprintf("ports[%d].protocol", i), "required (tcp, udp or sctp)")
		default:
			c.add(fmt.Sprintf("ports[%d].protocol", i), "unknown protocol %d (want tcp, udp or sctp)", int32(p.GetProtocol()))
		}
		path := PortPath(i, p)
		switch {
		case p.GetFirst() > p.GetLast():
			c.add(path, "range %s is reversed", portText(p))
			continue
		case p.GetFirst() < 1 || p.GetLast() > MaxPort:
			c.add(path, "%s is out of range 1-%d", portText(p), MaxPort)
			continue
		}
		// Overlapping entries of one cluster are allowed: they all set the same mark, and the
		// seed's WMS cluster lists udp 1755 next to udp 1024-5000. An exact repeat is a typo.
		for j, q := range cl.GetPorts()[:i] {
			if q.GetProtocol() == p.GetProtocol() && q.GetFirst() == p.GetFirst() && q.GetLast() == p.GetLast() {
				c.add(fmt.Sprintf("ports[%d]", i), "%s is listed twice (ports[%d])", FormatPorts(p), j)
				break
			}
		}
	}

	if !slices.Contains(schedulers, cl.GetScheduler()) {
		if cl.GetScheduler() == "" {
			c.add("scheduler", "required (one of %s)", strings.Join(schedulers, " "))
		} else {
			c.add("scheduler", "unknown scheduler %s (want one of %s)", limits.Quote(cl.GetScheduler()), strings.Join(schedulers, " "))
		}
	}

	if p := cl.GetPersistence(); p != nil {
		if p.GetTimeoutSeconds() > MaxPersistenceTimeout {
			c.add("persistence.timeout", "%ds is longer than %ds (31 days, ipvsadm's limit)", p.GetTimeoutSeconds(), MaxPersistenceTimeout)
		}
		if p.GetTimeoutSeconds() == 0 && p.GetNetmaskBits() != 0 {
			c.add("persistence.netmask", "set without a timeout (persistence is off when the timeout is 0)")
		}
		maxBits := uint32(32)
		if fam == "IPv6" {
			maxBits = 128
		}
		if p.GetNetmaskBits() > maxBits {
			c.add("persistence.netmask", "/%d is longer than /%d for %s", p.GetNetmaskBits(), maxBits, familyOr(fam))
		}
	}

	switch cl.GetForwarding() {
	case lvsctlv1.Forwarding_FORWARDING_MASQ, lvsctlv1.Forwarding_FORWARDING_ROUTE, lvsctlv1.Forwarding_FORWARDING_TUNNEL:
	case lvsctlv1.Forwarding_FORWARDING_UNSPECIFIED:
		c.add("forwarding", "required (masq, route or tunnel)")
	default:
		c.add("forwarding", "unknown forwarding %d (want masq, route or tunnel)", int32(cl.GetForwarding()))
	}

	checkSchedulerFlags(c, cl)
	checkOps(c, cl)
	checkTunnel(c, cl)

	// The family of the reals follows the service's. The kernel takes a real of the other
	// family under tunnel forwarding alone (IPv4 in IPv6 and back, since Linux 3.18), and
	// refuses even that while a sync daemon runs (ip_vs_genl_set_cmd: the sync protocol
	// cannot carry mixed families); lvsctl keeps one family per service, as issue 12 says,
	// so that adding sync to a group never breaks its clusters.
	vipsAre := "the VIPs are"
	if svc != nil {
		vipsAre = "the service's address is"
	}
	reals := map[netip.Addr]int{}
	for i, r := range cl.GetReals() {
		path := fmt.Sprintf("reals[%d].address", i)
		a, reason := serviceAddr(r.GetAddress())
		switch {
		case reason != "":
			c.add(path, "%s", reason)
		case fam != "" && family(a) != fam:
			c.add(path, "%s is %s but %s %s (one IPVS service has one address family)", a, family(a), vipsAre, fam)
		default:
			if j, dup := reals[a]; dup {
				c.add(path, "%s is listed twice (reals[%d])", a, j)
			} else if j, isVIP := vips[a]; isVIP {
				c.add(path, "%s is the cluster's VIP (vips[%d])", a, j)
			} else if a == svcAddr {
				c.add(path, "%s is the cluster's VIP (service.address)", a)
			}
			reals[a] = i
		}
		if r.GetWeight() > MaxWeight {
			c.add(fmt.Sprintf("reals[%d].weight", i), "%d is more than %d", r.GetWeight(), MaxWeight)
		}
		checkRealPort(c, cl, i, r)
		checkThresholds(c, i, r)
	}

	checkHealth(c, cl)
	checkSorry(c, cl, fam, vips, svcAddr, reals)

	if svc != nil && cl.GetFwmark() != 0 {
		c.add("fwmark", "%d is set on a plain service (service): it has no mark; leave fwmark out", cl.GetFwmark())
	} else if cl.GetFwmark() > MaxFWMark {
		c.add("fwmark", "%d is more than %d (0 lets the controller allocate one)", cl.GetFwmark(), MaxFWMark)
	}
	if cl.GetRevision() < 0 {
		c.add("revision", "%d is negative", cl.GetRevision())
	}
	return c.err()
}

func familyOr(fam string) string {
	if fam == "" {
		return "IPv4"
	}
	return fam
}

// checkCount reports a list longer than its limit; it returns whether it was.
func checkCount(c *collector, path string, n, max int, what string) bool {
	if n <= max {
		return false
	}
	c.add(path, "%d %s, more than the limit of %d", n, what, max)
	return true
}

// validIfName mirrors the kernel's dev_valid_name (net/core/dev.c): 1 to IFNAMSIZ-1 bytes,
// not "." or "..", no '/', ':' or byte the kernel's isspace() takes, which includes 0xa0
// (its ctype table is Latin-1: a UTF-8 "à" is refused). It also refuses what the kernel
// would read differently from what was written: a NUL (the name ends there in C), '%' (a
// template: "eth%d" is given the first free number, never that name), and other control
// characters, which no tool can type.
func validIfName(s string) string {
	switch {
	case s == "":
		return "required"
	case len(s) > maxIfNameLen:
		return fmt.Sprintf("%s is longer than %d characters (IFNAMSIZ)", limits.Quote(s), maxIfNameLen)
	case !utf8.ValidString(s):
		return fmt.Sprintf("%q is not UTF-8 text", s)
	case s == "." || s == "..":
		return fmt.Sprintf("%q is not an interface name", s)
	case strings.ContainsAny(s, "/: \t\n\v\f\r"):
		return fmt.Sprintf("%q contains '/', ':' or white space", s)
	case strings.IndexByte(s, 0xa0) >= 0:
		return fmt.Sprintf("%q contains the byte 0xa0, a space to the kernel (it is in the UTF-8 of à, Š, Ġ and more)", s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Sprintf("%q contains a NUL byte", s)
	case strings.IndexByte(s, '%') >= 0:
		return fmt.Sprintf("%q contains '%%' (the kernel reads it as a template: eth%%d names the first free eth0, eth1, ...)", s)
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return fmt.Sprintf("%q contains a control character", s)
	}
	return ""
}

// Group checks one director group.
func Group(g *lvsctlv1.DirectorGroup) error {
	c := &collector{kind: KindGroup, name: g.GetName()}
	checkName(c, "name", g.GetName())
	if checkCount(c, "directors", len(g.GetDirectors()), limits.MaxDirectorsPerGroup, "directors per group") {
		return c.err()
	}
	if len(g.GetDirectors()) == 0 {
		c.add("directors", "at least one director is required")
	}
	names := map[string]int{}
	for i, d := range g.GetDirectors() {
		path := fmt.Sprintf("directors[%d]", i)
		checkName(c, path+".name", d.GetName())
		if j, dup := names[d.GetName()]; dup && d.GetName() != "" {
			c.add(path+".name", "%s is listed twice (directors[%d])", limits.Quote(d.GetName()), j)
		}
		names[d.GetName()] = i
		if d.GetPriority() < MinPriority || d.GetPriority() > MaxPriority {
			c.add(path+".priority", "%d is out of range %d-%d", d.GetPriority(), MinPriority, MaxPriority)
		}
	}
	addrs := directorAddresses(c, g)
	if r := validIfName(g.GetVipInterface()); r != "" {
		c.add("vipInterface", "%s", r)
	}
	if gw := g.GetGateway(); gw != nil {
		p, err := netip.ParsePrefix(gw.GetAddress())
		switch {
		case gw.GetAddress() == "":
			c.add("gateway.address", "required (an address with its prefix length, e.g. 198.51.100.254/24)")
		case err != nil:
			c.add("gateway.address", "%s is not an address with a prefix length (e.g. 198.51.100.254/24)", limits.Quote(gw.GetAddress()))
		default:
			if _, reason := parseAddr(p.Addr().String()); reason != "" || p.Addr().Zone() != "" {
				c.add("gateway.address", "%s", firstNonEmpty(reason, "has a zone"))
				break
			}
			gwAddr := p.Addr()
			for _, d := range addrs {
				if d.addr == gwAddr {
					c.add(d.path, "%s is the gateway's address (gateway.address); the gateway moves between directors, a director's address does not", d.addr)
				}
			}
			// The group's one family is the directors' (the first address sets it, and
			// directorAddresses refuses the others): a gateway of the other family would
			// sit on a network the directors do not speak, so no real server could use it.
			if len(addrs) > 0 && family(gwAddr) != family(addrs[0].addr) {
				c.add("gateway.address", "%s is %s but the directors' addresses are %s (%s)", gwAddr, family(gwAddr), family(addrs[0].addr), addrs[0].path)
			}
		}
		if r := validIfName(gw.GetInterface()); r != "" {
			c.add("gateway.interface", "%s", r)
		}
	}
	if s := g.GetSync(); s != nil {
		if r := validIfName(s.GetInterface()); r != "" {
			c.add("sync.interface", "%s", r)
		}
		if s.GetSyncId() > MaxSyncID {
			c.add("sync.syncId", "%d is more than %d (the kernel's sync id is one byte)", s.GetSyncId(), MaxSyncID)
		}
	}
	checkFailover(c, g)
	if g.GetRevision() < 0 {
		c.add("revision", "%d is negative", g.GetRevision())
	}
	return c.err()
}

// eachDirectorAddress calls fn with each director's address that Group accepts as one, for
// the checks between objects.
func eachDirectorAddress(g *lvsctlv1.DirectorGroup, fn func(i int, a netip.Addr)) {
	for i, d := range g.GetDirectors() {
		if a, reason := parseAddr(d.GetAddress()); reason == "" {
			fn(i, a)
		}
	}
}

// directorAddress is a director's valid address and its manifest path.
type directorAddress struct {
	addr netip.Addr
	path string
}

// directorAddresses checks each director's address (where its peers heartbeat and probe it)
// and returns the valid ones. A one-director group needs none: it has no peer.
func directorAddresses(c *collector, g *lvsctlv1.DirectorGroup) []directorAddress {
	var out []directorAddress
	seen := map[netip.Addr]int{}
	for i, d := range g.GetDirectors() {
		path := fmt.Sprintf("directors[%d].address", i)
		s := d.GetAddress()
		if s == "" {
			if len(g.GetDirectors()) > 1 {
				c.add(path, "required in a group of more than one director (where its peers reach it, e.g. 198.51.100.252)")
			}
			continue
		}
		if _, err := netip.ParsePrefix(s); err == nil {
			c.add(path, "%s has a prefix length; write the address alone", limits.Quote(s))
			continue
		}
		a, reason := parseAddr(s)
		if reason != "" {
			c.add(path, "%s", reason)
			continue
		}
		// An IPv6 link-local address needs a zone to send to, and zones are per host.
		if a.Is6() && a.IsLinkLocalUnicast() {
			c.add(path, "%s is link-local: peers cannot reach it without a zone (use a global or unique local address)", a)
			continue
		}
		if j, dup := seen[a]; dup {
			c.add(path, "%s is listed twice (directors[%d].address)", a, j)
			continue
		}
		seen[a] = i
		// Peers heartbeat each other from their own address: one family for the group.
		if len(out) > 0 && family(a) != family(out[0].addr) {
			c.add(path, "%s is %s but %s is %s (directors heartbeat each other over one address family)", a, family(a), out[0].path, family(out[0].addr))
			continue
		}
		out = append(out, directorAddress{addr: a, path: path})
	}
	return out
}

// Bounds of the failover timings.
const (
	// MinHeartbeatInterval keeps heartbeats (to every peer and the controller, from every
	// director) far from a busy loop; 10 ms is already 100 packets a second per peer.
	MinHeartbeatInterval = 10 * time.Millisecond
	// MaxFailoverTiming bounds every timing: a minute without detecting a dead director is
	// an outage, not a setting.
	MaxFailoverTiming = 60 * time.Second
)

// checkFailover checks the timings as the directors and the controller will use them
// (package failover: defaults for the fields left out), naming the field that was set: a
// deadAfter of 150ms is wrong next to the default interval of 100ms as much as next to an
// interval written out.
func checkFailover(c *collector, g *lvsctlv1.DirectorGroup) {
	f := g.GetFailover()
	if f == nil {
		return
	}
	s := failover.Of(g)
	type timing struct {
		path, key string
		set       bool
		d         time.Duration
	}
	interval := timing{"failover.heartbeatInterval", "heartbeatInterval", f.GetHeartbeatIntervalMs() != 0, s.Interval}
	deadAfter := timing{"failover.deadAfter", "deadAfter", f.GetDeadAfterMs() != 0, s.DeadAfter}
	fence := timing{"failover.fenceTime", "fenceTime", f.GetFenceMs() != 0, s.Fence}
	name := func(t timing) string {
		if t.set {
			return fmt.Sprintf("%s (%s)", t.key, t.d)
		}
		return fmt.Sprintf("the default %s (%s)", t.key, t.d)
	}
	tooLong := false
	for _, t := range []timing{interval, deadAfter, fence} {
		if t.set && t.d > MaxFailoverTiming {
			c.add(t.path, "%s is longer than %s", t.d, MaxFailoverTiming)
			tooLong = true
		}
	}
	if interval.d < MinHeartbeatInterval {
		c.add(interval.path, "%s is less than %s", interval.d, MinHeartbeatInterval)
	}
	// An ordering is reported on the larger field when it was written, else on the smaller
	// one: the larger is then the default.
	order := func(small, large timing, factor time.Duration, times, fraction string) {
		switch {
		case tooLong || large.d >= factor*small.d:
		case large.set:
			c.add(large.path, "%s is less than %s%s", large.d, times, name(small))
		default:
			c.add(small.path, "%s is more than %s%s", small.d, fraction, name(large))
		}
	}
	// deadAfter spans at least two intervals, so one lost heartbeat is not a lost director.
	order(interval, deadAfter, 2, "twice ", "half ")
	// A fence shorter than detection would make an ACTIVE drop its addresses over a blip
	// that its peers and the controller do not even count as a loss: nobody would take over.
	order(deadAfter, fence, 1, "", "")
	if f.GetPort() > MaxPort {
		c.add("failover.port", "%d is out of range 1-%d", f.GetPort(), MaxPort)
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

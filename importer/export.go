package importer

// Export: lvsctl objects back into the files the old tools read, for review and for a rollback
// to them. Each export writes what lvsctl does (effective values, health defaults filled in),
// not what the manifest left out, so keepalived or ipvsadm behaves as lvsctl did; what the
// target cannot say is a Note, never dropped silently.

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Exported is one export: the file's text and what it could not carry over.
type Exported struct {
	Text []byte
	// Notes say, each as "cluster/NAME: what and why" or "group/NAME: ...", what the target
	// cannot express (or what the export chose where lvsctl says nothing).
	Notes []string
}

func (e *Exported) note(kind, name, format string, args ...any) {
	n := kind + "/" + name + ": " + fmt.Sprintf(format, args...)
	if !slices.Contains(e.Notes, n) {
		e.Notes = append(e.Notes, n)
	}
}

// ErrExport is matched by the errors of the exports: objects they cannot write at all.
var ErrExport = errors.New("cannot export")

// exportSet splits objs into at most one group and its clusters: fwmark clusters by mark,
// then plain services by name.
func exportSet(objs []*lvsctlv1.Object) (*lvsctlv1.DirectorGroup, []*lvsctlv1.Cluster, error) {
	var g *lvsctlv1.DirectorGroup
	var cs []*lvsctlv1.Cluster
	for _, o := range objs {
		switch {
		case o.GetGroup() != nil:
			if g != nil {
				return nil, nil, fmt.Errorf("%w: groups %s and %s: one group is one keepalived site", ErrExport, g.GetName(), o.GetGroup().GetName())
			}
			g = o.GetGroup()
		case o.GetCluster() != nil:
			c := o.GetCluster()
			if c.GetFwmark() == 0 && c.GetService() == nil {
				// The controller allocates a mark on create: an object from it always has one.
				return nil, nil, fmt.Errorf("%w: cluster %s has no fwmark yet (export what the controller stored)", ErrExport, c.GetName())
			}
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b *lvsctlv1.Cluster) int {
		switch {
		case clusterLess(a, b):
			return -1
		case clusterLess(b, a):
			return 1
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
	// fwmark clusters are sorted by mark, so a shared one is a neighbour; plain services are
	// sorted by name, so theirs are looked up.
	services := map[string]string{}
	for i, b := range cs {
		if s := b.GetService(); s != nil {
			k := ipvsadmService(s)
			if a, dup := services[k]; dup {
				return nil, nil, fmt.Errorf("%w: clusters %s and %s are both %s (clusters of different groups?)", ErrExport, a, b.GetName(), validate.FormatService(s))
			}
			services[k] = b.GetName()
			continue
		}
		if a := cs[max(i-1, 0)]; i > 0 && a.GetService() == nil && a.GetFwmark() == b.GetFwmark() {
			return nil, nil, fmt.Errorf("%w: clusters %s and %s share fwmark %d (clusters of different groups?)", ErrExport, a.GetName(), b.GetName(), b.GetFwmark())
		}
	}
	return g, cs, nil
}

// netmask is ipvsadm's and keepalived's spelling of a persistence netmask: dotted for IPv4, the
// prefix length for IPv6.
func netmask(bits uint32, v6 bool) string {
	if v6 || bits > 32 {
		return strconv.FormatUint(uint64(bits), 10)
	}
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return fmt.Sprintf("%d.%d.%d.%d", m>>24, m>>16&255, m>>8&255, m&255)
}

func isV6(c *lvsctlv1.Cluster) bool {
	addrs := append(slices.Clone(c.GetVips()), realAddrs(c)...)
	if s := c.GetService(); s != nil {
		addrs = append(addrs, s.GetAddress())
	}
	for _, a := range addrs {
		if ip, err := netip.ParseAddr(a); err == nil && ip.Is6() && !ip.Is4In6() {
			return true
		}
	}
	return false
}

func realAddrs(c *lvsctlv1.Cluster) []string {
	var out []string
	for _, r := range c.GetReals() {
		out = append(out, r.GetAddress())
	}
	return out
}

// kernelWeight is the weight lvsctl programs: 0 for a drained real server.
func kernelWeight(e *Exported, c *lvsctlv1.Cluster, r *lvsctlv1.RealServer) uint32 {
	if r.GetDrained() {
		e.note("cluster", c.GetName(), "real server %s is drained: written with weight 0 (what the kernel has); its weight %d and the drained mark are not expressible", r.GetAddress(), r.GetWeight())
		return 0
	}
	return r.GetWeight()
}

// commonNotes lists what neither ipvsadm nor keepalived can say of a cluster.
func commonNotes(e *Exported, c *lvsctlv1.Cluster) {
	if c.GetRemoveGraceMs() != 0 || c.GetRemoveNow() {
		e.note("cluster", c.GetName(), "removeGrace/removeNow: not expressible (they say how lvsctl removes a real server, not a state)")
	}
	if p := c.GetPersistence(); p.GetTimeoutSeconds() == 0 && p.GetNetmaskBits() != 0 {
		e.note("cluster", c.GetName(), "persistence netmask %d without a timeout does nothing: not written", p.GetNetmaskBits())
	}
}

// ExportIpvsadm writes the clusters as an ipvsadm-restore file (the format of ipvsadm-save -n):
// one -A line per cluster (-f MARK, or -t/-u/--sctp-service ADDRESS:PORT for a plain
// service) and one -a line per real server. The file has no comments
// (ipvsadm -R reads every line as a command); the marks are ExportMarks'. The group itself
// (directors, VIPs, gateway, sync, failover) is not in it: a note says so.
func ExportIpvsadm(objs []*lvsctlv1.Object) (*Exported, error) {
	g, cs, err := exportSet(objs)
	if err != nil {
		return nil, err
	}
	e := &Exported{}
	if g != nil {
		e.note("group", g.GetName(), "directors, vipInterface, gateway, sync and failover are not expressible in an ipvsadm-restore file (export keepalived says them)")
	}
	var b strings.Builder
	for _, c := range cs {
		commonNotes(e, c)
		if sv := c.GetSorryServer(); sv != nil {
			e.note("cluster", c.GetName(), "sorryServer %s: not expressible in an ipvsadm-restore file (it is a destination only while no real server can take connections; export keepalived says it)", sv.GetAddress())
		}
		v6 := isV6(c)
		svc := fmt.Sprintf("-f %d", c.GetFwmark())
		if s := c.GetService(); s != nil {
			svc = ipvsadmService(s)
		}
		fmt.Fprintf(&b, "-A %s", svc)
		if v6 && c.GetService() == nil {
			b.WriteString(" -6")
		}
		fmt.Fprintf(&b, " -s %s", c.GetScheduler())
		if fs := c.GetSchedulerFlags(); len(fs) > 0 {
			fmt.Fprintf(&b, " -b %s", strings.Join(validate.SchedulerFlagNames(fs), ","))
		}
		if p := c.GetPersistence(); p.GetTimeoutSeconds() != 0 {
			fmt.Fprintf(&b, " -p %d", p.GetTimeoutSeconds())
			if p.GetNetmaskBits() != 0 {
				fmt.Fprintf(&b, " -M %s", netmask(p.GetNetmaskBits(), v6))
			}
		}
		if c.GetOps() {
			b.WriteString(" -o")
		}
		b.WriteString("\n")
		fwd := map[lvsctlv1.Forwarding]string{lvsctlv1.Forwarding_FORWARDING_MASQ: "-m", lvsctlv1.Forwarding_FORWARDING_ROUTE: "-g", lvsctlv1.Forwarding_FORWARDING_TUNNEL: "-i"}[c.GetForwarding()]
		if fwd == "" {
			return nil, fmt.Errorf("%w: cluster %s: forwarding %v", ErrExport, c.GetName(), c.GetForwarding())
		}
		for _, r := range c.GetReals() {
			a, err := netip.ParseAddr(r.GetAddress())
			if err != nil {
				return nil, fmt.Errorf("%w: cluster %s: real server %q is not an address", ErrExport, c.GetName(), r.GetAddress())
			}
			fmt.Fprintf(&b, "-a %s -r %s %s -w %d%s%s\n", svc, netip.AddrPortFrom(a, uint16(realPort(c, r))), fwd, kernelWeight(e, c, r), ipvsadmThresholds(r), ipvsadmTunnelOptions(c.GetTunnel()))
		}
		if c.GetHealth() != nil || slices.ContainsFunc(c.GetReals(), func(r *lvsctlv1.RealServer) bool { return r.GetHealth() != nil }) {
			e.note("cluster", c.GetName(), "health checks are not expressible in an ipvsadm-restore file (export keepalived says them): the weights are written as configured")
		}
	}
	e.Text = []byte(b.String())
	return e, nil
}

// realPort is the port a real server has in the kernel: its own, else a plain service's
// (ipvsadm-save writes it so), 0 on a fwmark service.
func realPort(c *lvsctlv1.Cluster, r *lvsctlv1.RealServer) uint32 {
	if r.GetPort() != 0 {
		return r.GetPort()
	}
	return c.GetService().GetPort()
}

func ipvsadmThresholds(r *lvsctlv1.RealServer) string {
	var s string
	if r.GetUpperThreshold() != 0 {
		s += fmt.Sprintf(" -x %d", r.GetUpperThreshold())
	}
	if r.GetLowerThreshold() != 0 {
		s += fmt.Sprintf(" -y %d", r.GetLowerThreshold())
	}
	return s
}

var protoNames = map[lvsctlv1.Protocol]string{lvsctlv1.Protocol_PROTOCOL_TCP: "tcp", lvsctlv1.Protocol_PROTOCOL_UDP: "udp", lvsctlv1.Protocol_PROTOCOL_SCTP: "sctp"}

// ExportMarks writes the firewall marks lvsctl's agents program in nftables (prerouting,
// priority mangle) as a shell script of iptables -t mangle -A PREROUTING lines (ip6tables for
// IPv6 VIPs), the form of the Windows Media guide's commands: what an operator runs with
// ipvsadm-restore or keepalived to go back to the old tools. ParseMarks reads it back.
func ExportMarks(objs []*lvsctlv1.Object) (*Exported, error) {
	g, cs, err := exportSet(objs)
	if err != nil {
		return nil, err
	}
	e := &Exported{}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# The firewall marks of ")
	if g != nil {
		fmt.Fprintf(&b, "group %s's clusters", g.GetName())
	} else {
		b.WriteString("the clusters below")
	}
	b.WriteString(" (lvsctl export --marks): lvsctl marks in nftables\n# (prerouting, priority mangle); these iptables rules mark the same traffic.\nset -e\n")
	for _, c := range cs {
		if c.GetService() != nil {
			continue // a plain service is matched by address, protocol and port: no mark
		}
		fmt.Fprintf(&b, "# cluster %s (fwmark %d)\n", c.GetName(), c.GetFwmark())
		for _, v := range c.GetVips() {
			a, err := netip.ParseAddr(v)
			if err != nil {
				return nil, fmt.Errorf("%w: cluster %s: VIP %q is not an address", ErrExport, c.GetName(), v)
			}
			tool := "iptables"
			if a.Is6() {
				tool = "ip6tables"
			}
			for _, p := range c.GetPorts() {
				ports := strconv.FormatUint(uint64(p.GetFirst()), 10)
				if p.GetLast() != p.GetFirst() {
					ports += ":" + strconv.FormatUint(uint64(p.GetLast()), 10)
				}
				fmt.Fprintf(&b, "%s -t mangle -A PREROUTING -d %s -p %s --dport %s -j MARK --set-mark %d\n",
					tool, netip.PrefixFrom(a, a.BitLen()), protoNames[p.GetProtocol()], ports, c.GetFwmark())
			}
		}
		if len(c.GetVips()) == 0 || len(c.GetPorts()) == 0 {
			e.note("cluster", c.GetName(), "no VIPs or no ports: no mark rule written")
		}
	}
	e.Text = []byte(b.String())
	return e, nil
}

// KeepalivedExportOptions are the choices of `lvsctl export keepalived`.
type KeepalivedExportOptions struct {
	// Director names the director whose keepalived.conf is written: keepalived runs one file
	// per director, and the files differ in router_id, state, priority and unicast addresses.
	// "": the director of highest priority (the one lvsctl makes ACTIVE).
	Director string
	// VRID is the vrrp_instance's virtual_router_id (lvsctl has none). 0: the group's sync id
	// when set, else a number from the group's name; a note names it either way, since it
	// must be unique among the VRRP routers of the VIP interface's LAN.
	VRID uint32
}

// ExportKeepalived writes a keepalived.conf: with a group among objs, a global_defs (router_id,
// lvs_sync_daemon) and a vrrp_instance for one of its directors (opt.Director), then one
// virtual_server block per cluster (fwmark MARK, or ADDRESS PORT for a plain service) with
// its real servers and their checkers. The VIPs are in the vrrp_instance's
// virtual_ipaddress; a fwmark cluster's ports are in the firewall marks only (ExportMarks),
// as keepalived.conf has no place for them.
func ExportKeepalived(objs []*lvsctlv1.Object, opt KeepalivedExportOptions) (*Exported, error) {
	g, cs, err := exportSet(objs)
	if err != nil {
		return nil, err
	}
	e := &Exported{}
	var b strings.Builder
	if g == nil && opt.Director != "" {
		return nil, fmt.Errorf("%w: --director needs a group", ErrExport)
	}
	if g != nil {
		if err := keepalivedGroup(e, &b, g, cs, opt); err != nil {
			return nil, err
		}
	} else {
		b.WriteString("# keepalived.conf virtual_servers (lvsctl export keepalived); their VIPs and ports are in\n# the firewall marks (lvsctl export --marks).\n")
	}
	for _, c := range cs {
		if err := keepalivedCluster(e, &b, c); err != nil {
			return nil, err
		}
	}
	e.Text = []byte(b.String())
	return e, nil
}

func keepalivedGroup(e *Exported, b *strings.Builder, g *lvsctlv1.DirectorGroup, cs []*lvsctlv1.Cluster, opt KeepalivedExportOptions) error {
	name := g.GetName()
	ds := g.GetDirectors()
	if len(ds) == 0 {
		return fmt.Errorf("%w: group %s has no directors", ErrExport, name)
	}
	// The highest priority first; the first listed among equals, as lvsctl picks.
	top := ds[0]
	for _, d := range ds[1:] {
		if d.GetPriority() > top.GetPriority() {
			top = d
		}
	}
	me := top
	if opt.Director != "" {
		i := slices.IndexFunc(ds, func(d *lvsctlv1.Director) bool { return d.GetName() == opt.Director })
		if i < 0 {
			var names []string
			for _, d := range ds {
				names = append(names, d.GetName())
			}
			return fmt.Errorf("%w: group %s has no director %q (it has %s)", ErrExport, name, opt.Director, strings.Join(names, ", "))
		}
		me = ds[i]
	}
	vrid := opt.VRID
	switch {
	case vrid > 255:
		return fmt.Errorf("%w: virtual_router_id %d is not 1-255", ErrExport, vrid)
	case vrid != 0:
	case g.GetSync().GetSyncId() >= 1 && g.GetSync().GetSyncId() <= 255:
		vrid = g.GetSync().GetSyncId()
		e.note("group", name, "virtual_router_id %d (the sync id; lvsctl has no VRRP): it must be unique among the VRRP routers on %s's LAN; --vrid sets another", vrid, g.GetVipInterface())
	default:
		h := fnv.New32a()
		h.Write([]byte(name))
		vrid = h.Sum32()%255 + 1
		e.note("group", name, "virtual_router_id %d (from the group's name; lvsctl has no VRRP): it must be unique among the VRRP routers on %s's LAN; --vrid sets another", vrid, g.GetVipInterface())
	}
	preempt := g.GetFailover().GetPreempt()
	if f := g.GetFailover(); f.GetHeartbeatIntervalMs() != 0 || f.GetDeadAfterMs() != 0 || f.GetFenceMs() != 0 || f.GetPort() != 0 {
		e.note("group", name, "failover heartbeatInterval, deadAfter, fenceTime and port are not expressible: keepalived's VRRP declares a MASTER dead after 3 advertisements (advert_int, default 1s)")
	}
	for _, d := range ds {
		if d.GetPriority() < 1 || d.GetPriority() > 254 {
			e.note("group", name, "director %s: priority %d is outside VRRP's 1-254: written as is, keepalived will refuse it", d.GetName(), d.GetPriority())
		}
	}
	fmt.Fprintf(b, "# keepalived.conf of director %s of group %s (lvsctl export keepalived --director %s).\n", me.GetName(), name, me.GetName())
	b.WriteString("# Each director runs its own file; the VIPs are below, the ports of fwmark services are\n# in the firewall marks (lvsctl export --marks).\n")
	fmt.Fprintf(b, "global_defs {\n    router_id %s\n", me.GetName())
	if s := g.GetSync(); s != nil {
		// keepalived 2.x reads lvs_sync_daemon in global_defs only, naming the instance
		// whose state it follows.
		fmt.Fprintf(b, "    lvs_sync_daemon %s %s id %d\n", s.GetInterface(), name, s.GetSyncId())
	}
	b.WriteString("}\n\n")
	state := "BACKUP"
	if preempt && me == top {
		state = "MASTER"
	}
	fmt.Fprintf(b, "vrrp_instance %s {\n    state %s\n    interface %s\n    virtual_router_id %d\n    priority %d\n", name, state, g.GetVipInterface(), vrid, me.GetPriority())
	if !preempt {
		// lvsctl's default: the ACTIVE stays where it is. keepalived wants state BACKUP
		// on every director with nopreempt.
		b.WriteString("    nopreempt\n")
	}
	if me.GetAddress() != "" {
		fmt.Fprintf(b, "    unicast_src_ip %s\n    unicast_peer {\n", me.GetAddress())
		for _, d := range ds {
			if d != me && d.GetAddress() != "" {
				fmt.Fprintf(b, "        %s\n", d.GetAddress())
			}
		}
		b.WriteString("    }\n")
	} else if len(ds) > 1 {
		e.note("group", name, "director %s has no address: its VRRP advertisements are multicast (no unicast_src_ip)", me.GetName())
	}
	// VRRP carries one address family per instance: IPv6 VIPs go in
	// virtual_ipaddress_excluded (set with the instance, not advertised).
	var v4, v6 []string
	seen := map[string]bool{}
	for _, c := range cs {
		vips := c.GetVips()
		if s := c.GetService(); s != nil {
			vips = []string{s.GetAddress()}
		}
		for _, v := range vips {
			if seen[v] {
				continue
			}
			seen[v] = true
			if a, err := netip.ParseAddr(v); err == nil && a.Is6() {
				v6 = append(v6, v)
			} else {
				v4 = append(v4, v)
			}
		}
	}
	if gw := g.GetGateway(); gw != nil {
		v4 = append(v4, gw.GetAddress()+" dev "+gw.GetInterface())
	}
	for _, blk := range []struct {
		key   string
		addrs []string
	}{{"virtual_ipaddress", v4}, {"virtual_ipaddress_excluded", v6}} {
		if len(blk.addrs) == 0 {
			continue
		}
		fmt.Fprintf(b, "    %s {\n", blk.key)
		for _, a := range blk.addrs {
			fmt.Fprintf(b, "        %s\n", a)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
	return nil
}

func seconds3(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

var lbKinds = map[lvsctlv1.Forwarding]string{lvsctlv1.Forwarding_FORWARDING_MASQ: "NAT", lvsctlv1.Forwarding_FORWARDING_ROUTE: "DR", lvsctlv1.Forwarding_FORWARDING_TUNNEL: "TUN"}

func keepalivedCluster(e *Exported, b *strings.Builder, c *lvsctlv1.Cluster) error {
	commonNotes(e, c)
	name := c.GetName()
	kind := lbKinds[c.GetForwarding()]
	if kind == "" {
		return fmt.Errorf("%w: cluster %s: forwarding %v", ErrExport, name, c.GetForwarding())
	}
	if s := c.GetService(); s != nil {
		fmt.Fprintf(b, "\n# cluster %s\nvirtual_server %s %d {\n", name, s.GetAddress(), s.GetPort())
	} else {
		fmt.Fprintf(b, "\n# cluster %s\nvirtual_server fwmark %d {\n", name, c.GetFwmark())
	}
	// delay_loop is the cluster's check interval; a real server whose check differs says its own.
	var vsDelay time.Duration
	if h := c.GetHealth(); h != nil && h.GetCheck() != string(health.KindNone) {
		vsDelay = health.FromProto(h).Defaults().Interval
		fmt.Fprintf(b, "    delay_loop %s\n", seconds3(vsDelay))
	}
	fmt.Fprintf(b, "    lb_algo %s\n    lb_kind %s\n", c.GetScheduler(), methodText(c.GetForwarding(), c.GetTunnel()))
	if s := c.GetService(); s != nil {
		fmt.Fprintf(b, "    protocol %s\n", strings.ToUpper(protoNames[s.GetProtocol()]))
	}
	// keepalived reads a flag keyword after lvs_sched, for the scheduler set then.
	for _, f := range c.GetSchedulerFlags() {
		fmt.Fprintf(b, "    %s\n", validate.SchedulerFlagName(f))
	}
	if c.GetOps() {
		b.WriteString("    ops\n")
	}
	if p := c.GetPersistence(); p.GetTimeoutSeconds() != 0 {
		fmt.Fprintf(b, "    persistence_timeout %d\n", p.GetTimeoutSeconds())
		if p.GetNetmaskBits() != 0 {
			fmt.Fprintf(b, "    persistence_granularity %s\n", netmask(p.GetNetmaskBits(), isV6(c)))
		}
	}
	if sv := c.GetSorryServer(); sv != nil {
		// keepalived gives its sorry server the service's lb_kind and weight 1, as lvsctl does;
		// a plain service's names its port, as a real server's line does.
		if p := realPort(c, &lvsctlv1.RealServer{Port: sv.GetPort()}); p != 0 {
			fmt.Fprintf(b, "    sorry_server %s %d\n", sv.GetAddress(), p)
		} else {
			fmt.Fprintf(b, "    sorry_server %s\n", sv.GetAddress())
		}
	}
	for _, r := range c.GetReals() {
		if p := realPort(c, r); p != 0 {
			fmt.Fprintf(b, "\n    real_server %s %d {\n        weight %d\n", r.GetAddress(), p, kernelWeight(e, c, r))
		} else {
			fmt.Fprintf(b, "\n    real_server %s {\n        weight %d\n", r.GetAddress(), kernelWeight(e, c, r))
		}
		if r.GetUpperThreshold() != 0 {
			fmt.Fprintf(b, "        uthreshold %d\n", r.GetUpperThreshold())
		}
		if r.GetLowerThreshold() != 0 {
			fmt.Fprintf(b, "        lthreshold %d\n", r.GetLowerThreshold())
		}
		eff := health.Effective(c.GetHealth(), r.GetHealth())
		if eff != nil && eff.GetCheck() != string(health.KindNone) {
			if health.OnFailure(eff) == health.OnFailureQuiesce {
				b.WriteString("        inhibit_on_failure\n")
			}
			keepalivedChecker(e, b, c, r, eff, vsDelay)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("}\n")
	return nil
}

// keepalivedChecker writes one real server's check as keepalived's checker of the same kind.
// keepalived re-checks a failed server retry times, delay_before_retry apart, before taking it
// out: retry fall-1 and delay_before_retry the interval take it out when lvsctl would.
func keepalivedChecker(e *Exported, b *strings.Builder, c *lvsctlv1.Cluster, r *lvsctlv1.RealServer, h *lvsctlv1.HealthCheck, vsDelay time.Duration) {
	s := health.FromProto(h).Defaults()
	cl := c.GetName()
	// A note on the cluster's check is said once, not once per real server.
	where := "health " + string(s.Kind)
	if r.GetHealth() != nil {
		where = "real server " + r.GetAddress() + ": " + where
	}
	if s.Rise > 1 {
		e.note("cluster", cl, "%s: rise %d is not expressible: keepalived brings a real server back after one successful check", where, s.Rise)
	}
	var blk []string
	line := func(format string, args ...any) { blk = append(blk, fmt.Sprintf(format, args...)) }
	kw := ""
	switch s.Kind {
	case health.KindTCP, health.KindRTSP:
		kw = "TCP_CHECK"
		if s.Kind == health.KindRTSP {
			e.note("cluster", cl, "%s: keepalived has no RTSP checker: written as TCP_CHECK (a connect) on port %d", where, s.Port)
		}
	case health.KindHTTP, health.KindHTTPS:
		kw = "HTTP_GET"
		if s.Kind == health.KindHTTPS {
			kw = "SSL_GET"
		}
		line("url {\n                path %s\n                status_code %s\n            }", kaQuote(s.Path), strings.ReplaceAll(s.Expect, ",", " "))
		if s.Body != "" {
			e.note("cluster", cl, "%s: body %q is not expressible (keepalived matches a digest or a regex): not written", where, s.Body)
		}
		if s.ServerName != "" {
			line("virtualhost %s", s.ServerName)
			line("enable_sni")
		}
		if s.Verify {
			e.note("cluster", cl, "%s: verify is not expressible (SSL_GET does not verify the certificate): not written", where)
		}
	case health.KindUDP:
		kw = "UDP_CHECK"
		if len(s.Payload) > 0 {
			line("payload %x", s.Payload)
		}
		if s.UDPMode == health.UDPReply {
			line("require_reply")
			if s.Expect != "" {
				e.note("cluster", cl, "%s: expect %q is not expressible (require_reply compares bytes from the start, lvsctl looks for a substring): a reply of any content is required", where, s.Expect)
			}
		}
	case health.KindExec:
		kw = "MISC_CHECK"
		for _, a := range s.Command {
			if strings.ContainsAny(a, " \t\"'") || a == "" {
				e.note("cluster", cl, "%s: argument %q has spaces or quotes: check the misc_path written", where, a)
			}
		}
		line("misc_path %s", kaQuote(strings.Join(s.Command, " ")))
		e.note("cluster", cl, "%s: keepalived runs misc_path without LVSCTL_REAL_ADDRESS and LVSCTL_REAL_PORT in the environment: a command that reads them needs the address as an argument", where)
	default:
		e.note("cluster", cl, "%s: unknown check kind: not written", where)
		return
	}
	if s.Kind == health.KindExec {
		secs := int(math.Ceil(s.Timeout.Seconds()))
		if time.Duration(secs)*time.Second != s.Timeout {
			e.note("cluster", cl, "%s: timeout %v: misc_timeout is whole seconds: %ds written", where, s.Timeout, secs)
		}
		line("misc_timeout %d", secs)
		if s.Port != 0 {
			e.note("cluster", cl, "%s: port %d (passed to the command) is not expressible", where, s.Port)
		}
	} else {
		line("connect_port %d", s.Port)
		line("connect_timeout %s", seconds3(s.Timeout))
	}
	line("retry %d", s.Fall-1)
	line("delay_before_retry %s", seconds3(s.Interval))
	if s.Interval != vsDelay {
		line("delay_loop %s", seconds3(s.Interval))
	}
	fmt.Fprintf(b, "        %s {\n", kw)
	for _, l := range blk {
		fmt.Fprintf(b, "            %s\n", l)
	}
	b.WriteString("        }\n")
}

// kaQuote quotes a keepalived string when it holds what would split or end it.
func kaQuote(s string) string {
	if s == "" || strings.ContainsAny(s, " \t#!{}") {
		return `"` + s + `"`
	}
	return s
}

package reconcile

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// clusterSpec is one cluster translated into kernel objects.
type clusterSpec struct {
	name  string
	svc   dataplane.Service
	dests []dataplane.Destination
	rules []dataplane.MarkRule
	vips  []netip.Addr
	// kept: the cluster could not be translated (an agent older than its controller, say), but
	// the agent owns a service with its (family, fwmark): that service, the kernel's mark rules
	// for it and their VIPs stay as they are, rather than a working cluster being torn down.
	kept bool

	// cluster is what the spec was translated from: the same message next time means the same
	// spec, without translating it again.
	cluster *lvsctlv1.Cluster
	// Where the reconcile left it: foreign, the kernel's service with its key is not the
	// agent's (so it has neither rules nor VIPs); serving, its service is in the kernel (so
	// its VIPs may be added).
	foreign, serving bool
}

// plan translates the desired clusters, sorted by name. A cluster that cannot be translated is
// reported and kept as the kernel has it if the agent owns its service, else left out as if
// absent; so is one whose (family, fwmark) another cluster already has.
func (a *apply) plan(desired *lvsctlv1.DesiredState) []*clusterSpec {
	clusters := slices.Clone(desired.GetClusters())
	slices.SortFunc(clusters, func(x, y *lvsctlv1.Cluster) int { return strings.Compare(x.GetName(), y.GetName()) })
	var specs []*clusterSpec
	byKey := make(map[dataplane.ServiceKey]string, len(clusters))
	for _, c := range clusters {
		s, err := a.translated(c)
		if err != nil {
			if s = a.keep(c); s == nil {
				a.clusterErr(c.GetName(), fmt.Errorf("invalid cluster: %w", err))
				continue
			}
			a.needFull = true // a delta cannot keep it: that needs the kernel's rules
			a.clusterErr(c.GetName(), fmt.Errorf("invalid cluster: %w; keeping service %s, its mark rules and VIPs as they are", err, s.svc.ServiceKey))
		}
		if other, ok := byKey[s.svc.ServiceKey]; ok {
			a.needFull = true // which cluster wins depends on every cluster's name
			a.clusterErr(c.GetName(), fmt.Errorf("invalid cluster: %s is also used by cluster %q", describeKey(s.svc.ServiceKey), other))
			continue
		}
		byKey[s.svc.ServiceKey] = c.GetName()
		specs = append(specs, s)
	}
	return specs
}

// translated is translate, reusing the last reconcile's spec of the same message: a resync
// of 10,000 unchanged clusters parses no address.
func (a *apply) translated(c *lvsctlv1.Cluster) (*clusterSpec, error) {
	if m := a.r.mem; m != nil {
		if old := m.specs[c.GetName()]; old != nil && old.cluster == c && !old.kept {
			return &clusterSpec{name: old.name, svc: old.svc, dests: old.dests, rules: old.rules, vips: old.vips, cluster: c}, nil
		}
	}
	s, err := translate(c)
	if err != nil {
		return nil, err
	}
	s.cluster = c
	return s, nil
}

// keep returns the spec that keeps an untranslatable cluster's owned service, mark rules and
// VIPs as the kernel has them, or nil when the agent owns no service the cluster can be.
func (a *apply) keep(c *lvsctlv1.Cluster) *clusterSpec {
	key, ok := a.ownedKeyOf(c)
	if !ok {
		return nil
	}
	s := &clusterSpec{name: c.GetName(), svc: dataplane.Service{ServiceKey: key}, kept: true, cluster: c}
	if !key.IsFWMark() {
		// A plain service has no mark rules: its address is its one VIP.
		s.vips = []netip.Addr{key.Address}
		return s
	}
	if !a.rulesRead {
		a.rulesRead = true
		var err error
		if a.kernelRules, err = a.r.fw.MarkRules(); err != nil {
			a.rulesFrozen = true
			a.directorErr(fmt.Errorf("read mark rules: %w; left as they are", err))
		}
	}
	for _, r := range a.kernelRules {
		if r.Mark == key.FWMark && dataplane.FamilyOf(r.VIP) == key.Family {
			s.rules = append(s.rules, r)
			if !slices.Contains(s.vips, r.VIP) {
				s.vips = append(s.vips, r.VIP)
			}
		}
	}
	return s
}

// ownedKeyOf finds the owned service an untranslatable cluster stands for: a plain service's
// key if its service names one; else its fwmark, in the family of its first VIP that parses
// or, with none, the one family the agent owns it in.
func (a *apply) ownedKeyOf(c *lvsctlv1.Cluster) (dataplane.ServiceKey, bool) {
	if c.GetService() != nil {
		k, ok := dataplane.KeyOf(c)
		return k, ok && a.r.owned.OwnsService(k)
	}
	var keys []dataplane.ServiceKey
	for _, k := range a.r.owned.OwnedServices() {
		if k.IsFWMark() && k.FWMark == c.GetFwmark() {
			keys = append(keys, k)
		}
	}
	for _, v := range c.GetVips() {
		if addr, err := netip.ParseAddr(v); err == nil {
			keys = slices.DeleteFunc(keys, func(k dataplane.ServiceKey) bool { return k.Family != dataplane.FamilyOf(addr) })
			break
		}
	}
	if len(keys) != 1 {
		return dataplane.ServiceKey{}, false
	}
	return keys[0], true
}

// describeKey names a service in a cluster's error: "fwmark 16 ipv4", "service tcp
// 192.0.2.20:80".
func describeKey(k dataplane.ServiceKey) string {
	if k.IsFWMark() {
		return fmt.Sprintf("fwmark %d %s", k.FWMark, k.Family)
	}
	return "service " + k.String()
}

// translate turns a cluster into its IPVS service, destinations, mark rules and VIPs. The
// controller validates clusters; this only refuses what cannot be expressed in the kernel (or
// what ipvsadm would refuse, so that what lvsctl programs ipvsadm can save and restore), with
// the field at fault.
func translate(c *lvsctlv1.Cluster) (*clusterSpec, error) {
	if c.GetName() == "" {
		return nil, errors.New("name: empty")
	}
	s := &clusterSpec{name: c.GetName()}
	var family dataplane.Family
	if vs := c.GetService(); vs != nil {
		// A plain service: matched by the kernel on address, protocol and port, so no mark
		// rule; its address is the cluster's one VIP, held like any other.
		switch {
		case c.GetFwmark() != 0:
			return nil, fmt.Errorf("fwmark: %d with service set: a cluster is a plain or a firewall-mark service", c.GetFwmark())
		case len(c.GetVips()) != 0:
			return nil, errors.New("vips: set with service: a plain service's VIP is its address")
		case len(c.GetPorts()) != 0:
			return nil, errors.New("ports: set with service: a plain service has one port, service.port")
		}
		addr, err := vipOf(vs.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("service.address: %w", err)
		}
		proto, ok := dataplane.ProtocolOf(vs.GetProtocol())
		if !ok {
			return nil, fmt.Errorf("service.protocol: %v is not tcp, udp or sctp", vs.GetProtocol())
		}
		if vs.GetPort() > 65535 {
			return nil, fmt.Errorf("service.port: %d is not a port (0-65535)", vs.GetPort())
		}
		if vs.GetPort() == 0 && c.GetPersistence().GetTimeoutSeconds() == 0 {
			return nil, errors.New("service.port: 0 (every port) needs persistence (ipvsadm refuses it without)")
		}
		if c.GetOps() && proto != dataplane.UDP {
			return nil, fmt.Errorf("ops: one-packet scheduling is for udp services, not %s (ipvsadm refuses it)", proto)
		}
		family = dataplane.FamilyOf(addr)
		s.svc.ServiceKey = dataplane.ServiceKey{Family: family, Protocol: proto, Address: addr, Port: uint16(vs.GetPort())}
		s.vips = []netip.Addr{addr}
	} else {
		if c.GetFwmark() == 0 {
			return nil, errors.New("fwmark: 0, not allocated by the controller")
		}
		if len(c.GetVips()) == 0 {
			return nil, errors.New("vips: none; a cluster needs at least one VIP")
		}
		for i, v := range c.GetVips() {
			addr, err := vipOf(v)
			if err != nil {
				return nil, fmt.Errorf("vips[%d]: %w", i, err)
			}
			if i == 0 {
				family = dataplane.FamilyOf(addr)
			} else if f := dataplane.FamilyOf(addr); f != family {
				// One firewall-mark service has one family; mixing would need a second service.
				return nil, fmt.Errorf("vips[%d]: %s is %s but vips[0] is %s", i, addr, f, family)
			}
			if slices.Contains(s.vips, addr) {
				return nil, fmt.Errorf("vips[%d]: %s is listed twice", i, addr)
			}
			s.vips = append(s.vips, addr)
		}
		s.svc.ServiceKey = dataplane.ServiceKey{Family: family, FWMark: c.GetFwmark()}
	}

	hostBits := uint32(32)
	if family == dataplane.IPv6 {
		hostBits = 128
	}
	netmask := c.GetPersistence().GetNetmaskBits()
	if netmask == 0 {
		netmask = hostBits
	}
	if netmask > hostBits {
		return nil, fmt.Errorf("persistence.netmask_bits: %d is longer than an %s address", netmask, family)
	}
	s.svc.Scheduler = c.GetScheduler()
	s.svc.Timeout = c.GetPersistence().GetTimeoutSeconds()
	s.svc.NetmaskBits = uint8(netmask)
	flags, err := serviceFlags(c)
	if err != nil {
		return nil, err
	}
	s.svc.Flags = flags

	var fwd dataplane.Forward
	switch c.GetForwarding() {
	case lvsctlv1.Forwarding_FORWARDING_MASQ:
		fwd = dataplane.ForwardMasq
	case lvsctlv1.Forwarding_FORWARDING_ROUTE:
		fwd = dataplane.ForwardRoute
	case lvsctlv1.Forwarding_FORWARDING_TUNNEL:
		fwd = dataplane.ForwardTunnel
	default:
		return nil, fmt.Errorf("forwarding: %v is not masq, route or tunnel", c.GetForwarding())
	}
	tunnel, err := tunnelOf(c)
	if err != nil {
		return nil, err
	}
	for i, rs := range c.GetReals() {
		addr, err := netip.ParseAddr(rs.GetAddress())
		if err != nil {
			return nil, fmt.Errorf("reals[%d].address: %w", i, err)
		}
		addr = addr.Unmap()
		if f := dataplane.FamilyOf(addr); f != family {
			// The kernel would need the destination's family, which moby/ipvs never sends: it
			// would read the address as one of the service's family.
			return nil, fmt.Errorf("reals[%d].address: %s is %s but the vips are %s", i, addr, f, family)
		}
		// One entry per address, even for a plain service where the kernel would take one
		// address on two ports: health checks and drains name a real server by its address.
		if slices.ContainsFunc(s.dests, func(d dataplane.Destination) bool { return d.Address == addr }) {
			return nil, fmt.Errorf("reals[%d].address: %s is listed twice", i, addr)
		}
		d := dataplane.Destination{Address: addr, Weight: rs.GetWeight(), Forward: fwd,
			UpperThreshold: rs.GetUpperThreshold(), LowerThreshold: rs.GetLowerThreshold(), Tunnel: tunnel}
		switch port := rs.GetPort(); {
		case port > 65535:
			return nil, fmt.Errorf("reals[%d].port: %d is not a port", i, port)
		case s.svc.IsFWMark() && port != 0:
			// Port 0: a firewall-mark service keeps the port the client asked for.
			return nil, fmt.Errorf("reals[%d].port: %d on a firewall-mark service, which keeps the client's port", i, port)
		case s.svc.IsFWMark():
		case port == 0:
			d.Port = s.svc.Port // as ipvsadm -r ADDRESS without a port
		case fwd != dataplane.ForwardMasq && uint16(port) != s.svc.Port:
			// Direct routing and tunnels cannot change the port: ipvsadm sets it to the
			// service's. Only masq maps ports.
			return nil, fmt.Errorf("reals[%d].port: %d differs from service.port %d, which only masq can map", i, port, s.svc.Port)
		default:
			d.Port = uint16(port)
		}
		if d.LowerThreshold > d.UpperThreshold {
			// The kernel refuses it (ERANGE), even with no upper threshold.
			return nil, fmt.Errorf("reals[%d].lower_threshold: %d is above upper_threshold %d", i, d.LowerThreshold, d.UpperThreshold)
		}
		s.dests = append(s.dests, d)
	}

	for i, pr := range c.GetPorts() {
		proto, ok := dataplane.ProtocolOf(pr.GetProtocol())
		if !ok {
			return nil, fmt.Errorf("ports[%d].protocol: %v is not tcp, udp or sctp", i, pr.GetProtocol())
		}
		first, last := pr.GetFirst(), pr.GetLast()
		if first == 0 || first > 65535 {
			return nil, fmt.Errorf("ports[%d].first: %d is not a port (1-65535)", i, first)
		}
		if last < first || last > 65535 {
			return nil, fmt.Errorf("ports[%d].last: %d is not a port from first (%d) to 65535", i, last, first)
		}
		for _, vip := range s.vips {
			r := dataplane.MarkRule{VIP: vip, Protocol: proto, FirstPort: uint16(first), LastPort: uint16(last), Mark: c.GetFwmark()}
			if !slices.Contains(s.rules, r) {
				s.rules = append(s.rules, r)
			}
		}
	}
	return s, nil
}

// vipOf parses a VIP: a unicast address without a zone.
func vipOf(v string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, err
	}
	addr = addr.Unmap()
	if addr.Zone() != "" || !addr.IsGlobalUnicast() {
		return netip.Addr{}, fmt.Errorf("%s is not a unicast address without a zone", addr)
	}
	return addr, nil
}

// serviceFlags are a cluster's scheduler flags and one-packet scheduling. A flag is for its
// scheduler only, as ipvsadm has it: sh-port on a wlc service would be flag-2 to the kernel,
// which ipvsadm -S would not print as the user wrote it.
func serviceFlags(c *lvsctlv1.Cluster) (dataplane.ServiceFlags, error) {
	var f dataplane.ServiceFlags
	if c.GetOps() {
		f |= dataplane.FlagOnePacket
	}
	for i, fl := range c.GetSchedulerFlags() {
		var sched string
		var bit dataplane.ServiceFlags
		switch fl {
		case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_FALLBACK:
			sched, bit = "sh", dataplane.FlagSched1
		case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT:
			sched, bit = "sh", dataplane.FlagSched2
		case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_FALLBACK:
			sched, bit = "mh", dataplane.FlagSched1
		case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT:
			sched, bit = "mh", dataplane.FlagSched2
		default:
			return 0, fmt.Errorf("scheduler_flags[%d]: %v is not sh-fallback, sh-port, mh-fallback or mh-port", i, fl)
		}
		if c.GetScheduler() != sched {
			return 0, fmt.Errorf("scheduler_flags[%d]: %s is for the %s scheduler, not %q", i, flagName(fl), sched, c.GetScheduler())
		}
		f |= bit
	}
	return f, nil
}

// flagName is a scheduler flag as ipvsadm -b names it.
func flagName(f lvsctlv1.SchedulerFlag) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(f.String(), "SCHEDULER_FLAG_")), "_", "-")
}

// tunnelOf is the destinations' encapsulation: the cluster's tunnel block (set only with
// forwarding tunnel), or the zero Tunnel (ipip, the kernel's default) without one. The
// controller validated it; what the agent cannot express is refused, naming the field.
func tunnelOf(c *lvsctlv1.Cluster) (dataplane.Tunnel, error) {
	t := c.GetTunnel()
	if t == nil {
		return dataplane.Tunnel{}, nil
	}
	if c.GetForwarding() != lvsctlv1.Forwarding_FORWARDING_TUNNEL {
		return dataplane.Tunnel{}, fmt.Errorf("tunnel: set with forwarding %v", c.GetForwarding())
	}
	var out dataplane.Tunnel
	switch t.GetType() {
	case lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP:
		out.Type = dataplane.TunnelIPIP
	case lvsctlv1.TunnelType_TUNNEL_TYPE_GUE:
		out.Type = dataplane.TunnelGUE
	case lvsctlv1.TunnelType_TUNNEL_TYPE_GRE:
		out.Type = dataplane.TunnelGRE
	default:
		return out, fmt.Errorf("tunnel.type: %v is not ipip, gue or gre", t.GetType())
	}
	if t.GetPort() > 65535 {
		return out, fmt.Errorf("tunnel.port: %d is not a port", t.GetPort())
	}
	out.Port = uint16(t.GetPort())
	switch t.GetChecksum() {
	case lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED:
	case lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_CSUM:
		out.Flags = dataplane.TunnelCsum
	case lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_REMCSUM:
		out.Flags = dataplane.TunnelRemCsum
	default:
		return out, fmt.Errorf("tunnel.checksum: %v is not none, csum or remcsum", t.GetChecksum())
	}
	return out, nil
}

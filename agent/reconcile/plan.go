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
			a.clusterErr(c.GetName(), fmt.Errorf("invalid cluster: fwmark %d %s is also used by cluster %q", s.svc.FWMark, s.svc.Family, other))
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

// ownedKeyOf finds the owned service an untranslatable cluster stands for: its fwmark, in the
// family of its first VIP that parses or, with none, the one family the agent owns it in.
func (a *apply) ownedKeyOf(c *lvsctlv1.Cluster) (dataplane.ServiceKey, bool) {
	var keys []dataplane.ServiceKey
	for _, k := range a.r.owned.OwnedServices() {
		if k.FWMark == c.GetFwmark() {
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

// translate turns a cluster into its IPVS service, destinations, mark rules and VIPs. The
// controller validates clusters; this only refuses what cannot be expressed in the kernel, with
// the field at fault.
func translate(c *lvsctlv1.Cluster) (*clusterSpec, error) {
	if c.GetName() == "" {
		return nil, errors.New("name: empty")
	}
	if c.GetFwmark() == 0 {
		return nil, errors.New("fwmark: 0, not allocated by the controller")
	}
	if len(c.GetVips()) == 0 {
		return nil, errors.New("vips: none; a cluster needs at least one VIP")
	}
	s := &clusterSpec{name: c.GetName()}
	var family dataplane.Family
	for i, v := range c.GetVips() {
		addr, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("vips[%d]: %w", i, err)
		}
		addr = addr.Unmap()
		if addr.Zone() != "" || !addr.IsGlobalUnicast() {
			return nil, fmt.Errorf("vips[%d]: %s is not a unicast address without a zone", i, addr)
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
	s.svc = dataplane.Service{
		ServiceKey:  dataplane.ServiceKey{Family: family, FWMark: c.GetFwmark()},
		Scheduler:   c.GetScheduler(),
		Timeout:     c.GetPersistence().GetTimeoutSeconds(),
		NetmaskBits: uint8(netmask),
	}

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
		if slices.ContainsFunc(s.dests, func(d dataplane.Destination) bool { return d.Address == addr }) {
			return nil, fmt.Errorf("reals[%d].address: %s is listed twice", i, addr)
		}
		// Port 0: a firewall-mark service keeps the port the client asked for.
		s.dests = append(s.dests, dataplane.Destination{Address: addr, Weight: rs.GetWeight(), Forward: fwd})
	}

	for i, pr := range c.GetPorts() {
		var proto dataplane.Protocol
		switch pr.GetProtocol() {
		case lvsctlv1.Protocol_PROTOCOL_TCP:
			proto = dataplane.TCP
		case lvsctlv1.Protocol_PROTOCOL_UDP:
			proto = dataplane.UDP
		case lvsctlv1.Protocol_PROTOCOL_SCTP:
			proto = dataplane.SCTP
		default:
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

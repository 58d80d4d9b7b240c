package validate

import (
	"fmt"
	"net/netip"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Set checks the rules between objects of a whole desired state (what the store would hold
// after a change). It does not repeat Object's checks: run Object on each changed object first.
// Fields that Object would refuse (bad addresses, reversed ranges) are skipped here.
// Its cost follows the number of objects given: lvsctl runs it over a manifest for early
// feedback, while the controller runs Written over the objects a write changes, against
// indexes of the store, which reports the same errors for them.
func Set(objs []*lvsctlv1.Object) error {
	var errs errList
	fail := func(kind, name, path, format string, args ...any) {
		errs.add(func() error {
			return &FieldError{Kind: kind, Name: name, Path: path, Reason: fmt.Sprintf(format, args...)}
		})
	}

	type key struct{ kind, name string }
	seen := map[key]bool{}
	groups := map[string]bool{}
	var groupList []*lvsctlv1.DirectorGroup
	directorGroup := map[string]string{}
	// addrs: each director address to the first group (in the set's order) with a director at it.
	addrs := map[netip.Addr]directorAt{}
	var clusters []*lvsctlv1.Cluster
	for _, o := range objs {
		kind, name := KindName(o)
		if kind == "" {
			continue
		}
		if seen[key{kind, name}] {
			fail(kind, name, "name", "defined twice")
			continue
		}
		seen[key{kind, name}] = true
		if c := o.GetCluster(); c != nil {
			clusters = append(clusters, c)
			continue
		}
		g := o.GetGroup()
		groups[g.GetName()] = true
		groupList = append(groupList, g)
		for i, d := range g.GetDirectors() {
			if other, ok := directorGroup[d.GetName()]; ok && other != g.GetName() {
				fail(KindGroup, g.GetName(), fmt.Sprintf("directors[%d].name", i), "director %q is already in group %q (a director serves one group)", d.GetName(), other)
				continue
			}
			directorGroup[d.GetName()] = g.GetName()
		}
		// Two directors at one address would be one host answering for both: peers
		// heartbeat the address, and one port is bound once.
		eachDirectorAddress(g, func(i int, a netip.Addr) {
			at, ok := addrs[a]
			switch {
			case !ok:
				addrs[a] = directorAt{group: g.GetName(), director: g.GetDirectors()[i].GetName()}
			case at.group != g.GetName():
				fail(KindGroup, g.GetName(), fmt.Sprintf("directors[%d].address", i), addressTaken, a, at.director, at.group)
			}
		})
	}

	type vipOwner struct{ cluster, group string }
	// Marks are unique within a group: a director programs only its group's clusters, so
	// two groups (two sites imported with their marks kept) may use the same mark.
	type markKey struct {
		group string
		mark  uint32
	}
	marks := map[markKey]string{}
	vipOwners := map[netip.Addr]vipOwner{}
	var claims []claim
	for _, c := range clusters {
		if g := c.GetDirectorGroup(); g != "" && !groups[g] {
			fail(KindCluster, c.GetName(), "directorGroup", "group %q does not exist", g)
		}
		if m := c.GetFwmark(); m != 0 {
			k := markKey{c.GetDirectorGroup(), m}
			if other, ok := marks[k]; ok {
				fail(KindCluster, c.GetName(), "fwmark", markTaken, m, other, c.GetDirectorGroup())
			} else {
				marks[k] = c.GetName()
			}
		}
		var mine []claim
		for _, v := range clusterVIPs(c) {
			vip := v.addr
			// Only the ACTIVE director of one group may hold a VIP; two groups would mean two
			// ACTIVE directors answering ARP for it.
			if o, ok := vipOwners[vip]; ok && o.group != c.GetDirectorGroup() {
				fail(KindCluster, c.GetName(), v.path(), "%s is already served by group %q (cluster %q); a VIP belongs to one director group", vip, o.group, o.cluster)
			} else if !ok {
				vipOwners[vip] = vipOwner{cluster: c.GetName(), group: c.GetDirectorGroup()}
			}
			if at, ok := addrs[vip]; ok {
				fail(KindCluster, c.GetName(), v.path(), directorAddressIsVIP, vip, at.director, at.group)
			}
			mine = append(mine, claimsOf(c, vip)...)
		}
		reported := map[int]bool{}
		for _, m := range mine {
			if reported[m.index] {
				continue
			}
			for _, o := range claims {
				if o.vip == m.vip && m.clashes(o) {
					fail(KindCluster, c.GetName(), m.path(), "%s", m.conflict(o))
					reported[m.index] = true
					break
				}
			}
		}
		claims = append(claims, mine...)
	}
	// A director's own address must not be a VIP (of any group): the VIP moves to whichever
	// director is ACTIVE, and peers would heartbeat the wrong host. It is reported on both
	// objects, so that a write of either is refused.
	for _, g := range groupList {
		eachDirectorAddress(g, func(i int, a netip.Addr) {
			if o, ok := vipOwners[a]; ok {
				fail(KindGroup, g.GetName(), fmt.Sprintf("directors[%d].address", i), vipIsDirectorAddress, a, o.cluster, o.group)
			}
		})
	}
	return errs.err()
}

// ServiceClaim is the index that Stored.EachPortClaim gives a plain service's claim (its one
// address, protocol and port), where a fwmark cluster's claims give their port entry's.
const ServiceClaim = -1

// claim is what one cluster takes of the traffic to one VIP: a port entry of a fwmark
// cluster (index is the entry's), or a plain service's protocol and port (index
// ServiceClaim, ports first == last == the service's port).
type claim struct {
	vip     netip.Addr
	ports   *lvsctlv1.PortRange
	index   int
	cluster string
}

// ServiceRange is the claim of a plain service as Stored.EachPortClaim gives it.
func ServiceRange(s *lvsctlv1.VirtualService) *lvsctlv1.PortRange {
	return &lvsctlv1.PortRange{Protocol: s.GetProtocol(), First: s.GetPort(), Last: s.GetPort()}
}

func (m claim) plain() bool { return m.index == ServiceClaim }

// span is the ports a claim matches: a plain service of port 0 matches every port.
func (m claim) span() *lvsctlv1.PortRange {
	if m.plain() && m.ports.GetFirst() == 0 {
		return &lvsctlv1.PortRange{Protocol: m.ports.GetProtocol(), First: 0, Last: MaxPort}
	}
	return m.ports
}

// clashes reports whether two claims on one VIP take the same packets. Two plain services
// clash on the same protocol and port only: the kernel keeps a port-0 (every port) service
// beside one of a port, and looks the exact port up first. A fwmark cluster clashes with
// another claim whose ports overlap its own: IPVS looks firewall-mark services up before
// plain ones (ip_vs_service_find), so the mark would take a plain service's packets.
func (m claim) clashes(o claim) bool {
	if m.ports.GetProtocol() != o.ports.GetProtocol() {
		return false
	}
	if m.plain() && o.plain() {
		return m.ports.GetFirst() == o.ports.GetFirst()
	}
	return overlaps(m.span(), o.span())
}

// path is the manifest path a claim's error is reported on.
func (m claim) path() string {
	if m.plain() {
		return "service"
	}
	return fmt.Sprintf("ports[%d]", m.index)
}

// conflict says why claim m is refused next to o (of another cluster), naming both.
func (m claim) conflict(o claim) string {
	switch {
	case m.plain() && o.plain():
		return fmt.Sprintf("%s is already the service of cluster %q", serviceText(m), o.cluster)
	case m.plain():
		return fmt.Sprintf("%s is also marked by cluster %q (ports[%d] %s on %s); IPVS looks firewall-mark services up first, so that cluster would take its packets",
			serviceText(m), o.cluster, o.index, FormatPorts(o.ports), o.vip)
	case o.plain():
		return fmt.Sprintf("%s on %s would take the packets of cluster %q's plain service %s (IPVS looks firewall-mark services up first)",
			FormatPorts(m.ports), m.vip, o.cluster, serviceText(o))
	}
	return fmt.Sprintf("%s on %s is already used by cluster %q (ports[%d] %s)", FormatPorts(m.ports), m.vip, o.cluster, o.index, FormatPorts(o.ports))
}

func serviceText(m claim) string {
	return FormatService(&lvsctlv1.VirtualService{Address: m.vip.String(), Protocol: m.ports.GetProtocol(), Port: m.ports.GetFirst()})
}

// FormatService prints a plain service as ipvsadm -Ln does, in lowercase: "tcp
// 192.0.2.20:80", "udp [2001:db8::53]:53".
func FormatService(s *lvsctlv1.VirtualService) string {
	addr := s.GetAddress()
	if a, err := netip.ParseAddr(addr); err == nil {
		addr = netip.AddrPortFrom(a, 0).String()
		addr = addr[:len(addr)-2] // the ":0" AddrPort adds
	}
	return fmt.Sprintf("%s %s:%d", protoName(s.GetProtocol()), addr, s.GetPort())
}

// vipAt is a valid VIP of a cluster and where the manifest says it: vips[index], or the
// service's address (index -1). The path is written only for an error: 10,000 clusters'
// VIPs are checked on every apply.
type vipAt struct {
	addr  netip.Addr
	index int
}

func (v vipAt) path() string {
	if v.index < 0 {
		return "service.address"
	}
	return fmt.Sprintf("vips[%d]", v.index)
}

// clusterVIPs lists the cluster's valid VIPs: a plain service's address, or its vips.
func clusterVIPs(c *lvsctlv1.Cluster) []vipAt {
	if s := c.GetService(); s != nil {
		if a, reason := serviceAddr(s.GetAddress()); reason == "" {
			return []vipAt{{addr: a, index: -1}}
		}
		return nil
	}
	var out []vipAt
	for i, s := range c.GetVips() {
		if a, reason := serviceAddr(s); reason == "" {
			out = append(out, vipAt{addr: a, index: i})
		}
	}
	return out
}

// claimsOf lists what the cluster claims on one of its VIPs, skipping what Cluster refuses.
func claimsOf(c *lvsctlv1.Cluster, vip netip.Addr) []claim {
	if s := c.GetService(); s != nil {
		if s.GetProtocol() == lvsctlv1.Protocol_PROTOCOL_UNSPECIFIED || s.GetPort() > MaxPort {
			return nil
		}
		return []claim{{vip: vip, ports: ServiceRange(s), index: ServiceClaim, cluster: c.GetName()}}
	}
	var out []claim
	for pi, p := range c.GetPorts() {
		if p.GetFirst() > p.GetLast() {
			continue
		}
		out = append(out, claim{vip: vip, ports: p, index: pi, cluster: c.GetName()})
	}
	return out
}

// directorAt is the director of a group at an address.
type directorAt struct{ group, director string }

const markTaken = "%d is already used by cluster %q of group %q (a mark is unique within a director group)"

const addressTaken = "%s is already the address of director %q of group %q"

const directorAddressIsVIP = "%s is the address of director %q of group %q; a VIP moves with the ACTIVE role, a director's address does not"

const vipIsDirectorAddress = "%s is a VIP of cluster %q (group %q); a director's own address must not move with the ACTIVE role"

// AllocateFWMark returns the lowest mark >= 1 that no cluster of existing uses (give it the
// clusters of one group: marks are unique per group), or 0 when every mark up to
// MaxFWMark is taken. The controller calls it on create when the cluster's fwmark is 0.
func AllocateFWMark(existing []*lvsctlv1.Cluster) uint32 {
	used := make(map[uint32]bool, len(existing))
	for _, c := range existing {
		used[c.GetFwmark()] = true
	}
	// At most len(existing) marks are taken, so this loop runs at most len(existing)+1 times.
	for m := uint32(1); m <= MaxFWMark; m++ {
		if !used[m] {
			return m
		}
	}
	return 0
}

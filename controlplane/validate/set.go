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
	type claim struct {
		vip     netip.Addr
		ports   *lvsctlv1.PortRange
		index   int
		cluster string
	}
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
		for vi, s := range c.GetVips() {
			vip, reason := serviceAddr(s)
			if reason != "" {
				continue
			}
			// Only the ACTIVE director of one group may hold a VIP; two groups would mean two
			// ACTIVE directors answering ARP for it.
			if o, ok := vipOwners[vip]; ok && o.group != c.GetDirectorGroup() {
				fail(KindCluster, c.GetName(), fmt.Sprintf("vips[%d]", vi), "%s is already served by group %q (cluster %q); a VIP belongs to one director group", vip, o.group, o.cluster)
			} else if !ok {
				vipOwners[vip] = vipOwner{cluster: c.GetName(), group: c.GetDirectorGroup()}
			}
			if at, ok := addrs[vip]; ok {
				fail(KindCluster, c.GetName(), fmt.Sprintf("vips[%d]", vi), directorAddressIsVIP, vip, at.director, at.group)
			}
			for pi, p := range c.GetPorts() {
				if p.GetFirst() > p.GetLast() {
					continue
				}
				mine = append(mine, claim{vip: vip, ports: p, index: pi, cluster: c.GetName()})
			}
		}
		reported := map[int]bool{}
		for _, m := range mine {
			if reported[m.index] {
				continue
			}
			for _, o := range claims {
				if o.vip == m.vip && overlaps(m.ports, o.ports) {
					fail(KindCluster, c.GetName(), fmt.Sprintf("ports[%d]", m.index), "%s on %s is already used by cluster %q (ports[%d] %s)",
						FormatPorts(m.ports), m.vip, o.cluster, o.index, FormatPorts(o.ports))
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

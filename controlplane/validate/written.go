package validate

import (
	"context"
	"fmt"
	"net/netip"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Stored answers, from indexes, what Written asks about the objects a store already holds.
// It may include the stored versions of the objects being written: Written skips them by name.
// Iteration order does not matter.
type Stored interface {
	GroupExists(name string) bool
	EachDirectorGroup(director string, fn func(group string))
	// EachMarkUser: the clusters of the group with the mark (marks are unique per group).
	EachMarkUser(group string, mark uint32, fn func(cluster string))
	EachVIPUser(vip netip.Addr, fn func(cluster, group string))
	// EachPortClaim: the port entries of fwmark clusters on the VIP and protocol, and the plain
	// services there (index ServiceClaim, ports ServiceRange of the service).
	EachPortClaim(vip netip.Addr, proto lvsctlv1.Protocol, fn func(cluster string, index int, ports *lvsctlv1.PortRange))
	EachDirectorAddress(addr netip.Addr, fn func(group, director string))
}

// checkEvery is how many written objects Written checks between looks at its context, so a
// client that gave up stops the work of a large apply within a few milliseconds.
const checkEvery = 64

// Written checks the rules between objects for a write: the written objects (created or
// changed, each already passed by Object) against each other and against what stored holds.
// It reports exactly what Set reports for the written objects when given the stored objects
// the write leaves alone, sorted by kind then name, followed by the written ones in the order
// given; violations among stored objects alone are not its business (a store holding an old
// violation must still take the writes that repair it). Its cost follows the written
// objects, not the store. It stops with ctx's error when ctx ends.
func Written(ctx context.Context, objs []*lvsctlv1.Object, stored Stored) error {
	var errs errList
	fail := func(kind, name, path, format string, args ...any) {
		errs.add(func() error {
			return &FieldError{Kind: kind, Name: name, Path: path, Reason: fmt.Sprintf(format, args...)}
		})
	}
	writtenGroup := map[string]bool{}
	writtenCluster := map[string]bool{}
	var groups []*lvsctlv1.DirectorGroup
	var clusters []*lvsctlv1.Cluster
	for _, o := range objs {
		if c := o.GetCluster(); c != nil {
			writtenCluster[c.GetName()] = true
			clusters = append(clusters, c)
		} else if g := o.GetGroup(); g != nil {
			writtenGroup[g.GetName()] = true
			groups = append(groups, g)
		}
	}
	// lowest keeps the first of the stored objects in Set's order: sorted by name.
	lowest := func(best *string, name string) {
		if *best == "" || name < *best {
			*best = name
		}
	}
	checked := 0
	stop := func() error {
		checked++
		if checked%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("validating: %w", err)
			}
		}
		return nil
	}

	directorGroup := map[string]string{}
	writtenAddrs := map[netip.Addr]directorAt{}
	for _, g := range groups {
		if err := stop(); err != nil {
			return err
		}
		for i, d := range g.GetDirectors() {
			other := ""
			stored.EachDirectorGroup(d.GetName(), func(sg string) {
				if !writtenGroup[sg] {
					lowest(&other, sg)
				}
			})
			if other == "" {
				other = directorGroup[d.GetName()]
			}
			if other != "" && other != g.GetName() {
				fail(KindGroup, g.GetName(), fmt.Sprintf("directors[%d].name", i), "director %q is already in group %q (a director serves one group)", d.GetName(), other)
				continue
			}
			if _, ok := directorGroup[d.GetName()]; !ok {
				directorGroup[d.GetName()] = g.GetName()
			}
		}
		// Set's first group at each address: stored ones by name, then the written ones.
		// writtenAddrs holds only addresses no stored group (left alone) has.
		eachDirectorAddress(g, func(i int, a netip.Addr) {
			var at directorAt
			stored.EachDirectorAddress(a, func(sg, sd string) {
				if !writtenGroup[sg] && (at.group == "" || sg < at.group) {
					at = directorAt{group: sg, director: sd}
				}
			})
			if at.group == "" {
				var ok bool
				if at, ok = writtenAddrs[a]; !ok {
					writtenAddrs[a] = directorAt{group: g.GetName(), director: g.GetDirectors()[i].GetName()}
					return
				}
			}
			if at.group != g.GetName() {
				fail(KindGroup, g.GetName(), fmt.Sprintf("directors[%d].address", i), addressTaken, a, at.director, at.group)
			}
		})
	}

	type vipOwner struct{ cluster, group string }
	type claimKey struct {
		vip   netip.Addr
		proto lvsctlv1.Protocol
	}
	type markKey struct {
		group string
		mark  uint32
	}
	marks := map[markKey]string{}
	vipOwners := map[netip.Addr]vipOwner{}
	claims := map[claimKey][]claim{}
	for _, c := range clusters {
		if err := stop(); err != nil {
			return err
		}
		name := c.GetName()
		if g := c.GetDirectorGroup(); g != "" && !writtenGroup[g] && !stored.GroupExists(g) {
			fail(KindCluster, name, "directorGroup", "group %q does not exist", g)
		}
		if m := c.GetFwmark(); m != 0 {
			other := ""
			stored.EachMarkUser(c.GetDirectorGroup(), m, func(sc string) {
				if !writtenCluster[sc] {
					lowest(&other, sc)
				}
			})
			k := markKey{c.GetDirectorGroup(), m}
			if other == "" {
				other = marks[k]
			}
			if other != "" {
				fail(KindCluster, name, "fwmark", markTaken, m, other, c.GetDirectorGroup())
			} else {
				marks[k] = name
			}
		}
		var mine []claim
		for _, v := range clusterVIPs(c) {
			vip := v.addr
			var owner vipOwner
			stored.EachVIPUser(vip, func(sc, sg string) {
				if !writtenCluster[sc] && (owner.cluster == "" || sc < owner.cluster) {
					owner = vipOwner{cluster: sc, group: sg}
				}
			})
			ok := owner.cluster != ""
			if !ok {
				owner, ok = vipOwners[vip]
			}
			// Only the ACTIVE director of one group may hold a VIP; two groups would mean two
			// ACTIVE directors answering ARP for it.
			if ok && owner.group != c.GetDirectorGroup() {
				fail(KindCluster, name, v.path(), "%s is already served by group %q (cluster %q); a VIP belongs to one director group", vip, owner.group, owner.cluster)
			} else if !ok {
				vipOwners[vip] = vipOwner{cluster: name, group: c.GetDirectorGroup()}
			}
			// Set's first director at the VIP: stored groups by name, then written ones.
			var at directorAt
			stored.EachDirectorAddress(vip, func(sg, sd string) {
				if !writtenGroup[sg] && (at.group == "" || sg < at.group) {
					at = directorAt{group: sg, director: sd}
				}
			})
			if at.group == "" {
				at = writtenAddrs[vip]
			}
			if at.group != "" {
				fail(KindCluster, name, v.path(), directorAddressIsVIP, vip, at.director, at.group)
			}
			mine = append(mine, claimsOf(c, vip)...)
		}
		reported := map[int]bool{}
		for _, m := range mine {
			if reported[m.index] {
				continue
			}
			// The first overlapping claim in Set's order: stored clusters by name (then by
			// port entry), then the written ones before this one.
			var found *claim
			stored.EachPortClaim(m.vip, m.ports.GetProtocol(), func(sc string, index int, ports *lvsctlv1.PortRange) {
				if writtenCluster[sc] || !m.clashes(claim{vip: m.vip, ports: ports, index: index}) {
					return
				}
				if found == nil || sc < found.cluster || (sc == found.cluster && index < found.index) {
					found = &claim{vip: m.vip, ports: ports, index: index, cluster: sc}
				}
			})
			if found == nil {
				for _, o := range claims[claimKey{m.vip, m.ports.GetProtocol()}] {
					if m.clashes(o) {
						found = &o
						break
					}
				}
			}
			if found != nil {
				fail(KindCluster, name, m.path(), "%s", m.conflict(*found))
				reported[m.index] = true
			}
		}
		for _, m := range mine {
			k := claimKey{m.vip, m.ports.GetProtocol()}
			claims[k] = append(claims[k], m)
		}
	}
	// Set's check of director addresses against VIPs, for the written groups.
	for _, g := range groups {
		if err := stop(); err != nil {
			return err
		}
		eachDirectorAddress(g, func(i int, a netip.Addr) {
			var owner vipOwner
			stored.EachVIPUser(a, func(sc, sg string) {
				if !writtenCluster[sc] && (owner.cluster == "" || sc < owner.cluster) {
					owner = vipOwner{cluster: sc, group: sg}
				}
			})
			if owner.cluster == "" {
				owner = vipOwners[a]
			}
			if owner.cluster != "" {
				fail(KindGroup, g.GetName(), fmt.Sprintf("directors[%d].address", i), vipIsDirectorAddress, a, owner.cluster, owner.group)
			}
		})
	}
	return errs.err()
}

package roles

import (
	"cmp"
	"slices"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Reasons an assignment records (GroupRoles.reason).
const (
	ReasonInitial  = "initial"
	ReasonTakeover = "takeover"
	ReasonFailover = "failover"
	ReasonPreempt  = "preempt"
	ReasonRemoved  = "director removed"
)

// Initial is the director a new group starts with as ACTIVE: the highest priority, then the
// first by name (the order keepalived's VRRP election would give).
func Initial(g *lvsctlv1.DirectorGroup) string {
	ds := slices.Clone(g.GetDirectors())
	if len(ds) == 0 {
		return ""
	}
	slices.SortFunc(ds, byPriority)
	return ds[0].GetName()
}

// byPriority orders directors best first: highest priority, then name.
func byPriority(a, b *lvsctlv1.Director) int {
	if c := cmp.Compare(b.GetPriority(), a.GetPriority()); c != 0 {
		return c
	}
	return cmp.Compare(a.GetName(), b.GetName())
}

// AfterGroupWrite is the assignment the operator write path must store in the same transaction
// as group g, given the stored assignment (nil: none) and the store revision the write was
// computed at; nil when the stored one stays. It only fills the gaps the role machine never
// fills, so the two never fight:
//   - no assignment yet: Initial(g) is ACTIVE ("initial");
//   - the ACTIVE is no longer a director of g: a handover to Initial(g) ("director removed"),
//     not a new ACTIVE at once: the removed director may still hold the addresses until its
//     lease ends, and the machine finishes the handover once it has released (or surely
//     has);
//   - a planned handover whose target was removed, or an assignment naming nobody: the
//     previous ACTIVE again if it is still in g (the one director that may still hold the
//     addresses, so no second one can come up beside it); a handover to Initial(g) if the
//     previous one was removed too (it may still hold them); else Initial(g).
//
// Everything else (an ACTIVE that is a member, a handover to a member) is left to the machine.
// The epoch is max(stored+1, rev+1): it grows within the group, and across a group deleted and
// created again, since every epoch ever stored is at most the revision it was written at.
func AfterGroupWrite(g *lvsctlv1.DirectorGroup, stored *lvsctlv1.GroupRoles, rev int64) *lvsctlv1.GroupRoles {
	if len(g.GetDirectors()) == 0 {
		return nil
	}
	out := &lvsctlv1.GroupRoles{Group: g.GetName(), Epoch: max(stored.GetEpoch()+1, uint64(rev)+1)}
	switch {
	case stored == nil:
		out.Active, out.Reason = Initial(g), ReasonInitial
	case stored.GetActive() != "":
		if member(g, stored.GetActive()) {
			return nil
		}
		out.HandoverTo, out.Reason, out.Previous = Initial(g), ReasonRemoved, stored.GetActive()
	default:
		to, prev := stored.GetHandoverTo(), stored.GetPrevious()
		if to != "" && member(g, to) {
			return nil
		}
		out.Reason, out.Previous = ReasonInitial, prev
		if to != "" {
			out.Reason = ReasonRemoved
		}
		switch {
		case member(g, prev):
			out.Active = prev
		case prev != "":
			out.HandoverTo, out.Reason = Initial(g), ReasonRemoved
		default:
			out.Active = Initial(g)
		}
	}
	return out
}

func member(g *lvsctlv1.DirectorGroup, name string) bool {
	return director(g, name) != nil
}

func director(g *lvsctlv1.DirectorGroup, name string) *lvsctlv1.Director {
	if name == "" {
		return nil
	}
	for _, d := range g.GetDirectors() {
		if d.GetName() == name {
			return d
		}
	}
	return nil
}

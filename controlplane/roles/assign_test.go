package roles

import (
	"testing"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func TestInitial(t *testing.T) {
	g := &lvsctlv1.DirectorGroup{Directors: []*lvsctlv1.Director{
		{Name: "dir-c", Priority: 100}, {Name: "dir-b", Priority: 200}, {Name: "dir-a", Priority: 100}, {Name: "dir-d", Priority: 200},
	}}
	if got := Initial(g); got != "dir-b" {
		t.Errorf("Initial = %q, want dir-b (highest priority, then name)", got)
	}
	if got := Initial(&lvsctlv1.DirectorGroup{}); got != "" {
		t.Errorf("Initial of no directors = %q", got)
	}
}

func TestAfterGroupWrite(t *testing.T) {
	g := grp(nil, a, b) // dir-a 200, dir-b 100
	onlyB := grp(nil, b)
	for _, tc := range []struct {
		name   string
		g      *lvsctlv1.DirectorGroup
		stored *lvsctlv1.GroupRoles
		rev    int64
		want   *lvsctlv1.GroupRoles // nil: the stored one stays
	}{
		{name: "new group", g: g, rev: 30, want: roles(a, 31, ReasonInitial, "")},
		{name: "ACTIVE still a member", g: g, stored: roles(b, 12, ReasonTakeover, a), rev: 30},
		// The removed ACTIVE may still hold the addresses: a handover, which the machine
		// finishes once it has released, never a second ACTIVE in the same write.
		{name: "ACTIVE removed", g: onlyB, stored: roles(a, 12, ReasonInitial, ""), rev: 30, want: handoverRoles(b, 31, ReasonRemoved, a)},
		{name: "ACTIVE removed, epoch above the revision", g: onlyB, stored: roles(a, 50, ReasonInitial, ""), rev: 30, want: handoverRoles(b, 51, ReasonRemoved, a)},
		{name: "handover to a member: the machine finishes it", g: g, stored: handoverRoles(b, 12, ReasonFailover, a), rev: 30},
		{name: "handover target removed: the previous ACTIVE again", g: grp(nil, a, c), stored: handoverRoles(b, 12, ReasonFailover, a), rev: 30,
			want: roles(a, 31, ReasonRemoved, a)},
		{name: "handover target and previous removed", g: onlyB, stored: handoverRoles(c, 12, ReasonFailover, a), rev: 30,
			want: handoverRoles(b, 31, ReasonRemoved, a)},
		{name: "removed ACTIVE's handover target removed too", g: grp(nil, c), stored: handoverRoles(b, 31, ReasonRemoved, a), rev: 40,
			want: handoverRoles(c, 41, ReasonRemoved, a)},
		{name: "naming nobody", g: g, stored: &lvsctlv1.GroupRoles{Group: "edge-1", Epoch: 12}, rev: 30, want: roles(a, 31, ReasonInitial, "")},
		{name: "naming nobody, previous still a member", g: g, stored: &lvsctlv1.GroupRoles{Group: "edge-1", Epoch: 12, Previous: b}, rev: 30,
			want: roles(b, 31, ReasonInitial, b)},
		{name: "no directors", g: &lvsctlv1.DirectorGroup{Name: "edge-1"}, rev: 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := AfterGroupWrite(tc.g, tc.stored, tc.rev)
			if !proto.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
				t.Errorf("AfterGroupWrite = %v, want %v", got, tc.want)
			}
		})
	}
}

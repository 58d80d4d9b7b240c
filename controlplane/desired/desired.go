// Package desired computes what each director must apply from the stored desired state, and
// describes the difference between two such states for plans and deltas.
package desired

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Director is one director's desired state at a revision.
type Director struct {
	Name     string
	Group    string
	Revision int64
	State    *lvsctlv1.DesiredState
	Role     *lvsctlv1.RoleAssignment
}

// GroupOf returns the group a director belongs to, or "" if none.
func GroupOf(snap *store.Snapshot, director string) string {
	names := make([]string, 0, len(snap.Groups))
	for n := range snap.Groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, d := range snap.Groups[n].GetDirectors() {
			if d.GetName() == director {
				return n
			}
		}
	}
	return ""
}

// Directors lists every director named by a group, sorted.
func Directors(snap *store.Snapshot) []string {
	var out []string
	for _, g := range snap.Groups {
		for _, d := range g.GetDirectors() {
			out = append(out, d.GetName())
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// For computes a director's desired state. A director in no group gets an empty state at
// revision 0 and an empty role (no group, no role): the agent decides what to keep.
func For(snap *store.Snapshot, director string) *Director {
	d := &Director{Name: director, State: &lvsctlv1.DesiredState{}, Role: &lvsctlv1.RoleAssignment{}}
	group := GroupOf(snap, director)
	if group == "" {
		return d
	}
	d.Group = group
	d.Revision = snap.GroupRevision(group)
	d.State.Group = snap.Groups[group]
	var names []string
	for n, c := range snap.Clusters {
		if c.GetDirectorGroup() == group {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		d.State.Clusters = append(d.State.Clusters, snap.Clusters[n])
	}
	d.Role = RoleOf(snap, group, director)
	return d
}

// RoleOf is the director's role from the group's stored assignment.
func RoleOf(snap *store.Snapshot, group, director string) *lvsctlv1.RoleAssignment {
	r, ok := snap.Roles[group]
	if !ok {
		return &lvsctlv1.RoleAssignment{Group: group, Role: lvsctlv1.Role_ROLE_UNSPECIFIED}
	}
	role := lvsctlv1.Role_ROLE_STANDBY
	if r.GetActive() == director {
		role = lvsctlv1.Role_ROLE_ACTIVE
	}
	return &lvsctlv1.RoleAssignment{Group: group, Role: role, Epoch: r.GetEpoch()}
}

// Delta is the change from one state to another, as the agent stream carries it.
func Delta(from, to *lvsctlv1.DesiredState) (upserted []*lvsctlv1.Cluster, deleted []string, group *lvsctlv1.DirectorGroup, changed bool) {
	old := map[string]*lvsctlv1.Cluster{}
	for _, c := range from.GetClusters() {
		old[c.GetName()] = c
	}
	seen := map[string]bool{}
	for _, c := range to.GetClusters() {
		seen[c.GetName()] = true
		if o, ok := old[c.GetName()]; !ok || !sameCluster(o, c) {
			upserted = append(upserted, c)
		}
	}
	for _, c := range from.GetClusters() {
		if !seen[c.GetName()] {
			deleted = append(deleted, c.GetName())
		}
	}
	if !sameGroup(from.GetGroup(), to.GetGroup()) {
		group = to.GetGroup()
		if group == nil {
			group = &lvsctlv1.DirectorGroup{}
		}
	}
	changed = len(upserted) > 0 || len(deleted) > 0 || group != nil
	return upserted, deleted, group, changed
}

// SameCluster reports whether two versions of a cluster are the same to a director: their
// content, ignoring the stored revision.
func SameCluster(a, b *lvsctlv1.Cluster) bool { return sameCluster(a, b) }

// SameGroup is SameCluster for director groups.
func SameGroup(a, b *lvsctlv1.DirectorGroup) bool { return sameGroup(a, b) }

// sameCluster compares content, ignoring the stored revision.
func sameCluster(a, b *lvsctlv1.Cluster) bool {
	a2, b2 := proto.CloneOf(a), proto.CloneOf(b)
	a2.Revision, b2.Revision = 0, 0
	return proto.Equal(a2, b2)
}

func sameGroup(a, b *lvsctlv1.DirectorGroup) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	a2, b2 := proto.CloneOf(a), proto.CloneOf(b)
	a2.Revision, b2.Revision = 0, 0
	return proto.Equal(a2, b2)
}

// Plan describes, in an operator's words, what a director would change between two states.
func Plan(from, to *lvsctlv1.DesiredState) []string {
	var out []string
	old := map[string]*lvsctlv1.Cluster{}
	for _, c := range from.GetClusters() {
		old[c.GetName()] = c
	}
	for _, c := range to.GetClusters() {
		o, ok := old[c.GetName()]
		if !ok {
			out = append(out, "add cluster "+c.GetName()+": "+ClusterSummary(c))
			continue
		}
		delete(old, c.GetName())
		for _, ch := range ClusterChanges(o, c) {
			out = append(out, fmt.Sprintf("cluster %s: %s", c.GetName(), ch))
		}
	}
	var gone []string
	for n := range old {
		gone = append(gone, n)
	}
	sort.Strings(gone)
	for _, n := range gone {
		out = append(out, fmt.Sprintf("remove cluster %s", n))
	}
	fromG, toG := from.GetGroup(), to.GetGroup()
	if fromG.GetVipInterface() != toG.GetVipInterface() {
		out = append(out, fmt.Sprintf("vip interface: %q -> %q", fromG.GetVipInterface(), toG.GetVipInterface()))
	}
	if !proto.Equal(fromG.GetGateway(), toG.GetGateway()) {
		out = append(out, fmt.Sprintf("gateway: %s -> %s", gatewayString(fromG.GetGateway()), gatewayString(toG.GetGateway())))
	}
	return out
}

func gatewayString(g *lvsctlv1.Gateway) string {
	if g == nil {
		return "none"
	}
	return g.GetAddress() + " on " + g.GetInterface()
}

// ClusterSummary is a cluster in a few words, as plans word an added one: "fwmark 7, wlc, 3
// real servers, 1 VIPs x 5 port ranges" or "service tcp 192.0.2.20:80, sh, 2 real servers".
func ClusterSummary(c *lvsctlv1.Cluster) string {
	if s := c.GetService(); s != nil {
		return fmt.Sprintf("service %s, %s, %d real servers", validate.FormatService(s), c.GetScheduler(), len(c.GetReals()))
	}
	return fmt.Sprintf("fwmark %d, %s, %d real servers, %d VIPs x %d port ranges",
		c.GetFwmark(), c.GetScheduler(), len(c.GetReals()), len(c.GetVips()), len(c.GetPorts()))
}

func serviceString(s *lvsctlv1.VirtualService) string {
	if s == nil {
		return "none"
	}
	return validate.FormatService(s)
}

func flagsString(fs []lvsctlv1.SchedulerFlag) string {
	return "[" + strings.Join(validate.SchedulerFlagNames(fs), " ") + "]"
}

// ClusterChanges lists the field changes between two versions of a cluster.
func ClusterChanges(a, b *lvsctlv1.Cluster) []string {
	var out []string
	add := func(field string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", field, x, y))
		}
	}
	add("directorGroup", a.GetDirectorGroup(), b.GetDirectorGroup())
	add("service", serviceString(a.GetService()), serviceString(b.GetService()))
	add("vips", a.GetVips(), b.GetVips())
	add("ports", portsString(a.GetPorts()), portsString(b.GetPorts()))
	add("scheduler", a.GetScheduler(), b.GetScheduler())
	add("schedulerFlags", flagsString(a.GetSchedulerFlags()), flagsString(b.GetSchedulerFlags()))
	add("ops", a.GetOps(), b.GetOps())
	add("persistence.timeout", fmt.Sprintf("%ds", a.GetPersistence().GetTimeoutSeconds()), fmt.Sprintf("%ds", b.GetPersistence().GetTimeoutSeconds()))
	add("persistence.netmask", a.GetPersistence().GetNetmaskBits(), b.GetPersistence().GetNetmaskBits())
	add("forwarding", a.GetForwarding(), b.GetForwarding())
	add("tunnel", validate.FormatTunnel(a.GetTunnel()), validate.FormatTunnel(b.GetTunnel()))
	add("fwmark", a.GetFwmark(), b.GetFwmark())
	oldReals := map[string]*lvsctlv1.RealServer{}
	for _, r := range a.GetReals() {
		oldReals[r.GetAddress()] = r
	}
	for _, r := range b.GetReals() {
		o, ok := oldReals[r.GetAddress()]
		if !ok {
			line := fmt.Sprintf("add real %s weight %d", r.GetAddress(), r.GetWeight())
			if r.GetPort() != 0 {
				line = fmt.Sprintf("add real %s port %d weight %d", r.GetAddress(), r.GetPort(), r.GetWeight())
			}
			out = append(out, line)
			if r.GetUpperThreshold() != 0 || r.GetLowerThreshold() != 0 {
				out = append(out, fmt.Sprintf("real %s thresholds: %s", r.GetAddress(), thresholds(r)))
			}
		} else {
			if o.GetWeight() != r.GetWeight() {
				out = append(out, fmt.Sprintf("real %s weight: %d -> %d", r.GetAddress(), o.GetWeight(), r.GetWeight()))
			}
			if o.GetPort() != r.GetPort() {
				out = append(out, fmt.Sprintf("real %s port: %d -> %d", r.GetAddress(), o.GetPort(), r.GetPort()))
			}
			if x, y := thresholds(o), thresholds(r); x != y {
				out = append(out, fmt.Sprintf("real %s thresholds: %s -> %s", r.GetAddress(), x, y))
			}
		}
		delete(oldReals, r.GetAddress())
	}
	var gone []string
	for addr := range oldReals {
		gone = append(gone, addr)
	}
	sort.Strings(gone)
	for _, addr := range gone {
		out = append(out, fmt.Sprintf("remove real %s", addr))
	}
	return out
}

// thresholds is a real server's connection thresholds in words: "upper 1000 lower 800",
// "none".
func thresholds(r *lvsctlv1.RealServer) string {
	if r.GetUpperThreshold() == 0 && r.GetLowerThreshold() == 0 {
		return "none"
	}
	return fmt.Sprintf("upper %d lower %d", r.GetUpperThreshold(), r.GetLowerThreshold())
}

func portsString(ps []*lvsctlv1.PortRange) string {
	var s []string
	for _, p := range ps {
		proto := map[lvsctlv1.Protocol]string{lvsctlv1.Protocol_PROTOCOL_TCP: "tcp", lvsctlv1.Protocol_PROTOCOL_UDP: "udp", lvsctlv1.Protocol_PROTOCOL_SCTP: "sctp"}[p.GetProtocol()]
		if p.GetFirst() == p.GetLast() {
			s = append(s, fmt.Sprintf("%s/%d", proto, p.GetFirst()))
		} else {
			s = append(s, fmt.Sprintf("%s/%d-%d", proto, p.GetFirst(), p.GetLast()))
		}
	}
	return fmt.Sprint(s)
}

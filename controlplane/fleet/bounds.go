package fleet

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// What one director's status may hold. An agent's reports are kept in proportion to what
// the controller told it to apply, never to what the agent says: 5 forged reports of
// 100,000 clusters under one name took the controller from 157 MB to 1.3 GB, and made
// `lvsctl status` fail on gRPC's message limit. The stream's message limit
// (fanout.MaxMessageBytes) bounds what is decoded; these bound what is kept.
const (
	// MaxTextBytes bounds each free text from an agent: an error, a health error, a fenced
	// reason. A kernel's or a check's error is a line; 1 KiB keeps a path and a reason.
	MaxTextBytes = 1024
	// MaxDirectorErrors bounds an ack's errors that belong to no cluster: an agent reports
	// a handful (capabilities, addresses, a refused state).
	MaxDirectorErrors = 32
	// MaxErrorsPerCluster bounds one cluster's errors in an ack: one per failed kernel
	// operation on it, a few real servers at worst.
	MaxErrorsPerCluster = 8
	// MaxCapabilityErrors bounds the Hello's capability errors (one per missing module).
	MaxCapabilityErrors = 16
	// MaxVersionBytes bounds the agent's version string.
	MaxVersionBytes = 128
	// maxAddressBytes bounds a real server's address in stats: an IPv6 address with a zone.
	maxAddressBytes = 64
	// maxNameBytes bounds a group's name as an agent reports it (validation allows less).
	maxNameBytes = 253
	// maxHealthBytes bounds a real server's health word ("up", "down", "unknown").
	maxHealthBytes = 16
	// extraReals is how many real servers a cluster's stats may list beyond twice its
	// desired ones: servers being removed stay in the kernel through their grace period,
	// and a cluster whose servers were all replaced lists the old and the new.
	extraReals = 16
)

// Text returns s cut to max bytes (at a rune boundary) with what was cut said.
func Text(s string, max int) string {
	if len(s) <= max {
		return s
	}
	note := fmt.Sprintf("... (%d bytes)", len(s))
	cut := max - len(note)
	if cut < 0 {
		cut = 0
	}
	return strings.ToValidUTF8(s[:cut], "") + note
}

// BoundAck returns the errors of an ack that a director's status keeps: errors of clusters
// in its desired state (clusters), at most MaxErrorsPerCluster each, and at most
// MaxDirectorErrors others, each cut to MaxTextBytes. What was left out is counted in one
// more director error, so status never claims fewer problems than the agent reported.
func BoundAck(a *lvsctlv1.Ack, clusters map[string]*lvsctlv1.Cluster) ([]*lvsctlv1.ClusterError, []string) {
	var errs []*lvsctlv1.ClusterError
	per := map[string]int{}
	unknown, over := 0, 0
	for _, e := range a.GetErrors() {
		name := e.GetCluster()
		if _, ok := clusters[name]; !ok {
			unknown++
			continue
		}
		if per[name] >= MaxErrorsPerCluster {
			over++
			continue
		}
		per[name]++
		errs = append(errs, &lvsctlv1.ClusterError{Cluster: name, Message: Text(e.GetMessage(), MaxTextBytes)})
	}
	in := a.GetDirectorErrors()
	dirErrs := make([]string, 0, min(len(in), MaxDirectorErrors)+1)
	for i, e := range in {
		if i == MaxDirectorErrors {
			over += len(in) - i
			break
		}
		dirErrs = append(dirErrs, Text(e, MaxTextBytes))
	}
	if over+unknown > 0 {
		dirErrs = append(dirErrs, fmt.Sprintf("%d more errors not kept (%d of clusters not in the desired state; at most %d per cluster and %d others are kept)",
			over+unknown, unknown, MaxErrorsPerCluster, MaxDirectorErrors))
	}
	if len(dirErrs) == 0 {
		dirErrs = nil
	}
	return errs, dirErrs
}

// BoundReport makes a stats report from a director list only what status may keep, in
// place: stats of clusters in its desired state (clusters), each listing at most twice its
// desired real servers plus extraReals (its own first). It returns how many entries were
// dropped. It reads clusters, so the caller holds whatever guards them; ClipReport, which
// does not, bounds the texts after.
func BoundReport(r *lvsctlv1.StatusReport, clusters map[string]*lvsctlv1.Cluster) int {
	kept := r.Changed[:0]
	dropped := 0
	for _, cs := range r.GetChanged() {
		c, ok := clusters[cs.GetCluster()]
		if !ok {
			dropped++
			continue
		}
		if max := 2*len(c.GetReals()) + extraReals; len(cs.Reals) > max {
			dropped += len(cs.Reals) - max
			cs.Reals = keepDesiredFirst(cs.Reals, c)[:max:max]
		}
		kept = append(kept, cs)
	}
	clear(r.Changed[len(kept):]) // what was dropped is garbage now
	r.Changed = kept
	if len(r.Removed) > len(clusters) {
		// Removing what is not there does nothing but cost time: only desired names matter
		// (prune takes the stats of clusters that left the desired state).
		r.Removed = slices.DeleteFunc(r.Removed, func(name string) bool { _, ok := clusters[name]; return !ok })
	}
	return dropped
}

// ClipReport bounds the texts of a report's stats and drops the fields this controller
// does not know, in place: what BoundReport kept is then what status keeps.
func ClipReport(r *lvsctlv1.StatusReport) {
	for _, cs := range r.GetChanged() {
		for _, rs := range cs.GetReals() {
			rs.Address = Text(rs.GetAddress(), maxAddressBytes)
			rs.Health = Text(rs.GetHealth(), maxHealthBytes)
			rs.HealthError = Text(rs.GetHealthError(), MaxTextBytes)
			dropUnknown(rs)
			dropUnknown(rs.GetCounters())
		}
		dropUnknown(cs)
		dropUnknown(cs.GetCounters())
	}
}

// dropUnknown forgets the fields this controller does not know, which proto's decoder keeps
// as raw bytes: a forged report could pad every entry with megabytes of them.
func dropUnknown(m proto.Message) {
	if r := m.ProtoReflect(); r.IsValid() && len(r.GetUnknown()) > 0 {
		r.SetUnknown(nil)
	}
}

// keepDesiredFirst orders a cluster's real server stats with its desired servers first (in
// their order), so that cutting the list keeps them rather than servers being removed.
func keepDesiredFirst(reals []*lvsctlv1.RealServerStats, c *lvsctlv1.Cluster) []*lvsctlv1.RealServerStats {
	want := make(map[netip.Addr]bool, len(c.GetReals()))
	for _, r := range c.GetReals() {
		if a, err := netip.ParseAddr(r.GetAddress()); err == nil {
			want[a.Unmap()] = true
		}
	}
	desired := func(rs *lvsctlv1.RealServerStats) bool {
		a, err := netip.ParseAddr(rs.GetAddress())
		return err == nil && want[a.Unmap()]
	}
	out := make([]*lvsctlv1.RealServerStats, 0, len(reals))
	for _, rs := range reals {
		if desired(rs) {
			out = append(out, rs)
		}
	}
	for _, rs := range reals {
		if !desired(rs) {
			out = append(out, rs)
		}
	}
	return out
}

// BoundHello bounds what status keeps of an agent's Hello, in place.
func BoundHello(h *lvsctlv1.Hello) {
	dropUnknown(h)
	h.Version = Text(h.GetVersion(), MaxVersionBytes)
	if c := h.GetCapabilities(); c != nil {
		dropUnknown(c)
		if len(c.Errors) > MaxCapabilityErrors {
			n := len(c.Errors)
			c.Errors = append(c.Errors[:MaxCapabilityErrors-1:MaxCapabilityErrors-1], fmt.Sprintf("%d more capability errors not kept", n-MaxCapabilityErrors+1))
		}
		for i, e := range c.Errors {
			c.Errors[i] = Text(e, MaxTextBytes)
		}
	}
}

// BoundRoleStatus makes a director's RoleStatus hold only what status keeps, in place:
// peers that are directors of its group (group), each once; texts bounded. It returns st.
func BoundRoleStatus(st *lvsctlv1.RoleStatus, group *lvsctlv1.DirectorGroup) *lvsctlv1.RoleStatus {
	dropUnknown(st)
	st.Group = Text(st.GetGroup(), maxNameBytes)
	st.Fenced = Text(st.GetFenced(), MaxTextBytes)
	members := map[string]bool{}
	for _, d := range group.GetDirectors() {
		members[d.GetName()] = true
	}
	seen := map[string]bool{}
	st.Peers = slices.DeleteFunc(st.Peers, func(p *lvsctlv1.PeerStatus) bool {
		name := p.GetDirector()
		if !members[name] || seen[name] {
			return true
		}
		seen[name] = true
		dropUnknown(p)
		return false
	})
	if sy := st.GetSync(); sy != nil {
		dropUnknown(sy)
		sy.Interface = Text(sy.GetInterface(), maxAddressBytes)
		sy.Error = Text(sy.GetError(), MaxTextBytes)
	}
	return st
}

// StatsClusters returns the names of the clusters a director has stats for, sorted.
func (f *Fleet) StatsClusters(director string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.stats[director]))
}

// DropStats forgets a director's stats of the named clusters (they left its desired state).
func (f *Fleet) DropStats(director string, clusters []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, t := f.stats[director], f.totals[director]
	n := 0
	for _, name := range clusters {
		if old, ok := m[name]; ok {
			addTotals(t, old, -1)
			delete(m, name)
			n++
		}
	}
	if n > 0 {
		f.markLocked(director)
	}
}

// Forget removes a director's status altogether, connected or not: it is in no group, and
// a director in no group has no status entry.
func (f *Fleet) Forget(director string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.dirs[director]; ok {
		f.forgetLocked(director)
	}
}

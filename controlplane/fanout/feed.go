package fanout

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/desired"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// MaxMessageBytes bounds one message on the agent stream, both ways; the controller's server
// and the agent's dial use it. gRPC's default of 4 MiB refused a snapshot of a few thousand
// clusters; a group of 10,000 clusters x 10 real servers encodes to about 3 MiB without
// counters (TestSnapshotOfTenThousandClustersFits, BenchmarkSnapshotSize), and a director's
// full status report at that size to about 11 MiB, so 64 MiB leaves room for real servers
// with long names and large counters.
const MaxMessageBytes = 64 << 20

// deltaLog is how many deltas a group keeps so that an agent a few revisions behind gets
// the deltas it missed; one further behind gets a snapshot, which is always correct.
const deltaLog = 64

// prepared is one message for the agent stream, encoded once and then sent, as the same
// bytes, on every stream that needs it: a snapshot of a group of 10,000 clusters is
// megabytes, and encoding it once per director made the controller's memory grow with
// directors x clusters.
type prepared struct {
	msg  *lvsctlv1.ConnectResponse
	what string // for the size error: "snapshot of group edge-1 at revision 42"

	once sync.Once
	enc  grpc.PreparedMsg
	err  error
}

// encoded returns the message encoded for stream's codec (every stream of this server uses
// the same one, so the bytes are shared). A message over limit is refused here
// with an error naming the limit: the agent would refuse it anyway, with a less helpful one.
func (p *prepared) encoded(stream grpc.ServerStream, limit int) (*grpc.PreparedMsg, error) {
	p.once.Do(func() {
		if n := proto.Size(p.msg); n > limit {
			p.err = status.Errorf(codes.ResourceExhausted,
				"%s is %d bytes, over the agent stream's limit of %d bytes (fanout.MaxMessageBytes): split the director group's clusters over several groups",
				p.what, n, limit)
			return
		}
		p.err = p.enc.Encode(stream, p.msg)
	})
	return &p.enc, p.err
}

// feed is one group's desired state as published at one revision. A published feed is
// never changed: sessions read it without the hub's lock.
type feed struct {
	group    string
	revision int64
	// deltas lead to revision, oldest first, each following the one before it; the last one's
	// Revision is revision. Empty after a (re)load: agents behind it get a snapshot.
	deltas []*prepared
	// snap is built on first use, under the hub's lock while this feed is current.
	snap *prepared
}

// prevRevision is the revision the delta p follows.
func prevRevision(p *prepared) int64 { return p.msg.GetDelta().GetPrevRevision() }

// deltasAfter returns the deltas that take an agent from rev to f.revision, or false when
// the log does not reach back to rev.
func (f *feed) deltasAfter(rev int64) ([]*prepared, bool) {
	for i, d := range f.deltas {
		if prevRevision(d) == rev {
			return f.deltas[i:], true
		}
	}
	return nil, false
}

// groups is the hub's working copy of the desired state, changed in place by each watch
// batch at a cost proportional to the batch: the clusters of each group, which group each
// director is in, and each group's published feed.
type groups struct {
	snap     *store.Snapshot
	clusters map[string]map[string]*lvsctlv1.Cluster // group -> cluster name -> cluster
	dirGroup map[string]string                       // director -> group
	feeds    map[string]*feed
	// affected are the directors the last apply took out of their group or moved, or whose
	// group lost clusters: status they hold may no longer be theirs to hold (Hub.prune).
	affected map[string]bool
}

// newGroups indexes a freshly loaded snapshot: every group gets a feed without deltas.
func newGroups(snap *store.Snapshot) *groups {
	g := &groups{snap: snap, clusters: map[string]map[string]*lvsctlv1.Cluster{}, feeds: map[string]*feed{}}
	for name, c := range snap.Clusters {
		g.add(name, c)
	}
	g.indexDirectors()
	for name := range snap.Groups {
		g.feeds[name] = g.newFeed(name, nil)
	}
	return g
}

func (g *groups) add(name string, c *lvsctlv1.Cluster) {
	m := g.clusters[c.GetDirectorGroup()]
	if m == nil {
		m = map[string]*lvsctlv1.Cluster{}
		g.clusters[c.GetDirectorGroup()] = m
	}
	m[name] = c
}

func (g *groups) remove(name string, c *lvsctlv1.Cluster) {
	m := g.clusters[c.GetDirectorGroup()]
	delete(m, name)
	if len(m) == 0 {
		delete(g.clusters, c.GetDirectorGroup())
	}
}

// indexDirectors maps directors to groups; it runs only when a group changed. A director
// named by two groups (validation refuses it) belongs to the first by name, as
// desired.GroupOf decides.
func (g *groups) indexDirectors() {
	g.dirGroup = map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(g.snap.Groups)) {
		for _, d := range g.snap.Groups[name].GetDirectors() {
			if _, ok := g.dirGroup[d.GetName()]; !ok {
				g.dirGroup[d.GetName()] = name
			}
		}
	}
}

func (g *groups) affect(director string) {
	if g.affected == nil {
		g.affected = map[string]bool{}
	}
	g.affected[director] = true
}

func (g *groups) newFeed(group string, deltas []*prepared) *feed {
	rev := g.snap.GroupRevision(group)
	return &feed{group: group, revision: rev, deltas: deltas, snap: &prepared{what: fmt.Sprintf("the snapshot of director group %s at revision %d", group, rev)}}
}

// snapshotOf returns f's snapshot message, building it if needed. Call it only while f is
// the group's current feed (the cluster index is at f's revision) and under the hub's lock.
func (g *groups) snapshotOf(f *feed) *prepared {
	if f.snap.msg == nil {
		st := &lvsctlv1.DesiredState{Group: g.snap.Groups[f.group]}
		m := g.clusters[f.group]
		st.Clusters = make([]*lvsctlv1.Cluster, 0, len(m))
		for _, name := range slices.Sorted(maps.Keys(m)) {
			st.Clusters = append(st.Clusters, m[name])
		}
		r := g.snap.Roles[f.group]
		f.snap.msg = &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{Revision: f.revision, State: st, Roles: r,
			SentUnixMs: sentUnixMs(r)}}}
	}
	return f.snap
}

type keyKind int

const (
	kindOther keyKind = iota
	kindCluster
	kindGroup
	// kindGroupState is a group's roles or generation: its revision, and its roles.
	kindGroupState
)

// kindOf tells what a store key holds and the name of its object (or group).
func kindOf(key string) (keyKind, string) {
	for _, k := range []struct {
		prefix string
		kind   keyKind
	}{
		{store.ClusterKey(""), kindCluster},
		{store.GroupKey(""), kindGroup},
		{store.RolesKey(""), kindGroupState},
		{store.GenerationKey(""), kindGroupState},
	} {
		if name, ok := strings.CutPrefix(key, k.prefix); ok {
			return k.kind, name
		}
	}
	return kindOther, ""
}

// change is what one batch did to one group.
type change struct {
	clusters map[string]*lvsctlv1.Cluster // name -> cluster as the batch left it; nil: deleted
	before   map[string]*lvsctlv1.Cluster // name -> cluster before the batch; nil: absent
}

// apply applies one watch batch and publishes a new feed for every group it touched.
func (g *groups) apply(b store.Batch) error {
	changes := map[string]*change{}
	touch := func(group string) *change {
		c := changes[group]
		if c == nil {
			c = &change{clusters: map[string]*lvsctlv1.Cluster{}, before: map[string]*lvsctlv1.Cluster{}}
			changes[group] = c
		}
		return c
	}
	groupsBefore := map[string]*lvsctlv1.DirectorGroup{}
	rolesBefore := map[string]*lvsctlv1.GroupRoles{}
	g.affected = nil
	for _, ev := range b.Events {
		kind, name := kindOf(ev.Key)
		switch kind {
		case kindCluster:
			old := g.snap.Clusters[name]
			if err := g.snap.Set(ev.Key, ev.Value, ev.ModRevision); err != nil {
				return err
			}
			cur := g.snap.Clusters[name]
			if old != nil {
				g.remove(name, old)
				c := touch(old.GetDirectorGroup())
				if _, seen := c.before[name]; !seen {
					c.before[name] = old
				}
				c.clusters[name] = nil
			}
			if cur != nil {
				g.add(name, cur)
				c := touch(cur.GetDirectorGroup())
				if _, seen := c.before[name]; !seen {
					c.before[name] = nil
					if old != nil && old.GetDirectorGroup() == cur.GetDirectorGroup() {
						c.before[name] = old
					}
				}
				c.clusters[name] = cur
			}
		case kindGroup:
			if _, seen := groupsBefore[name]; !seen {
				groupsBefore[name] = g.snap.Groups[name]
			}
			if err := g.snap.Set(ev.Key, ev.Value, ev.ModRevision); err != nil {
				return err
			}
			touch(name)
		default:
			// Roles and generations change the group's revision (and roles, each
			// director's role); the head key changes nothing a director applies.
			if kind == kindGroupState && ev.Key == store.RolesKey(name) {
				if _, seen := rolesBefore[name]; !seen {
					rolesBefore[name] = g.snap.Roles[name]
				}
			}
			if err := g.snap.Set(ev.Key, ev.Value, ev.ModRevision); err != nil {
				return err
			}
			if kind == kindGroupState {
				touch(name)
			}
		}
	}
	g.snap.Revision = b.Revision
	if len(groupsBefore) > 0 {
		before := g.dirGroup
		g.indexDirectors()
		for d, group := range before {
			if g.dirGroup[d] != group {
				g.affect(d)
			}
		}
		for d, group := range g.dirGroup {
			if before[d] != group {
				g.affect(d)
			}
		}
	}
	for group, c := range changes {
		for name, cur := range c.clusters {
			if cur == nil && c.before[name] != nil {
				// Gone from this group: its directors' stats of it go.
				for _, d := range g.snap.Groups[group].GetDirectors() {
					g.affect(d.GetName())
				}
				break
			}
		}
	}
	for group, c := range changes {
		g.publish(group, c, groupsBefore, rolesBefore)
	}
	return nil
}

// publish makes a group's next feed from one batch's change to it.
func (g *groups) publish(group string, c *change, groupsBefore map[string]*lvsctlv1.DirectorGroup, rolesBefore map[string]*lvsctlv1.GroupRoles) {
	obj, exists := g.snap.Groups[group]
	old := g.feeds[group]
	if !exists {
		delete(g.feeds, group)
		return
	}
	if old == nil {
		// A new group: its directors get its snapshot.
		g.feeds[group] = g.newFeed(group, nil)
		return
	}
	rev := g.snap.GroupRevision(group)
	if rev == old.revision {
		// Nothing a director applies changed revision (the store rewrites the group's
		// generation with every change to it): keep the feed, but not a stale snapshot.
		g.feeds[group] = &feed{group: group, revision: rev, deltas: old.deltas, snap: &prepared{what: old.snap.what}}
		return
	}
	d := &lvsctlv1.Delta{PrevRevision: old.revision, Revision: rev}
	for _, name := range slices.Sorted(maps.Keys(c.clusters)) {
		cur, before := c.clusters[name], c.before[name]
		switch {
		case cur == nil && before != nil:
			d.Deleted = append(d.Deleted, name)
		case cur == nil:
			// Created and deleted within the batch: the agents never had it.
		case before == nil || !desired.SameCluster(before, cur):
			d.Upserted = append(d.Upserted, cur)
		}
	}
	if prev, changed := groupsBefore[group]; changed && !desired.SameGroup(prev, obj) {
		d.Group = obj
	}
	if prev, changed := rolesBefore[group]; changed && !proto.Equal(prev, g.snap.Roles[group]) {
		// The role travels with the state it belongs to: one message, one reconcile.
		d.Roles = g.snap.Roles[group]
		d.SentUnixMs = sentUnixMs(d.Roles)
	}
	deltas := old.deltas
	if len(deltas) >= deltaLog {
		deltas = deltas[len(deltas)-deltaLog+1:]
	}
	// A new slice: the old feed's deltas stay as sessions may be reading them.
	deltas = append(slices.Clip(deltas), &prepared{
		msg:  &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: d}},
		what: fmt.Sprintf("the delta of director group %s from revision %d to %d", group, old.revision, rev),
	})
	g.feeds[group] = g.newFeed(group, deltas)
}

// sentUnixMs is a message's sent_unix_ms for roles: the wall clock now when the roles carry
// a takeover's fence, which the agent counts from it (0 otherwise). Stamped when the message
// is built, which is before any agent receives it: a message sent later (a lagging agent's
// delta, a cached snapshot) makes the agent wait longer than needed, never less.
func sentUnixMs(r *lvsctlv1.GroupRoles) int64 {
	if r.GetFenceUntilUnixMs() == 0 {
		return 0
	}
	return time.Now().UnixMilli()
}

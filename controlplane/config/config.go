// Package config serves ConfigService: operators' reads and writes of the desired state. A
// write reads the controller's cache of the store (store.Cache), validates the objects it
// writes against the cache's indexes (the authoritative validation, in proportion to the
// write, not to the store), and commits in one etcd transaction conditional on the head
// revision the cache showed: a write computed from a cache that was behind is refused by etcd
// and computed again once the cache has caught up.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/desired"
	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/roles"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrStale: the request named a revision that is no longer the stored one.
	ErrStale = errors.New("stale revision")
	// ErrInUse: the object is still referenced (a group with clusters).
	ErrInUse = errors.New("still in use")
	// ErrMarksExhausted: no fwmark is left to allocate.
	ErrMarksExhausted = errors.New("no free fwmark")
)

// maxAttempts bounds retries of a write that raced another writer. Each attempt reads the
// cache afresh and checks again every revision the request named, so a retry never writes
// over a change the operator did not see.
const maxAttempts = 10

// checkEvery is how many objects a write handles between looks at its context: a client that
// gave up on a large apply stops its work within milliseconds.
const checkEvery = 64

// Server implements ConfigService.
type Server struct {
	lvsctlv1.UnimplementedConfigServiceServer
	store *store.Store
	cache *store.Cache
	log   *slog.Logger
	// committed is the newest revision this server wrote: a later write waits until the
	// cache shows it, so one client's successive writes never race the watch.
	committed atomic.Int64
	// who names the caller of a request, for its history entries.
	who func(context.Context) string
	// retention is how many history entries each object keeps.
	retention int
}

// NewServer returns a ConfigService over the store and its cache; the cache must be running
// (Cache.Run), and writes wait until it has loaded.
func NewServer(st *store.Store, cache *store.Cache, log *slog.Logger) *Server {
	return &Server{store: st, cache: cache, log: log.With("service", "config"),
		who: func(context.Context) string { return UnknownWho }, retention: DefaultHistoryRetention}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { lvsctlv1.RegisterConfigServiceServer(g, s) }

// Apply creates or updates objects atomically.
func (s *Server) Apply(ctx context.Context, req *lvsctlv1.ApplyRequest) (*lvsctlv1.ApplyResponse, error) {
	objs := req.GetObjects()
	if len(objs) == 0 {
		return nil, toStatus(fmt.Errorf("%w: objects: at least one object is required", validate.ErrInvalid))
	}
	if len(objs) > limits.MaxObjectsPerApply {
		return nil, toStatus(fmt.Errorf("%w: %w (apply them in parts)", validate.ErrInvalid,
			&limits.Error{Where: "objects", What: "objects in one apply", Got: int64(len(objs)), Max: limits.MaxObjectsPerApply}))
	}
	// Refuse what etcd could not take before spending anything on it.
	size := 0
	for _, o := range objs {
		_, name := validate.KindName(o)
		size += proto.Size(o) + len(store.ClusterKey(name))
	}
	if err := s.store.CheckSize(len(objs), size); err != nil {
		return nil, toStatus(err)
	}
	for i, o := range objs {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return nil, toStatus(fmt.Errorf("validating: %w", ctx.Err()))
		}
		if err := validate.Object(o); err != nil {
			return nil, toStatus(err)
		}
		if err := adopting(o, req.GetAdopt()); err != nil {
			return nil, toStatus(err)
		}
	}
	resp, err := retry(ctx, s, "apply", func() (*lvsctlv1.ApplyResponse, int64, error) { return s.apply(ctx, req, recordAs{}) })
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// adopting sets a cluster's adopt to the request's (an apply without --adopt clears it: what
// was adopted stays owned by the agents). An fwmark cluster to adopt must name its mark: the
// kernel's service is found by it, and one the controller allocated would be a guess.
func adopting(o *lvsctlv1.Object, adopt bool) error {
	c := o.GetCluster()
	if c == nil {
		return nil
	}
	c.Adopt = adopt
	if adopt && c.GetService() == nil && c.GetFwmark() == 0 {
		return &validate.FieldError{Kind: validate.KindCluster, Name: c.GetName(), Path: "fwmark",
			Reason: "--adopt needs the mark of the kernel's service (fwmark: N, as lvsctl import pins it)"}
	}
	return nil
}

// retry runs one attempt of a write after the cache shows this server's last write, and
// again on a conflict once the cache shows the revision that refused it.
func retry[T any](ctx context.Context, s *Server, what string, attempt func() (T, int64, error)) (T, error) {
	wait := s.committed.Load()
	for n := 0; ; n++ {
		if err := s.cache.Wait(ctx, wait); err != nil {
			var zero T
			return zero, err
		}
		resp, rev, err := attempt()
		if errors.Is(err, store.ErrConflict) && n < maxAttempts {
			wait = max(wait, rev)
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			err = fmt.Errorf("%w: the store kept changing while this %s was written; try again", ErrStale, what)
		}
		return resp, err
	}
}

// change accumulates one write: the objects it writes or deletes, over the cache.
type change struct {
	cache *store.Cache
	// rev and head are the cache's revision and head revision the change was computed from.
	rev, head int64
	write     store.Write
	touched   map[string]bool // groups whose directors' desired state changes
	// clusters and groups are the written objects (nil: deleted), keyed by name.
	clusters map[string]*lvsctlv1.Cluster
	groups   map[string]*lvsctlv1.DirectorGroup
	// changes are the lines describing each updated object's change (by its store key),
	// computed once for the results and kept for its history entry.
	changes map[string][]string
	// as is what the history records the write as (zero: created, updated or deleted).
	as recordAs
}

func newChange(cache *store.Cache) *change {
	rev, head := cache.Revision()
	return &change{
		cache: cache, rev: rev, head: head, touched: map[string]bool{},
		clusters: map[string]*lvsctlv1.Cluster{}, groups: map[string]*lvsctlv1.DirectorGroup{},
		changes: map[string][]string{},
		write:   store.Write{Head: head, Expect: map[string]int64{}, Puts: map[string]proto.Message{}},
	}
}

// cluster returns a cluster as the write leaves it.
func (ch *change) cluster(name string) (*lvsctlv1.Cluster, bool) {
	if c, ok := ch.clusters[name]; ok {
		return c, c != nil
	}
	return ch.cache.Cluster(name)
}

// group returns a group as the write leaves it.
func (ch *change) group(name string) (*lvsctlv1.DirectorGroup, bool) {
	if g, ok := ch.groups[name]; ok {
		return g, g != nil
	}
	return ch.cache.Group(name)
}

// judged returns a write's refusal, unless the cache moved on while the change was computed:
// then the refusal may mix two revisions (a mark allocated from one, checked against a
// cluster that took it in the next: "already used"; a cluster not found that was just
// created), and the write is computed again (store.ErrConflict, which retry retries).
func (ch *change) judged(err error) error {
	if err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if stale := ch.stale(); stale != nil {
		return stale
	}
	return err
}

// stale reports whether the cache moved on since the change was computed from it; the
// write would be refused, so it is computed again rather than sent.
func (ch *change) stale() error {
	rev, head := ch.cache.Revision()
	if head != ch.head {
		return fmt.Errorf("%w (cache at revision %d)", store.ErrConflict, rev)
	}
	return nil
}

func (s *Server) apply(ctx context.Context, req *lvsctlv1.ApplyRequest, as recordAs) (_ *lvsctlv1.ApplyResponse, _ int64, err error) {
	ch := newChange(s.cache)
	judging := true // until the write is sent: etcd's errors are etcd's
	defer func() {
		if judging {
			err = ch.judged(err)
		}
	}()
	ch.as = as
	resp := &lvsctlv1.ApplyResponse{}
	seen := map[string]bool{}
	var allocate []*lvsctlv1.Cluster
	for i, o := range req.GetObjects() {
		if i%checkEvery == 0 && ctx.Err() != nil {
			return nil, 0, fmt.Errorf("validating: %w", ctx.Err())
		}
		var res *lvsctlv1.ObjectResult
		var err error
		switch k := o.GetKind().(type) {
		case *lvsctlv1.Object_Cluster:
			id := "cluster/" + k.Cluster.GetName()
			if seen[id] {
				return nil, 0, fmt.Errorf("%w: cluster %q: objects[%d]: defined twice in one apply", validate.ErrInvalid, k.Cluster.GetName(), i)
			}
			seen[id] = true
			var c *lvsctlv1.Cluster
			res, c, err = ch.putCluster(k.Cluster)
			// A plain service (cluster.service) is matched by address, protocol and port:
			// it has no mark to allocate.
			if c != nil && c.GetFwmark() == 0 && c.GetService() == nil {
				allocate = append(allocate, c)
			}
		case *lvsctlv1.Object_Group:
			id := "group/" + k.Group.GetName()
			if seen[id] {
				return nil, 0, fmt.Errorf("%w: group %q: objects[%d]: defined twice in one apply", validate.ErrInvalid, k.Group.GetName(), i)
			}
			seen[id] = true
			res, err = ch.putGroup(k.Group)
		default:
			return nil, 0, fmt.Errorf("%w: objects[%d]: kind is required", validate.ErrInvalid, i)
		}
		if err != nil {
			return nil, 0, err
		}
		resp.Results = append(resp.Results, res)
	}
	if err := ch.allocateMarks(allocate); err != nil {
		return nil, 0, err
	}
	if err := ch.validate(ctx); err != nil {
		return nil, 0, err
	}
	if err := ch.stale(); err != nil {
		return nil, 0, err
	}
	resp.Plans = ch.plans()
	for _, o := range req.GetObjects() {
		resp.Objects = append(resp.Objects, ch.stored(o))
	}
	resp.Revision = ch.rev
	judging = false
	if req.GetDryRun() || len(ch.write.Puts) == 0 {
		// Nothing is written, so no conditional write confirms what the cache showed: ask
		// etcd whether it is the latest (and fail as the write would with etcd down).
		if rev, err := s.current(ctx, ch.head); err != nil {
			return nil, rev, err
		}
		return resp, 0, nil
	}
	rev, err := s.commit(ctx, ch)
	if err != nil {
		return nil, rev, err
	}
	resp.Revision = rev
	for _, o := range resp.Objects {
		setRevision(o, rev, ch)
	}
	s.log.Info("applied", "revision", rev, "objects", len(req.GetObjects()), "writes", len(ch.write.Puts))
	return resp, 0, nil
}

// allocateMarks gives each new cluster without a mark the lowest mark that no stored cluster
// of its group and no other cluster of its group in this write holds, in the order the
// request lists them. Marks are unique per director group: a director programs only its
// group's clusters, and two imported sites may keep the same marks.
func (ch *change) allocateMarks(allocate []*lvsctlv1.Cluster) error {
	if len(allocate) == 0 {
		return nil
	}
	byGroup := map[string][]*lvsctlv1.Cluster{}
	var order []string
	for _, c := range allocate {
		g := c.GetDirectorGroup()
		if _, ok := byGroup[g]; !ok {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], c)
	}
	for _, g := range order {
		taken := map[uint32]bool{}
		for _, c := range ch.clusters {
			if c != nil && c.GetDirectorGroup() == g && c.GetFwmark() != 0 {
				taken[c.GetFwmark()] = true
			}
		}
		marks := ch.cache.FreeMarks(g, len(byGroup[g]), func(m uint32) bool { return taken[m] })
		if len(marks) < len(byGroup[g]) {
			return fmt.Errorf("%w: every fwmark up to %d is in use in group %q", ErrMarksExhausted, validate.MaxFWMark, g)
		}
		for i, c := range byGroup[g] {
			c.Fwmark = marks[i]
		}
	}
	return nil
}

func setRevision(o *lvsctlv1.Object, rev int64, ch *change) {
	switch k := o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		if _, ok := ch.write.Puts[store.ClusterKey(k.Cluster.GetName())]; ok {
			k.Cluster.Revision = rev
		}
	case *lvsctlv1.Object_Group:
		if _, ok := ch.write.Puts[store.GroupKey(k.Group.GetName())]; ok {
			k.Group.Revision = rev
		}
	}
}

// stored returns the object as it will be stored (allocated fields filled in).
func (ch *change) stored(o *lvsctlv1.Object) *lvsctlv1.Object {
	switch k := o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		c, _ := ch.cluster(k.Cluster.GetName())
		return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: proto.CloneOf(c)}}
	case *lvsctlv1.Object_Group:
		g, _ := ch.group(k.Group.GetName())
		return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: proto.CloneOf(g)}}
	}
	return o
}

// deleteUndecodable deletes a key whose value does not decode (store.Cache.UndecodableAt),
// conditional on that value and on the revision the request named, if any.
func (ch *change) deleteUndecodable(kind, name, key string, asked int64) error {
	u, _ := ch.cache.UndecodableAt(key)
	if asked != 0 && asked != u.ModRevision {
		return fmt.Errorf("%w: %s %q: revision: %d is stale, the stored (undecodable) value is at %d", ErrStale, kind, name, asked, u.ModRevision)
	}
	ch.write.Expect[key] = u.ModRevision
	ch.write.Deletes = append(ch.write.Deletes, key)
	return nil
}

// nameList quotes the first names of a list for a message, and counts the others.
func nameList(names []string) string {
	const shown = 10
	var b strings.Builder
	for i, n := range names[:min(len(names), shown)] {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(n))
	}
	if len(names) > shown {
		fmt.Fprintf(&b, " and %d more", len(names)-shown)
	}
	return b.String()
}

// expectNew makes the write of a new object conditional on its key being absent, or, when
// the key holds a value that does not decode (store.Cache.UndecodableAt), on that value: the
// write replaces it, and says so.
func (ch *change) expectNew(key string) []string {
	u, bad := ch.cache.UndecodableAt(key)
	if !bad {
		ch.write.Expect[key] = 0
		return nil
	}
	ch.write.Expect[key] = u.ModRevision
	ch.changes[key] = []string{fmt.Sprintf("replaces the stored value of revision %d, which does not decode", u.ModRevision)}
	return ch.changes[key]
}

func checkRevision(kind, name string, asked int64, cur interface{ GetRevision() int64 }, exists bool) error {
	if asked == 0 {
		return nil
	}
	if !exists {
		return fmt.Errorf("%w: %s %q: revision: %d was given but the object does not exist", ErrStale, kind, name, asked)
	}
	if cur.GetRevision() != asked {
		return fmt.Errorf("%w: %s %q: revision: %d is stale, the stored object is at %d", ErrStale, kind, name, asked, cur.GetRevision())
	}
	return nil
}

func (ch *change) putCluster(in *lvsctlv1.Cluster) (*lvsctlv1.ObjectResult, *lvsctlv1.Cluster, error) {
	name := in.GetName()
	cur, exists := ch.cache.Cluster(name)
	if err := checkRevision("cluster", name, in.GetRevision(), cur, exists); err != nil {
		return nil, nil, err
	}
	c := proto.CloneOf(in)
	c.Revision = 0
	// A mark, once allocated, stays: changing it would move live traffic to a new IPVS
	// service and drop its connections and persistence. A cluster that becomes a plain
	// service is a new IPVS service anyway, and one with no mark (validate refused a mark
	// written beside service); one that becomes a fwmark cluster again is allocated a mark.
	if exists && c.GetService() == nil && cur.GetService() == nil {
		if c.GetFwmark() != 0 && c.GetFwmark() != cur.GetFwmark() {
			return nil, nil, &validate.FieldError{Kind: validate.KindCluster, Name: name, Path: "fwmark",
				Reason: fmt.Sprintf("%d differs from the allocated %d: a cluster's fwmark never changes (delete and re-create the cluster to move it)", c.GetFwmark(), cur.GetFwmark())}
		}
		c.Fwmark = cur.GetFwmark()
	}
	res := &lvsctlv1.ObjectResult{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: name}
	key := store.ClusterKey(name)
	switch {
	case !exists:
		res.Action = lvsctlv1.Action_ACTION_CREATED
		res.Changes = ch.expectNew(key)
	default:
		c.Revision = cur.GetRevision()
		res.Changes = clusterChanges(cur, c)
		if len(res.Changes) == 0 {
			res.Action = lvsctlv1.Action_ACTION_UNCHANGED
			return res, nil, nil
		}
		res.Action = lvsctlv1.Action_ACTION_UPDATED
		ch.changes[key] = res.Changes
		ch.write.Expect[key] = cur.GetRevision()
		ch.touched[cur.GetDirectorGroup()] = true
	}
	ch.touched[c.GetDirectorGroup()] = true
	ch.write.Puts[key] = c
	ch.clusters[name] = c
	return res, c, nil
}

func (ch *change) putGroup(in *lvsctlv1.DirectorGroup) (*lvsctlv1.ObjectResult, error) {
	name := in.GetName()
	cur, exists := ch.cache.Group(name)
	if err := checkRevision("group", name, in.GetRevision(), cur, exists); err != nil {
		return nil, err
	}
	g := proto.CloneOf(in)
	g.Revision = 0
	res := &lvsctlv1.ObjectResult{Kind: lvsctlv1.Kind_KIND_GROUP, Name: name}
	key := store.GroupKey(name)
	if exists {
		g.Revision = cur.GetRevision()
		if proto.Equal(cur, g) {
			res.Action = lvsctlv1.Action_ACTION_UNCHANGED
			return res, nil
		}
		res.Action = lvsctlv1.Action_ACTION_UPDATED
		res.Changes = groupChanges(cur, g)
		ch.changes[key] = res.Changes
		ch.write.Expect[key] = cur.GetRevision()
	} else {
		res.Action = lvsctlv1.Action_ACTION_CREATED
		res.Changes = ch.expectNew(key)
	}
	ch.touched[name] = true
	ch.write.Puts[key] = g
	ch.groups[name] = g
	// Roles belong to package roles: the write path stores only what a group write itself
	// makes necessary (a first assignment, or one whose ACTIVE left the group), in the same
	// transaction, conditional on the stored assignment so a concurrent takeover wins or
	// fails this write, never half of it.
	stored, rolesRev := ch.cache.Roles(name)
	if nr := roles.AfterGroupWrite(g, stored, ch.rev); nr != nil {
		ch.write.Puts[store.RolesKey(name)] = nr
		ch.write.Expect[store.RolesKey(name)] = rolesRev
	}
	return res, nil
}

func groupChanges(a, b *lvsctlv1.DirectorGroup) []string {
	var out []string
	add := func(field string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			out = append(out, fmt.Sprintf("%s: %v -> %v", field, x, y))
		}
	}
	dirs := func(g *lvsctlv1.DirectorGroup) []string {
		var s []string
		for _, d := range g.GetDirectors() {
			s = append(s, fmt.Sprintf("%s/%d", d.GetName(), d.GetPriority()))
		}
		return s
	}
	add("directors", dirs(a), dirs(b))
	add("vipInterface", a.GetVipInterface(), b.GetVipInterface())
	add("gateway", a.GetGateway().GetAddress()+" "+a.GetGateway().GetInterface(), b.GetGateway().GetAddress()+" "+b.GetGateway().GetInterface())
	add("sync", fmt.Sprint(a.GetSync().GetInterface(), a.GetSync().GetSyncId()), fmt.Sprint(b.GetSync().GetInterface(), b.GetSync().GetSyncId()))
	addrs := func(g *lvsctlv1.DirectorGroup) []string {
		var s []string
		for _, d := range g.GetDirectors() {
			if d.GetAddress() != "" {
				s = append(s, d.GetName()+"="+d.GetAddress())
			}
		}
		return s
	}
	add("director addresses", addrs(a), addrs(b))
	// Failover fields as written: 0 is the default, which follows package failover.
	ms := func(v uint32) string {
		if v == 0 {
			return "default"
		}
		return (time.Duration(v) * time.Millisecond).String()
	}
	port := func(v uint32) string {
		if v == 0 {
			return "default"
		}
		return fmt.Sprint(v)
	}
	fa, fb := a.GetFailover(), b.GetFailover()
	add("failover.heartbeatInterval", ms(fa.GetHeartbeatIntervalMs()), ms(fb.GetHeartbeatIntervalMs()))
	add("failover.deadAfter", ms(fa.GetDeadAfterMs()), ms(fb.GetDeadAfterMs()))
	add("failover.fenceTime", ms(fa.GetFenceMs()), ms(fb.GetFenceMs()))
	add("failover.preempt", fa.GetPreempt(), fb.GetPreempt())
	add("failover.port", port(fa.GetPort()), port(fb.GetPort()))
	return out
}

// validate checks the rules between objects for the objects this write puts, against the
// cache's indexes of the stored ones (validate.Written). Only violations by written objects
// refuse the write: a store that already holds a violation (written by an older version,
// say) must still accept the changes that repair it. Written objects go in name order, groups
// first, so a conflict between two of them is reported against the same one every time.
func (ch *change) validate(ctx context.Context) error {
	if err := ch.checkGroupSizes(); err != nil {
		return err
	}
	var written []*lvsctlv1.Object
	for _, n := range slices.Sorted(maps.Keys(ch.groups)) {
		if g := ch.groups[n]; g != nil {
			written = append(written, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: g}})
		}
	}
	for _, n := range slices.Sorted(maps.Keys(ch.clusters)) {
		if c := ch.clusters[n]; c != nil {
			written = append(written, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}})
		}
	}
	return validate.Written(ctx, written, ch.cache)
}

// checkGroupSizes refuses a write that would leave a director group with more than
// limits.MaxClustersPerGroup clusters, counting from the cache's index what the write adds to
// each group and takes from it: its cost follows the written clusters.
func (ch *change) checkGroupSizes() error {
	delta := map[string]int{}
	for n, c := range ch.clusters {
		cur, existed := ch.cache.Cluster(n)
		if c != nil && (!existed || cur.GetDirectorGroup() != c.GetDirectorGroup()) {
			delta[c.GetDirectorGroup()]++
			if existed {
				delta[cur.GetDirectorGroup()]--
			}
		}
		if c == nil && existed {
			delta[cur.GetDirectorGroup()]--
		}
	}
	for _, g := range slices.Sorted(maps.Keys(delta)) {
		if n := ch.cache.GroupClusterCount(g) + delta[g]; delta[g] > 0 && n > limits.MaxClustersPerGroup {
			return fmt.Errorf("group %q: %w", g, &limits.Error{What: "clusters per director group after this apply", Got: int64(n), Max: limits.MaxClustersPerGroup})
		}
	}
	return nil
}

// plans lists, per group whose directors would change, what they would change, from the
// objects written alone: each written cluster's stored and new versions, each written
// group's. Every director of a group applies the same clusters, so a group's plan is listed
// once, whatever the number of its directors.
func (ch *change) plans() []*lvsctlv1.GroupPlan {
	type plan struct {
		clusters []string // cluster lines, in cluster name order
		removed  []string
		group    []string
	}
	plans := map[string]*plan{}
	get := func(g string) *plan {
		p, ok := plans[g]
		if !ok {
			p = &plan{}
			plans[g] = p
		}
		return p
	}
	// moved counts, per group, the clusters the write adds (+) or takes away (-).
	moved := map[string]int{}
	for _, n := range slices.Sorted(maps.Keys(ch.clusters)) {
		c := ch.clusters[n]
		cur, existed := ch.cache.Cluster(n)
		switch {
		case c == nil && !existed:
			// The deletion of a value that does not decode: no director ever had it.
		case c == nil:
			get(cur.GetDirectorGroup()).removed = append(get(cur.GetDirectorGroup()).removed, "remove cluster "+n)
			moved[cur.GetDirectorGroup()]--
		case !existed || cur.GetDirectorGroup() != c.GetDirectorGroup():
			if existed {
				get(cur.GetDirectorGroup()).removed = append(get(cur.GetDirectorGroup()).removed, "remove cluster "+n)
				moved[cur.GetDirectorGroup()]--
			}
			get(c.GetDirectorGroup()).clusters = append(get(c.GetDirectorGroup()).clusters, "add cluster "+n+": "+desired.ClusterSummary(c))
			moved[c.GetDirectorGroup()]++
		default:
			for _, line := range clusterChanges(cur, c) {
				get(c.GetDirectorGroup()).clusters = append(get(c.GetDirectorGroup()).clusters, fmt.Sprintf("cluster %s: %s", n, line))
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(ch.groups)) {
		cur, existed := ch.cache.Group(n)
		if !existed && ch.groups[n] == nil {
			continue // the deletion of a value that does not decode: no director had it
		}
		get(n).group = groupPlan(cur, ch.groups[n], ch.cache.GroupClusterCount(n)+moved[n])
	}
	var out []*lvsctlv1.GroupPlan
	for _, n := range slices.Sorted(maps.Keys(plans)) {
		p := plans[n]
		changes := slices.Concat(p.clusters, p.removed, p.group)
		if len(changes) == 0 {
			continue
		}
		cur, _ := ch.cache.Group(n)
		next, _ := ch.group(n)
		var dirs []string
		for _, g := range []*lvsctlv1.DirectorGroup{cur, next} {
			for _, d := range g.GetDirectors() {
				dirs = append(dirs, d.GetName())
			}
		}
		out = append(out, &lvsctlv1.GroupPlan{Group: n, Directors: slices.Compact(slices.Sorted(slices.Values(dirs))), Changes: changes})
	}
	return out
}

// groupPlan describes a group's own changes as its directors see them (nil: absent). A new
// group's directors are listed by the plan itself; a changed group names the directors that
// join (they apply the group's clusters) or leave (they remove them).
func groupPlan(from, to *lvsctlv1.DirectorGroup, clusters int) []string {
	var out []string
	if to == nil {
		out = append(out, "remove group "+from.GetName())
	}
	if from != nil && to != nil {
		before := map[string]uint32{}
		for _, d := range from.GetDirectors() {
			before[d.GetName()] = d.GetPriority()
		}
		for _, d := range to.GetDirectors() {
			p, ok := before[d.GetName()]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("add director %s (priority %d): applies the group's %d clusters", d.GetName(), d.GetPriority(), clusters))
			case p != d.GetPriority():
				out = append(out, fmt.Sprintf("director %s priority: %d -> %d", d.GetName(), p, d.GetPriority()))
			}
			delete(before, d.GetName())
		}
		for _, d := range slices.Sorted(maps.Keys(before)) {
			out = append(out, fmt.Sprintf("remove director %s: removes the group's clusters", d))
		}
	}
	if from.GetVipInterface() != to.GetVipInterface() {
		out = append(out, fmt.Sprintf("vip interface: %q -> %q", from.GetVipInterface(), to.GetVipInterface()))
	}
	if !proto.Equal(from.GetGateway(), to.GetGateway()) {
		out = append(out, fmt.Sprintf("gateway: %s -> %s", gatewayString(from.GetGateway()), gatewayString(to.GetGateway())))
	}
	return out
}

func gatewayString(g *lvsctlv1.Gateway) string {
	if g == nil {
		return "none"
	}
	return g.GetAddress() + " on " + g.GetInterface()
}

// current confirms that head, which the cache showed, is still etcd's head: ErrConflict
// with etcd's revision when the cache is behind, for the caller to wait for it and retry.
func (s *Server) current(ctx context.Context, head int64) (int64, error) {
	rev, h, err := s.store.Head(ctx)
	if err != nil {
		return 0, err
	}
	if h != head {
		return rev, fmt.Errorf("%w: the cache is behind etcd (head %d, etcd's %d)", store.ErrConflict, head, h)
	}
	return 0, nil
}

// commit writes the change, rewriting the generation key of every group whose directors'
// desired state changed and that still exists, with a history entry for every object it
// writes or deletes, and returns the new revision. On a conflict the revision is etcd's
// current one, for the cache to reach before the next attempt.
func (s *Server) commit(ctx context.Context, ch *change) (int64, error) {
	s.record(ctx, ch)
	for _, g := range slices.Sorted(maps.Keys(ch.touched)) {
		if g == "" {
			continue
		}
		if _, ok := ch.group(g); ok {
			ch.write.Touch = append(ch.write.Touch, store.GenerationKey(g))
		}
	}
	rev, err := s.store.Commit(ctx, ch.write)
	if err == nil {
		for {
			c := s.committed.Load()
			if c >= rev || s.committed.CompareAndSwap(c, rev) {
				break
			}
		}
	}
	return rev, err
}

// Get returns one object, from the cache once etcd confirms the cache shows its latest write.
func (s *Server) Get(ctx context.Context, req *lvsctlv1.GetRequest) (*lvsctlv1.GetResponse, error) {
	o, err := retry(ctx, s, "get", func() (*lvsctlv1.Object, int64, error) {
		_, head := s.cache.Revision()
		o, err := s.find(req.GetKind(), req.GetName())
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, 0, err
		}
		if rev, cerr := s.current(ctx, head); cerr != nil {
			return nil, rev, cerr
		}
		return o, 0, err
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &lvsctlv1.GetResponse{Object: o}, nil
}

func (s *Server) find(kind lvsctlv1.Kind, name string) (*lvsctlv1.Object, error) {
	switch kind {
	case lvsctlv1.Kind_KIND_CLUSTER:
		if c, ok := s.cache.Cluster(name); ok {
			return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: proto.CloneOf(c)}}, nil
		}
		if u, bad := s.cache.UndecodableAt(store.ClusterKey(name)); bad {
			return nil, undecodable("cluster", name, u)
		}
		return nil, fmt.Errorf("cluster %s: %w", limits.Quote(name), ErrNotFound)
	case lvsctlv1.Kind_KIND_GROUP:
		if g, ok := s.cache.Group(name); ok {
			return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: proto.CloneOf(g)}}, nil
		}
		if u, bad := s.cache.UndecodableAt(store.GroupKey(name)); bad {
			return nil, undecodable("group", name, u)
		}
		return nil, fmt.Errorf("group %s: %w", limits.Quote(name), ErrNotFound)
	}
	return nil, fmt.Errorf("%w: kind: %v is not a kind of object", validate.ErrInvalid, kind)
}

// undecodable is the error for an object whose stored value does not decode; it matches
// store.ErrUndecodable (codes.DataLoss) and says how to repair it.
func undecodable(kind, name string, u store.Undecodable) error {
	return fmt.Errorf("%s %s: the stored value %w; lvsctl apply replaces it, lvsctl delete %s %s removes it", kind, limits.Quote(name), u, kind, name)
}

// WarningHeader is the gRPC response header that carries List's warnings: one value per key
// whose value does not decode and was left out (kubectl's API warnings, over gRPC metadata,
// so that the response message stays the objects).
const WarningHeader = "lvsctl-warning"

// maxWarnings bounds the warnings of one response; the controller's log and the
// lvsctl_store_undecodable_values metric have them all.
const maxWarnings = 10

// warnUndecodable sends one warning per undecodable value (the first maxWarnings of them).
func warnUndecodable(ctx context.Context, bad map[string]store.Undecodable) {
	if len(bad) == 0 {
		return
	}
	keys := slices.Sorted(maps.Keys(bad))
	var vals []string
	for _, k := range keys[:min(len(keys), maxWarnings)] {
		u := bad[k]
		// Header values are printable ASCII; a key is any bytes etcd took.
		vals = append(vals, fmt.Sprintf("%s (revision %d) does not decode and is left out: %s",
			strconv.QuoteToASCII(limits.Prefix(u.Key)), u.ModRevision, strconv.QuoteToASCII(limits.Prefix(u.Err.Error()))))
	}
	if len(keys) > maxWarnings {
		vals = append(vals, fmt.Sprintf("and %d more values that do not decode", len(keys)-maxWarnings))
	}
	md := metadata.MD{}
	md.Append(WarningHeader, vals...)
	// Outside a gRPC call (a test calling the server directly) there is no header to set.
	_ = grpc.SetHeader(ctx, md)
}

// List returns every object of a kind, sorted by name. Values that do not decode are left
// out and reported in the WarningHeader.
func (s *Server) List(ctx context.Context, req *lvsctlv1.ListRequest) (*lvsctlv1.ListResponse, error) {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	warnUndecodable(ctx, snap.Undecodable)
	resp := &lvsctlv1.ListResponse{Revision: snap.Revision}
	switch req.GetKind() {
	case lvsctlv1.Kind_KIND_CLUSTER:
		for _, n := range slices.Sorted(maps.Keys(snap.Clusters)) {
			resp.Objects = append(resp.Objects, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: snap.Clusters[n]}})
		}
	case lvsctlv1.Kind_KIND_GROUP:
		for _, n := range slices.Sorted(maps.Keys(snap.Groups)) {
			resp.Objects = append(resp.Objects, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: snap.Groups[n]}})
		}
	default:
		return nil, toStatus(fmt.Errorf("%w: kind: %v is not a kind of object", validate.ErrInvalid, req.GetKind()))
	}
	return resp, nil
}

// Delete removes one object; deleting a group that clusters still use is refused.
func (s *Server) Delete(ctx context.Context, req *lvsctlv1.DeleteRequest) (*lvsctlv1.DeleteResponse, error) {
	resp, err := retry(ctx, s, "delete", func() (*lvsctlv1.DeleteResponse, int64, error) { return s.delete(ctx, req, recordAs{}) })
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

func (s *Server) delete(ctx context.Context, req *lvsctlv1.DeleteRequest, as recordAs) (_ *lvsctlv1.DeleteResponse, _ int64, err error) {
	ch := newChange(s.cache)
	judging := true // until the write is sent: etcd's errors are etcd's
	defer func() {
		if judging {
			err = ch.judged(err)
		}
	}()
	ch.as = as
	name := req.GetName()
	switch req.GetKind() {
	case lvsctlv1.Kind_KIND_CLUSTER:
		key := store.ClusterKey(name)
		cur, ok := ch.cache.Cluster(name)
		if _, bad := ch.cache.UndecodableAt(key); !ok && bad {
			if err := ch.deleteUndecodable("cluster", name, key, req.GetRevision()); err != nil {
				return nil, 0, err
			}
			ch.clusters[name] = nil
			break
		}
		if !ok {
			return nil, 0, fmt.Errorf("cluster %s: %w", limits.Quote(name), ErrNotFound)
		}
		if err := checkRevision("cluster", name, req.GetRevision(), cur, true); err != nil {
			return nil, 0, err
		}
		ch.write.Expect[key] = cur.GetRevision()
		ch.write.Deletes = append(ch.write.Deletes, key)
		ch.touched[cur.GetDirectorGroup()] = true
		ch.clusters[name] = nil
	case lvsctlv1.Kind_KIND_GROUP:
		cur, ok := ch.cache.Group(name)
		_, bad := ch.cache.UndecodableAt(store.GroupKey(name))
		if !ok && !bad {
			return nil, 0, fmt.Errorf("group %s: %w", limits.Quote(name), ErrNotFound)
		}
		if err := checkRevision("group", name, req.GetRevision(), cur, ok); ok && err != nil {
			return nil, 0, err
		}
		if users := ch.cache.GroupClusters(name); len(users) > 0 {
			return nil, 0, fmt.Errorf("group %q: %w by cluster %s: delete or move them first", name, ErrInUse, nameList(users))
		}
		key := store.GroupKey(name)
		if !ok {
			if err := ch.deleteUndecodable("group", name, key, req.GetRevision()); err != nil {
				return nil, 0, err
			}
			ch.write.Deletes = append(ch.write.Deletes, store.RolesKey(name), store.GenerationKey(name))
			ch.groups[name] = nil
			break
		}
		ch.write.Expect[key] = cur.GetRevision()
		ch.write.Deletes = append(ch.write.Deletes, key, store.RolesKey(name), store.GenerationKey(name))
		ch.groups[name] = nil
	default:
		return nil, 0, fmt.Errorf("%w: kind: %v is not a kind of object", validate.ErrInvalid, req.GetKind())
	}
	if err := ch.stale(); err != nil {
		return nil, 0, err
	}
	// A delete needs no cross-object validation: removing a cluster breaks no rule, and a
	// group in use was refused above.
	resp := &lvsctlv1.DeleteResponse{Revision: ch.rev, Plans: ch.plans()}
	judging = false
	if req.GetDryRun() {
		if rev, err := s.current(ctx, ch.head); err != nil {
			return nil, rev, err
		}
		return resp, 0, nil
	}
	rev, err := s.commit(ctx, ch)
	if err != nil {
		return nil, rev, err
	}
	resp.Revision = rev
	s.log.Info("deleted", "revision", rev, "kind", req.GetKind().String(), "name", name)
	return resp, 0, nil
}

// toStatus maps domain errors to gRPC codes in one place. The message is the error's text,
// which names the object, the field and the reason.
func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, validate.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrStale):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrNotInHistory):
		code = codes.NotFound
	case errors.Is(err, ErrInUse):
		code = codes.FailedPrecondition
	case errors.Is(err, store.ErrTooLarge):
		code = codes.InvalidArgument
	case errors.Is(err, ErrMarksExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, store.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, limits.ErrExceeded):
		code = codes.ResourceExhausted
	case errors.Is(err, store.ErrUndecodable):
		code = codes.DataLoss
	}
	return status.Error(code, err.Error())
}

// Package config serves ConfigService: operators' reads and writes of the desired state. Every
// write is validated as a whole (the authoritative validation) and committed in one etcd
// transaction conditional on the revisions it read.
package config

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/desired"
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
)

// maxAttempts bounds retries of a write that raced another writer. Each attempt reads the
// store afresh and checks again every revision the request named, so a retry never writes
// over a change the operator did not see.
const maxAttempts = 10

// Server implements ConfigService.
type Server struct {
	lvsctlv1.UnimplementedConfigServiceServer
	store *store.Store
	log   *slog.Logger
}

// NewServer returns a ConfigService over the store.
func NewServer(st *store.Store, log *slog.Logger) *Server {
	return &Server{store: st, log: log.With("service", "config")}
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { lvsctlv1.RegisterConfigServiceServer(g, s) }

// Apply creates or updates objects atomically.
func (s *Server) Apply(ctx context.Context, req *lvsctlv1.ApplyRequest) (*lvsctlv1.ApplyResponse, error) {
	if len(req.GetObjects()) == 0 {
		return nil, toStatus(fmt.Errorf("%w: objects: at least one object is required", validate.ErrInvalid))
	}
	for _, o := range req.GetObjects() {
		if err := validate.Object(o); err != nil {
			return nil, toStatus(err)
		}
	}
	for attempt := 0; ; attempt++ {
		resp, err := s.apply(ctx, req)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			err = fmt.Errorf("%w: the store kept changing while this apply was written; try again", ErrStale)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		return resp, nil
	}
}

// change accumulates one write.
type change struct {
	snap, next *store.Snapshot
	write      store.Write
	touched    map[string]bool // groups whose directors' desired state changes
}

func newChange(snap *store.Snapshot) *change {
	next := store.NewSnapshot()
	next.Revision = snap.Revision
	maps.Copy(next.Clusters, snap.Clusters)
	maps.Copy(next.Groups, snap.Groups)
	maps.Copy(next.Roles, snap.Roles)
	maps.Copy(next.RolesRevision, snap.RolesRevision)
	maps.Copy(next.Generations, snap.Generations)
	return &change{
		snap: snap, next: next, touched: map[string]bool{},
		write: store.Write{Head: snap.Head, Expect: map[string]int64{}, Puts: map[string]proto.Message{}},
	}
}

func (s *Server) apply(ctx context.Context, req *lvsctlv1.ApplyRequest) (*lvsctlv1.ApplyResponse, error) {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	ch := newChange(snap)
	resp := &lvsctlv1.ApplyResponse{}
	seen := map[string]bool{}
	var allocate []*lvsctlv1.Cluster
	for i, o := range req.GetObjects() {
		var res *lvsctlv1.ObjectResult
		switch k := o.GetKind().(type) {
		case *lvsctlv1.Object_Cluster:
			id := "cluster/" + k.Cluster.GetName()
			if seen[id] {
				return nil, fmt.Errorf("%w: cluster %q: objects[%d]: defined twice in one apply", validate.ErrInvalid, k.Cluster.GetName(), i)
			}
			seen[id] = true
			var c *lvsctlv1.Cluster
			res, c, err = ch.putCluster(k.Cluster)
			if c != nil && c.GetFwmark() == 0 {
				allocate = append(allocate, c)
			}
		case *lvsctlv1.Object_Group:
			id := "group/" + k.Group.GetName()
			if seen[id] {
				return nil, fmt.Errorf("%w: group %q: objects[%d]: defined twice in one apply", validate.ErrInvalid, k.Group.GetName(), i)
			}
			seen[id] = true
			res, err = ch.putGroup(k.Group)
		default:
			return nil, fmt.Errorf("%w: objects[%d]: kind is required", validate.ErrInvalid, i)
		}
		if err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, res)
	}
	for _, c := range allocate {
		c.Fwmark = validate.AllocateFWMark(slices.Collect(maps.Values(ch.next.Clusters)))
	}
	if err := ch.validate(); err != nil {
		return nil, err
	}
	resp.Plans = ch.plans()
	for _, o := range req.GetObjects() {
		resp.Objects = append(resp.Objects, ch.stored(o))
	}
	resp.Revision = snap.Revision
	if req.GetDryRun() || len(ch.write.Puts) == 0 {
		return resp, nil
	}
	rev, err := s.commit(ctx, ch)
	if err != nil {
		return nil, err
	}
	resp.Revision = rev
	for _, o := range resp.Objects {
		setRevision(o, rev, ch)
	}
	s.log.Info("applied", "revision", rev, "objects", len(req.GetObjects()), "writes", len(ch.write.Puts))
	return resp, nil
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
		return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: proto.CloneOf(ch.next.Clusters[k.Cluster.GetName()])}}
	case *lvsctlv1.Object_Group:
		return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: proto.CloneOf(ch.next.Groups[k.Group.GetName()])}}
	}
	return o
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
	cur, exists := ch.snap.Clusters[name]
	if err := checkRevision("cluster", name, in.GetRevision(), cur, exists); err != nil {
		return nil, nil, err
	}
	c := proto.CloneOf(in)
	c.Revision = 0
	if exists {
		// A mark, once allocated, stays: changing it would move live traffic to a new IPVS
		// service and drop its connections and persistence.
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
		ch.write.Expect[key] = 0
	default:
		c.Revision = cur.GetRevision()
		res.Changes = desired.ClusterChanges(cur, c)
		if len(res.Changes) == 0 {
			res.Action = lvsctlv1.Action_ACTION_UNCHANGED
			return res, nil, nil
		}
		res.Action = lvsctlv1.Action_ACTION_UPDATED
		ch.write.Expect[key] = cur.GetRevision()
		ch.touched[cur.GetDirectorGroup()] = true
	}
	ch.touched[c.GetDirectorGroup()] = true
	ch.write.Puts[key] = c
	ch.next.Clusters[name] = c
	return res, c, nil
}

func (ch *change) putGroup(in *lvsctlv1.DirectorGroup) (*lvsctlv1.ObjectResult, error) {
	name := in.GetName()
	cur, exists := ch.snap.Groups[name]
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
		ch.write.Expect[key] = cur.GetRevision()
	} else {
		res.Action = lvsctlv1.Action_ACTION_CREATED
		ch.write.Expect[key] = 0
	}
	ch.touched[name] = true
	ch.write.Puts[key] = g
	ch.next.Groups[name] = g
	// The first assignment, or one whose ACTIVE left the group, makes the highest-priority
	// director ACTIVE under a higher epoch. Failover (a later issue) moves it on health.
	// Epochs come from the store's revision, so they only grow, across groups and across a
	// group deleted and created again: an agent never sees an old epoch come back.
	roles, ok := ch.snap.Roles[name]
	if !ok || !member(g, roles.GetActive()) {
		nr := &lvsctlv1.GroupRoles{Group: name, Active: desired.InitialActive(g), Epoch: uint64(ch.snap.Revision) + 1}
		ch.write.Puts[store.RolesKey(name)] = nr
		ch.write.Expect[store.RolesKey(name)] = ch.snap.RolesRevision[name]
		ch.next.Roles[name] = nr
	}
	return res, nil
}

func member(g *lvsctlv1.DirectorGroup, director string) bool {
	for _, d := range g.GetDirectors() {
		if d.GetName() == director {
			return true
		}
	}
	return false
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
	return out
}

// validate checks the cross-object rules on the resulting state. Stored objects that this
// write leaves alone come first, so a conflict is reported against the object being written
// ("cluster "web": ... already used by cluster "wms""), and only violations of written
// objects refuse the write: a store that already holds a violation (written by an older
// version, say) must still accept the changes that repair it.
func (ch *change) validate() error {
	var kept, written []*lvsctlv1.Object
	isWritten := map[string]bool{}
	add := func(kind, name, key string, o *lvsctlv1.Object) {
		if _, ok := ch.write.Puts[key]; ok {
			written = append(written, o)
			isWritten[kind+"/"+name] = true
		} else {
			kept = append(kept, o)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(ch.next.Groups)) {
		add(validate.KindGroup, n, store.GroupKey(n), &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: ch.next.Groups[n]}})
	}
	for _, n := range slices.Sorted(maps.Keys(ch.next.Clusters)) {
		add(validate.KindCluster, n, store.ClusterKey(n), &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: ch.next.Clusters[n]}})
	}
	var errs []error
	for _, err := range flatten(validate.Set(append(kept, written...))) {
		var fe *validate.FieldError
		if errors.As(err, &fe) && !isWritten[fe.Kind+"/"+fe.Name] {
			continue
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// flatten lists the errors inside an errors.Join.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// plans lists, per director, what it would change.
func (ch *change) plans() []*lvsctlv1.DirectorPlan {
	names := slices.Compact(slices.Sorted(slices.Values(append(desired.Directors(ch.snap), desired.Directors(ch.next)...))))
	var out []*lvsctlv1.DirectorPlan
	for _, d := range names {
		p := desired.Plan(desired.For(ch.snap, d).State, desired.For(ch.next, d).State)
		if len(p) > 0 {
			out = append(out, &lvsctlv1.DirectorPlan{Director: d, Changes: p})
		}
	}
	return out
}

// commit writes the change, rewriting the generation key of every group whose directors'
// desired state changed (and deleting those of groups that are gone).
func (s *Server) commit(ctx context.Context, ch *change) (int64, error) {
	for _, g := range slices.Sorted(maps.Keys(ch.touched)) {
		if g == "" {
			continue
		}
		if _, ok := ch.next.Groups[g]; ok {
			ch.write.Touch = append(ch.write.Touch, store.GenerationKey(g))
		}
	}
	return s.store.Commit(ctx, ch.write)
}

// Get returns one object.
func (s *Server) Get(ctx context.Context, req *lvsctlv1.GetRequest) (*lvsctlv1.GetResponse, error) {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	o, err := find(snap, req.GetKind(), req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return &lvsctlv1.GetResponse{Object: o}, nil
}

func find(snap *store.Snapshot, kind lvsctlv1.Kind, name string) (*lvsctlv1.Object, error) {
	switch kind {
	case lvsctlv1.Kind_KIND_CLUSTER:
		if c, ok := snap.Clusters[name]; ok {
			return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}, nil
		}
		return nil, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	case lvsctlv1.Kind_KIND_GROUP:
		if g, ok := snap.Groups[name]; ok {
			return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: g}}, nil
		}
		return nil, fmt.Errorf("group %q: %w", name, ErrNotFound)
	}
	return nil, fmt.Errorf("%w: kind: %v is not a kind of object", validate.ErrInvalid, kind)
}

// List returns every object of a kind, sorted by name.
func (s *Server) List(ctx context.Context, req *lvsctlv1.ListRequest) (*lvsctlv1.ListResponse, error) {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
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

// Delete removes one object; deleting a group that clusters still use is refused by validation.
func (s *Server) Delete(ctx context.Context, req *lvsctlv1.DeleteRequest) (*lvsctlv1.DeleteResponse, error) {
	for attempt := 0; ; attempt++ {
		resp, err := s.delete(ctx, req)
		if errors.Is(err, store.ErrConflict) && attempt < maxAttempts {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			err = fmt.Errorf("%w: the store kept changing while this delete was written; try again", ErrStale)
		}
		if err != nil {
			return nil, toStatus(err)
		}
		return resp, nil
	}
}

func (s *Server) delete(ctx context.Context, req *lvsctlv1.DeleteRequest) (*lvsctlv1.DeleteResponse, error) {
	snap, err := s.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	o, err := find(snap, req.GetKind(), req.GetName())
	if err != nil {
		return nil, err
	}
	ch := newChange(snap)
	name := req.GetName()
	switch k := o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		if err := checkRevision("cluster", name, req.GetRevision(), k.Cluster, true); err != nil {
			return nil, err
		}
		key := store.ClusterKey(name)
		ch.write.Expect[key] = k.Cluster.GetRevision()
		ch.write.Deletes = append(ch.write.Deletes, key)
		ch.touched[k.Cluster.GetDirectorGroup()] = true
		delete(ch.next.Clusters, name)
	case *lvsctlv1.Object_Group:
		if err := checkRevision("group", name, req.GetRevision(), k.Group, true); err != nil {
			return nil, err
		}
		var users []string
		for _, c := range slices.Sorted(maps.Keys(snap.Clusters)) {
			if snap.Clusters[c].GetDirectorGroup() == name {
				users = append(users, fmt.Sprintf("%q", c))
			}
		}
		if len(users) > 0 {
			return nil, fmt.Errorf("group %q: %w by cluster %s: delete or move them first", name, ErrInUse, strings.Join(users, ", "))
		}
		key := store.GroupKey(name)
		ch.write.Expect[key] = k.Group.GetRevision()
		ch.write.Deletes = append(ch.write.Deletes, key, store.RolesKey(name), store.GenerationKey(name))
		delete(ch.next.Groups, name)
		delete(ch.next.Roles, name)
	}
	// A delete needs no cross-object validation: removing a cluster breaks no rule, and a
	// group in use was refused above.
	resp := &lvsctlv1.DeleteResponse{Revision: snap.Revision, Plans: ch.plans()}
	if req.GetDryRun() {
		return resp, nil
	}
	rev, err := s.commit(ctx, ch)
	if err != nil {
		return nil, err
	}
	resp.Revision = rev
	s.log.Info("deleted", "revision", rev, "kind", req.GetKind().String(), "name", name)
	return resp, nil
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
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrInUse):
		code = codes.FailedPrecondition
	case errors.Is(err, store.ErrTooLarge):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, store.ErrUnavailable):
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

package commands_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// testServer is a small in-memory controller: enough of ConfigService and StatusService for
// lvsctl's commands, with the real validation, revisions and fwmark allocation.
type testServer struct {
	lvsctlv1.UnimplementedConfigServiceServer

	mu        sync.Mutex
	revision  int64
	objects   map[string]*lvsctlv1.Object // by "kind/name"
	directors []*lvsctlv1.DirectorStatus
	applies   int // Apply calls, dry runs included
	// watch feeds the Watch stream being served.
	watch chan watchEvent
}

func key(o *lvsctlv1.Object) string {
	kind, name := validate.KindName(o)
	return kind + "/" + name
}

func kindOf(o *lvsctlv1.Object) lvsctlv1.Kind {
	if o.GetCluster() != nil {
		return lvsctlv1.Kind_KIND_CLUSTER
	}
	return lvsctlv1.Kind_KIND_GROUP
}

func kindKey(k lvsctlv1.Kind, name string) string {
	if k == lvsctlv1.Kind_KIND_CLUSTER {
		return validate.KindCluster + "/" + name
	}
	return validate.KindGroup + "/" + name
}

func revisionOf(o *lvsctlv1.Object) int64 {
	if c := o.GetCluster(); c != nil {
		return c.GetRevision()
	}
	return o.GetGroup().GetRevision()
}

func setRevision(o *lvsctlv1.Object, r int64) {
	if c := o.GetCluster(); c != nil {
		c.Revision = r
	} else {
		o.GetGroup().Revision = r
	}
}

// lines prints an object as manifest lines, for a crude but honest per-field diff.
func lines(o *lvsctlv1.Object) []string {
	if o == nil {
		return nil
	}
	b, err := manifest.Marshal([]*lvsctlv1.Object{o}, manifest.YAML)
	if err != nil {
		return []string{"cannot print: " + err.Error()} // shows up in the diff the test compares
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (s *testServer) Apply(_ context.Context, req *lvsctlv1.ApplyRequest) (*lvsctlv1.ApplyResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applies++
	next := map[string]*lvsctlv1.Object{}
	for k, o := range s.objects {
		next[k] = o
	}
	resp := &lvsctlv1.ApplyResponse{}
	var changed []*lvsctlv1.Object
	var errs []error
	for _, in := range req.GetObjects() {
		errs = append(errs, validate.Object(in))
		o := proto.Clone(in).(*lvsctlv1.Object)
		old := s.objects[key(o)]
		if r := revisionOf(o); r != 0 && r != revisionOf(old) {
			return nil, status.Errorf(codes.FailedPrecondition, "%s: revision %d is stale (stored %d)", key(o), r, revisionOf(old))
		}
		setRevision(o, revisionOf(old))
		if c := o.GetCluster(); c != nil && c.GetFwmark() == 0 && old != nil {
			c.Fwmark = old.GetCluster().GetFwmark()
		}
		res := &lvsctlv1.ObjectResult{Kind: kindOf(o), Name: strings.SplitN(key(o), "/", 2)[1]}
		switch {
		case old == nil:
			res.Action = lvsctlv1.Action_ACTION_CREATED
		case proto.Equal(old, o):
			res.Action = lvsctlv1.Action_ACTION_UNCHANGED
		default:
			res.Action = lvsctlv1.Action_ACTION_UPDATED
		}
		if res.Action != lvsctlv1.Action_ACTION_UNCHANGED {
			oldLines, newLines := lines(old), lines(o)
			for _, l := range oldLines {
				if !slices.Contains(newLines, l) {
					res.Changes = append(res.Changes, "- "+l)
				}
			}
			for _, l := range newLines {
				if !slices.Contains(oldLines, l) {
					res.Changes = append(res.Changes, "+ "+l)
				}
			}
			changed = append(changed, o)
		}
		next[key(o)] = o
		resp.Results = append(resp.Results, res)
	}
	var all []*lvsctlv1.Object
	for _, o := range next {
		all = append(all, o)
	}
	slices.SortFunc(all, func(a, b *lvsctlv1.Object) int { return strings.Compare(key(a), key(b)) })
	if err := errors.Join(append(errs, validate.Set(all))...); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetDryRun() {
		for _, o := range changed {
			if c := o.GetCluster(); c != nil {
				for _, d := range next[kindKey(lvsctlv1.Kind_KIND_GROUP, c.GetDirectorGroup())].GetGroup().GetDirectors() {
					resp.Plans = append(resp.Plans, &lvsctlv1.DirectorPlan{Director: d.GetName(), Changes: []string{"reconcile cluster " + c.GetName()}})
				}
			}
		}
		resp.Revision = s.revision
		return resp, nil
	}
	if len(changed) > 0 {
		s.revision++
	}
	var clusters []*lvsctlv1.Cluster
	for _, o := range next {
		clusters = append(clusters, o.GetCluster())
	}
	for _, o := range changed {
		setRevision(o, s.revision)
		if c := o.GetCluster(); c != nil && c.GetFwmark() == 0 {
			c.Fwmark = validate.AllocateFWMark(clusters)
		}
	}
	s.objects = next
	for _, in := range req.GetObjects() {
		resp.Objects = append(resp.Objects, proto.Clone(s.objects[key(in)]).(*lvsctlv1.Object))
	}
	resp.Revision = s.revision
	return resp, nil
}

func (s *testServer) Get(_ context.Context, req *lvsctlv1.GetRequest) (*lvsctlv1.GetResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[kindKey(req.GetKind(), req.GetName())]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s %q not found", strings.Split(kindKey(req.GetKind(), ""), "/")[0], req.GetName())
	}
	return &lvsctlv1.GetResponse{Object: proto.Clone(o).(*lvsctlv1.Object)}, nil
}

func (s *testServer) List(_ context.Context, req *lvsctlv1.ListRequest) (*lvsctlv1.ListResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &lvsctlv1.ListResponse{Revision: s.revision}
	// Map order: lvsctl must sort for its output to be stable.
	for _, o := range s.objects {
		if kindOf(o) == req.GetKind() {
			resp.Objects = append(resp.Objects, proto.Clone(o).(*lvsctlv1.Object))
		}
	}
	return resp, nil
}

func (s *testServer) Delete(_ context.Context, req *lvsctlv1.DeleteRequest) (*lvsctlv1.DeleteResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := kindKey(req.GetKind(), req.GetName())
	o, ok := s.objects[k]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "%s %q not found", strings.Split(k, "/")[0], req.GetName())
	}
	if r := req.GetRevision(); r != 0 && r != revisionOf(o) {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: revision %d is stale (stored %d)", k, r, revisionOf(o))
	}
	delete(s.objects, k)
	s.revision++
	return &lvsctlv1.DeleteResponse{Revision: s.revision}, nil
}

// forCluster copies a director's status keeping only one cluster's stats, as the controller
// does for a request with cluster set.
func forCluster(d *lvsctlv1.DirectorStatus, cluster string) *lvsctlv1.DirectorStatus {
	d = proto.Clone(d).(*lvsctlv1.DirectorStatus)
	if cluster != "" {
		d.Clusters = slices.DeleteFunc(d.Clusters, func(c *lvsctlv1.ClusterStats) bool { return c.GetCluster() != cluster })
	}
	return d
}

func (s *testServer) StatusList(_ context.Context, req *lvsctlv1.StatusServiceListRequest) (*lvsctlv1.StatusServiceListResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &lvsctlv1.StatusServiceListResponse{}
	for i := len(s.directors) - 1; i >= 0; i-- { // reversed: lvsctl must sort
		resp.Directors = append(resp.Directors, forCluster(s.directors[i], req.GetCluster()))
	}
	// The controller's own sum, so that lvsctl's totals under watch are checked against it.
	resp.Clusters = fleet.Aggregate(resp.Directors)
	return resp, nil
}

// watchEvent is what the test makes Watch do next: send a director's status, or end the
// stream with err (nil err and nil director: end it cleanly).
type watchEvent struct {
	director *lvsctlv1.DirectorStatus
	err      error
}

// push hands an event to the Watch stream being served, waiting (bounded) for one.
func (s *testServer) push(t *testing.T, ev watchEvent) {
	t.Helper()
	select {
	case s.watch <- ev:
	case <-time.After(10 * time.Second):
		t.Fatal("no Watch stream took the event within 10s")
	}
}

// statusServer adapts StatusList to StatusService.List (the two services share the name List).
type statusServer struct {
	lvsctlv1.UnimplementedStatusServiceServer
	s *testServer
}

func (st statusServer) List(ctx context.Context, req *lvsctlv1.StatusServiceListRequest) (*lvsctlv1.StatusServiceListResponse, error) {
	return st.s.StatusList(ctx, req)
}

// Watch sends every director, as the controller does, then what the test pushes.
func (st statusServer) Watch(req *lvsctlv1.StatusServiceWatchRequest, stream grpc.ServerStreamingServer[lvsctlv1.StatusServiceWatchResponse]) error {
	st.s.mu.Lock()
	var first []*lvsctlv1.DirectorStatus
	for _, d := range st.s.directors {
		first = append(first, forCluster(d, req.GetCluster()))
	}
	st.s.mu.Unlock()
	for _, d := range first {
		if err := stream.Send(&lvsctlv1.StatusServiceWatchResponse{Director: d}); err != nil {
			return err
		}
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-st.s.watch:
			if ev.director == nil {
				return ev.err
			}
			if err := stream.Send(&lvsctlv1.StatusServiceWatchResponse{Director: forCluster(ev.director, req.GetCluster())}); err != nil {
				return err
			}
		}
	}
}

// start serves a testServer on 127.0.0.1:0 and returns it with its address.
func start(t *testing.T) (*testServer, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &testServer{objects: map[string]*lvsctlv1.Object{}, watch: make(chan watchEvent)}
	g := grpc.NewServer()
	lvsctlv1.RegisterConfigServiceServer(g, srv)
	lvsctlv1.RegisterStatusServiceServer(g, statusServer{s: srv})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return srv, lis.Addr().String()
}

func (s *testServer) snapshot() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k, o := range s.objects {
		out = append(out, fmt.Sprintf("%s %v", k, o))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

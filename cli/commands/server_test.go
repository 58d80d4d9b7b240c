package commands_test

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// testController is the controller's real API for lvsctl to talk to: the real ConfigService
// over a real embedded etcd, and the real StatusService over a fleet registry that the test
// fills in the way the controller's agent sessions would.
type testController struct {
	store *store.Store
	fleet *fleet.Fleet
	// applies counts ConfigService.Apply calls that reached the server, dry runs included.
	applies atomic.Int64
	// endWatch ends the Watch stream being served: with the error, or cleanly when nil.
	endWatch chan error
	// watchSent is closed when a Watch stream has sent its first message, so the watcher is
	// registered with the fleet and sees every change from then on.
	watchSent chan struct{}
	// watchReals is the most real servers that one director's status carried in any Watch
	// message sent: what the controller sent, not what lvsctl showed.
	watchReals atomic.Int64
}

// start serves a testController on 127.0.0.1:0 and returns it with its address. Each test
// gets its own etcd (about half a second), so tests cannot see each other's objects or move
// each other's revisions.
func start(t *testing.T) (*testController, string) {
	t.Helper()
	c := &testController{store: storetest.Start(t), fleet: fleet.New(),
		endWatch: make(chan error), watchSent: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Counting at the gRPC edge, not inside a service, keeps the services the real ones.
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if info.FullMethod == lvsctlv1.ConfigService_Apply_FullMethodName {
			c.applies.Add(1)
		}
		return handler(ctx, req)
	}
	g := grpc.NewServer(grpc.UnaryInterceptor(count))
	config.NewServer(c.store, storetest.Cache(t, c.store), slog.New(slog.DiscardHandler)).Register(g)
	lvsctlv1.RegisterStatusServiceServer(g, statusService{Server: fleet.NewServer(c.fleet), end: c.endWatch, sent: c.watchSent, once: &sync.Once{}, reals: &c.watchReals})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return c, lis.Addr().String()
}

// revision is the store's current revision: it moves with every write, and only then.
func (c *testController) revision(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := c.store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return snap.Revision
}

// setDirector makes the fleet hold d: its stats as its agent reports them in full, then the
// rest of its status as the controller's configuration and agent session set it.
func (c *testController) setDirector(d *lvsctlv1.DirectorStatus) {
	c.fleet.Report(d.GetDirector(), &lvsctlv1.StatusReport{Full: true, Changed: d.GetClusters()})
	c.fleet.Update(d.GetDirector(), func(s *lvsctlv1.DirectorStatus) {
		proto.Reset(s)
		proto.Merge(s, d)
		s.Clusters = nil // the registry keeps stats apart, as Report left them
	})
}

// setFleet makes the fleet hold these directors.
func (c *testController) setFleet(ds []*lvsctlv1.DirectorStatus) {
	for _, d := range ds {
		c.setDirector(d)
	}
}

// end ends the Watch stream being served, waiting (bounded) for one.
func (c *testController) end(t *testing.T, err error) {
	t.Helper()
	select {
	case c.endWatch <- err:
	case <-time.After(10 * time.Second):
		t.Fatal("no Watch stream was served within 10s")
	}
}

// watching waits (bounded) until a Watch stream has sent its first message.
//
// lvsctl lists the fleet, then starts Watch. A director forgotten between the two never
// reaches it: Watch sends the directors present when it starts, and marks neither the end
// of that first burst nor the directors missing since List. Tests that forget a director
// wait for this first.
func (c *testController) watching(t *testing.T) {
	t.Helper()
	select {
	case <-c.watchSent:
	case <-time.After(10 * time.Second):
		t.Fatal("no Watch stream sent anything within 10s")
	}
}

// statusService is the real StatusService, except that the test can end a Watch stream,
// which the real registry only does when the controller stops.
type statusService struct {
	*fleet.Server
	end <-chan error
	// sent is closed, once, after the first message of any Watch stream.
	sent chan struct{}
	once *sync.Once
	// reals records the most reals of one director sent.
	reals *atomic.Int64
}

// watchStream is a Watch stream with its context replaced, so that the real Watch can be
// stopped without ending the RPC.
type watchStream struct {
	grpc.ServerStreamingServer[lvsctlv1.StatusServiceWatchResponse]
	ctx  context.Context
	sent func(*lvsctlv1.StatusServiceWatchResponse)
}

func (s watchStream) Context() context.Context { return s.ctx }

func (s watchStream) Send(m *lvsctlv1.StatusServiceWatchResponse) error {
	err := s.ServerStreamingServer.Send(m)
	if err == nil {
		s.sent(m)
	}
	return err
}

func (s statusService) recordSent(m *lvsctlv1.StatusServiceWatchResponse) {
	for _, d := range append([]*lvsctlv1.DirectorStatus{m.GetDirector()}, m.GetInitial().GetDirectors()...) {
		n := int64(0)
		for _, c := range d.GetClusters() {
			n += int64(len(c.GetReals()))
		}
		for old := s.reals.Load(); n > old && !s.reals.CompareAndSwap(old, n); old = s.reals.Load() {
		}
	}
	s.once.Do(func() { close(s.sent) })
}

func (s statusService) Watch(req *lvsctlv1.StatusServiceWatchRequest, stream grpc.ServerStreamingServer[lvsctlv1.StatusServiceWatchResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.Server.Watch(req, watchStream{stream, ctx, s.recordSent})
	}()
	select {
	case err := <-done:
		return err
	case err := <-s.end:
		cancel()
		<-done // the real Watch no longer sends once this returns
		return err
	}
}

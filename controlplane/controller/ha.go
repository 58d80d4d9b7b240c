package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/fanout"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/ha"
	"github.com/lvsctl/lvsctl/controlplane/roles"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// How several controllers share the work (docs/design.md, section 5b): every controller
// serves lvsctl's configuration RPCs from its own cache and writes to etcd itself; the
// leader alone runs the role logic and the fan-out to agents (a term: a roles.Manager
// fenced by the election key, and a fanout.Hub). A controller that does not lead relays
// what needs the leader to it, unchanged: each agent stream (so the leader hears every
// heartbeat before it is answered, as with one controller, and the failover timings hold
// with one more hop), the status RPCs (so status is the leader's, whoever answered) and
// Failover.

// term is what runs while this controller leads.
type term struct {
	ctx   context.Context
	hub   *fanout.Hub
	roles *roles.Manager
}

// lead runs one term: until ctx ends (the lead lost, or the controller stopping).
func (c *Controller) lead(ctx context.Context, fence store.LeaderFence) {
	t := &term{ctx: ctx}
	// Stored: a takeover's new ACTIVE hears its assignment from the hub the moment it is
	// stored, one watch hop before the delta (t.hub is set before anything is stored).
	t.roles = roles.NewManager(roles.ManagerConfig{Store: c.st, Logger: c.log, Fence: &fence,
		Stored: func(r *lvsctlv1.GroupRoles) { t.hub.RolesStored(r) }})
	t.hub = fanout.New(fanout.Config{Store: c.st, Fleet: c.fleet, Roles: t.roles, Logger: c.log})
	var wg sync.WaitGroup
	for name, run := range map[string]func(context.Context) error{"fan-out": t.hub.Run, "roles": t.roles.Run} {
		wg.Go(func() {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("leader's "+name+" stopped", "error", err)
			}
		})
	}
	c.term.Store(t)
	c.leading.Store(true)
	<-ctx.Done()
	c.leading.Store(false)
	c.term.CompareAndSwap(t, nil)
	wg.Wait()
}

// Leading reports whether this controller leads now.
func (c *Controller) Leading() bool { return c.leading.Load() }

// Advertise is the address other controllers reach this one at.
func (c *Controller) Advertise() string { return c.advertise }

// errNoLeader: nobody leads yet (an election under way), or this controller is between
// terms; the caller retries.
var errNoLeader = errors.New("no controller leads at the moment (an election is under way)")

// leaderConn is a client connection to the leader, for relaying.
func (c *Controller) leaderConn(ctx context.Context) (*grpc.ClientConn, string, error) {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addr, err := ha.Leader(lctx, c.client)
	if err != nil {
		return nil, "", err
	}
	if addr == "" || addr == c.advertise {
		// Our own key while our term is not up yet (or just ended): never relay to
		// ourselves.
		return nil, addr, errNoLeader
	}
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	if conn := c.conns[addr]; conn != nil {
		return conn, addr, nil
	}
	var creds credentials.TransportCredentials = insecure.NewCredentials()
	if c.tls != nil {
		host, _, _ := net.SplitHostPort(addr)
		creds = c.tls.ClientCredentials(host)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(fanout.MaxMessageBytes), grpc.MaxCallSendMsgSize(fanout.MaxMessageBytes)))
	if err != nil {
		return nil, addr, fmt.Errorf("leader %s: %w", addr, err)
	}
	c.conns[addr] = conn
	return conn, addr, nil
}

// leaderWait is how long a call waits for a leader (an election under way, or this
// controller's own term starting) before it is refused Unavailable.
const leaderWait = 5 * time.Second

// route is where a call that needs the leader goes: this controller's term, or a
// connection to the leader.
func (c *Controller) route(ctx context.Context) (*term, *grpc.ClientConn, string, error) {
	deadline := time.Now().Add(leaderWait)
	for {
		if t := c.term.Load(); t != nil {
			return t, nil, "", nil
		}
		conn, addr, err := c.leaderConn(ctx)
		if err == nil || !errors.Is(err, errNoLeader) || time.Now().After(deadline) {
			return nil, conn, addr, err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, nil, "", ctx.Err()
		}
	}
}

func unavailable(what string, err error) error {
	return status.Errorf(codes.Unavailable, "%s: %v; retry", what, err)
}

// agentRouter serves the agent stream: the term's hub when leading, else a relay.
type agentRouter struct {
	lvsctlv1.UnimplementedAgentServiceServer
	c *Controller
}

type agentStream = grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]

// ctxStream is a stream whose context also ends with the term.
type ctxStream struct {
	agentStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

func (r *agentRouter) Connect(stream agentStream) error {
	t, conn, addr, err := r.c.route(stream.Context())
	if err != nil {
		return unavailable("agent stream", err)
	}
	if t != nil {
		ctx, cancel := context.WithCancel(stream.Context())
		defer cancel()
		// The stream ends with the term: the agent reconnects, and is relayed to the new
		// leader, resuming from its applied revision.
		stop := context.AfterFunc(t.ctx, cancel)
		defer stop()
		err := t.hub.Connect(&ctxStream{agentStream: stream, ctx: ctx})
		if t.ctx.Err() != nil && stream.Context().Err() == nil {
			return status.Error(codes.Unavailable, "this controller no longer leads: reconnect")
		}
		return err
	}
	return r.c.relayAgent(stream, conn, addr)
}

// relayAgent pipes an agent's stream to the leader and back, message by message.
func (c *Controller) relayAgent(stream agentStream, conn *grpc.ClientConn, addr string) error {
	ctx, cancel := context.WithCancel(forwardIdentity(stream.Context()))
	defer cancel()
	up, err := lvsctlv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		return unavailable("relaying to the leader "+addr, err)
	}
	errc := make(chan error, 2)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				_ = up.CloseSend()
				errc <- err
				return
			}
			if err := up.Send(m); err != nil {
				errc <- err
				return
			}
		}
	}()
	go func() {
		for {
			m, err := up.Recv()
			if err != nil {
				errc <- err
				return
			}
			if err := stream.Send(m); err != nil {
				errc <- err
				return
			}
		}
	}()
	err = <-errc
	if errors.Is(err, io.EOF) {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return unavailable("relay to the leader "+addr, err)
}

// statusRouter serves StatusService: the fleet when leading, else the leader's answer.
type statusRouter struct {
	lvsctlv1.UnimplementedStatusServiceServer
	c     *Controller
	local *fleet.Server
}

func (r *statusRouter) List(ctx context.Context, req *lvsctlv1.StatusServiceListRequest) (*lvsctlv1.StatusServiceListResponse, error) {
	t, conn, _, err := r.c.route(ctx)
	if err != nil {
		return nil, unavailable("status", err)
	}
	if t != nil {
		return r.local.List(ctx, req)
	}
	return lvsctlv1.NewStatusServiceClient(conn).List(forwardIdentity(ctx), req)
}

func (r *statusRouter) Watch(req *lvsctlv1.StatusServiceWatchRequest, stream grpc.ServerStreamingServer[lvsctlv1.StatusServiceWatchResponse]) error {
	t, conn, _, err := r.c.route(stream.Context())
	if err != nil {
		return unavailable("status", err)
	}
	if t != nil {
		return r.local.Watch(req, stream)
	}
	up, err := lvsctlv1.NewStatusServiceClient(conn).Watch(forwardIdentity(stream.Context()), req)
	if err != nil {
		return err
	}
	for {
		m, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}

func (r *statusRouter) ListControllers(ctx context.Context, _ *lvsctlv1.ListControllersRequest) (*lvsctlv1.ListControllersResponse, error) {
	ms, err := ha.List(ctx, r.c.client)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &lvsctlv1.ListControllersResponse{}
	for _, m := range ms {
		resp.Controllers = append(resp.Controllers, &lvsctlv1.ControllerInfo{Address: m.Address, Leader: m.Leader, Started: timestamppb.New(m.Started)})
	}
	return resp, nil
}

// configRouter is the ConfigService with Failover relayed to the leader when this
// controller does not lead (the leader's role logic decides, and records the history).
type configRouter struct {
	*config.FailoverServer
	c *Controller
}

func (r *configRouter) Failover(ctx context.Context, req *lvsctlv1.FailoverRequest) (*lvsctlv1.FailoverResponse, error) {
	if req.GetGroup() == "" {
		return r.FailoverServer.Failover(ctx, req)
	}
	t, conn, _, err := r.c.route(ctx)
	if err != nil {
		return nil, unavailable("failover", err)
	}
	if t != nil {
		return r.FailoverServer.Failover(ctx, req)
	}
	return lvsctlv1.NewConfigServiceClient(conn).Failover(forwardIdentity(ctx), req)
}

// termFailover is the term's roles manager, for the leader's own FailoverServer.
type termFailover struct{ c *Controller }

func (f termFailover) Failover(ctx context.Context, group, to string) (*lvsctlv1.FailoverResponse, error) {
	t := f.c.term.Load()
	if t == nil {
		return nil, fmt.Errorf("failover of group %s: %w: %w", group, roles.ErrNotReady, errNoLeader)
	}
	return t.roles.Failover(ctx, group, to)
}

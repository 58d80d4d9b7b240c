package config

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/roles"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Failoverer moves a group's ACTIVE role: the controller's roles.Manager.
type Failoverer interface {
	Failover(ctx context.Context, group, to string) (*lvsctlv1.FailoverResponse, error)
}

// WithFailover is the ConfigService with Failover served by f; the other methods are s's.
// Roles are not the operator write path's: the request goes to the role logic, which alone
// decides and writes assignments.
func (s *Server) WithFailover(f Failoverer) *FailoverServer {
	return &FailoverServer{Server: s, roles: f}
}

// FailoverServer is a ConfigService whose Failover is served.
type FailoverServer struct {
	*Server
	roles Failoverer
}

// Register adds the service to a gRPC server.
func (s *FailoverServer) Register(g *grpc.Server) { lvsctlv1.RegisterConfigServiceServer(g, s) }

// Failover runs a planned switchover: it returns once the new ACTIVE's assignment is stored
// (after the old ACTIVE released), or with why it could not be.
func (s *FailoverServer) Failover(ctx context.Context, req *lvsctlv1.FailoverRequest) (*lvsctlv1.FailoverResponse, error) {
	if req.GetGroup() == "" {
		return nil, status.Error(codes.InvalidArgument, "group: required: the director group whose ACTIVE role moves")
	}
	s.log.Info("failover requested", "group", req.GetGroup(), "to", req.GetTo())
	resp, err := s.roles.Failover(ctx, req.GetGroup(), req.GetTo())
	if err != nil {
		s.log.Warn("failover failed", "group", req.GetGroup(), "to", req.GetTo(), "error", err)
		return nil, failoverStatus(req, err)
	}
	s.log.Info("failover done", "group", req.GetGroup(), "active", resp.GetRoles().GetActive(), "epoch", resp.GetRoles().GetEpoch(),
		"previous", resp.GetPrevious(), "released_after_ms", resp.GetReleasedAfterMs())
	return resp, nil
}

// failoverStatus maps the role logic's errors to gRPC codes in one place, with a message
// naming the field the error is about.
func failoverStatus(req *lvsctlv1.FailoverRequest, err error) error {
	field := ""
	code := codes.Internal
	switch {
	case errors.Is(err, roles.ErrUnknownGroup):
		code, field = codes.NotFound, "group"
	case errors.Is(err, roles.ErrUnknownDirector):
		code, field = codes.InvalidArgument, "to"
	case errors.Is(err, roles.ErrAlreadyActive):
		code, field = codes.FailedPrecondition, "to"
	case errors.Is(err, roles.ErrSingleDirector):
		code, field = codes.FailedPrecondition, "group"
	case errors.Is(err, roles.ErrNotConnected):
		code, field = codes.Unavailable, "to"
	case errors.Is(err, roles.ErrNoCandidate):
		code, field = codes.Unavailable, "group"
	case errors.Is(err, roles.ErrHandoverRunning), errors.Is(err, roles.ErrSuperseded):
		code, field = codes.Aborted, "group"
	case errors.Is(err, roles.ErrBusy), errors.Is(err, roles.ErrNotReady), errors.Is(err, store.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, store.ErrConflict):
		code = codes.Aborted
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	msg := err.Error()
	switch field {
	case "group":
		msg = fmt.Sprintf("group %q: %s", req.GetGroup(), msg)
	case "to":
		msg = fmt.Sprintf("to %q (group %q): %s", req.GetTo(), req.GetGroup(), msg)
	}
	return status.Error(code, msg)
}

package config

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	// The failover is done whether or not it is recorded: a caller that went away meanwhile
	// still gets its record, and a failure to write one is logged, not returned.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := s.recordFailover(rctx, req, resp); err != nil {
		s.log.Error("failover done but not recorded in the group's history", "group", req.GetGroup(), "error", err)
	}
	return resp, nil
}

// recordTimeout bounds the write of a failover's history entry.
const recordTimeout = 10 * time.Second

// recordFailover writes the group's history entry of a planned failover: who asked, the
// previous and new ACTIVE and the epoch, and the group as it is (a failover does not change
// it). The assignment itself is the roles manager's write (package roles decides and writes
// roles alone), so this is a transaction of its own, right after it, and its revision is the
// next one: a controller that stops in between leaves the failover unrecorded.
func (s *FailoverServer) recordFailover(ctx context.Context, req *lvsctlv1.FailoverRequest, resp *lvsctlv1.FailoverResponse) error {
	_, err := retry(ctx, s.Server, "failover record", func() (struct{}, int64, error) {
		ch := newChange(s.cache)
		name := req.GetGroup()
		cur, ok := ch.cache.Group(name)
		if !ok {
			return struct{}{}, 0, nil // deleted since: nothing left to record against
		}
		key := store.GroupKey(name)
		ch.write.Expect[key] = cur.GetRevision()
		ch.groups[name] = cur
		ch.changes[key] = []string{fmt.Sprintf("active: %s -> %s (epoch %d, old ACTIVE released after %s)",
			dashIfEmpty(resp.GetPrevious()), resp.GetRoles().GetActive(), resp.GetRoles().GetEpoch(),
			time.Duration(resp.GetReleasedAfterMs())*time.Millisecond)}
		ch.as.action = lvsctlv1.HistoryAction_HISTORY_ACTION_FAILOVER
		if err := ch.stale(); err != nil {
			return struct{}{}, 0, err
		}
		rev, err := s.commit(ctx, ch)
		return struct{}{}, rev, err
	})
	return err
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
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

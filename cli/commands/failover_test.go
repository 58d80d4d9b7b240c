package commands_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// failoverService is a ConfigService whose Failover answers what the test scripts and
// records what it was asked; its other methods are unimplemented, as lvsctl failover calls
// none of them.
type failoverService struct {
	lvsctlv1.UnimplementedConfigServiceServer
	mu       sync.Mutex
	requests []*lvsctlv1.FailoverRequest
	resp     *lvsctlv1.FailoverResponse
	err      error
}

func (s *failoverService) Failover(_ context.Context, req *lvsctlv1.FailoverRequest) (*lvsctlv1.FailoverResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, proto.Clone(req).(*lvsctlv1.FailoverRequest))
	return s.resp, s.err
}

func (s *failoverService) answer(resp *lvsctlv1.FailoverResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resp, s.err = resp, err
}

// last returns the last request served, nil when none was.
func (s *failoverService) last() *lvsctlv1.FailoverRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return nil
	}
	return s.requests[len(s.requests)-1]
}

func startFailover(t *testing.T) (*failoverService, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &failoverService{}
	g := grpc.NewServer()
	lvsctlv1.RegisterConfigServiceServer(g, s)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s, lis.Addr().String()
}

func TestFailover(t *testing.T) {
	srv, addr := startFailover(t)
	moved := &lvsctlv1.FailoverResponse{
		Roles:    &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 42, Reason: "failover", Previous: "dir-a"},
		Previous: "dir-a", ReleasedAfterMs: 180,
	}
	tests := []struct {
		name      string
		args      []string
		resp      *lvsctlv1.FailoverResponse
		err       error
		want      *lvsctlv1.FailoverRequest // nil: no request may reach the server
		code      int
		out, eout string
	}{
		{"to a director", []string{"failover", "edge-1", "--to", "dir-b"}, moved, nil,
			&lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}, 0,
			"edge-1: ACTIVE dir-a -> dir-b (epoch 42, dir-a released in 180ms)\n", ""},
		{"the controller chooses", []string{"failover", "edge-1"}, moved, nil,
			&lvsctlv1.FailoverRequest{Group: "edge-1"}, 0,
			"edge-1: ACTIVE dir-a -> dir-b (epoch 42, dir-a released in 180ms)\n", ""},
		{"no ACTIVE before", []string{"failover", "edge-1", "--to", "dir-b"},
			&lvsctlv1.FailoverResponse{Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 43, Reason: "failover"}}, nil,
			&lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}, 0, "edge-1: ACTIVE dir-b (epoch 43)\n", ""},
		{"json", []string{"failover", "edge-1", "--to", "dir-b", "-o", "json"}, moved, nil,
			&lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}, 0,
			`{
  "group": "edge-1",
  "active": "dir-b",
  "previous": "dir-a",
  "epoch": 42,
  "reason": "failover",
  "releasedAfterMs": 180
}
`, ""},
		{"unknown group", []string{"failover", "edge-9"}, nil, status.Error(codes.NotFound, `group "edge-9": no such director group`),
			&lvsctlv1.FailoverRequest{Group: "edge-9"}, 1, "", "error: group \"edge-9\": no such director group\n"},
		{"already active", []string{"failover", "edge-1", "--to", "dir-a"}, nil,
			status.Error(codes.FailedPrecondition, `to "dir-a" (group "edge-1"): already ACTIVE`),
			&lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-a"}, 1, "", "error: to \"dir-a\" (group \"edge-1\"): already ACTIVE\n"},
		// Unavailable may be the controller's answer or the connection's: either way the
		// message says which controller.
		{"no candidate", []string{"failover", "edge-1"}, nil,
			status.Error(codes.Unavailable, `group "edge-1": no connected STANDBY to take over`),
			&lvsctlv1.FailoverRequest{Group: "edge-1"}, 1, "", "error: controller " + addr + ": group \"edge-1\": no connected STANDBY to take over\n"},
		{"no group", []string{"failover"}, moved, nil, nil, 1, "", "error: accepts 1 arg(s), received 0\n"},
		{"bad output format", []string{"failover", "edge-1", "-o", "xml"}, moved, nil, nil, 1, "",
			"error: unknown output format \"xml\" (want table, yaml or json)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.answer(tt.resp, tt.err)
			before := srv.last()
			got := lvsctl(t, addr, "", tt.args...)
			expect(t, got, tt.code, tt.out, tt.eout)
			req := srv.last()
			if tt.want == nil {
				if req != before {
					t.Errorf("a request reached the controller: %v", req)
				}
				return
			}
			if req == before || !proto.Equal(req, tt.want) {
				t.Errorf("the controller was asked %v, want %v", req, tt.want)
			}
		})
	}
}

// TestFailoverControllerDown: a controller that cannot be reached is named.
func TestFailoverControllerDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	got := lvsctl(t, addr, "", "--timeout", "5s", "failover", "edge-1")
	if got.code != 1 || got.out != "" || !strings.HasPrefix(got.err, "error: controller "+addr+": ") {
		t.Errorf("got exit %d, stdout %q, stderr %q", got.code, got.out, got.err)
	}
}

package session_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/session"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// controller is a tiny AgentService: each stream's Hello and the messages after it go to
// received; behave decides what it sends back and when the stream ends.
type controller struct {
	lvsctlv1.UnimplementedAgentServiceServer
	received chan *lvsctlv1.ConnectRequest
	behave   func(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error
}

func (c *controller) Connect(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	c.received <- m
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if m.GetHeartbeat() == nil {
				c.received <- m
			}
		}
	}()
	return c.behave(stream)
}

// answer sends a heartbeat every period until the stream ends: a live controller.
func answer(period time.Duration) func(grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
	return func(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stream.Context().Done():
				return nil
			case <-t.C:
				if err := stream.Send(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{}}}); err != nil {
					return err
				}
			}
		}
	}
}

// silent never sends anything: a hung controller.
func silent(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
	<-stream.Context().Done()
	return nil
}

// serve runs c on addr ("127.0.0.1:0" for any port) until the test ends or stop is called.
func serve(t *testing.T, addr string, c *controller) (string, func()) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	lvsctlv1.RegisterAgentServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), srv.Stop
}

func newController(behave func(grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error) *controller {
	return &controller{received: make(chan *lvsctlv1.ConnectRequest, 100), behave: behave}
}

// run runs s with hello until the test ends.
func run(t *testing.T, s *session.Session, hello func() *lvsctlv1.Hello) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, hello, func(*lvsctlv1.ConnectResponse) {}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// next returns the next message the controller received, or fails the test after within.
func next(t *testing.T, c *controller, within time.Duration) *lvsctlv1.ConnectRequest {
	t.Helper()
	select {
	case m := <-c.received:
		return m
	case <-time.After(within):
		t.Fatalf("the controller received nothing within %s", within)
		return nil
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestHelloEachStream: every stream starts with what hello returns at that moment, and a
// message sent from inside hello (the agent acks as soon as a stream is up) is not refused:
// it follows the Hello.
func TestHelloEachStream(t *testing.T) {
	// The controller ends each stream right after the message that follows the Hello.
	c := newController(func(grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
		time.Sleep(20 * time.Millisecond)
		return errors.New("stream over")
	})
	addr, _ := serve(t, "127.0.0.1:0", c)
	s := session.New(session.Config{Target: addr, Insecure: true, Logger: testLogger(t), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	var n int64
	sendErrs := make(chan error, 10)
	run(t, s, func() *lvsctlv1.Hello {
		n++
		select {
		case sendErrs <- s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: &lvsctlv1.Ack{Revision: n}}}):
		default: // the test has what it checks
		}
		return &lvsctlv1.Hello{Director: "dir-a", LastAppliedRevision: n}
	})
	for want := int64(1); want <= 3; want++ {
		h := next(t, c, 5*time.Second)
		if !proto.Equal(h.GetHello(), &lvsctlv1.Hello{Director: "dir-a", LastAppliedRevision: want}) {
			t.Fatalf("stream %d began with %v, want the Hello of revision %d", want, h, want)
		}
		if err := <-sendErrs; err != nil {
			t.Errorf("stream %d: Send from hello: %v", want, err)
		}
		if ack := next(t, c, 5*time.Second); ack.GetAck().GetRevision() != want {
			t.Errorf("stream %d: after the Hello came %v, want the ack of revision %d", want, ack, want)
		}
	}
}

// TestSilentControllerRestartsStream: a controller that sends nothing for three of its
// heartbeat periods is taken for hung, and the session connects again; one that sends its
// heartbeats keeps its stream.
func TestSilentControllerRestartsStream(t *testing.T) {
	const heartbeat = 50 * time.Millisecond
	tests := []struct {
		name          string
		behave        func(grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error
		wantReconnect bool
	}{
		{"silent", silent, true},
		{"heartbeats", answer(heartbeat), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newController(tt.behave)
			addr, _ := serve(t, "127.0.0.1:0", c)
			s := session.New(session.Config{Target: addr, Insecure: true, Logger: testLogger(t),
				MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ControllerHeartbeat: heartbeat})
			run(t, s, func() *lvsctlv1.Hello { return &lvsctlv1.Hello{Director: "dir-a"} })
			next(t, c, 5*time.Second)
			select {
			case m := <-c.received:
				if !tt.wantReconnect {
					t.Errorf("a controller sending heartbeats got a new stream: %v", m)
				} else if m.GetHello() == nil {
					t.Errorf("got %v, want a new stream's Hello", m)
				}
			case <-time.After(20 * heartbeat):
				if tt.wantReconnect {
					t.Errorf("no new stream within %s of a silent controller", 20*heartbeat)
				}
			}
		})
	}
}

// TestReconnectAfterLongOutage: after a controller outage long enough for gRPC's own
// connection backoff (1 s growing to 120 s by default) to grow past MaxBackoff, the session
// still reconnects within about MaxBackoff of the controller coming back.
func TestReconnectAfterLongOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds of outage")
	}
	const (
		maxBackoff = 100 * time.Millisecond
		// gRPC's default backoff retries at about 1, 2.6, 5.2 and 9.3 s (+-20%) into an
		// outage: returning at 6.5 s finds its next try at least 0.9 s away.
		outage = 6500 * time.Millisecond
		within = 700 * time.Millisecond
	)
	c := newController(answer(time.Second))
	addr, stop := serve(t, "127.0.0.1:0", c)
	s := session.New(session.Config{Target: addr, Insecure: true, Logger: testLogger(t), MinBackoff: 10 * time.Millisecond, MaxBackoff: maxBackoff})
	run(t, s, func() *lvsctlv1.Hello { return &lvsctlv1.Hello{Director: "dir-a"} })
	next(t, c, 5*time.Second)

	stop()
	time.Sleep(outage)
	serve(t, addr, c)
	back := time.Now()
	next(t, c, 10*time.Second)
	if took := time.Since(back); took > within {
		t.Errorf("reconnected %s after the controller came back, want within %s", took.Round(time.Millisecond), within)
	}
}

// TestNilLogger: a session without a Logger runs, and logs nowhere.
func TestNilLogger(t *testing.T) {
	c := newController(silent)
	addr, stop := serve(t, "127.0.0.1:0", c)
	s := session.New(session.Config{Target: addr, Insecure: true, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	run(t, s, func() *lvsctlv1.Hello { return &lvsctlv1.Hello{Director: "dir-a"} })
	next(t, c, 5*time.Second)
	stop() // the lost stream is logged
	time.Sleep(100 * time.Millisecond)
}

// TestSlowHandlerIsNotSilence: time the agent takes to handle a message is not the
// controller's silence.
func TestSlowHandlerIsNotSilence(t *testing.T) {
	const heartbeat = 20 * time.Millisecond
	c := newController(answer(heartbeat))
	addr, _ := serve(t, "127.0.0.1:0", c)
	s := session.New(session.Config{Target: addr, Insecure: true, Logger: testLogger(t),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, ControllerHeartbeat: heartbeat})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	slow := true
	go func() {
		done <- s.Run(ctx, func() *lvsctlv1.Hello { return &lvsctlv1.Hello{Director: "dir-a"} }, func(*lvsctlv1.ConnectResponse) {
			if slow { // a reconcile that takes ten silences
				slow = false
				time.Sleep(30 * heartbeat)
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	next(t, c, 5*time.Second)
	select {
	case m := <-c.received:
		t.Errorf("a slow handler made the session reconnect: %v", m)
	case <-time.After(60 * heartbeat):
	}
}

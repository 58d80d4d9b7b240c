// Package session keeps an agent's stream to the controller up: it connects, says Hello,
// delivers what the controller sends in order, sends what the agent queues, and reconnects
// with exponential backoff and jitter when the stream breaks. It knows nothing of the data
// plane; a lost controller never touches it.
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/endpoints"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Config of a session.
type Config struct {
	// Target is the controller's HOST:PORT, or several comma-separated.
	Target string
	// Credentials are the stream's TLS: the director's certificate, and the CA that verifies
	// the controller's (pki.Reloader.ClientCredentials). Required unless Insecure.
	Credentials credentials.TransportCredentials
	// Insecure speaks plaintext gRPC (a controller on loopback only; package host refuses
	// any other).
	Insecure bool
	Logger   *slog.Logger
	// MinBackoff and MaxBackoff bound the wait between reconnects; each wait is jittered so
	// a fleet that lost its controller does not reconnect in lockstep.
	MinBackoff, MaxBackoff time.Duration
	// Heartbeat is how often the agent tells the controller it is alive.
	Heartbeat time.Duration
	// ControllerHeartbeat is how often the controller sends a heartbeat on an idle stream (its
	// own Heartbeat setting). A stream on which nothing arrives for three of these periods is
	// taken for hung and restarted: TCP keepalives do not see a controller that is stuck.
	ControllerHeartbeat time.Duration
}

// ErrNotConnected is returned by Send when no stream is up; the message is dropped, and the
// next connection starts with a Hello that carries what the controller needs.
var ErrNotConnected = errors.New("not connected to the controller")

// ErrQueueFull is returned by Send when the stream is up but too many messages wait to be
// sent; the message is dropped.
var ErrQueueFull = errors.New("controller stream: send queue full")

// ErrControllerSilent ends a stream on which the controller sent nothing, not even a
// heartbeat, for three of its heartbeat periods.
var ErrControllerSilent = errors.New("controller sent nothing")

// ErrNoCredentials is returned by Run when neither Credentials nor Insecure is set.
var ErrNoCredentials = errors.New("no TLS credentials for the controller stream (and not insecure)")

// Session is one agent's connection to the controller.
type Session struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	outbox chan *lvsctlv1.ConnectRequest // nil while disconnected
}

// New returns a session; Run connects it. A nil Logger discards logs.
func New(cfg Config) *Session {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.ControllerHeartbeat == 0 {
		cfg.ControllerHeartbeat = 5 * time.Second
	}
	return &Session{cfg: cfg, log: cfg.Logger.With("controller", cfg.Target)}
}

// MaxMessageBytes bounds one message on the stream, both ways. It is the controller's
// limit too (fanout.MaxMessageBytes, where the sizes at 10,000 clusters are measured).
const MaxMessageBytes = 64 << 20

// ErrMessageTooLarge is a message over MaxMessageBytes: reconnecting will not help until the
// director group is split or the limit raised on both ends.
var ErrMessageTooLarge = errors.New("message over the agent stream's limit")

// outboxSize bounds what may wait to be sent; past it Send refuses rather than blocking the
// agent's reconcile loop behind a slow network.
const outboxSize = 256

// Send queues a message on the current stream.
func (s *Session) Send(m *lvsctlv1.ConnectRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outbox == nil {
		return ErrNotConnected
	}
	select {
	case s.outbox <- m:
		return nil
	default:
		return ErrQueueFull
	}
}

// Run connects and keeps reconnecting until ctx ends. hello is called for each new stream
// (so it carries the latest applied revision); handle receives each controller message in
// order. Nothing more is read from the stream while handle runs, the controller's heartbeat
// answers included: a handle that waits for slow work (a reconcile) costs the agent's
// failover lease its controller's answers, so it should queue and return.
func (s *Session) Run(ctx context.Context, hello func() *lvsctlv1.Hello, handle func(*lvsctlv1.ConnectResponse)) error {
	creds := s.cfg.Credentials
	if s.cfg.Insecure {
		creds = insecure.NewCredentials()
	}
	if creds == nil {
		return ErrNoCredentials
	}
	addrs, err := endpoints.Parse(s.cfg.Target)
	if err != nil {
		return err
	}
	// Several controllers: gRPC's pick_first over all of them (package endpoints); a stream
	// that breaks reconnects to whichever answers, resuming from the applied revision its
	// Hello carries.
	target, opts := endpoints.Target(addrs)
	conn, err := grpc.NewClient(target, append(opts,
		// Each new connection does a new handshake with the certificate as last reloaded;
		// a stream already up keeps the one it was opened with.
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		// gRPC's own reconnect backoff grows to 120 s by default, which would leave an agent
		// up to two minutes behind a controller back from a long outage: bound it as ours is.
		// A controller answers a connection in milliseconds; 5 s leaves room for a loaded one
		// without waiting gRPC's default 20 s on an address that does not answer.
		// A snapshot of a large group is bigger than gRPC's default 4 MiB; the controller
		// refuses to send more than its own limit, which is the same (fanout.MaxMessageBytes).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: s.cfg.MinBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: s.cfg.MaxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
	)...)
	if err != nil {
		return fmt.Errorf("controller address %q: %w", s.cfg.Target, err)
	}
	defer conn.Close()
	client := lvsctlv1.NewAgentServiceClient(conn)
	backoff := s.cfg.MinBackoff
	for ctx.Err() == nil {
		start := time.Now()
		err := s.stream(ctx, client, hello, handle)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > 30*time.Second {
			// A stream that lived a while was healthy: start the backoff over.
			backoff = s.cfg.MinBackoff
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.log.Warn("controller stream ended; reconnecting", "error", err, "in", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
	return nil
}

func (s *Session) stream(ctx context.Context, client lvsctlv1.AgentServiceClient, hello func() *lvsctlv1.Hello, handle func(*lvsctlv1.ConnectResponse)) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := client.Connect(sctx, grpc.WaitForReady(false))
	if err != nil {
		return err
	}
	// The outbox is open before hello is called, so whatever the agent sends once it has
	// said Hello is queued behind it, never refused as "not connected".
	outbox := make(chan *lvsctlv1.ConnectRequest, outboxSize)
	s.mu.Lock()
	s.outbox = outbox
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.outbox = nil
		s.mu.Unlock()
	}()
	if err := st.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: hello()}}); err != nil {
		return err
	}

	sendErr := make(chan error, 1)
	go func() {
		hb := time.NewTicker(s.cfg.Heartbeat)
		defer hb.Stop()
		for {
			var m *lvsctlv1.ConnectRequest
			select {
			case <-sctx.Done():
				sendErr <- sctx.Err()
				return
			case m = <-outbox:
				// The agent's own heartbeats (the role logic's, which carry the values the
				// controller echoes) keep the stream busy: this empty one only fills silence,
				// and must not make the controller echo nothing between two of them.
				hb.Reset(s.cfg.Heartbeat)
			case <-hb.C:
				m = &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{}}}
			}
			if err := st.Send(m); err != nil {
				sendErr <- err
				cancel()
				return
			}
		}
	}()
	// The watchdog times only the waits in Recv: an agent slow to handle a message has not
	// heard a silent controller.
	silence := 3 * s.cfg.ControllerHeartbeat
	var silent atomic.Bool
	watchdog := time.AfterFunc(silence, func() { silent.Store(true); cancel() })
	defer watchdog.Stop()
	first := true
	for {
		m, err := st.Recv()
		if err != nil {
			cancel()
			<-sendErr
			if silent.Load() {
				return fmt.Errorf("%w for %s", ErrControllerSilent, silence)
			}
			if status.Code(err) == codes.ResourceExhausted {
				return fmt.Errorf("%w of %d bytes (split the director group, or raise session.MaxMessageBytes and fanout.MaxMessageBytes): %w", ErrMessageTooLarge, MaxMessageBytes, err)
			}
			return err
		}
		watchdog.Stop()
		if first {
			s.log.Info("connected to controller")
			first = false
		}
		handle(m)
		watchdog.Reset(silence)
	}
}

// Package controller wires the controller's parts: the store (embedded or external etcd),
// the fan-out to agents, the status registry and the gRPC services.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/fanout"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/roles"
	"github.com/lvsctl/lvsctl/controlplane/store"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Config is the controller's configuration, from its flags.
type Config struct {
	// DataDir holds the embedded etcd's data; unused with EtcdEndpoints.
	DataDir string
	// Listen is the gRPC address for agents and lvsctl.
	Listen string
	// EtcdEndpoints selects an external etcd cluster instead of the embedded one.
	EtcdEndpoints []string
	// EtcdClientURL and EtcdPeerURL are the embedded etcd's listen URLs.
	EtcdClientURL string
	EtcdPeerURL   string
	// EtcdLogLevel is the embedded etcd's log level.
	EtcdLogLevel string
	// MetricsListen serves Prometheus /metrics when set.
	MetricsListen string
	// Insecure allows plaintext gRPC (TLS arrives with the security issue).
	Insecure bool
	Logger   *slog.Logger
}

// Controller is a running controller.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	embedded *store.Embedded
	client   *clientv3.Client
	grpc     *grpc.Server
	lis      net.Listener
	hub      *fanout.Hub
	roles    *roles.Manager
	cache    *store.Cache
	metrics  *http.Server
	registry *prometheus.Registry
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid controller configuration")

// Start brings up etcd (or connects to it), the listener and the services. It returns once
// the gRPC listener is bound; Serve then runs until ctx ends.
func Start(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Listen == "" {
		return nil, fmt.Errorf("%w: --listen is required", ErrConfig)
	}
	if !cfg.Insecure {
		return nil, fmt.Errorf("%w: TLS is not implemented yet: pass --insecure to serve plaintext gRPC", ErrConfig)
	}
	c := &Controller{cfg: cfg, log: cfg.Logger}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		if cfg.DataDir == "" {
			return nil, fmt.Errorf("%w: --data-dir is required for the embedded etcd (or give --etcd-endpoints)", ErrConfig)
		}
		e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{DataDir: cfg.DataDir, ClientURL: cfg.EtcdClientURL, PeerURL: cfg.EtcdPeerURL, LogLevel: cfg.EtcdLogLevel})
		if err != nil {
			return nil, err
		}
		c.embedded = e
		endpoints = []string{e.Endpoint()}
		c.log.Info("embedded etcd ready", "data_dir", cfg.DataDir, "client_url", cfg.EtcdClientURL, "peer_url", cfg.EtcdPeerURL)
	}
	// The etcd client's own zap logs repeat every retry; the controller logs what matters
	// (a failed write, a lost watch) through slog.
	ccfg := clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if c.embedded != nil {
		// One apply of 10,000 clusters is one request of a few MiB (store.EmbeddedLimits).
		ccfg.MaxCallSendMsgSize = store.EmbeddedLimits().MaxRequestBytes
	}
	client, err := clientv3.New(ccfg)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to etcd %v: %w", endpoints, err)
	}
	c.client = client

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	c.lis = lis
	if !isLoopback(lis.Addr()) {
		c.log.Warn("INSECURE: serving plaintext gRPC on a non-loopback address; anyone who reaches it can change the data plane", "listen", lis.Addr().String())
	}

	st := store.New(client)
	if c.embedded != nil {
		st = store.NewLimited(client, store.EmbeddedLimits())
	}
	c.cache = store.NewCache(st, c.log)
	fl := fleet.New()
	// Stored: a takeover's new ACTIVE hears its assignment from the hub the moment it is
	// stored, one watch hop before the delta (c.hub is set before anything is stored).
	c.roles = roles.NewManager(roles.ManagerConfig{Store: st, Logger: c.log, Stored: func(r *lvsctlv1.GroupRoles) { c.hub.RolesStored(r) }})
	c.hub = fanout.New(fanout.Config{Store: st, Fleet: fl, Roles: c.roles, Logger: c.log})
	c.grpc = grpc.NewServer(
		// gRPC's default 4 MiB refused an agent's full status report and lvsctl's applies at
		// 10,000 clusters; fanout.MaxMessageBytes says why 64 MiB suffices.
		grpc.MaxRecvMsgSize(fanout.MaxMessageBytes),
		grpc.MaxSendMsgSize(fanout.MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
	)
	config.NewServer(st, c.cache, c.log).WithFailover(c.roles).Register(c.grpc)
	c.hub.Register(c.grpc)
	fleet.NewServer(fl).Register(c.grpc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(c.grpc, hs)
	reflection.Register(c.grpc)

	c.registry = prometheus.NewRegistry()
	c.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), fleet.NewCollector(fl))
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(c.registry, promhttp.HandlerOpts{}))
		mlis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("listening on --metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		c.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = c.metrics.Serve(mlis) }()
	}
	return c, nil
}

func isLoopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}

// Addr is the bound gRPC address.
func (c *Controller) Addr() string { return c.lis.Addr().String() }

// Registry is the controller's Prometheus registry.
func (c *Controller) Registry() *prometheus.Registry { return c.registry }

// Serve runs until ctx ends or something fails, then stops everything.
func (c *Controller) Serve(ctx context.Context) error {
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 4)
	go func() { errc <- c.hub.Run(ctx) }()
	go func() { errc <- c.roles.Run(ctx) }()
	go func() { errc <- c.cache.Run(ctx) }()
	go func() { errc <- c.grpc.Serve(c.lis) }()
	var etcdErr <-chan error
	if c.embedded != nil {
		etcdErr = c.embedded.Err()
	}
	c.log.Info("controller serving", "listen", c.Addr())
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case err := <-etcdErr:
		return fmt.Errorf("embedded etcd failed: %w", err)
	}
}

// Close stops the services and etcd. Agents keep their data planes as they are.
func (c *Controller) Close() {
	if c.grpc != nil {
		stopped := make(chan struct{})
		go func() { c.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(2 * time.Second):
			// Agent streams never end on their own; cut them after a short grace.
			c.grpc.Stop()
		}
		c.grpc = nil
	}
	if c.metrics != nil {
		_ = c.metrics.Close()
	}
	if c.client != nil {
		_ = c.client.Close()
		c.client = nil
	}
	if c.embedded != nil {
		c.embedded.Close()
		c.embedded = nil
	}
}

// Package controller wires the controller's parts: the store (embedded or external etcd),
// the fan-out to agents, the status registry and the gRPC services.
package controller

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
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

	"github.com/lvsctl/lvsctl/controlplane/auth"
	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/fanout"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/ha"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/endpoints"
	"github.com/lvsctl/lvsctl/pki"
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
	// MetricsTLS serves /metrics over HTTPS with the controller's certificate, and requires a
	// client certificate from the CA (TLSClientCA).
	MetricsTLS bool
	// HistoryRetention is how many history entries each object keeps (0: the default).
	HistoryRetention int
	// Insecure serves plaintext gRPC, on a loopback Listen only, and makes every caller the
	// admin "insecure-loopback".
	Insecure bool
	// TLSCert and TLSKey are the controller's certificate and key; TLSClientCA is the CA
	// bundle clients' certificates must chain to. They are re-read when they change and on
	// SIGHUP (package pki).
	TLSCert, TLSKey, TLSClientCA string
	// TLSReloadInterval is how often those files are looked at (0: pki.DefaultPollInterval).
	TLSReloadInterval time.Duration
	// EtcdTLS serves the embedded etcd over https with client certificates required, and is
	// the controller's client certificate to it (or to an external https etcd).
	EtcdTLS store.EmbeddedTLS
	// Advertise is the address other controllers reach this one at (relays to the leader)
	// and the name it registers under; default the bound Listen address.
	Advertise string
	// ElectionTTL is the election session's lease (0: ha.DefaultTTL): a leader that stops
	// is replaced this long after its last keep-alive.
	ElectionTTL time.Duration
	Logger      *slog.Logger
}

// Controller is a running controller.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	embedded *store.Embedded
	client   *clientv3.Client
	grpc     *grpc.Server
	lis      net.Listener
	st       *store.Store
	fleet    *fleet.Fleet
	elector  *ha.Elector
	cache    *store.Cache
	metrics  *http.Server
	registry *prometheus.Registry
	// tls is the gRPC server's (and /metrics') certificate; etcdTLS the etcd client's. Nil
	// when not used.
	tls, etcdTLS *pki.Reloader

	// advertise is Config.Advertise or the bound address.
	advertise string
	// term is set while this controller leads (lead); leading mirrors it for readers.
	term    atomic.Pointer[term]
	leading atomic.Bool
	// conns are client connections to leaders, by address, for relays.
	connsMu sync.Mutex
	conns   map[string]*grpc.ClientConn
	// crash: Close leaves the election key to expire, as a killed process would (tests).
	crash bool
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid controller configuration")

// Start brings up etcd (or connects to it), the listener and the services. It returns once
// the gRPC listener is bound; Serve then runs until ctx ends.
func Start(ctx context.Context, cfg Config) (*Controller, error) {
	if cfg.Listen == "" {
		return nil, fmt.Errorf("%w: --listen is required", ErrConfig)
	}
	retention := cfg.HistoryRetention
	switch {
	case retention == 0:
		retention = config.DefaultHistoryRetention
	case retention < 0:
		return nil, fmt.Errorf("%w: --history-retention %d: must be 1 or more (entries kept per object)", ErrConfig, retention)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, log: cfg.Logger, conns: map[string]*grpc.ClientConn{}}
	if err := c.loadTLS(); err != nil {
		return nil, err
	}
	if len(cfg.EtcdEndpoints) == 0 {
		if cfg.DataDir == "" {
			return nil, fmt.Errorf("%w: --data-dir is required for the embedded etcd (or give --etcd-endpoints)", ErrConfig)
		}
		e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{DataDir: cfg.DataDir, ClientURL: cfg.EtcdClientURL, PeerURL: cfg.EtcdPeerURL, LogLevel: cfg.EtcdLogLevel, TLS: cfg.EtcdTLS})
		if err != nil {
			return nil, err
		}
		c.embedded = e
		c.log.Info("embedded etcd ready", "data_dir", cfg.DataDir, "client_url", cfg.EtcdClientURL, "peer_url", cfg.EtcdPeerURL)
	}
	var client *clientv3.Client
	if c.embedded != nil {
		// In the process (etcd's v3client): no socket, TLS or gRPC encoding on a write, and a
		// role assignment's write is on a takeover's path. The embedded etcd's client URL
		// stays for etcdctl and backups.
		client = c.embedded.Client()
	} else {
		// The etcd client's own zap logs repeat every retry; the controller logs what matters
		// (a failed write, a lost watch) through slog.
		ccfg := clientv3.Config{Endpoints: cfg.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
		if c.etcdTLS != nil {
			// Each member of an external cluster has its own certificate: any endpoint's host.
			var hosts []string
			for _, e := range cfg.EtcdEndpoints {
				hosts = append(hosts, endpointHost(e))
			}
			ccfg.TLS = c.etcdTLS.ClientConfigAny(hosts)
		}
		// One apply of 10,000 clusters is one request of a few MiB (store.EmbeddedLimits),
		// more than the etcd client sends by default (2 MiB). An external etcd decides by its
		// own --max-request-bytes (the README's production layout raises it to the embedded
		// one's); its refusal is store.ErrTooLarge, with what to do.
		ccfg.MaxCallSendMsgSize = store.EmbeddedLimits().MaxRequestBytes
		var err error
		if client, err = clientv3.New(ccfg); err != nil {
			c.Close()
			return nil, fmt.Errorf("connecting to etcd %v: %w", cfg.EtcdEndpoints, err)
		}
	}
	c.client = client

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	c.lis = lis
	if cfg.Insecure && !endpoints.LoopbackAddr(lis.Addr()) {
		// "localhost" resolved elsewhere than loopback: the same refusal as loadTLS's.
		c.Close()
		return nil, fmt.Errorf("%w: --insecure with --listen %s (bound %s): plaintext gRPC is allowed on loopback only", ErrConfig, cfg.Listen, lis.Addr())
	}

	st := store.New(client)
	if c.embedded != nil {
		st = store.NewLimited(client, store.EmbeddedLimits())
	}
	c.cache = store.NewCache(st, c.log)
	c.st = st
	fl := fleet.New()
	c.fleet = fl
	c.advertise = cfg.Advertise
	if c.advertise == "" {
		c.advertise = lis.Addr().String()
	}
	// Even a lone controller on its embedded etcd is elected (at once): one code path, and
	// its role writes are fenced like any leader's.
	c.elector = ha.New(ha.Config{Client: client, Address: c.advertise, TTL: cfg.ElectionTTL, Logger: c.log})
	// The session lives as long as the client (Close ends it); Serve's context ends the
	// campaign.
	if err := c.elector.Prepare(ctx, context.Background()); err != nil {
		c.Close()
		return nil, err
	}
	opts := []grpc.ServerOption{
		// gRPC's default 4 MiB refused an agent's full status report and lvsctl's applies at
		// 10,000 clusters; fanout.MaxMessageBytes says why 64 MiB suffices.
		grpc.MaxRecvMsgSize(fanout.MaxMessageBytes),
		grpc.MaxSendMsgSize(fanout.MaxMessageBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 10 * time.Second, Timeout: 5 * time.Second}),
	}
	if c.tls != nil {
		// TLS 1.3 with a client certificate; a caller without a verified one gets
		// Unauthenticated on every RPC (pki.ServerCredentials says why not in the handshake).
		// Authentication comes first in each chain, before authorization.
		opts = append(opts, grpc.Creds(c.tls.ServerCredentials()),
			grpc.ChainUnaryInterceptor(pki.UnaryAuthenticate), grpc.ChainStreamInterceptor(pki.StreamAuthenticate))
	}
	// Authorization, after authentication: the caller's identity (its certificate's, or on
	// a plaintext loopback server the admin "insecure-loopback") against the one method
	// table (controlplane/auth); the agent stream's Hello is checked by the hub.
	authz := auth.New(auth.Config{Insecure: c.tls == nil, Logger: c.log})
	opts = append(opts, grpc.ChainUnaryInterceptor(authz.Unary), grpc.ChainStreamInterceptor(authz.Stream))
	c.grpc = grpc.NewServer(opts...)
	// The leader's services (the agent stream, status, failover) are routed: served here
	// while this controller leads, relayed to the leader otherwise (ha.go).
	lvsctlv1.RegisterConfigServiceServer(c.grpc, &configRouter{c: c,
		FailoverServer: config.NewServer(st, c.cache, c.log).WithWho(auth.Who).WithHistoryRetention(retention).WithFailover(termFailover{c})})
	lvsctlv1.RegisterAgentServiceServer(c.grpc, &agentRouter{c: c})
	lvsctlv1.RegisterStatusServiceServer(c.grpc, &statusRouter{c: c, local: fleet.NewServer(fl)})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(c.grpc, hs)
	reflection.Register(c.grpc)

	c.registry = prometheus.NewRegistry()
	c.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), fleet.NewCollector(fl), store.NewCollector(c.cache),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "lvsctl_controller_leader",
			Help: "1 while this controller leads. The fleet's metrics (lvsctl_director_*, lvsctl_fleet_*) are the leader's: a follower relays its agents' streams to the leader and reports no director."},
			func() float64 {
				if c.Leading() {
					return 1
				}
				return 0
			}))
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(c.registry, promhttp.HandlerOpts{}))
		mlis, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("listening on --metrics-listen %s: %w", cfg.MetricsListen, err)
		}
		if cfg.MetricsTLS {
			mlis = tls.NewListener(mlis, c.tls.HTTPServerConfig())
		}
		// Refused handshakes (a scraper without its certificate) are logged, not printed.
		c.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(c.log.With("server", "metrics").Handler(), slog.LevelWarn)}
		go func() { _ = c.metrics.Serve(mlis) }()
	}
	return c, nil
}

// loadTLS reads the certificates, or checks that plaintext is on loopback.
func (c *Controller) loadTLS() error {
	cfg := c.cfg
	if cfg.Insecure {
		host, _, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return fmt.Errorf("%w: --listen %q: %w", ErrConfig, cfg.Listen, err)
		}
		if !endpoints.LoopbackHost(host) {
			return fmt.Errorf("%w: --insecure with --listen %s: plaintext gRPC is allowed on loopback only (anyone who reaches %s could act as any director and any operator); serve TLS (drop --insecure; certificates from `lvs-controller pki init`) or listen on 127.0.0.1", ErrConfig, cfg.Listen, cfg.Listen)
		}
		if cfg.MetricsTLS {
			return fmt.Errorf("%w: --metrics-tls needs the controller's certificate: it cannot go with --insecure", ErrConfig)
		}
		c.log.Warn("INSECURE: plaintext gRPC on loopback; every local process is admin", "listen", cfg.Listen)
	} else {
		r, err := pki.NewReloader(pki.ReloaderConfig{
			Files:  pki.Files{Cert: cfg.TLSCert, Key: cfg.TLSKey, CA: cfg.TLSClientCA, CertFlag: "--tls-cert", KeyFlag: "--tls-key", CAFlag: "--tls-client-ca"},
			Logger: c.log.With("tls", "grpc"), Interval: cfg.TLSReloadInterval,
		})
		if err != nil {
			// err wraps pki.ErrLoad and names the flag and the file.
			return fmt.Errorf("%w; make them with `lvs-controller pki init DIR` and pass --tls-dir DIR (or --tls-cert, --tls-key, --tls-client-ca), or pass --insecure to serve plaintext on loopback", err)
		}
		c.tls = r
		c.log.Info("TLS certificate loaded", "certificate", pki.Describe(r.Certificate()))
	}
	if cfg.EtcdTLS != (store.EmbeddedTLS{}) {
		r, err := pki.NewReloader(pki.ReloaderConfig{
			Files:  pki.Files{Cert: cfg.EtcdTLS.CertFile, Key: cfg.EtcdTLS.KeyFile, CA: cfg.EtcdTLS.CAFile, CertFlag: "--etcd-client-cert", KeyFlag: "--etcd-client-key", CAFlag: "--etcd-client-ca"},
			Logger: c.log.With("tls", "etcd"), Interval: cfg.TLSReloadInterval,
		})
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		c.etcdTLS = r
	}
	return nil
}

// endpointHost is the host an etcd endpoint URL names, which its certificate must hold.
func endpointHost(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		return h
	}
	return endpoint
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
	errc := make(chan error, 6)
	for _, r := range []*pki.Reloader{c.tls, c.etcdTLS} {
		if r != nil {
			go func() { errc <- r.Run(ctx) }()
		}
	}
	go func() { errc <- c.elector.Run(ctx, c.lead) }()
	go func() { errc <- c.cache.Run(ctx) }()
	go func() { errc <- c.grpc.Serve(c.lis) }()
	var etcdErr <-chan error
	if c.embedded != nil {
		etcdErr = c.embedded.Err()
	}
	c.log.Info("controller serving", "listen", c.Addr(), "advertise", c.advertise)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	case err := <-etcdErr:
		return fmt.Errorf("embedded etcd failed: %w", err)
	}
}

// Crash stops the controller as a killed process would stop: its election key and its
// registration stay until their lease expires (ha.DefaultTTL). For tests of a leader's
// loss; Serve must have returned or ctx be cancelled right after.
func (c *Controller) Crash() {
	c.crash = true
	// First the etcd client: the session's keep-alives stop now, not after the grace
	// Close gives agent streams.
	if c.client != nil {
		_ = c.client.Close()
	}
	if c.grpc != nil {
		c.grpc.Stop()
	}
	c.Close()
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
	c.connsMu.Lock()
	for a, conn := range c.conns {
		_ = conn.Close()
		delete(c.conns, a)
	}
	c.connsMu.Unlock()
	if c.client != nil {
		_ = c.client.Close()
		c.client = nil
	}
	if c.embedded != nil {
		c.embedded.Close()
		c.embedded = nil
	}
}

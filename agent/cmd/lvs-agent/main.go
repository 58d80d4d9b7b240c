// Command lvs-agent runs on every director: it applies the controller's desired state to
// the kernel's IPVS, nftables and addresses, and reports back.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/agent/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvsctl/lvsctl/agent/ipvs"
	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/nft"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/agent/vip"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	var (
		director, controller, stateDir string
		insecure, debug                bool
		resync, offlineAfter           time.Duration
		statsPeriod                    time.Duration
		metricsListen                  string
	)
	flag.StringVar(&director, "director", "", "this director's name, as in its director group (required)")
	flag.StringVar(&controller, "controller", "127.0.0.1:7443", "controller HOST:PORT")
	flag.StringVar(&stateDir, "state-dir", "/var/lib/lvsctl/agent", "directory of the agent's state file")
	flag.BoolVar(&insecure, "insecure", false, "plaintext gRPC to the controller (no TLS)")
	flag.DurationVar(&resync, "resync", 30*time.Second, "period of drift repair against the kernel")
	flag.DurationVar(&offlineAfter, "offline-after", 10*time.Second, "apply the last saved state if the controller is unreachable this long after start")
	flag.DurationVar(&statsPeriod, "stats-period", time.Second, "how often IPVS counters are sampled and changes reported")
	flag.StringVar(&metricsListen, "metrics-listen", "", "address for Prometheus /metrics (empty: off)")
	flag.BoolVar(&debug, "debug", false, "log at debug level")
	flag.Parse()
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := options{director: director, controller: controller, stateDir: stateDir, insecure: insecure,
		resync: resync, offlineAfter: offlineAfter, statsPeriod: statsPeriod, metricsListen: metricsListen}
	if err := run(log, opts); err != nil {
		fmt.Fprintln(os.Stderr, "lvs-agent:", err)
		os.Exit(1)
	}
}

type options struct {
	director, controller, stateDir, metricsListen string
	insecure                                      bool
	resync, offlineAfter, statsPeriod             time.Duration
}

func run(log *slog.Logger, o options) error {
	director, controller, stateDir, insecure, resync := o.director, o.controller, o.stateDir, o.insecure, o.resync
	if director == "" {
		return fmt.Errorf("--director is required")
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	st, err := state.Load(stateDir)
	if err != nil {
		return err
	}
	kipvs := &daemon.LazyIPVS{RetryEvery: resync, Open: func() (daemon.KernelIPVS, error) { return ipvs.New() }}
	fw, err := nft.New(nft.WithLogger(log))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	addrs, err := vip.New(vip.WithLogger(log))
	if err != nil {
		return fmt.Errorf("addresses: %w", err)
	}
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: kipvs, Firewall: fw, Addresses: addrs, State: st})
	sess := session.New(session.Config{Target: controller, Insecure: insecure, Logger: log})
	caps := func() *lvsctlv1.Capabilities {
		c := &lvsctlv1.Capabilities{Nftables: true}
		ok, err := kipvs.Available()
		c.Ipvs = ok
		if err != nil {
			c.Errors = append(c.Errors, err.Error())
		}
		return c
	}
	if ok, err := kipvs.Available(); !ok {
		log.Error("IPVS is unavailable; the agent stays connected and reports it", "error", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	if o.metricsListen != "" {
		lis, err := net.Listen("tcp", o.metricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()
	}
	agent := daemon.New(daemon.Config{
		Director: director, Version: version, Logger: log, State: st, Reconciler: rec, Session: sess,
		Capabilities: caps, Resync: resync, OfflineAfter: o.offlineAfter,
		Stats: stats.NewReporter(kipvs), StatsPeriod: o.statsPeriod, Metrics: m,
		// Drift made by others (a reload of nftables, an interface reconfigured) is repaired
		// at once rather than at the next resync.
		Watchers: []daemon.Watcher{fw, addrs},
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.Run(ctx)
}

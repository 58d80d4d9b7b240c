// Command lvs-controller stores lvsctl's desired state in etcd and streams each director's
// part to its agent.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lvsctl/lvsctl/controlplane/controller"
)

func main() {
	var cfg controller.Config
	var endpoints string
	var debug bool
	flag.StringVar(&cfg.DataDir, "data-dir", "/var/lib/lvsctl/controller", "directory of the embedded etcd's data")
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "gRPC listen address for agents and lvsctl")
	flag.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated external etcd endpoints (instead of the embedded etcd)")
	flag.StringVar(&cfg.EtcdClientURL, "etcd-client-url", "http://127.0.0.1:2379", "embedded etcd client listen URL")
	flag.StringVar(&cfg.EtcdPeerURL, "etcd-peer-url", "http://127.0.0.1:2380", "embedded etcd peer listen URL")
	flag.StringVar(&cfg.EtcdLogLevel, "etcd-log-level", "error", "embedded etcd's log level (debug, info, warn, error, fatal)")
	flag.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address for Prometheus /metrics (empty: off)")
	flag.BoolVar(&cfg.Insecure, "insecure", false, "serve plaintext gRPC (no TLS)")
	flag.BoolVar(&debug, "debug", false, "log at debug level")
	flag.Parse()
	if endpoints != "" {
		cfg.EtcdEndpoints = strings.Split(endpoints, ",")
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := controller.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "lvs-controller:", err)
		os.Exit(1)
	}
	if err := c.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "lvs-controller:", err)
		os.Exit(1)
	}
}

// Command lvs-agent runs on every director: it applies the controller's desired state to
// the kernel's IPVS, nftables and addresses, and reports back.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/agent/host"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := host.Config{Version: version}
	var debug bool
	flag.StringVar(&cfg.Director, "director", "", "this director's name, as in its director group (required)")
	flag.StringVar(&cfg.Controller, "controller", "127.0.0.1:7443", "controller HOST:PORT")
	flag.StringVar(&cfg.StateDir, "state-dir", "/var/lib/lvsctl/agent", "directory of the agent's state file")
	flag.BoolVar(&cfg.Insecure, "insecure", false, "plaintext gRPC to the controller (no TLS)")
	flag.DurationVar(&cfg.Resync, "resync", 30*time.Second, "period of drift repair against the kernel")
	flag.DurationVar(&cfg.OfflineAfter, "offline-after", 10*time.Second, "apply the last saved state if the controller is unreachable this long after start")
	flag.DurationVar(&cfg.StatsPeriod, "stats-period", time.Second, "how often IPVS counters are sampled and changes reported")
	flag.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address for Prometheus /metrics (empty: off)")
	flag.BoolVar(&debug, "debug", false, "log at debug level")
	flag.Parse()
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := host.Run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "lvs-agent:", err)
		os.Exit(1)
	}
}

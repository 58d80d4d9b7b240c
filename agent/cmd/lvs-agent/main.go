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

	"github.com/lvsctl/lvsctl/agent/daemon"
	"github.com/lvsctl/lvsctl/agent/ipvs"
	"github.com/lvsctl/lvsctl/agent/nft"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
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
	)
	flag.StringVar(&director, "director", "", "this director's name, as in its director group (required)")
	flag.StringVar(&controller, "controller", "127.0.0.1:7443", "controller HOST:PORT")
	flag.StringVar(&stateDir, "state-dir", "/var/lib/lvsctl/agent", "directory of the agent's state file")
	flag.BoolVar(&insecure, "insecure", false, "plaintext gRPC to the controller (no TLS)")
	flag.DurationVar(&resync, "resync", 30*time.Second, "period of drift repair against the kernel")
	flag.DurationVar(&offlineAfter, "offline-after", 10*time.Second, "apply the last saved state if the controller is unreachable this long after start")
	flag.BoolVar(&debug, "debug", false, "log at debug level")
	flag.Parse()
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(log, director, controller, stateDir, insecure, resync, offlineAfter); err != nil {
		fmt.Fprintln(os.Stderr, "lvs-agent:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, director, controller, stateDir string, insecure bool, resync, offlineAfter time.Duration) error {
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
	fw, err := nft.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	addrs, err := vip.New()
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
	agent := daemon.New(daemon.Config{
		Director: director, Version: version, Logger: log, State: st, Reconciler: rec, Session: sess,
		Capabilities: caps, Resync: resync, OfflineAfter: offlineAfter,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return agent.Run(ctx)
}

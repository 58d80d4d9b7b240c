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
	"path/filepath"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/agent/host"
	"github.com/lvsctl/lvsctl/pki"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := host.Config{Version: version}
	var debug bool
	flag.StringVar(&cfg.Director, "director", "", "this director's name, as in its director group (required)")
	flag.StringVar(&cfg.Controller, "controller", "127.0.0.1:7443", "controller HOST:PORT, or several comma-separated (HOST:PORT,HOST:PORT,...): the agent moves to another when its controller fails")
	flag.StringVar(&cfg.StateDir, "state-dir", "/var/lib/lvsctl/agent", "directory of the agent's state file")
	flag.BoolVar(&cfg.Insecure, "insecure", false, "plaintext gRPC to the controller (no TLS); only to a controller on loopback")
	// --ca, --cert, --key are the contract; --tls-ca, --tls-cert, --tls-key the same
	// flags under the controller's naming.
	for _, name := range []string{"cert", "tls-cert"} {
		flag.StringVar(&cfg.TLSCert, name, "", "this director's certificate (default "+pki.DefaultDir+"/director-$DIRECTOR.crt)")
	}
	for _, name := range []string{"key", "tls-key"} {
		flag.StringVar(&cfg.TLSKey, name, "", "this director's key (default "+pki.DefaultDir+"/director-$DIRECTOR.key)")
	}
	for _, name := range []string{"ca", "tls-ca"} {
		flag.StringVar(&cfg.TLSCA, name, "", "CA bundle that verifies the controller's certificate (default "+pki.DefaultDir+"/ca.crt)")
	}
	flag.DurationVar(&cfg.Resync, "resync", 30*time.Second, "period of drift repair against the kernel")
	flag.DurationVar(&cfg.OfflineAfter, "offline-after", 10*time.Second, "apply the last saved state if the controller is unreachable this long after start")
	flag.DurationVar(&cfg.StatsPeriod, "stats-period", time.Second, "how often IPVS counters are sampled and changes reported")
	flag.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address for Prometheus /metrics (empty: off)")
	flag.BoolVar(&cfg.AcceptOlderRevision, "accept-older-revision", false, "apply the controller's first snapshot even if older than the revision this agent applied (its store was restored from a backup); once, remove after use")
	flag.BoolVar(&debug, "debug", false, "log at debug level")
	flag.Parse()
	if cfg.TLSCert == "" {
		cfg.TLSCert = pki.DirectorCertPath(pki.DefaultDir, cfg.Director)
	}
	if cfg.TLSKey == "" {
		cfg.TLSKey = pki.DirectorKeyPath(pki.DefaultDir, cfg.Director)
	}
	if cfg.TLSCA == "" {
		cfg.TLSCA = filepath.Join(pki.DefaultDir, pki.CACertFile)
	}
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

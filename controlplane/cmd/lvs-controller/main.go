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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/pki"
	"github.com/lvsctl/lvsctl/pki/pkicli"
)

func main() {
	// `lvs-controller pki ...` makes and issues certificates (package pki/pkicli).
	if len(os.Args) > 1 && os.Args[1] == "pki" {
		os.Exit(pkicli.Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	var cfg controller.Config
	var endpoints, tlsDir string
	var debug bool
	flag.StringVar(&cfg.DataDir, "data-dir", "/var/lib/lvsctl/controller", "directory of the embedded etcd's data")
	flag.StringVar(&cfg.Listen, "listen", "127.0.0.1:7443", "gRPC listen address for agents and lvsctl")
	flag.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated external etcd endpoints (instead of the embedded etcd)")
	flag.StringVar(&cfg.EtcdClientURL, "etcd-client-url", "http://127.0.0.1:2379", "embedded etcd client listen URL")
	flag.StringVar(&cfg.EtcdPeerURL, "etcd-peer-url", "http://127.0.0.1:2380", "embedded etcd peer listen URL")
	flag.StringVar(&cfg.EtcdLogLevel, "etcd-log-level", "error", "embedded etcd's log level (debug, info, warn, error, fatal)")
	flag.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address for Prometheus /metrics (empty: off)")
	flag.IntVar(&cfg.HistoryRetention, "history-retention", 100, "history entries kept per cluster and group (lvsctl history, rollback)")
	flag.BoolVar(&cfg.Insecure, "insecure", false, "serve plaintext gRPC (no TLS, every caller is admin); only with a loopback --listen")
	flag.StringVar(&tlsDir, "tls-dir", pki.DefaultDir, "directory made by `lvs-controller pki init`: ca.crt, controller.crt, controller.key")
	flag.StringVar(&cfg.TLSCert, "tls-cert", "", "the controller's certificate (default: --tls-dir's controller.crt)")
	flag.StringVar(&cfg.TLSKey, "tls-key", "", "the controller's key (default: --tls-dir's controller.key)")
	flag.StringVar(&cfg.TLSClientCA, "tls-client-ca", "", "CA bundle that agents' and lvsctl's certificates must chain to (default: --tls-dir's ca.crt)")
	flag.BoolVar(&cfg.MetricsTLS, "metrics-tls", false, "serve /metrics over HTTPS with the controller's certificate, requiring a client certificate from the CA")
	flag.StringVar(&cfg.EtcdTLS.CertFile, "etcd-client-cert", "", "the embedded etcd's https certificate, also the controller's client certificate to etcd (needs ServerAuth and ClientAuth, as controller.crt has)")
	flag.StringVar(&cfg.EtcdTLS.KeyFile, "etcd-client-key", "", "key of --etcd-client-cert")
	flag.StringVar(&cfg.EtcdTLS.CAFile, "etcd-client-ca", "", "CA that etcd clients' certificates must chain to, and that verifies etcd's")
	// The same files under the names an external cluster's client options usually have.
	flag.StringVar(&cfg.EtcdTLS.CertFile, "etcd-cert", "", "same as --etcd-client-cert: the controller's client certificate to an https etcd cluster")
	flag.StringVar(&cfg.EtcdTLS.KeyFile, "etcd-key", "", "same as --etcd-client-key")
	flag.StringVar(&cfg.EtcdTLS.CAFile, "etcd-ca", "", "same as --etcd-client-ca: the CA that verifies the etcd members' certificates")
	flag.DurationVar(&cfg.ElectionTTL, "election-ttl", 2*time.Second, "lease of this controller's leadership and registration: a leader that dies is replaced about this long after (etcd raises it to 1.5 of its election timeout: 2 s with etcd's default 1 s, 1 s with --election-timeout 500)")
	flag.StringVar(&cfg.Advertise, "advertise", "", "HOST:PORT other controllers reach this one at (relays to the leader; the name in `lvsctl get controllers`); default --listen")
	flag.BoolVar(&debug, "debug", false, "log at debug level")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: lvs-controller [flags]\n       lvs-controller pki init|issue ... (lvs-controller pki --help)\n\nFlags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	cfg.TLSCert = orIn(cfg.TLSCert, tlsDir, pki.ControllerCertFile)
	cfg.TLSKey = orIn(cfg.TLSKey, tlsDir, pki.ControllerKeyFile)
	cfg.TLSClientCA = orIn(cfg.TLSClientCA, tlsDir, pki.CACertFile)
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

// orIn is path, or dir/name when path is not given.
func orIn(path, dir, name string) string {
	if path != "" {
		return path
	}
	return filepath.Join(dir, name)
}

// Package host runs the agent on a director's own kernel: it opens the real IPVS, nftables
// and address backends, the state file, the controller session and /metrics, and hands them
// to the daemon. Everything here is wiring; the behaviour lives in the packages it wires.
package host

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lvsctl/lvsctl/agent/announce"
	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/daemon"
	"github.com/lvsctl/lvsctl/agent/ipvs"
	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/nft"
	"github.com/lvsctl/lvsctl/agent/peer"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/agent/vip"
	"github.com/lvsctl/lvsctl/endpoints"
	"github.com/lvsctl/lvsctl/pki"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Config is the agent's configuration, from its flags.
type Config struct {
	Director, Controller, StateDir string
	// MetricsListen serves Prometheus /metrics when set.
	MetricsListen string
	// Insecure speaks plaintext gRPC, to a controller on loopback only.
	Insecure bool
	// TLSCert and TLSKey are this director's certificate (CN = Director, OU = director) and
	// key; TLSCA is the CA bundle that verifies the controller's certificate. They are
	// re-read when they change and on SIGHUP.
	TLSCert, TLSKey, TLSCA string
	// TLSReloadInterval is how often those files are looked at (0: pki.DefaultPollInterval).
	TLSReloadInterval time.Duration
	// AcceptOlderRevision takes the controller's first snapshot even when it is older than
	// what this agent applied (the store was restored from a backup): once, by hand.
	AcceptOlderRevision               bool
	Resync, OfflineAfter, StatsPeriod time.Duration
	Version                           string
	Logger                            *slog.Logger
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid agent configuration")

// Run runs the agent on this host's kernel until ctx ends. Ending never changes the data
// plane.
func Run(ctx context.Context, o Config) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o.Logger = log
	director, controller, stateDir, insecure, resync := o.Director, o.Controller, o.StateDir, o.Insecure, o.Resync
	if director == "" {
		return fmt.Errorf("%w: --director is required", ErrConfig)
	}
	// Refused before anything else starts: a plaintext stream that leaves the machine lets
	// anyone on the path rewrite this director's kernel tables.
	if insecure && !endpoints.AllLoopback(controller) {
		return fmt.Errorf("%w: --insecure with --controller %s: plaintext gRPC is allowed to a controller on loopback only; use TLS (--ca, --cert, --key)", ErrConfig, controller)
	}
	var certs *pki.Reloader
	if !insecure {
		// Before anything else too: a missing or wrong certificate stops the agent at start,
		// with the files named, rather than from inside the reconnect loop.
		var err error
		if certs, err = loadTLS(o); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	st, err := state.Load(stateDir)
	// A state file that fails its integrity check still loads (nothing desired, nothing
	// applied offline): the daemon logs, reports and counts it, and waits for the controller.
	if err != nil && !errors.Is(err, state.ErrIntegrity) {
		return err
	}
	kipvs := &daemon.LazyIPVS{RetryEvery: resync, Open: func() (daemon.KernelIPVS, error) {
		k, err := ipvs.New()
		if err == nil {
			// Here rather than at start: IPVS (and so the sysctl) may be loaded later.
			quiescentTemplates(log, "/proc/sys")
		}
		return k, err
	}}
	fw, err := nft.New(nft.WithLogger(log))
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	addrs, err := vip.New(vip.WithLogger(log))
	if err != nil {
		return fmt.Errorf("addresses: %w", err)
	}
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: kipvs, Firewall: fw, Addresses: addrs, State: st})
	sessCfg := session.Config{Target: controller, Insecure: insecure, Logger: log}
	if certs != nil {
		// The controller's certificate must hold the host part of --controller (a DNS or IP
		// SAN: `pki init --san`).
		// With several controllers, any listed host will do (each is a controller of the CA).
		addrs, _ := endpoints.Parse(controller) // loadTLS checked it
		sessCfg.Credentials = certs.ClientCredentialsAny(endpoints.Hosts(addrs))
		go func() { _ = certs.Run(ctx) }()
		log.Info("TLS certificate loaded", "certificate", pki.Describe(certs.Certificate()))
	}
	sess := session.New(sessCfg)
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
	if o.MetricsListen != "" {
		lis, err := net.Listen("tcp", o.MetricsListen)
		if err != nil {
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()
	}
	ann := announce.New(log)
	defer ann.Close()
	cfg := daemon.Config{
		Director: director, Version: o.Version, Logger: log, State: st, Reconciler: rec, Session: sess,
		Capabilities: caps, Resync: resync, OfflineAfter: o.OfflineAfter, AcceptOlderRevision: o.AcceptOlderRevision,
		Stats: stats.NewReporter(kipvs), StatsPeriod: o.StatsPeriod, Metrics: m,
		// Drift made by others (a reload of nftables, an interface reconfigured) is repaired
		// at once rather than at the next resync.
		Watchers: []daemon.Watcher{fw, addrs},
		// Failover: heartbeats to the group's other directors on this director's address,
		// probes of their hosts, announcements of the addresses taken.
		Peers: func(local netip.AddrPort) (daemon.PeerTransport, error) {
			tr, err := peer.Listen(local, log)
			if err != nil {
				return nil, err
			}
			return tr, nil
		},
		Announcer: ann,
		Addresses: addrs,
		// A real server that left its cluster while the agent was down is held for its
		// grace again, not cut.
		Kernel: kipvs,
	}
	// The checks run from this director's namespace, on a bounded pool; their transitions go
	// to the agent's loop, which sets the weights.
	var agent *daemon.Agent
	chk := checker.New(log.With("component", "health"), checker.Options{OnChange: func(st checker.Status) { agent.HealthChanged(st) }})
	cfg.Health = chk
	if prober, err := peer.NewProber(log); err != nil {
		// Without probes the agent cannot tell a dead host from a dead agent: it reports its
		// peers' probes never answered, which the controller does not count as a dead host.
		log.Error("cannot probe the other directors' hosts (CAP_NET_RAW is needed): this director will not agree to an automatic takeover", "error", err)
	} else {
		defer prober.Close()
		cfg.Prober = prober
	}
	// The checker calls OnChange only once Run started it, after agent is set.
	agent = daemon.New(cfg)
	return agent.Run(ctx)
}

// ErrWrongCertificate is wrapped when the certificate is not this director's.
var ErrWrongCertificate = errors.New("certificate is not this director's")

// loadTLS reads the director's certificate, refusing one that names another director or is
// not a director's at all: the controller would refuse it (or take it for someone else).
func loadTLS(o Config) (*pki.Reloader, error) {
	if _, err := endpoints.Parse(o.Controller); err != nil {
		return nil, fmt.Errorf("%w: --controller: %w", ErrConfig, err)
	}
	check := func(c *x509.Certificate) error { return CheckDirectorCertificate(c, o.Director) }
	r, err := pki.NewReloader(pki.ReloaderConfig{
		Files:  pki.Files{Cert: o.TLSCert, Key: o.TLSKey, CA: o.TLSCA, CertFlag: "--cert", KeyFlag: "--key", CAFlag: "--ca"},
		Logger: o.Logger, Interval: o.TLSReloadInterval, Check: check,
	})
	if errors.Is(err, ErrWrongCertificate) {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err != nil {
		// err wraps pki.ErrLoad and names the flag and the file.
		return nil, fmt.Errorf("%w; make one on the controller with `lvs-controller pki issue DIR --director %s` and copy DIR/ca.crt, DIR/director-%s.crt and .key here, or pass --insecure for a controller on loopback", err, o.Director, o.Director)
	}
	return r, nil
}

// CheckDirectorCertificate refuses a certificate that is not director's.
func CheckDirectorCertificate(c *x509.Certificate, director string) error {
	ou := c.Subject.OrganizationalUnit
	if len(ou) != 1 || ou[0] != pki.OUDirector {
		return fmt.Errorf("%w: its OU is %q, want %q (a director's certificate: `lvs-controller pki issue DIR --director %s`)", ErrWrongCertificate, strings.Join(ou, ","), pki.OUDirector, director)
	}
	if c.Subject.CommonName != director {
		return fmt.Errorf("%w: it is for director %q (its CN) but --director is %q", ErrWrongCertificate, c.Subject.CommonName, director)
	}
	return nil
}

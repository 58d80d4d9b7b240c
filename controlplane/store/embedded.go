package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/tlsutil"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"

	"github.com/lvsctl/lvsctl/endpoints"
)

// EmbeddedConfig is the single-node etcd a controller runs when no external cluster is given.
type EmbeddedConfig struct {
	DataDir string
	// ClientURL and PeerURL are where the embedded etcd listens. They default to loopback so a
	// controller never exposes its store by accident; two controllers on one machine need
	// different ones, and a clash fails at start with the address named.
	ClientURL string
	PeerURL   string
	// Name of the etcd member; it is part of the data dir's identity.
	Name string
	// LogLevel of etcd's own logger (debug, info, warn, error, fatal); default error.
	LogLevel string
	// TLS, when set, serves https client and peer URLs with this certificate and requires
	// client certificates signed by its CA. Without it both URLs must be loopback.
	TLS EmbeddedTLS
}

// EmbeddedTLS are the embedded etcd's certificate, key and the CA of its clients (the
// controller's --etcd-client-cert, --etcd-client-key, --etcd-client-ca). The certificate
// serves and also authenticates the controller's own client, so it needs both ServerAuth and
// ClientAuth usages (`lvs-controller pki init` makes controller.crt so).
type EmbeddedTLS struct {
	CertFile, KeyFile, CAFile string
}

func (t EmbeddedTLS) set() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

// ErrEmbeddedExposed is wrapped when the embedded etcd would listen where anyone could reach
// it without a certificate: the store is the whole desired state of every director.
var ErrEmbeddedExposed = errors.New("the embedded etcd would accept anyone")

// checkURLs refuses a non-loopback URL without TLS, an https URL without the files, and
// half the files.
func checkURLs(cfg EmbeddedConfig, urls map[string]*url.URL) error {
	t := cfg.TLS
	if t.set() && (t.CertFile == "" || t.KeyFile == "" || t.CAFile == "") {
		return fmt.Errorf("%w: TLS for the embedded etcd needs all of --etcd-client-cert, --etcd-client-key and --etcd-client-ca", ErrEmbeddedStart)
	}
	for _, flag := range []string{"--etcd-client-url", "--etcd-peer-url"} {
		u := urls[flag]
		switch u.Scheme {
		case "https":
			if !t.set() {
				return fmt.Errorf("%w: %s %s: https needs --etcd-client-cert, --etcd-client-key and --etcd-client-ca", ErrEmbeddedStart, flag, u)
			}
		case "http":
			if !endpoints.LoopbackHost(u.Hostname()) {
				return fmt.Errorf("%w: %w: %s %s is not a loopback address and plain http: anyone who reaches it could read and rewrite every director's desired state; keep it on 127.0.0.1, or serve https with --etcd-client-cert, --etcd-client-key and --etcd-client-ca (client certificates required)", ErrEmbeddedStart, ErrEmbeddedExposed, flag, u)
			}
		default:
			return fmt.Errorf("%w: %s %s: the scheme must be http (loopback only) or https", ErrEmbeddedStart, flag, u)
		}
	}
	return nil
}

// Embedded is a running embedded etcd.
type Embedded struct {
	etcd      *embed.Etcd
	clientURL string
}

// ErrEmbeddedStart is wrapped by every failure to start the embedded etcd.
var ErrEmbeddedStart = errors.New("starting embedded etcd")

// StartEmbedded starts a single-node etcd and waits until it serves.
func StartEmbedded(ctx context.Context, cfg EmbeddedConfig) (*Embedded, error) {
	ecfg := embed.NewConfig()
	ecfg.Dir = cfg.DataDir
	if cfg.Name != "" {
		ecfg.Name = cfg.Name
	}
	curl, err := url.Parse(cfg.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("%w: --etcd-client-url %q: %w", ErrEmbeddedStart, cfg.ClientURL, err)
	}
	purl, err := url.Parse(cfg.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: --etcd-peer-url %q: %w", ErrEmbeddedStart, cfg.PeerURL, err)
	}
	if err := checkURLs(cfg, map[string]*url.URL{"--etcd-client-url": curl, "--etcd-peer-url": purl}); err != nil {
		return nil, err
	}
	if cfg.TLS.set() {
		info := transport.TLSInfo{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile, TrustedCAFile: cfg.TLS.CAFile, ClientCertAuth: true}
		ecfg.ClientTLSInfo = info
		ecfg.PeerTLSInfo = info
		ecfg.TlsMinVersion = string(tlsutil.TLSVersion13)
	}
	ecfg.ListenClientUrls = []url.URL{*curl}
	ecfg.AdvertiseClientUrls = []url.URL{*curl}
	ecfg.ListenPeerUrls = []url.URL{*purl}
	ecfg.AdvertisePeerUrls = []url.URL{*purl}
	ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
	// etcd logs through zap; only its errors are worth an operator's attention here.
	ecfg.LogLevel = "error"
	if cfg.LogLevel != "" {
		ecfg.LogLevel = cfg.LogLevel
	}
	ecfg.LogOutputs = []string{"stderr"}
	if ecfg.LogLevel != "debug" && ecfg.LogLevel != "info" && ecfg.LogLevel != "warn" {
		// etcd formats the whole request of an apply slower than these into its "took too
		// long" warning before its logger drops it: for one apply of 10,000 clusters that
		// was 70 ms of CPU to print nothing. Logged at warn level only, it is shown at warn.
		ecfg.WarningApplyDuration = time.Hour
		ecfg.WarningUnaryRequestDuration = time.Hour
	}
	// The store holds a few objects per cluster; keep the embedded etcd's footprint small.
	ecfg.AutoCompactionMode = "revision"
	ecfg.AutoCompactionRetention = "10000"
	// One apply of 10,000 clusters is one transaction (EmbeddedLimits); the backend quota
	// (etcd's default 2 GiB) holds 10,000 clusters of 10 reals many times over.
	ecfg.MaxTxnOps = uint(EmbeddedLimits().MaxTxnOps)
	ecfg.MaxRequestBytes = uint(EmbeddedLimits().MaxRequestBytes)

	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		return nil, fmt.Errorf("%w (client %s, peer %s, data %s): %w", ErrEmbeddedStart, cfg.ClientURL, cfg.PeerURL, cfg.DataDir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("%w: %w", ErrEmbeddedStart, err)
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("%w: not ready after 60s", ErrEmbeddedStart)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("%w: %w", ErrEmbeddedStart, ctx.Err())
	}
	return &Embedded{etcd: e, clientURL: dialable(curl)}, nil
}

// dialable is u with an unspecified host (0.0.0.0, ::) replaced by loopback, where the
// controller's own client reaches it (and which its certificate names).
func dialable(u *url.URL) string {
	d := *u
	if a, err := netip.ParseAddr(d.Hostname()); err == nil && a.IsUnspecified() {
		d.Host = net.JoinHostPort("127.0.0.1", d.Port())
	}
	return d.String()
}

// Endpoint is the client URL to dial (loopback when etcd listens on every address).
func (e *Embedded) Endpoint() string { return e.clientURL }

// Client is an etcd client inside the process, with no socket, TLS or gRPC encoding between it
// and the server (etcd's v3client): a write costs half what it does over loopback (0.5 ms
// against 1.0 ms on the project's machine, more in the emulated lab), and a role assignment's
// write is on a takeover's path. Closing it leaves etcd running.
func (e *Embedded) Client() *clientv3.Client { return v3client.New(e.etcd.Server) }

// Err reports a fatal error of the running etcd.
func (e *Embedded) Err() <-chan error { return e.etcd.Err() }

// Close stops etcd; its data stays in the data dir.
func (e *Embedded) Close() { e.etcd.Close() }

package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
)

// DefaultPollInterval is how often a Reloader looks at its files. Polling rather than
// fsnotify: it needs no new dependency, sees a file replaced by rename, a symlink swapped
// (Kubernetes secrets, `ln -sf`), an NFS or bind mount edited from elsewhere, all of which
// inotify watches on the file miss; reading three files of a few KiB every few seconds costs
// nothing. Contents, not mtime and size, are compared: `cp -p` of a same-size certificate
// keeps both.
const DefaultPollInterval = 2 * time.Second

// Files are a certificate, its key and the CA bundle the peer must chain to. The flag
// fields name where each path came from ("--tls-cert", "--cert (env LVSCTL_CERT)"), so that
// an error says what to change.
type Files struct {
	Cert, Key, CA             string
	CertFlag, KeyFlag, CAFlag string
}

// ReloaderConfig configures a Reloader.
type ReloaderConfig struct {
	Files  Files
	Logger *slog.Logger
	// Interval between looks at the files (0: DefaultPollInterval).
	Interval time.Duration
	// Check refuses a certificate this program must not use, at start and at every reload
	// (the agent: a certificate for another director). Nil accepts any.
	Check func(*x509.Certificate) error
}

// ErrLoad is wrapped by every failure to read or use the TLS files.
var ErrLoad = errors.New("no usable TLS certificate")

// Reloader holds a certificate, its key and a CA pool read from files, and re-reads them
// when they change (Run) or when asked (Reload, SIGHUP); tls.Configs made from it use the
// latest good files at every new handshake. A bad new file is refused and the old material
// kept, so a botched rotation never stops a controller from serving or an agent from
// reconnecting. Connections already up are not touched: TLS does not re-authenticate them.
type Reloader struct {
	cfg ReloaderConfig
	log *slog.Logger
	cur atomic.Pointer[material]

	mu sync.Mutex // one load at a time
	// bad is the last refused set of file contents, and whether its error was logged: the
	// poll logs a refusal the second time it sees the same contents, so a rotation caught
	// between its key and its certificate (one poll apart) does not log an error.
	bad       [3][]byte
	badLogged bool
}

// material is one good set of files, with the tls.Configs served from it.
type material struct {
	raw  [3][]byte // cert, key, CA as read
	cert *tls.Certificate
	pool *x509.CertPool
	// grpcServer asks for a client certificate but leaves its verification to
	// ServerCredentials, so that a missing or untrusted one is answered with gRPC's
	// Unauthenticated (the contract) instead of a handshake failure that a client
	// reports as Unavailable.
	grpcServer *tls.Config
	// httpServer requires and verifies one in the handshake: HTTP has no better answer.
	httpServer *tls.Config
}

// NewReloader reads the files once; an error names the file and its flag.
func NewReloader(cfg ReloaderConfig) (*Reloader, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPollInterval
	}
	r := &Reloader{cfg: cfg, log: cfg.Logger}
	raw, err := r.read()
	if err != nil {
		return nil, err
	}
	m, err := r.parse(raw)
	if err != nil {
		return nil, err
	}
	r.cur.Store(m)
	r.warnExpiry(m.cert.Leaf)
	return r, nil
}

func (r *Reloader) read() ([3][]byte, error) {
	var raw [3][]byte
	f := r.cfg.Files
	for i, p := range []struct{ path, flag, what string }{
		{f.Cert, f.CertFlag, "certificate"},
		{f.Key, f.KeyFlag, "key"},
		{f.CA, f.CAFlag, "CA certificate"},
	} {
		if p.path == "" {
			return raw, fmt.Errorf("%w: %s: no %s file given", ErrLoad, flagName(p.flag, p.what), p.what)
		}
		b, err := os.ReadFile(p.path)
		if err != nil {
			return raw, fmt.Errorf("%w: %s %s: %w", ErrLoad, flagName(p.flag, p.what), p.path, err)
		}
		raw[i] = b
	}
	return raw, nil
}

func flagName(flag, what string) string {
	if flag != "" {
		return flag
	}
	return what
}

func (r *Reloader) parse(raw [3][]byte) (*material, error) {
	f := r.cfg.Files
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s with %s %s: %w", ErrLoad, flagName(f.CertFlag, "certificate"), f.Cert, flagName(f.KeyFlag, "key"), f.Key, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrLoad, flagName(f.CertFlag, "certificate"), f.Cert, err)
		}
	}
	if r.cfg.Check != nil {
		if err := r.cfg.Check(cert.Leaf); err != nil {
			return nil, fmt.Errorf("%w: %s %s: %w", ErrLoad, flagName(f.CertFlag, "certificate"), f.Cert, err)
		}
	}
	pool := x509.NewCertPool()
	// A bundle may hold an old and a new CA while a CA is being replaced.
	if !pool.AppendCertsFromPEM(raw[2]) {
		return nil, fmt.Errorf("%w: %s %s: no PEM certificate in it", ErrLoad, flagName(f.CAFlag, "CA certificate"), f.CA)
	}
	m := &material{raw: raw, cert: &cert, pool: pool}
	m.grpcServer = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequestClientCert,
		// Sent in the certificate request so a client holding several picks ours.
		ClientCAs: pool,
		// A resumed session would carry the certificate of the first handshake past a CA
		// since replaced; full handshakes are cheap at a controller's connection rate.
		SessionTicketsDisabled: true,
	}
	m.httpServer = &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAndVerifyClientCert,
		ClientCAs:              pool,
		SessionTicketsDisabled: true,
	}
	return m, nil
}

// warnExpiry says, at start and at each reload, when a certificate is expired or close: an
// expired one still loads (an agent keeps its data plane and waits for a new one), but the
// peer will refuse it.
func (r *Reloader) warnExpiry(leaf *x509.Certificate) {
	left := time.Until(leaf.NotAfter)
	switch {
	case left <= 0:
		r.log.Error("TLS certificate has expired: peers refuse it until a new one is issued (`lvs-controller pki issue ... --force`)", "file", r.cfg.Files.Cert, "certificate", Describe(leaf))
	case left < 14*24*time.Hour:
		r.log.Warn("TLS certificate expires soon: issue a new one (`lvs-controller pki issue ... --force`); it is picked up without a restart", "file", r.cfg.Files.Cert, "certificate", Describe(leaf), "in", left.Round(time.Hour))
	}
}

// Certificate is the leaf certificate in use.
func (r *Reloader) Certificate() *x509.Certificate { return r.cur.Load().cert.Leaf }

// Reload re-reads the files now. Unchanged files are not an error; bad ones are, and the
// material in use stays.
func (r *Reloader) Reload() error {
	_, err := r.reload()
	return err
}

// reload reports whether new material was taken.
func (r *Reloader) reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	raw, err := r.read()
	if err != nil {
		return false, err
	}
	old := r.cur.Load()
	if sameFiles(raw, old.raw) {
		return false, nil
	}
	m, err := r.parse(raw)
	if err != nil {
		return false, err
	}
	r.cur.Store(m)
	r.log.Info("TLS certificates reloaded: new connections use them", "file", r.cfg.Files.Cert,
		"certificate", Describe(m.cert.Leaf), "previous_serial", Serial(old.cert.Leaf))
	r.warnExpiry(m.cert.Leaf)
	return true, nil
}

func sameFiles(a, b [3][]byte) bool {
	return bytes.Equal(a[0], b[0]) && bytes.Equal(a[1], b[1]) && bytes.Equal(a[2], b[2])
}

// Run re-reads the files every Interval and on SIGHUP until ctx ends. A refusal on SIGHUP is
// logged at once; a poll's is logged once the same contents are seen twice (see bad).
func (r *Reloader) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			changed, err := r.reload()
			switch {
			case err != nil:
				r.log.Error("SIGHUP: TLS certificates not reloaded; still using the previous ones", "error", err, "serial", Serial(r.Certificate()))
			case !changed:
				r.log.Info("SIGHUP: TLS certificate files unchanged", "file", r.cfg.Files.Cert, "serial", Serial(r.Certificate()))
			}
		case <-t.C:
			r.poll()
		}
	}
}

func (r *Reloader) poll() {
	_, err := r.reload()
	if err == nil {
		r.mu.Lock()
		r.bad, r.badLogged = [3][]byte{}, false
		r.mu.Unlock()
		return
	}
	raw, _ := r.read() // what was refused, as best known: a missing file reads as nil
	r.mu.Lock()
	defer r.mu.Unlock()
	if !sameFiles(raw, r.bad) {
		r.bad, r.badLogged = raw, false
		return
	}
	if !r.badLogged {
		r.badLogged = true
		r.log.Error("TLS certificate files changed but cannot be used; still using the previous ones", "error", err, "serial", Serial(r.cur.Load().cert.Leaf))
	}
}

// ServerConfig is the gRPC server's TLS: TLS 1.3, the current certificate, a client
// certificate asked for. Use it through ServerCredentials, which verifies that certificate
// against the current CA: this config alone accepts any.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().grpcServer, nil
		},
	}
}

// HTTPServerConfig is TLS 1.3 with a client certificate from the CA required in the
// handshake (the controller's /metrics).
func (r *Reloader) HTTPServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return r.cur.Load().httpServer, nil
		},
	}
}

// ClientConfig is a client's TLS to serverName (the host part of the address dialled: a DNS
// name or an IP address, which must be among the server certificate's SANs). The
// certificate presented and the CA that verifies the server are the current ones at each
// handshake.
func (r *Reloader) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.cur.Load().cert, nil
		},
		// crypto/tls would verify the server against a RootCAs pool fixed when this config
		// was made; VerifyConnection does the same verification (chain to the CA, the name,
		// ServerAuth usage) against the pool as last reloaded. The handshake's signature is
		// checked by crypto/tls either way.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return r.verifyServer(cs.PeerCertificates, serverName)
		},
	}
}

// ErrServerCertificate is wrapped when the server's certificate is refused.
var ErrServerCertificate = errors.New("controller certificate refused")

func (r *Reloader) verifyServer(certs []*x509.Certificate, serverName string) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: none presented", ErrServerCertificate)
	}
	opts := x509.VerifyOptions{
		Roots:         r.cur.Load().pool,
		Intermediates: x509.NewCertPool(),
		DNSName:       serverName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("%w (%s): %w", ErrServerCertificate, Describe(certs[0]), err)
	}
	return nil
}

// ErrClientCertificate is wrapped when a client presented no certificate or one the CA did
// not sign for client use.
var ErrClientCertificate = errors.New("client certificate refused")

// ErrNoClientCertificate is a client that presented none.
var ErrNoClientCertificate = fmt.Errorf("%w: none presented", ErrClientCertificate)

// VerifyClient verifies a client's chain against the current CA for client use.
func (r *Reloader) VerifyClient(certs []*x509.Certificate) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, ErrNoClientCertificate
	}
	opts := x509.VerifyOptions{
		Roots:         r.cur.Load().pool,
		Intermediates: x509.NewCertPool(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := certs[0].Verify(opts)
	if err != nil {
		return nil, fmt.Errorf("%w (%s): %w", ErrClientCertificate, Describe(certs[0]), err)
	}
	return chains, nil
}

// ClientCredentials are gRPC transport credentials from ClientConfig.
func (r *Reloader) ClientCredentials(serverName string) credentials.TransportCredentials {
	return credentials.NewTLS(r.ClientConfig(serverName))
}

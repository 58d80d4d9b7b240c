package pki_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/pki"
)

// logs records what a Reloader logs, for tests that count its errors.
type logs struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logs) Enabled(context.Context, slog.Level) bool { return true }
func (l *logs) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r)
	return nil
}
func (l *logs) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logs) WithGroup(string) slog.Handler      { return l }

func (l *logs) count(level slog.Level, prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.records {
		if r.Level == level && strings.HasPrefix(r.Message, prefix) {
			n++
		}
	}
	return n
}

func newPKI(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := pki.Init(dir, pki.InitOptions{Directors: []string{"dir-a"}, Users: []pki.User{{Name: "alice", Role: "admin"}}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func controllerFiles(dir string) pki.Files {
	return pki.Files{Cert: filepath.Join(dir, "controller.crt"), Key: filepath.Join(dir, "controller.key"), CA: filepath.Join(dir, "ca.crt"),
		CertFlag: "--tls-cert", KeyFlag: "--tls-key", CAFlag: "--tls-client-ca"}
}

func directorFiles(dir, name string) pki.Files {
	return pki.Files{Cert: pki.DirectorCertPath(dir, name), Key: pki.DirectorKeyPath(dir, name), CA: filepath.Join(dir, "ca.crt")}
}

func reloader(t *testing.T, f pki.Files, log *slog.Logger) *pki.Reloader {
	t.Helper()
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: f, Logger: log, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// server is a gRPC server with the controller's TLS and a health service; it records the
// serial of each verified client certificate it sees.
type server struct {
	addr    string
	mu      sync.Mutex
	serials []string
}

func (s *server) lastSerial() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.serials) == 0 {
		return ""
	}
	return s.serials[len(s.serials)-1]
}

func startServer(t *testing.T, r *pki.Reloader) *server {
	t.Helper()
	s := &server{}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		c, err := pki.VerifiedPeer(ctx)
		if err == nil {
			s.mu.Lock()
			s.serials = append(s.serials, pki.Serial(c))
			s.mu.Unlock()
		}
		return h(ctx, req)
	}
	g := grpc.NewServer(grpc.Creds(r.ServerCredentials()), grpc.ChainUnaryInterceptor(pki.UnaryAuthenticate, record))
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	s.addr = lis.Addr().String()
	return s
}

// check calls Health.Check on conn and returns the serial of the server certificate seen.
func check(conn *grpc.ClientConn) (string, error) {
	var p peer.Peer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
	if err != nil {
		return "", err
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return "", errors.New("no TLS peer")
	}
	return pki.Serial(info.State.PeerCertificates[0]), nil
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// checkNew makes a new connection (a new handshake) and calls on it.
func checkNew(t *testing.T, addr string, creds credentials.TransportCredentials) (string, error) {
	t.Helper()
	conn := dial(t, addr, creds)
	defer conn.Close()
	return check(conn)
}

func fileSerial(t *testing.T, path string) string {
	t.Helper()
	return pki.Serial(readCert(t, path))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerCertificateReload(t *testing.T) {
	dir := newPKI(t)
	srvR := reloader(t, controllerFiles(dir), nil)
	srv := startServer(t, srvR)
	cli := reloader(t, directorFiles(dir, "dir-a"), nil).ClientCredentials("127.0.0.1")

	old := fileSerial(t, filepath.Join(dir, "controller.crt"))
	held := dial(t, srv.addr, cli)
	if got, err := check(held); err != nil || got != old {
		t.Fatalf("first call: serial %s, %v; want %s", got, err, old)
	}
	if _, err := pki.IssueController(dir, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	rotated := fileSerial(t, filepath.Join(dir, "controller.crt"))
	if err := srvR.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := checkNew(t, srv.addr, cli); err != nil || got != rotated {
		t.Errorf("new connection after reload: serial %s, %v; want the new %s", got, err, rotated)
	}
	if got, err := check(held); err != nil || got != old {
		t.Errorf("connection made before the reload: serial %s, %v; want it kept working on %s", got, err, old)
	}

	// A broken certificate, then a key that is not the certificate's: refused, the old pair
	// keeps serving, and the error names the flag and the file.
	certPath := filepath.Join(dir, "controller.crt")
	good, _ := os.ReadFile(certPath)
	if err := os.WriteFile(certPath, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srvR.Reload(); !errors.Is(err, pki.ErrLoad) || !strings.Contains(err.Error(), "--tls-cert "+certPath) {
		t.Errorf("reload of a broken certificate: %v, want ErrLoad naming --tls-cert and the file", err)
	}
	if got, err := checkNew(t, srv.addr, cli); err != nil || got != rotated {
		t.Errorf("after a broken file: serial %s, %v; want the last good %s", got, err, rotated)
	}
	if err := os.WriteFile(certPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(pki.DirectorKeyPath(dir, "dir-a"))
	if err := os.WriteFile(filepath.Join(dir, "controller.key"), otherKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := srvR.Reload(); !errors.Is(err, pki.ErrLoad) || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("reload with a key of another certificate: %v, want ErrLoad naming --tls-key", err)
	}
	if got, err := checkNew(t, srv.addr, cli); err != nil || got != rotated {
		t.Errorf("after a mismatched key: serial %s, %v; want %s", got, err, rotated)
	}
}

func TestClientCertificateReload(t *testing.T) {
	dir := newPKI(t)
	srv := startServer(t, reloader(t, controllerFiles(dir), nil))
	cliR := reloader(t, directorFiles(dir, "dir-a"), nil)
	conn := dial(t, srv.addr, cliR.ClientCredentials("localhost"))
	if _, err := check(conn); err != nil {
		t.Fatal(err)
	}
	old := fileSerial(t, pki.DirectorCertPath(dir, "dir-a"))
	if got := srv.lastSerial(); got != old {
		t.Fatalf("server saw %s, want %s", got, old)
	}
	if _, err := pki.IssueDirector(dir, "dir-a", 0, true); err != nil {
		t.Fatal(err)
	}
	if err := cliR.Reload(); err != nil {
		t.Fatal(err)
	}
	rotated := fileSerial(t, pki.DirectorCertPath(dir, "dir-a"))
	// The next handshake presents the new certificate (e2e/tls_test.go shows it for an
	// agent's own connection, re-made after the controller restarts).
	if _, err := checkNew(t, srv.addr, cliR.ClientCredentials("localhost")); err != nil {
		t.Fatal(err)
	}
	if got := srv.lastSerial(); got != rotated {
		t.Errorf("server saw %s on a new connection, want the rotated %s", got, rotated)
	}
	if _, err := check(conn); err != nil {
		t.Errorf("connection made before the rotation: %v", err)
	}
}

func TestPollAndSIGHUP(t *testing.T) {
	dir := newPKI(t)
	var l logs
	polled, err := pki.NewReloader(pki.ReloaderConfig{Files: controllerFiles(dir), Logger: slog.New(&l), Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// A second controller whose poll never comes within the test: only SIGHUP reloads it.
	hupDir := newPKI(t)
	hupped, err := pki.NewReloader(pki.ReloaderConfig{Files: controllerFiles(hupDir), Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range []*pki.Reloader{polled, hupped} {
		wg.Go(func() { _ = r.Run(ctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	time.Sleep(50 * time.Millisecond) // both Runs have called signal.Notify

	if _, err := pki.IssueController(dir, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	want := fileSerial(t, filepath.Join(dir, "controller.crt"))
	waitFor(t, "the poll to load the new certificate", func() bool { return pki.Serial(polled.Certificate()) == want })

	if _, err := pki.IssueController(hupDir, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	wantHup := fileSerial(t, filepath.Join(hupDir, "controller.crt"))
	time.Sleep(60 * time.Millisecond)
	if pki.Serial(hupped.Certificate()) == wantHup {
		t.Fatal("reloaded before SIGHUP: the test cannot tell SIGHUP worked")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP to load the new certificate", func() bool { return pki.Serial(hupped.Certificate()) == wantHup })

	// A broken file: the poll keeps the old certificate and logs one error, not one a poll.
	if err := os.WriteFile(filepath.Join(dir, "controller.crt"), []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refusal to be logged", func() bool {
		return l.count(slog.LevelError, "TLS certificate files changed but cannot be used") == 1
	})
	time.Sleep(200 * time.Millisecond) // ten more polls
	if n := l.count(slog.LevelError, "TLS certificate files changed but cannot be used"); n != 1 {
		t.Errorf("%d errors logged for one bad file, want 1", n)
	}
	if got := pki.Serial(polled.Certificate()); got != want {
		t.Errorf("after a bad file the reloader holds %s, want the last good %s", got, want)
	}
}

func TestAuthenticate(t *testing.T) {
	dir := newPKI(t)
	srv := startServer(t, reloader(t, controllerFiles(dir), nil))
	other := newPKI(t) // another CA, with the same names in it

	if _, err := checkNew(t, srv.addr, reloader(t, directorFiles(dir, "dir-a"), nil).ClientCredentials("127.0.0.1")); err != nil {
		t.Fatalf("certificate from the CA: %v", err)
	}
	// Trusting the right server, but presenting a certificate from another CA.
	foreign := pki.Files{Cert: pki.UserCertPath(other, "alice"), Key: pki.UserKeyPath(other, "alice"), CA: filepath.Join(dir, "ca.crt")}
	_, err := checkNew(t, srv.addr, reloader(t, foreign, nil).ClientCredentials("127.0.0.1"))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "client certificate refused (CN=alice OU=admin") ||
		!strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("certificate from another CA: %v, want Unauthenticated naming it and the unknown authority", err)
	}
	// No certificate at all.
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	_, err = checkNew(t, srv.addr, credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no client certificate") || !strings.Contains(err.Error(), "pki issue") {
		t.Errorf("no certificate: %v, want Unauthenticated saying how to make one", err)
	}
	// Plaintext: no call gets through.
	if _, err := checkNew(t, srv.addr, insecure.NewCredentials()); err == nil {
		t.Error("plaintext call succeeded")
	}
	// A server whose certificate the client's CA did not sign: the client refuses it.
	otherSrv := startServer(t, reloader(t, controllerFiles(other), nil))
	_, err = checkNew(t, otherSrv.addr, reloader(t, directorFiles(dir, "dir-a"), nil).ClientCredentials("127.0.0.1"))
	if err == nil || !strings.Contains(err.Error(), "controller certificate refused") {
		t.Errorf("server from another CA: %v, want the client to refuse it", err)
	}
	// A server name the certificate does not hold.
	_, err = checkNew(t, srv.addr, reloader(t, directorFiles(dir, "dir-a"), nil).ClientCredentials("ctl.elsewhere.example"))
	if err == nil || !strings.Contains(err.Error(), "ctl.elsewhere.example") {
		t.Errorf("wrong server name: %v, want a refusal naming it", err)
	}
	// A director's certificate cannot serve: it is for client authentication only.
	asDirector := pki.Files{Cert: pki.DirectorCertPath(dir, "dir-a"), Key: pki.DirectorKeyPath(dir, "dir-a"), CA: filepath.Join(dir, "ca.crt")}
	fake := startServer(t, reloader(t, asDirector, nil))
	if _, err := checkNew(t, fake.addr, reloader(t, directorFiles(dir, "dir-a"), nil).ClientCredentials("127.0.0.1")); err == nil {
		t.Error("a director's certificate was accepted as the controller's")
	}
}

// TestCAReload: a replaced CA bundle applies to the next handshake, both ways.
func TestCAReload(t *testing.T) {
	dir := newPKI(t)
	srvR := reloader(t, controllerFiles(dir), nil)
	srv := startServer(t, srvR)
	cli := reloader(t, directorFiles(dir, "dir-a"), nil).ClientCredentials("127.0.0.1")
	if _, err := checkNew(t, srv.addr, cli); err != nil {
		t.Fatal(err)
	}
	other := newPKI(t)
	otherCA, _ := os.ReadFile(filepath.Join(other, "ca.crt"))
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), otherCA, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := srvR.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := checkNew(t, srv.addr, cli); status.Code(err) != codes.Unauthenticated {
		t.Errorf("client of the replaced CA: %v, want Unauthenticated", err)
	}
}

func TestHTTPServerConfig(t *testing.T) {
	dir := newPKI(t)
	srvR := reloader(t, controllerFiles(dir), nil)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srvR.HTTPServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), ReadHeaderTimeout: time.Second}
	go func() { _ = hs.Serve(lis) }()
	t.Cleanup(func() { hs.Close() })
	url := "https://" + lis.Addr().String() + "/metrics"

	cli := reloader(t, directorFiles(dir, "dir-a"), nil)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: cli.ClientConfig("127.0.0.1")}, Timeout: 5 * time.Second}
	resp, err := withCert.Get(url)
	if err != nil {
		t.Fatalf("with a certificate from the CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	pool := x509.NewCertPool()
	ca, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool.AppendCertsFromPEM(ca)
	without := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	if resp, err := without.Get(url); err == nil {
		resp.Body.Close()
		t.Errorf("without a client certificate: status %d, want the handshake refused", resp.StatusCode)
	}
	tls12 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12,
		GetClientCertificate: cli.ClientConfig("").GetClientCertificate}}, Timeout: 5 * time.Second}
	if resp, err := tls12.Get(url); err == nil {
		resp.Body.Close()
		t.Error("TLS 1.2 accepted, want 1.3 only")
	}
}

func TestReloaderCheck(t *testing.T) {
	dir := newPKI(t)
	wantDirA := func(c *x509.Certificate) error {
		if c.Subject.CommonName != "dir-a" {
			return errors.New("not dir-a's")
		}
		return nil
	}
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: directorFiles(dir, "dir-a"), Check: wantDirA})
	if err != nil {
		t.Fatal(err)
	}
	// A certificate of another director copied over dir-a's files is refused on reload.
	if _, err := pki.IssueDirector(dir, "dir-b", 0, false); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{".crt", ".key"} {
		b, _ := os.ReadFile(filepath.Join(dir, "director-dir-b"+ext))
		if err := os.WriteFile(filepath.Join(dir, "director-dir-a"+ext), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "not dir-a's") {
		t.Errorf("reload of dir-b's certificate for dir-a: %v", err)
	}
	if r.Certificate().Subject.CommonName != "dir-a" {
		t.Errorf("reloader now holds %s", pki.Describe(r.Certificate()))
	}
	// At start, missing files are an error naming the flag and the path.
	_, err = pki.NewReloader(pki.ReloaderConfig{Files: pki.Files{Cert: "/nonexistent/c.crt", Key: "/nonexistent/c.key", CA: "/nonexistent/ca.crt", CertFlag: "--cert"}})
	if !errors.Is(err, pki.ErrLoad) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "--cert /nonexistent/c.crt") {
		t.Errorf("missing files: %v", err)
	}
}

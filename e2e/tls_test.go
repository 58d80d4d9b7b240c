package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/agent/daemon"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/cli/commands"
	"github.com/lvsctl/lvsctl/cli/printer"
	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	"github.com/lvsctl/lvsctl/pki"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// tlsEnv is a controller serving TLS 1.3 with client certificates, from a pki directory made
// by pki.Init, as `lvs-controller --tls-dir DIR` runs it. Its certificates are re-read every
// 50 ms, so a test that rotates one waits a few polls, not seconds.
type tlsEnv struct {
	ctl *ctlProc
	// dir holds ca.crt, controller.crt/.key, director-NAME.crt/.key and user-NAME.crt/.key.
	dir string
	// seen records the controller's log, where each verified TLS client is named with the
	// serial of its certificate.
	seen *recorder
}

// startTLSController makes a CA with the given directors and users and starts a controller
// with it (metrics over HTTPS too). The controller stops when the test ends.
func startTLSController(t *testing.T, directors []string, users []pki.User) *tlsEnv {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pki")
	if _, err := pki.Init(dir, pki.InitOptions{Directors: directors, Users: users}); err != nil {
		t.Fatal(err)
	}
	ports := storetest.FreePorts(t, 4)
	rec := &recorder{}
	cfg := controller.Config{
		DataDir:           filepath.Join(t.TempDir(), "etcd"),
		Listen:            ports[0],
		EtcdClientURL:     "http://" + ports[1],
		EtcdPeerURL:       "http://" + ports[2],
		MetricsListen:     ports[3],
		MetricsTLS:        true,
		TLSCert:           filepath.Join(dir, pki.ControllerCertFile),
		TLSKey:            filepath.Join(dir, pki.ControllerKeyFile),
		TLSClientCA:       filepath.Join(dir, pki.CACertFile),
		TLSReloadInterval: 50 * time.Millisecond,
		EtcdLogLevel:      "fatal",
		Logger:            slog.New(teeHandler{rec, testLogger(t).Handler()}).With("component", "controller"),
	}
	p := &ctlProc{t: t, cfg: cfg}
	p.start()
	t.Cleanup(p.stop)
	return &tlsEnv{ctl: p, dir: dir, seen: rec}
}

// files are a director's or a user's certificate files, with the CA.
func (e *tlsEnv) directorFiles(name string) pki.Files {
	return pki.Files{Cert: pki.DirectorCertPath(e.dir, name), Key: pki.DirectorKeyPath(e.dir, name), CA: filepath.Join(e.dir, pki.CACertFile)}
}

func (e *tlsEnv) userFiles(name string) pki.Files {
	return pki.Files{Cert: pki.UserCertPath(e.dir, name), Key: pki.UserKeyPath(e.dir, name), CA: filepath.Join(e.dir, pki.CACertFile)}
}

// lvsctl runs the real CLI as user (its certificate from e.dir) and returns its exit code
// and outputs.
func (e *tlsEnv) lvsctl(user string, args ...string) (int, string, string) {
	f := e.userFiles(user)
	return runLvsctl(append([]string{"--controller", e.ctl.cfg.Listen, "--ca", f.CA, "--cert", f.Cert, "--key", f.Key}, args...)...)
}

func runLvsctl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	s := commands.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}
	code := commands.Run(context.Background(), append([]string{"--timeout", "10s"}, args...), s, func(string) string { return "" })
	return code, out.String(), errOut.String()
}

// dial is a gRPC client presenting f's certificate; each call to it is a new connection.
func (e *tlsEnv) dial(t *testing.T, f pki.Files) clients {
	t.Helper()
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: f})
	if err != nil {
		t.Fatal(err)
	}
	return dialCreds(t, e.ctl.cfg.Listen, r.ClientCredentials("127.0.0.1"))
}

func dialCreds(t *testing.T, target string, creds credentials.TransportCredentials) clients {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{config: lvsctlv1.NewConfigServiceClient(conn), status: lvsctlv1.NewStatusServiceClient(conn)}
}

// startAgent runs director name's agent (fake kernel parts) with its certificate from e.dir,
// re-read every 50 ms; the returned Reloader shows which certificate it holds.
func (e *tlsEnv) startAgent(t *testing.T, name string) (*agentProc, *pki.Reloader) {
	t.Helper()
	log := testLogger(t).With("component", "agent", "director", name)
	certs, err := pki.NewReloader(pki.ReloaderConfig{Files: e.directorFiles(name), Logger: log, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{name: name, ipvs: fake.NewIPVS(), fw: fake.NewFirewall(), addrs: fake.NewAddresses("eth0", "eth1")}
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: a.ipvs, Firewall: a.fw, Addresses: a.addrs, State: st})
	sess := session.New(session.Config{Target: e.ctl.cfg.Listen, Credentials: certs.ClientCredentials("127.0.0.1"), Logger: log,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	ag := daemon.New(daemon.Config{Director: name, Version: "test", Logger: log, State: st, Reconciler: rec, Session: sess, Resync: time.Hour,
		Stats: stats.NewReporter(a.ipvs), StatsPeriod: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan error, 1)
	go func() { a.done <- ag.Run(ctx) }()
	reloaded := make(chan struct{})
	go func() { _ = certs.Run(ctx); close(reloaded) }()
	t.Cleanup(func() {
		cancel()
		<-reloaded
		if err := <-a.done; err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	})
	return a, certs
}

// recorder keeps the log records a test looks at.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) add(rec slog.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
}

// verified lists the serials of the certificates the controller verified for clients
// named cn, in order.
func (r *recorder) verified(cn string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		if rec.Message != "TLS client verified" {
			continue
		}
		attrs := map[string]string{}
		rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if attrs["cn"] == cn {
			out = append(out, attrs["serial"])
		}
	}
	return out
}

// teeHandler sends every record to the recorder and on to h.
type teeHandler struct {
	rec *recorder
	h   slog.Handler
}

func (t teeHandler) Enabled(context.Context, slog.Level) bool { return true }
func (t teeHandler) Handle(ctx context.Context, r slog.Record) error {
	t.rec.add(r)
	if t.h.Enabled(ctx, r.Level) {
		return t.h.Handle(ctx, r)
	}
	return nil
}
func (t teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return teeHandler{t.rec, t.h.WithAttrs(as)}
}
func (t teeHandler) WithGroup(g string) slog.Handler { return teeHandler{t.rec, t.h.WithGroup(g)} }

// serverSerial makes a new connection with f's certificate and returns the serial of the
// controller certificate it was shown.
func (e *tlsEnv) serverSerial(t *testing.T, f pki.Files) string {
	t.Helper()
	c := e.dial(t, f)
	var p grpcpeer.Peer
	if _, err := c.config.List(context.Background(), &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER}, grpc.Peer(&p)); err != nil {
		t.Fatalf("list: %v", err)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatalf("no TLS peer: %v", p.AuthInfo)
	}
	if info.State.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", info.State.Version)
	}
	return pki.Serial(info.State.PeerCertificates[0])
}

func certSerial(t *testing.T, f pki.Files) string {
	t.Helper()
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: f})
	if err != nil {
		t.Fatal(err)
	}
	return pki.Serial(r.Certificate())
}

// TestTLS: controller, agent and lvsctl over TLS with certificates from `pki init`; strangers
// refused; the agent's and the controller's certificates rotated while connected.
func TestTLS(t *testing.T) {
	env := startTLSController(t, []string{"dir-a"}, []pki.User{{Name: "alice", Role: pki.RoleAdmin}})
	dirA, agentCerts := env.startAgent(t, "dir-a")
	admin := env.dial(t, env.userFiles("alice"))

	// lvsctl applies, the agent applies, lvsctl status shows it.
	code, out, errOut := env.lvsctl("alice", "apply", "-f", "../deploy/examples/wms.yaml")
	if code != 0 {
		t.Fatalf("lvsctl apply: exit %d: %s", code, errOut)
	}
	got, err := admin.config.Get(context.Background(), &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatalf("get after apply (%s): %v", out, err)
	}
	rev := got.GetObject().GetCluster().GetRevision()
	waitApplied(t, admin, rev, "dir-a")
	if svcs, _ := dirA.ipvs.Services(); len(svcs) != 1 {
		t.Errorf("dir-a's IPVS services: %v, want wms's one", svcs)
	}
	code, out, errOut = env.lvsctl("alice", "status", "-o", "json")
	if code != 0 {
		t.Fatalf("lvsctl status: exit %d: %s", code, errOut)
	}
	if !statusApplied(t, out, "dir-a", rev) {
		t.Errorf("lvsctl status -o json does not show dir-a connected with revision %d applied:\n%s", rev, out)
	}
	agentSerial := certSerial(t, env.directorFiles("dir-a"))
	if v := env.seen.verified("dir-a"); len(v) != 1 || v[0] != agentSerial {
		t.Errorf("the controller verified dir-a with serials %v, want one connection with %s", v, agentSerial)
	}

	// Strangers: a certificate from another CA, no certificate, plaintext.
	other := filepath.Join(t.TempDir(), "other")
	if _, err := pki.Init(other, pki.InitOptions{Users: []pki.User{{Name: "alice", Role: pki.RoleAdmin}}}); err != nil {
		t.Fatal(err)
	}
	foreign := pki.Files{Cert: pki.UserCertPath(other, "alice"), Key: pki.UserKeyPath(other, "alice"), CA: filepath.Join(env.dir, pki.CACertFile)}
	_, err = env.dial(t, foreign).config.Apply(context.Background(), &lvsctlv1.ApplyRequest{})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("apply with a certificate from another CA: %v, want Unauthenticated (unknown authority)", err)
	}
	code, _, errOut = runLvsctl("--controller", env.ctl.cfg.Listen, "--ca", foreign.CA, "--cert", foreign.Cert, "--key", foreign.Key, "delete", "cluster", "wms")
	if code == 0 || !strings.Contains(errOut, "did not accept the certificate") {
		t.Errorf("lvsctl with another CA's certificate: exit %d, %q", code, errOut)
	}
	_, err = dialCreds(t, env.ctl.cfg.Listen, insecure.NewCredentials()).config.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err == nil {
		t.Error("plaintext delete succeeded")
	}
	code, _, _ = runLvsctl("--controller", env.ctl.cfg.Listen, "--insecure", "delete", "cluster", "wms")
	if code == 0 {
		t.Error("lvsctl --insecure against the TLS controller: exit 0")
	}
	if _, err := admin.config.Get(context.Background(), &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"}); err != nil {
		t.Errorf("wms after the strangers' deletes: %v", err)
	}

	// /metrics over HTTPS: with a certificate from the CA, and not without.
	metricsURL := "https://" + env.ctl.cfg.MetricsListen + "/metrics"
	aliceR, err := pki.NewReloader(pki.ReloaderConfig{Files: env.userFiles("alice")})
	if err != nil {
		t.Fatal(err)
	}
	body, err := httpsGet(metricsURL, aliceR.ClientConfig("127.0.0.1"))
	if err != nil || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics with a certificate: %v %.200q", err, body)
	}
	noCert := aliceR.ClientConfig("127.0.0.1")
	noCert.GetClientCertificate = nil
	if _, err := httpsGet(metricsURL, noCert); err == nil {
		t.Error("metrics without a client certificate answered")
	}

	// Rotation while connected: new controller and agent certificates from the same CA.
	oldCtl := env.serverSerial(t, env.userFiles("alice"))
	if _, err := pki.IssueController(env.dir, nil, 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := pki.IssueDirector(env.dir, "dir-a", 0, true); err != nil {
		t.Fatal(err)
	}
	newCtl := certSerial(t, pki.Files{Cert: filepath.Join(env.dir, pki.ControllerCertFile), Key: filepath.Join(env.dir, pki.ControllerKeyFile), CA: filepath.Join(env.dir, pki.CACertFile)})
	newAgent := certSerial(t, env.directorFiles("dir-a"))
	if newCtl == oldCtl || newAgent == agentSerial {
		t.Fatal("rotation kept the serials")
	}
	// The controller's new certificate is shown to the next connection, without a restart.
	waitUntil(t, 5*time.Second, "the controller's next connection to show its new certificate", func() bool {
		return env.serverSerial(t, env.userFiles("alice")) == newCtl
	})
	waitUntil(t, 5*time.Second, "the agent to reload its certificate", func() bool { return pki.Serial(agentCerts.Certificate()) == newAgent })
	// The agent's stream, opened before both rotations, keeps working: a change is applied
	// through it, and the controller saw no new connection from dir-a.
	wms := got.GetObject().GetCluster()
	wms.Reals[0].Weight = 42
	upd, err := admin.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: wms}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, admin, upd.GetRevision(), "dir-a")
	if v := env.seen.verified("dir-a"); len(v) != 1 {
		t.Errorf("dir-a connected %d times before the forced reconnect, want its first stream kept: %v", len(v), v)
	}
	// Forced reconnect: the controller restarts (loading its files afresh); the agent's
	// session reconnects on the same ClientConn and presents its new certificate.
	env.ctl.stop()
	env.ctl.start()
	admin = env.dial(t, env.userFiles("alice"))
	waitApplied(t, admin, upd.GetRevision(), "dir-a")
	if v := env.seen.verified("dir-a"); len(v) < 2 || v[len(v)-1] != newAgent || slices.Contains(v[1:], agentSerial) {
		t.Errorf("serials the controller saw from dir-a: %v, want %s then %s", v, agentSerial, newAgent)
	}
	code, out, errOut = env.lvsctl("alice", "status", "-o", "json")
	if code != 0 || !statusApplied(t, out, "dir-a", upd.GetRevision()) {
		t.Errorf("lvsctl status after the rotation: exit %d %s\n%s", code, errOut, out)
	}
}

// statusApplied reports whether `lvsctl status -o json` shows director connected with rev
// applied.
func statusApplied(t *testing.T, out, director string, rev int64) bool {
	t.Helper()
	var views []printer.DirectorView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		var wrapped struct {
			Directors []printer.DirectorView `json:"directors"`
		}
		if err2 := json.Unmarshal([]byte(out), &wrapped); err2 != nil {
			t.Fatalf("status -o json: %v / %v:\n%s", err, err2, out)
		}
		views = wrapped.Directors
	}
	for _, v := range views {
		if v.Name == director && v.Connected && v.AppliedRevision == rev && v.State == printer.StateApplied {
			return true
		}
	}
	return false
}

func httpsGet(url string, cfg *tls.Config) (string, error) {
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestTLSControllerRefusals: the controller will not serve plaintext beyond loopback, and
// without certificates it says which file is missing and how to make them.
func TestTLSControllerRefusals(t *testing.T) {
	ports := storetest.FreePorts(t, 1)
	port := ports[0][strings.LastIndex(ports[0], ":"):]
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  controller.Config
		want []string
	}{
		{"insecure on every address", controller.Config{Listen: "0.0.0.0" + port, Insecure: true, DataDir: dir},
			[]string{"--insecure with --listen 0.0.0.0" + port, "loopback only"}},
		{"insecure on a LAN address", controller.Config{Listen: "192.0.2.1" + port, Insecure: true, DataDir: dir},
			[]string{"--insecure with --listen 192.0.2.1" + port}},
		{"no certificates", controller.Config{Listen: ports[0], DataDir: dir, TLSCert: filepath.Join(dir, "controller.crt"), TLSKey: filepath.Join(dir, "controller.key"), TLSClientCA: filepath.Join(dir, "ca.crt")},
			[]string{"--tls-cert " + filepath.Join(dir, "controller.crt"), "no such file", "lvs-controller pki init", "--tls-dir"}},
		{"metrics TLS without TLS", controller.Config{Listen: ports[0], Insecure: true, MetricsTLS: true, DataDir: dir},
			[]string{"--metrics-tls"}},
	} {
		c, err := controller.Start(context.Background(), tc.cfg)
		if err == nil {
			c.Close()
			t.Errorf("%s: started", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}
}

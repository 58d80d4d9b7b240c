package auth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/auth"
	"github.com/lvsctl/lvsctl/pki"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestFromCertificate: a certificate makes an identity only with a name and exactly one
// role OU; each refusal says what the certificate lacks.
func TestFromCertificate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cn   string
		ous  []string
		want auth.Identity
		err  string // a part of the refusal; "" when accepted
	}{
		{"director", "dir-a", []string{"director"}, auth.Identity{Name: "dir-a", Role: auth.Director}, ""},
		{"viewer", "carol", []string{"viewer"}, auth.Identity{Name: "carol", Role: auth.Viewer}, ""},
		{"operator", "bob", []string{"operator"}, auth.Identity{Name: "bob", Role: auth.Operator}, ""},
		{"admin", "alice", []string{"admin"}, auth.Identity{Name: "alice", Role: auth.Admin}, ""},
		{"no name", "", []string{"admin"}, auth.Identity{}, "no Subject CommonName"},
		{"no role", "alice", nil, auth.Identity{}, `has 0 Subject OrganizationalUnits []: want exactly one, the role (director, viewer, operator, admin)`},
		{"two roles", "alice", []string{"viewer", "admin"}, auth.Identity{}, `has 2 Subject OrganizationalUnits ["viewer" "admin"]`},
		{"the controller's", "controller", []string{"controller"}, auth.Identity{}, `unknown role "controller": want one of director, viewer, operator, admin`},
		{"capitalised role", "alice", []string{"Admin"}, auth.Identity{}, `unknown role "Admin"`},
		{"reserved name", auth.InsecureName, []string{"admin"}, auth.Identity{}, "reserved for callers of an --insecure controller"},
		{"control character", "alice\nadmin", []string{"admin"}, auth.Identity{}, "characters other than printable ones"},
		{"long name", strings.Repeat("a", 300), []string{"viewer"}, auth.Identity{}, "is 300 bytes, over the limit of 253"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth.FromCertificate(&x509.Certificate{Subject: pkix.Name{CommonName: tc.cn, OrganizationalUnit: tc.ous}})
			if tc.err == "" {
				if err != nil || id != tc.want {
					t.Fatalf("got %v, %v; want %v", id, err, tc.want)
				}
				return
			}
			if !errors.Is(err, auth.ErrCertificate) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, %v; want a refusal saying %q", id, err, tc.err)
			}
		})
	}
}

// TestTable: each RPC's required role, and what each role may and may not call.
func TestTable(t *testing.T) {
	want := map[string]auth.Role{
		"/lvsctl.v1.ConfigService/Get":                                   auth.Viewer,
		"/lvsctl.v1.ConfigService/List":                                  auth.Viewer,
		"/lvsctl.v1.ConfigService/History":                               auth.Viewer,
		"/lvsctl.v1.StatusService/List":                                  auth.Viewer,
		"/lvsctl.v1.StatusService/Watch":                                 auth.Viewer,
		"/lvsctl.v1.StatusService/ListControllers":                       auth.Viewer,
		"/lvsctl.v1.ConfigService/Drain":                                 auth.Operator,
		"/lvsctl.v1.ConfigService/Failover":                              auth.Operator,
		"/lvsctl.v1.ConfigService/Apply":                                 auth.Admin,
		"/lvsctl.v1.ConfigService/Delete":                                auth.Admin,
		"/lvsctl.v1.ConfigService/Rollback":                              auth.Admin,
		"/lvsctl.v1.AgentService/Connect":                                auth.Director,
		"/grpc.health.v1.Health/Check":                                   auth.Any,
		"/grpc.health.v1.Health/Watch":                                   auth.Any,
		"/grpc.health.v1.Health/List":                                    auth.Any,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      auth.Viewer,
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": auth.Viewer,
	}
	got := auth.Methods()
	for m, r := range want {
		if got[m] != r {
			t.Errorf("%s needs %v, want %v", m, got[m], r)
		}
	}
	for m := range got {
		if _, ok := want[m]; !ok {
			t.Errorf("%s is in the table (needs %v) but not in this test: decide and add it here", m, got[m])
		}
	}

	id := func(r auth.Role) auth.Identity { return auth.Identity{Name: "someone", Role: r} }
	config := func(m string) string { return "/lvsctl.v1.ConfigService/" + m }
	for _, tc := range []struct {
		role   auth.Role
		method string
		denied string // the refusal's message; "" when allowed
	}{
		{auth.Viewer, config("Apply"), "role viewer may not call ConfigService/Apply (needs admin)"},
		{auth.Viewer, config("Drain"), "role viewer may not call ConfigService/Drain (needs operator)"},
		{auth.Viewer, config("Get"), ""},
		{auth.Viewer, config("History"), ""},
		{auth.Viewer, "/lvsctl.v1.StatusService/Watch", ""},
		{auth.Viewer, "/lvsctl.v1.AgentService/Connect", "role viewer may not call AgentService/Connect (needs director)"},
		{auth.Operator, config("Delete"), "role operator may not call ConfigService/Delete (needs admin)"},
		{auth.Operator, config("Rollback"), "role operator may not call ConfigService/Rollback (needs admin)"},
		{auth.Operator, config("Drain"), ""},
		{auth.Operator, config("Failover"), ""},
		{auth.Operator, config("List"), ""},
		{auth.Admin, "/lvsctl.v1.AgentService/Connect", "role admin may not call AgentService/Connect (needs director)"},
		{auth.Director, config("Get"), "role director may not call ConfigService/Get (needs viewer)"},
		{auth.Director, "/lvsctl.v1.StatusService/List", "role director may not call StatusService/List (needs viewer)"},
		{auth.Director, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "role director may not call ServerReflection/ServerReflectionInfo (needs viewer)"},
		{auth.Director, "/lvsctl.v1.AgentService/Connect", ""},
		{auth.Director, "/grpc.health.v1.Health/Check", ""},
		{auth.Viewer, "/grpc.health.v1.Health/Watch", ""},
		{auth.Admin, "/lvsctl.v1.ConfigService/Shutdown", "ConfigService/Shutdown is not in the controller's role table: no role may call it"},
		{auth.NoRole, config("Get"), "role Role(0) may not call ConfigService/Get (needs viewer)"},
		{auth.NoRole, "/grpc.health.v1.Health/Check", "role Role(0) may not call Health/Check (needs any identity)"},
	} {
		err := auth.Allowed(id(tc.role), tc.method)
		switch {
		case tc.denied == "" && err != nil:
			t.Errorf("%v calling %s: %v, want allowed", tc.role, tc.method, err)
		case tc.denied != "" && (err == nil || err.Error() != tc.denied || !errors.Is(err, auth.ErrDenied)):
			t.Errorf("%v calling %s: %v, want denied: %q", tc.role, tc.method, err, tc.denied)
		}
	}
	// Admin may call all of ConfigService.
	for _, m := range lvsctlv1.ConfigService_ServiceDesc.Methods {
		if err := auth.Allowed(id(auth.Admin), config(m.MethodName)); err != nil {
			t.Errorf("admin calling %s: %v", m.MethodName, err)
		}
	}
}

// server is a controller stand-in: ConfigService and AgentService that report who called
// (every call that gets through the interceptor reaches them), and health.
type server struct {
	lvsctlv1.UnimplementedConfigServiceServer
	lvsctlv1.UnimplementedAgentServiceServer
}

// Get answers NotFound with who asked: what the handler sees of the identity.
func (server) Get(ctx context.Context, _ *lvsctlv1.GetRequest) (*lvsctlv1.GetResponse, error) {
	return nil, status.Error(codes.NotFound, auth.Who(ctx))
}

// Connect reads the Hello and checks it as the hub does, then sends one message.
func (server) Connect(stream grpc.BidiStreamingServer[lvsctlv1.ConnectRequest, lvsctlv1.ConnectResponse]) error {
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := auth.SpeakFor(stream.Context(), m.GetHello().GetDirector()); err != nil {
		return err
	}
	return stream.Send(&lvsctlv1.ConnectResponse{})
}

// serve starts the stand-in with an Authenticator's interceptors, over TLS when tc is set;
// it returns the address.
func serve(t *testing.T, cfg auth.Config, tc *tls.Config) string {
	t.Helper()
	if tc == nil {
		return serveWith(t, cfg)
	}
	return serveWith(t, cfg, grpc.Creds(credentials.NewTLS(tc)))
}

func serveWith(t *testing.T, cfg auth.Config, opts ...grpc.ServerOption) string {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	a := auth.New(cfg)
	opts = append(opts, grpc.ChainUnaryInterceptor(a.Unary), grpc.ChainStreamInterceptor(a.Stream))
	g := grpc.NewServer(opts...)
	s := server{}
	lvsctlv1.RegisterConfigServiceServer(g, s)
	lvsctlv1.RegisterAgentServiceServer(g, s)
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

// client is one caller's connection.
type client struct {
	conn *grpc.ClientConn
}

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) client {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return client{conn: conn}
}

func tlsCreds(ca *testCA, cert *tls.Certificate) credentials.TransportCredentials {
	c := &tls.Config{RootCAs: ca.pool, MinVersion: tls.VersionTLS13}
	if cert != nil {
		// Presented whatever CAs the server asks for, as pki's clients (and a hostile
		// one) do; Certificates would leave out one the server's CAs did not sign.
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return credentials.NewTLS(c)
}

// call makes one RPC by its short name and returns its status.
func (c client) call(t *testing.T, method string) *status.Status {
	t.Helper()
	ctx := context.Background()
	cfg := lvsctlv1.NewConfigServiceClient(c.conn)
	var err error
	switch method {
	case "Get":
		_, err = cfg.Get(ctx, &lvsctlv1.GetRequest{})
	case "Apply":
		_, err = cfg.Apply(ctx, &lvsctlv1.ApplyRequest{DryRun: true})
	case "Delete":
		_, err = cfg.Delete(ctx, &lvsctlv1.DeleteRequest{})
	case "Drain":
		_, err = cfg.Drain(ctx, &lvsctlv1.DrainRequest{})
	case "Health":
		_, err = healthpb.NewHealthClient(c.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	default:
		t.Fatalf("no such test call %q", method)
	}
	return status.Convert(err)
}

// connect opens the agent stream saying Hello as director and returns how it ended up:
// OK once the server answered.
func (c client) connect(t *testing.T, director string) *status.Status {
	t.Helper()
	s, err := lvsctlv1.NewAgentServiceClient(c.conn).Connect(context.Background())
	if err != nil {
		return status.Convert(err)
	}
	if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: director}}}); err != nil && err != io.EOF {
		return status.Convert(err)
	}
	_, err = s.Recv()
	return status.Convert(err)
}

type want struct {
	code codes.Code
	msg  string // the status message must contain it
}

func check(t *testing.T, what string, got *status.Status, w want) {
	t.Helper()
	if got.Code() != w.code || !strings.Contains(got.Message(), w.msg) {
		t.Errorf("%s: %v %q, want %v with %q", what, got.Code(), got.Message(), w.code, w.msg)
	}
}

// TestRolesOverTLS: real TLS 1.3 over loopback with a throwaway CA, client certificates
// required and verified by the handshake: each identity reaches what its role allows (the
// handler sees who it is) and is refused the rest with PermissionDenied naming the role
// needed; a director speaks only for itself; certificates that make no identity are
// Unauthenticated and say what they lack.
func TestRolesOverTLS(t *testing.T) {
	ca := newCA(t, "lvsctl test CA")
	serverCert := ca.issue(t, "controller", []string{"controller"}, true)
	addr := serve(t, auth.Config{}, &tls.Config{
		Certificates: []tls.Certificate{serverCert}, ClientCAs: ca.pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS13,
	})
	as := func(cn, ou string) client {
		cert := ca.issue(t, cn, []string{ou}, false)
		return dial(t, addr, tlsCreds(ca, &cert))
	}
	unimplemented := want{codes.Unimplemented, ""} // allowed: the stand-in does not serve it

	viewer := as("carol", "viewer")
	check(t, "viewer Get", viewer.call(t, "Get"), want{codes.NotFound, "carol (viewer)"})
	check(t, "viewer Apply --dry-run", viewer.call(t, "Apply"), want{codes.PermissionDenied, "role viewer may not call ConfigService/Apply (needs admin)"})
	check(t, "viewer Drain", viewer.call(t, "Drain"), want{codes.PermissionDenied, "(needs operator)"})
	check(t, "viewer Connect", viewer.connect(t, "dir-a"), want{codes.PermissionDenied, "role viewer may not call AgentService/Connect (needs director)"})

	operator := as("bob", "operator")
	check(t, "operator Drain", operator.call(t, "Drain"), unimplemented)
	check(t, "operator Delete", operator.call(t, "Delete"), want{codes.PermissionDenied, "role operator may not call ConfigService/Delete (needs admin)"})

	admin := as("alice", "admin")
	check(t, "admin Get", admin.call(t, "Get"), want{codes.NotFound, "alice (admin)"})
	check(t, "admin Apply", admin.call(t, "Apply"), unimplemented)
	check(t, "admin Delete", admin.call(t, "Delete"), unimplemented)
	check(t, "admin Connect", admin.connect(t, "dir-a"), want{codes.PermissionDenied, "role admin may not call AgentService/Connect (needs director)"})

	dirB := as("dir-b", "director")
	check(t, "dir-b as dir-b", dirB.connect(t, "dir-b"), want{codes.OK, ""})
	check(t, "dir-b as dir-a", dirB.connect(t, "dir-a"), want{codes.PermissionDenied, "certificate for dir-b cannot speak for dir-a"})
	check(t, "dir-b Get", dirB.call(t, "Get"), want{codes.PermissionDenied, "role director may not call ConfigService/Get (needs viewer)"})
	check(t, "dir-b health", dirB.call(t, "Health"), want{codes.OK, ""})

	// A controller's certificate only relays callers to the leader (forward.go), naming them.
	check(t, "the controller's own certificate", as("controller", "controller").call(t, "Health"),
		want{codes.Unauthenticated, "a controller's certificate (controller) calls only on behalf of a caller it relays"})
	noRole := ca.issue(t, "dave", nil, false)
	check(t, "a certificate without a role", dial(t, addr, tlsCreds(ca, &noRole)).call(t, "Health"),
		want{codes.Unauthenticated, "has 0 Subject OrganizationalUnits"})

	// Another CA's certificate never gets past the handshake.
	other := newCA(t, "another CA")
	stranger := other.issue(t, "alice", []string{"admin"}, false)
	if got := dial(t, addr, tlsCreds(ca, &stranger)).call(t, "Get"); got.Code() == codes.OK || got.Code() == codes.NotFound {
		t.Errorf("a certificate from another CA: %v %q, want refused", got.Code(), got.Message())
	}
	// Plaintext gets no answer from a TLS server either.
	if got := dial(t, addr, insecure.NewCredentials()).call(t, "Health"); got.Code() == codes.OK {
		t.Errorf("a plaintext client: %v, want refused", got)
	}
}

// TestUntrustedIsUnauthenticated: behind pki's server credentials (which verify after the
// handshake against the current CA), a missing certificate or another CA's is refused
// with Unauthenticated and what is wrong, as the issue's contract says; the CA's own
// certificates get their roles.
func TestUntrustedIsUnauthenticated(t *testing.T) {
	ca := newCA(t, "lvsctl test CA")
	dir := t.TempDir()
	files := pki.Files{Cert: filepath.Join(dir, "controller.crt"), Key: filepath.Join(dir, "controller.key"), CA: filepath.Join(dir, "ca.crt")}
	ca.write(t, ca.issue(t, "controller", []string{"controller"}, true), files)
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: files})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveWith(t, auth.Config{}, grpc.Creds(r.ServerCredentials()))
	other := newCA(t, "another CA")
	stranger := other.issue(t, "alice", []string{"admin"}, false)
	check(t, "another CA's certificate", dial(t, addr, tlsCreds(ca, &stranger)).call(t, "Get"),
		want{codes.Unauthenticated, "client certificate refused"})
	check(t, "no certificate", dial(t, addr, tlsCreds(ca, nil)).call(t, "Get"),
		want{codes.Unauthenticated, "no client certificate"})
	mine := ca.issue(t, "alice", []string{"admin"}, false)
	check(t, "the CA's admin", dial(t, addr, tlsCreds(ca, &mine)).call(t, "Get"), want{codes.NotFound, "alice (admin)"})
	viewer := ca.issue(t, "carol", []string{"viewer"}, false)
	check(t, "the CA's viewer", dial(t, addr, tlsCreds(ca, &viewer)).call(t, "Apply"),
		want{codes.PermissionDenied, "role viewer may not call ConfigService/Apply (needs admin)"})
	dirB := ca.issue(t, "dir-b", []string{"director"}, false)
	check(t, "dir-b as dir-a", dial(t, addr, tlsCreds(ca, &dirB)).connect(t, "dir-a"),
		want{codes.PermissionDenied, "certificate for dir-b cannot speak for dir-a"})
}

// TestInsecureLoopback: a controller started --insecure takes every loopback caller for
// the admin "insecure-loopback", who may also open the agent stream as any director (the
// existing tests and e2e run so); a controller that is not insecure refuses plaintext.
func TestInsecureLoopback(t *testing.T) {
	c := dial(t, serve(t, auth.Config{Insecure: true}, nil), insecure.NewCredentials())
	check(t, "Get", c.call(t, "Get"), want{codes.NotFound, "insecure-loopback (admin)"})
	check(t, "Apply", c.call(t, "Apply"), want{codes.Unimplemented, ""})
	check(t, "Connect as dir-a", c.connect(t, "dir-a"), want{codes.OK, ""})
	check(t, "Connect as dir-b", c.connect(t, "dir-b"), want{codes.OK, ""})

	plain := dial(t, serve(t, auth.Config{}, nil), insecure.NewCredentials())
	check(t, "plaintext to a secure server", plain.call(t, "Get"), want{codes.Unauthenticated, "no TLS connection"})
	check(t, "plaintext agent to a secure server", plain.connect(t, "dir-a"), want{codes.Unauthenticated, "no TLS connection"})

	// A caller from elsewhere is refused even by an insecure controller (which listens on
	// loopback only: this is the second lock).
	a := auth.New(auth.Config{Insecure: true})
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 4000}})
	_, err := a.Unary(ctx, nil, &grpc.UnaryServerInfo{FullMethod: lvsctlv1.ConfigService_Get_FullMethodName},
		func(context.Context, any) (any, error) { t.Error("the handler ran"); return nil, nil })
	check(t, "insecure, from 192.0.2.1", status.Convert(err), want{codes.Unauthenticated, "192.0.2.1:4000 is not a loopback address"})
}

// TestSpeakForWithoutInterceptor: the agent stream refuses a caller the interceptor did
// not identify (a server wired without it fails closed).
func TestSpeakForWithoutInterceptor(t *testing.T) {
	err := auth.SpeakFor(context.Background(), "dir-a")
	check(t, "no identity", status.Convert(err), want{codes.Unauthenticated, "needs a director's client certificate"})
	err = auth.SpeakFor(auth.WithIdentity(context.Background(), auth.Identity{Name: "alice", Role: auth.Admin}), "dir-a")
	check(t, "an admin's certificate", status.Convert(err), want{codes.PermissionDenied, "role admin cannot speak for director dir-a"})
	if err := auth.SpeakFor(auth.WithIdentity(context.Background(), auth.Identity{Name: "dir-a", Role: auth.Director}), "dir-a"); err != nil {
		t.Errorf("dir-a's certificate for dir-a: %v", err)
	}
	if got := auth.Who(context.Background()); got != "unknown" {
		t.Errorf("Who without identity = %q, want unknown", got)
	}
}

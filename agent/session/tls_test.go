package session_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/pki"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestTLS: with Credentials the session speaks TLS and presents the director's certificate;
// with neither Credentials nor Insecure it refuses to start.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(dir, pki.InitOptions{Directors: []string{"dir-a"}}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, pki.CACertFile)
	srvCerts, err := pki.NewReloader(pki.ReloaderConfig{Files: pki.Files{Cert: filepath.Join(dir, pki.ControllerCertFile), Key: filepath.Join(dir, pki.ControllerKeyFile), CA: ca}})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 10)
	who := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if c, err := pki.VerifiedPeer(ss.Context()); err == nil {
			seen <- c.Subject.CommonName
		}
		return h(srv, ss)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(srvCerts.ServerCredentials()), grpc.ChainStreamInterceptor(pki.StreamAuthenticate, who))
	c := newController(answer(20 * time.Millisecond))
	lvsctlv1.RegisterAgentServiceServer(srv, c)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	agentCerts, err := pki.NewReloader(pki.ReloaderConfig{Files: pki.Files{Cert: pki.DirectorCertPath(dir, "dir-a"), Key: pki.DirectorKeyPath(dir, "dir-a"), CA: ca}})
	if err != nil {
		t.Fatal(err)
	}
	s := session.New(session.Config{Target: lis.Addr().String(), Credentials: agentCerts.ClientCredentials("127.0.0.1"), Logger: testLogger(t)})
	run(t, s, func() *lvsctlv1.Hello { return &lvsctlv1.Hello{Director: "dir-a"} })
	if m := next(t, c, 5*time.Second); m.GetHello().GetDirector() != "dir-a" {
		t.Errorf("first message %v, want dir-a's Hello", m)
	}
	if cn := <-seen; cn != "dir-a" {
		t.Errorf("the controller verified %q, want dir-a", cn)
	}

	err = session.New(session.Config{Target: lis.Addr().String()}).Run(context.Background(), func() *lvsctlv1.Hello { return nil }, func(*lvsctlv1.ConnectResponse) {})
	if !errors.Is(err, session.ErrNoCredentials) {
		t.Errorf("no credentials: %v, want ErrNoCredentials", err)
	}
}

package commands_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/lvsctl/lvsctl/cli/commands"
	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	"github.com/lvsctl/lvsctl/pki"
)

// startTLS serves the real ConfigService with the controller's TLS from a new pki dir.
func startTLS(t *testing.T) (dir, addr string) {
	t.Helper()
	dir = t.TempDir()
	if _, err := pki.Init(dir, pki.InitOptions{Users: []pki.User{{Name: "alice", Role: "admin"}}}); err != nil {
		t.Fatal(err)
	}
	r, err := pki.NewReloader(pki.ReloaderConfig{Files: pki.Files{Cert: filepath.Join(dir, "controller.crt"), Key: filepath.Join(dir, "controller.key"), CA: filepath.Join(dir, "ca.crt")}})
	if err != nil {
		t.Fatal(err)
	}
	st := storetest.Start(t)
	g := grpc.NewServer(grpc.Creds(r.ServerCredentials()), grpc.ChainUnaryInterceptor(pki.UnaryAuthenticate))
	config.NewServer(st, storetest.Cache(t, st), slog.New(slog.DiscardHandler)).Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return dir, lis.Addr().String()
}

func runEnv(args []string, env map[string]string) (int, string, string) {
	var out, errOut bytes.Buffer
	s := commands.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}
	code := commands.Run(context.Background(), args, s, func(k string) string { return env[k] })
	return code, out.String(), errOut.String()
}

func TestTLSFlags(t *testing.T) {
	dir, addr := startTLS(t)
	other := t.TempDir()
	if _, err := pki.Init(other, pki.InitOptions{Users: []pki.User{{Name: "alice", Role: "admin"}}}); err != nil {
		t.Fatal(err)
	}
	ca, cert, key := filepath.Join(dir, "ca.crt"), pki.UserCertPath(dir, "alice"), pki.UserKeyPath(dir, "alice")
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".config", "lvsctl"), 0o700); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{ca: "ca.crt", cert: "client.crt", key: "client.key"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".config", "lvsctl", to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// The contract's flags, the contract's environment, the brief's aliases, and the default
	// place under $HOME all reach the controller.
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"--ca --cert --key", []string{"--ca", ca, "--cert", cert, "--key", key}, nil},
		{"LVSCTL_CA LVSCTL_CERT LVSCTL_KEY", nil, map[string]string{"LVSCTL_CA": ca, "LVSCTL_CERT": cert, "LVSCTL_KEY": key}},
		{"--tls-ca --tls-cert --tls-key", []string{"--tls-ca", ca, "--tls-cert", cert, "--tls-key", key}, nil},
		{"LVSCTL_TLS_*", nil, map[string]string{"LVSCTL_TLS_CA": ca, "LVSCTL_TLS_CERT": cert, "LVSCTL_TLS_KEY": key}},
		{"$HOME/.config/lvsctl", nil, map[string]string{"HOME": home}},
	} {
		code, _, errOut := runEnv(append(append([]string{"--controller", addr}, tc.args...), "get", "clusters"), tc.env)
		if code != 0 {
			t.Errorf("%s: exit %d: %s", tc.name, code, errOut)
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"no files", []string{"--controller", addr}, map[string]string{"HOME": "/nonexistent"},
			[]string{"--cert (env LVSCTL_CERT) /nonexistent/.config/lvsctl/client.crt", "no such file", "lvs-controller pki init", "pass --insecure"}},
		{"missing key", []string{"--controller", addr, "--ca", ca, "--cert", cert, "--key", filepath.Join(dir, "nope.key")}, nil,
			[]string{"--key (env LVSCTL_KEY) " + filepath.Join(dir, "nope.key")}},
		{"insecure to a remote controller", []string{"--controller", "192.0.2.1:7443", "--insecure"}, nil,
			[]string{"--insecure) is allowed to a controller on loopback only: --controller 192.0.2.1:7443"}},
		{"certificate from another CA", []string{"--controller", addr, "--ca", ca, "--cert", pki.UserCertPath(other, "alice"), "--key", pki.UserKeyPath(other, "alice")}, nil,
			[]string{"did not accept the certificate " + pki.UserCertPath(other, "alice"), "unknown authority"}},
		{"controller from another CA", []string{"--controller", addr, "--ca", filepath.Join(other, "ca.crt"), "--cert", cert, "--key", key}, nil,
			[]string{"controller " + addr + ": ", "controller certificate refused"}},
	} {
		code, _, errOut := runEnv(append(tc.args, "get", "clusters"), tc.env)
		if code == 0 {
			t.Errorf("%s: exit 0", tc.name)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: %q does not say %q", tc.name, errOut, w)
			}
		}
	}
}

package store_test

import (
	"context"
	"crypto/tls"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	"github.com/lvsctl/lvsctl/pki"
)

// TestEmbeddedRefusesExposure: the embedded etcd listens beyond loopback only with TLS and
// client certificates; each refusal names the flag to change.
func TestEmbeddedRefusesExposure(t *testing.T) {
	ports := storetest.FreePorts(t, 2)
	port := func(i int) string { return ports[i][strings.LastIndex(ports[i], ":"):] }
	tlsFiles := store.EmbeddedTLS{CertFile: "c.crt", KeyFile: "c.key", CAFile: "ca.crt"}
	for _, tc := range []struct {
		name         string
		client, peer string
		tls          store.EmbeddedTLS
		want         string
		wantExposed  bool
	}{
		{"client on every address", "http://0.0.0.0" + port(0), "http://" + ports[1], store.EmbeddedTLS{}, "--etcd-client-url http://0.0.0.0" + port(0) + " is not a loopback address", true},
		{"peer on a LAN address", "http://" + ports[0], "http://192.0.2.1" + port(1), store.EmbeddedTLS{}, "--etcd-peer-url http://192.0.2.1" + port(1) + " is not a loopback address", true},
		{"a host name", "http://etcd.example" + port(0), "http://" + ports[1], store.EmbeddedTLS{}, "--etcd-client-url http://etcd.example" + port(0), true},
		{"https without files", "https://0.0.0.0" + port(0), "http://" + ports[1], store.EmbeddedTLS{}, "https needs --etcd-client-cert, --etcd-client-key and --etcd-client-ca", false},
		{"half the files", "https://0.0.0.0" + port(0), "http://" + ports[1], store.EmbeddedTLS{CertFile: "c.crt"}, "needs all of --etcd-client-cert, --etcd-client-key and --etcd-client-ca", false},
		{"plain http beside TLS", "http://0.0.0.0" + port(0), "http://" + ports[1], tlsFiles, "--etcd-client-url http://0.0.0.0" + port(0) + " is not a loopback address", true},
	} {
		_, err := store.StartEmbedded(context.Background(), store.EmbeddedConfig{DataDir: t.TempDir(), ClientURL: tc.client, PeerURL: tc.peer, TLS: tc.tls, LogLevel: "fatal"})
		if !errors.Is(err, store.ErrEmbeddedStart) || errors.Is(err, store.ErrEmbeddedExposed) != tc.wantExposed || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestEmbeddedTLS(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(dir, pki.InitOptions{Directors: []string{"dir-a"}}); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if _, err := pki.Init(other, pki.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ports := storetest.FreePorts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{
		DataDir: filepath.Join(t.TempDir(), "etcd"), ClientURL: "https://" + ports[0], PeerURL: "https://" + ports[1], LogLevel: "fatal",
		TLS: store.EmbeddedTLS{CertFile: filepath.Join(dir, "controller.crt"), KeyFile: filepath.Join(dir, "controller.key"), CAFile: filepath.Join(dir, "ca.crt")},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if !strings.HasPrefix(e.Endpoint(), "https://127.0.0.1:") {
		t.Errorf("endpoint %s", e.Endpoint())
	}
	put := func(cfg *tls.Config) error {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 2 * time.Second, TLS: cfg, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = c.Put(ctx, "/probe", "x")
		return err
	}
	client := func(cert, key, ca string) *tls.Config {
		r, err := pki.NewReloader(pki.ReloaderConfig{Files: pki.Files{Cert: cert, Key: key, CA: ca}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ClientConfig("127.0.0.1")
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := put(client(filepath.Join(dir, "controller.crt"), filepath.Join(dir, "controller.key"), ca)); err != nil {
		t.Errorf("controller's certificate: %v", err)
	}
	if err := put(client(filepath.Join(other, "controller.crt"), filepath.Join(other, "controller.key"), ca)); err == nil {
		t.Error("a certificate from another CA wrote to the store")
	}
	noCert := client(filepath.Join(dir, "controller.crt"), filepath.Join(dir, "controller.key"), ca)
	noCert.GetClientCertificate = nil
	if err := put(noCert); err == nil {
		t.Error("a client without a certificate wrote to the store")
	}
}

// Package storetest starts real embedded etcd servers for tests, on loopback ports that do
// not collide within one test process.
package storetest

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lvsctl/lvsctl/controlplane/store"
)

// FreePorts returns n distinct loopback addresses that were free a moment ago. All listeners
// stay open until every port is chosen, so one call never returns the same port twice.
func FreePorts(t testing.TB, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// Start runs an embedded etcd for the test and returns a store over it.
func Start(t testing.TB) *store.Store {
	t.Helper()
	st, _ := StartClient(t)
	return st
}

// StartClient is Start that also returns the store's etcd client, for what a test does to
// etcd behind the store's back (compaction, values written by hand).
func StartClient(t testing.TB) (*store.Store, *clientv3.Client) {
	t.Helper()
	ports := FreePorts(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, store.EmbeddedConfig{
		DataDir:   filepath.Join(t.TempDir(), "etcd"),
		ClientURL: "http://" + ports[0],
		PeerURL:   "http://" + ports[1],
		LogLevel:  "fatal",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second,
		MaxCallSendMsgSize: store.EmbeddedLimits().MaxRequestBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return store.NewLimited(c, store.EmbeddedLimits()), c
}

// Cache runs a store.Cache over st until the test ends.
func Cache(t testing.TB, st *store.Store) *store.Cache {
	t.Helper()
	c := store.NewCache(st, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c
}

package store_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// logRecords keeps the messages and keys logged at each level.
type logRecords struct {
	mu    sync.Mutex
	lines []string
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecords) WithGroup(string) slog.Handler            { return l }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "key" {
			line += " " + a.Value.String()
		}
		return true
	})
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	return nil
}

func (l *logRecords) count(prefix string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// TestUndecodableValuesAreSkipped: values that do not decode, written behind the store's back
// into a real etcd (garbage bytes, a cluster under another cluster's key, garbage roles), are
// skipped by Load and by the cache, whether there at the load or written while it follows,
// reported by key (logged once each, counted by the metric), and everything else reads and
// writes as before; a write of the object replaces the value and the report ends.
func TestUndecodableValuesAreSkipped(t *testing.T) {
	ctx := context.Background()
	st, etcd := storetest.StartClient(t)
	good := &lvsctlv1.Cluster{Name: "good", DirectorGroup: "g", Fwmark: 1}
	_, err := st.Commit(ctx, store.Write{Puts: map[string]proto.Message{
		store.ClusterKey("good"): good,
		store.GroupKey("g"):      &lvsctlv1.DirectorGroup{Name: "g"},
		store.RolesKey("g"):      &lvsctlv1.GroupRoles{Group: "g", Active: "dir-a", Epoch: 3},
	}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := proto.Marshal(&lvsctlv1.Cluster{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{
		store.ClusterKey("garbage"): "not a protobuf \xff\xff",
		store.ClusterKey("renamed"): string(other),
		store.GroupKey("bad"):       "\x0a\xff\xff\xff\xff",
	} {
		if _, err := etcd.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}

	snap, err := st.Load(ctx)
	if err != nil {
		t.Fatalf("Load with undecodable values: %v", err)
	}
	if got := slices.Sorted(maps.Keys(snap.Undecodable)); !slices.Equal(got, []string{store.ClusterKey("garbage"), store.ClusterKey("renamed"), store.GroupKey("bad")}) {
		t.Errorf("Undecodable: %v", got)
	}
	for _, u := range snap.Undecodable {
		if !errors.Is(u, store.ErrUndecodable) || u.ModRevision == 0 {
			t.Errorf("%s: %v (revision %d) does not match ErrUndecodable", u.Key, u, u.ModRevision)
		}
	}
	if _, ok := snap.Clusters["good"]; !ok || len(snap.Clusters) != 1 || len(snap.Groups) != 1 {
		t.Errorf("Load kept %d clusters, %d groups; want good and g", len(snap.Clusters), len(snap.Groups))
	}

	logs := &logRecords{}
	cache := store.NewCache(st, slog.New(logs))
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = cache.Run(cctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if err := cache.Wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	metric := prometheus.NewPedanticRegistry()
	metric.MustRegister(store.NewCollector(cache))
	if n := gauge(t, metric, "lvsctl_store_undecodable_values"); n != 3 {
		t.Errorf("lvsctl_store_undecodable_values = %v, want 3", n)
	}

	// Garbage over the roles of a live group while the cache follows: skipped, reported, and
	// its revision kept so that the write that replaces it is conditional on it.
	resp, err := etcd.Put(ctx, store.RolesKey("g"), "\xff")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := cache.UndecodableAt(store.RolesKey("g")); return ok })
	if r, rev := cache.Roles("g"); r != nil || rev != resp.Header.Revision {
		t.Errorf("roles over garbage: %v at %d, want none at %d", r, rev, resp.Header.Revision)
	}
	if c, ok := cache.Cluster("good"); !ok || c.GetFwmark() != 1 {
		t.Errorf("the good cluster is gone from the cache")
	}
	if n := gauge(t, metric, "lvsctl_store_undecodable_values"); n != 4 {
		t.Errorf("lvsctl_store_undecodable_values = %v, want 4", n)
	}

	// Other writes go on, and do not log the bad keys again.
	_, head := cache.Revision()
	for i := range 3 {
		good.Fwmark = uint32(2 + i)
		if head, err = st.Commit(ctx, store.Write{Head: head, Expect: map[string]int64{}, Puts: map[string]proto.Message{store.ClusterKey("good"): good}}); err != nil {
			t.Fatalf("a write next to undecodable values: %v", err)
		}
		if err := cache.Wait(ctx, head); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{store.ClusterKey("garbage"), store.ClusterKey("renamed"), store.GroupKey("bad"), store.RolesKey("g")} {
		if n := logs.count("ERROR stored value does not decode; skipped until it is replaced or deleted " + key); n != 1 {
			t.Errorf("%s logged %d times, want once", key, n)
		}
	}

	// A write of the object, conditional on the undecodable value's revision, replaces it.
	u, _ := cache.UndecodableAt(store.ClusterKey("garbage"))
	if head, err = st.Commit(ctx, store.Write{Head: head, Expect: map[string]int64{store.ClusterKey("garbage"): u.ModRevision},
		Puts: map[string]proto.Message{store.ClusterKey("garbage"): &lvsctlv1.Cluster{Name: "garbage", DirectorGroup: "g"}}}); err != nil {
		t.Fatal(err)
	}
	if err := cache.Wait(ctx, head); err != nil {
		t.Fatal(err)
	}
	if _, ok := cache.Cluster("garbage"); !ok {
		t.Error("the replaced cluster is not in the cache")
	}
	if _, bad := cache.UndecodableAt(store.ClusterKey("garbage")); bad || len(cache.Undecodable()) != 3 {
		t.Errorf("after the repair: %v", cache.Undecodable())
	}
	if n := logs.count("INFO undecodable stored value replaced or deleted " + store.ClusterKey("garbage")); n != 1 {
		t.Errorf("the repair logged %d times, want once", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gauge reads one gauge without labels from a registry, as a scrape would.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

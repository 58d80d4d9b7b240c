package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// writeCluster commits a cluster of the given weight at head, with its history entry when
// recorded, keeping retention entries; it returns the new revision (the next head).
func writeCluster(t *testing.T, st *store.Store, head int64, name string, weight uint32, record bool, retention int) int64 {
	t.Helper()
	c := &lvsctlv1.Cluster{Name: name, DirectorGroup: "edge-1", Reals: []*lvsctlv1.RealServer{{Address: "192.0.2.1", Weight: weight}}}
	w := store.Write{Head: head, Puts: map[string]proto.Message{store.ClusterKey(name): c}, HistoryRetention: retention}
	if record {
		w.History = []store.HistoryRecord{{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: name, Entry: &lvsctlv1.HistoryEntry{
			Who: "alice", TimeUnixMs: 1700000000000, Action: lvsctlv1.HistoryAction_HISTORY_ACTION_UPDATED,
			Changes: []string{fmt.Sprintf("weight %d", weight)},
			Object:  &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}},
		}}}
	}
	rev, err := st.Commit(context.Background(), w)
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	return rev
}

// weights lists the history's entries as "revision:weight", newest first.
func weights(t *testing.T, st *store.Store, name string, limit int) []string {
	t.Helper()
	entries, skipped, err := st.History(context.Background(), lvsctlv1.Kind_KIND_CLUSTER, name, limit)
	if err != nil || len(skipped) > 0 {
		t.Fatalf("history: %v %v", err, skipped)
	}
	var out []string
	for _, e := range entries {
		c := e.GetObject().GetCluster()
		if c.GetRevision() != e.GetRevision() || e.GetName() != name || e.GetKind() != lvsctlv1.Kind_KIND_CLUSTER {
			t.Errorf("entry %d: object revision %d, name %q, kind %v: want the entry's", e.GetRevision(), c.GetRevision(), e.GetName(), e.GetKind())
		}
		out = append(out, fmt.Sprintf("%d:%d", e.GetRevision(), c.GetReals()[0].GetWeight()))
	}
	return out
}

// TestHistoryWrittenWithTheChange: the entry is written in the change's transaction (its
// revision is the change's), listed newest first, with what was recorded; other writes in
// between (the roles manager's, without history) do not disturb the order; the desired
// state read by Load and Watch holds no history.
func TestHistoryWrittenWithTheChange(t *testing.T) {
	st := storetest.Start(t)
	ctx := context.Background()
	snap, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watch, werr := st.Watch(ctx, snap.Revision)
	r1 := writeCluster(t, st, 0, "wms", 1, true, 0)
	// A write of something else, unrecorded, as the roles manager's are.
	r2, err := st.Commit(ctx, store.Write{Head: r1, Puts: map[string]proto.Message{store.RolesKey("edge-1"): &lvsctlv1.GroupRoles{Active: "dir-a"}}})
	if err != nil {
		t.Fatal(err)
	}
	r3 := writeCluster(t, st, r2, "wms", 2, true, 0)
	r4 := writeCluster(t, st, r3, "wms", 3, true, 0)
	writeCluster(t, st, r4, "wms-2", 9, true, 0) // another object: not in wms's history

	if got, want := weights(t, st, "wms", 0), []string{fmt.Sprintf("%d:3", r4), fmt.Sprintf("%d:2", r3), fmt.Sprintf("%d:1", r1)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history %v, want %v (newest first, revisions of the changes)", got, want)
	}
	if got, want := weights(t, st, "wms", 2), []string{fmt.Sprintf("%d:3", r4), fmt.Sprintf("%d:2", r3)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history limit 2: %v, want %v", got, want)
	}
	entries, _, err := st.History(ctx, lvsctlv1.Kind_KIND_CLUSTER, "wms", 1)
	if err != nil {
		t.Fatal(err)
	}
	if e := entries[0]; e.GetWho() != "alice" || e.GetTimeUnixMs() != 1700000000000 || e.GetAction() != lvsctlv1.HistoryAction_HISTORY_ACTION_UPDATED || fmt.Sprint(e.GetChanges()) != "[weight 3]" {
		t.Errorf("entry as read: %v", e)
	}
	if n := len(weights(t, st, "wms-", 0)); n != 0 {
		t.Errorf("history of \"wms-\" lists %d entries of another object", n)
	}

	snap, err = st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clusters) != 2 || snap.Clusters["wms"].GetReals()[0].GetWeight() != 3 || snap.Roles["edge-1"].GetActive() != "dir-a" {
		t.Errorf("Load after recorded writes: %d clusters, %v", len(snap.Clusters), snap.Clusters["wms"])
	}
	seen := 0
	for seen < 5 {
		select {
		case b, ok := <-watch:
			if !ok {
				t.Fatalf("watch ended: %v", <-werr)
			}
			for _, ev := range b.Events {
				if strings.HasPrefix(ev.Key, store.Prefix+"history/") {
					t.Errorf("watch delivered history key %s", ev.Key)
				}
			}
			seen += len(b.Events) / 2 // each write is its object and the head
		case <-time.After(10 * time.Second):
			t.Fatalf("watch: %d of 5 writes seen", seen)
		}
	}
}

// TestHistoryRetention: an object keeps its newest N entries, the oldest deleted in the
// same write; lowering N trims the excess at the object's next write; other objects keep
// theirs.
func TestHistoryRetention(t *testing.T) {
	st := storetest.Start(t)
	head := writeCluster(t, st, 0, "other", 1, true, 3)
	var revs []int64
	for w := uint32(1); w <= 6; w++ {
		head = writeCluster(t, st, head, "wms", w, true, 3)
		revs = append(revs, head)
	}
	want := []string{fmt.Sprintf("%d:6", revs[5]), fmt.Sprintf("%d:5", revs[4]), fmt.Sprintf("%d:4", revs[3])}
	if got := weights(t, st, "wms", 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("retention 3 after 6 writes: %v, want %v", got, want)
	}
	head = writeCluster(t, st, head, "wms", 7, true, 1)
	if got, want := weights(t, st, "wms", 0), []string{fmt.Sprintf("%d:7", head)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("retention lowered to 1: %v, want %v", got, want)
	}
	if got := weights(t, st, "other", 0); len(got) != 1 {
		t.Errorf("another object's history: %v, want its 1 entry", got)
	}
}

// TestHistorySurvivesCompaction: entries hold the whole value, so compacting etcd past
// every revision they name loses nothing.
func TestHistorySurvivesCompaction(t *testing.T) {
	st, client := storetest.StartClient(t)
	head := int64(0)
	var want []string
	for w := uint32(1); w <= 3; w++ {
		head = writeCluster(t, st, head, "wms", w, true, 0)
		want = append([]string{fmt.Sprintf("%d:%d", head, w)}, want...)
	}
	if _, err := client.Compact(context.Background(), head, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if got := weights(t, st, "wms", 0); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after compaction at %d: %v, want %v", head, got, want)
	}
}

// TestHistorySkipsUndecodable: an entry that is not a HistoryEntry is reported by key and
// hides no other entry.
func TestHistorySkipsUndecodable(t *testing.T) {
	st, client := storetest.StartClient(t)
	head := writeCluster(t, st, 0, "wms", 1, true, 0)
	bad := store.HistoryKey(lvsctlv1.Kind_KIND_CLUSTER, "wms", head+100)
	if _, err := client.Put(context.Background(), bad, "\xff\xff\xff"); err != nil {
		t.Fatal(err)
	}
	entries, skipped, err := st.History(context.Background(), lvsctlv1.Kind_KIND_CLUSTER, "wms", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || len(skipped) != 1 || !errors.Is(skipped[0], store.ErrUndecodable) || !strings.Contains(skipped[0].Error(), bad) {
		t.Errorf("got %d entries, skipped %v; want 1 entry and the bad key %s named", len(entries), skipped, bad)
	}
}

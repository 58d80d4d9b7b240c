package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func jcluster(name string, weight uint32) *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{Name: name, Vips: []string{"192.0.2.10"}, Fwmark: 16,
		Reals: []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: weight}}}
}

func mustLoad(t *testing.T, dir string) *State {
	t.Helper()
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantDesired(t *testing.T, s *State, want Desired) {
	t.Helper()
	got, ok := s.Desired()
	if !ok {
		t.Fatal("no desired state")
	}
	if got.Revision != want.Revision || !proto.Equal(got.State, want.State) || !proto.Equal(got.Role, want.Role) {
		t.Errorf("desired = %d %v %v\nwant %d %v %v", got.Revision, got.State, got.Role, want.Revision, want.State, want.Role)
	}
}

// TestJournalReplay: deltas, role changes and applied revisions appended after a snapshot
// are what a restarted agent loads.
func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	s := mustLoad(t, dir)
	g := &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0"}
	role := &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 1}
	mustDo(t, s.SetDesired(Desired{Revision: 1, State: &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{jcluster("a", 1), jcluster("b", 1)}}, Role: role}))
	mustDo(t, s.SetAppliedRevision(1))
	size := fileSize(t, filepath.Join(dir, JournalName))

	// A delta that does not follow the saved revision is refused and writes nothing.
	err := s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 7, Revision: 8, Deleted: []string{"a"}})
	if !errors.Is(err, ErrNotFollowing) {
		t.Errorf("ApplyDelta after a gap: %v, want ErrNotFollowing", err)
	}
	if got := fileSize(t, filepath.Join(dir, JournalName)); got != size {
		t.Errorf("a refused delta wrote %d bytes", got-size)
	}

	g2 := proto.CloneOf(g)
	g2.VipInterface = "eth1"
	standby := &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_STANDBY, Epoch: 2}
	mustDo(t, s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 1, Revision: 2, Upserted: []*lvsctlv1.Cluster{jcluster("b", 5), jcluster("c", 1)}, Deleted: []string{"a"}}))
	mustDo(t, s.SetRole(standby))
	mustDo(t, s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 2, Revision: 3, Group: g2}))
	mustDo(t, s.SetAppliedRevision(3))
	want := Desired{Revision: 3, State: &lvsctlv1.DesiredState{Group: g2, Clusters: []*lvsctlv1.Cluster{jcluster("b", 5), jcluster("c", 1)}}, Role: standby}
	wantDesired(t, s, want)

	again := mustLoad(t, dir)
	wantDesired(t, again, want)
	if again.AppliedRevision() != 3 {
		t.Errorf("applied revision = %d, want 3", again.AppliedRevision())
	}
	// The reloaded journal is appended to, not rewritten from scratch, and still replays.
	mustDo(t, again.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 3, Revision: 4, Deleted: []string{"b"}}))
	want.Revision, want.State.Clusters = 4, want.State.Clusters[1:]
	wantDesired(t, mustLoad(t, dir), want)
}

// TestJournalTornTail: a record cut short by a crash is dropped; the state before it loads,
// and the next save does not append after the torn bytes.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	s := mustLoad(t, dir)
	st := &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{Name: "edge-1"}, Clusters: []*lvsctlv1.Cluster{jcluster("a", 1)}}
	mustDo(t, s.SetDesired(Desired{Revision: 1, State: st}))
	mustDo(t, s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 1, Revision: 2, Upserted: []*lvsctlv1.Cluster{jcluster("a", 2)}}))
	path := filepath.Join(dir, JournalName)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The next delta's record, as the agent appends it; then cut in the middle, as a crash
	// during its write leaves it.
	mustDo(t, s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 2, Revision: 3, Deleted: []string{"a"}}))
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := after[len(whole):]
	zeros := make([]byte, len(rec)) // a file system that extended the file but wrote nothing
	for _, tail := range [][]byte{rec[:3], rec[:recordHeader], rec[:recordHeader+2], rec[:len(rec)-1], zeros} {
		t.Run(fmt.Sprintf("%d bytes of %d", len(tail), len(rec)), func(t *testing.T) {
			if err := os.WriteFile(path, append(slices.Clone(whole), tail...), 0o600); err != nil {
				t.Fatal(err)
			}
			torn := mustLoad(t, dir)
			at2 := Desired{Revision: 2, State: &lvsctlv1.DesiredState{Group: st.Group, Clusters: []*lvsctlv1.Cluster{jcluster("a", 2)}}}
			wantDesired(t, torn, at2)
			mustDo(t, torn.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 2, Revision: 3, Upserted: []*lvsctlv1.Cluster{jcluster("b", 1)}}))
			at3 := Desired{Revision: 3, State: &lvsctlv1.DesiredState{Group: st.Group, Clusters: []*lvsctlv1.Cluster{jcluster("a", 2), jcluster("b", 1)}}}
			wantDesired(t, mustLoad(t, dir), at3)
		})
	}
	// A whole last record whose checksum does not match is no torn append (those end short, or
	// in zeros): it was changed after it was written, and is reported (TestIntegrity).
	bad := slices.Clone(rec)
	bad[len(bad)-1] ^= 0xff
	if err := os.WriteFile(path, append(slices.Clone(whole), bad...), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Load(dir); !errors.Is(err, ErrIntegrity) {
		t.Errorf("a whole record with a bad checksum: Load = %v, want ErrIntegrity", err)
	} else if _, ok := s.Desired(); ok {
		t.Error("a journal with a bad record was replayed")
	}
}

// TestJournalCompacts: a long run of deltas keeps the journal near the size of one snapshot.
func TestJournalCompacts(t *testing.T) {
	dir := t.TempDir()
	s := mustLoad(t, dir)
	var clusters []*lvsctlv1.Cluster
	for i := range 50 {
		clusters = append(clusters, jcluster(fmt.Sprintf("c%02d", i), 1))
	}
	mustDo(t, s.SetDesired(Desired{Revision: 1, State: &lvsctlv1.DesiredState{Clusters: clusters}}))
	base := fileSize(t, filepath.Join(dir, JournalName))
	for rev := int64(2); rev < 400; rev++ {
		c := jcluster(fmt.Sprintf("c%02d", rev%50), uint32(rev))
		for i := range 60 { // about 1 KiB a delta, so the journal outgrows compactAt several times
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("198.51.100.%d", i+2), Weight: 1})
		}
		mustDo(t, s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: rev - 1, Revision: rev, Upserted: []*lvsctlv1.Cluster{c}}))
		clusters[rev%50] = c
	}
	if got, limit := fileSize(t, filepath.Join(dir, JournalName)), 2*max(base, compactAt)+1024; got > limit {
		t.Errorf("journal of %d bytes after 400 deltas, want at most %d (snapshot %d)", got, limit, base)
	}
	wantDesired(t, mustLoad(t, dir), Desired{Revision: 399, State: &lvsctlv1.DesiredState{Clusters: clusters}})
}

// TestVersion1Migrates: a version 1 state.json, with the applied revision and the desired
// state inside, loads; Load writes them to the journal before state.json loses them.
func TestVersion1Migrates(t *testing.T) {
	dir := t.TempDir()
	v1 := `{"version": 1, "services": [{"family": "ipv4", "fwmark": 16}], "addresses": [], "appliedRevision": 9,
		"desired": {"revision": 9, "state": {"group": {"name": "edge-1"}, "clusters": [{"name": "wms", "fwmark": 16}]},
		"role": {"group": "edge-1", "role": "ROLE_ACTIVE", "epoch": "2"}}}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	want := Desired{Revision: 9, State: &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{Name: "edge-1"},
		Clusters: []*lvsctlv1.Cluster{{Name: "wms", Fwmark: 16}}},
		Role: &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 2}}
	s := mustLoad(t, dir)
	wantDesired(t, s, want)
	mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{{Family: dataplane.IPv4, FWMark: 17}}}))
	data, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"version": 3`; !strings.Contains(string(data), want) {
		t.Errorf("state.json after a save:\n%s\nwant %s", data, want)
	}
	again := mustLoad(t, dir)
	wantDesired(t, again, want)
	if again.AppliedRevision() != 9 || len(again.OwnedServices()) != 2 {
		t.Errorf("after migration: applied %d, services %v", again.AppliedRevision(), again.OwnedServices())
	}
}

// TestVersion1AppliedOnly: a version 1 state.json with an applied revision but no desired
// state keeps the revision through the rewrite of state.json as version 3.
func TestVersion1AppliedOnly(t *testing.T) {
	dir := t.TempDir()
	v1 := `{"version": 1, "services": [{"family": "ipv4", "fwmark": 16}], "addresses": [], "appliedRevision": 9}`
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(v1), 0o600); err != nil {
		t.Fatal(err)
	}
	s := mustLoad(t, dir)
	mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{{Family: dataplane.IPv4, FWMark: 17}}}))
	again := mustLoad(t, dir)
	if again.AppliedRevision() != 9 || len(again.OwnedServices()) != 2 {
		t.Errorf("after migration: applied %d, services %v; want 9 and two", again.AppliedRevision(), again.OwnedServices())
	}
}

// TestCommitAllOrNothing: a batch is saved whole or not at all; forgets apply after records.
func TestCommitAllOrNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	s := mustLoad(t, dir)
	k := func(m uint32) dataplane.ServiceKey { return dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: m} }
	mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{k(1), k(2), k(3)}, ForgetServices: []dataplane.ServiceKey{k(3)}}))
	if got := mustLoad(t, dir).OwnedServices(); !slices.Equal(got, []dataplane.ServiceKey{k(1), k(2)}) {
		t.Errorf("owned after commit = %v, want fwm 1 and 2", got)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // every save fails from here
		t.Fatal(err)
	}
	if err := s.Commit(Changes{RecordServices: []dataplane.ServiceKey{k(4)}, ForgetServices: []dataplane.ServiceKey{k(1)}}); err == nil {
		t.Fatal("Commit into an unwritable directory: no error")
	}
	if got := s.OwnedServices(); !slices.Equal(got, []dataplane.ServiceKey{k(1), k(2)}) {
		t.Errorf("owned after a failed commit = %v, want it unchanged", got)
	}
	if err := s.Commit(Changes{RecordServices: []dataplane.ServiceKey{{Family: 9, FWMark: 5}}}); err == nil {
		t.Error("Commit of a service of family 9: no error")
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestClustersApply: a delta's group (one without a name: none), deletions and upserts, on a
// clone that leaves the original as it was; State sorts by name.
func TestClustersApply(t *testing.T) {
	g := &lvsctlv1.DirectorGroup{Name: "edge-1"}
	orig := NewClusters(&lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{jcluster("b", 1), jcluster("a", 1)}})
	next := orig.Clone()
	next.Apply(&lvsctlv1.Delta{Group: &lvsctlv1.DirectorGroup{}, Deleted: []string{"a"}, Upserted: []*lvsctlv1.Cluster{jcluster("c", 1), jcluster("b", 2)}})
	want := &lvsctlv1.DesiredState{Clusters: []*lvsctlv1.Cluster{jcluster("b", 2), jcluster("c", 1)}}
	if got := next.State(); !proto.Equal(got, want) {
		t.Errorf("after the delta: %v, want %v", got, want)
	}
	want = &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{jcluster("a", 1), jcluster("b", 1)}}
	if got := orig.State(); !proto.Equal(got, want) {
		t.Errorf("the original after a delta to its clone: %v, want %v", got, want)
	}
}

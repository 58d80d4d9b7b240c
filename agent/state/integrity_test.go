package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

var (
	k16   = dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	k99   = dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 99}
	vip10 = Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.10/32")}
	other = Address{Interface: "eth0", Prefix: netip.MustParsePrefix("203.0.113.7/32")}
	gw    = Address{Interface: "eth1", Prefix: netip.MustParsePrefix("198.51.100.254/24")}
)

// fullState saves what a running agent has: owned services and addresses, a snapshot, deltas,
// a role change and applied revisions. It returns the desired state saved.
func fullState(t *testing.T, dir string) Desired {
	t.Helper()
	s := mustLoad(t, dir)
	g := &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0", Gateway: &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}}
	mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{k16, k99}, RecordAddresses: []Address{vip10, other, gw}}))
	mustDo(t, s.SetDesired(Desired{Revision: 1, State: &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{jcluster("a", 1)}},
		Role: &lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 3}}))
	mustDo(t, s.SetAppliedRevision(1))
	mustDo(t, s.ApplyDelta(&lvsctlv1.Delta{PrevRevision: 1, Revision: 2, Upserted: []*lvsctlv1.Cluster{jcluster("a", 2)}}))
	mustDo(t, s.SetRole(&lvsctlv1.RoleAssignment{Group: "edge-1", Role: lvsctlv1.Role_ROLE_STANDBY, Epoch: 4}))
	mustDo(t, s.SetAppliedRevision(2))
	d, _ := s.Desired()
	return d
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEveryFlippedBitIsReported: one bit changed anywhere in either file is ErrIntegrity, never
// a smaller state loaded in silence: a damaged journal gives no desired state and no applied
// revision (so no offline start from it), a damaged state.json owns nothing for sure. The
// damaged file is kept beside it as it was.
func TestEveryFlippedBitIsReported(t *testing.T) {
	dir := t.TempDir()
	want := fullState(t, dir)
	for _, name := range []string{FileName, JournalName} {
		path := filepath.Join(dir, name)
		good := readFile(t, path)
		{
			for i := range good {
				// Each byte once, each bit position in turn.
				bit := byte(1) << (i % 8)
				bad := slices.Clone(good)
				bad[i] ^= bit
				writeFile(t, path, bad)
				s, err := Load(dir)
				if !errors.Is(err, ErrIntegrity) || s == nil {
					t.Fatalf("%s byte %d ^ %#x: Load = %v, %v; want a State and ErrIntegrity", name, i, bit, s, err)
				}
				if !errors.Is(s.Integrity(), ErrIntegrity) || !strings.Contains(err.Error(), path) {
					t.Fatalf("%s byte %d: Integrity() = %v, Load's error %q (want it to name %s)", name, i, s.Integrity(), err, path)
				}
				if kept := readFile(t, path+DamagedSuffix); !bytes.Equal(kept, bad) {
					t.Fatalf("%s byte %d: the damaged copy is not the damaged file", name, i)
				}
				switch name {
				case JournalName:
					if _, ok := s.Desired(); ok || s.AppliedRevision() != 0 {
						t.Fatalf("journal byte %d damaged: desired state or applied revision %d loaded", i, s.AppliedRevision())
					}
					if len(s.OwnedServices()) != 2 || len(s.OwnedAddresses()) != 3 {
						t.Fatalf("journal byte %d damaged: an intact state.json lost what it owns", i)
					}
				case FileName:
					if len(s.OwnedServices())+len(s.OwnedAddresses()) != 0 {
						t.Fatalf("state.json byte %d damaged: owns %v %v", i, s.OwnedServices(), s.OwnedAddresses())
					}
					if d, ok := s.Desired(); !ok || d.Revision != want.Revision {
						t.Fatalf("state.json byte %d damaged: the intact journal's desired state lost", i)
					}
				}
			}
		}
		writeFile(t, path, good)
	}
	if _, err := Load(dir); err != nil {
		t.Errorf("the files put back: %v", err)
	}
}

// journalRecords splits a version 2 journal into its file header and records.
func journalRecords(t *testing.T, data []byte) (header []byte, recs [][]byte) {
	t.Helper()
	header, rest := data[:fileHeader], data[fileHeader:]
	for len(rest) > 0 {
		n := recordHeader + int(binary.LittleEndian.Uint32(rest))
		recs, rest = append(recs, rest[:n]), rest[n:]
	}
	return header, recs
}

// TestJournalRecordsInPlace: whole records removed, repeated, reordered or cut off with a
// whole record from another journal spliced in are reported: each record's checksum follows
// from those before it.
func TestJournalRecordsInPlace(t *testing.T) {
	dir := t.TempDir()
	fullState(t, dir)
	path := filepath.Join(dir, JournalName)
	good := readFile(t, path)
	header, recs := journalRecords(t, good)
	if len(recs) < 4 {
		t.Fatalf("the journal has %d records, want at least 4", len(recs))
	}
	otherDir := t.TempDir()
	o := mustLoad(t, otherDir)
	mustDo(t, o.SetDesired(Desired{Revision: 7, State: &lvsctlv1.DesiredState{Clusters: []*lvsctlv1.Cluster{jcluster("b", 1)}}}))
	mustDo(t, o.SetAppliedRevision(7))
	_, otherRecs := journalRecords(t, readFile(t, filepath.Join(otherDir, JournalName)))
	join := func(rs ...[]byte) []byte { return slices.Concat(append([][]byte{header}, rs...)...) }
	for name, data := range map[string][]byte{
		"a middle record removed":            join(append(slices.Clone(recs[:1]), recs[2:]...)...),
		"a record repeated":                  join(append(slices.Clone(recs), recs[len(recs)-1])...),
		"two records swapped":                join(append([][]byte{recs[1], recs[0]}, recs[2:]...)...),
		"a record from another journal":      join(append(slices.Clone(recs), otherRecs[len(otherRecs)-1])...),
		"the first record of another's head": join(append([][]byte{otherRecs[0]}, recs[1:]...)...),
	} {
		writeFile(t, path, data)
		if _, err := Load(dir); !errors.Is(err, ErrIntegrity) {
			t.Errorf("%s: Load = %v, want ErrIntegrity", name, err)
		}
	}
}

// TestDamageRepairedByTheNextWrite: the controller's state saved over a damaged journal, and
// Adopt over a damaged state.json, leave files that load intact.
func TestDamageRepairedByTheNextWrite(t *testing.T) {
	dir := t.TempDir()
	fullState(t, dir)
	for _, name := range []string{FileName, JournalName} {
		path := filepath.Join(dir, name)
		b := readFile(t, path)
		b[len(b)/2] ^= 0x01
		writeFile(t, path, b)
	}
	s, err := Load(dir)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("Load = %v, want ErrIntegrity", err)
	}
	// A Commit before the controller's state (a release) must not make the damaged journal
	// look intact: it is written only with the controller's state.
	mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{{Family: dataplane.IPv6, FWMark: 5}}}))
	if err := s.Integrity(); !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), JournalName) || strings.Contains(err.Error(), FileName+":") {
		t.Errorf("after a Commit: Integrity() = %v, want the journal's damage alone", err)
	}
	st := &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{Name: "edge-1"}, Clusters: []*lvsctlv1.Cluster{jcluster("a", 5)}}
	mustDo(t, s.SetDesired(Desired{Revision: 9, State: st}))
	mustDo(t, s.SetAppliedRevision(9))
	if err := s.Integrity(); err != nil {
		t.Errorf("after the controller's state was saved: Integrity() = %v", err)
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	wantDesired(t, again, Desired{Revision: 9, State: st})
	if again.AppliedRevision() != 9 {
		t.Errorf("applied revision %d, want 9", again.AppliedRevision())
	}
}

// TestAdopt: of what a damaged state.json listed, the services whose mark the controller's
// state has and the addresses that are its VIPs or gateway are owned again; the rest is left
// alone, and state.json is written intact.
func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	fullState(t, dir)
	path := filepath.Join(dir, FileName)
	b := readFile(t, path)
	// A careless edit: a service added by hand, checksum left as it was.
	edited := strings.Replace(string(b), `"services": [`, `"services": [
    {"family": "ipv6", "fwmark": 7},`, 1)
	writeFile(t, path, []byte(edited))
	s, err := Load(dir)
	if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("Load of an edited state.json = %v, want ErrIntegrity naming the sha256", err)
	}
	if s.OwnsService(k16) {
		t.Fatal("a damaged state.json's service owned before Adopt")
	}
	ctl := &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{Name: "edge-1", Gateway: &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}},
		Clusters: []*lvsctlv1.Cluster{jcluster("a", 1)}} // fwmark 16, VIP 192.0.2.10
	ad, err := s.Adopt(ctl)
	if err != nil {
		t.Fatal(err)
	}
	v6 := dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 7}
	if !slices.Equal(ad.Services, []dataplane.ServiceKey{k16}) || !slices.Equal(ad.LeftServices, []dataplane.ServiceKey{k99, v6}) ||
		!slices.Equal(ad.Addresses, []Address{vip10, gw}) || !slices.Equal(ad.LeftAddresses, []Address{other}) {
		t.Errorf("Adopt = %+v", ad)
	}
	if err := s.Integrity(); err != nil {
		t.Errorf("after Adopt: Integrity() = %v", err)
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatalf("reload after Adopt: %v", err)
	}
	if !slices.Equal(again.OwnedServices(), []dataplane.ServiceKey{k16}) || !slices.Equal(again.OwnedAddresses(), []Address{vip10, gw}) {
		t.Errorf("owned after Adopt: %v %v", again.OwnedServices(), again.OwnedAddresses())
	}
	if ad, err := again.Adopt(ctl); err != nil || !ad.Empty() {
		t.Errorf("Adopt without damage = %+v, %v; want nothing", ad, err)
	}
}

// encodeV1Record is a record of the version 1 journal: length, CRC-32C of the body, body.
func encodeV1Record(buf []byte, typ byte, payload []byte) []byte {
	body := append([]byte{typ}, payload...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(body)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(body, castagnoli))
	return append(buf, body...)
}

// TestPreviousVersionAcceptedOnce: a version 2 state.json (no checksum) and a version 1
// journal load, and are rewritten with their checks by Load; a file that claims to be of the
// new version without its checksum is damage.
func TestPreviousVersionAcceptedOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, FileName), []byte(`{"version": 2, "services": [{"family": "ipv4", "fwmark": 16}], "addresses": []}`))
	snap := mustMarshal(t, &lvsctlv1.Snapshot{Revision: 4, State: &lvsctlv1.DesiredState{Clusters: []*lvsctlv1.Cluster{jcluster("a", 1)}}})
	delta := mustMarshal(t, &lvsctlv1.Delta{PrevRevision: 4, Revision: 5, Upserted: []*lvsctlv1.Cluster{jcluster("a", 3)}})
	var old []byte
	old = encodeV1Record(old, recordSnapshot, snap)
	old = encodeV1Record(old, recordDelta, delta)
	old = encodeV1Record(old, recordApplied, appliedPayload(5))
	writeFile(t, filepath.Join(dir, JournalName), old)

	s, err := Load(dir)
	if err != nil {
		t.Fatalf("Load of the previous version: %v", err)
	}
	want := Desired{Revision: 5, State: &lvsctlv1.DesiredState{Clusters: []*lvsctlv1.Cluster{jcluster("a", 3)}}}
	wantDesired(t, s, want)
	if !s.OwnsService(k16) || s.AppliedRevision() != 5 {
		t.Errorf("owned %v, applied %d", s.OwnedServices(), s.AppliedRevision())
	}
	if b := readFile(t, filepath.Join(dir, FileName)); !strings.Contains(string(b), `"version": 3`) || !strings.Contains(string(b), `"sha256": "`) {
		t.Errorf("state.json after Load:\n%s\nwant version 3 with its sha256", b)
	}
	if b := readFile(t, filepath.Join(dir, JournalName)); !bytes.HasPrefix(b, journalMagic) {
		t.Errorf("the journal after Load starts %q, want the version 2 header", b[:min(len(b), 12)])
	}
	again, err := Load(dir)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	wantDesired(t, again, want)

	// The checksum taken out of a version 3 file does not make it a version 2 one.
	writeFile(t, filepath.Join(dir, FileName), []byte(`{"version": 3, "services": [{"family": "ipv4", "fwmark": 16}], "addresses": []}`))
	if _, err := Load(dir); !errors.Is(err, ErrIntegrity) {
		t.Errorf("version 3 without sha256: %v, want ErrIntegrity", err)
	}
}

// TestV1JournalDamage: the version 1 journal's rules still tell a torn tail from damage; a
// version 2 journal whose magic was damaged is not read as an empty version 1 one.
func TestV1JournalDamage(t *testing.T) {
	snap := mustMarshal(t, &lvsctlv1.Snapshot{Revision: 4, State: &lvsctlv1.DesiredState{}})
	var old []byte
	old = encodeV1Record(old, recordSnapshot, snap)
	old = encodeV1Record(old, recordApplied, appliedPayload(4))
	for _, tc := range []struct {
		name    string
		data    func() []byte
		damaged bool
	}{
		{"torn tail", func() []byte { return append(slices.Clone(old), 9, 0, 0, 0, 1) }, false},
		{"a middle record changed", func() []byte { b := slices.Clone(old); b[10] ^= 1; return b }, true},
		{"the last record changed", func() []byte { b := slices.Clone(old); b[len(b)-1] ^= 1; return b }, true},
		{"a version 2 journal's magic damaged", func() []byte {
			dir := t.TempDir()
			fullState(t, dir)
			b := readFile(t, filepath.Join(dir, JournalName))
			b[0] ^= 1
			return b
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, JournalName), tc.data())
			s, err := Load(dir)
			if got := errors.Is(err, ErrIntegrity); got != tc.damaged {
				t.Fatalf("Load = %v; damage reported %v, want %v", err, got, tc.damaged)
			}
			if !tc.damaged && s.AppliedRevision() != 4 {
				t.Errorf("applied revision %d, want 4", s.AppliedRevision())
			}
		})
	}
}

// TestNewerJournalRefused: a journal of a version this agent does not know (a newer agent's,
// after a downgrade) is an error, not damage: it is not overwritten.
func TestNewerJournalRefused(t *testing.T) {
	dir := t.TempDir()
	fullState(t, dir)
	path := filepath.Join(dir, JournalName)
	b := readFile(t, path)
	b[len(journalMagic)] = journalVersion + 1
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	writeFile(t, path, b)
	if s, err := Load(dir); err == nil || errors.Is(err, ErrIntegrity) || s != nil {
		t.Errorf("Load of a newer journal = %v, %v; want an error that is not ErrIntegrity, and no State", s, err)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAdoptWhatStillReads: a state.json that no longer parses (a brace damaged) still has
// whole entries: those the controller's state wants are adopted; an entry damaged itself is
// not (its service is then its cluster's error, its address left alone).
func TestAdoptWhatStillReads(t *testing.T) {
	dir := t.TempDir()
	fullState(t, dir)
	path := filepath.Join(dir, FileName)
	b := readFile(t, path)
	b[0] = '['
	// The gateway's entry damaged: its prefix no longer reads.
	b = bytes.Replace(b, []byte(`"198.51.100.254/24"`), []byte(`"198.51.100.254/2x"`), 1)
	writeFile(t, path, b)
	s, err := Load(dir)
	if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "parse") {
		t.Fatalf("Load = %v, want ErrIntegrity for a parse failure", err)
	}
	ctl := &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{Name: "edge-1", Gateway: &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"}},
		Clusters: []*lvsctlv1.Cluster{jcluster("a", 1)}}
	ad, err := s.Adopt(ctl)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ad.Services, []dataplane.ServiceKey{k16}) || !slices.Equal(ad.Addresses, []Address{vip10}) {
		t.Errorf("adopted %v %v, want fwm 16 and the VIP (the gateway's entry is damaged)", ad.Services, ad.Addresses)
	}
	if !s.OwnsService(k16) || !s.OwnsAddress(vip10) || s.OwnsAddress(gw) || s.OwnsService(k99) {
		t.Errorf("owned after Adopt: %v %v", s.OwnedServices(), s.OwnedAddresses())
	}
}

// TestAdoptPlain: a damaged state.json's plain service is owned again only if a cluster of
// the controller's state has that whole service (protocol, address and port), and its address
// counts as that cluster's VIP; entries salvaged from a file that no longer parses are judged
// the same way.
func TestAdoptPlain(t *testing.T) {
	http := dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80}
	https := http
	https.Port = 443
	ctl := &lvsctlv1.DesiredState{Clusters: []*lvsctlv1.Cluster{{
		Name: "web", Scheduler: "rr",
		Service: &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
	}}}
	vip := Address{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.20/32")}
	for name, damage := range map[string]func(string) string{
		"checksum": func(s string) string { return strings.Replace(s, `"version": 3`, `"version":  3`, 1) },
		"unparsable": func(s string) string {
			return strings.Replace(s, `"addresses": [`, `"addresses": [[`, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Load(dir)
			mustDo(t, err)
			mustDo(t, s.Commit(Changes{RecordServices: []dataplane.ServiceKey{http, https}, RecordAddresses: []Address{vip}}))
			path := filepath.Join(dir, FileName)
			writeFile(t, path, []byte(damage(string(readFile(t, path)))))
			s, err = Load(dir)
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("Load of a damaged state.json = %v, want ErrIntegrity", err)
			}
			ad, err := s.Adopt(ctl)
			mustDo(t, err)
			if !slices.Equal(ad.Services, []dataplane.ServiceKey{http}) || !slices.Equal(ad.LeftServices, []dataplane.ServiceKey{https}) ||
				!slices.Equal(ad.Addresses, []Address{vip}) {
				t.Errorf("Adopt = %+v; want %s owned, %s left, %s owned", ad, http, https, vip)
			}
		})
	}
}

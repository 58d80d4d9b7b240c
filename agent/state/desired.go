package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// JournalName is the desired-state journal's name inside the agent's state directory.
const JournalName = "desired.log"

// ErrNotFollowing is returned by ApplyDelta for a delta that does not start at the saved
// revision (or with no saved snapshot): the caller saves the whole state instead.
var ErrNotFollowing = errors.New("delta does not follow the saved desired state")

// Desired is the last desired state the agent received from the controller.
type Desired struct {
	Revision int64
	State    *lvsctlv1.DesiredState
	Role     *lvsctlv1.RoleAssignment
}

// Clusters is a desired state kept by cluster name, so that a delta changes it in O(change):
// the agent's one way of applying a delta to a desired state (this package's saved state, the
// daemon's and the reconciler's). The messages are shared, never changed.
type Clusters struct {
	Group  *lvsctlv1.DirectorGroup
	ByName map[string]*lvsctlv1.Cluster
}

// NewClusters keeps st's group and clusters by name; a nil st is an empty state.
func NewClusters(st *lvsctlv1.DesiredState) Clusters {
	c := Clusters{Group: st.GetGroup(), ByName: make(map[string]*lvsctlv1.Cluster, len(st.GetClusters()))}
	for _, cl := range st.GetClusters() {
		c.ByName[cl.GetName()] = cl
	}
	return c
}

// Apply changes c as delta says: the group, if the delta has one (one without a name: the
// director is in no group), then the deleted clusters and the upserted ones. ByName changes in
// place: Clone first to keep the old one.
func (c *Clusters) Apply(delta *lvsctlv1.Delta) {
	if g := delta.GetGroup(); g != nil {
		c.Group = g
		if g.GetName() == "" {
			c.Group = nil
		}
	}
	for _, name := range delta.GetDeleted() {
		delete(c.ByName, name)
	}
	for _, cl := range delta.GetUpserted() {
		c.ByName[cl.GetName()] = cl
	}
}

// Clone returns a copy whose ByName may change without changing c's.
func (c Clusters) Clone() Clusters {
	out := Clusters{Group: c.Group, ByName: make(map[string]*lvsctlv1.Cluster, len(c.ByName))}
	for n, cl := range c.ByName {
		out.ByName[n] = cl
	}
	return out
}

// State returns the desired state with its clusters sorted by name, as the controller sends
// them. The messages are shared.
func (c Clusters) State() *lvsctlv1.DesiredState {
	st := &lvsctlv1.DesiredState{Group: c.Group, Clusters: make([]*lvsctlv1.Cluster, 0, len(c.ByName))}
	for _, cl := range c.ByName {
		st.Clusters = append(st.Clusters, cl)
	}
	slices.SortFunc(st.Clusters, func(a, b *lvsctlv1.Cluster) int { return strings.Compare(a.GetName(), b.GetName()) })
	return st
}

// desiredState is Desired kept by cluster name, so that a delta changes it in O(change).
type desiredState struct {
	revision int64
	hasState bool // State was set (an empty state is not "none")
	Clusters
	role *lvsctlv1.RoleAssignment
}

func newDesiredState(d Desired) *desiredState {
	return &desiredState{revision: d.Revision, hasState: d.State != nil, role: d.Role, Clusters: NewClusters(d.State)}
}

// export returns the desired state with its clusters sorted by name, as the controller sends
// them. The messages are shared.
func (d *desiredState) export() Desired {
	out := Desired{Revision: d.revision, Role: d.role}
	if d.hasState {
		out.State = d.State()
	}
	return out
}

func (d *desiredState) apply(delta *lvsctlv1.Delta) {
	d.revision, d.hasState = delta.GetRevision(), true
	d.Apply(delta)
}

// Desired returns the last desired state received, and false if there is none. Its messages
// are the ones the State was given: neither the caller nor the State may change them.
func (s *State) Desired() (Desired, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil {
		return Desired{}, false
	}
	return s.desired.export(), true
}

// DesiredClusters is the number of clusters in the saved desired state.
func (s *State) DesiredClusters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil {
		return 0
	}
	return len(s.desired.ByName)
}

// SetDesired records and saves a whole desired state (a snapshot): the journal is rewritten
// with it alone. The State keeps the messages, which callers must not change afterwards (the
// agent never changes a received message; copying 10,000 clusters would double the memory).
// An unchanged state is not written again.
func (s *State) SetDesired(d Desired) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.desired; old != nil && old.revision == d.Revision && old.hasState == (d.State != nil) &&
		proto.Equal(old.role, d.Role) && proto.Equal(old.export().State, d.State) {
		return nil
	}
	next := newDesiredState(d)
	if err := s.rewriteJournalLocked(next); err != nil {
		return err
	}
	s.desired = next
	return nil
}

// ApplyDelta records and saves a delta on top of the saved desired state by appending it to
// the journal: O(change). A delta that does not follow the saved revision is refused with
// ErrNotFollowing, and nothing is written. The State keeps the delta's messages.
func (s *State) ApplyDelta(delta *lvsctlv1.Delta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil || s.desired.revision != delta.GetPrevRevision() {
		return fmt.Errorf("state: %w", ErrNotFollowing)
	}
	b, err := proto.Marshal(delta)
	if err != nil {
		return fmt.Errorf("state: encode delta: %w", err)
	}
	if err := s.appendLocked(recordDelta, b); err != nil {
		return err
	}
	s.desired.apply(delta)
	return nil
}

// SetRole records and saves the role that goes with the saved desired state; unchanged, it
// writes nothing. Without a saved desired state it is refused with ErrNotFollowing: callers
// save the role with the desired state (SetDesired) then.
func (s *State) SetRole(r *lvsctlv1.RoleAssignment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil {
		return fmt.Errorf("state: %w: no desired state to set the role of", ErrNotFollowing)
	}
	if proto.Equal(s.desired.role, r) {
		return nil
	}
	var b []byte
	if r != nil {
		var err error
		if b, err = proto.Marshal(r); err != nil {
			return fmt.Errorf("state: encode role: %w", err)
		}
	}
	if err := s.appendLocked(recordRole, b); err != nil {
		return err
	}
	s.desired.role = r
	return nil
}

// The journal (version 2) is a 12-byte file header, "LVSJ", the version byte, three zero
// bytes and the CRC-32C of those 8, then a sequence of records. A record is a 12-byte header
// (little-endian: the body's length, the body's CRC-32C chained from the record before it,
// the CRC-32C of those 8 bytes), then the body: a type byte and its payload. The chain starts
// from the file header's CRC, so a record removed, repeated or moved from another journal
// breaks it; the header's own CRC tells a damaged length from a record cut short by a crash.
// The journal starts with a snapshot when there is a desired state.
//
// Version 1 (written before the integrity checks) had no file header and 8-byte record
// headers (length, CRC-32C of the body alone); Load reads it once and rewrites it.
const (
	recordSnapshot = 1 // a Snapshot message: revision and state (unset: no state)
	recordDelta    = 2 // a Delta message
	recordRole     = 3 // a RoleAssignment message; empty payload: no role
	recordApplied  = 4 // the applied revision, 8 bytes little-endian
	// recordNoState marks a snapshot whose Snapshot.state was absent; kept apart from an empty
	// state, which encodes as a present, empty message.
	recordNoState = 5

	journalVersion = 2
	fileHeader     = 12
	recordHeader   = 12
	v1RecordHeader = 8
)

var journalMagic = []byte("LVSJ")

// compactAt is the journal size below which it is never rewritten just for its length.
const compactAt = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journal is what State knows of desired.log.
type journal struct {
	size, baseSize int64
	// chain is the CRC of the last record (of the file header in a journal without records):
	// the next record's CRC continues it.
	chain uint32
	// rewrite: the file cannot be appended to as it is (it ends in a torn record, failed its
	// check, is of version 1, is missing, or the desired state came from a version 1
	// state.json and is not in the journal yet).
	rewrite bool
	// old: the file is of version 1, rewritten by Load.
	old bool
}

func (s *State) journalPath() string { return filepath.Join(s.dir, JournalName) }

// JournalPath is the desired-state journal's path: deleting it (with the agent stopped) makes
// the agent forget its saved desired state and applied revision, and keep what it owns.
func (s *State) JournalPath() string { return s.journalPath() }

func appliedPayload(rev int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(rev)) }

// newJournal starts a journal: its file header, and the chain's start.
func newJournal() ([]byte, uint32) {
	buf := append(slices.Clone(journalMagic), journalVersion, 0, 0, 0)
	sum := crc32.Checksum(buf, castagnoli)
	return binary.LittleEndian.AppendUint32(buf, sum), sum
}

// encodeRecord appends the record typ/payload to buf, chained from chain; it returns the
// record's CRC, the next record's chain.
func encodeRecord(buf []byte, chain uint32, typ byte, payload []byte) ([]byte, uint32) {
	sum := crc32.Update(crc32.Update(chain, castagnoli, []byte{typ}), castagnoli, payload)
	start := len(buf)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(1+len(payload)))
	buf = binary.LittleEndian.AppendUint32(buf, sum)
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf[start:], castagnoli))
	buf = append(buf, typ)
	return append(buf, payload...), sum
}

// appendLocked appends one record and fsyncs it; a journal that needs rewriting (or is not
// there yet), or has outgrown its snapshot, is rewritten instead (with the record's effect,
// which the caller then applies to memory: so the rewrite is made of the state after the
// record).
func (s *State) appendLocked(typ byte, payload []byte) error {
	if s.journal.rewrite || s.journal.size == 0 {
		return s.rewriteWithLocked(typ, payload)
	}
	rec, chain := encodeRecord(nil, s.journal.chain, typ, payload)
	f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.journal.rewrite = true
		return fmt.Errorf("state: open %s: %w", s.journalPath(), err)
	}
	_, werr := f.Write(rec)
	if werr == nil {
		werr = f.Sync()
	}
	if err := errors.Join(werr, f.Close()); err != nil {
		// Part of the record may be on disk: rewrite before the next append.
		s.journal.rewrite = true
		return fmt.Errorf("state: append to %s: %w", s.journalPath(), err)
	}
	s.journal.size += int64(len(rec))
	s.journal.chain = chain
	if grown := s.journal.size - s.journal.baseSize; grown > compactAt && grown > s.journal.baseSize {
		s.journal.rewrite = true // at the next append: this one is saved already
	}
	return nil
}

// rewriteWithLocked rewrites the journal as the state after the record typ/payload.
func (s *State) rewriteWithLocked(typ byte, payload []byte) error {
	next := &desiredState{}
	if s.desired != nil {
		*next = *s.desired // its clusters copied below only if a delta changes them
	}
	applied := s.applied
	switch typ {
	case recordDelta:
		var d lvsctlv1.Delta
		if err := proto.Unmarshal(payload, &d); err != nil {
			return fmt.Errorf("state: decode delta: %w", err)
		}
		next.Clusters = s.desired.Clone()
		next.apply(&d)
	case recordRole:
		next.role = nil
		if len(payload) > 0 {
			next.role = &lvsctlv1.RoleAssignment{}
			if err := proto.Unmarshal(payload, next.role); err != nil {
				return fmt.Errorf("state: decode role: %w", err)
			}
		}
	case recordApplied:
		applied = int64(binary.LittleEndian.Uint64(payload))
	}
	if s.desired == nil {
		next = nil
	}
	return s.writeJournalLocked(next, applied)
}

// rewriteJournalLocked rewrites the journal as next, with the current applied revision.
func (s *State) rewriteJournalLocked(next *desiredState) error {
	return s.writeJournalLocked(next, s.applied)
}

// writeJournalLocked writes a new journal atomically: a snapshot of d (if any), its role, the
// applied revision. A damaged journal is replaced by it.
func (s *State) writeJournalLocked(d *desiredState, applied int64) error {
	buf, chain := newJournal()
	if d != nil {
		if d.hasState {
			snap := &lvsctlv1.Snapshot{Revision: d.revision, State: d.export().State}
			b, err := proto.Marshal(snap)
			if err != nil {
				return fmt.Errorf("state: encode desired state: %w", err)
			}
			buf, chain = encodeRecord(buf, chain, recordSnapshot, b)
		} else {
			buf, chain = encodeRecord(buf, chain, recordNoState, appliedPayload(d.revision))
		}
		if d.role != nil {
			b, err := proto.Marshal(d.role)
			if err != nil {
				return fmt.Errorf("state: encode role: %w", err)
			}
			buf, chain = encodeRecord(buf, chain, recordRole, b)
		}
	}
	base := int64(len(buf))
	buf, chain = encodeRecord(buf, chain, recordApplied, appliedPayload(applied))
	if err := writeAtomic(s.dir, JournalName, buf); err != nil {
		return err
	}
	s.journal = journal{size: int64(len(buf)), baseSize: base, chain: chain}
	s.journalDamage = nil
	return nil
}

// loadJournal replays desired.log. Without one, a desired state or applied revision from a
// version 1 state.json is kept and written to a journal at the next save. A journal that
// fails its check leaves no desired state and no applied revision (journalDamage); only a
// failure to read it is an error.
func (s *State) loadJournal() error {
	data, err := os.ReadFile(s.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		s.journal.rewrite = s.desired != nil || s.applied != 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: read %s: %w", s.journalPath(), err)
	}
	v1Desired, v1Applied := s.desired, s.applied
	s.desired, s.applied = nil, 0
	var end int
	if bytes.HasPrefix(data, journalMagic) {
		end, err = s.readJournal(data)
	} else {
		s.journal.old = true
		end, err = s.readJournalV1(data)
	}
	if errors.Is(err, errVersion) {
		return fmt.Errorf("state: %s: %w", s.journalPath(), err)
	}
	if err != nil {
		// Nothing of a damaged journal is believed: a record further on may be what makes
		// the state before it wrong (a deleted cluster, a later role).
		s.desired, s.applied = nil, 0
		s.journal = journal{rewrite: true}
		s.journalDamage = damaged(s.journalPath(), data, err)
		return nil
	}
	if len(data) == 0 {
		// An empty file is no journal (none was ever written to it).
		s.desired, s.applied = v1Desired, v1Applied
		s.journal = journal{rewrite: s.desired != nil || s.applied != 0}
		return nil
	}
	s.journal.size = int64(end)
	// What follows the last whole record is a torn append: never append after it.
	s.journal.rewrite = s.journal.rewrite || s.journal.old || end < len(data)
	return nil
}

// readJournal replays a version 2 journal and returns where its whole records end. A tail
// that is the beginning of a record (or zeros where the file system extended the file but
// did not write it) is torn, and dropped; any other failure is damage.
func (s *State) readJournal(data []byte) (int, error) {
	if len(data) < fileHeader {
		return 0, fmt.Errorf("file header: %d bytes, want %d", len(data), fileHeader)
	}
	if crc32.Checksum(data[:8], castagnoli) != binary.LittleEndian.Uint32(data[8:]) {
		return 0, errors.New("file header: checksum does not match")
	}
	if v := data[len(journalMagic)]; v != journalVersion {
		// A newer agent's journal (a downgrade): not damage, and not to be overwritten.
		return 0, fmt.Errorf("file header: version %d is %w (%d)", v, errVersion, journalVersion)
	}
	chain := binary.LittleEndian.Uint32(data[8:])
	s.journal.chain = chain
	off := fileHeader
	for off < len(data) {
		rest := data[off:]
		if len(rest) < recordHeader {
			break // a header cut short
		}
		if crc32.Checksum(rest[:8], castagnoli) != binary.LittleEndian.Uint32(rest[8:]) {
			if allZero(rest) {
				break
			}
			return 0, fmt.Errorf("record at byte %d: header checksum does not match", off)
		}
		n := int(binary.LittleEndian.Uint32(rest))
		if n < 1 {
			return 0, fmt.Errorf("record at byte %d: empty", off)
		}
		if n > len(rest)-recordHeader {
			break // a body cut short
		}
		body := rest[recordHeader : recordHeader+n]
		sum := crc32.Update(chain, castagnoli, body)
		if sum != binary.LittleEndian.Uint32(rest[4:]) {
			if allZero(body) && recordHeader+n == len(rest) {
				break
			}
			return 0, fmt.Errorf("record at byte %d: checksum does not match (changed, or not in its place)", off)
		}
		if err := s.replay(body[0], body[1:]); err != nil {
			return 0, fmt.Errorf("record at byte %d: %w", off, err)
		}
		chain = sum
		off += recordHeader + n
		if body[0] == recordSnapshot || body[0] == recordNoState {
			s.journal.baseSize = int64(off)
		}
		s.journal.chain = chain
	}
	return off, nil
}

// readJournalV1 replays a version 1 journal (no file header, no chain, no header check) and
// returns where its whole records end. A record that does not fit in the file is torn only
// after a whole one: at the start, it is a version 2 journal whose file header was damaged.
func (s *State) readJournalV1(data []byte) (int, error) {
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < v1RecordHeader {
			break
		}
		n := int(binary.LittleEndian.Uint32(rest))
		if n < 1 || n > len(rest)-v1RecordHeader {
			if off > 0 && (n > 0 || allZero(rest)) {
				break
			}
			return 0, fmt.Errorf("record at byte %d: length %d does not fit in the file (or the file header is damaged)", off, n)
		}
		body := rest[v1RecordHeader : v1RecordHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
			if allZero(body) && v1RecordHeader+n == len(rest) {
				break
			}
			return 0, fmt.Errorf("record at byte %d: checksum does not match", off)
		}
		if err := s.replay(body[0], body[1:]); err != nil {
			return 0, fmt.Errorf("record at byte %d: %w", off, err)
		}
		off += v1RecordHeader + n
		if body[0] == recordSnapshot || body[0] == recordNoState {
			s.journal.baseSize = int64(off)
		}
	}
	return off, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func (s *State) replay(typ byte, payload []byte) error {
	switch typ {
	case recordSnapshot:
		var snap lvsctlv1.Snapshot
		if err := proto.Unmarshal(payload, &snap); err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		st := snap.GetState()
		if st == nil {
			st = &lvsctlv1.DesiredState{}
		}
		s.desired = newDesiredState(Desired{Revision: snap.GetRevision(), State: st})
	case recordNoState:
		if len(payload) != 8 {
			return fmt.Errorf("snapshot without state: %d bytes, want 8", len(payload))
		}
		s.desired = newDesiredState(Desired{Revision: int64(binary.LittleEndian.Uint64(payload))})
	case recordDelta:
		var d lvsctlv1.Delta
		if err := proto.Unmarshal(payload, &d); err != nil {
			return fmt.Errorf("delta: %w", err)
		}
		if s.desired == nil || s.desired.revision != d.GetPrevRevision() {
			return fmt.Errorf("delta from revision %d: %w", d.GetPrevRevision(), ErrNotFollowing)
		}
		s.desired.apply(&d)
	case recordRole:
		if s.desired == nil {
			return errors.New("role before any desired state")
		}
		s.desired.role = nil
		if len(payload) > 0 {
			s.desired.role = &lvsctlv1.RoleAssignment{}
			if err := proto.Unmarshal(payload, s.desired.role); err != nil {
				return fmt.Errorf("role: %w", err)
			}
		}
	case recordApplied:
		if len(payload) != 8 {
			return fmt.Errorf("applied revision: %d bytes, want 8", len(payload))
		}
		s.applied = int64(binary.LittleEndian.Uint64(payload))
	default:
		return fmt.Errorf("unknown record type %d", typ)
	}
	return nil
}

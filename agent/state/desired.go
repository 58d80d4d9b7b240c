package state

import (
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

// The journal is a sequence of records: a 4-byte length and a 4-byte CRC-32C of what follows
// (both little-endian), then a type byte and its payload. It starts with a snapshot when there
// is a desired state.
const (
	recordSnapshot = 1 // a Snapshot message: revision and state (unset: no state)
	recordDelta    = 2 // a Delta message
	recordRole     = 3 // a RoleAssignment message; empty payload: no role
	recordApplied  = 4 // the applied revision, 8 bytes little-endian
	// recordNoState marks a snapshot whose Snapshot.state was absent; kept apart from an empty
	// state, which encodes as a present, empty message.
	recordNoState = 5

	recordHeader = 8
)

// compactAt is the journal size below which it is never rewritten just for its length.
const compactAt = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journal is what State knows of desired.log.
type journal struct {
	size, baseSize int64
	// rewrite: the file cannot be appended to as it is (it ends in a torn record, or the
	// desired state came from a version 1 state.json and is not in the journal yet).
	rewrite bool
}

func (s *State) journalPath() string { return filepath.Join(s.dir, JournalName) }

func appliedPayload(rev int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(rev)) }

func encodeRecord(buf []byte, typ byte, payload []byte) []byte {
	body := append([]byte{typ}, payload...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(body)))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(body, castagnoli))
	return append(buf, body...)
}

// appendLocked appends one record and fsyncs it; a journal that needs rewriting, or has
// outgrown its snapshot, is rewritten instead (with the record's effect, which the caller then
// applies to memory: so the rewrite is made of the state after the record).
func (s *State) appendLocked(typ byte, payload []byte) error {
	if s.journal.rewrite {
		return s.rewriteWithLocked(typ, payload)
	}
	rec := encodeRecord(nil, typ, payload)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("state: create directory: %w", err)
	}
	created := false
	if _, err := os.Stat(s.journalPath()); errors.Is(err, fs.ErrNotExist) {
		created = true
	}
	f, err := os.OpenFile(s.journalPath(), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
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
	if created {
		if err := syncDir(s.dir); err != nil {
			s.journal.rewrite = true
			return fmt.Errorf("state: sync directory %s: %w", s.dir, err)
		}
	}
	s.journal.size += int64(len(rec))
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
// applied revision.
func (s *State) writeJournalLocked(d *desiredState, applied int64) error {
	var buf []byte
	if d != nil {
		if d.hasState {
			snap := &lvsctlv1.Snapshot{Revision: d.revision, State: d.export().State}
			b, err := proto.Marshal(snap)
			if err != nil {
				return fmt.Errorf("state: encode desired state: %w", err)
			}
			buf = encodeRecord(buf, recordSnapshot, b)
		} else {
			buf = encodeRecord(buf, recordNoState, appliedPayload(d.revision))
		}
		if d.role != nil {
			b, err := proto.Marshal(d.role)
			if err != nil {
				return fmt.Errorf("state: encode role: %w", err)
			}
			buf = encodeRecord(buf, recordRole, b)
		}
	}
	base := int64(len(buf))
	buf = encodeRecord(buf, recordApplied, appliedPayload(applied))
	if err := writeAtomic(s.dir, JournalName, buf); err != nil {
		return err
	}
	s.journal = journal{size: int64(len(buf)), baseSize: base}
	return nil
}

// loadJournal replays desired.log. Without one, a desired state or applied revision from a
// version 1 state.json is kept and written to a journal at the next save.
func (s *State) loadJournal() error {
	data, err := os.ReadFile(s.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		s.journal.rewrite = s.desired != nil || s.applied != 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: read %s: %w", s.journalPath(), err)
	}
	s.desired = nil
	off := 0
	for off < len(data) {
		rest := data[off:]
		if len(rest) < recordHeader {
			break
		}
		n := int(binary.LittleEndian.Uint32(rest))
		if n < 1 || n > len(rest)-recordHeader {
			break
		}
		body := rest[recordHeader : recordHeader+n]
		if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
			break
		}
		if err := s.replay(body[0], body[1:]); err != nil {
			return fmt.Errorf("state: %s: record at byte %d: %w", s.journalPath(), off, err)
		}
		if body[0] == recordSnapshot || body[0] == recordNoState {
			s.journal.baseSize = int64(off + recordHeader + n)
		}
		off += recordHeader + n
	}
	s.journal.size = int64(off)
	// What follows the last whole record is a torn append: never append after it.
	s.journal.rewrite = off < len(data)
	return nil
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

// Package state keeps the agent's state on disk: what this agent created in the kernel (it owns
// only those objects, so it coexists with kube-proxy and hand-made rules), the last revision it
// applied, and the last desired state it received, so that after a restart with the controller
// unreachable it can keep the data plane as it was.
//
// Two files, because they change at different rates. state.json holds what the agent owns; it
// is rewritten (temporary file, fsync, rename) once per batch of changes (Commit), never once
// per kernel object, and a weight change does not touch it. desired.log holds the desired
// state as a journal: a snapshot, then the deltas, role changes and applied revisions that
// followed it, each appended and fsynced on its own, so saving one changed cluster costs
// O(change), not O(clusters). When the appended records outgrow the snapshot the journal is
// rewritten as one snapshot (amortized O(change) too).
//
// Both files carry an integrity check: state.json a SHA-256 of its bytes, each journal
// record a CRC-32C chained through the records before it (and its header a CRC of its own, so
// a damaged length is not mistaken for a record cut short by a crash). It protects against a
// damaged disk, a torn or truncated copy, and careless edits by hand; it is no protection
// against root, who can rewrite a file and its checksum alike. A file that fails its check is
// ErrIntegrity: Load still returns a State, without the saved desired state, with what the
// damaged state.json says the agent owns held as suspect (Adopt), and a copy of the damaged
// file beside it (NAME.damaged) for the operator. The files of the previous version (no
// checksum in state.json, journal records without a chain) are read once and rewritten with
// the checks by Load.
package state

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// FileName is the state file's name inside the agent's state directory.
const FileName = "state.json"

// fileVersion is the format of the file; a file of another version is refused rather than
// misread, since forgetting what the agent owns would make it leak or fight over kernel objects.
// Version 1 files (which also held the desired state) and version 2 files (no checksum) are
// read, and written as version 3 by Load.
const fileVersion = 3

// ErrIntegrity is wrapped by Load's error (and Integrity's) when a state file fails its
// integrity check: the saved desired state must not be applied, and what the agent owns is not
// known for sure. The State Load returns with it is usable: it owns what an intact state.json
// listed (nothing if state.json was the damaged one), and holds the desired state of an intact
// journal only (the agent does not apply it offline either way).
var ErrIntegrity = errors.New("state file failed its integrity check")

// Address is one interface address the agent added.
type Address struct {
	Interface string
	Prefix    netip.Prefix
}

func (a Address) String() string { return a.Prefix.String() + " dev " + a.Interface }

// State is the agent's persistent state. Every change is on disk before the method returns;
// the in-memory copy always equals the files (a failed write is rolled back). It is safe for
// concurrent use.
type State struct {
	dir string

	mu        sync.Mutex
	services  map[dataplane.ServiceKey]struct{}
	addresses map[Address]struct{}
	applied   int64
	desired   *desiredState
	journal   journal
	// suspectServices and suspectAddresses are what a damaged state.json said the agent owns:
	// not owned (never changed or deleted) until Adopt finds them in the controller's state.
	suspectServices  map[dataplane.ServiceKey]struct{}
	suspectAddresses map[Address]struct{}
	// fileDamage and journalDamage say why state.json and desired.log failed their checks at
	// Load (nil: intact), until they are written again.
	fileDamage, journalDamage error
}

// Load reads DIR/state.json and DIR/desired.log. Missing files (or directory) give an empty
// state. A file that cannot be read, or is of an unknown version, is an error and no State:
// starting empty would make the agent forget what it owns. A file that fails its integrity
// check gives a State and an error wrapping ErrIntegrity (see the package comment). The
// journal's last record may be torn by a crash while it was appended: it is dropped, and the
// journal rewritten at the next save. Files of the previous versions are rewritten with
// their checks before Load returns.
func Load(dir string) (*State, error) {
	if dir == "" {
		return nil, errors.New("state: directory is empty")
	}
	s := &State{
		dir:       dir,
		services:  map[dataplane.ServiceKey]struct{}{},
		addresses: map[Address]struct{}{},
	}
	path := s.Path()
	data, err := os.ReadFile(path)
	migrate := false
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("state: read %s: %w", path, err)
	default:
		old, err := s.decode(data)
		switch {
		case errors.Is(err, errVersion):
			return nil, fmt.Errorf("state: %s: %w", path, err)
		case err != nil:
			s.fileDamage = damaged(path, data, err)
		default:
			migrate = old
		}
	}
	if err := s.loadJournal(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case migrate && s.fileDamage == nil:
		// Accepted once without a checksum: from now on it has one. The journal (with a
		// version 1 file's desired state) is written first, as at every save.
		if err := s.saveLocked(); err != nil {
			return nil, fmt.Errorf("state: rewrite %s with a checksum: %w", path, err)
		}
	case s.journal.old && s.journalDamage == nil:
		if err := s.rewriteJournalLocked(s.desired); err != nil {
			return nil, fmt.Errorf("state: rewrite %s with checks: %w", s.journalPath(), err)
		}
	}
	if err := errors.Join(s.fileDamage, s.journalDamage); err != nil {
		return s, err
	}
	return s, nil
}

// Integrity is why a state file failed its integrity check at Load (wrapping ErrIntegrity),
// until the file is written again (the controller's state saved, or Adopt); nil when both are
// intact.
func (s *State) Integrity() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.fileDamage, s.journalDamage)
}

// Path is the state file's path.
func (s *State) Path() string { return filepath.Join(s.dir, FileName) }

// OwnsService reports whether the agent created the IPVS service.
func (s *State) OwnsService(k dataplane.ServiceKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.services[k]
	return ok
}

// OwnedServices lists the IPVS services the agent created, sorted by family then mark.
func (s *State) OwnedServices() []dataplane.ServiceKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]dataplane.ServiceKey, 0, len(s.services))
	for k := range s.services {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, dataplane.ServiceKey.Compare)
	return keys
}

// OwnsAddress reports whether the agent added the address (same interface and prefix).
func (s *State) OwnsAddress(a Address) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.addresses[a]
	return ok
}

// OwnedAddresses lists the addresses the agent added, sorted by interface then prefix.
func (s *State) OwnedAddresses() []Address {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Address, 0, len(s.addresses))
	for a := range s.addresses {
		out = append(out, a)
	}
	slices.SortFunc(out, compareAddresses)
	return out
}

// Changes is a batch of ownership changes, saved together by Commit. Callers record what they
// are about to create before creating it, so a crash never leaves a created object
// unrecorded; and forget what they deleted, or failed to create, after.
type Changes struct {
	RecordServices  []dataplane.ServiceKey
	ForgetServices  []dataplane.ServiceKey
	RecordAddresses []Address
	ForgetAddresses []Address
}

// Empty reports whether c changes nothing.
func (c Changes) Empty() bool {
	return len(c.RecordServices)+len(c.ForgetServices)+len(c.RecordAddresses)+len(c.ForgetAddresses) == 0
}

// Commit applies the changes and saves them in one write: all or nothing. Forgets apply after
// records, so an object in both lists ends forgotten. Changes that change nothing (recording
// an owned object, forgetting one not owned) write nothing.
func (s *State) Commit(c Changes) error {
	for _, k := range c.RecordServices {
		if k.Family != dataplane.IPv4 && k.Family != dataplane.IPv6 {
			return fmt.Errorf("state: record service %s: family %d is not IPv4 or IPv6", k, k.Family)
		}
	}
	for _, a := range c.RecordAddresses {
		if a.Interface == "" {
			return fmt.Errorf("state: record address %s: interface is empty", a.Prefix)
		}
		if !a.Prefix.IsValid() {
			return fmt.Errorf("state: record address on %s: prefix is not valid", a.Interface)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var undo []func()
	for _, k := range c.RecordServices {
		if _, ok := s.services[k]; !ok {
			s.services[k] = struct{}{}
			undo = append(undo, func() { delete(s.services, k) })
		}
	}
	for _, a := range c.RecordAddresses {
		if _, ok := s.addresses[a]; !ok {
			s.addresses[a] = struct{}{}
			undo = append(undo, func() { delete(s.addresses, a) })
		}
	}
	for _, k := range c.ForgetServices {
		if _, ok := s.services[k]; ok {
			delete(s.services, k)
			undo = append(undo, func() { s.services[k] = struct{}{} })
		}
	}
	for _, a := range c.ForgetAddresses {
		if _, ok := s.addresses[a]; ok {
			delete(s.addresses, a)
			undo = append(undo, func() { s.addresses[a] = struct{}{} })
		}
	}
	if len(undo) == 0 {
		return nil
	}
	if err := s.saveLocked(); err != nil {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return err
	}
	return nil
}

// AppliedRevision is the last revision the agent applied (0 if none).
func (s *State) AppliedRevision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// SetAppliedRevision records and saves the last applied revision: one small journal record.
func (s *State) SetAppliedRevision(rev int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied == rev {
		return nil
	}
	if err := s.appendLocked(recordApplied, appliedPayload(rev)); err != nil {
		return err
	}
	s.applied = rev
	return nil
}

func compareAddresses(a, b Address) int {
	if a.Interface != b.Interface {
		if a.Interface < b.Interface {
			return -1
		}
		return 1
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return a.Prefix.Bits() - b.Prefix.Bits()
}

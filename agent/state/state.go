// Package state keeps the agent's state file: what this agent created in the kernel (it owns
// only those objects, so it coexists with kube-proxy and hand-made rules), the last revision it
// applied, and the last desired state it received, so that after a restart with the controller
// unreachable it can keep the data plane as it was.
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

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// FileName is the state file's name inside the agent's state directory.
const FileName = "state.json"

// fileVersion is the format of the file; a file of another version is refused rather than
// misread, since forgetting what the agent owns would make it leak or fight over kernel objects.
const fileVersion = 1

// Address is one interface address the agent added.
type Address struct {
	Interface string
	Prefix    netip.Prefix
}

func (a Address) String() string { return a.Prefix.String() + " dev " + a.Interface }

// Desired is the last desired state the agent received from the controller.
type Desired struct {
	Revision int64
	State    *lvsctlv1.DesiredState
	Role     *lvsctlv1.RoleAssignment
}

// State is the agent's persistent state. Every change is written to disk before the method
// returns; the in-memory copy always equals the file (a failed write is rolled back). It is safe
// for concurrent use.
type State struct {
	dir string

	mu        sync.Mutex
	services  map[dataplane.ServiceKey]struct{}
	addresses map[Address]struct{}
	applied   int64
	desired   *Desired
}

// Load reads DIR/state.json. A missing file (or directory) gives an empty state; a file that
// cannot be read or parsed is an error: starting empty would make the agent forget what it owns.
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
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", path, err)
	}
	if err := s.decode(data); err != nil {
		return nil, fmt.Errorf("state: %s: %w", path, err)
	}
	return s, nil
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
	slices.SortFunc(keys, compareKeys)
	return keys
}

// RecordService records and saves that the agent owns the service. Callers record before
// creating it, so a crash never leaves a created service unrecorded.
func (s *State) RecordService(k dataplane.ServiceKey) error {
	if k.Family != dataplane.IPv4 && k.Family != dataplane.IPv6 {
		return fmt.Errorf("state: record service %s: family %d is not IPv4 or IPv6", k, k.Family)
	}
	return s.update(func() (undo func()) {
		if _, ok := s.services[k]; ok {
			return nil
		}
		s.services[k] = struct{}{}
		return func() { delete(s.services, k) }
	})
}

// ForgetService records and saves that the agent no longer owns the service.
func (s *State) ForgetService(k dataplane.ServiceKey) error {
	return s.update(func() (undo func()) {
		if _, ok := s.services[k]; !ok {
			return nil
		}
		delete(s.services, k)
		return func() { s.services[k] = struct{}{} }
	})
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

// RecordAddress records and saves that the agent owns the address.
func (s *State) RecordAddress(a Address) error {
	if a.Interface == "" {
		return fmt.Errorf("state: record address %s: interface is empty", a.Prefix)
	}
	if !a.Prefix.IsValid() {
		return fmt.Errorf("state: record address on %s: prefix is not valid", a.Interface)
	}
	return s.update(func() (undo func()) {
		if _, ok := s.addresses[a]; ok {
			return nil
		}
		s.addresses[a] = struct{}{}
		return func() { delete(s.addresses, a) }
	})
}

// ForgetAddress records and saves that the agent no longer owns the address.
func (s *State) ForgetAddress(a Address) error {
	return s.update(func() (undo func()) {
		if _, ok := s.addresses[a]; !ok {
			return nil
		}
		delete(s.addresses, a)
		return func() { s.addresses[a] = struct{}{} }
	})
}

// AppliedRevision is the last revision the agent applied (0 if none).
func (s *State) AppliedRevision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

// SetAppliedRevision records and saves the last applied revision.
func (s *State) SetAppliedRevision(rev int64) error {
	return s.update(func() (undo func()) {
		old := s.applied
		if old == rev {
			return nil
		}
		s.applied = rev
		return func() { s.applied = old }
	})
}

// Desired returns a copy of the last desired state received, and false if there is none.
func (s *State) Desired() (Desired, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.desired == nil {
		return Desired{}, false
	}
	return cloneDesired(*s.desired), true
}

// SetDesired records and saves the last desired state received. It keeps its own copy. An
// unchanged one is not written again: the agent sets it at every resync.
func (s *State) SetDesired(d Desired) error {
	c := cloneDesired(d)
	return s.update(func() (undo func()) {
		old := s.desired
		if old != nil && old.Revision == c.Revision && proto.Equal(old.State, c.State) && proto.Equal(old.Role, c.Role) {
			return nil
		}
		s.desired = &c
		return func() { s.desired = old }
	})
}

// update applies change under the lock and saves; if saving fails the change is undone so the
// memory never claims what the disk does not. change returns nil when it changed nothing.
func (s *State) update(change func() (undo func())) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	undo := change()
	if undo == nil {
		return nil
	}
	if err := s.saveLocked(); err != nil {
		undo()
		return err
	}
	return nil
}

func cloneDesired(d Desired) Desired {
	out := Desired{Revision: d.Revision}
	if d.State != nil {
		out.State = proto.Clone(d.State).(*lvsctlv1.DesiredState)
	}
	if d.Role != nil {
		out.Role = proto.Clone(d.Role).(*lvsctlv1.RoleAssignment)
	}
	return out
}

func compareKeys(a, b dataplane.ServiceKey) int {
	if a.Family != b.Family {
		return int(a.Family) - int(b.Family)
	}
	switch {
	case a.FWMark < b.FWMark:
		return -1
	case a.FWMark > b.FWMark:
		return 1
	}
	return 0
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

package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// fileData is the JSON layout of the state file. The desired state is protojson inside it, so
// the file stays readable with jq and the proto's own field names.
// Version 1 also held the applied revision and the desired state, which now live in the
// journal (desired.log); they are still read from a version 1 file.
type fileData struct {
	Version         int           `json:"version"`
	Services        []fileService `json:"services"`
	Addresses       []fileAddress `json:"addresses"`
	AppliedRevision int64         `json:"appliedRevision,omitempty"`
	Desired         *fileDesired  `json:"desired,omitempty"`
}

type fileService struct {
	Family string `json:"family"`
	FWMark uint32 `json:"fwmark"`
}

type fileAddress struct {
	Interface string `json:"interface"`
	Prefix    string `json:"prefix"`
}

type fileDesired struct {
	Revision int64           `json:"revision"`
	State    json.RawMessage `json:"state,omitempty"`
	Role     json.RawMessage `json:"role,omitempty"`
}

func familyName(f dataplane.Family) string { return f.String() }

func parseFamily(s string) (dataplane.Family, error) {
	switch s {
	case "ipv4":
		return dataplane.IPv4, nil
	case "ipv6":
		return dataplane.IPv6, nil
	}
	return 0, fmt.Errorf("family %q is not ipv4 or ipv6", s)
}

func (s *State) encodeLocked() ([]byte, error) {
	fd := fileData{
		Version:   fileVersion,
		Services:  make([]fileService, 0, len(s.services)),
		Addresses: make([]fileAddress, 0, len(s.addresses)),
	}
	keys := make([]dataplane.ServiceKey, 0, len(s.services))
	for k := range s.services {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		fd.Services = append(fd.Services, fileService{Family: familyName(k.Family), FWMark: k.FWMark})
	}
	addrs := make([]Address, 0, len(s.addresses))
	for a := range s.addresses {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, compareAddresses)
	for _, a := range addrs {
		fd.Addresses = append(fd.Addresses, fileAddress{Interface: a.Interface, Prefix: a.Prefix.String()})
	}
	return json.MarshalIndent(fd, "", "  ")
}

func (s *State) decode(data []byte) error {
	var fd fileData
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fd); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	switch {
	case fd.Version == 1:
	case fd.Version != fileVersion:
		return fmt.Errorf("version: %d is not a supported version (1, %d)", fd.Version, fileVersion)
	case fd.AppliedRevision != 0 || fd.Desired != nil:
		return fmt.Errorf("version %d: the applied revision and desired state belong in %s", fd.Version, JournalName)
	}
	for i, fs := range fd.Services {
		fam, err := parseFamily(fs.Family)
		if err != nil {
			return fmt.Errorf("services[%d]: %w", i, err)
		}
		if fs.FWMark == 0 {
			return fmt.Errorf("services[%d]: fwmark 0 is not a firewall mark", i)
		}
		s.services[dataplane.ServiceKey{Family: fam, FWMark: fs.FWMark}] = struct{}{}
	}
	for i, fa := range fd.Addresses {
		if fa.Interface == "" {
			return fmt.Errorf("addresses[%d]: interface is empty", i)
		}
		p, err := netip.ParsePrefix(fa.Prefix)
		if err != nil {
			return fmt.Errorf("addresses[%d]: %w", i, err)
		}
		s.addresses[Address{Interface: fa.Interface, Prefix: p}] = struct{}{}
	}
	s.applied = fd.AppliedRevision
	if fd.Desired != nil {
		d := Desired{Revision: fd.Desired.Revision}
		if len(fd.Desired.State) > 0 {
			d.State = &lvsctlv1.DesiredState{}
			if err := protojson.Unmarshal(fd.Desired.State, d.State); err != nil {
				return fmt.Errorf("desired.state: %w", err)
			}
		}
		if len(fd.Desired.Role) > 0 {
			d.Role = &lvsctlv1.RoleAssignment{}
			if err := protojson.Unmarshal(fd.Desired.Role, d.Role); err != nil {
				return fmt.Errorf("desired.role: %w", err)
			}
		}
		s.desired = newDesiredState(d)
	}
	return nil
}

// saveLocked writes state.json. A journal that must be rewritten (a version 1 file's desired
// state, not yet in a journal) is written first, so rewriting state.json never loses it.
func (s *State) saveLocked() error {
	if s.journal.rewrite {
		if err := s.rewriteJournalLocked(s.desired); err != nil {
			return err
		}
	}
	data, err := s.encodeLocked()
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	return writeAtomic(s.dir, FileName, data)
}

// writeAtomic replaces DIR/NAME: a temporary file in the same directory, fsync, rename over
// the old file, fsync of the directory so the rename itself survives a power loss.
func writeAtomic(dir, name string, data []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state: create directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return fmt.Errorf("state: create temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			// The temporary file is useless once the write failed; its removal error adds nothing.
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("state: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("state: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", tmp.Name(), err)
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("state: rename to %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("state: sync directory %s: %w", dir, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// fileData is the JSON layout of the state file. The desired state is protojson inside it, so
// the file stays readable with jq and the proto's own field names.
// Version 1 also held the applied revision and the desired state, which now live in the
// journal (desired.log); they are still read from a version 1 file. Version 3 adds SHA256.
type fileData struct {
	Version         int           `json:"version"`
	Services        []fileService `json:"services"`
	Addresses       []fileAddress `json:"addresses"`
	AppliedRevision int64         `json:"appliedRevision,omitempty"`
	Desired         *fileDesired  `json:"desired,omitempty"`
	// SHA256 is the hex SHA-256 of the file's bytes with this value written as 64 zeros: of
	// the file exactly as written, so that any change to it is seen, even one that reads the
	// same (a key's case, spaces).
	SHA256 string `json:"sha256,omitempty"`
}

// fileService is one owned service: a firewall-mark one by family and mark, a plain one by
// family, protocol, address and port. The plain fields are left out of a firewall-mark entry,
// so a file of firewall-mark services only is written as before plain services existed (and an
// older agent reads it).
type fileService struct {
	Family   string  `json:"family"`
	FWMark   uint32  `json:"fwmark,omitempty"`
	Protocol string  `json:"protocol,omitempty"`
	Address  string  `json:"address,omitempty"`
	Port     *uint16 `json:"port,omitempty"`
}

func fileServiceOf(k dataplane.ServiceKey) fileService {
	if k.IsFWMark() {
		return fileService{Family: familyName(k.Family), FWMark: k.FWMark}
	}
	port := k.Port
	return fileService{Family: familyName(k.Family), Protocol: k.Protocol.String(), Address: k.Address.String(), Port: &port}
}

// key is the service a file entry names, or why it names none.
func (fs fileService) key() (dataplane.ServiceKey, error) {
	fam, err := parseFamily(fs.Family)
	if err != nil {
		return dataplane.ServiceKey{}, err
	}
	if fs.Protocol == "" && fs.Address == "" && fs.Port == nil {
		if fs.FWMark == 0 {
			return dataplane.ServiceKey{}, errors.New("fwmark 0 is not a firewall mark")
		}
		return dataplane.ServiceKey{Family: fam, FWMark: fs.FWMark}, nil
	}
	switch {
	case fs.FWMark != 0:
		return dataplane.ServiceKey{}, errors.New("fwmark with protocol, address or port: a service is one or the other")
	case fs.Port == nil:
		return dataplane.ServiceKey{}, errors.New("port: missing")
	}
	proto, err := parseProtocol(fs.Protocol)
	if err != nil {
		return dataplane.ServiceKey{}, err
	}
	addr, err := netip.ParseAddr(fs.Address)
	if err != nil {
		return dataplane.ServiceKey{}, fmt.Errorf("address: %w", err)
	}
	if dataplane.FamilyOf(addr) != fam || addr.Is4In6() || addr.Zone() != "" {
		return dataplane.ServiceKey{}, fmt.Errorf("address: %s is not a plain %s address", addr, fam)
	}
	return dataplane.ServiceKey{Family: fam, Protocol: proto, Address: addr, Port: *fs.Port}, nil
}

func parseProtocol(s string) (dataplane.Protocol, error) {
	for _, p := range []dataplane.Protocol{dataplane.TCP, dataplane.UDP, dataplane.SCTP} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("protocol %q is not tcp, udp or sctp", s)
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

// sumField is how the checksum appears in the file; sumPlaceholder stands for its value
// while the file is summed.
const sumField = `"sha256": "`

var sumPlaceholder = strings.Repeat("0", sha256.Size*2)

// fileSum is the checksum of data whose checksum value starts at at.
func fileSum(data []byte, at int) string {
	blank := slices.Clone(data)
	copy(blank[at:], sumPlaceholder)
	sum := sha256.Sum256(blank)
	return hex.EncodeToString(sum[:])
}

// checkSum verifies a version 3 file's checksum, whose value the decoder read as value.
func checkSum(data []byte, value string) error {
	if value == "" {
		return errors.New("sha256: missing")
	}
	field := []byte(sumField + value + `"`)
	// Exactly one, where it is written: a key whose case changed still decodes.
	if len(value) != len(sumPlaceholder) || bytes.Count(data, field) != 1 {
		return errors.New("sha256: not as written")
	}
	if fileSum(data, bytes.Index(data, field)+len(sumField)) != value {
		return errors.New("sha256: does not match the file (it was changed after it was written)")
	}
	return nil
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
	slices.SortFunc(keys, dataplane.ServiceKey.Compare)
	for _, k := range keys {
		fd.Services = append(fd.Services, fileServiceOf(k))
	}
	addrs := make([]Address, 0, len(s.addresses))
	for a := range s.addresses {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, compareAddresses)
	for _, a := range addrs {
		fd.Addresses = append(fd.Addresses, fileAddress{Interface: a.Interface, Prefix: a.Prefix.String()})
	}
	fd.SHA256 = sumPlaceholder
	b, err := json.MarshalIndent(fd, "", "  ")
	if err != nil {
		return nil, err
	}
	at := bytes.Index(b, []byte(sumField+sumPlaceholder)) + len(sumField)
	copy(b[at:], fileSum(b, at))
	return b, nil
}

// errVersion is a state file of a version this agent does not know (a newer agent's): not
// damage, so refused outright rather than read as far as it goes.
var errVersion = errors.New("not a supported version")

// decode reads a state file into s. old: the file is of a version without a checksum,
// accepted once (Load rewrites it with one). An error wrapping errVersion refuses the file;
// any other error is damage: the entries that decoded are then suspect, not owned (Adopt).
func (s *State) decode(data []byte) (old bool, err error) {
	var fd fileData
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fd); err != nil {
		s.salvage(data)
		return false, fmt.Errorf("parse: %w", err)
	}
	if dec.More() {
		s.salvage(data)
		return false, errors.New("parse: data after the object")
	}
	switch {
	case fd.Version == 1 || fd.Version == 2:
		old = true
	case fd.Version != fileVersion:
		return false, fmt.Errorf("version: %d is %w (1, 2, %d)", fd.Version, errVersion, fileVersion)
	}
	services := map[dataplane.ServiceKey]struct{}{}
	addresses := map[Address]struct{}{}
	var errs []error
	if fd.Version != 1 && (fd.AppliedRevision != 0 || fd.Desired != nil) {
		errs = append(errs, fmt.Errorf("version %d: the applied revision and desired state belong in %s", fd.Version, JournalName))
	}
	if fd.Version != fileVersion && fd.SHA256 != "" {
		// No file of those versions had one: this is a version 3 file with its version changed.
		errs = append(errs, fmt.Errorf("sha256: version %d files have none", fd.Version))
	}
	if fd.Version == fileVersion {
		if err := checkSum(data, fd.SHA256); err != nil {
			errs = append(errs, err)
		}
	}
	for i, fs := range fd.Services {
		k, err := fs.key()
		if err != nil {
			errs = append(errs, fmt.Errorf("services[%d]: %w", i, err))
			continue
		}
		services[k] = struct{}{}
	}
	for i, fa := range fd.Addresses {
		p, err := netip.ParsePrefix(fa.Prefix)
		switch {
		case fa.Interface == "":
			errs = append(errs, fmt.Errorf("addresses[%d]: interface is empty", i))
		case err != nil:
			errs = append(errs, fmt.Errorf("addresses[%d]: %w", i, err))
		default:
			addresses[Address{Interface: fa.Interface, Prefix: p}] = struct{}{}
		}
	}
	var desired *desiredState
	if fd.Version == 1 && fd.Desired != nil {
		d := Desired{Revision: fd.Desired.Revision}
		if len(fd.Desired.State) > 0 {
			d.State = &lvsctlv1.DesiredState{}
			if err := protojson.Unmarshal(fd.Desired.State, d.State); err != nil {
				errs = append(errs, fmt.Errorf("desired.state: %w", err))
			}
		}
		if len(fd.Desired.Role) > 0 {
			d.Role = &lvsctlv1.RoleAssignment{}
			if err := protojson.Unmarshal(fd.Desired.Role, d.Role); err != nil {
				errs = append(errs, fmt.Errorf("desired.role: %w", err))
			}
		}
		desired = newDesiredState(d)
	}
	if len(errs) > 0 {
		// Nothing from a damaged file is believed: what it says the agent owns becomes
		// suspect, and its desired state and revision are dropped.
		s.suspectServices, s.suspectAddresses = services, addresses
		return false, errors.Join(errs...)
	}
	s.services, s.addresses = services, addresses
	if fd.Version == 1 {
		s.applied, s.desired = fd.AppliedRevision, desired
	}
	return old, nil
}

// The entries of a state file as encodeLocked writes them, found by salvage in one that no
// longer parses.
var (
	salvageService = regexp.MustCompile(`"family":\s*"(ipv[46])",\s*"fwmark":\s*([0-9]{1,10})\s*}`)
	salvagePlain   = regexp.MustCompile(`"family":\s*"(ipv[46])",\s*"protocol":\s*"([a-z]{3,4})",\s*"address":\s*"([^"\\]{1,64})",\s*"port":\s*([0-9]{1,5})\s*}`)
	salvageAddress = regexp.MustCompile(`"interface":\s*"([^"\\]{1,64})",\s*"prefix":\s*"([^"\\]{1,64})"\s*}`)
)

// salvage makes suspect the entries still whole in a state file that does not parse (a
// damaged brace or colon elsewhere): they are only adopted if the controller's state wants
// them (Adopt), so an entry found here is no more trusted than one of a file that parses.
func (s *State) salvage(data []byte) {
	s.suspectServices, s.suspectAddresses = map[dataplane.ServiceKey]struct{}{}, map[Address]struct{}{}
	for _, m := range salvageService.FindAllSubmatch(data, -1) {
		fam, err := parseFamily(string(m[1]))
		mark, merr := strconv.ParseUint(string(m[2]), 10, 32)
		if err == nil && merr == nil && mark != 0 {
			s.suspectServices[dataplane.ServiceKey{Family: fam, FWMark: uint32(mark)}] = struct{}{}
		}
	}
	for _, m := range salvagePlain.FindAllSubmatch(data, -1) {
		port, err := strconv.ParseUint(string(m[4]), 10, 16)
		if err != nil {
			continue
		}
		p := uint16(port)
		if k, err := (fileService{Family: string(m[1]), Protocol: string(m[2]), Address: string(m[3]), Port: &p}).key(); err == nil {
			s.suspectServices[k] = struct{}{}
		}
	}
	for _, m := range salvageAddress.FindAllSubmatch(data, -1) {
		if p, err := netip.ParsePrefix(string(m[2])); err == nil {
			s.suspectAddresses[Address{Interface: string(m[1]), Prefix: p}] = struct{}{}
		}
	}
}

// saveLocked writes state.json. A journal that must be rewritten (a version 1 file's desired
// state, not yet in a journal) is written first, so rewriting state.json never loses it.
// Written, a damaged state.json is replaced: what it listed that was not adopted is left to
// its copy (NAME.damaged).
func (s *State) saveLocked() error {
	// A damaged journal is left for the controller's state to replace (and for Integrity to
	// report until then).
	if s.journal.rewrite && s.journalDamage == nil {
		if err := s.rewriteJournalLocked(s.desired); err != nil {
			return err
		}
	}
	data, err := s.encodeLocked()
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if err := writeAtomic(s.dir, FileName, data); err != nil {
		return err
	}
	s.fileDamage = nil
	return nil
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

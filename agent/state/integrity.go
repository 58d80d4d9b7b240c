package state

import (
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// DamagedSuffix names the copy Load keeps of a file that failed its integrity check
// (state.json.damaged, desired.log.damaged): the file itself is replaced at its next write,
// and the operator may want to see what it said.
const DamagedSuffix = ".damaged"

// damaged returns the error for the file at path that failed its check (why), and keeps a copy
// of its data beside it. The copy is best effort, for the operator's eyes (not synced: the
// agent never reads it): failing to write it changes nothing else.
func damaged(path string, data []byte, why error) error {
	kept := path + DamagedSuffix
	if err := os.WriteFile(kept, data, 0o600); err != nil {
		return fmt.Errorf("%w: %s: %w (no copy kept: %v)", ErrIntegrity, path, why, err)
	}
	return fmt.Errorf("%w: %s: %w (a copy is kept as %s)", ErrIntegrity, path, why, kept)
}

// Adoption is what Adopt decided about what a damaged state.json listed.
type Adoption struct {
	// Services and Addresses are owned again.
	Services  []dataplane.ServiceKey
	Addresses []Address
	// LeftServices and LeftAddresses are not: whatever of them is in the kernel stays there,
	// untouched, for the operator (the damaged copy lists them).
	LeftServices  []dataplane.ServiceKey
	LeftAddresses []Address
}

// Empty reports whether a decided nothing (state.json was not damaged).
func (a Adoption) Empty() bool {
	return len(a.Services)+len(a.Addresses)+len(a.LeftServices)+len(a.LeftAddresses) == 0
}

// Adopt settles what a damaged state.json said the agent owns, against st, the controller's
// desired state just received: a listed service whose firewall mark is a cluster's in st (or,
// plain, whose protocol, address and port are a cluster's service), and a listed address that
// is a VIP of a cluster in st or its group's gateway, were made by this
// agent for those clusters (the controller allocates the marks; the addresses are theirs), so
// they are owned again and edited in place rather than reported as foreign. The rest is not
// owned: never changed or deleted. Believing the damaged list as it is could make the agent
// delete a service it did not make (a flipped digit in a mark); believing nothing would make
// it refuse to touch its own services. state.json is then written with its checksum. Without
// a damaged state.json Adopt does nothing and writes nothing.
func (s *State) Adopt(st *lvsctlv1.DesiredState) (Adoption, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fileDamage == nil && len(s.suspectServices)+len(s.suspectAddresses) == 0 {
		return Adoption{}, nil
	}
	marks := map[uint32]bool{}
	plain := map[dataplane.ServiceKey]bool{}
	addrs := map[netip.Addr]bool{}
	for _, c := range st.GetClusters() {
		if c.GetService() != nil {
			// A plain service is wanted by its whole key, and its address is a VIP.
			if k, ok := dataplane.KeyOf(c); ok {
				plain[k], addrs[k.Address] = true, true
			}
			continue
		}
		marks[c.GetFwmark()] = true
		for _, v := range c.GetVips() {
			if a, err := netip.ParseAddr(v); err == nil {
				addrs[a.Unmap()] = true // unmapped, as translate and KeyOf do
			}
		}
	}
	if p, err := netip.ParsePrefix(st.GetGroup().GetGateway().GetAddress()); err == nil {
		addrs[p.Addr()] = true
	}
	var ad Adoption
	for k := range s.suspectServices {
		if (k.IsFWMark() && marks[k.FWMark]) || plain[k] {
			ad.Services = append(ad.Services, k)
		} else {
			ad.LeftServices = append(ad.LeftServices, k)
		}
	}
	for a := range s.suspectAddresses {
		if addrs[a.Prefix.Addr()] {
			ad.Addresses = append(ad.Addresses, a)
		} else {
			ad.LeftAddresses = append(ad.LeftAddresses, a)
		}
	}
	slices.SortFunc(ad.Services, dataplane.ServiceKey.Compare)
	slices.SortFunc(ad.LeftServices, dataplane.ServiceKey.Compare)
	slices.SortFunc(ad.Addresses, compareAddresses)
	slices.SortFunc(ad.LeftAddresses, compareAddresses)

	var added []func()
	for _, k := range ad.Services {
		if _, ok := s.services[k]; !ok {
			s.services[k] = struct{}{}
			added = append(added, func() { delete(s.services, k) })
		}
	}
	for _, a := range ad.Addresses {
		if _, ok := s.addresses[a]; !ok {
			s.addresses[a] = struct{}{}
			added = append(added, func() { delete(s.addresses, a) })
		}
	}
	if err := s.saveLocked(); err != nil {
		for _, undo := range added {
			undo()
		}
		return Adoption{}, err
	}
	s.suspectServices, s.suspectAddresses = nil, nil
	return ad, nil
}

package fake

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// stockSchedulers are the IPVS schedulers of a stock Linux kernel (ip_vs_*.ko).
func stockSchedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
}

// maxWeight is the largest weight ipvsadm accepts; the kernel refuses a negative int32, which a
// uint32 above this bound would become on the wire.
const maxWeight = 65535

// IPVS is a fake of the kernel's IPVS services, firewall-mark and plain.
type IPVS struct {
	recorder
	schedulers map[string]bool
	services   map[dataplane.ServiceKey]*fakeService
	// lose is the number of Batch calls to come whose answers are lost (LoseReplies).
	lose int
	// daemons are the running sync daemons by state; ifaces, when set, the interfaces a
	// daemon may use (syncd.go).
	daemons map[dataplane.SyncState]dataplane.SyncDaemon
	ifaces  []string
}

type fakeService struct {
	svc      dataplane.Service
	counters dataplane.Counters
	dests    map[netip.AddrPort]*dataplane.DestinationStats
}

// NewIPVS returns an empty IPVS that knows the stock kernel's schedulers.
func NewIPVS() *IPVS {
	f := &IPVS{
		schedulers: map[string]bool{},
		services:   map[dataplane.ServiceKey]*fakeService{},
	}
	for _, s := range stockSchedulers() {
		f.schedulers[s] = true
	}
	return f
}

// SetSchedulers replaces the schedulers the fake kernel has modules for.
func (f *IPVS) SetSchedulers(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.schedulers = map[string]bool{}
	for _, s := range names {
		f.schedulers[s] = true
	}
}

// Services lists the services, sorted as dataplane.ServiceKey.Compare orders them.
func (f *IPVS) Services() ([]dataplane.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults.check(Op{Name: "Services"}); err != nil {
		return nil, err
	}
	out := make([]dataplane.Service, 0, len(f.services))
	for _, s := range f.sortedLocked() {
		out = append(out, s.svc)
	}
	return out, nil
}

// AddService creates a service; an existing one is refused with dataplane.ErrExist.
func (f *IPVS) AddService(s dataplane.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "AddService", Service: s.ServiceKey}
	if err := f.faults.check(op); err != nil {
		return err
	}
	if err := f.validServiceLocked(s); err != nil {
		return fmt.Errorf("add service %s: %w", s.ServiceKey, err)
	}
	if _, ok := f.services[s.ServiceKey]; ok {
		return fmt.Errorf("add service %s: %w", s.ServiceKey, dataplane.ErrExist)
	}
	f.services[s.ServiceKey] = &fakeService{svc: s, dests: map[netip.AddrPort]*dataplane.DestinationStats{}}
	f.ops = append(f.ops, op)
	return nil
}

// UpdateService edits a service in place, keeping its destinations and counters.
func (f *IPVS) UpdateService(s dataplane.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "UpdateService", Service: s.ServiceKey}
	if err := f.faults.check(op); err != nil {
		return err
	}
	cur, ok := f.services[s.ServiceKey]
	if !ok {
		return fmt.Errorf("update service %s: %w", s.ServiceKey, dataplane.ErrNotExist)
	}
	if err := f.validServiceLocked(s); err != nil {
		return fmt.Errorf("update service %s: %w", s.ServiceKey, err)
	}
	cur.svc = s
	f.ops = append(f.ops, op)
	return nil
}

// DelService deletes a service and its destinations.
func (f *IPVS) DelService(s dataplane.Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "DelService", Service: s.ServiceKey}
	if err := f.faults.check(op); err != nil {
		return err
	}
	if _, ok := f.services[s.ServiceKey]; !ok {
		return fmt.Errorf("delete service %s: %w", s.ServiceKey, dataplane.ErrNotExist)
	}
	delete(f.services, s.ServiceKey)
	f.ops = append(f.ops, op)
	return nil
}

// Destinations lists a service's destinations, sorted by address then port.
func (f *IPVS) Destinations(s dataplane.Service) ([]dataplane.Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults.check(Op{Name: "Destinations", Service: s.ServiceKey}); err != nil {
		return nil, err
	}
	cur, ok := f.services[s.ServiceKey]
	if !ok {
		return nil, fmt.Errorf("list destinations of %s: %w", s.ServiceKey, dataplane.ErrNotExist)
	}
	var out []dataplane.Destination
	for _, d := range sortedDests(cur) {
		out = append(out, d.Destination)
	}
	return out, nil
}

// AddDestination adds a destination; an existing one is refused with dataplane.ErrExist.
func (f *IPVS) AddDestination(s dataplane.Service, d dataplane.Destination) error {
	return f.changeDestination("AddDestination", s, d, func(cur *fakeService, ap netip.AddrPort) error {
		if _, ok := cur.dests[ap]; ok {
			return dataplane.ErrExist
		}
		cur.dests[ap] = &dataplane.DestinationStats{Destination: d}
		return nil
	})
}

// UpdateDestination edits a destination's weight, forwarding method and thresholds, keeping
// its counters.
func (f *IPVS) UpdateDestination(s dataplane.Service, d dataplane.Destination) error {
	return f.changeDestination("UpdateDestination", s, d, func(cur *fakeService, ap netip.AddrPort) error {
		st, ok := cur.dests[ap]
		if !ok {
			return dataplane.ErrNotExist
		}
		st.Destination = d
		return nil
	})
}

// DelDestination deletes a destination.
func (f *IPVS) DelDestination(s dataplane.Service, d dataplane.Destination) error {
	return f.changeDestination("DelDestination", s, d, func(cur *fakeService, ap netip.AddrPort) error {
		if _, ok := cur.dests[ap]; !ok {
			return dataplane.ErrNotExist
		}
		delete(cur.dests, ap)
		return nil
	})
}

func (f *IPVS) changeDestination(name string, s dataplane.Service, d dataplane.Destination, change func(*fakeService, netip.AddrPort) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ap := netip.AddrPortFrom(d.Address, d.Port)
	op := Op{Name: name, Service: s.ServiceKey, Dest: ap}
	if err := f.faults.check(op); err != nil {
		return err
	}
	verb := map[string]string{"AddDestination": "add", "UpdateDestination": "update", "DelDestination": "delete"}[name]
	cur, ok := f.services[s.ServiceKey]
	if !ok {
		return fmt.Errorf("%s destination %s of %s: service %w", verb, ap, s.ServiceKey, dataplane.ErrNotExist)
	}
	if name != "DelDestination" {
		if err := validDestination(s.ServiceKey, d); err != nil {
			return fmt.Errorf("%s destination %s of %s: %w", verb, ap, s.ServiceKey, err)
		}
	}
	if err := change(cur, ap); err != nil {
		return fmt.Errorf("%s destination %s of %s: %w", verb, ap, s.ServiceKey, err)
	}
	f.ops = append(f.ops, op)
	return nil
}

// validServiceLocked refuses what the kernel (or, where said, the real backend) refuses in a
// service.
func (f *IPVS) validServiceLocked(s dataplane.Service) error {
	var hostBits uint8
	switch s.Family {
	case dataplane.IPv4:
		hostBits = 32
	case dataplane.IPv6:
		hostBits = 128
	default:
		return fmt.Errorf("family %d: %w", s.Family, syscall.EAFNOSUPPORT)
	}
	if s.IsFWMark() && s.FWMark == 0 {
		return fmt.Errorf("fwmark 0 is no firewall mark: %w", syscall.EINVAL)
	}
	if !s.IsFWMark() {
		// The kernel needs the protocol, address and port of a service without a mark, and
		// looks up the protocol's handler. A port of 0 without persistence it would take, but
		// the real backend refuses it as ipvsadm does.
		switch {
		case s.FWMark != 0:
			return fmt.Errorf("fwmark %d and address %s: %w", s.FWMark, s.Address, syscall.EINVAL)
		case dataplane.FamilyOf(s.Address) != s.Family:
			return fmt.Errorf("%s address for an %s service: %w", dataplane.FamilyOf(s.Address), s.Family, syscall.EINVAL)
		case s.Protocol != dataplane.TCP && s.Protocol != dataplane.UDP && s.Protocol != dataplane.SCTP:
			return fmt.Errorf("protocol %s: %w", s.Protocol, syscall.EPROTONOSUPPORT)
		case s.Port == 0 && s.Timeout == 0:
			return fmt.Errorf("port 0 without persistence: %w", syscall.EINVAL)
		}
	}
	if s.Flags&^dataplane.KnownFlags != 0 {
		return fmt.Errorf("flags %#x: %w", uint32(s.Flags), syscall.EINVAL)
	}
	if !f.schedulers[s.Scheduler] {
		// The kernel answers ENOENT when no ip_vs_<name> module can be loaded.
		return fmt.Errorf("scheduler %q not found: %w", s.Scheduler, syscall.ENOENT)
	}
	// IPv6 takes a prefix length of 1..128; IPv4 a mask, which any length up to 32 gives.
	if s.NetmaskBits > hostBits || (s.Family == dataplane.IPv6 && s.NetmaskBits == 0) {
		return fmt.Errorf("netmask /%d for %s: %w", s.NetmaskBits, s.Family, syscall.EINVAL)
	}
	return nil
}

func validDestination(k dataplane.ServiceKey, d dataplane.Destination) error {
	if !d.Address.IsValid() {
		return fmt.Errorf("address is not valid: %w", syscall.EINVAL)
	}
	switch d.Forward {
	case dataplane.ForwardMasq, dataplane.ForwardRoute, dataplane.ForwardTunnel:
	default:
		return fmt.Errorf("%s: %w", d.Forward, syscall.EINVAL)
	}
	// The kernel takes a destination of the other family through a tunnel, but only when told
	// the destination's family, which moby/ipvs never sends: through the agent's backend, it
	// would read the address as the service's family.
	if dataplane.FamilyOf(d.Address) != k.Family {
		return fmt.Errorf("%s destination for an %s service: %w", dataplane.FamilyOf(d.Address), k.Family, syscall.EINVAL)
	}
	if d.Weight > maxWeight {
		return fmt.Errorf("weight %d is above %d: %w", d.Weight, maxWeight, syscall.ERANGE)
	}
	// ip_vs_add_dest and ip_vs_edit_dest refuse it, even with no upper threshold (0).
	if d.LowerThreshold > d.UpperThreshold {
		return fmt.Errorf("lower threshold %d above upper threshold %d: %w", d.LowerThreshold, d.UpperThreshold, syscall.ERANGE)
	}
	return checkTunnel(d)
}

// checkTunnel refuses what the agent's backend refuses of a tunnel. The kernel itself refuses
// only gue without a port (EINVAL) and stores the rest unused; package ipvs refuses those
// before sending (tunnel settings on masq or route, a port on ipip or gre, a checksum ipip or
// gre does not have), which the fake answers with EINVAL too.
func checkTunnel(d dataplane.Destination) error {
	t := d.Tunnel
	switch {
	case t == dataplane.Tunnel{}:
		return nil
	case d.Forward != dataplane.ForwardTunnel:
		return fmt.Errorf("tunnel %s on a %s destination: %w", t, d.Forward, syscall.EINVAL)
	case t.Type > dataplane.TunnelGRE:
		return fmt.Errorf("tunnel type %d: %w", uint8(t.Type), syscall.EINVAL)
	case t.Type == dataplane.TunnelGUE && t.Port == 0:
		return fmt.Errorf("gue tunnel port is zero: %w", syscall.EINVAL)
	case t.Type != dataplane.TunnelGUE && t.Port != 0:
		return fmt.Errorf("tunnel port %d on %s: %w", t.Port, t.Type, syscall.EINVAL)
	case t.Flags != 0 && t.Flags != dataplane.TunnelCsum && t.Flags != dataplane.TunnelRemCsum,
		t.Flags != 0 && t.Type == dataplane.TunnelIPIP,
		t.Flags == dataplane.TunnelRemCsum && t.Type == dataplane.TunnelGRE:
		return fmt.Errorf("tunnel %s: no such checksum option for %s: %w", t, t.Type, syscall.EINVAL)
	}
	return nil
}

// Stats returns every service's counters and its destinations' counts, as the kernel reports.
func (f *IPVS) Stats() ([]dataplane.ServiceStats, error) { return f.StatsOf(nil) }

// StatsOf is Stats of the services keep keeps (nil: every one).
func (f *IPVS) StatsOf(keep func(dataplane.ServiceKey) bool) ([]dataplane.ServiceStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults.check(Op{Name: "Stats"}); err != nil {
		return nil, err
	}
	var out []dataplane.ServiceStats
	for _, s := range f.sortedLocked() {
		if keep != nil && !keep(s.svc.ServiceKey) {
			continue
		}
		ss := dataplane.ServiceStats{Service: s.svc, Counters: s.counters}
		for _, d := range sortedDests(s) {
			ss.Destinations = append(ss.Destinations, *d)
		}
		out = append(out, ss)
	}
	return out, nil
}

// SetServiceCounters sets a service's counters, as traffic would.
func (f *IPVS) SetServiceCounters(k dataplane.ServiceKey, c dataplane.Counters) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[k]
	if !ok {
		return fmt.Errorf("set counters of %s: %w", k, dataplane.ErrNotExist)
	}
	s.counters = c
	return nil
}

// SetDestinationStats sets the connection counts and counters of the destination at
// st.Address and st.Port; its weight and forwarding stay the kernel's.
func (f *IPVS) SetDestinationStats(k dataplane.ServiceKey, st dataplane.DestinationStats) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	ap := netip.AddrPortFrom(st.Address, st.Port)
	s, ok := f.services[k]
	if !ok {
		return fmt.Errorf("set stats of %s: service %w", k, dataplane.ErrNotExist)
	}
	cur, ok := s.dests[ap]
	if !ok {
		return fmt.Errorf("set stats of %s destination %s: %w", k, ap, dataplane.ErrNotExist)
	}
	st.Destination = cur.Destination
	*cur = st
	return nil
}

// Dump returns the fake kernel's services and destinations as sorted text, one object a line,
// then its sync daemons:
//
//	fwm 16 ipv4 wlc timeout 600 netmask /32
//	fwm 16 ipv4 -> 198.51.100.1:0 masq weight 100
//	tcp 192.0.2.20:80 sh timeout 0 netmask /32 flags 0x18
//	tcp 192.0.2.20:80 -> 198.51.100.5:8080 masq weight 1 thresholds 400-500
//	tcp 192.0.2.40:80 -> 198.51.100.7:80 tunnel weight 1 tunnel gue:6080:r+c
//	sync master eth1 syncid 7
func (f *IPVS) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, s := range f.sortedLocked() {
		fmt.Fprintf(&b, "%s %s timeout %d netmask /%d", s.svc.ServiceKey, s.svc.Scheduler, s.svc.Timeout, s.svc.NetmaskBits)
		if s.svc.Flags != 0 {
			fmt.Fprintf(&b, " flags %#x", uint32(s.svc.Flags))
		}
		b.WriteByte('\n')
		for _, d := range sortedDests(s) {
			fmt.Fprintf(&b, "%s -> %s %s weight %d", s.svc.ServiceKey, netip.AddrPortFrom(d.Address, d.Port), d.Forward, d.Weight)
			if d.UpperThreshold != 0 || d.LowerThreshold != 0 {
				fmt.Fprintf(&b, " thresholds %d-%d", d.LowerThreshold, d.UpperThreshold)
			}
			if d.Tunnel != (dataplane.Tunnel{}) {
				fmt.Fprintf(&b, " tunnel %s", d.Tunnel)
			}
			b.WriteByte('\n')
		}
	}
	for _, s := range []dataplane.SyncState{dataplane.SyncMaster, dataplane.SyncBackup} {
		if d, ok := f.daemons[s]; ok {
			fmt.Fprintf(&b, "sync %s\n", d)
		}
	}
	return b.String()
}

func (f *IPVS) sortedLocked() []*fakeService {
	out := make([]*fakeService, 0, len(f.services))
	for _, s := range f.services {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *fakeService) int { return a.svc.ServiceKey.Compare(b.svc.ServiceKey) })
	return out
}

func sortedDests(s *fakeService) []*dataplane.DestinationStats {
	out := make([]*dataplane.DestinationStats, 0, len(s.dests))
	for _, d := range s.dests {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *dataplane.DestinationStats) int {
		return netip.AddrPortFrom(a.Address, a.Port).Compare(netip.AddrPortFrom(b.Address, b.Port))
	})
	return out
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// LoseReplies makes the next n Batch calls make their changes (or refuse them) as usual, but
// report every op as failed with dataplane.ErrOutcomeUnknown: the real backend's answer when a
// batch was sent but reading the kernel's replies failed.
func (f *IPVS) LoseReplies(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lose = n
}

// Batch makes the changes in order, one error per op (nil: made), each refused as the single
// call would refuse it: a kernel given many requests in one send handles each on its own, so
// an op after a failed one still runs (and fails too if it needed it).
func (f *IPVS) Batch(ops []dataplane.Op) []error {
	errs := make([]error, len(ops))
	f.mu.Lock()
	lost := f.lose > 0
	if lost {
		f.lose--
	}
	f.mu.Unlock()
	if lost {
		defer func() {
			for i := range errs {
				errs[i] = fmt.Errorf("batch of %d requests: receive: %w: %w", len(ops), dataplane.ErrOutcomeUnknown, syscall.EAGAIN)
			}
		}()
	}
	for i, op := range ops {
		switch op.Kind {
		case dataplane.AddService:
			errs[i] = f.AddService(op.Service)
		case dataplane.UpdateService:
			errs[i] = f.UpdateService(op.Service)
		case dataplane.DelService:
			errs[i] = f.DelService(op.Service)
		case dataplane.AddDestination:
			errs[i] = f.AddDestination(op.Service, op.Dest)
		case dataplane.UpdateDestination:
			errs[i] = f.UpdateDestination(op.Service, op.Dest)
		case dataplane.DelDestination:
			errs[i] = f.DelDestination(op.Service, op.Dest)
		default:
			errs[i] = fmt.Errorf("%s: %w", op.Kind, syscall.EINVAL)
		}
	}
	return errs
}

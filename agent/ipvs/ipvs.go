// Package ipvs programs the kernel's IP Virtual Server: the agent's services (firewall-mark
// and plain) and their real servers, and the connection counts and counters IPVS keeps for them. Single
// service changes go through github.com/moby/ipvs; batches (Batch: many requests a send, the
// replies matched by sequence number), single destination changes and reads use this package's
// own generic-netlink messages, since moby/ipvs sends one request at a time, sends no tunnel
// attributes, and decodes neither persistent-connection counts nor the 64-bit counters.
package ipvs

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Option configures New.
type Option func(*options)

type options struct{ netNSPath string }

// WithNetNSPath makes the Kernel work in the network namespace at path (/run/netns/NAME, or
// /proc/PID/ns/net).
func WithNetNSPath(path string) Option { return func(o *options) { o.netNSPath = path } }

// socketTimeout bounds each netlink send and receive, so a wedged kernel call fails instead of
// hanging the reconciler.
const socketTimeout = 10 * time.Second

// Kernel is the IPVS table of one network namespace.
type Kernel struct {
	// mu serialises requests: neither socket may carry two exchanges at once.
	mu     sync.Mutex
	handle *mobyipvs.Handle
	conn   *conn
	family uint16 // the IPVS generic-netlink family id
	// exchange sends one request (a whole netlink message) on conn and calls each with the
	// payload of every reply (valid only during the call); a test gives a Kernel its own to see
	// the requests it makes.
	exchange func(req []byte, each func(payload []byte) error) error
	// sendBatch sends whole netlink messages at once and returns the error code of each
	// sequence number answered, until the last one's ack; tests replace it too.
	sendBatch func(buf []byte, last uint32) (map[uint32]syscall.Errno, error)
	seq       uint32 // the sequence numbers of the exchanges and the batches
	// release is the running kernel's version, which tells the tunnel types it has
	// (unknown in tests that build a Kernel by hand: nothing is refused for it).
	release release
	req     []byte // the request being built, its memory reused
}

// New opens IPVS in the chosen network namespace. A kernel without IPVS gives an error
// wrapping dataplane.ErrUnavailable that says how to load it.
func New(opts ...Option) (*Kernel, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	ns := netns.None()
	if o.netNSPath != "" {
		var err error
		if ns, err = netns.GetFromPath(o.netNSPath); err != nil {
			return nil, fmt.Errorf("ipvs: open network namespace %s: %w", o.netNSPath, err)
		}
		defer ns.Close()
	}
	c, err := openConn(ns)
	if err != nil {
		return nil, fmt.Errorf("ipvs: %w", err)
	}
	k := &Kernel{conn: c, release: kernelRelease()}
	k.exchange = func(req []byte, each func([]byte) error) error {
		k.seq++
		return k.conn.exchange(req, k.seq, each)
	}
	k.sendBatch = k.sendBatchOnSocket
	if k.family, err = k.resolveFamily(); err != nil {
		c.close()
		return nil, err
	}
	// Only now, with IPVS known present, is moby/ipvs opened: it resolves the family once per
	// process and would stay broken if that first try found no IPVS.
	if k.handle, err = mobyipvs.New(o.netNSPath); err != nil {
		c.close()
		return nil, fmt.Errorf("ipvs: open moby/ipvs handle: %w", err)
	}
	return k, nil
}

// Close releases the Kernel's sockets. IPVS keeps its services.
func (k *Kernel) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.handle.Close()
	k.conn.close()
}

// resolveFamily asks the generic-netlink controller for the IPVS family id.
func (k *Kernel) resolveFamily() (uint16, error) {
	req := appendRequest(nil, unix.GENL_ID_CTRL, unix.NLM_F_ACK, unix.CTRL_CMD_GETFAMILY, nl.GENL_CTRL_VERSION)
	req = finishRequest(appendAttr(req, unix.CTRL_ATTR_FAMILY_NAME, nl.ZeroTerminated(genlName)))
	var id uint16
	var m attrSet
	err := k.exchange(req, func(msg []byte) error {
		if len(msg) < 4 || id != 0 {
			return nil
		}
		if err := m.parse(msg[4:]); err != nil {
			return fmt.Errorf("ipvs: family %q reply: %w", genlName, err)
		}
		if v, err := u16(&m, unix.CTRL_ATTR_FAMILY_ID, "family_id"); err == nil {
			id = v
		}
		return nil
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("ipvs: %w: IPVS is not available in this kernel (generic netlink family %q not found): "+
			"load it with \"modprobe ip_vs\" and the scheduler modules (ip_vs_wlc, ip_vs_rr, ...)", dataplane.ErrUnavailable, genlName)
	}
	if err != nil {
		return 0, fmt.Errorf("ipvs: look up generic netlink family %q: %w", genlName, err)
	}
	if id == 0 {
		return 0, fmt.Errorf("ipvs: the reply for generic netlink family %q has no family id", genlName)
	}
	return id, nil
}

func (k *Kernel) dumpServices() ([]svcRecord, error) {
	k.req = finishRequest(appendRequest(k.req[:0], k.family, unix.NLM_F_DUMP, cmdGetService, genlVersion))
	var out []svcRecord
	err := k.exchange(k.req, func(msg []byte) error {
		r, err := decodeService(msg)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	return out, nil
}

// getService asks for one service: the kernel answers a destination dump for a missing
// service with nothing, so this tells "no destinations" from "no service".
func (k *Kernel) getService(key dataplane.ServiceKey) error {
	k.req = appendRequest(k.req[:0], k.family, unix.NLM_F_ACK, cmdGetService, genlVersion)
	k.req = finishRequest(appendServiceKey(k.req, key))
	if err := k.exchange(k.req, func([]byte) error { return nil }); err != nil {
		return serviceError("get", key, err)
	}
	return nil
}

// appendDestinations appends a service's destinations to out; a missing service has none.
func (k *Kernel) appendDestinations(out []dataplane.DestinationStats, key dataplane.ServiceKey) ([]dataplane.DestinationStats, error) {
	k.req = appendRequest(k.req[:0], k.family, unix.NLM_F_DUMP, cmdGetDest, genlVersion)
	k.req = finishRequest(appendServiceKey(k.req, key))
	err := k.exchange(k.req, func(msg []byte) error {
		d, err := decodeDestination(msg, key.Family)
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("ipvs: list destinations of %s: %w", key, err)
	}
	return out, nil
}

// Services lists the kernel's services, firewall-mark and plain; which are the agent's is
// the caller's to know (its ownership records).
func (k *Kernel) Services() ([]dataplane.Service, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	recs, err := k.dumpServices()
	if err != nil {
		return nil, err
	}
	out := make([]dataplane.Service, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.svc)
	}
	return out, nil
}

// Destinations lists the real servers of a service; a missing service is ErrNotExist.
func (k *Kernel) Destinations(s dataplane.Service) ([]dataplane.Destination, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.getService(s.ServiceKey); err != nil {
		return nil, err
	}
	ds, err := k.appendDestinations(nil, s.ServiceKey)
	if err != nil {
		return nil, err
	}
	out := make([]dataplane.Destination, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Destination)
	}
	return out, nil
}

// Stats returns every service with its counters and its destinations'
// connection counts and counters. It asks for no service one by one: one deleted between the
// two dumps is reported once more, without destinations, which the next sample corrects.
func (k *Kernel) Stats() ([]dataplane.ServiceStats, error) { return k.StatsOf(nil) }

// StatsOf is Stats of the services keep keeps (nil: every one): the others are left out, and
// their destinations are not read. The agent's sampler keeps the services it owns, so a host
// whose kernel also holds another tool's thousands (kube-proxy's) does not read their real
// servers every sample.
func (k *Kernel) StatsOf(keep func(dataplane.ServiceKey) bool) ([]dataplane.ServiceStats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	recs, err := k.dumpServices()
	if err != nil {
		return nil, err
	}
	if keep != nil {
		recs = slices.DeleteFunc(recs, func(r svcRecord) bool { return !keep(r.svc.ServiceKey) })
	}
	out := make([]dataplane.ServiceStats, 0, len(recs))
	// All the destinations in one array, each service's a capped piece of it: a few big
	// allocations instead of a growing slice per service. When the array grows, the pieces
	// cut so far keep the old one.
	all := make([]dataplane.DestinationStats, 0, 8*len(recs))
	for _, r := range recs {
		start := len(all)
		if all, err = k.appendDestinations(all, r.svc.ServiceKey); err != nil {
			return nil, err
		}
		var ds []dataplane.DestinationStats
		if len(all) > start {
			ds = all[start:len(all):len(all)]
		}
		out = append(out, dataplane.ServiceStats{Service: r.svc, Counters: r.counters, Destinations: ds})
	}
	return out, nil
}

func validateService(s dataplane.Service) error {
	switch {
	case s.Family != dataplane.IPv4 && s.Family != dataplane.IPv6:
		return fmt.Errorf("family: %d is neither 4 nor 6", s.Family)
	case s.IsFWMark() && s.FWMark == 0:
		return errors.New("fwmark: 0 means no mark")
	case !s.IsFWMark() && s.FWMark != 0:
		return fmt.Errorf("fwmark: %d with an address: a service is one or the other", s.FWMark)
	case !s.IsFWMark() && dataplane.FamilyOf(s.Address) != s.Family:
		return fmt.Errorf("address: %s is not %s", s.Address, s.Family)
	case !s.IsFWMark() && s.Protocol != dataplane.TCP && s.Protocol != dataplane.UDP && s.Protocol != dataplane.SCTP:
		return fmt.Errorf("protocol: %s is not tcp, udp or sctp", s.Protocol)
	case !s.IsFWMark() && s.Port == 0 && s.Timeout == 0:
		// The kernel would take it; ipvsadm refuses it ("Zero port specified for
		// non-persistent service"), and what lvsctl programs must stay what ipvsadm can
		// save and restore.
		return errors.New("port: 0 (every port) needs persistence")
	case s.Flags&^dataplane.KnownFlags != 0:
		return fmt.Errorf("flags: %#x has bits lvsctl does not set", uint32(s.Flags&^dataplane.KnownFlags))
	case s.Scheduler == "":
		return errors.New("scheduler: empty")
	case len(s.Scheduler) >= 16: // IP_VS_SCHEDNAME_MAXLEN, with its NUL
		return fmt.Errorf("scheduler: %q is longer than 15 bytes", s.Scheduler)
	case s.Family == dataplane.IPv4 && s.NetmaskBits > 32:
		return fmt.Errorf("netmask bits: %d is more than 32", s.NetmaskBits)
	case s.Family == dataplane.IPv6 && (s.NetmaskBits < 1 || s.NetmaskBits > 128):
		// The kernel refuses an IPv6 prefix outside 1..128.
		return fmt.Errorf("netmask bits: %d is outside 1..128", s.NetmaskBits)
	}
	return nil
}

func toMobyService(s dataplane.Service) *mobyipvs.Service {
	m := &mobyipvs.Service{
		FWMark:        s.FWMark,
		AddressFamily: afOf(s.Family),
		SchedName:     s.Scheduler,
		Netmask:       netmaskValue(s.Family, s.NetmaskBits),
		// Sent with the mask 0xFFFFFFFF: every flag is set or cleared, so an edit clears a
		// flag the cluster dropped.
		Flags: uint32(s.Flags),
	}
	if !s.IsFWMark() {
		m.Protocol = uint16(s.Protocol)
		m.Address = net.IP(s.Address.Unmap().AsSlice())
		m.Port = s.Port
	}
	if s.Timeout > 0 {
		m.Flags |= svcFlagPersistent
		m.Timeout = s.Timeout
	}
	return m
}

// serviceError maps the kernel's refusals of a service command: ESRCH is a missing service,
// ENOENT a missing scheduler (or persistence engine) module.
func serviceError(op string, key dataplane.ServiceKey, err error) error {
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("ipvs: %s service %s: %w (%w)", op, key, dataplane.ErrExist, err)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("ipvs: %s service %s: %w (%w)", op, key, dataplane.ErrNotExist, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("ipvs: %s service %s: %w: the scheduler module is not loaded (%w): load it with \"modprobe ip_vs_SCHEDULER\"",
			op, key, dataplane.ErrUnavailable, err)
	}
	return fmt.Errorf("ipvs: %s service %s: %w", op, key, err)
}

// AddService creates a service; an existing one is ErrExist.
func (k *Kernel) AddService(s dataplane.Service) error {
	if err := validateService(s); err != nil {
		return fmt.Errorf("ipvs: add service %s: %w", s.ServiceKey, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.handle.NewService(toMobyService(s)); err != nil {
		return serviceError("add", s.ServiceKey, err)
	}
	return nil
}

// UpdateService edits a service in place: scheduler, persistence, netmask and flags. Its
// destinations and connections stay.
func (k *Kernel) UpdateService(s dataplane.Service) error {
	if err := validateService(s); err != nil {
		return fmt.Errorf("ipvs: update service %s: %w", s.ServiceKey, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.handle.UpdateService(toMobyService(s)); err != nil {
		return serviceError("update", s.ServiceKey, err)
	}
	return nil
}

// DelService deletes a service and its destinations; a missing one is ErrNotExist.
func (k *Kernel) DelService(s dataplane.Service) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.handle.DelService(toMobyService(s)); err != nil {
		return serviceError("delete", s.ServiceKey, err)
	}
	return nil
}

func toMobyDestination(d dataplane.Destination) (*mobyipvs.Destination, error) {
	if !d.Address.IsValid() {
		return nil, errors.New("address: missing")
	}
	if d.Weight > 1<<31-1 {
		// The kernel's weight is a signed int.
		return nil, fmt.Errorf("weight: %d is above %d", d.Weight, 1<<31-1)
	}
	if d.LowerThreshold > d.UpperThreshold {
		// The kernel refuses it (ERANGE), even with no upper threshold (0).
		return nil, fmt.Errorf("lower threshold: %d is above the upper threshold %d", d.LowerThreshold, d.UpperThreshold)
	}
	flags, err := connFlags(d.Forward)
	if err != nil {
		return nil, err
	}
	addr := d.Address.Unmap()
	return &mobyipvs.Destination{
		Address:         net.IP(addr.AsSlice()),
		Port:            d.Port,
		Weight:          int(d.Weight),
		ConnectionFlags: flags,
		AddressFamily:   afOf(dataplane.FamilyOf(addr)),
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}, nil
}

// destinationError maps the kernel's refusals of a destination command: ESRCH is a missing
// service, ENOENT a missing destination.
func destinationError(op string, key dataplane.ServiceKey, d dataplane.Destination, err error) error {
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("ipvs: %s destination %s of %s: %w (%w)", op, d.Address, key, dataplane.ErrExist, err)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("ipvs: %s destination %s: service %s: %w (%w)", op, d.Address, key, dataplane.ErrNotExist, err)
	case errors.Is(err, unix.ENOENT):
		return fmt.Errorf("ipvs: %s destination %s of %s: %w (%w)", op, d.Address, key, dataplane.ErrNotExist, err)
	}
	return fmt.Errorf("ipvs: %s destination %s of %s: %w", op, d.Address, key, err)
}

// AddDestination adds a real server to a service; an existing one is ErrExist. Destinations
// go through this package's own request (Batch's), not moby/ipvs's: moby/ipvs v1.1.0 sends no
// tunnel attributes.
func (k *Kernel) AddDestination(s dataplane.Service, d dataplane.Destination) error {
	return k.Batch([]dataplane.Op{{Kind: dataplane.AddDestination, Service: s, Dest: d}})[0]
}

// UpdateDestination edits a real server's weight, forwarding method, thresholds and tunnel
// in place.
func (k *Kernel) UpdateDestination(s dataplane.Service, d dataplane.Destination) error {
	return k.Batch([]dataplane.Op{{Kind: dataplane.UpdateDestination, Service: s, Dest: d}})[0]
}

// DelDestination removes a real server; a missing one is ErrNotExist.
func (k *Kernel) DelDestination(s dataplane.Service, d dataplane.Destination) error {
	return k.Batch([]dataplane.Op{{Kind: dataplane.DelDestination, Service: s, Dest: d}})[0]
}

// release is a kernel's version, major.minor; the zero value is unknown.
type release struct{ major, minor int }

func (r release) known() bool { return r.major > 0 }

func (r release) before(o release) bool {
	return r.major < o.major || (r.major == o.major && r.minor < o.minor)
}

// kernelRelease reads the running kernel's version from uname(2) ("6.1.0-27-amd64"): the
// IPVS netlink interface does not say which tunnel types it has. Unknown when unreadable.
func kernelRelease() release {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return release{}
	}
	var r release
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &r.major, &r.minor); err != nil {
		return release{}
	}
	return r
}

// Package ipvs programs the kernel's IP Virtual Server: the agent's firewall-mark services and
// their real servers, and the connection counts and counters IPVS keeps for them. Single
// changes go through github.com/moby/ipvs; batches (Batch: many requests a send, the replies
// matched by sequence number) and reads use this package's own generic-netlink messages, since
// moby/ipvs sends one request at a time and decodes neither persistent-connection counts nor
// the 64-bit counters.
package ipvs

import (
	"errors"
	"fmt"
	"net"
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

// socketTimeout bounds each netlink exchange, so a wedged kernel call fails instead of
// hanging the reconciler.
const socketTimeout = 10 * time.Second

// Kernel is the IPVS table of one network namespace.
type Kernel struct {
	// mu serialises requests: neither socket may carry two exchanges at once.
	mu     sync.Mutex
	handle *mobyipvs.Handle
	sock   *nl.SocketHandle
	family uint16 // the IPVS generic-netlink family id
	// exchange sends one request on sock and returns the replies; a test gives a Kernel its
	// own to see the requests it makes.
	exchange func(*nl.NetlinkRequest) ([][]byte, error)
	// sendBatch sends whole netlink messages at once and returns the error code of each
	// sequence number answered, until the last one's ack; tests replace it too.
	sendBatch func(buf []byte, last uint32) (map[uint32]syscall.Errno, error)
	seq       uint32 // the batches' sequence numbers
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
	sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("ipvs: open generic netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(socketTimeout.Nanoseconds())
	if err := errors.Join(sock.SetSendTimeout(&tv), sock.SetReceiveTimeout(&tv)); err != nil {
		sock.Close()
		return nil, fmt.Errorf("ipvs: set socket timeouts: %w", err)
	}
	k := &Kernel{sock: &nl.SocketHandle{Socket: sock}}
	k.exchange = func(req *nl.NetlinkRequest) ([][]byte, error) {
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_GENERIC: k.sock}
		return req.Execute(unix.NETLINK_GENERIC, 0)
	}
	k.sendBatch = k.sendBatchOnSocket
	tuneSocket(sock.GetFd())
	if k.family, err = k.resolveFamily(); err != nil {
		sock.Close()
		return nil, err
	}
	// Only now, with IPVS known present, is moby/ipvs opened: it resolves the family once per
	// process and would stay broken if that first try found no IPVS.
	if k.handle, err = mobyipvs.New(o.netNSPath); err != nil {
		sock.Close()
		return nil, fmt.Errorf("ipvs: open moby/ipvs handle: %w", err)
	}
	return k, nil
}

// Close releases the Kernel's sockets. IPVS keeps its services.
func (k *Kernel) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.handle.Close()
	k.sock.Close()
}

// resolveFamily asks the generic-netlink controller for the IPVS family id.
func (k *Kernel) resolveFamily() (uint16, error) {
	req := nl.NewNetlinkRequest(nl.GENL_ID_CTRL, unix.NLM_F_ACK)
	req.AddData(genlHeader{cmd: nl.GENL_CTRL_CMD_GETFAMILY, version: nl.GENL_CTRL_VERSION})
	req.AddData(nl.NewRtAttr(nl.GENL_CTRL_ATTR_FAMILY_NAME, nl.ZeroTerminated(genlName)))
	msgs, err := k.execute(req)
	if errors.Is(err, unix.ENOENT) {
		return 0, fmt.Errorf("ipvs: %w: IPVS is not available in this kernel (generic netlink family %q not found): "+
			"load it with \"modprobe ip_vs\" and the scheduler modules (ip_vs_wlc, ip_vs_rr, ...)", dataplane.ErrUnavailable, genlName)
	}
	if err != nil {
		return 0, fmt.Errorf("ipvs: look up generic netlink family %q: %w", genlName, err)
	}
	for _, msg := range msgs {
		if len(msg) < 4 {
			continue
		}
		m, err := attrs(msg[4:])
		if err != nil {
			return 0, fmt.Errorf("ipvs: family %q reply: %w", genlName, err)
		}
		if id, err := u16(m, nl.GENL_CTRL_ATTR_FAMILY_ID, "family_id"); err == nil && id != 0 {
			return id, nil
		}
	}
	return 0, fmt.Errorf("ipvs: the reply for generic netlink family %q has no family id", genlName)
}

func (k *Kernel) execute(req *nl.NetlinkRequest) ([][]byte, error) { return k.exchange(req) }

// serviceAttr is the nested IPVS_CMD_ATTR_SERVICE that names a firewall-mark service.
func serviceAttr(key dataplane.ServiceKey) *nl.RtAttr {
	a := nl.NewRtAttr(cmdAttrService, nil)
	a.AddRtAttr(svcAttrAF, nl.Uint16Attr(afOf(key.Family)))
	a.AddRtAttr(svcAttrFWMark, nl.Uint32Attr(key.FWMark))
	return a
}

func (k *Kernel) dumpServices() ([]svcRecord, error) {
	req := nl.NewNetlinkRequest(int(k.family), unix.NLM_F_DUMP)
	req.AddData(genlHeader{cmd: cmdGetService, version: genlVersion})
	msgs, err := k.execute(req)
	if err != nil {
		return nil, fmt.Errorf("ipvs: list services: %w", err)
	}
	var out []svcRecord
	for _, msg := range msgs {
		r, err := decodeService(msg)
		if err != nil {
			return nil, err
		}
		if r.fwmark {
			out = append(out, r)
		}
	}
	return out, nil
}

// getService asks for one service: the kernel answers a destination dump for a missing
// service with nothing, so this tells "no destinations" from "no service".
func (k *Kernel) getService(key dataplane.ServiceKey) error {
	get := nl.NewNetlinkRequest(int(k.family), unix.NLM_F_ACK)
	get.AddData(genlHeader{cmd: cmdGetService, version: genlVersion})
	get.AddData(serviceAttr(key))
	if _, err := k.execute(get); err != nil {
		return serviceError("get", key, err)
	}
	return nil
}

// dumpDestinations lists a service's destinations; a missing service has none.
func (k *Kernel) dumpDestinations(key dataplane.ServiceKey) ([]dataplane.DestinationStats, error) {
	req := nl.NewNetlinkRequest(int(k.family), unix.NLM_F_DUMP)
	req.AddData(genlHeader{cmd: cmdGetDest, version: genlVersion})
	req.AddData(serviceAttr(key))
	msgs, err := k.execute(req)
	if err != nil {
		return nil, fmt.Errorf("ipvs: list destinations of %s: %w", key, err)
	}
	var out []dataplane.DestinationStats
	for _, msg := range msgs {
		d, err := decodeDestination(msg, key.Family)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// Services lists the kernel's firewall-mark services; other services are not the agent's.
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
	ds, err := k.dumpDestinations(s.ServiceKey)
	if err != nil {
		return nil, err
	}
	out := make([]dataplane.Destination, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Destination)
	}
	return out, nil
}

// Stats returns every firewall-mark service with its counters and its destinations'
// connection counts and counters. It asks for no service one by one: one deleted between the
// two dumps is reported once more, without destinations, which the next sample corrects.
func (k *Kernel) Stats() ([]dataplane.ServiceStats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	recs, err := k.dumpServices()
	if err != nil {
		return nil, err
	}
	out := make([]dataplane.ServiceStats, 0, len(recs))
	for _, r := range recs {
		ds, err := k.dumpDestinations(r.svc.ServiceKey)
		if err != nil {
			return nil, err
		}
		out = append(out, dataplane.ServiceStats{Service: r.svc, Counters: r.counters, Destinations: ds})
	}
	return out, nil
}

func validateService(s dataplane.Service) error {
	switch {
	case s.Family != dataplane.IPv4 && s.Family != dataplane.IPv6:
		return fmt.Errorf("family: %d is neither 4 nor 6", s.Family)
	case s.FWMark == 0:
		return errors.New("fwmark: 0 means no mark")
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
	}
	if s.Timeout > 0 {
		m.Flags = svcFlagPersistent
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

// AddService creates a firewall-mark service; an existing one is ErrExist.
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

// UpdateService edits a service in place: scheduler, persistence and netmask. Its
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

func (k *Kernel) destination(op string, s dataplane.Service, d dataplane.Destination,
	do func(*mobyipvs.Service, *mobyipvs.Destination) error) error {
	md, err := toMobyDestination(d)
	if err != nil {
		return fmt.Errorf("ipvs: %s destination %s of %s: %w", op, d.Address, s.ServiceKey, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := do(toMobyService(s), md); err != nil {
		return destinationError(op, s.ServiceKey, d, err)
	}
	return nil
}

// AddDestination adds a real server to a service; an existing one is ErrExist.
func (k *Kernel) AddDestination(s dataplane.Service, d dataplane.Destination) error {
	return k.destination("add", s, d, k.handle.NewDestination)
}

// UpdateDestination edits a real server's weight and forwarding method in place.
func (k *Kernel) UpdateDestination(s dataplane.Service, d dataplane.Destination) error {
	return k.destination("update", s, d, k.handle.UpdateDestination)
}

// DelDestination removes a real server; a missing one is ErrNotExist.
func (k *Kernel) DelDestination(s dataplane.Service, d dataplane.Destination) error {
	return k.destination("delete", s, d, k.handle.DelDestination)
}

package ipvs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Generic-netlink numbers from <linux/ip_vs.h>. moby/ipvs keeps its own copies unexported.
const (
	genlName    = "IPVS"
	genlVersion = 1

	cmdGetService = 4
	cmdGetDest    = 8

	cmdAttrService = 1
	cmdAttrDest    = 2

	svcAttrAF        = 1
	svcAttrProtocol  = 2
	svcAttrAddr      = 3
	svcAttrPort      = 4
	svcAttrFWMark    = 5
	svcAttrSchedName = 6
	svcAttrFlags     = 7
	svcAttrTimeout   = 8
	svcAttrNetmask   = 9
	svcAttrStats     = 10
	svcAttrPEName    = 11
	svcAttrStats64   = 12

	destAttrAddr         = 1
	destAttrPort         = 2
	destAttrFwdMethod    = 3
	destAttrWeight       = 4
	destAttrUThresh      = 5
	destAttrLThresh      = 6
	destAttrActiveConns  = 7
	destAttrInactConns   = 8
	destAttrPersistConns = 9
	destAttrStats        = 10
	destAttrAddrFamily   = 11
	destAttrStats64      = 12
	destAttrTunType      = 13 // u8, Linux 5.3
	destAttrTunPort      = 14 // be16
	destAttrTunFlags     = 15 // u16

	statsConns    = 1
	statsInPkts   = 2
	statsOutPkts  = 3
	statsInBytes  = 4
	statsOutBytes = 5
	statsCPS      = 6
	statsInPPS    = 7
	statsOutPPS   = 8
	statsInBPS    = 9
	statsOutBPS   = 10

	svcFlagPersistent = 0x0001 // IP_VS_SVC_F_PERSISTENT; the others lvsctl sets are dataplane.ServiceFlags

	connFwdMask   = 0x0007 // IP_VS_CONN_F_FWD_MASK
	connFwdMasq   = 0x0000
	connFwdTunnel = 0x0002
	connFwdRoute  = 0x0003
)

// nlaTypeMask strips the nested and byte-order flags from an attribute type (NLA_TYPE_MASK).
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// svcRecord is one service as IPVS reports it.
type svcRecord struct {
	svc      dataplane.Service
	counters dataplane.Counters
}

// maxAttr bounds the attribute types an attrSet keeps: every IPVS, IPVS-stats and
// generic-netlink-controller attribute read here is numbered below it.
const maxAttr = 16

// attrSet is a message's attributes by type, without the flag bits in their types; the last
// of a repeated type wins, and types from maxAttr up are skipped. It is an array, not a map,
// so that decoding a full read's 20,000 messages allocates nothing for them. The values alias
// the parsed bytes.
type attrSet struct {
	v   [maxAttr][]byte
	has uint32 // bit t: attribute t was present (its value may be empty)
}

// parse reads the attributes in b, replacing what s held.
func (s *attrSet) parse(b []byte) error {
	*s = attrSet{}
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return fmt.Errorf("parse attributes: an attribute of %d bytes in %d: %w", l, len(b), unix.EINVAL)
		}
		if t := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask; t < maxAttr {
			s.v[t] = b[4:l]
			s.has |= 1 << t
		}
		b = b[min(len(b), align4(l)):]
	}
	return nil
}

// get returns attribute t and whether it was present.
func (s *attrSet) get(t uint16) ([]byte, bool) {
	if t >= maxAttr || s.has&(1<<t) == 0 {
		return nil, false
	}
	return s.v[t], true
}

// payload parses the attributes nested in the message's IPVS_CMD_ATTR_SERVICE or _DEST,
// after the generic-netlink header, into s.
func (s *attrSet) payload(msg []byte, want uint16) error {
	if len(msg) < 4 {
		return fmt.Errorf("message of %d bytes has no generic netlink header", len(msg))
	}
	if err := s.parse(msg[4:]); err != nil {
		return err
	}
	nested, ok := s.get(want)
	if !ok {
		return fmt.Errorf("message lacks nested attribute %d", want)
	}
	return s.parse(nested)
}

func u16(m *attrSet, t uint16, name string) (uint16, error) {
	v, ok := m.get(t)
	if !ok {
		return 0, nil
	}
	if len(v) < 2 {
		return 0, fmt.Errorf("attribute %s: %d bytes, want 2", name, len(v))
	}
	return binary.NativeEndian.Uint16(v), nil
}

func u32(m *attrSet, t uint16, name string) (uint32, error) {
	v, ok := m.get(t)
	if !ok {
		return 0, nil
	}
	if len(v) < 4 {
		return 0, fmt.Errorf("attribute %s: %d bytes, want 4", name, len(v))
	}
	return binary.NativeEndian.Uint32(v), nil
}

// appendRequest starts a request to generic-netlink family typ: struct nlmsghdr (its length
// set by finishRequest, its sequence number when sent) and struct genlmsghdr.
func appendRequest(b []byte, typ, flags uint16, cmd, version uint8) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = binary.NativeEndian.AppendUint16(b, flags|unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint64(b, 0) // sequence number, port id
	return append(b, cmd, version, 0, 0)
}

// appendAttr appends struct nlattr with value v, padded to 4 bytes.
func appendAttr(b []byte, t uint16, v []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, t)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendServiceKey appends the nested IPVS_CMD_ATTR_SERVICE that names a service: its family
// and either its firewall mark or its protocol, address and port.
func appendServiceKey(b []byte, key dataplane.ServiceKey) []byte {
	start := len(b)
	b = appendAttr(b, cmdAttrService, nil)
	b = appendKeyAttrs(b, key)
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	return b
}

// appendKeyAttrs appends the attributes that identify a service, as the kernel's
// ip_vs_genl_parse_service reads them: IPVS_SVC_ATTR_AF (u16), then IPVS_SVC_ATTR_FWMARK
// (u32), or IPVS_SVC_ATTR_PROTOCOL (u16), IPVS_SVC_ATTR_ADDR (union nf_inet_addr: 4 or 16
// bytes) and IPVS_SVC_ATTR_PORT (be16).
func appendKeyAttrs(b []byte, key dataplane.ServiceKey) []byte {
	var v [4]byte
	binary.NativeEndian.PutUint16(v[:], afOf(key.Family))
	b = appendAttr(b, svcAttrAF, v[:2])
	if key.IsFWMark() {
		binary.NativeEndian.PutUint32(v[:], key.FWMark)
		return appendAttr(b, svcAttrFWMark, v[:])
	}
	binary.NativeEndian.PutUint16(v[:], uint16(key.Protocol))
	b = appendAttr(b, svcAttrProtocol, v[:2])
	b = appendAttr(b, svcAttrAddr, key.Address.Unmap().AsSlice())
	binary.BigEndian.PutUint16(v[:], key.Port)
	return appendAttr(b, svcAttrPort, v[:2])
}

// finishRequest sets the request's length.
func finishRequest(b []byte) []byte {
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

func family(af uint16) (dataplane.Family, error) {
	switch af {
	case syscall.AF_INET:
		return dataplane.IPv4, nil
	case syscall.AF_INET6:
		return dataplane.IPv6, nil
	}
	return 0, fmt.Errorf("address family %d is neither AF_INET nor AF_INET6", af)
}

func afOf(f dataplane.Family) uint16 {
	if f == dataplane.IPv6 {
		return syscall.AF_INET6
	}
	return syscall.AF_INET
}

// decodeService decodes one IPVS_CMD_GET_SERVICE reply message (generic-netlink header
// first).
func decodeService(msg []byte) (svcRecord, error) {
	var r svcRecord
	var set attrSet
	m := &set
	if err := m.payload(msg, cmdAttrService); err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	af, err := u16(m, svcAttrAF, "af")
	if err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	if r.svc.Family, err = family(af); err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	if _, ok := m.get(svcAttrFWMark); ok {
		if r.svc.FWMark, err = u32(m, svcAttrFWMark, "fwmark"); err != nil {
			return r, fmt.Errorf("ipvs service: %w", err)
		}
	} else if err := decodePlainKey(m, &r.svc.ServiceKey); err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	sched, _ := m.get(svcAttrSchedName)
	r.svc.Scheduler = unix.ByteSliceToString(sched)
	// IPVS_SVC_ATTR_FLAGS is struct ip_vs_flags {flags, mask}: the flags come first.
	flags, err := u32(m, svcAttrFlags, "flags")
	if err != nil {
		return r, fmt.Errorf("ipvs service %s: %w", r.svc.ServiceKey, err)
	}
	timeout, err := u32(m, svcAttrTimeout, "timeout")
	if err != nil {
		return r, fmt.Errorf("ipvs service %s: %w", r.svc.ServiceKey, err)
	}
	if flags&svcFlagPersistent != 0 {
		r.svc.Timeout = timeout
	}
	// Only the flags lvsctl sets: the kernel adds IP_VS_SVC_F_HASHED to every service.
	r.svc.Flags = dataplane.ServiceFlags(flags) & dataplane.KnownFlags
	if v, ok := m.get(svcAttrNetmask); ok {
		if len(v) < 4 {
			return r, fmt.Errorf("ipvs service %s: attribute netmask: %d bytes, want 4", r.svc.ServiceKey, len(v))
		}
		r.svc.NetmaskBits = netmaskBits(r.svc.Family, v)
	}
	if r.counters, err = decodeCounters(m); err != nil {
		return r, fmt.Errorf("ipvs service %s: %w", r.svc.ServiceKey, err)
	}
	return r, nil
}

// decodePlainKey reads a plain service's protocol, address and port into key (whose family
// is set). The kernel sends the address as a whole union nf_inet_addr (16 bytes), an IPv4
// address in its first 4.
func decodePlainKey(m *attrSet, key *dataplane.ServiceKey) error {
	proto, err := u16(m, svcAttrProtocol, "protocol")
	if err != nil {
		return err
	}
	if proto == 0 || proto > 255 {
		return fmt.Errorf("attribute protocol: %d is no IP protocol", proto)
	}
	key.Protocol = dataplane.Protocol(proto)
	a, _ := m.get(svcAttrAddr)
	switch {
	case key.Family == dataplane.IPv4 && len(a) >= 4:
		key.Address = netip.AddrFrom4([4]byte(a[:4]))
	case key.Family == dataplane.IPv6 && len(a) >= 16:
		key.Address = netip.AddrFrom16([16]byte(a[:16]))
	default:
		return fmt.Errorf("attribute addr: %d bytes for family %s, and no fwmark", len(a), key.Family)
	}
	p, ok := m.get(svcAttrPort)
	if ok && len(p) < 2 {
		return fmt.Errorf("service %s: attribute port: %d bytes, want 2", key.Address, len(p))
	}
	if ok {
		key.Port = binary.BigEndian.Uint16(p) // network order, as a destination's
	}
	return nil
}

// netmaskBits reads IPVS_SVC_ATTR_NETMASK. For IPv4 it is a network-order mask (ipvsadm
// sends 255.255.255.0); for IPv6 the kernel keeps a prefix length in the same 32 bits, as
// ipvsadm sends it (host order), and checks it is 1..128.
func netmaskBits(f dataplane.Family, v []byte) uint8 {
	if f == dataplane.IPv6 {
		return uint8(min(binary.NativeEndian.Uint32(v), 128))
	}
	return uint8(bits.LeadingZeros32(^binary.BigEndian.Uint32(v)))
}

// netmaskValue is netmaskBits' inverse in moby/ipvs's terms: moby writes Service.Netmask in
// host order.
func netmaskValue(f dataplane.Family, bitsLen uint8) uint32 {
	if f == dataplane.IPv6 {
		return uint32(bitsLen)
	}
	var mask uint32
	if bitsLen > 0 {
		mask = ^uint32(0) << (32 - uint32(min(bitsLen, 32)))
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], mask)
	return binary.NativeEndian.Uint32(b[:])
}

// decodeCounters reads a service's or destination's stats. IPVS sends both the old
// IPVS_*_ATTR_STATS (32-bit counts and rates, 64-bit bytes) and, since Linux 4.1,
// IPVS_*_ATTR_STATS64 (all 64-bit); the 64-bit one wins when present. Both attributes have the
// same number in service and destination messages (10 and 12).
func decodeCounters(m *attrSet) (dataplane.Counters, error) {
	if v, ok := m.get(svcAttrStats64); ok {
		return decodeStats(v, true)
	}
	if v, ok := m.get(svcAttrStats); ok {
		return decodeStats(v, false)
	}
	return dataplane.Counters{}, nil
}

// decodeStats decodes nested IPVS_STATS_ATTR_* attributes. In the 32-bit form, only the byte
// counters are 64 bits wide.
func decodeStats(b []byte, wide bool) (dataplane.Counters, error) {
	var c dataplane.Counters
	var m attrSet
	if err := m.parse(b); err != nil {
		return c, fmt.Errorf("stats: %w", err)
	}
	// Written out, not a table of fields: this runs for every service and destination of a
	// full read.
	var err error
	read := func(t uint16, name string, dst *uint64, wideAlways bool) {
		v, ok := m.get(t)
		if !ok || err != nil {
			return
		}
		if wide || wideAlways {
			if len(v) < 8 {
				err = fmt.Errorf("stats %s: %d bytes, want 8", name, len(v))
				return
			}
			*dst = binary.NativeEndian.Uint64(v)
			return
		}
		if len(v) < 4 {
			err = fmt.Errorf("stats %s: %d bytes, want 4", name, len(v))
			return
		}
		*dst = uint64(binary.NativeEndian.Uint32(v))
	}
	read(statsConns, "conns", &c.Conns, false)
	read(statsInPkts, "inpkts", &c.InPackets, false)
	read(statsOutPkts, "outpkts", &c.OutPackets, false)
	read(statsInBytes, "inbytes", &c.InBytes, true) // 64 bits even in the 32-bit form
	read(statsOutBytes, "outbytes", &c.OutBytes, true)
	read(statsCPS, "cps", &c.CPS, false)
	read(statsInPPS, "inpps", &c.InPPS, false)
	read(statsOutPPS, "outpps", &c.OutPPS, false)
	read(statsInBPS, "inbps", &c.InBPS, false)
	read(statsOutBPS, "outbps", &c.OutBPS, false)
	return c, err
}

// decodeDestination decodes one IPVS_CMD_GET_DEST reply message of a service of family svcFamily
// (kernels before 3.18 do not send the destination's own family).
func decodeDestination(msg []byte, svcFamily dataplane.Family) (dataplane.DestinationStats, error) {
	var d dataplane.DestinationStats
	var set attrSet
	m := &set
	if err := m.payload(msg, cmdAttrDest); err != nil {
		return d, fmt.Errorf("ipvs destination: %w", err)
	}
	fam := svcFamily
	if _, ok := m.get(destAttrAddrFamily); ok {
		af, err := u16(m, destAttrAddrFamily, "addr_family")
		if err != nil {
			return d, fmt.Errorf("ipvs destination: %w", err)
		}
		if fam, err = family(af); err != nil {
			return d, fmt.Errorf("ipvs destination: %w", err)
		}
	}
	// The address is a union nf_inet_addr: 16 bytes, an IPv4 address in the first 4.
	a, _ := m.get(destAttrAddr)
	switch {
	case fam == dataplane.IPv4 && len(a) >= 4:
		d.Address = netip.AddrFrom4([4]byte(a[:4]))
	case fam == dataplane.IPv6 && len(a) >= 16:
		d.Address = netip.AddrFrom16([16]byte(a[:16]))
	default:
		return d, fmt.Errorf("ipvs destination: address of %d bytes for family %s", len(a), fam)
	}
	if p, ok := m.get(destAttrPort); ok {
		if len(p) < 2 {
			return d, fmt.Errorf("ipvs destination %s: attribute port: %d bytes, want 2", d.Address, len(p))
		}
		d.Port = binary.BigEndian.Uint16(p) // network order, unlike the rest
	}
	// One by one, not a table of pointers into d: that would move d to the heap, and this runs
	// for every destination of a full read.
	var err error
	if d.Weight, err = u32(m, destAttrWeight, "weight"); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	if d.ActiveConns, err = u32(m, destAttrActiveConns, "activeconns"); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	if d.InactiveConns, err = u32(m, destAttrInactConns, "inactconns"); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	if d.PersistentConns, err = u32(m, destAttrPersistConns, "persistconns"); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	if d.UpperThreshold, err = u32(m, destAttrUThresh, "u_threshold"); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	if d.LowerThreshold, err = u32(m, destAttrLThresh, "l_threshold"); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	fwd, err := u32(m, destAttrFwdMethod, "fwd_method")
	if err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	d.Forward = forwardOf(fwd)
	if d.Tunnel, err = decodeTunnel(m); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	if d.Counters, err = decodeCounters(m); err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	return d, nil
}

// forwardOf maps IPVS connection flags to a Forward. Methods lvsctl does not configure (local
// node, bypass) give Forward(0), which matches no desired destination, so a reconciler edits it.
func forwardOf(flags uint32) dataplane.Forward {
	switch flags & connFwdMask {
	case connFwdMasq:
		return dataplane.ForwardMasq
	case connFwdRoute:
		return dataplane.ForwardRoute
	case connFwdTunnel:
		return dataplane.ForwardTunnel
	}
	return 0
}

// connFlags is forwardOf's inverse.
func connFlags(f dataplane.Forward) (uint32, error) {
	switch f {
	case dataplane.ForwardMasq:
		return connFwdMasq, nil
	case dataplane.ForwardRoute:
		return connFwdRoute, nil
	case dataplane.ForwardTunnel:
		return connFwdTunnel, nil
	}
	return 0, fmt.Errorf("forward: %s is not masq, route or tunnel", f)
}

// decodeTunnel reads a destination's tunnel attributes. Linux 5.3 and later send all three
// for every destination (zero for ipip and for masq and route); an older kernel sends none,
// and has only ipip, which is the zero Tunnel too.
func decodeTunnel(m *attrSet) (dataplane.Tunnel, error) {
	var t dataplane.Tunnel
	if v, ok := m.get(destAttrTunType); ok {
		if len(v) < 1 {
			return t, fmt.Errorf("attribute tun_type: empty, want 1 byte")
		}
		t.Type = dataplane.TunnelType(v[0])
	}
	if v, ok := m.get(destAttrTunPort); ok {
		if len(v) < 2 {
			return t, fmt.Errorf("attribute tun_port: %d bytes, want 2", len(v))
		}
		t.Port = binary.BigEndian.Uint16(v) // network order, as the destination's port
	}
	flags, err := u16(m, destAttrTunFlags, "tun_flags")
	t.Flags = dataplane.TunnelFlags(flags)
	return t, err
}

// appendTunnelAttrs appends a destination's IPVS_DEST_ATTR_TUN_TYPE, _TUN_PORT and
// _TUN_FLAGS, always, as ipvsadm does: the kernel takes a missing one as 0, so an edit
// without them would turn a gue destination back into ipip anyway.
func appendTunnelAttrs(b []byte, t dataplane.Tunnel) []byte {
	b = appendAttr(b, destAttrTunType, []byte{uint8(t.Type)})
	b = appendAttr(b, destAttrTunPort, binary.BigEndian.AppendUint16(nil, t.Port))
	return appendAttr(b, destAttrTunFlags, binary.NativeEndian.AppendUint16(nil, uint16(t.Flags)))
}

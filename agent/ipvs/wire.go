package ipvs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
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

	svcFlagPersistent = 0x0001 // IP_VS_SVC_F_PERSISTENT

	connFwdMask   = 0x0007 // IP_VS_CONN_F_FWD_MASK
	connFwdMasq   = 0x0000
	connFwdTunnel = 0x0002
	connFwdRoute  = 0x0003
)

// nlaTypeMask strips the nested and byte-order flags from an attribute type (NLA_TYPE_MASK).
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// genlHeader is struct genlmsghdr.
type genlHeader struct{ cmd, version uint8 }

func (h genlHeader) Len() int          { return 4 }
func (h genlHeader) Serialize() []byte { return []byte{h.cmd, h.version, 0, 0} }

// svcRecord is one service as IPVS reports it.
type svcRecord struct {
	svc      dataplane.Service
	fwmark   bool // a firewall-mark service, not an address/protocol/port one
	counters dataplane.Counters
}

// attrs parses netlink attributes, without the flag bits in their types.
func attrs(b []byte) (map[uint16][]byte, error) {
	list, err := nl.ParseRouteAttr(b)
	if err != nil {
		return nil, fmt.Errorf("parse attributes: %w", err)
	}
	m := make(map[uint16][]byte, len(list))
	for _, a := range list {
		m[a.Attr.Type&nlaTypeMask] = a.Value
	}
	return m, nil
}

// payload returns the attributes nested in the message's IPVS_CMD_ATTR_SERVICE or _DEST,
// after the generic-netlink header.
func payload(msg []byte, want uint16) (map[uint16][]byte, error) {
	if len(msg) < 4 {
		return nil, fmt.Errorf("message of %d bytes has no generic netlink header", len(msg))
	}
	top, err := attrs(msg[4:])
	if err != nil {
		return nil, err
	}
	nested, ok := top[want]
	if !ok {
		return nil, fmt.Errorf("message lacks nested attribute %d", want)
	}
	return attrs(nested)
}

func u16(m map[uint16][]byte, t uint16, name string) (uint16, error) {
	v, ok := m[t]
	if !ok {
		return 0, nil
	}
	if len(v) < 2 {
		return 0, fmt.Errorf("attribute %s: %d bytes, want 2", name, len(v))
	}
	return binary.NativeEndian.Uint16(v), nil
}

func u32(m map[uint16][]byte, t uint16, name string) (uint32, error) {
	v, ok := m[t]
	if !ok {
		return 0, nil
	}
	if len(v) < 4 {
		return 0, fmt.Errorf("attribute %s: %d bytes, want 4", name, len(v))
	}
	return binary.NativeEndian.Uint32(v), nil
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
	m, err := payload(msg, cmdAttrService)
	if err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	af, err := u16(m, svcAttrAF, "af")
	if err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	if r.svc.Family, err = family(af); err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	_, r.fwmark = m[svcAttrFWMark]
	if r.svc.FWMark, err = u32(m, svcAttrFWMark, "fwmark"); err != nil {
		return r, fmt.Errorf("ipvs service: %w", err)
	}
	r.svc.Scheduler = unix.ByteSliceToString(m[svcAttrSchedName])
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
	if v, ok := m[svcAttrNetmask]; ok {
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
func decodeCounters(m map[uint16][]byte) (dataplane.Counters, error) {
	if v, ok := m[svcAttrStats64]; ok {
		return decodeStats(v, true)
	}
	if v, ok := m[svcAttrStats]; ok {
		return decodeStats(v, false)
	}
	return dataplane.Counters{}, nil
}

// decodeStats decodes nested IPVS_STATS_ATTR_* attributes. In the 32-bit form, only the byte
// counters are 64 bits wide.
func decodeStats(b []byte, wide bool) (dataplane.Counters, error) {
	var c dataplane.Counters
	m, err := attrs(b)
	if err != nil {
		return c, fmt.Errorf("stats: %w", err)
	}
	fields := []struct {
		t    uint16
		name string
		dst  *uint64
		wide bool // 64 bits even in the 32-bit form
	}{
		{statsConns, "conns", &c.Conns, false},
		{statsInPkts, "inpkts", &c.InPackets, false},
		{statsOutPkts, "outpkts", &c.OutPackets, false},
		{statsInBytes, "inbytes", &c.InBytes, true},
		{statsOutBytes, "outbytes", &c.OutBytes, true},
		{statsCPS, "cps", &c.CPS, false},
		{statsInPPS, "inpps", &c.InPPS, false},
		{statsOutPPS, "outpps", &c.OutPPS, false},
		{statsInBPS, "inbps", &c.InBPS, false},
		{statsOutBPS, "outbps", &c.OutBPS, false},
	}
	for _, f := range fields {
		v, ok := m[f.t]
		if !ok {
			continue
		}
		if wide || f.wide {
			if len(v) < 8 {
				return c, fmt.Errorf("stats %s: %d bytes, want 8", f.name, len(v))
			}
			*f.dst = binary.NativeEndian.Uint64(v)
			continue
		}
		if len(v) < 4 {
			return c, fmt.Errorf("stats %s: %d bytes, want 4", f.name, len(v))
		}
		*f.dst = uint64(binary.NativeEndian.Uint32(v))
	}
	return c, nil
}

// decodeDestination decodes one IPVS_CMD_GET_DEST reply message of a service of family svcFamily
// (kernels before 3.18 do not send the destination's own family).
func decodeDestination(msg []byte, svcFamily dataplane.Family) (dataplane.DestinationStats, error) {
	var d dataplane.DestinationStats
	m, err := payload(msg, cmdAttrDest)
	if err != nil {
		return d, fmt.Errorf("ipvs destination: %w", err)
	}
	fam := svcFamily
	if _, ok := m[destAttrAddrFamily]; ok {
		af, err := u16(m, destAttrAddrFamily, "addr_family")
		if err != nil {
			return d, fmt.Errorf("ipvs destination: %w", err)
		}
		if fam, err = family(af); err != nil {
			return d, fmt.Errorf("ipvs destination: %w", err)
		}
	}
	// The address is a union nf_inet_addr: 16 bytes, an IPv4 address in the first 4.
	a := m[destAttrAddr]
	switch {
	case fam == dataplane.IPv4 && len(a) >= 4:
		d.Address = netip.AddrFrom4([4]byte(a[:4]))
	case fam == dataplane.IPv6 && len(a) >= 16:
		d.Address = netip.AddrFrom16([16]byte(a[:16]))
	default:
		return d, fmt.Errorf("ipvs destination: address of %d bytes for family %s", len(a), fam)
	}
	if p, ok := m[destAttrPort]; ok {
		if len(p) < 2 {
			return d, fmt.Errorf("ipvs destination %s: attribute port: %d bytes, want 2", d.Address, len(p))
		}
		d.Port = binary.BigEndian.Uint16(p) // network order, unlike the rest
	}
	u32s := []struct {
		t    uint16
		name string
		dst  *uint32
	}{
		{destAttrWeight, "weight", &d.Weight},
		{destAttrActiveConns, "activeconns", &d.ActiveConns},
		{destAttrInactConns, "inactconns", &d.InactiveConns},
		{destAttrPersistConns, "persistconns", &d.PersistentConns},
	}
	for _, f := range u32s {
		if *f.dst, err = u32(m, f.t, f.name); err != nil {
			return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
		}
	}
	fwd, err := u32(m, destAttrFwdMethod, "fwd_method")
	if err != nil {
		return d, fmt.Errorf("ipvs destination %s: %w", d.Address, err)
	}
	d.Forward = forwardOf(fwd)
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

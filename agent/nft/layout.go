package nft

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"reflect"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// The layout the agent keeps in table inet lvsctl (`nft list table inet lvsctl`):
//
//	map ports4 {
//		type ipv4_addr . inet_proto . inet_service : mark
//		elements = { 192.0.2.10 . tcp . 554 : 0x10, 192.0.2.10 . udp . 1755 : 0x10, ... }
//	}
//	map ranges4 {
//		type ipv4_addr . inet_proto . inet_service : mark
//		flags interval
//		elements = { 192.0.2.10 . udp . 1024-5000 : 0x10, ... }
//	}
//	map ports6 { ... }  map ranges6 { ... }
//	chain prerouting {
//		type filter hook prerouting priority mangle; policy accept;
//		meta mark set ip daddr . meta l4proto . th dport map @ranges4
//		meta mark set ip daddr . meta l4proto . th dport map @ports4
//		meta mark set ip6 daddr . meta l4proto . th dport map @ranges6
//		meta mark set ip6 daddr . meta l4proto . th dport map @ports6
//	}
//
// The chain and its four rules never change; a MarkRule is one element of a map, so a site of
// 10,000 clusters is four rules and 50,000 elements, and a changed cluster is a few element
// operations. A miss leaves the packet's mark alone.
//
// Why two maps per family: a concatenated key with an interval (ranges*) is the kernel's
// pipapo set, which matches a VIP, protocol and port range in one lookup, but every
// transaction that changes it rebuilds its lookup tables: about 80 ms of kernel CPU for one
// changed cluster at 50,000 elements. Single ports, most of what clusters use, go to a hash map
// (ports*) whose changes cost the same at any size; only ranges pay pipapo's price, and there
// are few of them. It also lets a single port sit inside a range of the same mark, as Windows
// Media's udp 1755 inside udp 1024-5000, each in its own map: pipapo refuses two elements that
// share a port.
const (
	Ports4Map  = "ports4"
	Ranges4Map = "ranges4"
	Ports6Map  = "ports6"
	Ranges6Map = "ranges6"
)

// family is what differs between the IPv4 and the IPv6 halves of the layout.
type family struct {
	nfproto  byte
	daddrOff uint32 // offset of the destination address in the network header
	addrLen  int
	addrType nftables.SetDatatype
	// Registers of the concatenation: the address fills NFT_REG_1 from its start, then the
	// protocol and the port each take the next 32-bit register, as nft itself lays them out.
	// Each is named as the kernel lists it back (a 32-bit register that starts a 128-bit one
	// is listed by the 128-bit number), so a listed rule compares equal.
	protoReg, portReg uint32
	what              string
}

var (
	fam4 = family{nfproto: unix.NFPROTO_IPV4, daddrOff: 16, addrLen: 4, addrType: nftables.TypeIPAddr,
		protoReg: unix.NFT_REG32_01, portReg: unix.NFT_REG32_02, what: "IPv4"}
	fam6 = family{nfproto: unix.NFPROTO_IPV6, daddrOff: 24, addrLen: 16, addrType: nftables.TypeIP6Addr,
		protoReg: unix.NFT_REG_2, portReg: unix.NFT_REG32_05, what: "IPv6"}
)

// markMap is one of the four maps, and the fixed rule that looks packets up in it.
type markMap struct {
	name string
	// setID names the map inside one transaction (a rule that refers to a map made in the
	// same batch). Fixed values, because the library's own allocator is a package global that
	// two Firewalls would race on; they only need to be unique within a batch.
	setID  uint32
	fam    *family
	ranges bool // an interval map of port ranges; else a hash map of single ports
}

var (
	ranges4 = markMap{name: Ranges4Map, setID: 1, fam: &fam4, ranges: true}
	ports4  = markMap{name: Ports4Map, setID: 2, fam: &fam4}
	ranges6 = markMap{name: Ranges6Map, setID: 3, fam: &fam6, ranges: true}
	ports6  = markMap{name: Ports6Map, setID: 4, fam: &fam6}
	// markMaps in the order of their rules in the chain. A packet whose port is in a range
	// and is a single port of the same mark gets that mark from both.
	markMaps = []*markMap{&ranges4, &ports4, &ranges6, &ports6}
)

// mapOf returns the map that holds a mark rule's element.
func mapOf(r dataplane.MarkRule) *markMap {
	single := r.FirstPort == r.LastPort
	switch {
	case r.VIP.Unmap().Is4() && single:
		return &ports4
	case r.VIP.Unmap().Is4():
		return &ranges4
	case single:
		return &ports6
	}
	return &ranges6
}

// keyLen is the length of the map's key: the address, then protocol and port each padded to
// a 32-bit register, as the kernel compares them.
func (f *family) keyLen() int { return f.addrLen + 4 + 4 }

// newSet returns a new map of this kind in table t. The key is the same in both kinds: the
// interval map holds ranges of it, the hash map single keys. The comment is for the operator.
func (m *markMap) newSet(t *nftables.Table) *nftables.Set {
	what := "single ports"
	if m.ranges {
		what = "port ranges"
	}
	return &nftables.Set{
		Table: t, Name: m.name, ID: m.setID,
		IsMap: true, Interval: m.ranges, Concatenation: m.ranges, // the interval map needs the fields' lengths
		KeyType:  nftables.MustConcatSetType(m.fam.addrType, nftables.TypeInetProto, nftables.TypeInetService),
		DataType: nftables.TypeMark,
		Comment:  fmt.Sprintf("lvsctl: IPVS firewall marks of %s VIPs, %s", m.fam.what, what),
	}
}

// setOK reports whether a map the kernel listed is one newSet makes: same flags, key and data.
func (m *markMap) setOK(s *nftables.Set) bool {
	want := m.newSet(nil)
	return s.IsMap && s.Interval == m.ranges && s.Concatenation == m.ranges && !s.Constant && !s.Anonymous && !s.HasTimeout && !s.Dynamic &&
		s.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() && s.KeyType.Bytes == want.KeyType.Bytes &&
		s.DataType.GetNFTMagic() == want.DataType.GetNFTMagic() && s.DataType.Bytes == want.DataType.Bytes
}

// ruleComment tags the map's fixed rule, for the operator reading `nft list`.
func (m *markMap) ruleComment() string {
	return fmt.Sprintf("lvsctl: packets to a VIP, protocol and port in @%s get its mark", m.name)
}

// exprs returns the expressions of `meta mark set ip[6] daddr . meta l4proto . th dport map
// @NAME`, as nft generates them; setID 0 is how the kernel lists the rule back.
func (m *markMap) exprs(setID uint32) []expr.Any {
	f := m.fam
	return []expr.Any{
		// In an inet table, network-header loads need the family checked first.
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: uint32(f.addrLen)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.protoReg},
		// th dport: the first 4 bytes of tcp, udp and sctp headers are the ports.
		&expr.Payload{DestRegister: f.portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: m.name, SetID: setID},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// newRule returns the map's fixed rule in chain c.
func (m *markMap) newRule(c *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: c.Table, Chain: c, Exprs: m.exprs(m.setID), UserData: commentUData(m.ruleComment())}
}

// isRule reports whether a rule the kernel listed is the map's fixed rule.
func (m *markMap) isRule(r *nftables.Rule) bool {
	c, ok := commentOf(r.UserData)
	return ok && c == m.ruleComment() && reflect.DeepEqual(r.Exprs, m.exprs(0))
}

// key is a map key: address . protocol . port, each of the last two in a 32-bit register
// (the protocol byte first, the port in network order), zero-padded.
func key(vip netip.Addr, p dataplane.Protocol, port uint16) []byte {
	b := vip.Unmap().AsSlice()
	b = append(b, byte(p), 0, 0, 0)
	return append(binary.BigEndian.AppendUint16(b, port), 0, 0)
}

// element returns the map element of a mark rule (in mapOf's map): its key, or the range
// [first, last] of its key, and the mark in host byte order, as meta mark holds it.
func element(r dataplane.MarkRule) nftables.SetElement {
	e := nftables.SetElement{
		Key: key(r.VIP, r.Protocol, r.FirstPort),
		Val: binary.NativeEndian.AppendUint32(nil, r.Mark),
	}
	if r.FirstPort != r.LastPort {
		e.KeyEnd = key(r.VIP, r.Protocol, r.LastPort)
	}
	return e
}

// markRuleOf is the inverse of element for an element of map m; ok is false for an element
// that is not one (made by hand: a range of addresses, a protocol without ports, mark 0, a
// single port in a range map, ...).
func markRuleOf(m *markMap, e nftables.SetElement) (dataplane.MarkRule, bool) {
	f := m.fam
	n := f.keyLen()
	if !m.ranges && len(e.KeyEnd) == 0 {
		e.KeyEnd = e.Key
	}
	if len(e.Key) != n || len(e.KeyEnd) != n || len(e.Val) != 4 || e.IntervalEnd {
		return dataplane.MarkRule{}, false
	}
	a := f.addrLen
	// The end must differ from the start in the port alone, and padding must be zero.
	if string(e.Key[:a+4]) != string(e.KeyEnd[:a+4]) || string(e.Key[a+1:a+4]) != "\x00\x00\x00" ||
		string(e.Key[a+6:]) != "\x00\x00" || string(e.KeyEnd[a+6:]) != "\x00\x00" {
		return dataplane.MarkRule{}, false
	}
	vip, _ := netip.AddrFromSlice(e.Key[:a])
	r := dataplane.MarkRule{
		VIP:       vip,
		Protocol:  dataplane.Protocol(e.Key[a]),
		FirstPort: binary.BigEndian.Uint16(e.Key[a+4:]),
		LastPort:  binary.BigEndian.Uint16(e.KeyEnd[a+4:]),
		Mark:      binary.NativeEndian.Uint32(e.Val),
	}
	if validate(r) != nil || r.VIP.Is4In6() || mapOf(r) != m {
		return dataplane.MarkRule{}, false
	}
	return r, true
}

// commentUData returns user data holding one libnftnl comment TLV, as nft writes a comment.
func commentUData(s string) []byte {
	b := []byte{udataComment, byte(len(s) + 1)}
	b = append(b, s...)
	return append(b, 0)
}

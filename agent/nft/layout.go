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
//	map marks4 {
//		type ipv4_addr . inet_proto . inet_service : mark
//		flags interval
//		elements = { 192.0.2.10 . tcp . 554 : 0x10, 192.0.2.10 . udp . 1024-5000 : 0x10, ... }
//	}
//	map marks6 { type ipv6_addr . inet_proto . inet_service : mark; flags interval; ... }
//	chain prerouting {
//		type filter hook prerouting priority mangle; policy accept;
//		meta mark set ip daddr . meta l4proto . th dport map @marks4
//		meta mark set ip6 daddr . meta l4proto . th dport map @marks6
//	}
//
// The chain and its two rules never change; a MarkRule is one element of a map, so a site of
// 10,000 clusters is two rules and 50,000 elements, and a changed cluster is a few element
// operations. A concatenated key with an interval (the kernel's pipapo set) matches a VIP, a
// protocol and a port range in one lookup, whatever the number of elements; a miss leaves the
// packet's mark alone.
const (
	Map4Name = "marks4"
	Map6Name = "marks6"
)

// Set IDs name the maps inside one transaction (a rule that refers to a map made in the same
// batch). Fixed values, because the library's own allocator is a package global that two
// Firewalls would race on; they only need to be unique within a batch.
const (
	map4ID = 1
	map6ID = 2
)

// family is what differs between the IPv4 and the IPv6 halves of the layout.
type family struct {
	name     string // map name
	setID    uint32
	nfproto  byte
	daddrOff uint32 // offset of the destination address in the network header
	addrLen  int
	addrType nftables.SetDatatype
	// Registers of the concatenation: the address fills NFT_REG_1 from its start, then the
	// protocol and the port each take the next 32-bit register, as nft itself lays them out.
	// Each is named as the kernel lists it back (a 32-bit register that starts a 128-bit one
	// is listed by the 128-bit number), so a listed rule compares equal.
	protoReg, portReg uint32
	comment           string
}

var (
	fam4 = family{name: Map4Name, setID: map4ID, nfproto: unix.NFPROTO_IPV4, daddrOff: 16, addrLen: 4,
		addrType: nftables.TypeIPAddr, protoReg: unix.NFT_REG32_01, portReg: unix.NFT_REG32_02,
		comment: "lvsctl: IPVS firewall marks of IPv4 VIPs"}
	fam6 = family{name: Map6Name, setID: map6ID, nfproto: unix.NFPROTO_IPV6, daddrOff: 24, addrLen: 16,
		addrType: nftables.TypeIP6Addr, protoReg: unix.NFT_REG_2, portReg: unix.NFT_REG32_05,
		comment: "lvsctl: IPVS firewall marks of IPv6 VIPs"}
)

// familyOf returns the half of the layout a VIP belongs to.
func familyOf(vip netip.Addr) *family {
	if vip.Unmap().Is4() {
		return &fam4
	}
	return &fam6
}

// keyLen is the length of the map's key: the address, then protocol and port each padded to
// a 32-bit register, as the kernel compares them.
func (f *family) keyLen() int { return f.addrLen + 4 + 4 }

// newSet returns a new map of this family in table t.
func (f *family) newSet(t *nftables.Table) *nftables.Set {
	return &nftables.Set{
		Table: t, Name: f.name, ID: f.setID,
		IsMap: true, Interval: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
		DataType: nftables.TypeMark,
		Comment:  f.comment,
	}
}

// setOK reports whether a map the kernel listed is one newSet makes: same flags, key and data.
func (f *family) setOK(s *nftables.Set) bool {
	want := f.newSet(nil)
	return s.IsMap && s.Interval && s.Concatenation && !s.Constant && !s.Anonymous && !s.HasTimeout && !s.Dynamic &&
		s.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() && s.KeyType.Bytes == want.KeyType.Bytes &&
		s.DataType.GetNFTMagic() == want.DataType.GetNFTMagic() && s.DataType.Bytes == want.DataType.Bytes
}

// ruleComment tags the family's fixed rule, for the operator reading `nft list`.
func (f *family) ruleComment() string {
	return fmt.Sprintf("lvsctl: packets to a VIP, protocol and port in @%s get its mark", f.name)
}

// exprs returns the expressions of `meta mark set ip[6] daddr . meta l4proto . th dport map
// @NAME`, as nft generates them; setID 0 is how the kernel lists the rule back.
func (f *family) exprs(setID uint32) []expr.Any {
	return []expr.Any{
		// In an inet table, network-header loads need the family checked first.
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: uint32(f.addrLen)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.protoReg},
		// th dport: the first 4 bytes of tcp, udp and sctp headers are the ports.
		&expr.Payload{DestRegister: f.portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: f.name, SetID: setID},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// newRule returns the family's fixed rule in chain c.
func (f *family) newRule(c *nftables.Chain) *nftables.Rule {
	return &nftables.Rule{Table: c.Table, Chain: c, Exprs: f.exprs(f.setID), UserData: commentUData(f.ruleComment())}
}

// isRule reports whether a rule the kernel listed is the family's fixed rule.
func (f *family) isRule(r *nftables.Rule) bool {
	c, ok := commentOf(r.UserData)
	return ok && c == f.ruleComment() && reflect.DeepEqual(r.Exprs, f.exprs(0))
}

// key is a map key: address . protocol . port, each of the last two in a 32-bit register
// (the protocol byte first, the port in network order), zero-padded.
func key(vip netip.Addr, p dataplane.Protocol, port uint16) []byte {
	b := vip.Unmap().AsSlice()
	b = append(b, byte(p), 0, 0, 0)
	return append(binary.BigEndian.AppendUint16(b, port), 0, 0)
}

// element returns the map element of a mark rule: the range [first, last] of the key, and the
// mark in host byte order, as meta mark holds it.
func element(r dataplane.MarkRule) nftables.SetElement {
	return nftables.SetElement{
		Key:    key(r.VIP, r.Protocol, r.FirstPort),
		KeyEnd: key(r.VIP, r.Protocol, r.LastPort),
		Val:    binary.NativeEndian.AppendUint32(nil, r.Mark),
	}
}

// markRuleOf is the inverse of element; ok is false for an element that is not one (made by
// hand: a range of addresses, a protocol without ports, mark 0, ...).
func markRuleOf(f *family, e nftables.SetElement) (dataplane.MarkRule, bool) {
	n := f.keyLen()
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
	if validate(r) != nil || r.VIP.Is4In6() {
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

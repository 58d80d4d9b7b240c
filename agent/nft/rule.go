package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Until map elements held them, the agent kept one rule per MarkRule in chain prerouting (the
// v1 layout), tagged with a comment that starts with commentPrefix and is the rule's canonical
// key. An agent upgraded in place finds such rules: MarkRules reports the valid ones, so the
// reconciler keeps what it cannot translate, and SetMarkRules replaces them with map elements
// in the transaction that adds those.
const commentPrefix = "lvsctl:v1 "

// udataComment is libnftnl's TLV type for a rule comment (NFTNL_UDATA_RULE_COMMENT).
const udataComment = 0

// legacyKey is the v1 comment of a mark rule: equal rules have equal keys.
func legacyKey(r dataplane.MarkRule) string {
	return fmt.Sprintf("%s%s %s %d-%d mark %d", commentPrefix, r.VIP.Unmap(), r.Protocol, r.FirstPort, r.LastPort, r.Mark)
}

// parseLegacyKey is the inverse of legacyKey.
func parseLegacyKey(s string) (dataplane.MarkRule, error) {
	rest, ok := strings.CutPrefix(s, commentPrefix)
	if !ok {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q lacks prefix %q", s, commentPrefix)
	}
	f := strings.Fields(rest)
	if len(f) != 5 || f[3] != "mark" {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: want \"VIP PROTOCOL FIRST-LAST mark MARK\" after the prefix", s)
	}
	vip, err := netip.ParseAddr(f[0])
	if err != nil {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: vip: %w", s, err)
	}
	var proto dataplane.Protocol
	for _, p := range []dataplane.Protocol{dataplane.TCP, dataplane.UDP, dataplane.SCTP} {
		if f[1] == p.String() {
			proto = p
		}
	}
	first, last, ok := strings.Cut(f[2], "-")
	if !ok {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: ports %q are not FIRST-LAST", s, f[2])
	}
	fp, err := strconv.ParseUint(first, 10, 16)
	if err != nil {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: first port: %w", s, err)
	}
	lp, err := strconv.ParseUint(last, 10, 16)
	if err != nil {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: last port: %w", s, err)
	}
	mark, err := strconv.ParseUint(f[4], 10, 32)
	if err != nil {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: mark: %w", s, err)
	}
	r := dataplane.MarkRule{VIP: vip, Protocol: proto, FirstPort: uint16(fp), LastPort: uint16(lp), Mark: uint32(mark)}
	if err := validate(r); err != nil {
		return dataplane.MarkRule{}, fmt.Errorf("comment %q: %w", s, err)
	}
	return r, nil
}

// validate refuses rules the kernel would accept but that cannot mean anything to IPVS.
func validate(r dataplane.MarkRule) error {
	switch {
	case !r.VIP.IsValid():
		return errors.New("vip: missing address")
	case r.VIP.Zone() != "":
		return fmt.Errorf("vip: %s has a zone; a VIP cannot", r.VIP)
	case r.Protocol != dataplane.TCP && r.Protocol != dataplane.UDP && r.Protocol != dataplane.SCTP:
		// th dport reads the first 4 bytes of the transport header as ports, which is only
		// true of protocols with ports.
		return fmt.Errorf("protocol: %s has no ports; want tcp, udp or sctp", r.Protocol)
	case r.FirstPort == 0:
		return errors.New("first port: 0 is not a port")
	case r.LastPort < r.FirstPort:
		return fmt.Errorf("last port: %d is below first port %d", r.LastPort, r.FirstPort)
	case r.Mark == 0:
		// IPVS cannot key a service on mark 0: it means "no mark".
		return errors.New("mark: 0 means no mark")
	}
	return nil
}

// commentOf extracts the comment TLV from a rule's user data. Unlike nftables/userdata.Get, it
// never panics on malformed input: rules edited by hand may carry anything.
func commentOf(udata []byte) (string, bool) {
	for len(udata) >= 2 {
		typ, n := udata[0], int(udata[1])
		if len(udata) < 2+n {
			return "", false
		}
		if typ == udataComment {
			return strings.TrimSuffix(string(udata[2:2+n]), "\x00"), true
		}
		udata = udata[2+n:]
	}
	return "", false
}

// legacyExprs returns the expressions of the v1 rule
// `ip daddr VIP meta l4proto P th dport FIRST[-LAST] meta mark set MARK`.
func legacyExprs(r dataplane.MarkRule) []expr.Any {
	vip := r.VIP.Unmap()
	nfproto, off := byte(unix.NFPROTO_IPV4), uint32(16) // IPv4 daddr is at offset 16
	if vip.Is6() {
		nfproto, off = unix.NFPROTO_IPV6, 24 // IPv6 daddr is at offset 24
	}
	addr := vip.AsSlice()
	port := func(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }
	mark := binary.NativeEndian.AppendUint32(nil, r.Mark) // meta mark is in host byte order

	e := []expr.Any{
		// In an inet table, network-header matches need the family checked first.
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(addr))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.Protocol)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	if r.FirstPort == r.LastPort {
		e = append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port(r.FirstPort)})
	} else {
		e = append(e, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: port(r.FirstPort), ToData: port(r.LastPort)})
	}
	return append(e,
		&expr.Immediate{Register: 1, Data: mark},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	)
}

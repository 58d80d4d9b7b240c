package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// The wire tests build reply messages byte by byte as the kernel's ip_vs_genl_fill_service
// and ip_vs_genl_fill_dest do (struct nlattr: 16-bit length, 16-bit type, value, padding to
// 4 bytes), then decode them.

type nla struct {
	typ   uint16
	value []byte
	kids  []nla
}

func (a nla) bytes() []byte {
	v := a.value
	for _, k := range a.kids {
		v = append(v, k.bytes()...)
	}
	b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(v)))
	b = binary.NativeEndian.AppendUint16(b, a.typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func n16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func n32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
func n64(v uint64) []byte { return binary.NativeEndian.AppendUint64(nil, v) }
func b16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func b32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// message is a generic-netlink reply: header (cmd, version, reserved) then one nested attribute.
func message(cmd uint8, top nla) []byte {
	return append([]byte{cmd, genlVersion, 0, 0}, top.bytes()...)
}

// inetAddr is a union nf_inet_addr as the kernel puts it: 16 bytes.
func inetAddr(a string) []byte {
	ip := netip.MustParseAddr(a)
	b := make([]byte, 16)
	copy(b, ip.AsSlice())
	return b
}

// stats32 is IPVS_*_ATTR_STATS: 32-bit counts and rates, 64-bit bytes.
func stats32(typ uint16, c dataplane.Counters) nla {
	return nla{typ: typ, kids: []nla{
		{typ: statsConns, value: n32(uint32(c.Conns))},
		{typ: statsInPkts, value: n32(uint32(c.InPackets))},
		{typ: statsOutPkts, value: n32(uint32(c.OutPackets))},
		{typ: statsInBytes, value: n64(c.InBytes)},
		{typ: statsOutBytes, value: n64(c.OutBytes)},
		{typ: statsCPS, value: n32(uint32(c.CPS))},
		{typ: statsInPPS, value: n32(uint32(c.InPPS))},
		{typ: statsOutPPS, value: n32(uint32(c.OutPPS))},
		{typ: statsInBPS, value: n32(uint32(c.InBPS))},
		{typ: statsOutBPS, value: n32(uint32(c.OutBPS))},
	}}
}

// statsPad is IPVS_STATS_ATTR_PAD, which nla_put_u64_64bit inserts to align a u64.
const statsPad = 11

// stats64 is IPVS_*_ATTR_STATS64: everything 64-bit, with the pad attributes the kernel adds.
func stats64(typ uint16, c dataplane.Counters) nla {
	kids := []nla{}
	for i, v := range []uint64{c.Conns, c.InPackets, c.OutPackets, c.InBytes, c.OutBytes, c.CPS, c.InPPS, c.OutPPS, c.InBPS, c.OutBPS} {
		kids = append(kids, nla{typ: statsPad}, nla{typ: uint16(statsConns + i), value: n64(v)})
	}
	return nla{typ: typ | unix.NLA_F_NESTED, kids: kids}
}

// big counts above 2^32 prove the 64-bit attributes are the ones read.
var big = dataplane.Counters{
	Conns: 1<<32 + 1, InPackets: 1<<33 + 2, OutPackets: 1<<34 + 3, InBytes: 1<<40 + 4, OutBytes: 1<<41 + 5,
	CPS: 1<<32 + 6, InPPS: 1<<32 + 7, OutPPS: 1<<32 + 8, InBPS: 1<<35 + 9, OutBPS: 1<<36 + 10,
}

var small = dataplane.Counters{
	Conns: 11, InPackets: 12, OutPackets: 13, InBytes: 1<<40 + 14, OutBytes: 15, CPS: 16, InPPS: 17, OutPPS: 18, InBPS: 19, OutBPS: 20,
}

func TestDecodeService(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want svcRecord
	}{{
		name: "persistent ipv4 fwmark with stats64",
		msg: message(cmdGetService, nla{typ: cmdAttrService, kids: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET)},
			{typ: svcAttrFWMark, value: n32(16)},
			{typ: svcAttrSchedName, value: []byte("wlc\x00")},
			{typ: svcAttrFlags, value: append(n32(svcFlagPersistent|0x2), n32(^uint32(0))...)}, // persistent|hashed, mask
			{typ: svcAttrTimeout, value: n32(600)},
			{typ: svcAttrNetmask, value: b32(0xffffff00)},
			stats32(svcAttrStats, small),
			stats64(svcAttrStats64, big),
		}}),
		want: svcRecord{
			svc:      dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 24},
			counters: big,
		},
	}, {
		name: "not persistent: the timeout is ignored; 32-bit stats only",
		msg: message(cmdGetService, nla{typ: cmdAttrService | unix.NLA_F_NESTED, kids: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET)},
			{typ: svcAttrFWMark, value: n32(7)},
			{typ: svcAttrSchedName, value: []byte("rr\x00")},
			{typ: svcAttrFlags, value: append(n32(0x2), n32(^uint32(0))...)},
			{typ: svcAttrTimeout, value: n32(300)},
			{typ: svcAttrNetmask, value: b32(0xffffffff)},
			stats32(svcAttrStats, small),
		}}),
		want: svcRecord{
			svc:      dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 7}, Scheduler: "rr", NetmaskBits: 32},
			counters: small,
		},
	}, {
		name: "ipv6: the netmask is a prefix length",
		msg: message(cmdGetService, nla{typ: cmdAttrService, kids: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET6)},
			{typ: svcAttrFWMark, value: n32(17)},
			{typ: svcAttrSchedName, value: []byte("sh\x00")},
			{typ: svcAttrFlags, value: append(n32(svcFlagPersistent), n32(^uint32(0))...)},
			{typ: svcAttrTimeout, value: n32(30)},
			{typ: svcAttrNetmask, value: n32(64)},
		}}),
		want: svcRecord{
			svc: dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 17}, Scheduler: "sh", Timeout: 30, NetmaskBits: 64},
		},
	}, {
		name: "a plain tcp service: protocol, address and port; flags read back, hashed dropped",
		msg: message(cmdGetService, nla{typ: cmdAttrService, kids: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET)},
			{typ: svcAttrProtocol, value: n16(syscall.IPPROTO_TCP)},
			{typ: svcAttrAddr, value: inetAddr("192.0.2.20")},
			{typ: svcAttrPort, value: b16(80)},
			{typ: svcAttrSchedName, value: []byte("rr\x00")},
			{typ: svcAttrPEName, value: []byte("sip\x00")},
			{typ: svcAttrFlags, value: append(n32(0x2|0x8|0x10), n32(^uint32(0))...)}, // hashed, sched1, sched2
			{typ: svcAttrTimeout, value: n32(0)},
			{typ: svcAttrNetmask, value: b32(0xffffffff)},
		}}),
		want: svcRecord{svc: dataplane.Service{
			ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80},
			Scheduler:  "rr", NetmaskBits: 32, Flags: dataplane.FlagSched1 | dataplane.FlagSched2,
		}},
	}, {
		name: "a plain ipv6 udp service with one-packet scheduling",
		msg: message(cmdGetService, nla{typ: cmdAttrService, kids: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET6)},
			{typ: svcAttrProtocol, value: n16(syscall.IPPROTO_UDP)},
			{typ: svcAttrAddr, value: inetAddr("2001:db8::1")},
			{typ: svcAttrPort, value: b16(53)},
			{typ: svcAttrSchedName, value: []byte("rr\x00")},
			{typ: svcAttrFlags, value: append(n32(0x2|0x4), n32(^uint32(0))...)}, // hashed, one-packet
			{typ: svcAttrTimeout, value: n32(0)},
			{typ: svcAttrNetmask, value: n32(128)},
		}}),
		want: svcRecord{svc: dataplane.Service{
			ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: netip.MustParseAddr("2001:db8::1"), Port: 53},
			Scheduler:  "rr", NetmaskBits: 128, Flags: dataplane.FlagOnePacket,
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeService(tt.msg)
			if err != nil {
				t.Fatalf("decodeService: %v", err)
			}
			if got != tt.want {
				t.Errorf("decodeService =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestDecodeDestination(t *testing.T) {
	tests := []struct {
		name   string
		family dataplane.Family
		msg    []byte
		want   dataplane.DestinationStats
	}{{
		name:   "ipv4 direct routing with persistent conns and stats64",
		family: dataplane.IPv4,
		msg: message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
			{typ: destAttrAddr, value: inetAddr("198.51.100.1")},
			{typ: destAttrPort, value: b16(0)},
			{typ: destAttrFwdMethod, value: n32(connFwdRoute)},
			{typ: destAttrWeight, value: n32(100)},
			{typ: destAttrUThresh, value: n32(500)},
			{typ: destAttrLThresh, value: n32(400)},
			{typ: destAttrActiveConns, value: n32(5)},
			{typ: destAttrInactConns, value: n32(7)},
			{typ: destAttrPersistConns, value: n32(9)},
			{typ: destAttrAddrFamily, value: n16(syscall.AF_INET)},
			stats32(destAttrStats, small),
			stats64(destAttrStats64, big),
		}}),
		want: dataplane.DestinationStats{
			Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 100, Forward: dataplane.ForwardRoute,
				UpperThreshold: 500, LowerThreshold: 400},
			ActiveConns: 5, InactiveConns: 7, PersistentConns: 9, Counters: big,
		},
	}, {
		name:   "ipv6 tunnel without the family attribute (kernel < 3.18), 32-bit stats, weight above 16 bits",
		family: dataplane.IPv6,
		msg: message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
			{typ: destAttrAddr, value: inetAddr("2001:db8::1")},
			{typ: destAttrPort, value: b16(8080)},
			{typ: destAttrFwdMethod, value: n32(connFwdTunnel)},
			{typ: destAttrWeight, value: n32(70000)},
			{typ: destAttrActiveConns, value: n32(1)},
			{typ: destAttrInactConns, value: n32(2)},
			{typ: destAttrPersistConns, value: n32(3)},
			stats32(destAttrStats, small),
		}}),
		want: dataplane.DestinationStats{
			Destination: dataplane.Destination{Address: netip.MustParseAddr("2001:db8::1"), Port: 8080, Weight: 70000, Forward: dataplane.ForwardTunnel},
			ActiveConns: 1, InactiveConns: 2, PersistentConns: 3, Counters: small,
		},
	}, {
		// ipvsadm -e ... -i --tun-type gue --tun-port 6080 --tun-csum, as Linux 5.3+ reports it
		name:   "gue tunnel to port 6080 with checksum",
		family: dataplane.IPv4,
		msg: message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
			{typ: destAttrAddr, value: inetAddr("198.51.100.4")},
			{typ: destAttrPort, value: b16(80)},
			{typ: destAttrFwdMethod, value: n32(connFwdTunnel)},
			{typ: destAttrWeight, value: n32(1)},
			{typ: destAttrTunType, value: []byte{1}},
			{typ: destAttrTunPort, value: b16(6080)},
			{typ: destAttrTunFlags, value: n16(1)},
		}}),
		want: dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.4"), Port: 80, Weight: 1,
			Forward: dataplane.ForwardTunnel, Tunnel: dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 6080, Flags: dataplane.TunnelCsum}}},
	}, {
		name:   "gre tunnel",
		family: dataplane.IPv4,
		msg: message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
			{typ: destAttrAddr, value: inetAddr("198.51.100.4")},
			{typ: destAttrFwdMethod, value: n32(connFwdTunnel)},
			{typ: destAttrTunType, value: []byte{2}},
			{typ: destAttrTunPort, value: b16(0)},
			{typ: destAttrTunFlags, value: n16(0)},
		}}),
		want: dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.4"),
			Forward: dataplane.ForwardTunnel, Tunnel: dataplane.Tunnel{Type: dataplane.TunnelGRE}}},
	}, {
		name:   "masq; local node maps to no lvsctl method",
		family: dataplane.IPv4,
		msg: message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
			{typ: destAttrAddr, value: inetAddr("198.51.100.2")},
			{typ: destAttrFwdMethod, value: n32(connFwdMasq)},
			{typ: destAttrWeight, value: n32(0)},
		}}),
		want: dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.2"), Forward: dataplane.ForwardMasq}},
	}, {
		name:   "local node",
		family: dataplane.IPv4,
		msg: message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
			{typ: destAttrAddr, value: inetAddr("198.51.100.3")},
			{typ: destAttrFwdMethod, value: n32(1)},
		}}),
		want: dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.3")}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDestination(tt.msg, tt.family)
			if err != nil {
				t.Fatalf("decodeDestination: %v", err)
			}
			if got != tt.want {
				t.Errorf("decodeDestination =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestDecodeRefusesMalformed(t *testing.T) {
	svc := func(kids ...nla) []byte { return message(cmdGetService, nla{typ: cmdAttrService, kids: kids}) }
	dst := func(kids ...nla) []byte { return message(cmdGetDest, nla{typ: cmdAttrDest, kids: kids}) }
	af4 := nla{typ: svcAttrAF, value: n16(syscall.AF_INET)}
	tests := []struct {
		name string
		msg  []byte
		dest bool
	}{
		{"empty", nil, false},
		{"no nested service", message(cmdGetService, nla{typ: cmdAttrDest}), false},
		{"truncated attribute", append([]byte{cmdGetService, 1, 0, 0}, 40, 0, 1, 0, 1), false},
		{"unknown family", svc(nla{typ: svcAttrAF, value: n16(99)}), false},
		{"short fwmark", svc(af4, nla{typ: svcAttrFWMark, value: []byte{1}}), false},
		{"short netmask", svc(af4, nla{typ: svcAttrNetmask, value: []byte{1, 2}}), false},
		{"short stats64 counter", svc(af4, nla{typ: svcAttrStats64, kids: []nla{{typ: statsConns, value: n32(1)}}}), false},
		{"plain service without an address", svc(af4, nla{typ: svcAttrProtocol, value: n16(6)}, nla{typ: svcAttrPort, value: b16(80)}), false},
		{"plain service with protocol 0", svc(af4, nla{typ: svcAttrProtocol, value: n16(0)}, nla{typ: svcAttrAddr, value: inetAddr("192.0.2.1")}), false},
		{"plain service with a short port", svc(af4, nla{typ: svcAttrProtocol, value: n16(6)}, nla{typ: svcAttrAddr, value: inetAddr("192.0.2.1")}, nla{typ: svcAttrPort, value: []byte{1}}), false},
		{"plain ipv6 service, address in 4 bytes", svc(nla{typ: svcAttrAF, value: n16(syscall.AF_INET6)}, nla{typ: svcAttrProtocol, value: n16(6)}, nla{typ: svcAttrAddr, value: []byte{192, 0, 2, 1}}), false},
		{"short upper threshold", dst(nla{typ: destAttrAddr, value: inetAddr("198.51.100.1")}, nla{typ: destAttrUThresh, value: []byte{1}}), true},
		{"short address", dst(nla{typ: destAttrAddr, value: []byte{198, 51}}), true},
		{"ipv6 address in 4 bytes", dst(nla{typ: destAttrAddr, value: []byte{198, 51, 100, 1}}, nla{typ: destAttrAddrFamily, value: n16(syscall.AF_INET6)}), true},
		{"short weight", dst(nla{typ: destAttrAddr, value: inetAddr("198.51.100.1")}, nla{typ: destAttrWeight, value: []byte{1}}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.dest {
				_, err = decodeDestination(tt.msg, dataplane.IPv4)
			} else {
				_, err = decodeService(tt.msg)
			}
			if err == nil {
				t.Error("decoded without error, want one")
			}
		})
	}
}

func TestNetmaskRoundTrip(t *testing.T) {
	for _, f := range []dataplane.Family{dataplane.IPv4, dataplane.IPv6} {
		maxBits := 32
		if f == dataplane.IPv6 {
			maxBits = 128
		}
		for b := 0; b <= maxBits; b++ {
			// moby/ipvs writes Service.Netmask in host order: these are the attribute's bytes.
			wire := n32(netmaskValue(f, uint8(b)))
			if got := netmaskBits(f, wire); got != uint8(b) {
				t.Errorf("%s /%d: wire %x decodes to /%d", f, b, wire, got)
			}
		}
	}
	// ipvsadm's 255.255.255.0 for IPv4 is these bytes on the wire.
	if got := n32(netmaskValue(dataplane.IPv4, 24)); string(got) != "\xff\xff\xff\x00" {
		t.Errorf("IPv4 /24 is %x on the wire, want ffffff00", got)
	}
}

func TestForwardRoundTrip(t *testing.T) {
	for _, f := range []dataplane.Forward{dataplane.ForwardMasq, dataplane.ForwardRoute, dataplane.ForwardTunnel} {
		flags, err := connFlags(f)
		if err != nil || forwardOf(flags) != f {
			t.Errorf("%s -> %#x, %v -> %s", f, flags, err, forwardOf(flags))
		}
	}
	if _, err := connFlags(0); err == nil {
		t.Error("connFlags(0): want an error")
	}
}

func TestServiceMapping(t *testing.T) {
	persistent := toMobyService(dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 32})
	if persistent.Flags&svcFlagPersistent == 0 || persistent.Timeout != 600 || persistent.FWMark != 16 || persistent.AddressFamily != syscall.AF_INET {
		t.Errorf("persistent service maps to %+v", *persistent)
	}
	notPersistent := toMobyService(dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 16}, Scheduler: "rr", NetmaskBits: 128})
	if notPersistent.Flags&svcFlagPersistent != 0 || notPersistent.Timeout != 0 || notPersistent.Netmask != 128 || notPersistent.AddressFamily != syscall.AF_INET6 {
		t.Errorf("service without persistence maps to %+v", *notPersistent)
	}
	// moby/ipvs sends the protocol, address and port of a service whose FWMark is 0.
	plain := toMobyService(dataplane.Service{
		ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.UDP, Address: netip.MustParseAddr("192.0.2.20"), Port: 53},
		Scheduler:  "rr", NetmaskBits: 32, Flags: dataplane.FlagOnePacket,
	})
	if plain.FWMark != 0 || plain.Protocol != syscall.IPPROTO_UDP || plain.Port != 53 || plain.Address.String() != "192.0.2.20" || plain.Flags != 0x4 {
		t.Errorf("plain udp service with ops maps to %+v", *plain)
	}
	d, err := toMobyDestination(dataplane.Destination{Address: netip.MustParseAddr("198.51.100.5"), Port: 8080, Forward: dataplane.ForwardMasq, UpperThreshold: 9, LowerThreshold: 7})
	if err != nil || d.Port != 8080 || d.UpperThreshold != 9 || d.LowerThreshold != 7 {
		t.Errorf("destination with port and thresholds maps to %+v, %v", d, err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	good := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", NetmaskBits: 32}
	dest := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 100, Forward: dataplane.ForwardMasq}
	// A Kernel without sockets: validation must refuse before any kernel call.
	k := &Kernel{}
	svcTests := []struct {
		name  string
		edit  func(*dataplane.Service)
		field string
	}{
		{"family", func(s *dataplane.Service) { s.Family = 5 }, "family"},
		{"mark 0", func(s *dataplane.Service) { s.FWMark = 0 }, "fwmark"},
		{"no scheduler", func(s *dataplane.Service) { s.Scheduler = "" }, "scheduler"},
		{"long scheduler", func(s *dataplane.Service) { s.Scheduler = strings.Repeat("x", 16) }, "scheduler"},
		{"ipv4 /33", func(s *dataplane.Service) { s.NetmaskBits = 33 }, "netmask bits"},
		{"ipv6 /0", func(s *dataplane.Service) { s.Family, s.NetmaskBits = dataplane.IPv6, 0 }, "netmask bits"},
		{"unknown flag", func(s *dataplane.Service) { s.Flags = 0x1 }, "flags"},
		{"plain and a mark", func(s *dataplane.Service) {
			s.Protocol, s.Address, s.Port = dataplane.TCP, netip.MustParseAddr("192.0.2.20"), 80
		}, "fwmark"},
		{"plain, no protocol", func(s *dataplane.Service) { s.FWMark, s.Address, s.Port = 0, netip.MustParseAddr("192.0.2.20"), 80 }, "protocol"},
		{"plain, address of the other family", func(s *dataplane.Service) {
			s.FWMark, s.Protocol, s.Address, s.Port = 0, dataplane.TCP, netip.MustParseAddr("2001:db8::1"), 80
		}, "address"},
		{"plain, port 0 without persistence", func(s *dataplane.Service) {
			s.FWMark, s.Protocol, s.Address = 0, dataplane.TCP, netip.MustParseAddr("192.0.2.20")
		}, "port"},
	}
	for _, tt := range svcTests {
		t.Run(tt.name, func(t *testing.T) {
			bad := good
			tt.edit(&bad)
			for op, err := range map[string]error{"add": k.AddService(bad), "update": k.UpdateService(bad)} {
				if err == nil || !strings.Contains(err.Error(), tt.field+":") {
					t.Errorf("%s %+v: error %v, want one naming %q", op, bad, err, tt.field)
				}
			}
		})
	}
	destTests := []struct {
		name  string
		edit  func(*dataplane.Destination)
		field string
	}{
		{"no address", func(d *dataplane.Destination) { d.Address = netip.Addr{} }, "address"},
		{"weight", func(d *dataplane.Destination) { d.Weight = 1 << 31 }, "weight"},
		{"forward", func(d *dataplane.Destination) { d.Forward = 9 }, "forward"},
		{"lower threshold above upper", func(d *dataplane.Destination) { d.UpperThreshold, d.LowerThreshold = 10, 11 }, "lower threshold"},
		{"lower threshold without upper", func(d *dataplane.Destination) { d.LowerThreshold = 1 }, "lower threshold"},
	}
	for _, tt := range destTests {
		t.Run(tt.name, func(t *testing.T) {
			bad := dest
			tt.edit(&bad)
			for _, err := range []error{k.AddDestination(good, bad), k.UpdateDestination(good, bad), k.DelDestination(good, bad)} {
				if err == nil || !strings.Contains(err.Error(), tt.field+":") {
					t.Errorf("%+v: error %v, want one naming %q", bad, err, tt.field)
				}
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	key := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	d := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1")}
	tests := []struct {
		err       error
		want      error
		isService bool
	}{
		{syscall.EEXIST, dataplane.ErrExist, true},
		{syscall.ESRCH, dataplane.ErrNotExist, true},
		{syscall.ENOENT, dataplane.ErrUnavailable, true}, // no such scheduler
		{syscall.EEXIST, dataplane.ErrExist, false},
		{syscall.ESRCH, dataplane.ErrNotExist, false}, // no such service
		{syscall.ENOENT, dataplane.ErrNotExist, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/service=%v", tt.err, tt.isService), func(t *testing.T) {
			var err error
			if tt.isService {
				err = serviceError("add", key, tt.err)
			} else {
				err = destinationError("add", key, d, tt.err)
			}
			if !errors.Is(err, tt.want) || !errors.Is(err, tt.err) {
				t.Errorf("got %v; want errors.Is %v and %v", err, tt.want, tt.err)
			}
		})
	}
	if err := serviceError("add", key, syscall.EINVAL); errors.Is(err, dataplane.ErrExist) || errors.Is(err, dataplane.ErrNotExist) || errors.Is(err, dataplane.ErrUnavailable) {
		t.Errorf("EINVAL mapped to a sentinel: %v", err)
	}
}

// TestRequests checks which requests each read sends, on a Kernel whose socket exchange is a
// fake that answers like a kernel holding one fwmark service with one destination.
func TestRequests(t *testing.T) {
	svc := message(cmdGetService, nla{typ: cmdAttrService, kids: []nla{
		{typ: svcAttrAF, value: n16(syscall.AF_INET)},
		{typ: svcAttrFWMark, value: n32(16)},
		{typ: svcAttrSchedName, value: []byte("wlc\x00")},
		{typ: svcAttrFlags, value: append(n32(0), n32(^uint32(0))...)},
		{typ: svcAttrNetmask, value: b32(0xffffffff)},
	}})
	dest := message(cmdGetDest, nla{typ: cmdAttrDest, kids: []nla{
		{typ: destAttrAddr, value: inetAddr("198.51.100.1")},
		{typ: destAttrFwdMethod, value: n32(connFwdMasq)},
		{typ: destAttrWeight, value: n32(1)},
	}})
	key := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}
	tests := []struct {
		name string
		read func(k *Kernel) (int, error)
		want string
	}{
		// Stats needs no GET_SERVICE per service: it only reads what the dump listed.
		{"Stats", func(k *Kernel) (int, error) { s, err := k.Stats(); return len(s), err }, "[dump services dump destinations]"},
		// Destinations does: a dump for a missing service is empty, not an error.
		{"Destinations", func(k *Kernel) (int, error) {
			d, err := k.Destinations(dataplane.Service{ServiceKey: key})
			return len(d), err
		}, "[get service dump destinations]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent []string
			k := &Kernel{family: 30, exchange: func(req []byte, each func([]byte) error) error {
				msgs, err := syscall.ParseNetlinkMessage(req)
				if err != nil || len(msgs) != 1 {
					return fmt.Errorf("request is not one netlink message: %d, %v", len(msgs), err)
				}
				h, data := msgs[0].Header, msgs[0].Data
				if h.Type != 30 || h.Flags&unix.NLM_F_REQUEST == 0 || len(data) < 4 {
					return fmt.Errorf("not a generic-netlink request to IPVS: %+v", h)
				}
				var svcKey attrSet
				if len(data) > 4 {
					if err := svcKey.payload(data, cmdAttrService); err != nil {
						return err
					}
					if mark, _ := u32(&svcKey, svcAttrFWMark, "fwmark"); mark != 16 {
						return fmt.Errorf("request names fwmark %d, want 16", mark)
					}
				}
				dump := h.Flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
				switch {
				case data[0] == cmdGetService && dump:
					sent = append(sent, "dump services")
					return each(svc)
				case data[0] == cmdGetService:
					sent = append(sent, "get service")
					return each(svc)
				case data[0] == cmdGetDest && dump:
					sent = append(sent, "dump destinations")
					return each(dest)
				}
				return fmt.Errorf("unexpected command %d (flags %#x)", data[0], h.Flags)
			}}
			n, err := tt.read(k)
			if err != nil || n != 1 {
				t.Fatalf("%s = %d items, %v; want 1, nil", tt.name, n, err)
			}
			if got := fmt.Sprint(sent); got != tt.want {
				t.Errorf("requests %s, want %s", got, tt.want)
			}
		})
	}
}

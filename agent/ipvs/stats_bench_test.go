package ipvs

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// benchTable is what a kernel holding services firewall-mark services of reals destinations
// each replies, message by message (both stats attributes, as kernels since 4.1 send them).
func benchTable(services, reals int) (svcs [][]byte, dests map[uint32][][]byte) {
	dests = map[uint32][][]byte{}
	for s := 1; s <= services; s++ {
		svcs = append(svcs, message(cmdGetService, nla{typ: cmdAttrService | unix.NLA_F_NESTED, kids: []nla{
			{typ: svcAttrAF, value: n16(syscall.AF_INET)},
			{typ: svcAttrFWMark, value: n32(uint32(s))},
			{typ: svcAttrSchedName, value: []byte("wlc\x00")},
			{typ: svcAttrFlags, value: append(n32(svcFlagPersistent), n32(^uint32(0))...)},
			{typ: svcAttrTimeout, value: n32(600)},
			{typ: svcAttrNetmask, value: b32(0xffffffff)},
			stats32(svcAttrStats, small),
			stats64(svcAttrStats64, small),
		}}))
		for r := range reals {
			a := netip.AddrFrom4([4]byte{10, byte(s >> 8), byte(s), byte(r + 1)})
			dests[uint32(s)] = append(dests[uint32(s)], message(cmdGetDest, nla{typ: cmdAttrDest | unix.NLA_F_NESTED, kids: []nla{
				{typ: destAttrAddr, value: inetAddr(a.String())},
				{typ: destAttrPort, value: b16(0)},
				{typ: destAttrFwdMethod, value: n32(connFwdMasq)},
				{typ: destAttrWeight, value: n32(100)},
				{typ: destAttrUThresh, value: n32(0)},
				{typ: destAttrLThresh, value: n32(0)},
				{typ: destAttrActiveConns, value: n32(3)},
				{typ: destAttrInactConns, value: n32(4)},
				{typ: destAttrPersistConns, value: n32(5)},
				{typ: destAttrAddrFamily, value: n16(syscall.AF_INET)},
				stats32(destAttrStats, small),
				stats64(destAttrStats64, small),
			}}))
		}
	}
	return svcs, dests
}

// BenchmarkStatsDecode is Stats' own work on a full read of 2,000 services x 10 reals (the lab
// benchmark's table), the kernel's replies handed over from memory: building the 2,001
// requests and decoding the 22,000 replies. The lab measures it with the real socket
// (deploy/lab/run.sh bench-ipvs, agent_ipvs_read_ms).
func BenchmarkStatsDecode(b *testing.B) {
	svcs, dests := benchTable(2000, 10)
	k := &Kernel{family: 30, exchange: func(req []byte, each func([]byte) error) error {
		var key attrSet
		if req[nlmsgHeaderLen] == cmdGetService {
			for _, m := range svcs {
				if err := each(m); err != nil {
					return err
				}
			}
			return nil
		}
		if err := key.payload(req[nlmsgHeaderLen:], cmdAttrService); err != nil {
			return err
		}
		mark, _ := u32(&key, svcAttrFWMark, "fwmark")
		for _, m := range dests[mark] {
			if err := each(m); err != nil {
				return err
			}
		}
		return nil
	}}
	b.ReportAllocs()
	for b.Loop() {
		st, err := k.Stats()
		if err != nil || len(st) != 2000 || len(st[1999].Destinations) != 10 {
			b.Fatal(fmt.Sprint(len(st), err))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/read")
}

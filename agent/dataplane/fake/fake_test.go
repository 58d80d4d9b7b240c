package fake_test

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/reconcile"
)

var (
	_ reconcile.IPVS      = (*fake.IPVS)(nil)
	_ reconcile.Firewall  = (*fake.Firewall)(nil)
	_ reconcile.Addresses = (*fake.Addresses)(nil)
)

var (
	plain80 = dataplane.Service{
		ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, Protocol: dataplane.TCP, Address: netip.MustParseAddr("192.0.2.20"), Port: 80},
		Scheduler:  "sh", NetmaskBits: 32, Flags: dataplane.FlagSched1 | dataplane.FlagSched2,
	}
	svc16 = dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 16}, Scheduler: "wlc", Timeout: 600, NetmaskBits: 32}
	real1 = dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 100, Forward: dataplane.ForwardMasq}
)

func TestIPVSRefuses(t *testing.T) {
	v6 := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, FWMark: 16}, Scheduler: "rr", NetmaskBits: 128}
	tests := []struct {
		name string
		call func(f *fake.IPVS) error
		want error
	}{
		{"add existing service", func(f *fake.IPVS) error { return f.AddService(svc16) }, dataplane.ErrExist},
		{"same mark other family is another service", func(f *fake.IPVS) error { return f.AddService(v6) }, nil},
		{"update missing service", func(f *fake.IPVS) error { s := svc16; s.FWMark = 17; return f.UpdateService(s) }, dataplane.ErrNotExist},
		{"delete missing service", func(f *fake.IPVS) error { s := svc16; s.FWMark = 17; return f.DelService(s) }, dataplane.ErrNotExist},
		{"unknown scheduler", func(f *fake.IPVS) error { s := svc16; s.FWMark = 17; s.Scheduler = "wlcx"; return f.AddService(s) }, syscall.ENOENT},
		{"empty scheduler", func(f *fake.IPVS) error { s := svc16; s.Scheduler = ""; return f.UpdateService(s) }, syscall.ENOENT},
		{"IPv4 netmask /33", func(f *fake.IPVS) error { s := svc16; s.NetmaskBits = 33; return f.UpdateService(s) }, syscall.EINVAL},
		{"IPv6 netmask /0", func(f *fake.IPVS) error { s := v6; s.FWMark = 18; s.NetmaskBits = 0; return f.AddService(s) }, syscall.EINVAL},
		{"fwmark 0", func(f *fake.IPVS) error { s := svc16; s.FWMark = 0; return f.AddService(s) }, syscall.EINVAL},
		{"bad family", func(f *fake.IPVS) error { s := svc16; s.Family = 5; return f.AddService(s) }, syscall.EAFNOSUPPORT},
		{"add existing destination", func(f *fake.IPVS) error { return f.AddDestination(svc16, real1) }, dataplane.ErrExist},
		{"destination of missing service", func(f *fake.IPVS) error { s := svc16; s.FWMark = 17; return f.AddDestination(s, real1) }, dataplane.ErrNotExist},
		{"update missing destination", func(f *fake.IPVS) error {
			d := real1
			d.Address = netip.MustParseAddr("198.51.100.2")
			return f.UpdateDestination(svc16, d)
		}, dataplane.ErrNotExist},
		{"delete missing destination", func(f *fake.IPVS) error {
			d := real1
			d.Port = 80
			return f.DelDestination(svc16, d)
		}, dataplane.ErrNotExist},
		{"weight above 65535", func(f *fake.IPVS) error { d := real1; d.Weight = 65536; return f.UpdateDestination(svc16, d) }, syscall.ERANGE},
		{"negative weight", func(f *fake.IPVS) error { d := real1; d.Weight = ^uint32(0); return f.UpdateDestination(svc16, d) }, syscall.ERANGE},
		{"no forwarding", func(f *fake.IPVS) error { d := real1; d.Forward = 0; return f.UpdateDestination(svc16, d) }, syscall.EINVAL},
		{"IPv6 real by masq", func(f *fake.IPVS) error {
			return f.AddDestination(svc16, dataplane.Destination{Address: netip.MustParseAddr("2001:db8::1"), Weight: 1, Forward: dataplane.ForwardMasq})
		}, syscall.EINVAL},
		{"IPv6 real by tunnel", func(f *fake.IPVS) error {
			return f.AddDestination(svc16, dataplane.Destination{Address: netip.MustParseAddr("2001:db8::1"), Weight: 1, Forward: dataplane.ForwardTunnel})
		}, syscall.EINVAL},
		{"lower threshold above upper", func(f *fake.IPVS) error {
			d := real1
			d.UpperThreshold, d.LowerThreshold = 10, 11
			return f.UpdateDestination(svc16, d)
		}, syscall.ERANGE},
		{"lower threshold without an upper one", func(f *fake.IPVS) error {
			d := real1
			d.Address, d.LowerThreshold = netip.MustParseAddr("198.51.100.9"), 1
			return f.AddDestination(svc16, d)
		}, syscall.ERANGE},
		{"unknown service flag", func(f *fake.IPVS) error { s := svc16; s.Flags = 0x1; return f.UpdateService(s) }, syscall.EINVAL},
		{"plain service on the mark's family and number is another service", func(f *fake.IPVS) error { return f.AddService(plain80) }, nil},
		{"plain service with port 0, not persistent", func(f *fake.IPVS) error { s := plain80; s.Port = 0; return f.AddService(s) }, syscall.EINVAL},
		{"plain service with port 0, persistent", func(f *fake.IPVS) error { s := plain80; s.Port, s.Timeout = 0, 300; return f.AddService(s) }, nil},
		{"plain service without protocol", func(f *fake.IPVS) error { s := plain80; s.Protocol = 0; return f.AddService(s) }, syscall.EPROTONOSUPPORT},
		{"plain service of the other family", func(f *fake.IPVS) error { s := plain80; s.Family = dataplane.IPv6; return f.AddService(s) }, syscall.EINVAL},
		{"plain service with a mark too", func(f *fake.IPVS) error { s := plain80; s.FWMark = 16; return f.AddService(s) }, syscall.EINVAL},
		{"update a plain service that is not there", func(f *fake.IPVS) error { return f.UpdateService(plain80) }, dataplane.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fake.NewIPVS()
			if err := f.AddService(svc16); err != nil {
				t.Fatal(err)
			}
			if err := f.AddDestination(svc16, real1); err != nil {
				t.Fatal(err)
			}
			f.ResetOps()
			before := f.Dump()
			err := tt.call(f)
			if tt.want == nil {
				if err != nil || len(f.Ops()) != 1 {
					t.Errorf("err = %v, ops %v; want success and one op", err, f.Ops())
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want one wrapping %v", err, tt.want)
			}
			if f.Dump() != before || len(f.Ops()) != 0 {
				t.Errorf("a refused call changed the fake: ops %v\n%s", f.Ops(), f.Dump())
			}
		})
	}
}

func TestIPVSEditsInPlace(t *testing.T) {
	f := fake.NewIPVS()
	mustDo(t, f.AddService(svc16))
	mustDo(t, f.AddDestination(svc16, real1))
	mustDo(t, f.SetDestinationStats(svc16.ServiceKey, dataplane.DestinationStats{Destination: real1, ActiveConns: 7, Counters: dataplane.Counters{Conns: 70}}))
	mustDo(t, f.SetServiceCounters(svc16.ServiceKey, dataplane.Counters{Conns: 99, InBytes: 1000}))

	edited := svc16
	edited.Scheduler = "sh"
	mustDo(t, f.UpdateService(edited))
	d := real1
	d.Weight = 5
	mustDo(t, f.UpdateDestination(edited, d))

	want := "fwm 16 ipv4 sh timeout 600 netmask /32\nfwm 16 ipv4 -> 198.51.100.1:0 masq weight 5\n"
	if got := f.Dump(); got != want {
		t.Errorf("Dump() =\n%s\nwant\n%s", got, want)
	}
	st, err := f.Stats()
	mustDo(t, err)
	if len(st) != 1 || st[0].Counters.Conns != 99 || len(st[0].Destinations) != 1 {
		t.Fatalf("Stats() = %+v", st)
	}
	// An edit keeps the counters, as the kernel does; the stats show the current weight.
	if got := st[0].Destinations[0]; got.ActiveConns != 7 || got.Counters.Conns != 70 || got.Weight != 5 {
		t.Errorf("destination stats after edit = %+v", got)
	}
	if err := f.SetDestinationStats(svc16.ServiceKey, dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.9")}}); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("SetDestinationStats of a missing destination: %v", err)
	}
	if n := len(f.Ops()); n != 4 {
		t.Errorf("ops = %v, want 4 (add, add, update, update)", f.Ops())
	}
	mustDo(t, f.DelService(edited))
	if f.Dump() != "" {
		t.Errorf("DelService left %q", f.Dump())
	}
}

func TestFailureInjection(t *testing.T) {
	boom := errors.New("boom")
	f := fake.NewIPVS()
	f.FailNext("AddService", boom)
	if err := f.AddService(svc16); !errors.Is(err, boom) {
		t.Fatalf("first AddService = %v, want boom", err)
	}
	if f.Dump() != "" || len(f.Ops()) != 0 {
		t.Fatal("a failed call changed the fake")
	}
	mustDo(t, f.AddService(svc16)) // FailNext fails once

	f.FailWhen(func(o fake.Op) error {
		if o.Name == "Destinations" {
			return boom
		}
		return nil
	})
	if _, err := f.Destinations(svc16); !errors.Is(err, boom) {
		t.Errorf("Destinations = %v, want boom", err)
	}
	if _, err := f.Destinations(svc16); !errors.Is(err, boom) {
		t.Errorf("FailWhen fails every time until cleared; second call: %v", err)
	}
	f.FailWhen(nil)
	if _, err := f.Destinations(svc16); err != nil {
		t.Errorf("after FailWhen(nil): %v", err)
	}
}

func TestFirewall(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	a := dataplane.MarkRule{VIP: vip, Protocol: dataplane.TCP, FirstPort: 554, LastPort: 554, Mark: 16}
	b := dataplane.MarkRule{VIP: vip, Protocol: dataplane.UDP, FirstPort: 1024, LastPort: 5000, Mark: 16}
	c := dataplane.MarkRule{VIP: vip, Protocol: dataplane.UDP, FirstPort: 554, LastPort: 554, Mark: 16}
	f := fake.NewFirewall()
	steps := []struct {
		rules   []dataplane.MarkRule
		changed int
		err     error
	}{
		{[]dataplane.MarkRule{a, b}, 2, nil},
		{[]dataplane.MarkRule{b, a}, 0, nil},
		{[]dataplane.MarkRule{a, c}, 2, nil},
		{[]dataplane.MarkRule{a, {VIP: vip, Protocol: dataplane.TCP, FirstPort: 10, LastPort: 9, Mark: 1}}, 0, syscall.EINVAL},
		{[]dataplane.MarkRule{{VIP: vip, Protocol: 1, FirstPort: 1, LastPort: 1, Mark: 1}}, 0, syscall.EINVAL},
		{nil, 2, nil},
	}
	wantOps := 0
	for i, s := range steps {
		n, err := f.SetMarkRules(s.rules)
		if !errors.Is(err, s.err) || n != s.changed {
			t.Errorf("step %d: SetMarkRules = %d, %v; want %d, %v", i, n, err, s.changed, s.err)
		}
		if n > 0 {
			wantOps++
		}
		if i == 2 {
			want := "192.0.2.10 tcp dport 554 mark 16\n192.0.2.10 udp dport 554 mark 16\n"
			if got := f.Dump(); got != want {
				t.Errorf("Dump() =\n%s\nwant\n%s", got, want)
			}
		}
		if i == 4 {
			// The refused transactions changed nothing.
			if rules, _ := f.MarkRules(); len(rules) != 2 {
				t.Errorf("after refused transactions: %v", rules)
			}
		}
	}
	if len(f.Ops()) != wantOps {
		t.Errorf("transactions = %d, want %d", len(f.Ops()), wantOps)
	}
}

// TestFirewallElements: as in package nft, a port may lie inside a range of its mark, ranges
// of one mark that overlap share an element, and ports that overlap with two marks are refused.
func TestFirewallElements(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	r := func(p dataplane.Protocol, first, last uint16, mark uint32) dataplane.MarkRule {
		return dataplane.MarkRule{VIP: vip, Protocol: p, FirstPort: first, LastPort: last, Mark: mark}
	}
	wms := []dataplane.MarkRule{r(dataplane.TCP, 554, 554, 16), r(dataplane.UDP, 554, 554, 16), r(dataplane.TCP, 1755, 1755, 16),
		r(dataplane.UDP, 1755, 1755, 16), r(dataplane.UDP, 1024, 5000, 16)}
	f := fake.NewFirewall()
	if n, err := f.SetMarkRules(wms); err != nil || n != 5 {
		t.Fatalf("SetMarkRules(wms) = %d, %v; want 5 elements", n, err)
	}
	if got, _ := f.MarkRules(); len(got) != 5 {
		t.Errorf("MarkRules() = %v, want the 5 rules set", got)
	}
	// A range inside the range, of its mark, shares the range's element: no change.
	if n, err := f.SetMarkRules(append(slices.Clone(wms), r(dataplane.UDP, 2000, 3000, 16))); err != nil || n != 0 {
		t.Errorf("SetMarkRules(wms and udp 2000-3000) = %d, %v; want 0", n, err)
	}
	if n, err := f.SetMarkRules(append(slices.Clone(wms[:3]), wms[4])); err != nil || n != 1 {
		t.Errorf("SetMarkRules(wms without udp 1755) = %d, %v; want 1", n, err)
	}
	if n, err := f.SetMarkRules(append(slices.Clone(wms), r(dataplane.UDP, 2000, 2000, 17))); !errors.Is(err, dataplane.ErrExist) || n != 0 {
		t.Errorf("SetMarkRules with udp 2000 of another mark inside udp 1024-5000 = %d, %v; want 0, ErrExist", n, err)
	}
	if n, err := f.SetMarkRules(append(slices.Clone(wms), r(dataplane.UDP, 1755, 1755, 17))); !errors.Is(err, dataplane.ErrExist) || n != 0 {
		t.Errorf("SetMarkRules with udp 1755 of two marks = %d, %v; want 0, ErrExist", n, err)
	}
	if got, _ := f.MarkRules(); len(got) != 4 {
		t.Errorf("a refused SetMarkRules changed the rules: %v", got)
	}
	if ops := f.Ops(); len(ops) != 2 || ops[0].Name != "SetMarkRules" {
		t.Errorf("ops = %v, want two SetMarkRules", ops)
	}
}

func TestFirewallChangeMarkRules(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.10")
	r := func(p dataplane.Protocol, first, last uint16, mark uint32) dataplane.MarkRule {
		return dataplane.MarkRule{VIP: vip, Protocol: p, FirstPort: first, LastPort: last, Mark: mark}
	}
	tcp554, udp1755, udpRange, tcp80 := r(dataplane.TCP, 554, 554, 16), r(dataplane.UDP, 1755, 1755, 16), r(dataplane.UDP, 1024, 5000, 16), r(dataplane.TCP, 80, 80, 16)
	f := fake.NewFirewall()
	if _, err := f.ChangeMarkRules([]dataplane.MarkRule{tcp554}, nil); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("ChangeMarkRules before SetMarkRules = %v, want ErrNotExist", err)
	}
	if _, err := f.SetMarkRules([]dataplane.MarkRule{tcp554, udp1755, udpRange}); err != nil {
		t.Fatal(err)
	}
	f.ResetOps()
	before := f.Dump()
	refused := []struct {
		name     string
		add, del []dataplane.MarkRule
		want     error
	}{
		{"delete an absent rule", []dataplane.MarkRule{tcp80}, []dataplane.MarkRule{r(dataplane.TCP, 81, 81, 16)}, dataplane.ErrNotExist},
		{"delete with another mark", nil, []dataplane.MarkRule{r(dataplane.TCP, 554, 554, 17)}, dataplane.ErrNotExist},
		{"add a rule there already", []dataplane.MarkRule{tcp80, tcp554}, nil, dataplane.ErrExist},
		{"add inside a range of another mark", []dataplane.MarkRule{tcp80, r(dataplane.UDP, 2000, 2000, 17)}, nil, dataplane.ErrExist},
		{"bad rule", []dataplane.MarkRule{r(dataplane.TCP, 10, 9, 16)}, nil, syscall.EINVAL},
	}
	for _, tt := range refused {
		if n, err := f.ChangeMarkRules(tt.add, tt.del); !errors.Is(err, tt.want) || n != 0 {
			t.Errorf("%s: ChangeMarkRules = %d, %v; want 0, %v", tt.name, n, err, tt.want)
		}
	}
	if got := f.Dump(); got != before || len(f.Ops()) != 0 {
		t.Errorf("refused changes changed the table:\n%s\nops %v", got, f.Ops())
	}
	steps := []struct {
		name     string
		add, del []dataplane.MarkRule
		changed  int
	}{
		{"tcp 554 moves to mark 17, tcp 80 comes", []dataplane.MarkRule{r(dataplane.TCP, 554, 554, 17), tcp80}, []dataplane.MarkRule{tcp554}, 3},
		{"the range goes, udp 1755 stays", nil, []dataplane.MarkRule{udpRange}, 1},
		{"the range comes back over udp 1755", []dataplane.MarkRule{udpRange}, nil, 1},
		{"a range inside the range moves no element", []dataplane.MarkRule{r(dataplane.UDP, 2000, 2001, 16)}, nil, 0},
	}
	for _, s := range steps {
		if n, err := f.ChangeMarkRules(s.add, s.del); err != nil || n != s.changed {
			t.Errorf("%s: ChangeMarkRules = %d, %v; want %d, nil", s.name, n, err, s.changed)
		}
	}
	want := "192.0.2.10 tcp dport 80 mark 16\n192.0.2.10 tcp dport 554 mark 17\n192.0.2.10 udp dport 1024-5000 mark 16\n" +
		"192.0.2.10 udp dport 1755 mark 16\n192.0.2.10 udp dport 2000-2001 mark 16\n"
	if got := f.Dump(); got != want {
		t.Errorf("Dump() =\n%s\nwant\n%s", got, want)
	}
	if ops := f.Ops(); len(ops) != 3 || ops[0].Name != "ChangeMarkRules" {
		t.Errorf("ops = %v, want 3 ChangeMarkRules (the last moved no element)", ops)
	}
	// A failed transaction leaves the kernel unknown: the caller must SetMarkRules again.
	f.FailNext("ChangeMarkRules", errors.New("injected"))
	if _, err := f.ChangeMarkRules([]dataplane.MarkRule{r(dataplane.TCP, 443, 443, 16)}, nil); err == nil {
		t.Fatal("injected failure did not fail")
	}
	if _, err := f.ChangeMarkRules([]dataplane.MarkRule{r(dataplane.TCP, 443, 443, 16)}, nil); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("ChangeMarkRules after a failed one = %v, want ErrNotExist", err)
	}
}

func TestAddresses(t *testing.T) {
	f := fake.NewAddresses("eth0")
	p24 := netip.MustParsePrefix("192.0.2.10/24")
	p32 := netip.MustParsePrefix("192.0.2.10/32")
	v6 := netip.MustParsePrefix("2001:db8::10/128")
	mustDo(t, f.AddAddress("eth0", p24))
	mustDo(t, f.AddAddress("eth0", v6))
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"same IPv4 address and length", func() error { return f.AddAddress("eth0", p24) }, dataplane.ErrExist},
		{"same IPv6 address, other length", func() error { return f.AddAddress("eth0", netip.MustParsePrefix("2001:db8::10/64")) }, dataplane.ErrExist},
		{"delete missing", func() error { return f.DelAddress("eth0", p32) }, dataplane.ErrNotExist},
		{"unknown interface", func() error { return f.AddAddress("eth9", p32) }, syscall.ENODEV},
		{"unknown interface is ErrNotExist", func() error { _, err := f.Addresses("eth9"); return err }, dataplane.ErrNotExist},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	// Linux keys IPv4 addresses by address and length: /32 beside /24 is another address.
	mustDo(t, f.AddAddress("eth0", p32))
	if got, want := f.Dump(), "eth0 192.0.2.10/24\neth0 192.0.2.10/32\neth0 2001:db8::10/128\n"; got != want {
		t.Errorf("Dump() =\n%s\nwant\n%s", got, want)
	}
	if len(f.Ops()) != 3 {
		t.Errorf("ops = %v, want the 3 successful adds", f.Ops())
	}
}

// TestConcurrent is for the race detector: the fakes are called from several goroutines.
func TestConcurrent(t *testing.T) {
	f := fake.NewIPVS()
	fw := fake.NewFirewall()
	ad := fake.NewAddresses("eth0")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			s := svc16
			s.FWMark = uint32(100 + i)
			_ = f.AddService(s)
			_, _ = f.Services()
			_, _ = f.Stats()
			_ = f.Dump()
			_, _ = fw.SetMarkRules([]dataplane.MarkRule{{VIP: netip.MustParseAddr("192.0.2.1"), Protocol: dataplane.TCP, FirstPort: uint16(i + 1), LastPort: uint16(i + 1), Mark: 1}})
			_ = ad.AddAddress("eth0", netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 32))
			_, _ = ad.Addresses("eth0")
		})
	}
	wg.Wait()
	if s, _ := f.Services(); len(s) != 8 {
		t.Errorf("services = %d, want 8", len(s))
	}
	if a, _ := ad.Addresses("eth0"); len(a) != 8 {
		t.Errorf("addresses = %d, want 8", len(a))
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestIPVSPlainServices: a plain service is keyed by protocol, address and port (two ports of
// one VIP are two services), its destinations by address and port (one real on two ports is
// two destinations: port mapping), and edits keep it and its counters.
func TestIPVSPlainServices(t *testing.T) {
	f := fake.NewIPVS()
	udp53 := dataplane.Service{
		ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv6, Protocol: dataplane.UDP, Address: netip.MustParseAddr("2001:db8::53"), Port: 53},
		Scheduler:  "rr", NetmaskBits: 128, Flags: dataplane.FlagOnePacket,
	}
	tcp443 := plain80
	tcp443.Port = 443
	for _, s := range []dataplane.Service{udp53, plain80, tcp443, svc16} {
		mustDo(t, f.AddService(s))
	}
	a := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.5"), Port: 8080, Weight: 1, Forward: dataplane.ForwardMasq}
	b := a
	b.Port = 8081
	mustDo(t, f.AddDestination(plain80, a))
	mustDo(t, f.AddDestination(plain80, b))
	mustDo(t, f.SetDestinationStats(plain80.ServiceKey, dataplane.DestinationStats{Destination: a, ActiveConns: 3}))
	edited := plain80
	edited.Flags = dataplane.FlagSched1
	mustDo(t, f.UpdateService(edited))
	a.UpperThreshold, a.LowerThreshold = 500, 400
	mustDo(t, f.UpdateDestination(edited, a))

	want := "fwm 16 ipv4 wlc timeout 600 netmask /32\n" +
		"tcp 192.0.2.20:80 sh timeout 0 netmask /32 flags 0x8\n" +
		"tcp 192.0.2.20:80 -> 198.51.100.5:8080 masq weight 1 thresholds 400-500\n" +
		"tcp 192.0.2.20:80 -> 198.51.100.5:8081 masq weight 1\n" +
		"tcp 192.0.2.20:443 sh timeout 0 netmask /32 flags 0x18\n" +
		"udp [2001:db8::53]:53 rr timeout 0 netmask /128 flags 0x4\n"
	if got := f.Dump(); got != want {
		t.Errorf("Dump() =\n%s\nwant\n%s", got, want)
	}
	st, err := f.Stats()
	mustDo(t, err)
	if len(st) != 4 || st[1].ServiceKey != plain80.ServiceKey || len(st[1].Destinations) != 2 || st[1].Destinations[0].ActiveConns != 3 {
		t.Errorf("Stats() = %+v; want the edited destination to keep its 3 active connections", st)
	}
}

// TestIPVSTunnel: the fake keeps a destination's tunnel, shows it, and refuses what the
// kernel (gue without a port) and the agent's backend (the rest) refuse, changing nothing.
func TestIPVSTunnel(t *testing.T) {
	f := fake.NewIPVS()
	mustDo(t, f.AddService(svc16))
	gue := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 1, Forward: dataplane.ForwardTunnel,
		Tunnel: dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 6080, Flags: dataplane.TunnelCsum}}
	mustDo(t, f.AddDestination(svc16, gue))
	want := "fwm 16 ipv4 wlc timeout 600 netmask /32\nfwm 16 ipv4 -> 198.51.100.1:0 tunnel weight 1 tunnel gue:6080:+c\n"
	if got := f.Dump(); got != want {
		t.Errorf("Dump() =\n%s\nwant\n%s", got, want)
	}
	ds, err := f.Destinations(svc16)
	mustDo(t, err)
	if len(ds) != 1 || ds[0] != gue {
		t.Errorf("Destinations = %+v, want %+v", ds, gue)
	}
	for name, tn := range map[string]dataplane.Tunnel{
		"gue without port": {Type: dataplane.TunnelGUE},
		"port on ipip":     {Port: 6080},
		"csum on ipip":     {Flags: dataplane.TunnelCsum},
		"remcsum on gre":   {Type: dataplane.TunnelGRE, Flags: dataplane.TunnelRemCsum},
		"unknown type":     {Type: 7},
	} {
		d := gue
		d.Tunnel = tn
		if err := f.UpdateDestination(svc16, d); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
	route := real1
	route.Address = netip.MustParseAddr("198.51.100.2")
	route.Tunnel = dataplane.Tunnel{Type: dataplane.TunnelGRE}
	if err := f.AddDestination(svc16, route); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("tunnel on masq: %v, want EINVAL", err)
	}
	if got := f.Dump(); got != want {
		t.Errorf("refused changes changed the kernel:\n%s", got)
	}
}

package nft

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// The reconciler's view of a firewall, copied here so this package's tests do not import
// package reconcile; the assignment fails to compile if Firewall drifts from it.
var _ interface {
	MarkRules() ([]dataplane.MarkRule, error)
	SetMarkRules([]dataplane.MarkRule) (int, error)
	ChangeMarkRules(add, del []dataplane.MarkRule) (int, error)
} = (*Firewall)(nil)

// privileged skips a test that needs root, or fails it when CI demands privileged tests.
func privileged(t testing.TB, needs ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create a network namespace"
	}
	for _, bin := range needs {
		if _, err := exec.LookPath(bin); err != nil && why == "" {
			why = "needs the " + bin + " command"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("LVSCTL_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal(why + " (LVSCTL_REQUIRE_PRIVILEGED=1)")
	}
	t.Skip(why)
}

// netns creates a network namespace that is removed when the test ends, and returns its name
// and an open fd to it.
func netns(t testing.TB) (string, int) {
	t.Helper()
	name := addNetns(t)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return name, int(f.Fd())
}

// addNetns creates a network namespace, for the caller to delete, and returns its name.
func addNetns(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "lvsctl-nft-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	return name
}

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// generation reads the namespace's nftables generation id, which the kernel bumps once per
// committed transaction: it counts transactions.
func generation(t testing.TB, fd int) uint32 {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		t.Fatalf("NFT_MSG_GETGEN: %v", err)
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		t.Fatal(err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32()
		}
	}
	t.Fatal("no NFTA_GEN_ID in the reply")
	return 0
}

// listing is what `nft -j list table inet lvsctl` shows, in nft's own words: the fixed rules
// and every element of the maps, rendered like dataplane.MarkRule.String.
type listing struct {
	Rules    []string // e.g. "ip daddr . meta l4proto . th dport @marks4"
	Elements []string // sorted, e.g. "192.0.2.10 udp dport 1024-5000 mark 16"
}

// list parses `nft -j list table inet lvsctl` inside ns. It fails the test on a chain or map
// that is not the layout's.
func list(t *testing.T, ns string) listing {
	t.Helper()
	type payload struct{ Protocol, Field string }
	var doc struct {
		Nftables []struct {
			Chain *struct {
				Name, Type, Hook, Policy string
				Prio                     int
			}
			Map *struct {
				Name  string
				Type  []string
				Map   string
				Flags []string
				Elem  [][2]json.RawMessage
			}
			Rule *struct {
				Chain string
				Expr  []struct {
					Mangle *struct {
						Key   struct{ Meta struct{ Key string } }
						Value struct {
							Map *struct {
								Key struct {
									Concat []struct {
										Payload *payload
										Meta    *struct{ Key string }
									}
								}
								Data string
							}
						}
					}
				}
			}
		}
	}
	out := nft(t, ns, "-j", "list", "table", "inet", TableName)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	var l listing
	for _, item := range doc.Nftables {
		if c := item.Chain; c != nil {
			if c.Name != ChainName || c.Type != "filter" || c.Hook != "prerouting" || c.Prio != -150 || c.Policy != "accept" {
				t.Errorf("chain %+v, want %s: type filter hook prerouting priority -150 policy accept", *c, ChainName)
			}
		}
		if m := item.Map; m != nil {
			i := slices.IndexFunc(markMaps, func(mm *markMap) bool { return mm.name == m.Name })
			if i < 0 {
				t.Fatalf("map %s is not the layout's", m.Name)
			}
			mm := markMaps[i]
			addr, flags := map[*family]string{&fam4: "ipv4_addr", &fam6: "ipv6_addr"}[mm.fam], []string(nil)
			if mm.ranges {
				flags = []string{"interval"}
			}
			if want := []string{addr, "inet_proto", "inet_service"}; !slices.Equal(m.Type, want) || m.Map != "mark" || !slices.Equal(m.Flags, flags) {
				t.Errorf("map %s: type %v : %s flags %v, want %v : mark flags %v", m.Name, m.Type, m.Map, m.Flags, want, flags)
			}
			for _, e := range m.Elem {
				l.Elements = append(l.Elements, elementText(t, e))
			}
		}
		if r := item.Rule; r != nil {
			text := "not a mark map lookup"
			if len(r.Expr) == 1 && r.Expr[0].Mangle != nil && r.Expr[0].Mangle.Key.Meta.Key == "mark" && r.Expr[0].Mangle.Value.Map != nil {
				m := r.Expr[0].Mangle.Value.Map
				var parts []string
				for _, c := range m.Key.Concat {
					switch {
					case c.Payload != nil:
						parts = append(parts, c.Payload.Protocol+" "+c.Payload.Field)
					case c.Meta != nil:
						parts = append(parts, "meta "+c.Meta.Key)
					}
				}
				text = strings.Join(parts, " . ") + " " + m.Data
			}
			l.Rules = append(l.Rules, text)
		}
	}
	slices.Sort(l.Elements)
	slices.Sort(l.Rules) // a repaired rule comes last; their order does not matter
	return l
}

// fixedRules are the two rules the chain holds, as list renders them.
var fixedRules = []string{"ip daddr . meta l4proto . th dport @ports4", "ip daddr . meta l4proto . th dport @ranges4",
	"ip6 daddr . meta l4proto . th dport @ports6", "ip6 daddr . meta l4proto . th dport @ranges6"}

// elementText renders one map element of nft's JSON: [{"concat": [ADDR, PROTO, PORT or
// {"range": [FIRST, LAST]}]}, MARK].
func elementText(t *testing.T, e [2]json.RawMessage) string {
	t.Helper()
	var key struct{ Concat []json.RawMessage }
	var mark uint32
	if err := json.Unmarshal(e[0], &key); err != nil || len(key.Concat) != 3 {
		t.Fatalf("element key %s: want a concatenation of 3", e[0])
	}
	if err := json.Unmarshal(e[1], &mark); err != nil {
		t.Fatalf("element value %s: %v", e[1], err)
	}
	var addr, proto string
	if json.Unmarshal(key.Concat[0], &addr) != nil || json.Unmarshal(key.Concat[1], &proto) != nil {
		t.Fatalf("element key %s: want address and protocol names", e[0])
	}
	return fmt.Sprintf("%s %s dport %s mark %d", addr, proto, matchValue(t, key.Concat[2]), mark)
}

// matchValue renders a port of nft's JSON: a number or a range.
func matchValue(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return fmt.Sprint(n)
	}
	var r struct{ Range []int }
	if json.Unmarshal(raw, &r) == nil && len(r.Range) == 2 {
		return fmt.Sprintf("%d-%d", r.Range[0], r.Range[1])
	}
	t.Fatalf("unexpected port value %s", raw)
	return ""
}

// elementWatch reads the kernel's notifications of element changes in a namespace: what a
// transaction really added to and deleted from our maps, which `nft list` cannot tell.
type elementWatch struct {
	conn *netlink.Conn
}

func watchElements(t *testing.T, fd int) *elementWatch {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := forceBuffer(c, unix.SO_RCVBUFFORCE, 64<<20, c.SetReadBuffer); err != nil {
		t.Fatal(err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		t.Fatal(err)
	}
	return &elementWatch{conn: c}
}

// next returns the elements the next transaction added and deleted in our maps, sorted, as
// MarkRule texts (ruleTexts).
func (w *elementWatch) next(t *testing.T) (added, deleted []string) {
	t.Helper()
	if err := w.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		msgs, err := w.conn.Receive()
		if err != nil {
			t.Fatalf("read nftables notifications: %v", err)
		}
		for _, m := range msgs {
			typ := m.Header.Type & 0xff
			switch typ {
			case unix.NFT_MSG_NEWGEN:
				slices.Sort(added)
				slices.Sort(deleted)
				return added, deleted
			case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
				rules := notifiedElements(t, m)
				if typ == unix.NFT_MSG_NEWSETELEM {
					added = append(added, ruleTexts(rules)...)
				} else {
					deleted = append(deleted, ruleTexts(rules)...)
				}
			}
		}
	}
}

// notifiedElements decodes an NFT_MSG_NEWSETELEM/DELSETELEM notification of our table.
func notifiedElements(t *testing.T, m netlink.Message) []dataplane.MarkRule {
	t.Helper()
	var elems []nftables.SetElement
	table, set, err := decodeElements(m.Data[4:], func(e nftables.SetElement) { elems = append(elems, e) })
	if err != nil {
		t.Fatal(err)
	}
	if table != TableName {
		return nil
	}
	i := slices.IndexFunc(markMaps, func(m *markMap) bool { return m.name == set })
	if i < 0 {
		t.Fatalf("notified element of map %q", set)
	}
	var out []dataplane.MarkRule
	for _, e := range elems {
		r, ok := markRuleOf(markMaps[i], e)
		if !ok {
			t.Errorf("notified element %x-%x : %x is not a mark rule", e.Key, e.KeyEnd, e.Val)
		}
		out = append(out, r)
	}
	return out
}

func ruleTexts(rules []dataplane.MarkRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, fmt.Sprintf("%s %s dport %s mark %d", r.VIP, r.Protocol, ports(r), r.Mark))
	}
	slices.Sort(out)
	return out
}

func ports(r dataplane.MarkRule) string {
	if r.FirstPort == r.LastPort {
		return fmt.Sprint(r.FirstPort)
	}
	return fmt.Sprintf("%d-%d", r.FirstPort, r.LastPort)
}

var vip = netip.MustParseAddr("192.0.2.10")

func rule(p dataplane.Protocol, first, last uint16) dataplane.MarkRule {
	return dataplane.MarkRule{VIP: vip, Protocol: p, FirstPort: first, LastPort: last, Mark: 16}
}

// wms is the seed's Windows Media cluster: all its ports share mark 16.
var wms = []dataplane.MarkRule{
	rule(dataplane.TCP, 554, 554),
	rule(dataplane.UDP, 554, 554),
	rule(dataplane.TCP, 1755, 1755),
	rule(dataplane.UDP, 1755, 1755),
	rule(dataplane.UDP, 1024, 5000),
}

// elementTexts renders the map elements rules make (same-mark overlaps merged), as ruleTexts.
func elementTexts(t *testing.T, rules []dataplane.MarkRule) []string {
	t.Helper()
	l, err := desired("mark rule", rules)
	if err != nil {
		t.Fatal(err)
	}
	e, err := elementsOf(l)
	if err != nil {
		t.Fatal(err)
	}
	return ruleTexts(e)
}

func newFirewall(t *testing.T) (*Firewall, string, int) {
	t.Helper()
	privileged(t, "ip", "nft")
	ns, fd := netns(t)
	fw, err := New(WithNetNSFd(fd))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(fw.Close)
	return fw, ns, fd
}

func TestSetMarkRulesInNamespace(t *testing.T) {
	fw, ns, fd := newFirewall(t)
	// A table someone else made by hand: the agent must never touch it.
	nft(t, ns, "add", "table", "ip", "other")
	nft(t, ns, "add", "chain", "ip", "other", "input", "{ type filter hook input priority 0; }")
	nft(t, ns, "add", "rule", "ip", "other", "input", "tcp", "dport", "22", "counter", "accept")
	other := nft(t, ns, "list", "table", "ip", "other")
	w := watchElements(t, fd)

	// udp 1755 is inside udp 1024-5000, of the same mark: each is an element of its own map.
	wmsElements := elementTexts(t, wms)
	if len(wmsElements) != 5 {
		t.Fatalf("wms elements %q, want 5", wmsElements)
	}
	gen := generation(t, fd)
	n, err := fw.SetMarkRules(wms)
	if err != nil || n != len(wmsElements) {
		t.Fatalf("SetMarkRules(wms) = %d, %v; want %d, nil", n, err, len(wmsElements))
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("first apply took %d transactions, want 1", g-gen)
	}
	if added, deleted := w.next(t); !slices.Equal(added, wmsElements) || len(deleted) != 0 {
		t.Errorf("first apply added %q and deleted %q, want added %q", added, deleted, wmsElements)
	}
	l := list(t, ns)
	if !slices.Equal(l.Rules, fixedRules) {
		t.Errorf("rules %q, want %q", l.Rules, fixedRules)
	}
	if got, want := l.Elements, wmsElements; !slices.Equal(got, want) {
		t.Errorf("kernel elements after apply:\n%q\nwant\n%q", got, want)
	}
	text := nft(t, ns, "list", "table", "inet", TableName)
	for _, line := range []string{
		"meta mark set ip daddr . meta l4proto . th dport map @ranges4",
		"meta mark set ip daddr . meta l4proto . th dport map @ports4",
		"meta mark set ip6 daddr . meta l4proto . th dport map @ranges6",
		"meta mark set ip6 daddr . meta l4proto . th dport map @ports6",
		"192.0.2.10 . udp . 1024-5000 : 0x00000010",
		"192.0.2.10 . udp . 1755 : 0x00000010",
		"type ipv4_addr . inet_proto . inet_service : mark",
		`comment "lvsctl: IPVS firewall marks of IPv4 VIPs, port ranges"`,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("nft list lacks %q:\n%s", line, text)
		}
	}
	got, err := fw.MarkRules()
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(wms)
	slices.SortFunc(want, compare)
	if !slices.Equal(got, want) {
		t.Errorf("MarkRules() = %v, want %v", got, want)
	}

	// The same rules again: nothing to do, so no transaction.
	gen = generation(t, fd)
	if n, err := fw.SetMarkRules(wms); err != nil || n != 0 {
		t.Fatalf("second SetMarkRules(wms) = %d, %v; want 0, nil", n, err)
	}
	if g := generation(t, fd); g != gen {
		t.Errorf("no-op apply committed %d transactions, want 0", g-gen)
	}

	// Drop udp 554, add tcp 80, move tcp 1755 to mark 17: one transaction, four element
	// changes, the rest untouched.
	changed := []dataplane.MarkRule{wms[0], wms[4], rule(dataplane.UDP, 1755, 1755), rule(dataplane.TCP, 80, 80),
		{VIP: vip, Protocol: dataplane.TCP, FirstPort: 1755, LastPort: 1755, Mark: 17}}
	gen = generation(t, fd)
	if n, err := fw.SetMarkRules(changed); err != nil || n != 4 {
		t.Fatalf("SetMarkRules(changed) = %d, %v; want 4, nil", n, err)
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("change took %d transactions, want 1", g-gen)
	}
	added, deleted := w.next(t)
	if want := ruleTexts(changed[3:]); !slices.Equal(added, want) {
		t.Errorf("change added %q, want %q", added, want)
	}
	if want := ruleTexts([]dataplane.MarkRule{wms[1], wms[2]}); !slices.Equal(deleted, want) {
		t.Errorf("change deleted %q, want %q", deleted, want)
	}
	if got, want := list(t, ns).Elements, elementTexts(t, changed); !slices.Equal(got, want) {
		t.Errorf("kernel elements after change:\n%q\nwant\n%q", got, want)
	}
	if got, err := fw.MarkRules(); err != nil || !slices.Equal(ruleTexts(got), ruleTexts(changed)) {
		t.Errorf("MarkRules() = %q, %v; want %q", ruleTexts(got), err, ruleTexts(changed))
	}

	if got := nft(t, ns, "list", "table", "ip", "other"); got != other {
		t.Errorf("hand-made table changed:\n%s\nwant\n%s", got, other)
	}

	// Empty desired state empties the maps; the table and its fixed rules stay.
	if n, err := fw.SetMarkRules(nil); err != nil || n != len(elementTexts(t, changed)) {
		t.Fatalf("SetMarkRules(nil) = %d, %v; want %d, nil", n, err, len(elementTexts(t, changed)))
	}
	if l := list(t, ns); len(l.Elements) != 0 || !slices.Equal(l.Rules, fixedRules) {
		t.Errorf("after SetMarkRules(nil): %+v, want no elements and the fixed rules", l)
	}
}

func TestSetMarkRulesOverlaps(t *testing.T) {
	fw := &Firewall{nsFd: -1} // no connection: refused before any kernel call
	m17 := func(r dataplane.MarkRule) dataplane.MarkRule { r.Mark = 17; return r }
	for _, rules := range [][]dataplane.MarkRule{
		{rule(dataplane.UDP, 1024, 5000), m17(rule(dataplane.UDP, 5000, 5000))},
		{rule(dataplane.UDP, 1024, 5000), m17(rule(dataplane.UDP, 2000, 6000))},
		{rule(dataplane.TCP, 554, 554), m17(rule(dataplane.TCP, 554, 554))},
	} {
		_, err := fw.SetMarkRules(rules)
		if !errors.Is(err, dataplane.ErrExist) || !strings.Contains(err.Error(), rules[0].String()) || !strings.Contains(err.Error(), rules[1].String()) {
			t.Errorf("SetMarkRules(%v) = %v, want ErrExist naming both rules", rules, err)
		}
	}
	// Overlapping ranges of one mark become their union; single ports, other protocols, other
	// VIPs and adjacent ports stay apart; duplicates go.
	tests := []struct {
		rules []dataplane.MarkRule
		want  []dataplane.MarkRule
	}{
		{wms, wms},
		{[]dataplane.MarkRule{rule(dataplane.UDP, 10, 20), rule(dataplane.UDP, 15, 30), rule(dataplane.UDP, 31, 31), rule(dataplane.UDP, 30, 30)},
			[]dataplane.MarkRule{rule(dataplane.UDP, 10, 30), rule(dataplane.UDP, 30, 30), rule(dataplane.UDP, 31, 31)}},
		{[]dataplane.MarkRule{rule(dataplane.TCP, 554, 554), rule(dataplane.TCP, 554, 554), rule(dataplane.UDP, 554, 554),
			{VIP: netip.MustParseAddr("192.0.2.11"), Protocol: dataplane.TCP, FirstPort: 554, LastPort: 554, Mark: 17}},
			[]dataplane.MarkRule{rule(dataplane.TCP, 554, 554), rule(dataplane.UDP, 554, 554),
				{VIP: netip.MustParseAddr("192.0.2.11"), Protocol: dataplane.TCP, FirstPort: 554, LastPort: 554, Mark: 17}}},
	}
	for _, tt := range tests {
		if got := elementTexts(t, tt.rules); !slices.Equal(got, ruleTexts(tt.want)) {
			t.Errorf("elements of %v = %q, want %q", tt.rules, got, ruleTexts(tt.want))
		}
	}
}

func TestChangeMarkRules(t *testing.T) {
	fw, ns, fd := newFirewall(t)
	// Before a SetMarkRules the Firewall does not know the kernel's rules: the caller must
	// fall back to SetMarkRules.
	if _, err := fw.ChangeMarkRules(wms, nil); !errors.Is(err, dataplane.ErrNotExist) {
		t.Fatalf("ChangeMarkRules before any SetMarkRules = %v, want ErrNotExist", err)
	}
	if _, err := fw.SetMarkRules(wms); err != nil {
		t.Fatal(err)
	}
	w := watchElements(t, fd)
	before := list(t, ns)

	// Refused changes leave the kernel as it was, and commit nothing.
	tcp80 := rule(dataplane.TCP, 80, 80)
	m17 := func(r dataplane.MarkRule) dataplane.MarkRule { r.Mark = 17; return r }
	refused := []struct {
		name     string
		add, del []dataplane.MarkRule
		want     error
	}{
		{"delete an absent rule", []dataplane.MarkRule{tcp80}, []dataplane.MarkRule{rule(dataplane.TCP, 81, 81)}, dataplane.ErrNotExist},
		{"delete with other ports", nil, []dataplane.MarkRule{wms[0], rule(dataplane.UDP, 1024, 4999)}, dataplane.ErrNotExist},
		{"add a rule there already", []dataplane.MarkRule{tcp80, wms[0]}, nil, dataplane.ErrExist},
		{"add inside a range of another mark", []dataplane.MarkRule{tcp80, m17(rule(dataplane.UDP, 2000, 2000))}, nil, dataplane.ErrExist},
		{"add over a range's end, another mark", []dataplane.MarkRule{m17(rule(dataplane.UDP, 5000, 6000))}, []dataplane.MarkRule{wms[0]}, dataplane.ErrExist},
		{"add a rule's ports with another mark", []dataplane.MarkRule{m17(wms[0])}, nil, dataplane.ErrExist},
		{"adds of two marks that overlap", []dataplane.MarkRule{tcp80, m17(rule(dataplane.TCP, 70, 90))}, nil, dataplane.ErrExist},
	}
	gen := generation(t, fd)
	for _, tt := range refused {
		if n, err := fw.ChangeMarkRules(tt.add, tt.del); !errors.Is(err, tt.want) || n != 0 {
			t.Errorf("%s: ChangeMarkRules = %d, %v; want 0, %v", tt.name, n, err, tt.want)
		}
	}
	if g := generation(t, fd); g != gen {
		t.Errorf("refused changes committed %d transactions", g-gen)
	}
	if after := list(t, ns); !slices.Equal(after.Elements, before.Elements) {
		t.Errorf("refused changes changed the maps:\n%q\nwant\n%q", after.Elements, before.Elements)
	}

	// tcp 1755 moves to mark 17, udp 554 goes, tcp 80 comes: one transaction that touches
	// those elements alone.
	moved := m17(wms[2])
	add := []dataplane.MarkRule{tcp80, moved}
	del := []dataplane.MarkRule{wms[1], wms[2]}
	if n, err := fw.ChangeMarkRules(add, del); err != nil || n != 4 {
		t.Fatalf("ChangeMarkRules = %d, %v; want 4, nil", n, err)
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("change took %d transactions, want 1", g-gen)
	}
	added, deleted := w.next(t)
	if !slices.Equal(added, ruleTexts(add)) || !slices.Equal(deleted, ruleTexts(del)) {
		t.Errorf("change added %q and deleted %q, want %q and %q", added, deleted, ruleTexts(add), ruleTexts(del))
	}
	now := []dataplane.MarkRule{wms[0], moved, wms[3], wms[4], tcp80}
	if got := list(t, ns).Elements; !slices.Equal(got, elementTexts(t, now)) {
		t.Errorf("kernel elements after change:\n%q\nwant\n%q", got, elementTexts(t, now))
	}
	if got, err := fw.MarkRules(); err != nil || !slices.Equal(ruleTexts(got), ruleTexts(now)) {
		t.Errorf("MarkRules() = %q, %v; want %q", ruleTexts(got), err, ruleTexts(now))
	}

	// udp 1755 lies inside udp 1024-5000, in the other map: deleting the range leaves it.
	if n, err := fw.ChangeMarkRules(nil, []dataplane.MarkRule{wms[4]}); err != nil || n != 1 {
		t.Fatalf("ChangeMarkRules(del udp 1024-5000) = %d, %v; want 1, nil", n, err)
	}
	if added, deleted := w.next(t); len(added) != 0 || !slices.Equal(deleted, ruleTexts(wms[4:])) {
		t.Errorf("deleting the range added %q and deleted %q, want nothing and %q", added, deleted, ruleTexts(wms[4:]))
	}
	now = []dataplane.MarkRule{wms[0], moved, wms[3], tcp80}
	if got := list(t, ns).Elements; !slices.Equal(got, elementTexts(t, now)) {
		t.Errorf("kernel elements after deleting the range:\n%q\nwant\n%q", got, elementTexts(t, now))
	}
	if n, err := fw.SetMarkRules(now); err != nil || n != 0 {
		t.Errorf("SetMarkRules of what ChangeMarkRules made = %d, %v; want 0, nil", n, err)
	}
	if n, err := fw.ChangeMarkRules(nil, nil); err != nil || n != 0 {
		t.Errorf("ChangeMarkRules(nil, nil) = %d, %v; want 0, nil", n, err)
	}

	// The kernel checks too: an element deleted by hand fails the transaction that deletes
	// it, whole, and one added by hand fails the transaction that adds it.
	nft(t, ns, "delete", "element", "inet", TableName, Ports4Map, "{ 192.0.2.10 . tcp . 554 }")
	nft(t, ns, "add", "element", "inet", TableName, Ports4Map, "{ 192.0.2.10 . tcp . 8080 : 16 }")
	before = list(t, ns)
	gen = generation(t, fd)
	if _, err := fw.ChangeMarkRules([]dataplane.MarkRule{rule(dataplane.TCP, 443, 443)}, []dataplane.MarkRule{wms[0]}); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("ChangeMarkRules deleting an element deleted by hand = %v, want ErrNotExist", err)
	}
	if g := generation(t, fd); g != gen {
		t.Errorf("the failed change committed %d transactions", g-gen)
	}
	if after := list(t, ns); !slices.Equal(after.Elements, before.Elements) {
		t.Errorf("the failed change changed the maps:\n%q\nwant\n%q", after.Elements, before.Elements)
	}
	// The kernel disagreed: until a SetMarkRules reads it, changes are refused.
	if _, err := fw.ChangeMarkRules([]dataplane.MarkRule{rule(dataplane.TCP, 443, 443)}, nil); !errors.Is(err, dataplane.ErrNotExist) {
		t.Errorf("ChangeMarkRules after a failed change = %v, want ErrNotExist", err)
	}
	if n, err := fw.SetMarkRules(now); err != nil || n != 2 {
		t.Fatalf("SetMarkRules repairing the hand edits = %d, %v; want 2, nil", n, err)
	}
	nft(t, ns, "add", "element", "inet", TableName, Ports4Map, "{ 192.0.2.10 . tcp . 8080 : 16 }")
	gen = generation(t, fd)
	if _, err := fw.ChangeMarkRules([]dataplane.MarkRule{rule(dataplane.TCP, 8080, 8080)}, []dataplane.MarkRule{wms[0]}); !errors.Is(err, dataplane.ErrExist) {
		t.Errorf("ChangeMarkRules adding an element added by hand = %v, want ErrExist", err)
	}
	if g := generation(t, fd); g != gen {
		t.Errorf("the failed change committed %d transactions", g-gen)
	}
}

func TestSetMarkRulesRepairsHandEdits(t *testing.T) {
	fw, ns, fd := newFirewall(t)
	mine := []dataplane.MarkRule{rule(dataplane.TCP, 554, 554), rule(dataplane.UDP, 1024, 5000)}
	if _, err := fw.SetMarkRules(mine); err != nil {
		t.Fatal(err)
	}
	// A rule in our chain, an element of a range of addresses and one of mark 0: none is
	// ours, so MarkRules hides them and SetMarkRules deletes them.
	nft(t, ns, "add", "rule", "inet", TableName, ChainName, "tcp", "dport", "22", "meta", "mark", "set", "5")
	nft(t, ns, "add", "element", "inet", TableName, Ranges4Map, "{ 198.51.100.1-198.51.100.9 . tcp . 80 : 7 }")
	nft(t, ns, "add", "element", "inet", TableName, Ports4Map, "{ 198.51.100.20 . tcp . 80 : 0 }")
	got, err := fw.MarkRules()
	if err != nil {
		t.Fatal(err)
	}
	if want := ruleTexts(mine); !slices.Equal(ruleTexts(got), want) {
		t.Errorf("MarkRules() = %q, want %q", ruleTexts(got), want)
	}
	tcp80 := rule(dataplane.TCP, 80, 80)
	gen := generation(t, fd)
	if n, err := fw.SetMarkRules(append(slices.Clone(mine), tcp80)); err != nil || n != 4 {
		t.Fatalf("SetMarkRules = %d, %v; want 4 (1 rule and 2 elements deleted, 1 added), nil", n, err)
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("repair took %d transactions, want 1", g-gen)
	}
	mine = append(mine, tcp80)
	if l := list(t, ns); !slices.Equal(l.Elements, ruleTexts(mine)) || !slices.Equal(l.Rules, fixedRules) {
		t.Errorf("after repair: %+v, want elements %q and the fixed rules", l, ruleTexts(mine))
	}

	// A fixed rule deleted by hand comes back; the elements stay. Only structure changed: 1.
	var doc struct {
		Nftables []struct{ Rule *struct{ Handle int } }
	}
	if err := json.Unmarshal([]byte(nft(t, ns, "-j", "list", "chain", "inet", TableName, ChainName)), &doc); err != nil {
		t.Fatal(err)
	}
	for _, item := range doc.Nftables {
		if item.Rule != nil {
			nft(t, ns, "delete", "rule", "inet", TableName, ChainName, "handle", fmt.Sprint(item.Rule.Handle))
			break
		}
	}
	if n, err := fw.SetMarkRules(mine); err != nil || n != 1 {
		t.Fatalf("SetMarkRules after a fixed rule's deletion = %d, %v; want 1, nil", n, err)
	}
	if l := list(t, ns); !slices.Equal(l.Elements, ruleTexts(mine)) || !slices.Equal(l.Rules, fixedRules) {
		t.Errorf("after restoring the fixed rule: %+v", l)
	}

	// What cannot be repaired in place is rebuilt in one transaction: a base chain turned to
	// policy drop (which would drop everything), a chain or map of someone else's, a map
	// of other flags, a dormant table. Every element is deleted with the table and re-added.
	for _, edit := range [][]string{
		{"add", "chain", "inet", TableName, ChainName, "{ type filter hook prerouting priority -150; policy drop; }"},
		{"add", "chain", "inet", TableName, "extra"},
		{"add", "set", "inet", TableName, "extra", "{ type ipv4_addr; }"},
		{"add", "table", "inet", TableName, "{ flags dormant; }"},
	} {
		nft(t, ns, edit...)
		gen := generation(t, fd)
		if n, err := fw.SetMarkRules(mine); err != nil || n != 2*len(mine) {
			t.Fatalf("SetMarkRules after %q = %d, %v; want %d, nil", edit, n, err, 2*len(mine))
		}
		if g := generation(t, fd); g != gen+1 {
			t.Errorf("rebuild after %q took %d transactions, want 1", edit, g-gen)
		}
		if l := list(t, ns); !slices.Equal(l.Elements, ruleTexts(mine)) || !slices.Equal(l.Rules, fixedRules) {
			t.Errorf("after the rebuild for %q: %+v", edit, l)
		}
		if text := nft(t, ns, "list", "table", "inet", TableName); strings.Contains(text, "extra") || strings.Contains(text, "dormant") || strings.Contains(text, "drop") {
			t.Errorf("the rebuild for %q left:\n%s", edit, text)
		}
	}

	// A deleted table comes back.
	nft(t, ns, "delete", "table", "inet", TableName)
	if n, err := fw.SetMarkRules(mine); err != nil || n != len(mine) {
		t.Fatalf("SetMarkRules after table deletion = %d, %v; want %d, nil", n, err, len(mine))
	}
	if l := list(t, ns); !slices.Equal(l.Elements, ruleTexts(mine)) || !slices.Equal(l.Rules, fixedRules) {
		t.Errorf("after re-creation: %+v", l)
	}
}

// TestMigrateFromV1 is an agent upgraded in place: the kernel holds the v1 layout, one rule
// per MarkRule, as the previous version wrote it. MarkRules reports those rules, and the first
// SetMarkRules replaces them with map elements in one transaction, so no packet goes unmarked.
func TestMigrateFromV1(t *testing.T) {
	fw, ns, fd := newFirewall(t)
	c, err := nftables.New(nftables.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	c.AddTable(fw.table)
	c.AddChain(fw.chain)
	for _, r := range wms {
		c.AddRule(&nftables.Rule{Table: fw.table, Chain: fw.chain, Exprs: legacyExprs(r), UserData: commentUData(legacyKey(r))})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("write the v1 layout: %v", err)
	}
	if text := nft(t, ns, "list", "table", "inet", TableName); !strings.Contains(text, `ip daddr 192.0.2.10 udp dport 1024-5000 meta mark set 0x00000010 comment "lvsctl:v1 192.0.2.10 udp 1024-5000 mark 16"`) {
		t.Fatalf("setup: the v1 layout is not what the previous version wrote:\n%s", text)
	}
	got, err := fw.MarkRules()
	if err != nil || !slices.Equal(ruleTexts(got), ruleTexts(wms)) {
		t.Errorf("MarkRules() on the v1 layout = %q, %v; want %q", ruleTexts(got), err, ruleTexts(wms))
	}

	gen := generation(t, fd)
	if n, err := fw.SetMarkRules(wms); err != nil || n != 2*len(wms) {
		t.Fatalf("SetMarkRules = %d, %v; want %d (v1 rules deleted, elements added), nil", n, err, 2*len(wms))
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("migration took %d transactions, want 1", g-gen)
	}
	l := list(t, ns)
	if !slices.Equal(l.Rules, fixedRules) || !slices.Equal(l.Elements, elementTexts(t, wms)) {
		t.Errorf("after migration: %+v, want the fixed rules and elements %q", l, elementTexts(t, wms))
	}
	if text := nft(t, ns, "list", "table", "inet", TableName); strings.Contains(text, commentPrefix) {
		t.Errorf("v1 rules left after migration:\n%s", text)
	}
	if n, err := fw.SetMarkRules(wms); err != nil || n != 0 {
		t.Errorf("SetMarkRules after migration = %d, %v; want 0, nil", n, err)
	}
}

func TestSetMarkRulesIPv6(t *testing.T) {
	fw, ns, _ := newFirewall(t)
	r6 := dataplane.MarkRule{VIP: netip.MustParseAddr("2001:db8::10"), Protocol: dataplane.UDP, FirstPort: 1024, LastPort: 5000, Mark: 17}
	r4 := dataplane.MarkRule{VIP: netip.MustParseAddr("::ffff:192.0.2.10"), Protocol: dataplane.SCTP, FirstPort: 9, LastPort: 9, Mark: 18}
	if n, err := fw.SetMarkRules([]dataplane.MarkRule{r6, r4}); err != nil || n != 2 {
		t.Fatalf("SetMarkRules = %d, %v; want 2, nil", n, err)
	}
	r4.VIP = r4.VIP.Unmap() // an IPv4-mapped VIP is an IPv4 VIP
	if got, want := list(t, ns).Elements, ruleTexts([]dataplane.MarkRule{r6, r4}); !slices.Equal(got, want) {
		t.Errorf("elements %q, want %q", got, want)
	}
	if text := nft(t, ns, "list", "table", "inet", TableName); !strings.Contains(text, "2001:db8::10 . udp . 1024-5000 : 0x00000011") {
		t.Errorf("nft list lacks the IPv6 element:\n%s", text)
	}
	if got, err := fw.MarkRules(); err != nil || !slices.Equal(got, []dataplane.MarkRule{r4, r6}) {
		t.Errorf("MarkRules() = %v, %v; want [%v %v]", got, err, r4, r6)
	}
}

func TestSetMarkRulesRefusesBadRules(t *testing.T) {
	ok := rule(dataplane.TCP, 554, 554)
	tests := []struct {
		name  string
		edit  func(*dataplane.MarkRule)
		field string
	}{
		{"no vip", func(r *dataplane.MarkRule) { r.VIP = netip.Addr{} }, "vip"},
		{"zoned vip", func(r *dataplane.MarkRule) { r.VIP = netip.MustParseAddr("fe80::1%eth0") }, "vip"},
		{"icmp", func(r *dataplane.MarkRule) { r.Protocol = 1 }, "protocol"},
		{"port 0", func(r *dataplane.MarkRule) { r.FirstPort, r.LastPort = 0, 0 }, "first port"},
		{"reversed range", func(r *dataplane.MarkRule) { r.FirstPort, r.LastPort = 5000, 1024 }, "last port"},
		{"mark 0", func(r *dataplane.MarkRule) { r.Mark = 0 }, "mark"},
	}
	// A Firewall with no connection: validation must refuse before any kernel call.
	fw := &Firewall{nsFd: -1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := ok
			tt.edit(&bad)
			_, err := fw.SetMarkRules([]dataplane.MarkRule{ok, bad})
			if err == nil || !strings.Contains(err.Error(), "mark rule 1") || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("SetMarkRules(%v) error = %v, want one naming mark rule 1 and %q", bad, err, tt.field)
			}
			_, err = fw.ChangeMarkRules([]dataplane.MarkRule{ok}, []dataplane.MarkRule{ok, bad})
			if err == nil || !strings.Contains(err.Error(), "del 1") || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("ChangeMarkRules(del %v) error = %v, want one naming del 1 and %q", bad, err, tt.field)
			}
			_, err = fw.ChangeMarkRules([]dataplane.MarkRule{ok, bad}, nil)
			if err == nil || !strings.Contains(err.Error(), "add 1") || !strings.Contains(err.Error(), tt.field+":") {
				t.Errorf("ChangeMarkRules(add %v) error = %v, want one naming add 1 and %q", bad, err, tt.field)
			}
		})
	}
}

func TestLegacyKeyRoundTrip(t *testing.T) {
	tests := []dataplane.MarkRule{
		rule(dataplane.TCP, 554, 554),
		rule(dataplane.UDP, 1024, 5000),
		{VIP: netip.MustParseAddr("2001:db8::10"), Protocol: dataplane.SCTP, FirstPort: 1, LastPort: 65535, Mark: 0xffffffff},
	}
	for _, r := range tests {
		c, ok := commentOf(commentUData(legacyKey(r)))
		if !ok {
			t.Fatalf("commentOf(commentUData(legacyKey(%v))) found no comment", r)
		}
		got, err := parseLegacyKey(c)
		if err != nil || got != r {
			t.Errorf("parseLegacyKey(%q) = %v, %v; want %v", c, got, err, r)
		}
	}
}

func TestParseLegacyKeyRefusesForeignComments(t *testing.T) {
	for _, c := range []string{
		"", "hello", "lvsctl:v1 ", "lvsctl:v1 192.0.2.10 tcp 554 mark 16", "lvsctl:v1 192.0.2.10 icmp 1-1 mark 16",
		"lvsctl:v1 192.0.2.10 tcp 554-554 16", "lvsctl:v1 192.0.2.10 tcp 554-554 mark 0", "lvsctl:v1 nope tcp 554-554 mark 16",
		"lvsctl:v1 192.0.2.10 tcp 70000-70000 mark 16",
	} {
		if r, err := parseLegacyKey(c); err == nil {
			t.Errorf("parseLegacyKey(%q) = %v, want an error", c, r)
		}
	}
}

func TestCommentOfMalformedUserData(t *testing.T) {
	tests := []struct {
		udata []byte
		want  string
		ok    bool
	}{
		{nil, "", false},
		{[]byte{0}, "", false},
		{[]byte{0, 10, 'a'}, "", false},                    // length beyond the data
		{[]byte{1, 1, 'x', 0, 3, 'a', 'b', 0}, "ab", true}, // comment after another TLV
		{[]byte{1, 200, 'x'}, "", false},                   // other TLV overruns
		{append([]byte{0, 4}, "abc\x00"...), "abc", true},  // NUL-terminated
	}
	for _, tt := range tests {
		got, ok := commentOf(tt.udata)
		if got != tt.want || ok != tt.ok {
			t.Errorf("commentOf(%v) = %q, %v; want %q, %v", tt.udata, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err         error
		unavailable bool
	}{
		{syscall.EPROTONOSUPPORT, true},
		{fmt.Errorf("dial: %w", syscall.EOPNOTSUPP), true},
		{syscall.EAFNOSUPPORT, true},
		{syscall.EPERM, false},
		{errors.New("other"), false},
	}
	for _, tt := range tests {
		err := classify("probe", tt.err)
		if got := errors.Is(err, dataplane.ErrUnavailable); got != tt.unavailable {
			t.Errorf("classify(%v): errors.Is(ErrUnavailable) = %v, want %v", tt.err, got, tt.unavailable)
		}
		if !errors.Is(err, tt.err) {
			t.Errorf("classify(%v) = %v, lost the cause", tt.err, err)
		}
		if tt.unavailable && !strings.Contains(err.Error(), "modprobe nf_tables") {
			t.Errorf("classify(%v) = %v, want the how-to", tt.err, err)
		}
	}
}

// TestObjectsArePerFirewall: each Firewall gets its own table and chain, down to the hook,
// priority and policy the chain points to, so no Firewall can change another's.
func TestObjectsArePerFirewall(t *testing.T) {
	t1, c1 := objects()
	t2, c2 := objects()
	if t1 == t2 || c1 == c2 || c1.Hooknum == c2.Hooknum || c1.Priority == c2.Priority || c1.Policy == c2.Policy {
		t.Fatal("two calls share a table, a chain or a chain's hook, priority or policy")
	}
	if c1.Table != t1 || c2.Table != t2 {
		t.Error("a chain does not point to the table made with it")
	}
	*c1.Priority, *c1.Policy = 0, nftables.ChainPolicyDrop
	if *c2.Priority != *nftables.ChainPriorityMangle || *c2.Policy != nftables.ChainPolicyAccept {
		t.Errorf("changing one chain changed the other: priority %d policy %d", *c2.Priority, *c2.Policy)
	}
	if *nftables.ChainPriorityMangle != -150 {
		t.Errorf("changing a chain changed the library's ChainPriorityMangle to %d", *nftables.ChainPriorityMangle)
	}
}

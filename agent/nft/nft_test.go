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

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// The reconciler's view of a firewall, copied here because package reconcile may not exist
// yet; the assignment fails to compile if Firewall drifts from it.
var _ interface {
	MarkRules() ([]dataplane.MarkRule, error)
	SetMarkRules([]dataplane.MarkRule) (int, error)
} = (*Firewall)(nil)

// privileged skips a test that needs root, or fails it when CI demands privileged tests.
func privileged(t *testing.T, needs ...string) {
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
func netns(t *testing.T) (string, int) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "lvsctl-nft-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
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

func nft(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// listedRule is what `nft -j list table inet lvsctl` says of one rule, reduced to what a mark
// rule is, in nft's own words, plus the rule's handle.
type listedRule struct {
	Handle uint64
	Text   string // e.g. "192.0.2.10 udp dport 1024-5000 mark 16"
}

// listRules parses `nft -j list table inet lvsctl` inside ns. It fails the test on anything
// in the table but our chain and mark rules.
func listRules(t *testing.T, ns string) []listedRule {
	t.Helper()
	var doc struct {
		Nftables []struct {
			Chain *struct {
				Name, Type, Hook, Policy string
				Prio                     int
			}
			Rule *struct {
				Chain  string
				Handle uint64
				Expr   []struct {
					Match *struct {
						Op   string
						Left struct {
							Payload *struct{ Protocol, Field string }
						}
						Right json.RawMessage
					}
					Mangle *struct {
						Key   struct{ Meta struct{ Key string } }
						Value uint32
					}
				}
			}
		}
	}
	out := nft(t, ns, "-j", "list", "table", "inet", TableName)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	var rules []listedRule
	for _, item := range doc.Nftables {
		if c := item.Chain; c != nil {
			if c.Name != ChainName || c.Type != "filter" || c.Hook != "prerouting" || c.Prio != -150 || c.Policy != "accept" {
				t.Errorf("chain %+v, want %s: type filter hook prerouting priority -150 policy accept", *c, ChainName)
			}
		}
		r := item.Rule
		if r == nil {
			continue
		}
		var daddr, proto, port, mark string
		for _, e := range r.Expr {
			switch {
			case e.Match != nil && e.Match.Op == "==" && e.Match.Left.Payload != nil:
				p := e.Match.Left.Payload
				switch p.Field {
				case "daddr":
					daddr = matchValue(t, e.Match.Right)
				case "dport":
					proto, port = p.Protocol, matchValue(t, e.Match.Right)
				default:
					t.Fatalf("rule %d: unexpected match on %s %s", r.Handle, p.Protocol, p.Field)
				}
			case e.Mangle != nil && e.Mangle.Key.Meta.Key == "mark":
				mark = fmt.Sprint(e.Mangle.Value)
			default:
				t.Fatalf("rule %d: unexpected expression in %s", r.Handle, out)
			}
		}
		rules = append(rules, listedRule{Handle: r.Handle, Text: fmt.Sprintf("%s %s dport %s mark %s", daddr, proto, port, mark)})
	}
	return rules
}

// matchValue renders the right side of an nft JSON match: a string, a number or a range.
func matchValue(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return fmt.Sprint(n)
	}
	var r struct{ Range []int }
	if json.Unmarshal(raw, &r) == nil && len(r.Range) == 2 {
		return fmt.Sprintf("%d-%d", r.Range[0], r.Range[1])
	}
	t.Fatalf("unexpected match value %s", raw)
	return ""
}

func texts(rules []listedRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.Text)
	}
	slices.Sort(out)
	return out
}

func handles(rules []listedRule) map[string]uint64 {
	m := map[string]uint64{}
	for _, r := range rules {
		m[r.Text] = r.Handle
	}
	return m
}

// generation reads the namespace's nftables generation id, which the kernel bumps once per
// committed transaction: it counts transactions.
func generation(t *testing.T, fd int) uint32 {
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

	gen := generation(t, fd)
	n, err := fw.SetMarkRules(wms)
	if err != nil || n != len(wms) {
		t.Fatalf("SetMarkRules(wms) = %d, %v; want %d, nil", n, err, len(wms))
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("first apply took %d transactions, want 1", g-gen)
	}
	listed := listRules(t, ns)
	if got, want := texts(listed), ruleTexts(wms); !slices.Equal(got, want) {
		t.Errorf("kernel rules after apply:\n%q\nwant\n%q", got, want)
	}
	if text := nft(t, ns, "list", "table", "inet", TableName); !strings.Contains(text, "ip daddr 192.0.2.10 udp dport 1024-5000 meta mark set 0x00000010") {
		t.Errorf("nft list does not show the readable range rule:\n%s", text)
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

	// The same rules again: nothing to do, so no transaction and the same handles.
	gen = generation(t, fd)
	if n, err := fw.SetMarkRules(wms); err != nil || n != 0 {
		t.Fatalf("second SetMarkRules(wms) = %d, %v; want 0, nil", n, err)
	}
	if g := generation(t, fd); g != gen {
		t.Errorf("no-op apply committed %d transactions, want 0", g-gen)
	}
	if again := listRules(t, ns); !slices.Equal(again, listed) {
		t.Errorf("listing changed on a no-op apply:\n%v\nwant\n%v", again, listed)
	}

	// Drop udp 554, add tcp 80: one transaction, two rule changes, the rest untouched.
	changed := append(slices.Clone(wms[:1]), wms[2:]...)
	changed = append(changed, rule(dataplane.TCP, 80, 80))
	gen = generation(t, fd)
	if n, err := fw.SetMarkRules(changed); err != nil || n != 2 {
		t.Fatalf("SetMarkRules(changed) = %d, %v; want 2, nil", n, err)
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("change took %d transactions, want 1", g-gen)
	}
	after := listRules(t, ns)
	if got, want := texts(after), ruleTexts(changed); !slices.Equal(got, want) {
		t.Errorf("kernel rules after change:\n%q\nwant\n%q", got, want)
	}
	before, now := handles(listed), handles(after)
	for _, r := range ruleTexts(changed) {
		if h, ok := before[r]; ok && now[r] != h {
			t.Errorf("rule %q changed handle %d -> %d though it did not change", r, h, now[r])
		}
	}

	if got := nft(t, ns, "list", "table", "ip", "other"); got != other {
		t.Errorf("hand-made table changed:\n%s\nwant\n%s", got, other)
	}

	// Empty desired state empties our chain.
	if n, err := fw.SetMarkRules(nil); err != nil || n != len(changed) {
		t.Fatalf("SetMarkRules(nil) = %d, %v; want %d, nil", n, err, len(changed))
	}
	if got := listRules(t, ns); len(got) != 0 {
		t.Errorf("rules left after SetMarkRules(nil): %v", got)
	}
}

func TestSetMarkRulesRepairsHandEdits(t *testing.T) {
	fw, ns, fd := newFirewall(t)
	mine := []dataplane.MarkRule{rule(dataplane.TCP, 554, 554), rule(dataplane.UDP, 1024, 5000)}
	if _, err := fw.SetMarkRules(mine); err != nil {
		t.Fatal(err)
	}
	// A rule without our comment, and one with our comment over other expressions: neither
	// is a rule we made, so MarkRules hides them and SetMarkRules deletes them.
	nft(t, ns, "add", "rule", "inet", TableName, ChainName, "tcp", "dport", "22", "meta", "mark", "set", "5")
	nft(t, ns, "add", "rule", "inet", TableName, ChainName, "ip", "daddr", "192.0.2.10", "tcp", "dport", "8080",
		"meta", "mark", "set", "16", "comment", `"lvsctl:v1 192.0.2.10 tcp 80-80 mark 16"`)
	nft(t, ns, "add", "rule", "inet", TableName, ChainName, "meta", "mark", "set", "7", "comment", `"lvsctl:v1 garbage"`)
	if len(listRulesRaw(t, ns)) != 5 {
		t.Fatalf("setup: want 5 rules in the chain")
	}
	got, err := fw.MarkRules()
	if err != nil {
		t.Fatal(err)
	}
	if want := ruleTexts(mine); !slices.Equal(ruleTexts(got), want) {
		t.Errorf("MarkRules() = %q, want %q", ruleTexts(got), want)
	}
	gen := generation(t, fd)
	if n, err := fw.SetMarkRules(append(mine, rule(dataplane.TCP, 80, 80))); err != nil || n != 4 {
		t.Fatalf("SetMarkRules = %d, %v; want 4 (3 foreign deleted, 1 added), nil", n, err)
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("repair took %d transactions, want 1", g-gen)
	}
	if got, want := texts(listRules(t, ns)), ruleTexts(append(mine, rule(dataplane.TCP, 80, 80))); !slices.Equal(got, want) {
		t.Errorf("kernel rules after repair:\n%q\nwant\n%q", got, want)
	}

	// A base chain turned to policy drop would drop everything: the next apply rebuilds the
	// table in one transaction.
	nft(t, ns, "add", "chain", "inet", TableName, ChainName, "{ type filter hook prerouting priority -150; policy drop; }")
	gen = generation(t, fd)
	if n, err := fw.SetMarkRules(mine); err != nil || n != 3+2 {
		t.Fatalf("SetMarkRules after policy change = %d, %v; want 5 (3 deleted, 2 re-added), nil", n, err)
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("rebuild took %d transactions, want 1", g-gen)
	}
	if got, want := texts(listRules(t, ns)), ruleTexts(mine); !slices.Equal(got, want) {
		t.Errorf("kernel rules after rebuild:\n%q\nwant\n%q", got, want)
	}

	// A deleted table comes back.
	nft(t, ns, "delete", "table", "inet", TableName)
	if n, err := fw.SetMarkRules(mine); err != nil || n != 2 {
		t.Fatalf("SetMarkRules after table deletion = %d, %v; want 2, nil", n, err)
	}
	if got, want := texts(listRules(t, ns)), ruleTexts(mine); !slices.Equal(got, want) {
		t.Errorf("kernel rules after re-creation:\n%q\nwant\n%q", got, want)
	}
}

// listRulesRaw counts rules in our table without interpreting them.
func listRulesRaw(t *testing.T, ns string) []json.RawMessage {
	t.Helper()
	var doc struct{ Nftables []map[string]json.RawMessage }
	if err := json.Unmarshal([]byte(nft(t, ns, "-j", "list", "table", "inet", TableName)), &doc); err != nil {
		t.Fatal(err)
	}
	var rules []json.RawMessage
	for _, item := range doc.Nftables {
		if r, ok := item["rule"]; ok {
			rules = append(rules, r)
		}
	}
	return rules
}

func TestSetMarkRulesIPv6(t *testing.T) {
	fw, ns, _ := newFirewall(t)
	r6 := dataplane.MarkRule{VIP: netip.MustParseAddr("2001:db8::10"), Protocol: dataplane.UDP, FirstPort: 1024, LastPort: 5000, Mark: 17}
	if n, err := fw.SetMarkRules([]dataplane.MarkRule{r6}); err != nil || n != 1 {
		t.Fatalf("SetMarkRules = %d, %v; want 1, nil", n, err)
	}
	if text := nft(t, ns, "list", "table", "inet", TableName); !strings.Contains(text, "ip6 daddr 2001:db8::10 udp dport 1024-5000 meta mark set 0x00000011") {
		t.Errorf("nft list lacks the IPv6 rule:\n%s", text)
	}
	if got, err := fw.MarkRules(); err != nil || len(got) != 1 || got[0] != r6 {
		t.Errorf("MarkRules() = %v, %v; want [%v]", got, err, r6)
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
		})
	}
}

func TestKeyRoundTrip(t *testing.T) {
	tests := []dataplane.MarkRule{
		rule(dataplane.TCP, 554, 554),
		rule(dataplane.UDP, 1024, 5000),
		{VIP: netip.MustParseAddr("2001:db8::10"), Protocol: dataplane.SCTP, FirstPort: 1, LastPort: 65535, Mark: 0xffffffff},
	}
	for _, r := range tests {
		c, ok := commentOf(comment(r))
		if !ok {
			t.Fatalf("commentOf(comment(%v)) found no comment", r)
		}
		got, err := parseKey(c)
		if err != nil || got != r {
			t.Errorf("parseKey(%q) = %v, %v; want %v", c, got, err, r)
		}
	}
}

func TestParseKeyRefusesForeignComments(t *testing.T) {
	for _, c := range []string{
		"", "hello", "lvsctl:v1 ", "lvsctl:v1 192.0.2.10 tcp 554 mark 16", "lvsctl:v1 192.0.2.10 icmp 1-1 mark 16",
		"lvsctl:v1 192.0.2.10 tcp 554-554 16", "lvsctl:v1 192.0.2.10 tcp 554-554 mark 0", "lvsctl:v1 nope tcp 554-554 mark 16",
		"lvsctl:v1 192.0.2.10 tcp 70000-70000 mark 16",
	} {
		if r, err := parseKey(c); err == nil {
			t.Errorf("parseKey(%q) = %v, want an error", c, r)
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

package nft

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// clusters returns n clusters' mark rules, each cluster a distinct VIP (10.0.0.1 onwards) and
// mark (1000 onwards) with the given ports.
func clusters(n int, ports func(vip netip.Addr, mark uint32) []dataplane.MarkRule) [][]dataplane.MarkRule {
	out := make([][]dataplane.MarkRule, n)
	for i := range out {
		v := uint32(10<<24 + i + 1)
		vip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		out[i] = ports(vip, uint32(1000+i))
	}
	return out
}

// wmsPorts are the Windows Media cluster's: 5 rules, 5 elements (udp 1755 lies inside udp
// 1024-5000, each in its own map).
func wmsPorts(vip netip.Addr, mark uint32) []dataplane.MarkRule {
	r := func(p dataplane.Protocol, first, last uint16) dataplane.MarkRule {
		return dataplane.MarkRule{VIP: vip, Protocol: p, FirstPort: first, LastPort: last, Mark: mark}
	}
	return []dataplane.MarkRule{r(dataplane.TCP, 554, 554), r(dataplane.UDP, 554, 554), r(dataplane.TCP, 1755, 1755),
		r(dataplane.UDP, 1755, 1755), r(dataplane.UDP, 1024, 5000)}
}

func flatten(cs [][]dataplane.MarkRule) []dataplane.MarkRule {
	var out []dataplane.MarkRule
	for _, c := range cs {
		out = append(out, c...)
	}
	return out
}

func withMark(rules []dataplane.MarkRule, mark uint32) []dataplane.MarkRule {
	out := slices.Clone(rules)
	for i := range out {
		out[i].Mark = mark
	}
	return out
}

// TestSetMarkRules2000Clusters applies 2,000 Windows Media clusters (10,000 elements) in one transaction, checks every element `nft -j list` shows against what was
// asked, then changes one cluster each way and checks that only its elements were touched.
func TestSetMarkRules2000Clusters(t *testing.T) {
	fw, ns, fd := newFirewall(t)
	cs := clusters(2000, wmsPorts)
	all := flatten(cs)
	want := elementTexts(t, all)
	if len(want) != 10000 {
		t.Fatalf("want 10000 elements, have %d", len(want))
	}

	gen := generation(t, fd)
	n, err := fw.SetMarkRules(all)
	if err != nil || n != len(want) {
		t.Fatalf("SetMarkRules(2000 clusters) = %d, %v; want %d, nil", n, err, len(want))
	}
	if g := generation(t, fd); g != gen+1 {
		t.Errorf("the apply took %d transactions, want 1", g-gen)
	}
	if l := list(t, ns); !slices.Equal(l.Elements, want) || !slices.Equal(l.Rules, fixedRules) {
		missing, extra := diff(want, l.Elements)
		t.Fatalf("nft -j list: %d elements, want %d; rules %q; missing %q; extra %q", len(l.Elements), len(want), l.Rules, head(missing), head(extra))
	}
	got, err := fw.MarkRules()
	if err != nil || !slices.Equal(ruleTexts(got), ruleTexts(all)) {
		t.Errorf("MarkRules() = %d rules, %v; want the %d set", len(got), err, len(all))
	}

	// Cluster 1234 changes its mark: SetMarkRules reads the kernel and touches its 5
	// elements twice (deleted, added with the new mark), nothing else.
	w := watchElements(t, fd)
	old := cs[1234]
	cs[1234] = withMark(old, 9999)
	all = flatten(cs)
	if n, err := fw.SetMarkRules(all); err != nil || n != 10 {
		t.Fatalf("SetMarkRules(one cluster's mark changed) = %d, %v; want 10, nil", n, err)
	}
	added, deleted := w.next(t)
	if !slices.Equal(added, elementTexts(t, cs[1234])) || !slices.Equal(deleted, elementTexts(t, old)) {
		t.Errorf("the change added %q and deleted %q, want %q and %q", added, deleted, elementTexts(t, cs[1234]), elementTexts(t, old))
	}

	// Cluster 77 moves tcp 554 to tcp 8554 through ChangeMarkRules: 2 elements.
	from := cs[77][0]
	to := from
	to.FirstPort, to.LastPort = 8554, 8554
	if n, err := fw.ChangeMarkRules([]dataplane.MarkRule{to}, []dataplane.MarkRule{from}); err != nil || n != 2 {
		t.Fatalf("ChangeMarkRules(cluster 77's tcp 554 -> 8554) = %d, %v; want 2, nil", n, err)
	}
	added, deleted = w.next(t)
	if !slices.Equal(added, ruleTexts([]dataplane.MarkRule{to})) || !slices.Equal(deleted, ruleTexts([]dataplane.MarkRule{from})) {
		t.Errorf("the change added %q and deleted %q, want %v and %v", added, deleted, to, from)
	}
	cs[77][0] = to
	all = flatten(cs)
	if got := list(t, ns).Elements; !slices.Equal(got, elementTexts(t, all)) {
		missing, extra := diff(elementTexts(t, all), got)
		t.Errorf("nft -j list after the changes: missing %q, extra %q", head(missing), head(extra))
	}
	if n, err := fw.SetMarkRules(all); err != nil || n != 0 {
		t.Errorf("SetMarkRules of the same state = %d, %v; want 0, nil", n, err)
	}
}

// diff returns what want has and got lacks, and the reverse; both sorted.
func diff(want, got []string) (missing, extra []string) {
	for _, s := range want {
		if _, ok := slices.BinarySearch(got, s); !ok {
			missing = append(missing, s)
		}
	}
	for _, s := range got {
		if _, ok := slices.BinarySearch(want, s); !ok {
			extra = append(extra, s)
		}
	}
	return missing, extra
}

func head(s []string) []string { return s[:min(len(s), 5)] }

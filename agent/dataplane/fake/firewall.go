package fake

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Firewall is a fake of the agent's nftables table (package nft): mark rules kept as elements
// of an interval map, changed in one transaction at a time, all or nothing.
//
// Like the real one, it keeps single ports and ranges in separate maps, so a port may lie
// inside a range of its mark (Windows Media's udp 1755 inside udp 1024-5000); merges ranges of
// one VIP, protocol and mark that overlap into one element (the kernel's interval map cannot
// hold both); refuses ports that overlap with different marks with dataplane.ErrExist; and
// counts changed elements, not rules. ChangeMarkRules works from the rules the last
// SetMarkRules set: before one succeeded, or after a failed transaction, it refuses with
// dataplane.ErrNotExist so the caller falls back to SetMarkRules.
type Firewall struct {
	recorder
	// groups are the rules by VIP and protocol: elements, overlaps and changes never reach
	// past one, so ChangeMarkRules costs what the change touches, as the real one does.
	groups map[ruleGroup]ruleSet
	known  bool // a SetMarkRules succeeded and no transaction failed since
}

type ruleGroup struct {
	vip   netip.Addr
	proto dataplane.Protocol
}

type ruleSet = map[dataplane.MarkRule]struct{}

func groupOf(r dataplane.MarkRule) ruleGroup { return ruleGroup{r.VIP, r.Protocol} }

// NewFirewall returns a Firewall with no rules.
func NewFirewall() *Firewall {
	return &Firewall{groups: map[ruleGroup]ruleSet{}}
}

// MarkRules lists the rules, sorted.
func (f *Firewall) MarkRules() ([]dataplane.MarkRule, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults.check(Op{Name: "MarkRules"}); err != nil {
		return nil, err
	}
	return f.sortedLocked(), nil
}

// SetMarkRules makes the table hold exactly rules, all or nothing, and returns how many
// elements it added and deleted. A change counts as one operation (one transaction); no
// change, none.
func (f *Firewall) SetMarkRules(rules []dataplane.MarkRule) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "SetMarkRules"}
	if err := f.faults.check(op); err != nil {
		f.known = false
		return 0, err
	}
	want := map[ruleGroup]ruleSet{}
	for i, r := range rules {
		if err := validRule(r); err != nil {
			// nftables refuses the whole transaction when one element is bad.
			return 0, fmt.Errorf("set mark rules: rule %d (%s): %w", i, r, err)
		}
		r.VIP = r.VIP.Unmap()
		g := groupOf(r)
		if want[g] == nil {
			want[g] = ruleSet{}
		}
		want[g][r] = struct{}{}
	}
	changed := 0
	for g := range want {
		n, err := elementChanges(f.groups[g], want[g])
		if err != nil {
			return 0, fmt.Errorf("set mark rules: %w", err)
		}
		changed += n
	}
	for g, s := range f.groups {
		if want[g] == nil {
			n, _ := elementChanges(s, nil) // deleting cannot overlap
			changed += n
		}
	}
	f.known = true
	f.groups = want // also when no element changed: the rules that share them may differ
	if changed == 0 {
		return 0, nil
	}
	f.ops = append(f.ops, op)
	return changed, nil
}

// ChangeMarkRules deletes del and adds add in one transaction and returns how many elements
// it added and deleted; all or nothing. A del not among the rules is refused with
// dataplane.ErrNotExist, an add there already or overlapping a rule of another mark with
// dataplane.ErrExist. A change that moves no element (a range inside a range of the same
// mark) is no operation.
func (f *Firewall) ChangeMarkRules(add, del []dataplane.MarkRule) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "ChangeMarkRules"}
	if err := f.faults.check(op); err != nil {
		f.known = false // as after a transaction the kernel refused
		return 0, err
	}
	for i, r := range add {
		if err := validRule(r); err != nil {
			return 0, fmt.Errorf("change mark rules: add %d (%s): %w", i, r, err)
		}
	}
	for i, r := range del {
		if err := validRule(r); err != nil {
			return 0, fmt.Errorf("change mark rules: del %d (%s): %w", i, r, err)
		}
	}
	if len(add)+len(del) == 0 {
		return 0, nil
	}
	if !f.known {
		return 0, fmt.Errorf("change mark rules: %w: no SetMarkRules has succeeded", dataplane.ErrNotExist)
	}
	next := map[ruleGroup]ruleSet{} // the touched groups as they will be
	touch := func(g ruleGroup) ruleSet {
		if s, ok := next[g]; ok {
			return s
		}
		s := maps.Clone(f.groups[g])
		if s == nil {
			s = ruleSet{}
		}
		next[g] = s
		return s
	}
	for _, r := range del {
		r.VIP = r.VIP.Unmap()
		if _, ok := f.groups[groupOf(r)][r]; !ok {
			return 0, fmt.Errorf("change mark rules: del %s: %w", r, dataplane.ErrNotExist)
		}
		delete(touch(groupOf(r)), r)
	}
	for _, r := range add {
		r.VIP = r.VIP.Unmap()
		s := touch(groupOf(r))
		if _, ok := s[r]; ok {
			return 0, fmt.Errorf("change mark rules: add %s: %w", r, dataplane.ErrExist)
		}
		s[r] = struct{}{}
	}
	changed := 0
	for g, s := range next {
		n, err := elementChanges(f.groups[g], s)
		if err != nil {
			return 0, fmt.Errorf("change mark rules: %w", err)
		}
		changed += n
	}
	for g, s := range next {
		if len(s) == 0 {
			delete(f.groups, g)
		} else {
			f.groups[g] = s
		}
	}
	if changed > 0 {
		f.ops = append(f.ops, op)
	}
	return changed, nil
}

// elementChanges returns how many map elements differ between the rules of from and to (of
// one VIP and protocol), or an error wrapping dataplane.ErrExist when to has overlapping
// ports of different marks.
func elementChanges(from, to map[dataplane.MarkRule]struct{}) (int, error) {
	was, err := elements(from)
	if err != nil {
		return 0, err
	}
	now, err := elements(to)
	if err != nil {
		return 0, err
	}
	n := 0
	for e := range was {
		if _, ok := now[e]; !ok {
			n++
		}
	}
	for e := range now {
		if _, ok := was[e]; !ok {
			n++
		}
	}
	return n, nil
}

// elements returns the maps' elements for rules, as package nft keeps them: single ports
// each an element of a hash map, ranges elements of an interval map, where overlapping ranges
// of one mark merge; ports that overlap with two marks are refused.
func elements(rules map[dataplane.MarkRule]struct{}) (map[dataplane.MarkRule]struct{}, error) {
	sorted := slices.SortedFunc(maps.Keys(rules), compareRules)
	out := map[dataplane.MarkRule]struct{}{}
	for i, r := range sorted {
		// Sorted by VIP and protocol first: only the rules of r's VIP and protocol before it
		// can overlap it (a scan of all of them was quadratic: seconds at 20,000 rules).
		for j := i - 1; j >= 0 && sorted[j].VIP == r.VIP && sorted[j].Protocol == r.Protocol; j-- {
			if o := sorted[j]; o.Mark != r.Mark && r.FirstPort <= o.LastPort && o.FirstPort <= r.LastPort {
				return nil, fmt.Errorf("%s overlaps %s, of another mark: %w", r, o, dataplane.ErrExist)
			}
		}
	}
	var cur dataplane.MarkRule // the range being merged
	for _, r := range sorted {
		if r.FirstPort == r.LastPort {
			out[r] = struct{}{}
			continue
		}
		if cur.VIP == r.VIP && cur.Protocol == r.Protocol && r.FirstPort <= cur.LastPort {
			cur.LastPort = max(cur.LastPort, r.LastPort)
			continue
		}
		if cur.VIP.IsValid() {
			out[cur] = struct{}{}
		}
		cur = r
	}
	if cur.VIP.IsValid() {
		out[cur] = struct{}{}
	}
	return out, nil
}

func validRule(r dataplane.MarkRule) error {
	if !r.VIP.IsValid() {
		return fmt.Errorf("VIP is not valid: %w", syscall.EINVAL)
	}
	switch r.Protocol {
	case dataplane.TCP, dataplane.UDP, dataplane.SCTP:
	default:
		return fmt.Errorf("%s has no ports: %w", r.Protocol, syscall.EINVAL)
	}
	if r.FirstPort > r.LastPort {
		return fmt.Errorf("port range %d-%d is empty: %w", r.FirstPort, r.LastPort, syscall.EINVAL)
	}
	return nil
}

// Dump returns the rules as sorted text, one a line (MarkRule.String).
func (f *Firewall) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for _, r := range f.sortedLocked() {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func (f *Firewall) sortedLocked() []dataplane.MarkRule {
	var out []dataplane.MarkRule
	for _, s := range f.groups {
		for r := range s {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, compareRules)
	return out
}

func compareRules(a, b dataplane.MarkRule) int {
	if c := a.VIP.Compare(b.VIP); c != 0 {
		return c
	}
	if a.Protocol != b.Protocol {
		return int(a.Protocol) - int(b.Protocol)
	}
	if a.FirstPort != b.FirstPort {
		return int(a.FirstPort) - int(b.FirstPort)
	}
	if a.LastPort != b.LastPort {
		return int(a.LastPort) - int(b.LastPort)
	}
	return cmpUint32(a.Mark, b.Mark)
}

package fake

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Firewall is a fake of the agent's nftables table: a set of mark rules replaced in one
// transaction.
type Firewall struct {
	recorder
	rules map[dataplane.MarkRule]struct{}
}

// NewFirewall returns a Firewall with no rules.
func NewFirewall() *Firewall {
	return &Firewall{rules: map[dataplane.MarkRule]struct{}{}}
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

// SetMarkRules makes the table hold exactly rules, all or nothing, and returns how many rules
// it added and deleted. A change counts as one operation (one transaction); no change, none.
func (f *Firewall) SetMarkRules(rules []dataplane.MarkRule) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "SetMarkRules"}
	if err := f.faults.check(op); err != nil {
		return 0, err
	}
	want := map[dataplane.MarkRule]struct{}{}
	for i, r := range rules {
		if err := validRule(r); err != nil {
			// nftables refuses the whole transaction when one element is bad.
			return 0, fmt.Errorf("set mark rules: rule %d (%s): %w", i, r, err)
		}
		want[r] = struct{}{}
	}
	changed := 0
	for r := range f.rules {
		if _, ok := want[r]; !ok {
			changed++
		}
	}
	for r := range want {
		if _, ok := f.rules[r]; !ok {
			changed++
		}
	}
	if changed == 0 {
		return 0, nil
	}
	f.rules = want
	f.ops = append(f.ops, op)
	return changed, nil
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
	out := make([]dataplane.MarkRule, 0, len(f.rules))
	for r := range f.rules {
		out = append(out, r)
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

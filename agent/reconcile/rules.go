package reconcile

import (
	"fmt"
	"maps"
	"slices"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// ruleCounts counts, for each mark rule, the clusters that want it.
func ruleCounts(specs []*clusterSpec) map[dataplane.MarkRule]int {
	n := 0
	for _, s := range specs {
		n += len(s.rules)
	}
	counts := make(map[dataplane.MarkRule]int, n)
	for _, s := range specs {
		for _, r := range s.rules {
			counts[r]++
		}
	}
	return counts
}

// syncRules replaces the agent's mark rules with the clusters' in one transaction, and returns
// the rules' counts (nil when the rules are frozen). Its failure belongs to no single cluster,
// so it is a director error.
func (a *apply) syncRules(specs []*clusterSpec) map[dataplane.MarkRule]int {
	if a.rulesFrozen {
		return nil // reported when the rules could not be read
	}
	counts := ruleCounts(specs)
	a.setRules(counts)
	return counts
}

func (a *apply) setRules(counts map[dataplane.MarkRule]int) {
	rules := slices.Collect(maps.Keys(counts))
	n, err := a.r.fw.SetMarkRules(rules)
	if err != nil {
		a.directorErr(fmt.Errorf("set mark rules: %w", err))
		return
	}
	if n > 0 {
		a.res.Operations++
		a.r.log.Info("kernel change", "op", "set-mark-rules", "changed", n, "rules", len(rules))
	}
}

// changeRules moves the rule counts from the old to the new specs of changed clusters, and
// makes the kernel follow in one transaction of the rules that appear or disappear (O(change));
// if the firewall refuses that (it does not hold what the agent thinks), it falls back to
// replacing all of them.
func (a *apply) changeRules(counts map[dataplane.MarkRule]int, old, now []*clusterSpec) {
	before := map[dataplane.MarkRule]int{}
	for _, s := range old {
		for _, r := range s.rules {
			if _, ok := before[r]; !ok {
				before[r] = counts[r]
			}
			counts[r]--
		}
	}
	for _, s := range now {
		for _, r := range s.rules {
			if _, ok := before[r]; !ok {
				before[r] = counts[r]
			}
			counts[r]++
		}
	}
	var add, del []dataplane.MarkRule
	for r, was := range before {
		switch is := counts[r]; {
		case was > 0 && is <= 0:
			del = append(del, r)
		case was <= 0 && is > 0:
			add = append(add, r)
		}
		if counts[r] <= 0 {
			delete(counts, r)
		}
	}
	if len(add)+len(del) == 0 {
		return
	}
	n, err := a.r.fw.ChangeMarkRules(add, del)
	if err != nil {
		// ErrNotExist or ErrExist: the table is not as remembered (drift, a failed transaction);
		// anything else is retried the same way, and reported if that fails too.
		a.r.log.Info("changing mark rules refused: replacing them all", "error", err)
		a.setRules(counts)
		return
	}
	if n > 0 {
		a.res.Operations++
		a.r.log.Info("kernel change", "op", "change-mark-rules", "changed", n, "added", len(add), "deleted", len(del))
	}
}

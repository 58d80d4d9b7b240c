package reconcile

import (
	"fmt"
	"maps"
	"net/netip"
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

// ruleGroup is a VIP and protocol: rules overlap only within one.
type ruleGroup struct {
	vip   netip.Addr
	proto dataplane.Protocol
}

func groupOf(r dataplane.MarkRule) ruleGroup { return ruleGroup{r.VIP, r.Protocol} }

func overlap(x, y dataplane.MarkRule) bool {
	return groupOf(x) == groupOf(y) && x.FirstPort <= y.LastPort && y.FirstPort <= x.LastPort
}

// resolvedRuleCounts is ruleCounts of specs (in name order) without the rules whose ports
// overlap a rule of another mark of a cluster before them: the firewall refuses such a pair,
// and with it the whole transaction, which would leave every cluster without its marks (a
// store may hold such clusters from before validation refused them). Each rule left out is
// that cluster's error, naming the cluster that keeps the ports, and the next delta takes the
// full path: which cluster wins depends on every cluster's name.
func (a *apply) resolvedRuleCounts(specs []*clusterSpec) map[dataplane.MarkRule]int {
	counts := ruleCounts(specs)
	groups := map[ruleGroup][]dataplane.MarkRule{}
	for r := range counts {
		groups[groupOf(r)] = append(groups[groupOf(r)], r)
	}
	// Sorted by first port, the rules before r that contain r's first port all contain it, so
	// if none clash so far they share one mark: the one reaching furthest stands for them.
	clashing := map[ruleGroup]bool{}
	for g, rs := range groups {
		slices.SortFunc(rs, func(x, y dataplane.MarkRule) int { return int(x.FirstPort) - int(y.FirstPort) })
		var reach dataplane.MarkRule
		for i, r := range rs {
			if i > 0 && r.FirstPort <= reach.LastPort && r.Mark != reach.Mark {
				clashing[g] = true
				break
			}
			if i == 0 || r.LastPort > reach.LastPort {
				reach = r
			}
		}
	}
	if len(clashing) == 0 {
		return counts
	}
	// The clashing groups' rules again, cluster by cluster in name order.
	type kept struct {
		rule    dataplane.MarkRule
		cluster string
	}
	taken := map[ruleGroup][]kept{}
	for _, s := range specs {
		for _, r := range s.rules {
			g := groupOf(r)
			if !clashing[g] {
				continue
			}
			i := slices.IndexFunc(taken[g], func(k kept) bool { return k.rule.Mark != r.Mark && overlap(k.rule, r) })
			if i < 0 {
				taken[g] = append(taken[g], kept{r, s.name})
				continue
			}
			a.needFull = true
			a.clusterErr(s.name, fmt.Errorf("mark rule %s: its ports overlap cluster %q's %s: left out", r, taken[g][i].cluster, taken[g][i].rule))
			if counts[r]--; counts[r] <= 0 {
				delete(counts, r)
			}
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
	counts := a.resolvedRuleCounts(specs)
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
// if the firewall refuses that (it does not hold what the agent thinks, or a new rule overlaps
// one of another mark), it falls back to replacing all of them with those of every cluster,
// all(), less the overlapping ones, and returns their counts (else nil).
func (a *apply) changeRules(counts map[dataplane.MarkRule]int, old, now []*clusterSpec, all func() []*clusterSpec) map[dataplane.MarkRule]int {
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
		return nil
	}
	n, err := a.r.fw.ChangeMarkRules(add, del)
	if err != nil {
		// ErrNotExist or ErrExist: the table is not as remembered (drift, a failed transaction)
		// or a new rule overlaps one of another mark; anything else is retried the same way,
		// and reported if that fails too.
		a.r.log.Info("changing mark rules refused: replacing them all", "error", err)
		counts = a.resolvedRuleCounts(all())
		a.setRules(counts)
		return counts
	}
	if n > 0 {
		a.res.Operations++
		a.r.log.Info("kernel change", "op", "change-mark-rules", "changed", n, "added", len(add), "deleted", len(del))
	}
	return nil
}

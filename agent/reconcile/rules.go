package reconcile

import (
	"fmt"
	"slices"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// syncRules replaces the agent's mark rules with the clusters' in one transaction. Its failure
// belongs to no single cluster, so it is a director error.
func (a *apply) syncRules(specs []*clusterSpec) {
	if a.rulesFrozen {
		return // reported when the rules could not be read
	}
	var rules []dataplane.MarkRule
	for _, s := range specs {
		for _, r := range s.rules {
			if !slices.Contains(rules, r) {
				rules = append(rules, r)
			}
		}
	}
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

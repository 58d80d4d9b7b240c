package reconcile

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// ErrAdoptDiffers: a cluster marked for adoption (lvsctl apply --adopt) found the kernel's
// service with its key different from what it describes: left alone, and the cluster refused
// as if foreign, so that a migration never edits what it was meant to take over as it is.
var ErrAdoptDiffers = errors.New("the kernel's service differs from the cluster: not adopted")

// adoptDiff says how the kernel's service (cur, curDests) differs from the spec's, "" when it
// is exactly as described: the same service settings, and the same destinations with the same
// port, weight, forwarding and thresholds. The order of the destinations does not matter (the
// kernel lists them in its own order).
func adoptDiff(cur *dataplane.Service, curDests []dataplane.Destination, s *clusterSpec) string {
	if cur == nil {
		return "the kernel's service was not read"
	}
	var diffs []string
	if *cur != s.svc {
		diffs = append(diffs, fieldDiffs(*cur, s.svc)...)
	}
	want := make(map[dataplane.Destination]bool, len(s.dests))
	for _, d := range s.dests {
		want[d] = true
	}
	var extra []string
	for _, d := range curDests {
		if !want[d] {
			extra = append(extra, fmt.Sprintf("%+v", d))
			continue
		}
		delete(want, d)
	}
	var missing []string
	for d := range want {
		missing = append(missing, fmt.Sprintf("%+v", d))
	}
	slices.Sort(extra)
	slices.Sort(missing)
	if len(extra) > 0 {
		diffs = append(diffs, "the kernel has "+strings.Join(extra, ", ")+" which the cluster does not")
	}
	if len(missing) > 0 {
		diffs = append(diffs, "the cluster has "+strings.Join(missing, ", ")+" which the kernel does not")
	}
	return strings.Join(diffs, "; ")
}

// fieldDiffs lists the fields in which the kernel's service differs from the cluster's, by
// name (its key is the same: that is how it was found), as "Scheduler: the kernel has wlc,
// the cluster rr".
func fieldDiffs(kernel, cluster dataplane.Service) []string {
	k, c := reflect.ValueOf(kernel), reflect.ValueOf(cluster)
	var out []string
	for i := range k.NumField() {
		f := k.Type().Field(i)
		if f.Anonymous || k.Field(i).Equal(c.Field(i)) {
			continue
		}
		out = append(out, fmt.Sprintf("%s: the kernel has %v, the cluster %v", f.Name, k.Field(i), c.Field(i)))
	}
	return out
}

package commands

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func newRollbackCmd(o *options) *cobra.Command {
	rollback := &cobra.Command{
		Use:   "rollback",
		Short: "Restore a cluster or a director group as it was at an earlier revision",
		Long: `rollback writes an object back as it was at a revision that lvsctl history lists for it,
as a new revision: the old value goes through apply's checks (a rollback that now conflicts
with another object, say its VIP taken since, is refused as an apply would be), a cluster
keeps its fwmark, and a rollback to a revision that deleted the object deletes it (one to a
revision before a deletion re-creates it). It prints what apply prints; --dry-run prints
the changes and each director group's plan, as diff does, and changes nothing.`,
		RunE: unknownSubcommand,
	}
	var to int64
	var dryRun bool
	rollback.PersistentFlags().Int64Var(&to, "to", 0, "the revision to restore, as lvsctl history lists it (required)")
	rollback.PersistentFlags().BoolVar(&dryRun, "dry-run", false, "print what would change and change nothing")
	one := func(kind lvsctlv1.Kind, use string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME --to REVISION",
			Short: "Restore a " + use + " as it was at a revision of its history",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if to <= 0 {
					return fmt.Errorf("--to: required: a revision that lvsctl history %s %s lists", use, args[0])
				}
				return o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
					resp, err := c.Rollback(ctx, &lvsctlv1.RollbackRequest{Kind: kind, Name: args[0], ToRevision: to, DryRun: dryRun})
					if err != nil {
						return o.fromRPC(err)
					}
					if dryRun {
						printPlan(o, resp.GetResult())
						return nil
					}
					printApplied(o, resp.GetResult())
					return nil
				})
			},
		}
	}
	rollback.AddCommand(one(lvsctlv1.Kind_KIND_CLUSTER, "cluster"), one(lvsctlv1.Kind_KIND_GROUP, "group"))
	return rollback
}

// printApplied prints each object's outcome as apply does: `cluster/wms configured (revision 12)`.
func printApplied(o *options, resp *lvsctlv1.ApplyResponse) {
	revisions := map[objectKey]int64{}
	for _, obj := range resp.GetObjects() {
		revisions[keyOf(obj)] = objectRevision(obj)
	}
	for _, r := range resp.GetResults() {
		rev, ok := revisions[objectKey{r.GetKind(), r.GetName()}]
		if !ok {
			rev = resp.GetRevision()
		}
		fmt.Fprintf(o.streams.Out, "%s/%s %s (revision %d)\n", kindWord(r.GetKind()), r.GetName(), actionWord(r.GetAction()), rev)
	}
}

// printPlan prints what a dry run would change, as diff does: each object's changes, then each
// director group's plan; an object that would not change says so.
func printPlan(o *options, resp *lvsctlv1.ApplyResponse) {
	for _, r := range resp.GetResults() {
		fmt.Fprintf(o.streams.Out, "%s/%s would be %s\n", kindWord(r.GetKind()), r.GetName(), actionWord(r.GetAction()))
		for _, c := range r.GetChanges() {
			fmt.Fprintf(o.streams.Out, "  %s\n", c)
		}
	}
	for _, p := range resp.GetPlans() {
		if len(p.GetChanges()) == 0 {
			continue
		}
		fmt.Fprintf(o.streams.Out, "group %s (directors %s) would:\n", p.GetGroup(), strings.Join(p.GetDirectors(), ", "))
		for _, c := range p.GetChanges() {
			fmt.Fprintf(o.streams.Out, "  %s\n", c)
		}
	}
}

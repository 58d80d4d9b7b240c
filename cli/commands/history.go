package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func newHistoryCmd(o *options) *cobra.Command {
	history := &cobra.Command{
		Use:   "history",
		Short: "Show who changed a cluster or a director group, when, and what",
		Long: `history lists an object's recorded changes, newest first: the revision each made (what
rollback --to takes), when, who (the certificate identity of the caller), the action
(created, updated, deleted, drained, enabled, rolled back to N, failover) and what changed.
Entries hold the object's whole value (-o yaml/json prints it), so they outlive etcd's
compaction; the controller keeps the newest --history-retention entries of each object,
also after the object is deleted.`,
		RunE: unknownSubcommand,
	}
	addOutputFlag(history)
	var limit int32
	history.PersistentFlags().Int32Var(&limit, "limit", 0, "show only the newest N entries (0: every kept entry)")
	one := func(kind lvsctlv1.Kind, use string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: "Show the recorded changes of a " + use,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if limit < 0 {
					return fmt.Errorf("--limit: %d is negative", limit)
				}
				p, err := printFormat(cmd)
				if err != nil {
					return err
				}
				return o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
					resp, err := c.History(ctx, &lvsctlv1.HistoryRequest{Kind: kind, Name: args[0], Limit: limit})
					if err != nil {
						return o.fromRPC(err)
					}
					return p.History(o.streams.Out, resp.GetEntries())
				})
			},
		}
	}
	history.AddCommand(one(lvsctlv1.Kind_KIND_CLUSTER, "cluster"), one(lvsctlv1.Kind_KIND_GROUP, "group"))
	return history
}

package commands

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/lvsctl/lvsctl/cli/printer"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func newFailoverCmd(o *options) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "failover GROUP",
		Short: "Move a director group's ACTIVE role to another director (planned switchover)",
		Long: `Move a director group's ACTIVE role to another director: --to names it, or else the
connected STANDBY of highest priority is chosen. The controller first makes every director
STANDBY, waits until the old ACTIVE has released the VIPs and gateway (or, if it is lost, until
its fence time has surely passed), and only then makes the new one ACTIVE: two directors never
hold the addresses at once, and the IPVS sync daemons carry the connections across.

It prints the new assignment once it is stored, e.g.
  edge-1: ACTIVE dir-a -> dir-b (epoch 42, dir-a released in 180ms)
--timeout bounds the whole wait. lvsctl status shows when the new ACTIVE holds the addresses.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := printFormat(cmd)
			if err != nil {
				return err
			}
			var resp *lvsctlv1.FailoverResponse
			err = o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
				resp, err = c.Failover(ctx, &lvsctlv1.FailoverRequest{Group: args[0], To: to})
				return o.fromRPC(err)
			})
			if err != nil {
				return err
			}
			return p.Failover(o.streams.Out, printer.ViewFailover(args[0], resp))
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the director to make ACTIVE (default: the connected STANDBY of highest priority)")
	addOutputFlag(cmd)
	return cmd
}

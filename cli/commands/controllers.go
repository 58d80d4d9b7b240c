package commands

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/lvsctl/lvsctl/cli/printer"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// controllerView is a controller as `get controllers -o json|yaml` prints it: the
// contract's field names (address, leader).
type controllerView struct {
	Address string    `json:"address"`
	Leader  bool      `json:"leader"`
	Started time.Time `json:"started"`
}

// newGetControllersCmd is `lvsctl get controllers`: every live controller and which leads,
// the same from any of them (they read etcd's registrations).
func newGetControllersCmd(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "controllers",
		Aliases: []string{"controller"},
		Short:   "Show every live controller and which one leads",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := o.context(cmd.Context())
			defer cancel()
			resp, err := lvsctlv1.NewStatusServiceClient(conn).ListControllers(ctx, &lvsctlv1.ListControllersRequest{})
			if err != nil {
				return o.fromRPC(err)
			}
			views := []controllerView{}
			for _, c := range resp.GetControllers() {
				views = append(views, controllerView{Address: c.GetAddress(), Leader: c.GetLeader(), Started: c.GetStarted().AsTime().UTC()})
			}
			out := o.streams.Out
			switch f {
			case printer.JSON:
				b, err := json.MarshalIndent(views, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			case printer.YAML:
				b, err := yaml.Marshal(views)
				if err != nil {
					return err
				}
				_, err = out.Write(b)
				return err
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tLEADER\tSTARTED")
			for _, v := range views {
				fmt.Fprintf(tw, "%s\t%t\t%s\n", v.Address, v.Leader, v.Started.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

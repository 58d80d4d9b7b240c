package commands

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lvsctl/lvsctl/importer"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// newExportCmd is `lvsctl export ipvsadm|keepalived (cluster NAME | group NAME)`: the
// issue-12 contract. The file goes to stdout; what the target cannot say goes to stderr, one
// line each, so nothing is dropped silently.
func newExportCmd(o *options) *cobra.Command {
	exp := &cobra.Command{
		Use:   "export",
		Short: "Print a cluster or group as an ipvsadm-restore file or a keepalived.conf",
		Long: `export prints what the controller stores as the old tools' files, for review and for a
rollback to them. Neither file holds the VIPs' ports (they are in the firewall marks): --marks
prints those marks instead, as a shell script of iptables -t mangle lines. A rollback is then,
on each director, once lvsctl's agent no longer programs it (the files add services and rules;
they clear nothing):

  lvsctl export ipvsadm --marks group G > marks.sh;  sh marks.sh
  lvsctl export ipvsadm group G | ipvsadm-restore
or, instead of ipvsadm-restore, keepalived with the file of each director:
  lvsctl export keepalived --director D group G > /etc/keepalived/keepalived.conf

Settings the file cannot express are listed on stderr as KIND/NAME: what and why.`,
		RunE: unknownSubcommand,
	}
	var marks bool
	var director string
	var vrid uint32
	run := func(cmd *cobra.Command, args []string, write func([]*lvsctlv1.Object) (*importer.Exported, error)) error {
		kind, name := args[0], args[1]
		if kind != "cluster" && kind != "group" {
			return fmt.Errorf("export %s: want cluster NAME or group NAME, not %q", cmd.Name(), kind)
		}
		objs, err := o.exportObjects(cmd.Context(), kind, name)
		if err != nil {
			return err
		}
		if marks {
			write = importer.ExportMarks
		}
		e, err := write(objs)
		if err != nil {
			return err
		}
		for _, n := range e.Notes {
			fmt.Fprintln(o.streams.Err, n)
		}
		_, err = o.streams.Out.Write(e.Text)
		return err
	}
	ipvs := &cobra.Command{
		Use:       "ipvsadm (cluster NAME | group NAME)",
		Short:     "Print an ipvsadm-restore file (ipvsadm-save -n format) of the clusters",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"cluster", "group"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, args, importer.ExportIpvsadm)
		},
	}
	ka := &cobra.Command{
		Use:   "keepalived (cluster NAME | group NAME)",
		Short: "Print a keepalived.conf: the group's vrrp_instance for one director and the virtual_servers",
		Long: `export keepalived prints one director's keepalived.conf (keepalived runs one file per
director; they differ in router_id, state, priority and unicast addresses): --director names it,
by default the director of highest priority. A cluster alone prints its virtual_server only.`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"cluster", "group"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if director != "" && args[0] != "group" {
				return fmt.Errorf("--director needs group NAME")
			}
			return run(cmd, args, func(objs []*lvsctlv1.Object) (*importer.Exported, error) {
				return importer.ExportKeepalived(objs, importer.KeepalivedExportOptions{Director: director, VRID: vrid})
			})
		},
	}
	ka.Flags().StringVar(&director, "director", "", "the director whose keepalived.conf is printed (default: the highest priority)")
	ka.Flags().Uint32Var(&vrid, "vrid", 0, "the vrrp_instance's virtual_router_id, 1-255 (default: the sync id, else one from the group's name)")
	for _, c := range []*cobra.Command{ipvs, ka} {
		c.Flags().BoolVar(&marks, "marks", false, "print the firewall marks (an iptables -t mangle script) instead")
	}
	exp.AddCommand(ipvs, ka)
	return exp
}

// exportObjects fetches a cluster, or a group and every cluster of it.
func (o *options) exportObjects(ctx context.Context, kind, name string) ([]*lvsctlv1.Object, error) {
	var objs []*lvsctlv1.Object
	err := o.withConfig(ctx, func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
		k := lvsctlv1.Kind_KIND_CLUSTER
		if kind == "group" {
			k = lvsctlv1.Kind_KIND_GROUP
		}
		resp, err := c.Get(ctx, &lvsctlv1.GetRequest{Kind: k, Name: name})
		if err != nil {
			return o.fromRPC(err)
		}
		objs = append(objs, resp.GetObject())
		if kind != "group" {
			return nil
		}
		list, err := c.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER})
		if err != nil {
			return o.fromRPC(err)
		}
		var cs []*lvsctlv1.Object
		for _, ob := range list.GetObjects() {
			if ob.GetCluster().GetDirectorGroup() == name {
				cs = append(cs, ob)
			}
		}
		slices.SortFunc(cs, func(a, b *lvsctlv1.Object) int {
			return strings.Compare(a.GetCluster().GetName(), b.GetCluster().GetName())
		})
		objs = append(objs, cs...)
		return nil
	})
	return objs, err
}

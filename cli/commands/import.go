package commands

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/lvsctl/lvsctl/importer"
)

// newImportCmd is `lvsctl import keepalived|ipvsadm`: the issue-12 contract. It needs no
// controller: manifests on stdout, every setting not carried over on stderr as
// FILE:LINE: what and why.
func newImportCmd(o *options) *cobra.Command {
	imp := &cobra.Command{
		Use:   "import",
		Short: "Print lvsctl manifests from a keepalived.conf or ipvsadm-save output",
	}
	var group, marks string
	readMarks := func() (importer.Marks, []importer.Warning, error) {
		if marks == "" {
			return nil, nil, nil
		}
		data, err := os.ReadFile(marks)
		if err != nil {
			return nil, nil, fmt.Errorf("--marks: %w", err)
		}
		m, w := importer.ParseMarks(marks, data)
		return m, w, nil
	}
	emit := func(res *importer.Result, warns []importer.Warning, err error) error {
		for _, w := range append(warns, res.Warnings...) {
			fmt.Fprintln(o.streams.Err, w.String())
		}
		if errors.Is(err, importer.ErrNothing) {
			return fmt.Errorf("nothing imported (see the lines above)")
		}
		out, err := res.Manifest()
		if err != nil {
			return err
		}
		_, err = o.streams.Out.Write(out)
		return err
	}
	ka := &cobra.Command{
		Use:   "keepalived FILE...",
		Short: "Import keepalived.conf files (one per director of one group)",
		Long: `import keepalived prints a cluster per virtual_server (fwmark ones with --marks for their
VIPs and ports; plain VIP PORT ones, and each entry of a virtual_server_group, as plain
services) and one DirectorGroup built from the vrrp_instance of each FILE (one file per
director, named by its router_id). What it cannot carry over is listed on stderr.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			m, warns, err := readMarks()
			if err != nil {
				return err
			}
			res, err := importer.Keepalived(args, importer.KeepalivedOptions{Group: group, Marks: m})
			if err != nil && !errors.Is(err, importer.ErrNothing) {
				return err
			}
			return emit(res, warns, err)
		},
	}
	ipvs := &cobra.Command{
		Use:   "ipvsadm FILE",
		Short: "Import ipvsadm-save -n output (plain services; fwmark services with their marks kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			m, warns, err := readMarks()
			if err != nil {
				return err
			}
			res, err := importer.Ipvsadm(args[0], data, importer.IpvsadmOptions{Group: group, Marks: m})
			if err != nil && !errors.Is(err, importer.ErrNothing) {
				return err
			}
			return emit(res, warns, err)
		},
	}
	for _, c := range []*cobra.Command{ka, ipvs} {
		c.Flags().StringVar(&group, "group", "", "director group name (keepalived: default from the vrrp_instance's name)")
		c.Flags().StringVar(&marks, "marks", "", "the fwmark services' VIPs and ports: iptables-save -t mangle, nft list ruleset or an iptables script")
	}
	imp.AddCommand(ka, ipvs)
	return imp
}

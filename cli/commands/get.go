package commands

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/cli/printer"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	"github.com/lvsctl/lvsctl/failover"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// withConfig runs f with a ConfigService client and the request deadline.
func (o *options) withConfig(ctx context.Context, f func(context.Context, lvsctlv1.ConfigServiceClient) error) error {
	conn, err := o.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := o.context(ctx)
	defer cancel()
	return f(ctx, lvsctlv1.NewConfigServiceClient(conn))
}

// fleetStatus fetches every director's status, sorted by name, with the fleet's totals per
// cluster, keeping only one cluster's stats when cluster is set and none when totalsOnly
// (each director's totals are always there).
func (o *options) fleetStatus(ctx context.Context, cluster string, totalsOnly bool) (*lvsctlv1.StatusServiceListResponse, error) {
	conn, err := o.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := o.context(ctx)
	defer cancel()
	resp, err := lvsctlv1.NewStatusServiceClient(conn).List(ctx, &lvsctlv1.StatusServiceListRequest{Cluster: cluster, TotalsOnly: totalsOnly})
	if err != nil {
		return nil, o.fromRPC(err)
	}
	sortDirectors(resp.GetDirectors())
	return resp, nil
}

// directors fetches every director's status, sorted by name, with only one cluster's stats
// when cluster is set and none otherwise.
func (o *options) directors(ctx context.Context, cluster string) ([]*lvsctlv1.DirectorStatus, error) {
	resp, err := o.fleetStatus(ctx, cluster, cluster == "")
	return resp.GetDirectors(), err
}

func sortDirectors(ds []*lvsctlv1.DirectorStatus) {
	slices.SortFunc(ds, func(a, b *lvsctlv1.DirectorStatus) int { return strings.Compare(a.GetDirector(), b.GetDirector()) })
}

func newGetCmd(o *options) *cobra.Command {
	get := &cobra.Command{
		Use:   "get",
		Short: "Show clusters, director groups or directors",
		RunE:  unknownSubcommand,
	}
	addOutputFlag(get)
	objects := func(kind lvsctlv1.Kind, use string, aliases ...string) *cobra.Command {
		return &cobra.Command{
			Use:     use + " [NAME]",
			Aliases: aliases,
			Short:   "Show one " + use + " or all of them",
			Args:    cobra.MaximumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				p, err := printFormat(cmd)
				if err != nil {
					return err
				}
				return o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
					if len(args) == 1 {
						resp, err := c.Get(ctx, &lvsctlv1.GetRequest{Kind: kind, Name: args[0]})
						if err != nil {
							return o.fromRPC(err)
						}
						return p.Objects(o.streams.Out, []*lvsctlv1.Object{resp.GetObject()}, true)
					}
					var md metadata.MD
					resp, err := c.List(ctx, &lvsctlv1.ListRequest{Kind: kind}, grpc.Header(&md))
					if err != nil {
						return o.fromRPC(err)
					}
					o.warnings(md)
					objs := resp.GetObjects()
					slices.SortFunc(objs, func(a, b *lvsctlv1.Object) int { return strings.Compare(keyOf(a).name, keyOf(b).name) })
					return p.Objects(o.streams.Out, objs, false)
				})
			},
		}
	}
	get.AddCommand(
		objects(lvsctlv1.Kind_KIND_CLUSTER, "cluster", "clusters"),
		objects(lvsctlv1.Kind_KIND_GROUP, "group", "groups"),
		&cobra.Command{
			Use:     "directors",
			Aliases: []string{"director"},
			Short:   "Show every director: group, connection, role and revisions",
			Args:    cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				p, err := printFormat(cmd)
				if err != nil {
					return err
				}
				ds, err := o.directors(cmd.Context(), "")
				if err != nil {
					return err
				}
				return p.Directors(o.streams.Out, ds)
			},
		},
		newGetControllersCmd(o),
	)
	return get
}

func newDeleteCmd(o *options) *cobra.Command {
	del := &cobra.Command{
		Use:   "delete",
		Short: "Delete a cluster or a director group",
		RunE:  unknownSubcommand,
	}
	var revision int64
	del.PersistentFlags().Int64Var(&revision, "revision", 0, "refuse the delete unless the object is still at this revision")
	one := func(kind lvsctlv1.Kind, use string) *cobra.Command {
		return &cobra.Command{
			Use:   use + " NAME",
			Short: "Delete a " + use,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				return o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
					resp, err := c.Delete(ctx, &lvsctlv1.DeleteRequest{Kind: kind, Name: args[0], Revision: revision})
					if err != nil {
						return o.fromRPC(err)
					}
					fmt.Fprintf(o.streams.Out, "%s/%s deleted (revision %d)\n", kindWord(kind), args[0], resp.GetRevision())
					return nil
				})
			},
		}
	}
	del.AddCommand(one(lvsctlv1.Kind_KIND_CLUSTER, "cluster"), one(lvsctlv1.Kind_KIND_GROUP, "group"))
	return del
}

func newDescribeCmd(o *options) *cobra.Command {
	describe := &cobra.Command{
		Use:   "describe",
		Short: "Show an object in detail, with the state of its directors",
		RunE:  unknownSubcommand,
	}
	describe.AddCommand(&cobra.Command{
		Use:   "cluster NAME",
		Short: "Show a cluster, its group, and each director's role, applied revision, errors and connections",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var cl *lvsctlv1.Cluster
			var group *lvsctlv1.DirectorGroup
			err := o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
				resp, err := c.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: args[0]})
				if err != nil {
					return o.fromRPC(err)
				}
				cl = resp.GetObject().GetCluster()
				gresp, err := c.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_GROUP, Name: cl.GetDirectorGroup()})
				// A missing group is worth showing, not failing on: describe is for diagnosis.
				if status.Code(err) != codes.NotFound && err != nil {
					return o.fromRPC(err)
				}
				group = gresp.GetObject().GetGroup()
				return nil
			})
			if err != nil {
				return err
			}
			ds, err := o.directors(cmd.Context(), cl.GetName())
			if err != nil {
				return err
			}
			return describeCluster(o.streams.Out, cl, group, ds)
		},
	})
	describe.AddCommand(&cobra.Command{
		Use:   "group NAME",
		Short: "Show a director group, its failover settings, its clusters and each director's role, peers and sync daemons",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var group *lvsctlv1.DirectorGroup
			var clusters []string
			err := o.withConfig(cmd.Context(), func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
				resp, err := c.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_GROUP, Name: args[0]})
				if err != nil {
					return o.fromRPC(err)
				}
				group = resp.GetObject().GetGroup()
				var md metadata.MD
				list, err := c.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER}, grpc.Header(&md))
				if err != nil {
					return o.fromRPC(err)
				}
				o.warnings(md)
				for _, obj := range list.GetObjects() {
					if cl := obj.GetCluster(); cl.GetDirectorGroup() == group.GetName() {
						clusters = append(clusters, cl.GetName())
					}
				}
				slices.Sort(clusters)
				return nil
			})
			if err != nil {
				return err
			}
			ds, err := o.directors(cmd.Context(), "")
			if err != nil {
				return err
			}
			return describeGroup(o.streams.Out, group, clusters, ds)
		},
	})
	return describe
}

// describeGroup prints a group: its settings (failover ones with the defaults filled in, as
// the directors use them), its clusters, the ACTIVE as the directors report it, and each
// director's view of its role, peers and sync daemons.
func describeGroup(w io.Writer, g *lvsctlv1.DirectorGroup, clusters []string, ds []*lvsctlv1.DirectorStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Group:\t%s\n", g.GetName())
	fmt.Fprintf(tw, "Revision:\t%d\n", g.GetRevision())
	fmt.Fprintf(tw, "VIP interface:\t%s\n", g.GetVipInterface())
	gw := "none"
	if g.GetGateway() != nil {
		gw = g.GetGateway().GetAddress() + " on " + g.GetGateway().GetInterface()
	}
	fmt.Fprintf(tw, "Gateway:\t%s\n", gw)
	sync := "none"
	if g.GetSync() != nil {
		sync = fmt.Sprintf("%s, sync id %d", g.GetSync().GetInterface(), g.GetSync().GetSyncId())
	}
	fmt.Fprintf(tw, "Sync:\t%s\n", sync)
	f := failover.Of(g)
	fmt.Fprintf(tw, "Failover:\theartbeat every %s, lost after %s, fence %s, preempt %s, port %d\n",
		f.Interval, f.DeadAfter, f.Fence, yesNo(f.Preempt), f.Port)
	fmt.Fprintf(tw, "Clusters:\t%s\n", dash(strings.Join(clusters, ", ")))
	status := map[string]*lvsctlv1.DirectorStatus{}
	for _, d := range ds {
		status[d.GetDirector()] = d
	}
	// The ACTIVE of the highest epoch any member reports: a lower one is an assignment that
	// director has not yet heard was replaced.
	var active *lvsctlv1.DirectorStatus
	for _, m := range g.GetDirectors() {
		if d := status[m.GetName()]; d.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && d.GetEpoch() >= active.GetEpoch() {
			active = d
		}
	}
	if active != nil {
		v := printer.ViewDirector(active)
		held := "holds the VIPs and gateway"
		switch {
		case !v.Holding && v.Fenced != "":
			held = "fenced: " + v.Fenced
		case !v.Holding:
			held = "does not hold the VIPs and gateway (yet)"
		}
		fmt.Fprintf(tw, "Active:\t%s, epoch %d: %s\n", v.Name, v.Epoch, held)
	} else {
		fmt.Fprintf(tw, "Active:\tnone reported\n")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Directors:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tPRIORITY\tADDRESS\tCONNECTED\tROLE\tEPOCH\tPEERS\tSYNC")
	var notes []string
	for _, m := range g.GetDirectors() {
		d := status[m.GetName()]
		v := printer.ViewDirector(d)
		epoch := ""
		if d != nil {
			epoch = fmt.Sprint(v.Epoch)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.GetName(), m.GetPriority(), dash(m.GetAddress()), yesNo(v.Connected),
			dash(printer.RoleText(v)), dash(epoch), dash(printer.PeersText(v.Peers)), dash(printer.SyncText(v.Sync)))
		if v.Fenced != "" && !v.Holding {
			notes = append(notes, fmt.Sprintf("  %s: fenced: %s", m.GetName(), v.Fenced))
		}
		if v.Sync != nil && v.Sync.Error != "" {
			notes = append(notes, fmt.Sprintf("  %s: sync: %s", m.GetName(), v.Sync.Error))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "Notes:\n%s\n", strings.Join(notes, "\n"))
	}
	return nil
}

// thresholdText is a real server's connection thresholds as describe shows them: "-" for
// none, "upper 1000, lower 800" (lower 0: below the upper one).
func thresholdText(r *lvsctlv1.RealServer) string {
	switch {
	case r.GetUpperThreshold() == 0:
		return "-"
	case r.GetLowerThreshold() == 0:
		return fmt.Sprintf("upper %d", r.GetUpperThreshold())
	}
	return fmt.Sprintf("upper %d, lower %d", r.GetUpperThreshold(), r.GetLowerThreshold())
}

func describeCluster(w io.Writer, cl *lvsctlv1.Cluster, g *lvsctlv1.DirectorGroup, ds []*lvsctlv1.DirectorStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	persistence := "none"
	if p := cl.GetPersistence(); p.GetTimeoutSeconds() > 0 {
		persistence = fmt.Sprintf("%ds", p.GetTimeoutSeconds())
		if p.GetNetmaskBits() > 0 {
			persistence += fmt.Sprintf(", clients grouped by /%d", p.GetNetmaskBits())
		}
	}
	fmt.Fprintf(tw, "Cluster:\t%s\n", cl.GetName())
	fmt.Fprintf(tw, "Revision:\t%d\n", cl.GetRevision())
	fmt.Fprintf(tw, "Group:\t%s\n", cl.GetDirectorGroup())
	svc := cl.GetService()
	if svc != nil {
		fmt.Fprintf(tw, "Service:\t%s (plain: no fwmark)\n", validate.FormatService(svc))
	} else {
		fmt.Fprintf(tw, "VIPs:\t%s\n", strings.Join(cl.GetVips(), ", "))
		fmt.Fprintf(tw, "Ports:\t%s\n", strings.ReplaceAll(printer.PortsText(cl.GetPorts()), ",", ", "))
		fmt.Fprintf(tw, "FWMark:\t%d\n", cl.GetFwmark())
	}
	fmt.Fprintf(tw, "Scheduler:\t%s\n", cl.GetScheduler())
	if len(cl.GetSchedulerFlags()) > 0 {
		fmt.Fprintf(tw, "Scheduler flags:\t%s\n", strings.Join(validate.SchedulerFlagNames(cl.GetSchedulerFlags()), ", "))
	}
	if cl.GetOps() {
		fmt.Fprintf(tw, "One-packet:\tyes (each UDP datagram scheduled on its own)\n")
	}
	fmt.Fprintf(tw, "Persistence:\t%s\n", persistence)
	fmt.Fprintf(tw, "Forwarding:\t%s\n", printer.ForwardingName(cl.GetForwarding()))
	if tn := cl.GetTunnel(); tn != nil {
		fmt.Fprintf(tw, "Tunnel:\t%s\n", validate.FormatTunnel(tn))
	}
	fmt.Fprintf(tw, "Health:\t%s\n", healthSummary(cl.GetHealth()))
	fmt.Fprintf(tw, "Remove grace:\t%s\n", removeGraceSummary(cl))
	if s := cl.GetSorryServer(); s != nil {
		text := s.GetAddress()
		if s.GetPort() != 0 {
			text = net.JoinHostPort(text, strconv.FormatUint(uint64(s.GetPort()), 10))
		}
		fmt.Fprintf(tw, "Sorry server:\t%s (while no real server can take new connections)\n", text)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w, "Reals:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// A plain service's reals have a port (theirs, or the service's); thresholds are shown
	// when any real has one. A fwmark cluster's table stays as it was.
	withThresholds := slices.ContainsFunc(cl.GetReals(), func(r *lvsctlv1.RealServer) bool {
		return r.GetUpperThreshold() != 0 || r.GetLowerThreshold() != 0
	})
	head := "  ADDRESS"
	if svc != nil {
		head += "\tPORT"
	}
	head += "\tWEIGHT"
	if withThresholds {
		head += "\tTHRESHOLDS"
	}
	fmt.Fprintln(tw, head+"\tDRAINED\tCHECK")
	for _, r := range cl.GetReals() {
		check := "-"
		switch {
		case r.GetHealth() != nil:
			check = manifest.HealthText(r.GetHealth())
		case cl.GetHealth() != nil:
			check = "the cluster's"
		}
		line := "  " + r.GetAddress()
		if svc != nil {
			port := r.GetPort()
			if port == 0 {
				port = svc.GetPort()
			}
			line += fmt.Sprintf("\t%d", port)
		}
		line += fmt.Sprintf("\t%d", r.GetWeight())
		if withThresholds {
			line += "\t" + thresholdText(r)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", line, yesNo(r.GetDrained()), check)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	status := map[string]*lvsctlv1.DirectorStatus{}
	for _, d := range ds {
		status[d.GetDirector()] = d
	}
	if g == nil {
		fmt.Fprintf(w, "Directors: group %q does not exist\n", cl.GetDirectorGroup())
		return nil
	}
	fmt.Fprintf(w, "Directors (group %s, VIPs on %s):\n", g.GetName(), g.GetVipInterface())
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tPRIORITY\tCONNECTED\tROLE\tAPPLIED\tERRORS")
	var conns []string
	for _, member := range g.GetDirectors() {
		d := status[member.GetName()]
		v := printer.ViewDirector(d)
		var errs []string
		for _, e := range d.GetErrors() {
			if e.GetCluster() == cl.GetName() {
				errs = append(errs, e.GetMessage())
			}
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", member.GetName(), member.GetPriority(), yesNo(v.Connected),
			dash(printer.RoleText(v)), dash(revisionText(d)), dash(strings.Join(errs, "; ")))
		for _, st := range d.GetClusters() {
			if st.GetCluster() != cl.GetName() {
				continue
			}
			for _, r := range st.GetReals() {
				h := printer.ViewRealHealth(r)
				conns = append(conns, fmt.Sprintf("  %s\t%s\t%d\t%s\t%s\t%d\t%d\t%d", member.GetName(), r.GetAddress(), r.GetWeight(),
					h.Health, dash(printer.StateText(h)), r.GetActiveConns(), r.GetInactiveConns(), r.GetPersistentConns()))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(conns) > 0 {
		fmt.Fprintln(w, "Connections:")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  DIRECTOR\tREAL\tWEIGHT\tHEALTH\tSTATE\tACTIVE\tINACTIVE\tPERSISTENT")
		for _, c := range conns {
			fmt.Fprintln(tw, c)
		}
		return tw.Flush()
	}
	return nil
}

// healthSummary is a cluster's check as every director runs it, defaults filled in.
func healthSummary(h *lvsctlv1.HealthCheck) string {
	if h == nil {
		return "none (weights as given)"
	}
	s := health.FromProto(h).Defaults()
	if s.Kind == health.KindNone {
		return "none (always up)"
	}
	port := ""
	if s.Port != 0 {
		port = fmt.Sprintf(" port %d", s.Port)
	}
	return fmt.Sprintf("%s%s every %s, timeout %s, rise %d, fall %d, on failure %s",
		s.Kind, port, s.Interval, s.Timeout, s.Rise, s.Fall, health.OnFailure(h))
}

// removeGraceSummary is how long a removed real server stays at weight 0.
func removeGraceSummary(c *lvsctlv1.Cluster) string {
	switch {
	case c.GetRemoveNow():
		return "none: a removed real server is deleted at once"
	case c.GetRemoveGraceMs() == 0:
		return fmt.Sprintf("%ds (the default)", health.DefaultRemoveGrace/time.Second)
	}
	return (time.Duration(c.GetRemoveGraceMs()) * time.Millisecond).String()
}

func revisionText(d *lvsctlv1.DirectorStatus) string {
	if d == nil {
		return ""
	}
	return fmt.Sprint(d.GetAppliedRevision())
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// unknownSubcommand makes `lvsctl delete clustr wms` an error: without a RunE cobra prints
// the help and exits 0, and a script would believe the delete worked.
func unknownSubcommand(cmd *cobra.Command, args []string) error {
	var kinds []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			kinds = append(kinds, c.Name())
		}
	}
	if len(args) == 0 {
		return fmt.Errorf("%s: say what (one of: %s)", cmd.CommandPath(), strings.Join(kinds, ", "))
	}
	return fmt.Errorf("%s: unknown kind %q (one of: %s)", cmd.CommandPath(), args[0], strings.Join(kinds, ", "))
}

// warnings prints the controller's warnings about a listing (stored values it could not
// decode and skipped, named by key) to standard error: the listing itself is still good.
func (o *options) warnings(md metadata.MD) {
	for _, w := range md.Get("lvsctl-warning") {
		fmt.Fprintf(o.streams.Err, "warning: %s\n", w)
	}
}

package commands

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/cli/printer"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// showFunc prints one view of the fleet: directors sorted by name, and each cluster's stats
// summed over them.
type showFunc func(p printer.Printer, ds []*lvsctlv1.DirectorStatus, totals []*lvsctlv1.ClusterStats) error

func newStatusCmd(o *options) *cobra.Command {
	var watch bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every director: role, desired and applied revision, errors, connections",
		Long: `Show every director: its role, revisions, errors and connection totals.

The table's ROLE is the assignment and whether the director holds its group's VIPs and
gateway: ACTIVE, STANDBY, "ACTIVE (fenced)" (it released them itself, having had no answer
to its heartbeats from the controller or any peer: Fenced below says why), "ACTIVE (not
holding)" (not yet, or not reported), "STANDBY (holding)" (not yet released). PEERS is how
it sees each other director of its group: "dir-b ok", "dir-b lost (host up)" (the agent is
silent but its host answers: not a dead director), "dir-b lost". SYNC is its IPVS sync
daemons: master+backup (every director of a group with sync runs both), master, backup,
error (Sync errors below), or - for none.

-o json and -o yaml print, per director: name, group, connected, role (ACTIVE, STANDBY or
""), epoch, holding, fenced ("" unless fenced), peers [{name, reachable, hostReachable,
heardAgoMs (-1: never heard), role, epoch, holding}], sync ({master, backup, interface,
syncId, error}, null when not reported), desiredRevision, appliedRevision, state, errors,
agentVersion, lastSeen, activeConns, inactiveConns, persistentConns, cps.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.status(cmd, watch, "", func(p printer.Printer, ds []*lvsctlv1.DirectorStatus, _ []*lvsctlv1.ClusterStats) error {
				return p.Status(o.streams.Out, ds)
			})
		},
	}
	cmd.PersistentFlags().BoolVarP(&watch, "watch", "w", false, "print again on every change, until interrupted")
	addOutputFlag(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "cluster NAME",
		Short: "Show a cluster on each director, per real server, and the fleet's total",
		Long: `Show a cluster on each director, per real server, and the fleet's total.

Each director checks the real servers on its own, so each row is one director's view: WEIGHT
is the weight in its kernel (0 while the server is down with onFailure quiesce, drained, or
being removed), HEALTH is up, down or unknown (no check configured, or none finished yet),
STATE is drained (lvsctl drain) and/or removing (removed from the cluster and held at weight
0 until its connections end or removeGrace passes), or sorry for the cluster's sorry server,
in that director's kernel because none of the real servers can take new connections there.
Down lists since when and the last check's error; Removing lists until when; Sorry server
in use lists the directors that use it. The (total) rows sum every director's counts.

-o json and -o yaml print {cluster, directors[], total}: each director has name, role,
connected, appliedRevision, desiredRevision, errors, directorErrors, sorryInUse and reals[]; each of its
reals has address, weight, activeConns, inactiveConns, persistentConns, conns, cps, inBps,
outBps, health ("up", "down" or "unknown"), healthSince (RFC 3339, "" when not known),
healthError, drained, removing, removingUntil (RFC 3339) and sorry. total.reals[] have the counts
only.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			group, err := o.clusterGroup(cmd.Context(), name)
			if err != nil {
				return err
			}
			return o.status(cmd, watch, name, func(p printer.Printer, ds []*lvsctlv1.DirectorStatus, totals []*lvsctlv1.ClusterStats) error {
				var total *lvsctlv1.ClusterStats
				for _, t := range totals {
					if t.GetCluster() == name {
						total = t
					}
				}
				return p.ClusterStatus(o.streams.Out, printer.ViewClusterStatus(name, group, ds, total))
			})
		},
	})
	return cmd
}

// clusterGroup returns a cluster's director group, or an error naming the cluster when it
// does not exist.
func (o *options) clusterGroup(ctx context.Context, name string) (string, error) {
	var group string
	err := o.withConfig(ctx, func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
		resp, err := c.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: name})
		if status.Code(err) == codes.NotFound {
			return fmt.Errorf("cluster %q: not found", name)
		}
		if err != nil {
			return o.fromRPC(err)
		}
		group = resp.GetObject().GetCluster().GetDirectorGroup()
		return nil
	})
	return group, err
}

// status shows the fleet once or, with watch, again on every change until ctx ends. Watched
// tables are separated by a blank line; watched JSON is one document per line. Without a
// cluster only each director's totals are fetched: every cluster's stats of every director
// is far more than the view shows (about 100 MB at 10 directors x 10,000 clusters).
func (o *options) status(cmd *cobra.Command, watch bool, cluster string, show showFunc) error {
	f, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	if !watch {
		p, err := printer.New(f)
		if err != nil {
			return err
		}
		resp, err := o.fleetStatus(cmd.Context(), cluster, cluster == "")
		if err != nil {
			return err
		}
		return show(p, resp.GetDirectors(), resp.GetClusters())
	}
	p, err := printer.NewStream(f)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	fw, err := o.watchFleet(ctx, &lvsctlv1.StatusServiceWatchRequest{Cluster: cluster, TotalsOnly: cluster == ""})
	if err != nil {
		return err
	}
	defer fw.close()
	state := newFleetState(fw.initial.GetDirectors())
	if err := show(p, fw.initial.GetDirectors(), fw.initial.GetClusters()); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fw.ended:
			return err
		case d := <-fw.updates:
			if !state.update(d) {
				continue
			}
			if f == printer.Table {
				fmt.Fprintln(o.streams.Out)
			}
			// Totals are summed here as the controller sums them for List.
			ds := state.sorted()
			if err := show(p, ds, fleet.Aggregate(ds)); err != nil {
				return err
			}
		}
	}
}

package commands

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Defaults of drain --wait.
const (
	// DefaultDrainTimeout bounds drain --wait: long enough for most sessions of a media
	// cluster to end, short enough that a script does not hang on a stuck client.
	DefaultDrainTimeout = 10 * time.Minute
	// DefaultDrainPoll is how often drain --wait asks for the counts: the agents report
	// them about once a second.
	DefaultDrainPoll = time.Second
)

// errDrainTimeout is drain --wait running out of time with connections left.
var errDrainTimeout = errors.New("timed out")

const realUsage = "cluster NAME real ADDRESS"

// realArgs checks `cluster NAME real ADDRESS` (after "cluster", the subcommand's name).
func realArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 3 || args[1] != "real" {
		return fmt.Errorf("usage: %s %s (got %q)", cmd.Parent().CommandPath(), realUsage, strings.Join(args, " "))
	}
	return nil
}

func newDrainCmd(o *options) *cobra.Command {
	drain := &cobra.Command{
		Use:   "drain",
		Short: "Drain a real server: weight 0 on every director, established connections kept",
		RunE:  unknownSubcommand,
	}
	var wait bool
	var timeout, poll time.Duration
	cmd := &cobra.Command{
		Use:   realUsage,
		Short: "Drain a real server of a cluster on every director (lvsctl enable undoes it)",
		Long: `Drain a real server of a cluster: every director gives it weight 0, so it gets no new
connections and no new persistent clients (the agent sets the kernel's
expire_quiescent_template, so a persistence template to it expires instead of sending its
client back), while established connections go on. The drained flag is stored with the
cluster: it survives restarts, shows in get -o yaml (drained: true), and a manifest applied
without it clears it. lvsctl enable undoes it.

With --wait, lvsctl then follows the live counts: it prints a line per poll (each director's
active/inactive/persistent connections to the server) and exits 0 once they are all 0 on
every connected director of the cluster that applied the drain, or exits 1 with what is
left after --timeout. Directors that are not connected are named and not counted: their
counts are not known.`,
		Args: realArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if wait && timeout <= 0 {
				return fmt.Errorf("--timeout: %s is not a positive duration", timeout)
			}
			if wait && poll <= 0 {
				return fmt.Errorf("--interval: %s is not a positive duration", poll)
			}
			c, err := o.setDrained(cmd.Context(), args[0], args[2], true)
			if err != nil || !wait {
				return err
			}
			return o.waitDrained(cmd.Context(), c, args[2], timeout, poll)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the server has no connections left on any director")
	// This --timeout shadows the global one (each request's deadline, which stays at its
	// default here): a drain waits minutes, a request seconds.
	cmd.Flags().DurationVar(&timeout, "timeout", DefaultDrainTimeout, "with --wait: how long to wait for the connections to end")
	cmd.Flags().DurationVar(&poll, "interval", DefaultDrainPoll, "with --wait: time between polls of the counts")
	drain.AddCommand(cmd)
	return drain
}

func newEnableCmd(o *options) *cobra.Command {
	enable := &cobra.Command{
		Use:   "enable",
		Short: "Undo a drain: the real server gets its weight back on every director",
		RunE:  unknownSubcommand,
	}
	enable.AddCommand(&cobra.Command{
		Use:   realUsage,
		Short: "Undo lvsctl drain: the real server of the cluster gets its weight back on every director",
		Args:  realArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := o.setDrained(cmd.Context(), args[0], args[2], false)
			return err
		},
	})
	return enable
}

// setDrained stores a real server's drained flag and says so; it returns the stored cluster.
func (o *options) setDrained(ctx context.Context, cluster, real string, drained bool) (*lvsctlv1.Cluster, error) {
	var resp *lvsctlv1.DrainResponse
	err := o.withConfig(ctx, func(ctx context.Context, c lvsctlv1.ConfigServiceClient) error {
		var err error
		resp, err = c.Drain(ctx, &lvsctlv1.DrainRequest{Cluster: cluster, Real: real, Drained: drained})
		return o.fromRPC(err)
	})
	if err != nil {
		return nil, err
	}
	word := "enabled"
	if drained {
		word = "drained"
	}
	fmt.Fprintf(o.streams.Out, "cluster/%s real %s %s (revision %d)\n", cluster, real, word, resp.GetCluster().GetRevision())
	return resp.GetCluster(), nil
}

// drainSettle is how long drain --wait needs the counts at 0 before it believes them: two of
// the agents' default stats periods.
const drainSettle = 2 * time.Second

// waitDrained polls the fleet's status of the cluster until no director counts a connection
// to the real server, printing one line per poll.
func (o *options) waitDrained(ctx context.Context, c *lvsctlv1.Cluster, real string, timeout, poll time.Duration) error {
	addr, err := netip.ParseAddr(real)
	if err != nil {
		// The controller parsed it the same way before it stored the drain.
		return fmt.Errorf("real %q: %w", real, err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	last := "no status received yet"
	var pollErr error // the last poll's error, nil once one succeeds again
	// The counts must stay 0 for settle: the status an agent reported before it applied the
	// drain may still be the latest (agents report every stats period, 1 s by default), and
	// a connection made just before the drain shows only in its next report.
	settle := max(2*poll, drainSettle)
	var zeroSince time.Time
	for {
		resp, err := o.fleetStatus(waitCtx, c.GetName(), false)
		// A poll cut by the wait's own deadline is the timeout, not a status error: gRPC may
		// report the deadline a moment before waitCtx's own timer says so.
		if waitCtx.Err() == nil && !ownDeadline(waitCtx, err) {
			pollErr = err
		}
		if err == nil {
			p := drainProgress(resp.GetDirectors(), c, addr)
			last = p.String()
			fmt.Fprintln(o.streams.Out, last)
			switch {
			case !p.done():
				zeroSince = time.Time{}
			case zeroSince.IsZero():
				zeroSince = time.Now()
			case time.Since(zeroSince) >= settle:
				fmt.Fprintf(o.streams.Out, "cluster/%s real %s has no connections left on %s\n", c.GetName(), real, strings.Join(p.counted, ", "))
				return nil
			}
		}
		select {
		case <-ticker.C:
			// The controller may be restarting: say so and ask again. (An error is said
			// only now: at the end of the wait it is the wait's own deadline.)
			if err != nil && waitCtx.Err() == nil && !ownDeadline(waitCtx, err) {
				fmt.Fprintf(o.streams.Out, "status: %v\n", err)
			}
			continue
		case <-waitCtx.Done():
		}
		if pollErr != nil {
			last += fmt.Sprintf(" (then status: %v)", pollErr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted before the connections ended: %s", last)
		}
		return fmt.Errorf("%w after %s waiting for cluster/%s real %s to drain: %s", errDrainTimeout, timeout, c.GetName(), real, last)
	}
}

// progress is one poll of drain --wait.
type progress struct {
	// parts say what each director has: counts, or why it is not counted yet.
	parts []string
	// counted are the directors whose counts are 0; waiting the ones not there yet.
	counted []string
	waiting int
	// counts is how many parts are counts (the legend follows them).
	counts int
	// notes name the directors left out.
	notes []string
}

func (p progress) done() bool { return p.waiting == 0 && len(p.counted) > 0 }

func (p progress) String() string {
	s := strings.Join(p.parts, ", ")
	if len(p.parts) == 0 {
		s = "no connected director has the cluster"
	}
	if p.counts > 0 {
		s += " (active/inactive/persistent)"
	}
	if len(p.notes) > 0 {
		s += "; " + strings.Join(p.notes, "; ")
	}
	return s
}

// drainProgress reads one poll. A director counts when it is connected and belongs to the
// cluster's group or reports the cluster: it is done once it has applied the drain (its
// applied revision reached the drain's) and reports 0 active, inactive and persistent
// connections to the server (a server it does not list has none). A director that has not
// applied the drain may still be sending it new connections; one that reports no stats for
// the cluster yet has counts nobody knows.
func drainProgress(ds []*lvsctlv1.DirectorStatus, c *lvsctlv1.Cluster, addr netip.Addr) progress {
	var p progress
	for _, d := range ds {
		var stats *lvsctlv1.ClusterStats
		for _, st := range d.GetClusters() {
			if st.GetCluster() == c.GetName() {
				stats = st
			}
		}
		if d.GetGroup() != c.GetDirectorGroup() && stats == nil {
			continue
		}
		name := d.GetDirector()
		switch {
		case !d.GetConnected():
			p.notes = append(p.notes, name+" not connected, not counted")
			continue
		case d.GetAppliedRevision() < c.GetRevision():
			p.parts = append(p.parts, fmt.Sprintf("%s applying the drain (at revision %d of %d)", name, d.GetAppliedRevision(), c.GetRevision()))
			p.waiting++
			continue
		case stats == nil:
			p.parts = append(p.parts, name+" has reported no counts for the cluster yet")
			p.waiting++
			continue
		}
		var active, inactive, persistent uint32
		for _, r := range stats.GetReals() {
			if a, err := netip.ParseAddr(r.GetAddress()); err == nil && a == addr {
				active, inactive, persistent = r.GetActiveConns(), r.GetInactiveConns(), r.GetPersistentConns()
			}
		}
		p.parts = append(p.parts, fmt.Sprintf("%s %d/%d/%d", name, active, inactive, persistent))
		p.counts++
		if active == 0 && inactive == 0 && persistent == 0 {
			p.counted = append(p.counted, name)
		} else {
			p.waiting++
		}
	}
	return p
}

// ownDeadline reports whether err is ctx's deadline arriving (as gRPC or the context says it),
// within a moment of it.
func ownDeadline(ctx context.Context, err error) bool {
	if err == nil {
		return false
	}
	if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
		return false
	}
	d, ok := ctx.Deadline()
	return ok && time.Until(d) < 50*time.Millisecond
}

package commands

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lvsctl/lvsctl/cli/printer"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

type topOptions struct {
	cluster    string
	interval   time.Duration
	iterations int
}

func newTopCmd(o *options) *cobra.Command {
	var t topOptions
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Live connections and rates of every real server on every director, busiest first",
		Long: "top redraws the screen in place when standard output is a terminal and the output is a table;\n" +
			"otherwise it prints one frame per interval, each starting with its timestamp line (JSON: one line per frame).\n" +
			"HEALTH is the director's own check of the server (up, down, unknown); STATE marks drained servers and\n" +
			"servers being removed (see lvsctl status cluster --help).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if t.interval <= 0 {
				return fmt.Errorf("--interval: %s is not a positive duration", t.interval)
			}
			if t.iterations < 0 {
				return fmt.Errorf("--iterations: %d is negative (0 means until interrupted)", t.iterations)
			}
			f, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			p, err := printer.NewStream(f)
			if err != nil {
				return err
			}
			if t.cluster != "" {
				if _, err := o.clusterGroup(cmd.Context(), t.cluster); err != nil {
					return err
				}
			}
			return o.top(cmd.Context(), t, p, f == printer.Table && o.streams.outIsTerminal())
		},
	}
	cmd.Flags().StringVar(&t.cluster, "cluster", "", "show only this cluster")
	cmd.Flags().DurationVar(&t.interval, "interval", time.Second, "time between frames")
	cmd.Flags().IntVar(&t.iterations, "iterations", 0, "stop after this many frames (0: until interrupted)")
	addOutputFlag(cmd)
	return cmd
}

// topFrameLines are a full-screen frame's lines besides its rows: its header, the table's
// header, the "more" line.
const topFrameLines = 3

// top draws a frame now and then one per interval, keeping the fleet current from Watch in
// between. fullScreen redraws in place instead of printing frame after frame.
func (o *options) top(ctx context.Context, t topOptions, p printer.Printer, fullScreen bool) error {
	req := &lvsctlv1.StatusServiceWatchRequest{Cluster: t.cluster}
	if fullScreen && t.cluster == "" {
		// A frame shows no more rows than fit, and the fleet's busiest rows are among each
		// director's busiest that many: the controller need send no others, which at
		// thousands of clusters would not fit in one message. (--cluster asks for few rows.)
		if rows := o.streams.terminalRows() - topFrameLines; rows > 0 {
			req.TopReals = uint32(rows)
		}
	}
	fw, err := o.watchFleet(ctx, req)
	if err != nil {
		return err
	}
	defer fw.close()
	out := o.streams.Out
	if fullScreen {
		fmt.Fprint(out, printer.HideCursor)
		defer fmt.Fprint(out, printer.ShowCursor)
	}
	state := newFleetState(fw.initial.GetDirectors())
	ticker := time.NewTicker(t.interval)
	defer ticker.Stop()
	for frame := 1; ; frame++ {
		if fullScreen {
			fmt.Fprint(out, printer.ClearScreen)
		}
		view := printer.ViewTop(time.Now(), state.sorted())
		if fullScreen {
			if rows := o.streams.terminalRows() - topFrameLines; rows > 0 && len(view.Reals) > rows {
				view.More += len(view.Reals) - rows
				view.Reals = view.Reals[:rows]
			}
		}
		if err := p.Top(out, view); err != nil {
			return err
		}
		if frame == t.iterations {
			return nil
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case err := <-fw.ended:
				return err
			case d := <-fw.updates:
				state.update(d)
			case <-ticker.C:
				break wait
			}
		}
	}
}

package printer

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/fleet"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// ANSI sequences of top's full-screen view.
const (
	// ClearScreen moves the cursor home and clears the screen: each frame replaces the last.
	ClearScreen = "\x1b[H\x1b[2J"
	HideCursor  = "\x1b[?25l"
	ShowCursor  = "\x1b[?25h"
)

// totalRow names the fleet-total rows of `status cluster`: parentheses cannot appear in a
// director's name (a DNS label), so it never collides with one.
const totalRow = "(total)"

// StatusView is one director as `status` prints it: DirectorView (whose JSON keys other tools
// rely on) plus the connections it carries, summed over its clusters.
type StatusView struct {
	DirectorView
	ActiveConns     uint64 `json:"activeConns"`
	InactiveConns   uint64 `json:"inactiveConns"`
	PersistentConns uint64 `json:"persistentConns"`
	// CPS is new connections per second, the kernel's estimate.
	CPS uint64 `json:"cps"`
}

// ViewStatus converts a director's status with its totals: the controller's, which
// `lvsctl status` asks for instead of every cluster's stats, or else summed here.
func ViewStatus(d *lvsctlv1.DirectorStatus) StatusView {
	v := StatusView{DirectorView: ViewDirector(d)}
	if t := d.GetTotals(); t != nil {
		v.ActiveConns, v.InactiveConns, v.PersistentConns, v.CPS = t.GetActiveConns(), t.GetInactiveConns(), t.GetPersistentConns(), t.GetCps()
		return v
	}
	for _, c := range d.GetClusters() {
		v.CPS += c.GetCounters().GetCps()
		for _, r := range c.GetReals() {
			v.ActiveConns += uint64(r.GetActiveConns())
			v.InactiveConns += uint64(r.GetInactiveConns())
			v.PersistentConns += uint64(r.GetPersistentConns())
		}
	}
	return v
}

// RealView is one real server of one cluster, on one director or summed over the fleet.
// Rates are per second; InBps and OutBps are bytes (IPVS's inbps/outbps), not bits.
type RealView struct {
	Address         string `json:"address"`
	Weight          uint32 `json:"weight"`
	ActiveConns     uint32 `json:"activeConns"`
	InactiveConns   uint32 `json:"inactiveConns"`
	PersistentConns uint32 `json:"persistentConns"`
	Conns           uint64 `json:"conns"`
	CPS             uint64 `json:"cps"`
	InBps           uint64 `json:"inBps"`
	OutBps          uint64 `json:"outBps"`
}

// ViewReal converts one real server's stats.
func ViewReal(r *lvsctlv1.RealServerStats) RealView {
	c := r.GetCounters()
	return RealView{
		Address: r.GetAddress(), Weight: r.GetWeight(),
		ActiveConns: r.GetActiveConns(), InactiveConns: r.GetInactiveConns(), PersistentConns: r.GetPersistentConns(),
		Conns: c.GetConns(), CPS: c.GetCps(), InBps: c.GetInBps(), OutBps: c.GetOutBps(),
	}
}

// The health a real server's row shows: HealthUp, HealthDown, or HealthUnknown (no check
// configured, none finished yet, or an agent that does not report health).
const (
	HealthUp      = "up"
	HealthDown    = "down"
	HealthUnknown = "unknown"
)

// RealHealthView is what one director says of a real server besides its counts: its health
// as that director's checks see it, and whether it is drained or being removed there.
type RealHealthView struct {
	// Health is HealthUp, HealthDown or HealthUnknown.
	Health string `json:"health"`
	// HealthSince is when it became so, RFC 3339; "" when not known.
	HealthSince string `json:"healthSince"`
	// HealthError is the last failed check's error while down.
	HealthError string `json:"healthError"`
	// Drained: an operator drained it (lvsctl drain), and this director applied it.
	Drained bool `json:"drained"`
	// Removing: it left the cluster and stays in the kernel at weight 0 until its
	// connections end or RemovingUntil (RFC 3339) passes.
	Removing      bool   `json:"removing"`
	RemovingUntil string `json:"removingUntil"`
	// Sorry: it is the cluster's sorry server, in this director's kernel because no real
	// server can take new connections there.
	Sorry bool `json:"sorry"`
}

// ViewRealHealth converts a real server's health, drain and removal.
func ViewRealHealth(r *lvsctlv1.RealServerStats) RealHealthView {
	v := RealHealthView{Health: r.GetHealth(), HealthError: r.GetHealthError(), Drained: r.GetDrained(), Removing: r.GetRemoving(), Sorry: r.GetSorry()}
	if v.Health == "" {
		v.Health = HealthUnknown
	}
	v.HealthSince = unixMillisText(r.GetHealthSinceUnixMs())
	if v.Removing {
		v.RemovingUntil = unixMillisText(r.GetRemovingUntilUnixMs())
	}
	return v
}

func unixMillisText(ms int64) string {
	if ms <= 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// StateText is a real server's drain and removal at a glance: "drained", "removing",
// "drained,removing", "sorry" for a sorry server in use, or "" for none.
func StateText(v RealHealthView) string {
	var s []string
	if v.Drained {
		s = append(s, "drained")
	}
	if v.Removing {
		s = append(s, "removing")
	}
	if v.Sorry {
		s = append(s, "sorry")
	}
	return strings.Join(s, ",")
}

// DirectorRealView is one real server of one cluster on one director: its counts, and its
// health and drain there.
type DirectorRealView struct {
	RealView
	RealHealthView
}

// viewDirectorReals converts a cluster's real servers on one director, sorted by address.
func viewDirectorReals(st *lvsctlv1.ClusterStats) []DirectorRealView {
	out := []DirectorRealView{}
	for _, r := range st.GetReals() {
		out = append(out, DirectorRealView{RealView: ViewReal(r), RealHealthView: ViewRealHealth(r)})
	}
	slices.SortFunc(out, func(a, b DirectorRealView) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// viewReals converts a cluster's real servers, sorted by address so that views are stable.
func viewReals(st *lvsctlv1.ClusterStats) []RealView {
	out := []RealView{}
	for _, r := range st.GetReals() {
		out = append(out, ViewReal(r))
	}
	slices.SortFunc(out, func(a, b RealView) int { return strings.Compare(a.Address, b.Address) })
	return out
}

// ClusterDirectorView is one director of `status cluster NAME`.
type ClusterDirectorView struct {
	Name            string `json:"name"`
	Role            string `json:"role"`
	Connected       bool   `json:"connected"`
	AppliedRevision int64  `json:"appliedRevision"`
	DesiredRevision int64  `json:"desiredRevision"`
	// Errors are this cluster's errors on the director (messages only: the cluster is known).
	Errors []string `json:"errors"`
	// DirectorErrors stop every cluster on the director (IPVS missing, say), so they belong
	// in each cluster's view too.
	DirectorErrors []string `json:"directorErrors"`
	// SorryInUse: the cluster's sorry server is in this director's kernel, taking the new
	// connections no real server can (it is among Reals, with sorry set).
	SorryInUse bool `json:"sorryInUse"`
	// Reals carry each real server's health and drain as this director sees them.
	Reals []DirectorRealView `json:"reals"`
}

// ClusterTotalView is a cluster summed over every director that reports it: counts only,
// since health is each director's own.
type ClusterTotalView struct {
	Reals []RealView `json:"reals"`
}

// ClusterStatusView is `status cluster NAME`. The JSON keys are an interface for scripts
// (the lab scenarios parse directors[].reals[].activeConns): keep them.
type ClusterStatusView struct {
	Cluster   string                `json:"cluster"`
	Directors []ClusterDirectorView `json:"directors"`
	Total     ClusterTotalView      `json:"total"`
}

// ViewClusterStatus builds the view of one cluster. It shows the directors of the cluster's
// group, and any other director that still reports stats or errors for it (one that has just
// left the group, say). total is the fleet's sum for the cluster (nil when nobody reports it).
func ViewClusterStatus(cluster, group string, ds []*lvsctlv1.DirectorStatus, total *lvsctlv1.ClusterStats) ClusterStatusView {
	v := ClusterStatusView{Cluster: cluster, Directors: []ClusterDirectorView{}, Total: ClusterTotalView{Reals: viewReals(total)}}
	for _, d := range ds {
		dv := ClusterDirectorView{
			Name: d.GetDirector(), Role: RoleName(d.GetRole()), Connected: d.GetConnected(),
			AppliedRevision: d.GetAppliedRevision(), DesiredRevision: d.GetDesiredRevision(),
			Errors: []string{}, DirectorErrors: append([]string{}, d.GetDirectorErrors()...), Reals: []DirectorRealView{},
		}
		for _, e := range d.GetErrors() {
			if e.GetCluster() == cluster {
				dv.Errors = append(dv.Errors, e.GetMessage())
			}
		}
		reports := false
		for _, st := range d.GetClusters() {
			if st.GetCluster() == cluster {
				dv.Reals = append(dv.Reals, viewDirectorReals(st)...)
				dv.SorryInUse = dv.SorryInUse || st.GetSorryInUse()
				reports = true
			}
		}
		if d.GetGroup() == group || reports || len(dv.Errors) > 0 {
			v.Directors = append(v.Directors, dv)
		}
	}
	return v
}

// TopRow is one real server of one cluster on one director.
type TopRow struct {
	Director string `json:"director"`
	Cluster  string `json:"cluster"`
	RealView
	RealHealthView
}

// TopView is one frame of `top`.
type TopView struct {
	// Time is when the frame was drawn, RFC 3339.
	Time string `json:"time"`
	// Directors counts the directors known; Disconnected names those not connected, whose
	// rows are their last report.
	Directors    int      `json:"directors"`
	Disconnected []string `json:"disconnected"`
	// Reals are sorted by active connections, busiest first.
	Reals []TopRow `json:"reals"`
	// More counts the rows left out to fit a full-screen frame (the least busy ones), here
	// or by the controller.
	More int `json:"more,omitempty"`
}

// ViewTop builds a frame of `top` at now from every director's status. Rows that the
// controller left out (a director's reals_left_out) count in More.
func ViewTop(now time.Time, ds []*lvsctlv1.DirectorStatus) TopView {
	v := TopView{Time: now.Format(time.RFC3339), Directors: len(ds), Disconnected: []string{}, Reals: []TopRow{}}
	type real struct {
		director, cluster string
		stats             *lvsctlv1.RealServerStats
	}
	var reals []real
	for _, d := range ds {
		if !d.GetConnected() {
			v.Disconnected = append(v.Disconnected, d.GetDirector())
		}
		v.More += int(d.GetRealsLeftOut())
		for _, st := range d.GetClusters() {
			for _, r := range st.GetReals() {
				reals = append(reals, real{d.GetDirector(), st.GetCluster(), r})
			}
		}
	}
	slices.Sort(v.Disconnected)
	// The controller's order, so that the rows it keeps for a short frame are these.
	slices.SortFunc(reals, func(a, b real) int {
		return fleet.CompareReals(a.director, a.cluster, a.stats, b.director, b.cluster, b.stats)
	})
	for _, r := range reals {
		v.Reals = append(v.Reals, TopRow{Director: r.director, Cluster: r.cluster, RealView: ViewReal(r.stats), RealHealthView: ViewRealHealth(r.stats)})
	}
	return v
}

// HumanRate prints a byte rate with SI prefixes: 999 B/s, 1.2 kB/s, 45.0 MB/s.
func HumanRate(bytesPerSecond uint64) string {
	const units = "kMGTPE"
	if bytesPerSecond < 1000 {
		return fmt.Sprintf("%d B/s", bytesPerSecond)
	}
	f := float64(bytesPerSecond)
	i := -1
	for f >= 999.95 && i < len(units)-1 {
		f /= 1000
		i++
	}
	return fmt.Sprintf("%.1f %cB/s", f, units[i])
}

func (tablePrinter) ClusterStatus(w io.Writer, v ClusterStatusView) error {
	fmt.Fprintf(w, "Cluster: %s\n", v.Cluster)
	tw := newTable(w, "DIRECTOR", "ROLE", "CONNECTED", "APPLIED", "DESIRED", "ERRORS")
	var errs []string
	for _, d := range v.Directors {
		row(tw, d.Name, d.Role, yesNo(d.Connected), d.AppliedRevision, d.DesiredRevision, len(d.Errors)+len(d.DirectorErrors))
		for _, e := range append(d.DirectorErrors, d.Errors...) {
			errs = append(errs, d.Name+": "+e)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w, "DIRECTOR", "REAL", "WEIGHT", "HEALTH", "STATE", "ACTIVE", "INACTIVE", "PERSISTENT", "CONNS", "CPS", "IN", "OUT")
	realRow := func(director string, r RealView, h RealHealthView) {
		row(tw, director, r.Address, r.Weight, h.Health, StateText(h), r.ActiveConns, r.InactiveConns, r.PersistentConns,
			r.Conns, r.CPS, HumanRate(r.InBps), HumanRate(r.OutBps))
	}
	var down, removing, sorry []string
	for _, d := range v.Directors {
		for _, r := range d.Reals {
			if r.Sorry {
				sorry = append(sorry, d.Name+" "+r.Address+": no real server can take new connections")
			}
			realRow(d.Name, r.RealView, r.RealHealthView)
			if r.Health == HealthDown {
				line := d.Name + " " + r.Address + ":"
				if r.HealthSince != "" {
					line += " since " + r.HealthSince
				}
				if r.HealthError != "" {
					line += ": " + r.HealthError
				}
				down = append(down, line)
			}
			if r.Removing {
				removing = append(removing, fmt.Sprintf("%s %s: at weight 0 until its connections end or %s", d.Name, r.Address, dashIfEmpty(r.RemovingUntil)))
			}
		}
	}
	// The fleet's sum has no health: each director checks on its own.
	for _, r := range v.Total.Reals {
		realRow(totalRow, r, RealHealthView{})
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, section := range []struct {
		title string
		lines []string
	}{{"Down", down}, {"Removing", removing}, {"Sorry server in use", sorry}, {"Errors", errs}} {
		if len(section.lines) > 0 {
			fmt.Fprintf(w, "\n%s:\n  %s\n", section.title, strings.Join(section.lines, "\n  "))
		}
	}
	return nil
}

func (tablePrinter) Top(w io.Writer, v TopView) error {
	header := fmt.Sprintf("lvsctl top  %s  directors: %d", v.Time, v.Directors)
	if len(v.Disconnected) > 0 {
		header += "  not connected: " + strings.Join(v.Disconnected, ",")
	}
	fmt.Fprintln(w, header)
	tw := newTable(w, "DIRECTOR", "CLUSTER", "REAL", "WEIGHT", "HEALTH", "STATE", "ACTIVE", "INACTIVE", "PERSISTENT", "CPS", "IN", "OUT")
	for _, r := range v.Reals {
		row(tw, r.Director, r.Cluster, r.Address, r.Weight, r.Health, StateText(r.RealHealthView), r.ActiveConns, r.InactiveConns, r.PersistentConns,
			r.CPS, HumanRate(r.InBps), HumanRate(r.OutBps))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if v.More > 0 {
		fmt.Fprintf(w, "... and %d less busy (a taller terminal, or --cluster, shows them)\n", v.More)
	}
	return nil
}

func (p dataPrinter) ClusterStatus(w io.Writer, v ClusterStatusView) error { return p.write(w, v) }

func (p dataPrinter) Top(w io.Writer, v TopView) error { return p.write(w, v) }

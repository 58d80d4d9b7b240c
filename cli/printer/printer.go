// Package printer prints lvsctl's results in the format chosen with -o: an aligned table for
// people, or YAML/JSON for scripts. Objects print in the manifest schema (package manifest), so
// that what get prints, apply accepts.
package printer

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Format is an output format, as given to -o.
type Format string

const (
	Table Format = "table"
	YAML  Format = "yaml"
	JSON  Format = "json"
)

// ParseFormat checks an -o value.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, YAML, JSON:
		return f, nil
	}
	return "", fmt.Errorf("unknown output format %q (want table, yaml or json)", s)
}

// Printer prints what lvsctl's commands fetch.
type Printer interface {
	// Objects prints clusters and groups. one is set for `get KIND NAME`: JSON prints the object
	// itself rather than an array of one.
	Objects(w io.Writer, objs []*lvsctlv1.Object, one bool) error
	// Directors prints the fleet as `get directors` shows it: membership, role and revisions.
	Directors(w io.Writer, ds []*lvsctlv1.DirectorStatus) error
	// Status prints the fleet as `status` shows it: revisions, errors and connection totals.
	Status(w io.Writer, ds []*lvsctlv1.DirectorStatus) error
	// ClusterStatus prints one cluster per director and per real server.
	ClusterStatus(w io.Writer, v ClusterStatusView) error
	// Top prints one frame of `top`.
	Top(w io.Writer, v TopView) error
	// Failover prints the outcome of `failover`.
	Failover(w io.Writer, v FailoverView) error
	// History prints an object's recorded changes (`history`), in the order given.
	History(w io.Writer, entries []*lvsctlv1.HistoryEntry) error
}

// New returns the printer of a format.
func New(f Format) (Printer, error) {
	switch f {
	case Table:
		return tablePrinter{}, nil
	case YAML, JSON:
		return dataPrinter{format: f}, nil
	}
	return nil, fmt.Errorf("unknown output format %q (want table, yaml or json)", f)
}

// NewStream returns the printer of a format for a sequence of documents (watch, top): JSON
// prints one compact document per line (NDJSON), YAML starts each document with "---".
// Tables print as New's do; the caller separates them. Objects print as New's do: they are
// never streamed.
func NewStream(f Format) (Printer, error) {
	if f == YAML || f == JSON {
		return dataPrinter{format: f, stream: true}, nil
	}
	return New(f)
}

// DirectorView is a director's status as lvsctl prints it in JSON and YAML. The field names
// are a stable interface for scripts; they are lvsctl's own, not the proto's.
type DirectorView struct {
	Name      string `json:"name"`
	Group     string `json:"group"`
	Connected bool   `json:"connected"`
	// Role is ACTIVE, STANDBY, or "" before the first assignment.
	Role  string `json:"role"`
	Epoch uint64 `json:"epoch"`
	// Holding: the director holds its group's VIPs and gateway, as it last reported. An
	// ACTIVE that does not is fenced (Fenced says why) or still taking them.
	Holding bool   `json:"holding"`
	Fenced  string `json:"fenced"`
	// Peers are the other directors of its group as this one sees them, by name.
	Peers []PeerView `json:"peers"`
	// Sync is the state of its IPVS sync daemons; null when it has not reported one.
	Sync            *SyncView `json:"sync"`
	DesiredRevision int64     `json:"desiredRevision"`
	AppliedRevision int64     `json:"appliedRevision"`
	// State says, honestly, how far the director got: see ApplyState.
	State string `json:"state"`
	// Errors are the cluster errors as `cluster "wms": message`, then the director's own.
	Errors       []string `json:"errors"`
	AgentVersion string   `json:"agentVersion,omitempty"`
	// LastSeen is RFC 3339, empty when never seen.
	LastSeen string `json:"lastSeen,omitempty"`
}

// PeerView is one peer of a director, as the director sees it.
type PeerView struct {
	Name string `json:"name"`
	// Reachable: the peer's heartbeats arrive. HostReachable: its host answers probes, even
	// when its agent does not (an agent restarting leaves a kernel that still forwards).
	Reachable     bool `json:"reachable"`
	HostReachable bool `json:"hostReachable"`
	// HeardAgoMs is the time from the peer's last heartbeat to the report; -1: never heard.
	HeardAgoMs int64 `json:"heardAgoMs"`
	// Role, Epoch and Holding are what the peer last said of itself.
	Role    string `json:"role"`
	Epoch   uint64 `json:"epoch"`
	Holding bool   `json:"holding"`
}

// SyncView is the state of a director's IPVS connection sync daemons.
type SyncView struct {
	Master    bool   `json:"master"`
	Backup    bool   `json:"backup"`
	Interface string `json:"interface"`
	SyncID    uint32 `json:"syncId"`
	// Error says why the daemons are not as configured ("" when they are).
	Error string `json:"error"`
}

// RoleText is a director's role as tables print it: the role, and whether the addresses are
// where the role says. An ACTIVE that does not hold them is "ACTIVE (fenced)" (it released
// them itself, having lost every answer to its heartbeats) or "ACTIVE (not holding)" (not yet,
// or not reported); a STANDBY that still holds them is "STANDBY (holding)".
func RoleText(v DirectorView) string {
	switch {
	case v.Role == "ACTIVE" && !v.Holding && v.Fenced != "":
		return "ACTIVE (fenced)"
	case v.Role == "ACTIVE" && !v.Holding:
		return "ACTIVE (not holding)"
	case v.Role != "ACTIVE" && v.Holding:
		return dashIfEmpty(v.Role) + " (holding)"
	}
	return v.Role
}

// PeersText is a director's peers at a glance: "dir-b ok", "dir-b lost (host up)" when its
// agent is silent but its host answers (not a dead director), "dir-b lost".
func PeersText(peers []PeerView) string {
	s := make([]string, len(peers))
	for i, p := range peers {
		switch {
		case p.Reachable:
			s[i] = p.Name + " ok"
		case p.HostReachable:
			s[i] = p.Name + " lost (host up)"
		default:
			s[i] = p.Name + " lost"
		}
	}
	return strings.Join(s, ", ")
}

// SyncText is the sync daemons at a glance: "master+backup" (as every director of a group
// with sync runs them), "master", "backup", "error", or "" for none.
func SyncText(v *SyncView) string {
	switch {
	case v == nil:
		return ""
	case v.Error != "":
		return "error"
	case v.Master && v.Backup:
		return "master+backup"
	case v.Master:
		return "master"
	case v.Backup:
		return "backup"
	}
	return ""
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RoleName is the printed name of a role: ACTIVE, STANDBY or "".
func RoleName(r lvsctlv1.Role) string {
	switch r {
	case lvsctlv1.Role_ROLE_ACTIVE:
		return "ACTIVE"
	case lvsctlv1.Role_ROLE_STANDBY:
		return "STANDBY"
	}
	return ""
}

// ClusterErrorText formats one cluster's error on a director like validation errors read.
func ClusterErrorText(e *lvsctlv1.ClusterError) string {
	return fmt.Sprintf("%s %q: %s", validate.KindCluster, e.GetCluster(), e.GetMessage())
}

// The states ApplyState names. "applied" is said only when the director acked the revision it
// should have and reported no error: a revision acked with errors is "applied with errors",
// so the numbers APPLIED = DESIRED never read as success on their own.
const (
	StateDisconnected      = "disconnected"
	StateApplied           = "applied"
	StateAppliedWithErrors = "applied with errors"
	StateBehind            = "behind"
	StateBehindWithErrors  = "behind with errors"
)

// ApplyState is a director's state as status prints it.
func ApplyState(connected bool, applied, desired int64, errors int) string {
	switch {
	case !connected:
		return StateDisconnected
	case applied < desired && errors > 0:
		return StateBehindWithErrors
	case applied < desired:
		return StateBehind
	case errors > 0:
		return StateAppliedWithErrors
	}
	return StateApplied
}

// ViewDirector converts a director's status for printing.
func ViewDirector(d *lvsctlv1.DirectorStatus) DirectorView {
	v := DirectorView{
		Name:            d.GetDirector(),
		Group:           d.GetGroup(),
		Connected:       d.GetConnected(),
		Role:            RoleName(d.GetRole()),
		Epoch:           d.GetEpoch(),
		Holding:         d.GetHolding(),
		Fenced:          d.GetFenced(),
		Peers:           []PeerView{},
		DesiredRevision: d.GetDesiredRevision(),
		AppliedRevision: d.GetAppliedRevision(),
		Errors:          []string{},
		AgentVersion:    d.GetAgentVersion(),
	}
	for _, p := range d.GetPeers() {
		v.Peers = append(v.Peers, PeerView{
			Name: p.GetDirector(), Reachable: p.GetReachable(), HostReachable: p.GetHostReachable(),
			HeardAgoMs: p.GetHeardAgoMs(), Role: RoleName(p.GetRole()), Epoch: p.GetEpoch(), Holding: p.GetHolding(),
		})
	}
	slices.SortFunc(v.Peers, func(a, b PeerView) int { return strings.Compare(a.Name, b.Name) })
	if sy := d.GetSync(); sy != nil {
		v.Sync = &SyncView{Master: sy.GetMaster(), Backup: sy.GetBackup(), Interface: sy.GetInterface(), SyncID: sy.GetSyncId(), Error: sy.GetError()}
	}
	for _, e := range d.GetErrors() {
		v.Errors = append(v.Errors, ClusterErrorText(e))
	}
	v.Errors = append(v.Errors, d.GetDirectorErrors()...)
	v.State = ApplyState(v.Connected, v.AppliedRevision, v.DesiredRevision, len(v.Errors))
	if d.GetLastSeen() != nil {
		v.LastSeen = d.GetLastSeen().AsTime().UTC().Format(time.RFC3339)
	}
	return v
}

type dataPrinter struct {
	format Format
	stream bool
}

// write prints v as one JSON or YAML document.
func (p dataPrinter) write(w io.Writer, v any) error {
	var b []byte
	var err error
	switch {
	case p.format == JSON && p.stream:
		b, err = json.Marshal(v)
	case p.format == JSON:
		b, err = json.MarshalIndent(v, "", "  ")
	default:
		b, err = yaml.Marshal(v)
	}
	if err != nil {
		return err
	}
	if p.format == JSON {
		b = append(b, '\n')
	} else if p.stream {
		b = append([]byte("---\n"), b...)
	}
	_, err = w.Write(b)
	return err
}

func (p dataPrinter) Objects(w io.Writer, objs []*lvsctlv1.Object, one bool) error {
	marshal := manifest.MarshalList
	if one {
		marshal = manifest.Marshal
	}
	b, err := marshal(objs, manifest.Format(p.format))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (p dataPrinter) Directors(w io.Writer, ds []*lvsctlv1.DirectorStatus) error {
	views := make([]DirectorView, 0, len(ds))
	for _, d := range ds {
		views = append(views, ViewDirector(d))
	}
	return p.write(w, views)
}

// Status prints Directors' view with each director's connection totals as extra keys.
func (p dataPrinter) Status(w io.Writer, ds []*lvsctlv1.DirectorStatus) error {
	views := make([]StatusView, 0, len(ds))
	for _, d := range ds {
		views = append(views, ViewStatus(d))
	}
	return p.write(w, views)
}

type tablePrinter struct{}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
		if s[i] == "" {
			s[i] = "-"
		}
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

// PortsText prints a cluster's ports compactly: tcp/554,udp/1024-5000.
func PortsText(ports []*lvsctlv1.PortRange) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strings.Replace(validate.FormatPorts(p), " ", "/", 1)
	}
	return strings.Join(s, ",")
}

// ForwardingName is the manifest spelling of a forwarding method.
func ForwardingName(f lvsctlv1.Forwarding) string {
	switch f {
	case lvsctlv1.Forwarding_FORWARDING_MASQ:
		return "masq"
	case lvsctlv1.Forwarding_FORWARDING_ROUTE:
		return "route"
	case lvsctlv1.Forwarding_FORWARDING_TUNNEL:
		return "tunnel"
	}
	return ""
}

func (tablePrinter) Objects(w io.Writer, objs []*lvsctlv1.Object, _ bool) error {
	var clusters []*lvsctlv1.Cluster
	var groups []*lvsctlv1.DirectorGroup
	for _, o := range objs {
		if c := o.GetCluster(); c != nil {
			clusters = append(clusters, c)
		} else if g := o.GetGroup(); g != nil {
			groups = append(groups, g)
		}
	}
	if len(clusters) > 0 || len(groups) == 0 {
		tw := newTable(w, "NAME", "GROUP", "VIPS", "PORTS", "FWMARK", "SCHEDULER", "FORWARDING", "REALS", "REVISION")
		for _, c := range clusters {
			if svc := c.GetService(); svc != nil {
				// A plain service has no mark and no port list: its one address, protocol
				// and port are written as ipvsadm -Ln writes a service.
				row(tw, c.GetName(), c.GetDirectorGroup(), validate.FormatService(svc), "-",
					"-", c.GetScheduler(), ForwardingName(c.GetForwarding()), len(c.GetReals()), c.GetRevision())
				continue
			}
			row(tw, c.GetName(), c.GetDirectorGroup(), strings.Join(c.GetVips(), ","), PortsText(c.GetPorts()),
				c.GetFwmark(), c.GetScheduler(), ForwardingName(c.GetForwarding()), len(c.GetReals()), c.GetRevision())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if len(groups) > 0 {
			fmt.Fprintln(w)
		}
	}
	if len(groups) > 0 {
		tw := newTable(w, "NAME", "DIRECTORS", "VIP-INTERFACE", "GATEWAY", "SYNC", "REVISION")
		for _, g := range groups {
			ds := make([]string, len(g.GetDirectors()))
			for i, d := range g.GetDirectors() {
				ds[i] = fmt.Sprintf("%s(%d)", d.GetName(), d.GetPriority())
			}
			var gw, sync string
			if g.GetGateway() != nil {
				gw = g.GetGateway().GetAddress() + "@" + g.GetGateway().GetInterface()
			}
			if g.GetSync() != nil {
				sync = fmt.Sprintf("%s/%d", g.GetSync().GetInterface(), g.GetSync().GetSyncId())
			}
			row(tw, g.GetName(), strings.Join(ds, ","), g.GetVipInterface(), gw, sync, g.GetRevision())
		}
		return tw.Flush()
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func (tablePrinter) Directors(w io.Writer, ds []*lvsctlv1.DirectorStatus) error {
	tw := newTable(w, "NAME", "GROUP", "CONNECTED", "ROLE", "EPOCH", "DESIRED", "APPLIED", "VERSION")
	for _, d := range ds {
		v := ViewDirector(d)
		row(tw, v.Name, v.Group, yesNo(v.Connected), RoleText(v), v.Epoch, v.DesiredRevision, v.AppliedRevision, v.AgentVersion)
	}
	return tw.Flush()
}

// Status prints one row per director with its error count, its role's state (epoch, peers,
// sync daemons) and connection totals, then every error on its own line (they are too long
// for a column), then why an ACTIVE is fenced and why sync daemons are not as configured.
// The first eight columns keep their places, which scripts cut.
func (tablePrinter) Status(w io.Writer, ds []*lvsctlv1.DirectorStatus) error {
	tw := newTable(w, "NAME", "GROUP", "CONNECTED", "ROLE", "DESIRED", "APPLIED", "STATE", "ERRORS",
		"EPOCH", "PEERS", "SYNC", "ACTIVE", "INACTIVE", "PERSISTENT", "CPS")
	var errs, fenced, syncErrs []string
	for _, d := range ds {
		v := ViewStatus(d)
		row(tw, v.Name, v.Group, yesNo(v.Connected), RoleText(v.DirectorView), v.DesiredRevision, v.AppliedRevision, v.State, len(v.Errors),
			v.Epoch, PeersText(v.Peers), SyncText(v.Sync), v.ActiveConns, v.InactiveConns, v.PersistentConns, v.CPS)
		for _, e := range v.Errors {
			errs = append(errs, v.Name+": "+e)
		}
		if v.Fenced != "" && !v.Holding {
			fenced = append(fenced, v.Name+": "+v.Fenced)
		}
		if v.Sync != nil && v.Sync.Error != "" {
			syncErrs = append(syncErrs, v.Name+": "+v.Sync.Error)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, section := range []struct {
		title string
		lines []string
	}{{"Errors", errs}, {"Fenced", fenced}, {"Sync errors", syncErrs}} {
		if len(section.lines) > 0 {
			fmt.Fprintf(w, "\n%s:\n  %s\n", section.title, strings.Join(section.lines, "\n  "))
		}
	}
	return nil
}

package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Format is an output format of Marshal.
type Format string

const (
	YAML Format = "yaml"
	JSON Format = "json"
)

// The views below are the manifest schema as Go values: field order is output order.

type clusterView struct {
	Kind          string       `json:"kind"`
	Name          string       `json:"name"`
	DirectorGroup string       `json:"directorGroup"`
	Service       *serviceView `json:"service,omitempty"`
	// VIPs and Ports are nil for a plain service (left out), never nil for a fwmark cluster
	// (written, even empty, as before).
	VIPs           []string         `json:"vips,omitzero"`
	Ports          []portView       `json:"ports,omitzero"`
	Scheduler      string           `json:"scheduler"`
	SchedulerFlags []string         `json:"schedulerFlags,omitempty"`
	Ops            bool             `json:"ops,omitempty"`
	Persistence    *persistenceView `json:"persistence,omitempty"`
	Forwarding     string           `json:"forwarding,omitempty"`
	Tunnel         *tunnelView      `json:"tunnel,omitempty"`
	Health         *healthView      `json:"health,omitempty"`
	RemoveGrace    string           `json:"removeGrace,omitempty"`
	Reals          []realView       `json:"reals"`
	SorryServer    *sorryView       `json:"sorryServer,omitempty"`
	FWMark         uint32           `json:"fwmark,omitempty"`
	Revision       int64            `json:"revision,omitempty"`
}

type tunnelView struct {
	Type     string `json:"type"`
	Port     uint32 `json:"port,omitempty"`
	Checksum string `json:"checksum,omitempty"`
}

type sorryView struct {
	Address string `json:"address"`
	Port    uint32 `json:"port,omitempty"`
}

type serviceView struct {
	Address  string `json:"address"`
	Protocol string `json:"protocol,omitempty"`
	Port     uint32 `json:"port"`
}

type portView struct {
	Protocol string  `json:"protocol,omitempty"`
	Port     *uint32 `json:"port,omitempty"`
	Ports    string  `json:"ports,omitempty"`
}

type persistenceView struct {
	Timeout string `json:"timeout"`
	Netmask uint32 `json:"netmask,omitempty"`
}

type realView struct {
	Address        string      `json:"address"`
	Port           uint32      `json:"port,omitempty"`
	Weight         uint32      `json:"weight"`
	UpperThreshold uint32      `json:"upperThreshold,omitempty"`
	LowerThreshold uint32      `json:"lowerThreshold,omitempty"`
	Drained        bool        `json:"drained,omitempty"`
	Health         *healthView `json:"health,omitempty"`
}

// healthView is a health check as written: fields at zero (their default, or in a real
// server's override the cluster's) are left out, as they were written.
type healthView struct {
	Check      string   `json:"check,omitempty"`
	Port       uint32   `json:"port,omitempty"`
	Interval   string   `json:"interval,omitempty"`
	Timeout    string   `json:"timeout,omitempty"`
	Rise       uint32   `json:"rise,omitempty"`
	Fall       uint32   `json:"fall,omitempty"`
	OnFailure  string   `json:"onFailure,omitempty"`
	Path       string   `json:"path,omitempty"`
	Expect     string   `json:"expect,omitempty"`
	Body       string   `json:"body,omitempty"`
	ServerName string   `json:"serverName,omitempty"`
	Verify     bool     `json:"verify,omitempty"`
	URL        string   `json:"url,omitempty"`
	Describe   bool     `json:"describe,omitempty"`
	Payload    string   `json:"payload,omitempty"`
	UDPMode    string   `json:"udpMode,omitempty"`
	Command    []string `json:"command,omitempty"`
}

func viewHealth(h *lvsctlv1.HealthCheck) *healthView {
	if h == nil {
		return nil
	}
	return &healthView{
		Check: h.GetCheck(), Port: h.GetPort(),
		Interval: millisText(h.GetIntervalMs()), Timeout: millisText(h.GetTimeoutMs()),
		Rise: h.GetRise(), Fall: h.GetFall(), OnFailure: h.GetOnFailure(),
		Path: h.GetPath(), Expect: h.GetExpect(), Body: h.GetBody(),
		ServerName: h.GetServerName(), Verify: h.GetVerify(),
		URL: h.GetUrl(), Describe: h.GetDescribe(),
		Payload: string(h.GetPayload()), UDPMode: h.GetUdpMode(), Command: h.GetCommand(),
	}
}

// removeGraceText writes a cluster's grace as Parse reads it: "0s" for remove_now, nothing
// for the default.
func removeGraceText(c *lvsctlv1.Cluster) string {
	if c.GetRemoveNow() {
		return "0s"
	}
	return millisText(c.GetRemoveGraceMs())
}

// HealthText is a health check as a manifest writes it in flow style, for messages and plans:
// {check: rtsp, port: 554, interval: 1s}; "none" when there is none.
func HealthText(h *lvsctlv1.HealthCheck) string {
	if h == nil {
		return "none"
	}
	return healthFlow(viewHealth(h))
}

// healthFlow writes a health check in flow style, its fields in the manifest's order.
func healthFlow(h *healthView) string {
	var kv []string
	str := func(k, v string) {
		if v != "" {
			kv = append(kv, k+": "+scalar(v))
		}
	}
	num := func(k string, v uint32) {
		if v != 0 {
			kv = append(kv, fmt.Sprintf("%s: %d", k, v))
		}
	}
	flag := func(k string, v bool) {
		if v {
			kv = append(kv, k+": true")
		}
	}
	str("check", h.Check)
	num("port", h.Port)
	str("interval", h.Interval)
	str("timeout", h.Timeout)
	num("rise", h.Rise)
	num("fall", h.Fall)
	str("onFailure", h.OnFailure)
	str("path", h.Path)
	str("expect", h.Expect)
	str("body", h.Body)
	str("serverName", h.ServerName)
	flag("verify", h.Verify)
	str("url", h.URL)
	flag("describe", h.Describe)
	str("payload", h.Payload)
	str("udpMode", h.UDPMode)
	if h.Command != nil {
		args := make([]string, len(h.Command))
		for i, a := range h.Command {
			args[i] = scalar(a)
		}
		kv = append(kv, "command: ["+strings.Join(args, ", ")+"]")
	}
	return "{" + strings.Join(kv, ", ") + "}"
}

type groupView struct {
	Kind         string         `json:"kind"`
	Name         string         `json:"name"`
	Directors    []directorView `json:"directors"`
	VIPInterface string         `json:"vipInterface"`
	Gateway      *gatewayView   `json:"gateway,omitempty"`
	Sync         *syncView      `json:"sync,omitempty"`
	Failover     *failoverView  `json:"failover,omitempty"`
	Revision     int64          `json:"revision,omitempty"`
}

type directorView struct {
	Name     string `json:"name"`
	Priority uint32 `json:"priority"`
	Address  string `json:"address,omitempty"`
}

// failoverView writes durations as Go does ("100ms", "1.5s"), which Parse reads back; a
// field at 0 (the default) is left out, as it was written.
type failoverView struct {
	HeartbeatInterval string `json:"heartbeatInterval,omitempty"`
	DeadAfter         string `json:"deadAfter,omitempty"`
	FenceTime         string `json:"fenceTime,omitempty"`
	Preempt           bool   `json:"preempt,omitempty"`
	Port              uint32 `json:"port,omitempty"`
}

func millisText(ms uint32) string {
	if ms == 0 {
		return ""
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

type gatewayView struct {
	Address   string `json:"address"`
	Interface string `json:"interface"`
}

type syncView struct {
	Interface string `json:"interface"`
	SyncID    uint32 `json:"syncId"`
}

func enumName[E comparable](m map[string]E, v E) string {
	for k, e := range m {
		if e == v {
			return k
		}
	}
	return ""
}

func viewCluster(c *lvsctlv1.Cluster) clusterView {
	v := clusterView{
		Kind:          KindCluster,
		Name:          c.GetName(),
		DirectorGroup: c.GetDirectorGroup(),
		Scheduler:     c.GetScheduler(),
		Ops:           c.GetOps(),
		Forwarding:    enumName(forwardings, c.GetForwarding()),
		Health:        viewHealth(c.GetHealth()),
		RemoveGrace:   removeGraceText(c),
		Reals:         []realView{},
		FWMark:        c.GetFwmark(),
		Revision:      c.GetRevision(),
	}
	if t := c.GetTunnel(); t != nil {
		v.Tunnel = &tunnelView{Type: validate.TunnelTypeName(t.GetType()), Port: t.GetPort()}
		if t.GetChecksum() != lvsctlv1.TunnelChecksum_TUNNEL_CHECKSUM_UNSPECIFIED {
			v.Tunnel.Checksum = validate.TunnelChecksumName(t.GetChecksum())
		}
	}
	if s := c.GetSorryServer(); s != nil {
		v.SorryServer = &sorryView{Address: s.GetAddress(), Port: s.GetPort()}
	}
	if s := c.GetService(); s != nil {
		v.Service = &serviceView{Address: s.GetAddress(), Protocol: enumName(protocols, s.GetProtocol()), Port: s.GetPort()}
	}
	// A plain service's manifest leaves vips and ports out unless they were set (which
	// validate refuses, but get must show what is there).
	if c.GetService() == nil || len(c.GetVips()) > 0 || len(c.GetPorts()) > 0 {
		v.VIPs = append([]string{}, c.GetVips()...)
		v.Ports = []portView{}
	}
	if fs := c.GetSchedulerFlags(); len(fs) > 0 {
		v.SchedulerFlags = validate.SchedulerFlagNames(fs)
	}
	for _, p := range c.GetPorts() {
		pv := portView{Protocol: enumName(protocols, p.GetProtocol())}
		if p.GetFirst() == p.GetLast() {
			first := p.GetFirst()
			pv.Port = &first
		} else {
			pv.Ports = fmt.Sprintf("%d-%d", p.GetFirst(), p.GetLast())
		}
		v.Ports = append(v.Ports, pv)
	}
	// Timeout 0 means no persistence, which the manifest says by leaving persistence out.
	if p := c.GetPersistence(); p.GetTimeoutSeconds() != 0 {
		v.Persistence = &persistenceView{Timeout: fmt.Sprintf("%ds", p.GetTimeoutSeconds()), Netmask: p.GetNetmaskBits()}
	}
	for _, r := range c.GetReals() {
		v.Reals = append(v.Reals, realView{Address: r.GetAddress(), Port: r.GetPort(), Weight: r.GetWeight(),
			UpperThreshold: r.GetUpperThreshold(), LowerThreshold: r.GetLowerThreshold(),
			Drained: r.GetDrained(), Health: viewHealth(r.GetHealth())})
	}
	return v
}

func viewGroup(g *lvsctlv1.DirectorGroup) groupView {
	v := groupView{
		Kind:         KindDirectorGroup,
		Name:         g.GetName(),
		Directors:    []directorView{},
		VIPInterface: g.GetVipInterface(),
		Revision:     g.GetRevision(),
	}
	for _, d := range g.GetDirectors() {
		v.Directors = append(v.Directors, directorView{Name: d.GetName(), Priority: d.GetPriority(), Address: d.GetAddress()})
	}
	if gw := g.GetGateway(); gw != nil {
		v.Gateway = &gatewayView{Address: gw.GetAddress(), Interface: gw.GetInterface()}
	}
	if s := g.GetSync(); s != nil {
		v.Sync = &syncView{Interface: s.GetInterface(), SyncID: s.GetSyncId()}
	}
	if f := g.GetFailover(); f != nil {
		v.Failover = &failoverView{
			HeartbeatInterval: millisText(f.GetHeartbeatIntervalMs()),
			DeadAfter:         millisText(f.GetDeadAfterMs()),
			FenceTime:         millisText(f.GetFenceMs()),
			Preempt:           f.GetPreempt(),
			Port:              f.GetPort(),
		}
	}
	return v
}

func view(o *lvsctlv1.Object) (any, error) {
	switch k := o.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		return viewCluster(k.Cluster), nil
	case *lvsctlv1.Object_Group:
		return viewGroup(k.Group), nil
	}
	return nil, fmt.Errorf("object of unknown kind %T", o.GetKind())
}

// Marshal prints objects as a manifest that Parse reads back to equal objects. YAML separates
// objects with ---; JSON prints one object as an object and several (or none) as an array.
func Marshal(objs []*lvsctlv1.Object, format Format) ([]byte, error) {
	if format == JSON && len(objs) == 1 {
		v, err := view(objs[0])
		if err != nil {
			return nil, err
		}
		return marshalJSON(v)
	}
	return MarshalList(objs, format)
}

// MarshalList is Marshal, except that JSON is always an array, for listings that scripts read.
func MarshalList(objs []*lvsctlv1.Object, format Format) ([]byte, error) {
	views := make([]any, 0, len(objs))
	for _, o := range objs {
		v, err := view(o)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	switch format {
	case JSON:
		return marshalJSON(views)
	case YAML:
		var b bytes.Buffer
		for i, v := range views {
			if i > 0 {
				b.WriteString("---\n")
			}
			switch v := v.(type) {
			case clusterView:
				writeCluster(&b, v)
			case groupView:
				writeGroup(&b, v)
			}
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("unknown manifest format %q (want yaml or json)", format)
}

func marshalJSON(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// The YAML is written by hand rather than through yaml.Marshal, which sorts keys: kind and
// name come first, and short entries use flow style like the examples in docs/design.md.

func writeCluster(b *bytes.Buffer, v clusterView) {
	fmt.Fprintf(b, "kind: %s\nname: %s\ndirectorGroup: %s\n", v.Kind, scalar(v.Name), scalar(v.DirectorGroup))
	if s := v.Service; s != nil {
		kv := []string{"address: " + scalar(s.Address)}
		if s.Protocol != "" {
			kv = append(kv, "protocol: "+s.Protocol)
		}
		kv = append(kv, fmt.Sprintf("port: %d", s.Port))
		fmt.Fprintf(b, "service: {%s}\n", strings.Join(kv, ", "))
	}
	if v.VIPs != nil {
		vips := make([]string, len(v.VIPs))
		for i, s := range v.VIPs {
			vips[i] = scalar(s)
		}
		fmt.Fprintf(b, "vips: [%s]\n", strings.Join(vips, ", "))
	}
	if v.Ports != nil {
		writePorts(b, v.Ports)
	}
	fmt.Fprintf(b, "scheduler: %s\n", scalar(v.Scheduler))
	if len(v.SchedulerFlags) > 0 {
		fmt.Fprintf(b, "schedulerFlags: [%s]\n", strings.Join(v.SchedulerFlags, ", "))
	}
	if v.Ops {
		b.WriteString("ops: true\n")
	}
	writeClusterRest(b, v)
}

func writePorts(b *bytes.Buffer, ports []portView) {
	writeList(b, "ports", len(ports), func(i int) string {
		p := ports[i]
		var kv []string
		if p.Protocol != "" {
			kv = append(kv, "protocol: "+p.Protocol)
		}
		if p.Port != nil {
			kv = append(kv, fmt.Sprintf("port: %d", *p.Port))
		} else {
			kv = append(kv, "ports: "+scalar(p.Ports))
		}
		return "{" + strings.Join(kv, ", ") + "}"
	})
}

// writeClusterRest writes the fields after the scheduler's.
func writeClusterRest(b *bytes.Buffer, v clusterView) {
	if p := v.Persistence; p != nil {
		if p.Netmask != 0 {
			fmt.Fprintf(b, "persistence: {timeout: %s, netmask: %d}\n", p.Timeout, p.Netmask)
		} else {
			fmt.Fprintf(b, "persistence: {timeout: %s}\n", p.Timeout)
		}
	}
	if v.Forwarding != "" {
		fmt.Fprintf(b, "forwarding: %s\n", v.Forwarding)
	}
	if t := v.Tunnel; t != nil {
		kv := []string{"type: " + scalar(t.Type)}
		if t.Port != 0 {
			kv = append(kv, fmt.Sprintf("port: %d", t.Port))
		}
		if t.Checksum != "" {
			kv = append(kv, "checksum: "+t.Checksum)
		}
		fmt.Fprintf(b, "tunnel: {%s}\n", strings.Join(kv, ", "))
	}
	if v.Health != nil {
		fmt.Fprintf(b, "health: %s\n", healthFlow(v.Health))
	}
	if v.RemoveGrace != "" {
		fmt.Fprintf(b, "removeGrace: %s\n", scalar(v.RemoveGrace))
	}
	writeList(b, "reals", len(v.Reals), func(i int) string {
		r := v.Reals[i]
		s := "{address: " + scalar(r.Address)
		if r.Port != 0 {
			s += fmt.Sprintf(", port: %d", r.Port)
		}
		s += fmt.Sprintf(", weight: %d", r.Weight)
		if r.UpperThreshold != 0 {
			s += fmt.Sprintf(", upperThreshold: %d", r.UpperThreshold)
		}
		if r.LowerThreshold != 0 {
			s += fmt.Sprintf(", lowerThreshold: %d", r.LowerThreshold)
		}
		if r.Drained {
			s += ", drained: true"
		}
		if r.Health != nil {
			s += ", health: " + healthFlow(r.Health)
		}
		return s + "}"
	})
	if s := v.SorryServer; s != nil {
		if s.Port != 0 {
			fmt.Fprintf(b, "sorryServer: {address: %s, port: %d}\n", scalar(s.Address), s.Port)
		} else {
			fmt.Fprintf(b, "sorryServer: {address: %s}\n", scalar(s.Address))
		}
	}
	if v.FWMark != 0 {
		fmt.Fprintf(b, "fwmark: %d\n", v.FWMark)
	}
	if v.Revision != 0 {
		fmt.Fprintf(b, "revision: %d\n", v.Revision)
	}
}

func writeGroup(b *bytes.Buffer, v groupView) {
	fmt.Fprintf(b, "kind: %s\nname: %s\n", v.Kind, scalar(v.Name))
	writeList(b, "directors", len(v.Directors), func(i int) string {
		d := v.Directors[i]
		if d.Address != "" {
			return fmt.Sprintf("{name: %s, priority: %d, address: %s}", scalar(d.Name), d.Priority, scalar(d.Address))
		}
		return fmt.Sprintf("{name: %s, priority: %d}", scalar(d.Name), d.Priority)
	})
	fmt.Fprintf(b, "vipInterface: %s\n", scalar(v.VIPInterface))
	if g := v.Gateway; g != nil {
		fmt.Fprintf(b, "gateway: {address: %s, interface: %s}\n", scalar(g.Address), scalar(g.Interface))
	}
	if s := v.Sync; s != nil {
		fmt.Fprintf(b, "sync: {interface: %s, syncId: %d}\n", scalar(s.Interface), s.SyncID)
	}
	if f := v.Failover; f != nil {
		var kv []string
		for _, d := range []struct{ key, value string }{
			{"heartbeatInterval", f.HeartbeatInterval}, {"deadAfter", f.DeadAfter}, {"fenceTime", f.FenceTime},
		} {
			if d.value != "" {
				kv = append(kv, d.key+": "+scalar(d.value))
			}
		}
		if f.Preempt {
			kv = append(kv, "preempt: true")
		}
		if f.Port != 0 {
			kv = append(kv, fmt.Sprintf("port: %d", f.Port))
		}
		fmt.Fprintf(b, "failover: {%s}\n", strings.Join(kv, ", "))
	}
	if v.Revision != 0 {
		fmt.Fprintf(b, "revision: %d\n", v.Revision)
	}
}

func writeList(b *bytes.Buffer, key string, n int, item func(int) string) {
	if n == 0 {
		fmt.Fprintf(b, "%s: []\n", key)
		return
	}
	fmt.Fprintf(b, "%s:\n", key)
	for i := range n {
		fmt.Fprintf(b, "  - %s\n", item(i))
	}
}

// plainSafe holds no YAML indicator (,[]{}:#&*!|>'"%@`) and cannot start one, so such a string
// can stand unquoted in block and flow context alike.
var plainSafe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]*$`)

// plainString reports, without a YAML parser (which made writing 10,000 clusters take
// seconds), that a plain-safe string certainly reads back as a string: an IPv4 address (no
// YAML number or date has three dots), or a string longer than any YAML boolean or null
// word ("false", "null") holding a character that no number, date or time can hold.
// False means "ask the parser", not "not a string".
func plainString(s string) bool {
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return true
	}
	return len(s) > 5 && strings.IndexFunc(s, func(r rune) bool { return !strings.ContainsRune(numberish, r) }) >= 0
}

// knownPlain are short words that manifests hold in every health check, which plainString
// leaves to the parser (they are too short to tell): each was checked with the parser, once,
// so that writing 10,000 clusters with checks does not parse YAML 100,000 times.
var knownPlain = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range []string{"tcp", "http", "https", "rtsp", "udp", "exec", "none", "reply"} {
		var v map[string]any
		if err := yaml.Unmarshal([]byte("k: "+w), &v); err == nil && v["k"] == w {
			m[w] = true
		}
	}
	return m
}()

// goDuration reports a duration as Go writes one ("1s", "1.5s", "1m0s", "100ms"): a number
// followed by a unit, which YAML reads as a string (no YAML number, boolean, null, date or
// time ends in a unit letter; a bare "0" does not count).
func goDuration(s string) bool {
	if _, err := time.ParseDuration(s); err != nil {
		return false
	}
	last := s[len(s)-1]
	return last == 's' || last == 'm' || last == 'h'
}

// numberish are the characters of YAML's numbers (decimal, hex, octal, binary, floats with
// exponents, sexagesimal), dates and times.
const numberish = "0123456789abcdefABCDEF._+-:xXoOtTzZ"

// scalar writes a string plain when YAML reads it back as the same string (not as a number,
// boolean or null), else double-quoted (quote).
func scalar(s string) string {
	if plainSafe.MatchString(s) && (plainString(s) || knownPlain[s] || goDuration(s)) {
		return s
	}
	if plainSafe.MatchString(s) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte("k: "+s), &m); err == nil && m["k"] == s {
			return s
		}
	}
	return quote(s)
}

// quote writes a YAML double-quoted string that reads back as s. YAML refuses characters
// outside its printable set even inside quotes (DEL, the C1 controls, U+FFFE) and folds its
// line breaks (U+2028, U+2029) into spaces, where JSON's quoting leaves both as they are: each
// of them is escaped as \uXXXX, and so are the C0 controls. s must be valid UTF-8 (a proto
// string always is; validate refuses a payload that is not).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f, r == 0x2028, r == 0x2029, r == 0xfeff, r == 0xfffe, r == 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

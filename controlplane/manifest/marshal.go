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
	Kind          string           `json:"kind"`
	Name          string           `json:"name"`
	DirectorGroup string           `json:"directorGroup"`
	VIPs          []string         `json:"vips"`
	Ports         []portView       `json:"ports"`
	Scheduler     string           `json:"scheduler"`
	Persistence   *persistenceView `json:"persistence,omitempty"`
	Forwarding    string           `json:"forwarding,omitempty"`
	Reals         []realView       `json:"reals"`
	FWMark        uint32           `json:"fwmark,omitempty"`
	Revision      int64            `json:"revision,omitempty"`
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
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
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
		VIPs:          append([]string{}, c.GetVips()...),
		Ports:         []portView{},
		Scheduler:     c.GetScheduler(),
		Forwarding:    enumName(forwardings, c.GetForwarding()),
		Reals:         []realView{},
		FWMark:        c.GetFwmark(),
		Revision:      c.GetRevision(),
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
		v.Reals = append(v.Reals, realView{Address: r.GetAddress(), Weight: r.GetWeight()})
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
	vips := make([]string, len(v.VIPs))
	for i, s := range v.VIPs {
		vips[i] = scalar(s)
	}
	fmt.Fprintf(b, "vips: [%s]\n", strings.Join(vips, ", "))
	writeList(b, "ports", len(v.Ports), func(i int) string {
		p := v.Ports[i]
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
	fmt.Fprintf(b, "scheduler: %s\n", scalar(v.Scheduler))
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
	writeList(b, "reals", len(v.Reals), func(i int) string {
		return fmt.Sprintf("{address: %s, weight: %d}", scalar(v.Reals[i].Address), v.Reals[i].Weight)
	})
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

// numberish are the characters of YAML's numbers (decimal, hex, octal, binary, floats with
// exponents, sexagesimal), dates and times.
const numberish = "0123456789abcdefABCDEF._+-:xXoOtTzZ"

// scalar writes a string plain when YAML reads it back as the same string (not as a number,
// boolean or null), else double-quoted; JSON string syntax is valid YAML double-quoted syntax.
func scalar(s string) string {
	if plainSafe.MatchString(s) && plainString(s) {
		return s
	}
	if plainSafe.MatchString(s) {
		var m map[string]any
		if err := yaml.Unmarshal([]byte("k: "+s), &m); err == nil && m["k"] == s {
			return s
		}
	}
	q, _ := json.Marshal(s) // a string always marshals
	return string(q)
}

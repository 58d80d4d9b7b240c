// Package manifest reads and writes the operator's manifests: YAML (several documents
// separated by ---) or JSON (one object, an array, or a stream of objects), in the schema of
// docs/design.md section 1. It checks the shape (known kinds and fields, types, names present) and
// leaves the meaning (addresses, ranges, limits) to package validate.
package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Manifest kinds.
const (
	KindCluster       = "Cluster"
	KindDirectorGroup = "DirectorGroup"
)

// Defaults applied to fields a manifest leaves out.
const (
	// DefaultScheduler is ipvsadm's default (-s wlc).
	DefaultScheduler = "wlc"
	// DefaultForwarding is ipvsadm's default (-g, direct routing).
	DefaultForwarding = lvsctlv1.Forwarding_FORWARDING_ROUTE
	// DefaultWeight is ipvsadm's default (-w 1). An explicit weight 0 quiesces a server.
	DefaultWeight = 1
	// DefaultPriority is keepalived's default VRRP priority.
	DefaultPriority = 100
)

// ErrEmpty is returned for input that holds no object at all.
var ErrEmpty = errors.New("manifest holds no objects")

// DocumentError is a problem in a document whose object has no name yet to report it by.
// It matches validate.ErrInvalid.
type DocumentError struct {
	// Document is the 1-based number of the document in the input (empty documents not counted).
	Document int
	// Kind is the manifest kind as written, "" when unknown.
	Kind   string
	Path   string
	Reason string
}

// Error formats the error as `document 2 (Cluster): name: required`.
func (e *DocumentError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d", e.Document)
	if e.Kind != "" {
		fmt.Fprintf(&b, " (%s)", e.Kind)
	}
	if e.Path != "" {
		b.WriteString(": " + e.Path)
	}
	b.WriteString(": " + e.Reason)
	return b.String()
}

// Is makes every DocumentError match validate.ErrInvalid.
func (e *DocumentError) Is(target error) bool { return target == validate.ErrInvalid }

// Parse reads every object of a manifest. Fields left out get the defaults above. The error
// joins the problems found (the first limits.MaxErrors of them), each naming its document or
// object and the field path. Input past the limits of package limits (size, objects, nesting,
// alias expansion) is refused before it costs memory in proportion to what it expands to.
func Parse(data []byte) ([]*lvsctlv1.Object, error) {
	if err := checkText(data); err != nil {
		return nil, err
	}
	docs, err := split(data)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, ErrEmpty
	}
	var objs []*lvsctlv1.Object
	errs := &problems{}
	for i, d := range docs {
		r := &docReader{doc: i + 1, errs: errs}
		if o := r.object(d); o != nil {
			objs = append(objs, o)
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return objs, nil
}

// problems keeps the first limits.MaxErrors problems of a manifest and counts the rest.
type problems struct {
	errs    []error
	dropped int
}

func (p *problems) add(mk func() error) {
	if len(p.errs) >= limits.MaxErrors {
		p.dropped++
		return
	}
	p.errs = append(p.errs, mk())
}

func (p *problems) err() error {
	if p.dropped > 0 {
		return errors.Join(append(p.errs, validate.MoreErrors(p.dropped))...)
	}
	return errors.Join(p.errs...)
}

// docReader converts one document, collecting every problem with its path.
type docReader struct {
	doc  int
	kind string // manifest kind as written
	name string
	errs *problems
}

func (r *docReader) fail(path, format string, args ...any) {
	r.errs.add(func() error {
		reason := fmt.Sprintf(format, args...)
		if r.name == "" {
			return &DocumentError{Document: r.doc, Kind: r.kind, Path: path, Reason: reason}
		}
		k := validate.KindCluster
		if r.kind == KindDirectorGroup {
			k = validate.KindGroup
		}
		return &validate.FieldError{Kind: k, Name: r.name, Path: path, Reason: reason}
	})
}

// fields is one mapping of the document; it remembers which keys were read so that the rest
// can be refused as unknown. encoding/json's DisallowUnknownFields would name the key but not
// its path (ports[2].prot), hence this walk.
type fields struct {
	m    map[string]any
	path string
	used map[string]bool
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (r *docReader) mapping(v any, path string) (*fields, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		r.fail(path, "must be a mapping, not %s", typeName(v))
		return nil, false
	}
	return &fields{m: m, path: path, used: map[string]bool{}}, true
}

// get returns a field's value; null counts as absent.
func (f *fields) get(key string) (any, bool) {
	f.used[key] = true
	v, ok := f.m[key]
	return v, ok && v != nil
}

func (r *docReader) done(f *fields) {
	var unknown []string
	for k := range f.m {
		if !f.used[k] {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		r.fail(join(f.path, keyText(k)), "unknown field")
	}
}

// keyText is a key as an error's path shows it: as written when it looks like a field name,
// else quoted and cut to limits.MaxEcho bytes.
func keyText(k string) string {
	plain := k != "" && len(k) <= limits.MaxEcho && !strings.ContainsFunc(k, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	})
	if plain {
		return k
	}
	return limits.Quote(k)
}

func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return "the string " + limits.Quote(v)
	case json.Number:
		return "the number " + limits.Prefix(v.String())
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func (r *docReader) str(f *fields, key string) string {
	v, ok := f.get(key)
	if !ok {
		return ""
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(join(f.path, key), "must be a string, not %s", typeName(v))
	}
	return s
}

// number reads a whole number in [min, max]; ok is false when absent or refused.
func (r *docReader) number(f *fields, key string, min, max int64) (int64, bool) {
	v, present := f.get(key)
	if !present {
		return 0, false
	}
	return r.toNumber(v, join(f.path, key), min, max)
}

func (r *docReader) toNumber(v any, path string, min, max int64) (int64, bool) {
	n, isNum := v.(json.Number)
	if !isNum {
		r.fail(path, "must be a number, not %s", typeName(v))
		return 0, false
	}
	s := n.String()
	if !plainDecimal(s) {
		r.fail(path, "%s is not a plain decimal integer%s", limits.Prefix(s), numberHint(s))
		return 0, false
	}
	i, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && s[0] == '-' && min == 0:
		r.fail(path, "%s is negative", limits.Prefix(s))
		return 0, false
	case err != nil:
		r.fail(path, "%s is out of range %d-%d", limits.Prefix(s), min, max)
		return 0, false
	case i < min && min == 0:
		r.fail(path, "%d is negative", i)
		return 0, false
	case i < min || i > max:
		r.fail(path, "%d is out of range %d-%d", i, min, max)
		return 0, false
	}
	return i, true
}

// plainDecimal reports whether s is an integer in plain decimal digits: 0, or digits not
// starting with 0 after an optional '-'. Every reader of YAML or JSON reads such a number
// alike, and it is the number's only spelling (strconv.FormatInt gives it back).
func plainDecimal(s string) bool {
	if s == "-0" {
		return false // 0 has no sign
	}
	s = strings.TrimPrefix(s, "-")
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// numberHint says why a number that YAML or JSON took is not plain decimal, and what it would
// have meant to another reader.
func numberHint(s string) string {
	u := strings.ToLower(strings.TrimLeft(s, "+-"))
	switch {
	case strings.Contains(u, "inf"), strings.Contains(u, "nan"):
		return " (not a finite number)"
	case strings.HasPrefix(s, "+"):
		return " (write it without the +)"
	case strings.HasPrefix(u, "0x"):
		return " (hexadecimal: write it in decimal)"
	case strings.HasPrefix(u, "0o"), strings.HasPrefix(u, "0b"):
		return " (octal or binary: write it in decimal)"
	case strings.Contains(u, "_"):
		return " (write it without _)"
	case strings.ContainsAny(u, ".e"):
		return " (it has a fraction or an exponent)"
	case len(u) > 1 && u[0] == '0':
		return " (a leading 0 makes it octal in YAML 1.1: write it without the 0)"
	}
	return ""
}

func (r *docReader) list(f *fields, key string) []any {
	v, ok := f.get(key)
	if !ok {
		return nil
	}
	l, isList := v.([]any)
	if !isList {
		r.fail(join(f.path, key), "must be a list, not %s", typeName(v))
	}
	return l
}

func (r *docReader) object(v any) *lvsctlv1.Object {
	f, ok := v.(map[string]any)
	if !ok {
		r.fail("", "must be a mapping with kind and name, not %s", typeName(v))
		return nil
	}
	top := &fields{m: f, used: map[string]bool{}}
	kind, hasKind := top.get("kind")
	r.kind, _ = kind.(string)
	switch {
	case !hasKind:
		r.fail("kind", "required (%s or %s)", KindCluster, KindDirectorGroup)
		return nil
	case r.kind != KindCluster && r.kind != KindDirectorGroup:
		r.kind = ""
		r.fail("kind", "unknown kind %s (want %s or %s)", quoteAny(kind), KindCluster, KindDirectorGroup)
		return nil
	}
	name := r.str(top, "name")
	if name == "" {
		r.fail("name", "required")
	}
	r.name = name
	var o *lvsctlv1.Object
	if r.kind == KindCluster {
		o = &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: r.cluster(top, name)}}
	} else {
		o = &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: r.group(top, name)}}
	}
	r.done(top)
	return o
}

func quoteAny(v any) string {
	if s, ok := v.(string); ok {
		return limits.Quote(s)
	}
	return typeName(v)
}

var protocols = map[string]lvsctlv1.Protocol{
	"tcp":  lvsctlv1.Protocol_PROTOCOL_TCP,
	"udp":  lvsctlv1.Protocol_PROTOCOL_UDP,
	"sctp": lvsctlv1.Protocol_PROTOCOL_SCTP,
}

var forwardings = map[string]lvsctlv1.Forwarding{
	"masq":   lvsctlv1.Forwarding_FORWARDING_MASQ,
	"route":  lvsctlv1.Forwarding_FORWARDING_ROUTE,
	"tunnel": lvsctlv1.Forwarding_FORWARDING_TUNNEL,
}

// portRange is "1024-5000" or one port, in plain decimal (no leading 0, as numbers).
var portRange = regexp.MustCompile(`^\s*(0|[1-9]\d*)\s*(?:-\s*(0|[1-9]\d*)\s*)?$`)

func (r *docReader) cluster(f *fields, name string) *lvsctlv1.Cluster {
	c := &lvsctlv1.Cluster{
		Name:          name,
		DirectorGroup: r.str(f, "directorGroup"),
		Scheduler:     r.str(f, "scheduler"),
		Forwarding:    DefaultForwarding,
	}
	if c.Scheduler == "" {
		c.Scheduler = DefaultScheduler
	}
	if v, ok := f.get("service"); ok {
		c.Service = r.service(v)
	}
	for i, v := range r.list(f, "vips") {
		s, ok := v.(string)
		if !ok {
			r.fail(fmt.Sprintf("vips[%d]", i), "must be a string, not %s", typeName(v))
		}
		c.Vips = append(c.Vips, s)
	}
	c.Ports = []*lvsctlv1.PortRange{}
	for i, v := range r.list(f, "ports") {
		c.Ports = append(c.Ports, r.ports(v, fmt.Sprintf("ports[%d]", i)))
	}
	if v, ok := f.get("persistence"); ok {
		c.Persistence = r.persistence(v)
	}
	for i, v := range r.list(f, "schedulerFlags") {
		path := fmt.Sprintf("schedulerFlags[%d]", i)
		s, isStr := v.(string)
		flag, known := schedulerFlags[s]
		switch {
		case !isStr:
			r.fail(path, "must be a string, not %s", typeName(v))
		case !known:
			r.fail(path, "unknown scheduler flag %s (want sh-fallback, sh-port, mh-fallback or mh-port)", limits.Quote(s))
		}
		c.SchedulerFlags = append(c.SchedulerFlags, flag)
	}
	c.Ops = r.boolean(f, "ops")
	if fw := r.str(f, "forwarding"); fw != "" {
		var known bool
		if c.Forwarding, known = forwardings[fw]; !known {
			r.fail("forwarding", "unknown forwarding %s (want masq, route or tunnel)", limits.Quote(fw))
		}
	}
	if v, ok := f.get("tunnel"); ok {
		c.Tunnel = r.tunnel(v)
	}
	if v, ok := f.get("health"); ok {
		c.Health = r.health(v, "health")
	}
	c.RemoveGraceMs, c.RemoveNow = r.removeGrace(f)
	c.Reals = []*lvsctlv1.RealServer{}
	for i, v := range r.list(f, "reals") {
		path := fmt.Sprintf("reals[%d]", i)
		rf, ok := r.mapping(v, path)
		if !ok {
			continue
		}
		rs := &lvsctlv1.RealServer{Address: r.str(rf, "address"), Weight: DefaultWeight}
		if w, ok := r.number(rf, "weight", 0, math.MaxUint32); ok {
			rs.Weight = uint32(w)
		}
		if p, ok := r.number(rf, "port", 0, math.MaxUint32); ok {
			rs.Port = uint32(p)
		}
		if n, ok := r.number(rf, "upperThreshold", 0, math.MaxUint32); ok {
			rs.UpperThreshold = uint32(n)
		}
		if n, ok := r.number(rf, "lowerThreshold", 0, math.MaxUint32); ok {
			rs.LowerThreshold = uint32(n)
		}
		rs.Drained = r.boolean(rf, "drained")
		if v, ok := rf.get("health"); ok {
			rs.Health = r.health(v, join(path, "health"))
		}
		r.done(rf)
		c.Reals = append(c.Reals, rs)
	}
	if v, ok := f.get("sorryServer"); ok {
		c.SorryServer = r.sorryServer(v)
	}
	if m, ok := r.number(f, "fwmark", 0, math.MaxUint32); ok {
		c.Fwmark = uint32(m)
	}
	if rev, ok := r.number(f, "revision", math.MinInt64, math.MaxInt64); ok {
		c.Revision = rev
	}
	return c
}

// sorryServer reads {address, port}; what they may be (family, port rules, not a real
// server) is validate's business.
func (r *docReader) sorryServer(v any) *lvsctlv1.SorryServer {
	f, ok := r.mapping(v, "sorryServer")
	if !ok {
		return nil
	}
	s := &lvsctlv1.SorryServer{Address: r.str(f, "address")}
	if p, ok := r.number(f, "port", 0, math.MaxUint32); ok {
		s.Port = uint32(p)
	}
	r.done(f)
	return s
}

// schedulerFlags are ipvsadm's names of the scheduler flags (-b), as validate names them.
var schedulerFlags = func() map[string]lvsctlv1.SchedulerFlag {
	m := map[string]lvsctlv1.SchedulerFlag{}
	for v := range lvsctlv1.SchedulerFlag_name {
		if f := lvsctlv1.SchedulerFlag(v); f != lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_UNSPECIFIED {
			m[validate.SchedulerFlagName(f)] = f
		}
	}
	return m
}()

// tunnelTypes and tunnelChecksums are the names validate gives them (ipvsadm's and
// keepalived's).
var (
	tunnelTypes     = namesOf(lvsctlv1.TunnelType_name, validate.TunnelTypeName)
	tunnelChecksums = namesOf(lvsctlv1.TunnelChecksum_name, validate.TunnelChecksumName)
)

func namesOf[E ~int32](values map[int32]string, name func(E) string) map[string]E {
	m := map[string]E{}
	for v := range values {
		if n := name(E(v)); n != "" {
			m[n] = E(v)
		}
	}
	return m
}

// tunnel reads a tunnel: {type, port, checksum}. type defaults to ipip, as the kernel's and
// ipvsadm's; checksum to none. Which combinations hold is validate's business.
func (r *docReader) tunnel(v any) *lvsctlv1.Tunnel {
	f, ok := r.mapping(v, "tunnel")
	if !ok {
		return nil
	}
	t := &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_IPIP}
	if s := r.str(f, "type"); s != "" {
		var known bool
		if t.Type, known = tunnelTypes[s]; !known {
			r.fail("tunnel.type", "unknown tunnel type %s (want ipip, gue or gre)", limits.Quote(s))
		}
	}
	if n, ok := r.number(f, "port", 0, math.MaxUint32); ok {
		t.Port = uint32(n)
	}
	if s := r.str(f, "checksum"); s != "" {
		var known bool
		if t.Checksum, known = tunnelChecksums[s]; !known {
			r.fail("tunnel.checksum", "unknown checksum option %s (want none, csum or remcsum)", limits.Quote(s))
		}
	}
	r.done(f)
	return t
}

// service reads a plain service: {address, protocol, port}. What the values mean (address
// kinds, port range, the port 0 rule) is validate's business.
func (r *docReader) service(v any) *lvsctlv1.VirtualService {
	f, ok := r.mapping(v, "service")
	if !ok {
		return nil
	}
	s := &lvsctlv1.VirtualService{Address: r.str(f, "address")}
	if p := r.str(f, "protocol"); p != "" {
		var known bool
		if s.Protocol, known = protocols[p]; !known {
			r.fail("service.protocol", "unknown protocol %s (want tcp, udp or sctp)", limits.Quote(p))
		}
	}
	if n, ok := r.number(f, "port", 0, math.MaxUint32); ok {
		s.Port = uint32(n)
	} else if _, present := f.get("port"); !present {
		r.fail("service.port", "required (0 is every port, for a persistent service only)")
	}
	r.done(f)
	return s
}

func (r *docReader) ports(v any, path string) *lvsctlv1.PortRange {
	pr := &lvsctlv1.PortRange{}
	f, ok := r.mapping(v, path)
	if !ok {
		return pr
	}
	if p := r.str(f, "protocol"); p != "" {
		var known bool
		if pr.Protocol, known = protocols[p]; !known {
			r.fail(join(path, "protocol"), "unknown protocol %s (want tcp, udp or sctp)", limits.Quote(p))
		}
	}
	single, hasPort := f.get("port")
	multi, hasPorts := f.get("ports")
	switch {
	case hasPort && hasPorts:
		r.fail(path, "set port or ports, not both")
	case hasPort:
		if n, ok := r.toNumber(single, join(path, "port"), 0, math.MaxUint32); ok {
			pr.First, pr.Last = uint32(n), uint32(n)
		}
	case hasPorts:
		pr.First, pr.Last = r.portRange(multi, join(path, "ports"))
	default:
		r.fail(path, "port or ports is required")
	}
	r.done(f)
	return pr
}

// portRange reads "1024-5000" (or a single port). A reversed range is kept as written, for
// validate to report with both ends.
func (r *docReader) portRange(v any, path string) (first, last uint32) {
	if _, isNum := v.(json.Number); isNum {
		n, _ := r.toNumber(v, path, 0, math.MaxUint32)
		return uint32(n), uint32(n)
	}
	s, isStr := v.(string)
	m := portRange.FindStringSubmatch(s)
	if !isStr || m == nil {
		r.fail(path, "must be a port range like 1024-5000, not %s", typeName(v))
		return 0, 0
	}
	a, errA := strconv.ParseUint(m[1], 10, 32)
	b, errB := a, error(nil)
	if m[2] != "" {
		b, errB = strconv.ParseUint(m[2], 10, 32)
	}
	if errA != nil || errB != nil {
		r.fail(path, "%s is out of range", limits.Quote(s))
		return 0, 0
	}
	return uint32(a), uint32(b)
}

func (r *docReader) persistence(v any) *lvsctlv1.Persistence {
	f, ok := r.mapping(v, "persistence")
	if !ok {
		return nil
	}
	p := &lvsctlv1.Persistence{}
	t, hasTimeout := f.get("timeout")
	if !hasTimeout {
		r.fail("persistence.timeout", "required (e.g. 600s); leave persistence out for none")
	} else {
		p.TimeoutSeconds = r.timeout(t)
	}
	if n, ok := r.number(f, "netmask", 0, math.MaxUint32); ok {
		p.NetmaskBits = uint32(n)
	}
	r.done(f)
	return p
}

// timeout reads a duration ("600s", "10m") or a number of seconds.
func (r *docReader) timeout(v any) uint32 {
	const path = "persistence.timeout"
	var d time.Duration
	switch v := v.(type) {
	case json.Number:
		n, ok := r.toNumber(v, path, 0, math.MaxUint32)
		if !ok {
			return 0
		}
		d = time.Duration(n) * time.Second
	case string:
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			r.fail(path, "%s is not a duration (e.g. 600s or 10m)", limits.Quote(v))
			return 0
		}
	default:
		r.fail(path, "must be a duration like 600s, not %s", typeName(v))
		return 0
	}
	switch {
	case d < time.Second:
		r.fail(path, "%s is less than 1s; leave persistence out for none", d)
	case d%time.Second != 0:
		r.fail(path, "%s is not a whole number of seconds", d)
	case d/time.Second > math.MaxUint32:
		r.fail(path, "%s is too long", d)
	default:
		return uint32(d / time.Second)
	}
	return 0
}

func (r *docReader) group(f *fields, name string) *lvsctlv1.DirectorGroup {
	g := &lvsctlv1.DirectorGroup{Name: name, Directors: []*lvsctlv1.Director{}}
	for i, v := range r.list(f, "directors") {
		path := fmt.Sprintf("directors[%d]", i)
		df, ok := r.mapping(v, path)
		if !ok {
			continue
		}
		d := &lvsctlv1.Director{Name: r.str(df, "name"), Priority: DefaultPriority}
		if p, ok := r.number(df, "priority", 0, math.MaxUint32); ok {
			d.Priority = uint32(p)
		}
		d.Address = r.str(df, "address")
		r.done(df)
		g.Directors = append(g.Directors, d)
	}
	g.VipInterface = r.str(f, "vipInterface")
	if v, ok := f.get("gateway"); ok {
		if gf, ok := r.mapping(v, "gateway"); ok {
			g.Gateway = &lvsctlv1.Gateway{Address: r.str(gf, "address"), Interface: r.str(gf, "interface")}
			r.done(gf)
		}
	}
	if v, ok := f.get("sync"); ok {
		if sf, ok := r.mapping(v, "sync"); ok {
			g.Sync = &lvsctlv1.Sync{Interface: r.str(sf, "interface")}
			if id, ok := r.number(sf, "syncId", 0, math.MaxUint32); ok {
				g.Sync.SyncId = uint32(id)
			}
			r.done(sf)
		}
	}
	if v, ok := f.get("failover"); ok {
		g.Failover = r.failover(v)
	}
	if rev, ok := r.number(f, "revision", math.MinInt64, math.MaxInt64); ok {
		g.Revision = rev
	}
	return g
}

// failover reads a group's failover settings. A field left out stays 0, which means its
// default (package failover): the stored group then follows a later change of the default.
func (r *docReader) failover(v any) *lvsctlv1.Failover {
	f, ok := r.mapping(v, "failover")
	if !ok {
		return nil
	}
	fo := &lvsctlv1.Failover{
		HeartbeatIntervalMs: r.millis(f, "heartbeatInterval"),
		DeadAfterMs:         r.millis(f, "deadAfter"),
		FenceMs:             r.millis(f, "fenceTime"),
	}
	fo.Preempt = r.boolean(f, "preempt")
	if p, ok := r.number(f, "port", 0, math.MaxUint32); ok {
		fo.Port = uint32(p)
	}
	r.done(f)
	return fo
}

// millis reads a duration written as Go writes one ("100ms", "0.3s", "1s"): a unit is
// required, since a bare number would be seconds to a keepalived user (advert_int) and
// milliseconds to one reading the stored *_ms fields. It must be a whole number of
// milliseconds; absent is 0 (the default). Ranges are validate's business.
func (r *docReader) millis(f *fields, key string) uint32 {
	v, present := f.get(key)
	if !present {
		return 0
	}
	path := join(f.path, key)
	s, isStr := v.(string)
	if !isStr {
		r.fail(path, "must be a duration with its unit like 100ms or 0.3s, not %s", typeName(v))
		return 0
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		r.fail(path, "%s is not a duration (e.g. 100ms or 0.3s)", limits.Quote(s))
	case d <= 0:
		r.fail(path, "%s is not positive; leave %s out for the default", s, key)
	case d%time.Millisecond != 0:
		r.fail(path, "%s is not a whole number of milliseconds", s)
	case d/time.Millisecond > math.MaxUint32:
		r.fail(path, "%s is too long", s)
	default:
		return uint32(d / time.Millisecond)
	}
	return 0
}

// boolean reads true or false; absent is false.
func (r *docReader) boolean(f *fields, key string) bool {
	v, present := f.get(key)
	if !present {
		return false
	}
	b, isBool := v.(bool)
	if !isBool {
		r.fail(join(f.path, key), "must be true or false, not %s", typeName(v))
	}
	return b
}

// health reads a health check (the cluster's, or a real server's override) at path. Fields
// left out stay zero, which means their default (package health) or, in a real server's
// override, the cluster's interval, timeout, rise, fall and onFailure. What the values mean
// (kinds, ranges, which fields a kind takes) is validate's business, through package health.
func (r *docReader) health(v any, path string) *lvsctlv1.HealthCheck {
	f, ok := r.mapping(v, path)
	if !ok {
		return nil
	}
	h := &lvsctlv1.HealthCheck{
		Check:      r.str(f, "check"),
		IntervalMs: r.millis(f, "interval"),
		TimeoutMs:  r.millis(f, "timeout"),
		Rise:       r.count(f, "rise"),
		Fall:       r.count(f, "fall"),
		OnFailure:  r.str(f, "onFailure"),
		Path:       r.str(f, "path"),
		Expect:     r.str(f, "expect"),
		Body:       r.str(f, "body"),
		ServerName: r.str(f, "serverName"),
		Verify:     r.boolean(f, "verify"),
		Url:        r.str(f, "url"),
		Describe:   r.boolean(f, "describe"),
		UdpMode:    r.str(f, "udpMode"),
	}
	if p, ok := r.number(f, "port", 0, math.MaxUint32); ok {
		h.Port = uint32(p)
	}
	// The payload is text: the bytes of its UTF-8 encoding, so YAML's and JSON's escapes
	// ("\n", "\0") write control bytes. (A byte above 0x7f cannot be written: "\xff" is the
	// character U+00FF, two bytes in UTF-8.)
	if s := r.str(f, "payload"); s != "" {
		h.Payload = []byte(s)
	}
	for i, v := range r.list(f, "command") {
		s, isStr := v.(string)
		if !isStr {
			r.fail(fmt.Sprintf("%s.command[%d]", path, i), "must be a string, not %s", typeName(v))
		}
		h.Command = append(h.Command, s)
	}
	r.done(f)
	return h
}

// count reads rise or fall: a whole number of at least 1; absent is 0 (the default).
func (r *docReader) count(f *fields, key string) uint32 {
	n, ok := r.number(f, key, 0, math.MaxUint32)
	if !ok {
		return 0
	}
	if n == 0 {
		r.fail(join(f.path, key), "0 is not at least 1; leave %s out for the default", key)
	}
	return uint32(n)
}

// removeGrace reads how long a real server removed from the cluster is drained before it
// leaves the kernel: a Go duration with its unit, as the failover timings ("60s", "5m"); "0s"
// removes at once (remove_now). Absent is the default (remove_grace_ms 0, remove_now false).
// The upper bound is validate's business.
func (r *docReader) removeGrace(f *fields) (ms uint32, now bool) {
	const key = "removeGrace"
	v, present := f.get(key)
	if !present {
		return 0, false
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(key, "must be a duration with its unit like 60s, or 0s to remove at once, not %s", typeName(v))
		return 0, false
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		r.fail(key, "%s is not a duration (e.g. 60s or 5m, or 0s to remove at once)", limits.Quote(s))
	case d < 0:
		r.fail(key, "%s is negative (0s removes at once)", s)
	case d%time.Millisecond != 0:
		r.fail(key, "%s is not a whole number of milliseconds", s)
	case d == 0:
		return 0, true
	case d/time.Millisecond > math.MaxUint32:
		r.fail(key, "%s is too long", s)
	default:
		return uint32(d / time.Millisecond), false
	}
	return 0, false
}

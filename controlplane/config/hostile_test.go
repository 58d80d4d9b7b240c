package config

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// hostileBase is what the store holds before every hostile input, and what the inputs edit.
const hostileBase = `kind: DirectorGroup
name: edge-1
directors: [{name: dir-a, priority: 100}]
vipInterface: eth0
---
kind: Cluster
name: web
directorGroup: edge-1
vips: [192.0.2.10]
ports: [{protocol: tcp, port: 80}]
reals: [{address: 198.51.100.1, weight: 1}]
health: {check: http, port: 80, path: /}
`

// hostileEdit is hostileBase with old replaced by new (old must occur).
func hostileEdit(t *testing.T, old, new string) string {
	t.Helper()
	if !strings.Contains(hostileBase, old) {
		t.Fatalf("test bug: %q not in the base manifest", old)
	}
	return strings.Replace(hostileBase, old, new, 1)
}

// baseObjects is hostileBase parsed, for RPC requests built from it.
func baseObjects(t *testing.T) (*lvsctlv1.DirectorGroup, *lvsctlv1.Cluster) {
	t.Helper()
	objs, err := manifest.Parse([]byte(hostileBase))
	if err != nil {
		t.Fatal(err)
	}
	return objs[0].GetGroup(), objs[1].GetCluster()
}

// storeState is everything the store holds, as bytes: equal before and after means nothing
// was written, not even a value equal to the one it replaced (etcd's revision would move).
func storeState(t *testing.T, st *store.Store) string {
	t.Helper()
	rev, head, err := st.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "revision %d head %d\n", rev, head)
	for _, m := range []map[string]proto.Message{toMessages(snap.Clusters), toMessages(snap.Groups), toMessages(snap.Roles)} {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m[k])
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %x\n", k, data)
		}
	}
	return b.String()
}

func toMessages[M proto.Message](m map[string]M) map[string]proto.Message {
	out := map[string]proto.Message{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// hostileServer is the controller's ConfigService over a real embedded etcd, served over
// real gRPC on loopback with the controller's message size limit.
func hostileServer(t *testing.T) (*Server, *store.Store, *clientv3.Client, lvsctlv1.ConfigServiceClient) {
	t.Helper()
	st, etcd := storetest.StartClient(t)
	s := NewServer(st, storetest.Cache(t, st), slog.New(slog.DiscardHandler))
	g := grpc.NewServer(grpc.MaxRecvMsgSize(limits.MaxMessageBytes))
	s.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(limits.MaxMessageBytes), grpc.MaxCallRecvMsgSize(limits.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return s, st, etcd, lvsctlv1.NewConfigServiceClient(conn)
}

// maxRefusal bounds the length of every refusal's message: none repeats a hostile value
// whole (limits.MaxEcho), nor lists more than limits.MaxErrors problems.
const maxRefusal = 4096

// TestHostileInputs sends inputs a hostile or careless user would (manifests as lvsctl reads
// them, and RPC requests as any client could send them) to the real controller over gRPC,
// with a real etcd behind it. Each is refused with a message that names the field or the
// limit, the message stays short, and the store is unchanged: same revision, same content.
func TestHostileInputs(t *testing.T) {
	s, st, _, client := hostileServer(t)
	base, err := manifest.Parse([]byte(hostileBase))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, base...)

	deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
	bomb := "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 1; i < 10; i++ {
		bomb += fmt.Sprintf("a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	long := strings.Repeat("x", 100_000)

	type hostile struct {
		name string
		// manifest is read as lvsctl reads it (manifest.Parse, then validate.Object). When
		// lvsctl refuses it, want must be in lvsctl's error; when it parses, the parsed
		// objects are also sent to the controller without lvsctl's check, which must refuse
		// them with code and want.
		manifest string
		// request is sent as it is, over gRPC (direct: in-process, for values gRPC's codec
		// would refuse before they reach the server, such as invalid UTF-8).
		request func(t *testing.T) *lvsctlv1.ApplyRequest
		direct  bool
		code    codes.Code
		want    string
	}
	one := func(objs ...*lvsctlv1.Object) *lvsctlv1.ApplyRequest { return &lvsctlv1.ApplyRequest{Objects: objs} }
	withCluster := func(edit func(c *lvsctlv1.Cluster)) func(t *testing.T) *lvsctlv1.ApplyRequest {
		return func(t *testing.T) *lvsctlv1.ApplyRequest {
			_, c := baseObjects(t)
			edit(c)
			return one(&lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}})
		}
	}
	withGroup := func(edit func(g *lvsctlv1.DirectorGroup)) func(t *testing.T) *lvsctlv1.ApplyRequest {
		return func(t *testing.T) *lvsctlv1.ApplyRequest {
			g, _ := baseObjects(t)
			edit(g)
			return one(&lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: g}})
		}
	}
	inv := codes.InvalidArgument
	tests := []hostile{
		// Numbers that another reader would read differently (YAML 1.1 octal and friends).
		{name: "octal port", manifest: hostileEdit(t, "port: 80}", "port: 0554}"), want: "ports[0].port: 0554 is not a plain decimal integer (a leading 0 makes it octal in YAML 1.1"},
		{name: "hexadecimal port", manifest: hostileEdit(t, "port: 80}", "port: 0x22a}"), want: "ports[0].port: 0x22a is not a plain decimal integer (hexadecimal"},
		{name: "exponent port", manifest: hostileEdit(t, "port: 80}", "port: 1e3}"), want: "ports[0].port: 1e3 is not a plain decimal integer (it has a fraction or an exponent)"},
		{name: "signed port", manifest: hostileEdit(t, "port: 80}", "port: +554}"), want: "ports[0].port: +554 is not a plain decimal integer (write it without the +)"},
		{name: "octal weight", manifest: hostileEdit(t, "weight: 1}", "weight: 0o17}"), want: "reals[0].weight: 0o17 is not a plain decimal integer (octal or binary"},
		{name: "underscored fwmark", manifest: hostileEdit(t, "weight: 1}]", "weight: 1}]\nfwmark: 1_000"), want: "fwmark: 1_000 is not a plain decimal integer (write it without _)"},
		{name: "octal sync id", manifest: hostileEdit(t, "vipInterface: eth0", "vipInterface: eth0\nsync: {interface: eth1, syncId: 07}"), want: "sync.syncId: 07 is not a plain decimal integer"},
		{name: "octal port range", manifest: hostileEdit(t, "port: 80}", "ports: 0554-0600}"), want: `ports[0].ports: must be a port range like 1024-5000, not the string "0554-0600"`},
		{name: "huge float", manifest: hostileEdit(t, "priority: 100}", "priority: 1e400}"), want: `directors[0].priority: must be a number, not the string "1e400"`},
		{name: "huge integer", manifest: hostileEdit(t, "weight: 1}", "weight: 99999999999999999999}"), want: "reals[0].weight: 99999999999999999999 is out of range 0-4294967295"},
		{name: "infinity", manifest: hostileEdit(t, "port: 80}", "port: .inf}"), want: "ports[0].port: .inf is not a plain decimal integer"},
		{name: "json exponent", manifest: `{"kind": "Cluster", "name": "web", "directorGroup": "edge-1", "vips": ["192.0.2.10"], "ports": [{"protocol": "tcp", "port": 8e1}]}`,
			want: "ports[0].port: 8e1 is not a plain decimal integer"},
		// Input that is not a manifest, or is built to exhaust the reader.
		{name: "alias bomb", manifest: bomb + "kind: Cluster\nname: web\n", want: "aliases expand too far: past 100000 nodes"},
		{name: "NUL byte", manifest: hostileEdit(t, "name: web", "name: w\x00eb"), want: "line 7, column 8: a NUL byte"},
		{name: "invalid UTF-8", manifest: hostileEdit(t, "name: web", "name: w\xffeb"), want: "line 7, column 8: byte 0xff is not UTF-8"},
		{name: "nested too deep", manifest: "kind: Cluster\nname: web\nvips: " + deep + "\n", want: "nested more than 32 levels deep"},
		{name: "larger than a manifest", manifest: hostileBase + "# " + strings.Repeat("x", limits.MaxManifestBytes) + "\n",
			want: fmt.Sprintf("bytes, more than the limit of %d", limits.MaxManifestBytes)},
		{name: "duplicate key", manifest: hostileEdit(t, "name: web", "name: web\nname: www"), want: `line 8: key "name" is defined twice (first on line 7)`},
		{name: "duplicate key in JSON", manifest: `{"kind": "Cluster", "name": "web", "name": "www"}`, want: `key "name" is defined twice`},
		{name: "unknown field", manifest: hostileEdit(t, "directorGroup: edge-1", "directorGroup: edge-1\nschedular: rr"), want: "schedular: unknown field"},
		{name: "huge unknown key", manifest: `{"kind": "Cluster", "name": "web", "` + long + `": 1}`, want: `cluster "web": "xxxxxxxx`},
		{name: "binary tag", manifest: hostileEdit(t, "name: web", "name: !!binary d2Vi"), want: `the tag "!!binary" is not taken`},
		{name: "YAML 1.1 boolean", manifest: hostileEdit(t, "path: /}", "path: /, verify: yes}"), want: `health.verify: must be true or false, not the string "yes"`},
		{name: "mapping for a string", manifest: hostileEdit(t, "name: web", "name: {first: web}"), want: "name: must be a string, not a mapping"},
		{name: "mapping for a list", manifest: hostileEdit(t, "vips: [192.0.2.10]", "vips: {a: 192.0.2.10}"), want: "vips: must be a list, not a mapping"},
		{name: "list for a number", manifest: hostileEdit(t, "port: 80}", "port: [80]}"), want: "ports[0].port: must be a number, not a list"},
		// Addresses no VIP or real server can have: refused by lvsctl and by the controller.
		{name: "loopback VIP", manifest: hostileEdit(t, "vips: [192.0.2.10]", "vips: [127.0.0.1]"), code: inv, want: "vips[0]: 127.0.0.1 is a loopback address"},
		{name: "IPv6 loopback VIP", manifest: hostileEdit(t, "vips: [192.0.2.10]", `vips: ["::1"]`), code: inv, want: "vips[0]: ::1 is a loopback address"},
		{name: "broadcast VIP", manifest: hostileEdit(t, "vips: [192.0.2.10]", "vips: [255.255.255.255]"), code: inv, want: "vips[0]: 255.255.255.255 is the broadcast address"},
		{name: "unspecified VIP", manifest: hostileEdit(t, "vips: [192.0.2.10]", "vips: [0.0.0.0]"), code: inv, want: "vips[0]: 0.0.0.0 is the unspecified address"},
		{name: "multicast VIP", manifest: hostileEdit(t, "vips: [192.0.2.10]", "vips: [239.1.1.1]"), code: inv, want: "vips[0]: 239.1.1.1 is a multicast address"},
		{name: "loopback real", manifest: hostileEdit(t, "address: 198.51.100.1", "address: 127.0.0.2"), code: inv, want: "reals[0].address: 127.0.0.2 is a loopback address"},
		{name: "broadcast real", manifest: hostileEdit(t, "address: 198.51.100.1", "address: 255.255.255.255"), code: inv, want: "reals[0].address: 255.255.255.255 is the broadcast address"},
		{name: "unspecified IPv6 real", manifest: strings.Replace(hostileEdit(t, "vips: [192.0.2.10]", `vips: ["2001:db8::10"]`), "address: 198.51.100.1", `address: "::"`, 1),
			code: inv, want: "reals[0].address: :: is the unspecified address"},
		{name: "multicast IPv6 real", manifest: strings.Replace(hostileEdit(t, "vips: [192.0.2.10]", `vips: ["2001:db8::10"]`), "address: 198.51.100.1", `address: "ff02::1"`, 1),
			code: inv, want: "reals[0].address: ff02::1 is a multicast address"},
		{name: "address with a long tail", manifest: hostileEdit(t, "address: 198.51.100.1", "address: 198.51.100.1"+long), code: inv, want: "... (100012 bytes) is not an IP address"},
		// Interface names the kernel refuses (dev_valid_name) or reads differently.
		{name: "interface with slash", manifest: hostileEdit(t, "vipInterface: eth0", "vipInterface: eth0/1"), code: inv, want: `vipInterface: "eth0/1" contains '/', ':' or white space`},
		{name: "interface with colon", manifest: hostileEdit(t, "vipInterface: eth0", `vipInterface: "eth0:1"`), code: inv, want: `vipInterface: "eth0:1" contains '/', ':' or white space`},
		{name: "interface with space", manifest: hostileEdit(t, "vipInterface: eth0", `vipInterface: "eth 0"`), code: inv, want: `vipInterface: "eth 0" contains '/', ':' or white space`},
		{name: "interface dot-dot", manifest: hostileEdit(t, "vipInterface: eth0", `vipInterface: ".."`), code: inv, want: `vipInterface: ".." is not an interface name`},
		{name: "interface of 16 bytes", manifest: hostileEdit(t, "vipInterface: eth0", "vipInterface: abcdefghijklmnop"), code: inv, want: `vipInterface: "abcdefghijklmnop" is longer than 15 characters (IFNAMSIZ)`},
		{name: "interface template", manifest: hostileEdit(t, "vipInterface: eth0", "vipInterface: eth%d"), code: inv, want: `vipInterface: "eth%d" contains '%'`},
		{name: "interface with a Latin-1 space", manifest: hostileEdit(t, "vipInterface: eth0", "vipInterface: ethà"), code: inv, want: `vipInterface: "ethà" contains the byte 0xa0`},
		{name: "interface with NUL", manifest: hostileEdit(t, "vipInterface: eth0", `vipInterface: "eth\0"`), code: inv, want: `vipInterface: "eth\x00" contains a NUL byte`},
		{name: "interface with a control character", manifest: hostileEdit(t, "vipInterface: eth0", `vipInterface: "eth\x01"`), code: inv, want: `contains a control character`},
		// Names and strings.
		{name: "name of 64 bytes", manifest: hostileEdit(t, "name: web", "name: "+strings.Repeat("w", 64)), code: inv, want: "is longer than 63 characters"},
		{name: "name of 100,000 bytes", manifest: hostileEdit(t, "name: web", "name: "+long), code: inv, want: "... (100000 bytes) is longer than 63 characters"},
		{name: "health path too long", manifest: hostileEdit(t, "path: /}", "path: /"+strings.Repeat("a", 3000)+"}"), code: inv, want: "health.path: 3001 bytes, more than the limit of 2048"},
		{name: "exec argument with NUL", manifest: hostileEdit(t, "{check: http, port: 80, path: /}", `{check: exec, command: ["/bin/check", "a\0b"]}`), code: inv, want: "health.command[1]: holds a NUL byte"},
		{name: "too many exec arguments", manifest: hostileEdit(t, "{check: http, port: 80, path: /}", "{check: exec, command: ["+strings.TrimSuffix(strings.Repeat("a, ", 65), ", ")+"]}"),
			code: inv, want: "health.command: 65 arguments, more than the limit of 64"},
		{name: "scheduler of 100,000 bytes", manifest: hostileEdit(t, "directorGroup: edge-1", "directorGroup: edge-1\nscheduler: "+long), code: inv, want: "scheduler: unknown scheduler \"xxxx"},
		// Plain services (issue 12): what a VIP refuses, their address refuses; a service
		// does not take a fwmark cluster's fields.
		{name: "service beside vips", manifest: hostileEdit(t, "ports: [{protocol: tcp, port: 80}]", "ports: [{protocol: tcp, port: 80}]\nservice: {address: 192.0.2.20, protocol: tcp, port: 80}"),
			code: inv, want: "vips: set together with service"},
		{name: "loopback service", manifest: hostileEdit(t, "vips: [192.0.2.10]\nports: [{protocol: tcp, port: 80}]", "service: {address: 127.0.0.1, protocol: tcp, port: 80}"),
			code: inv, want: "service.address: 127.0.0.1 is a loopback address"},
		{name: "IPv6 multicast service", manifest: hostileEdit(t, "vips: [192.0.2.10]\nports: [{protocol: tcp, port: 80}]", `service: {address: "ff05::2", protocol: tcp, port: 80}`),
			code: inv, want: "service.address: ff05::2 is a multicast address"},
		{name: "octal service port", manifest: hostileEdit(t, "vips: [192.0.2.10]\nports: [{protocol: tcp, port: 80}]", "service: {address: 192.0.2.10, protocol: tcp, port: 080}"),
			want: "service.port: 080 is not a plain decimal integer"},
		{name: "service port 0 without persistence", manifest: hostileEdit(t, "vips: [192.0.2.10]\nports: [{protocol: tcp, port: 80}]", "service: {address: 192.0.2.10, protocol: tcp, port: 0}"),
			code: inv, want: "service.port: 0 (every port) needs persistence"},
		{name: "real port on a fwmark cluster", manifest: hostileEdit(t, "weight: 1}", "weight: 1, port: 8080}"),
			code: inv, want: "reals[0].port: 8080 is set on a fwmark cluster"},
		{name: "service port 70000", request: withCluster(func(c *lvsctlv1.Cluster) {
			c.Vips, c.Ports = nil, nil
			c.Service = &lvsctlv1.VirtualService{Address: "192.0.2.10", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 70000}
		}), code: inv, want: "service.port: 70000 is out of range 0-65535"},
		{name: "service of unknown protocol", request: withCluster(func(c *lvsctlv1.Cluster) {
			c.Vips, c.Ports = nil, nil
			c.Service = &lvsctlv1.VirtualService{Address: "192.0.2.10", Protocol: 99, Port: 80}
		}), code: inv, want: "service.protocol: unknown protocol 99"},
		{name: "unknown scheduler flag", request: withCluster(func(c *lvsctlv1.Cluster) { c.SchedulerFlags = []lvsctlv1.SchedulerFlag{99} }),
			code: inv, want: "schedulerFlags[0]: unknown scheduler flag 99"},
		{name: "threshold 2^32-1", request: withCluster(func(c *lvsctlv1.Cluster) { c.Reals[0].UpperThreshold = 1<<32 - 1 }),
			code: inv, want: "reals[0].upperThreshold: 4294967295 is more than 2147483647"},
		// Tunnel types: through real gRPC, refused naming the field, the store untouched.
		{name: "tunnel without forwarding tunnel", request: withCluster(func(c *lvsctlv1.Cluster) {
			c.Tunnel = &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GRE}
		}), code: inv, want: "tunnel: set with forwarding"},
		{name: "gue tunnel port 70000", request: withCluster(func(c *lvsctlv1.Cluster) {
			c.Forwarding = lvsctlv1.Forwarding_FORWARDING_TUNNEL
			c.Tunnel = &lvsctlv1.Tunnel{Type: lvsctlv1.TunnelType_TUNNEL_TYPE_GUE, Port: 70000}
		}), code: inv, want: "tunnel.port: 70000 is out of range 1-65535"},
		{name: "tunnel type 250", request: withCluster(func(c *lvsctlv1.Cluster) {
			c.Forwarding = lvsctlv1.Forwarding_FORWARDING_TUNNEL
			c.Tunnel = &lvsctlv1.Tunnel{Type: 250}
		}), code: inv, want: "tunnel.type: unknown tunnel type 250"},
		// RPC requests no manifest could produce.
		{name: "1,001 real servers", request: withCluster(func(c *lvsctlv1.Cluster) {
			for i := range 1000 {
				c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("10.1.%d.%d", i/250, 1+i%250), Weight: 1})
			}
		}), code: inv, want: "reals: 1001 real servers per cluster, more than the limit of 1000"},
		{name: "257 VIPs", request: withCluster(func(c *lvsctlv1.Cluster) {
			for i := range 256 {
				c.Vips = append(c.Vips, fmt.Sprintf("192.0.3.%d", i))
			}
		}), code: inv, want: "vips: 257 VIPs per cluster, more than the limit of 256"},
		{name: "65 port entries", request: withCluster(func(c *lvsctlv1.Cluster) {
			for i := range 64 {
				c.Ports = append(c.Ports, &lvsctlv1.PortRange{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: uint32(1000 + i), Last: uint32(1000 + i)})
			}
		}), code: inv, want: "ports: 65 port entries per cluster, more than the limit of 64"},
		{name: "1,025 directors", request: withGroup(func(g *lvsctlv1.DirectorGroup) {
			for i := range 1024 {
				g.Directors = append(g.Directors, &lvsctlv1.Director{Name: fmt.Sprintf("d%d", i), Priority: 1, Address: fmt.Sprintf("10.2.%d.%d", i/250, i%250+1)})
			}
		}), code: inv, want: "directors: 1025 directors per group, more than the limit of 1024"},
		{name: "20,001 objects", request: func(t *testing.T) *lvsctlv1.ApplyRequest {
			req := &lvsctlv1.ApplyRequest{}
			for i := range limits.MaxObjectsPerApply + 1 {
				req.Objects = append(req.Objects, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{Name: fmt.Sprintf("c%d", i)}}})
			}
			return req
		}, code: inv, want: "objects: 20001 objects in one apply, more than the limit of 20000"},
		{name: "port 70000", request: withCluster(func(c *lvsctlv1.Cluster) { c.Ports[0].First, c.Ports[0].Last = 70000, 70000 }), code: inv, want: "ports[0].port: 70000 is out of range 1-65535"},
		{name: "weight 2^32-1", request: withCluster(func(c *lvsctlv1.Cluster) { c.Reals[0].Weight = 1<<32 - 1 }), code: inv, want: "reals[0].weight: 4294967295 is more than 65535"},
		{name: "unknown enum", request: withCluster(func(c *lvsctlv1.Cluster) { c.Forwarding = 99 }), code: inv, want: "forwarding: unknown forwarding 99"},
		{name: "empty object", request: func(*testing.T) *lvsctlv1.ApplyRequest { return one(&lvsctlv1.Object{}) }, code: inv, want: "kind: required"},
		{name: "no objects", request: func(*testing.T) *lvsctlv1.ApplyRequest { return &lvsctlv1.ApplyRequest{} }, code: inv, want: "objects: at least one object is required"},
		{name: "invalid UTF-8 in a health path", direct: true, request: withCluster(func(c *lvsctlv1.Cluster) { c.Health.Path = "/\xff" }), code: inv, want: "health.path: is not UTF-8 text"},
		{name: "invalid UTF-8 in an interface", direct: true, request: withGroup(func(g *lvsctlv1.DirectorGroup) { g.VipInterface = "eth\xff" }), code: inv, want: `vipInterface: "eth\xff" is not UTF-8 text`},
		{name: "name of 100,000 bytes over RPC", request: func(*testing.T) *lvsctlv1.ApplyRequest {
			return one(&lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{Name: long}}})
		}, code: inv, want: `name: "xxxx`},
	}
	if len(tests) < 40 {
		t.Fatalf("test bug: %d hostile inputs, the issue asks for at least 40", len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := storeState(t, st)
			defer func() {
				if after := storeState(t, st); after != before {
					t.Errorf("the store changed:\nbefore %s\nafter  %s", before, after)
				}
			}()
			var req *lvsctlv1.ApplyRequest
			if tt.manifest != "" {
				objs, err := manifest.Parse([]byte(tt.manifest))
				if err == nil {
					// lvsctl's own check refuses it before sending.
					for _, o := range objs {
						if err = validate.Object(o); err != nil {
							break
						}
					}
					if err == nil {
						t.Fatal("lvsctl accepted it")
					}
					checkRefusal(t, "lvsctl", err.Error(), tt.want)
					// A client without lvsctl's check sends the parsed objects anyway.
					req = &lvsctlv1.ApplyRequest{Objects: objs}
				} else {
					checkRefusal(t, "lvsctl", err.Error(), tt.want)
					if tt.code != codes.OK {
						t.Fatalf("test bug: lvsctl refused it, the controller never sees it")
					}
					return
				}
			} else {
				req = tt.request(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if tt.direct {
				_, err = s.Apply(ctx, req)
			} else {
				_, err = client.Apply(ctx, req)
			}
			if status.Code(err) != tt.code {
				t.Fatalf("controller: code %v, want %v: %v", status.Code(err), tt.code, err)
			}
			checkRefusal(t, "controller", status.Convert(err).Message(), tt.want)
		})
	}
}

func checkRefusal(t *testing.T, who, msg, want string) {
	t.Helper()
	if !strings.Contains(msg, want) {
		t.Errorf("%s's refusal does not say %q:\n%.2000s", who, want, msg)
	}
	if len(msg) > maxRefusal {
		t.Errorf("%s's refusal is %d bytes, more than %d: %.300s...", who, len(msg), maxRefusal, msg)
	}
}

// TestClustersPerGroupLimit: a group holding limits.MaxClustersPerGroup clusters takes no
// more (ResourceExhausted, naming the limit and the count, nothing written), while its
// clusters can still be changed, and another group still takes new ones.
func TestClustersPerGroupLimit(t *testing.T) {
	s, st, _, client := hostileServer(t)
	base, err := manifest.Parse([]byte(hostileBase))
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, base...)
	ctx := context.Background()
	// The group's other clusters, written straight into the store: the limit is about what
	// the group holds, however it got there.
	_, head, err := st.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 5000
	for lo := 1; lo < limits.MaxClustersPerGroup; lo += chunk {
		w := store.Write{Head: head, Puts: map[string]proto.Message{}}
		for i := lo; i < min(lo+chunk, limits.MaxClustersPerGroup); i++ {
			name := fmt.Sprintf("c%05d", i)
			w.Puts[store.ClusterKey(name)] = &lvsctlv1.Cluster{Name: name, DirectorGroup: "edge-1", Fwmark: uint32(1000 + i)}
		}
		if head, err = st.Commit(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	_, web := baseObjects(t)
	one := func(c *lvsctlv1.Cluster) *lvsctlv1.ApplyRequest {
		return &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}}}
	}

	extra := proto.CloneOf(web)
	extra.Name, extra.Vips = "extra", []string{"192.0.2.99"}
	before := storeState(t, st)
	_, err = client.Apply(ctx, one(extra))
	want := fmt.Sprintf(`group "edge-1": %d clusters per director group after this apply, more than the limit of %d`, limits.MaxClustersPerGroup+1, limits.MaxClustersPerGroup)
	if status.Code(err) != codes.ResourceExhausted || status.Convert(err).Message() != want {
		t.Errorf("one cluster past the limit: %v\nwant ResourceExhausted: %s", err, want)
	}
	if after := storeState(t, st); after != before {
		t.Errorf("the refused apply changed the store: %.200s\n%.200s", before, after)
	}

	web.Reals[0].Weight = 7
	if _, err := client.Apply(ctx, one(web)); err != nil {
		t.Errorf("a change to a cluster of the full group: %v", err)
	}
	g2 := &lvsctlv1.DirectorGroup{Name: "edge-2", VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-b", Priority: 1}}}
	extra.DirectorGroup = "edge-2"
	if _, err := client.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Group{Group: g2}}, {Kind: &lvsctlv1.Object_Cluster{Cluster: extra}}}}); err != nil {
		t.Errorf("a new cluster in another group: %v", err)
	}
}

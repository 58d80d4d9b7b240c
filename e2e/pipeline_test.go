// Package e2e runs the whole pipeline on one machine: a real controller with its embedded
// etcd, agents with stateful fake data planes, and real gRPC over loopback between them.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/agent/daemon"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	agentpeer "github.com/lvsctl/lvsctl/agent/peer"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/stats"
	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func freePort(t *testing.T) string { return storetest.FreePorts(t, 1)[0] }

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("LVSCTL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ctlProc is a controller that a test can stop and start again on the same data and address.
type ctlProc struct {
	t      *testing.T
	cfg    controller.Config
	cancel context.CancelFunc
	done   chan error
}

func newController(t *testing.T) *ctlProc {
	ports := storetest.FreePorts(t, 4)
	cfg := controller.Config{
		DataDir:       filepath.Join(t.TempDir(), "etcd"),
		Listen:        ports[0],
		EtcdClientURL: "http://" + ports[1],
		EtcdPeerURL:   "http://" + ports[2],
		MetricsListen: ports[3],
		Insecure:      true,
		// etcd logs its own shutdown as errors; the test checks behaviour, not its logs.
		EtcdLogLevel: "fatal",
		Logger:       testLogger(t).With("component", "controller"),
	}
	p := &ctlProc{t: t, cfg: cfg}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *ctlProc) start() {
	p.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.Start(ctx, p.cfg)
	if err != nil {
		cancel()
		p.t.Fatalf("starting controller: %v", err)
	}
	p.cancel = cancel
	p.done = make(chan error, 1)
	go func() { p.done <- c.Serve(ctx) }()
}

func (p *ctlProc) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	if err := <-p.done; err != nil {
		p.t.Errorf("controller: %v", err)
	}
	p.cancel = nil
}

// agentProc is one director's agent with fake kernel parts.
type agentProc struct {
	name  string
	ipvs  *fake.IPVS
	fw    *fake.Firewall
	addrs *fake.Addresses
	stop  context.CancelFunc
	done  chan error
}

func startAgent(t *testing.T, name, target string) *agentProc {
	t.Helper()
	return runAgent(t, name, target, testLogger(t).With("component", "agent", "director", name), 50*time.Millisecond, nil)
}

// runAgent starts a director's agent with fake kernel parts against the controller at target,
// stopped when the test ends; applied, when set, is called after each reconcile and its ack.
func runAgent(t testing.TB, name, target string, log *slog.Logger, statsPeriod time.Duration, applied func(rev int64)) *agentProc {
	t.Helper()
	st, err := state.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{name: name, ipvs: fake.NewIPVS(), fw: fake.NewFirewall(), addrs: fake.NewAddresses("eth0", "eth1")}
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: a.ipvs, Firewall: a.fw, Addresses: a.addrs, State: st})
	sess := session.New(session.Config{Target: target, Insecure: true, Logger: log, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
	ag := daemon.New(daemon.Config{Director: name, Version: "test", Logger: log, State: st, Reconciler: rec, Session: sess, Resync: time.Hour,
		Stats: stats.NewReporter(a.ipvs), StatsPeriod: statsPeriod,
		// The real peer heartbeats, on the group's loopback addresses: with them an ACTIVE
		// keeps its VIPs through a controller restart, as on a real director.
		Peers: func(local netip.AddrPort) (daemon.PeerTransport, error) {
			tr, err := agentpeer.Listen(local, log)
			if err != nil {
				return nil, err
			}
			return tr, nil
		},
		Applied: func(rev int64, _ reconcile.Result) {
			if applied != nil {
				applied(rev)
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan error, 1)
	go func() { a.done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-a.done; err != nil {
			t.Errorf("agent %s: %v", name, err)
		}
	})
	return a
}

// kernel is everything the agent's fake kernel holds, for before/after comparisons.
func (a *agentProc) kernel() string {
	return a.ipvs.Dump() + "\n" + a.fw.Dump() + "\n" + a.addrs.Dump()
}

type clients struct {
	config lvsctlv1.ConfigServiceClient
	status lvsctlv1.StatusServiceClient
}

func dial(t *testing.T, target string) clients {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{config: lvsctlv1.NewConfigServiceClient(conn), status: lvsctlv1.NewStatusServiceClient(conn)}
}

// twoDirectorWMS is the seed's Windows Media cluster with a group of two directors.
func twoDirectorWMS(t *testing.T) []*lvsctlv1.Object {
	t.Helper()
	data, err := os.ReadFile("../deploy/examples/wms.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifest.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if g := o.GetGroup(); g != nil {
			// A group of two needs each director's address (validate): loopback ones, so
			// that nothing a director sends its peer leaves this machine.
			g.Directors[0].Address = "127.1.0.1"
			g.Directors = append(g.Directors, &lvsctlv1.Director{Name: "dir-b", Priority: 100, Address: "127.1.0.2"})
		}
	}
	return objs
}

// waitApplied waits until every named director is connected and has applied rev.
func waitApplied(t *testing.T, c clients, rev int64, directors ...string) []*lvsctlv1.DirectorStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last []*lvsctlv1.DirectorStatus
	for time.Now().Before(deadline) {
		resp, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{})
		if err == nil {
			last = resp.GetDirectors()
			byName := map[string]*lvsctlv1.DirectorStatus{}
			for _, d := range last {
				byName[d.GetDirector()] = d
			}
			ok := true
			for _, n := range directors {
				d := byName[n]
				if d == nil || !d.GetConnected() || d.GetAppliedRevision() != rev || d.GetDesiredRevision() != rev {
					ok = false
				}
			}
			if ok {
				return last
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("directors %v did not apply revision %d; status: %v", directors, rev, last)
	return nil
}

func TestPipeline(t *testing.T) {
	ctl := newController(t)
	c := dial(t, ctl.cfg.Listen)
	ctx := context.Background()
	dirA := startAgent(t, "dir-a", ctl.cfg.Listen)
	dirB := startAgent(t, "dir-b", ctl.cfg.Listen)

	// Apply: both agents ack the new revision; the ACTIVE holds the VIP, the STANDBY not.
	objs := twoDirectorWMS(t)
	resp, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	rev := resp.GetRevision()
	if len(resp.GetResults()) != 2 {
		t.Fatalf("apply results: %v, want the cluster and the group", resp.GetResults())
	}
	for _, r := range resp.GetResults() {
		if r.GetAction() != lvsctlv1.Action_ACTION_CREATED {
			t.Errorf("%s %s: action %v, want CREATED", r.GetKind(), r.GetName(), r.GetAction())
		}
	}
	statuses := waitApplied(t, c, rev, "dir-a", "dir-b")
	roles := map[string]lvsctlv1.Role{}
	for _, d := range statuses {
		roles[d.GetDirector()] = d.GetRole()
		if len(d.GetErrors())+len(d.GetDirectorErrors()) > 0 {
			t.Errorf("%s reports errors: %v %v", d.GetDirector(), d.GetErrors(), d.GetDirectorErrors())
		}
	}
	if roles["dir-a"] != lvsctlv1.Role_ROLE_ACTIVE || roles["dir-b"] != lvsctlv1.Role_ROLE_STANDBY {
		t.Errorf("roles = %v, want dir-a ACTIVE and dir-b STANDBY", roles)
	}
	for _, a := range []*agentProc{dirA, dirB} {
		svcs, _ := a.ipvs.Services()
		if len(svcs) != 1 || svcs[0].Scheduler != "wlc" || svcs[0].Timeout != 600 {
			t.Errorf("%s: IPVS services = %+v, want one wlc service persistent 600", a.name, svcs)
			continue
		}
		dests, _ := a.ipvs.Destinations(svcs[0])
		if len(dests) != 3 {
			t.Errorf("%s: %d real servers, want 3", a.name, len(dests))
		}
		rules, _ := a.fw.MarkRules()
		if len(rules) != 5 {
			t.Errorf("%s: %d mark rules, want 5 (tcp/udp 554, tcp/udp 1755, udp 1024-5000)", a.name, len(rules))
		}
	}
	// The ACTIVE takes the VIP once its lease starts (the first answer to its heartbeats),
	// which may come after its ack of the revision.
	waitUntil(t, 10*time.Second, "dir-a holds the VIP", func() bool {
		got, _ := dirA.addrs.Addresses("eth0")
		return len(got) == 1 && got[0].String() == "192.0.2.10/32"
	})
	if got, _ := dirB.addrs.Addresses("eth0"); len(got) != 0 {
		t.Errorf("dir-b (STANDBY) eth0 addresses = %v, want none", got)
	}

	// Applying the same objects again changes nothing and says so.
	again, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)})
	if err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if again.GetRevision() != rev {
		t.Errorf("unchanged re-apply moved the revision %d -> %d", rev, again.GetRevision())
	}
	if len(again.GetResults()) != 2 {
		t.Fatalf("re-apply results: %v, want the cluster and the group", again.GetResults())
	}
	for _, r := range again.GetResults() {
		if r.GetAction() != lvsctlv1.Action_ACTION_UNCHANGED {
			t.Errorf("re-apply %s: action %v, want UNCHANGED", r.GetName(), r.GetAction())
		}
	}

	// A weight change is one revision, one kernel operation on each director.
	dirA.ipvs.ResetOps()
	wms := again.GetObjects()[0].GetCluster()
	if wms == nil {
		t.Fatalf("first object is not the cluster: %v", again.GetObjects())
	}
	wms.Reals[1].Weight = 50
	upd, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: wms}}}})
	if err != nil {
		t.Fatalf("weight change: %v", err)
	}
	waitApplied(t, c, upd.GetRevision(), "dir-a", "dir-b")
	if ops := dirA.ipvs.Ops(); len(ops) != 1 {
		t.Errorf("weight change made %d IPVS operations on dir-a, want 1: %v", len(ops), ops)
	}

	// A stale revision is refused, and nothing changes.
	wms.Reals[1].Weight = 10
	wms.Revision = rev // older than upd's
	_, err = c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: wms}}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("stale apply: got %v, want FailedPrecondition", err)
	}

	// Controller restart: etcd data survives, agents reconnect and ack the same revision, and
	// their data planes see no change at all.
	beforeA, beforeB := dirA.kernel(), dirB.kernel()
	dirA.ipvs.ResetOps()
	dirB.ipvs.ResetOps()
	ctl.stop()
	time.Sleep(300 * time.Millisecond)
	if dirA.kernel() != beforeA {
		t.Errorf("dir-a's data plane changed while the controller was down")
	}
	ctl.start()
	waitApplied(t, c, upd.GetRevision(), "dir-a", "dir-b")
	got, err := c.config.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if got.GetObject().GetCluster().GetRevision() != upd.GetRevision() || got.GetObject().GetCluster().GetReals()[1].GetWeight() != 50 {
		t.Errorf("after restart the cluster is %v, want revision %d with weight 50", got.GetObject().GetCluster(), upd.GetRevision())
	}
	if dirA.kernel() != beforeA || dirB.kernel() != beforeB {
		t.Errorf("data planes changed across a controller restart:\nbefore:\n%s\nafter:\n%s", beforeA, dirA.kernel())
	}
	if ops := append(dirA.ipvs.Ops(), dirB.ipvs.Ops()...); len(ops) != 0 {
		t.Errorf("controller restart caused kernel operations: %v", ops)
	}

	// Delete: gone from etcd and from both data planes.
	del, err := c.config.Delete(ctx, &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"})
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	waitApplied(t, c, del.GetRevision(), "dir-a", "dir-b")
	if _, err := c.config.Get(ctx, &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "wms"}); status.Code(err) != codes.NotFound {
		t.Errorf("get after delete: %v, want NotFound", err)
	}
	for _, a := range []*agentProc{dirA, dirB} {
		if svcs, _ := a.ipvs.Services(); len(svcs) != 0 {
			t.Errorf("%s still has IPVS services after delete: %v", a.name, svcs)
		}
		if rules, _ := a.fw.MarkRules(); len(rules) != 0 {
			t.Errorf("%s still has mark rules after delete: %v", a.name, rules)
		}
	}
	if got, _ := dirA.addrs.Addresses("eth0"); len(got) != 0 {
		t.Errorf("dir-a still holds %v after delete", got)
	}
}

// TestInvalidApplyStoresNothing: a bad manifest is refused with the field named, and the
// store's revision does not move.
func TestInvalidApplyStoresNothing(t *testing.T) {
	ctl := newController(t)
	c := dial(t, ctl.cfg.Listen)
	ctx := context.Background()
	// A stored cluster for the cross-object cases to clash with.
	if _, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)}); err != nil {
		t.Fatal(err)
	}
	before, err := c.config.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		yaml string
		want string
	}{
		{"VIP and port already claimed", `
kind: Cluster
name: rtsp
directorGroup: edge-1
vips: [192.0.2.10]
ports: [{protocol: tcp, port: 554}]
`, `cluster "rtsp": ports[0]: tcp 554 on 192.0.2.10 is already used by cluster "wms"`},
		{"fwmark clash", `
kind: Cluster
name: web
directorGroup: edge-1
vips: [192.0.2.11]
ports: [{protocol: tcp, port: 80}]
fwmark: 1
`, `cluster "web": fwmark:`},
		{"a second cluster in the same apply breaks it", `
kind: Cluster
name: web
directorGroup: edge-1
vips: [192.0.2.11]
ports: [{protocol: tcp, port: 80}]
---
kind: Cluster
name: web2
directorGroup: edge-1
vips: [192.0.2.11]
ports: [{protocol: tcp, port: 80}]
`, `cluster "web2": ports[0]: tcp 80 on 192.0.2.11 is already used by cluster "web"`},
		{"reversed range", `
kind: DirectorGroup
name: edge-2
directors: [{name: dir-c, priority: 200}]
vipInterface: eth0
---
kind: Cluster
name: wms2
directorGroup: edge-1
vips: [192.0.2.10]
ports: [{protocol: tcp, port: 554}, {protocol: udp, ports: 5000-1024}]
reals: [{address: 198.51.100.1}]
`, `cluster "wms2": ports[1].ports: range 5000-1024 is reversed`},
		{"unknown group", `
kind: Cluster
name: wms
directorGroup: nowhere
vips: [192.0.2.10]
ports: [{protocol: tcp, port: 554}]
reals: [{address: 198.51.100.1}]
`, `cluster "wms": directorGroup`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := manifest.Parse([]byte(tc.yaml))
			if err != nil {
				// The CLI refuses this early; send it anyway by skipping local parsing errors
				// only when the manifest could not be parsed at all.
				t.Fatalf("parse: %v", err)
			}
			_, err = c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("apply: %v, want InvalidArgument", err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.want) {
				t.Errorf("message %q does not name %q", msg, tc.want)
			}
			after, err := c.config.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER})
			if err != nil {
				t.Fatal(err)
			}
			if after.GetRevision() != before.GetRevision() || len(after.GetObjects()) != 1 {
				t.Errorf("store changed: revision %d -> %d, %d clusters", before.GetRevision(), after.GetRevision(), len(after.GetObjects()))
			}
		})
	}
}

// TestStatusCounts: connection counts the kernel holds on each director reach StatusService,
// per director and summed per cluster, and follow the kernel when they change.
func TestStatusCounts(t *testing.T) {
	ctl := newController(t)
	c := dial(t, ctl.cfg.Listen)
	ctx := context.Background()
	dirA := startAgent(t, "dir-a", ctl.cfg.Listen)
	dirB := startAgent(t, "dir-b", ctl.cfg.Listen)
	resp, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)})
	if err != nil {
		t.Fatal(err)
	}
	waitApplied(t, c, resp.GetRevision(), "dir-a", "dir-b")
	key := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: resp.GetObjects()[0].GetCluster().GetFwmark()}
	set := func(a *agentProc, real string, active, inactive, persistent uint32) {
		t.Helper()
		err := a.ipvs.SetDestinationStats(key, dataplane.DestinationStats{
			Destination: dataplane.Destination{Address: netip.MustParseAddr(real)},
			ActiveConns: active, InactiveConns: inactive, PersistentConns: persistent,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	set(dirA, "198.51.100.1", 5, 1, 2)
	set(dirA, "198.51.100.2", 7, 0, 3)
	set(dirB, "198.51.100.1", 1, 0, 1)

	want := map[string]uint32{"198.51.100.1": 6, "198.51.100.2": 7, "198.51.100.3": 0}
	waitTotals := func(want map[string]uint32) {
		t.Helper()
		var got map[string]uint32
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			l, err := c.status.List(ctx, &lvsctlv1.StatusServiceListRequest{Cluster: "wms"})
			if err != nil {
				t.Fatal(err)
			}
			got = map[string]uint32{}
			for _, cs := range l.GetClusters() {
				for _, r := range cs.GetReals() {
					got[r.GetAddress()] = r.GetActiveConns()
				}
			}
			if fmt.Sprint(got) == fmt.Sprint(want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("fleet active connections per real = %v, want %v", got, want)
	}
	waitTotals(want)
	// The controller's /metrics tells the same story as StatusService.
	metrics := scrape(t, ctl.cfg.MetricsListen)
	for _, line := range []string{
		`lvsctl_fleet_real_active_connections{cluster="wms",real="198.51.100.1"} 6`,
		`lvsctl_fleet_real_active_connections{cluster="wms",real="198.51.100.2"} 7`,
		`lvsctl_agent_streams 2`,
		`lvsctl_director_revision_lag{director="dir-a",group="edge-1"} 0`,
		`lvsctl_director_connected{director="dir-b",group="edge-1"} 1`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("controller /metrics lacks %q", line)
		}
	}
	l, err := c.status.List(ctx, &lvsctlv1.StatusServiceListRequest{Cluster: "wms"})
	if err != nil {
		t.Fatal(err)
	}
	var seen *lvsctlv1.RealServerStats
	for _, d := range l.GetDirectors() {
		if d.GetDirector() != "dir-a" || len(d.GetClusters()) != 1 {
			continue
		}
		for _, r := range d.GetClusters()[0].GetReals() {
			if r.GetAddress() == "198.51.100.1" {
				seen = r
			}
		}
	}
	if seen.GetActiveConns() != 5 || seen.GetInactiveConns() != 1 || seen.GetPersistentConns() != 2 {
		t.Errorf("dir-a's 198.51.100.1 = %v, want active 5 inactive 1 persistent 2", seen)
	}
	// Connections close: the counts fall back.
	set(dirA, "198.51.100.1", 0, 0, 0)
	set(dirA, "198.51.100.2", 0, 0, 0)
	set(dirB, "198.51.100.1", 0, 0, 0)
	waitTotals(map[string]uint32{"198.51.100.1": 0, "198.51.100.2": 0, "198.51.100.3": 0})
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package e2e

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// etcdMember is one member of a test's etcd cluster: the etcd server module embedded
// (go.etcd.io/etcd/server/v3/embed), on loopback ports of its own.
type etcdMember struct {
	t    testing.TB
	cfg  *embed.Config
	etcd *embed.Etcd
}

// startEtcdCluster starts an n-member etcd cluster on loopback and returns its members and
// client URLs.
func startEtcdCluster(t testing.TB, n int) ([]*etcdMember, []string) {
	t.Helper()
	ports := storetest.FreePorts(t, 2*n)
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://%s", i, ports[2*i+1]))
	}
	var members []*etcdMember
	var endpoints []string
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(t.TempDir(), cfg.Name)
		curl, _ := url.Parse("http://" + ports[2*i])
		purl, _ := url.Parse("http://" + ports[2*i+1])
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*curl}, []url.URL{*curl}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*purl}, []url.URL{*purl}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "lvsctl-ha-test"
		cfg.LogLevel = "fatal"
		// A LAN cluster's timings (heartbeat 100 ms, election 500 ms: etcd's tuning guide
		// asks for an election timeout of 5-10 heartbeats) let a lease be 1 s (etcd's
		// minimum is 1.5 election timeouts): a killed leading controller is replaced within
		// 2 s. With etcd's default 1 s election timeout the minimum lease is 2 s.
		cfg.TickMs, cfg.ElectionMs = 100, 500
		// As the README's production layout runs etcd (and the embedded one is): one apply
		// of thousands of objects is one transaction.
		cfg.MaxTxnOps, cfg.MaxRequestBytes = 65536, 64<<20
		members = append(members, &etcdMember{t: t, cfg: cfg})
		endpoints = append(endpoints, curl.String())
	}
	// The members wait for each other: start them together.
	errc := make(chan error, n)
	for _, m := range members {
		go func() { errc <- m.start() }()
	}
	for range members {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.stop()
		}
	})
	return members, endpoints
}

func (m *etcdMember) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("etcd member %s: %w", m.cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return fmt.Errorf("etcd member %s not ready after 30s", m.cfg.Name)
	}
	m.etcd = e
	return nil
}

func (m *etcdMember) stop() {
	if m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

// haController is one of several controllers on the shared etcd cluster.
type haController struct {
	t       *testing.T
	c       *controller.Controller
	metrics string // its /metrics address
	cancel  context.CancelFunc
	done    chan error
}

func startHAController(t *testing.T, endpoints []string) *haController {
	t.Helper()
	cfg := controller.Config{Listen: freePort(t), EtcdEndpoints: endpoints, Insecure: true, ElectionTTL: time.Second,
		MetricsListen: freePort(t), Logger: testLogger(t).With("component", "controller")}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &haController{t: t, c: c, metrics: cfg.MetricsListen, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- c.Serve(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *haController) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.cancel = nil
}

// crash stops the controller as a killed process: its election key stays until its lease
// expires.
func (h *haController) crash() {
	h.c.Crash()
	h.stop()
}

func leaderOf(ctls []*haController) *haController {
	var l *haController
	for _, c := range ctls {
		if c.cancel != nil && c.c.Leading() {
			if l != nil {
				return nil // two at once: none for the caller
			}
			l = c
		}
	}
	return l
}

// TestHAControllers: three controllers on a three-member etcd cluster, two directors
// (real agent daemons, fake kernels), each agent given every controller, one starting with
// the leader, the other with a follower (its stream relayed to the leader).
func TestHAControllers(t *testing.T) {
	members, endpoints := startEtcdCluster(t, 3)
	var ctls []*haController
	for range 3 {
		ctls = append(ctls, startHAController(t, endpoints))
	}
	waitUntil(t, 10*time.Second, "one controller leading", func() bool { return leaderOf(ctls) != nil })
	leader := leaderOf(ctls)
	var followers []*haController
	for _, c := range ctls {
		if c != leader {
			followers = append(followers, c)
		}
	}
	list := func(first *haController) string {
		addrs := []string{first.c.Addr()}
		for _, c := range ctls {
			if c != first {
				addrs = append(addrs, c.c.Addr())
			}
		}
		return strings.Join(addrs, ",")
	}

	// get controllers, from each: all three, exactly one leader, the same one.
	for _, c := range ctls {
		resp, err := dial(t, c.c.Addr()).status.ListControllers(context.Background(), &lvsctlv1.ListControllersRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var leaders []string
		for _, ci := range resp.GetControllers() {
			if ci.GetLeader() {
				leaders = append(leaders, ci.GetAddress())
			}
		}
		if len(resp.GetControllers()) != 3 || len(leaders) != 1 || leaders[0] != leader.c.Advertise() {
			t.Errorf("controllers from %s: %v; want 3 with %s alone leading", c.c.Addr(), resp.GetControllers(), leader.c.Advertise())
		}
	}

	ctx := context.Background()
	viaFollower := dial(t, followers[0].c.Addr())
	ap, err := viaFollower.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)})
	if err != nil {
		t.Fatal(err)
	}
	dirA := startAgent(t, "dir-a", list(leader))
	dirB := startAgent(t, "dir-b", list(followers[0]))
	const vip = "192.0.2.10"
	holder := func(c clients, name string) func() bool {
		return func() bool {
			d := directorStatus(t, c, name)
			return d.GetHolding() && d.GetRole() == lvsctlv1.Role_ROLE_ACTIVE
		}
	}
	waitUntil(t, 15*time.Second, "dir-a holding the VIP", func() bool { return holds(dirA, vip) && !holds(dirB, vip) })
	waitApplied(t, viaFollower, ap.GetRevision(), "dir-a", "dir-b")
	// The same fleet from every controller.
	for _, c := range ctls {
		waitUntil(t, 5*time.Second, "dir-a ACTIVE in the status of "+c.c.Addr(), holder(dial(t, c.c.Addr()), "dir-a"))
	}

	// Kill the leader.
	beforeA, beforeB := dirA.kernel(), dirB.kernel()
	dirA.ipvs.ResetOps()
	dirB.ipvs.ResetOps()
	killed := time.Now()
	leader.crash()
	waitUntil(t, 5*time.Second, "another controller leading", func() bool { return leaderOf(ctls) != nil })
	took := time.Since(killed)
	t.Logf("a new leader %v after the leader was killed", took.Round(time.Millisecond))
	// The bound: the lease's 1 s, then etcd's expiry check (every 500 ms), then
	// the next candidate's campaign.
	if took > 2*time.Second {
		t.Errorf("the new leader took %v; want 2 s at most (the session TTL of 1 s and etcd's 500 ms expiry check)", took)
	}
	newLeader := leaderOf(ctls)
	var survivor *haController // a live controller that does not lead
	for _, c := range followers {
		if c != newLeader {
			survivor = c
		}
	}
	viaSurvivor := dial(t, survivor.c.Addr())
	waitApplied(t, viaSurvivor, ap.GetRevision(), "dir-a", "dir-b")
	if dirA.kernel() != beforeA || dirB.kernel() != beforeB || len(dirA.ipvs.Ops())+len(dirB.ipvs.Ops()) != 0 {
		t.Errorf("the agents' kernels changed when they moved controllers: ops %v %v", dirA.ipvs.Ops(), dirB.ipvs.Ops())
	}

	// A failover decided by the new leader, asked of a controller that relays it.
	resp, err := viaSurvivor.config.Failover(ctx, &lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"})
	if err != nil {
		t.Fatalf("failover after the leader's loss: %v", err)
	}
	if resp.GetRoles().GetActive() != "dir-b" {
		t.Fatalf("failover: %v", resp)
	}
	waitUntil(t, 10*time.Second, "dir-b alone holding the VIP", func() bool { return holds(dirB, vip) && !holds(dirA, vip) })

	// One etcd member down: applies, status and failover go on.
	members[0].stop()
	objs := twoDirectorWMS(t)
	for _, o := range objs {
		if c := o.GetCluster(); c != nil {
			c.Reals[0].Weight = 50
		}
	}
	ap2, err := viaSurvivor.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		t.Fatalf("apply with one etcd member down: %v", err)
	}
	waitApplied(t, viaSurvivor, ap2.GetRevision(), "dir-a", "dir-b")
	if _, err := viaSurvivor.config.Failover(ctx, &lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-a"}); err != nil {
		t.Fatalf("failover with one etcd member down: %v", err)
	}
	waitUntil(t, 10*time.Second, "dir-a alone holding the VIP", func() bool { return holds(dirA, vip) && !holds(dirB, vip) })

	// Two down: no quorum. Writes are refused, saying so; the data planes stay.
	members[1].stop()
	beforeA, beforeB = dirA.kernel(), dirB.kernel()
	for _, o := range objs {
		if c := o.GetCluster(); c != nil {
			c.Reals[0].Weight = 70
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	_, err = viaSurvivor.config.Apply(wctx, &lvsctlv1.ApplyRequest{Objects: objs})
	cancel()
	if err == nil {
		t.Fatal("an apply succeeded with two of three etcd members down")
	}
	t.Logf("apply without quorum: %v", err)
	if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
		t.Errorf("apply without quorum: code %v (%v), want Unavailable", c, err)
	}
	time.Sleep(3 * time.Second)
	if dirA.kernel() != beforeA || dirB.kernel() != beforeB || !holds(dirA, vip) {
		t.Error("the data planes changed while etcd had no quorum")
	}

	// A member back: everything resumes.
	if err := members[0].start(); err != nil {
		t.Fatal(err)
	}
	var ap3 *lvsctlv1.ApplyResponse
	waitUntil(t, 30*time.Second, "an apply after the member returned", func() bool {
		actx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		ap3, err = viaSurvivor.config.Apply(actx, &lvsctlv1.ApplyRequest{Objects: objs})
		return err == nil
	})
	waitApplied(t, viaSurvivor, ap3.GetRevision(), "dir-a", "dir-b")
	waitUntil(t, 10*time.Second, "one controller leading", func() bool { return leaderOf(ctls) != nil })
	if _, err := viaSurvivor.config.Failover(ctx, &lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}); err != nil {
		t.Fatalf("failover after quorum returned: %v", err)
	}
	waitUntil(t, 10*time.Second, "dir-b alone holding the VIP", func() bool { return holds(dirB, vip) && !holds(dirA, vip) })
}

package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/announce"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/peer"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// addrRecorder is the fake kernel's addresses, with a log of every change made to them. It
// can make the next DelAddress calls fail, as a kernel refusing a removal does.
type addrRecorder struct {
	kernel  *fake.Addresses
	mu      sync.Mutex
	changes []string
	// failDel is how many DelAddress calls are still to fail; dels counts the calls.
	failDel, dels int
}

var errInjected = errors.New("fake: injected fault")

func (r *addrRecorder) Addresses(iface string) ([]netip.Prefix, error) {
	return r.kernel.Addresses(iface)
}

func (r *addrRecorder) AddAddress(iface string, p netip.Prefix) error {
	err := r.kernel.AddAddress(iface, p)
	if err == nil {
		r.record("+" + p.String())
	}
	return err
}

func (r *addrRecorder) DelAddress(iface string, p netip.Prefix) error {
	r.mu.Lock()
	r.dels++
	fail := r.failDel > 0
	if fail {
		r.failDel--
	}
	r.mu.Unlock()
	if fail {
		return fmt.Errorf("delete %s from %s: %w", p, iface, errInjected)
	}
	err := r.kernel.DelAddress(iface, p)
	if err == nil {
		r.record("-" + p.String())
	}
	return err
}

func (r *addrRecorder) record(c string) {
	r.mu.Lock()
	r.changes = append(r.changes, c)
	r.mu.Unlock()
}

func (r *addrRecorder) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.changes...)
}

// failoverGroup is edge-1 of dir-a (127.0.0.1) and dir-b (127.0.0.2), heartbeating on port.
// The timings are the defaults' shape, slower, so that a loaded test machine does not fence.
func failoverGroup(port uint16) *lvsctlv1.DirectorGroup {
	return &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0",
		Directors: []*lvsctlv1.Director{
			{Name: "dir-a", Priority: 100, Address: "127.0.0.1"},
			{Name: "dir-b", Priority: 50, Address: "127.0.0.2"},
		},
		Failover: &lvsctlv1.Failover{HeartbeatIntervalMs: 50, DeadAfterMs: 400, FenceMs: 600, Port: uint32(port)},
	}
}

// freePort is a UDP port free on both loopback addresses the test's directors use.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: port})
		a.Close()
		if err == nil {
			b.Close()
			return uint16(port)
		}
	}
	t.Fatal("no UDP port free on 127.0.0.1 and 127.0.0.2")
	return 0
}

func haSnapshot(rev int64, g *lvsctlv1.DirectorGroup, active string, epoch uint64) *lvsctlv1.ConnectResponse {
	return &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{
		Revision: rev, State: &lvsctlv1.DesiredState{Group: g, Clusters: []*lvsctlv1.Cluster{web("edge-1")}},
		Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: active, Epoch: epoch}}}}
}

// announcements records what an agent announced, one line per Announce.
type announcements struct {
	mu       sync.Mutex
	calls    []string
	prepared [][]string
}

func (r *announcements) Prepare(ifaces []string) {
	r.mu.Lock()
	r.prepared = append(r.prepared, ifaces)
	r.mu.Unlock()
}

func (r *announcements) Announce(_ context.Context, addrs []announce.Address) {
	var s []string
	for _, a := range addrs {
		s = append(s, a.Interface+" "+a.IP.String())
	}
	r.mu.Lock()
	r.calls = append(r.calls, strings.Join(s, ", "))
	r.mu.Unlock()
}

func (r *announcements) log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// startDirector runs director name of the group with the real peer transport; edits change
// its config after that.
func startDirector(t *testing.T, name string, edits ...func(*Config)) (*agentEnv, *announcements) {
	t.Helper()
	ann := &announcements{}
	return startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) {
		defer func() {
			for _, edit := range edits {
				edit(c)
			}
		}()
		c.Director = name
		c.Announcer = ann
		c.Peers = func(local netip.AddrPort) (PeerTransport, error) {
			tr, err := peer.Listen(local, c.Logger)
			if err != nil {
				return nil, err
			}
			return tr, nil
		}
	}), ann
}

// waitFor polls cond until it holds; the bound is a hang guard, not a timing assertion.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

const vipLine = "eth0 192.0.2.20/32\n"

// echoController answers the agent's heartbeats on its stream as the controller does, at
// epoch, until stop is closed.
func echoController(e *agentEnv, epoch uint64, stop <-chan struct{}) {
	var n int64
	for {
		select {
		case <-stop:
			return
		case m := <-e.sess.sent:
			hb := m.GetHeartbeat()
			if hb == nil {
				continue
			}
			n++
			reply := &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: n, Echo: hb.GetSent(), Epoch: epoch}}}
			select {
			case e.sess.in <- reply:
			case <-stop:
				return
			}
		}
	}
}

// TestFailoverLease: two agents of one group, with fake kernels and sessions and the real
// peer transport over loopback. The controller sends them their state and roles, then never
// answers a heartbeat: the ACTIVE's lease lives on its peer's echoes alone.
func TestFailoverLease(t *testing.T) {
	port := freePort(t)
	g := failoverGroup(port)
	a, annA := startDirector(t, "dir-a")
	b, _ := startDirector(t, "dir-b")
	recA := a.rec
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	b.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	b.waitApplied(t, 1)
	waitFor(t, "dir-a holds the VIP on dir-b's echoes", func() bool { return a.addrs.Dump() == vipLine })

	// Four fence periods with no controller: dir-a keeps the VIP, without a flap.
	time.Sleep(4 * 600 * time.Millisecond)
	if d := a.addrs.Dump(); d != vipLine {
		t.Errorf("dir-a's addresses with only its peer answering: %q, want the VIP", d)
	}
	if got := strings.Join(recA.log(), " "); got != "+192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want the one add", got)
	}
	if d := b.addrs.Dump(); d != "" {
		t.Errorf("the STANDBY holds %q", d)
	}
	if got := strings.Join(annA.log(), "; "); got != "eth0 192.0.2.20" {
		t.Errorf("dir-a announced %q, want the VIP once, when it took it", got)
	}
	// The status after each Hello and each change says who holds: dir-a, as applied.
	if st := lastRoleStatus(a); !st.GetHolding() || st.GetRole() != active || st.GetEpoch() != 5 {
		t.Errorf("dir-a's last role status %v, want holding ACTIVE at epoch 5", st)
	}

	// Nothing answers any more (dir-b's agent stops): dir-a releases once the fence is up.
	b.stop()
	waitFor(t, "dir-a releases with nothing answering", func() bool { return a.addrs.Dump() == "" })
	if got := strings.Join(recA.log(), " "); got != "+192.0.2.20/32 -192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want one add, one removal", got)
	}
}

// TestFailoverHigherEpoch: the controller keeps answering dir-a at its epoch, so its lease
// never runs out; dir-b is made ACTIVE at a higher epoch, and its heartbeats, which carry that
// epoch, make dir-a release at once, before its own stream brings the new assignment.
func TestFailoverHigherEpoch(t *testing.T) {
	port := freePort(t)
	g := failoverGroup(port)
	a, _ := startDirector(t, "dir-a")
	b, annB := startDirector(t, "dir-b")
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	b.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	b.waitApplied(t, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); echoController(a, 5, stop) }()
	defer func() { close(stop); <-done }()
	waitFor(t, "dir-a holds the VIP", func() bool { return a.addrs.Dump() == vipLine })

	// The takeover, as the controller sends it: a delta of roles alone.
	b.deliver(t, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
		PrevRevision: 1, Revision: 2, Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 6}}}})
	b.waitApplied(t, 2)
	waitFor(t, "dir-a releases on dir-b's epoch 6", func() bool { return a.addrs.Dump() == "" })
	waitFor(t, "dir-b takes the VIP", func() bool { return b.addrs.Dump() == vipLine })
	waitFor(t, "dir-b announces the VIP", func() bool { return strings.Join(annB.log(), "; ") == "eth0 192.0.2.20" })
	// Its announcement was readied when it first learned the group, as a STANDBY.
	annB.mu.Lock()
	prepared := fmt.Sprint(annB.prepared)
	annB.mu.Unlock()
	if prepared != "[[eth0]]" {
		t.Errorf("dir-b prepared %s, want [[eth0]] (the group's VIP interface, once)", prepared)
	}
	// dir-a still obeys its epoch 5 assignment (its stream brought nothing new), and its
	// controller still answers it: the release came from the epoch alone, and holds.
	time.Sleep(2 * 600 * time.Millisecond)
	if d := a.addrs.Dump(); d != "" {
		t.Errorf("dir-a took the VIP back: %q", d)
	}
	if got := strings.Join(a.rec.log(), " "); got != "+192.0.2.20/32 -192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want one add, one removal", got)
	}
}

// lastRoleStatus is the last RoleStatus the agent sent so far.
func lastRoleStatus(e *agentEnv) *lvsctlv1.RoleStatus {
	var last *lvsctlv1.RoleStatus
	for {
		select {
		case m := <-e.sess.sent:
			if st := m.GetRoleStatus(); st != nil {
				last = st
			}
		default:
			return last
		}
	}
}

// gatedReconciler makes the next Apply wait for the test once armed: a reconcile that takes
// long (a cold apply of 10,000 clusters takes seconds).
type gatedReconciler struct {
	Reconciler
	mu      sync.Mutex
	gate    chan struct{}
	entered chan struct{}
}

func (g *gatedReconciler) arm() (entered, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate, g.entered = make(chan struct{}), make(chan struct{})
	return g.entered, g.gate
}

func (g *gatedReconciler) Apply(ctx context.Context, d *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result {
	g.wait()
	return g.Reconciler.Apply(ctx, d, role)
}

// ApplyAt is gated as Apply is (the daemon calls it when the reconciler has it).
func (g *gatedReconciler) ApplyAt(ctx context.Context, gen uint64, d *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result {
	g.wait()
	return g.Reconciler.(GenReconciler).ApplyAt(ctx, gen, d, role)
}

func (g *gatedReconciler) ApplyDeltaAt(ctx context.Context, gen uint64, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) reconcile.Result {
	return g.Reconciler.(GenReconciler).ApplyDeltaAt(ctx, gen, d, role)
}

func (g *gatedReconciler) ReleaseGen() uint64 { return g.Reconciler.(GenReconciler).ReleaseGen() }

// wait holds the caller at the gate once armed.
func (g *gatedReconciler) wait() {
	g.mu.Lock()
	gate, entered := g.gate, g.entered
	g.gate = nil
	g.mu.Unlock()
	if gate != nil {
		close(entered)
		<-gate
	}
}

func (g *gatedReconciler) ApplyHolding(ctx context.Context, hold bool) reconcile.Result {
	return g.Reconciler.(HoldingReconciler).ApplyHolding(ctx, hold)
}

// TestFailoverSlowReconcile: while a reconcile runs for several fence periods, the ACTIVE
// keeps heartbeating and hearing its peer's echoes, so it keeps its VIP; what the controller
// sends meanwhile is applied after, in order.
func TestFailoverSlowReconcile(t *testing.T) {
	port := freePort(t)
	g := failoverGroup(port)
	gated := &gatedReconciler{}
	a, _ := startDirector(t, "dir-a", func(c *Config) { gated.Reconciler, c.Reconciler = c.Reconciler, gated })
	b, _ := startDirector(t, "dir-b")
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	b.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	waitFor(t, "dir-a holds the VIP", func() bool { return a.addrs.Dump() == vipLine })

	entered, release := gated.arm()
	a.deliver(t, haSnapshot(2, g, "dir-a", 5))
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the reconcile of revision 2 did not start")
	}
	heavier := web("edge-1")
	heavier.Reals[0].Weight = 7
	a.deliver(t, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
		PrevRevision: 2, Revision: 3, Upserted: []*lvsctlv1.Cluster{heavier}}}})
	time.Sleep(3 * 600 * time.Millisecond)
	if d := a.addrs.Dump(); d != vipLine {
		t.Errorf("dir-a's addresses during a long reconcile: %q, want the VIP", d)
	}
	close(release)
	for _, rev := range []int64{2, 3} {
		select {
		case got := <-a.applied:
			if got != rev {
				t.Errorf("applied revision %d, want %d next", got, rev)
			}
		case <-time.After(wait):
			t.Fatalf("revision %d not applied", rev)
		}
	}
	if d := a.ipvs.Dump(); !strings.Contains(d, "weight 7") {
		t.Errorf("the delta sent during the reconcile was not applied:\n%s", d)
	}
	if got := strings.Join(a.rec.log(), " "); got != "+192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want the one add", got)
	}
}

// TestFailoverSlowReconcileControllerAnswers: the ACTIVE of a pair whose peer is down keeps
// its lease on the controller's answers alone. While a reconcile runs for several fence
// periods, the controller sends more state (which waits for the reconcile) and keeps answering
// heartbeats on the same stream: the answers behind the waiting state are read, so the VIP
// stays; the state is applied after, in order.
func TestFailoverSlowReconcileControllerAnswers(t *testing.T) {
	g := failoverGroup(freePort(t)) // dir-b never runs: no peer answers
	gated := &gatedReconciler{}
	a, _ := startDirector(t, "dir-a", func(c *Config) { gated.Reconciler, c.Reconciler = c.Reconciler, gated })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); echoController(a, 5, stop) }()
	defer func() { close(stop); <-done }()
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	waitFor(t, "dir-a holds the VIP on the controller's answers", func() bool { return a.addrs.Dump() == vipLine })

	entered, release := gated.arm()
	unblock := sync.OnceFunc(func() { close(release) })
	defer unblock() // a failure below must not leave the agent's worker stuck
	a.deliver(t, haSnapshot(2, g, "dir-a", 5))
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the reconcile of revision 2 did not start")
	}
	// Several messages wait behind the reconcile; the answers keep coming between them.
	for rev := int64(3); rev <= 6; rev++ {
		c := web("edge-1")
		c.Reals[0].Weight = uint32(rev)
		a.deliver(t, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
			PrevRevision: rev - 1, Revision: rev, Upserted: []*lvsctlv1.Cluster{c}}}})
	}
	time.Sleep(3 * 600 * time.Millisecond)
	if d := a.addrs.Dump(); d != vipLine {
		t.Errorf("dir-a's addresses during a long reconcile, the controller answering: %q, want the VIP", d)
	}
	unblock()
	for _, rev := range []int64{2, 3, 4, 5, 6} {
		select {
		case got := <-a.applied:
			if got != rev {
				t.Errorf("applied revision %d, want %d next", got, rev)
			}
		case <-time.After(wait):
			t.Fatalf("revision %d not applied", rev)
		}
	}
	if d := a.ipvs.Dump(); !strings.Contains(d, "weight 6") {
		t.Errorf("the last delta sent during the reconcile was not applied:\n%s", d)
	}
	if got := strings.Join(a.rec.log(), " "); got != "+192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want the one add", got)
	}
}

// TestFailoverReleaseFails: the lease ends, and the kernel refuses to remove the VIP twice.
// Until the VIP is gone, the status the controller gets says holding (a planned failover
// waits for holding=false before it promotes another director); the release is done again at
// the role ticks until it succeeds.
func TestFailoverReleaseFails(t *testing.T) {
	g := failoverGroup(freePort(t)) // dir-b never runs: the lease rests on the controller
	a, _ := startDirector(t, "dir-a")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); echoController(a, 5, stop) }()
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	waitFor(t, "dir-a holds the VIP on the controller's answers", func() bool { return a.addrs.Dump() == vipLine })

	a.rec.mu.Lock()
	a.rec.failDel = 2
	a.rec.mu.Unlock()
	close(stop) // nothing answers any more: the lease ends
	<-done
	deadline := time.After(wait)
	for released := false; !released; {
		select {
		case m := <-a.sess.sent:
			st := m.GetRoleStatus()
			if st == nil || st.GetHolding() {
				continue
			}
			released = true
			if d := a.addrs.Dump(); d != "" {
				t.Errorf("the status says released while the kernel holds %q", d)
			}
		case <-deadline:
			t.Fatalf("no status saying released within %s; the kernel holds %q", wait, a.addrs.Dump())
		}
	}
	a.rec.mu.Lock()
	dels := a.rec.dels
	a.rec.mu.Unlock()
	if dels != 3 {
		t.Errorf("%d removals tried, want 3 (two refused, then done)", dels)
	}
	if got := strings.Join(a.rec.log(), " "); got != "+192.0.2.20/32 -192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want one add, one removal", got)
	}
}

// TestFailoverReconcileAfterRelease: a reconcile decided while holding waits (behind the
// gate) while the lease ends and the release runs; when it starts, it must not put the VIP
// back, not even for its own run.
func TestFailoverReconcileAfterRelease(t *testing.T) {
	g := failoverGroup(freePort(t)) // dir-b never runs: the lease rests on the controller
	gated := &gatedReconciler{}
	a, _ := startDirector(t, "dir-a", func(c *Config) { gated.Reconciler, c.Reconciler = c.Reconciler, gated })
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); echoController(a, 5, stop) }()
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	waitFor(t, "dir-a holds the VIP on the controller's answers", func() bool { return a.addrs.Dump() == vipLine })

	entered, release := gated.arm()
	unblock := sync.OnceFunc(func() { close(release) })
	defer unblock()
	a.deliver(t, haSnapshot(2, g, "dir-a", 5))
	select {
	case <-entered: // decided as holding, not started
	case <-time.After(wait):
		t.Fatal("the reconcile of revision 2 did not start")
	}
	close(stop) // nothing answers any more: the lease ends, and the release runs
	<-done
	waitFor(t, "dir-a releases the VIP", func() bool { return a.addrs.Dump() == "" })
	unblock()
	a.waitApplied(t, 2)
	if got := strings.Join(a.rec.log(), " "); got != "+192.0.2.20/32 -192.0.2.20/32" {
		t.Errorf("dir-a's address changes: %s, want one add, one removal (the late reconcile adds nothing)", got)
	}
}

// TestFailoverPeerBindRetried: the peer transport cannot be opened at first (the director's
// address not yet on the host, say): it is opened again at the role ticks, and then the
// ACTIVE's lease lives on its peer's echoes, with no controller answering.
func TestFailoverPeerBindRetried(t *testing.T) {
	g := failoverGroup(freePort(t))
	var mu sync.Mutex
	refused, calls := 2, 0
	a, _ := startDirector(t, "dir-a", func(c *Config) {
		open := c.Peers
		c.Peers = func(local netip.AddrPort) (PeerTransport, error) {
			mu.Lock()
			calls++
			refuse := refused > 0
			refused--
			mu.Unlock()
			if refuse {
				return nil, fmt.Errorf("listen %s: %w", local, errInjected)
			}
			return open(local)
		}
	})
	b, _ := startDirector(t, "dir-b")
	a.deliver(t, haSnapshot(1, g, "dir-a", 5))
	b.deliver(t, haSnapshot(1, g, "dir-a", 5))
	a.waitApplied(t, 1)
	waitFor(t, "dir-a holds the VIP on dir-b's echoes", func() bool { return a.addrs.Dump() == vipLine })
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 {
		t.Errorf("the transport was opened %d times, want 3 (two refused, then open)", calls)
	}
}

// TestAnnounceWhenAdded: addresses that a reconcile adds while the role machine says hold (a
// takeover's delta that reached the reconciler before the holding job) are announced at once,
// not after the holding job and the announce job behind it; the announce that follows sends
// nothing twice, and addresses added while not holding are never announced.
func TestAnnounceWhenAdded(t *testing.T) {
	ann := &announcements{}
	w := &worker{a: New(Config{Announcer: ann}), ctx: context.Background(), releaseFailed: make(chan struct{}, 1)}
	vip := []state.Address{{Interface: "eth0", Prefix: netip.MustParsePrefix("192.0.2.20/32")}}
	w.applied(false, reconcile.Result{Added: vip})
	w.do(actAnnounce{})
	if got := ann.log(); len(got) != 0 {
		t.Fatalf("announced %q while not holding", got)
	}
	w.applied(true, reconcile.Result{Added: vip})
	if got := strings.Join(ann.log(), "; "); got != "eth0 192.0.2.20" {
		t.Fatalf("announced %q when the reconcile added the VIP, want it at once", got)
	}
	w.applied(true, reconcile.Result{}) // the holding job: nothing left to add
	w.do(actAnnounce{})
	if got := strings.Join(ann.log(), "; "); got != "eth0 192.0.2.20" {
		t.Errorf("announced %q in all, want the VIP once", got)
	}
}

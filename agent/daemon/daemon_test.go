package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lvsctl/lvsctl/agent/announce"
	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/peer"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/session"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/stats"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

var (
	_ Session    = (*session.Session)(nil)
	_ Reconciler = (*reconcile.Reconciler)(nil)
)

// fakeSession plays the controller's side of the stream: the test delivers messages with
// deliver, ends the stream with reconnect (Run then says Hello again), and reads what the
// agent sent from sent. Unless connected, Run never says Hello and Send fails.
type fakeSession struct {
	in        chan *lvsctlv1.ConnectResponse
	restart   chan struct{}
	hellos    chan *lvsctlv1.Hello
	sent      chan *lvsctlv1.ConnectRequest
	connected bool

	mu       sync.Mutex
	up       bool
	attempts map[string]int // Send calls by message kind, refused ones included
}

func newFakeSession(connected bool) *fakeSession {
	return &fakeSession{
		in: make(chan *lvsctlv1.ConnectResponse), restart: make(chan struct{}),
		hellos: make(chan *lvsctlv1.Hello, 100), sent: make(chan *lvsctlv1.ConnectRequest, 10000),
		connected: connected, attempts: map[string]int{},
	}
}

func (f *fakeSession) Run(ctx context.Context, hello func() *lvsctlv1.Hello, handle func(*lvsctlv1.ConnectResponse)) error {
	if !f.connected {
		<-ctx.Done()
		return nil
	}
	for {
		// As session.Session does: Send works from the moment hello is called.
		f.setUp(true)
		f.hellos <- hello()
	stream:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-f.restart:
				f.setUp(false)
				break stream
			case m := <-f.in:
				handle(m)
			}
		}
	}
}

func (f *fakeSession) setUp(up bool) {
	f.mu.Lock()
	f.up = up
	f.mu.Unlock()
}

func (f *fakeSession) Send(m *lvsctlv1.ConnectRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[fmt.Sprintf("%T", m.GetMsg())]++
	if !f.up {
		return fmt.Errorf("fake: %w", session.ErrNotConnected)
	}
	select {
	case f.sent <- m:
		return nil
	default:
		return session.ErrQueueFull
	}
}

func (f *fakeSession) attemptsOf(kind any) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[fmt.Sprintf("%T", kind)]
}

// nonNilReconciler fails the test when asked to apply a nil desired state, which would remove
// everything the agent owns.
type nonNilReconciler struct {
	t *testing.T
	r *reconcile.Reconciler
}

func (n nonNilReconciler) Apply(ctx context.Context, d *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result {
	if d == nil {
		n.t.Error("Reconciler.Apply called with a nil desired state")
	}
	return n.r.Apply(ctx, d, role)
}

func (n nonNilReconciler) ApplyDelta(ctx context.Context, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) reconcile.Result {
	if d == nil {
		n.t.Error("Reconciler.ApplyDelta called with a nil delta")
	}
	return n.r.ApplyDelta(ctx, d, role)
}

func (n nonNilReconciler) ReleaseGen() uint64 { return n.r.ReleaseGen() }

func (n nonNilReconciler) ApplyAt(ctx context.Context, gen uint64, d *lvsctlv1.DesiredState, role *lvsctlv1.RoleAssignment) reconcile.Result {
	if d == nil {
		n.t.Error("Reconciler.ApplyAt called with a nil desired state")
	}
	return n.r.ApplyAt(ctx, gen, d, role)
}

func (n nonNilReconciler) ApplyDeltaAt(ctx context.Context, gen uint64, d *lvsctlv1.Delta, role *lvsctlv1.RoleAssignment) reconcile.Result {
	if d == nil {
		n.t.Error("Reconciler.ApplyDeltaAt called with a nil delta")
	}
	return n.r.ApplyDeltaAt(ctx, gen, d, role)
}

func (n nonNilReconciler) ApplyHolding(ctx context.Context, hold bool) reconcile.Result {
	return n.r.ApplyHolding(ctx, hold)
}

var _ HoldingReconciler = (*reconcile.Reconciler)(nil)

// agentEnv is an agent over fake kernel parts and a fake session.
type agentEnv struct {
	sess    *fakeSession
	ipvs    *fake.IPVS
	addrs   *fake.Addresses
	st      *state.State
	applied chan int64 // each reconcile's revision
	reg     *prometheus.Registry
	started time.Time
	// rec logs the changes made to addrs.
	rec *addrRecorder
	// stop ends the agent's Run (the test's end does too).
	stop  func()
	agent *Agent
}

// envOptions are startAgentWith's: a kernel to share with an agent before (a restart), and
// health checks by a real checker whose probes are probe.
type envOptions struct {
	ipvs  *fake.IPVS
	probe checker.ProbeFunc
	// damaged: the state directory's files may fail their integrity check (state.ErrIntegrity).
	damaged bool
}

// startAgent runs an agent on the state in dir until the test ends; edit may change its config.
func startAgent(t *testing.T, dir string, sess *fakeSession, edit func(*Config)) *agentEnv {
	return startAgentWith(t, dir, sess, envOptions{}, edit)
}

func startAgentWith(t *testing.T, dir string, sess *fakeSession, o envOptions, edit func(*Config)) *agentEnv {
	t.Helper()
	st, err := state.Load(dir)
	if err != nil && (!o.damaged || !errors.Is(err, state.ErrIntegrity)) {
		t.Fatal(err)
	}
	if o.ipvs == nil {
		o.ipvs = fake.NewIPVS()
	}
	e := &agentEnv{sess: sess, ipvs: o.ipvs, addrs: fake.NewAddresses("eth0"), st: st,
		applied: make(chan int64, 1000), reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	e.rec = &addrRecorder{kernel: e.addrs}
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: e.ipvs, Firewall: fake.NewFirewall(), Addresses: e.rec, State: st})
	cfg := Config{
		Director: "dir-a", Logger: log, State: st, Reconciler: nonNilReconciler{t, rec}, Session: sess,
		Resync: time.Hour, OfflineAfter: time.Hour,
		Stats: stats.NewReporter(e.ipvs), StatsPeriod: time.Hour, Metrics: metrics.New(e.reg),
		Applied: func(rev int64, _ reconcile.Result) { e.applied <- rev },
		Kernel:  e.ipvs,
	}
	if o.probe != nil {
		// As agent/host wires it; the checker calls OnChange only once Run started it.
		cfg.Health = checker.New(log, checker.Options{Probe: o.probe, OnChange: func(st checker.Status) { e.agent.HealthChanged(st) }})
	}
	if edit != nil {
		edit(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	e.started = time.Now()
	e.agent = New(cfg)
	go func() { done <- e.agent.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(e.stop)
	return e
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

const wait = 5 * time.Second

func (e *agentEnv) deliver(t *testing.T, m *lvsctlv1.ConnectResponse) {
	t.Helper()
	select {
	case e.sess.in <- m:
	case <-time.After(wait):
		t.Fatal("the agent took no message")
	}
}

// waitApplied waits for the reconcile of revision rev.
func (e *agentEnv) waitApplied(t *testing.T, rev int64) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case got := <-e.applied:
			if got == rev {
				return
			}
		case <-deadline:
			t.Fatalf("revision %d was not applied within %s", rev, wait)
		}
	}
}

// waitSent returns the first message the agent sends that match accepts.
func (e *agentEnv) waitSent(t *testing.T, match func(*lvsctlv1.ConnectRequest) bool) *lvsctlv1.ConnectRequest {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case m := <-e.sess.sent:
			if match(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("the agent did not send the awaited message within %s", wait)
			return nil
		}
	}
}

func isAck(rev int64) func(*lvsctlv1.ConnectRequest) bool {
	return func(m *lvsctlv1.ConnectRequest) bool { return m.GetAck() != nil && m.GetAck().GetRevision() == rev }
}

func group(name string) *lvsctlv1.DirectorGroup {
	return &lvsctlv1.DirectorGroup{Name: name, VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 100}}}
}

// web is a cluster of group g with VIP 192.0.2.20.
func web(g string) *lvsctlv1.Cluster {
	return &lvsctlv1.Cluster{
		Name: "web", DirectorGroup: g, Vips: []string{"192.0.2.20"}, Fwmark: 17, Scheduler: "rr",
		Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 80, Last: 80}},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.11", Weight: 1}},
	}
}

func snapshot(rev int64, g string, clusters ...*lvsctlv1.Cluster) *lvsctlv1.ConnectResponse {
	st := &lvsctlv1.DesiredState{Group: group(g), Clusters: clusters}
	return &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{Revision: rev, State: st}}}
}

// withRoles sets the group's role assignment in a snapshot: active is the ACTIVE director.
func withRoles(m *lvsctlv1.ConnectResponse, g, active string, epoch uint64) *lvsctlv1.ConnectResponse {
	m.GetSnapshot().Roles = &lvsctlv1.GroupRoles{Group: g, Active: active, Epoch: epoch}
	return m
}

const (
	active  = lvsctlv1.Role_ROLE_ACTIVE
	standby = lvsctlv1.Role_ROLE_STANDBY
)

func TestRevisionGapAsksForSnapshot(t *testing.T) {
	tests := []struct {
		name      string
		firstSnap bool
		prev      int64
	}{
		{"delta after another revision", true, 3},
		{"delta before any snapshot", false, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startAgent(t, t.TempDir(), newFakeSession(true), nil)
			if tt.firstSnap {
				e.deliver(t, snapshot(5, "edge-1"))
				e.waitApplied(t, 5)
			}
			e.deliver(t, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
				PrevRevision: tt.prev, Revision: 6, Upserted: []*lvsctlv1.Cluster{web("edge-1")},
			}}})
			e.waitSent(t, func(m *lvsctlv1.ConnectRequest) bool { return m.GetSnapshotRequest() != nil })
			select {
			case rev := <-e.applied:
				t.Errorf("revision %d applied after a gap", rev)
			default:
			}
			if d := e.ipvs.Dump(); d != "" {
				t.Errorf("the delta after a gap reached the kernel:\n%s", d)
			}
		})
	}
}

func TestOfflineStart(t *testing.T) {
	const offlineAfter = 300 * time.Millisecond
	tests := []struct {
		name      string
		connected bool // the controller answers at once with its own snapshot
		wantRev   int64
	}{
		{"controller unreachable: the saved state, after OfflineAfter", false, 4},
		{"controller answers: its state, never the saved one", true, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			saved, err := state.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			err = saved.SetDesired(state.Desired{Revision: 4, State: &lvsctlv1.DesiredState{Group: group("edge-1"), Clusters: []*lvsctlv1.Cluster{web("edge-1")}},
				Role: &lvsctlv1.RoleAssignment{Group: "edge-1", Role: active, Epoch: 1}})
			if err != nil {
				t.Fatal(err)
			}
			e := startAgent(t, dir, newFakeSession(tt.connected), func(c *Config) { c.OfflineAfter = offlineAfter })
			if tt.connected {
				e.deliver(t, snapshot(9, "edge-1"))
			}
			select {
			case rev := <-e.applied:
				if took := time.Since(e.started); rev == 4 && took < offlineAfter {
					t.Errorf("the saved state was applied %s after start, before OfflineAfter (%s)", took, offlineAfter)
				}
				if rev != tt.wantRev {
					t.Errorf("applied revision %d, want %d", rev, tt.wantRev)
				}
			case <-time.After(wait):
				t.Fatalf("nothing applied within %s", wait)
			}
			// Nothing else follows: the saved state does not come after the controller's.
			select {
			case rev := <-e.applied:
				t.Errorf("then revision %d was applied too", rev)
			case <-time.After(2 * offlineAfter):
			}
			hasWeb := strings.Contains(e.ipvs.Dump(), "fwm 17")
			if want := tt.wantRev == 4; hasWeb != want {
				t.Errorf("kernel has the saved cluster: %v, want %v:\n%s", hasWeb, want, e.ipvs.Dump())
			}
		})
	}
}

func TestRoleAssignments(t *testing.T) {
	tests := []struct {
		name    string
		next    *lvsctlv1.ConnectResponse // applied as revision 2
		wantVIP bool
	}{
		{"stale epoch of the same group is ignored", withRoles(snapshot(2, "edge-1", web("edge-1")), "edge-1", "dir-b", 3), true},
		{"newer epoch of the same group", withRoles(snapshot(2, "edge-1", web("edge-1")), "edge-1", "dir-b", 6), false},
		// Epochs are per group: the director moved to a group whose epochs are still low.
		{"lower epoch of another group", withRoles(snapshot(2, "edge-2", web("edge-2")), "edge-2", "dir-a", 1), true},
		{"STANDBY in another group holds nothing", withRoles(snapshot(2, "edge-2", web("edge-2")), "edge-2", "dir-b", 9), false},
		{"a state without roles changes no role", snapshot(2, "edge-1", web("edge-1")), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startAgent(t, t.TempDir(), newFakeSession(true), nil)
			e.deliver(t, withRoles(snapshot(1, "edge-1", web("edge-1")), "edge-1", "dir-a", 5))
			e.waitApplied(t, 1)
			if d := e.addrs.Dump(); d != "eth0 192.0.2.20/32\n" {
				t.Fatalf("ACTIVE director's addresses: %q", d)
			}
			e.deliver(t, tt.next)
			e.waitApplied(t, 2)
			if got := e.addrs.Dump() != ""; got != tt.wantVIP {
				t.Errorf("holds the VIP: %v, want %v", got, tt.wantVIP)
			}
		})
	}
}

// TestNoGroup: a director named in no group gets an empty state; it is applied only when the
// agent has nothing to lose. Refused, the services stay, but the ACTIVE's addresses go: its
// old group may have another ACTIVE now.
func TestNoGroup(t *testing.T) {
	empty := &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{State: &lvsctlv1.DesiredState{}}}}
	noState := &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{}}}
	leave := &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
		PrevRevision: 1, Revision: 0, Deleted: []string{"web"}, Group: &lvsctlv1.DirectorGroup{},
	}}}
	tests := []struct {
		name      string
		before    bool // web applied, ACTIVE, first
		msg       *lvsctlv1.ConnectResponse
		wantKept  bool
		wantError bool
	}{
		{"owns a cluster: snapshot refused", true, empty, true, true},
		{"owns a cluster: snapshot without a state refused", true, noState, true, true},
		{"owns a cluster: delta out of the group refused", true, leave, true, true},
		{"owns nothing: applied", false, empty, false, false},
		{"owns nothing: a snapshot without a state is an empty one", false, noState, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) { c.Resync = 50 * time.Millisecond })
			if tt.before {
				e.deliver(t, withRoles(snapshot(1, "edge-1", web("edge-1")), "edge-1", "dir-a", 1))
				e.waitApplied(t, 1)
			}
			before := e.ipvs.Dump()
			if tt.before && e.addrs.Dump() != vipLine {
				t.Fatalf("the ACTIVE of a group of one holds %q, want the VIP", e.addrs.Dump())
			}
			e.deliver(t, tt.msg)
			ack := e.waitSent(t, isAck(0)).GetAck()
			wantErr := `director "dir-a" is in no director group: keeping the data plane as it is`
			gotErr := strings.Contains(strings.Join(ack.GetDirectorErrors(), "\n"), wantErr)
			if gotErr != tt.wantError {
				t.Errorf("ack %v: says the director is in no group: %v, want %v", ack, gotErr, tt.wantError)
			}
			// A resync later, still as it was, and still saying why.
			ack = e.waitSent(t, func(m *lvsctlv1.ConnectRequest) bool { return m.GetAck() != nil }).GetAck()
			if tt.wantError && (ack.GetRevision() != 0 || len(ack.GetDirectorErrors()) != 1) {
				t.Errorf("resync ack %v, want revision 0 and the error", ack)
			}
			after := e.ipvs.Dump()
			if kept := after == before && before != ""; kept != tt.wantKept {
				t.Errorf("IPVS services kept: %v, want %v; before:\n%s\nafter:\n%s", kept, tt.wantKept, before, after)
			}
			if d := e.addrs.Dump(); d != "" {
				t.Errorf("a director in no group holds %q", d)
			}
			if tt.before {
				if got := strings.Join(e.rec.log(), " "); got != "+192.0.2.20/32 -192.0.2.20/32" {
					t.Errorf("address changes %s, want the VIP added, then released", got)
				}
			}
		})
	}
}

// TestNewStreamReportsFull: the first report on every stream is full, even when nothing
// changed since the last one (the controller on the new stream may know nothing).
func TestNewStreamReportsFull(t *testing.T) {
	e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) { c.StatsPeriod = statsPeriod })
	isStatus := func(m *lvsctlv1.ConnectRequest) bool { return m.GetStatus() != nil }
	e.deliver(t, snapshot(1, "edge-1", web("edge-1")))
	if rep := e.waitSent(t, isStatus).GetStatus(); !rep.GetFull() || len(rep.GetChanged()) != 1 {
		t.Fatalf("first report %v, want a full one of web", rep)
	}
	// Unchanged counters: nothing more is reported on this stream.
	time.Sleep(5 * statsPeriod)
	for len(e.sess.sent) > 0 {
		if m := <-e.sess.sent; isStatus(m) {
			t.Errorf("reported %v with nothing changed", m)
		}
	}
	e.sess.restart <- struct{}{}
	if rep := e.waitSent(t, isStatus).GetStatus(); !rep.GetFull() || len(rep.GetChanged()) != 1 {
		t.Errorf("first report on the new stream %v, want a full one of web", rep)
	}
	if n := len(e.sess.hellos); n != 2 {
		t.Errorf("%d Hellos, want 2", n)
	}
}

const statsPeriod = 10 * time.Millisecond

// TestDisconnectedStats: while no stream is up, the stats are sampled for the metrics, but
// no report is built to be dropped at every period.
func TestDisconnectedStats(t *testing.T) {
	dir := t.TempDir()
	saved, err := state.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := saved.SetDesired(state.Desired{Revision: 4, State: &lvsctlv1.DesiredState{Group: group("edge-1"), Clusters: []*lvsctlv1.Cluster{web("edge-1")}}}); err != nil {
		t.Fatal(err)
	}
	e := startAgent(t, dir, newFakeSession(false), func(c *Config) { c.OfflineAfter, c.StatsPeriod = time.Millisecond, statsPeriod })
	e.waitApplied(t, 4)
	key := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 17}
	if err := e.ipvs.SetDestinationStats(key, dataplane.DestinationStats{Destination: dataplane.Destination{Address: netip.MustParseAddr("198.51.100.11")}, ActiveConns: 7}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for activeConns(t, e.reg) != 7 {
		if time.Now().After(deadline) {
			t.Fatalf("the metrics never showed the kernel's 7 active connections")
		}
		time.Sleep(statsPeriod)
	}
	time.Sleep(20 * statsPeriod)
	if n := e.sess.attemptsOf(&lvsctlv1.ConnectRequest_Status{}); n > 1 {
		t.Errorf("%d reports built and sent while disconnected, want at most the one that found no stream", n)
	}
}

// activeConns is what the metrics say of web's real server's active connections (-1: absent).
func activeConns(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lvsctl_real_active_connections" {
			continue
		}
		for _, m := range mf.GetMetric() {
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// TestNilLogger: an agent without a Logger runs, and logs nowhere.
func TestNilLogger(t *testing.T) {
	e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) { c.Logger = nil })
	// A gap is logged as a warning.
	e.deliver(t, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{PrevRevision: 1, Revision: 2}}})
	e.waitSent(t, func(m *lvsctlv1.ConnectRequest) bool { return m.GetSnapshotRequest() != nil })
}

// TestOfflineStartAfterDeltas: the deltas the agent applied are saved (journaled), so a
// restart during a controller outage applies the last revision, not the last snapshot.
func TestOfflineStartAfterDeltas(t *testing.T) {
	dir := t.TempDir()
	first := startAgent(t, dir, newFakeSession(true), nil)
	first.deliver(t, withRoles(snapshot(1, "edge-1", web("edge-1")), "edge-1", "dir-a", 1))
	first.waitApplied(t, 1)
	heavier := web("edge-1")
	heavier.Reals[0].Weight = 7
	first.deliver(t, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
		PrevRevision: 1, Revision: 2, Upserted: []*lvsctlv1.Cluster{heavier}}}})
	first.waitApplied(t, 2)
	if ack := first.waitSent(t, isAck(2)).GetAck(); ack.GetOperations() != 1 {
		t.Errorf("the weight change's ack: %v, want one operation", ack)
	}

	second := startAgent(t, dir, newFakeSession(false), func(c *Config) { c.OfflineAfter = 10 * time.Millisecond })
	second.waitApplied(t, 2)
	if d := second.ipvs.Dump(); !strings.Contains(d, "198.51.100.11:0 masq weight 7") {
		t.Errorf("the restarted agent's kernel:\n%s\nwant the delta's weight 7", d)
	}
	if d := second.addrs.Dump(); d != "eth0 192.0.2.20/32\n" {
		t.Errorf("the restarted agent's addresses %q: the saved role (ACTIVE) was not applied", d)
	}
}

var (
	_ PeerTransport = (*peer.Transport)(nil)
	_ Prober        = (*peer.Prober)(nil)
)

var _ Announcer = (*announce.Announcer)(nil)

// TestStartedHeldFromTheKernel: an agent restarted on a running director keeps what its
// kernel holds (Started{Held}); one started after a reboot, whose state file still lists the
// addresses it held, claims nothing.
func TestStartedHeldFromTheKernel(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reboot bool
		want   string
	}{
		{"agent restart, kernel still holds", false, "started held=true"},
		{"after a reboot, the addresses are gone", true, "started held=false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			first := startAgent(t, dir, newFakeSession(true), nil)
			first.deliver(t, withRoles(snapshot(1, "edge-1", web("edge-1")), "edge-1", "dir-a", 1))
			first.waitApplied(t, 1)
			if d := first.addrs.Dump(); d != "eth0 192.0.2.20/32\n" {
				t.Fatalf("ACTIVE's addresses before the restart: %q", d)
			}
			first.stop()
			if tc.reboot {
				if err := first.addrs.DelAddress("eth0", netip.MustParsePrefix("192.0.2.20/32")); err != nil {
					t.Fatal(err)
				}
			}
			m := &scriptedMachine{}
			second := startAgent(t, dir, newFakeSession(false), func(c *Config) {
				c.Role, c.Addresses = m, first.addrs
			})
			second.stop()
			if len(m.events) == 0 || m.events[0] != tc.want {
				t.Errorf("role machine events %v, want %q first", m.events, tc.want)
			}
		})
	}
}

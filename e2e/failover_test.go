package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// roleAgent is a director's agent stream driven by the test: it says Hello, heartbeats the
// controller every 100 ms (checking each answer echoes a value it sent), reports the
// RoleStatus the test gives it, and records every assignment it is sent.
type roleAgent struct {
	t      *testing.T
	name   string
	cancel context.CancelFunc
	done   chan struct{}

	sendMu sync.Mutex
	stream lvsctlv1.AgentService_ConnectClient

	mu        sync.Mutex
	sent      map[int64]bool // heartbeat values sent on this stream
	answers   int            // heartbeat answers that echoed one of them
	badEcho   []int64        // echoes of values never sent
	lastEpoch uint64         // epoch of the latest answer
	received  []received
}

// received is one assignment as it reached the agent.
type received struct {
	delta bool // inside a Delta (else a Snapshot)
	roles *lvsctlv1.GroupRoles
}

func connectRoleAgent(t *testing.T, target, name string) *roleAgent {
	t.Helper()
	conn, err := grpcDial(target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := lvsctlv1.NewAgentServiceClient(conn).Connect(ctx)
	if err != nil {
		cancel()
		conn.Close()
		t.Fatal(err)
	}
	a := &roleAgent{t: t, name: name, cancel: cancel, done: make(chan struct{}), stream: stream, sent: map[int64]bool{}}
	a.send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: name, Version: "test"}}})
	var wg sync.WaitGroup
	wg.Go(a.receive)
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			v := time.Now().UnixNano()
			a.mu.Lock()
			a.sent[v] = true
			a.mu.Unlock()
			if a.send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: v}}}) != nil {
				return
			}
		}
	})
	go func() {
		wg.Wait()
		conn.Close()
		close(a.done)
	}()
	t.Cleanup(a.close)
	return a
}

// close ends the stream, as a killed agent's does.
func (a *roleAgent) close() {
	a.cancel()
	<-a.done
}

func (a *roleAgent) send(m *lvsctlv1.ConnectRequest) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return a.stream.Send(m)
}

func (a *roleAgent) report(st *lvsctlv1.RoleStatus) {
	a.t.Helper()
	if err := a.send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: st}}); err != nil {
		a.t.Fatalf("%s: reporting: %v", a.name, err)
	}
}

func (a *roleAgent) receive() {
	for {
		m, err := a.stream.Recv()
		if err != nil {
			return
		}
		a.mu.Lock()
		switch {
		case m.GetSnapshot() != nil:
			a.received = append(a.received, received{roles: m.GetSnapshot().GetRoles()})
		case m.GetDelta().GetRoles() != nil:
			a.received = append(a.received, received{delta: true, roles: m.GetDelta().GetRoles()})
		case m.GetHeartbeat() != nil:
			hb := m.GetHeartbeat()
			if echo := hb.GetEcho(); echo != 0 {
				if a.sent[echo] {
					a.answers++
				} else {
					a.badEcho = append(a.badEcho, echo)
				}
			}
			a.lastEpoch = hb.GetEpoch()
		}
		a.mu.Unlock()
	}
}

// roles is the latest assignment the agent was sent (nil: none).
func (a *roleAgent) roles() *lvsctlv1.GroupRoles {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.received) == 0 {
		return nil
	}
	return a.received[len(a.received)-1].roles
}

func (a *roleAgent) history() []received {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.received)
}

// waitRoles waits until the agent was sent an assignment that matches; 10 s is a hang guard.
func (a *roleAgent) waitRoles(what string, match func(*lvsctlv1.GroupRoles) bool) received {
	a.t.Helper()
	var got received
	waitUntil(a.t, 10*time.Second, a.name+": "+what, func() bool {
		for _, r := range a.history() {
			if r.roles != nil && match(r.roles) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// peer is what a director reports of another; its probes of the peer's host were answered
// once (else "host unreachable" says nothing).
func peer(name string, reachable, host bool, heardAgo int64) *lvsctlv1.PeerStatus {
	return &lvsctlv1.PeerStatus{Director: name, Reachable: reachable, HostReachable: host, HeardAgoMs: heardAgo, ProbesAnswered: true}
}

func roleStatus(r *lvsctlv1.GroupRoles, self string, holding bool, peers ...*lvsctlv1.PeerStatus) *lvsctlv1.RoleStatus {
	role := lvsctlv1.Role_ROLE_STANDBY
	if r.GetActive() == self {
		role = lvsctlv1.Role_ROLE_ACTIVE
	}
	return &lvsctlv1.RoleStatus{Group: r.GetGroup(), Epoch: r.GetEpoch(), Role: role, Holding: holding, Peers: peers}
}

// TestDirectorFailover: a real controller with its embedded etcd and two directors' agent
// streams over gRPC. A lost ACTIVE whose STANDBY still hears it is not replaced; once the
// STANDBY reports it lost too, the STANDBY is made ACTIVE under a higher epoch, in a Delta;
// a planned failover writes a handover first and promotes its target only after the old
// ACTIVE reported it released; epochs only grow.
func TestDirectorFailover(t *testing.T) {
	ctl := newController(t)
	target := ctl.cfg.Listen
	c := dialTB(t, target)
	ctx := context.Background()
	group := &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0", Directors: []*lvsctlv1.Director{
		{Name: "dir-a", Priority: 200, Address: "192.0.2.1"}, {Name: "dir-b", Priority: 100, Address: "192.0.2.2"}}}
	if _, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Group{Group: group}}}}); err != nil {
		t.Fatal(err)
	}

	a := connectRoleAgent(t, target, "dir-a")
	b := connectRoleAgent(t, target, "dir-b")
	initial := a.waitRoles("the initial assignment", func(r *lvsctlv1.GroupRoles) bool { return r.GetActive() != "" }).roles
	if initial.GetActive() != "dir-a" {
		t.Fatalf("initial assignment %v, want dir-a (priority 200) ACTIVE", initial)
	}
	b.waitRoles("the initial assignment", func(r *lvsctlv1.GroupRoles) bool { return proto.Equal(r, initial) })
	a.report(roleStatus(initial, "dir-a", true, peer("dir-b", true, true, 50)))
	b.report(roleStatus(initial, "dir-b", false, peer("dir-a", true, true, 50)))

	// The ACTIVE's heartbeats are answered with their own values and the group's epoch.
	waitUntil(t, 10*time.Second, "heartbeat answers to dir-a", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.answers >= 3 && a.lastEpoch == initial.GetEpoch()
	})

	// dir-a's agent dies, but dir-b still hears dir-a's heartbeats: no takeover. Its host still
	// forwards with the VIPs; promoting dir-b would make two ACTIVE directors.
	a.close()
	b.report(roleStatus(initial, "dir-b", false, peer("dir-a", true, true, 50)))
	waitUntil(t, 10*time.Second, "dir-a shown disconnected", func() bool {
		d := directorStatus(t, c, "dir-a")
		return d != nil && !d.GetConnected()
	})
	// Well past dead_after + fence (600 ms with the defaults): nothing moved.
	time.Sleep(1500 * time.Millisecond)
	if r := b.roles(); !proto.Equal(r, initial) {
		t.Fatalf("dir-b was sent %v while it still heard dir-a: a takeover of a live ACTIVE", r)
	}
	// A host that answers probes still blocks it.
	b.report(roleStatus(initial, "dir-b", false, peer("dir-a", false, true, 900)))
	time.Sleep(1000 * time.Millisecond)
	if r := b.roles(); !proto.Equal(r, initial) {
		t.Fatalf("dir-b was sent %v while dir-a's host answered: a takeover of a forwarding kernel", r)
	}

	// dir-b loses dir-a entirely: takeover, in a Delta, under a higher epoch.
	b.report(roleStatus(initial, "dir-b", false, peer("dir-a", false, false, 1200)))
	took := b.waitRoles("the takeover", func(r *lvsctlv1.GroupRoles) bool { return r.GetActive() == "dir-b" })
	if !took.delta {
		t.Error("the takeover reached dir-b in a snapshot, want a Delta on the open stream")
	}
	if took.roles.GetEpoch() <= initial.GetEpoch() || took.roles.GetReason() != "takeover" || took.roles.GetPrevious() != "dir-a" {
		t.Errorf("takeover assignment %v, want reason takeover, previous dir-a, epoch above %d", took.roles, initial.GetEpoch())
	}
	waitUntil(t, 10*time.Second, "dir-b's heartbeat answers carry the takeover's epoch", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.lastEpoch == took.roles.GetEpoch()
	})
	b.report(roleStatus(took.roles, "dir-b", true, peer("dir-a", false, false, 1500)))
	waitUntil(t, 10*time.Second, "status of dir-b as it reported", func() bool {
		d := directorStatus(t, c, "dir-b")
		return d.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && d.GetEpoch() == took.roles.GetEpoch() && d.GetHolding()
	})

	// dir-a comes back: it is told it is STANDBY (no preemption by default).
	a = connectRoleAgent(t, target, "dir-a")
	if r := a.waitRoles("its assignment after reconnecting", func(*lvsctlv1.GroupRoles) bool { return true }).roles; !proto.Equal(r, took.roles) {
		t.Fatalf("dir-a reconnected to %v, want the takeover's %v", r, took.roles)
	}
	a.report(roleStatus(took.roles, "dir-a", false, peer("dir-b", true, true, 50)))
	b.report(roleStatus(took.roles, "dir-b", true, peer("dir-a", true, true, 50)))
	if d := directorStatus(t, c, "dir-a"); d.GetHolding() {
		t.Errorf("status says dir-a holds the VIPs: %v", d)
	}

	// Errors name the field.
	for _, tc := range []struct {
		req  *lvsctlv1.FailoverRequest
		code codes.Code
	}{
		{&lvsctlv1.FailoverRequest{}, codes.InvalidArgument},
		{&lvsctlv1.FailoverRequest{Group: "nope"}, codes.NotFound},
		{&lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-z"}, codes.InvalidArgument},
		{&lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-b"}, codes.FailedPrecondition},
	} {
		_, err := c.config.Failover(ctx, tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("Failover(%v): %v, want %v", tc.req, err, tc.code)
		}
	}

	// Planned failover back to dir-a: first a handover (nobody ACTIVE), and dir-a is promoted
	// only once dir-b reported it released.
	type result struct {
		resp *lvsctlv1.FailoverResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.config.Failover(ctx, &lvsctlv1.FailoverRequest{Group: "edge-1", To: "dir-a"})
		done <- result{resp, err}
	}()
	handover := b.waitRoles("the handover", func(r *lvsctlv1.GroupRoles) bool { return r.GetHandoverTo() == "dir-a" }).roles
	if handover.GetActive() != "" || handover.GetEpoch() <= took.roles.GetEpoch() {
		t.Fatalf("handover %v, want nobody ACTIVE under an epoch above %d", handover, took.roles.GetEpoch())
	}
	// dir-b has not released yet: no promotion, no reply.
	time.Sleep(500 * time.Millisecond)
	for _, r := range a.history() {
		if r.roles.GetActive() == "dir-a" {
			t.Fatalf("dir-a promoted (%v) before dir-b reported it released", r.roles)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("failover answered before dir-b released: %v %v", r.resp, r.err)
	default:
	}
	b.report(roleStatus(handover, "dir-b", false, peer("dir-a", true, true, 50)))
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no failover reply 10 s after dir-b released")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	if res.resp.GetRoles().GetActive() != "dir-a" || res.resp.GetPrevious() != "dir-b" || res.resp.GetRoles().GetEpoch() <= handover.GetEpoch() {
		t.Errorf("failover reply %v, want dir-a ACTIVE after dir-b, epoch above %d", res.resp, handover.GetEpoch())
	}
	promoted := a.waitRoles("its promotion", func(r *lvsctlv1.GroupRoles) bool { return r.GetActive() == "dir-a" })
	if !promoted.delta || !proto.Equal(promoted.roles, res.resp.GetRoles()) {
		t.Errorf("dir-a got %v (delta %v), want the reply's %v in a Delta", promoted.roles, promoted.delta, res.resp.GetRoles())
	}

	// Epochs only grow, as each agent saw them.
	for _, ag := range []*roleAgent{a, b} {
		var last uint64
		for _, r := range ag.history() {
			if r.roles.GetEpoch() < last {
				t.Errorf("%s was sent epoch %d after %d", ag.name, r.roles.GetEpoch(), last)
			}
			last = r.roles.GetEpoch()
		}
		ag.mu.Lock()
		if len(ag.badEcho) > 0 {
			t.Errorf("%s got heartbeat answers echoing values it never sent: %v", ag.name, ag.badEcho)
		}
		ag.mu.Unlock()
	}
}

// directorStatus is one director's status as lvsctl status sees it (nil: not listed).
func directorStatus(t *testing.T, c clients, name string) *lvsctlv1.DirectorStatus {
	t.Helper()
	resp, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{TotalsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.GetDirectors() {
		if d.GetDirector() == name {
			return d
		}
	}
	return nil
}

// BenchmarkHeartbeats: the lvs-controller binary with 1,000 directors (500 groups of two)
// each heartbeating it every 100 ms on its own stream over loopback gRPC, as agents do: the
// controller's CPU per heartbeat (answered with its echo and epoch, fed to the role
// machines) above what it spends with the same streams open and silent, the rate and the
// share answered, over windows of LVSCTL_BENCH_WINDOW seconds (default 5).
// LVSCTL_BENCH_AGENTS changes the number of directors.
func BenchmarkHeartbeats(b *testing.B) {
	target, pid := startControllerProcess(b)
	heartbeatBench(b, target, map[string]int{"controller": pid})
}

// heartbeatBench connects the directors to target, applies their groups and measures, as
// BenchmarkHeartbeats says, the CPU of each process of pids ("%cpu-NAME", and per heartbeat
// "cpu-us/heartbeat-NAME" above its silent share).
func heartbeatBench(b *testing.B, target string, pids map[string]int) {
	agents, window := envInt("LVSCTL_BENCH_AGENTS", 1000), time.Duration(envInt("LVSCTL_BENCH_WINDOW", 5))*time.Second
	c := dialTB(b, target)
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				b.Fatalf("never saw %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("the controller serving", func() bool {
		_, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{TotalsOnly: true})
		return err == nil
	})
	var objs []*lvsctlv1.Object
	name := func(i int) string { return fmt.Sprintf("dir-%04d", i) }
	for g := range (agents + 1) / 2 {
		grp := &lvsctlv1.DirectorGroup{Name: fmt.Sprintf("edge-%03d", g), VipInterface: "eth0"}
		for i := 2 * g; i < min(2*g+2, agents); i++ {
			grp.Directors = append(grp.Directors, &lvsctlv1.Director{Name: name(i), Priority: uint32(100 + i%2),
				Address: fmt.Sprintf("127.2.%d.%d", i/256, i%256)})
		}
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: grp}})
	}
	if _, err := c.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: objs}); err != nil {
		b.Fatal(err)
	}
	var sent, answered, connected atomic.Int64
	var beating atomic.Bool
	rtt := &rttLog{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range agents {
		conn, err := grpcDial(target)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer conn.Close()
			heartbeatAgent(ctx, lvsctlv1.NewAgentServiceClient(conn), name(i), time.Duration(i)*100*time.Millisecond/time.Duration(agents),
				&beating, &sent, &answered, &connected, rtt)
		})
	}
	waitFor("every agent connected", func() bool { return connected.Load() == int64(agents) })
	time.Sleep(2 * time.Second) // snapshots sent, reports in
	names := slices.Sorted(maps.Keys(pids))
	cpuOf := func() map[string]time.Duration {
		out := make(map[string]time.Duration, len(pids))
		for n, pid := range pids {
			out[n] = procCPU(b, pid)
		}
		return out
	}
	b.ResetTimer()
	for range b.N {
		// The controllers' CPU with every stream open and silent (etcd, timers) is taken
		// away: what is left is the heartbeats' cost.
		beating.Store(false)
		time.Sleep(time.Second)
		cpu0, t0 := cpuOf(), time.Now()
		time.Sleep(window)
		idle, idleEl := cpuOf(), time.Since(t0)
		beating.Store(true)
		time.Sleep(time.Second)
		rtt.reset()
		busy0, s0, a0, t1, self0 := cpuOf(), sent.Load(), answered.Load(), time.Now(), procCPU(b, os.Getpid())
		time.Sleep(window)
		busy, s, a, el := cpuOf(), sent.Load()-s0, answered.Load()-a0, time.Since(t1)
		// The agents' side: when it has no CPU to spare, round trips say more about it than
		// about the controllers.
		b.ReportMetric(100*(procCPU(b, os.Getpid())-self0).Seconds()/el.Seconds(), "%cpu-agents")
		rtts := rtt.sorted()
		b.ReportMetric(percentile(rtts, 0.5), "ms-rtt-p50")
		b.ReportMetric(percentile(rtts, 0.99), "ms-rtt-p99")
		b.ReportMetric(float64(s)/el.Seconds(), "heartbeats/s")
		b.ReportMetric(100*float64(a)/float64(s), "%answered")
		for _, n := range names {
			silent := (idle[n] - cpu0[n]).Seconds()
			cpu := (busy[n] - busy0[n]).Seconds()
			marginal := cpu - silent*el.Seconds()/idleEl.Seconds()
			b.ReportMetric(marginal*1e6/float64(s), "cpu-us/heartbeat-"+n)
			b.ReportMetric(100*cpu/el.Seconds(), "%cpu-"+n)
			b.ReportMetric(100*silent/idleEl.Seconds(), "%cpu-"+n+"-silent")
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
}

// heartbeatAgent is an agent stream that says Hello, reports its role once, and heartbeats
// every 100 ms (after offset, so that the fleet's heartbeats spread over the interval).
func heartbeatAgent(ctx context.Context, client lvsctlv1.AgentServiceClient, name string, offset time.Duration, beating *atomic.Bool,
	sent, answered, connected *atomic.Int64, rtt *rttLog) {
	s, err := client.Connect(ctx)
	if err != nil {
		return
	}
	if s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: name}}}) != nil {
		return
	}
	var roles atomic.Pointer[lvsctlv1.GroupRoles]
	go func() {
		counted := false
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			if r := m.GetSnapshot().GetRoles(); r != nil {
				roles.Store(r)
			}
			if !counted && m.GetSnapshot() != nil {
				counted = true
				connected.Add(1)
			}
			if echo := m.GetHeartbeat().GetEcho(); echo != 0 {
				answered.Add(1)
				rtt.add(time.Since(time.Unix(0, echo)))
			}
		}
	}()
	select {
	case <-ctx.Done():
		return
	case <-time.After(offset):
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	reported := false
	for {
		if r := roles.Load(); r != nil && !reported {
			reported = true
			st := roleStatus(r, name, r.GetActive() == name)
			if s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: st}}) != nil {
				return
			}
		}
		if beating.Load() {
			if s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: time.Now().UnixNano()}}}) != nil {
				return
			}
			sent.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// rttLog collects heartbeat round trips: sent by the agent to its answer's arrival, the
// time an ACTIVE's lease waits for its renewal.
type rttLog struct {
	mu sync.Mutex
	ms []float64
}

func (l *rttLog) add(d time.Duration) {
	l.mu.Lock()
	l.ms = append(l.ms, float64(d.Microseconds())/1000)
	l.mu.Unlock()
}

func (l *rttLog) reset() {
	l.mu.Lock()
	l.ms = nil
	l.mu.Unlock()
}

func (l *rttLog) sorted() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.ms)
	slices.Sort(out)
	return out
}

// procCPU is a process's user+system CPU time, from /proc/PID/stat (clock ticks of 1/100 s).
func procCPU(tb testing.TB, pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	var utime, stime int64
	if _, err := fmt.Sscan(fields[11], &utime); err != nil {
		tb.Fatal(err)
	}
	if _, err := fmt.Sscan(fields[12], &stime); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// holds says whether a director's fake kernel has the VIP on its VIP interface.
func holds(a *agentProc, vip string) bool {
	ps, err := a.addrs.Addresses("eth0")
	if err != nil {
		return false
	}
	for _, p := range ps {
		if p.Addr().String() == vip {
			return true
		}
	}
	return false
}

// TestPlannedFailoverWithRealAgents: the agent daemons (fake kernels, real peer heartbeats
// on loopback) and the controller move the VIP with lvsctl failover, there and back,
// sampled every millisecond: never on both directors at once, and status shows who holds.
func TestPlannedFailoverWithRealAgents(t *testing.T) {
	ctl := newController(t)
	c := dialTB(t, ctl.cfg.Listen)
	ctx := context.Background()
	if _, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: twoDirectorWMS(t)}); err != nil {
		t.Fatal(err)
	}
	agents := map[string]*agentProc{"dir-a": startAgent(t, "dir-a", ctl.cfg.Listen), "dir-b": startAgent(t, "dir-b", ctl.cfg.Listen)}
	const vip = "192.0.2.10"
	only := func(holder string) func() bool {
		return func() bool {
			for name, a := range agents {
				if holds(a, vip) != (name == holder) {
					return false
				}
			}
			d := directorStatus(t, c, holder)
			return d.GetHolding() && d.GetRole() == lvsctlv1.Role_ROLE_ACTIVE
		}
	}
	waitUntil(t, 15*time.Second, "dir-a alone holding the VIP", only("dir-a"))

	var both atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if holds(agents["dir-a"], vip) && holds(agents["dir-b"], vip) {
				both.Add(1)
			}
		}
	}()
	for _, step := range []struct{ to, want, previous string }{{"dir-b", "dir-b", "dir-a"}, {"", "dir-a", "dir-b"}} {
		resp, err := c.config.Failover(ctx, &lvsctlv1.FailoverRequest{Group: "edge-1", To: step.to})
		if err != nil {
			t.Fatalf("failover to %q: %v", step.to, err)
		}
		if resp.GetRoles().GetActive() != step.want || resp.GetPrevious() != step.previous {
			t.Fatalf("failover to %q: %v, want %s ACTIVE after %s", step.to, resp, step.want, step.previous)
		}
		waitUntil(t, 15*time.Second, step.want+" alone holding the VIP", only(step.want))
		if d := directorStatus(t, c, step.previous); d.GetHolding() || d.GetRole() != lvsctlv1.Role_ROLE_STANDBY {
			t.Errorf("after the failover to %s, %s's status: %v", step.want, step.previous, d)
		}
	}
	close(stop)
	<-sampled
	if n := both.Load(); n > 0 {
		t.Errorf("both directors held the VIP in %d samples", n)
	}
}

package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The agent's benchmarks at the scale issue 8 sets: 10,000 firewall-mark services of 10 real
// servers each, on fake kernels, through the whole agent: daemon.Run with a fake session,
// the reconciler, and the state on disk (a real directory, fsyncs included). CPU is the
// process's user+sys time (getrusage), so the fake kernels' work and the garbage collector
// count too; logs go through a text handler at Info level into io.Discard, as formatting them
// is part of the cost.

const (
	benchServices = 10000
	benchReals    = 10
)

// benchCluster is cluster i: one of 250 VIPs, TCP and UDP on one port, 10 reals.
func benchCluster(i int, weight uint32) *lvsctlv1.Cluster {
	c := &lvsctlv1.Cluster{
		Name: fmt.Sprintf("c%05d", i), DirectorGroup: "edge-1",
		Vips:   []string{fmt.Sprintf("192.0.2.%d", i%250+1)},
		Fwmark: uint32(i + 1), Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Ports: []*lvsctlv1.PortRange{
			{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: uint32(1000 + i/250), Last: uint32(1000 + i/250)},
			{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: uint32(1000 + i/250), Last: uint32(1000 + i/250)},
		},
		Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600},
	}
	for j := range benchReals {
		c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("198.51.100.%d", j+1), Weight: weight})
	}
	return c
}

func benchSnapshot(rev int64) *lvsctlv1.ConnectResponse {
	clusters := make([]*lvsctlv1.Cluster, benchServices)
	for i := range clusters {
		clusters[i] = benchCluster(i, 100)
	}
	return &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{
		Revision: rev, State: &lvsctlv1.DesiredState{Group: group("edge-1"), Clusters: clusters},
		Roles: &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 1}}}}
}

// benchAgent is an agent on fake kernels and a real state directory.
type benchAgent struct {
	sess   *fakeSession
	ipvs   *fake.IPVS
	watch  *fakeWatcher
	cancel func()
	done   chan error
	agent  *Agent
}

// startBenchAgent starts an agent; edit, if any, changes its config.
func startBenchAgent(b testing.TB, edit ...func(*Config)) *benchAgent {
	b.Helper()
	st, err := state.Load(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &benchAgent{sess: newFakeSession(true), ipvs: fake.NewIPVS(), watch: &fakeWatcher{in: make(chan struct{})}, done: make(chan error, 1)}
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: a.ipvs, Firewall: fake.NewFirewall(), Addresses: fake.NewAddresses("eth0"), State: st})
	cfg := Config{
		Director: "dir-a", Logger: log, State: st, Reconciler: rec, Session: a.sess,
		Resync: time.Hour, OfflineAfter: time.Hour, StatsPeriod: time.Hour,
		Watchers: []Watcher{a.watch}, RepairDelay: time.Microsecond,
	}
	for _, e := range edit {
		e(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.agent = New(cfg)
	go func() { a.done <- a.agent.Run(ctx) }()
	return a
}

func (a *benchAgent) stop(b testing.TB) {
	a.cancel()
	if err := <-a.done; err != nil {
		b.Errorf("Run: %v", err)
	}
}

func (a *benchAgent) deliver(b testing.TB, m *lvsctlv1.ConnectResponse) {
	select {
	case a.sess.in <- m:
	case <-time.After(time.Minute):
		b.Fatal("the agent took no message")
	}
}

// waitAck waits for the ack of rev and fails the benchmark if it carries errors.
func (a *benchAgent) waitAck(b testing.TB, rev int64) *lvsctlv1.Ack {
	deadline := time.After(30 * time.Minute)
	for {
		select {
		case m := <-a.sess.sent:
			ack := m.GetAck()
			if ack == nil || ack.GetRevision() != rev {
				continue
			}
			if len(ack.GetErrors())+len(ack.GetDirectorErrors()) > 0 {
				b.Fatalf("ack of %d has errors: %v %v", rev, ack.GetErrors(), ack.GetDirectorErrors())
			}
			return ack
		case <-deadline:
			b.Fatalf("no ack of revision %d", rev)
		}
	}
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
}

// BenchmarkAgentWeightChange10k: one delta that changes one real server's weight, from the
// controller's message to the agent's ack.
func BenchmarkAgentWeightChange10k(b *testing.B) {
	a := startBenchAgent(b)
	defer a.stop(b)
	a.deliver(b, benchSnapshot(1))
	a.waitAck(b, 1)
	rev := int64(1)
	b.ResetTimer()
	start := cpuTime(b)
	for i := range b.N {
		c := benchCluster(i*7919%benchServices, uint32(101+i%2))
		a.deliver(b, &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{
			PrevRevision: rev, Revision: rev + 1, Upserted: []*lvsctlv1.Cluster{c}}}})
		rev++
		if ack := a.waitAck(b, rev); ack.GetOperations() < 1 {
			b.Fatalf("ack of %d: %d operations, want the weight change", rev, ack.GetOperations())
		}
	}
	reportCPU(b, cpuTime(b)-start)
}

// BenchmarkAgentDriftCheck10k: a full reconcile against the kernel (as the 30 s resync and a
// kernel change notification run) with nothing to change.
func BenchmarkAgentDriftCheck10k(b *testing.B) {
	a := startBenchAgent(b)
	defer a.stop(b)
	a.deliver(b, benchSnapshot(1))
	a.waitAck(b, 1)
	b.ResetTimer()
	start := cpuTime(b)
	for range b.N {
		a.watch.in <- struct{}{}
		if ack := a.waitAck(b, 1); ack.GetOperations() != 0 {
			b.Fatalf("drift check made %d operations, want none", ack.GetOperations())
		}
	}
	reportCPU(b, cpuTime(b)-start)
}

// BenchmarkAgentColdApply10k: an empty kernel and state directory to 10,000 services x 10
// reals, from the snapshot to its ack.
func BenchmarkAgentColdApply10k(b *testing.B) {
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		a := startBenchAgent(b)
		snap := benchSnapshot(1)
		b.StartTimer()
		start := cpuTime(b)
		a.deliver(b, snap)
		a.waitAck(b, 1)
		cpu += cpuTime(b) - start
		b.StopTimer()
		if got := len(a.ipvs.Dump()); got == 0 {
			b.Fatal("nothing applied")
		}
		a.stop(b)
		b.StartTimer()
	}
	reportCPU(b, cpu)
}

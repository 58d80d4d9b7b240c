package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Health checks at issue 8's scale: 10,000 clusters x 10 real servers, every cluster checked
// by RTSP, over 1,000 distinct real servers (each in 100 clusters), so 1,000 probes.

const healthServers = 1000

// healthCluster is benchCluster i with an RTSP check, its reals among healthServers servers.
func healthCluster(i int) *lvsctlv1.Cluster {
	c := benchCluster(i, 100)
	c.Health = &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554}
	for j, r := range c.Reals {
		n := (i*benchReals + j) % healthServers
		r.Address = fmt.Sprintf("198.18.%d.%d", n/250, n%250+1)
	}
	return c
}

func healthSnapshot(rev int64) *lvsctlv1.ConnectResponse {
	m := benchSnapshot(rev)
	for i := range m.GetSnapshot().GetState().GetClusters() {
		m.GetSnapshot().GetState().Clusters[i] = healthCluster(i)
	}
	return m
}

// stubChecker records the targets it is given and checks nothing: the benchmark makes the
// transitions itself.
type stubChecker struct {
	mu   sync.Mutex
	last []checker.Target
	sets int
}

func (s *stubChecker) Set(t []checker.Target) {
	s.mu.Lock()
	s.last, s.sets = t, s.sets+1
	s.mu.Unlock()
}

func (s *stubChecker) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// BenchmarkAgentHealthTrack10k: what a snapshot of 10,000 checked clusters costs the loop
// before any kernel work (the targets, deduplicated to 1,000, and every effective cluster),
// and what handing the 1,000 targets to a checker costs (set-ms).
// The first snapshot builds everything; one on a new stream, with the same clusters in new
// messages, finds them unchanged.
func BenchmarkAgentHealthTrack10k(b *testing.B) {
	b.Run("first", func(b *testing.B) {
		snap := evMessage{m: healthSnapshot(1)}
		var targets []checker.Target
		b.ResetTimer()
		start := cpuTime(b)
		for range b.N {
			l := healthLoop()
			l.step(time.Now(), evStart{})
			for _, a := range l.step(time.Now(), snap) {
				if s, ok := a.(actSetTargets); ok {
					targets = s.targets
				}
			}
		}
		reportCPU(b, cpuTime(b)-start)
		b.StopTimer()
		if len(targets) != healthServers {
			b.Fatalf("%d targets, want %d", len(targets), healthServers)
		}
		chk := checker.New(nil, checker.Options{})
		t0 := time.Now()
		const sets = 20
		for range sets {
			chk.Set(targets)
		}
		b.ReportMetric(float64(time.Since(t0).Microseconds())/1000/sets, "set-ms")
	})
	b.Run("again", func(b *testing.B) {
		l := healthLoop()
		l.step(time.Now(), evStart{})
		l.step(time.Now(), evMessage{m: healthSnapshot(1)})
		snaps := make([]evMessage, b.N)
		for i := range snaps {
			snaps[i] = evMessage{m: healthSnapshot(1)}
		}
		b.ResetTimer()
		start := cpuTime(b)
		for i := range b.N {
			for _, a := range l.step(time.Now(), snaps[i]) {
				if _, ok := a.(actSetTargets); ok {
					b.Fatal("the same clusters again changed the targets")
				}
			}
		}
		reportCPU(b, cpuTime(b)-start)
	})
}

// BenchmarkAgentHealthTransition10k: one real server (in 100 clusters) goes down, or back up:
// from the checker's transition to the ack of the reconcile that changed its weight in the 100
// services. Also reports the goroutines of the agent with its 1,000 targets.
func BenchmarkAgentHealthTransition10k(b *testing.B) {
	stub := &stubChecker{}
	a := startBenchAgent(b, func(c *Config) { c.Health = stub })
	defer a.stop(b)
	a.deliver(b, healthSnapshot(1))
	a.waitAck(b, 1)
	stub.mu.Lock()
	targets := stub.last
	stub.mu.Unlock()
	if len(targets) != healthServers {
		b.Fatalf("%d targets, want %d", len(targets), healthServers)
	}
	b.ResetTimer()
	start := cpuTime(b)
	for i := range b.N {
		st := checker.Status{Key: targets[0].Key, Addr: targets[0].Addr, State: checker.Down, Since: time.Now()}
		if i%2 == 1 {
			st.State = checker.Up
		}
		a.agent.HealthChanged(st)
		if ack := a.waitAck(b, 1); ack.GetOperations() != 100 {
			b.Fatalf("transition %d: %d operations, want 100 (the server's weight in each of its clusters)", i, ack.GetOperations())
		}
	}
	reportCPU(b, cpuTime(b)-start)
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}

// TestHealthScale10k: the agent with health checks on 10,000 clusters x 10 real servers (1,000
// distinct servers, 300 of which accept and never answer): the 1,000 probes run on the
// checker's fixed pool, so the agent's goroutines stay within a constant of where they were
// before any check, the healthy servers keep being checked, and every hung server ends at
// weight 0 in each of its 100 clusters.
func TestHealthScale10k(t *testing.T) {
	const hung = 100
	var mu sync.Mutex
	checks := map[string]int{}
	hangs := func(a string) bool {
		var x, y int
		fmt.Sscanf(a, "198.18.%d.%d", &x, &y)
		return (x*250+y-1)%healthServers < hung
	}
	probe := func(ctx context.Context, a netip.Addr, _ health.Spec) error {
		mu.Lock()
		checks[a.String()]++
		mu.Unlock()
		if hangs(a.String()) {
			<-ctx.Done() // the check's timeout
			return checker.ErrTimeout
		}
		return nil
	}
	base := runtime.NumGoroutine()
	e := startAgentWith(t, t.TempDir(), newFakeSession(true), envOptions{probe: probe}, func(c *Config) {
		c.Logger = slog.New(slog.DiscardHandler) // 30,000 weight changes
	})
	snap := healthSnapshot(1)
	for _, c := range snap.GetSnapshot().GetState().GetClusters() {
		c.Health.IntervalMs, c.Health.TimeoutMs, c.Health.Fall = 200, 100, 2
	}
	e.deliver(t, snap)
	e.waitApplied(t, 1)

	peak := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		peak = max(peak, runtime.NumGoroutine())
		svcs, err := e.ipvs.Stats()
		if err != nil {
			t.Fatal(err)
		}
		zero := 0
		for _, s := range svcs {
			for _, d := range s.Destinations {
				if d.Weight == 0 {
					zero++
					if !hangs(d.Address.String()) {
						t.Fatalf("healthy %s has weight 0 in %s", d.Address, s.ServiceKey)
					}
				}
			}
		}
		if zero == hung*100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d destinations of hung servers at weight 0 after 60 s", zero, hung*100)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The pool (checker.DefaultWorkers), the checker's scheduler, the agent's own (about 20)
	// and the test's: not one per target, nor per hung target.
	if bound := base + checker.DefaultWorkers + 30; peak > bound {
		t.Errorf("peak %d goroutines, want at most %d (%d before the agent started): the pool is bounded, whatever hangs", peak, bound, base)
	}
	mu.Lock()
	defer mu.Unlock()
	for n := range healthServers {
		a := fmt.Sprintf("198.18.%d.%d", n/250, n%250+1)
		if !hangs(a) && checks[a] < 2 {
			t.Errorf("healthy %s checked %d times", a, checks[a])
		}
	}
	t.Logf("goroutines: %d before the agent, peak %d; checks of the first healthy server: %d", base, peak, checks[fmt.Sprintf("198.18.%d.%d", hung/250, hung%250+1)])
}

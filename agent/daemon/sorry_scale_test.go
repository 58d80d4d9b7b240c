package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Sorry servers at issue 8's scale: 10,000 clusters sharing the same 10 real servers (each
// real server in every cluster, the worst case: one transition touches every service), each
// cluster with its own sorry server. When the last real server goes down, 10,000 sorry
// servers are added in one reconcile; when one comes back, 10,000 are deleted in one.

// sorryScaleCluster is benchCluster i with an RTSP check and a sorry server of its own.
func sorryScaleCluster(i int) *lvsctlv1.Cluster {
	c := benchCluster(i, 100)
	c.Health = &lvsctlv1.HealthCheck{Check: "rtsp", Port: 554}
	c.SorryServer = &lvsctlv1.SorryServer{Address: sorryScaleAddr(i).String()}
	return c
}

func sorryScaleAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(i / 250), byte(i%250 + 1)})
}

// sorryScaleSnapshot is the 10,000 clusters, with their sorry servers or (sorry false, for
// comparison) without.
func sorryScaleSnapshot(rev int64, sorry bool) *lvsctlv1.ConnectResponse {
	m := benchSnapshot(rev)
	for i := range m.GetSnapshot().GetState().GetClusters() {
		c := sorryScaleCluster(i)
		if !sorry {
			c.SorryServer = nil
		}
		m.GetSnapshot().GetState().Clusters[i] = c
	}
	return m
}

// sorryScaleAgent is an agent holding the 10,000 clusters with 9 of their 10 real servers
// down; it returns the target of the tenth.
func sorryScaleAgent(tb testing.TB, sorry bool) (*benchAgent, checker.Target) {
	stub := &stubChecker{}
	a := startBenchAgent(tb, func(c *Config) { c.Health = stub })
	a.deliver(tb, sorryScaleSnapshot(1, sorry))
	a.waitAck(tb, 1)
	stub.mu.Lock()
	targets := stub.last
	stub.mu.Unlock()
	if len(targets) != benchReals {
		tb.Fatalf("%d targets, want %d (every cluster shares its real servers)", len(targets), benchReals)
	}
	for _, t := range targets[1:] {
		a.agent.HealthChanged(checker.Status{Key: t.Key, Addr: t.Addr, State: checker.Down, Since: time.Now()})
	}
	// However the loop batched them: acks until the kernel has the 9 down (an ack follows
	// its reconcile's kernel work, so none is left to come after that).
	for {
		a.waitAck(tb, 1)
		if kernelZeros(tb, a) == (benchReals-1)*benchServices {
			break
		}
	}
	drainSent(a)
	return a, targets[0]
}

func kernelZeros(tb testing.TB, a *benchAgent) int {
	svcs, err := a.ipvs.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, s := range svcs {
		for _, d := range s.Destinations {
			if d.Weight == 0 {
				n++
			}
		}
	}
	return n
}

// drainSent drops what the agent sent so far (earlier reconciles' acks).
func drainSent(a *benchAgent) {
	for {
		select {
		case <-a.sess.sent:
		default:
			return
		}
	}
}

// sorryKernel checks every service of the fake kernel: its sorry server present at weight 1
// (inUse) or absent, and real server last with weight lastWeight.
func sorryKernel(t *testing.T, a *benchAgent, inUse bool, last netip.Addr, lastWeight uint32) {
	t.Helper()
	svcs, err := a.ipvs.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != benchServices {
		t.Fatalf("%d services in the kernel, want %d", len(svcs), benchServices)
	}
	bad := 0
	for _, s := range svcs {
		i := int(s.FWMark) - 1
		sorry, lastOK, dests := false, false, 0
		for _, d := range s.Destinations {
			dests++
			switch d.Address {
			case sorryScaleAddr(i):
				sorry = d.Weight == 1 && d.Forward == dataplane.ForwardMasq
			case last:
				lastOK = d.Weight == lastWeight
			default:
				if d.Weight != 0 {
					bad++
				}
			}
		}
		want := benchReals
		if inUse {
			want++
		}
		if sorry != inUse || !lastOK || dests != want {
			if bad++; bad < 5 {
				t.Errorf("%s: sorry in use %v (want %v), %s weight ok %v, %d destinations (want %d)", s.ServiceKey, sorry, inUse, last, lastOK, dests, want)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d services wrong", bad)
	}
}

// TestSorryScale10k: the last real server of 10,000 clusters goes down -> one reconcile of
// 20,000 operations (its weight to 0 and the sorry server added, in each service), and the
// kernel has every sorry server; it comes back -> one reconcile deletes the 10,000.
func TestSorryScale10k(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 services")
	}
	a, last := sorryScaleAgent(t, true)
	defer a.stop(t)

	t0 := time.Now()
	a.agent.HealthChanged(checker.Status{Key: last.Key, Addr: last.Addr, State: checker.Down, Since: time.Now()})
	ack := a.waitAck(t, 1)
	down := time.Since(t0)
	if ack.GetOperations() != 2*benchServices {
		t.Errorf("last real down: %d operations in one reconcile, want %d", ack.GetOperations(), 2*benchServices)
	}
	sorryKernel(t, a, true, last.Addr, 0)

	t0 = time.Now()
	a.agent.HealthChanged(checker.Status{Key: last.Key, Addr: last.Addr, State: checker.Up, Since: time.Now()})
	ack = a.waitAck(t, 1)
	up := time.Since(t0)
	if ack.GetOperations() != 2*benchServices {
		t.Errorf("one real back: %d operations in one reconcile, want %d", ack.GetOperations(), 2*benchServices)
	}
	sorryKernel(t, a, false, last.Addr, 100)
	t.Logf("10,000 sorry servers in: %s; out: %s", down.Round(time.Millisecond), up.Round(time.Millisecond))
}

// BenchmarkAgentSorry10k: the last real server of 10,000 clusters goes down (10,000 sorry
// servers added) or comes back (10,000 deleted), each with its weight in the 10,000
// services: from the checker's transition to the ack of the one reconcile. "no-sorry" is the
// same transition in clusters without a sorry server (the weights alone), for comparison.
func BenchmarkAgentSorry10k(b *testing.B) {
	for _, tc := range []struct {
		name  string
		sorry bool
		ops   uint32
	}{{"sorry", true, 2 * benchServices}, {"no-sorry", false, benchServices}} {
		b.Run(tc.name, func(b *testing.B) {
			a, last := sorryScaleAgent(b, tc.sorry)
			defer a.stop(b)
			b.ResetTimer()
			start := cpuTime(b)
			for i := range b.N {
				st := checker.Status{Key: last.Key, Addr: last.Addr, State: checker.Down, Since: time.Now()}
				if i%2 == 1 {
					st.State = checker.Up
				}
				a.agent.HealthChanged(st)
				if ack := a.waitAck(b, 1); ack.GetOperations() != tc.ops {
					b.Fatalf("transition %d: %d operations, want %d", i, ack.GetOperations(), tc.ops)
				}
			}
			reportCPU(b, cpuTime(b)-start)
		})
	}
}

package config

import (
	"context"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// preload writes n WMS-like clusters (10 real servers, 5 port entries, marks 1..n) and their
// group straight into the store, a few thousand per transaction: applying them one by one
// would take longer than the benchmark.
func preload(b *testing.B, st *store.Store, n int) {
	b.Helper()
	ctx := context.Background()
	g := group("edge-1", "dir-a", "dir-b").GetGroup()
	head, err := st.Commit(ctx, store.Write{Puts: map[string]proto.Message{
		store.GroupKey("edge-1"): g,
		store.RolesKey("edge-1"): &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-a", Epoch: 1},
	}, Touch: []string{store.GenerationKey("edge-1")}})
	if err != nil {
		b.Fatal(err)
	}
	const chunk = 2000
	for lo := 0; lo < n; lo += chunk {
		w := store.Write{Head: head, Puts: map[string]proto.Message{}}
		for i := lo; i < min(lo+chunk, n); i++ {
			c := benchCluster(i)
			c.Fwmark = uint32(i + 1)
			w.Puts[store.ClusterKey(c.GetName())] = c
		}
		if head, err = st.Commit(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
}

// benchCluster is cluster i: its own VIP, the WMS ports, 10 real servers.
func benchCluster(i int) *lvsctlv1.Cluster {
	c := &lvsctlv1.Cluster{
		Name: fmt.Sprintf("c%05d", i), DirectorGroup: "edge-1", Scheduler: "wlc",
		Vips:        []string{fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)},
		Forwarding:  lvsctlv1.Forwarding_FORWARDING_MASQ,
		Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600},
		Ports: []*lvsctlv1.PortRange{
			{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 554, Last: 554},
			{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 554, Last: 554},
			{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 1755, Last: 1755},
			{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 1755, Last: 1755},
			{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 1024, Last: 5000},
		},
	}
	for r := range 10 {
		c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("172.16.%d.%d", r, i%250+1), Weight: 100})
	}
	return c
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyOneCluster: one Apply that changes one cluster's weight, with 0, 1,000 and
// 10,000 clusters stored, on a real embedded etcd (in this process: cpu-ms/op is the
// controller's CPU, its etcd's included).
func BenchmarkApplyOneCluster(b *testing.B) {
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("stored=%d", n), func(b *testing.B) {
			st := storetest.Start(b)
			preload(b, st, n)
			s := NewServer(st, storetest.Cache(b, st), slog.New(slog.DiscardHandler))
			ctx := context.Background()
			c := benchCluster(n) // a cluster of its own, created by the first apply
			obj := &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}
			if _, err := s.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{obj}}); err != nil {
				b.Fatal(err)
			}
			cpu0, start := processCPU(b), time.Now()
			i := 0
			for b.Loop() {
				i++
				c.Reals[0].Weight = uint32(1 + i%100)
				if _, err := s.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{obj}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/apply")
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkApplyTenThousandClusters: one Apply creating 10,000 clusters of 10 real servers
// each (one etcd transaction) into an empty store.
func BenchmarkApplyTenThousandClusters(b *testing.B) {
	const n = 10000
	objs := []*lvsctlv1.Object{group("edge-1", "dir-a", "dir-b")}
	size := 0
	for i := range n {
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: benchCluster(i)}})
		size += proto.Size(objs[len(objs)-1])
	}
	var cpu time.Duration
	var wall time.Duration
	for b.Loop() {
		b.StopTimer()
		st := storetest.Start(b)
		s := NewServer(st, storetest.Cache(b, st), slog.New(slog.DiscardHandler))
		cpu0, start := processCPU(b), time.Now()
		b.StartTimer()
		resp, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: objs})
		if err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		cpu += processCPU(b) - cpu0
		if len(resp.GetPlans()) != 1 || len(resp.GetPlans()[0].GetChanges()) != n+1 {
			b.Fatalf("plans: %d groups", len(resp.GetPlans()))
		}
	}
	b.ReportMetric(float64(wall.Milliseconds())/float64(b.N), "ms/apply")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(size)/(1<<20), "MiB-request")
}

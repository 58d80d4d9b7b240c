package e2e

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/config"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// funcName is the name a goroutine's stack shows for fn, taken from the function itself so a
// rename cannot leave the test looking for a frame that no longer exists.
func funcName(fn any) string {
	return runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
}

var (
	// applyHandler is the controller's Apply: one goroutine runs it per request, from after
	// the request was received and decoded until the answer is ready.
	applyHandler = funcName((*config.Server).Apply)
	// crossCheck is the controller's check of the written objects against each other and
	// the store: the longest step of a large apply, before anything is written to etcd.
	crossCheck = funcName(validate.Written)
	// storeCommit is the controller's write to etcd, after every check.
	storeCommit = funcName((*store.Store).Commit)
)

// goroutinesIn counts this process's goroutines whose stack holds a frame of every one of
// fns. The controller runs in the test's process, so this sees its request handlers (those
// of every controller in the process: a test using it must not run in parallel).
func goroutinesIn(fns ...string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		all := true
		for _, fn := range fns {
			// A frame is the function's name followed by its arguments.
			all = all && bytes.Contains(g, []byte(fn+"("))
		}
		if all {
			count++
		}
	}
	return count
}

// processCPU is this process's user+system CPU time: the controller's and its embedded
// etcd's, as they run in the benchmark's process.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cancelSetup is a controller holding one group, and a config client with room for a large
// apply.
func cancelSetup(tb testing.TB, target string) lvsctlv1.ConfigServiceClient {
	tb.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	cfg := lvsctlv1.NewConfigServiceClient(conn)
	group := &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
		Name: "edge-1", VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}}}}}
	if _, err := cfg.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{group}}); err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// largeApply is 20,000 clusters on one VIP, each on its own port: every one is checked against
// the port claims of the others, which keeps the controller in its cross-object check for
// seconds (with the cancel ignored, the apply ran 15-20 s on the 2-core test machine), so a
// client can give up in the middle of it.
func largeApply() []*lvsctlv1.Object {
	var objs []*lvsctlv1.Object
	for i := range 20000 {
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: fmt.Sprintf("c%05d", i), DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"}, Scheduler: "wlc",
			Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
			Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: uint32(1 + i), Last: uint32(1 + i)}},
			Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
		}}})
	}
	return objs
}

// waitUntil polls cond until it holds; past the deadline it fails with what.
func waitUntil(tb testing.TB, deadline time.Duration, what string, cond func() bool) {
	tb.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			tb.Fatalf("after %v: %s", deadline, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cancelInCrossCheck sends objs and gives up once the controller's Apply is in its
// cross-object check: past receiving and decoding the request, before any write to etcd. It
// fails, saying so, if the apply returned before it could be cancelled there, and returns
// what the client got.
func cancelInCrossCheck(tb testing.TB, cfg lvsctlv1.ConfigServiceClient, objs []*lvsctlv1.Object) error {
	tb.Helper()
	waitUntil(tb, time.Minute, "an Apply handler from before the test is still running", func() bool { return goroutinesIn(applyHandler) == 0 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cfg.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
		done <- err
	}()
	end := time.Now().Add(2 * time.Minute)
	for goroutinesIn(applyHandler, crossCheck) == 0 {
		select {
		case err := <-done:
			cancel()
			tb.Fatalf("the apply returned (error %v) before the controller was seen checking it, so it could not be cancelled there: make it larger", err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(end) {
			cancel()
			tb.Fatal("after 2m the controller was not seen checking the apply")
		}
	}
	cancel()
	return <-done
}

// TestCancelledApplyStopsAndLeavesNothing: a client that gives up on a large apply while the
// controller checks it gets Canceled; the controller's handler of it returns (the work is not
// finished for nobody, nor left running); nothing is stored: the revision does not move and
// no cluster of the apply is listed.
func TestCancelledApplyStopsAndLeavesNothing(t *testing.T) {
	ctl := newController(t)
	cfg := cancelSetup(t, ctl.cfg.Listen)
	ctx := context.Background()
	list := func() *lvsctlv1.ListResponse {
		t.Helper()
		l, err := cfg.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	before := list().GetRevision()

	err := cancelInCrossCheck(t, cfg, largeApply())
	switch {
	case err == nil:
		t.Fatal("the apply succeeded although the client gave up while the controller was checking it: the cancel was ignored, or the apply is too small to be cancelled in time")
	case status.Code(err) != codes.Canceled:
		t.Fatalf("cancelled apply: %v, want Canceled", err)
	}
	// The handler notices within 64 objects and returns; the minute is for a loaded machine,
	// not a measure of how fast. Until it returns, it must not be seen writing to etcd: that
	// would be the rest of the work done for nobody (a look can miss a short write, but a
	// handler that stopped is never seen in one).
	writing := 0
	waitUntil(t, time.Minute, "the controller's Apply is still running after its client gave up", func() bool {
		writing += goroutinesIn(applyHandler, storeCommit)
		return goroutinesIn(applyHandler) == 0
	})
	if writing > 0 {
		t.Error("after its client gave up, the controller's Apply went on to write to etcd: the cancel did not stop its check")
	}

	l := list()
	if l.GetRevision() != before {
		t.Errorf("the store's revision moved from %d to %d: the cancelled apply left something behind", before, l.GetRevision())
	}
	if n := len(l.GetObjects()); n != 0 {
		t.Errorf("%d clusters are stored after the cancelled apply (first %q), want none", n, l.GetObjects()[0].GetCluster().GetName())
	}
}

// BenchmarkCancelledApply gives up on a large apply while the controller checks it and
// reports how long and how much CPU the controller (with its etcd, in this process) still
// spends until its handler returns: ms-to-stop and cpu-ms-after-cancel, next to the CPU it
// spent from sending the request to the cancel (cpu-ms-before-cancel).
func BenchmarkCancelledApply(b *testing.B) {
	target, _ := startBenchController(b)
	cfg := cancelSetup(b, target)
	objs := largeApply()
	var stopWall, stopCPU, busyCPU time.Duration
	for b.Loop() {
		cpu0 := processCPU(b)
		err := cancelInCrossCheck(b, cfg, objs)
		if status.Code(err) != codes.Canceled {
			b.Fatalf("cancelled apply: %v, want Canceled", err)
		}
		t0, cpu1 := time.Now(), processCPU(b)
		// Each look at the stacks stops the world for a moment: look every 5 ms, so the
		// looks add little to the CPU measured.
		for goroutinesIn(applyHandler) != 0 {
			time.Sleep(5 * time.Millisecond)
		}
		stopWall += time.Since(t0)
		stopCPU += processCPU(b) - cpu1
		busyCPU += cpu1 - cpu0
	}
	perOp := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(perOp(stopWall), "ms-to-stop")
	b.ReportMetric(perOp(stopCPU), "cpu-ms-after-cancel")
	b.ReportMetric(perOp(busyCPU), "cpu-ms-before-cancel")
}

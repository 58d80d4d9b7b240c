package e2e

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// processCPU is this process's user+system CPU time. The controller and its embedded etcd run
// in the test's process, so this is their CPU (and the test's, which is idle meanwhile).
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestCancelledApplyStopsAndLeavesNothing: a client that gives up on a large apply while the
// controller validates it gets Canceled, nothing is stored (the revision does not move), and
// the controller stops spending CPU on it instead of finishing the work for nobody.
func TestCancelledApplyStopsAndLeavesNothing(t *testing.T) {
	ctl := newController(t)
	conn, err := grpc.NewClient(ctl.cfg.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cfg := lvsctlv1.NewConfigServiceClient(conn)
	ctx := context.Background()
	group := &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
		Name: "edge-1", VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}}}}}
	if _, err := cfg.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{group}}); err != nil {
		t.Fatal(err)
	}
	revision := func() int64 {
		t.Helper()
		l, err := cfg.List(ctx, &lvsctlv1.ListRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER})
		if err != nil {
			t.Fatal(err)
		}
		return l.GetRevision()
	}
	before := revision()

	// 20,000 clusters on one VIP, each on its own port: every one is checked against the
	// port claims of the others, which keeps the controller busy validating for long enough
	// (about a second of CPU) to give up on it in the middle.
	var objs []*lvsctlv1.Object
	for i := range 20000 {
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
			Name: fmt.Sprintf("c%05d", i), DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"}, Scheduler: "wlc",
			Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
			Ports:      []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: uint32(1 + i), Last: uint32(1 + i)}},
			Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 1}},
		}}})
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start, cpu0 := time.Now(), processCPU(t)
	go func() {
		_, err := cfg.Apply(actx, &lvsctlv1.ApplyRequest{Objects: objs})
		done <- err
	}()
	// Give up once the controller has spent a quarter second of CPU on the apply: past
	// receiving and decoding it, into its validation.
	var applyErr error
	returned := false
	for !returned && processCPU(t)-cpu0 < 250*time.Millisecond {
		select {
		case applyErr = <-done:
			returned = true
		case <-time.After(5 * time.Millisecond):
		}
	}
	if returned {
		t.Fatalf("the apply returned (%v) before it could be cancelled: make it larger", applyErr)
	}
	busyWall, busyCPU := time.Since(start), processCPU(t)-cpu0
	cancel()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled apply: %v, want Canceled", err)
	}

	// A moment for the server to notice, then the same measure over a quiet window.
	time.Sleep(100 * time.Millisecond)
	quietStart, quietCPU0 := time.Now(), processCPU(t)
	time.Sleep(time.Second)
	quietWall, quietCPU := time.Since(quietStart), processCPU(t)-quietCPU0
	busyRate := busyCPU.Seconds() / busyWall.Seconds()
	quietRate := quietCPU.Seconds() / quietWall.Seconds()
	t.Logf("CPU per wall second: %.2f while applying, %.3f after the cancel", busyRate, quietRate)
	if quietRate > busyRate/4 {
		t.Errorf("the controller still spends %.2f CPU-seconds per second after the client gave up (%.2f while it was applying): the work did not stop", quietRate, busyRate)
	}
	if after := revision(); after != before {
		t.Errorf("the store's revision moved from %d to %d: the cancelled apply left something behind", before, after)
	}
}

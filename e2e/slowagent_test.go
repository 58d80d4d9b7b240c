package e2e

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestSlowAgentDoesNotBlockOthers: an agent that connects and then never reads its stream
// (a hung director) must not hold back the other directors' updates.
func TestSlowAgentDoesNotBlockOthers(t *testing.T) {
	ctl := newController(t)
	c := dial(t, ctl.cfg.Listen)
	ctx := context.Background()
	startAgent(t, "dir-a", ctl.cfg.Listen)

	// dir-b says Hello and then stops reading. A fixed 64 KiB window (setting it turns off
	// gRPC's window growth) makes the controller's sends to dir-b block once it is full.
	const window = 64 << 10
	conn, err := grpc.NewClient(ctl.cfg.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stuck, err := lvsctlv1.NewAgentServiceClient(conn).Connect(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stuck.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: "dir-b"}}}); err != nil {
		t.Fatal(err)
	}

	objs := twoDirectorWMS(t)
	// Many real servers make each update large, so dir-b's flow-control window fills up
	// after a few of them.
	wms := objs[0].GetCluster()
	for i := range 250 { // 198.51.100.4-253: the documentation range holds no more
		wms.Reals = append(wms.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("198.51.100.%d", 4+i), Weight: 1})
	}
	var rev int64
	const updates = 30
	for i := range updates {
		wms.Reals[0].Weight = uint32(10 + i)
		resp, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		rev = resp.GetRevision()
	}
	// What the controller owes dir-b is several windows: its sender must be blocked.
	owed := updates * proto.Size(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{wms}}}})
	if owed < 2*window {
		t.Fatalf("the test sends only %d bytes to dir-b; it needs more than %d to stall its stream", owed, 2*window)
	}
	// dir-a keeps up although dir-b has read nothing.
	waitApplied(t, c, rev, "dir-a")
}

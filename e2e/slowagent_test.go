package e2e

import (
	"context"
	"fmt"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestSlowAgentDoesNotBlockOthers: an agent that connects and then never reads its stream
// (a hung director) must not hold back the other directors' updates.
func TestSlowAgentDoesNotBlockOthers(t *testing.T) {
	ctl := newController(t)
	c := dial(t, ctl.cfg.Listen)
	ctx := context.Background()
	startAgent(t, "dir-a", ctl.cfg.Listen)

	// dir-b says Hello and then stops reading.
	conn, err := grpc.NewClient(ctl.cfg.Listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	for i := range 30 {
		wms.Reals[0].Weight = uint32(10 + i)
		resp, err := c.config.Apply(ctx, &lvsctlv1.ApplyRequest{Objects: objs})
		if err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
		rev = resp.GetRevision()
	}
	// dir-a keeps up although dir-b has read nothing.
	waitApplied(t, c, rev, "dir-a")
}

package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// BenchmarkHeartbeatsRelayed is BenchmarkHeartbeats with every director connected to a
// follower: two lvs-controller processes on one etcd member (the etcd server module, in the
// test process), the directors on the one that does not lead, so that each stream is relayed
// to the leader message by message (design section 5b). It reports each controller's CPU
// ("-leader", "-follower") and the round trips the agents see, to set against
// BenchmarkHeartbeats run in the same `go test -bench Heartbeats`: what the relay costs at
// 1,000 directors (LVSCTL_BENCH_AGENTS).
func BenchmarkHeartbeatsRelayed(b *testing.B) {
	_, endpoints := startEtcdCluster(b, 1)
	bin := buildController(b)
	ports := storetest.FreePorts(b, 2)
	start := func(listen string) int {
		return startControllerBinary(b, bin, "--insecure", "--listen", listen, "--etcd-endpoints", endpoints[0],
			"--election-ttl", "2s")
	}
	// The first started leads once its session is up; the second then follows.
	first := start(ports[0])
	waitLeader(b, ports[0], ports[0])
	second := start(ports[1])
	waitLeader(b, ports[1], ports[0])
	heartbeatBench(b, ports[1], map[string]int{"leader": first, "follower": second})
}

// waitLeader waits until the controller at target lists leader as the leading controller.
func waitLeader(b *testing.B, target, leader string) {
	c := dialTB(b, target)
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.status.ListControllers(context.Background(), &lvsctlv1.ListControllersRequest{})
		if err == nil {
			for _, ci := range resp.GetControllers() {
				if ci.GetLeader() && ci.GetAddress() == leader {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s never listed %s as the leader (last: %v, %v)", target, leader, resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

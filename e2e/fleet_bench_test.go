package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lvsctl/lvsctl/cli/commands"
	"github.com/lvsctl/lvsctl/controlplane/controller"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// startBenchController runs a controller with its embedded etcd in this process and
// returns its gRPC address and its etcd's client URL.
func startBenchController(tb testing.TB) (string, string) {
	ports := storetest.FreePorts(tb, 3)
	cfg := controller.Config{DataDir: filepath.Join(tb.TempDir(), "etcd"), Listen: ports[0],
		EtcdClientURL: "http://" + ports[1], EtcdPeerURL: "http://" + ports[2], Insecure: true, EtcdLogLevel: "fatal", Logger: discardLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := controller.Start(ctx, cfg)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Serve(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	return cfg.Listen, cfg.EtcdClientURL
}

// commitWatch learns when each revision is committed, as fast as any watcher of etcd can
// (the controller's fan-out learns it the same way): the start of commit -> ack.
type commitWatch struct {
	mu   sync.Mutex
	seen map[int64]time.Time
}

func watchCommits(tb testing.TB, etcdURL string) *commitWatch {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &commitWatch{seen: map[int64]time.Time{}}
	wch := cli.Watch(ctx, store.Prefix, clientv3.WithPrefix())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for resp := range wch {
			now := time.Now()
			w.mu.Lock()
			if _, ok := w.seen[resp.Header.Revision]; !ok {
				w.seen[resp.Header.Revision] = now
			}
			w.mu.Unlock()
		}
	}()
	tb.Cleanup(func() { cancel(); <-done; cli.Close() })
	return w
}

// at returns when rev was committed; waits a little for the watch to report it.
func (w *commitWatch) at(tb testing.TB, rev int64) time.Time {
	for range 1000 {
		w.mu.Lock()
		t, ok := w.seen[rev]
		w.mu.Unlock()
		if ok {
			return t
		}
		time.Sleep(time.Millisecond)
	}
	tb.Fatalf("revision %d never seen on the etcd watch", rev)
	return time.Time{}
}

// measureChanges changes one cluster's weight per op and reports, over all ops and agents,
// the time from the commit to each agent's ack.
func measureChanges(b *testing.B, c clients, w *ackWatch, commits *commitWatch, clusters int) {
	var lat []float64
	var applyMs float64
	b.ResetTimer()
	for i := range b.N {
		cl := scaleCluster(i%clusters, 2, uint32(200+i%50))
		start := time.Now()
		resp, err := c.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: cl}}}})
		if err != nil {
			b.Fatal(err)
		}
		applyMs += float64(time.Since(start).Microseconds()) / 1000
		select {
		case <-w.expect(resp.GetRevision()):
		case <-time.After(time.Minute):
			b.Fatalf("change %d: not every agent applied revision %d: %d did", i, resp.GetRevision(), len(w.since(start)))
		}
		lat = append(lat, w.since(commits.at(b, resp.GetRevision()))...)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(applyMs/float64(b.N), "apply-ms")
}

// ackWatch records when each agent first reports a revision applied.
type ackWatch struct {
	mu     sync.Mutex
	n      int
	latest map[string]int64
	// latestAt is when each director acked its latest revision.
	latestAt map[string]time.Time
	target   int64
	at       map[string]time.Time // when each director reached target
	all      chan struct{}
}

func newAckWatch(n int) *ackWatch {
	return &ackWatch{n: n, latest: map[string]int64{}, latestAt: map[string]time.Time{}, at: map[string]time.Time{}, all: make(chan struct{})}
}

// expect starts timing rev; the channel closes once every agent has applied it. Agents
// that applied it already (before the Apply's answer came back) count as of that ack.
func (w *ackWatch) expect(rev int64) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.target, w.at, w.all = rev, map[string]time.Time{}, make(chan struct{})
	for d, r := range w.latest {
		if r >= rev {
			w.at[d] = w.latestAt[d]
		}
	}
	if len(w.at) == w.n {
		close(w.all)
	}
	return w.all
}

func (w *ackWatch) applied(director string, rev int64) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if rev > w.latest[director] {
		w.latest[director], w.latestAt[director] = rev, now
	}
	if w.target == 0 || rev < w.target {
		return
	}
	if _, ok := w.at[director]; ok {
		return
	}
	w.at[director] = now
	if len(w.at) == w.n {
		close(w.all)
	}
}

// since returns each agent's time to the target revision from t0, in milliseconds.
func (w *ackWatch) since(t0 time.Time) []float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []float64
	for _, t := range w.at {
		out = append(out, float64(t.Sub(t0).Microseconds())/1000)
	}
	return out
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkPropagation: one controller, 100 agents (the real daemon and reconciler with
// fake kernels, real gRPC over loopback, in this process), one group of 10,000 clusters;
// each op changes one real server's weight in one cluster and measures from the commit (as
// an etcd watch sees it) until each agent has applied it and sent its ack; apply-ms is the
// Apply's own latency as lvsctl sees it. The agents share this process's cores: the last
// ack of a change waits for the CPU of all the agents before it.
// LVSCTL_BENCH_AGENTS and LVSCTL_BENCH_CLUSTERS shrink it for a quick look.
func BenchmarkPropagation(b *testing.B) {
	agents, clusters := envInt("LVSCTL_BENCH_AGENTS", 100), envInt("LVSCTL_BENCH_CLUSTERS", 10000)
	target, etcdURL := startBenchController(b)
	commits := watchCommits(b, etcdURL)
	c := dialTB(b, target)
	w := newAckWatch(agents)
	objs := scaleObjects(agents, clusters, 2)
	for i := range agents {
		name := fmt.Sprintf("dir-%02d", i)
		startQuietAgent(b, name, target, 10*time.Second, func(rev int64) { w.applied(name, rev) })
	}
	t0 := time.Now()
	resp, err := c.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: objs})
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-w.expect(resp.GetRevision()):
	case <-time.After(10 * time.Minute):
		b.Fatalf("the agents did not all apply the first state: %d of %d", len(w.since(t0)), agents)
	}
	b.Logf("%d agents applied %d clusters in %s", agents, clusters, time.Since(t0).Round(time.Millisecond))
	measureChanges(b, c, w, commits, clusters)
}

// BenchmarkPropagationFanout is BenchmarkPropagation with light agents (streams that ack
// on receipt, no data plane): the controller's part of the propagation alone.
func BenchmarkPropagationFanout(b *testing.B) {
	agents, clusters := envInt("LVSCTL_BENCH_AGENTS", 100), envInt("LVSCTL_BENCH_CLUSTERS", 10000)
	target, etcdURL := startBenchController(b)
	commits := watchCommits(b, etcdURL)
	c := dialTB(b, target)
	w := newAckWatch(agents)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	startLightAgents(ctx, b, &wg, target, agents, w)
	resp, err := c.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: scaleObjects(agents, clusters, 2)})
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-w.expect(resp.GetRevision()):
	case <-time.After(5 * time.Minute):
		b.Fatal("not every agent got the state")
	}
	measureChanges(b, c, w, commits, clusters)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// grpcDial connects as lvsctl does, with its message limit.
func grpcDial(target string) (*grpc.ClientConn, error) {
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(commands.MaxMessageBytes), grpc.MaxCallSendMsgSize(commands.MaxMessageBytes)))
}

func dialTB(tb testing.TB, target string) clients {
	conn, err := grpcDial(target)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return clients{config: lvsctlv1.NewConfigServiceClient(conn), status: lvsctlv1.NewStatusServiceClient(conn)}
}

// procMemory reads a process's resident set now and at its peak, in MiB.
func procMemory(tb testing.TB, pid int) (rss, peak float64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// startControllerProcess runs the lvs-controller binary, so that its memory is its own.
func startControllerProcess(tb testing.TB) (target string, pid int) {
	dir := tb.TempDir()
	ports := storetest.FreePorts(tb, 3)
	pid = startControllerBinary(tb, buildController(tb), "--insecure", "--listen", ports[0], "--data-dir", filepath.Join(dir, "etcd"),
		"--etcd-client-url", "http://"+ports[1], "--etcd-peer-url", "http://"+ports[2], "--etcd-log-level", "fatal")
	return ports[0], pid
}

// buildController builds the lvs-controller binary into a temporary folder and returns its path.
func buildController(tb testing.TB) string {
	dir := tb.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "../controlplane/cmd/lvs-controller")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "lvs-controller")
}

// startControllerBinary runs bin with args until the test ends and returns its pid.
func startControllerBinary(tb testing.TB, bin string, args ...string) int {
	cmd := exec.Command(bin, args...)
	if os.Getenv("LVSCTL_TEST_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// startLightAgents connects agents light agents, dir-00 onwards, each on its own connection,
// reporting their acks to w; they stop when ctx ends (wg waits for them).
func startLightAgents(ctx context.Context, b *testing.B, wg *sync.WaitGroup, target string, agents int, w *ackWatch) {
	for i := range agents {
		name := fmt.Sprintf("dir-%02d", i)
		conn, err := grpcDial(target)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer conn.Close()
			_ = lightAgent(ctx, lvsctlv1.NewAgentServiceClient(conn), name, func(rev int64) { w.applied(name, rev) })
		})
	}
}

// lightAgent is an agent stream without a data plane: it says Hello and acks every
// snapshot and delta, as the agent does once it has reconciled.
func lightAgent(ctx context.Context, client lvsctlv1.AgentServiceClient, name string, acked func(rev int64)) error {
	s, err := client.Connect(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: name}}}); err != nil {
		return err
	}
	for {
		m, err := s.Recv()
		if err != nil {
			return err
		}
		var rev int64
		switch {
		case m.GetSnapshot() != nil:
			rev = m.GetSnapshot().GetRevision()
		case m.GetDelta() != nil:
			rev = m.GetDelta().GetRevision()
		default:
			continue
		}
		if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: &lvsctlv1.Ack{Revision: rev}}}); err != nil {
			return err
		}
		acked(rev)
	}
}

// BenchmarkControllerMemory: the lvs-controller binary with 1,000 agents connected (light
// in-process streams, each on its own connection as real agents are) and one group of
// 1,000 directors and 1,000 clusters of 2 reals: its resident memory once all have acked
// (idle), and its peak after one cluster changed and all acked again.
// LVSCTL_BENCH_AGENTS and LVSCTL_BENCH_CLUSTERS change the sizes.
func BenchmarkControllerMemory(b *testing.B) {
	agents, clusters := envInt("LVSCTL_BENCH_AGENTS", 1000), envInt("LVSCTL_BENCH_CLUSTERS", 1000)
	for range b.N {
		target, pid := startControllerProcess(b)
		c := dialTB(b, target)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{TotalsOnly: true}); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the controller did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
		w := newAckWatch(agents)
		resp, err := c.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: scaleObjects(agents, clusters, 2)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		startLightAgents(ctx, b, &wg, target, agents, w)
		select {
		case <-w.expect(resp.GetRevision()):
		case <-time.After(5 * time.Minute):
			b.Fatalf("not every agent got the state")
		}
		time.Sleep(2 * time.Second) // let the acks and the status settle
		idle, idlePeak := procMemory(b, pid)
		cl := scaleCluster(7, 2, 42)
		resp, err = c.config.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Cluster{Cluster: cl}}}})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		select {
		case <-w.expect(resp.GetRevision()):
		case <-time.After(5 * time.Minute):
			b.Fatalf("not every agent got the change")
		}
		spread := time.Since(t0)
		time.Sleep(time.Second)
		after, peak := procMemory(b, pid)
		cancel()
		wg.Wait()
		b.ReportMetric(idle, "MiB-rss-idle")
		b.ReportMetric(idlePeak, "MiB-peak-idle")
		b.ReportMetric(after, "MiB-rss-after")
		b.ReportMetric(peak, "MiB-peak")
		b.ReportMetric(float64(spread.Milliseconds()), "ms-all-acked")
	}
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/cli/commands"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// scaleObjects is one director group of `directors` directors with n WMS-style clusters
// (one VIP each, five port ranges) of `reals` real servers.
func scaleObjects(directors, n, reals int) []*lvsctlv1.Object {
	// Ten agents and the controller share this machine's cores through a cold apply of
	// 10,000 clusters each: heartbeats answered within the default 300 ms fence are not what
	// this test is about, so its group's failover timings are lenient.
	g := &lvsctlv1.DirectorGroup{Name: "edge-1", VipInterface: "eth0",
		Failover: &lvsctlv1.Failover{HeartbeatIntervalMs: 1000, DeadAfterMs: 30000, FenceMs: 30000}}
	for i := range directors {
		// Each director of a group of several needs its address (validate); loopback ones,
		// so that nothing a director sends its peers leaves this machine.
		g.Directors = append(g.Directors, &lvsctlv1.Director{Name: fmt.Sprintf("dir-%02d", i), Priority: uint32(1 + i%255),
			Address: fmt.Sprintf("127.1.%d.%d", i/256, i%256)})
	}
	objs := []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Group{Group: g}}}
	for i := range n {
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: scaleCluster(i, reals, 100)}})
	}
	return objs
}

func scaleCluster(i, reals int, weight uint32) *lvsctlv1.Cluster {
	c := &lvsctlv1.Cluster{Name: fmt.Sprintf("wms-%05d", i), DirectorGroup: "edge-1",
		Vips:      []string{fmt.Sprintf("10.%d.%d.%d", 100+i>>16, (i>>8)&255, i&255)},
		Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ, Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600}}
	for _, p := range []struct {
		proto       lvsctlv1.Protocol
		first, last uint32
	}{
		{lvsctlv1.Protocol_PROTOCOL_TCP, 554, 554}, {lvsctlv1.Protocol_PROTOCOL_UDP, 554, 554},
		{lvsctlv1.Protocol_PROTOCOL_TCP, 1755, 1755}, {lvsctlv1.Protocol_PROTOCOL_UDP, 1755, 1755},
		{lvsctlv1.Protocol_PROTOCOL_UDP, 1024, 5000},
	} {
		c.Ports = append(c.Ports, &lvsctlv1.PortRange{Protocol: p.proto, First: p.first, Last: p.last})
	}
	for r := range reals {
		c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("172.16.%d.%d", r, 1+i%250), Weight: weight})
	}
	return c
}

// discardLogger drops logs: thousands of clusters make agents' debug logs the test's cost.
func discardLogger() *slog.Logger {
	if os.Getenv("LVSCTL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startQuietAgent is startAgent with a sampling period fit for thousands of services;
// applied, when set, is called after each reconcile and its ack.
func startQuietAgent(t testing.TB, name, target string, statsPeriod time.Duration, applied func(rev int64)) *agentProc {
	t.Helper()
	return runAgent(t, name, target, discardLogger().With("director", name), statsPeriod, applied)
}

// lvsctl runs the real CLI against the controller and returns its standard output.
func lvsctl(t *testing.T, target string, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	s := commands.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}
	args = append([]string{"--insecure", "--controller", target, "--timeout", "30s"}, args...)
	if code := commands.Run(context.Background(), args, s, func(string) string { return "" }); code != 0 {
		t.Fatalf("lvsctl %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String()
}

// TestTenThousandClustersTenDirectors: a group of 10 directors and 10,000 clusters of 10
// real servers is applied with lvsctl, every agent applies it, and then `lvsctl status`,
// `lvsctl get clusters -o yaml` and a re-apply of that output all work: none of them is
// over a message limit, and the re-apply changes nothing.
func TestTenThousandClustersTenDirectors(t *testing.T) {
	scaleRoundTrip(t, 10, 10000, 10)
}

func scaleRoundTrip(t *testing.T, directors, clusters, reals int) {
	ctl := newController(t)
	target := ctl.cfg.Listen
	manifestFile := filepath.Join(t.TempDir(), "scale.yaml")
	data, err := manifest.MarshalList(scaleObjects(directors, clusters, reals), manifest.YAML)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifestFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Sampling 10,000 services every second in ten agents' fake kernels would be most of
	// this test's CPU; the test is about sizes, not counts.
	for i := range directors {
		startQuietAgent(t, fmt.Sprintf("dir-%02d", i), target, 5*time.Second, nil)
	}
	start := time.Now()
	applied := lvsctl(t, target, "apply", "-f", manifestFile)
	if n := strings.Count(applied, " created "); n != clusters+1 {
		t.Fatalf("apply created %d objects, want %d:\n%.2000s", n, clusters+1, applied)
	}
	t.Logf("apply: %s", time.Since(start))

	c := dial(t, target)
	var rev int64
	deadline := time.Now().Add(45 * time.Second)
	for {
		resp, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{TotalsOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		done := len(resp.GetDirectors()) == directors
		for _, d := range resp.GetDirectors() {
			rev = d.GetDesiredRevision()
			if !d.GetConnected() || d.GetAppliedRevision() != d.GetDesiredRevision() || d.GetDesiredRevision() == 0 || len(d.GetErrors()) > 0 {
				done = false
			}
			// The ACTIVE takes its VIPs once its lease starts, which may come after its
			// cold apply is acked (the take waits for the reconcile running).
			if d.GetRole() == lvsctlv1.Role_ROLE_ACTIVE && !d.GetHolding() {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the directors did not all apply the state: %v", resp.GetDirectors())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("every agent applied revision %d: %s after the apply began", rev, time.Since(start))

	step := time.Now()
	status := lvsctl(t, target, "status")
	t.Logf("status: %s", time.Since(step))
	lines := strings.Split(strings.TrimSpace(status), "\n")
	if len(lines) != directors+1 {
		t.Fatalf("status: %d lines, want a header and %d directors:\n%s", len(lines), directors, status)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) < 8 || f[2] != "yes" || f[4] != fmt.Sprint(rev) || f[5] != fmt.Sprint(rev) || f[6] != "applied" || f[7] != "0" {
			t.Errorf("status row %q: want connected, desired = applied = %d, state applied, no errors", l, rev)
		}
	}

	step = time.Now()
	yaml := lvsctl(t, target, "get", "clusters", "-o", "yaml")
	t.Logf("get clusters -o yaml: %s, %d bytes", time.Since(step), len(yaml))
	if n := strings.Count(yaml, "kind: Cluster\n"); n != clusters {
		t.Fatalf("get clusters -o yaml: %d clusters, want %d", n, clusters)
	}
	again := filepath.Join(t.TempDir(), "again.yaml")
	if err := os.WriteFile(again, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	step = time.Now()
	out := lvsctl(t, target, "apply", "-f", again)
	t.Logf("re-apply: %s", time.Since(step))
	if n := strings.Count(out, " unchanged "); n != clusters {
		t.Errorf("re-applying get's output: %d objects unchanged, want all %d:\n%.2000s", n, clusters, out)
	}
	resp, err := c.status.List(context.Background(), &lvsctlv1.StatusServiceListRequest{TotalsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range resp.GetDirectors() {
		if d.GetDesiredRevision() != rev {
			t.Errorf("%s: desired revision %d after an unchanged re-apply, want %d", d.GetDirector(), d.GetDesiredRevision(), rev)
		}
	}
}

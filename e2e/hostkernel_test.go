package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requirePrivileged skips a test that needs root, unless the run demands privileged tests
// (make test and CI set LVSCTL_REQUIRE_PRIVILEGED=1), where it fails instead.
func requirePrivileged(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("LVSCTL_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("this test needs root (network namespaces); LVSCTL_REQUIRE_PRIVILEGED=1 forbids skipping it")
	}
	t.Skip("needs root for network namespaces")
}

// buildBinaries builds the three commands as CGO_ENABLED=0 static binaries, as shipped.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "../controlplane/cmd/lvs-controller", "../agent/cmd/lvs-agent", "../cli/cmd/lvsctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// netns makes a network namespace with loopback up, removed at cleanup.
func netns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("lvsctl-e2e-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p").CombinedOutput(); err != nil {
		t.Fatalf("veth: %v: %s", err, out)
	}
	return name
}

// inNS starts a command inside the namespace, logging to a file that the test prints on failure.
func inNS(t *testing.T, ns, logPath string, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s:\n%s", filepath.Base(logPath), b)
		}
	})
	return cmd
}

type statusJSON struct {
	Name            string   `json:"name"`
	Group           string   `json:"group"`
	Connected       bool     `json:"connected"`
	Role            string   `json:"role"`
	DesiredRevision int64    `json:"desiredRevision"`
	AppliedRevision int64    `json:"appliedRevision"`
	Errors          []string `json:"errors"`
}

// TestNoIPVSOnHostKernel runs the shipped binaries on this machine's kernel, which has no
// IPVS: the agent must say so in `lvsctl status`, name the fix, stay connected, and not spin.
func TestNoIPVSOnHostKernel(t *testing.T) {
	requirePrivileged(t)
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		// Then the lab's kernel is the only real kernel this project has with IPVS, and this
		// machine shows nothing of the no-IPVS case: say so rather than pass.
		t.Skip("this kernel has IPVS; the no-IPVS behaviour is shown on kernels without it")
	}
	bin := buildBinaries(t)
	ns := netns(t)
	tmp := t.TempDir()
	inNS(t, ns, tmp+"/controller.log", bin+"/lvs-controller", "--data-dir", tmp+"/etcd", "--listen", "127.0.0.1:7443", "--insecure", "--etcd-log-level", "fatal")
	agent := inNS(t, ns, tmp+"/agent.log", bin+"/lvs-agent", "--director", "dir-a", "--controller", "127.0.0.1:7443", "--state-dir", tmp+"/agent", "--insecure", "--resync", "1s")

	lvsctl := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, bin + "/lvsctl", "--controller", "127.0.0.1:7443", "--insecure"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return out, fmt.Errorf("lvsctl %v: %w: %s", args, err, stderr.String())
		}
		return out, nil
	}
	// The controller may take a moment to start its etcd.
	var err error
	for i := 0; i < 100; i++ {
		if _, err = lvsctl("apply", "-f", "../deploy/examples/wms.yaml"); err == nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	var dir statusJSON
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := lvsctl("status", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var all []statusJSON
		if err := json.Unmarshal(out, &all); err != nil {
			t.Fatalf("status -o json: %v\n%s", err, out)
		}
		for _, d := range all {
			if d.Name == "dir-a" {
				dir = d
			}
		}
		if dir.Connected && dir.AppliedRevision == dir.DesiredRevision && dir.DesiredRevision > 0 && len(dir.Errors) > 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	joined := strings.Join(dir.Errors, "\n")
	if !dir.Connected || !strings.Contains(joined, "IPVS is not available") || !strings.Contains(joined, "modprobe ip_vs") {
		t.Fatalf("status of dir-a = %+v; want connected with an error saying IPVS is not available and how to load it", dir)
	}
	// It stays up and connected across several resyncs, without restarting or spinning.
	time.Sleep(3 * time.Second)
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", agent.Process.Pid)); err != nil || bytes.Contains(st, []byte(") Z ")) {
		t.Fatalf("the agent exited")
	}
	out, err := lvsctl("status", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`"connected": true`)) && !bytes.Contains(out, []byte(`"connected":true`)) {
		t.Errorf("after 3 s the agent is no longer connected: %s", out)
	}
	// No VIP was added: nothing would balance the traffic it attracts.
	addrs, _ := exec.Command("ip", "-n", ns, "-br", "addr", "show", "dev", "eth0").CombinedOutput()
	if bytes.Contains(addrs, []byte("192.0.2.10")) {
		t.Errorf("the VIP was added although IPVS is missing: %s", addrs)
	}
	// The marks are still in place: nftables works here, and a director whose IPVS comes
	// back later needs them.
	rules, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "lvsctl").CombinedOutput()
	if !bytes.Contains(rules, []byte("1024-5000")) {
		t.Errorf("nftables marks missing: %s", rules)
	}
	// No spinning: the agent retries IPVS once per resync (1 s here), not in a loop.
	cpu := cpuSeconds(t, agent.Process.Pid)
	t.Logf("agent CPU time after ~5 s without IPVS: %.2f s", cpu)
	if cpu > 1 {
		t.Errorf("the agent used %.2f s of CPU in ~5 s without IPVS: it spins", cpu)
	}
}

// cpuSeconds is a process's user+system CPU time, from /proc/PID/stat (in clock ticks of
// 1/100 s, the kernel's USER_HZ on Linux).
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	var utime, stime float64
	if _, err := fmt.Sscan(fields[11], &utime); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscan(fields[12], &stime); err != nil {
		t.Fatal(err)
	}
	return (utime + stime) / 100
}

// Package netnstest builds the smallest real network for tests that need sockets between two
// hosts: two network namespaces joined by a veth pair, and a way to run code inside one. It is
// for tests only (the agent's peer transport and announcer tests); it needs root and iproute2.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// The two hosts of a Pair: namespace A with veth a0, namespace B with veth b0, one link.
const (
	AddrA4 = "192.0.2.1"
	AddrB4 = "192.0.2.2"
	AddrA6 = "2001:db8::1"
	AddrB6 = "2001:db8::2"
)

// Privileged skips the test without root or the ip command, or fails it when
// LVSCTL_REQUIRE_PRIVILEGED=1 (as `make test` sets): a skipped test must never pass a run.
func Privileged(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create network namespaces and raw or packet sockets"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command"
	}
	if why == "" {
		return
	}
	if os.Getenv("LVSCTL_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal(why + " (LVSCTL_REQUIRE_PRIVILEGED=1)")
	}
	t.Skip(why)
}

// IP runs iproute2's ip, failing the test on error.
func IP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Pair makes two namespaces (named after prefix, unique per call) joined by a veth pair, each
// end up with an IPv4 and an IPv6 address (nodad: usable at once), and returns their names.
// Both go at cleanup.
func Pair(t *testing.T, prefix string) (nsA, nsB string) {
	t.Helper()
	Privileged(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	nsA, nsB = "lvsctl-"+prefix+"A-"+suffix, "lvsctl-"+prefix+"B-"+suffix
	for _, ns := range []string{nsA, nsB} {
		IP(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
		IP(t, "-n", ns, "link", "set", "lo", "up")
	}
	IP(t, "-n", nsA, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", nsB)
	IP(t, "-n", nsA, "addr", "add", AddrA4+"/24", "dev", "a0")
	IP(t, "-n", nsA, "addr", "add", AddrA6+"/64", "dev", "a0", "nodad")
	IP(t, "-n", nsB, "addr", "add", AddrB4+"/24", "dev", "b0")
	IP(t, "-n", nsB, "addr", "add", AddrB6+"/64", "dev", "b0", "nodad")
	IP(t, "-n", nsA, "link", "set", "a0", "up")
	IP(t, "-n", nsB, "link", "set", "b0", "up")
	return nsA, nsB
}

// InNS runs fn on a thread switched into the named namespace. Sockets fn opens stay in that
// namespace for their life, whichever thread later uses them.
func InNS(t *testing.T, ns string, fn func()) {
	t.Helper()
	target, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatalf("open namespace %s: %v", ns, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("current namespace: %v", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("enter namespace %s: %v", ns, err)
	}
	defer func() {
		// A thread that cannot go back stays locked, so the runtime retires it instead
		// of handing it, still in the test namespace, to other goroutines.
		if err := netns.Set(orig); err != nil {
			t.Errorf("leave namespace %s: %v", ns, err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

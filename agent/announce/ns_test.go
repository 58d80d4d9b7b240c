package announce

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

func privileged(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create network namespaces and packet sockets"
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

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// The two directors of a test: namespace A with veth a0, namespace B with veth b0, one link.
var (
	addrA4 = "192.0.2.1"
	addrB4 = "192.0.2.2"
	addrA6 = "2001:db8::1"
	addrB6 = "2001:db8::2"
)

// pair makes two namespaces joined by a veth pair, each end up with an IPv4 and an IPv6
// address (nodad: usable at once), and returns their names. Both go at cleanup.
func pair(t *testing.T) (nsA, nsB string) {
	t.Helper()
	privileged(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	suffix := hex.EncodeToString(b)
	nsA, nsB = "lvsctl-annA-"+suffix, "lvsctl-annB-"+suffix
	for _, ns := range []string{nsA, nsB} {
		ip(t, "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
		ip(t, "-n", ns, "link", "set", "lo", "up")
	}
	ip(t, "-n", nsA, "link", "add", "a0", "type", "veth", "peer", "name", "b0", "netns", nsB)
	ip(t, "-n", nsA, "addr", "add", addrA4+"/24", "dev", "a0")
	ip(t, "-n", nsA, "addr", "add", addrA6+"/64", "dev", "a0", "nodad")
	ip(t, "-n", nsB, "addr", "add", addrB4+"/24", "dev", "b0")
	ip(t, "-n", nsB, "addr", "add", addrB6+"/64", "dev", "b0", "nodad")
	ip(t, "-n", nsA, "link", "set", "a0", "up")
	ip(t, "-n", nsB, "link", "set", "b0", "up")
	return nsA, nsB
}

// inNS runs fn on a thread switched into the named namespace. Sockets fn opens stay in that
// namespace for their life, whichever thread later uses them.
func inNS(t *testing.T, ns string, fn func()) {
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

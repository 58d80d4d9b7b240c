package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/nft"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/vip"
)

var (
	_ Watcher = (*nft.Firewall)(nil)
	_ Watcher = (*vip.Manager)(nil)
)

// fakeWatcher forwards what the test sends on in to the agent, as a kernel watch would.
type fakeWatcher struct {
	in  chan struct{}
	err error // Watch fails with it
}

func (w *fakeWatcher) Watch(ctx context.Context) (<-chan struct{}, error) {
	if w.err != nil {
		return nil, w.err
	}
	out := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case <-w.in:
			}
			select {
			case out <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// signal sends n change signals, as fast as the agent takes them.
func (w *fakeWatcher) signal(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case w.in <- struct{}{}:
		case <-time.After(wait):
			t.Fatal("the agent took no change signal")
		}
	}
}

// reconciles counts the reconciles that arrive on applied within d.
func (e *agentEnv) reconciles(d time.Duration) int {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case <-e.applied:
			n++
		case <-deadline:
			return n
		}
	}
}

const testRepairDelay = 50 * time.Millisecond

// TestKernelChanges: with fake kernel parts and a fake watch, which change signals make a
// reconcile, and how many.
func TestKernelChanges(t *testing.T) {
	vipWeb := "eth0 192.0.2.20/32\n"
	tests := []struct {
		name     string
		watchErr error
		snapshot bool // a desired state is held before the signals
		signals  int
		// want is the number of reconciles the signals make.
		want int
	}{
		{"no desired state yet: signals ignored", nil, false, 3, 0},
		{"a burst is one repair", nil, true, 20, 1},
		{"a watch that cannot start: the agent still applies", errors.New("no netlink here"), true, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &fakeWatcher{in: make(chan struct{}), err: tt.watchErr}
			e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) {
				c.Watchers, c.RepairDelay = []Watcher{w}, testRepairDelay
			})
			if tt.snapshot {
				e.deliver(t, withRoles(snapshot(1, "edge-1", web("edge-1")), "edge-1", "dir-a", 1))
				e.waitApplied(t, 1)
				// Drift: the VIP removed behind the agent's back.
				if err := e.addrs.DelAddress("eth0", netip.MustParsePrefix("192.0.2.20/32")); err != nil {
					t.Fatal(err)
				}
			}
			if tt.signals > 0 {
				w.signal(t, tt.signals)
			}
			if got := e.reconciles(10 * testRepairDelay); got != tt.want {
				t.Errorf("%d reconciles after %d signals, want %d", got, tt.signals, tt.want)
			}
			if tt.want > 0 {
				if d := e.addrs.Dump(); d != vipWeb {
					t.Errorf("addresses after the repair:\n%s\nwant\n%s", d, vipWeb)
				}
			}
		})
	}
}

// privileged skips a test that needs root, or fails it when CI demands privileged tests.
func privileged(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root to create a network namespace"
	}
	for _, bin := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(bin); err != nil && why == "" {
			why = "needs the " + bin + " command"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("LVSCTL_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal(why + " (LVSCTL_REQUIRE_PRIVILEGED=1)")
	}
	t.Skip(why)
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// namespace makes a network namespace with an interface eth0 that is up, removed when the
// test ends, and returns its name and an open fd to it.
func namespace(t *testing.T) (string, int) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "lvsctl-daemon-" + hex.EncodeToString(b)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { run(t, "ip", "netns", "delete", ns) })
	// Without duplicate address detection, the link-local IPv6 addresses are not changed
	// again a second or so after the link comes up, a change the test did not make.
	run(t, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
	// A veth, not a dummy: some kernels (this development host's) lack the dummy driver.
	run(t, "ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
	run(t, "ip", "-n", ns, "link", "set", "eth0p", "up")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	// Should the sysctl not hold, wait for the detection to end.
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(run(t, "ip", "-n", ns, "addr", "show", "tentative"), "inet") {
		if time.Now().After(deadline) {
			t.Fatalf("addresses still tentative after 10s:\n%s", run(t, "ip", "-n", ns, "addr", "show", "tentative"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ns, int(f.Fd())
}

// markRules is how many marks (elements of the table's maps: one per VIP, protocol and port
// range) `nft -j list table inet lvsctl` lists in ns (0 without the table).
func markRules(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", nft.TableName).Output()
	if err != nil {
		return 0 // no such table
	}
	var doc struct {
		Nftables []struct {
			Map *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"map"`
		}
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	n := 0
	for _, o := range doc.Nftables {
		if o.Map != nil {
			n += len(o.Map.Elem)
		}
	}
	return n
}

// hasAddress reports whether `ip -j addr show dev eth0` in ns lists addr.
func hasAddress(t *testing.T, ns, addr string) bool {
	t.Helper()
	var links []struct {
		AddrInfo []struct{ Local string } `json:"addr_info"`
	}
	out := run(t, "ip", "-n", ns, "-j", "addr", "show", "dev", "eth0")
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("parse ip -j output: %v\n%s", err, out)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Local == addr {
				return true
			}
		}
	}
	return false
}

// TestRepairsDriftInNamespace: with the real nftables and address backends in a namespace
// (IPVS and the controller faked), drift someone else makes is repaired within the operator's
// second, and the repair does not feed itself.
func TestRepairsDriftInNamespace(t *testing.T) {
	privileged(t)
	ns, fd := namespace(t)
	fw, err := nft.New(nft.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fw.Close)
	addrs, err := vip.New(vip.WithNetNSFd(fd))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(addrs.Close)
	results := make(chan reconcile.Result, 1000)
	e := startAgent(t, t.TempDir(), newFakeSession(true), func(c *Config) {
		rec := reconcile.New(reconcile.Config{Logger: c.Logger, IPVS: fake.NewIPVS(), Firewall: fw, Addresses: addrs, State: c.State})
		c.Reconciler = nonNilReconciler{t, rec}
		c.Watchers = []Watcher{fw, addrs} // and the default RepairDelay, as lvs-agent runs
		applied := c.Applied
		c.Applied = func(rev int64, res reconcile.Result) {
			applied(rev, res)
			results <- res
		}
	})
	const theVIP = "192.0.2.20" // web's
	e.deliver(t, withRoles(snapshot(1, "edge-1", web("edge-1")), "edge-1", "dir-a", 1))
	e.waitApplied(t, 1)
	if n := markRules(t, ns); n != 1 || !hasAddress(t, ns, theVIP) {
		t.Fatalf("after the snapshot: %d mark rules, VIP %s present: %v; want 1 and true", n, theVIP, hasAddress(t, ns, theVIP))
	}
	// The snapshot's own changes make one more reconcile, which finds nothing to do.
	time.Sleep(time.Second)
	for len(results) > 0 {
		<-results
	}

	const within = 2 * time.Second
	steps := []struct {
		name     string
		drift    []string // the command that makes it
		repaired func() bool
	}{
		{"nft flush ruleset (systemctl reload nftables)", []string{"ip", "netns", "exec", ns, "nft", "flush", "ruleset"},
			func() bool { return markRules(t, ns) == 1 }},
		{"ip addr del of the VIP (ifupdown)", []string{"ip", "-n", ns, "addr", "del", theVIP + "/32", "dev", "eth0"},
			func() bool { return hasAddress(t, ns, theVIP) }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			run(t, s.drift[0], s.drift[1:]...)
			start := time.Now()
			for !s.repaired() {
				if time.Since(start) > within {
					t.Fatalf("not repaired within %s", within)
				}
				time.Sleep(5 * time.Millisecond)
			}
			t.Logf("repaired %s after the change", time.Since(start).Round(time.Millisecond))
			// The repair's own changes come back as one more signal, and one more reconcile
			// that finds nothing to do; then quiet.
			var ops []int
			quiet := time.After(time.Second)
		count:
			for {
				select {
				case res := <-results:
					ops = append(ops, res.Operations)
				case <-quiet:
					break count
				}
			}
			t.Logf("reconciles over the next second, by their operations: %v", ops)
			if len(ops) == 0 || len(ops) > 2 {
				t.Errorf("%d reconciles from the repair on, over 1s (operations: %v), want 1 or 2", len(ops), ops)
			}
			if len(ops) > 0 && ops[len(ops)-1] != 0 {
				t.Errorf("the last reconcile made %d operations, want 0 (operations: %v)", ops[len(ops)-1], ops)
			}
			repairedByAgent := false
			for _, n := range ops {
				repairedByAgent = repairedByAgent || n > 0
			}
			if !repairedByAgent {
				t.Errorf("no reconcile made an operation (operations: %v): the change was not the agent's to repair", ops)
			}
		})
	}
	// And nothing after the quiet second either: no loop.
	select {
	case res := <-results:
		t.Errorf("a reconcile (%d operations) with nothing changed", res.Operations)
	case <-time.After(500 * time.Millisecond):
	}
}

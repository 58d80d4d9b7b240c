package commands_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

const drainedLine = "  - {address: 198.51.100.3, weight: 100, drained: true}\n"

func TestDrainAndEnable(t *testing.T) {
	srv, addr := start(t)
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	rev := srv.revision(t)

	expect(t, lvsctl(t, addr, "", "drain", "cluster", "wms", "real", "198.51.100.3"), 0,
		fmt.Sprintf("cluster/wms real 198.51.100.3 drained (revision %d)\n", rev+1), "")
	got := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "yaml")
	if !strings.Contains(got.out, drainedLine) {
		t.Fatalf("get -o yaml after drain:\n%s", got.out)
	}
	// get's output applies back unchanged: drained is part of the stored cluster.
	expect(t, lvsctl(t, addr, got.out, "apply", "-f", "-"), 0, fmt.Sprintf("cluster/wms unchanged (revision %d)\n", rev+1), "")
	// Draining again writes nothing.
	expect(t, lvsctl(t, addr, "", "drain", "cluster", "wms", "real", "198.51.100.3"), 0,
		fmt.Sprintf("cluster/wms real 198.51.100.3 drained (revision %d)\n", rev+1), "")
	if now := srv.revision(t); now != rev+1 {
		t.Errorf("a second drain wrote: revision %d, want %d", now, rev+1)
	}

	expect(t, lvsctl(t, addr, "", "enable", "cluster", "wms", "real", "198.51.100.3"), 0,
		fmt.Sprintf("cluster/wms real 198.51.100.3 enabled (revision %d)\n", rev+2), "")
	if got := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "yaml"); strings.Contains(got.out, "drained") {
		t.Errorf("get -o yaml after enable:\n%s", got.out)
	}

	// A manifest applied without drained clears it: the manifest is the whole truth.
	lvsctl(t, addr, "", "drain", "cluster", "wms", "real", "198.51.100.3")
	expect(t, lvsctl(t, addr, "", "diff", "-f", wmsFile), 1,
		"cluster/wms would be configured\n  real 198.51.100.3 drained: true -> false\n"+
			"group edge-1 (directors dir-a) would:\n  cluster wms: real 198.51.100.3 drained: true -> false\n", "")
}

func TestDrainRefused(t *testing.T) {
	srv, addr := start(t)
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	rev := srv.revision(t)
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"drain", "cluster", "nope", "real", "198.51.100.3"}, "error: cluster \"nope\": not found\n"},
		{[]string{"drain", "cluster", "wms", "real", "198.51.100.9"}, "error: cluster \"wms\": real server 198.51.100.9: not found\n"},
		{[]string{"enable", "cluster", "wms", "real", "198.51.100.9"}, "error: cluster \"wms\": real server 198.51.100.9: not found\n"},
		{[]string{"drain", "cluster", "wms", "real", "rs3"}, "error: invalid object: real: \"rs3\" is not an IP address\n"},
		{[]string{"drain", "cluster", "wms", "198.51.100.3"}, "error: usage: lvsctl drain cluster NAME real ADDRESS (got \"wms 198.51.100.3\")\n"},
		{[]string{"enable", "cluster", "wms", "host", "198.51.100.3"}, "error: usage: lvsctl enable cluster NAME real ADDRESS (got \"wms host 198.51.100.3\")\n"},
		{[]string{"drain", "group", "edge-1"}, "error: lvsctl drain: unknown kind \"group\" (one of: cluster)\n"},
		{[]string{"drain", "cluster", "wms", "real", "198.51.100.3", "--wait", "--timeout", "0s"}, "error: --timeout: 0s is not a positive duration\n"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			expect(t, lvsctl(t, addr, "", tt.args...), 1, "", tt.stderr)
		})
	}
	if now := srv.revision(t); now != rev {
		t.Errorf("refused drains wrote: revision %d -> %d", rev, now)
	}
}

// drainFleet: dir-a (ACTIVE, connected) and dir-b (STANDBY, not connected) serve wms in
// edge-1, dir-a at the given applied revision with these counts to 198.51.100.3; dir-c
// serves another group and is none of the drain's business.
func drainFleet(applied int64, active, inactive, persistent uint32) []*lvsctlv1.DirectorStatus {
	wms := func(reals ...*lvsctlv1.RealServerStats) []*lvsctlv1.ClusterStats {
		return []*lvsctlv1.ClusterStats{{Cluster: "wms", Fwmark: 1, Reals: reals}}
	}
	busy := &lvsctlv1.RealServerStats{Address: "198.51.100.1", Weight: 100, ActiveConns: 40}
	return []*lvsctlv1.DirectorStatus{
		{Director: "dir-a", Group: "edge-1", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE, DesiredRevision: applied, AppliedRevision: applied,
			Clusters: wms(busy, &lvsctlv1.RealServerStats{Address: "198.51.100.3", Weight: 100, ActiveConns: active, InactiveConns: inactive, PersistentConns: persistent})},
		{Director: "dir-b", Group: "edge-1", Role: lvsctlv1.Role_ROLE_STANDBY,
			Clusters: wms(&lvsctlv1.RealServerStats{Address: "198.51.100.3", Weight: 100, PersistentConns: 3})},
		{Director: "dir-c", Group: "edge-2", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE, AppliedRevision: 1},
	}
}

// TestDrainWait: --wait follows the counts on every connected director of the cluster,
// one line per poll, and ends once none is left on any that applied the drain.
func TestDrainWait(t *testing.T) {
	srv, addr := start(t)
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	before := srv.revision(t)
	srv.setFleet(drainFleet(before, 2, 1, 4))
	r := startLvsctl(t, addr, false, "drain", "cluster", "wms", "real", "198.51.100.3", "--wait", "--interval", "20ms")
	drainedAt := before + 1
	first := fmt.Sprintf("cluster/wms real 198.51.100.3 drained (revision %d)\n", drainedAt)
	// dir-a still has 198.51.100.3 at its weight until it applied the drain: its counts do
	// not count yet.
	applying := fmt.Sprintf("dir-a applying the drain (at revision %d of %d); dir-b not connected, not counted\n", before, drainedAt)
	r.out.waitFor(t, "a poll before dir-a applied the drain", func(s string) bool { return strings.HasPrefix(s, first+applying) })

	srv.setFleet(drainFleet(drainedAt, 1, 0, 2))
	const left = "dir-a 1/0/2 (active/inactive/persistent); dir-b not connected, not counted\n"
	r.out.waitFor(t, "dir-a's counts", func(s string) bool { return strings.HasSuffix(s, left) })

	// A director of the group that has no connection to the server left (or no longer
	// lists it) is done as well.
	d := drainFleet(drainedAt, 0, 0, 0)[0]
	d.Director = "dir-d"
	d.Clusters[0].Reals = d.Clusters[0].Reals[:1]
	srv.setDirector(d)
	srv.setFleet(drainFleet(drainedAt, 0, 0, 0)[:1])
	got := r.wait(t)
	if got.code != 0 || got.err != "" {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", got.code, got.err, got.out)
	}
	lines := strings.Split(strings.TrimSuffix(got.out, "\n"), "\n")
	if n := len(lines); n < 4 || lines[n-2] != "dir-a 0/0/0, dir-d 0/0/0 (active/inactive/persistent); dir-b not connected, not counted" ||
		lines[n-1] != "cluster/wms real 198.51.100.3 has no connections left on dir-a, dir-d" {
		t.Errorf("output:\n%s", got.out)
	}
	// Every line is a poll: the drain's, then progress, then the end.
	for _, l := range lines[1 : len(lines)-1] {
		if !strings.HasPrefix(l, "dir-a ") || !strings.HasSuffix(l, "; dir-b not connected, not counted") {
			t.Errorf("line %q is not a progress line", l)
		}
	}
}

func TestDrainWaitTimeout(t *testing.T) {
	srv, addr := start(t)
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	srv.setFleet(drainFleet(srv.revision(t)+1, 1, 0, 0))
	got := lvsctl(t, addr, "", "drain", "cluster", "wms", "real", "198.51.100.3", "--wait", "--timeout", "300ms", "--interval", "50ms")
	const left = "dir-a 1/0/0 (active/inactive/persistent); dir-b not connected, not counted"
	if got.code != 1 || got.err != "error: timed out after 300ms waiting for cluster/wms real 198.51.100.3 to drain: "+left+"\n" ||
		!strings.HasSuffix(got.out, left+"\n") {
		t.Errorf("exit %d\nstderr %q\nstdout:\n%s", got.code, got.err, got.out)
	}

	// With no director connected, nothing can be confirmed: it is no success.
	srv.setFleet(drainFleet(srv.revision(t), 0, 0, 0)[1:2])
	srv.fleet.Disconnected("dir-a")
	got = lvsctl(t, addr, "", "drain", "cluster", "wms", "real", "198.51.100.3", "--wait", "--timeout", "200ms", "--interval", "50ms")
	if got.code != 1 || !strings.HasSuffix(got.err, "to drain: no connected director has the cluster; dir-b not connected, not counted\n") {
		t.Errorf("no director connected: exit %d, stderr %q, stdout:\n%s", got.code, got.err, got.out)
	}
}

// TestHealthRoundTrip: a cluster with checks, an override, a drained real and a grace goes
// through the controller and comes back from get -o yaml and -o json; both apply unchanged.
func TestHealthRoundTrip(t *testing.T) {
	srv, addr := start(t)
	wms, err := os.ReadFile(wmsFile)
	if err != nil {
		t.Fatal(err)
	}
	manifest := strings.NewReplacer("persistence: {timeout: 600s}\n",
		"persistence: {timeout: 600s}\nhealth: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce, describe: true}\nremoveGrace: 5s\n",
		"{address: 198.51.100.2, weight: 100}", `{address: 198.51.100.2, weight: 100, health: {check: exec, command: [/usr/lib/nagios/plugins/check_rtsp, -H, "$LVSCTL_REAL_ADDRESS"]}}`,
		"{address: 198.51.100.3, weight: 100}", "{address: 198.51.100.3, weight: 100, drained: true}").Replace(string(wms))
	if got := lvsctl(t, addr, manifest, "apply", "-f", "-"); got.code != 0 {
		t.Fatalf("apply: %+v", got)
	}
	rev := srv.revision(t)
	yamlOut := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "yaml")
	for _, line := range []string{
		"\nhealth: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce, describe: true}\nremoveGrace: 5s\n",
		`  - {address: 198.51.100.2, weight: 100, health: {check: exec, command: ["/usr/lib/nagios/plugins/check_rtsp", "-H", "$LVSCTL_REAL_ADDRESS"]}}` + "\n",
		drainedLine,
	} {
		if !strings.Contains(yamlOut.out, line) {
			t.Errorf("get -o yaml lacks %q:\n%s", line, yamlOut.out)
		}
	}
	jsonOut := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "json")
	for _, out := range []string{yamlOut.out, jsonOut.out} {
		expect(t, lvsctl(t, addr, out, "apply", "-f", "-"), 0, fmt.Sprintf("cluster/wms unchanged (revision %d)\n", rev), "")
	}
	if now := srv.revision(t); now != rev {
		t.Errorf("re-applying get's output wrote: revision %d -> %d", rev, now)
	}
}

// TestDrainWaitNeedsTheCountsToStayZero: zero counts right after the drain may be a report
// from before a connection the next report shows (agents report every stats period): --wait
// believes them only once they stayed 0 for two seconds.
func TestDrainWaitNeedsTheCountsToStayZero(t *testing.T) {
	srv, addr := start(t)
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	drainedAt := srv.revision(t) + 1
	srv.setFleet(drainFleet(drainedAt, 0, 0, 0))
	r := startLvsctl(t, addr, false, "drain", "cluster", "wms", "real", "198.51.100.3", "--wait", "--interval", "20ms")
	r.out.waitFor(t, "a first poll at 0", func(s string) bool { return strings.Contains(s, "dir-a 0/0/0") })
	srv.setFleet(drainFleet(drainedAt, 1, 0, 1)) // the next report: a connection after all
	r.out.waitFor(t, "the connection", func(s string) bool { return strings.Contains(s, "dir-a 1/0/1") })
	zero := time.Now()
	srv.setFleet(drainFleet(drainedAt, 0, 0, 0))
	got := r.wait(t)
	if got.code != 0 || !strings.HasSuffix(got.out, "has no connections left on dir-a\n") {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", got.code, got.err, got.out)
	}
	if waited := time.Since(zero); waited < 2*time.Second {
		t.Errorf("returned %v after the counts went back to 0, want at least 2s", waited)
	}
}

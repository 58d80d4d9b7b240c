package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lvsctl/lvsctl/cli/commands"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

const wmsFile = "../../deploy/examples/wms.yaml"

type result struct {
	out, err string
	code     int
}

// lvsctl runs the command in-process against addr, with stdin.
func lvsctl(t *testing.T, addr, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"LVSCTL_CONTROLLER": addr}
	code := commands.Run(context.Background(), append([]string{"--insecure"}, args...),
		commands.Streams{In: strings.NewReader(stdin), Out: &out, Err: &errOut},
		func(k string) string { return env[k] })
	return result{out: out.String(), err: errOut.String(), code: code}
}

func expect(t *testing.T, got result, code int, out, errOut string) {
	t.Helper()
	if got.code != code || got.out != out || got.err != errOut {
		t.Errorf("got exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d\nstdout:\n%s\nstderr:\n%s", got.code, got.out, got.err, code, out, errOut)
	}
}

func TestApplyAndRoundTrip(t *testing.T) {
	srv, addr := start(t)
	// Revisions are the store's: one apply is one transaction, one revision on.
	r1 := srv.revision(t) + 1
	expect(t, lvsctl(t, addr, "", "apply", "-f", wmsFile), 0,
		fmt.Sprintf("cluster/wms created (revision %d)\ngroup/edge-1 created (revision %[1]d)\n", r1), "")
	expect(t, lvsctl(t, addr, "", "apply", "-f", wmsFile), 0,
		fmt.Sprintf("cluster/wms unchanged (revision %d)\ngroup/edge-1 unchanged (revision %[1]d)\n", r1), "")

	// get -o yaml prints the stored object with its read-only fields, and apply takes it back.
	got := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "yaml")
	if got.code != 0 || !strings.Contains(got.out, fmt.Sprintf("\nfwmark: 1\nrevision: %d\n", r1)) || !strings.HasPrefix(got.out, "kind: Cluster\nname: wms\n") {
		t.Fatalf("get -o yaml: %+v", got)
	}
	before := srv.revision(t)
	expect(t, lvsctl(t, addr, got.out, "apply", "-f", "-"), 0, fmt.Sprintf("cluster/wms unchanged (revision %d)\n", r1), "")
	jsonOut := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "json")
	expect(t, lvsctl(t, addr, jsonOut.out, "apply", "-f", "-"), 0, fmt.Sprintf("cluster/wms unchanged (revision %d)\n", r1), "")
	if after := srv.revision(t); after != before {
		t.Errorf("re-applying get's output wrote to the store: revision %d -> %d", before, after)
	}

	// A change is "configured" and moves the revision; the fwmark stays.
	edited := strings.Replace(got.out, "weight: 100}\nfwmark", "weight: 0}\nfwmark", 1)
	edited = strings.Replace(edited, fmt.Sprintf("revision: %d\n", r1), "", 1)
	r2 := r1 + 1
	expect(t, lvsctl(t, addr, edited, "apply", "-f", "-"), 0, fmt.Sprintf("cluster/wms configured (revision %d)\n", r2), "")
	if now := lvsctl(t, addr, "", "get", "cluster", "wms", "-o", "yaml"); !strings.Contains(now.out, fmt.Sprintf("weight: 0}\nfwmark: 1\nrevision: %d\n", r2)) {
		t.Errorf("after the change, get -o yaml: %+v", now)
	}
	// The old revision is now stale: optimistic concurrency, not a merge.
	expect(t, lvsctl(t, addr, got.out, "apply", "-f", "-"), 1, "",
		fmt.Sprintf("error: stale revision: cluster \"wms\": revision: %d is stale, the stored object is at %d\n", r1, r2))
	if after := srv.revision(t); after != r2 {
		t.Errorf("the refused apply wrote to the store: revision %d -> %d", r2, after)
	}
}

func TestApplyErrors(t *testing.T) {
	srv, addr := start(t)
	wms, err := os.ReadFile(wmsFile)
	if err != nil {
		t.Fatal(err)
	}
	cluster := strings.Split(string(wms), "---")[0]
	tests := []struct {
		name, stdin, stderr string
		reachesServer       bool
	}{
		{"local validation", strings.Replace(cluster, "1024-5000", "5000-1024", 1),
			"error: cluster \"wms\": ports[4].ports: range 5000-1024 is reversed\n", false},
		{"parse error", "kind: Cluster\n", "error: document 1 (Cluster): name: required\n", false},
		{"empty input", "", "error: manifest holds no objects\n", false},
		{"server's cross-object check, shown as its message", cluster,
			"error: cluster \"wms\": directorGroup: group \"edge-1\" does not exist\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := srv.applies.Load()
			expect(t, lvsctl(t, addr, tt.stdin, "apply", "-f", "-"), 1, "", tt.stderr)
			if reached := srv.applies.Load() > before; reached != tt.reachesServer {
				t.Errorf("reached the server: %v, want %v", reached, tt.reachesServer)
			}
		})
	}
	expect(t, lvsctl(t, addr, "", "apply", "-f", "/nonexistent/wms.yaml"), 1, "",
		"error: reading manifest: open /nonexistent/wms.yaml: no such file or directory\n")
}

func TestDiff(t *testing.T) {
	srv, addr := start(t)
	before := srv.revision(t)
	expect(t, lvsctl(t, addr, "", "diff", "-f", wmsFile), 1,
		"cluster/wms would be created\ngroup/edge-1 would be created\n"+
			"group edge-1 (directors dir-a) would:\n  add cluster wms: fwmark 1, wlc, 3 real servers, 1 VIPs x 5 port ranges\n  vip interface: \"\" -> \"eth0\"\n", "")
	if after := srv.revision(t); after != before {
		t.Errorf("diff wrote to the store: revision %d -> %d", before, after)
	}
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	expect(t, lvsctl(t, addr, "", "diff", "-f", wmsFile), 0, "", "")

	wms, _ := os.ReadFile(wmsFile)
	edited := strings.Replace(string(wms), "{address: 198.51.100.3, weight: 100}", "{address: 198.51.100.3, weight: 0}", 1)
	expect(t, lvsctl(t, addr, edited, "diff", "-f", "-"), 1,
		"cluster/wms would be configured\n  real 198.51.100.3 weight: 100 -> 0\n"+
			"group edge-1 (directors dir-a) would:\n  cluster wms: real 198.51.100.3 weight: 100 -> 0\n", "")

	// A director joining is one line of the group's plan, not a plan of its own.
	joined := strings.Replace(string(wms), "directors: [{name: dir-a, priority: 200}]",
		"directors: [{name: dir-a, priority: 200, address: 198.51.100.252}, {name: dir-b, priority: 100, address: 198.51.100.253}]", 1)
	expect(t, lvsctl(t, addr, joined, "diff", "-f", "-"), 1,
		"group/edge-1 would be configured\n  directors: [dir-a/200] -> [dir-a/200 dir-b/100]\n"+
			"  director addresses: [] -> [dir-a=198.51.100.252 dir-b=198.51.100.253]\n"+
			"group edge-1 (directors dir-a, dir-b) would:\n  add director dir-b (priority 100): applies the group's 1 clusters\n", "")

	// Failover settings as written: a field left out is the default.
	expect(t, lvsctl(t, addr, string(wms)+"failover: {heartbeatInterval: 60ms, preempt: true}\n", "diff", "-f", "-"), 1,
		"group/edge-1 would be configured\n  failover.heartbeatInterval: default -> 60ms\n  failover.preempt: false -> true\n", "")

	// Errors exit 2, so that scripts can tell them from differences.
	expect(t, lvsctl(t, addr, "kind: Nope\n", "diff", "-f", "-"), 2, "",
		"error: document 1: kind: unknown kind \"Nope\" (want Cluster or DirectorGroup)\n")
	if got := lvsctl(t, addr, "", "diff"); got.code != 2 {
		t.Errorf("diff without -f: exit %d, want 2", got.code)
	}
}

func TestGetAndDelete(t *testing.T) {
	srv, addr := start(t)
	wmsRev := srv.revision(t) + 1
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	lvsctl(t, addr, `{"kind": "Cluster", "name": "echo", "directorGroup": "edge-1", "vips": ["192.0.2.11"],
		"ports": [{"protocol": "tcp", "port": 7}], "reals": [{"address": "198.51.100.7"}]}`, "apply", "-f", "-")

	// echo gets the next free fwmark; the table is sorted by name.
	expect(t, lvsctl(t, addr, "", "get", "clusters"), 0, fmt.Sprintf(
		"NAME  GROUP   VIPS        PORTS                                            FWMARK  SCHEDULER  FORWARDING  REALS  REVISION\n"+
			"echo  edge-1  192.0.2.11  tcp/7                                            2       wlc        route       1      %d\n"+
			"wms   edge-1  192.0.2.10  tcp/554,udp/554,tcp/1755,udp/1755,udp/1024-5000  1       wlc        masq        3      %d\n", wmsRev+1, wmsRev), "")
	expect(t, lvsctl(t, addr, "", "get", "group", "edge-1"), 0, fmt.Sprintf(
		"NAME    DIRECTORS   VIP-INTERFACE  GATEWAY  SYNC  REVISION\n"+
			"edge-1  dir-a(200)  eth0           -        -     %d\n", wmsRev), "")
	got := lvsctl(t, addr, "", "get", "clusters", "-o", "json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(got.out), &list); err != nil || len(list) != 2 || list[0]["name"] != "echo" {
		t.Errorf("get clusters -o json: %v %+v", err, got)
	}

	expect(t, lvsctl(t, addr, "", "delete", "cluster", "echo"), 0, fmt.Sprintf("cluster/echo deleted (revision %d)\n", wmsRev+2), "")
	expect(t, lvsctl(t, addr, "", "get", "cluster", "echo"), 1, "", "error: cluster \"echo\": not found\n")
	expect(t, lvsctl(t, addr, "", "delete", "cluster", "echo"), 1, "", "error: cluster \"echo\": not found\n")
	expect(t, lvsctl(t, addr, "", "delete", "group", "edge-1", "--revision", "7"), 1, "",
		fmt.Sprintf("error: stale revision: group \"edge-1\": revision: 7 is stale, the stored object is at %d\n", wmsRev))
	expect(t, lvsctl(t, addr, "", "delete", "group", "edge-1"), 1, "",
		"error: group \"edge-1\": still in use by cluster \"wms\": delete or move them first\n")
	if now := srv.revision(t); now != wmsRev+2 {
		t.Errorf("refused deletes wrote to the store: revision %d, want %d", now, wmsRev+2)
	}
	expect(t, lvsctl(t, addr, "", "get", "clusters", "-o", "xml"), 1, "", "error: unknown output format \"xml\" (want table, yaml or json)\n")
}

// testFleet: dir-a is ACTIVE for wms and echo; its checks find wms's 198.51.100.2 down (weight
// 0). dir-b is a disconnected STANDBY whose wms connections are the persistent ones the sync
// daemon copied, to 198.51.100.1, which it has drained.
func testFleet() []*lvsctlv1.DirectorStatus {
	return []*lvsctlv1.DirectorStatus{
		{Director: "dir-a", Group: "edge-1", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 3, Holding: true,
			DesiredRevision: 5, AppliedRevision: 5, AgentVersion: "v0.1.0", LastSeen: timestamppb.New(timestamppb.Now().AsTime()),
			Peers: []*lvsctlv1.PeerStatus{{Director: "dir-b", HostReachable: true, HeardAgoMs: 2500, Epoch: 3, Role: lvsctlv1.Role_ROLE_STANDBY}},
			Sync:  &lvsctlv1.SyncStatus{Master: true, Backup: true, Interface: "eth1", SyncId: 7},
			Clusters: []*lvsctlv1.ClusterStats{
				{Cluster: "wms", Fwmark: 1, Counters: &lvsctlv1.Counters{Conns: 350, Cps: 5}, Reals: []*lvsctlv1.RealServerStats{
					{Address: "198.51.100.1", Weight: 100, ActiveConns: 12, InactiveConns: 3, PersistentConns: 9,
						Counters: &lvsctlv1.Counters{Conns: 300, Cps: 4, InBps: 1500, OutBps: 2_000_000},
						Health:   "up", HealthSinceUnixMs: healthSince},
					{Address: "198.51.100.2", Weight: 0, ActiveConns: 2, PersistentConns: 2,
						Counters: &lvsctlv1.Counters{Conns: 50, Cps: 1},
						Health:   "down", HealthSinceUnixMs: healthSince + 90_000, HealthError: "rtsp OPTIONS: connection refused"}}},
				{Cluster: "echo", Fwmark: 2, Counters: &lvsctlv1.Counters{Cps: 2}, Reals: []*lvsctlv1.RealServerStats{
					{Address: "198.51.100.7", Weight: 1, ActiveConns: 7}}},
			}},
		{Director: "dir-b", Group: "edge-1", Connected: false, Role: lvsctlv1.Role_ROLE_STANDBY, Epoch: 3,
			DesiredRevision: 5, AppliedRevision: 4,
			Peers:          []*lvsctlv1.PeerStatus{{Director: "dir-a", Reachable: true, HostReachable: true, HeardAgoMs: 80, Epoch: 3, Role: lvsctlv1.Role_ROLE_ACTIVE, Holding: true}},
			Sync:           &lvsctlv1.SyncStatus{Master: true, Backup: true, Interface: "eth1", SyncId: 7},
			Errors:         []*lvsctlv1.ClusterError{{Cluster: "wms", Message: "scheduler mh: module not loaded"}},
			DirectorErrors: []string{"vip 192.0.2.10: interface eth0 is down"},
			Clusters: []*lvsctlv1.ClusterStats{{Cluster: "wms", Fwmark: 1, Reals: []*lvsctlv1.RealServerStats{
				{Address: "198.51.100.1", Weight: 0, PersistentConns: 9, Drained: true}}}}},
	}
}

// healthSince is when dir-a's checks found 198.51.100.1 up (2025-01-02T03:04:05Z); they
// found 198.51.100.2 down 90 s later.
var healthSince = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()

func TestStatus(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	expect(t, lvsctl(t, addr, "", "status"), 0,
		"NAME   GROUP   CONNECTED  ROLE     DESIRED  APPLIED  STATE         ERRORS  EPOCH  PEERS                 SYNC           ACTIVE  INACTIVE  PERSISTENT  CPS\n"+
			"dir-a  edge-1  yes        ACTIVE   5        5        applied       0       3      dir-b lost (host up)  master+backup  21      3         11          7\n"+
			"dir-b  edge-1  no         STANDBY  5        4        disconnected  2       3      dir-a ok              master+backup  0       0         9           0\n"+
			"\nErrors:\n"+
			"  dir-b: cluster \"wms\": scheduler mh: module not loaded\n"+
			"  dir-b: vip 192.0.2.10: interface eth0 is down\n", "")

	got := lvsctl(t, addr, "", "status", "-o", "json")
	var views []map[string]any
	if err := json.Unmarshal([]byte(got.out), &views); err != nil || len(views) != 2 {
		t.Fatalf("status -o json: %v\n%s", err, got.out)
	}
	b := views[1]
	// The keys other tools rely on, then the totals.
	want := map[string]any{"name": "dir-b", "group": "edge-1", "connected": false, "role": "STANDBY",
		"desiredRevision": 5.0, "appliedRevision": 4.0,
		"activeConns": 0.0, "inactiveConns": 0.0, "persistentConns": 9.0, "cps": 0.0}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("%s = %#v, want %#v", k, b[k], v)
		}
	}
	errs, _ := b["errors"].([]any)
	if len(errs) != 2 || errs[0] != `cluster "wms": scheduler mh: module not loaded` || errs[1] != "vip 192.0.2.10: interface eth0 is down" {
		t.Errorf("errors = %#v", b["errors"])
	}
	if e, ok := views[0]["errors"].([]any); !ok || len(e) != 0 {
		t.Errorf("a director without errors must have errors: [], got %#v", views[0]["errors"])
	}
	for k, v := range map[string]any{"name": "dir-a", "activeConns": 21.0, "inactiveConns": 3.0, "persistentConns": 11.0, "cps": 7.0,
		"role": "ACTIVE", "epoch": 3.0, "holding": true, "fenced": ""} {
		if views[0][k] != v {
			t.Errorf("dir-a: %s = %#v, want %#v", k, views[0][k], v)
		}
	}
	// Issue 7's keys: peer reachability and the sync daemons, as the controller has them.
	peers, _ := views[0]["peers"].([]any)
	if len(peers) != 1 || fmt.Sprint(peers[0]) != "map[epoch:3 heardAgoMs:2500 holding:false hostReachable:true name:dir-b reachable:false role:STANDBY]" {
		t.Errorf("dir-a: peers = %#v", views[0]["peers"])
	}
	if s := fmt.Sprint(views[0]["sync"]); s != "map[backup:true error: interface:eth1 master:true syncId:7]" {
		t.Errorf("dir-a: sync = %s", s)
	}

	expect(t, lvsctl(t, addr, "", "get", "directors"), 0,
		"NAME   GROUP   CONNECTED  ROLE     EPOCH  DESIRED  APPLIED  VERSION\n"+
			"dir-a  edge-1  yes        ACTIVE   3      5        5        v0.1.0\n"+
			"dir-b  edge-1  no         STANDBY  3      5        4        -\n", "")
}

func TestDescribe(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	wmsRev := srv.revision(t) + 1
	wms, err := os.ReadFile(wmsFile)
	if err != nil {
		t.Fatal(err)
	}
	withHealth := strings.NewReplacer("persistence: {timeout: 600s}\n",
		"persistence: {timeout: 600s}\nhealth: {check: rtsp, port: 554, interval: 1s, timeout: 1s, fall: 2, onFailure: remove}\nremoveGrace: 5s\n",
		"{address: 198.51.100.2, weight: 100}", "{address: 198.51.100.2, weight: 100, health: {check: tcp, port: 1755}}",
		"{address: 198.51.100.3, weight: 100}", "{address: 198.51.100.3, weight: 100, drained: true}").Replace(string(wms))
	if got := lvsctl(t, addr, withHealth, "apply", "-f", "-"); got.code != 0 {
		t.Fatalf("apply: %+v", got)
	}
	lvsctl(t, addr, "kind: DirectorGroup\nname: edge-1\ndirectors: [{name: dir-a, priority: 200, address: 198.51.100.252}, {name: dir-b, priority: 100, address: 198.51.100.253}, {name: dir-c, priority: 50, address: 198.51.100.251}]\nvipInterface: eth0\n", "apply", "-f", "-")
	expect(t, lvsctl(t, addr, "", "describe", "cluster", "wms"), 0, `Cluster:       wms
Revision:      `+fmt.Sprint(wmsRev)+`
Group:         edge-1
VIPs:          192.0.2.10
Ports:         tcp/554, udp/554, tcp/1755, udp/1755, udp/1024-5000
FWMark:        1
Scheduler:     wlc
Persistence:   600s
Forwarding:    masq
Health:        rtsp port 554 every 1s, timeout 1s, rise 2, fall 2, on failure remove
Remove grace:  5s
Reals:
  ADDRESS       WEIGHT  DRAINED  CHECK
  198.51.100.1  100     no       the cluster's
  198.51.100.2  100     no       {check: tcp, port: 1755}
  198.51.100.3  100     yes      the cluster's
Directors (group edge-1, VIPs on eth0):
  NAME   PRIORITY  CONNECTED  ROLE     APPLIED  ERRORS
  dir-a  200       yes        ACTIVE   5        -
  dir-b  100       no         STANDBY  4        scheduler mh: module not loaded
  dir-c  50        no         -        -        -
Connections:
  DIRECTOR  REAL          WEIGHT  HEALTH   STATE    ACTIVE  INACTIVE  PERSISTENT
  dir-a     198.51.100.1  100     up       -        12      3         9
  dir-a     198.51.100.2  0       down     -        2       0         2
  dir-b     198.51.100.1  0       unknown  drained  0       0         9
`, "")
	expect(t, lvsctl(t, addr, "", "describe", "cluster", "nope"), 1, "", "error: cluster \"nope\": not found\n")

	groupRev := srv.revision(t)
	expect(t, lvsctl(t, addr, "", "describe", "group", "edge-1"), 0, `Group:          edge-1
Revision:       `+fmt.Sprint(groupRev)+`
VIP interface:  eth0
Gateway:        none
Sync:           none
Failover:       heartbeat every 50ms, lost after 150ms, fence 200ms, preempt no, port 7140
Clusters:       wms
Active:         dir-a, epoch 3: holds the VIPs and gateway
Directors:
  NAME   PRIORITY  ADDRESS         CONNECTED  ROLE     EPOCH  PEERS                 SYNC
  dir-a  200       198.51.100.252  yes        ACTIVE   3      dir-b lost (host up)  master+backup
  dir-b  100       198.51.100.253  no         STANDBY  3      dir-a ok              master+backup
  dir-c  50        198.51.100.251  no         -        -      -                     -
`, "")
	expect(t, lvsctl(t, addr, "", "describe", "group", "nope"), 1, "", "error: group \"nope\": not found\n")
	// A cluster without a check or grace says what that means.
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	got := lvsctl(t, addr, "", "describe", "cluster", "wms")
	if !strings.Contains(got.out, "\nHealth:        none (weights as given)\nRemove grace:  60s (the default)\n") ||
		!strings.Contains(got.out, "\n  198.51.100.3  100     no       -\n") {
		t.Errorf("describe without health:\n%s", got.out)
	}
}

func TestConnection(t *testing.T) {
	var out, errOut bytes.Buffer
	s := commands.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}
	noEnv := func(string) string { return "" }
	if code := commands.Run(context.Background(), []string{"status"}, s, noEnv); code != 1 ||
		!strings.Contains(errOut.String(), "pass --insecure") {
		t.Errorf("without --insecure: exit %d, %q", code, errOut.String())
	}
	// Nothing listens on port 1 of loopback: the error is reported, not a hang (short timeout).
	errOut.Reset()
	if code := commands.Run(context.Background(), []string{"--insecure", "--controller", "127.0.0.1:1", "--timeout", "2s", "status"}, s, noEnv); code != 1 ||
		!strings.HasPrefix(errOut.String(), "error: controller 127.0.0.1:1: ") {
		t.Errorf("unreachable controller: exit %d, %q", code, errOut.String())
	}
	// LVSCTL_INSECURE and LVSCTL_CONTROLLER come from the environment.
	_, addr := start(t)
	env := map[string]string{"LVSCTL_CONTROLLER": addr, "LVSCTL_INSECURE": "1"}
	errOut.Reset()
	if code := commands.Run(context.Background(), []string{"get", "clusters"}, s, func(k string) string { return env[k] }); code != 0 {
		t.Errorf("env config: exit %d, %q", code, errOut.String())
	}
}

// TestUnknownKindFails: a mistyped kind must fail, not print help and exit 0 (a script
// would believe `delete clustr wms` deleted something).
func TestUnknownKindFails(t *testing.T) {
	_, addr := start(t)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"delete", "clustr", "wms"}, "error: lvsctl delete: unknown kind \"clustr\" (one of: cluster, group)\n"},
		{[]string{"get", "clustrs"}, "error: lvsctl get: unknown kind \"clustrs\" (one of: cluster, controllers, directors, group)\n"},
		{[]string{"describe", "grp", "x"}, "error: lvsctl describe: unknown kind \"grp\" (one of: cluster, group)\n"},
		{[]string{"get"}, "error: lvsctl get: say what (one of: cluster, controllers, directors, group)\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			expect(t, lvsctl(t, addr, "", tc.args...), 1, "", tc.err)
		})
	}
}

// TestDirectorAddressIsNoVIP: the controller refuses a cluster written alone whose VIP is a
// stored director's address (lvsctl cannot see that: the group is not in the manifest).
func TestDirectorAddressIsNoVIP(t *testing.T) {
	srv, addr := start(t)
	rev := srv.revision(t) + 1
	expect(t, lvsctl(t, addr, "", "apply", "-f", wmsFile), 0, fmt.Sprintf("cluster/wms created (revision %d)\ngroup/edge-1 created (revision %[1]d)\n", rev), "")
	ha := lvsctl(t, addr, "", "apply", "-f", "../../deploy/examples/edge-1-ha.yaml")
	if ha.code != 0 {
		t.Fatalf("apply edge-1-ha.yaml: %+v", ha)
	}
	before := srv.revision(t)
	expect(t, lvsctl(t, addr, `{"kind": "Cluster", "name": "echo", "directorGroup": "edge-1", "vips": ["198.51.100.253"],
		"ports": [{"protocol": "tcp", "port": 7}], "reals": [{"address": "198.51.100.7"}]}`, "apply", "-f", "-"), 1, "",
		"error: cluster \"echo\": vips[0]: 198.51.100.253 is the address of director \"dir-b\" of group \"edge-1\"; a VIP moves with the ACTIVE role, a director's address does not\n")
	if now := srv.revision(t); now != before {
		t.Errorf("a refused apply wrote: revision %d -> %d", before, now)
	}
}

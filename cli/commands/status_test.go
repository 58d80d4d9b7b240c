package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/cli/commands"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// waitLimit bounds every wait for lvsctl running in the background.
const waitLimit = 10 * time.Second

// syncBuffer is an output that the test reads while lvsctl writes it.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // one pending wake-up per write
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor waits, at most waitLimit, until the output satisfies cond.
func (b *syncBuffer) waitFor(t *testing.T, what string, cond func(string) bool) {
	t.Helper()
	timeout := time.After(waitLimit)
	for !cond(b.String()) {
		select {
		case <-b.written:
		case <-timeout:
			t.Fatalf("no %s within %s; output so far:\n%s", what, waitLimit, b.String())
		}
	}
}

// running is lvsctl running in the background until it ends or the test cancels it.
type running struct {
	out, err *syncBuffer
	cancel   context.CancelFunc
	code     chan int
}

func startLvsctl(t *testing.T, addr string, terminal bool, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: newSyncBuffer(), err: newSyncBuffer(), cancel: cancel, code: make(chan int, 1)}
	s := commands.Streams{In: strings.NewReader(""), Out: r.out, Err: r.err, OutIsTerminal: func() bool { return terminal }}
	env := map[string]string{"LVSCTL_CONTROLLER": addr}
	go func() {
		r.code <- commands.Run(ctx, append([]string{"--insecure"}, args...), s, func(k string) string { return env[k] })
	}()
	t.Cleanup(cancel)
	return r
}

// wait waits, at most waitLimit, for lvsctl to end.
func (r *running) wait(t *testing.T) result {
	t.Helper()
	select {
	case code := <-r.code:
		return result{out: r.out.String(), err: r.err.String(), code: code}
	case <-time.After(waitLimit):
		t.Fatalf("lvsctl still running after %s; output so far:\n%s", waitLimit, r.out.String())
		return result{}
	}
}

// stop is Ctrl-C.
func (r *running) stop(t *testing.T) result {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

type realJSON struct {
	Address         string `json:"address"`
	Weight          uint32 `json:"weight"`
	ActiveConns     uint32 `json:"activeConns"`
	InactiveConns   uint32 `json:"inactiveConns"`
	PersistentConns uint32 `json:"persistentConns"`
	Conns           uint64 `json:"conns"`
	CPS             uint64 `json:"cps"`
	InBps           uint64 `json:"inBps"`
	OutBps          uint64 `json:"outBps"`
}

// directorRealJSON is a real server on one director: its counts, and what the issue 9
// contract adds (health, healthSince, healthError, drained) with removing and its end.
type directorRealJSON struct {
	realJSON
	Health        string `json:"health"`
	HealthSince   string `json:"healthSince"`
	HealthError   string `json:"healthError"`
	Drained       bool   `json:"drained"`
	Removing      bool   `json:"removing"`
	RemovingUntil string `json:"removingUntil"`
	Sorry         bool   `json:"sorry"`
}

// clusterJSON is `status cluster NAME -o json` as the lab scenarios read it: decoding with
// unknown fields refused checks every key.
type clusterJSON struct {
	Cluster   string `json:"cluster"`
	Directors []struct {
		Name            string             `json:"name"`
		Role            string             `json:"role"`
		Connected       bool               `json:"connected"`
		AppliedRevision int64              `json:"appliedRevision"`
		DesiredRevision int64              `json:"desiredRevision"`
		Errors          []string           `json:"errors"`
		DirectorErrors  []string           `json:"directorErrors"`
		SorryInUse      bool               `json:"sorryInUse"`
		Reals           []directorRealJSON `json:"reals"`
	} `json:"directors"`
	Total struct {
		Reals []realJSON `json:"reals"`
	} `json:"total"`
}

func decodeCluster(t *testing.T, doc string) clusterJSON {
	t.Helper()
	var v clusterJSON
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("status cluster -o json: %v\n%s", err, doc)
	}
	return v
}

func TestStatusCluster(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	// echo's stats on dir-a are left out: lvsctl asks for wms only.
	expect(t, lvsctl(t, addr, "", "status", "cluster", "wms"), 0, `Cluster: wms
DIRECTOR  ROLE     CONNECTED  APPLIED  DESIRED  ERRORS
dir-a     ACTIVE   yes        5        5        0
dir-b     STANDBY  no         4        5        2

DIRECTOR  REAL          WEIGHT  HEALTH   STATE    ACTIVE  INACTIVE  PERSISTENT  CONNS  CPS  IN        OUT
dir-a     198.51.100.1  100     up       -        12      3         9           300    4    1.5 kB/s  2.0 MB/s
dir-a     198.51.100.2  0       down     -        2       0         2           50     1    0 B/s     0 B/s
dir-b     198.51.100.1  0       unknown  drained  0       0         9           0      0    0 B/s     0 B/s
(total)   198.51.100.1  100     -        -        12      3         18          300    4    1.5 kB/s  2.0 MB/s
(total)   198.51.100.2  0       -        -        2       0         2           50     1    0 B/s     0 B/s

Down:
  dir-a 198.51.100.2: since 2025-01-02T03:05:35Z: rtsp OPTIONS: connection refused

Errors:
  dir-b: vip 192.0.2.10: interface eth0 is down
  dir-b: scheduler mh: module not loaded
`, "")

	got := lvsctl(t, addr, "", "status", "cluster", "wms", "-o", "json")
	if got.code != 0 {
		t.Fatalf("status cluster wms -o json: %+v", got)
	}
	r1 := realJSON{Address: "198.51.100.1", Weight: 100, ActiveConns: 12, InactiveConns: 3, PersistentConns: 9, Conns: 300, CPS: 4, InBps: 1500, OutBps: 2_000_000}
	r2 := realJSON{Address: "198.51.100.2", Weight: 0, ActiveConns: 2, PersistentConns: 2, Conns: 50, CPS: 1}
	synced := realJSON{Address: "198.51.100.1", Weight: 0, PersistentConns: 9}
	total1 := r1
	total1.PersistentConns += synced.PersistentConns
	up := directorRealJSON{realJSON: r1, Health: "up", HealthSince: "2025-01-02T03:04:05Z"}
	down := directorRealJSON{realJSON: r2, Health: "down", HealthSince: "2025-01-02T03:05:35Z", HealthError: "rtsp OPTIONS: connection refused"}
	drained := directorRealJSON{realJSON: synced, Health: "unknown", Drained: true}
	var want clusterJSON
	if err := json.Unmarshal([]byte(`{"cluster":"wms","directors":[
		{"name":"dir-a","role":"ACTIVE","connected":true,"appliedRevision":5,"desiredRevision":5,"errors":[],"directorErrors":[]},
		{"name":"dir-b","role":"STANDBY","connected":false,"appliedRevision":4,"desiredRevision":5,"errors":["scheduler mh: module not loaded"],
		 "directorErrors":["vip 192.0.2.10: interface eth0 is down"]}]}`), &want); err != nil {
		t.Fatal(err)
	}
	want.Directors[0].Reals = []directorRealJSON{up, down}
	want.Directors[1].Reals = []directorRealJSON{drained}
	want.Total.Reals = []realJSON{total1, r2}
	if v := decodeCluster(t, got.out); !reflect.DeepEqual(v, want) {
		t.Errorf("status cluster wms -o json:\n got %+v\nwant %+v", v, want)
	}
}

func TestUnknownCluster(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	for _, args := range [][]string{
		{"status", "cluster", "nope"},
		{"status", "cluster", "nope", "-w"},
		{"status", "cluster", "nope", "-o", "json"},
		{"top", "--cluster", "nope", "--iterations", "1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			expect(t, lvsctl(t, addr, "", args...), 1, "", "error: cluster \"nope\": not found\n")
		})
	}
}

// busier is dir-a with 20 active connections on 198.51.100.1 instead of 12.
func busier() *lvsctlv1.DirectorStatus {
	d := testFleet()[0]
	d.Clusters[0].Reals[0].ActiveConns = 20
	return d
}

// threeLines: each JSON document is written at once, so three lines are three whole views.
func threeLines(s string) bool { return strings.Count(s, "\n") == 3 }

func TestStatusWatch(t *testing.T) {
	const header = "NAME   GROUP   CONNECTED  ROLE     DESIRED  APPLIED  STATE         ERRORS  EPOCH  PEERS                 SYNC           ACTIVE  INACTIVE  PERSISTENT  CPS\n"
	const dirB = "dir-b  edge-1  no         STANDBY  5        4        disconnected  2       3      dir-a ok              master+backup  0       0         9           0\n" +
		"\nErrors:\n" +
		"  dir-b: cluster \"wms\": scheduler mh: module not loaded\n" +
		"  dir-b: vip 192.0.2.10: interface eth0 is down\n"
	tests := []struct {
		name string
		args []string
		// done says that every view has been printed in full.
		done func(out string) bool
		// check checks the whole output; lines are one JSON document each.
		check func(t *testing.T, out string, lines []string)
	}{
		{"table", []string{"status", "-w"}, func(s string) bool {
			return strings.Count(s, "NAME ") == 3 && strings.HasSuffix(s, "7\n")
		}, func(t *testing.T, out string, _ []string) {
			want := header + "dir-a  edge-1  yes        ACTIVE   5        5        applied       0       3      dir-b lost (host up)  master+backup  21      3         11          7\n" + dirB +
				"\n" + header + "dir-a  edge-1  yes        ACTIVE   5        5        applied       0       3      dir-b lost (host up)  master+backup  29      3         11          7\n" + dirB +
				"\n" + "NAME   GROUP   CONNECTED  ROLE    DESIRED  APPLIED  STATE    ERRORS  EPOCH  PEERS                 SYNC           ACTIVE  INACTIVE  PERSISTENT  CPS\n" +
				"dir-a  edge-1  yes        ACTIVE  5        5        applied  0       3      dir-b lost (host up)  master+backup  29      3         11          7\n"
			if out != want {
				t.Errorf("got:\n%s\nwant:\n%s", out, want)
			}
		}},
		{"json", []string{"status", "-w", "-o", "json"}, threeLines, func(t *testing.T, _ string, lines []string) {
			want := []map[string]float64{{"dir-a": 21, "dir-b": 0}, {"dir-a": 29, "dir-b": 0}, {"dir-a": 29}}
			if len(lines) != len(want) {
				t.Fatalf("%d views, want %d", len(lines), len(want))
			}
			for i, l := range lines {
				var views []map[string]any
				if err := json.Unmarshal([]byte(l), &views); err != nil {
					t.Fatalf("line %d: %v: %s", i+1, err, l)
				}
				got := map[string]float64{}
				for _, v := range views {
					got[v["name"].(string)] = v["activeConns"].(float64)
				}
				if !reflect.DeepEqual(got, want[i]) {
					t.Errorf("line %d: active connections %v, want %v", i+1, got, want[i])
				}
			}
		}},
		{"cluster json, totals summed by lvsctl", []string{"status", "cluster", "wms", "-w", "-o", "json"}, threeLines, func(t *testing.T, _ string, lines []string) {
			type summary struct {
				directors          string
				active, persistent uint32
			}
			want := []summary{{"dir-a,dir-b", 12, 18}, {"dir-a,dir-b", 20, 18}, {"dir-a", 20, 9}}
			if len(lines) != len(want) {
				t.Fatalf("%d views, want %d", len(lines), len(want))
			}
			for i, l := range lines {
				v := decodeCluster(t, l)
				var names []string
				for _, d := range v.Directors {
					names = append(names, d.Name)
				}
				total := v.Total.Reals[0]
				if got := (summary{strings.Join(names, ","), total.ActiveConns, total.PersistentConns}); got != want[i] || total.Address != "198.51.100.1" {
					t.Errorf("line %d: %+v (%s), want %+v", i+1, got, total.Address, want[i])
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := start(t)
			srv.setFleet(testFleet())
			lvsctl(t, addr, "", "apply", "-f", wmsFile)
			r := startLvsctl(t, addr, false, tt.args...)
			r.out.waitFor(t, "first view", func(s string) bool { return strings.HasSuffix(s, "\n") })
			srv.watching(t)
			busy := busier()
			srv.setDirector(busy)
			// The same status again is no change: nothing printed.
			srv.setDirector(busy)
			// Nor is a peer heard a moment later (its reachability is what views show):
			// sent once the second view is out, so that the registry cannot merge it into it.
			r.out.waitFor(t, "second view", func(s string) bool {
				return strings.Count(s, "\n") >= 2 && (strings.Count(s, "NAME ") == 2 && strings.HasSuffix(s, "eth0 is down\n") || !strings.Contains(s, "NAME "))
			})
			later := busier()
			later.Peers[0].HeardAgoMs++
			srv.setDirector(later)
			// A forgotten director comes with only its name: it leaves the view.
			srv.fleet.Disconnected("dir-b")
			r.out.waitFor(t, "third view", tt.done)
			got := r.stop(t)
			if got.code != 0 || got.err != "" {
				t.Fatalf("Ctrl-C: exit %d, stderr %q", got.code, got.err)
			}
			lines := strings.Split(strings.TrimSuffix(got.out, "\n"), "\n")
			tt.check(t, got.out, lines)
		})
	}
}

func TestStatusWatchEnds(t *testing.T) {
	tests := []struct {
		name   string
		end    error // how the controller ends the stream; nil: cleanly
		stderr string
	}{
		{"stream error", status.Error(codes.Internal, "fleet registry broke"), "error: fleet registry broke\n"},
		{"controller closes the stream", nil, "error: the controller ended the watch\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := start(t)
			srv.setFleet(testFleet())
			r := startLvsctl(t, addr, false, "status", "-w", "-o", "json")
			r.out.waitFor(t, "first view", func(s string) bool { return strings.HasSuffix(s, "\n") })
			srv.end(t, tt.end)
			if got := r.wait(t); got.code != 1 || got.err != tt.stderr || strings.Count(got.out, "\n") != 1 {
				t.Errorf("got exit %d, stderr %q, stdout:\n%s\nwant exit 1, stderr %q after one view", got.code, got.err, got.out, tt.stderr)
			}
		})
	}
}

// timestamp is the time in top's frame lines, which the tests cannot fix.
var timestamp = regexp.MustCompile(`lvsctl top  (\S+)  `)

func TestTopPlain(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	lvsctl(t, addr, "", "apply", "-f", wmsFile)
	const frame = "lvsctl top  TIME  directors: 2  not connected: dir-b\n" +
		"DIRECTOR  CLUSTER  REAL          WEIGHT  HEALTH   STATE    ACTIVE  INACTIVE  PERSISTENT  CPS  IN        OUT\n" +
		"dir-a     wms      198.51.100.1  100     up       -        12      3         9           4    1.5 kB/s  2.0 MB/s\n" +
		"dir-a     echo     198.51.100.7  1       unknown  -        7       0         0           0    0 B/s     0 B/s\n" +
		"dir-a     wms      198.51.100.2  0       down     -        2       0         2           1    0 B/s     0 B/s\n" +
		"dir-b     wms      198.51.100.1  0       unknown  drained  0       0         9           0    0 B/s     0 B/s\n"
	got := lvsctl(t, addr, "", "top", "--interval", "10ms", "--iterations", "3")
	var last time.Time
	for _, m := range timestamp.FindAllStringSubmatch(got.out, -1) {
		ts, err := time.Parse(time.RFC3339, m[1])
		if err != nil || ts.Before(last) {
			t.Errorf("frame time %q: %v (previous %s)", m[1], err, last)
		}
		last = ts
	}
	got.out = timestamp.ReplaceAllString(got.out, "lvsctl top  TIME  ")
	expect(t, got, 0, frame+frame+frame, "")

	// --cluster asks the controller for that cluster only.
	got = lvsctl(t, addr, "", "top", "--cluster", "wms", "--iterations", "1")
	got.out = timestamp.ReplaceAllString(got.out, "lvsctl top  TIME  ")
	expect(t, got, 0, strings.Replace(frame, "dir-a     echo     198.51.100.7  1       unknown  -        7       0         0           0    0 B/s     0 B/s\n", "", 1), "")

	got = lvsctl(t, addr, "", "top", "-o", "json", "--interval", "10ms", "--iterations", "2")
	lines := strings.Split(strings.TrimSuffix(got.out, "\n"), "\n")
	if got.code != 0 || len(lines) != 2 {
		t.Fatalf("top -o json: %+v", got)
	}
	for _, l := range lines {
		var v struct {
			Reals []struct {
				Director    string `json:"director"`
				ActiveConns uint32 `json:"activeConns"`
			} `json:"reals"`
		}
		if err := json.Unmarshal([]byte(l), &v); err != nil || len(v.Reals) != 4 || v.Reals[0].ActiveConns != 12 || v.Reals[3].Director != "dir-b" {
			t.Errorf("top -o json frame: %v %s", err, l)
		}
	}

	for _, tt := range []struct{ flag, value, stderr string }{
		{"--interval", "0s", "error: --interval: 0s is not a positive duration\n"},
		{"--iterations", "-1", "error: --iterations: -1 is negative (0 means until interrupted)\n"},
	} {
		expect(t, lvsctl(t, addr, "", "top", tt.flag, tt.value), 1, "", tt.stderr)
	}
}

func TestTopFollowsWatch(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	r := startLvsctl(t, addr, false, "top", "--interval", "20ms")
	r.out.waitFor(t, "first frame", func(s string) bool { return strings.Contains(s, "dir-b     wms") })
	// dir-b takes over: it is connected and now the busiest, so it moves to the top.
	b := proto.Clone(testFleet()[1]).(*lvsctlv1.DirectorStatus)
	b.Connected = true
	b.Clusters[0].Reals[0].ActiveConns = 50
	srv.setDirector(b)
	const busiest = "lvsctl top  TIME  directors: 2\n" +
		"DIRECTOR  CLUSTER  REAL          WEIGHT  HEALTH   STATE    ACTIVE  INACTIVE  PERSISTENT  CPS  IN        OUT\n" +
		"dir-b     wms      198.51.100.1  0       unknown  drained  50      0         9           0    0 B/s     0 B/s\n"
	r.out.waitFor(t, "frame with dir-b first", func(s string) bool {
		return strings.Contains(timestamp.ReplaceAllString(s, "lvsctl top  TIME  "), busiest)
	})
	if got := r.stop(t); got.code != 0 || got.err != "" {
		t.Errorf("Ctrl-C: exit %d, stderr %q", got.code, got.err)
	}
}

func TestTopTerminal(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet()[1:])
	got := startLvsctl(t, addr, true, "top", "--iterations", "1").wait(t)
	got.out = timestamp.ReplaceAllString(got.out, "lvsctl top  TIME  ")
	expect(t, got, 0, "\x1b[?25l"+"\x1b[H\x1b[2J"+
		"lvsctl top  TIME  directors: 1  not connected: dir-b\n"+
		"DIRECTOR  CLUSTER  REAL          WEIGHT  HEALTH   STATE    ACTIVE  INACTIVE  PERSISTENT  CPS  IN     OUT\n"+
		"dir-b     wms      198.51.100.1  0       unknown  drained  0       0         9           0    0 B/s  0 B/s\n"+
		"\x1b[?25h", "")

	// JSON is for scripts: never full-screen.
	got = startLvsctl(t, addr, true, "top", "--iterations", "1", "-o", "json").wait(t)
	if got.code != 0 || !strings.HasPrefix(got.out, `{"time":`) {
		t.Errorf("top -o json on a terminal: %+v", got)
	}
}

// TestTopFitsTheTerminal: a full-screen frame never scrolls: the least busy rows give way.
func TestTopFitsTheTerminal(t *testing.T) {
	srv, addr := start(t)
	srv.setFleet(testFleet())
	plain := lvsctl(t, addr, "", "top", "--iterations", "1")
	total := len(strings.Split(strings.TrimSpace(plain.out), "\n")) - 2 // frame header, table header
	if total < 3 {
		t.Fatalf("the test fleet has %d rows; it needs at least 3:\n%s", total, plain.out)
	}
	out := newSyncBuffer()
	s := commands.Streams{In: strings.NewReader(""), Out: out, Err: io.Discard,
		OutIsTerminal: func() bool { return true }, TerminalRows: func() int { return 5 }}
	env := map[string]string{"LVSCTL_CONTROLLER": addr}
	code := commands.Run(context.Background(), []string{"--insecure", "top", "--iterations", "1"}, s, func(k string) string { return env[k] })
	frame := strings.TrimSuffix(strings.TrimPrefix(out.String(), "\x1b[?25l\x1b[H\x1b[2J"), "\x1b[?25h")
	lines := strings.Split(strings.TrimSuffix(frame, "\n"), "\n")
	if code != 0 || len(lines) != 5 || lines[4] != fmt.Sprintf("... and %d less busy (a taller terminal, or --cluster, shows them)", total-2) {
		t.Errorf("exit %d, frame of %d lines for a 5-line terminal:\n%s", code, len(lines), frame)
	}
	// The rows kept are the busiest: the same as the plain frame's first two (cell by cell:
	// the rows left out may widen a column of the plain frame).
	plainLines := strings.Split(strings.TrimSpace(plain.out), "\n")
	same := func(a, b string) bool { return slices.Equal(strings.Fields(a), strings.Fields(b)) }
	if !same(lines[2], plainLines[2]) || !same(lines[3], plainLines[3]) {
		t.Errorf("kept rows:\n%s\n%s\nwant the busiest:\n%s\n%s", lines[2], lines[3], plainLines[2], plainLines[3])
	}
}

// TestTopAtScale: a full-screen top asks the controller for only the rows that fit, so a
// fleet of thousands of clusters costs a message of a few rows; the frame still shows the
// fleet's busiest rows and counts every row left out.
func TestTopAtScale(t *testing.T) {
	srv, addr := start(t)
	const clusters, reals = 1000, 10
	a := &lvsctlv1.DirectorStatus{Director: "dir-a", Connected: true}
	for c := range clusters {
		st := &lvsctlv1.ClusterStats{Cluster: fmt.Sprintf("c%04d", c)}
		for r := range reals {
			st.Reals = append(st.Reals, &lvsctlv1.RealServerStats{Address: fmt.Sprintf("198.51.100.%d", r), Weight: 1, ActiveConns: uint32(c)})
		}
		a.Clusters = append(a.Clusters, st)
	}
	srv.setDirector(a)
	srv.setDirector(testFleet()[1]) // dir-b: one idle real
	out := newSyncBuffer()
	s := commands.Streams{In: strings.NewReader(""), Out: out, Err: io.Discard,
		OutIsTerminal: func() bool { return true }, TerminalRows: func() int { return 6 }}
	env := map[string]string{"LVSCTL_CONTROLLER": addr}
	code := commands.Run(context.Background(), []string{"--insecure", "top", "--iterations", "1"}, s, func(k string) string { return env[k] })
	frame := strings.TrimSuffix(strings.TrimPrefix(out.String(), "\x1b[?25l\x1b[H\x1b[2J"), "\x1b[?25h")
	frame = timestamp.ReplaceAllString(frame, "lvsctl top  TIME  ")
	// c0999 is the busiest cluster; equally busy reals by address.
	want := "lvsctl top  TIME  directors: 2  not connected: dir-b\n" +
		"DIRECTOR  CLUSTER  REAL          WEIGHT  HEALTH   STATE  ACTIVE  INACTIVE  PERSISTENT  CPS  IN     OUT\n" +
		"dir-a     c0999    198.51.100.0  1       unknown  -      999     0         0           0    0 B/s  0 B/s\n" +
		"dir-a     c0999    198.51.100.1  1       unknown  -      999     0         0           0    0 B/s  0 B/s\n" +
		"dir-a     c0999    198.51.100.2  1       unknown  -      999     0         0           0    0 B/s  0 B/s\n" +
		fmt.Sprintf("... and %d less busy (a taller terminal, or --cluster, shows them)\n", clusters*reals+1-3)
	if code != 0 || frame != want {
		t.Errorf("exit %d, frame:\n%s\nwant:\n%s", code, frame, want)
	}
	if got := srv.watchReals.Load(); got != 3 {
		t.Errorf("the controller sent a director's status with %d reals; a 6-line terminal shows 3 rows", got)
	}
}

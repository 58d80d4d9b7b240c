package printer

import (
	"bytes"
	"testing"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func realStats(addr string, active, inactive, persistent uint32, c *lvsctlv1.Counters) *lvsctlv1.RealServerStats {
	return &lvsctlv1.RealServerStats{Address: addr, Weight: 100, ActiveConns: active, InactiveConns: inactive, PersistentConns: persistent, Counters: c}
}

// Times of health transitions in the fixtures: 2025-01-02T03:04:05Z and a minute later.
var (
	since1 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixMilli()
	since2 = since1 + 60_000
)

// wmsFleet: dir-a and dir-b serve wms in edge-1; dir-c is in another group and carries none
// of it; dir-d has left edge-1 but still reports wms. On dir-a, 198.51.100.1 is up and
// 198.51.100.2 down (quiesced), 198.51.100.3 removed from the cluster and leaving; on dir-b, which has no health report yet, 198.51.100.1 is
// drained.
func wmsFleet() []*lvsctlv1.DirectorStatus {
	up := realStats("198.51.100.1", 4, 0, 4, &lvsctlv1.Counters{Conns: 12, Cps: 1, InBps: 1000, OutBps: 2_250_000_000})
	up.Health, up.HealthSinceUnixMs = "up", since1
	down := realStats("198.51.100.2", 1, 2, 3, &lvsctlv1.Counters{Conns: 40, Cps: 2, InBps: 999, OutBps: 1_500_000})
	down.Weight, down.Health, down.HealthSinceUnixMs, down.HealthError = 0, "down", since2, "rtsp OPTIONS: status 404 Not Found"
	removing := realStats("198.51.100.3", 0, 1, 1, nil)
	removing.Weight, removing.Health, removing.HealthSinceUnixMs, removing.Removing, removing.RemovingUntilUnixMs = 0, "up", since1, true, since2+60_000
	drained := realStats("198.51.100.1", 0, 0, 2, nil)
	drained.Weight, drained.Drained = 0, true
	return []*lvsctlv1.DirectorStatus{
		{Director: "dir-a", Group: "edge-1", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE, DesiredRevision: 5, AppliedRevision: 5,
			Clusters: []*lvsctlv1.ClusterStats{{Cluster: "wms", Reals: []*lvsctlv1.RealServerStats{down, removing, up}}}},
		{Director: "dir-b", Group: "edge-1", Role: lvsctlv1.Role_ROLE_STANDBY, DesiredRevision: 5, AppliedRevision: 4,
			Errors:   []*lvsctlv1.ClusterError{{Cluster: "wms", Message: "scheduler mh: module not loaded"}, {Cluster: "echo", Message: "other"}},
			Clusters: []*lvsctlv1.ClusterStats{{Cluster: "wms", Reals: []*lvsctlv1.RealServerStats{drained}}}},
		{Director: "dir-c", Group: "edge-2", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE, DesiredRevision: 5, AppliedRevision: 5},
		{Director: "dir-d", Group: "edge-2", Connected: true, DesiredRevision: 5, AppliedRevision: 5,
			Clusters: []*lvsctlv1.ClusterStats{{Cluster: "wms"}}},
	}
}

func wmsTotal() *lvsctlv1.ClusterStats {
	return &lvsctlv1.ClusterStats{Cluster: "wms", Reals: []*lvsctlv1.RealServerStats{
		realStats("198.51.100.2", 1, 2, 3, &lvsctlv1.Counters{Conns: 40, Cps: 2, InBps: 999, OutBps: 1_500_000}),
		realStats("198.51.100.1", 4, 0, 6, &lvsctlv1.Counters{Conns: 12, Cps: 1, InBps: 1000, OutBps: 2_250_000_000}),
	}}
}

func TestClusterStatus(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		stream bool
		total  *lvsctlv1.ClusterStats
		want   string
	}{
		{"table", Table, false, wmsTotal(), `Cluster: wms
DIRECTOR  ROLE     CONNECTED  APPLIED  DESIRED  ERRORS
dir-a     ACTIVE   yes        5        5        0
dir-b     STANDBY  no         4        5        1
dir-d     -        yes        5        5        0

DIRECTOR  REAL          WEIGHT  HEALTH   STATE     ACTIVE  INACTIVE  PERSISTENT  CONNS  CPS  IN        OUT
dir-a     198.51.100.1  100     up       -         4       0         4           12     1    1.0 kB/s  2.2 GB/s
dir-a     198.51.100.2  0       down     -         1       2         3           40     2    999 B/s   1.5 MB/s
dir-a     198.51.100.3  0       up       removing  0       1         1           0      0    0 B/s     0 B/s
dir-b     198.51.100.1  0       unknown  drained   0       0         2           0      0    0 B/s     0 B/s
(total)   198.51.100.1  100     -        -         4       0         6           12     1    1.0 kB/s  2.2 GB/s
(total)   198.51.100.2  100     -        -         1       2         3           40     2    999 B/s   1.5 MB/s

Down:
  dir-a 198.51.100.2: since 2025-01-02T03:05:05Z: rtsp OPTIONS: status 404 Not Found

Removing:
  dir-a 198.51.100.3: at weight 0 until its connections end or 2025-01-02T03:06:05Z

Errors:
  dir-b: scheduler mh: module not loaded
`},
		{"json stream", JSON, true, wmsTotal(),
			`{"cluster":"wms","directors":[` +
				`{"name":"dir-a","role":"ACTIVE","connected":true,"appliedRevision":5,"desiredRevision":5,"errors":[],"directorErrors":[],"sorryInUse":false,"reals":[` +
				`{"address":"198.51.100.1","weight":100,"activeConns":4,"inactiveConns":0,"persistentConns":4,"conns":12,"cps":1,"inBps":1000,"outBps":2250000000,` +
				`"health":"up","healthSince":"2025-01-02T03:04:05Z","healthError":"","drained":false,"removing":false,"removingUntil":"","sorry":false},` +
				`{"address":"198.51.100.2","weight":0,"activeConns":1,"inactiveConns":2,"persistentConns":3,"conns":40,"cps":2,"inBps":999,"outBps":1500000,` +
				`"health":"down","healthSince":"2025-01-02T03:05:05Z","healthError":"rtsp OPTIONS: status 404 Not Found","drained":false,"removing":false,"removingUntil":"","sorry":false},` +
				`{"address":"198.51.100.3","weight":0,"activeConns":0,"inactiveConns":1,"persistentConns":1,"conns":0,"cps":0,"inBps":0,"outBps":0,` +
				`"health":"up","healthSince":"2025-01-02T03:04:05Z","healthError":"","drained":false,"removing":true,"removingUntil":"2025-01-02T03:06:05Z","sorry":false}]},` +
				`{"name":"dir-b","role":"STANDBY","connected":false,"appliedRevision":4,"desiredRevision":5,"errors":["scheduler mh: module not loaded"],"directorErrors":[],"sorryInUse":false,"reals":[` +
				`{"address":"198.51.100.1","weight":0,"activeConns":0,"inactiveConns":0,"persistentConns":2,"conns":0,"cps":0,"inBps":0,"outBps":0,` +
				`"health":"unknown","healthSince":"","healthError":"","drained":true,"removing":false,"removingUntil":"","sorry":false}]},` +
				`{"name":"dir-d","role":"","connected":true,"appliedRevision":5,"desiredRevision":5,"errors":[],"directorErrors":[],"sorryInUse":false,"reals":[]}],` +
				`"total":{"reals":[` +
				`{"address":"198.51.100.1","weight":100,"activeConns":4,"inactiveConns":0,"persistentConns":6,"conns":12,"cps":1,"inBps":1000,"outBps":2250000000},` +
				`{"address":"198.51.100.2","weight":100,"activeConns":1,"inactiveConns":2,"persistentConns":3,"conns":40,"cps":2,"inBps":999,"outBps":1500000}]}}` + "\n"},
		{"json without stats has empty arrays, not null", JSON, false, nil, `{
  "cluster": "wms",
  "directors": [
    {
      "name": "dir-a",
      "role": "ACTIVE",
      "connected": true,
      "appliedRevision": 5,
      "desiredRevision": 5,
      "errors": [],
      "directorErrors": [],
      "sorryInUse": false,
      "reals": []
    }
  ],
  "total": {
    "reals": []
  }
}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newPrinter := New
			if tt.stream {
				newPrinter = NewStream
			}
			p, err := newPrinter(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			ds := wmsFleet()
			if tt.total == nil {
				ds = ds[:1]
				ds[0].Clusters = nil
			}
			var b bytes.Buffer
			if err := p.ClusterStatus(&b, ViewClusterStatus("wms", "edge-1", ds, tt.total)); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestTop(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ds := wmsFleet()
	// Ties on active connections sort by director, cluster, then address.
	ds[2].Clusters = []*lvsctlv1.ClusterStats{{Cluster: "echo", Reals: []*lvsctlv1.RealServerStats{
		realStats("198.51.100.7", 4, 1, 0, &lvsctlv1.Counters{Cps: 3, InBps: 12_345, OutBps: 999_950}),
		realStats("198.51.100.8", 9, 0, 0, nil),
	}}}
	tests := []struct {
		name   string
		format Format
		ds     []*lvsctlv1.DirectorStatus
		want   string
	}{
		{"table", Table, ds, `lvsctl top  2025-01-02T03:04:05Z  directors: 4  not connected: dir-b
DIRECTOR  CLUSTER  REAL          WEIGHT  HEALTH   STATE     ACTIVE  INACTIVE  PERSISTENT  CPS  IN         OUT
dir-c     echo     198.51.100.8  100     unknown  -         9       0         0           0    0 B/s      0 B/s
dir-a     wms      198.51.100.1  100     up       -         4       0         4           1    1.0 kB/s   2.2 GB/s
dir-c     echo     198.51.100.7  100     unknown  -         4       1         0           3    12.3 kB/s  1.0 MB/s
dir-a     wms      198.51.100.2  0       down     -         1       2         3           2    999 B/s    1.5 MB/s
dir-a     wms      198.51.100.3  0       up       removing  0       1         1           0    0 B/s      0 B/s
dir-b     wms      198.51.100.1  0       unknown  drained   0       0         2           0    0 B/s      0 B/s
`},
		{"empty table", Table, nil, "lvsctl top  2025-01-02T03:04:05Z  directors: 0\n" +
			"DIRECTOR  CLUSTER  REAL  WEIGHT  HEALTH  STATE  ACTIVE  INACTIVE  PERSISTENT  CPS  IN  OUT\n"},
		{"json is one line per frame", JSON, ds[1:3],
			`{"time":"2025-01-02T03:04:05Z","directors":2,"disconnected":["dir-b"],"reals":[` +
				`{"director":"dir-c","cluster":"echo","address":"198.51.100.8","weight":100,"activeConns":9,"inactiveConns":0,"persistentConns":0,"conns":0,"cps":0,"inBps":0,"outBps":0,` +
				`"health":"unknown","healthSince":"","healthError":"","drained":false,"removing":false,"removingUntil":"","sorry":false},` +
				`{"director":"dir-c","cluster":"echo","address":"198.51.100.7","weight":100,"activeConns":4,"inactiveConns":1,"persistentConns":0,"conns":0,"cps":3,"inBps":12345,"outBps":999950,` +
				`"health":"unknown","healthSince":"","healthError":"","drained":false,"removing":false,"removingUntil":"","sorry":false},` +
				`{"director":"dir-b","cluster":"wms","address":"198.51.100.1","weight":0,"activeConns":0,"inactiveConns":0,"persistentConns":2,"conns":0,"cps":0,"inBps":0,"outBps":0,` +
				`"health":"unknown","healthSince":"","healthError":"","drained":true,"removing":false,"removingUntil":"","sorry":false}]}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewStream(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.Top(&b, ViewTop(now, tt.ds)); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestHumanRate(t *testing.T) {
	for _, tt := range []struct {
		in   uint64
		want string
	}{
		{0, "0 B/s"}, {999, "999 B/s"}, {1000, "1.0 kB/s"}, {1049, "1.0 kB/s"}, {1050, "1.1 kB/s"},
		{999_949, "999.9 kB/s"}, {999_950, "1.0 MB/s"}, {45_000_000, "45.0 MB/s"},
		{3_000_000_000_000, "3.0 TB/s"}, {18_446_744_073_709_551_615, "18.4 EB/s"},
	} {
		if got := HumanRate(tt.in); got != tt.want {
			t.Errorf("HumanRate(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

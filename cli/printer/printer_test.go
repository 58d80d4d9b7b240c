package printer

import (
	"bytes"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func cluster() *lvsctlv1.Object {
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "wms", DirectorGroup: "edge-1", Vips: []string{"192.0.2.10"},
		Ports: []*lvsctlv1.PortRange{
			{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 554, Last: 554},
			{Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 1024, Last: 5000},
		},
		Scheduler: "wlc", Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600, NetmaskBits: 24},
		Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Reals:      []*lvsctlv1.RealServer{{Address: "198.51.100.1", Weight: 100}},
		Fwmark:     1, Revision: 9,
	}}}
}

func group() *lvsctlv1.Object {
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
		Name: "edge-1", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 200}, {Name: "dir-b", Priority: 100}},
		VipInterface: "eth0", Gateway: &lvsctlv1.Gateway{Address: "198.51.100.254/24", Interface: "eth1"},
		Sync: &lvsctlv1.Sync{Interface: "eth1", SyncId: 7}, Revision: 8,
	}}}
}

func directors() []*lvsctlv1.DirectorStatus {
	return []*lvsctlv1.DirectorStatus{
		{Director: "dir-a", Group: "edge-1", Connected: true, Role: lvsctlv1.Role_ROLE_ACTIVE, Epoch: 2, Holding: true,
			DesiredRevision: 9, AppliedRevision: 9, AgentVersion: "v0.1.0",
			LastSeen: timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)),
			Clusters: []*lvsctlv1.ClusterStats{
				{Cluster: "wms", Fwmark: 1, Counters: &lvsctlv1.Counters{Conns: 900, Cps: 7}, Reals: []*lvsctlv1.RealServerStats{
					{Address: "198.51.100.2", Weight: 100, ActiveConns: 4, InactiveConns: 1, PersistentConns: 2},
					{Address: "198.51.100.1", Weight: 100, ActiveConns: 12, InactiveConns: 3, PersistentConns: 9},
				}},
				{Cluster: "echo", Fwmark: 2, Counters: &lvsctlv1.Counters{Cps: 1}, Reals: []*lvsctlv1.RealServerStats{
					{Address: "198.51.100.7", Weight: 1, ActiveConns: 1},
				}},
			}},
		{Director: "dir-b", Group: "edge-1", DesiredRevision: 9, AppliedRevision: 7,
			Errors:         []*lvsctlv1.ClusterError{{Cluster: "wms", Message: "no such scheduler"}},
			DirectorErrors: []string{"eth0 is down"}},
	}
}

func TestObjects(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		objs   []*lvsctlv1.Object
		one    bool
		want   string
	}{
		{"table of clusters and groups", Table, []*lvsctlv1.Object{cluster(), group()}, false,
			"NAME  GROUP   VIPS        PORTS                  FWMARK  SCHEDULER  FORWARDING  REALS  REVISION\n" +
				"wms   edge-1  192.0.2.10  tcp/554,udp/1024-5000  1       wlc        masq        1      9\n" +
				"\n" +
				"NAME    DIRECTORS              VIP-INTERFACE  GATEWAY                 SYNC    REVISION\n" +
				"edge-1  dir-a(200),dir-b(100)  eth0           198.51.100.254/24@eth1  eth1/7  8\n"},
		{"empty table", Table, nil, false,
			"NAME  GROUP  VIPS  PORTS  FWMARK  SCHEDULER  FORWARDING  REALS  REVISION\n"},
		{"yaml of one", YAML, []*lvsctlv1.Object{group()}, true,
			"kind: DirectorGroup\nname: edge-1\ndirectors:\n  - {name: dir-a, priority: 200}\n  - {name: dir-b, priority: 100}\n" +
				"vipInterface: eth0\ngateway: {address: 198.51.100.254/24, interface: eth1}\nsync: {interface: eth1, syncId: 7}\nrevision: 8\n"},
		{"json of one is an object", JSON, []*lvsctlv1.Object{group()}, true,
			`{
  "kind": "DirectorGroup",
  "name": "edge-1",
  "directors": [
    {
      "name": "dir-a",
      "priority": 200
    },
    {
      "name": "dir-b",
      "priority": 100
    }
  ],
  "vipInterface": "eth0",
  "gateway": {
    "address": "198.51.100.254/24",
    "interface": "eth1"
  },
  "sync": {
    "interface": "eth1",
    "syncId": 7
  },
  "revision": 8
}
`},
		{"json list of none is an empty array", JSON, nil, false, "[]\n"},
		{"json list of one is an array", JSON, []*lvsctlv1.Object{cluster()}, false,
			`[
  {
    "kind": "Cluster",
    "name": "wms",
    "directorGroup": "edge-1",
    "vips": [
      "192.0.2.10"
    ],
    "ports": [
      {
        "protocol": "tcp",
        "port": 554
      },
      {
        "protocol": "udp",
        "ports": "1024-5000"
      }
    ],
    "scheduler": "wlc",
    "persistence": {
      "timeout": "600s",
      "netmask": 24
    },
    "forwarding": "masq",
    "reals": [
      {
        "address": "198.51.100.1",
        "weight": 100
      }
    ],
    "fwmark": 1,
    "revision": 9
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.format)
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			if err := p.Objects(&b, tt.objs, tt.one); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestFleet(t *testing.T) {
	// get directors' JSON: other tools parse it, so it must not change.
	const view = `[
  {
    "name": "dir-a",
    "group": "edge-1",
    "connected": true,
    "role": "ACTIVE",
    "epoch": 2,
    "holding": true,
    "fenced": "",
    "peers": [],
    "sync": null,
    "desiredRevision": 9,
    "appliedRevision": 9,
    "state": "applied",
    "errors": [],
    "agentVersion": "v0.1.0",
    "lastSeen": "2025-01-02T03:04:05Z"
  },
  {
    "name": "dir-b",
    "group": "edge-1",
    "connected": false,
    "role": "",
    "epoch": 0,
    "holding": false,
    "fenced": "",
    "peers": [],
    "sync": null,
    "desiredRevision": 9,
    "appliedRevision": 7,
    "state": "disconnected",
    "errors": [
      "cluster \"wms\": no such scheduler",
      "eth0 is down"
    ]
  }
]
`
	// status's JSON is the same with each director's totals added.
	const statusView = `[
  {
    "name": "dir-a",
    "group": "edge-1",
    "connected": true,
    "role": "ACTIVE",
    "epoch": 2,
    "holding": true,
    "fenced": "",
    "peers": [],
    "sync": null,
    "desiredRevision": 9,
    "appliedRevision": 9,
    "state": "applied",
    "errors": [],
    "agentVersion": "v0.1.0",
    "lastSeen": "2025-01-02T03:04:05Z",
    "activeConns": 17,
    "inactiveConns": 4,
    "persistentConns": 11,
    "cps": 8
  },
  {
    "name": "dir-b",
    "group": "edge-1",
    "connected": false,
    "role": "",
    "epoch": 0,
    "holding": false,
    "fenced": "",
    "peers": [],
    "sync": null,
    "desiredRevision": 9,
    "appliedRevision": 7,
    "state": "disconnected",
    "errors": [
      "cluster \"wms\": no such scheduler",
      "eth0 is down"
    ],
    "activeConns": 0,
    "inactiveConns": 0,
    "persistentConns": 0,
    "cps": 0
  }
]
`
	tests := []struct {
		name   string
		format Format
		stream bool
		status bool
		want   string
	}{
		{"status table", Table, false, true,
			"NAME   GROUP   CONNECTED  ROLE    DESIRED  APPLIED  STATE         ERRORS  EPOCH  PEERS  SYNC  ACTIVE  INACTIVE  PERSISTENT  CPS\n" +
				"dir-a  edge-1  yes        ACTIVE  9        9        applied       0       2      -      -     17      4         11          8\n" +
				"dir-b  edge-1  no         -       9        7        disconnected  2       0      -      -     0       0         0           0\n" +
				"\nErrors:\n  dir-b: cluster \"wms\": no such scheduler\n  dir-b: eth0 is down\n"},
		{"directors table", Table, false, false,
			"NAME   GROUP   CONNECTED  ROLE    EPOCH  DESIRED  APPLIED  VERSION\n" +
				"dir-a  edge-1  yes        ACTIVE  2      9        9        v0.1.0\n" +
				"dir-b  edge-1  no         -       0      9        7        -\n"},
		{"status json", JSON, false, true, statusView},
		{"directors json", JSON, false, false, view},
		{"status json stream is one line", JSON, true, true,
			`[{"name":"dir-a","group":"edge-1","connected":true,"role":"ACTIVE","epoch":2,"holding":true,"fenced":"","peers":[],"sync":null,"desiredRevision":9,"appliedRevision":9,` +
				`"state":"applied","errors":[],"agentVersion":"v0.1.0","lastSeen":"2025-01-02T03:04:05Z","activeConns":17,"inactiveConns":4,"persistentConns":11,"cps":8},` +
				`{"name":"dir-b","group":"edge-1","connected":false,"role":"","epoch":0,"holding":false,"fenced":"","peers":[],"sync":null,"desiredRevision":9,"appliedRevision":7,` +
				`"state":"disconnected","errors":["cluster \"wms\": no such scheduler","eth0 is down"],"activeConns":0,"inactiveConns":0,"persistentConns":0,"cps":0}]` + "\n"},
		{"directors yaml", YAML, false, false,
			"- agentVersion: v0.1.0\n  appliedRevision: 9\n  connected: true\n  desiredRevision: 9\n  epoch: 2\n  errors: []\n  fenced: \"\"\n" +
				"  group: edge-1\n  holding: true\n  lastSeen: \"2025-01-02T03:04:05Z\"\n  name: dir-a\n  peers: []\n  role: ACTIVE\n  state: applied\n  sync: null\n" +
				"- appliedRevision: 7\n  connected: false\n  desiredRevision: 9\n  epoch: 0\n  errors:\n" +
				"  - 'cluster \"wms\": no such scheduler'\n  - eth0 is down\n  fenced: \"\"\n  group: edge-1\n  holding: false\n  name: dir-b\n  peers: []\n  role: \"\"\n  state: disconnected\n  sync: null\n"},
		{"status yaml stream starts a document", YAML, true, true,
			"---\n- activeConns: 17\n  agentVersion: v0.1.0\n  appliedRevision: 9\n  connected: true\n  cps: 8\n  desiredRevision: 9\n  epoch: 2\n  errors: []\n  fenced: \"\"\n" +
				"  group: edge-1\n  holding: true\n  inactiveConns: 4\n  lastSeen: \"2025-01-02T03:04:05Z\"\n  name: dir-a\n  peers: []\n  persistentConns: 11\n  role: ACTIVE\n  state: applied\n  sync: null\n" +
				"- activeConns: 0\n  appliedRevision: 7\n  connected: false\n  cps: 0\n  desiredRevision: 9\n  epoch: 0\n  errors:\n" +
				"  - 'cluster \"wms\": no such scheduler'\n  - eth0 is down\n  fenced: \"\"\n  group: edge-1\n  holding: false\n  inactiveConns: 0\n  name: dir-b\n  peers: []\n  persistentConns: 0\n  role: \"\"\n  state: disconnected\n  sync: null\n"},
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
			var b bytes.Buffer
			if tt.status {
				err = p.Status(&b, directors())
			} else {
				err = p.Directors(&b, directors())
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Format
		ok   bool
	}{{"table", Table, true}, {"yaml", YAML, true}, {"json", JSON, true}, {"wide", "", false}, {"", "", false}} {
		got, err := ParseFormat(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseFormat(%q) = %q, %v", tt.in, got, err)
		}
	}
}

// TestApplyState: "applied" only for a connected director that acked its desired revision with
// no error; errors and lag are always said.
func TestApplyState(t *testing.T) {
	tests := []struct {
		connected        bool
		applied, desired int64
		errors           int
		want             string
	}{
		{true, 5, 5, 0, StateApplied},
		{true, 5, 5, 3, StateAppliedWithErrors},
		{true, 4, 5, 0, StateBehind},
		{true, 0, 5, 1, StateBehindWithErrors},
		{false, 5, 5, 0, StateDisconnected},
		{false, 4, 5, 2, StateDisconnected},
	}
	for _, tt := range tests {
		if got := ApplyState(tt.connected, tt.applied, tt.desired, tt.errors); got != tt.want {
			t.Errorf("ApplyState(connected %v, applied %d, desired %d, %d errors) = %q, want %q",
				tt.connected, tt.applied, tt.desired, tt.errors, got, tt.want)
		}
	}
}

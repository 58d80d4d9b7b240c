package printer

import (
	"bytes"
	"encoding/json"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// failoverFleet: edge-1 is a healthy pair; in edge-2 dir-c has fenced itself off a partition
// in which it hears nobody, dir-d is a STANDBY that has not yet released the addresses, and
// dir-e was just made ACTIVE and has not yet taken them.
func failoverFleet() []*lvsctlv1.DirectorStatus {
	active, standby := lvsctlv1.Role_ROLE_ACTIVE, lvsctlv1.Role_ROLE_STANDBY
	both := &lvsctlv1.SyncStatus{Master: true, Backup: true, Interface: "eth1", SyncId: 7}
	return []*lvsctlv1.DirectorStatus{
		{Director: "dir-a", Group: "edge-1", Connected: true, Role: active, Epoch: 42, Holding: true, DesiredRevision: 9, AppliedRevision: 9,
			Peers: []*lvsctlv1.PeerStatus{{Director: "dir-b", Reachable: true, HostReachable: true, HeardAgoMs: 40, Epoch: 42, Role: standby}},
			Sync:  both},
		{Director: "dir-b", Group: "edge-1", Connected: true, Role: standby, Epoch: 42, DesiredRevision: 9, AppliedRevision: 9,
			Peers: []*lvsctlv1.PeerStatus{{Director: "dir-a", Reachable: true, HostReachable: true, HeardAgoMs: 60, Epoch: 42, Role: active, Holding: true}},
			Sync:  both},
		{Director: "dir-c", Group: "edge-2", Connected: false, Role: active, Epoch: 7, Fenced: "no answer to heartbeats for 300ms", DesiredRevision: 9, AppliedRevision: 9,
			Peers: []*lvsctlv1.PeerStatus{
				{Director: "dir-e", HeardAgoMs: -1},
				{Director: "dir-d", HostReachable: true, HeardAgoMs: 900, Epoch: 7, Role: standby},
			},
			Sync: &lvsctlv1.SyncStatus{Master: true, Interface: "eth1", SyncId: 8, Error: "backup daemon: no such device eth1"}},
		{Director: "dir-d", Group: "edge-2", Connected: true, Role: standby, Epoch: 8, Holding: true, DesiredRevision: 9, AppliedRevision: 9},
		{Director: "dir-e", Group: "edge-2", Connected: true, Role: active, Epoch: 8, DesiredRevision: 9, AppliedRevision: 9},
	}
}

func TestStatusRoles(t *testing.T) {
	p, err := New(Table)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Status(&b, failoverFleet()); err != nil {
		t.Fatal(err)
	}
	want := `NAME   GROUP   CONNECTED  ROLE                  DESIRED  APPLIED  STATE         ERRORS  EPOCH  PEERS                             SYNC           ACTIVE  INACTIVE  PERSISTENT  CPS
dir-a  edge-1  yes        ACTIVE                9        9        applied       0       42     dir-b ok                          master+backup  0       0         0           0
dir-b  edge-1  yes        STANDBY               9        9        applied       0       42     dir-a ok                          master+backup  0       0         0           0
dir-c  edge-2  no         ACTIVE (fenced)       9        9        disconnected  0       7      dir-d lost (host up), dir-e lost  error          0       0         0           0
dir-d  edge-2  yes        STANDBY (holding)     9        9        applied       0       8      -                                 -              0       0         0           0
dir-e  edge-2  yes        ACTIVE (not holding)  9        9        applied       0       8      -                                 -              0       0         0           0

Fenced:
  dir-c: no answer to heartbeats for 300ms

Sync errors:
  dir-c: backup daemon: no such device eth1
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestStatusRolesJSON: the keys scripts read (issue 7: name, role, epoch, connected, peer
// reachability, the sync daemons' state), with lvsctl's names.
func TestStatusRolesJSON(t *testing.T) {
	p, err := NewStream(JSON)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Status(&b, failoverFleet()[2:3]); err != nil {
		t.Fatal(err)
	}
	want := `[{"name":"dir-c","group":"edge-2","connected":false,"role":"ACTIVE","epoch":7,"holding":false,"fenced":"no answer to heartbeats for 300ms",` +
		`"peers":[{"name":"dir-d","reachable":false,"hostReachable":true,"heardAgoMs":900,"role":"STANDBY","epoch":7,"holding":false},` +
		`{"name":"dir-e","reachable":false,"hostReachable":false,"heardAgoMs":-1,"role":"","epoch":0,"holding":false}],` +
		`"sync":{"master":true,"backup":false,"interface":"eth1","syncId":8,"error":"backup daemon: no such device eth1"},` +
		`"desiredRevision":9,"appliedRevision":9,"state":"disconnected","errors":[],"activeConns":0,"inactiveConns":0,"persistentConns":0,"cps":0}]` + "\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	var back []StatusView
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back) != 1 || back[0].Sync == nil || len(back[0].Peers) != 2 {
		t.Errorf("does not read back: %v %+v", err, back)
	}
}

func TestDirectorsTableRoles(t *testing.T) {
	p, err := New(Table)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Directors(&b, failoverFleet()[2:]); err != nil {
		t.Fatal(err)
	}
	want := `NAME   GROUP   CONNECTED  ROLE                  EPOCH  DESIRED  APPLIED  VERSION
dir-c  edge-2  no         ACTIVE (fenced)       7      9        9        -
dir-d  edge-2  yes        STANDBY (holding)     8      9        9        -
dir-e  edge-2  yes        ACTIVE (not holding)  8      9        9        -
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

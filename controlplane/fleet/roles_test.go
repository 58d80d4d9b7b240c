package fleet

import (
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestStatusShowsTheRoleTheAgentObeys: a director's role and epoch are what its agent
// reported obeying on its current stream, else the stored assignment; holding, fenced, peers
// and sync are only ever what it reported, and go when its stream does.
func TestStatusShowsTheRoleTheAgentObeys(t *testing.T) {
	f := New()
	stored := func(role lvsctlv1.Role, epoch uint64) {
		f.SetConfig(map[string]Desired{"dir-a": {Group: "edge-1", Revision: 9,
			Role: &lvsctlv1.RoleAssignment{Group: "edge-1", Role: role, Epoch: epoch}}})
	}
	type want struct {
		role    lvsctlv1.Role
		epoch   uint64
		holding bool
		fenced  string
		peers   int
		sync    bool
	}
	check := func(step string, w want) {
		t.Helper()
		d := f.List("")[0]
		got := want{d.GetRole(), d.GetEpoch(), d.GetHolding(), d.GetFenced(), len(d.GetPeers()), d.GetSync() != nil}
		if got != w {
			t.Errorf("%s: status %+v, want %+v", step, got, w)
		}
	}
	stored(lvsctlv1.Role_ROLE_ACTIVE, 10)
	f.Update("dir-a", func(d *lvsctlv1.DirectorStatus) { d.Connected = true })
	check("connected, nothing reported", want{role: lvsctlv1.Role_ROLE_ACTIVE, epoch: 10})

	f.RoleStatus("dir-a", &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 10, Role: lvsctlv1.Role_ROLE_ACTIVE, Holding: true,
		Peers: []*lvsctlv1.PeerStatus{{Director: "dir-b", Reachable: true}}, Sync: &lvsctlv1.SyncStatus{Master: true, Backup: true}})
	check("reported holding", want{lvsctlv1.Role_ROLE_ACTIVE, 10, true, "", 1, true})

	// A takeover is stored; the agent has not obeyed it yet: status says what it obeys.
	stored(lvsctlv1.Role_ROLE_STANDBY, 12)
	check("new assignment not yet obeyed", want{lvsctlv1.Role_ROLE_ACTIVE, 10, true, "", 1, true})

	f.RoleStatus("dir-a", &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 12, Role: lvsctlv1.Role_ROLE_STANDBY})
	check("obeyed", want{role: lvsctlv1.Role_ROLE_STANDBY, epoch: 12})

	f.RoleStatus("dir-a", &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 12, Role: lvsctlv1.Role_ROLE_STANDBY, Holding: true, Fenced: "x"})
	f.Disconnected("dir-a")
	check("disconnected: nothing claimed held", want{role: lvsctlv1.Role_ROLE_STANDBY, epoch: 12})
	if f.List("")[0].GetConnected() {
		t.Error("disconnected director shown connected")
	}

	// A new stream starts with nothing reported: what the old one said is not what it obeys.
	f.Update("dir-a", func(d *lvsctlv1.DirectorStatus) { d.Connected = true })
	f.RoleStatus("dir-a", &lvsctlv1.RoleStatus{Group: "edge-1", Epoch: 12, Role: lvsctlv1.Role_ROLE_STANDBY, Holding: true})
	f.RoleStatus("dir-a", nil)
	stored(lvsctlv1.Role_ROLE_ACTIVE, 14)
	check("new stream, stored assignment", want{role: lvsctlv1.Role_ROLE_ACTIVE, epoch: 14})
}

package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// kernel is a director's fake kernel, kept across agent restarts.
type kernel struct {
	ipvs  *fake.IPVS
	fw    *fake.Firewall
	addrs *fake.Addresses
}

func newKernel() kernel {
	return kernel{ipvs: fake.NewIPVS(), fw: fake.NewFirewall(), addrs: fake.NewAddresses("eth0")}
}

// picture is everything the kernel holds and how many changes it has seen.
func (k kernel) picture() string {
	return fmt.Sprintf("%s--\n%s--\n%s--\nchanges: ipvs %d, nftables %d, addresses %d",
		k.ipvs.Dump(), k.fw.Dump(), k.addrs.Dump(), len(k.ipvs.Ops()), len(k.fw.Ops()), len(k.addrs.Ops()))
}

// startOn runs an agent on the state in dir and the kernel k.
func startOn(t *testing.T, dir string, sess *fakeSession, k kernel, o envOptions, edit func(*Config)) *agentEnv {
	t.Helper()
	o.ipvs = k.ipvs
	return startAgentWith(t, dir, sess, o, func(c *Config) {
		rec := reconcile.New(reconcile.Config{Logger: c.Logger, IPVS: k.ipvs, Firewall: k.fw, Addresses: k.addrs, State: c.State})
		c.Reconciler, c.Addresses = nonNilReconciler{t, rec}, k.addrs
		if edit != nil {
			edit(c)
		}
	})
}

// saved is the state directory's two files.
func saved(t *testing.T, dir string) [2][]byte {
	t.Helper()
	var out [2][]byte
	for i, name := range []string{state.FileName, state.JournalName} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// refusedCount is lvsctl_agent_refused_total{reason}.
func refusedCount(t *testing.T, e *agentEnv, reason string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lvsctl_agent_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" && lp.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// sentUntil returns what the agent sent up to and including the first message match accepts.
func (e *agentEnv) sentUntil(t *testing.T, match func(*lvsctlv1.ConnectRequest) bool) []*lvsctlv1.ConnectRequest {
	t.Helper()
	var out []*lvsctlv1.ConnectRequest
	deadline := time.After(wait)
	for {
		select {
		case m := <-e.sess.sent:
			out = append(out, m)
			if match(m) {
				return out
			}
		case <-deadline:
			t.Fatalf("the agent did not send the awaited message within %s", wait)
			return nil
		}
	}
}

func ackSaying(s string) func(*lvsctlv1.ConnectRequest) bool {
	return func(m *lvsctlv1.ConnectRequest) bool {
		return m.GetAck() != nil && strings.Contains(strings.Join(m.GetAck().GetDirectorErrors(), "\n"), s)
	}
}

// TestRefusalsKeepKernelAndState: on an agent that applied revision 5 (ACTIVE at epoch 5 of
// edge-1), each refusal leaves the kernel as it was (same content, no change made) and the
// saved state as it was, is acked with why, and is counted under its reason.
func TestRefusalsKeepKernelAndState(t *testing.T) {
	delta := func(prev, rev int64, g *lvsctlv1.DirectorGroup, roles *lvsctlv1.GroupRoles) *lvsctlv1.ConnectResponse {
		return &lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Delta{Delta: &lvsctlv1.Delta{PrevRevision: prev, Revision: rev, Group: g, Roles: roles}}}
	}
	foreign := &lvsctlv1.DirectorGroup{Name: "edge-9", VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-x", Priority: 100}}}
	tests := []struct {
		name   string
		msg    *lvsctlv1.ConnectResponse
		reason string
		says   string // in the ack's director errors
		ackRev int64  // the revision the ack claims
		// roleOnly: the state is applied (a later revision is saved); only the role is kept.
		roleOnly bool
	}{
		{"a snapshot for another director's group", withRoles(&lvsctlv1.ConnectResponse{Msg: &lvsctlv1.ConnectResponse_Snapshot{Snapshot: &lvsctlv1.Snapshot{
			Revision: 6, State: &lvsctlv1.DesiredState{Group: foreign, Clusters: []*lvsctlv1.Cluster{web("edge-9")}}}}}, "edge-9", "dir-x", 9),
			metrics.RefusedNotInGroup, `is for director group "edge-9", which does not list this director "dir-a"`, 0, false},
		{"a delta into another director's group", delta(5, 6, foreign, nil),
			metrics.RefusedNotInGroup, `director group "edge-9", which does not list this director "dir-a"`, 0, false},
		{"an older snapshot", withRoles(snapshot(4, "edge-1"), "edge-1", "dir-a", 5),
			metrics.RefusedRevision, "snapshot at revision 4 is older than the revision this director applied (5)", 0, false},
		{"an older delta", delta(3, 4, nil, nil),
			metrics.RefusedRevision, "delta at revision 4 is older than the revision this director applied (5)", 0, false},
		{"a snapshot at an older epoch", withRoles(snapshot(5, "edge-1", web("edge-1")), "edge-1", "dir-b", 4),
			metrics.RefusedEpoch, `role assignment of director group "edge-1" at epoch 4 is older than the epoch this director obeys (5)`, 5, false},
		{"a delta at an older epoch", delta(5, 6, nil, &lvsctlv1.GroupRoles{Group: "edge-1", Active: "dir-b", Epoch: 4}),
			metrics.RefusedEpoch, "at epoch 4 is older than the epoch this director obeys (5)", 6, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, k := t.TempDir(), newKernel()
			e := startOn(t, dir, newFakeSession(true), k, envOptions{}, nil)
			e.deliver(t, withRoles(snapshot(5, "edge-1", web("edge-1")), "edge-1", "dir-a", 5))
			e.waitSent(t, isAck(5))
			if k.addrs.Dump() != vipLine || !strings.Contains(k.ipvs.Dump(), "fwm 17") {
				t.Fatalf("revision 5 not applied:\n%s", k.picture())
			}
			kernelBefore, savedBefore := k.picture(), saved(t, dir)

			e.deliver(t, tt.msg)
			sent := e.sentUntil(t, ackSaying(tt.says))
			if ack := sent[len(sent)-1].GetAck(); ack.GetRevision() != tt.ackRev {
				t.Errorf("the refusal's ack claims revision %d, want %d", ack.GetRevision(), tt.ackRev)
			}
			for _, m := range sent {
				if m.GetSnapshotRequest() != nil {
					t.Errorf("asked for a snapshot: a refusal is not a gap to fill")
				}
			}
			if got := k.picture(); got != kernelBefore {
				t.Errorf("the kernel changed:\n%s\nwas\n%s", got, kernelBefore)
			}
			if got := saved(t, dir); tt.roleOnly {
				st, err := state.Load(dir)
				if err != nil {
					t.Fatal(err)
				}
				if d, _ := st.Desired(); d.Role.GetRole() != active || d.Role.GetEpoch() != 5 {
					t.Errorf("saved role %v, want ACTIVE at epoch 5", d.Role)
				}
			} else if !bytes.Equal(got[0], savedBefore[0]) || !bytes.Equal(got[1], savedBefore[1]) {
				t.Errorf("the saved state changed")
			}
			if n := refusedCount(t, e, tt.reason); n != 1 {
				t.Errorf("lvsctl_agent_refused_total{reason=%q} = %v, want 1", tt.reason, n)
			}
		})
	}
}

// TestDamagedStateFile: a state file with one byte changed on disk is reported by Load; the
// agent then applies nothing offline and keeps the kernel as it is, says why to the controller
// once connected, counts it, and applies the controller's snapshot as usual: what the damaged
// state.json listed is edited in place (adopted), not refused as foreign.
func TestDamagedStateFile(t *testing.T) {
	const offlineAfter = 20 * time.Millisecond
	for _, tc := range []struct {
		name string
		at   func(b []byte) int // the byte changed
	}{
		{state.JournalName, func(b []byte) int { return len(b) / 2 }},
		{state.JournalName, func(b []byte) int { return len(b) - 1 }},
		// One that no longer parses (its entries are still found), and one whose checksum
		// no longer matches its content.
		{state.FileName, func([]byte) int { return 0 }},
		{state.FileName, func(b []byte) int { return bytes.Index(b, []byte(`"sha256": "`)) + 12 }},
	} {
		name := tc.name
		t.Run(name, func(t *testing.T) {
			dir, k := t.TempDir(), newKernel()
			first := startOn(t, dir, newFakeSession(true), k, envOptions{}, nil)
			first.deliver(t, withRoles(snapshot(3, "edge-1", web("edge-1")), "edge-1", "dir-a", 1))
			first.waitSent(t, isAck(3))
			first.stop()

			path := filepath.Join(dir, name)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[tc.at(b)] ^= 0x04
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := state.Load(dir); !errors.Is(err, state.ErrIntegrity) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Load of the damaged %s = %v, want ErrIntegrity naming it", name, err)
			}
			kernelBefore := k.picture()

			sess := newFakeSession(true)
			e := startOn(t, dir, sess, k, envOptions{damaged: true}, func(c *Config) { c.OfflineAfter = offlineAfter })
			ack := e.waitSent(t, ackSaying("failed its integrity check")).GetAck()
			if ack.GetRevision() != 0 || !strings.Contains(ack.GetDirectorErrors()[0], path) ||
				!strings.Contains(ack.GetDirectorErrors()[0], "waiting for the controller") {
				t.Errorf("the report: %v, want revision 0, the file and what the agent does", ack)
			}
			time.Sleep(10 * offlineAfter)
			select {
			case rev := <-e.applied:
				t.Fatalf("revision %d applied from a damaged state", rev)
			default:
			}
			if got := k.picture(); got != kernelBefore {
				t.Errorf("the kernel changed before the controller's state:\n%s\nwas\n%s", got, kernelBefore)
			}
			if n := refusedCount(t, e, metrics.RefusedStateIntegrity); n != 1 {
				t.Errorf("lvsctl_agent_refused_total{reason=state_integrity} = %v, want 1", n)
			}

			// The controller's state: web's real server at weight 7.
			k.ipvs.ResetOps()
			heavier := web("edge-1")
			heavier.Reals[0].Weight = 7
			e.deliver(t, withRoles(snapshot(4, "edge-1", heavier), "edge-1", "dir-a", 1))
			ack = e.waitSent(t, isAck(4)).GetAck()
			if len(ack.GetErrors())+len(ack.GetDirectorErrors()) > 0 {
				t.Errorf("the controller's state applied with errors: %v", ack)
			}
			if ops := fmt.Sprint(k.ipvs.Ops()); ops != "[UpdateDestination fwm 17 ipv4 198.51.100.11:0]" {
				t.Errorf("IPVS changes %s, want the weight edited in place", ops)
			}
			if d := k.addrs.Dump(); d != vipLine {
				t.Errorf("addresses %q, want the VIP kept", d)
			}
			e.stop()
			st, err := state.Load(dir)
			if err != nil {
				t.Fatalf("after the controller's state was saved: Load = %v", err)
			}
			if d, _ := st.Desired(); d.Revision != 4 || len(st.OwnedServices()) != 1 || len(st.OwnedAddresses()) != 1 {
				t.Errorf("saved revision %d, owns %v %v", d.Revision, st.OwnedServices(), st.OwnedAddresses())
			}
			if e.sess.attemptsOf(&lvsctlv1.ConnectRequest_SnapshotRequest{}) != 0 {
				t.Error("asked for a snapshot")
			}
		})
	}
}

// TestAcceptOlderRevision: a restarted agent refuses a controller's older revision; with
// AcceptOlderRevision it applies it once, and refuses one older than that again.
func TestAcceptOlderRevision(t *testing.T) {
	dir, k := t.TempDir(), newKernel()
	first := startOn(t, dir, newFakeSession(true), k, envOptions{}, nil)
	first.deliver(t, withRoles(snapshot(50, "edge-1", web("edge-1")), "edge-1", "dir-a", 50))
	first.waitSent(t, isAck(50))
	first.stop()

	refused := startOn(t, dir, newFakeSession(true), k, envOptions{}, nil)
	refused.deliver(t, withRoles(snapshot(12, "edge-1"), "edge-1", "dir-a", 12))
	refused.waitSent(t, ackSaying("snapshot at revision 12 is older than the revision this director applied (50)"))
	refused.stop()
	if !strings.Contains(k.ipvs.Dump(), "fwm 17") {
		t.Fatalf("the refused state reached the kernel:\n%s", k.picture())
	}

	e := startOn(t, dir, newFakeSession(true), k, envOptions{}, func(c *Config) { c.AcceptOlderRevision = true })
	e.deliver(t, withRoles(snapshot(12, "edge-1"), "edge-1", "dir-a", 12))
	e.waitSent(t, isAck(12))
	if strings.Contains(k.ipvs.Dump(), "fwm 17") || k.addrs.Dump() != "" {
		t.Errorf("revision 12 (no clusters) accepted but not applied:\n%s", k.picture())
	}
	e.deliver(t, withRoles(snapshot(11, "edge-1"), "edge-1", "dir-a", 12))
	e.waitSent(t, ackSaying("snapshot at revision 11 is older than the revision this director applied (12)"))
}

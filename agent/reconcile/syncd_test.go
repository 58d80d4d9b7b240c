package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

func withSync(d *lvsctlv1.DesiredState, iface string, id uint32) *lvsctlv1.DesiredState {
	d.Group.Sync = &lvsctlv1.Sync{Interface: iface, SyncId: id}
	return d
}

func daemons(e *env) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(e.ipvs.Dump(), "\n") {
		if strings.HasPrefix(l, "sync ") {
			b.WriteString(l)
		}
	}
	return b.String()
}

const both7 = "sync master eth1 syncid 7\nsync backup eth1 syncid 7\n"

// TestSyncDaemons: a group with sync runs a master and a backup with its settings on every
// director, ACTIVE or not; drift and changed settings are repaired; a daemon the agent did not
// start stays unless the group's sync needs its place.
func TestSyncDaemons(t *testing.T) {
	start := func(t *testing.T, e *env, d dataplane.SyncDaemon) {
		t.Helper()
		if err := e.ipvs.StartSyncDaemon(d); err != nil {
			t.Fatal(err)
		}
	}
	master := func(iface string, id uint8) dataplane.SyncDaemon {
		return dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: iface, SyncID: id}
	}
	backup := func(iface string, id uint8) dataplane.SyncDaemon {
		return dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: iface, SyncID: id}
	}
	okStatus := func(iface string, id uint32) *lvsctlv1.SyncStatus {
		return &lvsctlv1.SyncStatus{Master: true, Backup: true, Interface: iface, SyncId: id}
	}
	tests := []struct {
		name   string
		before func(t *testing.T, e *env) // run before the step's Apply
		steps  []*lvsctlv1.DesiredState
		role   *lvsctlv1.RoleAssignment
		ops    []string // the last step's daemon ops
		want   string   // the daemons after the last step
		status *lvsctlv1.SyncStatus
	}{{
		name:   "both start on the ACTIVE",
		steps:  []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7)},
		role:   active,
		ops:    []string{"StartSyncDaemon dev eth1", "StartSyncDaemon dev eth1"},
		want:   both7,
		status: okStatus("eth1", 7),
	}, {
		name:   "both start on a STANDBY",
		steps:  []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7)},
		role:   standby,
		ops:    []string{"StartSyncDaemon dev eth1", "StartSyncDaemon dev eth1"},
		want:   both7,
		status: okStatus("eth1", 7),
	}, {
		name:   "as configured: nothing to do",
		steps:  []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7), withSync(desired(wms()), "eth1", 7)},
		role:   active,
		want:   both7,
		status: okStatus("eth1", 7),
	}, {
		name:   "a stopped backup is started again",
		steps:  []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7), withSync(desired(wms()), "eth1", 7)},
		before: func(t *testing.T, e *env) { mustDo(t, e.ipvs.StopSyncDaemon(dataplane.SyncBackup)) },
		role:   active,
		ops:    []string{"StartSyncDaemon dev eth1"},
		want:   both7,
		status: okStatus("eth1", 7),
	}, {
		name:  "a master changed by hand is replaced",
		steps: []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7), withSync(desired(wms()), "eth1", 7)},
		before: func(t *testing.T, e *env) {
			mustDo(t, e.ipvs.StopSyncDaemon(dataplane.SyncMaster))
			start(t, e, master("eth0", 9))
		},
		role:   active,
		ops:    []string{"StartSyncDaemon dev eth1", "StopSyncDaemon dev eth0"},
		want:   both7,
		status: okStatus("eth1", 7),
	}, {
		name:   "a new sync id restarts both",
		steps:  []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7), withSync(desired(wms()), "eth1", 8)},
		role:   active,
		ops:    []string{"StartSyncDaemon dev eth1", "StartSyncDaemon dev eth1", "StopSyncDaemon dev eth1", "StopSyncDaemon dev eth1"},
		want:   "sync master eth1 syncid 8\nsync backup eth1 syncid 8\n",
		status: okStatus("eth1", 8),
	}, {
		name:  "sync removed: the agent's daemons stop",
		steps: []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7), desired(wms())},
		role:  active,
		ops:   []string{"StopSyncDaemon dev eth1", "StopSyncDaemon dev eth1"},
		want:  "",
	}, {
		name:   "no sync: an operator's daemons stay",
		steps:  []*lvsctlv1.DesiredState{desired(wms())},
		before: func(t *testing.T, e *env) { start(t, e, master("eth0", 3)); start(t, e, backup("eth0", 3)) },
		role:   active,
		want:   "sync master eth0 syncid 3\nsync backup eth0 syncid 3\n",
	}, {
		name:  "sync removed: a backup the operator replaced stays",
		steps: []*lvsctlv1.DesiredState{withSync(desired(wms()), "eth1", 7), desired(wms())},
		before: func(t *testing.T, e *env) {
			mustDo(t, e.ipvs.StopSyncDaemon(dataplane.SyncBackup))
			start(t, e, backup("eth0", 3))
		},
		role: active,
		ops:  []string{"StopSyncDaemon dev eth1"},
		want: "sync backup eth0 syncid 3\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			var res reconciledSync
			for i, d := range tt.steps {
				if i == len(tt.steps)-1 && tt.before != nil {
					tt.before(t, e)
				}
				r, ops := e.apply(t, d, tt.role)
				if len(r.DirectorErrors) > 0 {
					t.Fatalf("step %d: director errors %v", i, r.DirectorErrors)
				}
				res = reconciledSync{r.Sync, daemonOps(ops)}
			}
			if !slices.Equal(res.ops, tt.ops) {
				t.Errorf("daemon ops %q, want %q", res.ops, tt.ops)
			}
			if got := daemons(e); got != tt.want {
				t.Errorf("daemons:\n%s\nwant:\n%s", got, tt.want)
			}
			if !proto.Equal(res.status, tt.status) {
				t.Errorf("Result.Sync = %v, want %v", res.status, tt.status)
			}
		})
	}
}

type reconciledSync struct {
	status *lvsctlv1.SyncStatus
	ops    []string
}

func daemonOps(ops []string) []string {
	var out []string
	for _, o := range ops {
		if strings.Contains(o, "SyncDaemon") {
			out = append(out, o)
		}
	}
	return out
}

// TestSyncDaemonErrors: what cannot be run is a director error and in the status, which
// claims only the daemons the kernel runs; an invalid sync changes nothing.
func TestSyncDaemonErrors(t *testing.T) {
	t.Run("missing interface", func(t *testing.T) {
		e := newEnv(t)
		e.ipvs.SetInterfaces("lo", "eth0", "eth1")
		res, _ := e.apply(t, withSync(desired(wms()), "eth9", 7), active)
		if len(res.DirectorErrors) != 2 || !strings.Contains(res.DirectorErrors[0], `"eth9"`) {
			t.Errorf("director errors %q, want one per daemon naming eth9", res.DirectorErrors)
		}
		s := res.Sync
		if s.GetMaster() || s.GetBackup() || s.GetError() == "" || s.GetInterface() != "eth9" {
			t.Errorf("Result.Sync = %v, want neither running, with the error", s)
		}
		if !strings.Contains(e.addrs.Dump(), "192.0.2.10/32") {
			t.Error("the VIP was not added: a sync error stopped the rest of the reconcile")
		}
	})
	t.Run("the backup refused", func(t *testing.T) {
		e := newEnv(t)
		mustDo(t, e.ipvs.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 7}))
		// The master runs as configured, so the one start is the backup's.
		e.ipvs.FailNext("StartSyncDaemon", errors.Join(errors.New("no memory"), syscall.ENOMEM))
		res, _ := e.apply(t, withSync(desired(wms()), "eth1", 7), active)
		if s := res.Sync; !s.GetMaster() || s.GetBackup() || !strings.Contains(s.GetError(), "backup") {
			t.Errorf("Result.Sync = %v, want the master running and the backup's error", s)
		}
		// Retried by the next reconcile, a delta included: director errors send it down the
		// full path.
		r := e.r.ApplyDelta(context.Background(), &lvsctlv1.Delta{}, active)
		if s := r.Sync; !s.GetMaster() || !s.GetBackup() || s.GetError() != "" {
			t.Errorf("after the retry Result.Sync = %v, want both running", s)
		}
	})
	for _, tt := range []struct {
		name, iface, field string
		id                 uint32
	}{
		{"sync id above a byte", "eth1", "sync.sync_id", 256},
		{"empty interface", "", "sync.interface", 7},
		{"interface name too long", "a-name-of-16-byt", "sync.interface", 7},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			mustDo(t, e.ipvs.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 7}))
			res, ops := e.apply(t, withSync(desired(wms()), tt.iface, tt.id), active)
			if len(res.DirectorErrors) != 1 || !strings.Contains(res.DirectorErrors[0], tt.field) {
				t.Errorf("director errors %q, want one naming %s", res.DirectorErrors, tt.field)
			}
			if ops := daemonOps(ops); len(ops) != 0 {
				t.Errorf("daemon ops %q, want none", ops)
			}
			if got := daemons(e); got != "sync master eth1 syncid 7\n" {
				t.Errorf("daemons changed:\n%s", got)
			}
			if s := res.Sync; s.GetMaster() || s.GetBackup() || !strings.Contains(s.GetError(), tt.field) {
				t.Errorf("Result.Sync = %v, want nothing claimed and the error", s)
			}
		})
	}
	t.Run("IPVS unavailable", func(t *testing.T) {
		e := newEnv(t)
		e.ipvs.FailWhen(func(o fake.Op) error { return dataplane.ErrUnavailable })
		res, _ := e.apply(t, withSync(desired(wms()), "eth1", 7), active)
		if s := res.Sync; s.GetMaster() || s.GetBackup() || s.GetError() == "" {
			t.Errorf("Result.Sync = %v, want nothing running and why", s)
		}
	})
}

// TestSyncDaemonsDelta: a delta that changes the group reconciles the daemons; one that does
// not leaves them unread and repeats the last status.
func TestSyncDaemonsDelta(t *testing.T) {
	e := newEnv(t)
	e.mustClean(t, desired(wms()), active)
	g := group()
	g.Sync = &lvsctlv1.Sync{Interface: "eth1", SyncId: 7}
	res, ops := e.applyDelta(t, &lvsctlv1.Delta{Group: g}, active)
	if len(res.director) > 0 || !slices.Equal(daemonOps(ops), []string{"StartSyncDaemon dev eth1", "StartSyncDaemon dev eth1"}) {
		t.Fatalf("group delta: errors %v, daemon ops %q; want both started", res.director, daemonOps(ops))
	}
	reads := 0
	e.ipvs.FailWhen(func(o fake.Op) error {
		if o.Name == "SyncDaemons" {
			reads++
		}
		return nil
	})
	r := e.r.ApplyDelta(context.Background(), &lvsctlv1.Delta{Upserted: []*lvsctlv1.Cluster{web()}}, active)
	if reads != 0 {
		t.Errorf("a delta without the group read the daemons %d times", reads)
	}
	if want := (&lvsctlv1.SyncStatus{Master: true, Backup: true, Interface: "eth1", SyncId: 7}); !proto.Equal(r.Sync, want) {
		t.Errorf("delta Result.Sync = %v, want %v", r.Sync, want)
	}
}

package fake_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
)

// TestSyncDaemonsRefuse: the fake's sync daemons refuse what the kernel refuses, with the
// same errno and dataplane sentinel, and change nothing when they do.
func TestSyncDaemonsRefuse(t *testing.T) {
	f := fake.NewIPVS()
	f.SetInterfaces("eth1")
	master := dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 7}
	backup := dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "eth1", SyncID: 7}
	for _, d := range []dataplane.SyncDaemon{master, backup} {
		if err := f.StartSyncDaemon(d); err != nil {
			t.Fatalf("start %s: %v", d, err)
		}
	}
	if got, want := f.Dump(), "sync master eth1 syncid 7\nsync backup eth1 syncid 7\n"; got != want {
		t.Fatalf("Dump = %q, want %q", got, want)
	}
	refused := []struct {
		name  string
		call  func() error
		is    error
		errno syscall.Errno
	}{
		{"a running state, other settings", func() error {
			return f.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 8})
		}, dataplane.ErrExist, syscall.EEXIST},
		{"an interface the kernel lacks", func() error {
			return f.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "eth9"})
		}, dataplane.ErrNotExist, syscall.ENODEV},
		{"state 3", func() error { return f.StartSyncDaemon(dataplane.SyncDaemon{State: 3, Interface: "eth1"}) }, nil, syscall.EINVAL},
		{"a name of 16 bytes", func() error {
			return f.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "a-name-of-16-byt"})
		}, nil, syscall.EINVAL},
		{"stop state 0", func() error { return f.StopSyncDaemon(0) }, nil, syscall.EINVAL},
	}
	for _, r := range refused {
		err := r.call()
		if !errors.Is(err, r.errno) || (r.is != nil && !errors.Is(err, r.is)) {
			t.Errorf("%s: %v, want %v and %v", r.name, err, r.is, r.errno)
		}
	}
	if got, err := f.SyncDaemons(); err != nil || len(got) != 2 || got[0] != master || got[1] != backup {
		t.Fatalf("after refusals: %v, %v; want master and backup unchanged", got, err)
	}
	if err := f.StopSyncDaemon(dataplane.SyncMaster); err != nil {
		t.Fatal(err)
	}
	if err := f.StopSyncDaemon(dataplane.SyncMaster); !errors.Is(err, dataplane.ErrNotExist) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stopping a stopped master: %v, want ErrNotExist and ESRCH", err)
	}
	if got, err := f.SyncDaemons(); err != nil || len(got) != 1 || got[0] != backup {
		t.Errorf("after stopping the master: %v, %v; want the backup alone", got, err)
	}
	if ops := f.Ops(); len(ops) != 3 {
		t.Errorf("ops %v, want 2 starts and 1 stop", ops)
	}
}

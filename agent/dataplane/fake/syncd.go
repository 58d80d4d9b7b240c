package fake

import (
	"fmt"
	"slices"
	"syscall"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// The fake's IPVS sync daemons refuse what the kernel's start_sync_thread and
// stop_sync_thread refuse (Linux net/netfilter/ipvs/ip_vs_sync.c, ip_vs_ctl.c): a state other
// than master or backup (EINVAL); an interface name that is empty or not shorter than
// IFNAMSIZ (EINVAL from the netlink policy; ENODEV for ""); an interface the namespace does
// not have (ENODEV), when the fake was told its interfaces (SetInterfaces); a state that
// already runs (EEXIST), whatever its settings; stopping a state that does not run (ESRCH).
// Master and backup run at once, independently.

// SetInterfaces tells the fake which interfaces exist, so that a daemon on another one is
// refused with ENODEV as the kernel refuses it. Without it, any name is taken.
func (f *IPVS) SetInterfaces(names ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ifaces = slices.Clone(names)
}

// SyncDaemons lists the running sync daemons, master first.
func (f *IPVS) SyncDaemons() ([]dataplane.SyncDaemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.faults.check(Op{Name: "SyncDaemons"}); err != nil {
		return nil, err
	}
	var out []dataplane.SyncDaemon
	for _, s := range []dataplane.SyncState{dataplane.SyncMaster, dataplane.SyncBackup} {
		if d, ok := f.daemons[s]; ok {
			out = append(out, d)
		}
	}
	return out, nil
}

// StartSyncDaemon starts a daemon; a running one of the same state is refused with
// dataplane.ErrExist, a missing interface with dataplane.ErrNotExist.
func (f *IPVS) StartSyncDaemon(d dataplane.SyncDaemon) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "StartSyncDaemon", Interface: d.Interface}
	if err := f.faults.check(op); err != nil {
		return err
	}
	switch {
	case d.State != dataplane.SyncMaster && d.State != dataplane.SyncBackup:
		return fmt.Errorf("start sync daemon %s: %w", d, syscall.EINVAL)
	case d.Interface == "":
		return fmt.Errorf("start sync daemon %s: interface \"\": %w: %w", d, dataplane.ErrNotExist, syscall.ENODEV)
	case len(d.Interface) >= 16:
		return fmt.Errorf("start sync daemon %s: interface name too long: %w", d, syscall.EINVAL)
	case f.ifaces != nil && !slices.Contains(f.ifaces, d.Interface):
		return fmt.Errorf("start sync daemon %s: interface %q: %w: %w", d, d.Interface, dataplane.ErrNotExist, syscall.ENODEV)
	}
	if _, ok := f.daemons[d.State]; ok {
		return fmt.Errorf("start sync daemon %s: %w: %w", d, dataplane.ErrExist, syscall.EEXIST)
	}
	if f.daemons == nil {
		f.daemons = map[dataplane.SyncState]dataplane.SyncDaemon{}
	}
	f.daemons[d.State] = d
	f.ops = append(f.ops, op)
	return nil
}

// StopSyncDaemon stops the daemon of state s; none running is refused with
// dataplane.ErrNotExist.
func (f *IPVS) StopSyncDaemon(s dataplane.SyncState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := Op{Name: "StopSyncDaemon", Interface: f.daemons[s].Interface}
	if err := f.faults.check(op); err != nil {
		return err
	}
	if s != dataplane.SyncMaster && s != dataplane.SyncBackup {
		return fmt.Errorf("stop sync daemon %s: %w", s, syscall.EINVAL)
	}
	if _, ok := f.daemons[s]; !ok {
		return fmt.Errorf("stop sync daemon %s: %w: %w", s, dataplane.ErrNotExist, syscall.ESRCH)
	}
	delete(f.daemons, s)
	f.ops = append(f.ops, op)
	return nil
}

package reconcile

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// maxSyncID is the largest sync id: the kernel keeps it in one byte.
const maxSyncID = 255

// syncStates are the two daemons a group with sync runs on every director, whatever its role:
// a master sends only the connections that see packets here, so only the ACTIVE's master
// sends; a demoted ACTIVE's master still flushes what it had queued, and every backup keeps
// receiving, so a failback finds the connections it handed over.
var syncStates = [...]dataplane.SyncState{dataplane.SyncMaster, dataplane.SyncBackup}

// syncDaemons makes the kernel's sync daemons match the group's sync: with sync, a master and
// a backup on its interface with its sync id, a daemon with other settings stopped and started
// again (the namespace has room for one of each state); without, the daemons that match the
// last desired sync (the ones the agent started) stopped, and any other left to whoever
// started it. ipvsErr is the error of this reconcile's IPVS read: with IPVS unavailable,
// nothing is tried. It returns the status, read back from the kernel after any change; nil
// when the group has no sync.
func (a *apply) syncDaemons(group *lvsctlv1.DirectorGroup, last *lvsctlv1.Sync, ipvsErr error) *lvsctlv1.SyncStatus {
	want := group.GetSync()
	if want == nil && last == nil {
		return nil // nothing to run, nothing of the agent's to stop: not even a read
	}
	var st *lvsctlv1.SyncStatus
	var errs []string
	fail := func(err error) {
		a.directorErr(err)
		errs = append(errs, err.Error())
	}
	defer func() {
		if st != nil && len(errs) > 0 {
			st.Error = strings.Join(errs, "; ")
		}
	}()
	if want != nil {
		st = &lvsctlv1.SyncStatus{Interface: want.GetInterface(), SyncId: want.GetSyncId()}
		if err := validSync(want); err != nil {
			fail(fmt.Errorf("director group %q: %w; sync daemons left as they are", group.GetName(), err))
			return st
		}
	}
	if errors.Is(ipvsErr, dataplane.ErrUnavailable) {
		if st != nil {
			errs = append(errs, fmt.Sprintf("sync daemons not started: %v", ipvsErr))
		}
		return st
	}
	if a.interrupted() {
		return st
	}
	running, err := a.r.ipvs.SyncDaemons()
	if err != nil {
		fail(fmt.Errorf("read sync daemons: %w", err))
		return st
	}
	changed := false
	stop := func(d dataplane.SyncDaemon) bool {
		err := a.r.ipvs.StopSyncDaemon(d.State)
		switch {
		case errors.Is(err, dataplane.ErrNotExist):
			return true // stopped since it was read
		case err != nil:
			fail(fmt.Errorf("stop sync daemon %s: %w", d, err))
			return false
		}
		changed = true
		a.syncDone("stop-sync-daemon", d)
		return true
	}
	if want == nil {
		for _, d := range running {
			if d.Interface == last.GetInterface() && uint32(d.SyncID) == last.GetSyncId() {
				stop(d)
			}
		}
		return nil
	}
	for _, s := range syncStates {
		w := dataplane.SyncDaemon{State: s, Interface: want.GetInterface(), SyncID: uint8(want.GetSyncId())}
		i := indexOfState(running, s)
		if i >= 0 && running[i] == w {
			continue
		}
		if a.interrupted() {
			return st
		}
		if i >= 0 && !stop(running[i]) {
			continue
		}
		if err := a.r.ipvs.StartSyncDaemon(w); err != nil {
			fail(fmt.Errorf("start sync daemon %s: %w", w, err))
			continue
		}
		changed = true
		a.syncDone("start-sync-daemon", w)
	}
	if changed {
		// What the kernel runs now, not what the calls said: the status claims no more.
		if running, err = a.r.ipvs.SyncDaemons(); err != nil {
			fail(fmt.Errorf("read sync daemons back: %w", err))
			return st
		}
	}
	for _, d := range running {
		ok := d.Interface == want.GetInterface() && uint32(d.SyncID) == want.GetSyncId()
		switch d.State {
		case dataplane.SyncMaster:
			st.Master = ok
		case dataplane.SyncBackup:
			st.Backup = ok
		}
	}
	return st
}

func indexOfState(ds []dataplane.SyncDaemon, s dataplane.SyncState) int {
	for i, d := range ds {
		if d.State == s {
			return i
		}
	}
	return -1
}

// validSync refuses what the kernel cannot run, naming the field: the controller validates
// groups, this guards an agent against a newer or broken one.
func validSync(s *lvsctlv1.Sync) error {
	switch iface := s.GetInterface(); {
	case iface == "":
		return errors.New("sync.interface: empty")
	case len(iface) > 15:
		return fmt.Errorf("sync.interface: %q is longer than 15 bytes", iface)
	}
	if id := s.GetSyncId(); id > maxSyncID {
		return fmt.Errorf("sync.sync_id: %d is more than %d (the kernel's sync id is one byte)", id, maxSyncID)
	}
	return nil
}

func (a *apply) syncDone(op string, d dataplane.SyncDaemon) {
	a.res.Operations++
	a.r.log.Info("kernel change", "op", op, "state", d.State.String(), "iface", d.Interface, "syncid", d.SyncID)
}

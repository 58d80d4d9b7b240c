package ipvs

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// The sync-daemon numbers of <linux/ip_vs.h>.
const (
	cmdNewDaemon = 9  // IPVS_CMD_NEW_DAEMON; also the command of each GET_DAEMON dump reply
	cmdDelDaemon = 10 // IPVS_CMD_DEL_DAEMON
	cmdGetDaemon = 11 // IPVS_CMD_GET_DAEMON

	cmdAttrDaemon = 3 // IPVS_CMD_ATTR_DAEMON

	daemonAttrState    = 1 // IPVS_DAEMON_ATTR_STATE, u32
	daemonAttrMcastIfn = 2 // IPVS_DAEMON_ATTR_MCAST_IFN, NUL-terminated string
	daemonAttrSyncID   = 3 // IPVS_DAEMON_ATTR_SYNC_ID, u32 (the kernel keeps one byte)

	// ifNameMax is IP_VS_IFNAME_MAXLEN (IFNAMSIZ) with its NUL: the kernel's policy refuses a
	// longer name.
	ifNameMax = 16
)

// validateSyncDaemon refuses what the kernel would, naming the field.
func validateSyncDaemon(d dataplane.SyncDaemon) error {
	if err := validateSyncState(d.State); err != nil {
		return err
	}
	switch {
	case d.Interface == "":
		return errors.New("interface: empty")
	case len(d.Interface) >= ifNameMax:
		return fmt.Errorf("interface: %q is longer than %d bytes", d.Interface, ifNameMax-1)
	}
	return nil
}

func validateSyncState(s dataplane.SyncState) error {
	if s != dataplane.SyncMaster && s != dataplane.SyncBackup {
		return fmt.Errorf("state: %d is neither master (1) nor backup (2)", s)
	}
	return nil
}

// appendDaemonAttrs appends the nested IPVS_CMD_ATTR_DAEMON of a NEW_DAEMON request (the
// three attributes the kernel requires), or with only the state, of a DEL_DAEMON one.
func appendDaemonAttrs(b []byte, d dataplane.SyncDaemon, stateOnly bool) []byte {
	start := len(b)
	b = appendAttr(b, cmdAttrDaemon, nil)
	b = appendAttr(b, daemonAttrState, binary.NativeEndian.AppendUint32(nil, uint32(d.State)))
	if !stateOnly {
		b = appendAttr(b, daemonAttrMcastIfn, append([]byte(d.Interface), 0))
		b = appendAttr(b, daemonAttrSyncID, binary.NativeEndian.AppendUint32(nil, uint32(d.SyncID)))
	}
	binary.NativeEndian.PutUint16(b[start:], uint16(len(b)-start))
	return b
}

// newDaemonRequest is IPVS_CMD_NEW_DAEMON for d, acked.
func newDaemonRequest(b []byte, family uint16, d dataplane.SyncDaemon) []byte {
	b = appendRequest(b, family, unix.NLM_F_ACK, cmdNewDaemon, genlVersion)
	return finishRequest(appendDaemonAttrs(b, d, false))
}

// delDaemonRequest is IPVS_CMD_DEL_DAEMON for the daemon in state s, acked.
func delDaemonRequest(b []byte, family uint16, s dataplane.SyncState) []byte {
	b = appendRequest(b, family, unix.NLM_F_ACK, cmdDelDaemon, genlVersion)
	return finishRequest(appendDaemonAttrs(b, dataplane.SyncDaemon{State: s}, true))
}

// getDaemonsRequest is the IPVS_CMD_GET_DAEMON dump: one reply per running daemon.
func getDaemonsRequest(b []byte, family uint16) []byte {
	return finishRequest(appendRequest(b, family, unix.NLM_F_DUMP, cmdGetDaemon, genlVersion))
}

// decodeDaemon decodes one GET_DAEMON reply message (generic-netlink header first), as
// ip_vs_genl_fill_daemon writes it. Newer kernels add the message size, multicast group, port
// and TTL, which lvsctl leaves at the kernel's defaults and does not read.
func decodeDaemon(msg []byte) (dataplane.SyncDaemon, error) {
	var d dataplane.SyncDaemon
	var m attrSet
	if err := m.payload(msg, cmdAttrDaemon); err != nil {
		return d, fmt.Errorf("ipvs sync daemon: %w", err)
	}
	if _, ok := m.get(daemonAttrState); !ok {
		return d, errors.New("ipvs sync daemon: no state attribute")
	}
	state, err := u32(&m, daemonAttrState, "state")
	if err != nil {
		return d, fmt.Errorf("ipvs sync daemon: %w", err)
	}
	d.State = dataplane.SyncState(state)
	if err := validateSyncState(d.State); err != nil {
		return d, fmt.Errorf("ipvs sync daemon: %w", err)
	}
	ifn, _ := m.get(daemonAttrMcastIfn)
	d.Interface = unix.ByteSliceToString(ifn)
	id, err := u32(&m, daemonAttrSyncID, "sync_id")
	if err != nil {
		return d, fmt.Errorf("ipvs sync daemon %s: %w", d.State, err)
	}
	if id > 255 {
		return d, fmt.Errorf("ipvs sync daemon %s: sync_id %d does not fit the kernel's byte", d.State, id)
	}
	d.SyncID = uint8(id)
	return d, nil
}

// daemonError maps the kernel's refusals of a daemon command: EEXIST, a daemon of that state
// already runs (start_sync_thread); ESRCH, none runs (stop_sync_thread); ENODEV, the
// multicast interface does not exist.
func daemonError(op string, d dataplane.SyncDaemon, err error) error {
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("ipvs: %s sync daemon %s: a %s daemon already runs: %w (%w)", op, d, d.State, dataplane.ErrExist, err)
	case errors.Is(err, unix.ESRCH):
		return fmt.Errorf("ipvs: %s sync daemon %s: %w (%w)", op, d.State, dataplane.ErrNotExist, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("ipvs: %s sync daemon %s: interface %q: %w (%w)", op, d, d.Interface, dataplane.ErrNotExist, err)
	}
	return fmt.Errorf("ipvs: %s sync daemon %s: %w", op, d, err)
}

// SyncDaemons lists the running IPVS sync daemons: at most a master and a backup.
func (k *Kernel) SyncDaemons() ([]dataplane.SyncDaemon, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.req = getDaemonsRequest(k.req[:0], k.family)
	var out []dataplane.SyncDaemon
	err := k.exchange(k.req, func(msg []byte) error {
		d, err := decodeDaemon(msg)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ipvs: list sync daemons: %w", err)
	}
	return out, nil
}

// StartSyncDaemon starts a sync daemon; one of the same state already running is
// dataplane.ErrExist (stop it first to change its settings), a missing interface
// dataplane.ErrNotExist.
func (k *Kernel) StartSyncDaemon(d dataplane.SyncDaemon) error {
	if err := validateSyncDaemon(d); err != nil {
		return fmt.Errorf("ipvs: start sync daemon: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.req = newDaemonRequest(k.req[:0], k.family, d)
	if err := k.exchange(k.req, func([]byte) error { return nil }); err != nil {
		return daemonError("start", d, err)
	}
	return nil
}

// StopSyncDaemon stops the sync daemon of state s; none running is dataplane.ErrNotExist. A
// stopped master drops the messages it had queued (sync_thread_master frees its queue), so a
// reconciler stops one only to replace it.
func (k *Kernel) StopSyncDaemon(s dataplane.SyncState) error {
	if err := validateSyncState(s); err != nil {
		return fmt.Errorf("ipvs: stop sync daemon: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.req = delDaemonRequest(k.req[:0], k.family, s)
	if err := k.exchange(k.req, func([]byte) error { return nil }); err != nil {
		return daemonError("stop", dataplane.SyncDaemon{State: s}, err)
	}
	return nil
}

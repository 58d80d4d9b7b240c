package ipvs

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// request is a whole generic-netlink request to family 30 as the kernel receives it: struct
// nlmsghdr (length, type, flags, sequence 0, port 0), struct genlmsghdr, then attrs.
func request(flags uint16, cmd uint8, attrs ...nla) []byte {
	var body []byte
	for _, a := range attrs {
		body = append(body, a.bytes()...)
	}
	b := n32(uint32(16 + 4 + len(body)))
	b = append(b, n16(30)...)
	b = append(b, n16(flags|unix.NLM_F_REQUEST)...)
	b = append(b, make([]byte, 8)...)
	b = append(b, cmd, genlVersion, 0, 0)
	return append(b, body...)
}

// TestDaemonRequests checks the bytes of each sync-daemon request against struct nlattr built
// by hand, as ip_vs_genl_set_daemon and ip_vs_genl_new_daemon read them: the three attributes
// NEW_DAEMON requires, the state alone for DEL_DAEMON, nothing for the GET_DAEMON dump.
func TestDaemonRequests(t *testing.T) {
	master := dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 7}
	tests := []struct {
		name string
		got  []byte
		want []byte
	}{
		{"new master", newDaemonRequest(nil, 30, master), request(unix.NLM_F_ACK, cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrState, value: n32(1)},
			{typ: daemonAttrMcastIfn, value: []byte("eth1\x00")},
			{typ: daemonAttrSyncID, value: n32(7)},
		}})},
		{"new backup, sync id 255", newDaemonRequest(nil, 30, dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "bond0.100", SyncID: 255}),
			request(unix.NLM_F_ACK, cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
				{typ: daemonAttrState, value: n32(2)},
				{typ: daemonAttrMcastIfn, value: []byte("bond0.100\x00")},
				{typ: daemonAttrSyncID, value: n32(255)},
			}})},
		{"del backup", delDaemonRequest(nil, 30, dataplane.SyncBackup), request(unix.NLM_F_ACK, cmdDelDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrState, value: n32(2)},
		}})},
		{"dump", getDaemonsRequest(nil, 30), request(unix.NLM_F_DUMP, cmdGetDaemon)},
	}
	for _, tt := range tests {
		if !bytes.Equal(tt.got, tt.want) {
			t.Errorf("%s:\n got % x\nwant % x", tt.name, tt.got, tt.want)
		}
	}
	// The literal bytes of one request on a little-endian host, so that nla and request cannot
	// both be wrong the same way: nlmsghdr{44, 30, REQUEST|ACK, 0, 0}, genlmsghdr{9, 1},
	// nested {24, 3}: {8, 1, 1}, {9, 2, "eth1\0"} + 3 bytes padding, {8, 3, 7}.
	if bytes.Equal(n16(1), []byte{1, 0}) {
		golden := []byte{
			0x34, 0, 0, 0, 30, 0, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0,
			9, 1, 0, 0,
			0x20, 0, 3, 0,
			8, 0, 1, 0, 1, 0, 0, 0,
			9, 0, 2, 0, 'e', 't', 'h', '1', 0, 0, 0, 0,
			8, 0, 3, 0, 7, 0, 0, 0,
		}
		if got := newDaemonRequest(nil, 30, master); !bytes.Equal(got, golden) {
			t.Errorf("new master:\n got % x\nwant % x", got, golden)
		}
	}
}

func TestDecodeDaemon(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want dataplane.SyncDaemon
	}{{
		// ip_vs_genl_fill_daemon of Linux 4.3 and later: the message size, group, port and TTL too.
		name: "master, current kernel",
		msg: message(cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrState, value: n32(1)},
			{typ: daemonAttrMcastIfn, value: []byte("eth1\x00")},
			{typ: daemonAttrSyncID, value: n32(7)},
			{typ: 4, value: n16(1472)},             // SYNC_MAXLEN
			{typ: 5, value: []byte{224, 0, 0, 81}}, // MCAST_GROUP
			{typ: 7, value: b16(8848)},             // MCAST_PORT
			{typ: 8, value: []byte{1}},             // MCAST_TTL
		}}),
		want: dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 7},
	}, {
		name: "backup, old kernel",
		msg: message(cmdNewDaemon, nla{typ: cmdAttrDaemon | unix.NLA_F_NESTED, kids: []nla{
			{typ: daemonAttrState, value: n32(2)},
			{typ: daemonAttrMcastIfn, value: []byte("bond0\x00")},
			{typ: daemonAttrSyncID, value: n32(0)},
		}}),
		want: dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "bond0"},
	}}
	for _, tt := range tests {
		got, err := decodeDaemon(tt.msg)
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}

	bad := map[string][]byte{
		"no nested daemon": message(cmdNewDaemon, nla{typ: cmdAttrService}),
		"no state": message(cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrMcastIfn, value: []byte("eth1\x00")},
		}}),
		"state 3": message(cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrState, value: n32(3)},
		}}),
		"short sync id": message(cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrState, value: n32(1)},
			{typ: daemonAttrSyncID, value: n16(7)},
		}}),
		"sync id above a byte": message(cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
			{typ: daemonAttrState, value: n32(1)},
			{typ: daemonAttrSyncID, value: n32(256)},
		}}),
		"truncated attribute": append(message(cmdNewDaemon, nla{typ: cmdAttrDaemon}), 40, 0, 1, 0),
	}
	for name, msg := range bad {
		if d, err := decodeDaemon(msg); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", name, d)
		}
	}
}

// daemonKernel answers the sync-daemon commands like a kernel's ip_vs_genl_set_daemon and
// ip_vs_genl_dump_daemons: one daemon per state, EEXIST for a running state, ESRCH for a
// stopped one, ENODEV for an interface it does not have.
type daemonKernel struct {
	ifaces  []string
	running map[dataplane.SyncState]dataplane.SyncDaemon
	sent    []string
}

func (dk *daemonKernel) exchange(req []byte, each func([]byte) error) error {
	msgs, err := syscall.ParseNetlinkMessage(req)
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("request is not one netlink message: %d, %v", len(msgs), err)
	}
	h, data := msgs[0].Header, msgs[0].Data
	if h.Type != 30 || len(data) < 4 {
		return fmt.Errorf("not a generic-netlink request to IPVS: %+v", h)
	}
	var m attrSet
	if data[0] != cmdGetDaemon {
		if err := m.payload(data, cmdAttrDaemon); err != nil {
			return syscall.EINVAL
		}
	}
	state, _ := u32(&m, daemonAttrState, "state")
	switch data[0] {
	case cmdGetDaemon:
		dk.sent = append(dk.sent, "dump")
		for _, s := range []dataplane.SyncState{dataplane.SyncMaster, dataplane.SyncBackup} {
			if d, ok := dk.running[s]; ok {
				if err := each(message(cmdNewDaemon, nla{typ: cmdAttrDaemon, kids: []nla{
					{typ: daemonAttrState, value: n32(uint32(d.State))},
					{typ: daemonAttrMcastIfn, value: append([]byte(d.Interface), 0)},
					{typ: daemonAttrSyncID, value: n32(uint32(d.SyncID))},
				}})); err != nil {
					return err
				}
			}
		}
		return nil
	case cmdNewDaemon:
		dk.sent = append(dk.sent, "new")
		ifn, ok1 := m.get(daemonAttrMcastIfn)
		id, _ := u32(&m, daemonAttrSyncID, "sync_id")
		_, ok2 := m.get(daemonAttrSyncID)
		_, ok3 := m.get(daemonAttrState)
		if !ok1 || !ok2 || !ok3 {
			return syscall.EINVAL
		}
		name := unix.ByteSliceToString(ifn)
		if !slices.Contains(dk.ifaces, name) {
			return syscall.ENODEV
		}
		s := dataplane.SyncState(state)
		if _, ok := dk.running[s]; ok {
			return syscall.EEXIST
		}
		dk.running[s] = dataplane.SyncDaemon{State: s, Interface: name, SyncID: uint8(id)}
		return nil
	case cmdDelDaemon:
		dk.sent = append(dk.sent, "del")
		s := dataplane.SyncState(state)
		if _, ok := dk.running[s]; !ok {
			return syscall.ESRCH
		}
		delete(dk.running, s)
		return nil
	}
	return fmt.Errorf("unexpected command %d", data[0])
}

// TestKernelSyncDaemons drives the Kernel's daemon calls against daemonKernel: both states run
// at once, the kernel's refusals map to the dataplane sentinels, and invalid daemons are
// refused before anything is sent.
func TestKernelSyncDaemons(t *testing.T) {
	dk := &daemonKernel{ifaces: []string{"eth1"}, running: map[dataplane.SyncState]dataplane.SyncDaemon{}}
	k := &Kernel{family: 30, exchange: dk.exchange}
	master := dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth1", SyncID: 7}
	backup := dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "eth1", SyncID: 7}

	if got, err := k.SyncDaemons(); err != nil || len(got) != 0 {
		t.Fatalf("SyncDaemons of a fresh kernel = %v, %v; want none", got, err)
	}
	for _, d := range []dataplane.SyncDaemon{master, backup} {
		if err := k.StartSyncDaemon(d); err != nil {
			t.Fatalf("start %s: %v", d, err)
		}
	}
	if got, err := k.SyncDaemons(); err != nil || !slices.Equal(got, []dataplane.SyncDaemon{master, backup}) {
		t.Fatalf("SyncDaemons = %v, %v; want %v", got, err, []dataplane.SyncDaemon{master, backup})
	}
	if err := k.StartSyncDaemon(master); !errors.Is(err, dataplane.ErrExist) || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("starting a running master: %v, want ErrExist and EEXIST", err)
	}
	if err := k.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "eth9"}); !errors.Is(err, dataplane.ErrNotExist) || !errors.Is(err, syscall.ENODEV) {
		t.Errorf("a daemon on a missing interface: %v, want ErrNotExist and ENODEV", err)
	}
	if err := k.StopSyncDaemon(dataplane.SyncMaster); err != nil {
		t.Fatalf("stop master: %v", err)
	}
	if err := k.StopSyncDaemon(dataplane.SyncMaster); !errors.Is(err, dataplane.ErrNotExist) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stopping a stopped master: %v, want ErrNotExist and ESRCH", err)
	}
	if got, err := k.SyncDaemons(); err != nil || !slices.Equal(got, []dataplane.SyncDaemon{backup}) {
		t.Errorf("after stopping the master: %v, %v; want the backup alone", got, err)
	}

	sent := len(dk.sent)
	for _, d := range []dataplane.SyncDaemon{
		{State: 0, Interface: "eth1"},
		{State: 3, Interface: "eth1"},
		{State: dataplane.SyncBackup, Interface: ""},
		{State: dataplane.SyncBackup, Interface: "a-name-of-16-byt"},
	} {
		if err := k.StartSyncDaemon(d); err == nil {
			t.Errorf("start %+v: no error", d)
		}
	}
	if err := k.StopSyncDaemon(0); err == nil {
		t.Error("stop state 0: no error")
	}
	if len(dk.sent) != sent {
		t.Errorf("invalid daemons sent requests: %v", dk.sent[sent:])
	}
}

// TestKernelSyncDaemonsRoundTrip drives a real IPVS's sync daemons in a fresh namespace (the
// VM lab runs it; see TestKernelRoundTrip), checked against ipvsadm's own reading: master and
// backup run at once, and the kernel's refusals map to the dataplane sentinels.
func TestKernelSyncDaemonsRoundTrip(t *testing.T) {
	requireIPVS(t)
	path := netnsPath(t)
	ns := filepath.Base(path)
	for _, args := range [][]string{
		// A veth pair: an interface that does multicast, as a director's sync interface does.
		{"link", "add", "sync0", "type", "veth", "peer", "name", "sync1"},
		{"link", "set", "sync0", "up"},
		{"link", "set", "sync1", "up"},
		{"addr", "add", "192.0.2.1/24", "dev", "sync0"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	k, err := New(WithNetNSPath(path))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer k.Close()
	t.Cleanup(func() {
		for _, s := range []dataplane.SyncState{dataplane.SyncMaster, dataplane.SyncBackup} {
			_ = k.StopSyncDaemon(s)
		}
	})

	if got, err := k.SyncDaemons(); err != nil || len(got) != 0 {
		t.Fatalf("SyncDaemons in a fresh namespace = %v, %v; want none", got, err)
	}
	master := dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "sync0", SyncID: 7}
	backup := dataplane.SyncDaemon{State: dataplane.SyncBackup, Interface: "sync0", SyncID: 7}
	for _, d := range []dataplane.SyncDaemon{master, backup} {
		if err := k.StartSyncDaemon(d); err != nil {
			t.Fatalf("StartSyncDaemon(%s): %v", d, err)
		}
	}
	if got, err := k.SyncDaemons(); err != nil || !slices.Equal(got, []dataplane.SyncDaemon{master, backup}) {
		t.Errorf("SyncDaemons = %v, %v; want %v", got, err, []dataplane.SyncDaemon{master, backup})
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "ipvsadm", "-L", "--daemon").CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm -L --daemon: %v: %s", err, out)
	}
	for _, want := range []string{"master sync daemon (mcast=sync0, syncid=7", "backup sync daemon (mcast=sync0, syncid=7"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ipvsadm -L --daemon says\n%s\nwithout %q", out, want)
		}
	}

	if err := k.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "sync0", SyncID: 8}); !errors.Is(err, dataplane.ErrExist) || !errors.Is(err, syscall.EEXIST) {
		t.Errorf("a second master: %v, want ErrExist and EEXIST", err)
	}
	if err := k.StopSyncDaemon(dataplane.SyncMaster); err != nil {
		t.Fatalf("StopSyncDaemon(master): %v", err)
	}
	if err := k.StopSyncDaemon(dataplane.SyncMaster); !errors.Is(err, dataplane.ErrNotExist) || !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stopping a stopped master: %v, want ErrNotExist and ESRCH", err)
	}
	if err := k.StartSyncDaemon(dataplane.SyncDaemon{State: dataplane.SyncMaster, Interface: "nope0", SyncID: 7}); !errors.Is(err, dataplane.ErrNotExist) || !errors.Is(err, syscall.ENODEV) {
		t.Errorf("a master on a missing interface: %v, want ErrNotExist and ENODEV", err)
	}
	if got, err := k.SyncDaemons(); err != nil || !slices.Equal(got, []dataplane.SyncDaemon{backup}) {
		t.Errorf("after stopping the master: %v, %v; want the backup alone", got, err)
	}
	if err := k.StopSyncDaemon(dataplane.SyncBackup); err != nil {
		t.Fatalf("StopSyncDaemon(backup): %v", err)
	}
	if got, err := k.SyncDaemons(); err != nil || len(got) != 0 {
		t.Errorf("after stopping both: %v, %v; want none", got, err)
	}
}

package ipvs

import (
	"errors"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The socket's exchanges, against the host kernel's generic-netlink controller (every Linux
// has it, IPVS or not, and no privilege is needed): its family dump spans several datagrams
// on most kernels, like a service dump, and a refusal comes back as an NLMSG_ERROR.

// dumpFamilies lists the generic-netlink families' names and ids with one dump on c.
func dumpFamilies(c *conn, seq uint32, each func(name string, id uint16) error) error {
	req := finishRequest(appendRequest(nil, unix.GENL_ID_CTRL, unix.NLM_F_DUMP, unix.CTRL_CMD_GETFAMILY, 1))
	var m attrSet
	return c.exchange(req, seq, func(msg []byte) error {
		if err := m.parse(msg[4:]); err != nil {
			return err
		}
		name, _ := m.get(unix.CTRL_ATTR_FAMILY_NAME)
		id, err := u16(&m, unix.CTRL_ATTR_FAMILY_ID, "family_id")
		if err != nil {
			return err
		}
		return each(unix.ByteSliceToString(name), id)
	})
}

func TestConnExchange(t *testing.T) {
	c, err := openConn(netns.None())
	if err != nil {
		t.Fatalf("openConn: %v", err)
	}
	defer c.close()

	// A dump, read to its end: the controller lists itself with its fixed id.
	ids := map[string]uint16{}
	if err := dumpFamilies(c, 1, func(name string, id uint16) error { ids[name] = id; return nil }); err != nil {
		t.Fatalf("family dump: %v", err)
	}
	if ids["nlctrl"] != unix.GENL_ID_CTRL {
		t.Fatalf("family dump lists %v; want nlctrl with id %d among them", ids, unix.GENL_ID_CTRL)
	}

	// A callback's error stops nothing in the kernel: the rest of the dump is still read, so
	// the next dump on the socket is not refused as busy, and the first error is returned.
	stop := errors.New("stop at the first family")
	calls := 0
	err = dumpFamilies(c, 2, func(string, uint16) error { calls++; return stop })
	if !errors.Is(err, stop) {
		t.Errorf("dump whose callback fails: %v, want %v", err, stop)
	}
	if calls != len(ids) {
		t.Errorf("callback called %d times, want once per family (%d): the rest of the dump was not read", calls, len(ids))
	}
	again := map[string]uint16{}
	if err := dumpFamilies(c, 3, func(name string, id uint16) error { again[name] = id; return nil }); err != nil {
		t.Fatalf("dump after a failed callback: %v", err)
	}
	if len(again) != len(ids) {
		t.Errorf("second dump lists %d families, first %d", len(again), len(ids))
	}

	// A refusal is the kernel's errno, and the reply of a request that asked for an ack.
	req := appendRequest(nil, unix.GENL_ID_CTRL, unix.NLM_F_ACK, unix.CTRL_CMD_GETFAMILY, 1)
	req = finishRequest(appendAttr(req, unix.CTRL_ATTR_FAMILY_NAME, []byte("no-such-family\x00")))
	if err := c.exchange(req, 4, func([]byte) error { return nil }); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("unknown family: %v, want ENOENT", err)
	}
	req = appendRequest(nil, unix.GENL_ID_CTRL, unix.NLM_F_ACK, unix.CTRL_CMD_GETFAMILY, 1)
	req = finishRequest(appendAttr(req, unix.CTRL_ATTR_FAMILY_NAME, []byte("nlctrl\x00")))
	var m attrSet
	var got uint16
	replies := 0
	err = c.exchange(req, 5, func(msg []byte) error {
		replies++
		if err := m.parse(msg[4:]); err != nil {
			return err
		}
		got, err = u16(&m, unix.CTRL_ATTR_FAMILY_ID, "family_id")
		return err
	})
	if err != nil || replies != 1 || got != unix.GENL_ID_CTRL {
		t.Errorf("get nlctrl: %d replies, id %d, %v; want 1 reply, id %d, no error", replies, got, err, unix.GENL_ID_CTRL)
	}
}

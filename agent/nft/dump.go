package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumpBuffer is how much one read of a dump takes. The kernel fills a dump's next message up
// to what the reader last asked for (at most 32 KiB), and it walks a set from its first element
// to where the last message stopped each time: so the fewer and fuller the messages, the less
// it walks. The library's reader asks 4 KiB at a time, which at 50,000 elements is over a
// thousand walks; 64 KiB lets the kernel fill 32 KiB.
const dumpBuffer = 64 << 10

// dumpElements reads every element of map m in one dump, on a socket of its own, and decodes
// only what a mark rule needs (key, key end, data, flags). It replaces the library's
// GetSetElements, which reads 4 KiB at a time and decodes every element attribute it knows.
func (f *Firewall) dumpElements(m *markMap, each func(nftables.SetElement)) error {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: max(f.nsFd, 0)})
	if err != nil {
		return err
	}
	defer conn.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: []byte(TableName + "\x00")},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: []byte(m.name + "\x00")},
	})
	if err != nil {
		return err
	}
	req, err := conn.Send(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETSETELEM),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return err
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, dumpBuffer)
	for {
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		}); err != nil {
			return err
		}
		if rerr != nil {
			return fmt.Errorf("recvfrom: %w", rerr)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Header.Seq != req.Header.Sequence {
				continue // not ours: cannot be, on a socket of its own, but cheap to check
			}
			switch msg.Header.Type {
			case unix.NLMSG_DONE:
				// A dump that failed part way says so here.
				if len(msg.Data) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(msg.Data)); errno < 0 {
						return syscall.Errno(-errno)
					}
				}
				return nil
			case unix.NLMSG_ERROR:
				if len(msg.Data) < 4 {
					return errors.New("short netlink error message")
				}
				if errno := int32(binary.NativeEndian.Uint32(msg.Data)); errno != 0 {
					return syscall.Errno(-errno)
				}
				return nil
			}
			if len(msg.Data) < 4 {
				return errors.New("short set element message")
			}
			if _, _, err := decodeElements(msg.Data[4:], each); err != nil {
				return err
			}
		}
	}
}

// decodeElements decodes the attributes of an NFT_MSG_NEWSETELEM (a dump's message, or a
// notification): the table, the set, and each element's key, key end, data and flags, which
// it passes to each (the slices point into b).
func decodeElements(b []byte, each func(nftables.SetElement)) (table, set string, err error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return "", "", err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_LIST_TABLE:
			table = ad.String()
		case unix.NFTA_SET_ELEM_LIST_SET:
			set = ad.String()
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					var e nftables.SetElement
					list.Nested(func(el *netlink.AttributeDecoder) error {
						el.ByteOrder = binary.BigEndian
						for el.Next() {
							switch el.Type() {
							case unix.NFTA_SET_ELEM_KEY:
								el.Nested(value(&e.Key))
							case nftables.NFTA_SET_ELEM_KEY_END:
								el.Nested(value(&e.KeyEnd))
							case unix.NFTA_SET_ELEM_DATA:
								el.Nested(value(&e.Val))
							case unix.NFTA_SET_ELEM_FLAGS:
								e.IntervalEnd = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
							}
						}
						return nil
					})
					each(e)
				}
				return nil
			})
		}
	}
	return table, set, ad.Err()
}

// value decodes a struct nft_data attribute's NFTA_DATA_VALUE into *v.
func value(v *[]byte) func(*netlink.AttributeDecoder) error {
	return func(d *netlink.AttributeDecoder) error {
		for d.Next() {
			if d.Type() == unix.NFTA_DATA_VALUE {
				*v = d.Bytes()
			}
		}
		return nil
	}
}

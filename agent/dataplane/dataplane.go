// Package dataplane holds the values the agent exchanges with the kernel: IPVS services
// (firewall-mark and plain) and their destinations, nftables mark rules, and the stats IPVS keeps. The
// interfaces over the kernel live where they are used (package reconcile, package stats); the
// real backends (packages ipvs, nft, vip) and the fakes (package fake) speak these types.
package dataplane

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
)

// ErrUnavailable marks a kernel facility that is missing (IPVS not loaded, nftables absent).
// Backends wrap it with what is missing and how to load it.
var ErrUnavailable = errors.New("kernel facility unavailable")

// ErrExist and ErrNotExist are what the fakes and backends return when the kernel refuses an
// object that already exists or does not exist, so callers can test with errors.Is.
var (
	ErrExist    = errors.New("already exists")
	ErrNotExist = errors.New("does not exist")
)

// ErrOutcomeUnknown marks a change the kernel was sent but whose answer was lost (the receive
// timed out, or the kernel dropped its replies with ENOBUFS): it may or may not have been made,
// so a caller must not take it as refused.
var ErrOutcomeUnknown = errors.New("sent, but the kernel's answer was lost: outcome unknown")

// Family is an address family of a service: IPv4 or IPv6. IPVS keys a firewall-mark service by
// (family, mark), so a mark may exist once per family.
type Family uint8

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// ServiceKey identifies a virtual service in the kernel: a firewall-mark one by (Family,
// FWMark), a plain one by (Family, Protocol, Address, Port), as IPVS keys them. A plain key has
// FWMark 0 and a valid Address; a firewall-mark key has neither Protocol, Address nor Port.
// It stays comparable, so it keys maps.
type ServiceKey struct {
	Family   Family
	Protocol Protocol
	Port     uint16
	FWMark   uint32
	Address  netip.Addr
}

// IsFWMark tells a firewall-mark service's key from a plain one's.
func (k ServiceKey) IsFWMark() bool { return !k.Address.IsValid() }

// String names the service as ipvsadm -L prints it: "fwm 7 ipv4", "tcp 192.0.2.20:80",
// "udp [2001:db8::1]:53".
func (k ServiceKey) String() string {
	if k.IsFWMark() {
		return fmt.Sprintf("fwm %d %s", k.FWMark, k.Family)
	}
	return k.Protocol.String() + " " + netip.AddrPortFrom(k.Address, k.Port).String()
}

// Compare orders keys: by family, firewall-mark services first (by mark), then plain ones by
// address, protocol and port.
func (k ServiceKey) Compare(o ServiceKey) int {
	switch {
	case k.Family != o.Family:
		return cmp.Compare(k.Family, o.Family)
	case k.IsFWMark() != o.IsFWMark():
		if k.IsFWMark() {
			return -1
		}
		return 1
	case k.IsFWMark():
		return cmp.Compare(k.FWMark, o.FWMark)
	}
	if c := k.Address.Compare(o.Address); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Protocol, o.Protocol); c != 0 {
		return c
	}
	return cmp.Compare(k.Port, o.Port)
}

// ServiceFlags are the IPVS service flags lvsctl sets (IP_VS_SVC_F_*, the kernel's bit
// values): persistence is not among them, it follows from Service.Timeout.
type ServiceFlags uint32

const (
	// FlagOnePacket is one-packet scheduling (ipvsadm -o): each UDP datagram is scheduled
	// on its own.
	FlagOnePacket ServiceFlags = 0x0004
	// FlagSched1..3 are the scheduler's own flags: sh-fallback/mh-fallback is FlagSched1,
	// sh-port/mh-port FlagSched2 (ipvsadm -b).
	FlagSched1 ServiceFlags = 0x0008
	FlagSched2 ServiceFlags = 0x0010
	FlagSched3 ServiceFlags = 0x0020

	// KnownFlags are the flags lvsctl reads back from the kernel and compares; the kernel's
	// others (persistent, hashed) are its own bookkeeping or Timeout's.
	KnownFlags = FlagOnePacket | FlagSched1 | FlagSched2 | FlagSched3
)

// Service is one IPVS virtual service (ipvsadm -A -f MARK, or -t/-u/--sctp-service
// ADDRESS:PORT).
type Service struct {
	ServiceKey
	Scheduler string
	// Timeout is the persistence timeout in seconds; 0 means not persistent.
	Timeout uint32
	// NetmaskBits is the persistence granularity as a prefix length (32 or 128 for one client).
	NetmaskBits uint8
	// Flags are the scheduler flags and one-packet scheduling.
	Flags ServiceFlags
}

// Forward is the packet-forwarding method of a destination.
type Forward uint8

const (
	ForwardMasq Forward = iota + 1
	ForwardRoute
	ForwardTunnel
)

func (f Forward) String() string {
	switch f {
	case ForwardMasq:
		return "masq"
	case ForwardRoute:
		return "route"
	case ForwardTunnel:
		return "tunnel"
	}
	return fmt.Sprintf("forward(%d)", uint8(f))
}

// Destination is one real server of a service. Port is 0 for firewall-mark services: the
// packet keeps the port the client asked for; a plain service's destination has the port its
// clients are sent to (the service's, or another under masq: port mapping).
type Destination struct {
	Address netip.Addr
	Port    uint16
	Weight  uint32
	Forward Forward
	// UpperThreshold: no new connections while the destination has this many (0: no limit);
	// LowerThreshold: it takes new ones again below this (0: below the upper one).
	UpperThreshold uint32
	LowerThreshold uint32
	// Tunnel is a tunnelled destination's encapsulation; the zero value is ipip without
	// checksum, the kernel's default and what it reports for masq and route destinations.
	Tunnel Tunnel
}

// TunnelType is the kernel's IP_VS_CONN_F_TUNNEL_TYPE_* (IPVS_DEST_ATTR_TUN_TYPE, u8).
type TunnelType uint8

const (
	TunnelIPIP TunnelType = 0
	TunnelGUE  TunnelType = 1 // Linux 5.3
	TunnelGRE  TunnelType = 2 // Linux 5.8
)

func (t TunnelType) String() string {
	switch t {
	case TunnelIPIP:
		return "ipip"
	case TunnelGUE:
		return "gue"
	case TunnelGRE:
		return "gre"
	}
	return fmt.Sprintf("tunnel-type(%d)", uint8(t))
}

// TunnelFlags are the kernel's IP_VS_TUNNEL_ENCAP_FLAG_* (IPVS_DEST_ATTR_TUN_FLAGS, u16);
// none is no checksum.
type TunnelFlags uint16

const (
	TunnelCsum    TunnelFlags = 1 << 0 // the outer header carries a checksum (gue, gre)
	TunnelRemCsum TunnelFlags = 1 << 1 // remote checksum offload (gue)
)

// Tunnel is how IPVS encapsulates packets to a tunnelled destination.
type Tunnel struct {
	Type TunnelType
	// Port is gue's UDP destination port (IPVS_DEST_ATTR_TUN_PORT, sent in network order).
	Port  uint16
	Flags TunnelFlags
}

// String is the tunnel as ipvsadm's --tun-info column shows it: "ipip", "gue:6080:r+c".
func (t Tunnel) String() string {
	s := t.Type.String()
	if t.Type == TunnelIPIP && t.Port == 0 && t.Flags == 0 {
		return s
	}
	sum := "-c"
	switch t.Flags {
	case 0:
	case TunnelCsum:
		sum = "+c"
	case TunnelRemCsum:
		sum = "r+c"
	default:
		sum = fmt.Sprintf("flags(%#x)", uint16(t.Flags))
	}
	if t.Type == TunnelGUE || t.Port != 0 {
		return fmt.Sprintf("%s:%d:%s", s, t.Port, sum)
	}
	return s + ":" + sum
}

// Protocol is an IP protocol number that a mark rule matches.
type Protocol uint8

const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// MarkRule sets Mark on packets to VIP with Protocol and a destination port in
// [FirstPort, LastPort].
type MarkRule struct {
	VIP       netip.Addr
	Protocol  Protocol
	FirstPort uint16
	LastPort  uint16
	Mark      uint32
}

func (r MarkRule) String() string {
	if r.FirstPort == r.LastPort {
		return fmt.Sprintf("%s %s dport %d mark %d", r.VIP, r.Protocol, r.FirstPort, r.Mark)
	}
	return fmt.Sprintf("%s %s dport %d-%d mark %d", r.VIP, r.Protocol, r.FirstPort, r.LastPort, r.Mark)
}

// Counters are IPVS's cumulative counters and its estimated per-second rates.
type Counters struct {
	Conns, InPackets, OutPackets, InBytes, OutBytes uint64
	CPS, InPPS, OutPPS, InBPS, OutBPS               uint64
}

// DestinationStats is one destination's connection counts and counters.
type DestinationStats struct {
	Destination
	ActiveConns     uint32
	InactiveConns   uint32
	PersistentConns uint32
	Counters        Counters
}

// ServiceStats is one service's counters and its destinations' stats.
type ServiceStats struct {
	Service
	Counters     Counters
	Destinations []DestinationStats
}

// OpKind is what one IPVS change does.
type OpKind uint8

const (
	AddService OpKind = iota + 1
	UpdateService
	DelService
	AddDestination
	UpdateDestination
	DelDestination
)

func (k OpKind) String() string {
	switch k {
	case AddService:
		return "add-service"
	case UpdateService:
		return "update-service"
	case DelService:
		return "delete-service"
	case AddDestination:
		return "add-destination"
	case UpdateDestination:
		return "update-destination"
	case DelDestination:
		return "delete-destination"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// Op is one IPVS change, for backends that take many at once: Dest is used by the destination
// kinds only.
type Op struct {
	Kind    OpKind
	Service Service
	Dest    Destination
}

// SyncState is the role of one of the kernel's IPVS connection-sync daemons
// (IP_VS_STATE_MASTER, IP_VS_STATE_BACKUP): a namespace runs at most one of each, and may run
// both at once.
type SyncState uint8

const (
	// SyncMaster sends the connections that see packets here to the other directors.
	SyncMaster SyncState = 1
	// SyncBackup receives the other directors' connections into this IPVS table.
	SyncBackup SyncState = 2
)

func (s SyncState) String() string {
	switch s {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("sync-state(%d)", uint8(s))
}

// SyncDaemon is one running IPVS sync daemon (ipvsadm --start-daemon STATE --mcast-interface
// IFACE --syncid ID). The kernel's default multicast group, port, TTL and message size are
// used: lvsctl sets none of them.
type SyncDaemon struct {
	State     SyncState
	Interface string
	// SyncID tags the daemon's messages; a backup takes only its own sync id's (0: any).
	SyncID uint8
}

func (d SyncDaemon) String() string {
	return fmt.Sprintf("%s %s syncid %d", d.State, d.Interface, d.SyncID)
}

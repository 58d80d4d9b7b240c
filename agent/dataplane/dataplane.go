// Package dataplane holds the values the agent exchanges with the kernel: IPVS firewall-mark
// services and their destinations, nftables mark rules, and the stats IPVS keeps. The
// interfaces over the kernel live where they are used (package reconcile, package stats); the
// real backends (packages ipvs, nft, vip) and the fakes (package fake) speak these types.
package dataplane

import (
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

// ServiceKey identifies a firewall-mark virtual service in the kernel.
type ServiceKey struct {
	Family Family
	FWMark uint32
}

func (k ServiceKey) String() string { return fmt.Sprintf("fwm %d %s", k.FWMark, k.Family) }

// Service is one IPVS firewall-mark virtual service (ipvsadm -A -f MARK).
type Service struct {
	ServiceKey
	Scheduler string
	// Timeout is the persistence timeout in seconds; 0 means not persistent.
	Timeout uint32
	// NetmaskBits is the persistence granularity as a prefix length (32 or 128 for one client).
	NetmaskBits uint8
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
// packet keeps the port the client asked for.
type Destination struct {
	Address netip.Addr
	Port    uint16
	Weight  uint32
	Forward Forward
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

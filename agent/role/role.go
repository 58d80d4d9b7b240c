// Package role is the agent's failover logic: whether this director may hold its group's
// addresses (VIPs and gateway) now, from its assignment, the answers to its heartbeats and
// what its peers say of themselves. It is a pure state machine: events in, actions out, the
// time passed in with each event; no goroutines, no sockets, no clock of its own.
//
// The rule (docs/design.md section 5): an ACTIVE holds its addresses only while it has a
// lease, renewed by an answer to one of its own heartbeats (an echo of its sent value, from
// the controller or from any peer) that carries no epoch higher than its own; the lease runs
// Fence from when the answered heartbeat was sent. A director that hears a higher epoch of its
// group releases at once and waits for the assignment that goes with it.
package role

import (
	"net/netip"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Event is one input to the machine.
type Event interface{ isEvent() }

// Started: the agent started. Held: the kernel holds the group's addresses under a saved
// ACTIVE role (an agent restart), which the machine keeps for one Fence while it waits for
// answers, so that an agent restart is not an outage.
type Started struct{ Held bool }

// Assigned: the role the daemon obeys now, with the group it belongs to (its directors,
// addresses and Failover settings). The daemon has already refused stale epochs.
type Assigned struct {
	Group *lvsctlv1.DirectorGroup
	Role  *lvsctlv1.RoleAssignment
}

// ControllerHeartbeat: the controller's heartbeat arrived on the stream.
type ControllerHeartbeat struct{ HB *lvsctlv1.Heartbeat }

// ControllerLost: the stream to the controller is down.
type ControllerLost struct{}

// PeerHeartbeat: a peer's heartbeat arrived over UDP, from address From.
type PeerHeartbeat struct {
	From netip.Addr
	HB   *lvsctlv1.PeerHeartbeat
}

// ProbeAnswered: a peer's host answered a probe (ICMP echo): its kernel is up even if its
// agent is not.
type ProbeAnswered struct{ Peer string }

// Tick: time passed (the driver calls Step with Tick at Next()).
type Tick struct{}

func (Started) isEvent()             {}
func (Assigned) isEvent()            {}
func (ControllerHeartbeat) isEvent() {}
func (ControllerLost) isEvent()      {}
func (PeerHeartbeat) isEvent()       {}
func (ProbeAnswered) isEvent()       {}
func (Tick) isEvent()                {}

// Outgoing is one heartbeat to send to a peer, or one probe.
type Outgoing struct {
	Peer string
	To   netip.AddrPort
	HB   *lvsctlv1.PeerHeartbeat // nil for a probe
}

// Actions are what the driver must do after a Step, in this order.
type Actions struct {
	// Hold is whether the group's addresses must be held now; HoldChanged: it differs from
	// what the previous Step said (the driver reconciles the addresses then).
	Hold, HoldChanged bool
	// Announce: the addresses were just taken: send gratuitous ARP / unsolicited NA.
	Announce bool
	// Controller is a heartbeat to send on the stream (nil: none now).
	Controller *lvsctlv1.Heartbeat
	// Peers are heartbeats to send now; Probes are peers to probe now.
	Peers, Probes []Outgoing
	// Status is set when what the controller must know changed (the driver adds the sync
	// daemons' state and sends it).
	Status *lvsctlv1.RoleStatus
}

// Machine is one director's role logic.
type Machine struct {
	director string
}

// New returns the machine of a director.
func New(director string) *Machine { return &Machine{director: director} }

// Step feeds one event at time now and returns what to do.
func (m *Machine) Step(now time.Time, ev Event) Actions { return Actions{} }

// Next is when the driver must Step a Tick at the latest (zero: no deadline pending).
func (m *Machine) Next() time.Time { return time.Time{} }

// Status is what the controller should know now.
func (m *Machine) Status(now time.Time) *lvsctlv1.RoleStatus { return &lvsctlv1.RoleStatus{} }

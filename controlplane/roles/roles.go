// Package roles owns director roles: which director of a group is ACTIVE, under which epoch,
// and when that changes (takeover of a lost ACTIVE, planned failover, preemption). The
// decisions are a pure state machine per group: events in (heartbeats, disconnects, what the
// agents report, time, operator requests, write results), actions out (an assignment to
// write, replies); the driver (Manager) owns the clock, the store and the streams.
//
// The rule (docs/design.md section 5): a STANDBY is promoted only when the controller has lost
// the ACTIVE, every other director of the group reports the ACTIVE's heartbeats and host lost,
// and the ACTIVE's fence time has surely passed since the last time anyone heard it. A
// partition between the controller and a healthy ACTIVE is not a failover; a controller outage
// changes nothing.
package roles

import (
	"cmp"
	"slices"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Initial is the director a new group starts with as ACTIVE: the highest priority, then the
// first by name (the order keepalived's VRRP election would give).
func Initial(g *lvsctlv1.DirectorGroup) string {
	ds := slices.Clone(g.GetDirectors())
	if len(ds) == 0 {
		return ""
	}
	slices.SortFunc(ds, func(a, b *lvsctlv1.Director) int {
		if c := cmp.Compare(b.GetPriority(), a.GetPriority()); c != 0 {
			return c
		}
		return cmp.Compare(a.GetName(), b.GetName())
	})
	return ds[0].GetName()
}

// Event is one input to a group's machine.
type Event interface{ isEvent() }

// Configured: the group's definition or stored assignment changed (or the machine starts).
// Revision is the store revision they were read at: new epochs are above it.
type Configured struct {
	Group    *lvsctlv1.DirectorGroup
	Roles    *lvsctlv1.GroupRoles
	Revision int64
}

// Heard: a heartbeat (or any message) arrived from a director's agent on its stream.
type Heard struct{ Director string }

// Disconnected: a director's stream ended.
type Disconnected struct{ Director string }

// Reported: a director's agent sent its RoleStatus.
type Reported struct {
	Director string
	Status   *lvsctlv1.RoleStatus
}

// FailoverRequested: an operator asked to move the ACTIVE role (To empty: the best STANDBY).
// ID names the request in the Reply that answers it.
type FailoverRequested struct {
	ID uint64
	To string
}

// Written: the driver's write of an assignment finished (Err nil: stored).
type Written struct {
	Roles *lvsctlv1.GroupRoles
	Err   error
}

// Tick: time passed.
type Tick struct{}

func (Configured) isEvent()        {}
func (Heard) isEvent()             {}
func (Disconnected) isEvent()      {}
func (Reported) isEvent()          {}
func (FailoverRequested) isEvent() {}
func (Written) isEvent()           {}
func (Tick) isEvent()              {}

// Reply answers a FailoverRequested.
type Reply struct {
	ID   uint64
	Resp *lvsctlv1.FailoverResponse
	Err  error
}

// Actions are what the driver must do after a Step.
type Actions struct {
	// Write is an assignment to store (compare-and-swap on the stored one); the driver
	// answers with Written. Nil: nothing to write.
	Write *lvsctlv1.GroupRoles
	// Replies answer operator requests.
	Replies []Reply
}

// Machine is one group's role logic.
type Machine struct {
	group string
}

// New returns the machine of a group.
func New(group string) *Machine { return &Machine{group: group} }

// Step feeds one event at time now.
func (m *Machine) Step(now time.Time, ev Event) Actions { return Actions{} }

// Next is when the driver must Step a Tick at the latest (zero: nothing pending).
func (m *Machine) Next() time.Time { return time.Time{} }

// Epoch is the group's epoch as the controller sees it now, an assignment being written
// included: what heartbeat answers carry, so that an ACTIVE about to be replaced stops
// renewing its lease before the new assignment is even stored.
func (m *Machine) Epoch() uint64 { return 0 }

// Package failover holds a director group's failure detection settings, with their defaults:
// the agents (which heartbeat and fence on them), the controller (which promotes on them) and
// validation must agree on one reading of the same Failover message.
package failover

import (
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Defaults of a group's Failover settings. With them a lost ACTIVE is replaced about
// DefaultFence after it was last heard (the peers and the controller detect the loss within
// DefaultDeadAfter, which is no longer), plus one controller round trip and the new ACTIVE's
// address change: under 500 ms, below keepalived's VRRPv3 at advert_int 0.1.
const (
	DefaultInterval  = 100 * time.Millisecond
	DefaultDeadAfter = 300 * time.Millisecond
	DefaultFence     = 300 * time.Millisecond
	DefaultPort      = 7140
)

// Settings are a group's failover timings, defaults applied.
type Settings struct {
	// Interval between heartbeats (to peers, and to the controller).
	Interval time.Duration
	// DeadAfter without a heartbeat (or a probe answer) before a peer or agent is lost.
	DeadAfter time.Duration
	// Fence: an ACTIVE with no answer to its heartbeats for this long releases its addresses.
	Fence time.Duration
	// Preempt: a returning director of higher priority takes ACTIVE back.
	Preempt bool
	// Port of peer heartbeats (UDP).
	Port uint16
}

// Of returns the group's settings, defaults for zero fields.
func Of(g *lvsctlv1.DirectorGroup) Settings {
	f := g.GetFailover()
	s := Settings{
		Interval:  time.Duration(f.GetHeartbeatIntervalMs()) * time.Millisecond,
		DeadAfter: time.Duration(f.GetDeadAfterMs()) * time.Millisecond,
		Fence:     time.Duration(f.GetFenceMs()) * time.Millisecond,
		Preempt:   f.GetPreempt(),
		Port:      uint16(f.GetPort()),
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.DeadAfter == 0 {
		s.DeadAfter = DefaultDeadAfter
	}
	if s.Fence == 0 {
		s.Fence = DefaultFence
	}
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	return s
}

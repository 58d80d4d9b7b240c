// Package failover holds a director group's failure detection settings, with their defaults:
// the agents (which heartbeat and fence on them), the controller (which promotes on them) and
// validation must agree on one reading of the same Failover message.
package failover

import (
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Defaults of a group's Failover settings. With them a lost ACTIVE is replaced about
// DefaultFence after it was last heard: the peers and the controller agree on the loss
// within DefaultDeadAfter (three heartbeats missed, as VRRP counts three adverts), the
// controller decides then, and the decision is stored and delivered while the lost ACTIVE's
// lease runs out; the new ACTIVE holds the addresses once it has. They are chosen to beat
// keepalived's VRRPv3 tuned to advert_int 0.1 (3 x 100 ms + skew), measured in the lab in the
// same boot (docs/benchmarks.md): 100 / 200 / 250 ms took over in a median of 356-412 ms
// against keepalived's 331-358, these in 266-311 against 292-333 (six boots of 9 runs each,
// pooled 289 against 316). The price is heartbeats: 20 a second from each director of a
// multi-director group to the controller and to each peer.
const (
	DefaultInterval  = 50 * time.Millisecond
	DefaultDeadAfter = 150 * time.Millisecond
	DefaultFence     = 200 * time.Millisecond
	DefaultPort      = 7140
)

// Settings are a group's failover timings, defaults applied.
type Settings struct {
	// Interval between heartbeats (to peers, and to the controller).
	Interval time.Duration
	// DeadAfter without a heartbeat (or a probe answer) before a peer or agent is lost.
	DeadAfter time.Duration
	// Fence: a lost ACTIVE's addresses are taken over no sooner than Fence after anyone last
	// heard it; it holds them for Lease() after a heartbeat that was answered.
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

// Lease is how long an ACTIVE holds its addresses after sending a heartbeat that someone
// answered: Fence less a quarter interval. A takeover waits Fence after the ACTIVE was last
// heard, which is no earlier than the heartbeat was sent, so the quarter interval is the old
// ACTIVE's time to remove its addresses before the new one adds them (a release is one
// netlink call per address; 12.5 ms with the defaults). With the default Fence of four
// intervals, the lease (187.5 ms) outlives two lost rounds of answers (the third comes
// 150 ms and a round trip after the last).
func (s Settings) Lease() time.Duration { return s.Fence - s.Interval/4 }

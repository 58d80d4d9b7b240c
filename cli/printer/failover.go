package printer

import (
	"fmt"
	"io"
	"time"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// FailoverView is the outcome of `failover`: the group's assignment once stored.
type FailoverView struct {
	Group string `json:"group"`
	// Active is the new ACTIVE; Previous the one it replaced ("" when there was none).
	Active   string `json:"active"`
	Previous string `json:"previous"`
	Epoch    uint64 `json:"epoch"`
	// Reason is the controller's ("failover").
	Reason string `json:"reason"`
	// ReleasedAfterMs is how long the previous ACTIVE took to release its addresses (its
	// fence time when it did not answer).
	ReleasedAfterMs int64 `json:"releasedAfterMs"`
}

// ViewFailover converts the controller's answer for a group.
func ViewFailover(group string, r *lvsctlv1.FailoverResponse) FailoverView {
	if g := r.GetRoles().GetGroup(); g != "" {
		group = g
	}
	return FailoverView{
		Group: group, Active: r.GetRoles().GetActive(), Previous: r.GetPrevious(), Epoch: r.GetRoles().GetEpoch(),
		Reason: r.GetRoles().GetReason(), ReleasedAfterMs: r.GetReleasedAfterMs(),
	}
}

// FailoverText is the one line `failover` prints:
// `edge-1: ACTIVE dir-a -> dir-b (epoch 42, dir-a released in 180ms)`.
func FailoverText(v FailoverView) string {
	if v.Previous == "" || v.Previous == v.Active {
		return fmt.Sprintf("%s: ACTIVE %s (epoch %d)", v.Group, dashIfEmpty(v.Active), v.Epoch)
	}
	released := time.Duration(v.ReleasedAfterMs) * time.Millisecond
	return fmt.Sprintf("%s: ACTIVE %s -> %s (epoch %d, %s released in %s)", v.Group, v.Previous, dashIfEmpty(v.Active), v.Epoch, v.Previous, released)
}

func (tablePrinter) Failover(w io.Writer, v FailoverView) error {
	_, err := fmt.Fprintln(w, FailoverText(v))
	return err
}

func (p dataPrinter) Failover(w io.Writer, v FailoverView) error { return p.write(w, v) }

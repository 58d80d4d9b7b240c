package daemon

import (
	"errors"
	"fmt"
	"slices"

	"github.com/lvsctl/lvsctl/agent/metrics"
	"github.com/lvsctl/lvsctl/agent/state"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// The agent trusts nothing blindly: what the controller sends is checked against what this
// agent knows (its name, the revision it applied, the epoch it obeys), and what it saved
// against its checksums (state.ErrIntegrity). Each refusal keeps the data plane as it is, is
// reported to the controller (an ack's director errors), logged, and counted
// (lvsctl_agent_refused_total{reason}).
var (
	// ErrNotInGroup: a snapshot or delta for a director group that does not list this
	// director (the controller sends a director its own group's state, or the empty state of
	// no group: anything else is another controller's, or forged). Nothing is applied or
	// saved, and the role is not changed.
	ErrNotInGroup = errors.New("does not list this director")
	// ErrNoGroup: the empty state of a director in no group, while the kernel holds what the
	// agent would lose to it (a typo in --director, a renamed host). The services stay; the
	// addresses of a group it left are released.
	ErrNoGroup = errors.New("is in no director group")
	// ErrRevisionBackwards: a snapshot or delta older than the revision this agent applied:
	// a controller whose store was restored from an older backup (or replaced), or forged.
	// The same revision is no refusal: a restarted controller serves what it served (the
	// store's generation keys keep a group's revision across restarts and deletions).
	ErrRevisionBackwards = errors.New("is older than the revision this director applied")
	// ErrEpochBackwards: a role assignment of the director's group older than the epoch it
	// obeys (epochs grow with the store's revision, so only a restored or forged store goes
	// back). The role stays; the rest of the state is applied.
	ErrEpochBackwards = errors.New("is older than the epoch this director obeys")
)

// refusalReason is the metric's reason for err, a refusal.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, ErrNotInGroup):
		return metrics.RefusedNotInGroup
	case errors.Is(err, ErrNoGroup):
		return metrics.RefusedNoGroup
	case errors.Is(err, ErrRevisionBackwards):
		return metrics.RefusedRevision
	case errors.Is(err, ErrEpochBackwards):
		return metrics.RefusedEpoch
	case errors.Is(err, state.ErrIntegrity):
		return metrics.RefusedStateIntegrity
	}
	return "other"
}

// refuse refuses the controller's latest state for err: nothing applied or saved, the
// refusal acked now and in every ack until a state is accepted, logged and counted.
func (l *loop) refuse(acts []action, err error) []action {
	l.refused = err
	l.refusals = append(l.refusals, err)
	return append(acts, actAckRefusal{why: err})
}

// refuseNotListed returns why a state for group g is refused: g does not list this director.
// No group (the empty state of a director in no group) is refuseGroupless's.
func (l *loop) refuseNotListed(g *lvsctlv1.DirectorGroup, what string, rev int64) error {
	if g.GetName() == "" || slices.ContainsFunc(g.GetDirectors(), func(d *lvsctlv1.Director) bool { return d.GetName() == l.director }) {
		return nil
	}
	return fmt.Errorf("%s at revision %d is for director group %q, which %w %q: not applied, the data plane kept as it is "+
		"(a controller that is not this director's, or a forged message)", what, rev, g.GetName(), ErrNotInGroup, l.director)
}

// olderRevision returns why a state at rev is refused: it is older than the floor, the
// highest revision this agent applied.
func (l *loop) olderRevision(what string, rev int64) error {
	return fmt.Errorf("%s at revision %d %w (%d): not applied, the data plane kept as it is "+
		"(a controller's store restored from an older backup, or a forged controller; if the store really was restored, "+
		"restart the agent once with --accept-older-revision, or stop it and delete %s)", what, rev, ErrRevisionBackwards, l.floor, l.journal)
}

// roleOlder is why a role assignment is not obeyed.
func roleOlder(next, cur *lvsctlv1.RoleAssignment) error {
	return fmt.Errorf("role assignment of director group %q at epoch %d %w (%d): the role stays %s "+
		"(a controller's store restored from an older backup, or a forged controller)",
		next.GetGroup(), next.GetEpoch(), ErrEpochBackwards, cur.GetEpoch(), cur.GetRole())
}

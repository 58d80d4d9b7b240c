package printer

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// HistoryView is one recorded change as `history` prints it in JSON and YAML. The field names
// are a stable interface for scripts (revision, who, time and change are issue 10's contract).
type HistoryView struct {
	// Revision is the store revision the change made: what `rollback --to` takes.
	Revision int64 `json:"revision"`
	// Time is when the controller committed it: RFC 3339 in UTC, to the millisecond.
	Time string `json:"time"`
	Who  string `json:"who"`
	// Action is created, updated, deleted, drained, enabled, rolled back or failover.
	Action string `json:"action"`
	// RolledBackTo is the revision a rollback restored (0 otherwise).
	RolledBackTo int64 `json:"rolledBackTo,omitempty"`
	// Change is the whole change in one line: the action and what it changed.
	Change string `json:"change"`
	// Changes are what changed, one line each, as apply's results list them.
	Changes []string `json:"changes"`
	// Object is the object as the change left it, in the manifest schema (re-appliable once
	// its revision and fwmark are dropped); absent for a deletion.
	Object json.RawMessage `json:"object,omitempty"`
}

// HistoryActionText is an action as history prints it.
func HistoryActionText(a lvsctlv1.HistoryAction, to int64) string {
	switch a {
	case lvsctlv1.HistoryAction_HISTORY_ACTION_CREATED:
		return "created"
	case lvsctlv1.HistoryAction_HISTORY_ACTION_UPDATED:
		return "updated"
	case lvsctlv1.HistoryAction_HISTORY_ACTION_DELETED:
		return "deleted"
	case lvsctlv1.HistoryAction_HISTORY_ACTION_DRAINED:
		return "drained"
	case lvsctlv1.HistoryAction_HISTORY_ACTION_ENABLED:
		return "enabled"
	case lvsctlv1.HistoryAction_HISTORY_ACTION_ROLLED_BACK:
		return fmt.Sprintf("rolled back to %d", to)
	case lvsctlv1.HistoryAction_HISTORY_ACTION_FAILOVER:
		return "failover"
	}
	return "unknown"
}

// ViewHistory converts an entry for printing.
func ViewHistory(e *lvsctlv1.HistoryEntry) (HistoryView, error) {
	v := HistoryView{
		Revision: e.GetRevision(),
		Time:     time.UnixMilli(e.GetTimeUnixMs()).UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Who:      e.GetWho(),
		Action:   HistoryActionText(e.GetAction(), e.GetRolledBackTo()),
		Changes:  append([]string{}, e.GetChanges()...),
	}
	if e.GetAction() == lvsctlv1.HistoryAction_HISTORY_ACTION_ROLLED_BACK {
		v.Action, v.RolledBackTo = "rolled back", e.GetRolledBackTo()
	}
	v.Change = HistoryActionText(e.GetAction(), e.GetRolledBackTo())
	if e.GetObject() == nil && e.GetAction() == lvsctlv1.HistoryAction_HISTORY_ACTION_ROLLED_BACK {
		v.Change += " (deleted)"
	}
	if len(v.Changes) > 0 {
		v.Change += ": " + strings.Join(v.Changes, "; ")
	}
	if o := e.GetObject(); o != nil {
		b, err := manifest.Marshal([]*lvsctlv1.Object{o}, manifest.JSON)
		if err != nil {
			return v, fmt.Errorf("revision %d: %w", e.GetRevision(), err)
		}
		v.Object = json.RawMessage(b)
	}
	return v, nil
}

func viewHistory(entries []*lvsctlv1.HistoryEntry) ([]HistoryView, error) {
	views := make([]HistoryView, 0, len(entries))
	for _, e := range entries {
		v, err := ViewHistory(e)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
	}
	return views, nil
}

// History prints the entries one per row, newest first as given; CHANGES is every change
// line, separated by "; " (they are what apply and diff print for the same change).
func (tablePrinter) History(w io.Writer, entries []*lvsctlv1.HistoryEntry) error {
	views, err := viewHistory(entries)
	if err != nil {
		return err
	}
	tw := newTable(w, "REVISION", "WHEN", "WHO", "ACTION", "CHANGES")
	for _, v := range views {
		action := v.Action
		if v.RolledBackTo != 0 {
			action = fmt.Sprintf("rolled back to %d", v.RolledBackTo)
		}
		row(tw, v.Revision, v.Time, v.Who, action, strings.Join(v.Changes, "; "))
	}
	return tw.Flush()
}

func (p dataPrinter) History(w io.Writer, entries []*lvsctlv1.HistoryEntry) error {
	views, err := viewHistory(entries)
	if err != nil {
		return err
	}
	return p.write(w, views)
}

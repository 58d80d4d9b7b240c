package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/desired"
	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// DefaultHistoryRetention is how many history entries each object keeps unless
// WithHistoryRetention says otherwise (the controller's --history-retention).
const DefaultHistoryRetention = 100

// UnknownWho is who a change is recorded as when the server cannot tell (no WithWho).
const UnknownWho = "unknown"

// maxListedRevisions bounds the revisions a refused rollback lists: the newest ones, which
// are what an operator most likely meant.
const maxListedRevisions = 20

// ErrNotInHistory: a rollback named a revision that the object's history does not hold.
var ErrNotInHistory = errors.New("revision not in history")

// WithWho makes the server record each change as made by who(ctx): the caller's
// certificate identity (auth.Who). It returns s.
func (s *Server) WithWho(who func(ctx context.Context) string) *Server {
	s.who = who
	return s
}

// WithHistoryRetention makes each object keep its newest n history entries (n >= 1; less
// keeps 1: the entry of the latest change). Lowering it trims an object's older entries at
// its next change. It returns s.
func (s *Server) WithHistoryRetention(n int) *Server {
	s.retention = max(n, 1)
	return s
}

// recordAs is what a write is recorded as, when not as what it did to each object (created,
// updated, deleted): a drain, an enable, a rollback.
type recordAs struct {
	action lvsctlv1.HistoryAction
	// to is the revision a rollback restored.
	to int64
}

// record sets the write's history: an entry per object the write puts or deletes, with who
// asked, when, what changed, and the object as the write leaves it. It is computed from what
// the write already holds (the written objects and the lines the results listed), so its
// cost is in proportion to the write.
func (s *Server) record(ctx context.Context, ch *change) {
	who := s.who(ctx)
	if who == "" {
		who = UnknownWho
	}
	now := time.Now().UnixMilli()
	entry := func(key string, created, deleted bool, obj *lvsctlv1.Object, summary func() string) *lvsctlv1.HistoryEntry {
		e := &lvsctlv1.HistoryEntry{Who: who, TimeUnixMs: now, Object: obj}
		switch {
		case deleted:
			e.Action = lvsctlv1.HistoryAction_HISTORY_ACTION_DELETED
		case created:
			e.Action = lvsctlv1.HistoryAction_HISTORY_ACTION_CREATED
			e.Changes = []string{summary()}
		default:
			e.Action = lvsctlv1.HistoryAction_HISTORY_ACTION_UPDATED
			e.Changes = ch.changes[key]
		}
		if ch.as.action != lvsctlv1.HistoryAction_HISTORY_ACTION_UNSPECIFIED {
			e.Action, e.RolledBackTo = ch.as.action, ch.as.to
		}
		return e
	}
	recs := make([]store.HistoryRecord, 0, len(ch.clusters)+len(ch.groups))
	for name, c := range ch.clusters {
		key := store.ClusterKey(name)
		var obj *lvsctlv1.Object
		if c != nil {
			obj = &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}}
		}
		recs = append(recs, store.HistoryRecord{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: name,
			Entry: entry(key, ch.write.Expect[key] == 0, c == nil, obj, func() string { return clusterSummary(c) })})
	}
	for name, g := range ch.groups {
		key := store.GroupKey(name)
		var obj *lvsctlv1.Object
		if g != nil {
			obj = &lvsctlv1.Object{Kind: &lvsctlv1.Object_Group{Group: g}}
		}
		recs = append(recs, store.HistoryRecord{Kind: lvsctlv1.Kind_KIND_GROUP, Name: name,
			Entry: entry(key, ch.write.Expect[key] == 0, g == nil, obj, func() string { return groupSummary(g) })})
	}
	ch.write.History, ch.write.HistoryRetention = recs, s.retention
}

// clusterSummary is a created cluster in one line, as plans word it.
func clusterSummary(c *lvsctlv1.Cluster) string {
	return "group " + c.GetDirectorGroup() + ", " + desired.ClusterSummary(c)
}

// groupSummary is a created group in one line.
func groupSummary(g *lvsctlv1.DirectorGroup) string {
	ds := make([]string, len(g.GetDirectors()))
	for i, d := range g.GetDirectors() {
		ds[i] = fmt.Sprintf("%s/%d", d.GetName(), d.GetPriority())
	}
	return fmt.Sprintf("directors %s, vip interface %q", strings.Join(ds, " "), g.GetVipInterface())
}

// historyTarget checks the kind and name a History or Rollback request names.
func historyTarget(kind lvsctlv1.Kind, name string) error {
	if kind != lvsctlv1.Kind_KIND_CLUSTER && kind != lvsctlv1.Kind_KIND_GROUP {
		return fmt.Errorf("%w: kind: %v is not a kind of object", validate.ErrInvalid, kind)
	}
	// A name is a DNS label; '/' would let one object's history prefix reach another's keys.
	if name == "" || len(name) > limits.MaxNameLen || strings.ContainsRune(name, '/') {
		return fmt.Errorf("%w: name: %s is not an object name", validate.ErrInvalid, limits.Quote(name))
	}
	return nil
}

// History lists an object's recorded changes, newest first. Entries outlive the object: a
// deleted object's history is kept (up to the retention) so that it can be rolled back.
func (s *Server) History(ctx context.Context, req *lvsctlv1.HistoryRequest) (*lvsctlv1.HistoryResponse, error) {
	if err := historyTarget(req.GetKind(), req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	if req.GetLimit() < 0 {
		return nil, toStatus(fmt.Errorf("%w: limit: %d is negative", validate.ErrInvalid, req.GetLimit()))
	}
	entries, err := s.history(ctx, req.GetKind(), req.GetName(), int(req.GetLimit()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &lvsctlv1.HistoryResponse{Entries: entries}, nil
}

// history reads an object's entries; entries that do not decode are logged by key and left
// out.
func (s *Server) history(ctx context.Context, kind lvsctlv1.Kind, name string, limit int) ([]*lvsctlv1.HistoryEntry, error) {
	entries, skipped, err := s.store.History(ctx, kind, name, limit)
	if err != nil {
		return nil, err
	}
	for _, e := range skipped {
		s.log.Warn("history entry skipped", "kind", kind.String(), "name", name, "error", e)
	}
	return entries, nil
}

// Rollback restores an object as its history recorded it at a revision, as a new revision:
// the value goes through Apply's validation and commit (a rollback that now conflicts with
// another object is refused as an apply would be), or, when that revision deleted the
// object, through Delete's. The revision must be one History lists for the object: "the
// newest entry at or before" would silently pick a version the operator never looked at.
func (s *Server) Rollback(ctx context.Context, req *lvsctlv1.RollbackRequest) (*lvsctlv1.RollbackResponse, error) {
	if err := historyTarget(req.GetKind(), req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	if req.GetToRevision() <= 0 {
		return nil, toStatus(fmt.Errorf("%w: to_revision: required: a revision listed by lvsctl history", validate.ErrInvalid))
	}
	entries, err := s.history(ctx, req.GetKind(), req.GetName(), 0)
	if err != nil {
		return nil, toStatus(err)
	}
	kind, name, to := kindWord(req.GetKind()), req.GetName(), req.GetToRevision()
	i := slices.IndexFunc(entries, func(e *lvsctlv1.HistoryEntry) bool { return e.GetRevision() == to })
	if i < 0 {
		return nil, toStatus(notInHistory(kind, name, to, entries))
	}
	as := recordAs{action: lvsctlv1.HistoryAction_HISTORY_ACTION_ROLLED_BACK, to: to}
	obj := entries[i].GetObject()
	if obj == nil {
		return s.rollbackToDeleted(ctx, req, as)
	}
	obj = proto.CloneOf(obj)
	switch k := obj.GetKind().(type) {
	case *lvsctlv1.Object_Cluster:
		// Written as a manifest would be: no revision to check against (the write is a new
		// version whatever came in between), and no fwmark: an existing cluster keeps its
		// own, a re-created one is allocated one as any new cluster is (its old mark may
		// have gone to another cluster since).
		k.Cluster.Revision, k.Cluster.Fwmark = 0, 0
	case *lvsctlv1.Object_Group:
		k.Group.Revision = 0
	}
	// Rules tightened since the entry was written apply to it as to any manifest.
	if err := validate.Object(obj); err != nil {
		return nil, toStatus(err)
	}
	areq := &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{obj}, DryRun: req.GetDryRun()}
	resp, err := retry(ctx, s, "rollback", func() (*lvsctlv1.ApplyResponse, int64, error) { return s.apply(ctx, areq, as) })
	if err != nil {
		return nil, toStatus(err)
	}
	if !req.GetDryRun() && resp.GetResults()[0].GetAction() != lvsctlv1.Action_ACTION_UNCHANGED {
		s.log.Info("rolled back", "kind", kind, "name", name, "to", to, "revision", resp.GetRevision())
	}
	return &lvsctlv1.RollbackResponse{Result: resp}, nil
}

// rollbackToDeleted deletes the object, as Delete does (a group still in use is refused);
// an object already absent is left so.
func (s *Server) rollbackToDeleted(ctx context.Context, req *lvsctlv1.RollbackRequest, as recordAs) (*lvsctlv1.RollbackResponse, error) {
	res := &lvsctlv1.ObjectResult{Kind: req.GetKind(), Name: req.GetName(), Action: lvsctlv1.Action_ACTION_DELETED}
	dreq := &lvsctlv1.DeleteRequest{Kind: req.GetKind(), Name: req.GetName(), DryRun: req.GetDryRun()}
	resp, err := retry(ctx, s, "rollback", func() (*lvsctlv1.DeleteResponse, int64, error) { return s.delete(ctx, dreq, as) })
	if errors.Is(err, ErrNotFound) {
		rev, _ := s.cache.Revision()
		res.Action = lvsctlv1.Action_ACTION_UNCHANGED
		return &lvsctlv1.RollbackResponse{Result: &lvsctlv1.ApplyResponse{Results: []*lvsctlv1.ObjectResult{res}, Revision: rev}}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	if !req.GetDryRun() {
		s.log.Info("rolled back", "kind", kindWord(req.GetKind()), "name", req.GetName(), "to", as.to, "revision", resp.GetRevision())
	}
	return &lvsctlv1.RollbackResponse{Result: &lvsctlv1.ApplyResponse{Results: []*lvsctlv1.ObjectResult{res},
		Revision: resp.GetRevision(), Plans: resp.GetPlans()}}, nil
}

// notInHistory names the revisions a rollback of the object can go to, newest first.
func notInHistory(kind, name string, to int64, entries []*lvsctlv1.HistoryEntry) error {
	if len(entries) == 0 {
		return fmt.Errorf("%s %q: %w: %d: the object has no recorded history", kind, name, ErrNotInHistory, to)
	}
	revs := make([]string, 0, min(len(entries), maxListedRevisions))
	for _, e := range entries[:min(len(entries), maxListedRevisions)] {
		revs = append(revs, fmt.Sprint(e.GetRevision()))
	}
	more := ""
	if n := len(entries) - maxListedRevisions; n > 0 {
		more = fmt.Sprintf(" and %d older", n)
	}
	return fmt.Errorf("%s %q: %w: %d; its history holds revisions %s%s (lvsctl history %s %s)",
		kind, name, ErrNotInHistory, to, strings.Join(revs, ", "), more, kind, name)
}

func kindWord(k lvsctlv1.Kind) string {
	switch k {
	case lvsctlv1.Kind_KIND_CLUSTER:
		return validate.KindCluster
	case lvsctlv1.Kind_KIND_GROUP:
		return validate.KindGroup
	}
	return k.String()
}

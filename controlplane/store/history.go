package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// History: every change of an object (written through Commit with Write.History) puts one
// entry under /lvsctl/v1/history/<kind>/<name>/<seq>, in the same transaction as the change.
//
// The sequence number is the head revision the write was conditional on (Write.Head). Every
// write, lvsctl's and the roles manager's alike, is conditional on the head being unchanged
// and rewrites it, so a write that succeeds read a head newer than every write before it: the
// numbers strictly increase per store, whoever wrote in between, across controllers, without
// a clock (two controllers' clocks could disagree) and without a counter key (one more key
// every write would have to read and condition on). "Head + 1" would not do: the transaction's
// revision is only known once it committed. The entry's revision, the one operators see and
// roll back to, is the entry key's mod_revision, read with it.
//
// Entries hold the object's whole value, so they do not depend on etcd's old revisions and
// survive compaction. They are not part of the desired state: Load and Watch leave them out.
const (
	kindHistory = "history/"
	historyRoot = Prefix + kindHistory
	// seqDigits pads sequence numbers so that keys sort as the numbers do: every int64 fits.
	seqDigits = 19
	// defaultTxnOps is etcd's own --max-txn-ops, for an etcd whose limits are unknown.
	defaultTxnOps = 128
)

// ErrUndecodable wraps an entry that is not a HistoryEntry (written by hand, or damaged).
var ErrUndecodable = errors.New("undecodable value")

// HistoryPrefix is the prefix of one object's entries, named with the manifest's word for its
// kind ("cluster", "group"). Names are DNS labels (no '/'), so one object's prefix holds no
// other object's keys; callers refuse a name with '/' before asking.
func HistoryPrefix(kind lvsctlv1.Kind, name string) string {
	return historyRoot + historyKind(kind) + "/" + name + "/"
}

// HistoryKey is one entry's key.
func HistoryKey(kind lvsctlv1.Kind, name string, seq int64) string {
	return fmt.Sprintf("%s%0*d", HistoryPrefix(kind, name), seqDigits, seq)
}

func historyKind(k lvsctlv1.Kind) string {
	switch k {
	case lvsctlv1.Kind_KIND_CLUSTER:
		return "cluster"
	case lvsctlv1.Kind_KIND_GROUP:
		return "group"
	}
	return "unknown"
}

func isHistoryKey(key []byte) bool { return strings.HasPrefix(string(key), historyRoot) }

// HistoryRecord is one object's entry in a write.
type HistoryRecord struct {
	Kind lvsctlv1.Kind
	Name string
	// Entry is stored as given except revision, kind and name, which the key and its
	// mod_revision tell when it is read; they are cleared here to keep entries small.
	Entry *lvsctlv1.HistoryEntry
}

// historyOps are the operations that record w.History: a put per entry and, when
// w.HistoryRetention is set, deletions of each object's oldest entries beyond it. Finding
// those reads the store (one request per defaultTxnOps or MaxTxnOps objects, each read a
// count and the oldest key); the result is exact because the write that uses it is
// conditional on the head it read after: had any write come in between, it is refused.
func (s *Store) historyOps(ctx context.Context, w Write) ([]clientv3.Op, error) {
	if len(w.History) == 0 {
		return nil, nil
	}
	ops := make([]clientv3.Op, 0, len(w.History))
	for _, r := range w.History {
		e := r.Entry
		if e.GetRevision() != 0 || e.GetKind() != lvsctlv1.Kind_KIND_UNSPECIFIED || e.GetName() != "" {
			e = proto.CloneOf(e)
			e.Revision, e.Kind, e.Name = 0, lvsctlv1.Kind_KIND_UNSPECIFIED, ""
		}
		b, err := proto.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encoding the history entry of %s %q: %w", historyKind(r.Kind), r.Name, err)
		}
		ops = append(ops, clientv3.OpPut(HistoryKey(r.Kind, r.Name, w.Head), string(b)))
	}
	if w.HistoryRetention <= 0 {
		return ops, nil
	}
	old, err := s.historyBeyond(ctx, w.History, w.HistoryRetention-1)
	if err != nil {
		return nil, err
	}
	for _, k := range old {
		ops = append(ops, clientv3.OpDelete(k))
	}
	return ops, nil
}

// historyBeyond lists, for each object, its oldest stored entries beyond the newest keep.
func (s *Store) historyBeyond(ctx context.Context, recs []HistoryRecord, keep int) ([]string, error) {
	chunk := s.limits.MaxTxnOps
	if chunk <= 0 {
		chunk = defaultTxnOps
	}
	var out []string
	for lo := 0; lo < len(recs); lo += chunk {
		part := recs[lo:min(lo+chunk, len(recs))]
		gets := make([]clientv3.Op, len(part))
		for i, r := range part {
			gets[i] = oldestEntries(r.Kind, r.Name, 1)
		}
		resp, err := s.client.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return nil, readError(ctx, "history", err)
		}
		for i, rr := range resp.Responses {
			rg := rr.GetResponseRange()
			excess := rg.GetCount() - int64(keep)
			switch {
			case excess <= 0:
				continue
			case excess == 1 && len(rg.GetKvs()) == 1:
				out = append(out, string(rg.GetKvs()[0].Key))
				continue
			}
			// More than one beyond: retention was lowered since the last write. Rare; one
			// more read for this object.
			r := part[i]
			more, err := s.client.Do(ctx, oldestEntries(r.Kind, r.Name, excess))
			if err != nil {
				return nil, readError(ctx, "history", err)
			}
			for _, kv := range more.Get().Kvs {
				out = append(out, string(kv.Key))
			}
		}
	}
	return out, nil
}

// oldestEntries reads the keys of an object's n oldest entries, and how many it has.
func oldestEntries(kind lvsctlv1.Kind, name string, n int64) clientv3.Op {
	return clientv3.OpGet(HistoryPrefix(kind, name), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend), clientv3.WithLimit(n))
}

func readError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("reading %s: %w", what, ctx.Err())
	}
	return fmt.Errorf("%w: reading %s: %w", ErrUnavailable, what, err)
}

// History returns an object's entries, newest first (the newest limit when limit > 0), with
// their revision, kind and name filled in, and the object's revision set to the entry's.
// An entry that does not decode is left out and returned in skipped (wrapping
// ErrUndecodable, naming its key), so that one damaged value hides nothing else.
func (s *Store) History(ctx context.Context, kind lvsctlv1.Kind, name string, limit int) (entries []*lvsctlv1.HistoryEntry, skipped []error, err error) {
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}
	if limit > 0 {
		opts = append(opts, clientv3.WithLimit(int64(limit)))
	}
	resp, err := s.client.Get(ctx, HistoryPrefix(kind, name), opts...)
	if err != nil {
		return nil, nil, readError(ctx, "history of "+historyKind(kind)+" "+name, err)
	}
	for _, kv := range resp.Kvs {
		e := &lvsctlv1.HistoryEntry{}
		if err := proto.Unmarshal(kv.Value, e); err != nil {
			skipped = append(skipped, fmt.Errorf("%w at %s: %w", ErrUndecodable, kv.Key, err))
			continue
		}
		e.Revision, e.Kind, e.Name = kv.ModRevision, kind, name
		switch o := e.GetObject().GetKind().(type) {
		case *lvsctlv1.Object_Cluster:
			o.Cluster.Revision = kv.ModRevision
		case *lvsctlv1.Object_Group:
			o.Group.Revision = kv.ModRevision
		}
		entries = append(entries, e)
	}
	return entries, skipped, nil
}

// readState reads the desired state (everything under Prefix but the history) at one
// revision: two ranges in one transaction, around the history's.
func (s *Store) readState(ctx context.Context) (int64, []*mvccpb.KeyValue, error) {
	resp, err := s.client.Txn(ctx).Then(
		clientv3.OpGet(Prefix, clientv3.WithRange(historyRoot)),
		clientv3.OpGet(clientv3.GetPrefixRangeEnd(historyRoot), clientv3.WithRange(clientv3.GetPrefixRangeEnd(Prefix))),
	).Commit()
	if err != nil {
		return 0, nil, err
	}
	var kvs []*mvccpb.KeyValue
	for _, r := range resp.Responses {
		kvs = append(kvs, r.GetResponseRange().GetKvs()...)
	}
	return resp.Header.Revision, kvs, nil
}

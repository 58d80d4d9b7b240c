// Package store keeps lvsctl's desired state in etcd under /lvsctl/v1/. Values are protobuf;
// the etcd revision is the configuration's version, and every write is conditional on the
// revisions the writer read, so a stale write is refused, never merged.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Prefix is the root of every key lvsctl writes.
const Prefix = "/lvsctl/v1/"

// Key kinds under Prefix.
const (
	kindClusters = "clusters/"
	kindGroups   = "groups/"
	kindRoles    = "roles/"
	// kindGenerations holds one empty key per director group, rewritten in every transaction
	// that changes the group, its clusters or its roles. Its mod_revision is the revision of
	// the group's directors' desired state, and it survives deletions of clusters (whose own
	// keys vanish), so an agent that reconnects to a restarted controller is told the same
	// revision it already applied.
	kindGenerations = "generations/"
)

// ErrConflict is returned when a conditional write found the store changed since it was read.
var ErrConflict = errors.New("stored object changed since it was read")

// ErrTooLarge is returned for a write larger than etcd takes in one transaction.
var ErrTooLarge = errors.New("write too large")

// ErrUnavailable wraps every failure to reach etcd or to get an answer from it.
var ErrUnavailable = errors.New("etcd unavailable")

// headKey is rewritten by every write and every write requires it unchanged since its read.
// Per-key conditions alone would let two writers that each touch different keys both pass
// checks that span objects (a VIP+port claimed twice, one fwmark allocated twice, a cluster
// created in a group being deleted); the head serializes writes, which a configuration store
// can afford.
const headKey = Prefix + "head"

// Limits are what one etcd transaction may hold. etcd refuses a transaction with more
// operations (or comparisons) than --max-txn-ops, or a request larger than
// --max-request-bytes; knowing them lets a write be refused before any work is spent on it.
type Limits struct {
	// MaxTxnOps is etcd's --max-txn-ops (0: unknown, etcd decides).
	MaxTxnOps int
	// MaxRequestBytes is etcd's --max-request-bytes (0: unknown, etcd decides).
	MaxRequestBytes int
}

// EmbeddedLimits are the embedded etcd's limits: sized so that one apply of 20,000 clusters
// (limits.MaxObjectsPerApply) of 10 real servers each fits with room to spare: about 20 MiB
// with each cluster's history entry, which holds its value again, and up to 60,000
// operations (per cluster a put, its history entry, and the deletion of its oldest entry
// once the retention is reached) and 20,000 comparisons. etcd's defaults (128 operations,
// 1.5 MiB) would refuse a manifest of a few dozen clusters.
func EmbeddedLimits() Limits { return Limits{MaxTxnOps: 65536, MaxRequestBytes: 64 << 20} }

// ClusterKey, GroupKey, RolesKey and GenerationKey name the etcd keys of objects.
func ClusterKey(name string) string     { return Prefix + kindClusters + name }
func GroupKey(name string) string       { return Prefix + kindGroups + name }
func RolesKey(group string) string      { return Prefix + kindRoles + group }
func GenerationKey(group string) string { return Prefix + kindGenerations + group }

// Snapshot is the whole desired state at one revision.
type Snapshot struct {
	Revision int64
	// Head is the mod_revision of the head key when the snapshot was read (0: never written).
	Head     int64
	Clusters map[string]*lvsctlv1.Cluster
	Groups   map[string]*lvsctlv1.DirectorGroup
	Roles    map[string]*lvsctlv1.GroupRoles
	// RolesRevision and Generations hold mod_revisions of the roles and generation keys.
	// A roles key whose value does not decode keeps its revision (and has no Roles entry),
	// so that the write that replaces it is conditional on it like any other.
	RolesRevision map[string]int64
	Generations   map[string]int64
	// Undecodable holds, by key, the values that do not decode: their objects are absent
	// from the maps above (see Set).
	Undecodable map[string]Undecodable
}

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		Clusters:      map[string]*lvsctlv1.Cluster{},
		Groups:        map[string]*lvsctlv1.DirectorGroup{},
		Roles:         map[string]*lvsctlv1.GroupRoles{},
		RolesRevision: map[string]int64{},
		Generations:   map[string]int64{},
		Undecodable:   map[string]Undecodable{},
	}
}

// GroupRevision is the revision of the desired state of a group's directors.
func (s *Snapshot) GroupRevision(group string) int64 {
	return max(s.Generations[group], s.RolesRevision[group])
}

// Set stores one key's value into the snapshot (deleted when value is nil). A value that does
// not decode is no error: it is recorded in Undecodable and its object is absent, so that one
// bad value (written by hand, by a newer version, or damaged) never stops the readers of
// everything else; the controller reports it by key (Cache).
func (s *Snapshot) Set(key string, value []byte, modRevision int64) error {
	if key == headKey {
		s.Head = modRevision
		return nil
	}
	kind, name, ok := parseKey(key)
	if !ok {
		return nil
	}
	del := value == nil
	delete(s.Undecodable, key)
	bad := func(err error) {
		s.Undecodable[key] = Undecodable{Key: key, ModRevision: modRevision, Err: err}
	}
	switch kind {
	case kindClusters:
		delete(s.Clusters, name)
		if del {
			return nil
		}
		c, err := decodeCluster(key, value, modRevision)
		if err != nil {
			bad(err)
			return nil
		}
		s.Clusters[name] = c
	case kindGroups:
		delete(s.Groups, name)
		if del {
			return nil
		}
		g, err := decodeGroup(key, value, modRevision)
		if err != nil {
			bad(err)
			return nil
		}
		s.Groups[name] = g
	case kindRoles:
		delete(s.Roles, name)
		if del {
			delete(s.RolesRevision, name)
			return nil
		}
		s.RolesRevision[name] = modRevision
		r, err := decodeRoles(key, value)
		if err != nil {
			bad(err)
			return nil
		}
		s.Roles[name] = r
	case kindGenerations:
		if del {
			delete(s.Generations, name)
			return nil
		}
		s.Generations[name] = modRevision
	}
	return nil
}

// parseKey splits a key under Prefix into its kind ("clusters/") and name.
func parseKey(key string) (kind, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return "", "", false
	}
	kind, name, _ = strings.Cut(rest, "/")
	return kind + "/", name, true
}

// Store reads and writes the desired state in etcd.
type Store struct {
	client *clientv3.Client
	limits Limits
}

// New returns a store over an etcd client whose limits are unknown (an external cluster):
// etcd itself refuses a write past them, and Commit names the limit it hit.
func New(client *clientv3.Client) *Store { return &Store{client: client} }

// NewLimited returns a store over an etcd whose limits are known (the embedded one), so a
// write past them is refused before it is sent.
func NewLimited(client *clientv3.Client, l Limits) *Store { return &Store{client: client, limits: l} }

// Limits returns the etcd limits the store knows (zero fields: unknown).
func (s *Store) Limits() Limits { return s.limits }

// writeOverhead is a generous estimate of the bytes etcd's request adds per object written
// around its key and value: the put, the comparison of the key, field tags and lengths.
const writeOverhead = 64

// CheckSize refuses, before any work is spent on it, a write of `objects` objects whose keys
// and values add up to about `bytes` bytes when it exceeds the known limits. Every object is
// one put and one comparison, and one put of its history entry (which holds the value again),
// plus the head key; the error names the limit and the size asked. Once an object has
// reached its history retention, its write also deletes its oldest entry: Commit counts
// those.
func (s *Store) CheckSize(objects, bytes int) error {
	l := s.limits
	ops := 2*objects + 1
	bytes = 2 * (bytes + objects*writeOverhead)
	if l.MaxTxnOps > 0 && ops > l.MaxTxnOps {
		return fmt.Errorf("%w: %d objects need at least %d etcd operations in one transaction; etcd takes at most %d (--max-txn-ops): apply fewer objects at once", ErrTooLarge, objects, ops, l.MaxTxnOps)
	}
	if l.MaxRequestBytes > 0 && bytes > l.MaxRequestBytes {
		return fmt.Errorf("%w: %d objects need about %.1f MiB in one etcd request; etcd takes at most %.1f MiB (--max-request-bytes): apply fewer objects at once", ErrTooLarge, objects, float64(bytes)/(1<<20), float64(l.MaxRequestBytes)/(1<<20))
	}
	return nil
}

// Load reads the whole desired state at the latest revision.
func (s *Store) Load(ctx context.Context) (*Snapshot, error) {
	rev, kvs, err := s.readState(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrUnavailable, Prefix, err)
	}
	snap := NewSnapshot()
	snap.Revision = rev
	for _, kv := range kvs {
		// An empty value (a generation marker) decodes as nil; nil means deleted to Set.
		value := kv.Value
		if value == nil {
			value = []byte{}
		}
		if err := snap.Set(string(kv.Key), value, kv.ModRevision); err != nil {
			return nil, err
		}
	}
	return snap, nil
}

// Head reads the head key: etcd's current revision and the head's mod_revision (0: never
// written). One small linearizable read tells a cached reader whether it shows the latest
// write, without loading anything.
func (s *Store) Head(ctx context.Context) (rev, head int64, err error) {
	resp, err := s.client.Get(ctx, headKey)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: reading %s: %w", ErrUnavailable, headKey, err)
	}
	if len(resp.Kvs) > 0 {
		head = resp.Kvs[0].ModRevision
	}
	return resp.Header.Revision, head, nil
}

// Write is one atomic change: every condition must hold, then every op is applied.
type Write struct {
	// Head is the head revision the writer read (Snapshot.Head); the write fails with
	// ErrConflict if any other write committed since.
	Head int64
	// Expect maps a key to the mod_revision it must still have (0: it must not exist).
	Expect map[string]int64
	Puts   map[string]proto.Message
	// Touch lists keys rewritten with an empty value (generation markers).
	Touch   []string
	Deletes []string
	// History records the change: an entry per changed object, put in the same transaction
	// (see HistoryKey).
	History []HistoryRecord
	// HistoryRetention is how many entries each recorded object keeps: the oldest beyond it
	// are deleted in the same transaction. 0 keeps them all.
	HistoryRetention int
	// Fence, when set, makes the write conditional on the writer still leading: a deposed
	// leader's role writes fail with ErrNotLeader (see LeaderFence).
	Fence *LeaderFence
}

// LeaderFence is a leading controller's election key: the key etcd's election created for
// it and that key's create revision. The key lives on the leader's session lease, so it is
// gone (or recreated with another revision) once the leader's lease expired or it resigned;
// a write that compares it cannot land after that, whatever the deposed process believes.
type LeaderFence struct {
	Key string
	Rev int64
}

// ErrNotLeader is returned for a fenced write whose writer no longer leads.
var ErrNotLeader = errors.New("this controller no longer leads")

// Commit applies w in one etcd transaction and returns the new revision. It returns
// ErrConflict when a condition failed: someone else wrote in between; the revision returned
// with it is etcd's current one, which a cached reader waits for before trying again.
func (s *Store) Commit(ctx context.Context, w Write) (int64, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(headKey), "=", w.Head)}
	for k, rev := range w.Expect {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
	}
	if w.Fence != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(w.Fence.Key), "=", w.Fence.Rev))
	}
	var ops []clientv3.Op
	for k, m := range w.Puts {
		b, err := proto.Marshal(m)
		if err != nil {
			return 0, fmt.Errorf("encoding %s: %w", k, err)
		}
		ops = append(ops, clientv3.OpPut(k, string(b)))
	}
	for _, k := range w.Touch {
		ops = append(ops, clientv3.OpPut(k, ""))
	}
	for _, k := range w.Deletes {
		ops = append(ops, clientv3.OpDelete(k))
	}
	hops, err := s.historyOps(ctx, w)
	if err != nil {
		return 0, err
	}
	ops = append(ops, hops...)
	ops = append(ops, clientv3.OpPut(headKey, ""))
	if n := max(len(ops), len(cmps)); s.limits.MaxTxnOps > 0 && n > s.limits.MaxTxnOps {
		return 0, fmt.Errorf("%w: %d etcd operations, more than the %d one write may hold (--max-txn-ops): apply fewer objects at once", ErrTooLarge, n, s.limits.MaxTxnOps)
	}
	txn := s.client.Txn(ctx).If(cmps...).Then(ops...)
	if w.Fence != nil {
		// Read in the same transaction, so a refusal says whether the fence failed.
		txn = txn.Else(clientv3.OpGet(w.Fence.Key))
	}
	resp, err := txn.Commit()
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return 0, fmt.Errorf("%w: etcd refused %d operations in one transaction (its --max-txn-ops, 128 by default): apply fewer objects at once", ErrTooLarge, max(len(ops), len(cmps)))
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return 0, fmt.Errorf("%w: etcd refused a request of %d operations as too large (its --max-request-bytes, 1.5 MiB by default): apply fewer objects at once", ErrTooLarge, len(ops))
	case status.Code(err) == codes.ResourceExhausted:
		// The etcd client's send limit (2 MiB unless raised) or etcd's gRPC receive limit.
		return 0, fmt.Errorf("%w: a request of %d operations is larger than the etcd client or server takes (%v): apply fewer objects at once", ErrTooLarge, len(ops), status.Convert(err).Message())
	case err != nil && ctx.Err() != nil:
		return 0, fmt.Errorf("writing: %w", ctx.Err())
	case err != nil:
		return 0, fmt.Errorf("%w: writing: %w", ErrUnavailable, err)
	}
	if !resp.Succeeded {
		if w.Fence != nil && !fenceHeld(resp, *w.Fence) {
			return resp.Header.Revision, fmt.Errorf("%w: its election key %s (revision %d) is gone: another controller may lead", ErrNotLeader, w.Fence.Key, w.Fence.Rev)
		}
		return resp.Header.Revision, ErrConflict
	}
	return resp.Header.Revision, nil
}

// fenceHeld reads the Else branch's get of the fence key: whether it still exists with the
// fence's create revision.
func fenceHeld(resp *clientv3.TxnResponse, f LeaderFence) bool {
	for _, r := range resp.Responses {
		if g := r.GetResponseRange(); g != nil {
			return len(g.Kvs) == 1 && g.Kvs[0].CreateRevision == f.Rev
		}
	}
	return false
}

// Event is one key's change in a watched revision.
type Event struct {
	Key         string
	Value       []byte // nil for a deletion
	ModRevision int64
}

// Batch is every change of one or more revisions, in order.
type Batch struct {
	Revision int64
	Events   []Event
}

// ErrCompacted is returned by Watch when the revision to resume from is gone: reload.
var ErrCompacted = errors.New("watch revision compacted")

// Watch streams changes after revision `after` until ctx ends or the watch fails; the
// returned channel closes then, and errc tells why (nil when ctx ended).
func (s *Store) Watch(ctx context.Context, after int64) (<-chan Batch, <-chan error) {
	out := make(chan Batch)
	errc := make(chan error, 1)
	go func() {
		defer close(out)
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		wch := s.client.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithRev(after+1))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				errc <- fmt.Errorf("%w at %d", ErrCompacted, resp.CompactRevision)
				return
			}
			if err := resp.Err(); err != nil {
				errc <- fmt.Errorf("%w: watching %s: %w", ErrUnavailable, Prefix, err)
				return
			}
			if len(resp.Events) == 0 {
				continue
			}
			b := Batch{Revision: resp.Header.Revision}
			for _, ev := range resp.Events {
				if isHistoryKey(ev.Kv.Key) {
					// Not desired state; every write that records history also moves the
					// head, so the batch is never left empty.
					continue
				}
				e := Event{Key: string(ev.Kv.Key), ModRevision: ev.Kv.ModRevision}
				if ev.Type == clientv3.EventTypePut {
					e.Value = ev.Kv.Value
					if e.Value == nil {
						e.Value = []byte{}
					}
				}
				b.Events = append(b.Events, e)
			}
			select {
			case out <- b:
			case <-ctx.Done():
				errc <- nil
				return
			}
		}
		errc <- ctx.Err()
	}()
	return out, errc
}

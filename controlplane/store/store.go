// Package store keeps lvsctl's desired state in etcd under /lvsctl/v1/. Values are protobuf;
// the etcd revision is the configuration's version, and every write is conditional on the
// revisions the writer read, so a stale write is refused, never merged.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
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

// ErrTooLarge is returned for a write with more operations than MaxOps.
var ErrTooLarge = errors.New("write too large")

// ErrUnavailable wraps every failure to reach etcd or to get an answer from it.
var ErrUnavailable = errors.New("etcd unavailable")

// headKey is rewritten by every write and every write requires it unchanged since its read.
// Per-key conditions alone would let two writers that each touch different keys both pass
// checks that span objects (a VIP+port claimed twice, one fwmark allocated twice, a cluster
// created in a group being deleted); the head serializes writes, which a configuration store
// can afford.
const headKey = Prefix + "head"

// MaxOps is the number of operations one write may hold; the embedded etcd is configured
// for it (etcd's default is 128, a manifest of a few dozen objects).
const MaxOps = 4096

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
	RolesRevision map[string]int64
	Generations   map[string]int64
}

// NewSnapshot returns an empty snapshot.
func NewSnapshot() *Snapshot {
	return &Snapshot{
		Clusters:      map[string]*lvsctlv1.Cluster{},
		Groups:        map[string]*lvsctlv1.DirectorGroup{},
		Roles:         map[string]*lvsctlv1.GroupRoles{},
		RolesRevision: map[string]int64{},
		Generations:   map[string]int64{},
	}
}

// GroupRevision is the revision of the desired state of a group's directors.
func (s *Snapshot) GroupRevision(group string) int64 {
	return max(s.Generations[group], s.RolesRevision[group])
}

// Set stores one key's value into the snapshot (deleted when value is nil).
func (s *Snapshot) Set(key string, value []byte, modRevision int64) error {
	if key == headKey {
		s.Head = modRevision
		return nil
	}
	rest, ok := strings.CutPrefix(key, Prefix)
	if !ok {
		return nil
	}
	kind, name, _ := strings.Cut(rest, "/")
	kind += "/"
	del := value == nil
	switch kind {
	case kindClusters:
		if del {
			delete(s.Clusters, name)
			return nil
		}
		c := &lvsctlv1.Cluster{}
		if err := proto.Unmarshal(value, c); err != nil {
			return fmt.Errorf("decoding %s: %w", key, err)
		}
		c.Revision = modRevision
		s.Clusters[name] = c
	case kindGroups:
		if del {
			delete(s.Groups, name)
			return nil
		}
		g := &lvsctlv1.DirectorGroup{}
		if err := proto.Unmarshal(value, g); err != nil {
			return fmt.Errorf("decoding %s: %w", key, err)
		}
		g.Revision = modRevision
		s.Groups[name] = g
	case kindRoles:
		if del {
			delete(s.Roles, name)
			delete(s.RolesRevision, name)
			return nil
		}
		r := &lvsctlv1.GroupRoles{}
		if err := proto.Unmarshal(value, r); err != nil {
			return fmt.Errorf("decoding %s: %w", key, err)
		}
		s.Roles[name] = r
		s.RolesRevision[name] = modRevision
	case kindGenerations:
		if del {
			delete(s.Generations, name)
			return nil
		}
		s.Generations[name] = modRevision
	}
	return nil
}

// Store reads and writes the desired state in etcd.
type Store struct {
	client *clientv3.Client
}

// New returns a store over an etcd client.
func New(client *clientv3.Client) *Store { return &Store{client: client} }

// Load reads the whole desired state at the latest revision.
func (s *Store) Load(ctx context.Context) (*Snapshot, error) {
	resp, err := s.client.Get(ctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %w", ErrUnavailable, Prefix, err)
	}
	snap := NewSnapshot()
	snap.Revision = resp.Header.Revision
	for _, kv := range resp.Kvs {
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
}

// Commit applies w in one etcd transaction and returns the new revision. It returns
// ErrConflict when a condition failed: someone else wrote in between.
func (s *Store) Commit(ctx context.Context, w Write) (int64, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(headKey), "=", w.Head)}
	for k, rev := range w.Expect {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
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
	ops = append(ops, clientv3.OpPut(headKey, ""))
	if len(ops) > MaxOps {
		return 0, fmt.Errorf("%w: %d etcd operations, more than the %d one write may hold: apply fewer objects at once", ErrTooLarge, len(ops), MaxOps)
	}
	resp, err := s.client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("%w: writing: %w", ErrUnavailable, err)
	}
	if !resp.Succeeded {
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
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

package store

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// A stored value that does not decode (bytes that are not the protobuf of its kind, or an
// object stored under another object's key) is an error matching ErrUndecodable (declared
// with the history, whose entries are read the same way).

// Undecodable is a key whose value does not decode. Readers skip it (Snapshot.Set); the
// controller reports it (Cache), and a write of the object it names replaces it.
type Undecodable struct {
	Key         string
	ModRevision int64
	Err         error
}

// Error reports the key, the revision that wrote it and why it does not decode.
func (u Undecodable) Error() string {
	return fmt.Sprintf("%s (revision %d): %v", u.Key, u.ModRevision, u.Err)
}

// Unwrap returns the decoding error, which matches ErrUndecodable.
func (u Undecodable) Unwrap() error { return u.Err }

func decodeCluster(key string, value []byte, modRevision int64) (*lvsctlv1.Cluster, error) {
	c := &lvsctlv1.Cluster{}
	if err := proto.Unmarshal(value, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	// Every index of the cache and every write names an object by its key: an object
	// stored under another one's key would be found under one name and written under the other.
	if _, name, _ := parseKey(key); c.GetName() != name {
		return nil, fmt.Errorf("%w: it holds cluster %s", ErrUndecodable, limits.Quote(c.GetName()))
	}
	c.Revision = modRevision
	return c, nil
}

func decodeGroup(key string, value []byte, modRevision int64) (*lvsctlv1.DirectorGroup, error) {
	g := &lvsctlv1.DirectorGroup{}
	if err := proto.Unmarshal(value, g); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	if _, name, _ := parseKey(key); g.GetName() != name {
		return nil, fmt.Errorf("%w: it holds director group %s", ErrUndecodable, limits.Quote(g.GetName()))
	}
	g.Revision = modRevision
	return g, nil
}

func decodeRoles(key string, value []byte) (*lvsctlv1.GroupRoles, error) {
	r := &lvsctlv1.GroupRoles{}
	if err := proto.Unmarshal(value, r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	// A roles value names its group; one written before the field was set names none.
	if _, name, _ := parseKey(key); r.GetGroup() != "" && r.GetGroup() != name {
		return nil, fmt.Errorf("%w: it holds the roles of group %s", ErrUndecodable, limits.Quote(r.GetGroup()))
	}
	return r, nil
}

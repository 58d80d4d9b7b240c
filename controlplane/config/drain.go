package config

import (
	"context"
	"fmt"
	"net/netip"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Drain sets (drained true) or clears one real server's drained flag in the stored cluster:
// lvsctl drain and enable. It is a write like Apply's, conditional on the cluster's revision
// and the head, retried when another writer raced it, so it never undoes a change it did not
// see. A flag already as asked writes nothing. It returns the cluster as stored.
func (s *Server) Drain(ctx context.Context, req *lvsctlv1.DrainRequest) (*lvsctlv1.DrainResponse, error) {
	addr, err := drainTarget(req)
	if err != nil {
		return nil, toStatus(err)
	}
	resp, err := retry(ctx, s, "drain", func() (*lvsctlv1.DrainResponse, int64, error) { return s.drain(ctx, req, addr) })
	if err != nil {
		return nil, toStatus(err)
	}
	return resp, nil
}

// drainTarget checks the request's fields.
func drainTarget(req *lvsctlv1.DrainRequest) (netip.Addr, error) {
	if req.GetCluster() == "" {
		return netip.Addr{}, fmt.Errorf("%w: cluster: required: the cluster of the real server", validate.ErrInvalid)
	}
	if req.GetReal() == "" {
		return netip.Addr{}, fmt.Errorf("%w: real: required: the real server's address, as the cluster lists it", validate.ErrInvalid)
	}
	a, err := netip.ParseAddr(req.GetReal())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: real: %q is not an IP address", validate.ErrInvalid, req.GetReal())
	}
	return a, nil
}

func (s *Server) drain(ctx context.Context, req *lvsctlv1.DrainRequest, addr netip.Addr) (*lvsctlv1.DrainResponse, int64, error) {
	ch := newChange(s.cache)
	name := req.GetCluster()
	cur, ok := ch.cache.Cluster(name)
	if !ok {
		return nil, 0, fmt.Errorf("cluster %q: %w", name, ErrNotFound)
	}
	// Addresses compare as addresses: 2001:db8::1 is 2001:0db8:0:0::1.
	idx := -1
	for i, r := range cur.GetReals() {
		if a, err := netip.ParseAddr(r.GetAddress()); err == nil && a == addr {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, 0, fmt.Errorf("cluster %q: real server %s: %w", name, addr, ErrNotFound)
	}
	if cur.GetReals()[idx].GetDrained() == req.GetDrained() {
		// Nothing to write; confirm that the cache showed the latest, as Get does.
		if rev, err := s.current(ctx, ch.head); err != nil {
			return nil, rev, err
		}
		return &lvsctlv1.DrainResponse{Cluster: proto.CloneOf(cur)}, 0, nil
	}
	// No validation: the write changes one flag, which breaks no rule, and a cluster stored
	// before a rule was tightened must still be drainable in an incident.
	c := proto.CloneOf(cur)
	c.Revision = 0
	c.Reals[idx].Drained = req.GetDrained()
	key := store.ClusterKey(name)
	ch.write.Expect[key] = cur.GetRevision()
	ch.write.Puts[key] = c
	ch.changes[key] = clusterChanges(cur, c)
	ch.as.action = lvsctlv1.HistoryAction_HISTORY_ACTION_ENABLED
	if req.GetDrained() {
		ch.as.action = lvsctlv1.HistoryAction_HISTORY_ACTION_DRAINED
	}
	ch.clusters[name] = c
	ch.touched[c.GetDirectorGroup()] = true
	if err := ch.stale(); err != nil {
		return nil, 0, err
	}
	rev, err := s.commit(ctx, ch)
	if err != nil {
		return nil, rev, err
	}
	out := proto.CloneOf(c)
	out.Revision = rev
	s.log.Info("drain set", "cluster", name, "real", c.Reals[idx].GetAddress(), "drained", req.GetDrained(), "revision", rev)
	return &lvsctlv1.DrainResponse{Cluster: out}, 0, nil
}

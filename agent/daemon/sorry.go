package daemon

import (
	"net/netip"

	"github.com/lvsctl/lvsctl/agent/checker"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Sorry servers (keepalived's sorry_server). A cluster's sorry server is a destination of its
// IPVS service only while none of its real servers can take a new connection; the reconciler
// applies it like any destination, as part of the effective cluster (health.go), so it is
// read back, repaired on drift and never duplicated.
//
// When is it in use? keepalived adds it when the virtual server loses quorum: the summed
// weight of the real servers its checks find alive falls below quorum (1 by default), so a
// real server that is alive at weight 0 counts for nothing. lvsctl follows that rule, and a
// real server counts for nothing when it is:
//   - found down by its check (either onFailure);
//   - drained: an operator who drains every real server for maintenance wants the sorry
//     page, not a service that drops its clients;
//   - at weight 0 in the manifest, for the same reason;
//   - being removed (held at weight 0 for its grace): it is not one of the cluster's reals.
// A cluster with no real server at all uses its sorry server too (keepalived's weight sum 0).
//
// A real server not yet checked (Unknown: an agent just started, a server just added) keeps
// the sorry server's previous state rather than deciding: otherwise a restarted agent, whose
// checks all start Unknown, would take a sorry page out of the kernel, then put it back a
// fall x interval later. A real server with no check serves (as its weight is applied), so
// it decides at once. At start, "in use before" is read from the kernel: the sorry server is
// a destination of the owned service. (keepalived's alpha mode, where real servers start down
// and a fresh start puts the sorry server in at once, has no counterpart: Unknown serves.)
//
// Where lvsctl differs from keepalived, and why:
//   - keepalived deletes the remaining alive weight-0 real servers while its sorry server is
//     in; lvsctl keeps them at weight 0: deleting them would cut a drained server's
//     established connections, which drain promises to keep. At weight 0 they take no new
//     connection, so the sorry server gets every new one all the same.
//   - sorry_server_inhibit (keep the sorry server at weight 0 while not in use) is not
//     modelled: its only effect is to keep the sorry server's established connections after
//     a real server comes back, and a deleted IPVS destination keeps them anyway (its
//     connection entries live until they expire; expire_nodest_conn is off). The importer
//     says so.
//   - The sorry server has the cluster's forwarding: the model has one method per cluster,
//     so keepalived's sorry_server_lvs_method is carried only when it is the cluster's.
//   - The weight is 1, keepalived's (alloc_ssvr); with a single destination it only needs to
//     be above 0.

// sorryWeight is the weight of a sorry server in use: keepalived's (alloc_ssvr).
const sorryWeight = 1

// sorryNeeded decides whether cluster c's sorry server is in use. state is a real server's
// health as the loop knows it, with Up for a server that has no check (it serves as given);
// before is the decision in force (at start, whether the kernel has the sorry server).
func sorryNeeded(c *lvsctlv1.Cluster, state func(netip.Addr) checker.State, before bool) bool {
	if c.GetSorryServer() == nil {
		return false
	}
	undecided := false
	for _, r := range c.GetReals() {
		if r.GetDrained() || r.GetWeight() == 0 {
			continue
		}
		addr, err := netip.ParseAddr(r.GetAddress())
		if err != nil {
			continue // the reconciler refuses the cluster anyway
		}
		switch state(addr.Unmap()) {
		case checker.Up:
			return false
		case checker.Unknown:
			undecided = true
		}
	}
	if undecided {
		return before
	}
	return true
}

// sorryAddr is c's sorry server's address (invalid: none, or not an address).
func sorryAddr(c *lvsctlv1.Cluster) netip.Addr {
	s := c.GetSorryServer()
	if s == nil {
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s.GetAddress())
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// sorryReal is c's sorry server as a destination of its service.
func sorryReal(c *lvsctlv1.Cluster) *lvsctlv1.RealServer {
	s := c.GetSorryServer()
	return &lvsctlv1.RealServer{Address: s.GetAddress(), Port: s.GetPort(), Weight: sorryWeight}
}

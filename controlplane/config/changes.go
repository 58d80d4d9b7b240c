package config

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/desired"
	"github.com/lvsctl/lvsctl/controlplane/manifest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// clusterChanges lists the field changes between two versions of a cluster: desired's, and
// the health checks, the removal grace and the drained flags. A write whose list is empty
// is "unchanged" and not stored, so every field a director acts on must be listed here.
func clusterChanges(a, b *lvsctlv1.Cluster) []string {
	out := desired.ClusterChanges(a, b)
	if !proto.Equal(a.GetHealth(), b.GetHealth()) {
		out = append(out, fmt.Sprintf("health: %s -> %s", manifest.HealthText(a.GetHealth()), manifest.HealthText(b.GetHealth())))
	}
	if ga, gb := graceText(a), graceText(b); ga != gb {
		out = append(out, fmt.Sprintf("removeGrace: %s -> %s", ga, gb))
	}
	if a.GetAdopt() != b.GetAdopt() {
		out = append(out, fmt.Sprintf("adopt: %v -> %v", a.GetAdopt(), b.GetAdopt()))
	}
	if sa, sb := sorryText(a), sorryText(b); sa != sb {
		out = append(out, fmt.Sprintf("sorryServer: %s -> %s", sa, sb))
	}
	old := map[string]*lvsctlv1.RealServer{}
	for _, r := range a.GetReals() {
		old[r.GetAddress()] = r
	}
	for _, r := range b.GetReals() {
		o, ok := old[r.GetAddress()]
		if !ok {
			// A new real server: desired lists it; say what it comes with.
			if r.GetDrained() {
				out = append(out, fmt.Sprintf("real %s drained: true", r.GetAddress()))
			}
			if r.GetHealth() != nil {
				out = append(out, fmt.Sprintf("real %s health: %s", r.GetAddress(), manifest.HealthText(r.GetHealth())))
			}
			continue
		}
		if o.GetDrained() != r.GetDrained() {
			out = append(out, fmt.Sprintf("real %s drained: %v -> %v", r.GetAddress(), o.GetDrained(), r.GetDrained()))
		}
		if !proto.Equal(o.GetHealth(), r.GetHealth()) {
			out = append(out, fmt.Sprintf("real %s health: %s -> %s", r.GetAddress(), manifest.HealthText(o.GetHealth()), manifest.HealthText(r.GetHealth())))
		}
	}
	return out
}

// graceText is a cluster's removal grace as an operator reads it.
func graceText(c *lvsctlv1.Cluster) string {
	switch {
	case c.GetRemoveNow():
		return "0s (at once)"
	case c.GetRemoveGraceMs() == 0:
		return "default"
	}
	return (time.Duration(c.GetRemoveGraceMs()) * time.Millisecond).String()
}

// sorryText is a cluster's sorry server as an operator reads it.
func sorryText(c *lvsctlv1.Cluster) string {
	s := c.GetSorryServer()
	switch {
	case s == nil:
		return "none"
	case s.GetPort() != 0:
		return fmt.Sprintf("%s port %d", s.GetAddress(), s.GetPort())
	}
	return s.GetAddress()
}

package config

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// plain is a plain service cluster (issue 12): tcp VIP:port, NAT to port 8080.
func plain(name, grp, vip string, port uint32) *lvsctlv1.Object {
	return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: name, DirectorGroup: grp, Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Service: &lvsctlv1.VirtualService{Address: vip, Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: port},
		Reals:   []*lvsctlv1.RealServer{{Address: "198.51.100.1", Port: 8080, Weight: 1}},
	}}}
}

func storedCluster(t *testing.T, s *Server, name string) *lvsctlv1.Cluster {
	t.Helper()
	resp, err := s.Get(context.Background(), &lvsctlv1.GetRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetObject().GetCluster()
}

// TestPlainServiceHasNoMark: a plain service is created without a fwmark, beside fwmark
// clusters that get theirs; a cluster turned into a plain service drops its mark, and one
// turned back is allocated one.
func TestPlainServiceHasNoMark(t *testing.T) {
	s, _ := newServer(t)
	first := apply(t, s, group("edge-1", "dir-a"), cluster("fw", "edge-1", "192.0.2.10", 80), plain("web", "edge-1", "192.0.2.20", 80))
	var plan []string
	for _, p := range first.GetPlans() {
		plan = append(plan, p.GetChanges()...)
	}
	if got := strings.Join(plan, "\n"); !strings.Contains(got, "add cluster web: service tcp 192.0.2.20:80, wlc, 1 real servers\n") ||
		!strings.Contains(got, "add cluster fw: fwmark 1, wlc, 1 real servers, 1 VIPs x 1 port ranges") {
		t.Errorf("plan:\n%s", got)
	}
	// The same objects again change nothing: the new fields compare equal when unset.
	for _, r := range apply(t, s, cluster("fw", "edge-1", "192.0.2.10", 80), plain("web", "edge-1", "192.0.2.20", 80)).GetResults() {
		if r.GetAction() != lvsctlv1.Action_ACTION_UNCHANGED {
			t.Errorf("%s re-applied: %v %v", r.GetName(), r.GetAction(), r.GetChanges())
		}
	}
	if m := storedCluster(t, s, "web").GetFwmark(); m != 0 {
		t.Errorf("plain service stored with fwmark %d", m)
	}
	if m := storedCluster(t, s, "fw").GetFwmark(); m != 1 {
		t.Errorf("fwmark cluster stored with fwmark %d, want 1", m)
	}
	resp := apply(t, s, plain("fw", "edge-1", "192.0.2.10", 80))
	if c := storedCluster(t, s, "fw"); c.GetFwmark() != 0 || c.GetService() == nil {
		t.Errorf("cluster turned plain: fwmark %d, service %v", c.GetFwmark(), c.GetService())
	}
	if got := strings.Join(resp.GetResults()[0].GetChanges(), "\n"); !strings.Contains(got, "service: none -> tcp 192.0.2.10:80") {
		t.Errorf("changes do not show the service:\n%s", got)
	}
	apply(t, s, cluster("fw", "edge-1", "192.0.2.10", 80))
	if m := storedCluster(t, s, "fw").GetFwmark(); m == 0 {
		t.Error("cluster turned back to fwmark got no mark")
	}
}

// TestPlainServiceConflicts: within a group the same service twice, or a service a fwmark
// cluster also marks, is refused naming both clusters; a VIP shared on other ports is not.
func TestPlainServiceConflicts(t *testing.T) {
	s, st := newServer(t)
	apply(t, s, group("edge-1", "dir-a"), cluster("fw", "edge-1", "192.0.2.10", 80), plain("web", "edge-1", "192.0.2.20", 80))
	before := storeState(t, st)
	for _, tt := range []struct {
		obj  *lvsctlv1.Object
		want string
	}{
		{plain("web2", "edge-1", "192.0.2.20", 80), `cluster "web2": service: tcp 192.0.2.20:80 is already the service of cluster "web"`},
		{plain("web3", "edge-1", "192.0.2.10", 80), `cluster "web3": service: tcp 192.0.2.10:80 is also marked by cluster "fw" (ports[0] tcp 80 on 192.0.2.10)`},
		{cluster("fw2", "edge-1", "192.0.2.20", 80), `cluster "fw2": ports[0]: tcp 80 on 192.0.2.20 would take the packets of cluster "web"'s plain service tcp 192.0.2.20:80`},
	} {
		_, err := s.Apply(context.Background(), &lvsctlv1.ApplyRequest{Objects: []*lvsctlv1.Object{tt.obj}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("apply: %v, want InvalidArgument saying %s", err, tt.want)
		}
	}
	if after := storeState(t, st); after != before {
		t.Errorf("a refused apply changed the store:\n%s\n%s", before, after)
	}
	apply(t, s, plain("web-8080", "edge-1", "192.0.2.10", 8080))
}

// TestEditOfNewFieldsIsWritten: a change of flags, ops, a real's port or thresholds alone is
// an update (the fields are compared, not only the old ones).
func TestEditOfNewFieldsIsWritten(t *testing.T) {
	s, _ := newServer(t)
	web := plain("web", "edge-1", "192.0.2.20", 80)
	apply(t, s, group("edge-1", "dir-a"), web)
	c := web.GetCluster()
	c.Scheduler, c.SchedulerFlags = "sh", []lvsctlv1.SchedulerFlag{lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT}
	c.Reals[0].Port, c.Reals[0].UpperThreshold = 8081, 100
	resp := apply(t, s, web)
	if a := resp.GetResults()[0].GetAction(); a != lvsctlv1.Action_ACTION_UPDATED {
		t.Fatalf("action %v, want UPDATED", a)
	}
	got := strings.Join(resp.GetResults()[0].GetChanges(), "\n")
	for _, want := range []string{"schedulerFlags: [] -> [sh-port]", "real 198.51.100.1 port: 8080 -> 8081", "real 198.51.100.1 thresholds: none -> upper 100 lower 0"} {
		if !strings.Contains(got, want) {
			t.Errorf("changes lack %q:\n%s", want, got)
		}
	}
	if st := storedCluster(t, s, "web"); st.GetReals()[0].GetPort() != 8081 || st.GetSchedulerFlags()[0] != lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT {
		t.Errorf("stored %v", st)
	}
}

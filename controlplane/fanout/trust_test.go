package fanout

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/auth"
	"github.com/lvsctl/lvsctl/controlplane/fleet"
	"github.com/lvsctl/lvsctl/controlplane/limits"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// certificateKey is the metadata a test stream names its certificate's director with.
const certificateKey = "test-certificate-director"

// asCertificate gives a stream that names a director in its metadata that director's
// certificate identity, as auth's interceptor does for a TLS client (auth's tests run the
// real TLS); other streams keep the insecure identity.
func asCertificate(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	if v := md.Get(certificateKey); len(v) == 1 {
		ctx := auth.WithIdentity(ss.Context(), auth.Identity{Name: v[0], Role: auth.Director})
		return handler(srv, &withContext{ServerStream: ss, ctx: ctx})
	}
	return handler(srv, ss)
}

type withContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *withContext) Context() context.Context { return s.ctx }

// connectAs opens a stream with cert's certificate and says Hello as director.
func (h *harness) connectAs(t *testing.T, cert, director string) lvsctlv1.AgentService_ConnectClient {
	t.Helper()
	ctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), certificateKey, cert))
	t.Cleanup(cancel)
	s, err := h.agents.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: director}}}); err != nil {
		t.Fatal(err)
	}
	return s
}

// ended reads s until it ends and returns how.
func ended(t *testing.T, s lvsctlv1.AgentService_ConnectClient) *status.Status {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		return status.Convert(err)
	case <-time.After(10 * time.Second):
		t.Fatal("the stream is still open")
		return nil
	}
}

func send(t *testing.T, s lvsctlv1.AgentService_ConnectClient, m *lvsctlv1.ConnectRequest) {
	t.Helper()
	if err := s.Send(m); err != nil {
		t.Fatal(err)
	}
}

func ack(a *lvsctlv1.Ack) *lvsctlv1.ConnectRequest {
	return &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Ack{Ack: a}}
}

func report(r *lvsctlv1.StatusReport) *lvsctlv1.ConnectRequest {
	return &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Status{Status: r}}
}

// synced returns once the hub handled everything s sent before: a heartbeat's answer
// follows them (only a director in a group is answered).
func synced(t *testing.T, s lvsctlv1.AgentService_ConnectClient, sent int64) {
	t.Helper()
	send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Heartbeat{Heartbeat: &lvsctlv1.Heartbeat{Sent: sent}}})
	for {
		m, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetHeartbeat().GetEcho() == sent {
			return
		}
	}
}

// statusOf is the fleet's entry of a director, nil when it has none.
func (h *harness) statusOf(name string) *lvsctlv1.DirectorStatus {
	for _, d := range h.fleet.List("") {
		if d.GetDirector() == name {
			return d
		}
	}
	return nil
}

// waitFor polls the fleet until ok holds for the director's entry (nil: none).
func (h *harness) waitFor(t *testing.T, name, what string, ok func(*lvsctlv1.DirectorStatus) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(h.statusOf(name)) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never showed %s: %v", name, what, h.statusOf(name))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCertificateSpeaksOnlyForItsDirector: a stream with dir-b's certificate that says
// Hello as dir-a is refused (PermissionDenied, naming both), gets no state, and the real
// dir-a's stream is neither replaced nor marked disconnected; dir-a's own certificate is
// accepted; another role's identity cannot open a stream as a director.
func TestCertificateSpeaksOnlyForItsDirector(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(1, 1))
	real := h.connectAs(t, "dir-a", "dir-a")
	if next(t, real).GetSnapshot() == nil {
		t.Fatal("dir-a with its own certificate got no snapshot")
	}
	for range 3 {
		forger := h.connectAs(t, "dir-b", "dir-a")
		got := ended(t, forger)
		if got.Code() != codes.PermissionDenied || got.Message() != "certificate for dir-b cannot speak for dir-a" {
			t.Fatalf("dir-b's certificate saying Hello as dir-a: %v %q, want PermissionDenied naming both", got.Code(), got.Message())
		}
	}
	synced(t, real, 1) // still served
	if d := h.statusOf("dir-a"); !d.GetConnected() {
		t.Fatalf("dir-a after the refused claims: %v, want connected", d)
	}
	rev := h.apply(t, twoGroups(1, 2))
	if d := next(t, real).GetDelta(); d.GetRevision() != rev {
		t.Fatalf("dir-a after the refused claims got %v, want the delta to %d", d, rev)
	}
}

// TestForgedAckEndsTheStream: an ack of a revision the stream was never sent (above the
// latest it was sent, or negative) ends the stream with InvalidArgument and leaves the
// director's applied revision as it was; an ack of what was sent is shown.
func TestForgedAckEndsTheStream(t *testing.T) {
	h := start(t)
	rev := h.apply(t, twoGroups(1, 1))
	for _, forged := range []int64{math.MaxInt64, rev + 1, -1} {
		s := h.connect(t, "dir-a")
		if snap := next(t, s).GetSnapshot(); snap.GetRevision() != rev {
			t.Fatalf("snapshot %v, want revision %d", snap, rev)
		}
		send(t, s, ack(&lvsctlv1.Ack{Revision: rev}))
		h.waitFor(t, "dir-a", "the ack", func(d *lvsctlv1.DirectorStatus) bool { return d.GetAppliedRevision() == rev })
		send(t, s, ack(&lvsctlv1.Ack{Revision: forged, DirectorErrors: []string{"forged"}}))
		got := ended(t, s)
		want := fmt.Sprintf("ack for revision %d claims what the controller never sent: this stream was sent revisions up to %d", forged, rev)
		if got.Code() != codes.InvalidArgument || got.Message() != want {
			t.Errorf("ack of %d: %v %q, want InvalidArgument %q", forged, got.Code(), got.Message(), want)
		}
		h.waitFor(t, "dir-a", "the stream gone", func(d *lvsctlv1.DirectorStatus) bool { return !d.GetConnected() })
		if d := h.statusOf("dir-a"); d.GetAppliedRevision() != rev || len(d.GetDirectorErrors()) != 0 {
			t.Errorf("after the forged ack of %d: applied %d, errors %q; want %d and none", forged, d.GetAppliedRevision(), d.GetDirectorErrors(), rev)
		}
	}
	// A Hello claiming a revision the group never had is not shown either.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := h.agents.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: "dir-a", LastAppliedRevision: math.MaxInt64}}})
	next(t, s)
	if d := h.statusOf("dir-a"); d.GetAppliedRevision() != 0 || !d.GetConnected() {
		t.Errorf("after a Hello claiming revision %d: %v, want connected with applied 0", int64(math.MaxInt64), d)
	}
}

// TestDirectorInNoGroupHasNoStatus: a director in no group gets no status entry, whatever
// its stream reports; once a group names it, it is listed as connected; when the group no
// longer does, its entry goes although it is still connected.
func TestDirectorInNoGroupHasNoStatus(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(1, 1))
	s := h.connect(t, "dir-x")
	if snap := next(t, s).GetSnapshot(); snap.GetRevision() != 0 {
		t.Fatalf("dir-x got %v, want the empty state", snap)
	}
	send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: "dir-x", Version: "v1"}}})
	send(t, s, ack(&lvsctlv1.Ack{DirectorErrors: []string{"refused"}}))
	send(t, s, report(&lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{{Cluster: "c0"}, {Cluster: "forged"}}}))
	send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: &lvsctlv1.RoleStatus{Group: "edge-1", Holding: true}}})
	// A forged ack ends the stream once everything before it was handled.
	send(t, s, ack(&lvsctlv1.Ack{Revision: 1}))
	if got := ended(t, s); got.Code() != codes.InvalidArgument {
		t.Fatalf("dir-x's ack of revision 1: %v, want InvalidArgument (it was sent revision 0 only)", got)
	}
	if d := h.statusOf("dir-x"); d != nil {
		t.Fatalf("dir-x, in no group: %v, want no status entry", d)
	}

	s = h.connect(t, "dir-x")
	next(t, s)
	h.apply(t, twoGroups(1, 1, "dir-a", "dir-x"))
	h.waitFor(t, "dir-x", "connected in edge-1", func(d *lvsctlv1.DirectorStatus) bool { return d.GetConnected() && d.GetGroup() == "edge-1" })
	h.apply(t, twoGroups(1, 1, "dir-a"))
	h.waitFor(t, "dir-x", "no entry", func(d *lvsctlv1.DirectorStatus) bool { return d == nil })
}

// TestStatusHoldsOnlyTheDesiredState: stats of clusters not in the director's desired state
// are not kept; a cluster's stats list at most twice its real servers plus a few; an
// ack's errors are bounded in number and length, with what was left out counted; stats of
// a cluster deleted from the group go; a peer that is not in the group is not shown.
func TestStatusHoldsOnlyTheDesiredState(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(2, 1)) // edge-1: c0, c1 (2 reals each); edge-2: other
	s := h.connect(t, "dir-a")
	rev := next(t, s).GetSnapshot().GetRevision()
	many := func(n int) []*lvsctlv1.RealServerStats {
		var rs []*lvsctlv1.RealServerStats
		for i := range n {
			rs = append(rs, &lvsctlv1.RealServerStats{Address: fmt.Sprintf("10.0.%d.%d", i/256, i%256)})
		}
		for _, r := range rs[:min(n, 3)] {
			r.HealthError = strings.Repeat("x", 64<<10)
		}
		return rs
	}
	send(t, s, report(&lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{
		{Cluster: "c0", Reals: append(many(1000), &lvsctlv1.RealServerStats{Address: "198.51.100.1"}, &lvsctlv1.RealServerStats{Address: "198.51.100.2"})},
		{Cluster: "c1", Reals: many(2)}, {Cluster: "other"}, {Cluster: "forged"},
	}}))
	var errs []*lvsctlv1.ClusterError
	for i := range 100 {
		errs = append(errs, &lvsctlv1.ClusterError{Cluster: "c0", Message: strings.Repeat("e", 4<<10)}, &lvsctlv1.ClusterError{Cluster: fmt.Sprintf("forged-%d", i)})
	}
	var dirErrs []string
	for range 100 {
		dirErrs = append(dirErrs, strings.Repeat("d", 4<<10))
	}
	send(t, s, ack(&lvsctlv1.Ack{Revision: rev, Errors: errs, DirectorErrors: dirErrs}))
	send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_RoleStatus{RoleStatus: &lvsctlv1.RoleStatus{Group: "edge-1",
		Peers: []*lvsctlv1.PeerStatus{{Director: "dir-b"}, {Director: "dir-b"}, {Director: "dir-z"}}}}})
	synced(t, s, 1)

	d := h.statusOf("dir-a")
	var names []string
	for _, c := range d.GetClusters() {
		names = append(names, c.GetCluster())
		for _, r := range c.GetReals() {
			if len(r.GetHealthError()) > fleet.MaxTextBytes {
				t.Errorf("%s %s: a health error of %d bytes kept", c.GetCluster(), r.GetAddress(), len(r.GetHealthError()))
			}
		}
	}
	if strings.Join(names, " ") != "c0 c1" {
		t.Errorf("stats kept of %q, want c0 c1 (its desired state) only", names)
	}
	if reals := d.GetClusters()[0].GetReals(); len(reals) != 2*2+16 ||
		!slices.ContainsFunc(reals, func(r *lvsctlv1.RealServerStats) bool { return r.GetAddress() == "198.51.100.1" }) ||
		!slices.ContainsFunc(reals, func(r *lvsctlv1.RealServerStats) bool { return r.GetAddress() == "198.51.100.2" }) {
		t.Errorf("c0 (2 reals) reported with 1002: %d kept, want %d with its own two among them", len(reals), 2*2+16)
	}
	if n := len(d.GetErrors()); n != fleet.MaxErrorsPerCluster {
		t.Errorf("%d cluster errors kept, want %d (c0's, at most %d)", n, fleet.MaxErrorsPerCluster, fleet.MaxErrorsPerCluster)
	}
	for _, e := range d.GetErrors() {
		if e.GetCluster() != "c0" || len(e.GetMessage()) > fleet.MaxTextBytes {
			t.Errorf("error kept: %s, %d bytes", e.GetCluster(), len(e.GetMessage()))
		}
	}
	de := d.GetDirectorErrors()
	if len(de) != fleet.MaxDirectorErrors+1 || len(de[0]) > fleet.MaxTextBytes ||
		de[len(de)-1] != "260 more errors not kept (100 of clusters not in the desired state; at most 8 per cluster and 32 others are kept)" {
		t.Errorf("director errors: %d, the last %q", len(de), de[len(de)-1])
	}
	if p := d.GetPeers(); len(p) != 1 || p[0].GetDirector() != "dir-b" {
		t.Errorf("peers %v, want dir-b once (dir-z is not in edge-1)", p)
	}

	// c1 leaves the desired state: its stats go, although the agent never said so.
	if _, err := h.config.Delete(context.Background(), &lvsctlv1.DeleteRequest{Kind: lvsctlv1.Kind_KIND_CLUSTER, Name: "c1"}); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "dir-a", "c1's stats gone", func(d *lvsctlv1.DirectorStatus) bool {
		return len(d.GetClusters()) == 1 && d.GetClusters()[0].GetCluster() == "c0" && d.GetTotals().GetClusters() == 1
	})
}

// TestReplacedStreamCannotChangeStatus: once a director's newer stream is up, nothing the
// replaced one says changes its status.
func TestReplacedStreamCannotChangeStatus(t *testing.T) {
	h := start(t)
	rev := h.apply(t, twoGroups(1, 1))
	old := h.connect(t, "dir-a")
	next(t, old)
	fresh := h.connect(t, "dir-a")
	next(t, fresh)
	send(t, fresh, ack(&lvsctlv1.Ack{Revision: rev}))
	synced(t, fresh, 1)
	// The old stream was ended (Aborted); what it still manages to send is not kept.
	_ = old.Send(ack(&lvsctlv1.Ack{Revision: rev, DirectorErrors: []string{"from the replaced stream"}}))
	_ = old.Send(report(&lvsctlv1.StatusReport{Full: true, Changed: []*lvsctlv1.ClusterStats{{Cluster: "c0"}}}))
	if got := ended(t, old); got.Code() != codes.Aborted {
		t.Errorf("the replaced stream ended with %v, want Aborted", got)
	}
	synced(t, fresh, 2)
	if d := h.statusOf("dir-a"); len(d.GetDirectorErrors()) != 0 || len(d.GetClusters()) != 0 || !d.GetConnected() {
		t.Errorf("dir-a after its replaced stream spoke: %v, want connected without its errors or stats", d)
	}
}

// TestStatusFloodStaysSmall: the flood, 5 reports of 100,000 clusters under an
// unknown name and 5 under a real director's, is refused report by report (each ends its
// stream with ResourceExhausted naming the limit); 5 reports at the limit (20,000 forged
// clusters) under each name are taken and dropped. The controller's heap stays under
// 256 MiB throughout (the flood took it from 157 MB to 1.3 GB) and keeps nothing of the
// forged clusters.
func TestStatusFloodStaysSmall(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(2, 1))
	// Encoded once and sent as bytes: the forger's objects are not the controller's, and
	// would count in this process's heap.
	flood := func(n int) []byte {
		r := &lvsctlv1.StatusReport{Full: true}
		for i := range n - 1 {
			r.Changed = append(r.Changed, &lvsctlv1.ClusterStats{Cluster: fmt.Sprintf("forged-cluster-%06d", i), Fwmark: uint32(i),
				Counters: &lvsctlv1.Counters{Conns: uint64(i)},
				Reals:    []*lvsctlv1.RealServerStats{{Address: "198.51.100.1", ActiveConns: 1, Counters: &lvsctlv1.Counters{}, Health: "up"}}})
		}
		r.Changed = append(r.Changed, &lvsctlv1.ClusterStats{Cluster: "c0"})
		wire, err := proto.Marshal(report(r))
		if err != nil {
			t.Fatal(err)
		}
		return wire
	}
	over, at := flood(100_000), flood(limits.MaxClustersPerGroup)

	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	// Peak sampling while the flood goes on (ReadMemStats does not collect: it is what is
	// live and garbage not yet collected, the heap's share of the RSS).
	stop := make(chan struct{})
	peakc := make(chan uint64, 1)
	go func() {
		var peak uint64
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				peakc <- peak
				return
			case <-tick.C:
			}
		}
	}()
	open := func(name string) lvsctlv1.AgentService_ConnectClient {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		s, err := h.agents.Connect(ctx, grpc.ForceCodec(rawCodec{}))
		if err != nil {
			t.Fatal(err)
		}
		send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_Hello{Hello: &lvsctlv1.Hello{Director: name}}})
		next(t, s)
		return s
	}
	for _, name := range []string{"dir-x", "dir-a"} {
		for range 5 {
			s := open(name)
			if err := s.SendMsg(rawMessage(over)); err != nil {
				t.Fatal(err)
			}
			got := ended(t, s)
			want := "status report: changed: 100000 clusters (limits.MaxClustersPerGroup: no director applies more), more than the limit of 20000"
			if got.Code() != codes.ResourceExhausted || got.Message() != want {
				t.Fatalf("%s's report of 100,000 clusters: %v %q, want ResourceExhausted %q", name, got.Code(), got.Message(), want)
			}
		}
		s := open(name)
		for range 5 {
			if err := s.SendMsg(rawMessage(at)); err != nil {
				t.Fatal(err)
			}
		}
		// The snapshot asked for comes once the reports before the request were handled
		// (a director in no group gets the empty one); the streams stay open, as a
		// director's status is dropped when its stream ends.
		send(t, s, &lvsctlv1.ConnectRequest{Msg: &lvsctlv1.ConnectRequest_SnapshotRequest{SnapshotRequest: &lvsctlv1.SnapshotRequest{Reason: "sync"}}})
		if next(t, s).GetSnapshot() == nil {
			t.Fatalf("%s: no snapshot", name)
		}
	}
	close(stop)
	peak := <-peakc
	after := heap()
	rss := vmRSS()
	t.Logf("10 reports of %d bytes (100,000 clusters) refused, 10 of %d bytes (20,000) taken: heap in use %.1f MiB before, %.1f MiB at the peak, %.1f MiB after; process RSS now %s (with the test's own embedded etcd)",
		len(over), len(at), mib(before), mib(peak), mib(after), rss)
	if peak > 256<<20 {
		t.Errorf("heap in use peaked at %.1f MiB during the flood, over 256 MiB", mib(peak))
	}
	if after > before+16<<20 {
		t.Errorf("heap in use grew from %.1f to %.1f MiB: the flood was kept", mib(before), mib(after))
	}
	if d := h.statusOf("dir-x"); d != nil {
		t.Errorf("dir-x (in no group): %v, want no entry", d)
	}
	if d := h.statusOf("dir-a"); len(d.GetClusters()) != 1 || !d.GetConnected() {
		t.Errorf("dir-a holds stats of %d clusters, want c0's only, connected", len(d.GetClusters()))
	}
}

// rawMessage is a message already encoded, sent as it is by rawCodec.
type rawMessage []byte

// rawCodec sends rawMessage as its bytes and everything else as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.(rawMessage); ok {
		return b, nil
	}
	return proto.Marshal(v.(proto.Message))
}

func (rawCodec) Unmarshal(data []byte, v any) error { return proto.Unmarshal(data, v.(proto.Message)) }
func (rawCodec) Name() string                       { return "proto" }

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// vmRSS is the process's resident set as /proc says, for the log.
func vmRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// TestHelloNameBounded: a Hello naming a director longer than any group may name is
// refused with the limit, before it is kept anywhere.
func TestHelloNameBounded(t *testing.T) {
	h := start(t)
	h.apply(t, twoGroups(1, 1))
	got := ended(t, h.connect(t, strings.Repeat("d", 1<<20)))
	want := "hello: director: 1048576 bytes in a director's name, more than the limit of 63"
	if got.Code() != codes.InvalidArgument || got.Message() != want {
		t.Errorf("a Hello naming a director of 1 MiB: %v %q, want InvalidArgument %q", got.Code(), got.Message(), want)
	}
}

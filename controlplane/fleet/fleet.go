// Package fleet keeps the latest status of every director in memory and serves it to
// StatusService. Status changes every second on every director; it is not worth an etcd
// write, and a restarted controller learns it again from the agents within a period.
package fleet

import (
	"context"
	"maps"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// Fleet is the status registry.
type Fleet struct {
	mu sync.Mutex
	// dirs holds each director's status; stats per cluster are kept apart so a report
	// replaces only what changed.
	dirs  map[string]*lvsctlv1.DirectorStatus
	stats map[string]map[string]*lvsctlv1.ClusterStats
	// totals are kept up to date by Report, so a view of totals costs nothing per cluster.
	totals   map[string]*lvsctlv1.DirectorTotals
	inConfig map[string]bool
	// assigned is each configured director's stored role; reported holds the RoleStatus its
	// agent sent on its current stream. Status shows the role and epoch the agent says it
	// obeys when it has said so, else the stored assignment.
	assigned map[string]*lvsctlv1.RoleAssignment
	reported map[string]*lvsctlv1.RoleStatus
	watchers map[*watcher]struct{}
}

type watcher struct {
	// notify has room for one wake-up: a watcher that has not caught up is woken once and
	// then reads the latest of every director that changed, skipping intermediate states.
	notify chan struct{}
	dirty  map[string]bool
}

// New returns an empty registry.
func New() *Fleet {
	return &Fleet{
		dirs:     map[string]*lvsctlv1.DirectorStatus{},
		stats:    map[string]map[string]*lvsctlv1.ClusterStats{},
		totals:   map[string]*lvsctlv1.DirectorTotals{},
		inConfig: map[string]bool{},
		assigned: map[string]*lvsctlv1.RoleAssignment{},
		reported: map[string]*lvsctlv1.RoleStatus{},
		watchers: map[*watcher]struct{}{},
	}
}

// Update changes one director's status under the lock and wakes the watchers.
func (f *Fleet) Update(director string, fn func(*lvsctlv1.DirectorStatus)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updateLocked(director, fn)
}

func (f *Fleet) updateLocked(director string, fn func(*lvsctlv1.DirectorStatus)) {
	d, ok := f.dirs[director]
	if !ok {
		d = &lvsctlv1.DirectorStatus{Director: director}
		f.dirs[director] = d
	}
	fn(d)
	f.markLocked(director)
}

func (f *Fleet) markLocked(director string) {
	for w := range f.watchers {
		w.dirty[director] = true
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

// Desired is what the configuration says of one director.
type Desired struct {
	Group    string
	Role     *lvsctlv1.RoleAssignment
	Revision int64
}

// SetConfig records every configured director's group, role and desired revision. Directors
// no longer configured and not connected are forgotten. It costs O(directors) and wakes
// watchers only for the directors whose configuration changed: it runs on every change.
func (f *Fleet) SetConfig(dirs map[string]Desired) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for name, want := range dirs {
		f.assigned[name] = want.Role
		role, epoch := want.Role.GetRole(), want.Role.GetEpoch()
		if r, ok := f.reported[name]; ok {
			role, epoch = r.GetRole(), r.GetEpoch()
		}
		d, ok := f.dirs[name]
		if ok && d.GetGroup() == want.Group && d.GetRole() == role && d.GetEpoch() == epoch &&
			d.GetDesiredRevision() == want.Revision {
			continue
		}
		f.updateLocked(name, func(d *lvsctlv1.DirectorStatus) {
			d.Group = want.Group
			d.Role = role
			d.Epoch = epoch
			d.DesiredRevision = want.Revision
		})
	}
	for name := range f.assigned {
		if _, ok := dirs[name]; !ok {
			delete(f.assigned, name)
		}
	}
	for name, d := range f.dirs {
		if _, ok := dirs[name]; ok {
			continue
		}
		if !d.GetConnected() {
			f.forgetLocked(name)
			continue
		}
		role, epoch := lvsctlv1.Role_ROLE_UNSPECIFIED, uint64(0)
		if r, ok := f.reported[name]; ok {
			role, epoch = r.GetRole(), r.GetEpoch()
		}
		if d.GetGroup() == "" && d.GetRole() == role && d.GetEpoch() == epoch && d.GetDesiredRevision() == 0 {
			continue
		}
		d.Group, d.Role, d.Epoch, d.DesiredRevision = "", role, epoch, 0
		f.markLocked(name)
	}
	if len(f.inConfig) != len(dirs) || !sameKeys(f.inConfig, dirs) {
		f.inConfig = make(map[string]bool, len(dirs))
		for name := range dirs {
			f.inConfig[name] = true
		}
	}
}

func sameKeys(a map[string]bool, b map[string]Desired) bool {
	for k := range b {
		if !a[k] {
			return false
		}
	}
	return true
}

func (f *Fleet) forgetLocked(director string) {
	delete(f.reported, director)
	delete(f.dirs, director)
	delete(f.stats, director)
	delete(f.totals, director)
	f.markLocked(director)
}

// Disconnected marks a director's session gone; an unconfigured one is forgotten.
func (f *Fleet) Disconnected(director string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.inConfig[director] {
		// A director in no group may have no entry at all (its stream reported nothing
		// kept): watchers are told only of one they were shown.
		if _, ok := f.dirs[director]; ok {
			f.forgetLocked(director)
		}
		return
	}
	// Its counts are no longer known: keeping them would add a dead director's last
	// connections to the fleet's totals forever.
	delete(f.stats, director)
	delete(f.totals, director)
	f.updateLocked(director, func(d *lvsctlv1.DirectorStatus) {
		d.Connected = false
		d.LastSeen = timestamppb.Now()
	})
	f.roleStatusLocked(director, nil)
}

// RoleStatus records what a director's agent reported of its role on its current stream;
// nil forgets it (a new stream, or none). Without a report, status shows the stored
// assignment and claims nothing held: holding, fenced, peers and sync are only ever what
// the agent said.
func (f *Fleet) RoleStatus(director string, st *lvsctlv1.RoleStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.roleStatusLocked(director, st)
}

func (f *Fleet) roleStatusLocked(director string, st *lvsctlv1.RoleStatus) {
	if st == nil {
		if _, ok := f.reported[director]; !ok {
			return
		}
		delete(f.reported, director)
	} else {
		f.reported[director] = st
	}
	if _, ok := f.dirs[director]; !ok && st == nil {
		return
	}
	f.updateLocked(director, func(d *lvsctlv1.DirectorStatus) {
		if st == nil {
			a := f.assigned[director]
			d.Role, d.Epoch = a.GetRole(), a.GetEpoch()
			d.Holding, d.Fenced, d.Peers, d.Sync = false, "", nil, nil
			return
		}
		d.Role, d.Epoch = st.GetRole(), st.GetEpoch()
		d.Holding, d.Fenced, d.Peers, d.Sync = st.GetHolding(), st.GetFenced(), st.GetPeers(), st.GetSync()
	})
}

// Report merges an agent's stats report: changed clusters replace theirs, removed ones go,
// and a full report replaces everything.
func (f *Fleet) Report(director string, r *lvsctlv1.StatusReport) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, t := f.stats[director], f.totals[director]
	if m == nil || r.GetFull() {
		m, t = map[string]*lvsctlv1.ClusterStats{}, &lvsctlv1.DirectorTotals{}
		f.stats[director], f.totals[director] = m, t
	}
	for _, c := range r.GetChanged() {
		if old, ok := m[c.GetCluster()]; ok {
			addTotals(t, old, -1)
		}
		m[c.GetCluster()] = c
		addTotals(t, c, 1)
	}
	for _, name := range r.GetRemoved() {
		if old, ok := m[name]; ok {
			addTotals(t, old, -1)
			delete(m, name)
		}
	}
	f.updateLocked(director, func(d *lvsctlv1.DirectorStatus) { d.LastSeen = timestamppb.Now() })
}

// addTotals adds (sign 1) or takes away (sign -1) one cluster's stats from a director's
// totals; what is taken away is always what was added, so nothing underflows.
func addTotals(t *lvsctlv1.DirectorTotals, c *lvsctlv1.ClusterStats, sign int) {
	var active, inactive, persistent uint64
	for _, r := range c.GetReals() {
		active += uint64(r.GetActiveConns())
		inactive += uint64(r.GetInactiveConns())
		persistent += uint64(r.GetPersistentConns())
	}
	if sign < 0 {
		t.Clusters--
		t.ActiveConns -= active
		t.InactiveConns -= inactive
		t.PersistentConns -= persistent
		t.Cps -= c.GetCounters().GetCps()
		return
	}
	t.Clusters++
	t.ActiveConns += active
	t.InactiveConns += inactive
	t.PersistentConns += persistent
	t.Cps += c.GetCounters().GetCps()
}

// View chooses what each director's status carries.
type View struct {
	// Cluster keeps only this cluster's stats, when set.
	Cluster string
	// TotalsOnly leaves every cluster's stats out; the director's totals are always there.
	TotalsOnly bool
	// TopReals, when not 0, keeps only the director's TopReals busiest real servers (by
	// CompareReals) and their clusters: what `lvsctl top` can show of it.
	TopReals uint32
}

// getLocked returns a copy of one director's status with its totals and the stats the view
// asks for.
func (f *Fleet) getLocked(director string, v View) *lvsctlv1.DirectorStatus {
	d, ok := f.dirs[director]
	if !ok {
		return nil
	}
	out := proto.CloneOf(d)
	out.Totals = &lvsctlv1.DirectorTotals{}
	if t := f.totals[director]; t != nil {
		out.Totals = proto.CloneOf(t)
	}
	m := f.stats[director]
	switch {
	case v.TotalsOnly:
	case v.Cluster != "":
		if c, ok := m[v.Cluster]; ok {
			out.Clusters = append(out.Clusters, c)
		}
	case v.TopReals > 0:
		// No sort of every cluster's name: topReals sorts only the few clusters it keeps.
		out.Clusters, out.RealsLeftOut = topReals(slices.Collect(maps.Values(m)), int(v.TopReals))
		return out
	default:
		out.Clusters = make([]*lvsctlv1.ClusterStats, 0, len(m))
		for _, name := range slices.Sorted(maps.Keys(m)) {
			out.Clusters = append(out.Clusters, m[name])
		}
	}
	if v.TopReals > 0 && !v.TotalsOnly {
		out.Clusters, out.RealsLeftOut = topReals(out.Clusters, int(v.TopReals))
	}
	return out
}

// viewRequest is what List's and Watch's requests have in common.
type viewRequest interface {
	GetCluster() string
	GetTotalsOnly() bool
	GetTopReals() uint32
}

// viewOf is the view a request asks for.
func viewOf(req viewRequest) View {
	return View{Cluster: req.GetCluster(), TotalsOnly: req.GetTotalsOnly(), TopReals: req.GetTopReals()}
}

// aggregateFor sums each cluster over the directors, unless the view kept only the busiest
// reals: a sum of what was kept would claim to be the cluster's and be less.
func aggregateFor(v View, dirs []*lvsctlv1.DirectorStatus) []*lvsctlv1.ClusterStats {
	if v.TopReals > 0 {
		return nil
	}
	return Aggregate(dirs)
}

// List returns every director's status, sorted by name, with only one cluster's stats if
// cluster is set.
func (f *Fleet) List(cluster string) []*lvsctlv1.DirectorStatus {
	return f.ListView(View{Cluster: cluster})
}

// ListView returns every director's status, sorted by name, as the view asks.
func (f *Fleet) ListView(v View) []*lvsctlv1.DirectorStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*lvsctlv1.DirectorStatus, 0, len(f.dirs))
	for _, name := range slices.Sorted(maps.Keys(f.dirs)) {
		out = append(out, f.getLocked(name, v))
	}
	return out
}

// Server implements StatusService over a Fleet.
type Server struct {
	lvsctlv1.UnimplementedStatusServiceServer
	fleet *Fleet
}

// NewServer returns the StatusService.
func NewServer(f *Fleet) *Server { return &Server{fleet: f} }

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { lvsctlv1.RegisterStatusServiceServer(g, s) }

// List returns the fleet's status.
func (s *Server) List(_ context.Context, req *lvsctlv1.StatusServiceListRequest) (*lvsctlv1.StatusServiceListResponse, error) {
	view := viewOf(req)
	dirs := s.fleet.ListView(view)
	return &lvsctlv1.StatusServiceListResponse{Directors: dirs, Clusters: aggregateFor(view, dirs)}, nil
}

// Watch sends the whole fleet, then each director that changes. A director that is
// forgotten is sent once with only its name set and connected false.
func (s *Server) Watch(req *lvsctlv1.StatusServiceWatchRequest, stream grpc.ServerStreamingServer[lvsctlv1.StatusServiceWatchResponse]) error {
	w := &watcher{notify: make(chan struct{}, 1), dirty: map[string]bool{}}
	f := s.fleet
	view := viewOf(req)
	// Registering and taking the first view under one lock: every change after the view
	// marks this watcher dirty, none is lost between the two.
	f.mu.Lock()
	f.watchers[w] = struct{}{}
	var dirs []*lvsctlv1.DirectorStatus
	for _, name := range slices.Sorted(maps.Keys(f.dirs)) {
		dirs = append(dirs, f.getLocked(name, view))
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watchers, w)
		f.mu.Unlock()
	}()
	initial := &lvsctlv1.StatusServiceListResponse{Directors: dirs, Clusters: aggregateFor(view, dirs)}
	if err := stream.Send(&lvsctlv1.StatusServiceWatchResponse{Initial: initial}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.notify:
		}
		f.mu.Lock()
		var batch []*lvsctlv1.DirectorStatus
		for _, name := range slices.Sorted(maps.Keys(w.dirty)) {
			d := f.getLocked(name, view)
			if d == nil {
				d = &lvsctlv1.DirectorStatus{Director: name}
			}
			batch = append(batch, d)
		}
		w.dirty = map[string]bool{}
		f.mu.Unlock()
		// Sending happens outside the lock: a slow watcher blocks only itself.
		for _, d := range batch {
			if err := stream.Send(&lvsctlv1.StatusServiceWatchResponse{Director: d}); err != nil {
				return err
			}
		}
	}
}

// Aggregate sums each cluster's stats over the given directors, per real server too.
// Rates add up as well: each director's kernel estimates its own share of the traffic.
func Aggregate(dirs []*lvsctlv1.DirectorStatus) []*lvsctlv1.ClusterStats {
	byName := map[string]*lvsctlv1.ClusterStats{}
	reals := map[string]map[string]*lvsctlv1.RealServerStats{}
	for _, d := range dirs {
		for _, c := range d.GetClusters() {
			agg, ok := byName[c.GetCluster()]
			if !ok {
				agg = &lvsctlv1.ClusterStats{Cluster: c.GetCluster(), Fwmark: c.GetFwmark(), Counters: &lvsctlv1.Counters{}}
				byName[c.GetCluster()] = agg
				reals[c.GetCluster()] = map[string]*lvsctlv1.RealServerStats{}
			}
			addCounters(agg.Counters, c.GetCounters())
			for _, r := range c.GetReals() {
				ar, ok := reals[c.GetCluster()][r.GetAddress()]
				if !ok {
					ar = &lvsctlv1.RealServerStats{Address: r.GetAddress(), Weight: r.GetWeight(), Counters: &lvsctlv1.Counters{}}
					reals[c.GetCluster()][r.GetAddress()] = ar
				}
				ar.ActiveConns += r.GetActiveConns()
				ar.InactiveConns += r.GetInactiveConns()
				ar.PersistentConns += r.GetPersistentConns()
				addCounters(ar.Counters, r.GetCounters())
			}
		}
	}
	var out []*lvsctlv1.ClusterStats
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		agg := byName[name]
		for _, addr := range slices.Sorted(maps.Keys(reals[name])) {
			agg.Reals = append(agg.Reals, reals[name][addr])
		}
		out = append(out, agg)
	}
	return out
}

func addCounters(dst, src *lvsctlv1.Counters) {
	dst.Conns += src.GetConns()
	dst.InPackets += src.GetInPackets()
	dst.OutPackets += src.GetOutPackets()
	dst.InBytes += src.GetInBytes()
	dst.OutBytes += src.GetOutBytes()
	dst.Cps += src.GetCps()
	dst.InPps += src.GetInPps()
	dst.OutPps += src.GetOutPps()
	dst.InBps += src.GetInBps()
	dst.OutBps += src.GetOutBps()
}

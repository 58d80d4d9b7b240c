package store

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// MaxFWMark is the highest mark the cache hands out (validate.MaxFWMark: the top bit stays
// free). It is repeated here because validate must not depend on the store.
const MaxFWMark = 1<<31 - 1

// Cache is the desired state held in memory, loaded once and kept current from the etcd
// watch, with the indexes a write's validation asks: which clusters claim a VIP and its ports,
// which cluster holds a mark (and the lowest free one), which clusters use a group, which
// groups list a director. A write reads the cache instead of the whole store; etcd still
// decides: every write is conditional on the head revision the cache showed, so a write
// computed from a cache that was behind is refused and retried once the cache caught up.
//
// One lock guards it. The watch holds it for one revision's changes; readers hold it for
// one lookup, never across a whole apply, so neither waits on the other for long. Objects
// handed out are shared and must not be modified.
type Cache struct {
	st  *Store
	log *slog.Logger

	mu      sync.RWMutex
	loaded  bool
	changed chan struct{} // closed and replaced whenever rev moves
	rev     int64
	head    int64

	clusters    map[string]*lvsctlv1.Cluster
	groups      map[string]*lvsctlv1.DirectorGroup
	roles       map[string]*lvsctlv1.GroupRoles
	rolesRev    map[string]int64
	generations map[string]int64
	// undecodable: the keys whose values do not decode (absent from the maps above), each
	// logged once when it appears and once when it is replaced or deleted.
	undecodable map[string]Undecodable

	// claims: VIP and protocol -> cluster -> its port entries on them.
	claims map[claimKey]map[string][]portClaim
	// vipUsers: VIP -> cluster -> the cluster's group.
	vipUsers map[netip.Addr]map[string]string
	// marks: group -> its clusters' marks. A mark is unique within a director group, not
	// across the store: a director serves one group and programs only its clusters, so two
	// groups (two imported sites) may both keep fwmark 1.
	marks map[string]*groupMarks
	// groupClusters: group -> clusters naming it.
	groupClusters map[string]map[string]struct{}
	// directorGroups: director -> groups listing it.
	directorGroups map[string]map[string]struct{}
	// directorAddrs: director address -> group -> the director of the group at it.
	directorAddrs map[netip.Addr]map[string]string
}

// groupMarks are the marks of one group's clusters and its free marks: every unused mark below
// scan is in holes (sorted); scan itself is unused. The lowest free mark is holes[0] or scan,
// found without looking at every cluster.
type groupMarks struct {
	// users: mark -> clusters (more than one only in a store with an old violation).
	users map[uint32]map[string]struct{}
	holes []uint32
	scan  uint32
}

type claimKey struct {
	vip   netip.Addr
	proto lvsctlv1.Protocol
}

type portClaim struct {
	index int
	ports *lvsctlv1.PortRange
}

// NewCache returns a cache over the store; Run loads and follows it.
func NewCache(st *Store, log *slog.Logger) *Cache {
	c := &Cache{st: st, log: log.With("component", "store-cache"), changed: make(chan struct{}),
		undecodable: map[string]Undecodable{}}
	c.reset(NewSnapshot())
	c.loaded = false
	return c
}

// Run loads the store and follows its changes until ctx ends (Store.Follow: a lost watch
// loads the store again, after a backoff).
func (c *Cache) Run(ctx context.Context) error {
	c.st.Follow(ctx, c.log, c.load, c.apply)
	return nil
}

// load replaces the content with a whole snapshot (the first load or a reload).
func (c *Cache) load(snap *Snapshot) {
	c.mu.Lock()
	c.reset(snap)
	c.notifyLocked()
	c.mu.Unlock()
}

// apply applies one watched batch under the lock.
func (c *Cache) apply(b Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range b.Events {
		c.setLocked(ev.Key, ev.Value, ev.ModRevision)
	}
	c.rev = max(c.rev, b.Revision)
	c.notifyLocked()
	return nil
}

func (c *Cache) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// reset replaces the whole content with a snapshot (a load or a reload).
func (c *Cache) reset(snap *Snapshot) {
	c.loaded = true
	c.rev, c.head = snap.Revision, snap.Head
	c.clusters = map[string]*lvsctlv1.Cluster{}
	c.groups = map[string]*lvsctlv1.DirectorGroup{}
	c.roles = snap.Roles
	c.rolesRev = snap.RolesRevision
	c.generations = snap.Generations
	for key, u := range c.undecodable {
		if _, still := snap.Undecodable[key]; !still {
			c.repaired(u)
		}
	}
	for _, u := range snap.Undecodable {
		c.markUndecodable(u)
	}
	c.claims = map[claimKey]map[string][]portClaim{}
	c.vipUsers = map[netip.Addr]map[string]string{}
	c.marks = map[string]*groupMarks{}
	c.groupClusters = map[string]map[string]struct{}{}
	c.directorGroups = map[string]map[string]struct{}{}
	c.directorAddrs = map[netip.Addr]map[string]string{}
	for _, g := range snap.Groups {
		c.putGroup(g)
	}
	for _, cl := range snap.Clusters {
		c.putCluster(cl)
	}
}

// setLocked applies one key's change, as Snapshot.Set does: a value that does not decode
// leaves its object absent and is reported by key.
func (c *Cache) setLocked(key string, value []byte, modRevision int64) {
	if key == headKey {
		c.head = modRevision
		return
	}
	kind, name, ok := parseKey(key)
	if !ok {
		return
	}
	prev, wasBad := c.undecodable[key]
	var badErr error
	defer func() {
		switch {
		case badErr != nil:
			c.markUndecodable(Undecodable{Key: key, ModRevision: modRevision, Err: badErr})
		case wasBad:
			c.repaired(prev)
		}
	}()
	bad := func(err error) { badErr = err }
	switch kind {
	case kindClusters:
		if old, ok := c.clusters[name]; ok {
			c.dropCluster(old)
		}
		if value == nil {
			return
		}
		cl, err := decodeCluster(key, value, modRevision)
		if err != nil {
			bad(err)
			return
		}
		c.putCluster(cl)
	case kindGroups:
		if old, ok := c.groups[name]; ok {
			c.dropGroup(old)
		}
		if value == nil {
			return
		}
		g, err := decodeGroup(key, value, modRevision)
		if err != nil {
			bad(err)
			return
		}
		c.putGroup(g)
	case kindRoles:
		delete(c.roles, name)
		if value == nil {
			delete(c.rolesRev, name)
			return
		}
		c.rolesRev[name] = modRevision
		r, err := decodeRoles(key, value)
		if err != nil {
			bad(err)
			return
		}
		c.roles[name] = r
	case kindGenerations:
		if value == nil {
			delete(c.generations, name)
			return
		}
		c.generations[name] = modRevision
	}
}

// markUndecodable records a key whose value does not decode, and logs it the first time this
// value (this key at this revision) is seen: a reload finds it again without a new log line.
func (c *Cache) markUndecodable(u Undecodable) {
	if old, seen := c.undecodable[u.Key]; !seen || old.ModRevision != u.ModRevision {
		c.log.Error("stored value does not decode; skipped until it is replaced or deleted",
			"key", u.Key, "mod_revision", u.ModRevision, "error", u.Err)
	}
	c.undecodable[u.Key] = u
}

// repaired forgets an undecodable key that was replaced or deleted.
func (c *Cache) repaired(u Undecodable) {
	delete(c.undecodable, u.Key)
	c.log.Info("undecodable stored value replaced or deleted", "key", u.Key, "mod_revision", u.ModRevision)
}

func addTo[K comparable, V any](m map[K]map[string]V, k K, name string, v V) {
	s, ok := m[k]
	if !ok {
		s = map[string]V{}
		m[k] = s
	}
	s[name] = v
}

func removeFrom[K comparable, V any](m map[K]map[string]V, k K, name string) {
	if s, ok := m[k]; ok {
		delete(s, name)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// vips lists the cluster's parseable VIPs (the validated store has no others): a plain
// service's address, or its vips.
func vips(cl *lvsctlv1.Cluster) []netip.Addr {
	if s := cl.GetService(); s != nil {
		if a, err := netip.ParseAddr(s.GetAddress()); err == nil {
			return []netip.Addr{a}
		}
		return nil
	}
	var out []netip.Addr
	for _, s := range cl.GetVips() {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func (c *Cache) putCluster(cl *lvsctlv1.Cluster) {
	name := cl.GetName()
	c.clusters[name] = cl
	addTo(c.groupClusters, cl.GetDirectorGroup(), name, struct{}{})
	for _, vip := range vips(cl) {
		addTo(c.vipUsers, vip, name, cl.GetDirectorGroup())
		if s := cl.GetService(); s != nil {
			// A plain service claims its one protocol and port (validate.ServiceClaim).
			addTo(c.claims, claimKey{vip, s.GetProtocol()}, name, []portClaim{{index: validate.ServiceClaim, ports: validate.ServiceRange(s)}})
			continue
		}
		for i, p := range cl.GetPorts() {
			if p.GetFirst() > p.GetLast() {
				continue
			}
			k := claimKey{vip, p.GetProtocol()}
			s, ok := c.claims[k]
			if !ok {
				s = map[string][]portClaim{}
				c.claims[k] = s
			}
			s[name] = append(s[name], portClaim{index: i, ports: p})
		}
	}
	if m := cl.GetFwmark(); m != 0 {
		gm := c.marks[cl.GetDirectorGroup()]
		if gm == nil {
			gm = &groupMarks{users: map[uint32]map[string]struct{}{}, scan: 1}
			c.marks[cl.GetDirectorGroup()] = gm
		}
		first := len(gm.users[m]) == 0
		addTo(gm.users, m, name, struct{}{})
		if first {
			gm.taken(m)
		}
	}
}

func (c *Cache) dropCluster(cl *lvsctlv1.Cluster) {
	name := cl.GetName()
	delete(c.clusters, name)
	removeFrom(c.groupClusters, cl.GetDirectorGroup(), name)
	for _, vip := range vips(cl) {
		removeFrom(c.vipUsers, vip, name)
		if s := cl.GetService(); s != nil {
			removeFrom(c.claims, claimKey{vip, s.GetProtocol()}, name)
		}
		for _, p := range cl.GetPorts() {
			removeFrom(c.claims, claimKey{vip, p.GetProtocol()}, name)
		}
	}
	if m := cl.GetFwmark(); m != 0 {
		if gm := c.marks[cl.GetDirectorGroup()]; gm != nil {
			removeFrom(gm.users, m, name)
			if len(gm.users) == 0 {
				// The group's last mark: forget it, so that a store of many short-lived
				// groups keeps no state for the gone ones.
				delete(c.marks, cl.GetDirectorGroup())
			} else if len(gm.users[m]) == 0 {
				gm.freed(m)
			}
		}
	}
}

func (c *Cache) putGroup(g *lvsctlv1.DirectorGroup) {
	c.groups[g.GetName()] = g
	for _, d := range g.GetDirectors() {
		addTo(c.directorGroups, d.GetName(), g.GetName(), struct{}{})
		if a, err := netip.ParseAddr(d.GetAddress()); err == nil {
			addTo(c.directorAddrs, a, g.GetName(), d.GetName())
		}
	}
}

func (c *Cache) dropGroup(g *lvsctlv1.DirectorGroup) {
	delete(c.groups, g.GetName())
	for _, d := range g.GetDirectors() {
		removeFrom(c.directorGroups, d.GetName(), g.GetName())
		if a, err := netip.ParseAddr(d.GetAddress()); err == nil {
			removeFrom(c.directorAddrs, a, g.GetName())
		}
	}
}

// markTaken and markFreed keep holes and scan: scan only moves forward, past marks in use,
// so allocation costs in proportion to the marks freed below it, not to the clusters stored.
func (c *groupMarks) taken(m uint32) {
	if m < c.scan {
		if i, ok := slices.BinarySearch(c.holes, m); ok {
			c.holes = slices.Delete(c.holes, i, i+1)
		}
		return
	}
	for c.scan <= MaxFWMark && len(c.users[c.scan]) > 0 {
		c.scan++
	}
}

func (c *groupMarks) freed(m uint32) {
	if m < c.scan {
		if i, ok := slices.BinarySearch(c.holes, m); !ok {
			c.holes = slices.Insert(c.holes, i, m)
		}
	}
}

// Wait blocks until the cache is loaded and has seen revision rev (0: loaded at all).
func (c *Cache) Wait(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		done, ch := c.loaded && c.rev >= rev, c.changed
		c.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the store's revision %d: %w", rev, ctx.Err())
		}
	}
}

// Revision returns the revision the cache shows and the head key's revision in it: a write
// computed from what the cache shows is conditional on that head.
func (c *Cache) Revision() (rev, head int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev, c.head
}

// Cluster returns a stored cluster (shared: do not modify).
func (c *Cache) Cluster(name string) (*lvsctlv1.Cluster, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	cl, ok := c.clusters[name]
	return cl, ok
}

// Group returns a stored group (shared: do not modify).
func (c *Cache) Group(name string) (*lvsctlv1.DirectorGroup, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	g, ok := c.groups[name]
	return g, ok
}

// Roles returns a group's stored role assignment and its key's revision (0: none).
func (c *Cache) Roles(group string) (*lvsctlv1.GroupRoles, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.roles[group], c.rolesRev[group]
}

// Undecodable lists, sorted by key, the stored values that do not decode.
func (c *Cache) Undecodable() []Undecodable {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Undecodable, 0, len(c.undecodable))
	for _, u := range c.undecodable {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b Undecodable) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// UndecodableAt returns the key's undecodable value, if its value does not decode. A write
// of the object the key names replaces (or deletes) it, conditional on its revision.
func (c *Cache) UndecodableAt(key string) (Undecodable, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	u, ok := c.undecodable[key]
	return u, ok
}

// GroupClusters lists, sorted, the clusters that name a group.
func (c *Cache) GroupClusters(group string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.groupClusters[group]))
	for n := range c.groupClusters[group] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// GroupClusterCount is how many clusters name a group.
func (c *Cache) GroupClusterCount(group string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.groupClusters[group])
}

// FreeMarks returns the n lowest marks that no stored cluster of the group uses and taken
// refuses (marks this write already gives out); fewer when the marks run out.
func (c *Cache) FreeMarks(group string, n int, taken func(uint32) bool) []uint32 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	gm := c.marks[group]
	if gm == nil {
		gm = &groupMarks{scan: 1}
	}
	var out []uint32
	for _, m := range gm.holes {
		if len(out) == n {
			return out
		}
		if !taken(m) {
			out = append(out, m)
		}
	}
	for m := gm.scan; len(out) < n && m <= MaxFWMark && m >= gm.scan; m++ {
		if len(gm.users[m]) == 0 && !taken(m) {
			out = append(out, m)
		}
	}
	return out
}

// The methods below answer validate.Stored. fn runs under the read lock: it must not call
// back into the cache.

// GroupExists reports whether a group is stored.
func (c *Cache) GroupExists(name string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.groups[name]
	return ok
}

// EachDirectorGroup calls fn with every stored group that lists the director.
func (c *Cache) EachDirectorGroup(director string, fn func(group string)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for g := range c.directorGroups[director] {
		fn(g)
	}
}

// EachDirectorAddress calls fn with every stored group that has a director at the address,
// and that director.
func (c *Cache) EachDirectorAddress(addr netip.Addr, fn func(group, director string)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for g, d := range c.directorAddrs[addr] {
		fn(g, d)
	}
}

// EachMarkUser calls fn with every stored cluster of the group that has the mark.
func (c *Cache) EachMarkUser(group string, mark uint32, fn func(cluster string)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if gm := c.marks[group]; gm != nil {
		for n := range gm.users[mark] {
			fn(n)
		}
	}
}

// EachVIPUser calls fn with every stored cluster that lists the VIP, and its group.
func (c *Cache) EachVIPUser(vip netip.Addr, fn func(cluster, group string)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for n, g := range c.vipUsers[vip] {
		fn(n, g)
	}
}

// EachPortClaim calls fn with every port entry of a stored cluster on the VIP and protocol,
// and every plain service there (index validate.ServiceClaim).
func (c *Cache) EachPortClaim(vip netip.Addr, proto lvsctlv1.Protocol, fn func(cluster string, index int, ports *lvsctlv1.PortRange)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for n, ps := range c.claims[claimKey{vip, proto}] {
		for _, p := range ps {
			fn(n, p.index, p.ports)
		}
	}
}

package fleet

import (
	"cmp"
	"container/heap"
	"slices"
	"strings"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// CompareReals is the order of `lvsctl top`, busiest first: most active connections, then
// director, cluster and address, so that equally busy rows keep one order. The controller
// keeps each director's busiest real servers by it (View.TopReals), and the CLI sorts its
// rows by it: one order, so the rows the controller keeps are the rows top would show.
func CompareReals(directorA, clusterA string, a *lvsctlv1.RealServerStats, directorB, clusterB string, b *lvsctlv1.RealServerStats) int {
	return cmp.Or(
		cmp.Compare(b.GetActiveConns(), a.GetActiveConns()),
		strings.Compare(directorA, directorB),
		strings.Compare(clusterA, clusterB),
		strings.Compare(a.GetAddress(), b.GetAddress()))
}

// topReal is one real server of one cluster of the director being filtered.
type topReal struct {
	cluster *lvsctlv1.ClusterStats
	index   int // in cluster.Reals, to keep the cluster's own order of its reals
}

// leastBusyFirst is a heap of the reals kept so far whose root is the least busy of them:
// the one a busier real replaces.
type leastBusyFirst []topReal

func (h leastBusyFirst) Len() int { return len(h) }
func (h leastBusyFirst) Less(i, j int) bool {
	return compareTop(h[i], h[j]) > 0
}
func (h leastBusyFirst) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *leastBusyFirst) Push(x any)   { *h = append(*h, x.(topReal)) }
func (h *leastBusyFirst) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// compareTop orders two reals of one director (the director's name is the same for both).
func compareTop(a, b topReal) int {
	return CompareReals("", a.cluster.GetCluster(), a.cluster.GetReals()[a.index], "", b.cluster.GetCluster(), b.cluster.GetReals()[b.index])
}

// topReals keeps, of one director's clusters, only its n busiest real servers by
// CompareReals and the clusters they belong to, sorted by name, each with its kept reals in
// the order it has them; it returns them and how many reals were left out. It costs
// O(R log n) for R reals, and copies only the clusters it trims: the stats themselves are
// shared, as every view shares them.
func topReals(clusters []*lvsctlv1.ClusterStats, n int) ([]*lvsctlv1.ClusterStats, uint32) {
	// A client's n may be far more than the director has: the heap grows as it needs.
	h := make(leastBusyFirst, 0, min(n, 1024))
	total := 0
	for _, c := range clusters {
		for i := range c.GetReals() {
			total++
			r := topReal{cluster: c, index: i}
			if len(h) < n {
				heap.Push(&h, r)
				continue
			}
			if compareTop(r, h[0]) < 0 {
				h[0] = r
				heap.Fix(&h, 0)
			}
		}
	}
	keep := make(map[*lvsctlv1.ClusterStats][]int, len(h))
	for _, r := range h {
		keep[r.cluster] = append(keep[r.cluster], r.index)
	}
	out := make([]*lvsctlv1.ClusterStats, 0, len(keep))
	for c, idx := range keep {
		if len(idx) == len(c.GetReals()) {
			out = append(out, c)
			continue
		}
		slices.Sort(idx)
		trimmed := &lvsctlv1.ClusterStats{Cluster: c.GetCluster(), Fwmark: c.GetFwmark(), Counters: c.GetCounters(),
			Reals: make([]*lvsctlv1.RealServerStats, 0, len(idx))}
		for _, i := range idx {
			trimmed.Reals = append(trimmed.Reals, c.GetReals()[i])
		}
		out = append(out, trimmed)
	}
	slices.SortFunc(out, func(a, b *lvsctlv1.ClusterStats) int { return strings.Compare(a.GetCluster(), b.GetCluster()) })
	return out, uint32(total - len(h))
}

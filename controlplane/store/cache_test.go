package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/store"
	"github.com/lvsctl/lvsctl/controlplane/store/storetest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// answers is everything a cache tells a write, as text, over the names, VIPs and marks a
// test used: two caches that give the same answers hold the same indexes.
func answers(c *store.Cache, clusters, groups, directors []string, vipList []netip.Addr, maxMark uint32) []string {
	var out []string
	sorted := func(each func(fn func(string))) []string {
		var s []string
		each(func(x string) { s = append(s, x) })
		sort.Strings(s)
		return s
	}
	for _, n := range clusters {
		cl, ok := c.Cluster(n)
		out = append(out, fmt.Sprintf("cluster %s %v %v", n, ok, cl))
	}
	for _, g := range groups {
		out = append(out, fmt.Sprintf("group %s %v %v", g, c.GroupExists(g), c.GroupClusters(g)))
	}
	for _, d := range directors {
		out = append(out, fmt.Sprintf("director %s %v", d, sorted(func(fn func(string)) { c.EachDirectorGroup(d, fn) })))
	}
	for _, v := range vipList {
		out = append(out, fmt.Sprintf("director address %s %v", v, sorted(func(fn func(string)) {
			c.EachDirectorAddress(v, func(g, d string) { fn(d + "@" + g) })
		})))
		out = append(out, fmt.Sprintf("vip %s %v", v, sorted(func(fn func(string)) {
			c.EachVIPUser(v, func(cl, g string) { fn(cl + "@" + g) })
		})))
		for _, p := range []lvsctlv1.Protocol{lvsctlv1.Protocol_PROTOCOL_TCP, lvsctlv1.Protocol_PROTOCOL_UDP} {
			out = append(out, fmt.Sprintf("claims %s %v %v", v, p, sorted(func(fn func(string)) {
				c.EachPortClaim(v, p, func(cl string, i int, r *lvsctlv1.PortRange) {
					fn(fmt.Sprintf("%s[%d]%d-%d", cl, i, r.GetFirst(), r.GetLast()))
				})
			})))
		}
	}
	for _, g := range groups {
		for m := uint32(1); m <= maxMark; m++ {
			out = append(out, fmt.Sprintf("mark %s %d %v", g, m, sorted(func(fn func(string)) { c.EachMarkUser(g, m, fn) })))
		}
		out = append(out, fmt.Sprintf("free %s %v", g, c.FreeMarks(g, 5, func(m uint32) bool { return m == 2 })))
	}
	return out
}

// TestCacheFollowsWrites: a cache that followed a random run of creates, updates, moves and
// deletes through the watch answers exactly as one loaded afterwards from scratch, and shows
// every write once Wait returns for its revision.
func TestCacheFollowsWrites(t *testing.T) {
	st := storetest.Start(t)
	live := storetest.Cache(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := live.Wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	clusters := []string{"a", "b", "c", "d", "e", "f"}
	groups := []string{"g1", "g2"}
	directors := []string{"d1", "d2", "d3"}
	vipList := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")}
	var head int64
	for step := range 120 {
		w := store.Write{Head: head, Puts: map[string]proto.Message{}}
		name := clusters[rng.IntN(len(clusters))]
		switch rng.IntN(4) {
		case 0:
			w.Deletes = []string{store.ClusterKey(name)}
		case 1:
			g := groups[rng.IntN(len(groups))]
			var ds []*lvsctlv1.Director
			for _, d := range directors {
				if rng.IntN(2) == 0 {
					// Addresses from the VIPs' list, so that a director's address moves
					// between groups and meets the VIPs in the indexes.
					ds = append(ds, &lvsctlv1.Director{Name: d, Priority: 100, Address: vipList[rng.IntN(len(vipList))].String()})
				}
			}
			w.Puts[store.GroupKey(g)] = &lvsctlv1.DirectorGroup{Name: g, Directors: ds}
		default:
			c := &lvsctlv1.Cluster{Name: name, DirectorGroup: groups[rng.IntN(len(groups))], Fwmark: uint32(rng.IntN(7)),
				Vips: []string{vipList[rng.IntN(len(vipList))].String()}}
			for range rng.IntN(3) {
				first := uint32(rng.IntN(10))
				c.Ports = append(c.Ports, &lvsctlv1.PortRange{Protocol: lvsctlv1.Protocol(1 + rng.IntN(2)), First: first, Last: first + uint32(rng.IntN(3))})
			}
			if rng.IntN(3) == 0 {
				// A plain service (issue 12): its address is a VIP, its protocol and port
				// one claim; a cluster turns plain and back across the steps.
				c.Service = &lvsctlv1.VirtualService{Address: c.Vips[0], Protocol: lvsctlv1.Protocol(1 + rng.IntN(2)), Port: uint32(rng.IntN(3))}
				c.Vips, c.Ports, c.Fwmark = nil, nil, 0
			}
			w.Puts[store.ClusterKey(name)] = c
		}
		rev, err := st.Commit(ctx, w)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		head = rev
		if err := live.Wait(ctx, rev); err != nil {
			t.Fatal(err)
		}
		if _, h := live.Revision(); h != rev {
			t.Fatalf("step %d: cache shows head %d after Wait(%d)", step, h, rev)
		}
		if step%20 != 19 {
			continue
		}
		fresh := storetest.Cache(t, st)
		if err := fresh.Wait(ctx, rev); err != nil {
			t.Fatal(err)
		}
		got := answers(live, clusters, groups, directors, vipList, 7)
		want := answers(fresh, clusters, groups, directors, vipList, 7)
		if !slices.Equal(got, want) {
			for i := range got {
				if got[i] != want[i] {
					t.Errorf("step %d: followed cache: %s\nloaded cache:   %s", step, got[i], want[i])
				}
			}
			t.FailNow()
		}
	}
}

// TestCacheIndexesPlainServices: a plain service's address is a VIP user and its protocol
// and port one claim (validate.ServiceClaim), gone once it turns into a fwmark cluster.
func TestCacheIndexesPlainServices(t *testing.T) {
	st := storetest.Start(t)
	c := storetest.Cache(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	web := &lvsctlv1.Cluster{Name: "web", DirectorGroup: "g",
		Service: &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80}}
	rev, err := st.Commit(ctx, store.Write{Puts: map[string]proto.Message{store.ClusterKey("web"): web}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, rev); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("192.0.2.20")
	claims := func(p lvsctlv1.Protocol) []string {
		var out []string
		c.EachPortClaim(vip, p, func(cl string, i int, r *lvsctlv1.PortRange) {
			out = append(out, fmt.Sprintf("%s[%d]%d-%d", cl, i, r.GetFirst(), r.GetLast()))
		})
		return out
	}
	var users []string
	c.EachVIPUser(vip, func(cl, g string) { users = append(users, cl+"@"+g) })
	if got := claims(lvsctlv1.Protocol_PROTOCOL_TCP); !slices.Equal(got, []string{"web[-1]80-80"}) || !slices.Equal(users, []string{"web@g"}) {
		t.Errorf("plain service indexed as claims %v, VIP users %v", got, users)
	}
	if got := claims(lvsctlv1.Protocol_PROTOCOL_UDP); got != nil {
		t.Errorf("udp claims %v, want none", got)
	}
	web = &lvsctlv1.Cluster{Name: "web", DirectorGroup: "g", Fwmark: 3, Vips: []string{"192.0.2.20"},
		Ports: []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 81, Last: 81}}}
	rev, err = st.Commit(ctx, store.Write{Head: rev, Puts: map[string]proto.Message{store.ClusterKey("web"): web}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if got := claims(lvsctlv1.Protocol_PROTOCOL_TCP); !slices.Equal(got, []string{"web[0]81-81"}) {
		t.Errorf("after turning fwmark: claims %v", got)
	}
}

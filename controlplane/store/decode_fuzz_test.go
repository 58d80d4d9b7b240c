package store

import (
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// FuzzStoredValue: any bytes under any key of the desired state are either decoded (the object
// named as its key names it) or recorded as undecodable by key, by a snapshot and by the
// cache alike, never an error or a panic; deleting the key leaves nothing behind in the
// cache, its indexes included.
func FuzzStoredValue(f *testing.F) {
	enc := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	cl := &lvsctlv1.Cluster{Name: "web", DirectorGroup: "g", Vips: []string{"192.0.2.1", "2001:db8::1"}, Fwmark: 7,
		Ports: []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: 80, Last: 80}, {Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, First: 9, Last: 1}}}
	g := &lvsctlv1.DirectorGroup{Name: "web", Directors: []*lvsctlv1.Director{{Name: "d", Address: "192.0.2.9"}}}
	for kind := range byte(5) {
		f.Add(kind, "web", enc(cl))
		f.Add(kind, "web", enc(g))
		f.Add(kind, "web", enc(&lvsctlv1.GroupRoles{Group: "web", Active: "d", Epoch: 2}))
		f.Add(kind, "web", []byte("garbage \xff"))
		f.Add(kind, "a/b", []byte{})
	}
	kinds := []string{kindClusters, kindGroups, kindRoles, kindGenerations, "history/"}
	f.Fuzz(func(t *testing.T, kind byte, name string, value []byte) {
		key := Prefix + kinds[int(kind)%len(kinds)] + name
		if value == nil {
			value = []byte{} // nil is a deletion
		}
		snap := NewSnapshot()
		if err := snap.Set(key, value, 7); err != nil {
			t.Fatalf("Set: %v", err)
		}
		c := NewCache(nil, slog.New(slog.DiscardHandler))
		if err := c.apply(Batch{Revision: 7, Events: []Event{{Key: key, Value: value, ModRevision: 7}}}); err != nil {
			t.Fatalf("cache apply: %v", err)
		}
		_, name, _ = parseKey(key)
		_, bad := snap.Undecodable[key]
		_, cacheBad := c.UndecodableAt(key)
		if bad != cacheBad {
			t.Fatalf("undecodable: snapshot %v, cache %v", bad, cacheBad)
		}
		sc, inSnap := snap.Clusters[name]
		cc, inCache := c.Cluster(name)
		if inSnap != inCache || (inSnap && (!proto.Equal(sc, cc) || sc.GetName() != name)) || (inSnap && bad) {
			t.Fatalf("cluster %q: snapshot %v %v, cache %v %v, undecodable %v", name, inSnap, sc, inCache, cc, bad)
		}
		sg, inSnap := snap.Groups[name]
		cg, inCache := c.Group(name)
		if inSnap != inCache || (inSnap && (!proto.Equal(sg, cg) || sg.GetName() != name)) || (inSnap && bad) {
			t.Fatalf("group %q: snapshot %v, cache %v, undecodable %v", name, inSnap, inCache, bad)
		}
		sr := snap.Roles[name]
		cr, _ := c.Roles(name)
		if !proto.Equal(sr, cr) || (sr != nil && bad) {
			t.Fatalf("roles %q: snapshot %v, cache %v, undecodable %v", name, sr, cr, bad)
		}

		if err := c.apply(Batch{Revision: 8, Events: []Event{{Key: key, ModRevision: 8}}}); err != nil {
			t.Fatalf("cache apply of the deletion: %v", err)
		}
		if len(c.Undecodable()) != 0 || len(c.clusters) != 0 || len(c.groups) != 0 || len(c.roles) != 0 || len(c.rolesRev) != 0 {
			t.Fatalf("left after the deletion: %v, %d clusters, %d groups, %d roles", c.Undecodable(), len(c.clusters), len(c.groups), len(c.roles))
		}
		if len(c.claims) != 0 || len(c.vipUsers) != 0 || len(c.marks) != 0 || len(c.groupClusters) != 0 || len(c.directorGroups) != 0 || len(c.directorAddrs) != 0 {
			t.Fatalf("indexes left after the deletion: claims %v vips %v marks %v groups %v directors %v addresses %v",
				c.claims, c.vipUsers, c.marks, c.groupClusters, c.directorGroups, c.directorAddrs)
		}
		if m := c.FreeMarks("g", 1, func(uint32) bool { return false }); len(m) != 1 || m[0] != 1 {
			t.Fatalf("after the deletion the lowest free mark is %v, want 1", m)
		}
	})
}

package validate_test

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// storedObjects is validate.Stored over a list of objects, answered by scanning them: the
// simplest index that can be right, to hold the controller's real one (store.Cache) to.
type storedObjects []*lvsctlv1.Object

func (s storedObjects) GroupExists(name string) bool {
	return slices.ContainsFunc(s, func(o *lvsctlv1.Object) bool { return o.GetGroup() != nil && o.GetGroup().GetName() == name })
}

func (s storedObjects) EachDirectorGroup(director string, fn func(string)) {
	for _, o := range s {
		for _, d := range o.GetGroup().GetDirectors() {
			if d.GetName() == director {
				fn(o.GetGroup().GetName())
			}
		}
	}
}

func (s storedObjects) EachDirectorAddress(addr netip.Addr, fn func(group, director string)) {
	for _, o := range s {
		for _, d := range o.GetGroup().GetDirectors() {
			if a, err := netip.ParseAddr(d.GetAddress()); err == nil && a == addr {
				fn(o.GetGroup().GetName(), d.GetName())
			}
		}
	}
}

func (s storedObjects) EachMarkUser(group string, mark uint32, fn func(string)) {
	for _, o := range s {
		if c := o.GetCluster(); c != nil && c.GetDirectorGroup() == group && c.GetFwmark() == mark {
			fn(c.GetName())
		}
	}
}

func (s storedObjects) EachVIPUser(vip netip.Addr, fn func(cluster, group string)) {
	for _, o := range s {
		c := o.GetCluster()
		vips := c.GetVips()
		if svc := c.GetService(); svc != nil {
			vips = []string{svc.GetAddress()}
		}
		for _, v := range vips {
			if a, err := netip.ParseAddr(v); err == nil && a == vip {
				fn(c.GetName(), c.GetDirectorGroup())
			}
		}
	}
}

func (s storedObjects) EachPortClaim(vip netip.Addr, proto lvsctlv1.Protocol, fn func(string, int, *lvsctlv1.PortRange)) {
	s.EachVIPUser(vip, func(cluster, _ string) {
		for _, o := range s {
			c := o.GetCluster()
			if c.GetName() != cluster {
				continue
			}
			if svc := c.GetService(); svc != nil {
				if svc.GetProtocol() == proto {
					fn(cluster, validate.ServiceClaim, validate.ServiceRange(svc))
				}
				continue
			}
			for i, p := range c.GetPorts() {
				if p.GetProtocol() == proto && p.GetFirst() <= p.GetLast() {
					fn(cluster, i, p)
				}
			}
		}
	})
}

// crossCheck holds Written to Set: for several splits of a manifest into objects already
// stored and objects written, Written over the written ones reports exactly the errors Set
// reports for them over the whole (stored ones first, sorted by kind and name, as the
// controller orders them).
func crossCheck(t *testing.T, objs []*lvsctlv1.Object) {
	t.Helper()
	// The controller refuses a name given twice before any cross-object check, so such a
	// manifest has no Written answer to compare.
	seen := map[string]bool{}
	for _, o := range objs {
		kind, name := validate.KindName(o)
		if kind == "" {
			continue
		}
		if seen[kind+"/"+name] {
			return
		}
		seen[kind+"/"+name] = true
	}
	splits := [][]bool{make([]bool, len(objs))}
	for i := range objs {
		s := make([]bool, len(objs))
		s[i] = true
		splits = append(splits, s)
		h := make([]bool, len(objs))
		for j := range i {
			h[j] = true
		}
		splits = append(splits, h)
	}
	for _, split := range splits {
		var kept, written []*lvsctlv1.Object
		isWritten := map[string]bool{}
		for i, o := range objs {
			if split[i] {
				kept = append(kept, o)
				continue
			}
			written = append(written, o)
			kind, name := validate.KindName(o)
			isWritten[kind+"/"+name] = true
		}
		slices.SortStableFunc(kept, func(a, b *lvsctlv1.Object) int {
			ka, na := validate.KindName(a)
			kb, nb := validate.KindName(b)
			return cmp.Or(strings.Compare(kb, ka), strings.Compare(na, nb)) // groups first
		})
		var want []string
		if err := validate.Set(append(slices.Clone(kept), written...)); err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var fe *validate.FieldError
				if errors.As(e, &fe) && isWritten[fe.Kind+"/"+fe.Name] {
					want = append(want, e.Error())
				}
			}
		}
		var got []string
		if err := validate.Written(context.Background(), written, storedObjects(kept)); err != nil {
			got = strings.Split(err.Error(), "\n")
		}
		if !slices.Equal(got, want) {
			t.Errorf("stored %d, written %d objects: Written reports\n%s\nSet reports\n%s", len(kept), len(written), strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// TestWrittenStopsWhenCancelled: a cancelled context stops the check with its error.
func TestWrittenStopsWhenCancelled(t *testing.T) {
	var objs []*lvsctlv1.Object
	for range 1000 {
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{Name: "c", DirectorGroup: "g"}}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := validate.Written(ctx, objs, storedObjects(nil)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

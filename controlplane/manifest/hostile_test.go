package manifest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestAliasBombRefusedFast: a "billion laughs" (nine levels of ten aliases: 10^9 nodes once
// expanded) is refused in well under a second, having allocated a few MiB; go.yaml.in/yaml/v3's
// node tree holds each alias once, and the conversion stops at the alias budget.
func TestAliasBombRefusedFast(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	b.WriteString("kind: Cluster\nname: x\n")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, err := Parse([]byte(b.String()))
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrAliasBudget) {
		t.Fatalf("alias bomb: %v, want ErrAliasBudget", err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("refusing the bomb allocated %d MiB", alloc>>20)
	}
	if took > time.Second {
		t.Errorf("refusing the bomb took %v", took)
	}
}

// TestAnchorsAndMergeKeys: what operators do with anchors stays possible: one anchored list of
// real servers reused by 2,000 clusters of one document (a list), which expands to about twice
// the nodes written; merge keys, where the mapping's own keys win and the first merged mapping
// wins over later ones. Aliases that expand to more than 4 times the document are refused, and
// an anchor is the document's own (YAML's rule).
func TestAnchorsAndMergeKeys(t *testing.T) {
	var b strings.Builder
	b.WriteString("- {kind: DirectorGroup, name: g, directors: [{name: d, priority: 1}], vipInterface: eth0}\n")
	b.WriteString("- kind: Cluster\n  name: c0\n  directorGroup: g\n  vips: [10.0.0.1]\n  ports: [{protocol: tcp, port: 80}]\n  reals: &reals\n")
	for r := range 10 {
		fmt.Fprintf(&b, "    - {address: 198.51.100.%d, weight: 1}\n", r+1)
	}
	for i := 1; i < 2000; i++ {
		fmt.Fprintf(&b, "- {kind: Cluster, name: c%d, directorGroup: g, vips: [10.0.%d.%d], ports: [{protocol: tcp, port: 80}], reals: *reals}\n", i, i/250, 1+i%250)
	}
	objs, err := Parse([]byte(b.String()))
	if err != nil {
		t.Fatalf("2,000 clusters sharing an anchor: %v", err)
	}
	if len(objs) != 2001 || len(objs[2000].GetCluster().GetReals()) != 10 || objs[2000].GetCluster().GetReals()[9].GetAddress() != "198.51.100.10" {
		t.Fatalf("2,000 clusters sharing an anchor: %d objects, the last %v", len(objs), objs[len(objs)-1])
	}

	b.Reset()
	b.WriteString("kind: Cluster\nname: c\nreals: &reals\n")
	for r := range 10 {
		fmt.Fprintf(&b, "  - {address: 198.51.100.%d, weight: 1}\n", r+1)
	}
	for i := range 20000 {
		fmt.Fprintf(&b, "y%d: *reals\n", i)
	}
	if _, err := Parse([]byte(b.String())); !errors.Is(err, ErrAliasBudget) {
		t.Errorf("aliases expanding to 20 times the document: %v, want ErrAliasBudget", err)
	}

	_, err = Parse([]byte("kind: Cluster\nname: a\nreals: &reals [{address: 198.51.100.1}]\n---\nkind: Cluster\nname: b\nreals: *reals\n"))
	if err == nil || !strings.Contains(err.Error(), "document 2") || !strings.Contains(err.Error(), "unknown anchor 'reals' referenced") {
		t.Errorf("an alias to another document's anchor: %v", err)
	}

	objs, err = Parse([]byte(`kind: Cluster
name: c
<<: [{scheduler: rr, forwarding: masq, directorGroup: g}, {scheduler: sh, persistence: {timeout: 60s}}]
forwarding: tunnel
vips: [10.0.0.1]
ports: [{protocol: tcp, port: 80}]
`))
	if err != nil {
		t.Fatal(err)
	}
	c := objs[0].GetCluster()
	if c.GetScheduler() != "rr" || c.GetForwarding() != lvsctlv1.Forwarding_FORWARDING_TUNNEL || c.GetDirectorGroup() != "g" || c.GetPersistence().GetTimeoutSeconds() != 60 {
		t.Errorf("merged: %v", c)
	}
}

// TestTooManyDocuments: the 20,001st object of a manifest is refused (limits.MaxObjectsPerApply)
// before it is read, naming the limit.
func TestTooManyDocuments(t *testing.T) {
	for _, sep := range []string{"---\n", "\n"} {
		var b strings.Builder
		for i := range limits.MaxObjectsPerApply + 1 {
			if sep == "\n" {
				fmt.Fprintf(&b, `{"kind": "Cluster", "name": "c%d"}`+"\n", i)
			} else {
				fmt.Fprintf(&b, "kind: Cluster\nname: c%d\n---\n", i)
			}
		}
		_, err := Parse([]byte(b.String()))
		if !errors.Is(err, validate.ErrInvalid) || !errors.Is(err, limits.ErrExceeded) || !strings.Contains(err.Error(), "more than 20000 objects, the limit of one apply") {
			t.Errorf("20,001 documents: %v", err)
		}
	}
}

// TestTruncatedJSON: a JSON stream cut inside an object is an error, not one object fewer.
func TestTruncatedJSON(t *testing.T) {
	_, err := Parse([]byte(`{"kind": "DirectorGroup", "name": "g1", "vipInterface": "eth0"} {"kind": "DirectorGroup", "name": "g2"`))
	if err == nil || !strings.Contains(err.Error(), "document 2") || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("a truncated second object: %v", err)
	}
}

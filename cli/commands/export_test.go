package commands_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestExport: the issue-12 contract of lvsctl export against a real controller: the files on
// stdout, what they cannot say on stderr; and the exported keepalived.conf with the exported
// marks, imported again, gives back what get -o yaml shows (the importer names a cluster by
// its mark, and the revision is the store's).
func TestExport(t *testing.T) {
	_, addr := start(t)
	if r := lvsctl(t, addr, "", "apply", "-f", wmsFile); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}

	expect(t, lvsctl(t, addr, "", "export", "ipvsadm", "group", "edge-1"), 0,
		"-A -f 1 -s wlc -p 600\n"+
			"-a -f 1 -r 198.51.100.1:0 -m -w 100\n"+
			"-a -f 1 -r 198.51.100.2:0 -m -w 100\n"+
			"-a -f 1 -r 198.51.100.3:0 -m -w 100\n",
		"group/edge-1: directors, vipInterface, gateway, sync and failover are not expressible in an ipvsadm-restore file (export keepalived says them)\n")
	// A cluster alone: its service, nothing of the group.
	expect(t, lvsctl(t, addr, "", "export", "ipvsadm", "cluster", "wms"), 0,
		"-A -f 1 -s wlc -p 600\n"+
			"-a -f 1 -r 198.51.100.1:0 -m -w 100\n"+
			"-a -f 1 -r 198.51.100.2:0 -m -w 100\n"+
			"-a -f 1 -r 198.51.100.3:0 -m -w 100\n", "")
	marks := lvsctl(t, addr, "", "export", "keepalived", "--marks", "group", "edge-1")
	if marks.code != 0 || marks.err != "" || !strings.Contains(marks.out, "\niptables -t mangle -A PREROUTING -d 192.0.2.10/32 -p udp --dport 1024:5000 -j MARK --set-mark 1\n") {
		t.Fatalf("export --marks: %+v", marks)
	}
	ka := lvsctl(t, addr, "", "export", "keepalived", "group", "edge-1")
	if ka.code != 0 || !strings.Contains(ka.out, "\nvrrp_instance edge-1 {\n") || !strings.Contains(ka.out, "\n    router_id dir-a\n") ||
		!strings.Contains(ka.err, "group/edge-1: virtual_router_id ") {
		t.Fatalf("export keepalived: %+v", ka)
	}

	dir := t.TempDir()
	for name, text := range map[string]string{"marks.sh": marks.out, "dir-a.conf": ka.out} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	imported := lvsctl(t, addr, "", "import", "keepalived", "--marks", filepath.Join(dir, "marks.sh"), filepath.Join(dir, "dir-a.conf"))
	if imported.code != 0 {
		t.Fatalf("import of the export: %+v", imported)
	}
	got, err := manifest.Parse([]byte(imported.out))
	if err != nil {
		t.Fatal(err)
	}
	var want []*lvsctlv1.Object
	for _, kind := range []string{"group", "cluster"} {
		r := lvsctl(t, addr, "", "get", kind, "-o", "yaml")
		objs, err := manifest.Parse([]byte(r.out))
		if err != nil {
			t.Fatalf("get %s: %v\n%+v", kind, err, r)
		}
		want = append(want, objs...)
	}
	for _, o := range want {
		if c := o.GetCluster(); c != nil {
			c.Revision = 0
			c.Name = "fwmark-1"
		}
		if g := o.GetGroup(); g != nil {
			g.Revision = 0
		}
	}
	if !slices.EqualFunc(got, want, func(a, b *lvsctlv1.Object) bool { return proto.Equal(a, b) }) {
		t.Errorf("import(export) differs from get:\n%s\nwant\n%v", imported.out, want)
	}

	// Refusals name what is wrong.
	for _, tt := range []struct {
		args []string
		err  string
	}{
		{[]string{"export", "keepalived", "group", "nope"}, "nope"},
		{[]string{"export", "ipvsadm", "director", "dir-a"}, `export ipvsadm: want cluster NAME or group NAME, not "director"`},
		{[]string{"export", "keepalived", "--director", "dir-z", "group", "edge-1"}, `cannot export: group edge-1 has no director "dir-z" (it has dir-a)`},
		{[]string{"export", "keepalived", "--director", "dir-a", "cluster", "wms"}, "--director needs group NAME"},
	} {
		r := lvsctl(t, addr, "", tt.args...)
		if r.code == 0 || r.out != "" || !strings.Contains(r.err, tt.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want non-zero naming %q", tt.args, r.code, r.out, r.err, tt.err)
		}
	}
}

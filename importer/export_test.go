package importer

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/health"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// memFiles is a file system of exported texts, for importing them back without a disk.
type memFiles map[string][]byte

func (m memFiles) Glob(p string) ([]string, error) {
	var out []string
	for n := range m {
		if ok, _ := filepath.Match(p, n); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (m memFiles) ReadFile(n string) ([]byte, error) {
	if b, ok := m[n]; ok {
		return b, nil
	}
	return nil, fs.ErrNotExist
}

func readManifest(t *testing.T, name string) []*lvsctlv1.Object {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return applyable(t, b)
}

func notesText(n []string) []byte {
	if len(n) == 0 {
		return nil
	}
	return []byte(strings.Join(n, "\n") + "\n")
}

// exportAll writes every file of a rollback: the marks, the ipvsadm-restore file and one
// keepalived.conf per director (one file when there is no group).
func exportAll(t *testing.T, objs []*lvsctlv1.Object) (marks, ipvs *Exported, ka map[string]*Exported) {
	t.Helper()
	var err error
	if marks, err = ExportMarks(objs); err != nil {
		t.Fatal(err)
	}
	if ipvs, err = ExportIpvsadm(objs); err != nil {
		t.Fatal(err)
	}
	ka = map[string]*Exported{}
	directors := []string{""}
	for _, o := range objs {
		if g := o.GetGroup(); g != nil {
			directors = nil
			for _, d := range g.GetDirectors() {
				directors = append(directors, d.GetName())
			}
		}
	}
	for _, d := range directors {
		if ka[d], err = ExportKeepalived(objs, KeepalivedExportOptions{Director: d}); err != nil {
			t.Fatal(err)
		}
	}
	return marks, ipvs, ka
}

// TestExportGolden: the exports of the importer's golden manifests and of export-all.yaml
// (every kind of check, drained, overrides, failover timings) are the expected files, and
// what they cannot say is listed.
func TestExportGolden(t *testing.T) {
	for _, name := range []string{"wms", "wms-ipvsadm", "sample-fwmark", "sample-virtual_server_group", "sample-vrrp-lvs_syncd", "services", "tunnel", "sorry", "export-all"} {
		t.Run(name, func(t *testing.T) {
			marks, ipvs, ka := exportAll(t, readManifest(t, name+".yaml"))
			golden(t, "export-"+strings.TrimPrefix(name, "export-")+".marks.sh", marks.Text)
			golden(t, "export-"+strings.TrimPrefix(name, "export-")+".ipvsadm", ipvs.Text)
			notes := append(slices.Clone(marks.Notes), ipvs.Notes...)
			for _, d := range slices.Sorted(maps.Keys(ka)) {
				file := "export-" + strings.TrimPrefix(name, "export-") + ".keepalived"
				if d != "" {
					file += "." + d
				}
				golden(t, file+".conf", ka[d].Text)
				for _, n := range ka[d].Notes {
					if !slices.Contains(notes, n) {
						notes = append(notes, n)
					}
				}
			}
			golden(t, "export-"+strings.TrimPrefix(name, "export-")+".stderr", notesText(notes))
		})
	}
}

// behaviour is an object as the directors run it: each real server's effective check with
// its defaults (check none is no check), the cluster's check folded into them, no read-only
// revision, an empty failover as none. Exports write effective values, so a default comes
// back written out, and a cluster's check comes back on each real server when they differ.
func behaviour(o *lvsctlv1.Object) *lvsctlv1.Object {
	o = proto.Clone(o).(*lvsctlv1.Object)
	if g := o.GetGroup(); g != nil {
		g.Revision = 0
		if proto.Equal(g.GetFailover(), &lvsctlv1.Failover{}) {
			g.Failover = nil
		}
	}
	if c := o.GetCluster(); c != nil {
		c.Revision = 0
		for _, r := range c.GetReals() {
			e := health.Effective(c.GetHealth(), r.GetHealth())
			r.Health = nil
			if e == nil || e.GetCheck() == string(health.KindNone) {
				continue
			}
			s := health.FromProto(e).Defaults()
			e.IntervalMs, e.TimeoutMs = uint32(s.Interval.Milliseconds()), uint32(s.Timeout.Milliseconds())
			e.Rise, e.Fall, e.Path, e.Expect, e.UdpMode = uint32(s.Rise), uint32(s.Fall), s.Path, s.Expect, string(s.UDPMode)
			e.OnFailure = health.OnFailure(e)
			r.Health = e
		}
		c.Health = nil
	}
	return o
}

func sameObjects(t *testing.T, what string, got []Imported, want []*lvsctlv1.Object, norm func(*lvsctlv1.Object) *lvsctlv1.Object) {
	t.Helper()
	key := func(o *lvsctlv1.Object) string {
		if o.GetGroup() != nil {
			return "0 " + o.GetGroup().GetName()
		}
		return fmt.Sprintf("1 %010d %s", o.GetCluster().GetFwmark(), o.GetCluster().GetName())
	}
	var g, w []*lvsctlv1.Object
	for _, im := range got {
		g = append(g, norm(im.Object))
	}
	for _, o := range want {
		w = append(w, norm(o))
	}
	sortObjs := func(s []*lvsctlv1.Object) {
		slices.SortFunc(s, func(a, b *lvsctlv1.Object) int { return strings.Compare(key(a), key(b)) })
	}
	sortObjs(g)
	sortObjs(w)
	gy, _ := manifest.Marshal(g, manifest.YAML)
	wy, _ := manifest.Marshal(w, manifest.YAML)
	if len(g) != len(w) || !slices.EqualFunc(g, w, func(a, b *lvsctlv1.Object) bool { return proto.Equal(a, b) }) {
		t.Errorf("%s: import(export(objects)) differs:\n--- got\n%s\n--- want\n%s", what, gy, wy)
	}
}

// TestExportRoundTrip: importing the exports gives back the objects: the importer's golden
// manifests through keepalived.conf (one file per director) and through ipvsadm-restore, both
// with the exported marks. Exactly, but for what behaviour() says: defaults come back written
// out and a cluster's check on each real server. ipvsadm carries no health checks and no group.
func TestExportRoundTrip(t *testing.T) {
	for _, name := range []string{"wms", "wms-ipvsadm", "sample-fwmark", "sample-virtual_server_group", "sample-vrrp-lvs_syncd", "sample-IPv6", "services", "tunnel", "sorry"} {
		t.Run(name, func(t *testing.T) {
			objs := readManifest(t, name+".yaml")
			marksOut, ipvsOut, ka := exportAll(t, objs)
			marks, warns := ParseMarks("marks.sh", marksOut.Text)
			if len(warns) != 0 {
				t.Errorf("the exported marks do not import cleanly: %v", warns)
			}
			group := ""
			var clusters []*lvsctlv1.Object
			for _, o := range objs {
				if o.GetGroup() != nil {
					group = ""
					break
				}
				group = o.GetCluster().GetDirectorGroup()
			}
			for _, o := range objs {
				if c := o.GetCluster(); c != nil {
					c := proto.Clone(c).(*lvsctlv1.Cluster)
					c.Health = nil
					c.SorryServer = nil // a destination only while in use: not in ipvsadm-save
					for _, r := range c.Reals {
						r.Health = nil
					}
					clusters = append(clusters, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}})
				}
			}

			files := memFiles{}
			var names []string
			for _, o := range objs {
				for _, d := range o.GetGroup().GetDirectors() {
					names = append(names, "/ka/"+d.GetName()+".conf")
					files[names[len(names)-1]] = ka[d.GetName()].Text
				}
			}
			if len(names) == 0 {
				names = []string{"/ka/keepalived.conf"}
				files[names[0]] = ka[""].Text
			}
			res, err := Keepalived(names, KeepalivedOptions{Group: group, Marks: marks, Files: files})
			if err != nil {
				t.Fatal(err)
			}
			sameObjects(t, "keepalived", res.Objects, objs, behaviour)

			if len(clusters) == 0 {
				return
			}
			ipvsGroup := clusters[0].GetCluster().GetDirectorGroup()
			res, err = Ipvsadm("rules", ipvsOut.Text, IpvsadmOptions{Group: ipvsGroup, Marks: marks})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Warnings) != 0 {
				t.Errorf("the exported ipvsadm file does not import cleanly: %v", res.Warnings)
			}
			sameObjects(t, "ipvsadm", res.Objects, clusters, behaviour)
		})
	}
}

// TestExportKeepalivedDirector: each director's file differs in what VRRP says of it; the
// default is the director lvsctl makes ACTIVE; an unknown director is refused by name.
func TestExportKeepalivedDirector(t *testing.T) {
	objs := readManifest(t, "export-all.yaml")
	def, err := ExportKeepalived(objs, KeepalivedExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ExportKeepalived(objs, KeepalivedExportOptions{Director: "dir-b"})
	if err != nil {
		t.Fatal(err)
	}
	if string(def.Text) != string(b.Text) {
		t.Errorf("the default file is not dir-b's (priority 200):\n%s", def.Text)
	}
	v, err := ExportKeepalived(objs, KeepalivedExportOptions{Director: "dir-a", VRID: 42})
	if err != nil || !strings.Contains(string(v.Text), "virtual_router_id 42\n") || slices.ContainsFunc(v.Notes, func(n string) bool { return strings.Contains(n, "virtual_router_id") }) {
		t.Errorf("--vrid 42: %v\n%s\n%v", err, v.Text, v.Notes)
	}
	_, err = ExportKeepalived(objs, KeepalivedExportOptions{Director: "dir-c"})
	if err == nil || err.Error() != `cannot export: group edge-2 has no director "dir-c" (it has dir-a, dir-b)` {
		t.Errorf("unknown director: %v", err)
	}
}

// TestExportRefusesADuplicatePlainService: two clusters of the same plain service (of two
// groups, exported together) are refused, however the names sort between them.
func TestExportRefusesADuplicatePlainService(t *testing.T) {
	plain := func(name string, port uint32) *lvsctlv1.Object {
		return &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{Name: name, Scheduler: "rr",
			Service: &lvsctlv1.VirtualService{Address: "192.0.2.1", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: port}}}}
	}
	_, err := ExportIpvsadm([]*lvsctlv1.Object{plain("a", 80), plain("b", 443), plain("c", 80)})
	if !errors.Is(err, ErrExport) {
		t.Fatalf("export of a and c, both tcp 192.0.2.1:80, with b between them: %v; want ErrExport", err)
	}
}

package importer

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name (rewriting it under -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// applyable checks what `lvsctl apply -f` checks before sending: the manifest parses, each
// object is valid, and the objects are valid together when the group is among them.
func applyable(t *testing.T, yaml []byte) []*lvsctlv1.Object {
	t.Helper()
	objs, err := manifest.Parse(yaml)
	if err != nil {
		t.Fatalf("imported manifest does not parse: %v\n%s", err, yaml)
	}
	hasGroup := false
	for _, o := range objs {
		if err := validate.Object(o); err != nil {
			t.Errorf("imported object invalid: %v", err)
		}
		hasGroup = hasGroup || o.GetGroup() != nil
	}
	if hasGroup {
		if err := validate.Set(objs); err != nil {
			t.Errorf("imported objects invalid together: %v", err)
		}
	}
	return objs
}

func stderrText(ws []Warning) []byte {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.String() + "\n")
	}
	return []byte(b.String())
}

func TestImportKeepalivedGolden(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		marks string
		group string
		// empty: nothing can be imported (fwmark services without their marks)
		empty bool
	}{
		{name: "sample-fwmark", files: []string{"sample-fwmark.conf"}, marks: "sample-fwmark.marks", group: "site-1"},
		{name: "sample-fwmark-nomarks", files: []string{"sample-fwmark.conf"}, empty: true},
		{name: "sample-virtual_server_group", files: []string{"sample-virtual_server_group.conf"}, marks: "sample-virtual_server_group.marks", group: "site-1"},
		{name: "sample-vrrp-lvs_syncd", files: []string{"sample-vrrp-lvs_syncd.conf"}},
		{name: "sample-misc_check", files: []string{"sample-misc_check.conf"}},
		{name: "sample-IPv6", files: []string{"sample-IPv6.conf"}},
		{name: "wms", files: []string{"wms-lb1.conf", "wms-lb2.conf"}, marks: "wms.marks"},
		{name: "services", files: []string{"services.conf"}},
		{name: "tunnel", files: []string{"tunnel.conf"}},
		{name: "sorry", files: []string{"sorry.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opt := KeepalivedOptions{Group: tt.group}
			var warns []Warning
			if tt.marks != "" {
				data, err := os.ReadFile(filepath.Join("testdata", tt.marks))
				if err != nil {
					t.Fatal(err)
				}
				opt.Marks, warns = ParseMarks(tt.marks, data)
			}
			var files []string
			for _, f := range tt.files {
				files = append(files, filepath.Join("testdata", f))
			}
			res, err := Keepalived(files, opt)
			if tt.empty != errors.Is(err, ErrNothing) || (err != nil && !errors.Is(err, ErrNothing)) {
				t.Fatalf("Keepalived: %v (want nothing imported: %v)", err, tt.empty)
			}
			out, err := res.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".yaml", out)
			golden(t, tt.name+".stderr", stderrText(append(warns, res.Warnings...)))
			if !tt.empty {
				applyable(t, out)
			}
		})
	}
}

func TestImportIpvsadmGolden(t *testing.T) {
	data, err := os.ReadFile("testdata/wms.ipvsadm")
	if err != nil {
		t.Fatal(err)
	}
	marks, err := os.ReadFile("testdata/wms-save.marks")
	if err != nil {
		t.Fatal(err)
	}
	m, warns := ParseMarks("wms-save.marks", marks)
	res, err := Ipvsadm("wms.ipvsadm", data, IpvsadmOptions{Group: "edge-1", Marks: m})
	if err != nil {
		t.Fatal(err)
	}
	out, err := res.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "wms-ipvsadm.yaml", out)
	golden(t, "wms-ipvsadm.stderr", stderrText(append(warns, res.Warnings...)))
	applyable(t, out)
}

// TestImportIpvsadmServices: plain services of every protocol and family, with their
// scheduler flags, one-packet scheduling, port mapping and thresholds, as ipvsadm-save -n
// writes them; what is not carried over is listed.
func TestImportIpvsadmServices(t *testing.T) {
	data, err := os.ReadFile("testdata/services.ipvsadm")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Ipvsadm("services.ipvsadm", data, IpvsadmOptions{Group: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := res.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "services-ipvsadm.yaml", out)
	golden(t, "services-ipvsadm.stderr", stderrText(res.Warnings))
	applyable(t, out)
}

// TestImportIpvsadmTunnel: ipvsadm-save 1.31's --tun-type/--tun-port/--tun-*csum become the
// cluster's tunnel; reals of one service that differ, and what ipvsadm refuses, are listed.
func TestImportIpvsadmTunnel(t *testing.T) {
	data, err := os.ReadFile("testdata/tunnel.ipvsadm")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Ipvsadm("tunnel.ipvsadm", data, IpvsadmOptions{Group: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := res.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "tunnel-ipvsadm.yaml", out)
	golden(t, "tunnel-ipvsadm.stderr", stderrText(res.Warnings))
	applyable(t, out)
}

package commands

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/manifest"
)

// TestImportKeepalived: the contract of `lvsctl import keepalived`: manifests that apply
// reads on stdout, settings not carried over as FILE:LINE: on stderr, exit 0; an unreadable
// file exits non-zero naming it. No controller runs.
func TestImportKeepalived(t *testing.T) {
	var out, errOut bytes.Buffer
	code := Run(context.Background(), []string{"import", "keepalived", "--marks", "../../importer/testdata/wms.marks",
		"../../importer/testdata/wms-lb1.conf", "../../importer/testdata/wms-lb2.conf"},
		Streams{Out: &out, Err: &errOut}, func(string) string { return "" })
	if code != ExitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut.String())
	}
	objs, err := manifest.Parse(out.Bytes())
	if err != nil || len(objs) != 3 || objs[0].GetGroup().GetName() != "vi-wms" || objs[1].GetCluster().GetFwmark() != 1 ||
		objs[2].GetCluster().GetService().GetAddress() != "192.0.2.20" {
		t.Fatalf("stdout is not the group, cluster fwmark-1 and the plain service (%v):\n%s", err, out.String())
	}
	// keepalived takes a virtual_server without protocol as UDP; the import says so, with the line.
	if !strings.Contains(errOut.String(), "wms-services.conf:41: virtual_server 192.0.2.20 80: no protocol: UDP, as keepalived defaults it") {
		t.Errorf("stderr does not note the plain service's protocol with its line:\n%s", errOut.String())
	}

	out.Reset()
	errOut.Reset()
	code = Run(context.Background(), []string{"import", "ipvsadm", "no-such-file"}, Streams{Out: &out, Err: &errOut}, func(string) string { return "" })
	if code == ExitOK || !strings.Contains(errOut.String(), "no-such-file") || out.Len() != 0 {
		t.Errorf("unreadable input: exit %d, stdout %q, stderr %q; want non-zero naming the file", code, out.String(), errOut.String())
	}
}

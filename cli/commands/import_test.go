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
	if err != nil || len(objs) != 2 || objs[0].GetGroup().GetName() != "vi-wms" || objs[1].GetCluster().GetFwmark() != 1 {
		t.Fatalf("stdout is not the group and cluster fwmark-1 (%v):\n%s", err, out.String())
	}
	if !strings.Contains(errOut.String(), "wms-services.conf:41: virtual_server 192.0.2.20 80: plain (VIP:port) services are not modelled yet") {
		t.Errorf("stderr does not list the plain service with its line:\n%s", errOut.String())
	}

	out.Reset()
	errOut.Reset()
	code = Run(context.Background(), []string{"import", "ipvsadm", "no-such-file"}, Streams{Out: &out, Err: &errOut}, func(string) string { return "" })
	if code == ExitOK || !strings.Contains(errOut.String(), "no-such-file") || out.Len() != 0 {
		t.Errorf("unreadable input: exit %d, stdout %q, stderr %q; want non-zero naming the file", code, out.String(), errOut.String())
	}
}

package importer

import (
	"slices"
	"strings"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestKeepalivedGroupRanges: a virtual_server_group range expands to one plain service per
// address, IPv4 by its last byte and IPv6 by its last group (hex), as keepalived reads them;
// what cannot be expanded is a warning with its line, and the rest is still imported.
func TestKeepalivedGroupRanges(t *testing.T) {
	const conf = `virtual_server_group G {
    192.0.2.1-3 53
    2001:db8::a-c 53
    192.0.2.9-300 53
    192.0.2.200-100 53
}
virtual_server group G {
    protocol UDP
    lb_algo rr
    persistence_granularity 255.255.255.0
    real_server 198.51.100.1 53 {
        weight 1
    }
}
`
	res, err := Keepalived([]string{"/k.conf"}, KeepalivedOptions{Group: "g", Files: memFiles{"/k.conf": []byte(conf)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range res.Objects {
		c := im.Object.GetCluster()
		got = append(got, c.GetName())
		if p := c.GetPersistence(); p.GetTimeoutSeconds() != 360 || p.GetNetmaskBits() != 24 {
			t.Errorf("%s: persistence %v, want keepalived's default 360s with /24", c.GetName(), p)
		}
		if c.GetService().GetProtocol() != lvsctlv1.Protocol_PROTOCOL_UDP || c.GetService().GetPort() != 53 {
			t.Errorf("%s: service %v", c.GetName(), c.GetService())
		}
	}
	want := []string{"udp-192-0-2-1-53", "udp-192-0-2-2-53", "udp-192-0-2-3-53", "udp-2001-db8-a-53", "udp-2001-db8-b-53", "udp-2001-db8-c-53"}
	if !slices.Equal(got, want) {
		t.Errorf("clusters %v, want %v", got, want)
	}
	warns := string(stderrText(res.Warnings))
	for _, w := range []string{
		`/k.conf:4: virtual_server_group G: 192.0.2.9-300 53: "192.0.2.9-300" is not a range of the address's last part: not imported`,
		`/k.conf:5: virtual_server_group G: 192.0.2.200-100 53: "192.0.2.200-100" is not a range of the address's last part: not imported`,
	} {
		if !strings.Contains(warns, w+"\n") {
			t.Errorf("warnings lack\n%s\nin\n%s", w, warns)
		}
	}
}

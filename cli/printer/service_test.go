package printer

import (
	"bytes"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// TestPlainServiceRow: get clusters shows a plain service as ipvsadm -Ln names it, where a
// fwmark cluster shows its VIPs, ports and mark.
func TestPlainServiceRow(t *testing.T) {
	web := &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "web", DirectorGroup: "edge-1", Scheduler: "sh", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ,
		Service:  &lvsctlv1.VirtualService{Address: "192.0.2.20", Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, Port: 80},
		Reals:    []*lvsctlv1.RealServer{{Address: "198.51.100.5", Port: 8080, Weight: 1}},
		Revision: 10,
	}}}
	dns := &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: &lvsctlv1.Cluster{
		Name: "dns6", DirectorGroup: "edge-1", Scheduler: "rr", Forwarding: lvsctlv1.Forwarding_FORWARDING_ROUTE, Ops: true,
		Service:  &lvsctlv1.VirtualService{Address: "2001:db8::53", Protocol: lvsctlv1.Protocol_PROTOCOL_UDP, Port: 53},
		Revision: 11,
	}}}
	p, err := New(Table)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := p.Objects(&b, []*lvsctlv1.Object{cluster(), web, dns}, false); err != nil {
		t.Fatal(err)
	}
	want := "NAME  GROUP   VIPS                   PORTS                  FWMARK  SCHEDULER  FORWARDING  REALS  REVISION\n" +
		"wms   edge-1  192.0.2.10             tcp/554,udp/1024-5000  1       wlc        masq        1      9\n" +
		"web   edge-1  tcp 192.0.2.20:80      -                      -       sh         masq        1      10\n" +
		"dns6  edge-1  udp [2001:db8::53]:53  -                      -       rr         route       0      11\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

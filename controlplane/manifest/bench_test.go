package manifest

import (
	"fmt"
	"testing"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// benchObjects is a group and n WMS-style clusters of 10 real servers (the scale tests' shape).
func benchObjects(n int) []*lvsctlv1.Object {
	objs := []*lvsctlv1.Object{{Kind: &lvsctlv1.Object_Group{Group: &lvsctlv1.DirectorGroup{
		Name: "edge-1", VipInterface: "eth0", Directors: []*lvsctlv1.Director{{Name: "dir-a", Priority: 100}}}}}}
	tcp, udp := lvsctlv1.Protocol_PROTOCOL_TCP, lvsctlv1.Protocol_PROTOCOL_UDP
	for i := range n {
		c := &lvsctlv1.Cluster{Name: fmt.Sprintf("wms-%05d", i), DirectorGroup: "edge-1",
			Vips:      []string{fmt.Sprintf("10.%d.%d.%d", 100+i>>16, (i>>8)&255, i&255)},
			Scheduler: "wlc", Forwarding: lvsctlv1.Forwarding_FORWARDING_MASQ, Persistence: &lvsctlv1.Persistence{TimeoutSeconds: 600},
			Ports: []*lvsctlv1.PortRange{{Protocol: tcp, First: 554, Last: 554}, {Protocol: udp, First: 554, Last: 554},
				{Protocol: tcp, First: 1755, Last: 1755}, {Protocol: udp, First: 1755, Last: 1755}, {Protocol: udp, First: 1024, Last: 5000}}}
		for r := range 10 {
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: fmt.Sprintf("172.16.%d.%d", r, 1+i%250), Weight: 100})
		}
		objs = append(objs, &lvsctlv1.Object{Kind: &lvsctlv1.Object_Cluster{Cluster: c}})
	}
	return objs
}

// BenchmarkParseTenThousandClusters: what lvsctl apply -f spends reading the scale tests'
// manifest of 10,000 clusters, in YAML and in JSON.
func BenchmarkParseTenThousandClusters(b *testing.B) {
	objs := benchObjects(10000)
	for _, f := range []Format{YAML, JSON} {
		data, err := MarshalList(objs, f)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(f), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				got, err := Parse(data)
				if err != nil || len(got) != len(objs) {
					b.Fatalf("%d objects, %v", len(got), err)
				}
			}
		})
	}
}

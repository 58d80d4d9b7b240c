package reconcile

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

func TestAdoptDiff(t *testing.T) {
	key := dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 1}
	svc := dataplane.Service{ServiceKey: key, Scheduler: "rr", Timeout: 600, NetmaskBits: 32}
	rs := func(a string, w uint32) dataplane.Destination {
		return dataplane.Destination{Address: netip.MustParseAddr(a), Weight: w, Forward: dataplane.ForwardMasq}
	}
	spec := &clusterSpec{name: "wms", svc: svc, dests: []dataplane.Destination{rs("198.51.100.1", 1), rs("198.51.100.2", 1)}}
	other := svc
	other.Scheduler = "wlc"
	for _, tc := range []struct {
		name  string
		cur   *dataplane.Service
		dests []dataplane.Destination
		want  []string // substrings of the difference; none: adopted
	}{
		{"identical, the kernel's own order", &svc, []dataplane.Destination{rs("198.51.100.2", 1), rs("198.51.100.1", 1)}, nil},
		{"not read", nil, nil, []string{"not read"}},
		{"another scheduler", &other, spec.dests, []string{"Scheduler: the kernel has wlc, the cluster rr"}},
		{"a weight differs", &svc, []dataplane.Destination{rs("198.51.100.1", 1), rs("198.51.100.2", 5)},
			[]string{"the kernel has {Address:198.51.100.2 Port:0 Weight:5", "the cluster has {Address:198.51.100.2 Port:0 Weight:1"}},
		{"a real server more in the kernel", &svc, append(spec.dests, rs("198.51.100.3", 1)), []string{"the kernel has {Address:198.51.100.3"}},
		{"a real server missing", &svc, spec.dests[:1], []string{"the cluster has {Address:198.51.100.2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := adoptDiff(tc.cur, tc.dests, spec)
			if len(tc.want) == 0 {
				if got != "" {
					t.Fatalf("adoptDiff = %q, want no difference", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("adoptDiff = %q, want it to say %q", got, w)
				}
			}
		})
	}
}

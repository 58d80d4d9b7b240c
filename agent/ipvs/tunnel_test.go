package ipvs

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// TestTunnelRefused: a tunnel the kernel would refuse, or take and not use, is refused
// before anything is sent, naming what is wrong.
func TestTunnelRefused(t *testing.T) {
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 3}, Scheduler: "wlc"}
	dest := func(f dataplane.Forward, tn dataplane.Tunnel) dataplane.Destination {
		return dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 1, Forward: f, Tunnel: tn}
	}
	tests := []struct {
		name string
		rel  release
		d    dataplane.Destination
		want string
		is   error
	}{
		{"gue without port", release{}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: dataplane.TunnelGUE}), "tunnel: gue needs a port", syscall.EINVAL},
		{"tunnel on route", release{}, dest(dataplane.ForwardRoute, dataplane.Tunnel{Type: dataplane.TunnelGRE}), "tunnel: gre:-c on a route destination", nil},
		{"port on ipip", release{}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Port: 6080}), "tunnel: port 6080 on ipip", nil},
		{"csum on ipip", release{}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Flags: dataplane.TunnelCsum}), "ipip has no such checksum option", nil},
		{"remcsum on gre", release{}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: dataplane.TunnelGRE, Flags: dataplane.TunnelRemCsum}), "gre has no such checksum option", nil},
		{"both flags", release{}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 1, Flags: 3}), "flags 0x3", nil},
		{"unknown type", release{}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: 3}), "type 3 is not ipip, gue or gre", nil},
		{"gue on 5.2", release{5, 2}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 6080}), "gue needs Linux 5.3 or later, this kernel is 5.2", dataplane.ErrUnavailable},
		{"gre on 5.7", release{5, 7}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: dataplane.TunnelGRE}), "gre needs Linux 5.8 or later, this kernel is 5.7", dataplane.ErrUnavailable},
		{"gre on 4.19", release{4, 19}, dest(dataplane.ForwardTunnel, dataplane.Tunnel{Type: dataplane.TunnelGRE}), "gre needs Linux 5.8 or later", dataplane.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, sends := batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return 0 })
			k.release = tt.rel
			for _, err := range []error{k.AddDestination(svc, tt.d), k.UpdateDestination(svc, tt.d)} {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v; want %q", err, tt.want)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("error %v does not match %v", err, tt.is)
				}
			}
			if len(*sends) != 0 {
				t.Errorf("%d sends; want none", len(*sends))
			}
		})
	}
}

// TestTunnelAccepted: what each kernel has goes out, through the single calls too (moby/ipvs
// sends no tunnel attributes, so they share Batch's request).
func TestTunnelAccepted(t *testing.T) {
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 3}, Scheduler: "wlc"}
	tests := []struct {
		rel release
		tn  dataplane.Tunnel
	}{
		{release{4, 19}, dataplane.Tunnel{}}, // ipip: every kernel
		{release{5, 3}, dataplane.Tunnel{Type: dataplane.TunnelGUE, Port: 6080, Flags: dataplane.TunnelRemCsum}},
		{release{6, 1}, dataplane.Tunnel{Type: dataplane.TunnelGRE, Flags: dataplane.TunnelCsum}},
		{release{}, dataplane.Tunnel{Type: dataplane.TunnelGRE}}, // unknown release: the kernel decides
	}
	for _, tt := range tests {
		t.Run(tt.tn.String(), func(t *testing.T) {
			k, sends := batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return 0 })
			k.release = tt.rel
			d := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 1, Forward: dataplane.ForwardTunnel, Tunnel: tt.tn}
			if err := k.AddDestination(svc, d); err != nil {
				t.Fatal(err)
			}
			if len(*sends) != 1 || len((*sends)[0]) != 1 {
				t.Fatalf("sends %v; want one request", *sends)
			}
			// The request decodes back to the same tunnel, as the kernel would report it.
			m := (*sends)[0][0]
			var set attrSet
			if err := set.payload(m.Data, cmdAttrDest); err != nil {
				t.Fatal(err)
			}
			got, err := decodeTunnel(&set)
			if err != nil || got != tt.tn {
				t.Errorf("sent %+v (%v); want %+v", got, err, tt.tn)
			}
		})
	}
}

// TestSingleDestinationErrors: the single calls map the kernel's refusals as before they
// shared Batch's request.
func TestSingleDestinationErrors(t *testing.T) {
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 3}, Scheduler: "wlc"}
	d := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 1, Forward: dataplane.ForwardRoute}
	for code, want := range map[syscall.Errno]error{syscall.EEXIST: dataplane.ErrExist, syscall.ENOENT: dataplane.ErrNotExist, syscall.ESRCH: dataplane.ErrNotExist} {
		k, _ := batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return code })
		if err := k.AddDestination(svc, d); !errors.Is(err, want) || !errors.Is(err, code) {
			t.Errorf("kernel %v: %v; want %v", code, err, want)
		}
	}
}

// TestDeleteOddTunnel: a destination with a tunnel lvsctl refuses to make (flags on ipip, as
// netlink allows; a type newer than gre) is still deleted.
func TestDeleteOddTunnel(t *testing.T) {
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 3}, Scheduler: "wlc"}
	for _, tn := range []dataplane.Tunnel{{Flags: dataplane.TunnelCsum}, {Type: 3}} {
		k, sends := batchKernel(t, func(syscall.NetlinkMessage) syscall.Errno { return 0 })
		d := dataplane.Destination{Address: netip.MustParseAddr("198.51.100.1"), Weight: 1, Forward: dataplane.ForwardTunnel, Tunnel: tn}
		if err := k.DelDestination(svc, d); err != nil || len(*sends) != 1 {
			t.Errorf("delete of %+v: %v, %d sends; want it sent", tn, err, len(*sends))
		}
	}
}

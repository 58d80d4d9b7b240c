package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/dataplane/fake"
)

// TestLazyIPVSPicksUpIPVSLater: an agent started before `modprobe ip_vs` reports the error,
// does not retry more often than RetryEvery, and uses IPVS once it can be opened, without a
// restart.
func TestLazyIPVSPicksUpIPVSLater(t *testing.T) {
	missing := errors.Join(dataplane.ErrUnavailable, errors.New(`generic netlink family "IPVS" not found`))
	opens := 0
	available := false
	kernel := fake.NewIPVS()
	l := &LazyIPVS{RetryEvery: 50 * time.Millisecond, Open: func() (KernelIPVS, error) {
		opens++
		if !available {
			return nil, missing
		}
		return kernel, nil
	}}
	if _, err := l.Stats(); !errors.Is(err, dataplane.ErrUnavailable) {
		t.Fatalf("without IPVS: %v, want ErrUnavailable", err)
	}
	svc := dataplane.Service{ServiceKey: dataplane.ServiceKey{Family: dataplane.IPv4, FWMark: 1}, Scheduler: "wlc", NetmaskBits: 32}
	if errs := l.Batch([]dataplane.Op{{Kind: dataplane.AddService, Service: svc}}); len(errs) != 1 || !errors.Is(errs[0], dataplane.ErrUnavailable) {
		t.Fatalf("a batch without IPVS: %v, want one ErrUnavailable", errs)
	}
	for range 5 {
		if ok, _ := l.Available(); ok {
			t.Fatal("available without IPVS")
		}
	}
	if opens != 1 {
		t.Errorf("%d opens within RetryEvery, want 1 (no spinning)", opens)
	}
	available = true // modprobe ip_vs
	time.Sleep(60 * time.Millisecond)
	if errs := l.Batch([]dataplane.Op{{Kind: dataplane.AddService, Service: svc}}); len(errs) != 1 || errs[0] != nil {
		t.Fatalf("after IPVS appeared: %v", errs)
	}
	if got, _ := kernel.Services(); len(got) != 1 {
		t.Errorf("the kernel holds %v, want the added service", got)
	}
	if ok, err := l.Available(); !ok {
		t.Errorf("not available after IPVS appeared: %v", err)
	}
}

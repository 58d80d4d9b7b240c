package daemon

import (
	"fmt"
	"sync"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/reconcile"
)

// KernelIPVS is what the agent needs of an IPVS backend: the reconciler's operations and
// the stats sampler's dump.
type KernelIPVS interface {
	reconcile.IPVS
	Stats() ([]dataplane.ServiceStats, error)
	StatsOf(keep func(dataplane.ServiceKey) bool) ([]dataplane.ServiceStats, error)
}

// Batch makes the changes; without IPVS, each fails with why.
func (l *LazyIPVS) Batch(ops []dataplane.Op) []error {
	k, err := l.get()
	if err != nil {
		errs := make([]error, len(ops))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	return k.Batch(ops)
}

// LazyIPVS opens the kernel's IPVS on first use and again after it was unavailable, no more
// often than every RetryEvery, so an agent started before `modprobe ip_vs` picks IPVS up at a
// later reconcile without a restart, and a kernel without IPVS is reported, not spun on.
type LazyIPVS struct {
	Open       func() (KernelIPVS, error)
	RetryEvery time.Duration

	mu      sync.Mutex
	k       KernelIPVS
	err     error
	lastTry time.Time
}

func (l *LazyIPVS) get() (KernelIPVS, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.k != nil {
		return l.k, nil
	}
	if l.err != nil && time.Since(l.lastTry) < l.RetryEvery {
		return nil, l.err
	}
	l.lastTry = time.Now()
	l.k, l.err = l.Open()
	if l.err != nil {
		l.k = nil
		return nil, fmt.Errorf("ipvs: %w", l.err)
	}
	return l.k, nil
}

// Available reports whether IPVS could be opened, and why not.
func (l *LazyIPVS) Available() (bool, error) {
	_, err := l.get()
	return err == nil, err
}

func (l *LazyIPVS) Destinations(s dataplane.Service) ([]dataplane.Destination, error) {
	k, err := l.get()
	if err != nil {
		return nil, err
	}
	return k.Destinations(s)
}

// Stats dumps the kernel's services' stats.
func (l *LazyIPVS) Stats() ([]dataplane.ServiceStats, error) {
	k, err := l.get()
	if err != nil {
		return nil, err
	}
	return k.Stats()
}

// StatsOf dumps the stats of the services keep keeps.
func (l *LazyIPVS) StatsOf(keep func(dataplane.ServiceKey) bool) ([]dataplane.ServiceStats, error) {
	k, err := l.get()
	if err != nil {
		return nil, err
	}
	return k.StatsOf(keep)
}

// SyncDaemons lists the kernel's IPVS sync daemons.
func (l *LazyIPVS) SyncDaemons() ([]dataplane.SyncDaemon, error) {
	k, err := l.get()
	if err != nil {
		return nil, err
	}
	return k.SyncDaemons()
}

// StartSyncDaemon starts a sync daemon.
func (l *LazyIPVS) StartSyncDaemon(d dataplane.SyncDaemon) error {
	k, err := l.get()
	if err != nil {
		return err
	}
	return k.StartSyncDaemon(d)
}

// StopSyncDaemon stops the sync daemon of a state.
func (l *LazyIPVS) StopSyncDaemon(s dataplane.SyncState) error {
	k, err := l.get()
	if err != nil {
		return err
	}
	return k.StopSyncDaemon(s)
}

// Package fake holds stateful fakes of the kernel's IPVS, nftables and interface addresses for
// tests. They keep state, refuse what the kernel refuses (with errors that wrap the same
// dataplane sentinels or errnos the real backends return), count successful mutations, and let
// a test make chosen calls fail. All are safe for concurrent use.
package fake

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// Op is one call to a fake: the name of the method and the object it acted on. Failure
// predicates receive it, and Ops lists the successful mutations.
type Op struct {
	// Name is the method: "AddService", "SetMarkRules", "AddAddress", "Services", ...
	Name string
	// Service is the IPVS service of an IPVS call.
	Service dataplane.ServiceKey
	// Dest is the destination of a destination call.
	Dest netip.AddrPort
	// Interface and Prefix are the address of an address call (Interface alone for a listing).
	Interface string
	Prefix    netip.Prefix
}

func (o Op) String() string {
	switch {
	case o.Dest.IsValid():
		return fmt.Sprintf("%s %s %s", o.Name, o.Service, o.Dest)
	case o.Service != (dataplane.ServiceKey{}):
		return fmt.Sprintf("%s %s", o.Name, o.Service)
	case o.Prefix.IsValid():
		return fmt.Sprintf("%s %s dev %s", o.Name, o.Prefix, o.Interface)
	case o.Interface != "":
		return fmt.Sprintf("%s dev %s", o.Name, o.Interface)
	}
	return o.Name
}

// faults decides which calls fail. The owner's mutex guards it.
type faults struct {
	next map[string][]error
	when func(Op) error
}

// check returns the injected error for op, consuming a FailNext entry.
func (f *faults) check(op Op) error {
	if q := f.next[op.Name]; len(q) > 0 {
		f.next[op.Name] = q[1:]
		return q[0]
	}
	if f.when != nil {
		return f.when(op)
	}
	return nil
}

func (f *faults) failNext(name string, err error) {
	if f.next == nil {
		f.next = map[string][]error{}
	}
	f.next[name] = append(f.next[name], err)
}

// recorder is the part every fake shares: the mutex, the failure injection, the operation log.
type recorder struct {
	mu     sync.Mutex
	faults faults
	ops    []Op
}

// FailNext makes the next call of the method named name fail with err, once, changing nothing.
// Several calls queue several failures.
func (r *recorder) FailNext(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults.failNext(name, err)
}

// FailWhen makes every call for which fn returns an error fail with it, changing nothing, until
// FailWhen(nil). fn runs under the fake's lock: it must not call the fake.
func (r *recorder) FailWhen(fn func(Op) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults.when = fn
}

// Ops lists the successful mutations since the fake was made or ResetOps, in order.
func (r *recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// ResetOps clears the operation log, e.g. after a test has set up the fake.
func (r *recorder) ResetOps() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = nil
}

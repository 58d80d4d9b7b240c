package peer

import (
	"testing"

	"github.com/lvsctl/lvsctl/agent/netnstest"
)

// The two hosts of a test (netnstest.Pair): namespace A with veth a0, B with veth b0.
const (
	addrA4 = netnstest.AddrA4
	addrB4 = netnstest.AddrB4
	addrA6 = netnstest.AddrA6
	addrB6 = netnstest.AddrB6
)

// pair, inNS and ip: netnstest's, for this package's tests.
func pair(t *testing.T) (nsA, nsB string)     { return netnstest.Pair(t, "peer") }
func inNS(t *testing.T, ns string, fn func()) { netnstest.InNS(t, ns, fn) }
func ip(t *testing.T, args ...string)         { t.Helper(); netnstest.IP(t, args...) }

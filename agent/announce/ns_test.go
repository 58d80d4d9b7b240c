package announce

import (
	"testing"

	"github.com/lvsctl/lvsctl/agent/netnstest"
)

// pair, inNS and ip: netnstest's, for this package's tests.
func pair(t *testing.T) (nsA, nsB string)     { return netnstest.Pair(t, "ann") }
func inNS(t *testing.T, ns string, fn func()) { netnstest.InNS(t, ns, fn) }
func ip(t *testing.T, args ...string)         { t.Helper(); netnstest.IP(t, args...) }

package vip

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/netnstest"
)

// The reconciler's view of addresses, copied here because package reconcile may not exist
// yet; the assignment fails to compile if Manager drifts from it.
var _ interface {
	Addresses(iface string) ([]netip.Prefix, error)
	AddAddress(iface string, p netip.Prefix) error
	DelAddress(iface string, p netip.Prefix) error
} = (*Manager)(nil)

// privileged: netnstest's (root and the ip command, or fail under LVSCTL_REQUIRE_PRIVILEGED=1).
func privileged(t *testing.T) {
	t.Helper()
	netnstest.Privileged(t)
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// iface is the test interface: a dummy, or a veth where the kernel lacks the dummy driver
// (this development host does).
const iface = "vip0"

// newManager makes a namespace with the interface vip0 up and a Manager in it.
func newManager(t *testing.T) (*Manager, string) {
	t.Helper()
	privileged(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "lvsctl-vip-" + hex.EncodeToString(b)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { ip(t, "netns", "delete", ns) })
	if out, err := exec.Command("ip", "-n", ns, "link", "add", iface, "type", "dummy").CombinedOutput(); err != nil {
		t.Logf("no dummy interfaces here (%v: %s); using a veth pair", err, strings.TrimSpace(string(out)))
		ip(t, "-n", ns, "link", "add", iface, "type", "veth", "peer", "name", iface+"p")
		ip(t, "-n", ns, "link", "set", iface+"p", "up")
	}
	ip(t, "-n", ns, "link", "set", iface, "up")
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := New(WithNetNSFd(int(f.Fd())))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m, ns
}

// kernelAddrs is what `ip -j addr show dev vip0` lists, as prefixes, and each one's flags.
func kernelAddrs(t *testing.T, ns string) map[netip.Prefix][]string {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local     string
			Prefixlen int
			NoDAD     bool `json:"nodad"`
		} `json:"addr_info"`
	}
	out := ip(t, "-n", ns, "-j", "addr", "show", "dev", iface)
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("parse ip -j output: %v\n%s", err, out)
	}
	m := map[netip.Prefix][]string{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			p := netip.PrefixFrom(netip.MustParseAddr(a.Local), a.Prefixlen)
			m[p] = nil
			if a.NoDAD {
				m[p] = append(m[p], "nodad")
			}
		}
	}
	return m
}

func TestAddDelAddress(t *testing.T) {
	m, ns := newManager(t)
	v4 := netip.MustParsePrefix("192.0.2.10/32")
	v6 := netip.MustParsePrefix("2001:db8::10/128")
	gw := netip.MustParsePrefix("198.51.100.254/24")

	for _, p := range []netip.Prefix{v4, v6, gw} {
		if err := m.AddAddress(iface, p); err != nil {
			t.Fatalf("AddAddress(%s): %v", p, err)
		}
	}
	k := kernelAddrs(t, ns)
	for _, p := range []netip.Prefix{v4, v6, gw} {
		if _, ok := k[p]; !ok {
			t.Errorf("kernel lacks %s after AddAddress; has %v", p, k)
		}
	}
	if !slices.Contains(k[v6], "nodad") {
		t.Errorf("IPv6 VIP %s added without nodad: flags %v", v6, k[v6])
	}

	got, err := m.Addresses(iface)
	if err != nil {
		t.Fatal(err)
	}
	// Addresses must list exactly what the kernel has (including the link-local IPv6 address
	// the kernel adds to an interface that is up).
	var want []netip.Prefix
	for p := range k {
		want = append(want, p)
	}
	sortPrefixes := func(ps []netip.Prefix) {
		slices.SortFunc(ps, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	}
	sortPrefixes(got)
	sortPrefixes(want)
	if !slices.Equal(got, want) {
		t.Errorf("Addresses() = %v, want the kernel's %v", got, want)
	}

	if err := m.AddAddress(iface, v4); !errors.Is(err, dataplane.ErrExist) {
		t.Errorf("AddAddress twice: %v, want ErrExist", err)
	}
	for _, p := range []netip.Prefix{v4, v6} {
		if err := m.DelAddress(iface, p); err != nil {
			t.Fatalf("DelAddress(%s): %v", p, err)
		}
		if _, ok := kernelAddrs(t, ns)[p]; ok {
			t.Errorf("kernel still has %s after DelAddress", p)
		}
		if err := m.DelAddress(iface, p); !errors.Is(err, dataplane.ErrNotExist) {
			t.Errorf("DelAddress(%s) twice: %v, want ErrNotExist", p, err)
		}
	}
	if _, ok := kernelAddrs(t, ns)[gw]; !ok {
		t.Errorf("deleting the VIPs removed %s too", gw)
	}
}

func TestUnknownInterface(t *testing.T) {
	m, _ := newManager(t)
	p := netip.MustParsePrefix("192.0.2.10/32")
	for op, err := range map[string]error{
		"Addresses":  func() error { _, err := m.Addresses("nosuch0"); return err }(),
		"AddAddress": m.AddAddress("nosuch0", p),
		"DelAddress": m.DelAddress("nosuch0", p),
	} {
		if !errors.Is(err, ErrNoInterface) || !strings.Contains(err.Error(), `"nosuch0"`) {
			t.Errorf("%s on a missing interface: %v, want ErrNoInterface naming \"nosuch0\"", op, err)
		}
	}
}

func TestRefusesBadPrefix(t *testing.T) {
	// A Manager without a handle: validation must refuse before any kernel call.
	m := &Manager{}
	for _, p := range []netip.Prefix{{}, netip.PrefixFrom(netip.MustParseAddr("192.0.2.10"), 33), netip.PrefixFrom(netip.MustParseAddr("::ffff:192.0.2.10"), 64)} {
		for op, err := range map[string]error{"add": m.AddAddress(iface, p), "delete": m.DelAddress(iface, p)} {
			if err == nil || !strings.Contains(err.Error(), "prefix:") {
				t.Errorf("%s %v: %v, want an error naming the prefix", op, p, err)
			}
		}
	}
}

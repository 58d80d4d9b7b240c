package manifest

import (
	"testing"

	"sigs.k8s.io/yaml"
)

// TestPlainStringAgreesWithTheParser: every string the fast path calls plain reads back
// from YAML as that same string; the ones YAML reads as something else are not called plain.
func TestPlainStringAgreesWithTheParser(t *testing.T) {
	for _, s := range []string{
		"wms-00001", "edge-1", "10.100.0.1", "192.0.2.254", "dir-a", "cluster.example",
		// YAML reads these as booleans, nulls, numbers or dates:
		"yes", "No", "off", "TRUE", "null", "1e3", "0x1F", "0o17", "1_000", "12345678", "2001-12-14",
		"1.5", "10.100", "deadbeef", "0b1010", "123456e7",
	} {
		var m map[string]any
		if err := yaml.Unmarshal([]byte("k: "+s), &m); err != nil {
			t.Fatal(err)
		}
		reads := m["k"] == s
		if plainString(s) && !reads {
			t.Errorf("%q: called plain, but YAML reads it as %T %v", s, m["k"], m["k"])
		}
		if got := scalar(s); reads != (got == s) {
			t.Errorf("scalar(%q) = %s, YAML reads the plain form as the string: %v", s, got, reads)
		}
	}
	for _, s := range []string{"wms-00001", "edge-1", "10.100.0.1"} {
		if !plainString(s) {
			t.Errorf("%q: a name or IPv4 address must take the fast path", s)
		}
	}
}

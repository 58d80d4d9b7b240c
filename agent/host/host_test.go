package host

import "testing"

func TestLoopback(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   bool
	}{
		{"127.0.0.1:7443", true},
		{"localhost:7443", true},
		{"[::1]:7443", true},
		{"203.0.113.1:7443", false},
		{"ctl.example:7443", false}, // a name could be anywhere
		{"127.0.0.1", false},        // not HOST:PORT
	} {
		if got := loopback(tc.target); got != tc.want {
			t.Errorf("loopback(%q) = %v, want %v", tc.target, got, tc.want)
		}
	}
}

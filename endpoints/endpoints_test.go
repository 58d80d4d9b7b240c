package endpoints

import (
	"errors"
	"testing"
)

func TestAllLoopback(t *testing.T) {
	for _, tc := range []struct {
		list string
		want bool
	}{
		{"127.0.0.1:7443", true},
		{"localhost:7443", true},
		{"[::1]:7443", true},
		{"127.0.0.1:7443,[::1]:7444", true},
		{"127.0.0.1:7443,203.0.113.1:7443", false}, // one off loopback is enough to refuse plaintext
		{"203.0.113.1:7443", false},
		{"ctl.example:7443", false}, // a name could be anywhere
		{"127.0.0.1", false},        // not HOST:PORT
		{"", false},
	} {
		if got := AllLoopback(tc.list); got != tc.want {
			t.Errorf("AllLoopback(%q) = %v, want %v", tc.list, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	got, err := Parse(" a:7443, b:7443 ,c:7443")
	if err != nil || len(got) != 3 || got[0] != "a:7443" || got[2] != "c:7443" {
		t.Fatalf("Parse = %v, %v; want [a:7443 b:7443 c:7443]", got, err)
	}
	for _, bad := range []string{"", "a:7443,,b:7443", "a", "a:7443,a:7443"} {
		if _, err := Parse(bad); !errors.Is(err, ErrAddress) {
			t.Errorf("Parse(%q) = %v, want ErrAddress", bad, err)
		}
	}
}

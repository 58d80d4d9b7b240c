package limits

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"eth0", `"eth0"`},
		{strings.Repeat("a", MaxEcho), `"` + strings.Repeat("a", MaxEcho) + `"`},
		{strings.Repeat("a", MaxEcho+1), `"` + strings.Repeat("a", MaxEcho) + `"... (65 bytes)`},
		{strings.Repeat("a", MaxEcho-2) + "é", `"` + strings.Repeat("a", MaxEcho-2) + `é"`},
		// A cut never splits a character: this "é" is the 64th and 65th bytes.
		{strings.Repeat("a", MaxEcho-1) + "é", `"` + strings.Repeat("a", MaxEcho-1) + `"... (65 bytes)`},
		{"\x00\xff", `"\x00\xff"`},
		// Binary bytes quote to four characters each: the quoted prefix stays within 130.
		{strings.Repeat("\xff", 40), `"` + strings.Repeat(`\xff`, 32) + `"... (40 bytes)`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%.20q...) = %s, want %s", tt.in, got, tt.want)
		}
		if got := Quote(tt.in); !utf8.ValidString(got) {
			t.Errorf("Quote(%.20q...) is not UTF-8", tt.in)
		}
	}
	if got := Prefix(strings.Repeat("9", 100)); got != strings.Repeat("9", MaxEcho)+"... (100 bytes)" {
		t.Errorf("Prefix: %s", got)
	}
	if got := Prefix("1\n2"); got != `"1\n2"` {
		t.Errorf("Prefix of a control character: %s", got)
	}
}

func TestError(t *testing.T) {
	err := error(&Error{Where: "reals", What: "real servers per cluster", Got: 1001, Max: MaxRealsPerCluster})
	if err.Error() != "reals: 1001 real servers per cluster, more than the limit of 1000" || !errors.Is(err, ErrExceeded) {
		t.Errorf("%v", err)
	}
}

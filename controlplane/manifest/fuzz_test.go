package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/controlplane/validate"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// checkBoundedError holds an error to what a refusal may be: at most limits.MaxErrors
// problems and a closing count, none of them long (every echoed value is cut to
// limits.MaxEcho bytes, and paths are built from known field names and bounded keys).
func checkBoundedError(t *testing.T, err error) {
	t.Helper()
	lines := strings.Split(err.Error(), "\n")
	if len(lines) > limits.MaxErrors+1 {
		t.Fatalf("%d problems listed, more than %d", len(lines), limits.MaxErrors+1)
	}
	for _, l := range lines {
		if len(l) > 1024 {
			t.Fatalf("a problem of %d bytes: %.300s...", len(l), l)
		}
	}
}

// FuzzParse: any input is parsed or refused without a panic, within bounded time and with a
// bounded error; what parses, validates without a panic; and what validates is printed by
// Marshal (YAML and JSON) in a form that Parse reads back to the same objects, as get -o
// yaml | apply -f - relies on.
func FuzzParse(f *testing.F) {
	for _, file := range []string{"../../deploy/examples/wms.yaml", "../../deploy/examples/edge-1-ha.yaml"} {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		healthCluster,
		`{"kind": "DirectorGroup", "name": "g1", "directors": [{"name": "d1", "priority": 1}], "vipInterface": "eth0"}`,
		`[{"kind": "Cluster", "name": "a", "ports": [{"protocol": "udp", "ports": "1-9"}]}]`,
		"kind: Cluster\nname: a\nports: [{protocol: tcp, port: 0554}]\n",
		"d: &d {scheduler: rr}\n---\nkind: Cluster\nname: a\n<<: {directorGroup: g}\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nkind: Cluster\nname: x\n",
		"kind: DirectorGroup\nname: g\ndirectors: [{name: a, address: 127.0.0.1}]\nfailover: {heartbeatInterval: 10ms, deadAfter: 20ms, fenceTime: 20ms}\n",
		"kind: Cluster\nname: a\nremoveGrace: 0s\npersistence: {timeout: 10m, netmask: 24}\nhealth: {check: udp, port: 53, payload: \"\\0\\x01\"}\n",
		"kind: Cluster\nname: a\nfwmark: !!int \"1\\n2\"\nvips: [!!str 1]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		objs, err := Parse(data)
		// Parsing is linear in the input; a second on a fuzz input is a blow-up.
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("parsing %d bytes took %v", len(data), d)
		}
		if err != nil {
			if !errors.Is(err, validate.ErrInvalid) && !errors.Is(err, ErrEmpty) && !strings.HasPrefix(err.Error(), "document ") {
				t.Fatalf("an error that names no document and matches nothing: %v", err)
			}
			checkBoundedError(t, err)
			return
		}
		var valid []*lvsctlv1.Object
		for _, o := range objs {
			if err := validate.Object(o); err != nil {
				if !errors.Is(err, validate.ErrInvalid) {
					t.Fatalf("a validation error that does not match ErrInvalid: %v", err)
				}
				checkBoundedError(t, err)
				continue
			}
			valid = append(valid, o)
		}
		_ = validate.Set(objs)
		if len(valid) == 0 {
			return
		}
		for _, format := range []Format{YAML, JSON} {
			out, err := Marshal(valid, format)
			if err != nil {
				t.Fatalf("marshal %s of valid objects: %v", format, err)
			}
			back, err := Parse(out)
			if err != nil {
				t.Fatalf("the %s that Marshal printed does not parse: %v\n%s", format, err, out)
			}
			if len(back) != len(valid) {
				t.Fatalf("%s round trip: %d objects, want %d", format, len(back), len(valid))
			}
			for i := range back {
				if !proto.Equal(back[i], valid[i]) {
					t.Fatalf("%s round trip changed object %d:\n got %v\nwant %v\n%s", format, i, back[i], valid[i], out)
				}
			}
		}
	})
}

// FuzzScalars: the number, port range and duration fields take one spelling of each value.
// A number is taken only when it is written as strconv.FormatInt writes it; a port range
// only as "first-last" or "port" in those digits (spaces aside); a duration only as a whole
// number of milliseconds (seconds for a persistence timeout) that time.ParseDuration reads.
// Whatever is refused is refused with the field named and the value cut to limits.MaxEcho.
func FuzzScalars(f *testing.F) {
	for _, s := range []string{"554", "0554", "0x22a", "1e3", "+554", "-0", "-5", "99999999999999999999", "1_000", ".inf",
		"1024-5000", " 1 - 2 ", "0554-0600", "600s", "1.5s", "100ms", "1m0s", "-1s", "0s", "1h2m3.004s", "9223372036854775807ns", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := &docReader{doc: 1, errs: &problems{}}
		if n, ok := r.toNumber(json.Number(s), "port", 0, 65535); ok {
			if strconv.FormatInt(n, 10) != s {
				t.Fatalf("number %q taken as %d", s, n)
			}
		}
		if first, last := r.portRange(s, "ports"); len(r.errs.errs) == 0 {
			want := fmt.Sprint(first)
			if first != last {
				want = fmt.Sprintf("%d-%d", first, last)
			}
			if got := strings.Join(strings.Fields(s), ""); got != want {
				t.Fatalf("port range %q taken as %s", s, want)
			}
		}
		r.errs = &problems{}
		fields := &fields{m: map[string]any{"interval": s, "removeGrace": s}, used: map[string]bool{}}
		if ms := r.millis(fields, "interval"); ms != 0 {
			d, err := time.ParseDuration(s)
			if err != nil || d != time.Duration(ms)*time.Millisecond {
				t.Fatalf("duration %q taken as %d ms", s, ms)
			}
		}
		if ms, now := r.removeGrace(fields); ms != 0 || now {
			d, err := time.ParseDuration(s)
			if err != nil || d != time.Duration(ms)*time.Millisecond || now != (d == 0) {
				t.Fatalf("removeGrace %q taken as %d ms (now %v)", s, ms, now)
			}
		}
		if sec := r.timeout(s); sec != 0 {
			d, err := time.ParseDuration(s)
			if err != nil || d != time.Duration(sec)*time.Second {
				t.Fatalf("timeout %q taken as %d s", s, sec)
			}
		}
		for _, err := range r.errs.errs {
			if len(err.Error()) > 300 {
				t.Fatalf("refusal of %d bytes: %.300s", len(err.Error()), err)
			}
		}
	})
}

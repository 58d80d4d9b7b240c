package health

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	got := Spec{Kind: KindHTTP, Port: 80}.Defaults()
	if got.Interval != 2*time.Second || got.Timeout != time.Second || got.Rise != 2 || got.Fall != 3 ||
		got.Path != "/" || got.Expect != "200-399" {
		t.Errorf("http defaults: %+v", got)
	}
	tcp := Spec{Kind: KindTCP, Port: 554}.Defaults()
	if tcp.Path != "" || tcp.Expect != "" || tcp.UDPMode != "" {
		t.Errorf("tcp got fields it does not use: %+v", tcp)
	}
	if u := (Spec{Kind: KindUDP, Port: 53}).Defaults(); u.UDPMode != UDPReply {
		t.Errorf("udp mode %q, want reply", u.UDPMode)
	}
	set := Spec{Kind: KindTCP, Port: 1, Interval: 5 * time.Second, Timeout: 3 * time.Second, Rise: 1, Fall: 1}
	if set.Defaults().Interval != 5*time.Second || set.Defaults().Rise != 1 {
		t.Errorf("Defaults changed set fields: %+v", set.Defaults())
	}
}

func TestValidate(t *testing.T) {
	good := []Spec{
		{Kind: KindTCP, Port: 554},
		{Kind: KindHTTP, Port: 80, Path: "/health?deep=1", Expect: "200", Body: "ok"},
		{Kind: KindHTTPS, Port: 443, ServerName: "www.example.com", Verify: true, RootCAs: x509.NewCertPool()},
		{Kind: KindRTSP, Port: 554, URL: "rtsp://192.0.2.10:554/live", Describe: true},
		{Kind: KindUDP, Port: 53, Payload: []byte("x"), Expect: "y"},
		{Kind: KindUDP, Port: 1755, UDPMode: UDPNoUnreachable},
		{Kind: KindExec, Command: []string{"/bin/true"}},
		{Kind: KindNone},
		{Kind: KindRTSP, Port: 554, Interval: time.Second, Timeout: 999 * time.Millisecond, Rise: 2, Fall: 2},
	}
	for _, s := range good {
		if err := s.Validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}

	bad := []struct {
		spec Spec
		want string // one line of the error
	}{
		{Spec{}, "health.check: required: one of tcp http https rtsp udp exec none"},
		{Spec{Kind: "icmp"}, `health.check: unknown check "icmp"`},
		{Spec{Kind: KindTCP}, "health.port: required for a tcp check"},
		{Spec{Kind: KindRTSP}, "health.port: required for a rtsp check"},
		{Spec{Kind: KindTCP, Port: 1, Timeout: 3 * time.Second}, "health.timeout: 3s is more than health.interval (2s)"},
		{Spec{Kind: KindTCP, Port: 1, Interval: -time.Second}, "health.interval: -1s is negative"},
		{Spec{Kind: KindTCP, Port: 1, Rise: -1}, "health.rise: -1 is not at least 1"},
		{Spec{Kind: KindTCP, Port: 1, Fall: -2}, "health.fall: -2 is not at least 1"},
		{Spec{Kind: KindHTTP, Port: 80, Path: "health"}, `health.path: "health" does not start with /`},
		{Spec{Kind: KindHTTP, Port: 80, Path: "/a b"}, "health.path: \"/a b\" holds a space"},
		{Spec{Kind: KindHTTP, Port: 80, Expect: "399-200"}, `health.expect: range "399-200" is reversed`},
		{Spec{Kind: KindHTTP, Port: 80, Expect: "2xx"}, `health.expect: "2xx" is not a status or a status range`},
		{Spec{Kind: KindHTTP, Port: 80, Expect: "200-700"}, `health.expect: "200-700": statuses are 100-599`},
		{Spec{Kind: KindHTTP, Port: 80, Verify: true}, "health.verify: only for https checks"},
		{Spec{Kind: KindHTTPS, Port: 443, RootCAs: x509.NewCertPool()}, "health.rootCAs: only with verify"},
		{Spec{Kind: KindHTTPS, Port: 443, ServerName: "a b"}, `health.serverName: "a b" is not a host name`},
		{Spec{Kind: KindTCP, Port: 1, Path: "/"}, "health.path: only for http and https checks"},
		{Spec{Kind: KindTCP, Port: 1, Expect: "200"}, "health.expect: only for http, https and udp checks"},
		{Spec{Kind: KindRTSP, Port: 554, URL: "http://x/"}, `health.url: "http://x/" is not an rtsp://HOST[:PORT]/PATH URL`},
		{Spec{Kind: KindRTSP, Port: 554, URL: "rtsp://x/a\r\nCSeq: 9"}, "health.url:"},
		{Spec{Kind: KindTCP, Port: 554, Describe: true}, "health.describe: only for rtsp checks"},
		{Spec{Kind: KindUDP, Port: 53, UDPMode: "echo"}, `health.udpMode: unknown mode "echo"`},
		{Spec{Kind: KindUDP, Port: 53, UDPMode: UDPNoUnreachable, Expect: "x"}, "health.expect: only with udpMode reply"},
		{Spec{Kind: KindUDP, Port: 53, Payload: make([]byte, 70000)}, "health.payload: 70000 bytes"},
		{Spec{Kind: KindTCP, Port: 53, Payload: []byte("x")}, "health.payload: only for udp checks"},
		{Spec{Kind: KindExec}, "health.command: required for an exec check"},
		{Spec{Kind: KindExec, Command: []string{""}}, "health.command: required for an exec check"},
		{Spec{Kind: KindTCP, Port: 1, Command: []string{"x"}}, "health.command: only for exec checks"},
	}
	for _, tt := range bad {
		err := tt.spec.Validate()
		if err == nil {
			t.Errorf("%+v: no error, want %s", tt.spec, tt.want)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: does not match ErrInvalid: %v", tt.spec, err)
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field == "" {
			t.Errorf("%+v: no *FieldError in %v", tt.spec, err)
		}
		found := false
		for _, line := range strings.Split(err.Error(), "\n") {
			found = found || strings.HasPrefix(line, tt.want)
		}
		if !found {
			t.Errorf("%+v: error\n%v\nwant a line starting %s", tt.spec, err, tt.want)
		}
	}

	// Every refused field is reported, not only the first.
	err := Spec{Kind: KindTCP, Timeout: 5 * time.Second, Path: "/"}.Validate()
	if n := len(strings.Split(err.Error(), "\n")); n != 3 {
		t.Errorf("%d errors, want 3 (port, timeout, path):\n%v", n, err)
	}
}

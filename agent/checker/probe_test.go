package checker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

var localhost = netip.MustParseAddr("127.0.0.1")

// testTimeout is the Timeout of checks that are meant to time out; a check must return
// within it plus slack (the race detector on a shared, busy machine).
const (
	testTimeout = 300 * time.Millisecond
	slack       = 700 * time.Millisecond
)

// closedPort returns a port of 127.0.0.1 nothing listens on.
func closedPort(t *testing.T, network string) uint16 {
	t.Helper()
	var addr net.Addr
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = c.LocalAddr()
		c.Close()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr()
		l.Close()
	}
	return uint16(netip.MustParseAddrPort(addr.String()).Port())
}

func portOf(t *testing.T, addr string) uint16 {
	t.Helper()
	if u, ok := strings.CutPrefix(addr, "http://"); ok {
		addr = u
	}
	if u, ok := strings.CutPrefix(addr, "https://"); ok {
		addr = u
	}
	return netip.MustParseAddrPort(addr).Port()
}

// probeTimed runs Probe and checks that it returned within the spec's timeout plus slack.
func probeTimed(t *testing.T, spec health.Spec) error {
	t.Helper()
	start := time.Now()
	err := Probe(context.Background(), localhost, spec)
	if el, limit := time.Since(start), spec.Defaults().Timeout+slack; el > limit {
		t.Errorf("Probe took %v, more than %v", el, limit)
	}
	return err
}

// wantIs fails unless err matches every target (nil targets: err must be nil).
func wantIs(t *testing.T, err error, targets ...error) {
	t.Helper()
	if len(targets) == 0 {
		if err != nil {
			t.Fatalf("got %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("got %q, want it to match %q", err, target)
		}
	}
}

func TestProbeTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			// The check closes with a reset (SO_LINGER 0), not a FIN.
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		accepted <- err
	}()
	spec := health.Spec{Kind: health.KindTCP, Port: portOf(t, l.Addr().String())}
	wantIs(t, probeTimed(t, spec))
	if err := <-accepted; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("server read %v, want a reset", err)
	}

	spec.Port = closedPort(t, "tcp")
	wantIs(t, probeTimed(t, spec), ErrRefused, syscall.ECONNREFUSED)
}

// A listener whose accept queue is full drops new SYNs: the connect itself times out.
func TestProbeTCPConnectTimeout(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	port := uint16(sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue (backlog 0 holds one) with connections nobody accepts.
	var fill []net.Conn
	defer func() {
		for _, c := range fill {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err != nil {
			break
		}
		fill = append(fill, c)
	}
	err = probeTimed(t, health.Spec{Kind: health.KindTCP, Port: port, Interval: time.Second, Timeout: testTimeout})
	if err == nil {
		t.Skip("this kernel completed a connect to a full accept queue")
	}
	wantIs(t, err, ErrTimeout)
}

func TestProbeHTTP(t *testing.T) {
	type seen struct{ host, ua, path string }
	requests := make(chan seen, 10)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		requests <- seen{r.Host, r.UserAgent(), r.URL.RequestURI()}
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "status: all good")
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/elsewhere":
			t.Error("the redirect was followed")
		case "/slowbody":
			w.Write([]byte("begin"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case "/noheaders":
			<-r.Context().Done()
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	port := portOf(t, srv.URL)
	spec := func(path string) health.Spec { return health.Spec{Kind: health.KindHTTP, Port: port, Path: path} }

	wantIs(t, probeTimed(t, spec("/ok?x=1")))
	got := <-requests
	if got.host != fmt.Sprintf("127.0.0.1:%d", port) || got.ua != "lvsctl-health" || got.path != "/ok?x=1" {
		t.Errorf("request seen: %+v", got)
	}

	s := spec("/ok")
	s.ServerName = "www.example.com"
	wantIs(t, probeTimed(t, s))
	if got := <-requests; got.host != fmt.Sprintf("www.example.com:%d", port) {
		t.Errorf("Host %q, want the server name", got.host)
	}

	s = spec("/ok")
	s.Body = "all good"
	wantIs(t, probeTimed(t, s))
	s.Body = "bad"
	wantIs(t, probeTimed(t, s), ErrBody)

	wantIs(t, probeTimed(t, spec("/down")), ErrStatus)
	wantIs(t, probeTimed(t, spec("/moved"))) // 302 is in 200-399
	s = spec("/moved")
	s.Expect = "200"
	wantIs(t, probeTimed(t, s), ErrStatus)

	s = spec("/slowbody")
	s.Interval, s.Timeout = time.Second, testTimeout
	wantIs(t, probeTimed(t, s)) // without Body, the headers decide
	s.Body = "end"
	wantIs(t, probeTimed(t, s), ErrTimeout)
	s = spec("/noheaders")
	s.Interval, s.Timeout = time.Second, testTimeout
	wantIs(t, probeTimed(t, s), ErrTimeout)

	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTP, Port: closedPort(t, "tcp")}), ErrRefused, syscall.ECONNREFUSED)
}

// The agent's proxy settings never apply to a check.
func TestProbeHTTPIgnoresProxy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	proxy := fmt.Sprintf("http://127.0.0.1:%d", closedPort(t, "tcp"))
	t.Setenv("HTTP_PROXY", proxy)
	t.Setenv("http_proxy", proxy)
	t.Setenv("NO_PROXY", "")
	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTP, Port: portOf(t, srv.URL)}))
}

func TestProbeHTTPS(t *testing.T) {
	sni := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sni <- r.TLS.ServerName
		io.WriteString(w, "tls ok")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	port := portOf(t, srv.URL)

	// Not verified by default: httptest's certificate is self-signed.
	s := health.Spec{Kind: health.KindHTTPS, Port: port, ServerName: "www.example.com", Body: "tls ok"}
	wantIs(t, probeTimed(t, s))
	if got := <-sni; got != "www.example.com" {
		t.Errorf("SNI %q", got)
	}
	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTPS, Port: port}))
	if got := <-sni; got != "" {
		t.Errorf("SNI %q without a server name (an IP address is never sent as SNI)", got)
	}

	// Verified: against the system's roots it fails; against the server's own certificate
	// it passes for a name the certificate holds (httptest's: example.com), fails for another.
	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTPS, Port: port, ServerName: "example.com", Verify: true}), ErrTLS)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTPS, Port: port, ServerName: "example.com", Verify: true, RootCAs: roots}))
	<-sni
	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTPS, Port: port, ServerName: "wrong.example.net", Verify: true, RootCAs: roots}), ErrTLS)
	// The certificate also holds 127.0.0.1: without a server name, the address is verified.
	wantIs(t, probeTimed(t, health.Spec{Kind: health.KindHTTPS, Port: port, Verify: true, RootCAs: roots}))
}

func TestProbeUDP(t *testing.T) {
	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(append([]byte("echo: "), buf[:n]...), from)
		}
	}()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	echoPort, silentPort, closed := portOf(t, echo.LocalAddr().String()), portOf(t, silent.LocalAddr().String()), closedPort(t, "udp")
	spec := func(port uint16) health.Spec {
		return health.Spec{Kind: health.KindUDP, Port: port, Payload: []byte("ping"), Interval: time.Second, Timeout: testTimeout}
	}

	s := spec(echoPort)
	wantIs(t, probeTimed(t, s))
	s.Expect = "echo: ping"
	wantIs(t, probeTimed(t, s))
	s.Expect = "pong"
	wantIs(t, probeTimed(t, s), ErrBody)
	wantIs(t, probeTimed(t, spec(silentPort)), ErrTimeout)
	wantIs(t, probeTimed(t, spec(closed)), ErrUnreachable, syscall.ECONNREFUSED)

	s = spec(closed)
	s.UDPMode = health.UDPNoUnreachable
	start := time.Now()
	wantIs(t, probeTimed(t, s), ErrUnreachable, syscall.ECONNREFUSED)
	if el := time.Since(start); el > testTimeout {
		t.Errorf("the ICMP unreachable took %v: the check waited for its timeout", el)
	}
	s = spec(silentPort)
	s.UDPMode = health.UDPNoUnreachable
	start = time.Now()
	wantIs(t, probeTimed(t, s))
	if el := time.Since(start); el < testTimeout-50*time.Millisecond {
		t.Errorf("a silent port was up after %v, before the timeout", el)
	}
	s = spec(echoPort)
	s.UDPMode = health.UDPNoUnreachable
	wantIs(t, probeTimed(t, s)) // a reply is up at once
}

func TestProbeNoneAndInvalid(t *testing.T) {
	wantIs(t, Probe(context.Background(), localhost, health.Spec{Kind: health.KindNone}))
	wantIs(t, Probe(context.Background(), localhost, health.Spec{Kind: "icmp", Port: 1}), health.ErrInvalid)
	wantIs(t, Probe(context.Background(), netip.Addr{}, health.Spec{Kind: health.KindTCP, Port: 1}), health.ErrInvalid)
	wantIs(t, Probe(context.Background(), localhost, health.Spec{Kind: health.KindHTTP, Port: 1, Expect: "x"}), health.ErrInvalid)
}

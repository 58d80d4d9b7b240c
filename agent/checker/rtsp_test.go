package checker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// rtspRequest is one request the test responder read.
type rtspRequest struct {
	Line   string // "OPTIONS rtsp://... RTSP/1.0"
	Header textproto.MIMEHeader
}

// hang, as a reply, makes the responder keep the connection open and never answer.
const hang = "\x00hang"

// rtspResponder is an RTSP server for tests: for each request on a connection it writes what
// reply(n, request) returns (n counts the connection's requests from 0). Like ffmpeg's listen
// mode it hangs up on a first request whose CSeq is not 1.
type rtspResponder struct {
	l    net.Listener
	port uint16
	mu   sync.Mutex
	seen []rtspRequest
	wg   sync.WaitGroup
}

func startRTSP(t *testing.T, reply func(n int, req rtspRequest) string) *rtspResponder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rtspResponder{l: l, port: portOf(t, l.Addr().String())}
	r.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() { r.serve(c, reply) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		r.wg.Wait()
	})
	return r
}

func (r *rtspResponder) serve(c net.Conn, reply func(int, rtspRequest) string) {
	defer c.Close()
	// Never longer than the test: a connection the client left is closed by its deadline.
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewReader(bufio.NewReader(c))
	for n := 0; ; n++ {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		hdr, err := tp.ReadMIMEHeader()
		if err != nil {
			return
		}
		req := rtspRequest{line, hdr}
		r.mu.Lock()
		r.seen = append(r.seen, req)
		r.mu.Unlock()
		if n == 0 && hdr.Get("CSeq") != "1" {
			return // ffmpeg: "Unexpected Sequence number"
		}
		out := reply(n, req)
		if out == hang {
			io.Copy(io.Discard, c) // until the client hangs up
			return
		}
		if _, err := io.WriteString(c, out); err != nil {
			return
		}
	}
}

func (r *rtspResponder) requests() []rtspRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

func ok200(req rtspRequest, extra string) string {
	return "RTSP/1.0 200 OK\r\nCSeq: " + req.Header.Get("CSeq") + "\r\nServer: test\r\n" + extra + "\r\n"
}

const sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=live\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"

func describeWith(body string) func(int, rtspRequest) string {
	return func(n int, req rtspRequest) string {
		if n == 0 {
			return ok200(req, "Public: OPTIONS, DESCRIBE\r\n")
		}
		return ok200(req, fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n", len(body))) + body
	}
}

func rtspSpec(port uint16) health.Spec {
	return health.Spec{Kind: health.KindRTSP, Port: port, Interval: time.Second, Timeout: testTimeout}
}

func TestProbeRTSPOptions(t *testing.T) {
	r := startRTSP(t, func(_ int, req rtspRequest) string { return ok200(req, "Public: OPTIONS\r\n") })
	wantIs(t, probeTimed(t, rtspSpec(r.port)))
	reqs := r.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1 (OPTIONS)", len(reqs))
	}
	if want := fmt.Sprintf("OPTIONS rtsp://127.0.0.1:%d/ RTSP/1.0", r.port); reqs[0].Line != want {
		t.Errorf("request line %q, want %q", reqs[0].Line, want)
	}
	if h := reqs[0].Header; h.Get("CSeq") != "1" || h.Get("User-Agent") != "lvsctl-health" {
		t.Errorf("headers %v", h)
	}

	s := rtspSpec(r.port)
	s.URL = "rtsp://192.0.2.10:554/live"
	wantIs(t, probeTimed(t, s))
	if got := r.requests()[1].Line; got != "OPTIONS rtsp://192.0.2.10:554/live RTSP/1.0" {
		t.Errorf("request line %q with a URL", got)
	}
}

func TestProbeRTSPFailures(t *testing.T) {
	fixed := func(out string) func(int, rtspRequest) string {
		return func(int, rtspRequest) string { return out }
	}
	tests := []struct {
		name  string
		reply func(int, rtspRequest) string // or
		raw   func(net.Conn)
		want  error
	}{
		{name: "404", reply: fixed("RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n"), want: ErrStatus},
		{name: "error without CSeq", reply: fixed("RTSP/1.0 503 Service Unavailable\r\n\r\n"), want: ErrStatus},
		{name: "CSeq mismatch", reply: fixed("RTSP/1.0 200 OK\r\nCSeq: 7\r\n\r\n"), want: ErrCSeq},
		{name: "no CSeq", reply: fixed("RTSP/1.0 200 OK\r\n\r\n"), want: ErrCSeq},
		{name: "accepts, never answers", reply: fixed(hang), want: ErrTimeout},
		{name: "half a status line", raw: partial("RTSP/1.0 2"), want: ErrTimeout},
		{name: "headers never end", raw: partial("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"), want: ErrTimeout},
		{name: "half a header line", raw: partial("RTSP/1.0 200 OK\r\nCSe"), want: ErrTimeout},
		{name: "an HTTP server", reply: fixed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), want: ErrMalformed},
		{name: "garbage", reply: fixed("hello there\r\n\r\n"), want: ErrMalformed},
		{name: "bad status code", reply: fixed("RTSP/1.0 2000 OK\r\nCSeq: 1\r\n\r\n"), want: ErrMalformed},
		{name: "bad header", reply: fixed("RTSP/1.0 200 OK\r\nCSeq 1\r\n\r\n"), want: ErrMalformed},
		{name: "hangs up", raw: func(net.Conn) {}, want: ErrClosed},
		{name: "endless headers", reply: fixed("RTSP/1.0 200 OK\r\nCSeq: 1\r\n" +
			strings.Repeat("X-Padding: "+strings.Repeat("a", 100)+"\r\n", 2000)), want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r *rtspResponder
			if tt.raw != nil {
				r = startRaw(t, tt.raw)
			} else {
				r = startRTSP(t, tt.reply)
			}
			err := probeTimed(t, rtspSpec(r.port))
			wantIs(t, err, tt.want)
			t.Logf("%v", err)
		})
	}
}

// partial writes part of a reply and then says nothing more.
func partial(part string) func(net.Conn) {
	return func(c net.Conn) {
		io.WriteString(c, part)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
	}
}

func startRaw(t *testing.T, serve func(net.Conn)) *rtspResponder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &rtspResponder{l: l, port: portOf(t, l.Addr().String())}
	r.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		r.wg.Wait()
	})
	return r
}

func TestProbeRTSPDescribe(t *testing.T) {
	r := startRTSP(t, describeWith(sdp))
	s := rtspSpec(r.port)
	s.Describe = true
	wantIs(t, probeTimed(t, s))
	reqs := r.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want OPTIONS and DESCRIBE", len(reqs))
	}
	d := reqs[1]
	if want := fmt.Sprintf("DESCRIBE rtsp://127.0.0.1:%d/ RTSP/1.0", r.port); d.Line != want ||
		d.Header.Get("CSeq") != "2" || d.Header.Get("Accept") != "application/sdp" {
		t.Errorf("DESCRIBE request %q %v", d.Line, d.Header)
	}

	// An OPTIONS reply with a body is skipped over.
	r = startRTSP(t, func(n int, req rtspRequest) string {
		if n == 0 {
			return ok200(req, "Content-Length: 5\r\n") + "hello"
		}
		return describeWith(sdp)(n, req)
	})
	s.Port = r.port
	wantIs(t, probeTimed(t, s))

	afterOptions := func(describe string) func(int, rtspRequest) string {
		return func(n int, req rtspRequest) string {
			if n == 0 {
				return ok200(req, "")
			}
			return describe
		}
	}
	for _, tt := range []struct {
		name  string
		reply func(int, rtspRequest) string // or
		raw   func(net.Conn)
		want  error
	}{
		{name: "no body", reply: describeWith(""), want: ErrNoSDP},
		{name: "not SDP", reply: describeWith("<html>hello</html>"), want: ErrNoSDP},
		{name: "404", reply: afterOptions("RTSP/1.0 404 Not Found\r\nCSeq: 2\r\n\r\n"), want: ErrStatus},
		{name: "CSeq of the OPTIONS again", reply: afterOptions("RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Length: 3\r\n\r\nv=0"), want: ErrCSeq},
		{name: "bad Content-Length", reply: afterOptions("RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: many\r\n\r\n"), want: ErrMalformed},
		{name: "slow body", raw: slowBody, want: ErrTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r *rtspResponder
			if tt.raw != nil {
				r = startRaw(t, tt.raw)
			} else {
				r = startRTSP(t, tt.reply)
			}
			s := rtspSpec(r.port)
			s.Describe = true
			err := probeTimed(t, s)
			wantIs(t, err, tt.want)
			t.Logf("%v", err)
		})
	}
}

// slowBody answers OPTIONS, then DESCRIBE with a Content-Length of 100 and only 5 bytes.
func slowBody(c net.Conn) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewReader(bufio.NewReader(c))
	for n := 0; n < 2; n++ {
		if _, err := tp.ReadLine(); err != nil {
			return
		}
		if _, err := tp.ReadMIMEHeader(); err != nil {
			return
		}
		if n == 0 {
			io.WriteString(c, "RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")
		} else {
			io.WriteString(c, "RTSP/1.0 200 OK\r\nCSeq: 2\r\nContent-Length: 100\r\n\r\nv=0\r\n")
		}
	}
	io.Copy(io.Discard, c)
}

func TestProbeRTSPRefusedAndCanceled(t *testing.T) {
	wantIs(t, probeTimed(t, rtspSpec(closedPort(t, "tcp"))), ErrRefused)

	// The caller giving up (the agent stopping) ends a hung check at once, and is no
	// verdict: the error is ctx's, not a timeout.
	r := startRTSP(t, func(int, rtspRequest) string { return hang })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	s := rtspSpec(r.port)
	s.Interval, s.Timeout = 20*time.Second, 10*time.Second
	err := Probe(ctx, localhost, s)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("canceled: %v", err)
	}
	if el := time.Since(start); el > slack {
		t.Errorf("canceled check took %v", el)
	}
}

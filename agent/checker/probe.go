package checker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// Why a check failed. Every error of Probe matches (errors.Is) at most one of these, plus the
// underlying error where there is one (a syscall.Errno, a context error, a *tls error).
var (
	// ErrTimeout: no complete answer within health.Spec.Timeout.
	ErrTimeout = errors.New("timed out")
	// ErrRefused: the TCP connection was refused (a reset: nothing listens on the port).
	ErrRefused = errors.New("connection refused")
	// ErrUnreachable: an ICMP unreachable: the port (udp) or the host or network.
	ErrUnreachable = errors.New("unreachable")
	// ErrStatus: the status (http, https, rtsp) is not the expected one.
	ErrStatus = errors.New("unexpected status")
	// ErrCSeq: the RTSP reply does not carry the request's CSeq.
	ErrCSeq = errors.New("CSeq mismatch")
	// ErrNoSDP: the RTSP DESCRIBE reply has no SDP body.
	ErrNoSDP = errors.New("no SDP")
	// ErrBody: the body (http, https) or the reply (udp) does not contain what the check
	// expects.
	ErrBody = errors.New("unexpected content")
	// ErrMalformed: the reply does not follow the protocol (a bad status line or header, a
	// reply too long).
	ErrMalformed = errors.New("malformed reply")
	// ErrClosed: the server closed or reset the connection before a complete reply.
	ErrClosed = errors.New("connection closed before a complete reply")
	// ErrTLS: the TLS handshake failed or the certificate was refused (with Verify).
	ErrTLS = errors.New("TLS failed")
	// ErrExit: the exec command exited with a non-zero status or was killed by a signal.
	ErrExit = errors.New("command failed")
)

// maxBody bounds what a check reads of a body (http, rtsp) or reply.
const maxBody = 64 << 10

// Probe checks target once according to spec (its zero fields defaulted): nil when the
// target is up. It returns within spec.Timeout (every socket has the deadline; an exec
// command's process group is killed), or sooner when ctx ends, with ctx's error. It is safe for
// concurrent use and keeps nothing between calls.
func Probe(ctx context.Context, target netip.Addr, spec health.Spec) error {
	spec = spec.Defaults()
	if !target.IsValid() {
		return fmt.Errorf("%s: %w: no target address", spec.Kind, health.ErrInvalid)
	}
	if spec.Timeout <= 0 {
		return fmt.Errorf("%s: %w: timeout %v", spec.Kind, health.ErrInvalid, spec.Timeout)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", spec.Kind, err)
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	ap := netip.AddrPortFrom(target, spec.Port)
	var err error
	switch spec.Kind {
	case health.KindTCP:
		err = probeTCP(ctx, ap)
	case health.KindHTTP, health.KindHTTPS:
		err = probeHTTP(ctx, ap, spec)
	case health.KindRTSP:
		err = probeRTSP(ctx, ap, spec)
	case health.KindUDP:
		err = probeUDP(ctx, ap, spec)
	case health.KindExec:
		err = probeExec(ctx, ap, spec)
	case health.KindNone:
		return nil
	default:
		return fmt.Errorf("%w: unknown check %q", health.ErrInvalid, string(spec.Kind))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", spec.Kind, err)
	}
	return nil
}

// checkError is one failed step of a check: "read reply: timed out". Its text names the step
// and the reason (the sentinel when there is one, which says it all: "connect: connection
// refused"); errors.Is matches both the sentinel and the underlying error.
type checkError struct {
	op     string
	reason error // a sentinel, or nil
	err    error // the underlying error, or nil
	detail string
}

func (e *checkError) Error() string {
	var b strings.Builder
	b.WriteString(e.op)
	b.WriteString(": ")
	switch {
	case e.reason != nil:
		b.WriteString(e.reason.Error())
	case e.err != nil:
		b.WriteString(e.err.Error())
	}
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	return b.String()
}

func (e *checkError) Unwrap() []error {
	var errs []error
	if e.reason != nil {
		errs = append(errs, e.reason)
	}
	if e.err != nil {
		errs = append(errs, e.err)
	}
	return errs
}

// fail is a failure of the protocol itself (no underlying error).
func fail(op string, reason error, format string, args ...any) error {
	return &checkError{op: op, reason: reason, detail: fmt.Sprintf(format, args...)}
}

// classify names the reason of an I/O error: refused, unreachable, timeout, TLS, or the
// context's end; other errors keep their own text.
func classify(ctx context.Context, op string, err error) error {
	e := &checkError{op: op, err: err}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		e.reason = ErrRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		e.reason = ErrUnreachable
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		e.reason = ErrClosed
	case errors.Is(ctx.Err(), context.Canceled):
		// The caller gave up (the agent stops): not a verdict on the target.
		e.err = ctx.Err()
	case isTimeout(err) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		e.reason = ErrTimeout
	case isTLS(err):
		e.reason = ErrTLS
		e.detail = err.Error()
	}
	return e
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTLS(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		rh  tls.RecordHeaderError
		al  tls.AlertError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		inv x509.CertificateInvalidError
	)
	return errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &al) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &inv)
}

// dial connects to ap within ctx.
func dial(ctx context.Context, network string, ap netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, ap.String())
	if err != nil {
		return nil, classify(ctx, "connect", err)
	}
	return c, nil
}

// bound sets ctx's deadline on c and makes ctx's end (the caller giving up) interrupt any
// blocked read or write at once. The returned function undoes the second part.
func bound(ctx context.Context, c net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

func probeTCP(ctx context.Context, ap netip.AddrPort) error {
	c, err := dial(ctx, "tcp", ap)
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// Close with a reset, as HAProxy's checks do: no TIME_WAIT on the director.
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	return nil
}

func probeHTTP(ctx context.Context, ap netip.AddrPort, spec health.Spec) error {
	lo, hi, err := health.ParseStatusRange(spec.Expect)
	if err != nil {
		return fmt.Errorf("%w: expect: %v", health.ErrInvalid, err)
	}
	scheme := "http"
	if spec.Kind == health.KindHTTPS {
		scheme = "https"
	}
	u, err := url.Parse(scheme + "://" + ap.String() + spec.Path)
	if err != nil {
		return fmt.Errorf("%w: path: %v", health.ErrInvalid, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("%w: %v", health.ErrInvalid, err)
	}
	if spec.ServerName != "" {
		req.Host = spec.ServerName
		if !(scheme == "http" && ap.Port() == 80 || scheme == "https" && ap.Port() == 443) {
			req.Host = net.JoinHostPort(spec.ServerName, strconv.Itoa(int(ap.Port())))
		}
	}
	req.Header.Set("User-Agent", userAgent)
	tr := &http.Transport{
		// Proxy stays nil: a health check goes to the real server, never through an
		// HTTP_PROXY of the agent's environment.
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxBody,
		TLSClientConfig: &tls.Config{
			ServerName:         spec.ServerName,
			InsecureSkipVerify: !spec.Verify,
			RootCAs:            spec.RootCAs,
		},
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error // "Get \"http://...\": ": the check's own URL, said already
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return classify(ctx, "request", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < lo || resp.StatusCode > hi {
		return fail("GET "+spec.Path, ErrStatus, "%s, want %s", resp.Status, spec.Expect)
	}
	if spec.Body == "" {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return classify(ctx, "read body", err)
	}
	if !strings.Contains(string(body), spec.Body) {
		return fail("GET "+spec.Path, ErrBody, "body (%d bytes read) does not contain %q", len(body), spec.Body)
	}
	return nil
}

// udpReplyMax is how much of a UDP reply a check looks at.
const udpReplyMax = 4 << 10

func probeUDP(ctx context.Context, ap netip.AddrPort, spec health.Spec) error {
	c, err := dial(ctx, "udp", ap)
	if err != nil {
		return err
	}
	defer c.Close()
	defer bound(ctx, c)()
	if _, err := c.Write(spec.Payload); err != nil {
		return udpError(ctx, "send", err)
	}
	buf := make([]byte, udpReplyMax)
	n, err := c.Read(buf)
	if spec.UDPMode == health.UDPNoUnreachable {
		switch {
		case err == nil:
			return nil // a reply proves it is up
		case errors.Is(err, syscall.ECONNREFUSED):
			return udpError(ctx, "read", err)
		case errors.Is(ctx.Err(), context.Canceled):
			return ctx.Err()
		case isTimeout(err):
			return nil // silence: no ICMP unreachable within the timeout
		default:
			return udpError(ctx, "read", err)
		}
	}
	if err != nil {
		if isTimeout(err) && !errors.Is(ctx.Err(), context.Canceled) {
			return fail("read reply", ErrTimeout, "no reply within %v", spec.Timeout)
		}
		return udpError(ctx, "read reply", err)
	}
	if spec.Expect != "" && !strings.Contains(string(buf[:n]), spec.Expect) {
		return fail("read reply", ErrBody, "reply (%d bytes) does not contain %q", n, spec.Expect)
	}
	return nil
}

// udpError: on a UDP socket ECONNREFUSED is an ICMP port unreachable.
func udpError(ctx context.Context, op string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &checkError{op: op, reason: ErrUnreachable, err: err, detail: "ICMP port unreachable"}
	}
	return classify(ctx, op, err)
}

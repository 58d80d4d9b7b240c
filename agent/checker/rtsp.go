package checker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// userAgent is sent by the http and rtsp checks, so servers' logs say who asks.
const userAgent = "lvsctl-health"

// rtspReadMax bounds everything one rtsp check reads (two replies' headers and one body): a
// server that streams endless headers is malformed, not a memory cost.
const rtspReadMax = 2*16<<10 + maxBody

// probeRTSP is the rtsp check, written by hand on net/textproto (no RTSP client library is
// on the module proxy). One connection: OPTIONS with CSeq 1, then with Describe a DESCRIBE
// with CSeq 2.
func probeRTSP(ctx context.Context, ap netip.AddrPort, spec health.Spec) error {
	u := spec.URL
	if u == "" {
		u = "rtsp://" + ap.String() + "/"
	}
	c, err := dial(ctx, "tcp", ap)
	if err != nil {
		return err
	}
	defer c.Close()
	defer bound(ctx, c)()
	lr := &io.LimitedReader{R: c, N: rtspReadMax}
	r := textproto.NewReader(bufio.NewReader(lr))

	req := "OPTIONS " + u + " RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: " + userAgent + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return classify(ctx, "send OPTIONS", err)
	}
	hdr, err := readRTSPReply(ctx, lr, r, "OPTIONS", 1)
	if err != nil {
		return err
	}
	if !spec.Describe {
		return nil
	}
	// Skip a body of the OPTIONS reply, if any, to reach the next reply.
	if n, err := contentLength(hdr, "OPTIONS"); err != nil {
		return err
	} else if n > 0 {
		if _, err := io.CopyN(io.Discard, r.R, n); err != nil {
			return readError(ctx, lr, "read OPTIONS body", err)
		}
	}

	req = "DESCRIBE " + u + " RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\nUser-Agent: " + userAgent + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return classify(ctx, "send DESCRIBE", err)
	}
	hdr, err = readRTSPReply(ctx, lr, r, "DESCRIBE", 2)
	if err != nil {
		return err
	}
	n, err := contentLength(hdr, "DESCRIBE")
	if err != nil {
		return err
	}
	if n == 0 {
		return fail("DESCRIBE", ErrNoSDP, "the reply has no body")
	}
	body := make([]byte, min(n, maxBody))
	if _, err := io.ReadFull(r.R, body); err != nil {
		return readError(ctx, lr, "read DESCRIBE body", err)
	}
	if !bytes.HasPrefix(bytes.TrimLeft(body, "\r\n"), []byte("v=0")) {
		return fail("DESCRIBE", ErrNoSDP, "the body does not start with v=0: %q", trimQuote(body, 40))
	}
	return nil
}

// readRTSPReply reads one reply's status line and headers and checks the status (200) and
// the CSeq. A non-200 status is reported before a CSeq problem: servers' error replies often
// carry no CSeq, and the status says more.
func readRTSPReply(ctx context.Context, lr *io.LimitedReader, r *textproto.Reader, method string, cseq int) (textproto.MIMEHeader, error) {
	// Not textproto's ReadLine: it returns a line cut short by the deadline as if complete.
	line, err := r.R.ReadString('\n')
	if err != nil {
		return nil, readError(ctx, lr, "read "+method+" reply", err)
	}
	line = strings.TrimRight(line, "\r\n")
	proto, rest, _ := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(rest, " ")
	status, convErr := strconv.Atoi(code)
	if !strings.HasPrefix(proto, "RTSP/1.") || len(code) != 3 || convErr != nil {
		return nil, fail(method, ErrMalformed, "status line %q", trimQuote([]byte(line), 80))
	}
	hdr, err := r.ReadMIMEHeader()
	if err != nil {
		var perr textproto.ProtocolError
		if errors.As(err, &perr) && !pastDeadline(ctx) {
			return nil, fail(method, ErrMalformed, "%v", err)
		}
		if errors.As(err, &perr) {
			// A header line cut short by the deadline: textproto saw a partial line.
			return nil, &checkError{op: "read " + method + " headers", reason: ErrTimeout}
		}
		return nil, readError(ctx, lr, "read "+method+" headers", err)
	}
	if status != 200 {
		return nil, fail(method, ErrStatus, "%d %s, want 200", status, reason)
	}
	got := strings.TrimSpace(hdr.Get("CSeq"))
	if got == "" {
		return nil, fail(method, ErrCSeq, "the reply has no CSeq, want %d", cseq)
	}
	if n, err := strconv.Atoi(got); err != nil || n != cseq {
		return nil, fail(method, ErrCSeq, "CSeq %q, want %d", got, cseq)
	}
	return hdr, nil
}

// pastDeadline reports whether ctx's deadline has passed (a read that returned data and no
// error may still have been cut short by it).
func pastDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func contentLength(hdr textproto.MIMEHeader, method string) (int64, error) {
	v := strings.TrimSpace(hdr.Get("Content-Length"))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fail(method, ErrMalformed, "Content-Length %q", v)
	}
	return n, nil
}

// readError: reading stopped at rtspReadMax is a reply too long; the rest is classified.
func readError(ctx context.Context, lr *io.LimitedReader, op string, err error) error {
	if lr.N <= 0 && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return &checkError{op: op, reason: ErrMalformed, detail: fmt.Sprintf("the reply is longer than %d bytes", rtspReadMax)}
	}
	return classify(ctx, op, err)
}

func trimQuote(b []byte, n int) string {
	if len(b) > n {
		return fmt.Sprintf("%s...", b[:n])
	}
	return string(b)
}

// Package health says what a health check of a real server is: the Spec (kind, port,
// interval, timeout, rise, fall and per-kind fields), its defaults and its validation. The
// controller validates manifests with it; every agent runs the checks (agent/checker) from
// its own network namespace, so an ACTIVE and its STANDBY agree on weights without talking to
// each other.
//
// # Defaults
//
// interval 2s, timeout 1s, rise 2, fall 3; for http and https path "/" and expect "200-399".
// These are HAProxy's (inter 2s, rise 2, fall 3; httpchk takes 2xx and 3xx as up), which LVS
// operators already know and tune, and they meet the goal "a dead real server stops getting new
// sessions within seconds": a dead server is down after fall x interval, about 6 s (keepalived's
// delay_loop of 60 s would take a minute). Fall 3 keeps one lost packet or one slow answer from
// taking a server out; rise 2 keeps one lucky answer of a flapping server from bringing it back.
// The timeout (1s, HAProxy's own default is the interval) is half the interval: a real server on
// the director's LAN answers in milliseconds, and a hung one then holds a worker for at most half
// of its interval, so its next check is never due while the last one still runs.
//
// # Kinds
//
//   - tcp: connect, then close with a reset (SO_LINGER 0, as HAProxy does), so thousands of
//     checks leave no TIME_WAIT sockets on the director.
//   - http, https: GET Path with net/http, one client per check: no keep-alive, no proxy from
//     the environment, redirects not followed (a 3xx is judged by its status), Host header the
//     ServerName (with the port if not the scheme's default) or the address. The status must be
//     in Expect ("200-399" or "200"); with Body, the first 64 KiB of the body must contain it.
//     https sends ServerName as SNI and does NOT verify the certificate unless Verify is set
//     (real servers are addressed by IP and commonly carry certificates for the public name
//     only; a health check asks "is it serving", not "is it who it claims"). With Verify, the
//     certificate must be valid for ServerName (or the address) under RootCAs (nil: the
//     system's roots).
//   - rtsp: hand-written over TCP (there is no RTSP client library on the module proxy:
//     gortsplib is not there, and a check needs two requests). Sends
//     "OPTIONS <url> RTSP/1.0" with "CSeq: 1" (the first sequence number servers such as ffmpeg's
//     listen mode insist on) and expects "RTSP/1.0 200" echoing CSeq 1; with Describe, then
//     "DESCRIBE <url>" with CSeq 2 and "Accept: application/sdp", expecting 200, CSeq 2 and a
//     Content-Length body (at most 64 KiB read) that starts with "v=0". URL defaults to
//     rtsp://ADDRESS:PORT/. A server that accepts and never answers fails by timeout.
//   - udp: a connected UDP socket sends Payload. Mode reply: a reply must arrive within the
//     timeout (and contain Expect if set; the first 4 KiB are looked at). Mode noUnreachable:
//     up unless an ICMP port unreachable comes back within the timeout (the error matches both
//     ErrUnreachable and syscall.ECONNREFUSED); such a check always lasts the whole timeout
//     when the server stays silent, and it is weak by nature: a firewall that drops ICMP, or the
//     real server's ICMP rate limit, makes a dead port look up.
//   - exec: runs Command (looked up in the agent's PATH, as the agent's user) with the agent's
//     environment plus LVSCTL_REAL_ADDRESS and LVSCTL_REAL_PORT ("0" when the check names no
//     port); exit status 0 is up. The command runs in its own process group, which is killed
//     when the check ends, whatever its outcome: on timeout, and also any background process a
//     successful command left behind. The first line of its stderr (else stdout), at most 256
//     bytes, goes into the error.
//   - none: always up, never probed.
//
// # States
//
// A target starts Unknown, which counts as up for weights (State.Serving): an agent restart or
// a new real server must not take traffic away before any check has run. From Unknown, the
// first success makes it Up and Fall consecutive failures make it Down (a server that is down
// when the agent starts is taken out as fast as one that dies later, and one that is up is
// confirmed at once, since it already serves). From Up, Fall consecutive failures make it Down;
// from Down, Rise consecutive successes make it Up. See Machine.
//
// # The checker's bounds
//
// The Checker runs probes on a fixed pool of workers (Options.Workers, default 32) plus one
// scheduler goroutine, whatever the number of targets and however many of them hang. Each
// target is checked every Interval at a fixed phase (a hash of its key), so 10,000 targets are
// spread over the interval instead of firing at once. A check still queued or running when it is
// due again is skipped (counted in Status.Skipped), so checks never pile up. A hung target holds
// a worker for at most its Timeout; targets whose last check timed out may use at most half of
// the workers, so real servers that hang never starve the healthy ones of workers. With H
// hanging targets, the slow half of the pool keeps checking them at their interval while
// H x Timeout / Interval stays under Workers/2 (30 hanging at the defaults need 15); past that
// they are checked less often (they are down anyway).
package health

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is what a check does.
type Kind string

// The kinds of check, as written in a manifest's `check`.
const (
	KindTCP   Kind = "tcp"
	KindHTTP  Kind = "http"
	KindHTTPS Kind = "https"
	KindRTSP  Kind = "rtsp"
	KindUDP   Kind = "udp"
	KindExec  Kind = "exec"
	KindNone  Kind = "none"
)

// Kinds lists every kind, in the order error messages name them.
var Kinds = []Kind{KindTCP, KindHTTP, KindHTTPS, KindRTSP, KindUDP, KindExec, KindNone}

// UDPMode is how a udp check decides.
type UDPMode string

const (
	// UDPReply: up when a reply arrives within the timeout (containing Expect if set).
	UDPReply UDPMode = "reply"
	// UDPNoUnreachable: up unless an ICMP port unreachable arrives within the timeout.
	UDPNoUnreachable UDPMode = "noUnreachable"
)

// The defaults (see the package documentation for why).
const (
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = time.Second
	DefaultRise     = 2
	DefaultFall     = 3
	DefaultPath     = "/"
	DefaultExpect   = "200-399"
)

// DefaultRemoveGrace is how long a real server removed from its cluster stays at weight 0
// on every director when the cluster does not say (remove_grace_ms 0): a minute lets short
// sessions finish without keeping a server an operator wants gone for long. The agents
// apply it and lvsctl describe shows it.
const DefaultRemoveGrace = 60 * time.Second

// maxPayload is the largest UDP payload over IPv4 (65,535 - 8 - 20).
const maxPayload = 65507

// Spec is one check: what to probe and how often. The zero value of a field means its default
// (Defaults); fields a kind does not use must be left zero (Validate refuses them).
type Spec struct {
	Kind Kind
	// Port is the port to probe; required for every kind but exec (where it is only passed
	// on) and none. A fwmark service's real servers have port 0, so the check names one.
	Port uint16
	// Interval between two checks of a target; Timeout bounds one check and is less than
	// Interval.
	Interval, Timeout time.Duration
	// Rise consecutive successes bring a Down target Up; Fall consecutive failures take an
	// Up or Unknown target Down.
	Rise, Fall int

	// Path (http, https): the request's path and query, from "/".
	Path string
	// Expect: for http and https the status range ("200-399" or "200"); for udp (mode reply)
	// a substring the reply must contain.
	Expect string
	// Body (http, https): a substring the first 64 KiB of the body must contain.
	Body string

	// URL (rtsp): the URL of the requests; default rtsp://ADDRESS:PORT/.
	URL string
	// Describe (rtsp): after OPTIONS, also DESCRIBE and expect an SDP body.
	Describe bool

	// ServerName (https): the TLS SNI and the Host header.
	ServerName string
	// Verify (https): verify the server's certificate (not verified by default).
	Verify bool
	// RootCAs (https, with Verify): the roots to verify against; nil means the system's.
	RootCAs *x509.CertPool

	// Payload (udp): the datagram sent.
	Payload []byte
	// UDPMode (udp): reply (the default) or noUnreachable.
	UDPMode UDPMode

	// Command (exec): the program and its arguments.
	Command []string
}

// Defaults returns s with its zero fields set to their defaults: interval, timeout, rise and
// fall for every kind, path and expect for http and https, the mode for udp. It sets no field
// the kind does not use, so Validate's refusal of unused fields still applies.
func (s Spec) Defaults() Spec {
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	switch s.Kind {
	case KindHTTP, KindHTTPS:
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if s.Expect == "" {
			s.Expect = DefaultExpect
		}
	case KindUDP:
		if s.UDPMode == "" {
			s.UDPMode = UDPReply
		}
	}
	return s
}

// ErrInvalid is matched (errors.Is) by every error of Validate, and by Probe's error for a
// spec it cannot run.
var ErrInvalid = errors.New("invalid health check")

// FieldError is one refused field of a Spec.
type FieldError struct {
	// Field is the field as a manifest names it under `health`: "timeout", "port", "check".
	Field string
	// Reason says what is wrong.
	Reason string
}

// Error formats the error as `health.timeout: 3s is more than health.interval (2s)`.
func (e *FieldError) Error() string { return "health." + e.Field + ": " + e.Reason }

// Is makes every FieldError match ErrInvalid.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Validate checks the spec as it will run, that is after Defaults: nil, or every refused
// field as a *FieldError joined with errors.Join (each matches ErrInvalid). The caller adds
// its own context (which cluster, which real server, "required for a fwmark cluster").
func (s Spec) Validate() error {
	d := s.Defaults()
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	known := slices.Contains(Kinds, d.Kind)
	switch {
	case d.Kind == "":
		add("check", "required: one of %s", kindList())
	case !known:
		add("check", "unknown check %q: one of %s", string(d.Kind), kindList())
	}

	if known && d.Port == 0 && d.Kind != KindExec && d.Kind != KindNone {
		add("port", "required for a %s check", d.Kind)
	}
	if d.Interval < 0 {
		add("interval", "%v is negative", d.Interval)
	}
	if d.Timeout < 0 {
		add("timeout", "%v is negative", d.Timeout)
	}
	// Equal is allowed (the contract's own example is interval 1s, timeout 1s): a check still
	// running when the next is due makes the scheduler skip that one, not pile up.
	if d.Interval > 0 && d.Timeout > 0 && d.Timeout > d.Interval {
		add("timeout", "%v is more than health.interval (%v)", d.Timeout, d.Interval)
	}
	if d.Rise < 0 {
		add("rise", "%d is not at least 1", d.Rise)
	}
	if d.Fall < 0 {
		add("fall", "%d is not at least 1", d.Fall)
	}

	httpish := d.Kind == KindHTTP || d.Kind == KindHTTPS
	unused := func(field string, set bool, usedBy string) {
		if set {
			add(field, "only for %s checks", usedBy)
		}
	}
	if httpish {
		if err := checkPath(d.Path); err != nil {
			add("path", "%v", err)
		}
		if _, _, err := ParseStatusRange(d.Expect); err != nil {
			add("expect", "%v", err)
		}
	} else {
		unused("path", d.Path != "", "http and https")
		unused("body", d.Body != "", "http and https")
		if d.Kind != KindUDP {
			unused("expect", d.Expect != "", "http, https and udp")
		}
	}
	if d.Kind == KindHTTPS {
		if strings.ContainsFunc(d.ServerName, badHeaderRune) || strings.ContainsAny(d.ServerName, "/:") {
			add("serverName", "%q is not a host name", d.ServerName)
		}
		if d.RootCAs != nil && !d.Verify {
			add("rootCAs", "only with verify")
		}
	} else {
		unused("serverName", d.ServerName != "", "https")
		unused("verify", d.Verify, "https")
		unused("rootCAs", d.RootCAs != nil, "https")
	}
	if d.Kind == KindRTSP {
		if d.URL != "" {
			if err := checkRTSPURL(d.URL); err != nil {
				add("url", "%v", err)
			}
		}
	} else {
		unused("url", d.URL != "", "rtsp")
		unused("describe", d.Describe, "rtsp")
	}
	if d.Kind == KindUDP {
		switch d.UDPMode {
		case UDPReply:
		case UDPNoUnreachable:
			if d.Expect != "" {
				add("expect", "only with udpMode %s", UDPReply)
			}
		default:
			add("udpMode", "unknown mode %q: %s or %s", string(d.UDPMode), UDPReply, UDPNoUnreachable)
		}
		if len(d.Payload) > maxPayload {
			add("payload", "%d bytes, more than a UDP datagram holds (%d)", len(d.Payload), maxPayload)
		}
	} else {
		unused("payload", len(d.Payload) > 0, "udp")
		unused("udpMode", d.UDPMode != "", "udp")
	}
	if d.Kind == KindExec {
		if len(d.Command) == 0 || d.Command[0] == "" {
			add("command", "required for an exec check")
		}
	} else {
		unused("command", len(d.Command) > 0, "exec")
	}
	return errors.Join(errs...)
}

func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, " ")
}

// badHeaderRune reports characters that cannot appear in a request line or header.
func badHeaderRune(r rune) bool { return r <= ' ' || r == 0x7f }

func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q does not start with /", p)
	}
	if strings.ContainsFunc(p, badHeaderRune) {
		return fmt.Errorf("%q holds a space or a control character", p)
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return fmt.Errorf("%q: %v", p, err)
	}
	return nil
}

func checkRTSPURL(u string) error {
	if strings.ContainsFunc(u, badHeaderRune) {
		return fmt.Errorf("%q holds a space or a control character", u)
	}
	p, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%q: %v", u, err)
	}
	if p.Scheme != "rtsp" || p.Host == "" {
		return fmt.Errorf("%q is not an rtsp://HOST[:PORT]/PATH URL", u)
	}
	return nil
}

// ParseStatusRange parses "200-399" or "200".
func ParseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("%q is not a status or a status range (200-399)", s)
	case lo < 100 || hi > 599:
		return 0, 0, fmt.Errorf("%q: statuses are 100-599", s)
	case lo > hi:
		return 0, 0, fmt.Errorf("range %q is reversed", s)
	}
	return lo, hi, nil
}

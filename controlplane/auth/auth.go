// Package auth says who is calling the controller and whether they may make the call.
//
// An identity comes from the caller's X.509 client certificate, issued by lvsctl's own CA:
// the Subject CommonName is the name (a director's name as in its DirectorGroup, or an
// operator's user name) and the one Subject OrganizationalUnit is its role. The roles of
// people are ordered, viewer < operator < admin, each allowed what the lower ones are;
// director is a kind apart that may only open the agent stream (and ask for health).
// One table (methods) maps every RPC the controller serves to the role it needs; an RPC
// missing from it is refused, so a new RPC is closed until someone decides who may call it
// (TestEveryServedMethodHasARole fails first).
//
// A controller started with --insecure (plaintext, loopback only) has no certificates to
// read: every caller is the identity "insecure-loopback" with role admin, and may call
// everything, the agent stream included, as before TLS existed.
package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/lvsctl/lvsctl/controlplane/limits"
	"github.com/lvsctl/lvsctl/endpoints"
	"github.com/lvsctl/lvsctl/pki"
)

// Role is what an identity may do: a person's role (Viewer, Operator, Admin, in increasing
// order) or the kind Director. Any appears only in the method table.
type Role int

const (
	// NoRole is the zero Role: an identity never has it.
	NoRole Role = iota
	// Viewer may read: get, list, history, status, top.
	Viewer
	// Operator may also drain, enable and fail over.
	Operator
	// Admin may also apply, delete and roll back.
	Admin
	// Director is a director's agent: it may open the agent stream as itself, nothing else.
	Director
	// Any, in the method table only: every authenticated identity may call it.
	Any
)

// String is the name used in certificates (the OrganizationalUnit) and in messages.
func (r Role) String() string {
	switch r {
	case Viewer:
		return "viewer"
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	case Director:
		return "director"
	case Any:
		return "any identity"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// roleNames are the OrganizationalUnits a client certificate may carry, in the order
// messages list them. "controller" (the server's own certificate) is deliberately not one.
var roleNames = []Role{Director, Viewer, Operator, Admin}

// ErrRole: a role name that is none of director, viewer, operator, admin.
var ErrRole = errors.New("unknown role")

// ParseRole reads a role name as written in a certificate's OrganizationalUnit.
func ParseRole(s string) (Role, error) {
	for _, r := range roleNames {
		if s == r.String() {
			return r, nil
		}
	}
	return NoRole, fmt.Errorf("%w %q: want one of %s", ErrRole, clip(s), roleList())
}

func roleList() string {
	names := make([]string, len(roleNames))
	for i, r := range roleNames {
		names[i] = r.String()
	}
	return strings.Join(names, ", ")
}

// covers reports whether an identity of role r may call what needs role need.
func (r Role) covers(need Role) bool {
	switch need {
	case Any:
		return r != NoRole
	case Director:
		return r == Director
	case Viewer, Operator, Admin:
		// Director is numerically above Admin but is not a person's role.
		return r >= Viewer && r <= Admin && r >= need
	}
	return false
}

// Identity is who is calling.
type Identity struct {
	// Name is the certificate's CommonName: a director's or a user's name.
	Name string
	Role Role
}

// String is "alice (admin)": what audit records and logs show.
func (id Identity) String() string { return fmt.Sprintf("%s (%s)", id.Name, id.Role) }

// InsecureName is the name of every caller of a controller started with --insecure. A
// certificate may not carry it: audit records would confuse the two.
const InsecureName = "insecure-loopback"

// MaxNameBytes bounds a certificate's CommonName: a director's name is a DNS-like name, and
// the name ends up in logs, audit records and status.
const MaxNameBytes = 253

// ErrCertificate is wrapped by every reason a client certificate does not make an identity.
var ErrCertificate = errors.New("client certificate refused")

// FromCertificate reads the identity of a verified client certificate: its CommonName and
// its one OrganizationalUnit. It does not verify the certificate: the TLS handshake (or
// Authenticator.verify) did.
func FromCertificate(cert *x509.Certificate) (Identity, error) {
	name := cert.Subject.CommonName
	switch {
	case name == "":
		return Identity{}, fmt.Errorf("%w: it has no Subject CommonName (the director's or user's name)", ErrCertificate)
	case len(name) > MaxNameBytes:
		return Identity{}, fmt.Errorf("%w: its CommonName %q is %d bytes, over the limit of %d", ErrCertificate, clip(name), len(name), MaxNameBytes)
	case !printable(name):
		return Identity{}, fmt.Errorf("%w: its CommonName %q has characters other than printable ones", ErrCertificate, clip(name))
	case name == InsecureName:
		return Identity{}, fmt.Errorf("%w: its CommonName %q is reserved for callers of an --insecure controller", ErrCertificate, name)
	}
	ous := cert.Subject.OrganizationalUnit
	if len(ous) != 1 {
		return Identity{}, fmt.Errorf("%w: certificate for %q has %d Subject OrganizationalUnits %q: want exactly one, the role (%s)",
			ErrCertificate, name, len(ous), clipAll(ous), roleList())
	}
	role, err := ParseRole(ous[0])
	if err != nil {
		return Identity{}, fmt.Errorf("%w: certificate for %q: OrganizationalUnit: %w", ErrCertificate, name, err)
	}
	return Identity{Name: name, Role: role}, nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// clip bounds what a message echoes of a value from outside (limits.MaxEcho bytes).
func clip(s string) string { return limits.Prefix(s) }

func clipAll(ss []string) []string {
	const most = 8
	out := make([]string, 0, min(len(ss), most+1))
	for i, s := range ss {
		if i == most {
			out = append(out, fmt.Sprintf("... (%d in all)", len(ss)))
			break
		}
		out = append(out, clip(s))
	}
	return out
}

// Config configures an Authenticator.
type Config struct {
	// Insecure: the controller serves plaintext on loopback; every caller is the identity
	// InsecureName with role Admin, and may call every method in the table.
	Insecure bool
	Logger   *slog.Logger
}

// Authenticator identifies callers and enforces the method table.
type Authenticator struct {
	cfg Config
	log *slog.Logger
}

// New returns an Authenticator; install its Unary and Stream on the gRPC server.
func New(cfg Config) *Authenticator {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{cfg: cfg, log: log.With("component", "auth")}
}

type ctxKey struct{}

// caller is what the context carries: the identity, and whether it is the insecure one
// (not just a certificate's admin: only the insecure caller may speak for any director).
type caller struct {
	id       Identity
	insecure bool
}

// FromContext returns the identity the interceptor found for the call.
func FromContext(ctx context.Context) (Identity, bool) {
	c, ok := ctx.Value(ctxKey{}).(caller)
	return c.id, ok
}

// Who is the identity of the call as audit records show it: "alice (admin)", or
// "unknown" outside an authenticated call.
func Who(ctx context.Context) string {
	id, ok := FromContext(ctx)
	if !ok {
		return "unknown"
	}
	return id.String()
}

// WithIdentity returns ctx carrying id, as the interceptor would: for tests of services
// that read the identity, without TLS.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, caller{id: id})
}

// SpeakFor checks that the call may speak for the named director on the agent stream: its
// certificate is that director's, or the controller is insecure (names are trusted, as
// before TLS). A caller without identity is Unauthenticated; any other is PermissionDenied.
func SpeakFor(ctx context.Context, director string) error {
	c, ok := ctx.Value(ctxKey{}).(caller)
	switch {
	case !ok:
		return status.Error(codes.Unauthenticated, "no identity: the agent stream needs a director's client certificate")
	case c.insecure:
		return nil
	case c.id.Role != Director:
		return status.Errorf(codes.PermissionDenied, "role %s cannot speak for director %s", c.id.Role, clip(director))
	case c.id.Name != director:
		return status.Errorf(codes.PermissionDenied, "certificate for %s cannot speak for %s", c.id.Name, clip(director))
	}
	return nil
}

// Unary is the unary server interceptor: identify, authorize, then call.
func (a *Authenticator) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, err := a.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// Stream is the stream server interceptor: identify, authorize, then serve the stream with
// the identity in its context.
func (a *Authenticator) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := a.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &identified{ServerStream: ss, ctx: ctx})
}

type identified struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identified) Context() context.Context { return s.ctx }

// admit identifies the caller of method and checks the table; the context it returns
// carries the identity.
func (a *Authenticator) admit(ctx context.Context, method string) (context.Context, error) {
	c, err := a.identify(ctx)
	if err != nil {
		a.log.Warn("call refused: no identity", "method", method, "peer", peerAddr(ctx), "error", err)
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if err := authorize(c, method); err != nil {
		if _, known := methods[method]; !known {
			// A served RPC nobody gave a role: a bug of this controller, not the caller's.
			a.log.Error("call refused: the method is not in the role table", "method", method, "who", c.id.String(), "peer", peerAddr(ctx))
		} else {
			a.log.Warn("call refused", "method", method, "who", c.id.String(), "peer", peerAddr(ctx), "error", err)
		}
		return nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return context.WithValue(ctx, ctxKey{}, c), nil
}

var (
	// ErrUnauthenticated is matched (errors.Is) by every reason a caller has no identity.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrDenied is matched (errors.Is) by every refusal of an identified caller.
	ErrDenied = errors.New("permission denied")
)

// refusal is an error that is its kind (ErrDenied, ErrUnauthenticated) for
// errors.Is without saying so in its text: the gRPC code says it already, and the message
// stays what the user needs ("role viewer may not call ConfigService/Apply (needs admin)").
type refusal struct {
	kind  error
	msg   string
	cause error
}

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == r.kind }
func (r *refusal) Unwrap() error        { return r.cause }

func refuse(kind error, cause error, format string, args ...any) error {
	return &refusal{kind: kind, cause: cause, msg: fmt.Sprintf(format, args...)}
}

func (a *Authenticator) identify(ctx context.Context) (caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, refuse(ErrUnauthenticated, nil, "no peer on the call")
	}
	if a.cfg.Insecure {
		// The controller refuses --insecure on a listener that is not loopback; this is a
		// second lock, should a caller from elsewhere ever reach it.
		if !endpoints.LoopbackAddr(p.Addr) {
			return caller{}, refuse(ErrUnauthenticated, nil, "the controller is --insecure and %s is not a loopback address", p.Addr)
		}
		return caller{id: Identity{Name: InsecureName, Role: Admin}, insecure: true}, nil
	}
	// The certificate as the transport verified it: pki.ServerCredentials verifies after
	// the handshake against the current CA, so that a missing or untrusted certificate gets
	// here and is answered Unauthenticated with what is wrong; a plain
	// tls.RequireAndVerifyClientCert server's verified chain is read the same way.
	leaf, err := pki.VerifiedPeer(ctx)
	if err != nil {
		return caller{}, refuse(ErrUnauthenticated, err, "%s", status.Convert(err).Message())
	}
	if isController(leaf) {
		// Another controller relaying a caller to this one, the leader (forward.go).
		id, ok, err := forwarded(ctx, leaf)
		switch {
		case err != nil:
			return caller{}, err
		case !ok:
			return caller{}, refuse(ErrUnauthenticated, nil, "a controller's certificate (%s) calls only on behalf of a caller it relays", clip(leaf.Subject.CommonName))
		}
		return caller{id: id}, nil
	}
	id, err := FromCertificate(leaf)
	if err != nil {
		return caller{}, refuse(ErrUnauthenticated, err, "%v", err)
	}
	return caller{id: id}, nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authorize checks the method table for a caller.
func authorize(c caller, method string) error {
	need, ok := methods[method]
	if !ok {
		// Deny by default: a method nobody decided on is nobody's.
		return refuse(ErrDenied, nil, "%s is not in the controller's role table: no role may call it", shortMethod(method))
	}
	if c.insecure || c.id.Role.covers(need) {
		return nil
	}
	return refuse(ErrDenied, nil, "role %s may not call %s (needs %s)", c.id.Role, shortMethod(method), need)
}

// Allowed reports whether an identity may call a method (its full gRPC name), by the table.
func Allowed(id Identity, method string) error {
	return authorize(caller{id: id}, method)
}

// shortMethod is "ConfigService/Apply" for "/lvsctl.v1.ConfigService/Apply".
func shortMethod(full string) string {
	s := strings.TrimPrefix(full, "/")
	svc, m, ok := strings.Cut(s, "/")
	if !ok {
		return clip(full)
	}
	if i := strings.LastIndexByte(svc, '.'); i >= 0 {
		svc = svc[i+1:]
	}
	return clip(svc + "/" + m)
}

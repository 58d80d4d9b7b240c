// Package pki is lvsctl's own certificate authority and its TLS: it makes the CA, the
// controller's certificate and one client certificate per director and per operator
// (Init, Issue*), loads them into tls.Configs that re-read the files when they change
// (Reloader), and gives the gRPC server credentials that tell a verified client from an
// unverified one (ServerCredentials, the Authenticate interceptors).
//
// Identities live in the client certificate's subject: CommonName is the name (a director's
// name as in its DirectorGroup, or an operator's user name), OrganizationalUnit is exactly one
// of "director", "viewer", "operator", "admin". The controller's certificate has OU
// "controller" and the addresses agents and lvsctl dial as SANs. Package controlplane/auth
// reads the identity; this package only makes and checks certificates.
//
// Keys are ECDSA P-256: every TLS 1.3 stack takes it (Go's, OpenSSL's, Prometheus', Java's),
// while Ed25519 certificates are refused by some that operators point at a controller
// (Java before 15, many HSMs and older curl/OpenSSL builds); the handshake cost is the same
// to a controller that sees a few connections a second.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Kinds and roles, as written in a certificate's OrganizationalUnit.
const (
	OUController = "controller"
	OUDirector   = "director"
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// Roles are the operator roles a user certificate may carry, lowest first.
var Roles = []string{RoleViewer, RoleOperator, RoleAdmin}

// File names inside a pki directory (the issue's contract: checks outside the repository read
// them).
const (
	CACertFile         = "ca.crt"
	CAKeyFile          = "ca.key"
	ControllerCertFile = "controller.crt"
	ControllerKeyFile  = "controller.key"
)

// DefaultDir is where the controller and the agent look for certificates without flags.
const DefaultDir = "/etc/lvsctl/pki"

// DefaultDays is the validity of the certificates Init and Issue make; the CA lives
// caValidity. A year is long enough not to be a chore and short enough that a lost key
// expires: rotation is `pki issue --force` and needs no restart.
const (
	DefaultDays = 365
	caValidity  = 10 * 365 * 24 * time.Hour
	// clockSkew backdates NotBefore so a director whose clock runs a little behind the
	// machine that issued its certificate does not refuse it as "not yet valid".
	clockSkew = 5 * time.Minute
)

// ErrInvalid is wrapped by every refused argument (a name, a role, a SAN, a validity).
var ErrInvalid = errors.New("invalid certificate request")

// ErrExists is wrapped when a file would be overwritten and that was not asked for.
var ErrExists = errors.New("refusing to overwrite")

// DirectorCertPath and DirectorKeyPath are where Issue writes a director's certificate.
func DirectorCertPath(dir, name string) string { return filepath.Join(dir, "director-"+name+".crt") }
func DirectorKeyPath(dir, name string) string  { return filepath.Join(dir, "director-"+name+".key") }

// UserCertPath and UserKeyPath are where Issue writes an operator's certificate.
func UserCertPath(dir, name string) string { return filepath.Join(dir, "user-"+name+".crt") }
func UserKeyPath(dir, name string) string  { return filepath.Join(dir, "user-"+name+".key") }

// directorRE is a director's name as package validate accepts it (a DNS label), which also keeps
// every name safe as part of a file name; user names may also hold '.' and '_' (alice.smith).
var (
	directorRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	userRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$`)
)

const maxNameLen = 63

// CheckDirectorName refuses a name no DirectorGroup could list.
func CheckDirectorName(name string) error {
	return checkName("director name", name, directorRE, "lowercase letters, digits and '-'")
}

// CheckUserName refuses a user name that is not safe as a CommonName and a file name.
func CheckUserName(name string) error {
	return checkName("user name", name, userRE, "lowercase letters, digits, '-', '.' and '_'")
}

func checkName(field, name string, re *regexp.Regexp, allowed string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: %s: required", ErrInvalid, field)
	case len(name) > maxNameLen:
		return fmt.Errorf("%w: %s %.20q...: longer than %d characters", ErrInvalid, field, name, maxNameLen)
	case !re.MatchString(name):
		return fmt.Errorf("%w: %s %.70q: only %s, starting and ending with a letter or digit", ErrInvalid, field, name, allowed)
	}
	return nil
}

// CheckRole refuses anything but viewer, operator and admin.
func CheckRole(role string) error {
	if slices.Contains(Roles, role) {
		return nil
	}
	return fmt.Errorf("%w: role %.30q: must be one of %s", ErrInvalid, role, strings.Join(Roles, ", "))
}

// CA is a certificate authority that can sign.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is Cert as read or written, for a pool or a file.
	CertPEM []byte
}

// NewCA makes a self-signed CA valid for validity from now.
func NewCA(commonName string, validity time.Duration) (*CA, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"lvsctl"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := keyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: certToPEM(der)}, keyPEM, nil
}

// Request is one certificate to sign.
type Request struct {
	CommonName string
	// OU is the kind or role (OUController, OUDirector, or a role).
	OU       string
	DNSNames []string
	IPs      []net.IP
	// Server makes a certificate that may serve TLS (ExtKeyUsage ServerAuth) as well as
	// present itself as a client; others are ClientAuth only, so that no director or operator
	// certificate can pose as the controller to an agent.
	Server   bool
	Validity time.Duration
}

// Issue signs a new key's certificate; it returns both PEM-encoded.
func (ca *CA) Issue(r Request) (certPEM, keyPEM []byte, err error) {
	if r.Validity <= 0 {
		return nil, nil, fmt.Errorf("%w: validity %s: must be positive", ErrInvalid, r.Validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if r.Server {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	notAfter := now.Add(r.Validity)
	if notAfter.After(ca.Cert.NotAfter) {
		// A leaf outliving its CA would fail verification on the CA's last day anyway.
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: r.CommonName, OrganizationalUnit: []string{r.OU}, Organization: []string{"lvsctl"}},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
		DNSNames:     r.DNSNames,
		IPAddresses:  r.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = keyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return certToPEM(der), keyPEM, nil
}

// DirectorRequest is the certificate of director name.
func DirectorRequest(name string, validity time.Duration) (Request, error) {
	if err := CheckDirectorName(name); err != nil {
		return Request{}, err
	}
	return Request{CommonName: name, OU: OUDirector, Validity: validity}, nil
}

// UserRequest is the certificate of an operator with a role.
func UserRequest(name, role string, validity time.Duration) (Request, error) {
	if err := CheckUserName(name); err != nil {
		return Request{}, err
	}
	if err := CheckRole(role); err != nil {
		return Request{}, err
	}
	return Request{CommonName: name, OU: role, Validity: validity}, nil
}

// ControllerRequest is the controller's certificate: valid for loopback (localhost,
// 127.0.0.1, ::1), this machine's host name, and every extra name or IP address.
func ControllerRequest(extra []string, validity time.Duration) (Request, error) {
	names := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
		names = append(names, strings.ToLower(h))
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	for _, s := range extra {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(s, "[]")); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
			continue
		}
		if !validDNSName(s) {
			return Request{}, fmt.Errorf("%w: --san %.70q: neither an IP address nor a DNS name", ErrInvalid, s)
		}
		if s = strings.ToLower(s); !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	return Request{CommonName: "lvs-controller", OU: OUController, DNSNames: names, IPs: ips, Server: true, Validity: validity}, nil
}

var dnsNameRE = regexp.MustCompile(`^(\*\.)?([A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*\.?$`)

func validDNSName(s string) bool { return len(s) <= 253 && dnsNameRE.MatchString(s) }

func newSerial() (*big.Int, error) {
	// 128 random bits: serials are how a rotated certificate is told from its predecessor,
	// so they must never repeat.
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

func certToPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyToPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadCA reads DIR/ca.crt and DIR/ca.key.
func LoadCA(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("CA key (issuing needs the directory `pki init` made): %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CACertFile), err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", filepath.Join(dir, CACertFile))
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", filepath.Join(dir, CAKeyFile))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CAKeyFile), err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", filepath.Join(dir, CAKeyFile))
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not belong to %s", filepath.Join(dir, CAKeyFile), filepath.Join(dir, CACertFile))
	}
	return &CA{Cert: cert, Key: signer, CertPEM: certPEM}, nil
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// InitOptions are what Init makes besides the CA and the controller's certificate.
type InitOptions struct {
	// SANs are the controller's extra DNS names and IP addresses (loopback and the host name
	// are always included).
	SANs []string
	// Directors get one certificate each; Users one each with their role.
	Directors []string
	Users     []User
	// Days is the validity of every certificate but the CA's (0: DefaultDays).
	Days int
}

// User is an operator's name and role.
type User struct{ Name, Role string }

// ParseUser reads NAME:ROLE.
func ParseUser(s string) (User, error) {
	name, role, ok := strings.Cut(s, ":")
	if !ok {
		return User{}, fmt.Errorf("%w: user %.70q: want NAME:ROLE (role one of %s)", ErrInvalid, s, strings.Join(Roles, ", "))
	}
	if err := CheckUserName(name); err != nil {
		return User{}, err
	}
	if err := CheckRole(role); err != nil {
		return User{}, err
	}
	return User{Name: name, Role: role}, nil
}

func validity(days int) (time.Duration, error) {
	if days == 0 {
		days = DefaultDays
	}
	if days < 0 || days > 3650 {
		return 0, fmt.Errorf("%w: --days %d: must be between 1 and 3650", ErrInvalid, days)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// Init makes a new CA in dir with the controller's certificate and the directors' and users'
// ones. It refuses a dir that already holds a CA: replacing it would invalidate every
// certificate it signed. Every name is checked before anything is written.
func Init(dir string, o InitOptions) ([]string, error) {
	v, err := validity(o.Days)
	if err != nil {
		return nil, err
	}
	ctlReq, err := ControllerRequest(o.SANs, v)
	if err != nil {
		return nil, err
	}
	var reqs []pending
	for _, d := range o.Directors {
		r, err := DirectorRequest(d, v)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, pending{r, DirectorCertPath(dir, d), DirectorKeyPath(dir, d)})
	}
	for _, u := range o.Users {
		r, err := UserRequest(u.Name, u.Role, v)
		if err != nil {
			return nil, err
		}
		reqs = append(reqs, pending{r, UserCertPath(dir, u.Name), UserKeyPath(dir, u.Name)})
	}
	for _, f := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("%w %s: a CA exists there, and every certificate it signed would stop working (add certificates with `pki issue`)", ErrExists, filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	// The directory holds the CA's key: only its owner may list it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, err := NewCA("lvsctl CA", caValidity)
	if err != nil {
		return nil, err
	}
	// The key first: a ca.crt without its key would make the next init refuse while issue
	// cannot sign.
	if err := writeFile(filepath.Join(dir, CAKeyFile), caKey, 0o600, false); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CACertFile), ca.CertPEM, 0o644, false); err != nil {
		return nil, err
	}
	written := []string{filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)}
	reqs = append([]pending{{ctlReq, filepath.Join(dir, ControllerCertFile), filepath.Join(dir, ControllerKeyFile)}}, reqs...)
	for _, p := range reqs {
		if err := issueTo(ca, p, true); err != nil {
			return written, err
		}
		written = append(written, p.cert, p.key)
	}
	return written, nil
}

type pending struct {
	req       Request
	cert, key string
}

// IssueDirector adds (or with force, replaces) director name's certificate in dir, signed by
// dir's CA.
func IssueDirector(dir, name string, days int, force bool) ([]string, error) {
	v, err := validity(days)
	if err != nil {
		return nil, err
	}
	r, err := DirectorRequest(name, v)
	if err != nil {
		return nil, err
	}
	return issueFiles(dir, pending{r, DirectorCertPath(dir, name), DirectorKeyPath(dir, name)}, force)
}

// IssueUser adds (or with force, replaces) an operator's certificate with its role.
func IssueUser(dir, name, role string, days int, force bool) ([]string, error) {
	v, err := validity(days)
	if err != nil {
		return nil, err
	}
	r, err := UserRequest(name, role, v)
	if err != nil {
		return nil, err
	}
	return issueFiles(dir, pending{r, UserCertPath(dir, name), UserKeyPath(dir, name)}, force)
}

// IssueController replaces (force) or writes the controller's certificate, for rotation or
// new addresses.
func IssueController(dir string, sans []string, days int, force bool) ([]string, error) {
	v, err := validity(days)
	if err != nil {
		return nil, err
	}
	r, err := ControllerRequest(sans, v)
	if err != nil {
		return nil, err
	}
	return issueFiles(dir, pending{r, filepath.Join(dir, ControllerCertFile), filepath.Join(dir, ControllerKeyFile)}, force)
}

func issueFiles(dir string, p pending, force bool) ([]string, error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return nil, err
	}
	if !force {
		for _, f := range []string{p.cert, p.key} {
			if _, err := os.Stat(f); err == nil {
				return nil, fmt.Errorf("%w %s (pass --force to replace it: running agents and controllers pick up the new files without a restart)", ErrExists, f)
			}
		}
	}
	if err := issueTo(ca, p, force); err != nil {
		return nil, err
	}
	return []string{p.cert, p.key}, nil
}

func issueTo(ca *CA, p pending, replace bool) error {
	certPEM, keyPEM, err := ca.Issue(p.req)
	if err != nil {
		return err
	}
	// The key first, then the certificate: a reloader that sees the new key with the old
	// certificate refuses the pair and keeps serving, and sees both at its next look.
	if err := writeFile(p.key, keyPEM, 0o600, replace); err != nil {
		return err
	}
	return writeFile(p.cert, certPEM, 0o644, replace)
}

// writeFile writes data whole or not at all (a temporary file renamed over the name), so a
// reloader never reads half a certificate; without replace it refuses an existing file.
func writeFile(name string, data []byte, mode os.FileMode, replace bool) error {
	if !replace {
		if _, err := os.Lstat(name); err == nil {
			return fmt.Errorf("%w %s", ErrExists, name)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename this finds nothing
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// Describe is a one-line summary of a certificate for logs and errors.
func Describe(c *x509.Certificate) string {
	return fmt.Sprintf("CN=%s OU=%s serial=%s expires %s", c.Subject.CommonName, strings.Join(c.Subject.OrganizationalUnit, ","), Serial(c), c.NotAfter.UTC().Format(time.RFC3339))
}

// Serial is a certificate's serial number in hex, as openssl prints it.
func Serial(c *x509.Certificate) string { return strings.ToUpper(c.SerialNumber.Text(16)) }

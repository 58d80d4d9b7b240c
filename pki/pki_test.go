package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/pki"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("ca.crt holds no certificate")
	}
	return pool
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	written, err := pki.Init(dir, pki.InitOptions{
		SANs:      []string{"ctl.example.net", "198.51.100.1", "2001:db8::1"},
		Directors: []string{"dir-a", "dir-b"},
		Users:     []pki.User{{Name: "alice", Role: "admin"}, {Name: "bob", Role: "viewer"}},
		Days:      30,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ca.crt", "ca.key", "controller.crt", "controller.key", "director-dir-a.crt", "director-dir-a.key",
		"director-dir-b.crt", "director-dir-b.key", "user-alice.crt", "user-alice.key", "user-bob.crt", "user-bob.key"}
	var got []string
	for _, w := range written {
		got = append(got, filepath.Base(w))
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("written %v, want %v", got, want)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("directory mode %o, want 700 (it holds the CA's key)", m)
	}
	for _, f := range want {
		wantMode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".key") {
			wantMode = 0o600
		}
		if m := mode(t, filepath.Join(dir, f)); m != wantMode {
			t.Errorf("%s: mode %o, want %o", f, m, wantMode)
		}
	}
	roots := caPool(t, dir)

	ctl := readCert(t, filepath.Join(dir, "controller.crt"))
	if ctl.Subject.OrganizationalUnit[0] != "controller" || len(ctl.Subject.OrganizationalUnit) != 1 {
		t.Errorf("controller OU = %v, want [controller]", ctl.Subject.OrganizationalUnit)
	}
	host, _ := os.Hostname()
	for _, name := range []string{"localhost", "127.0.0.1", "::1", "ctl.example.net", "198.51.100.1", "2001:db8::1", strings.ToLower(host)} {
		if _, err := ctl.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("controller certificate not valid as a server for %s: %v", name, err)
		}
	}
	if err := ctl.VerifyHostname("203.0.113.9"); err == nil {
		t.Error("controller certificate valid for an address it was not given")
	}
	if left := time.Until(ctl.NotAfter); left > 31*24*time.Hour || left < 29*24*time.Hour {
		t.Errorf("controller certificate valid for %s, want --days 30", left)
	}

	for _, tc := range []struct{ file, cn, ou string }{
		{"director-dir-a.crt", "dir-a", "director"},
		{"director-dir-b.crt", "dir-b", "director"},
		{"user-alice.crt", "alice", "admin"},
		{"user-bob.crt", "bob", "viewer"},
	} {
		c := readCert(t, filepath.Join(dir, tc.file))
		if c.Subject.CommonName != tc.cn || !slices.Equal(c.Subject.OrganizationalUnit, []string{tc.ou}) {
			t.Errorf("%s: CN=%s OU=%v, want CN=%s OU=[%s]", tc.file, c.Subject.CommonName, c.Subject.OrganizationalUnit, tc.cn, tc.ou)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: not valid for client authentication: %v", tc.file, err)
		}
		// A director's or operator's certificate must never pass for the controller.
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
			t.Errorf("%s: valid for server authentication, want client only", tc.file)
		}
	}

	// init again: refused, nothing replaced.
	before, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if _, err := pki.Init(dir, pki.InitOptions{}); !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("second init: %v, want ErrExists naming ca.crt", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if string(before) != string(after) {
		t.Error("second init replaced the CA")
	}
}

func TestIssue(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(dir, pki.InitOptions{Directors: []string{"dir-a"}}); err != nil {
		t.Fatal(err)
	}
	files, err := pki.IssueDirector(dir, "dir-c", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if files[0] != filepath.Join(dir, "director-dir-c.crt") || files[1] != filepath.Join(dir, "director-dir-c.key") {
		t.Errorf("issue wrote %v", files)
	}
	c := readCert(t, files[0])
	if c.Subject.CommonName != "dir-c" || c.Subject.OrganizationalUnit[0] != "director" {
		t.Errorf("issued %s", pki.Describe(c))
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: caPool(t, dir), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("issued certificate does not chain to the CA of init: %v", err)
	}
	if _, err := pki.IssueUser(dir, "carol", "operator", 0, false); err != nil {
		t.Fatal(err)
	}
	if u := readCert(t, filepath.Join(dir, "user-carol.crt")); u.Subject.OrganizationalUnit[0] != "operator" {
		t.Errorf("user-carol: %s", pki.Describe(u))
	}

	// An existing certificate is replaced only with force; with it, the serial changes.
	if _, err := pki.IssueDirector(dir, "dir-a", 0, false); !errors.Is(err, pki.ErrExists) || !strings.Contains(err.Error(), "--force") {
		t.Errorf("issue over an existing certificate: %v, want ErrExists saying --force", err)
	}
	old := readCert(t, filepath.Join(dir, "director-dir-a.crt"))
	if _, err := pki.IssueDirector(dir, "dir-a", 0, true); err != nil {
		t.Fatal(err)
	}
	if now := readCert(t, filepath.Join(dir, "director-dir-a.crt")); now.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Error("issue --force kept the old certificate")
	}
	if ctl, err := pki.IssueController(dir, []string{"10.0.0.5"}, 0, true); err != nil {
		t.Fatal(err)
	} else if c := readCert(t, ctl[0]); c.VerifyHostname("10.0.0.5") != nil || c.VerifyHostname("127.0.0.1") != nil {
		t.Errorf("reissued controller certificate: IPs %v", c.IPAddresses)
	}

	// Refusals name the field; nothing is written.
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"bad role", func() error { _, err := pki.IssueUser(dir, "dave", "root", 0, false); return err }, `role "root": must be one of viewer, operator, admin`},
		{"role for a director", func() error { _, err := pki.IssueUser(dir, "dave", "director", 0, false); return err }, `role "director"`},
		{"bad director name", func() error { _, err := pki.IssueDirector(dir, "../etc", 0, false); return err }, `director name "../etc"`},
		{"upper-case director", func() error { _, err := pki.IssueDirector(dir, "Dir-A", 0, false); return err }, `director name "Dir-A"`},
		{"empty user", func() error { _, err := pki.IssueUser(dir, "", "admin", 0, false); return err }, "user name: required"},
		{"long user", func() error { _, err := pki.IssueUser(dir, strings.Repeat("a", 64), "admin", 0, false); return err }, "longer than 63"},
		{"bad days", func() error { _, err := pki.IssueDirector(dir, "dir-d", 99999, false); return err }, "--days 99999"},
		{"bad san", func() error { _, err := pki.IssueController(dir, []string{"not a host"}, 0, true); return err }, `--san "not a host"`},
		{"bad user spec", func() error { _, err := pki.ParseUser("alice"); return err }, "want NAME:ROLE"},
	} {
		err := tc.run()
		if !errors.Is(err, pki.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalid containing %q", tc.name, err, tc.want)
		}
	}
	for _, f := range []string{"user-dave.crt", "director-dir-d.crt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s written after a refusal", f)
		}
	}
	// Without a CA there is nothing to sign with.
	if _, err := pki.IssueDirector(t.TempDir(), "dir-a", 0, false); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("issue without a CA: %v", err)
	}
}

func TestControllerRequestLoopbackAlways(t *testing.T) {
	r, err := pki.ControllerRequest(nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, ip := range r.IPs {
		ips = append(ips, ip.String())
	}
	if !slices.Contains(ips, "127.0.0.1") || !slices.Contains(ips, "::1") || !slices.Contains(r.DNSNames, "localhost") {
		t.Errorf("controller SANs %v %v: loopback missing", r.DNSNames, ips)
	}
	// An IP given twice, or in brackets, is one SAN.
	r, _ = pki.ControllerRequest([]string{"[::1]", "127.0.0.1", "192.0.2.1"}, time.Hour)
	if len(r.IPs) != 3 || !r.IPs[2].Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("IPs %v, want 127.0.0.1 ::1 192.0.2.1", r.IPs)
	}
}

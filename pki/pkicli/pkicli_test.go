package pkicli_test

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/pki/pkicli"
)

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := pkicli.Main(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func cert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestInitAndIssue(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	code, out, errOut := run("init", dir, "--san", "ctl.example.net", "--san", "198.51.100.1", "--controller-host", "10.0.0.1,ctl2.example.net",
		"--director", "dir-a,dir-b", "--director", "dir-c", "--user", "alice:admin", "--operator", "bob:viewer", "--days", "10")
	if code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	for _, f := range []string{"ca.crt", "ca.key", "controller.crt", "controller.key", "director-dir-a.crt", "director-dir-c.key", "user-alice.crt", "user-bob.key"} {
		if !strings.Contains(out, "wrote "+filepath.Join(dir, f)+"\n") {
			t.Errorf("init output does not list %s:\n%s", f, out)
		}
	}
	ctl := cert(t, filepath.Join(dir, "controller.crt"))
	for _, h := range []string{"ctl.example.net", "198.51.100.1", "10.0.0.1", "ctl2.example.net", "127.0.0.1", "localhost"} {
		if err := ctl.VerifyHostname(h); err != nil {
			t.Errorf("controller certificate: %v", err)
		}
	}
	if c := cert(t, filepath.Join(dir, "user-bob.crt")); c.Subject.OrganizationalUnit[0] != "viewer" {
		t.Errorf("--operator bob:viewer made OU %v", c.Subject.OrganizationalUnit)
	}

	// The issue's contract: `issue DIR --director NAME` and `issue DIR --user NAME --role R`.
	if code, _, errOut := run("issue", dir, "--director", "dir-d"); code != 0 {
		t.Fatalf("issue --director: %s", errOut)
	}
	if c := cert(t, filepath.Join(dir, "director-dir-d.crt")); c.Subject.CommonName != "dir-d" || c.Subject.OrganizationalUnit[0] != "director" {
		t.Errorf("director-dir-d: %v", c.Subject)
	}
	if code, _, errOut := run("issue", dir, "--user", "carol", "--role", "operator"); code != 0 {
		t.Fatalf("issue --user: %s", errOut)
	}
	if c := cert(t, filepath.Join(dir, "user-carol.crt")); c.Subject.OrganizationalUnit[0] != "operator" {
		t.Errorf("user-carol: %v", c.Subject)
	}
	// And the positional spelling.
	if code, _, errOut := run("issue", "operator", "dave", "--role", "viewer", dir); code != 0 {
		t.Fatalf("issue operator dave: %s", errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "user-dave.crt")); err != nil {
		t.Error(err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init", dir}, "refusing to overwrite " + filepath.Join(dir, "ca.crt")},
		{[]string{"issue", dir, "--user", "erin", "--role", "superuser"}, `role "superuser": must be one of viewer, operator, admin`},
		{[]string{"issue", dir, "--user", "erin"}, "--role is required with --user"},
		{[]string{"issue", dir, "--director", "dir-a"}, "pass --force"},
		{[]string{"issue", dir}, "exactly one of --director NAME, --user NAME (with --role) or --controller"},
		{[]string{"init", t.TempDir(), "--user", "frank"}, "--user: invalid certificate request: user \"frank\": want NAME:ROLE"},
		{[]string{"init", t.TempDir(), "--director", "Dir_A"}, `director name "Dir_A"`},
	} {
		code, _, errOut := run(tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, %q; want an error containing %q", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := run("issue", dir, "--director", "dir-a", "--force"); code != 0 {
		t.Errorf("issue --force: %s", errOut)
	}
}

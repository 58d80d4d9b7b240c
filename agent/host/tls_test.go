package host

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/pki"
)

// TestRunRefusesBeforeTouchingAnything: plaintext beyond loopback, missing certificates and
// another director's certificate stop the agent at start, each with what to change. Every
// case returns before the state directory or the kernel is touched (StateDir does not exist
// and is not created).
func TestRunRefusesBeforeTouchingAnything(t *testing.T) {
	dir := t.TempDir()
	if _, err := pki.Init(dir, pki.InitOptions{Directors: []string{"dir-a", "dir-b"}, Users: []pki.User{{Name: "alice", Role: pki.RoleAdmin}}}); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, pki.CACertFile)
	stateDir := filepath.Join(t.TempDir(), "never")
	for _, tc := range []struct {
		name string
		cfg  Config
		is   error
		want []string
	}{
		{"insecure to a remote controller", Config{Director: "dir-a", Controller: "192.0.2.1:7443", Insecure: true},
			ErrConfig, []string{"--insecure with --controller 192.0.2.1:7443", "loopback only"}},
		{"no certificate", Config{Director: "dir-a", Controller: "127.0.0.1:7443", TLSCert: filepath.Join(dir, "nope.crt"), TLSKey: filepath.Join(dir, "nope.key"), TLSCA: ca},
			pki.ErrLoad, []string{"--cert " + filepath.Join(dir, "nope.crt"), "no such file", "pki issue DIR --director dir-a"}},
		{"another director's certificate", Config{Director: "dir-a", Controller: "127.0.0.1:7443", TLSCert: pki.DirectorCertPath(dir, "dir-b"), TLSKey: pki.DirectorKeyPath(dir, "dir-b"), TLSCA: ca},
			ErrWrongCertificate, []string{`it is for director "dir-b" (its CN) but --director is "dir-a"`}},
		{"an operator's certificate", Config{Director: "dir-a", Controller: "127.0.0.1:7443", TLSCert: pki.UserCertPath(dir, "alice"), TLSKey: pki.UserKeyPath(dir, "alice"), TLSCA: ca},
			ErrWrongCertificate, []string{`its OU is "admin", want "director"`}},
	} {
		tc.cfg.StateDir = stateDir
		err := Run(context.Background(), tc.cfg)
		if !errors.Is(err, tc.is) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.is)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.name, err, w)
			}
		}
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state directory was created by a refused start: %v", err)
	}
}

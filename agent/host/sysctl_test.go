package host

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestSetExpireQuiescentTemplate against a directory laid out as /proc/sys: the host's kernel
// has no IPVS, so the real file is the lab's (deploy/lab).
func TestSetExpireQuiescentTemplate(t *testing.T) {
	for _, tc := range []struct {
		name        string
		before      string // "" : no IPVS (no file)
		wantChanged bool
		wantErr     error
	}{
		{"kernel default 0", "0\n", true, nil},
		{"already 1", "1\n", false, nil},
		{"no IPVS loaded", "", false, fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, expireQuiescentTemplate)
			if tc.before != "" {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(tc.before), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			changed, err := setExpireQuiescentTemplate(root)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if changed != tc.wantChanged {
				t.Errorf("changed %v, want %v", changed, tc.wantChanged)
			}
			if tc.before == "" {
				return
			}
			if got, _ := os.ReadFile(path); string(got) != "1\n" {
				t.Errorf("the sysctl holds %q, want 1", got)
			}
		})
	}
}

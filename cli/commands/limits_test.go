package commands_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/cli/commands"
	"github.com/lvsctl/lvsctl/controlplane/limits"
)

// endless is standard input that never ends (`yes | lvsctl apply -f -`); it counts what was read.
type endless struct{ read int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	e.read += int64(len(p))
	return len(p), nil
}

// TestApplyReadsABoundedManifest: lvsctl refuses a manifest past limits.MaxManifestBytes
// having read no more than one byte past it, before it dials the controller.
func TestApplyReadsABoundedManifest(t *testing.T) {
	in := &endless{}
	var out, errOut bytes.Buffer
	code := commands.Run(context.Background(), []string{"--insecure", "--controller", "127.0.0.1:1", "apply", "-f", "-"},
		commands.Streams{In: in, Out: &out, Err: &errOut}, func(string) string { return "" })
	if code != 1 || !strings.Contains(errOut.String(), "-: more than 33554432 bytes, the limit of a manifest") {
		t.Errorf("exit %d, stderr %q; want 1 and the limit named", code, errOut.String())
	}
	if in.read > limits.MaxManifestBytes+64*1024 {
		t.Errorf("read %d bytes of an endless input; the limit is %d", in.read, limits.MaxManifestBytes)
	}
}

//go:build unix

package checker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

// execOutputMax bounds what an exec check keeps of its command's output for the error.
const execOutputMax = 256

// execWaitDelay bounds how long a check waits, after its command exited, for output pipes that
// a background process it left behind still holds open.
const execWaitDelay = 100 * time.Millisecond

func probeExec(ctx context.Context, ap netip.AddrPort, spec health.Spec) error {
	if len(spec.Command) == 0 || spec.Command[0] == "" {
		return fmt.Errorf("%w: no command", health.ErrInvalid)
	}
	cmd := exec.CommandContext(ctx, spec.Command[0], spec.Command[1:]...)
	cmd.Env = append(os.Environ(),
		"LVSCTL_REAL_ADDRESS="+ap.Addr().String(),
		"LVSCTL_REAL_PORT="+strconv.Itoa(int(ap.Port())))
	var stdout, stderr firstBytes
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Its own process group, so that the check can kill everything it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return &checkError{op: "start", err: err}
	}
	err := cmd.Wait()
	// Whatever the outcome, nothing the check started outlives it. The group's leader has
	// been reaped just now: its id cannot have been handed to another group since (ids are
	// reused only after wrapping around), and ESRCH (nothing left) is the common case.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: exit status 0, but a process left behind held the output open.
		return nil
	case errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err()
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return &checkError{op: "run", reason: ErrTimeout, detail: fmt.Sprintf("after %v, process group killed%s", spec.Timeout, output(&stderr, &stdout))}
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &checkError{op: "run", reason: ErrExit, err: err, detail: ee.ProcessState.String() + output(&stderr, &stdout)}
	}
	return &checkError{op: "run", err: err}
}

// output is ": " and the first line of stderr, else of stdout, or "".
func output(stderr, stdout *firstBytes) string {
	for _, b := range []*firstBytes{stderr, stdout} {
		if line := b.firstLine(); line != "" {
			return ": " + line
		}
	}
	return ""
}

// firstBytes keeps the first execOutputMax bytes written to it and discards the rest (the
// command never blocks on a full pipe).
type firstBytes struct {
	mu  sync.Mutex
	buf []byte
}

func (f *firstBytes) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if room := execOutputMax - len(f.buf); room > 0 {
		f.buf = append(f.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (f *firstBytes) firstLine() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := bytes.TrimSpace(f.buf)
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = bytes.TrimSpace(b[:i])
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

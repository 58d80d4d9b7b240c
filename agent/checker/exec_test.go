//go:build unix

package checker

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lvsctl/lvsctl/health"
)

func execSpec(script string) health.Spec {
	return health.Spec{Kind: health.KindExec, Port: 8080, Command: []string{"/bin/sh", "-c", script}, Interval: time.Second, Timeout: testTimeout}
}

func TestProbeExec(t *testing.T) {
	wantIs(t, probeTimed(t, execSpec(`test "$LVSCTL_REAL_ADDRESS" = 127.0.0.1 && test "$LVSCTL_REAL_PORT" = 8080 && test -n "$PATH"`)))

	err := probeTimed(t, execSpec("echo to stdout; echo 'first line' >&2; echo second >&2; exit 3"))
	wantIs(t, err, ErrExit)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("no exit code 3 in %v", err)
	}
	if !strings.HasSuffix(err.Error(), "exit status 3: first line") {
		t.Errorf("error %q does not end with the status and stderr's first line", err)
	}
	err = probeTimed(t, execSpec("echo only stdout; exit 1"))
	if wantIs(t, err, ErrExit); !strings.HasSuffix(err.Error(), ": only stdout") {
		t.Errorf("error %q does not end with stdout's first line", err)
	}
	// A flood of output: the command is not blocked, the error stays short.
	err = probeTimed(t, execSpec("head -c 1000000 /dev/zero | tr '\\0' a; exit 1"))
	if wantIs(t, err, ErrExit); len(err.Error()) > 300 {
		t.Errorf("error of %d bytes", len(err.Error()))
	}

	err = probeTimed(t, health.Spec{Kind: health.KindExec, Command: []string{"/nonexistent/check"}})
	if err == nil || errors.Is(err, ErrExit) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing command: %v", err)
	}
}

// On timeout the whole process group is killed: no grandchild lingers. A successful command's
// leftovers are killed too.
func TestProbeExecKillsProcessGroup(t *testing.T) {
	for _, tt := range []struct {
		name   string
		script string
		want   error
	}{
		{"timeout", `sleep 30 & echo $! > "$PIDFILE"; wait`, ErrTimeout},
		{"exit 0 with a child left behind", `sleep 30 & echo $! > "$PIDFILE"; exit 0`, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pidfile := filepath.Join(t.TempDir(), "pid")
			t.Setenv("PIDFILE", pidfile)
			start := time.Now()
			err := probeTimed(t, execSpec(tt.script))
			if tt.want == nil {
				wantIs(t, err)
			} else {
				wantIs(t, err, tt.want)
				if el := time.Since(start); el < testTimeout-50*time.Millisecond {
					t.Errorf("timed out after %v", el)
				}
			}
			b, rerr := os.ReadFile(pidfile)
			if rerr != nil {
				t.Fatal(rerr)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			waitGone(t, pid)
		})
	}
}

// waitGone waits until pid no longer runs: gone, or a zombie (killed, its parent gone, not yet
// reaped by init).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		// pid (comm) S ...: the state follows the last ')'.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs: %s", pid, stat)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProbeExecCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	s := execSpec("sleep 30")
	s.Interval, s.Timeout = 20*time.Second, 10*time.Second
	start := time.Now()
	err := Probe(ctx, localhost, s)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Errorf("canceled: %v", err)
	}
	if el := time.Since(start); el > slack {
		t.Errorf("canceled check took %v", el)
	}
}

package main

// leader: how long a leading controller's death takes to heal (issue 11).
//
//	lab-ha leader --kill PID --old ADDR --log FILE[,FILE...] [--interval 50ms] [--limit 15s] -- CMD [ARG...]
//
// It notes the time, SIGKILLs PID (the leading lvs-controller: no goodbye, its
// etcd lease runs out), then, every interval, reads the new lines of the log
// FILEs (the other controllers' logs) for the first "msg=leading" line and runs
// CMD (lvsctl get controllers -o json against a surviving controller) until
// CMD lists a controller other than ADDR as the leader. It prints
//
//	LEADER ms=1104.0 seen_ms=1320.5 leader=203.0.113.2:7443 attempts=9
//
// ms: from the death to the time= of the new leader's "leading" line (its own
// clock, the guest's: when it won the election); seen_ms: to the first CMD
// that showed it (an upper bound: each CMD is an exec and a TLS handshake,
// tens to hundreds of ms in the emulated guest). It exits 1 if CMD showed no
// new leader within the limit, or no log said "leading" by then.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// leaderLog is one log FILE read from where it ended before the death.
type leaderLog struct {
	path string
	off  int64
}

// leadingAt returns the time= of the first "msg=leading" line written to the
// log since it was last read, if any.
func (l *leaderLog) leadingAt() (time.Time, bool) {
	f, err := os.Open(l.path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return time.Time{}, false
	}
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadString('\n')
		if err != nil { // a partial last line is read again next time
			return time.Time{}, false
		}
		l.off += int64(len(line))
		if !strings.Contains(line, " msg=leading ") {
			continue
		}
		for _, w := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(w, "time="); ok {
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
					return t, true
				}
			}
		}
	}
}

func runLeader(args []string) error {
	var cmdArgs []string
	if i := slices.Index(args, "--"); i >= 0 {
		cmdArgs = args[i+1:]
		args = args[:i]
	}
	fs := flag.NewFlagSet("leader", flag.ContinueOnError)
	pidFlag := fs.Int("kill", 0, "the leading controller's pid, to SIGKILL")
	old := fs.String("old", "", "the leading controller's address (as lvsctl get controllers lists it)")
	logList := fs.String("log", "", "the other controllers' logs, comma-separated")
	interval := fs.Duration("interval", 50*time.Millisecond, "time between reads")
	limit := fs.Duration("limit", 15*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || len(cmdArgs) == 0 || *pidFlag <= 1 || *old == "" || *logList == "" {
		usage()
	}
	var logs []*leaderLog
	for _, p := range strings.Split(*logList, ",") {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("--log: %w", err)
		}
		logs = append(logs, &leaderLog{path: p, off: st.Size()})
	}

	t0 := time.Now()
	if err := syscall.Kill(*pidFlag, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d: %w", *pidFlag, err)
	}
	var (
		logged, seen time.Time
		newLeader    string
		attempts     int
		lastOut      string
	)
	deadline := t0.Add(*limit)
	for time.Now().Before(deadline) && (logged.IsZero() || newLeader == "") {
		if logged.IsZero() {
			for _, l := range logs {
				if t, ok := l.leadingAt(); ok {
					logged = t
					break
				}
			}
		}
		if newLeader == "" {
			attempts++
			cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			lastOut = strings.TrimSpace(out.String())
			if err == nil {
				var list []struct {
					Address string `json:"address"`
					Leader  bool   `json:"leader"`
				}
				if json.Unmarshal(out.Bytes(), &list) == nil {
					for _, c := range list {
						if c.Leader && c.Address != *old {
							newLeader, seen = c.Address, time.Now()
						}
					}
				}
			}
		}
		if logged.IsZero() || newLeader == "" {
			time.Sleep(*interval)
		}
	}
	if newLeader == "" {
		return fmt.Errorf("no controller but %s led within %v of the death (%d reads; the last said: %s)", *old, *limit, attempts, lastOut)
	}
	loggedMS := "-"
	if !logged.IsZero() {
		loggedMS = strconv.FormatFloat(ms(logged.Sub(t0)), 'f', 1, 64)
	}
	stdout.Printf("LEADER ms=%s seen_ms=%.1f leader=%s attempts=%d death_at=%s",
		loggedMS, ms(seen.Sub(t0)), newLeader, attempts, t0.UTC().Format("15:04:05.000"))
	if logged.IsZero() {
		return fmt.Errorf("no log of %s said msg=leading within %v of the death", *logList, *limit)
	}
	return nil
}

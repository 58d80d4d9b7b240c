// Command lab-health is the lab's tool for health checks and drain (issue 9:
// deploy/lab/scenarios/rtsp-ffmpeg.sh, health.sh, drain.sh).
//
//	lab-health probe ADDRESS [--check rtsp] [--port 554] [--timeout 1s] [--url URL]
//	                 [--describe] [--path P] [--expect E] [--body B] [-n N] [--every D]
//	lab-health reals [--fields F,F...] < JSON
//	lab-health ipvs  --ns NS,NS... [--real ADDR]
//	lab-health wait  --ns NS,NS... --real ADDR --weight W|absent [--since UPTIME] [--limit D]
//	lab-health watch --ns NS,NS... --real ADDR [--interval 50ms] [--stop-file F] [--duration D]
//	lab-health sample NAME=HOST:PORT/PID... [-n 20] [--every 1s]
//
// probe runs the agent's own check (agent/checker.Probe, the code every agent
// runs against its real servers) once, or N times every D, against ADDRESS,
// from the namespace it is started in, and prints one line per check:
//
//	PROBE up check=rtsp target=198.51.100.9:554 ms=4.1
//	PROBE down check=rtsp target=198.51.100.9:554 ms=0.3 reason=refused error="..."
//
// reason names the checker's sentinel error the failure matches (timeout,
// refused, unreachable, status, cseq, nosdp, body, malformed, closed, tls,
// exit; other if none). The exit status is 0 only if every check was up.
//
// reals reads `lvsctl status cluster NAME -o json` and prints one line per
// director and real server, "DIRECTOR ADDRESS VALUE...", the values of the
// named fields of directors[].reals[] in order (default weight, health,
// drained, removing, activeConns, inactiveConns, persistentConns): numbers and
// booleans bare, strings bare unless empty or holding a blank (then quoted),
// "-" for a field the object lacks. The guest has no jq.
//
// ipvs, wait and watch read IPVS in the named network namespaces with the
// agent's own IPVS backend (agent/ipvs: it decodes the persistent-connection
// counts, which ipvsadm shows as --persistent-conn), without an exec per
// sample. ipvs prints each real server of each firewall-mark service once:
//
//	dir-a fwm=1 198.51.100.2 weight=0 active=1 inactive=0 persistent=1
//
// wait polls every 20 ms until ADDRESS has weight W in every service of every
// namespace that has it (absent: in no service of any namespace), and prints
//
//	WAIT ok ms=2034.1 dir-a=1980.3 dir-b=2034.1
//
// with the milliseconds since --since (an uptime in seconds, /proc/uptime's
// clock, as the scenario's uptime_s prints it: taken before the change that is
// waited for) or since the start, first for all, then when each namespace
// first showed it; or, after --limit, "WAIT timeout ms=... dir-a=- ... now
// dir-a=100 dir-b=0" and status 1.
//
// watch samples ADDRESS in every namespace each interval until the stop file
// appears, SIGTERM/SIGINT or the duration, and prints a line at each change,
// then a result:
//
//	WATCH +1234.5ms up=812.34 dir-a=0/1/0/1 dir-b=0/0/0/1
//	WATCH RESULT samples 200 errors 0 dir-a=100,0 dir-b=100,0 zero_at=845.12
//
// (weight/active/inactive/persistent, "absent" or "mixed" over several
// services; the result lists each namespace's weights in the order seen,
// and zero_at the uptime from which every count of ADDRESS stayed 0 in every
// namespace, "-" if they did not end at 0, "always" if they never left it).
//
// sample reads, N times every D, each named agent's go_goroutines from its
// /metrics at HOST:PORT and the number of its open files (/proc/PID/fd), and
// prints "NAME GOROUTINES FDS" per agent per sample: one process where a
// shell loop of wget and ls would load the emulated guest it measures.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lvsctl/lvsctl/agent/checker"
	"github.com/lvsctl/lvsctl/agent/ipvs"
	"github.com/lvsctl/lvsctl/health"
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  lab-health probe ADDRESS [--check rtsp] [--port 554] [--timeout 1s] [--url URL] [--describe]
                   [--path P] [--expect E] [--body B] [-n N] [--every D]
  lab-health reals [--fields F,F...] < JSON
  lab-health ipvs  --ns NS,NS... [--real ADDR]
  lab-health wait  --ns NS,NS... --real ADDR --weight W|absent [--since UPTIME] [--limit D]
  lab-health watch --ns NS,NS... --real ADDR [--interval 50ms] [--stop-file F] [--duration D]
  lab-health sample NAME=HOST:PORT/PID... [-n 20] [--every 1s]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "probe":
		err = runProbe(os.Args[2:])
	case "reals":
		err = runReals(os.Args[2:], os.Stdin)
	case "ipvs":
		err = runIPVS(os.Args[2:])
	case "wait":
		err = runWait(os.Args[2:])
	case "watch":
		err = runWatch(os.Args[2:])
	case "sample":
		err = runSample(os.Args[2:])
	default:
		usage()
	}
	var fail failed
	switch {
	case errors.As(err, &fail):
		os.Exit(1) // the command said what went wrong already
	case err != nil:
		fmt.Fprintln(os.Stderr, "lab-health:", err)
		os.Exit(1)
	}
}

// failed is a negative verdict already printed (a down check, a wait that timed out).
type failed struct{}

func (failed) Error() string { return "failed" }

// parse parses args with flags allowed after the positional ones, as the
// scenarios write them.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// ---- probe ---------------------------------------------------------------

// reasons are the checker's sentinel errors, by the name probe prints.
var reasons = []struct {
	name string
	err  error
}{
	{"timeout", checker.ErrTimeout}, {"refused", checker.ErrRefused}, {"unreachable", checker.ErrUnreachable},
	{"status", checker.ErrStatus}, {"cseq", checker.ErrCSeq}, {"nosdp", checker.ErrNoSDP},
	{"body", checker.ErrBody}, {"malformed", checker.ErrMalformed}, {"closed", checker.ErrClosed},
	{"tls", checker.ErrTLS}, {"exit", checker.ErrExit},
}

func reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			return r.name
		}
	}
	return "other"
}

func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	check := fs.String("check", "rtsp", "kind of check: tcp, http, https, rtsp, udp")
	port := fs.Uint("port", 554, "port to check")
	timeout := fs.Duration("timeout", time.Second, "timeout of one check")
	url := fs.String("url", "", "rtsp: the requests' URL (default rtsp://ADDRESS:PORT/)")
	describe := fs.Bool("describe", false, "rtsp: DESCRIBE too, and expect SDP")
	path := fs.String("path", "", "http, https: the path")
	expect := fs.String("expect", "", "http, https: the status range; udp: a substring of the reply")
	body := fs.String("body", "", "http, https: a substring of the body")
	n := fs.Int("n", 1, "number of checks")
	every := fs.Duration("every", time.Second, "time between two checks")
	pos, err := parse(fs, args)
	if err != nil || len(pos) != 1 || *n < 1 || *port > 65535 {
		usage()
	}
	addr, err := netip.ParseAddr(pos[0])
	if err != nil {
		return fmt.Errorf("address %q: %w", pos[0], err)
	}
	spec := health.Spec{
		Kind: health.Kind(*check), Port: uint16(*port), Timeout: *timeout,
		URL: *url, Describe: *describe, Path: *path, Expect: *expect, Body: *body,
	}
	// The interval is the probe's own loop here; the spec's must only exceed the timeout.
	spec.Interval = max(*timeout, health.DefaultInterval)
	if err := spec.Validate(); err != nil {
		return err
	}
	allUp := true
	for i := range *n {
		if i > 0 {
			time.Sleep(*every)
		}
		t0 := time.Now()
		err := checker.Probe(context.Background(), addr, spec)
		took := ms(time.Since(t0))
		target := netip.AddrPortFrom(addr, spec.Port)
		if err == nil {
			fmt.Printf("PROBE up check=%s target=%s ms=%.1f\n", spec.Kind, target, took)
			continue
		}
		allUp = false
		fmt.Printf("PROBE down check=%s target=%s ms=%.1f reason=%s error=%q\n", spec.Kind, target, took, reason(err), err.Error())
	}
	if !allUp {
		return failed{}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ---- reals ---------------------------------------------------------------

func runReals(args []string, in io.Reader) error {
	fs := flag.NewFlagSet("reals", flag.ContinueOnError)
	fields := fs.String("fields", "weight,health,drained,removing,activeConns,inactiveConns,persistentConns",
		"fields of each real server, in order")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		usage()
	}
	var doc struct {
		Directors []struct {
			Name  string           `json:"name"`
			Reals []map[string]any `json:"reals"`
		} `json:"directors"`
	}
	dec := json.NewDecoder(in)
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("status cluster JSON: %w", err)
	}
	names := strings.Split(*fields, ",")
	for _, d := range doc.Directors {
		for _, r := range d.Reals {
			line := []string{d.Name, text(r["address"])}
			for _, f := range names {
				v, ok := r[f]
				if !ok {
					line = append(line, "-")
					continue
				}
				line = append(line, text(v))
			}
			fmt.Println(strings.Join(line, " "))
		}
	}
	return nil
}

// text is a JSON value as reals prints it.
func text(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if v == "" || strings.ContainsAny(v, " \t\n\"") {
			return strconv.Quote(v)
		}
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// ---- ipvs, wait, watch -----------------------------------------------------

// director is the IPVS table of one namespace.
type director struct {
	name string
	k    *ipvs.Kernel
}

func openDirectors(list string) ([]director, error) {
	if list == "" {
		return nil, errors.New("--ns: no namespace")
	}
	var out []director
	for _, ns := range strings.Split(list, ",") {
		k, err := ipvs.New(ipvs.WithNetNSPath("/run/netns/" + ns))
		if err != nil {
			return nil, fmt.Errorf("namespace %s: %w", ns, err)
		}
		out = append(out, director{name: ns, k: k})
	}
	return out, nil
}

// realState is one real server in one namespace: "absent", "mixed" (several
// services disagree), or its weight and counts.
type realState struct {
	present, mixed                       bool
	weight, active, inactive, persistent uint32
}

func (s realState) weightText() string {
	switch {
	case !s.present:
		return "absent"
	case s.mixed:
		return "mixed"
	}
	return strconv.FormatUint(uint64(s.weight), 10)
}

func (s realState) String() string {
	if !s.present || s.mixed {
		return s.weightText()
	}
	return fmt.Sprintf("%d/%d/%d/%d", s.weight, s.active, s.inactive, s.persistent)
}

func (s realState) zero() bool { return s.active == 0 && s.inactive == 0 && s.persistent == 0 }

// state reads real in d's services: the counts summed, the weight if every
// service agrees.
func (d director) state(real netip.Addr) (realState, error) {
	svcs, err := d.k.Stats()
	if err != nil {
		return realState{}, err
	}
	var s realState
	for _, svc := range svcs {
		for _, dst := range svc.Destinations {
			if dst.Address != real {
				continue
			}
			if s.present && dst.Weight != s.weight {
				s.mixed = true
			}
			s.present = true
			s.weight = dst.Weight
			s.active += dst.ActiveConns
			s.inactive += dst.InactiveConns
			s.persistent += dst.PersistentConns
		}
	}
	return s, nil
}

func runIPVS(args []string) error {
	fs := flag.NewFlagSet("ipvs", flag.ContinueOnError)
	nsList := fs.String("ns", "", "network namespaces, comma-separated")
	realFlag := fs.String("real", "", "only this real server")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		usage()
	}
	var only netip.Addr
	if *realFlag != "" {
		var err error
		if only, err = netip.ParseAddr(*realFlag); err != nil {
			return fmt.Errorf("--real: %w", err)
		}
	}
	dirs, err := openDirectors(*nsList)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		svcs, err := d.k.Stats()
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		for _, svc := range svcs {
			for _, dst := range svc.Destinations {
				if only.IsValid() && dst.Address != only {
					continue
				}
				fmt.Printf("%s fwm=%d %s weight=%d active=%d inactive=%d persistent=%d\n", d.name, svc.FWMark,
					dst.Address, dst.Weight, dst.ActiveConns, dst.InactiveConns, dst.PersistentConns)
			}
		}
	}
	return nil
}

// uptime is /proc/uptime's clock, the one the scenarios' uptime_s prints.
func uptime() (float64, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, errors.New("/proc/uptime: empty")
	}
	return strconv.ParseFloat(f[0], 64)
}

func runWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ContinueOnError)
	nsList := fs.String("ns", "", "network namespaces, comma-separated")
	realFlag := fs.String("real", "", "the real server")
	weight := fs.String("weight", "", "the weight to wait for, or absent")
	since := fs.Float64("since", -1, "count from this uptime (seconds), not from the start")
	limit := fs.Duration("limit", 10*time.Second, "give up after this long (from the start)")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 || *weight == "" {
		usage()
	}
	if *weight != "absent" {
		if _, err := strconv.ParseUint(*weight, 10, 32); err != nil {
			return fmt.Errorf("--weight %q: a number or absent", *weight)
		}
	}
	real, err := netip.ParseAddr(*realFlag)
	if err != nil {
		return fmt.Errorf("--real: %w", err)
	}
	dirs, err := openDirectors(*nsList)
	if err != nil {
		return err
	}
	t0, err := uptime()
	if err != nil {
		return err
	}
	if *since >= 0 {
		t0 = *since
	}
	first := make([]float64, len(dirs)) // uptime each first showed it, 0 if not yet
	now := make([]realState, len(dirs))
	deadline := time.Now().Add(*limit)
	for {
		all := true
		for i, d := range dirs {
			s, err := d.state(real)
			if err != nil {
				return fmt.Errorf("%s: %w", d.name, err)
			}
			now[i] = s
			if s.weightText() != *weight {
				all = false
				continue
			}
			if first[i] == 0 {
				if first[i], err = uptime(); err != nil {
					return err
				}
			}
		}
		up, err := uptime()
		if err != nil {
			return err
		}
		if all || time.Now().After(deadline) {
			line := fmt.Sprintf("WAIT ok ms=%.1f", (up-t0)*1000)
			if !all {
				line = fmt.Sprintf("WAIT timeout ms=%.1f", (up-t0)*1000)
			}
			for i, d := range dirs {
				if first[i] == 0 {
					line += fmt.Sprintf(" %s=-", d.name)
				} else {
					line += fmt.Sprintf(" %s=%.1f", d.name, (first[i]-t0)*1000)
				}
			}
			if !all {
				line += " now"
				for i, d := range dirs {
					line += fmt.Sprintf(" %s=%s", d.name, now[i].weightText())
				}
			}
			fmt.Println(line)
			if !all {
				return failed{}
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func runWatch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	nsList := fs.String("ns", "", "network namespaces, comma-separated")
	realFlag := fs.String("real", "", "the real server")
	interval := fs.Duration("interval", 50*time.Millisecond, "time between two samples")
	stopFile := fs.String("stop-file", "", "stop when this file exists")
	duration := fs.Duration("duration", 0, "stop after this long (0: until told)")
	if pos, err := parse(fs, args); err != nil || len(pos) != 0 {
		usage()
	}
	real, err := netip.ParseAddr(*realFlag)
	if err != nil {
		return fmt.Errorf("--real: %w", err)
	}
	dirs, err := openDirectors(*nsList)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	start := time.Now()
	fmt.Println("WATCH READY")
	var (
		last     []realState
		seen     = make([][]string, len(dirs)) // weights in the order seen
		samples  int
		errs     int
		zeroAt   = -1.0 // uptime since which every count was 0; -1 if not now
		anyCount bool   // some count was ever non-zero
	)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
sampling:
	for {
		cur := make([]realState, len(dirs))
		ok := true
		for i, d := range dirs {
			s, err := d.state(real)
			if err != nil {
				fmt.Fprintf(os.Stderr, "lab-health: %s: %v\n", d.name, err)
				errs++
				ok = false
				break
			}
			cur[i] = s
		}
		if ok {
			samples++
			up, _ := uptime()
			zero := true
			for i, s := range cur {
				if w := s.weightText(); !slices.Contains(seen[i], w) {
					seen[i] = append(seen[i], w)
				}
				if !s.zero() {
					zero, anyCount = false, true
				}
			}
			switch {
			case zero && zeroAt < 0:
				zeroAt = up
			case !zero:
				zeroAt = -1
			}
			if !slices.Equal(cur, last) {
				line := fmt.Sprintf("WATCH +%.1fms up=%.2f", ms(time.Since(start)), up)
				for i, d := range dirs {
					line += fmt.Sprintf(" %s=%s", d.name, cur[i])
				}
				fmt.Println(line)
				last = cur
			}
		}
		if *stopFile != "" {
			if _, err := os.Stat(*stopFile); err == nil {
				break sampling
			}
		}
		select {
		case <-ctx.Done():
			break sampling
		case <-tick.C:
		}
	}
	line := fmt.Sprintf("WATCH RESULT samples %d errors %d", samples, errs)
	for i, d := range dirs {
		line += fmt.Sprintf(" %s=%s", d.name, strings.Join(seen[i], ","))
	}
	if zeroAt >= 0 && anyCount {
		line += fmt.Sprintf(" zero_at=%.2f", zeroAt)
	} else if zeroAt >= 0 {
		line += " zero_at=always"
	} else {
		line += " zero_at=-"
	}
	fmt.Println(line)
	return nil
}

// ---- sample ----------------------------------------------------------------

// agentProc is one agent sample reads: its /metrics address and its pid.
type agentProc struct {
	name, metrics string
	pid           int
}

func runSample(args []string) error {
	fs := flag.NewFlagSet("sample", flag.ContinueOnError)
	n := fs.Int("n", 20, "number of samples")
	every := fs.Duration("every", time.Second, "time between two samples")
	pos, err := parse(fs, args)
	if err != nil || len(pos) == 0 || *n < 1 {
		usage()
	}
	var agents []agentProc
	for _, a := range pos {
		name, rest, ok1 := strings.Cut(a, "=")
		hostPort, pidText, ok2 := strings.Cut(rest, "/")
		pid, err := strconv.Atoi(pidText)
		if !ok1 || !ok2 || err != nil || name == "" || hostPort == "" {
			return fmt.Errorf("%q: want NAME=HOST:PORT/PID", a)
		}
		agents = append(agents, agentProc{name: name, metrics: "http://" + hostPort + "/metrics", pid: pid})
	}
	client := &http.Client{Timeout: 5 * time.Second}
	next := time.Now()
	for i := range *n {
		if i > 0 {
			next = next.Add(*every)
			time.Sleep(time.Until(next))
		}
		for _, a := range agents {
			g, err := goroutines(client, a.metrics)
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", a.pid))
			if err != nil {
				return fmt.Errorf("%s: %w", a.name, err)
			}
			fmt.Printf("%s %d %d\n", a.name, g, len(fds))
		}
	}
	return nil
}

// goroutines is go_goroutines from the /metrics at url.
func goroutines(client *http.Client, url string) (int, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("%s: go_goroutines %q: %w", url, v, err)
			}
			return int(f), nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", url, err)
	}
	return 0, fmt.Errorf("%s: no go_goroutines", url)
}

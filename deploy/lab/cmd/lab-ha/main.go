// Command lab-ha measures director failover in the VM lab
// (deploy/lab/scenarios/ha-*.sh and bench-ha.sh), and a leading controller's
// replacement (ha-controllers.sh).
//
//	lab-ha watch    --ns dir-a,dir-b --addr 192.0.2.10,198.51.100.254
//	                [--interval 10ms] [--stop-file FILE] [--duration D]
//	lab-ha takeover HOST:PORT [--kill PID,...] [--down NS] [--interval 10ms] [--timeout 200ms]
//	                [--limit 30s] [-- CMD [ARG...]]
//	lab-ha field    NAME FIELD [NAME FIELD...] < JSON
//	lab-ha holders  --ns NS,NS... ADDR...
//	lab-ha leader   --kill PID --old ADDR --log FILE[,FILE...] [--interval 50ms] [--limit 15s] -- CMD [ARG...]
//
// leader (leader.go) times a leading controller's death: SIGKILL, then until
// CMD (lvsctl get controllers -o json) shows another leader and its log says
// when it began to lead.
//
// watch runs in the guest's root namespace and samples, every interval, which
// of the named network namespaces holds each address on a link that is up
// (administratively up and operationally up or unknown: an address on a link
// that is down answers nobody). It prints a line each time the holders of an
// address change,
//
//	WATCH +1234.5ms 1764480000123 192.0.2.10 dir-b
//
// (milliseconds since the watch began, the wall clock in Unix milliseconds,
// the address, its holders joined by "," or "-" for none), and at the end,
// on SIGTERM/SIGINT, the stop file appearing or the duration passing (SIGUSR1
// prints it without stopping):
//
//	WATCH RESULT samples N dual D errors E
//	WATCH DUAL 192.0.2.10 D1
//
// A sample is dual when two namespaces hold one address at once. Reading the
// namespaces one after the other could see an address that moved between two
// reads in both places; so a sample reads every namespace, then reads again
// the ones that held an address, and counts two holders only if the first
// still holds it after the second was seen holding it. The exit status is 0
// only if no sample was dual and none failed.
//
// takeover measures how long a death takes to heal, from the client's side:
// it notes the time, causes the death (SIGKILL to the --kill pids, then every
// link of namespace --down down, each a system call; then CMD if given), and
// once that is done (until then the old director may still forward) starts a
// new TCP connection to HOST:PORT every interval, each with its own
// connect-and-answer timeout, until one is answered end to end (an RTSP
// OPTIONS on 554, a line elsewhere, as lab-client does: the answer names the
// real server). It prints
//
//	TAKEOVER ms=412.3 cmd_ms=35.1 attempts=41 server=rs2
//
// ms counting from the death's first step, cmd_ms how long the death took.
// It exits 1 if no connection was answered within the limit, or the death
// failed.
//
// holders prints, for each ADDR, one line: the namespaces that hold it on an
// up link (as watch counts them), space-separated, empty for none. One
// process for what "ip -n NS addr" per namespace would take several for.
//
// field reads a JSON document (lvsctl status -o json) and prints FIELD of the
// shallowest object whose "name" is NAME, as raw JSON ("ACTIVE" with its
// quotes, 3, true, [...]); nothing, and status 1, if there is none. NAME may
// be a path, A/B: the object named B inside the one named A (dir-b/dir-a
// hostReachable: what dir-b reports of its peer dir-a). The guest has no jq,
// and sed cannot tell a director's object from the peers nested in it.
// Several NAME FIELD pairs print one line each (empty for one not found, and
// the status is then 1): one process for a check that reads many fields, as
// every exec counts in the emulated guest.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	stdout = log.New(os.Stdout, "", 0)
	stderr = log.New(os.Stderr, "lab-ha: ", 0)
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  lab-ha watch    --ns NS,NS... --addr IP,IP... [--interval 10ms] [--stop-file FILE] [--duration D]
  lab-ha takeover HOST:PORT [--kill PID,...] [--down NS] [--interval 10ms] [--timeout 200ms] [--limit 30s] [-- CMD [ARG...]]
  lab-ha field    NAME FIELD [NAME FIELD...] < JSON
  lab-ha holders  --ns NS,NS... ADDR...
  lab-ha leader   --kill PID --old ADDR --log FILE[,FILE...] [--interval 50ms] [--limit 15s] -- CMD [ARG...]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "watch":
		err = runWatch(os.Args[2:])
	case "takeover":
		err = runTakeover(os.Args[2:])
	case "field":
		err = runField(os.Args[2:])
	case "holders":
		err = runHolders(os.Args[2:])
	case "leader":
		err = runLeader(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		stderr.Print(err)
		os.Exit(1)
	}
}

// ---- watch -----------------------------------------------------------------

// director is one namespace the watch reads, through a netlink handle opened
// in it once.
type director struct {
	name string
	h    *netlink.Handle
}

// held reads which of addrs d holds on an up link. A dump that a concurrent
// change interrupted (the kernel says so: the moment an address moves) is read
// again, a few times, rather than counted as a failed sample.
func (d director) held(addrs []netip.Addr) (map[netip.Addr]bool, error) {
	var (
		out map[netip.Addr]bool
		err error
	)
	for range 5 {
		if out, err = d.read(addrs); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return out, err
}

func (d director) read(addrs []netip.Addr) (map[netip.Addr]bool, error) {
	links, err := d.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("%s: links: %w", d.name, err)
	}
	up := map[int]bool{}
	for _, l := range links {
		a := l.Attrs()
		up[a.Index] = a.Flags&net.FlagUp != 0 &&
			(a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
	}
	list, err := d.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("%s: addresses: %w", d.name, err)
	}
	out := map[netip.Addr]bool{}
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !up[a.LinkIndex] {
			continue
		}
		ip = ip.Unmap()
		if slices.Contains(addrs, ip) {
			out[ip] = true
		}
	}
	return out, nil
}

type watch struct {
	dirs    []director
	addrs   []netip.Addr
	start   time.Time
	last    map[netip.Addr]string // holders at the previous sample
	samples int
	dual    int
	dualBy  map[netip.Addr]int
	errs    int
}

// sample reads every director once (and again those holding something, see
// the package comment) and records the holders of each address.
func (w *watch) sample() {
	first := make([]map[netip.Addr]bool, len(w.dirs))
	for i, d := range w.dirs {
		h, err := d.held(w.addrs)
		if err != nil {
			w.errs++
			stderr.Print(err)
			return
		}
		first[i] = h
	}
	now := time.Now()
	w.samples++
	anyDual := false
	for _, a := range w.addrs {
		var holders []string
		for i, d := range w.dirs {
			if first[i][a] {
				holders = append(holders, d.name)
			}
		}
		if len(holders) > 1 {
			// Every holder but the last was read before the last was seen
			// holding: read them again. Still holding means both held at the
			// moment the last one was read.
			confirmed := 1
			for i, d := range w.dirs[:len(w.dirs)-1] {
				if !first[i][a] || d.name == holders[len(holders)-1] {
					continue
				}
				again, err := d.held([]netip.Addr{a})
				if err != nil {
					w.errs++
					stderr.Print(err)
					continue
				}
				if again[a] {
					confirmed++
				}
			}
			if confirmed > 1 {
				anyDual = true
				w.dualBy[a]++
			}
		}
		text := "-"
		if len(holders) > 0 {
			text = strings.Join(holders, ",")
		}
		if prev, ok := w.last[a]; !ok || prev != text {
			stdout.Printf("WATCH +%.1fms %d %s %s", float64(now.Sub(w.start).Microseconds())/1000, now.UnixMilli(), a, text)
			w.last[a] = text
		}
	}
	if anyDual {
		w.dual++
	}
}

func (w *watch) report() {
	stdout.Printf("WATCH RESULT samples %d dual %d errors %d", w.samples, w.dual, w.errs)
	for _, a := range w.addrs {
		stdout.Printf("WATCH DUAL %s %d", a, w.dualBy[a])
	}
}

func runWatch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	nsList := fs.String("ns", "", "network namespaces (ip netns names), comma-separated")
	addrList := fs.String("addr", "", "addresses to watch, comma-separated")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between samples")
	stopFile := fs.String("stop-file", "", "stop when this file exists")
	duration := fs.Duration("duration", 0, "stop after this long (0: until told)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *nsList == "" || *addrList == "" {
		usage()
	}
	w := &watch{start: time.Now(), last: map[netip.Addr]string{}, dualBy: map[netip.Addr]int{}}
	for _, s := range strings.Split(*addrList, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--addr: %w", err)
		}
		w.addrs = append(w.addrs, a)
	}
	dirs, err := openDirectors(*nsList)
	if err != nil {
		return err
	}
	w.dirs = dirs

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	var deadline <-chan time.Time
	if *duration > 0 {
		deadline = time.After(*duration)
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	stdout.Printf("WATCH READY %s %s", *nsList, *addrList)
	w.sample()
loop:
	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGUSR1 {
				break loop
			}
			w.report()
		case <-deadline:
			break loop
		case <-tick.C:
			w.sample()
			// The stop file is looked at every 20th sample: a stat per 10 ms
			// costs little, but nothing needs a faster stop.
			if *stopFile != "" && w.samples%20 == 0 {
				if _, err := os.Stat(*stopFile); err == nil {
					break loop
				}
			}
		}
	}
	w.report()
	if w.dual > 0 || w.errs > 0 {
		return fmt.Errorf("%d dual-active samples, %d failed samples of %d", w.dual, w.errs, w.samples)
	}
	return nil
}

// openDirectors opens a route netlink handle in each namespace of a
// comma-separated list.
func openDirectors(list string) ([]director, error) {
	var dirs []director
	for _, name := range strings.Split(list, ",") {
		ns, err := netns.GetFromName(name)
		if err != nil {
			return nil, fmt.Errorf("--ns %s: %w", name, err)
		}
		// Route sockets only: the default opens every family, and a kernel
		// without the xfrm module refuses that.
		h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		ns.Close()
		if err != nil {
			return nil, fmt.Errorf("--ns %s: netlink: %w", name, err)
		}
		dirs = append(dirs, director{name: name, h: h})
	}
	return dirs, nil
}

func runHolders(args []string) error {
	fs := flag.NewFlagSet("holders", flag.ContinueOnError)
	nsList := fs.String("ns", "", "network namespaces (ip netns names), comma-separated")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 || *nsList == "" {
		usage()
	}
	var addrs []netip.Addr
	for _, s := range fs.Args() {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("address: %w", err)
		}
		addrs = append(addrs, a)
	}
	dirs, err := openDirectors(*nsList)
	if err != nil {
		return err
	}
	held := make([]map[netip.Addr]bool, len(dirs))
	for i, d := range dirs {
		if held[i], err = d.held(addrs); err != nil {
			return err
		}
	}
	for _, a := range addrs {
		var names []string
		for i, d := range dirs {
			if held[i][a] {
				names = append(names, d.name)
			}
		}
		stdout.Print(strings.Join(names, " "))
	}
	return nil
}

// ---- takeover --------------------------------------------------------------

type answer struct {
	server  string
	started time.Time
	err     error
}

func runTakeover(args []string) error {
	var cmdArgs []string
	if i := slices.Index(args, "--"); i >= 0 {
		cmdArgs = args[i+1:]
		args = args[:i]
	}
	fs := flag.NewFlagSet("takeover", flag.ContinueOnError)
	interval := fs.Duration("interval", 10*time.Millisecond, "time between new connections")
	timeout := fs.Duration("timeout", 200*time.Millisecond, "limit of each connection's connect and answer")
	limit := fs.Duration("limit", 30*time.Second, "give up after this long")
	killList := fs.String("kill", "", "the death: pids to SIGKILL, comma-separated")
	downNS := fs.String("down", "", "the death: then every link but lo of this network namespace down")
	var addr string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		addr, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || addr == "" ||
		(len(cmdArgs) == 0 && *killList == "" && *downNS == "") {
		usage()
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	var pids []int
	if *killList != "" {
		for _, f := range strings.Split(*killList, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 1 {
				return fmt.Errorf("--kill: %q is not a pid", f)
			}
			pids = append(pids, pid)
		}
	}
	// The links are found before the death, so the death itself is a few
	// system calls: a kill and a netlink request per link, microseconds
	// apart (an ip command takes tens to hundreds of ms in the emulated
	// guest, and the old director's kernel forwards until its links go).
	var nsHandle *netlink.Handle
	var links []netlink.Link
	if *downNS != "" {
		ns, err := netns.GetFromName(*downNS)
		if err != nil {
			return fmt.Errorf("--down %s: %w", *downNS, err)
		}
		if nsHandle, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("--down %s: netlink: %w", *downNS, err)
		}
		all, err := nsHandle.LinkList()
		if err != nil {
			return fmt.Errorf("--down %s: links: %w", *downNS, err)
		}
		for _, l := range all {
			if l.Attrs().Flags&net.FlagLoopback == 0 {
				links = append(links, l)
			}
		}
	}

	t0 := time.Now()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill -9 %d: %w", pid, err)
		}
	}
	for _, l := range links {
		if err := nsHandle.LinkSetDown(l); err != nil {
			return fmt.Errorf("--down %s: %s: %w", *downNS, l.Attrs().Name, err)
		}
	}
	if len(cmdArgs) > 0 {
		cmd := exec.Command(cmdArgs[0], cmdArgs[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("the death command %q: %w", strings.Join(cmdArgs, " "), err)
		}
	}
	cmdDone := time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	answers := make(chan answer, 64)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	attempts := 0
	try := func() {
		attempts++
		go func(started time.Time) {
			server, err := ask(ctx, addr, *timeout)
			select {
			case answers <- answer{server: server, started: started, err: err}:
			case <-ctx.Done():
			}
		}(time.Now())
	}
	try()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no connection to %s answered within %v of the death (%d attempts; last error: %w)",
				addr, *limit, attempts, lastErr)
		case <-tick.C:
			try()
		case a := <-answers:
			if a.err != nil {
				lastErr = a.err
				continue
			}
			at := time.Now()
			stdout.Printf("TAKEOVER ms=%.1f cmd_ms=%.1f attempts=%d server=%s started_ms=%.1f death_at=%s",
				ms(at.Sub(t0)), ms(cmdDone.Sub(t0)), attempts, a.server, ms(a.started.Sub(t0)), t0.UTC().Format("15:04:05.000"))
			return nil
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ask opens a new connection to addr and returns the name the real server
// answers with: RTSP OPTIONS on port 554, a line on any other port.
func ask(ctx context.Context, addr string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	if err := c.SetDeadline(deadline); err != nil {
		return "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	r := bufio.NewReader(c)
	if port != "554" {
		if _, err := fmt.Fprintf(c, "lab-ha\n"); err != nil {
			return "", err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(line), nil
	}
	if _, err := fmt.Fprintf(c, "OPTIONS rtsp://%s/ RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: lab-ha\r\n\r\n", host); err != nil {
		return "", err
	}
	status, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(status, "RTSP/1.0 200") {
		return "", fmt.Errorf("answered %q", strings.TrimSpace(status))
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", errors.New("answer without a Server header")
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "server") {
			return strings.TrimSpace(v), nil
		}
	}
}

// ---- field -----------------------------------------------------------------

func runField(args []string) error {
	if len(args) < 2 || len(args)%2 != 0 {
		usage()
	}
	var doc any
	if err := json.NewDecoder(os.Stdin).Decode(&doc); err != nil {
		return fmt.Errorf("reading JSON: %w", err)
	}
	var missing []string
	for i := 0; i < len(args); i += 2 {
		v, err := field(doc, args[i], args[i+1])
		if err != nil {
			missing = append(missing, err.Error())
			stdout.Print("")
			continue
		}
		out, err := json.Marshal(v)
		if err != nil {
			return err
		}
		stdout.Print(string(out))
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// field is FIELD of the object a NAME path leads to.
func field(doc any, path, name string) (any, error) {
	names := strings.Split(path, "/")
	obj := doc
	for i, n := range names {
		var ok bool
		if obj, ok = find(obj, n, i > 0); !ok {
			return nil, fmt.Errorf("no object named %q", strings.Join(names[:i+1], "/"))
		}
	}
	v, ok := obj.(map[string]any)[name]
	if !ok {
		return nil, fmt.Errorf("%s has no field %q", path, name)
	}
	return v, nil
}

// find walks v breadth first for the shallowest object whose "name" is name:
// a director in the status's list is found before a peer of the same name
// nested in another director. With inside, v itself is left out (the next
// step of a path looks inside the object the last one found).
func find(v any, name string, inside bool) (any, bool) {
	queue := []any{v}
	if inside {
		queue = children(v)
	}
	for len(queue) > 0 {
		v, queue = queue[0], queue[1:]
		if m, ok := v.(map[string]any); ok && m["name"] == name {
			return m, true
		}
		queue = append(queue, children(v)...)
	}
	return nil, false
}

// children are the values of an object (in key order: the same answer every
// time) or the elements of an array.
func children(v any) []any {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([]any, 0, len(t))
		for _, k := range keys {
			out = append(out, t[k])
		}
		return out
	case []any:
		return t
	}
	return nil
}

// Command lab-client is the client side of the VM lab (deploy/lab).
//
// Scenarios run it in the client namespace to see where the director sends
// traffic: every answer from lab-responder names the real server, so the
// client prints that name per connection or datagram, or counts them
// (--count-by-server) so a scenario can compare a whole distribution with one
// string. The hold mode keeps connections open and probes them, which is how
// a scenario proves that established connections survive a change or a
// failover.
//
//	lab-client tcp  HOST:PORT... [-n N] [--count-by-server]
//	lab-client udp  HOST:PORT... [-n N] [--count-by-server] [--same-source]
//	lab-client hold HOST:PORT [-n N] [--sport 40000] [--interval 200ms]
//	                [--duration D] [--stop-file FILE] [--reset]
//	lab-client wait HOST:PORT [--timeout 10s]
//
// Port 554 speaks RTSP (OPTIONS with a CSeq); other TCP ports send a line.
// Every network operation has a timeout (--timeout, 2s; for wait, the total
// time to wait, 10s). The exit status is 0 only if every connection,
// datagram or probe got its answer.
//
// tcp and udp take several addresses (a scale scenario sweeps hundreds of
// VIPs in one process): each gets its N tries, in order, and every output
// line starts with the address it is about.
//
// hold opens N connections from source ports sport..sport+N-1, prints
// "conn I sport P server NAME" for each and then "HOLD READY", and probes
// every connection each interval until SIGTERM/SIGINT, the stop file
// appearing, or the duration passing. It then prints one line per
// connection and a final "HOLD RESULT OK|FAIL ..." line; SIGUSR1 prints the
// same report without stopping. A failover may delay probes (or fail some
// while it lasts) and still keep a connection: each connection's line says
// whether it survived (its last probe was answered, by the server it is
// pinned to) and how many probes another server answered (moved), and the
// result line ends with "survived S/N" and "moved M" (connections answered
// by another server at least once). With --reset the connections end with a
// TCP reset instead of a FIN: IPVS then forgets them after its CLOSE timeout
// (10 s) instead of TIME_WAIT's 2 minutes (the drain scenario waits for a
// real server's connection counts to reach 0).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var (
	stdout = log.New(os.Stdout, "", 0) // safe for concurrent use, unbuffered
	stderr = log.New(os.Stderr, "lab-client: ", 0)
)

type options struct {
	n             int
	timeout       time.Duration
	countByServer bool
	sameSource    bool
	sport         int
	interval      time.Duration
	duration      time.Duration
	stopFile      string
	reset         bool
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  lab-client tcp  HOST:PORT... [-n N] [--count-by-server] [--timeout 2s]
  lab-client udp  HOST:PORT... [-n N] [--count-by-server] [--same-source] [--timeout 2s]
  lab-client hold HOST:PORT [-n N] [--sport 40000] [--interval 200ms] [--duration D] [--stop-file FILE] [--reset]
  lab-client wait HOST:PORT [--timeout 10s]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode := os.Args[1]
	var o options
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.IntVar(&o.n, "n", 1, "number of connections, datagrams or held connections")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "timeout of each network operation (wait: total)")
	fs.BoolVar(&o.countByServer, "count-by-server", false, "print 'NAME COUNT' lines sorted by name instead of one name per try")
	fs.BoolVar(&o.sameSource, "same-source", false, "udp: send every datagram from one socket (one source port)")
	fs.IntVar(&o.sport, "sport", 40000, "hold: first source port")
	fs.DurationVar(&o.interval, "interval", 200*time.Millisecond, "hold: time between probes of a connection")
	fs.DurationVar(&o.duration, "duration", 0, "hold: stop after this long (0: until told)")
	fs.StringVar(&o.stopFile, "stop-file", "", "hold: stop when this file exists")
	fs.BoolVar(&o.reset, "reset", false, "hold: end the connections with a TCP reset (SO_LINGER 0), not a FIN")
	fs.Usage = usage
	args, err := parseInterleaved(fs, os.Args[2:])
	multi := mode == "tcp" || mode == "udp"
	if err != nil || len(args) == 0 || (len(args) > 1 && !multi) || o.n < 1 {
		usage()
	}
	for _, addr := range args {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			stderr.Fatalf("bad address %q: %v", addr, err)
		}
	}
	ok := true
	switch mode {
	case "tcp", "udp":
		for _, addr := range args {
			// One address prints as it always did; several say which is which.
			prefix := ""
			if len(args) > 1 {
				prefix = addr + " "
			}
			var answered bool
			if mode == "tcp" {
				answered = runTries(o, prefix, func() (string, error) { return tcpOnce(addr, o.timeout) })
			} else {
				answered = runUDP(addr, prefix, o)
			}
			ok = ok && answered
		}
	case "hold":
		ok = runHold(args[0], o)
	case "wait":
		if !setFlag(fs, "timeout") {
			o.timeout = 10 * time.Second
		}
		ok = runWait(args[0], o.timeout)
	default:
		usage()
	}
	if !ok {
		os.Exit(1)
	}
}

// parseInterleaved lets flags follow the address, as scenarios write them
// ("tcp 192.0.2.10:554 -n 30"); the flag package alone stops at the first
// positional argument.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
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

func setFlag(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// runTries makes o.n tries, prints each answering server (or the counts),
// each line after prefix, and reports whether all of them got an answer.
func runTries(o options, prefix string, try func() (string, error)) bool {
	counts := map[string]int{}
	failures := 0
	for i := 1; i <= o.n; i++ {
		name, err := try()
		if err != nil {
			failures++
			stderr.Printf("try %d: %v", i, err)
			continue
		}
		counts[name]++
		if !o.countByServer {
			stdout.Print(prefix + name)
		}
	}
	if o.countByServer {
		names := make([]string, 0, len(counts))
		for name := range counts {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			stdout.Printf("%s%s %d", prefix, name, counts[name])
		}
		if failures > 0 {
			stdout.Printf("%serrors %d", prefix, failures)
		}
	}
	return failures == 0
}

// prober asks one server for its name over an open TCP connection.
type prober struct {
	conn    net.Conn
	r       *bufio.Reader
	rtsp    bool
	host    string
	cseq    int
	timeout time.Duration
}

func newProber(c net.Conn, addr string, timeout time.Duration) *prober {
	host, port, _ := net.SplitHostPort(addr)
	return &prober{conn: c, r: bufio.NewReader(c), rtsp: port == "554", host: host, timeout: timeout}
}

func (p *prober) probe() (string, error) {
	if err := p.conn.SetDeadline(time.Now().Add(p.timeout)); err != nil {
		return "", err
	}
	if !p.rtsp {
		if _, err := fmt.Fprintf(p.conn, "lab-client\n"); err != nil {
			return "", err
		}
		line, err := p.r.ReadString('\n')
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(line), nil
	}
	p.cseq++
	want := strconv.Itoa(p.cseq)
	if _, err := fmt.Fprintf(p.conn, "OPTIONS rtsp://%s/ RTSP/1.0\r\nCSeq: %s\r\nUser-Agent: lab-client\r\n\r\n", p.host, want); err != nil {
		return "", err
	}
	for { // an answer to an earlier, timed-out probe may come first: skip it
		status, headers, err := readRTSPResponse(p.r)
		if err != nil {
			return "", err
		}
		if headers["cseq"] != want {
			continue
		}
		if !strings.HasPrefix(status, "RTSP/1.0 200") {
			return "", fmt.Errorf("server %q answered %q", headers["server"], status)
		}
		if headers["server"] == "" {
			return "", errors.New("answer without a Server header")
		}
		return headers["server"], nil
	}
}

func readRTSPResponse(r *bufio.Reader) (status string, headers map[string]string, err error) {
	headers = map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && status == "":
			continue
		case line == "":
			return status, headers, nil
		case status == "":
			status = line
		default:
			if k, v, ok := strings.Cut(line, ":"); ok {
				headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
	}
}

func tcpOnce(addr string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	name, err := newProber(c, addr, timeout).probe()
	if err != nil {
		return "", fmt.Errorf("%s via %s: %w", addr, c.LocalAddr(), err)
	}
	return name, nil
}

func runUDP(addr, prefix string, o options) bool {
	var shared net.Conn
	if o.sameSource {
		c, err := net.Dial("udp4", addr)
		if err != nil {
			stderr.Print(err)
			return false
		}
		defer c.Close()
		shared = c
	}
	return runTries(o, prefix, func() (string, error) {
		c := shared
		if c == nil { // a new socket, so a new source port, per try
			var err error
			if c, err = net.Dial("udp4", addr); err != nil {
				return "", err
			}
			defer c.Close()
		}
		if err := c.SetDeadline(time.Now().Add(o.timeout)); err != nil {
			return "", err
		}
		if _, err := c.Write([]byte("lab-client\n")); err != nil {
			return "", fmt.Errorf("%s: %w", addr, err)
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return "", fmt.Errorf("%s from %s: %w", addr, c.LocalAddr(), err)
		}
		return strings.TrimSpace(string(buf[:n])), nil
	})
}

func runWait(addr string, total time.Duration) bool {
	deadline := time.Now().Add(total)
	var err error
	for time.Now().Before(deadline) {
		var c net.Conn
		if c, err = net.DialTimeout("tcp4", addr, time.Second); err == nil {
			c.Close()
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	stderr.Printf("%s not accepting connections after %v: %v", addr, total, err)
	return false
}

// held is one connection of the hold mode and what its probes saw.
type held struct {
	id, sport int
	p         *prober
	server    string // the server the connection is pinned to
	probes    int
	failed    int
	moved     int           // probes answered by another server than the pinned one
	down      bool          // the last probe failed
	lastOK    time.Time     // time of the last successful probe
	maxGap    time.Duration // longest time between two successful probes
}

func runHold(addr string, o options) bool {
	conns := make([]*held, o.n)
	for i := range conns {
		h := &held{id: i + 1, sport: o.sport + i}
		d := net.Dialer{
			Timeout:   o.timeout,
			LocalAddr: &net.TCPAddr{Port: h.sport},
			// A previous run's connection from the same port may linger in
			// TIME_WAIT; the tuple is what failover scenarios care about.
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				})
				return errors.Join(err, serr)
			},
		}
		c, err := d.Dial("tcp4", addr)
		if err != nil {
			stderr.Printf("conn %d: cannot connect from port %d: %v", h.id, h.sport, err)
			return false
		}
		defer c.Close()
		h.p = newProber(c, addr, o.timeout)
		if h.server, err = h.p.probe(); err != nil {
			stderr.Printf("conn %d: first probe: %v", h.id, err)
			return false
		}
		h.probes, h.lastOK = 1, time.Now()
		stdout.Printf("conn %d sport %d server %s", h.id, h.sport, h.server)
		conns[i] = h
	}
	stdout.Println("HOLD READY")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex // guards the counters in conns
	var wg sync.WaitGroup
	for _, h := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(o.interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				name, err := h.p.probe()
				mu.Lock()
				h.record(name, err)
				mu.Unlock()
			}
		}()
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	var timeout <-chan time.Time
	if o.duration > 0 {
		timeout = time.After(o.duration)
	}
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
wait:
	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGUSR1 {
				break wait
			}
			mu.Lock()
			report(conns)
			mu.Unlock()
		case <-timeout:
			break wait
		case <-poll.C:
			if o.stopFile != "" {
				if _, err := os.Stat(o.stopFile); err == nil {
					break wait
				}
			}
		}
	}
	cancel()
	wg.Wait()
	ok := report(conns)
	if o.reset {
		for _, h := range conns {
			// The deferred Close then sends a reset.
			if err := h.p.conn.(*net.TCPConn).SetLinger(0); err != nil {
				stderr.Printf("conn %d: SO_LINGER 0: %v", h.id, err)
			}
		}
	}
	return ok
}

func (h *held) record(name string, err error) {
	h.probes++
	now := time.Now()
	switch {
	case err != nil:
		h.failed++
		if !h.down {
			stdout.Printf("conn %d probe failed: %v", h.id, err)
		}
		h.down = true
		return
	case name != h.server:
		h.failed++
		h.moved++
		h.down = true // not this connection's server: its state is lost
		stdout.Printf("conn %d answered by %s, pinned to %s", h.id, name, h.server)
		return
	case h.down:
		stdout.Printf("conn %d answering again after %v", h.id, now.Sub(h.lastOK).Round(time.Millisecond))
		h.down = false
	}
	h.maxGap = max(h.maxGap, now.Sub(h.lastOK))
	h.lastOK = now
}

// report prints one line per connection and the verdict line, and tells
// whether every probe succeeded.
func report(conns []*held) bool {
	probes, failed, survived, moved, maxGap := 0, 0, 0, 0, time.Duration(0)
	for _, h := range conns {
		gap := h.maxGap
		if h.down {
			gap = max(gap, time.Since(h.lastOK))
		}
		alive := "yes"
		if h.down || h.moved > 0 {
			alive = "no"
		} else {
			survived++
		}
		if h.moved > 0 {
			moved++
		}
		stdout.Printf("conn %d sport %d server %s probes %d failed %d maxgap %v survived %s moved %d",
			h.id, h.sport, h.server, h.probes, h.failed, gap.Round(time.Millisecond), alive, h.moved)
		probes += h.probes
		failed += h.failed
		maxGap = max(maxGap, gap)
	}
	verdict := "OK"
	if failed > 0 {
		verdict = "FAIL"
	}
	stdout.Printf("HOLD RESULT %s conns %d probes %d failed %d maxgap %v survived %d/%d moved %d",
		verdict, len(conns), probes, failed, maxGap.Round(time.Millisecond), survived, len(conns), moved)
	return failed == 0
}

// Command lab-responder is the real server of the VM lab (deploy/lab).
//
// The lab balances the seed's Windows Media cluster: TCP/UDP 554 (RTSP),
// TCP/UDP 1755 (MMS) and UDP 1024-5000 (media data), all under one fwmark.
// To prove which real server a packet reached, every port answers with the
// server's name:
//
//   - TCP 554: each RTSP request (request line, headers, blank line) gets
//     "RTSP/1.0 200 OK" with the request's CSeq and "Server: <name>". The
//     connection stays open, so a long-lived connection can be probed again
//     and again (to check that it survives a change or a failover).
//   - TCP 1755: each line read is answered with "<name>\n".
//   - UDP 554 and 1024-5000 (1755 included): each datagram is answered with
//     "<name>".
//
// The UDP range is 3977 ports. Binding a socket to each is the only way
// without TPROXY, so one goroutine waits on all of them with epoll rather
// than keeping 3978 goroutines parked in ReadFrom.
//
// The health-check scenarios (issue 9) make the RTSP side misbehave, one
// mode at a time (--rtsp-mode, or the first word of --mode-file, read every
// 100 ms, so a scenario switches it by writing the file):
//
//   - ok: as above.
//   - off: the listener is closed, so new connections are refused, as when
//     the RTSP service is stopped; connections already accepted are served
//     on (an established session is not the health check's business).
//   - hang: new connections are accepted and read, and never answered.
//   - 404: new connections get "RTSP/1.0 404 Not Found" to every request.
//
// A mode applies to the connections accepted after it; each change is
// logged as "rtsp mode MODE", each connection as "tcp 554: connection from
// CLIENT to LOCAL (MODE)" (LOCAL tells which of the namespace's addresses a
// health check asked).
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The RTSP modes (see the package documentation).
var rtspModes = map[string]bool{"ok": true, "off": true, "hang": true, "404": true}

func main() {
	name := flag.String("name", "", "name this server answers with (required), e.g. rs1")
	udpFirst := flag.Int("udp-first", 1024, "first port of the UDP range")
	udpLast := flag.Int("udp-last", 5000, "last port of the UDP range")
	mode := flag.String("rtsp-mode", "ok", "RTSP behaviour: ok, off (not listening), hang (never answers), 404")
	modeFile := flag.String("mode-file", "", "file whose first word, when it exists, is the RTSP mode (read every 100 ms)")
	flag.Parse()
	if *name == "" || flag.NArg() != 0 || !rtspModes[*mode] {
		fmt.Fprintln(os.Stderr, "usage: lab-responder --name NAME [--udp-first N --udp-last N] [--rtsp-mode ok|off|hang|404] [--mode-file FILE]")
		os.Exit(2)
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("lab-responder " + *name + ": ")

	udpPorts := []int{554}
	for p := *udpFirst; p <= *udpLast; p++ {
		if p != 554 {
			udpPorts = append(udpPorts, p)
		}
	}
	// One descriptor per UDP port, plus listeners and connections: more than
	// the default soft (1024) and, in the guest, hard (4096) limits.
	raiseFileLimit(uint64(len(udpPorts) + 1024))

	rtsp := &rtspServer{name: *name}
	if err := rtsp.setMode(*mode); err != nil {
		log.Fatal(err)
	}
	mms, err := net.Listen("tcp4", ":1755")
	if err != nil {
		log.Fatal(err)
	}
	udp, err := bindUDP(udpPorts)
	if err != nil {
		log.Fatal(err)
	}
	go acceptLoop(mms, "tcp 1755", func(c net.Conn) { serveLines(c, *name) })
	if *modeFile != "" {
		go rtsp.follow(*modeFile, *mode)
	}
	// Scenarios wait for this line before sending traffic.
	log.Printf("ready: tcp 554,1755 udp 554,%d-%d", *udpFirst, *udpLast)
	log.Fatal(udp.serve([]byte(*name)))
}

func raiseFileLimit(want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Fatal(err)
	}
	if lim.Cur >= want {
		return
	}
	lim.Cur = want
	if lim.Max < want {
		lim.Max = want // allowed for root, which the lab always is
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Fatalf("raising RLIMIT_NOFILE to %d: %v", want, err)
	}
}

// acceptLoop serves every connection of l until l is closed.
func acceptLoop(l net.Listener, what string, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: connection from %s to %s", what, c.RemoteAddr(), c.LocalAddr())
		go serve(c)
	}
}

// rtspServer is TCP 554 in one of the RTSP modes.
type rtspServer struct {
	name string
	mu   sync.Mutex
	mode string
	ln   net.Listener // nil while off
}

// setMode switches to mode: the listener is closed for off, opened again for
// the others; connections already accepted keep the mode they began with.
func (s *rtspServer) setMode(mode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mode == s.mode {
		return nil
	}
	if mode == "off" && s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	if mode != "off" && s.ln == nil {
		ln, err := net.Listen("tcp4", ":554")
		if err != nil {
			return err
		}
		s.ln = ln
		go s.accept(ln)
	}
	s.mode = mode
	log.Printf("rtsp mode %s", mode)
	return nil
}

func (s *rtspServer) accept(ln net.Listener) {
	acceptLoop(ln, "tcp 554", func(c net.Conn) {
		s.mu.Lock()
		mode := s.mode
		s.mu.Unlock()
		serveRTSP(c, s.name, mode)
	})
}

// follow sets the mode from file every 100 ms: its first word when it
// exists and names a mode, else initial.
func (s *rtspServer) follow(file, initial string) {
	last := initial
	for range time.Tick(100 * time.Millisecond) {
		mode := initial
		if b, err := os.ReadFile(file); err == nil {
			if f := bytes.Fields(b); len(f) > 0 {
				mode = string(f[0])
			}
		}
		switch {
		case mode == last:
		case !rtspModes[mode]:
			log.Printf("%s: %q is no RTSP mode (ok, off, hang, 404): ignored", file, mode)
		default:
			if err := s.setMode(mode); err != nil {
				log.Printf("rtsp mode %s: %v", mode, err)
				continue // tried again at the next tick
			}
		}
		last = mode
	}
}

// serveRTSP answers every request on the connection until the client closes
// it. Only OPTIONS is understood; anything else gets 501, still naming the
// server so the client can tell where it landed. In mode hang it reads and
// never answers; in mode 404 every request gets 404.
func serveRTSP(c net.Conn, name, mode string) {
	defer c.Close()
	if mode == "hang" {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	r := bufio.NewReader(c)
	for {
		method, cseq, err := readRTSPRequest(r)
		if err != nil {
			return
		}
		status := "200 OK"
		switch {
		case mode == "404":
			status = "404 Not Found"
		case method != "OPTIONS":
			status = "501 Not Implemented"
		}
		if _, err := fmt.Fprintf(c, "RTSP/1.0 %s\r\nCSeq: %s\r\nServer: %s\r\n\r\n", status, cseq, name); err != nil {
			return
		}
	}
}

// readRTSPRequest reads one request up to its blank line and returns its
// method and CSeq header.
func readRTSPRequest(r *bufio.Reader) (method, cseq string, err error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && method == "":
			continue // stray blank line between requests
		case line == "":
			return method, cseq, nil
		case method == "":
			method, _, _ = strings.Cut(line, " ")
		default:
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.EqualFold(strings.TrimSpace(k), "CSeq") {
				cseq = strings.TrimSpace(v)
			}
		}
	}
}

func serveLines(c net.Conn, name string) {
	defer c.Close()
	s := bufio.NewScanner(c)
	for s.Scan() {
		if _, err := fmt.Fprintf(c, "%s\n", name); err != nil {
			return
		}
	}
}

// udpSockets is a set of non-blocking UDP sockets registered with one epoll
// instance.
type udpSockets struct{ epfd int }

func bindUDP(ports []int) (*udpSockets, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	for _, port := range ports {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("udp socket for port %d: %w", port, err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port}); err != nil {
			return nil, fmt.Errorf("bind udp port %d: %w", port, err)
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return nil, fmt.Errorf("epoll_ctl udp port %d: %w", port, err)
		}
	}
	return &udpSockets{epfd: epfd}, nil
}

// serve answers every datagram on every socket with reply, from the socket
// it arrived on (so the source port of the answer is the port asked).
func (u *udpSockets) serve(reply []byte) error {
	events := make([]syscall.EpollEvent, 64)
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.EpollWait(u.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			for { // drain: the socket is non-blocking, EAGAIN ends the loop
				_, from, err := syscall.Recvfrom(fd, buf, 0)
				if err != nil {
					break
				}
				if err := syscall.Sendto(fd, reply, 0, from); err != nil {
					log.Printf("udp reply: %v", err)
				}
			}
		}
	}
}

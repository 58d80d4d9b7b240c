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
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"syscall"
)

func main() {
	name := flag.String("name", "", "name this server answers with (required), e.g. rs1")
	udpFirst := flag.Int("udp-first", 1024, "first port of the UDP range")
	udpLast := flag.Int("udp-last", 5000, "last port of the UDP range")
	flag.Parse()
	if *name == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: lab-responder --name NAME [--udp-first N --udp-last N]")
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

	rtsp, err := net.Listen("tcp4", ":554")
	if err != nil {
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
	go acceptLoop(rtsp, func(c net.Conn) { serveRTSP(c, *name) })
	go acceptLoop(mms, func(c net.Conn) { serveLines(c, *name) })
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

func acceptLoop(l net.Listener, serve func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("%s: connection from %s", l.Addr(), c.RemoteAddr())
		go serve(c)
	}
}

// serveRTSP answers every request on the connection until the client closes
// it. Only OPTIONS is understood; anything else gets 501, still naming the
// server so the client can tell where it landed.
func serveRTSP(c net.Conn, name string) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		method, cseq, err := readRTSPRequest(r)
		if err != nil {
			return
		}
		status := "200 OK"
		if method != "OPTIONS" {
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

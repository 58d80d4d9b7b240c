// Package endpoints turns a list of controller addresses ("a:7443,b:7443,c:7443") into one
// gRPC client target. One address is dialed as given: gRPC's default dns resolver then
// connects to any of a name's addresses. Several go to a manual resolver (grpc-go's
// resolver/manual) holding them all, under gRPC's default pick_first policy: the client
// stays on one controller while it answers and moves to the next listed one when its
// connection fails, which is what agents and lvsctl need (any controller serves them).
package endpoints

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// ErrAddress is wrapped by every refused address list.
var ErrAddress = errors.New("controller address")

// Parse splits a comma-separated list of HOST:PORT addresses. Blanks around commas are
// ignored; an empty entry, a missing port or a duplicate is refused, naming it.
func Parse(list string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for a := range strings.SplitSeq(list, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("%w: %q has an empty entry (want HOST:PORT[,HOST:PORT...])", ErrAddress, list)
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("%w: %q: want HOST:PORT: %w", ErrAddress, a, err)
		}
		if seen[a] {
			return nil, fmt.Errorf("%w: %q is listed twice", ErrAddress, a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// Hosts are the host parts of addrs (as Parse returned them), each once.
func Hosts(addrs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range addrs {
		h, _, _ := net.SplitHostPort(a)
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// scheme is the manual resolver's: it exists only in the ClientConn it is given to.
const scheme = "lvsctl-controllers"

// Target is what grpc.NewClient dials for addrs, and the options that go with it.
func Target(addrs []string) (string, []grpc.DialOption) {
	if len(addrs) == 1 {
		return addrs[0], nil
	}
	r := manual.NewBuilderWithScheme(scheme)
	state := resolver.State{}
	for _, a := range addrs {
		state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
	}
	r.InitialState(state)
	// The authority (what TLS would verify when no server name is set) is the first
	// address's; the callers' TLS verifies each controller against every listed host
	// (pki.Reloader.ClientCredentialsAny).
	return scheme + ":///" + addrs[0], []grpc.DialOption{grpc.WithResolvers(r)}
}

// LoopbackHost reports whether host (no port) is this machine's loopback: "localhost" or a
// loopback address. Plaintext is allowed only there.
func LoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// LoopbackAddr reports whether a bound or peer address is on this machine: a TCP address on
// loopback, or a Unix socket.
func LoopbackAddr(a net.Addr) bool {
	switch t := a.(type) {
	case *net.TCPAddr:
		return t.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// AllLoopback reports whether every address of a comma-separated HOST:PORT list is on
// loopback (false for a list Parse refuses).
func AllLoopback(list string) bool {
	addrs, err := Parse(list)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil || !LoopbackHost(host) {
			return false
		}
	}
	return true
}

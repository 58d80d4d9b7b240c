package validate_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/lvsctl/lvsctl/controlplane/validate"
)

func TestSorryServerRefused(t *testing.T) {
	// withSorry puts a sorry server line after web's reals.
	withSorry := func(t *testing.T, line string, pairs ...string) string {
		return editWeb(t, pairs...) + line + "\n"
	}
	cases := []struct {
		name string
		text func(t *testing.T) string
		want string
	}{
		{"no address", func(t *testing.T) string { return withSorry(t, "sorryServer: {port: 8080}") },
			`cluster "web": sorryServer.address: required (or leave sorryServer out)`},
		{"not an address", func(t *testing.T) string { return withSorry(t, "sorryServer: {address: sorry.example}") },
			`cluster "web": sorryServer.address: "sorry.example" is not an IP address`},
		{"loopback", func(t *testing.T) string { return withSorry(t, "sorryServer: {address: 127.0.0.1}") },
			`cluster "web": sorryServer.address: 127.0.0.1 is a loopback address`},
		{"other family", func(t *testing.T) string { return withSorry(t, `sorryServer: {address: "2001:db8::9"}`) },
			`cluster "web": sorryServer.address: 2001:db8::9 is IPv6 but the cluster's service is IPv4 (one IPVS service has one address family)`},
		{"one of the reals", func(t *testing.T) string { return withSorry(t, "sorryServer: {address: 198.51.100.5}") },
			`cluster "web": sorryServer.address: 198.51.100.5 is one of the cluster's real servers (reals[0]): a sorry server takes over when they are all down`},
		{"one of the reals, written otherwise", func(t *testing.T) string {
			return withSorry(t, `sorryServer: {address: "::ffff:198.51.100.5"}`)
		}, `cluster "web": sorryServer.address: "::ffff:198.51.100.5" is an IPv4-mapped IPv6 address; write 198.51.100.5`},
		{"one of the IPv6 reals, written otherwise", func(t *testing.T) string {
			return withSorry(t, `sorryServer: {address: "2001:db8:1:0::5"}`, "192.0.2.20", `"2001:db8::20"`, "198.51.100.5", `"2001:db8:1::5"`)
		}, `cluster "web": sorryServer.address: 2001:db8:1::5 is one of the cluster's real servers (reals[0]): a sorry server takes over when they are all down`},
		{"the service address", func(t *testing.T) string { return withSorry(t, "sorryServer: {address: 192.0.2.20}") },
			`cluster "web": sorryServer.address: 192.0.2.20 is the cluster's VIP (service.address)`},
		{"a VIP of a fwmark cluster", func(t *testing.T) string {
			return edit(t, "reals:", "sorryServer: {address: 192.0.2.10}\nreals:")
		}, `cluster "wms": sorryServer.address: 192.0.2.10 is the cluster's VIP (vips[0])`},
		{"port on a fwmark cluster", func(t *testing.T) string {
			return edit(t, "reals:", "sorryServer: {address: 198.51.100.9, port: 8080}\nreals:")
		}, `cluster "wms": sorryServer.port: 8080 is set on a fwmark cluster, which keeps the port the client asked for (leave it out)`},
		{"port too big", func(t *testing.T) string { return withSorry(t, "sorryServer: {address: 198.51.100.9, port: 65536}") },
			`cluster "web": sorryServer.port: 65536 is out of range 1-65535`},
		{"port mapped under route", func(t *testing.T) string {
			return withSorry(t, "sorryServer: {address: 198.51.100.9, port: 8080}", "forwarding: masq", "forwarding: route", "port: 8080, ", "")
		}, `cluster "web": sorryServer.port: 8080 differs from service.port 80: only masq (NAT) rewrites the port; route and tunnel forward the packet as it came`},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			err := check(t, tt.text(t))
			if err == nil {
				t.Fatalf("accepted; want error %q", tt.want)
			}
			if !errors.Is(err, validate.ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if lines := strings.Split(err.Error(), "\n"); !contains(lines, tt.want) {
				t.Errorf("error:\n%v\nwant a line:\n%s", err, tt.want)
			}
		})
	}
}

func TestSorryServerAccepted(t *testing.T) {
	for name, text := range map[string]func(t *testing.T) string{
		"issue's example on a plain service": func(t *testing.T) string {
			return editWeb(t) + "sorryServer: {address: 198.51.100.9, port: 8080}\n"
		},
		"no port: the service's": func(t *testing.T) string { return editWeb(t) + "sorryServer: {address: 198.51.100.9}\n" },
		"fwmark cluster": func(t *testing.T) string {
			return edit(t, "reals:", "sorryServer: {address: 198.51.100.9}\nreals:")
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := check(t, text(t)); err != nil {
				t.Fatalf("refused:\n%v", err)
			}
		})
	}
}

package nft

import (
	"context"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// signalWithin is how long a change may take to be signalled: the operator's expectation of
// a repair "within about a second", with room for a loaded test machine.
const signalWithin = 2 * time.Second

// quietFor is how long a change that must not be signalled is watched for.
const quietFor = 300 * time.Millisecond

// TestWatchInNamespace changes a namespace's nftables step by step, the way an operator or
// `systemctl reload nftables` would, and checks which steps Watch signals.
func TestWatchInNamespace(t *testing.T) {
	fw, ns, _ := newFirewall(t)
	if _, err := fw.SetMarkRules(wms); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := fw.Watch(ctx)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	steps := []struct {
		name   string
		do     func(t *testing.T)
		signal bool
	}{
		{"a table of someone else's is added", func(t *testing.T) {
			nft(t, ns, "add", "table", "ip", "other")
			nft(t, ns, "add", "chain", "ip", "other", "input", "{ type filter hook input priority 0; }")
		}, false},
		{"a rule in someone else's table", func(t *testing.T) { nft(t, ns, "add", "rule", "ip", "other", "input", "counter") }, false},
		{"an element of someone else's set", func(t *testing.T) {
			nft(t, ns, "add", "set", "ip", "other", "s", "{ type ipv4_addr; }")
			nft(t, ns, "add", "element", "ip", "other", "s", "{ 192.0.2.1 }")
		}, false},
		{"a table named lvsctl of another family", func(t *testing.T) { nft(t, ns, "add", "table", "ip", TableName) }, false},
		{"flush ruleset (systemctl reload nftables)", func(t *testing.T) { nft(t, ns, "flush", "ruleset") }, true},
		{"the Firewall puts its table back", func(t *testing.T) {
			if n, err := fw.SetMarkRules(wms); err != nil || n != len(wms) {
				t.Fatalf("SetMarkRules = %d, %v; want %d, nil", n, err, len(wms))
			}
		}, true},
		// The agent's reconcile loop ends here: a repair that finds nothing to do changes nothing.
		{"the Firewall finds nothing to do", func(t *testing.T) {
			if n, err := fw.SetMarkRules(wms); err != nil || n != 0 {
				t.Fatalf("SetMarkRules = %d, %v; want 0, nil", n, err)
			}
		}, false},
		{"an element added by hand to our map", func(t *testing.T) {
			nft(t, ns, "add", "element", "inet", TableName, Ports4Map, "{ 198.51.100.1 . tcp . 80 : 7 }")
		}, true},
		{"an element deleted by hand from our map", func(t *testing.T) {
			nft(t, ns, "delete", "element", "inet", TableName, Ports4Map, "{ 192.0.2.10 . tcp . 554 }")
		}, true},
		{"a rule added by hand to our chain", func(t *testing.T) {
			nft(t, ns, "add", "rule", "inet", TableName, ChainName, "counter")
		}, true},
		{"our chain flushed", func(t *testing.T) { nft(t, ns, "flush", "chain", "inet", TableName, ChainName) }, true},
		{"our table deleted", func(t *testing.T) { nft(t, ns, "delete", "table", "inet", TableName) }, true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			limit := quietFor
			if s.signal {
				limit = signalWithin
			}
			start := time.Now()
			s.do(t)
			select {
			case _, ok := <-changes:
				if !ok {
					t.Fatal("the watch ended")
				}
				if !s.signal {
					t.Errorf("signalled, want no signal")
				}
				t.Logf("signalled %s after the change", time.Since(start).Round(time.Millisecond))
			case <-time.After(limit):
				if s.signal {
					t.Errorf("no signal within %s", signalWithin)
				}
			}
			// One transaction is one signal: nothing more follows.
			select {
			case <-changes:
				t.Errorf("a second signal for one change")
			case <-time.After(50 * time.Millisecond):
			}
		})
	}
	cancel()
	select {
	case _, ok := <-changes:
		for ok {
			_, ok = <-changes
		}
	case <-time.After(signalWithin):
		t.Fatal("the watch's channel was not closed after its context ended")
	}
}

// TestWatchOutlivesClose: the watch keeps its own handle on the namespace, so the
// Firewall's Close does not end or misdirect it.
func TestWatchOutlivesClose(t *testing.T) {
	fw, ns, _ := newFirewall(t)
	changes, err := fw.Watch(t.Context())
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	fw.Close()
	nft(t, ns, "add", "table", "inet", TableName)
	select {
	case <-changes:
	case <-time.After(signalWithin):
		t.Errorf("no signal within %s after the Firewall's Close", signalWithin)
	}
}

func TestConcerns(t *testing.T) {
	msg := func(typ int, family byte, attrs ...netlink.Attribute) netlink.Message {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			t.Fatal(err)
		}
		return netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
			Data:   append([]byte{family, unix.NFNETLINK_V0, 0, 0}, b...),
		}
	}
	table := func(name string) netlink.Attribute { return netlink.Attribute{Type: 1, Data: []byte(name + "\x00")} }
	set := netlink.Attribute{Type: 2, Data: []byte("s\x00")}
	tests := []struct {
		name string
		msg  netlink.Message
		want verdict
	}{
		{"our table deleted", msg(unix.NFT_MSG_DELTABLE, unix.NFPROTO_INET, table(TableName)), ourTable},
		{"our chain added", msg(unix.NFT_MSG_NEWCHAIN, unix.NFPROTO_INET, table(TableName), netlink.Attribute{Type: 3, Data: []byte("prerouting\x00")}), ourTable},
		{"an element of our map", msg(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_INET, table(TableName), set), ourTable},
		{"an element deleted from our map", msg(unix.NFT_MSG_DELSETELEM, unix.NFPROTO_INET, table(TableName), set), ourTable},
		{"ip lvsctl is not ours", msg(unix.NFT_MSG_NEWTABLE, unix.NFPROTO_IPV4, table(TableName)), otherTable},
		{"an element of inet filter is not ours", msg(unix.NFT_MSG_NEWSETELEM, unix.NFPROTO_INET, table("filter"), set), otherTable},
		{"a message without a table", msg(unix.NFT_MSG_NEWRULE, unix.NFPROTO_INET, set), ourTable},
		{"a truncated message", netlink.Message{Header: netlink.Header{Type: unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE}, Data: []byte{1}}, ourTable},
		{"malformed attributes", netlink.Message{Header: netlink.Header{Type: unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE}, Data: []byte{unix.NFPROTO_INET, 0, 0, 0, 200, 0, 1}}, ourTable},
		{"the generation ends the transaction", msg(unix.NFT_MSG_NEWGEN, unix.AF_UNSPEC), endOfTransaction},
		{"another subsystem", netlink.Message{Header: netlink.Header{Type: unix.NFNL_SUBSYS_CTNETLINK << 8}}, otherTable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := concerns(tt.msg); got != tt.want {
				t.Errorf("concerns = %v, want %v", got, tt.want)
			}
		})
	}
}

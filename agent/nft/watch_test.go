package nft

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/nftables"
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

func TestConcernsUs(t *testing.T) {
	ours := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	batch := func(evs ...*nftables.MonitorEvent) *nftables.MonitorEvents {
		return &nftables.MonitorEvents{GeneratedBy: &nftables.MonitorEvent{Type: nftables.MonitorEventTypeNewTable}, Changes: evs}
	}
	ev := func(typ nftables.MonitorEventType, data any) *nftables.MonitorEvent {
		return &nftables.MonitorEvent{Type: typ, Data: data}
	}
	tests := []struct {
		name  string
		batch *nftables.MonitorEvents
		want  bool
	}{
		{"empty transaction", batch(), false},
		{"our table deleted", batch(ev(nftables.MonitorEventTypeDelTable, ours)), true},
		{"our chain added", batch(ev(nftables.MonitorEventTypeNewChain, &nftables.Chain{Name: ChainName, Table: ours})), true},
		{"our rule deleted", batch(ev(nftables.MonitorEventTypeDelRule, &nftables.Rule{Table: ours})), true},
		{"ip lvsctl is not ours", batch(ev(nftables.MonitorEventTypeNewTable, &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4})), false},
		{"inet filter is not ours", batch(
			ev(nftables.MonitorEventTypeNewRule, &nftables.Rule{Table: &nftables.Table{Name: "filter", Family: nftables.TableFamilyINet}}),
			ev(nftables.MonitorEventTypeNewSet, &nftables.Set{Name: "s"}),
		), false},
		{"ours among others", batch(
			ev(nftables.MonitorEventTypeDelTable, &nftables.Table{Name: "filter", Family: nftables.TableFamilyINet}),
			ev(nftables.MonitorEventTypeDelTable, ours),
		), true},
		{"an undecodable rule", batch(&nftables.MonitorEvent{Type: nftables.MonitorEventTypeNewRule, Data: &nftables.Rule{}, Error: errors.New("bad")}), true},
		{"a rule of no table", batch(ev(nftables.MonitorEventTypeNewRule, (*nftables.Rule)(nil))), true},
		{"the monitor's socket failed", &nftables.MonitorEvents{GeneratedBy: &nftables.MonitorEvent{Type: nftables.MonitorEventTypeOOB, Error: errors.New("no buffer space")}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := concernsUs(tt.batch); got != tt.want {
				t.Errorf("concernsUs = %v, want %v", got, tt.want)
			}
		})
	}
}

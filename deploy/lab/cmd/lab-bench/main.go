// Command lab-bench measures the agent's kernel work in the VM lab
// (deploy/lab/scenarios/bench-ipvs.sh), against ipvsadm on the same rules in
// the same boot: the lab's kernel runs in software emulation, so only ratios
// measured side by side mean anything.
//
//	lab-bench rules   [-services N] [-reals M]  # ipvsadm -R input for the bench's state
//	lab-bench agent   [-services N] [-reals M] [-state-dir DIR] [-drift K] [-log-level L]
//	lab-bench time    NAME -- CMD [ARG...]      # runs CMD, prints NAME_ms=... on stderr
//
// agent drives the agent's own packages (reconcile with the real IPVS,
// nftables, address and state backends) in the current network namespace,
// which should be fresh: a cold Apply of the whole desired state, then K
// Applies of the same state with nothing to change (the drift check: the whole
// kernel is read back and compared). It prints one line per Apply, each key
// named after it so that a script can pick any figure out of the lines:
//
//	agent_cold_ms=... agent_cold_ops=... agent_cold_ipvs_read_ms=... agent_cold_ipvs_write_ms=...
//	    agent_cold_nft_ms=... agent_cold_state_ms=... agent_cold_other_ms=...
//	    agent_cold_cluster_errors=0 agent_cold_director_errors=0
//	agent_drift_ms=... agent_drift_ops=0 ...
//
// and exits 1 if an Apply reported errors or a drift check changed anything.
// The times are wall-clock times of Apply alone: the backends are opened
// before (an agent opens them once at start). The parts are the time spent in
// each backend (IPVS reads and batches, nftables, the state's saves) and the
// rest, the reconciler's own planning and comparing.
//
// The bench's state is N clusters "bench-I", I = 1..N, each with fwmark I,
// VIP 198.18.x.y (RFC 2544's benchmarking range), tcp 80, wlc, persistence
// 600 s, and M masqueraded reals 198.51.100.1..M of weight 100+J. The role is
// STANDBY, so no VIP is added to an interface: ipvsadm -R adds none either.
// rules prints the same services and reals as ipvsadm -R input.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/lvsctl/lvsctl/agent/dataplane"
	"github.com/lvsctl/lvsctl/agent/ipvs"
	"github.com/lvsctl/lvsctl/agent/nft"
	"github.com/lvsctl/lvsctl/agent/reconcile"
	"github.com/lvsctl/lvsctl/agent/state"
	"github.com/lvsctl/lvsctl/agent/vip"
	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

const (
	groupName = "bench"
	scheduler = "wlc"
	// persistSeconds is the WMS clusters' persistence: what a site of them restores.
	persistSeconds = 600
	port           = 80
)

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  lab-bench rules [-services N] [-reals M]
  lab-bench agent [-services N] [-reals M] [-state-dir DIR] [-drift K] [-log-level L]
  lab-bench time NAME -- CMD [ARG...]`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "rules":
		err = runRules(os.Args[2:], os.Stdout)
	case "agent":
		err = runAgent(os.Args[2:], os.Stdout)
	case "time":
		// The command's output is its own (ipvsadm -Sn's dump, say): the time goes to stderr.
		err = runTime(os.Args[2:], os.Stderr)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lab-bench:", err)
		os.Exit(1)
	}
}

// size is the bench's state: services x reals.
type size struct{ services, reals int }

func (s *size) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.services, "services", 2000, "firewall-mark services (clusters)")
	fs.IntVar(&s.reals, "reals", 10, "reals per service")
}

func (s size) check() error {
	switch {
	case s.services < 1 || s.services > 60000:
		return fmt.Errorf("-services: %d is not 1-60000 (VIPs come from 198.18.0.0/15)", s.services)
	case s.reals < 1 || s.reals > 250:
		return fmt.Errorf("-reals: %d is not 1-250 (reals come from 198.51.100.0/24)", s.reals)
	}
	return nil
}

// vipOf is cluster i's VIP: 198.18.0.1 onwards, 250 to a /24, in 198.18.0.0/15.
func vipOf(i int) string {
	return fmt.Sprintf("198.%d.%d.%d", 18+(i-1)/(250*256), (i-1)/250%256, (i-1)%250+1)
}

func realOf(j int) string { return fmt.Sprintf("198.51.100.%d", j) }

func weightOf(j int) uint32 { return uint32(100 + j) }

// desired is the bench's state as the controller would send it.
func desired(s size) *lvsctlv1.DesiredState {
	d := &lvsctlv1.DesiredState{Group: &lvsctlv1.DirectorGroup{
		Name:         groupName,
		Directors:    []*lvsctlv1.Director{{Name: "bench", Priority: 100}},
		VipInterface: "eth0",
	}}
	for i := 1; i <= s.services; i++ {
		c := &lvsctlv1.Cluster{
			Name:          fmt.Sprintf("bench-%d", i),
			DirectorGroup: groupName,
			Vips:          []string{vipOf(i)},
			Ports:         []*lvsctlv1.PortRange{{Protocol: lvsctlv1.Protocol_PROTOCOL_TCP, First: port, Last: port}},
			Scheduler:     scheduler,
			Persistence:   &lvsctlv1.Persistence{TimeoutSeconds: persistSeconds},
			Forwarding:    lvsctlv1.Forwarding_FORWARDING_MASQ,
			Fwmark:        uint32(i),
		}
		for j := 1; j <= s.reals; j++ {
			c.Reals = append(c.Reals, &lvsctlv1.RealServer{Address: realOf(j), Weight: weightOf(j)})
		}
		d.Clusters = append(d.Clusters, c)
	}
	return d
}

// runRules writes the same services and reals as ipvsadm -R input.
func runRules(args []string, out io.Writer) error {
	var s size
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	s.flags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	for i := 1; i <= s.services; i++ {
		fmt.Fprintf(w, "-A -f %d -s %s -p %d\n", i, scheduler, persistSeconds)
		for j := 1; j <= s.reals; j++ {
			fmt.Fprintf(w, "-a -f %d -r %s:0 -m -w %d\n", i, realOf(j), weightOf(j))
		}
	}
	return w.Flush()
}

// The timed wrappers add up the time the reconciler spends in each backend, so that a run
// says where an Apply's time goes: reading IPVS, writing it, nftables, saving the state, and
// the rest (planning and comparing, in the agent's own code). Each embeds the interface it
// wraps, so every method passes through; the timed ones are all the reconciler calls.
type timings struct{ ipvsRead, ipvsWrite, nft, state time.Duration }

func since(d *time.Duration, began time.Time) { *d += time.Since(began) }

type timedIPVS struct {
	reconcile.IPVS
	t *timings
}

func (k timedIPVS) Stats() ([]dataplane.ServiceStats, error) {
	defer since(&k.t.ipvsRead, time.Now())
	return k.IPVS.Stats()
}

func (k timedIPVS) Destinations(s dataplane.Service) ([]dataplane.Destination, error) {
	defer since(&k.t.ipvsRead, time.Now())
	return k.IPVS.Destinations(s)
}

func (k timedIPVS) Batch(ops []dataplane.Op) []error {
	defer since(&k.t.ipvsWrite, time.Now())
	return k.IPVS.Batch(ops)
}

type timedFirewall struct {
	reconcile.Firewall
	t *timings
}

func (f timedFirewall) MarkRules() ([]dataplane.MarkRule, error) {
	defer since(&f.t.nft, time.Now())
	return f.Firewall.MarkRules()
}

func (f timedFirewall) SetMarkRules(rules []dataplane.MarkRule) (int, error) {
	defer since(&f.t.nft, time.Now())
	return f.Firewall.SetMarkRules(rules)
}

func (f timedFirewall) ChangeMarkRules(add, del []dataplane.MarkRule) (int, error) {
	defer since(&f.t.nft, time.Now())
	return f.Firewall.ChangeMarkRules(add, del)
}

type timedState struct {
	reconcile.Ownership
	t *timings
}

func (s timedState) Commit(c state.Changes) error {
	defer since(&s.t.state, time.Now())
	return s.Ownership.Commit(c)
}

// runAgent applies the bench's state with the agent's reconciler: once cold, then drift
// times with nothing to change.
func runAgent(args []string, out io.Writer) error {
	var s size
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	s.flags(fs)
	stateDir := fs.String("state-dir", "/tmp/lab-bench-state", "the agent's state directory (must not hold a state)")
	drift := fs.Int("drift", 1, "drift checks (Applies with nothing to change) after the cold apply")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelWarn, "the reconciler's log level (info logs every kernel change)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.check(); err != nil {
		return err
	}
	if *drift < 0 {
		return fmt.Errorf("-drift: %d is negative", *drift)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if err := os.MkdirAll(*stateDir, 0o700); err != nil {
		return fmt.Errorf("-state-dir: %w", err)
	}
	st, err := state.Load(*stateDir)
	if err != nil {
		return err
	}
	if n := len(st.OwnedServices()); n > 0 {
		// A cold apply starts from nothing; a leftover state would make it a partial one.
		return fmt.Errorf("-state-dir %s: the state already owns %d services; use a fresh directory", *stateDir, n)
	}
	kipvs, err := ipvs.New()
	if err != nil {
		return err
	}
	defer kipvs.Close()
	fw, err := nft.New(nft.WithLogger(log))
	if err != nil {
		return err
	}
	defer fw.Close()
	addrs, err := vip.New(vip.WithLogger(log))
	if err != nil {
		return err
	}
	defer addrs.Close()
	if svcs, err := kipvs.Services(); err != nil || len(svcs) > 0 {
		return errors.Join(err, fmt.Errorf("the namespace's IPVS already has %d firewall-mark services; a cold apply needs a fresh one", len(svcs)))
	}

	var t timings
	rec := reconcile.New(reconcile.Config{Logger: log, IPVS: timedIPVS{kipvs, &t}, Firewall: timedFirewall{fw, &t},
		Addresses: addrs, State: timedState{st, &t}})
	want := desired(s)
	role := &lvsctlv1.RoleAssignment{Group: groupName, Role: lvsctlv1.Role_ROLE_STANDBY, Epoch: 1}

	var failed error
	apply := func(name string, wantOps func(int) bool) {
		t = timings{}
		began := time.Now()
		res := rec.Apply(context.Background(), want, role)
		took := time.Since(began)
		fmt.Fprintf(out, "%[1]s_ms=%.1[2]f %[1]s_ops=%[3]d %[1]s_ipvs_read_ms=%.1[4]f %[1]s_ipvs_write_ms=%.1[5]f "+
			"%[1]s_nft_ms=%.1[6]f %[1]s_state_ms=%.1[7]f %[1]s_other_ms=%.1[8]f %[1]s_cluster_errors=%[9]d %[1]s_director_errors=%[10]d\n",
			name, ms(took), res.Operations, ms(t.ipvsRead), ms(t.ipvsWrite), ms(t.nft), ms(t.state),
			ms(took-t.ipvsRead-t.ipvsWrite-t.nft-t.state), len(res.ClusterErrors), len(res.DirectorErrors))
		for _, e := range res.ClusterErrors[:min(len(res.ClusterErrors), 5)] {
			fmt.Fprintf(os.Stderr, "lab-bench: %s: cluster %s: %s\n", name, e.GetCluster(), e.GetMessage())
		}
		for _, e := range res.DirectorErrors[:min(len(res.DirectorErrors), 5)] {
			fmt.Fprintf(os.Stderr, "lab-bench: %s: %s\n", name, e)
		}
		if len(res.ClusterErrors)+len(res.DirectorErrors) > 0 {
			failed = errors.Join(failed, fmt.Errorf("%s: %d cluster and %d director errors", name, len(res.ClusterErrors), len(res.DirectorErrors)))
		}
		if !wantOps(res.Operations) {
			failed = errors.Join(failed, fmt.Errorf("%s: %d kernel operations is not what it should be", name, res.Operations))
		}
	}
	// A cold apply makes every service and real, and at least one nftables change.
	apply("agent_cold", func(n int) bool { return n >= s.services*(1+s.reals) })
	for range *drift {
		apply("agent_drift", func(n int) bool { return n == 0 })
	}
	return failed
}

// runTime runs a command with this process's standard streams and prints its wall time to out.
func runTime(args []string, out io.Writer) error {
	if len(args) < 3 || args[1] != "--" {
		usage()
	}
	cmd := exec.Command(args[2], args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	began := time.Now()
	err := cmd.Run()
	took := time.Since(began)
	if err != nil {
		return fmt.Errorf("%s: %w", args[2], err)
	}
	fmt.Fprintf(out, "%s_ms=%.1f\n", args[0], ms(took))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

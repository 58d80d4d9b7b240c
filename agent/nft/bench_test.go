package nft

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lvsctl/lvsctl/agent/dataplane"
)

// benchPorts are five port ranges that share no port, so a cluster is five elements: the
// issue's 10,000 clusters x 5 ranges is 50,000 elements.
func benchPorts(vip netip.Addr, mark uint32) []dataplane.MarkRule {
	r := func(p dataplane.Protocol, first, last uint16) dataplane.MarkRule {
		return dataplane.MarkRule{VIP: vip, Protocol: p, FirstPort: first, LastPort: last, Mark: mark}
	}
	return []dataplane.MarkRule{r(dataplane.TCP, 554, 554), r(dataplane.UDP, 554, 554), r(dataplane.TCP, 1755, 1755),
		r(dataplane.UDP, 1755, 1755), r(dataplane.UDP, 6970, 7170)}
}

// benchFirewall returns a Firewall in a new network namespace and a function that removes it.
func benchFirewall(b *testing.B) (*Firewall, func()) {
	b.Helper()
	ns := addNetns(b)
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		b.Fatal(err)
	}
	fw, err := New(WithNetNSFd(int(f.Fd())))
	if err != nil {
		b.Fatal(err)
	}
	return fw, func() {
		fw.Close()
		f.Close()
		if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
			b.Errorf("ip netns delete %s: %v: %s", ns, err, out)
		}
	}
}

// cpuTime is the process's CPU time so far, user and system: the kernel's work for our
// netlink calls runs in our syscalls, so it counts. On a shared machine it is steadier than
// wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report reports wall and CPU milliseconds per op, as "ms/WHAT" and "cpu-ms/WHAT".
func report(b *testing.B, cpu time.Duration, what string) {
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/"+what)
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/"+what)
}

// BenchmarkApply10kClusters is the nftables benchmark, on the host kernel in a network
// namespace: 10,000 clusters x 5 port ranges (50,000 elements) applied cold in one
// transaction, then one cluster changed (its mark: 5 elements deleted, 5 added, one of them a
// range) through ChangeMarkRules and through SetMarkRules (which reads the kernel's 50,000
// elements first), one cluster's single port moved through ChangeMarkRules, and the drift
// check's bulk read (MarkRules).
func BenchmarkApply10kClusters(b *testing.B) {
	privileged(b, "ip")
	cs := clusters(10000, benchPorts)
	all := flatten(cs)
	const changed = 4321

	b.Run("cold", func(b *testing.B) {
		var cpu time.Duration
		for range b.N {
			b.StopTimer()
			fw, done := benchFirewall(b)
			b.StartTimer()
			c := cpuTime(b)
			n, err := fw.SetMarkRules(all)
			cpu += cpuTime(b) - c
			b.StopTimer()
			if err != nil || n != len(all) {
				b.Fatalf("SetMarkRules = %d, %v; want %d", n, err, len(all))
			}
			done()
			b.StartTimer()
		}
		report(b, cpu, "apply")
		b.ReportMetric(float64(len(all)), "elements/apply")
	})

	// As in the agent, whose watch follows the table: the kernel then also builds a
	// notification per element inside the transaction, and the watch reads them.
	b.Run("cold-watched", func(b *testing.B) {
		var cpu time.Duration
		for range b.N {
			b.StopTimer()
			fw, done := benchFirewall(b)
			ctx, cancel := context.WithCancel(context.Background())
			changes, err := fw.Watch(ctx)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			c := cpuTime(b)
			n, err := fw.SetMarkRules(all)
			<-changes // the watch has read the transaction's notifications
			cpu += cpuTime(b) - c
			b.StopTimer()
			if err != nil || n != len(all) {
				b.Fatalf("SetMarkRules = %d, %v; want %d", n, err, len(all))
			}
			cancel()
			for range changes {
			}
			done()
			b.StartTimer()
		}
		report(b, cpu, "apply")
	})

	// toggle returns the state with cluster `changed` on mark 9999 or back on its own.
	toggle := func(i int) (now, add, del []dataplane.MarkRule) {
		on, off := withMark(cs[changed], 9999), cs[changed]
		if i%2 == 1 {
			on, off = off, on
		}
		next := append([][]dataplane.MarkRule(nil), cs...)
		next[changed] = on
		return flatten(next), on, off
	}
	setup := func(b *testing.B) (*Firewall, func()) {
		b.Helper()
		fw, done := benchFirewall(b)
		if _, err := fw.SetMarkRules(all); err != nil {
			b.Fatal(err)
		}
		return fw, done
	}

	b.Run("change-one/ChangeMarkRules", func(b *testing.B) {
		fw, done := setup(b)
		defer done()
		touched := 0
		var cpu time.Duration
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			_, add, del := toggle(i)
			b.StartTimer()
			c := cpuTime(b)
			n, err := fw.ChangeMarkRules(add, del)
			cpu += cpuTime(b) - c
			if err != nil {
				b.Fatal(err)
			}
			touched += n
		}
		report(b, cpu, "change")
		b.ReportMetric(float64(touched)/float64(b.N), "elements/change")
	})

	// A cluster's single port moves (tcp 554 <-> 8554): the hash map alone changes.
	b.Run("change-one-port/ChangeMarkRules", func(b *testing.B) {
		fw, done := setup(b)
		defer done()
		from := cs[changed][0]
		to := from
		to.FirstPort, to.LastPort = 8554, 8554
		touched := 0
		var cpu time.Duration
		b.ResetTimer()
		for i := range b.N {
			add, del := []dataplane.MarkRule{to}, []dataplane.MarkRule{from}
			if i%2 == 1 {
				add, del = del, add
			}
			c := cpuTime(b)
			n, err := fw.ChangeMarkRules(add, del)
			cpu += cpuTime(b) - c
			if err != nil {
				b.Fatal(err)
			}
			touched += n
		}
		report(b, cpu, "change")
		b.ReportMetric(float64(touched)/float64(b.N), "elements/change")
	})

	b.Run("change-one/SetMarkRules", func(b *testing.B) {
		fw, done := setup(b)
		defer done()
		touched := 0
		var cpu time.Duration
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			now, _, _ := toggle(i)
			b.StartTimer()
			c := cpuTime(b)
			n, err := fw.SetMarkRules(now)
			cpu += cpuTime(b) - c
			if err != nil {
				b.Fatal(err)
			}
			touched += n
		}
		report(b, cpu, "change")
		b.ReportMetric(float64(touched)/float64(b.N), "elements/change")
	})

	b.Run("drift-check/MarkRules", func(b *testing.B) {
		fw, done := setup(b)
		defer done()
		b.ResetTimer()
		c := cpuTime(b)
		for range b.N {
			got, err := fw.MarkRules()
			if err != nil || len(got) != len(all) {
				b.Fatalf("MarkRules = %d rules, %v; want %d", len(got), err, len(all))
			}
		}
		report(b, cpuTime(b)-c, "read")
	})
}

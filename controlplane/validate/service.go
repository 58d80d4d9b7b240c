package validate

import (
	"fmt"
	"net/netip"

	lvsctlv1 "github.com/lvsctl/lvsctl/proto/lvsctl/v1"
)

// MaxThreshold is the highest connection threshold of a real server: ipvsadm takes -x and
// -y up to INT_MAX (the kernel stores a u32, keepalived an unsigned).
const MaxThreshold = 1<<31 - 1

// checkService checks a plain service (cluster.service) and that the fields of a fwmark
// cluster are unset; it returns the service's address when valid. A plain service is still
// one IPVS service, matched by address, protocol and port instead of a mark: vips, ports and
// fwmark would describe a second, different one.
func checkService(c *collector, cl *lvsctlv1.Cluster) netip.Addr {
	svc := cl.GetService()
	if len(cl.GetVips()) > 0 {
		c.add("vips", "set together with service: a plain service's VIP is service.address (leave vips out)")
	}
	if len(cl.GetPorts()) > 0 {
		c.add("ports", "set together with service: a plain service's port is service.port (leave ports out)")
	}
	a, reason := serviceAddr(svc.GetAddress())
	if reason != "" {
		c.add("service.address", "%s", reason)
	}
	switch svc.GetProtocol() {
	case lvsctlv1.Protocol_PROTOCOL_TCP, lvsctlv1.Protocol_PROTOCOL_UDP, lvsctlv1.Protocol_PROTOCOL_SCTP:
	case lvsctlv1.Protocol_PROTOCOL_UNSPECIFIED:
		c.add("service.protocol", "required (tcp, udp or sctp)")
	default:
		c.add("service.protocol", "unknown protocol %d (want tcp, udp or sctp)", int32(svc.GetProtocol()))
	}
	switch {
	case svc.GetPort() > MaxPort:
		c.add("service.port", "%d is out of range 0-%d", svc.GetPort(), MaxPort)
	case svc.GetPort() == 0 && cl.GetPersistence().GetTimeoutSeconds() == 0:
		// Port 0 is every port of the address; ipvsadm ("Zero port specified for
		// non-persistent service") and keepalived refuse it without persistence.
		c.add("service.port", "0 (every port) needs persistence: set persistence.timeout or a port")
	}
	return a
}

// checkSchedulerFlags: each flag once, and only for the scheduler that reads it (the kernel
// passes IP_VS_SVC_F_SCHED1..3 to every scheduler, and another one ignores them silently).
func checkSchedulerFlags(c *collector, cl *lvsctlv1.Cluster) {
	seen := map[lvsctlv1.SchedulerFlag]int{}
	for i, f := range cl.GetSchedulerFlags() {
		path := fmt.Sprintf("schedulerFlags[%d]", i)
		want := FlagScheduler(f)
		if want == "" {
			c.add(path, "unknown scheduler flag %d (want sh-fallback, sh-port, mh-fallback or mh-port)", int32(f))
			continue
		}
		if j, dup := seen[f]; dup {
			c.add(path, "%s is listed twice (schedulerFlags[%d])", SchedulerFlagName(f), j)
			continue
		}
		seen[f] = i
		if cl.GetScheduler() != want {
			c.add(path, "%s is a flag of the %s scheduler, not of %s (other schedulers ignore it)", SchedulerFlagName(f), want, schedulerText(cl.GetScheduler()))
		}
	}
}

func schedulerText(s string) string {
	if s == "" {
		return "the unset scheduler"
	}
	return s
}

// FlagScheduler is the scheduler that reads a flag: sh or mh ("" for an unknown flag).
func FlagScheduler(f lvsctlv1.SchedulerFlag) string {
	switch f {
	case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_FALLBACK, lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT:
		return "sh"
	case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_FALLBACK, lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT:
		return "mh"
	}
	return ""
}

// SchedulerFlagNames are flags as SchedulerFlagName writes them, in order.
func SchedulerFlagNames(fs []lvsctlv1.SchedulerFlag) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = SchedulerFlagName(f)
	}
	return out
}

// SchedulerFlagName is a flag as ipvsadm and manifests write it (sh-port); an unknown value
// is written as its number, which a manifest's parser refuses.
func SchedulerFlagName(f lvsctlv1.SchedulerFlag) string {
	switch f {
	case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_FALLBACK:
		return "sh-fallback"
	case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_SH_PORT:
		return "sh-port"
	case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_FALLBACK:
		return "mh-fallback"
	case lvsctlv1.SchedulerFlag_SCHEDULER_FLAG_MH_PORT:
		return "mh-port"
	}
	return fmt.Sprintf("flag(%d)", int32(f))
}

// checkOps: one-packet scheduling concerns UDP alone. The kernel sets IP_VS_CONN_F_ONE_PACKET
// for UDP datagrams only (ip_vs_schedule); ipvsadm refuses -o on a TCP or SCTP service but
// takes it on a fwmark one, as keepalived does ("OPS is only valid for UDP, or with a
// firewall mark"). lvsctl knows a fwmark cluster's ports, so it also refuses ops on one
// that marks no UDP port, where it would do nothing.
func checkOps(c *collector, cl *lvsctlv1.Cluster) {
	if !cl.GetOps() {
		return
	}
	if svc := cl.GetService(); svc != nil {
		if p := svc.GetProtocol(); p == lvsctlv1.Protocol_PROTOCOL_TCP || p == lvsctlv1.Protocol_PROTOCOL_SCTP {
			c.add("ops", "one-packet scheduling is for UDP services; the service is %s", protoName(p))
		}
		return
	}
	for _, p := range cl.GetPorts() {
		if p.GetProtocol() == lvsctlv1.Protocol_PROTOCOL_UDP {
			return
		}
	}
	if len(cl.GetPorts()) > 0 {
		c.add("ops", "one-packet scheduling applies to UDP datagrams only, and the cluster marks no udp port")
	}
}

// checkRealPort: a real server's port is NAT port mapping of a plain service. A fwmark
// service keeps the port the client asked for (a dest port there would send every marked
// port to that one); under route and tunnel the kernel forwards the packet unchanged, so
// the port cannot differ from the service's (ipvsadm silently sets it to the service's).
func checkRealPort(c *collector, cl *lvsctlv1.Cluster, i int, r *lvsctlv1.RealServer) {
	port := r.GetPort()
	if port == 0 {
		return
	}
	path := fmt.Sprintf("reals[%d].port", i)
	svc := cl.GetService()
	switch {
	case port > MaxPort:
		c.add(path, "%d is out of range 1-%d", port, MaxPort)
	case svc == nil:
		c.add(path, "%d is set on a fwmark cluster, which keeps the port the client asked for (leave it out)", port)
	case svc.GetPort() == 0:
		c.add(path, "%d is set on a service of every port (service.port 0), which keeps the port the client asked for (leave it out)", port)
	case port != svc.GetPort() && cl.GetForwarding() != lvsctlv1.Forwarding_FORWARDING_MASQ:
		c.add(path, "%d differs from service.port %d: only masq (NAT) rewrites the port; route and tunnel forward the packet as it came", port, svc.GetPort())
	}
}

// checkThresholds: the lower threshold is where a server over its upper one takes new
// connections again, so it needs an upper one, and is not above it.
func checkThresholds(c *collector, i int, r *lvsctlv1.RealServer) {
	up, low := r.GetUpperThreshold(), r.GetLowerThreshold()
	switch {
	case up > MaxThreshold:
		c.add(fmt.Sprintf("reals[%d].upperThreshold", i), "%d is more than %d", up, MaxThreshold)
	case low > MaxThreshold:
		c.add(fmt.Sprintf("reals[%d].lowerThreshold", i), "%d is more than %d", low, MaxThreshold)
	case low != 0 && up == 0:
		c.add(fmt.Sprintf("reals[%d].lowerThreshold", i), "%d is set without upperThreshold (a server takes connections again below the lower threshold once over the upper one)", low)
	case low > up:
		c.add(fmt.Sprintf("reals[%d].lowerThreshold", i), "%d is more than upperThreshold %d", low, up)
	}
}

#!/bin/sh
# counts: the connection counts that lvsctl reports are the kernel's.
#
# The seed's WMS cluster is applied and the client holds 12 TCP connections
# through the VIP. Within two sampling periods of the agent (--stats-period
# 1s), `lvsctl status cluster wms -o json` and the agent's /metrics
# (lvsctl_real_{active,inactive,persistent}_connections) must show, per real
# server, exactly what dir-a's `ipvsadm -Ln --persistent-conn` shows. Then
# the connections are closed: the active counts fall to 0 in all three, and
# the inactive and persistent counts (which follow the kernel's timers, from
# seconds to minutes) agree with ipvsadm's at that moment.
#
# The WMS cluster has persistence 600s: every connection of one client goes
# to the real server its first one went to, so the 12 all land on ONE real
# server. Expected: 12 active there and 0 on the other two, as ipvsadm shows
# it; the comparison is per real server all the same.
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

began=$(uptime_s)
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }
PERIOD=1 # the agent's --stats-period, in seconds

# The three views, each "ADDRESS ACTIVE INACTIVE PERSISTENT" per real
# server, sorted, one per line.

# kernel_view: dir-a's ipvsadm -Ln --persistent-conn, whose real server
# lines are "-> ADDR:PORT WEIGHT PERSISTCONN ACTIVECONN INACTCONN".
kernel_view() {
	on dir-a ipvsadm -Ln --persistent-conn |
		awk '$1 == "->" && $2 ~ /^[0-9]/ { a = $2; sub(/:[0-9]+$/, "", a); print a, $5, $6, $4 }' | sort
}

# json_value OBJECT KEY: KEY's value in a flat JSON object without spaces.
json_value() { printf '%s\n' "$1" | sed -nE "s/.*\"$2\":\"?([^\",}]*).*/\1/p"; }

# status_view: dir-a's reals in `lvsctl status cluster wms -o json`
# (directors[].reals[]; dir-a is the only director; "total" is cut off).
status_view() {
	lv status cluster wms -o json 2>/dev/null | tr -d ' \t\n' | sed 's/"total":.*//' | tr '{' '\n' |
		grep '^"address"' | while read -r o; do
		echo "$(json_value "$o" address) $(json_value "$o" activeConns) $(json_value "$o" inactiveConns) $(json_value "$o" persistentConns)"
	done | sort
}

# metrics_view: the agent's lvsctl_real_*_connections{cluster="wms"}.
metrics_view() {
	wget -qO- "http://$AGENT_METRICS/metrics" 2>/dev/null | awk '
		/^lvsctl_real_(active|inactive|persistent)_connections\{/ && /cluster="wms"/ {
			r = $1; sub(/.*real="/, "", r); sub(/".*/, "", r)
			k = $1; sub(/\{.*/, "", k); v[k, r] = $2; reals[r] = 1
		}
		END { for (r in reals) print r, v["lvsctl_real_active_connections", r], v["lvsctl_real_inactive_connections", r], v["lvsctl_real_persistent_connections", r] }' | sort
}

# views_agree: the kernel, status and metrics views are one (saved in
# /tmp/view.* for the failure message).
views_agree() {
	kernel_view >/tmp/view.kernel
	status_view >/tmp/view.status
	metrics_view >/tmp/view.metrics
	[ -s /tmp/view.kernel ] && cmp -s /tmp/view.kernel /tmp/view.status && cmp -s /tmp/view.kernel /tmp/view.metrics
}

# kernel_split ADDR: "N others 0" when ipvsadm shows N active connections
# on ADDR and none elsewhere, else names the others' counts.
kernel_split() {
	kernel_view | awk -v a="$1" '$1 == a { n = $2 } $1 != a && $2 != 0 { o = o " " $1 "=" $2 }
		END { print n + 0 " others" (o == "" ? " 0" : o) }'
}
kernel_split_is() { [ "$(kernel_split "$1")" = "$2" ]; }
kernel_active_zero() { [ "$(kernel_view | awk '$2 != 0' | wc -l)" = 0 ]; }

# compare WHAT SECS: wait up to SECS for the three views to agree, then
# check each against the kernel's and say how long it took.
compare() {
	_t=$(uptime_s)
	if wait_until "$2" views_agree; then
		note "status and /metrics matched ipvsadm $(since "$_t")s after the kernel did"
	fi
	expect_eq "$1: lvsctl status cluster wms -o json equals ipvsadm (address active inactive persistent)" \
		"$(cat /tmp/view.kernel)" "$(cat /tmp/view.status)"
	expect_eq "$1: agent /metrics equals ipvsadm (address active inactive persistent)" \
		"$(cat /tmp/view.kernel)" "$(cat /tmp/view.metrics)"
}

step "Topology and responders"
topology
start_reals

step "Controller, agent (--stats-period ${PERIOD}s), apply the seed's WMS cluster"
start_controller
start_agent
show lv apply -f /lab/examples/wms.yaml || die "apply of wms.yaml failed"
wait_applied 30 || die "dir-a did not apply wms"
if ! lv status cluster --help >/dev/null 2>&1; then
	note "this lvsctl has no 'status cluster': the status half of each check will fail"
fi

step "No connections yet: every view shows zeros"
compare "idle" $((2 * PERIOD + 3))
show on dir-a ipvsadm -Ln --persistent-conn

step "The client holds 12 TCP connections to $VIP:554"
rm -f /tmp/hold.stop
on client lab-client hold "$VIP:554" -n 12 --stop-file /tmp/hold.stop >/tmp/hold.out 2>&1 &
wait_line /tmp/hold.out '^HOLD READY' 30 || die "the 12 connections did not open"
t_ready=$(uptime_s)
servers=$(sed -nE 's/^conn [0-9]+ sport [0-9]+ server (rs[0-9])$/\1/p' /tmp/hold.out | sort | uniq -c | awk '{ print $2, $1 }')
# Persistence (600s) sends all of one client's connections to one real server.
expect_match "all 12 connections on one real server (persistence)" '^rs[1-3] 12$' "$servers"
pinned_ip=198.51.100.$(echo "$servers" | sed -nE 's/^rs([0-9]) .*/\1/p' | head -n 1)
wait_until 5 kernel_split_is "$pinned_ip" "12 others 0"
show on dir-a ipvsadm -Ln --persistent-conn
expect_eq "ipvsadm: active connections on $pinned_ip, and on the other reals" "12 others 0" "$(kernel_split "$pinned_ip")"
compare "12 held" $((2 * PERIOD + 3))
took=$(since "$t_ready")
expect_eq "12 held: status and /metrics caught up within two sampling periods (${PERIOD}s each) of HOLD READY (took ${took}s, one status+metrics poll included)" \
	ok "$(awk -v t="$took" -v p="$PERIOD" 'BEGIN { print (t <= 2 * p + 1 ? "ok" : "slower") }')"
show lv status cluster wms
show wget -qO- "http://$AGENT_METRICS/metrics"

step "Close the 12 connections"
touch /tmp/hold.stop
wait_line /tmp/hold.out '^HOLD RESULT' 20
expect_match "the 12 held connections answered every probe" '^HOLD RESULT OK conns 12 ' "$(grep '^HOLD RESULT' /tmp/hold.out)"
t_closed=$(uptime_s)
wait_until 10 kernel_active_zero || fail_check "closed: expected ipvsadm to show 0 active connections within 10s, saw $(oneline "$(kernel_view)")"
note "ipvsadm shows 0 active $(since "$t_closed")s after the client closed"
compare "closed" $((2 * PERIOD + 3))
took=$(since "$t_closed")
expect_eq "closed: status and /metrics showed 0 active within two sampling periods (${PERIOD}s each) of the close (took ${took}s, one status+metrics poll included)" \
	ok "$(awk -v t="$took" -v p="$PERIOD" 'BEGIN { print (t <= 2 * p + 1 ? "ok" : "slower") }')"
expect_eq "closed: active connections in lvsctl status" "0" "$(awk '{ print $2 }' /tmp/view.status | sort -u | tr '\n' ' ' | sed 's/ $//')"
note "observed after closing (address active inactive persistent): $(oneline "$(cat /tmp/view.kernel)")"
show on dir-a ipvsadm -Ln --persistent-conn
show on dir-a ipvsadm -Lnc
show lv status cluster wms

note "scenario body took $(since "$began")s of guest time"
finish

#!/bin/sh
# counts: the connection counts that lvsctl reports are the kernel's.
#
# The seed's WMS cluster is applied and three clients (client, client2,
# client3) each hold 4 TCP connections through the VIP, one client after the
# other. Within two sampling periods of the agent (--stats-period 1s) of the
# moment all 12 are open, `lvsctl status cluster wms -o json` and the
# agent's /metrics (lvsctl_real_{active,inactive,persistent}_connections)
# must show, per real server, exactly what dir-a's
# `ipvsadm -Ln --persistent-conn` shows; 12 active in all, on at least two
# real servers. Then the connections are closed: the active counts fall to 0
# in all three views (within two periods of the kernel's), and the inactive
# and persistent counts (which follow the kernel's timers, from seconds to
# minutes) agree with ipvsadm's at that moment.
#
# The WMS cluster has persistence 600s: all of one client's connections go to
# the real server its first one went to. With wlc, each new client goes to
# the least loaded real server, so the 12 should split 4/4/4; what is
# checked is that the split per real server is the same in all three views
# (and matches where the clients' connections were answered).
#
# Timing: the views are polled back to back; a poll reads ipvsadm, then
# lvsctl, then /metrics, which takes a good part of a second in the guest.
# The check passes if a poll BEGUN within two periods of the event found the
# three equal: that poll's own run time is the only slack. The delays printed
# are "began +X s, ended +Y s" after the event.
. ./lib.sh

began=$(uptime_s)
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }
CLIENTS="client client2 client3"
PER_CLIENT=4
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
	timeout 10 wget -qO- "http://$AGENT_METRICS/metrics" 2>/dev/null | awk '
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

# over SECS T0: status 0 once more than SECS have passed since T0.
over() { awk -v a="$2" -v b="$(uptime_s)" -v l="$1" 'BEGIN { exit !(b - a > l) }'; }

# fast_wait SECS CMD...: retry CMD every 0.05 s (for timestamps finer than
# wait_until's 0.2 s); status 1 after SECS.
fast_wait() {
	_fw_lim=$1
	shift
	_fw_t0=$(uptime_s)
	while ! "$@" >/dev/null 2>&1; do
		over "$_fw_lim" "$_fw_t0" && return 1
		sleep 0.05
	done
}

kernel_active_zero() { [ "$(kernel_view | awk '$2 != 0' | wc -l)" = 0 ]; }

# compare WHAT SECS: wait up to SECS for the three views to agree, then
# check each against the kernel's (no timing: for the idle state).
compare() {
	wait_until "$2" views_agree
	expect_eq "$1: lvsctl status cluster wms -o json equals ipvsadm (address active inactive persistent)" \
		"$(cat /tmp/view.kernel)" "$(cat /tmp/view.status)"
	expect_eq "$1: agent /metrics equals ipvsadm (address active inactive persistent)" \
		"$(cat /tmp/view.kernel)" "$(cat /tmp/view.metrics)"
}

# catch_up WHAT T0 EVENT: poll views_agree back to back from now until a
# poll finds the three views equal (polling on up to 3 s past the deadline,
# to say how late they were). Checks that the agreeing poll began within two
# periods of T0 (the moment of EVENT), then checks status and /metrics
# against ipvsadm as that poll saw them. Sets CAUGHT ("began +X s, ended
# +Y s" after T0, or "not within ...").
catch_up() {
	_cu_limit=$((2 * PERIOD))
	CAUGHT=
	while :; do
		_cu_b=$(since "$2")
		if views_agree; then
			CAUGHT="began +${_cu_b}s, ended +$(since "$2")s"
			break
		fi
		over $((_cu_limit + 3)) "$2" && break
		sleep 0.05
	done
	if [ -z "$CAUGHT" ]; then
		fail_check "$1: expected status and /metrics to equal ipvsadm in a poll begun within $_cu_limit s of $3, they did not in $((_cu_limit + 3)) s"
	else
		note "status and /metrics equal to ipvsadm in the poll that $CAUGHT after $3"
		expect_eq "$1: the agreeing poll began within two sampling periods (${_cu_limit}s) of $3 ($CAUGHT)" \
			ok "$(awk -v b="$_cu_b" -v l="$_cu_limit" 'BEGIN { print (b <= l ? "ok" : "slower") }')"
	fi
	expect_eq "$1: lvsctl status cluster wms -o json equals ipvsadm (address active inactive persistent)" \
		"$(cat /tmp/view.kernel)" "$(cat /tmp/view.status)"
	expect_eq "$1: agent /metrics equals ipvsadm (address active inactive persistent)" \
		"$(cat /tmp/view.kernel)" "$(cat /tmp/view.metrics)"
}

# real_metrics: the agent's per-real and per-cluster samples.
real_metrics() { timeout 10 wget -qO- "http://$AGENT_METRICS/metrics" | grep -E '^lvsctl_(real|cluster)_'; }

step "Topology (with client2 192.0.2.101 and client3 192.0.2.102) and responders"
topology
add_client client2 192.0.2.101 || die "cannot add client2"
add_client client3 192.0.2.102 || die "cannot add client3"
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

step "Each of $CLIENTS holds $PER_CLIENT TCP connections to $VIP:554, one client after the other"
rm -f /tmp/hold.stop
for c in $CLIENTS; do
	on "$c" lab-client hold "$VIP:554" -n "$PER_CLIENT" --stop-file /tmp/hold.stop >"/tmp/hold.$c.out" 2>&1 &
	fast_wait 30 grep -q '^HOLD READY' "/tmp/hold.$c.out" || {
		sed 's/^/    /' "/tmp/hold.$c.out"
		die "$c's $PER_CLIENT connections did not open"
	}
done
t_ready=$(uptime_s)
note "all $((3 * PER_CLIENT)) connections open (HOLD READY from $CLIENTS) at ${t_ready}s"
catch_up "12 held" "$t_ready" "the last HOLD READY"

# What the clients saw: each one's connections on one real server, and the
# count per real server that ipvsadm should show.
for c in $CLIENTS; do
	servers=$(sed -nE 's/^conn [0-9]+ sport [0-9]+ server (rs[0-9])$/\1/p' "/tmp/hold.$c.out" | sort | uniq -c | awk '{ print $2, $1 }')
	expect_match "$c: its $PER_CLIENT connections answered by one real server (persistence)" "^rs[1-3] $PER_CLIENT\$" "$servers"
done
answered_by=$(cat /tmp/hold.*.out | sed -nE 's/^conn [0-9]+ sport [0-9]+ server rs([0-9])$/198.51.100.\1/p' | sort | uniq -c |
	awk '{ n[$2] = $1 } END { for (i = 1; i <= 3; i++) print "198.51.100." i, n["198.51.100." i] + 0 }')
kernel_active=$(awk '{ print $1, $2 }' /tmp/view.kernel)
note "active per real server, ipvsadm (in the agreeing poll): $(oneline "$kernel_active")"
expect_eq "ipvsadm's active connections per real server are where the clients' connections were answered" \
	"$answered_by" "$kernel_active"
expect_eq "ipvsadm: active connections in all" "$((3 * PER_CLIENT))" "$(awk '{ s += $2 } END { print s + 0 }' /tmp/view.kernel)"
expect_match "ipvsadm: real servers carrying connections (at least two; wlc should make it 3)" '^[23]$' \
	"$(awk '$2 > 0' /tmp/view.kernel | wc -l)"
show on dir-a ipvsadm -Ln --persistent-conn
show lv status cluster wms
show real_metrics
HELD_DELAY=$CAUGHT

step "Close the 12 connections"
touch /tmp/hold.stop
for c in $CLIENTS; do
	wait_line "/tmp/hold.$c.out" '^HOLD RESULT' 20
	expect_match "$c: its $PER_CLIENT held connections answered every probe" "^HOLD RESULT OK conns $PER_CLIENT " "$(grep '^HOLD RESULT' "/tmp/hold.$c.out")"
done
t_closed=$(uptime_s)
if fast_wait 10 kernel_active_zero; then
	t_zero=$(uptime_s)
	note "ipvsadm shows 0 active $(since "$t_closed")s after the last HOLD RESULT was seen"
	catch_up "closed" "$t_zero" "ipvsadm showing 0 active"
	CLOSED_DELAY=$CAUGHT
else
	fail_check "closed: expected ipvsadm to show 0 active connections within 10s, saw $(oneline "$(kernel_view)")"
	CLOSED_DELAY=none
fi
expect_eq "closed: active connections in lvsctl status" "0" "$(awk '{ print $2 }' /tmp/view.status | sort -u | tr '\n' ' ' | sed 's/ $//')"
expect_eq "closed: active connections in /metrics" "0" "$(awk '{ print $2 }' /tmp/view.metrics | sort -u | tr '\n' ' ' | sed 's/ $//')"
note "observed after closing (address active inactive persistent): $(oneline "$(cat /tmp/view.kernel)")"
show on dir-a ipvsadm -Ln --persistent-conn
show on dir-a ipvsadm -Lnc
show lv status cluster wms

step "Delays (guest time; each is a poll's begin and end after the event)"
note "12 held, after the last HOLD READY: $HELD_DELAY"
note "closed, after ipvsadm showed 0 active: $CLOSED_DELAY"
note "scenario body took $(since "$began")s of guest time"
finish

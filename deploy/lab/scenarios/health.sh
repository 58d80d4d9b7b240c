#!/bin/sh
# health: every director checks every real server itself and quiesces the
# ones that fail (issue 9). Two directors (site_ha: controller on br-mgmt,
# agents in dir-a and dir-b, group edge-1), the WMS-like cluster with
#   health: {check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}
# and the lab responders as the real servers' RTSP side, switched between
# modes (lab-responder --mode-file: ok, off = not listening, hang = accepts
# and never answers, 404). Each verdict is timed from the switch to the
# moment both directors' IPVS tables show it (lab-health wait, every 20 ms):
#   - every real server up on both directors (lvsctl status cluster wms),
#     weight 100; net.ipv4.vs.expire_quiescent_template=1 in both;
#     `get -o yaml` prints the health block and re-applies unchanged;
#   - rs2's RTSP stopped: weight 0 on both within fall x interval + slack,
#     status down with the error (refused), the agents' gauge 0, lvsctl top
#     marks it down; 12 new connections through the VIP all avoid it; the 6
#     connections held through the VIP since before (2 on rs2) are never cut;
#   - rs2's RTSP back: weight 100 on both within rise x interval + slack;
#   - rs3 accepts TCP and never answers: down (timeout), within fall x
#     (interval + timeout) + interval + slack (a check lasts its timeout, and
#     one due while the last still runs is skipped); back;
#   - rs1 answers RTSP/1.0 404: down within fall x interval + slack; back;
#   - sorryServer (issue 12): with rs1-rs3 all stopped, the sorry server
#     (namespace sorry, 198.51.100.9, its own responder) is added at weight 1
#     on both directors within fall x interval + slack and new connections
#     through the VIP reach it; lvsctl status -o json shows it (sorry, and
#     sorryInUse per director); rs2 back: the sorry server leaves both kernels
#     within rise x interval + slack and new connections reach rs2;
#   - onFailure: remove: rs2 stopped leaves both kernels, comes back on recovery;
#   - 100 real servers in 10 more clusters with the default check timings
#     (`health: {check: rtsp, port: 554}`: interval 2s, timeout 1s, rise 2,
#     fall 3), 30 of them hanging (namespaces farm, 70 addresses answering,
#     and hang, 30 never answering): the 30 are down and at weight 0 and the
#     70 up at 100 on both directors; over 20 s, every healthy one is checked
#     by each director at its interval (counted and timed from the
#     responder's log of who connected to which address), and each agent's
#     goroutines (go_goroutines on its /metrics) and open files
#     (/proc/PID/fd) stay flat (lab-health sample, every second).
# Every time measured is printed. HEALTH_SLACK (seconds, default 2) is what
# a verdict may take beyond the check's own timing to reach both kernels.
# lab-timeout: 600
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

# Lab failover timings, as ha-sync: what is checked here does not depend on
# them, and an emulated guest stalls past the defaults (see ha-sync.sh).
HA_FAILOVER=${HA_FAILOVER-"{heartbeatInterval: 200ms, deadAfter: 3s, fenceTime: 3s}"}
HA_WATCH=0 # no dual-holder sampler: its CPU would blur the timings here
INTERVAL=1
TIMEOUT=1
RISE=2
FALL=2
HEALTH="{check: rtsp, port: 554, interval: ${INTERVAL}s, timeout: ${TIMEOUT}s, rise: $RISE, fall: $FALL, onFailure: quiesce}"
HA_CLUSTER_EXTRA="health: $HEALTH"
SLACK=${HEALTH_SLACK:-2}
LIMIT_DOWN=$((FALL * INTERVAL + SLACK))
LIMIT_HANG=$((FALL * (INTERVAL + TIMEOUT) + INTERVAL + SLACK))
LIMIT_UP=$((RISE * INTERVAL + SLACK))
# The 100 reals are checked at the defaults (interval 2s, timeout 1s, rise
# 2, fall 3): two emulated agents checking 100 targets a second each starve
# the guest (a first try at interval 1s saw healthy targets time out).
SCALE_HEALTH="{check: rtsp, port: 554}"
SCALE_INTERVAL=2
RS1=$(real_ip rs1)
RS2=$(real_ip rs2)
RS3=$(real_ip rs3)
MEASURED=""
trap 'ha_digest; exit 143' TERM

# measure WHAT LIMIT OUT: a check that OUT (a WAIT line) came within LIMIT s.
measure() {
	_ms=$(wait_ms "$3")
	MEASURED="$MEASURED
  $1: $(printf '%s\n' "$3" | sed -nE 's/^WAIT [a-z]+ (.*)/\1/p') (limit ${2}s)"
	if printf '%s\n' "$3" | grep -q '^WAIT ok ' && within "$_ms" "$2"; then
		pass_check "$1 within ${2}s: $3"
	else
		fail_check "$1 within ${2}s: $3"
		grep -E 'level=(WARN|ERROR)' /tmp/agent.dir-a.log /tmp/agent.dir-b.log 2>/dev/null | tail -n 10 | cut -c1-300 | sed 's/^/    /'
	fi
}

# count_health STATE: how many (director, real server) pairs of the last
# reals_snap have health STATE.
count_health() { awk -v s="$1" '$4 == s' /tmp/reals.txt | wc -l; }
all_up() {
	reals_snap "$1"
	[ "$(count_health up)" = "$2" ]
}

# agent_metric NS NAME [SUBSTRING]: a metric of NS's agent.
agent_metric() { metric_at "$(mgmt_ip "$1"):9444" "$2" "${3:-}"; }

step "Site, controller, agents in dir-a and dir-b, cluster wms with health $HEALTH"
ha_up
if wait_until 20 all_up wms 6; then
	pass_check "rs1-rs3 up on both directors (lvsctl status cluster wms)"
else
	fail_check "rs1-rs3 up on both directors within 20 s: $(oneline "$(cat /tmp/reals.txt)")"
fi
show cat /tmp/reals.txt
for r in rs1 rs2 rs3; do
	expect_eq "$r weight 100 on both directors (ipvsadm)" "dir-a=100 dir-b=100" "$(weights "$(real_ip "$r")")"
done
expect_match "healthSince is RFC 3339" '^"?20[0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9:]+' "$(real_field dir-a "$RS1" healthSince)"
for d in $HA_DIRECTORS; do
	expect_eq "$d: net.ipv4.vs.expire_quiescent_template" 1 "$(on "$d" cat /proc/sys/net/ipv4/vs/expire_quiescent_template)"
done
y1=$(lv get cluster wms -o yaml)
printf '%s\n' "$y1" | sed -n '/^health/,/^[a-z]/p' | sed 's/^/    /'
expect_match "get cluster wms -o yaml prints the health check" 'check: rtsp' "$(printf '%s\n' "$y1" | grep 'check:')"
printf '%s\n' "$y1" | lv apply -f - >/dev/null
expect_eq "get -o yaml re-applied: the same cluster, the same revision" "$y1" "$(lv get cluster wms -o yaml)"

step "rs2's RTSP responder stops listening, 6 connections held through the VIP"
hold_start stop 41000 6 || die "6 connections through $VIP held"
note "held: $(sed -nE 's/^conn .* server (rs[0-9]+)$/\1/p' /tmp/hold.stop.out | sort | uniq -c | awk '{printf "%s%s x%s", (NR > 1 ? ", " : ""), $2, $1}')"
t0=$(uptime_s)
rtsp_mode rs2 off
measure "rs2 stopped -> weight 0 on both directors" "$LIMIT_DOWN" "$(wait_weight "$RS2" 0 "$t0" 20)"
expect_eq "weights rs1 rs2 rs3 (ipvsadm, both directors)" "dir-a=100 dir-b=100 dir-a=0 dir-b=0 dir-a=100 dir-b=100" \
	"$(weights "$RS1") $(weights "$RS2") $(weights "$RS3")"
wait_until 5 health_all wms "$RS2" down
expect_eq "lvsctl status cluster wms: rs2 health" "dir-a=down dir-b=down" "$(real_fields "$RS2" health)"
expect_match "lvsctl status cluster wms: rs2's error on dir-a says refused" 'refused' "$(real_field dir-a "$RS2" healthError)"
expect_eq "agents' lvsctl_real_health for rs2" "0 0" \
	"$(agent_metric dir-a lvsctl_real_health "real=\"$RS2\"") $(agent_metric dir-b lvsctl_real_health "real=\"$RS2\"")"
expect_match "lvsctl top marks rs2 down" "$(echo "$RS2" | sed 's/\./\\./g').*down" \
	"$(lv top --cluster wms --iterations 1 2>&1 | grep -F "$RS2")"
out=$(on client lab-client tcp "$VIP:554" -n 12 --count-by-server 2>&1)
expect_eq "12 new connections through the VIP: none on rs2, none failed" "rs1 6
rs3 6" "$out"

step "rs2's RTSP responder listens again"
t0=$(uptime_s)
rtsp_mode rs2 ok
measure "rs2 back -> weight 100 on both directors" "$LIMIT_UP" "$(wait_weight "$RS2" 100 "$t0" 20)"
wait_until 5 health_all wms "$RS2" up
expect_eq "lvsctl status cluster wms: rs2 health" "dir-a=up dir-b=up" "$(real_fields "$RS2" health)"
for d in $HA_DIRECTORS; do
	tr=$(agent_metric "$d" lvsctl_real_health_transitions_total "real=\"$RS2\"")
	if [ -n "$tr" ] && [ "${tr%.*}" -ge 3 ] 2>/dev/null; then
		pass_check "$d: lvsctl_real_health_transitions_total for rs2 counts up, down, up ($tr)"
	else
		fail_check "$d: lvsctl_real_health_transitions_total for rs2 at least 3 (up, down, up): saw '$tr'"
	fi
done
res=$(hold_stop stop)
note "$res"
grep '^conn .* probes ' /tmp/hold.stop.out | sed 's/^/    /'
expect_match "the 6 held connections answered every probe, rs2's too" '^HOLD RESULT OK conns 6 .* survived 6/6 ' "$res"
expect_match "connections held on rs2 while it was down" '[1-9]' "$(grep -c '^conn .* server rs2 probes ' /tmp/hold.stop.out)"

step "rs3 accepts TCP and never answers RTSP (the check's timeout)"
t0=$(uptime_s)
rtsp_mode rs3 hang
measure "rs3 hanging -> weight 0 on both directors" "$LIMIT_HANG" "$(wait_weight "$RS3" 0 "$t0" 30)"
wait_until 5 health_all wms "$RS3" down
expect_match "lvsctl status cluster wms: rs3's error on dir-b says timed out" 'timed out' "$(real_field dir-b "$RS3" healthError)"
t0=$(uptime_s)
rtsp_mode rs3 ok
measure "rs3 answering again -> weight 100 on both directors" "$LIMIT_UP" "$(wait_weight "$RS3" 100 "$t0" 20)"

step "rs1 answers RTSP/1.0 404 Not Found"
t0=$(uptime_s)
rtsp_mode rs1 404
measure "rs1 answering 404 -> weight 0 on both directors" "$LIMIT_DOWN" "$(wait_weight "$RS1" 0 "$t0" 20)"
wait_until 5 health_all wms "$RS1" down
expect_match "lvsctl status cluster wms: rs1's error on dir-a says 404" '404' "$(real_field dir-a "$RS1" healthError)"
t0=$(uptime_s)
rtsp_mode rs1 ok
measure "rs1 answering 200 -> weight 100 on both directors" "$LIMIT_UP" "$(wait_weight "$RS1" 100 "$t0" 20)"

step "Sorry server: every real server's RTSP stopped, then one back"
# A namespace "sorry" on br-real (198.51.100.9, routing through the
# gateway like the real servers) with its own responder: the cluster's
# sorryServer. It is in neither kernel while any real server is up.
SORRY_IP=198.51.100.9
add_real sorry "$SORRY_IP" || die "namespace sorry"
# TCP 554 and 1755 only (no UDP range: its 4,000 sockets are not needed), stopped
# after this step: the guest's CPU is the 100-reals step's.
# (iproute2 directly, not on(): $! is then the responder's pid, as lib.sh's agents'.)
/usr/sbin/ip netns exec sorry lab-responder --name sorry --udp-first 1 --udp-last 0 >/tmp/sorry.log 2>&1 &
SORRY_PID=$!
wait_line /tmp/sorry.log ready 20 || die "responder sorry did not start"
rev_a=$(applied_rev dir-a)
rev_b=$(applied_rev dir-b)
HA_CLUSTER_EXTRA="health: $HEALTH
sorryServer: {address: $SORRY_IP}"
ha_manifest | lv apply -f - || fail_check "apply of wms with sorryServer"
wait_applied 30 dir-a "$rev_a" || fail_check "dir-a applied the sorry server"
wait_applied 30 dir-b "$rev_b" || fail_check "dir-b applied the sorry server"
expect_eq "sorry server in ipvsadm -Ln while rs1-rs3 are up" "dir-a=absent dir-b=absent" "$(weights "$SORRY_IP")"
t0=$(uptime_s)
rtsp_mode rs1 off
rtsp_mode rs2 off
rtsp_mode rs3 off
measure "rs1-rs3 stopped -> sorry server at weight 1 on both directors" "$LIMIT_DOWN" "$(wait_weight "$SORRY_IP" 1 "$t0" 20)"
for d in $HA_DIRECTORS; do
	note "$d: $(oneline "$(on "$d" ipvsadm -Ln | grep -E '^  ->|^FWM')")"
done
expect_eq "weights rs1 rs2 rs3 sorry (ipvsadm, both directors)" "dir-a=0 dir-b=0 dir-a=0 dir-b=0 dir-a=0 dir-b=0 dir-a=1 dir-b=1" \
	"$(weights "$RS1") $(weights "$RS2") $(weights "$RS3") $(weights "$SORRY_IP")"
out=$(on client lab-client tcp "$VIP:554" -n 6 --count-by-server 2>&1)
expect_eq "6 new connections through the VIP: all answered by the sorry server" "sorry 6" "$out"
# Status follows the kernels by up to one stats report.
sorry_status() { lv status cluster wms -o json 2>/dev/null | lab-health reals --fields weight,sorry | awk -v a="$SORRY_IP" '$2 == a { print $1 "=" $3 "," $4 }' | sort | tr '\n' ' '; }
sorry_shown() { [ "$(sorry_status)" = "dir-a=1,true dir-b=1,true " ]; }
wait_until 5 sorry_shown
expect_eq "lvsctl status cluster wms -o json: the sorry server's row (weight, sorry) per director" "dir-a=1,true dir-b=1,true " "$(sorry_status)"
expect_eq "lvsctl status cluster wms -o json: directors with sorryInUse true" 2 "$(lv status cluster wms -o json | grep -c '"sorryInUse": *true')"
lv status cluster wms | sed -n '/^Sorry server in use/,/^$/p' | sed 's/^/    /'
t0=$(uptime_s)
rtsp_mode rs2 ok
measure "rs2 back -> sorry server out of both directors" "$LIMIT_UP" "$(wait_weight "$SORRY_IP" absent "$t0" 20)"
expect_eq "rs2 weight (ipvsadm, both directors)" "dir-a=100 dir-b=100" "$(weights "$RS2")"
out=$(on client lab-client tcp "$VIP:554" -n 4 --count-by-server 2>&1)
expect_eq "4 new connections through the VIP: all on rs2" "rs2 4" "$out"
sorry_gone() { [ "$(sorry_status)" = "" ] && [ "$(lv status cluster wms -o json | grep -c '"sorryInUse": *true')" = 0 ]; }
wait_until 5 sorry_gone
expect_eq "lvsctl status cluster wms -o json: the sorry server no longer listed, no director sorryInUse" "" "$(sorry_status)"
t0=$(uptime_s)
rtsp_mode rs1 ok
rtsp_mode rs3 ok
measure "rs1 back -> weight 100 on both directors" "$LIMIT_UP" "$(wait_weight "$RS1" 100 "$t0" 20)"
measure "rs3 back -> weight 100 on both directors" "$LIMIT_UP" "$(wait_weight "$RS3" 100 "$t0" 20)"
kill "$SORRY_PID" 2>/dev/null

step "onFailure: remove: a failing real server leaves the IPVS service, and returns"
rev_a=$(applied_rev dir-a)
rev_b=$(applied_rev dir-b)
HA_CLUSTER_EXTRA="health: $(echo "$HEALTH" | sed 's/onFailure: quiesce/onFailure: remove/')"
ha_manifest | lv apply -f - || fail_check "apply of wms with onFailure: remove"
wait_applied 30 dir-a "$rev_a" || fail_check "dir-a applied onFailure: remove"
wait_applied 30 dir-b "$rev_b" || fail_check "dir-b applied onFailure: remove"
t0=$(uptime_s)
rtsp_mode rs2 off
measure "rs2 stopped (remove) -> absent from both directors" "$LIMIT_DOWN" "$(wait_weight "$RS2" absent "$t0" 20)"
expect_eq "rs2 in ipvsadm -Ln (remove)" "dir-a=absent dir-b=absent" "$(weights "$RS2")"
out=$(on client lab-client tcp "$VIP:554" -n 6 --count-by-server 2>&1)
expect_eq "6 new connections through the VIP: none on rs2, none failed" "rs1 3
rs3 3" "$out"
t0=$(uptime_s)
rtsp_mode rs2 ok
measure "rs2 back (remove) -> in both directors at weight 100" "$LIMIT_UP" "$(wait_weight "$RS2" 100 "$t0" 20)"

# ---- 100 real servers, 30 hanging --------------------------------------------
step "100 real servers in 10 clusters h0-h9, 30 of them accept and never answer"
# farm NS FIRST LAST: a namespace on br-real with 198.51.100.FIRST-LAST.
farm() {
	netns_up "$1" || return 1
	plug "$1" eth0 br-real "198.51.100.$2/24"
	seq $(($2 + 1)) "$3" | awk '{ print "addr add 198.51.100." $1 "/24 dev eth0" }' >"/tmp/$1.batch"
	/usr/sbin/ip -n "$1" -b "/tmp/$1.batch" || return 1
	on "$1" ip route add default via "$GATEWAY"
}
farm farm 101 170 || die "namespace farm"
farm hang 201 230 || die "namespace hang"
on farm lab-responder --name farm --udp-first 1 --udp-last 0 >/tmp/farm.log 2>&1 &
on hang lab-responder --name hang --rtsp-mode hang --udp-first 1 --udp-last 0 >/tmp/hang.log 2>&1 &
wait_line /tmp/farm.log ready 20 || die "responder farm did not start"
wait_line /tmp/hang.log ready 20 || die "responder hang did not start"
note "farm: 198.51.100.101-170 answer RTSP; hang: 198.51.100.201-230 accept and never answer"

# samples NAME N: N samples of both agents, one a second (lab-health
# sample), "GOROUTINES FDS" per line in /tmp/samples.NAME.DIRECTOR.
samples() {
	lab-health sample "dir-a=$DIR_A_MGMT_IP:9444/$(agent_pid dir-a)" "dir-b=$DIR_B_MGMT_IP:9444/$(agent_pid dir-b)" \
		-n "$2" --every 1s >"/tmp/samples.$1" 2>&1 || fail_check "lab-health sample: $(oneline "$(cat "/tmp/samples.$1")")"
	for _d in $HA_DIRECTORS; do
		awk -v d="$_d" '$1 == d { print $2, $3 }' "/tmp/samples.$1" >"/tmp/samples.$1.$_d"
	done
}
samples base 3
for d in $HA_DIRECTORS; do
	note "$d's agent before: goroutines fds $(oneline "$(cat "/tmp/samples.base.$d")")"
done

# scale_manifest: clusters h0-h9, VIP 192.0.2.20+K, tcp 554, each with 7
# reals of farm and 3 of hang.
scale_manifest() {
	for k in 0 1 2 3 4 5 6 7 8 9; do
		[ "$k" -gt 0 ] && echo ---
		cat <<YAML
kind: Cluster
name: h$k
directorGroup: edge-1
vips: [192.0.2.$((20 + k))]
ports: [{protocol: tcp, port: 554}]
scheduler: rr
forwarding: masq
health: $SCALE_HEALTH
reals:
YAML
		seq $((101 + 7 * k)) $((107 + 7 * k)) | awk '{ print "  - {address: 198.51.100." $1 ", weight: 100}" }'
		seq $((201 + 3 * k)) $((203 + 3 * k)) | awk '{ print "  - {address: 198.51.100." $1 ", weight: 100}" }'
	done
}
rev_a=$(applied_rev dir-a)
rev_b=$(applied_rev dir-b)
scale_manifest >/tmp/scale.yaml
t0=$(uptime_s)
show lv apply -f /tmp/scale.yaml || fail_check "apply of 10 clusters x 10 reals"
wait_applied 60 dir-a "$rev_a" || fail_check "dir-a applied the 10 clusters"
wait_applied 60 dir-b "$rev_b" || fail_check "dir-b applied the 10 clusters"

# farm_weights: "N100 N0" over both directors: how many of the 140 (director,
# farm real) have weight 100, and how many of the 60 (director, hang real) 0.
farm_weights() {
	lab-health ipvs --ns dir-a,dir-b 2>/dev/null | awk '
		$3 ~ /^198\.51\.100\.1[0-9][0-9]$/ && $4 == "weight=100" { up++ }
		$3 ~ /^198\.51\.100\.2[0-9][0-9]$/ && $4 == "weight=0" { down++ }
		END { print up + 0, down + 0 }'
}
farm_settled() { [ "$(farm_weights)" = "140 60" ]; }
if wait_until 40 farm_settled; then
	pass_check "the 30 hanging reals at weight 0, the 70 others at 100, on both directors, $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN {printf "%.1f", b - a}') s after the apply"
else
	fail_check "the 30 hanging reals at weight 0 and the 70 others at 100 on both directors within 40 s: saw (at 100, at 0) $(farm_weights)"
fi
# farm_health: "up U down D" over the (director, real) pairs of h0..h9 in lvsctl status.
farm_health() {
	_ups=0
	_downs=0
	for k in 0 1 2 3 4 5 6 7 8 9; do
		reals_snap "h$k"
		_ups=$((_ups + $(count_health up)))
		_downs=$((_downs + $(count_health down)))
	done
	echo "up $_ups down $_downs"
}
farm_health_settled() { [ "$(farm_health)" = "up 140 down 60" ]; }
# Status follows the kernels by up to one stats report (1 s): wait for it.
wait_until 5 farm_health_settled
expect_eq "lvsctl status cluster h0..h9: (director, real) pairs up and down" "up 140 down 60" "$(farm_health)"

step "Over 20 s: the healthy reals checked on time, the agents' goroutines and files flat"
l0=$(wc -l </tmp/farm.log)
h0=$(wc -l </tmp/hang.log)
w0=$(uptime_s)
samples window 21
w1=$(uptime_s)
l1=$(wc -l </tmp/farm.log)
h1=$(wc -l </tmp/hang.log)
window=$(awk -v a="$w0" -v b="$w1" 'BEGIN {printf "%.1f", b - a}')
# checks LOG FROM TO: the responder's lines FROM..TO, "lab-responder NAME:
# HH:MM:SS.UUUUUU tcp 554: connection from DIRECTOR:PORT to REAL:554", per
# director: "DIRECTOR-ADDRESS TARGETS MIN-CHECKS MAX-CHECKS MAX-GAP-S" (the
# gaps between two checks of one real by one director).
checks() {
	sed -n "$2,$3p" "$1" | awk '
		$6 == "connection" && $7 == "from" {
			split($3, t, ":"); s = t[1] * 3600 + t[2] * 60 + t[3]
			d = $8; sub(/:[0-9]+$/, "", d); r = $10; sub(/:[0-9]+$/, "", r); k = d " " r
			if (k in last) { g = s - last[k]; if (g < 0) g += 86400; if (g > gap[d]) gap[d] = g }
			last[k] = s; n[k]++; dirs[d] = 1
		}
		END {
			for (k in n) { split(k, p, " "); d = p[1]; targets[d]++
				if (!(d in lo) || n[k] < lo[d]) lo[d] = n[k]; if (n[k] > hi[d]) hi[d] = n[k] }
			for (d in dirs) printf "%s %d %d %d %.2f\n", d, targets[d], lo[d], hi[d], gap[d]
		}' | sort
}
checks /tmp/farm.log $((l0 + 1)) "$l1" >/tmp/checks.txt
note "checks of the 70 healthy reals in ${window} s, per director address: targets, fewest and most checks of one, longest gap (s)"
sed 's/^/    /' /tmp/checks.txt
MEASURED="$MEASURED
  healthy reals in ${window} s: $(oneline "$(cat /tmp/checks.txt)")"
want_min=$(awk -v w="$window" -v i="$SCALE_INTERVAL" 'BEGIN { printf "%d", w / i - 2 }')
max_gap=$((SCALE_INTERVAL + 1))
for addr in "$DIR_A_ADDR" "$DIR_B_ADDR"; do
	line=$(awk -v a="$addr" '$1 == a' /tmp/checks.txt)
	if printf '%s\n' "$line" | awk -v m="$want_min" -v g="$max_gap" '$2 == 70 && $3 >= m && $5 <= g { ok = 1 } END { exit !ok }'; then
		pass_check "director $addr checked all 70 healthy reals at least $want_min times each in ${window} s, no gap over $max_gap s ($line)"
	else
		fail_check "director $addr checks all 70 healthy reals at least $want_min times each in ${window} s with no gap over $max_gap s: saw '$line'"
	fi
done
note "the 30 hanging ones in the same window (down already; checked as often as the slow half of the pool allows), shown, not judged:"
checks /tmp/hang.log $((h0 + 1)) "$h1" | sed 's/^/    /'

# flat NS COLUMN: "BASE MIN MAX FIRST5 LAST5" of NS's goroutines (column 1)
# or fds (2): the most before the 100 reals, then over the window.
flat() {
	awk -v c="$2" -v base="$(awk -v c="$2" '$c > m { m = $c } END { print m + 0 }' "/tmp/samples.base.$1")" '
		{ v[NR] = $c; if (NR == 1 || $c < lo) lo = $c; if ($c > hi) hi = $c }
		END { for (i = 1; i <= 5; i++) { f += v[i]; l += v[NR - 5 + i] }
			printf "%d %d %d %.1f %.1f\n", base, lo, hi, f / 5, l / 5 }' "/tmp/samples.window.$1"
}
for d in $HA_DIRECTORS; do
	for what in goroutines fds; do
		col=1
		[ $what = fds ] && col=2
		# shellcheck disable=SC2046 # five numbers
		set -- $(flat "$d" $col)
		note "$d's agent $what: before the 100 reals $1 (max of 3); over the window min $2 max $3, mean of the first 5 samples $4, of the last 5 $5"
		MEASURED="$MEASURED
  $d agent $what: before $1, window min $2 max $3, first-5 mean $4, last-5 mean $5"
		if awk -v f="$4" -v l="$5" 'BEGIN { exit !(l <= f + 10) }'; then
			pass_check "$d's agent $what flat over the window: last-5 mean $5 <= first-5 mean $4 + 10"
		else
			fail_check "$d's agent $what flat over the window: last-5 mean $5 grew past first-5 mean $4 + 10 (samples: $(oneline "$(cut -d' ' -f$col "/tmp/samples.window.$d")"))"
		fi
		# The pool is fixed (32 workers by default); a check in flight may hold
		# a socket and a goroutine of the runtime's for its dial: bounded by the
		# pool, not by the 30 hanging targets x their rate.
		if [ "$3" -le $(($1 + 100)) ] 2>/dev/null; then
			pass_check "$d's agent $what bounded: window max $3 <= before $1 + 100"
		else
			fail_check "$d's agent $what bounded: window max $3 over before $1 + 100"
		fi
	done
done

step "Measured"
note "verdicts (ms from the switch to both kernels; per director, when each showed it):$MEASURED"
[ "$LAB_FAILS" -gt 0 ] && ha_logs
finish

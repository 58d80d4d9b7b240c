#!/bin/sh
# drain: draining a real server under IPVS persistence, and removing one,
# without cutting a connection (issue 9). Two directors (site_ha), the
# WMS-like cluster with persistence 600 s, removeGrace 5s and the rtsp
# health check; the client holds connections through the VIP (lab-client
# hold: an RTSP OPTIONS every 200 ms, answered by its real server).
#   - A client persistent to P (one held connection, 4 more new ones all on
#     P). `lvsctl drain cluster wms real P`: weight 0 on both directors
#     (timed), status drained on both, `get -o yaml` says drained: true; the
#     client's next new connections all go to one other server (the agent set
#     expire_quiescent_template: the persistence template to P expires
#     instead of sending the client back); the held connection goes on.
#   - `drain --wait --timeout 6s` with that connection still held: exits
#     non-zero after 6 s, its progress lines and what is left printed.
#   - Each agent killed -9 and started again (dir-b, then dir-a): P's weight
#     is 0 in every 50 ms sample of both kernels throughout (lab-health
#     watch), status still says drained.
#   - `drain --wait` returning: P's template lives 600 s after its last use,
#     so the wait is shown on a fresh client with the cluster's persistence
#     cut to DRAIN_WAIT_PERSISTENCE (30 s; the same edit re-applies `get -o
#     yaml`, which keeps P drained): client2 holds one connection to Q;
#     `drain cluster wms real Q --wait` runs while it is held, and returns
#     (status 0) only after the client ends the connection (with a reset:
#     IPVS forgets it after 10 s instead of TIME_WAIT's 2 minutes) and the
#     template expired, i.e. once Q's active, inactive and persistent counts
#     were 0 in both kernels (sampled every 50 ms), within a few seconds of
#     that (the agents report every second, lvsctl polls every second).
#   - `lvsctl enable`: weight back, drained false.
#   - Removing S (the server of a held connection) from the cluster: weight
#     0 at once on both, status removing, the held connection answering every
#     probe through the grace (checked until 1.5 s before it ends), S deleted
#     from both kernels after the 5 s grace (timed: not before, not long
#     after); a server with no connection left is deleted at once (shown
#     when there is one). Once S is deleted the kernel drops the packets of
#     its connections still open (net.ipv4.vs.expire_nodest_conn=0, the
#     default, drops them silently; tried by hand with ipvsadm -d on this
#     kernel: the same): the grace is the time they get to end.
# lab-timeout: 600
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

HA_FAILOVER=${HA_FAILOVER-"{heartbeatInterval: 200ms, deadAfter: 3s, fenceTime: 3s}"}
HA_WATCH=0
HEALTH="{check: rtsp, port: 554, interval: 1s, timeout: 1s, rise: 2, fall: 2, onFailure: quiesce}"
GRACE=5
DRAIN_WAIT_PERSISTENCE=${DRAIN_WAIT_PERSISTENCE:-30}
HA_CLUSTER_EXTRA="persistence: {timeout: 600s}
removeGrace: ${GRACE}s
health: $HEALTH"
# The time a change takes to reach both kernels through the controller (a
# store write, a delta to each agent, a reconcile); printed, and judged only
# against this generous bound (HEALTH_SLACK adds to it).
LIMIT_APPLY=$((3 + ${HEALTH_SLACK:-2}))
MEASURED=""
trap 'ha_digest; exit 143' TERM

measure() {
	_ms=$(wait_ms "$3")
	MEASURED="$MEASURED
  $1: $(printf '%s\n' "$3" | sed -nE 's/^WAIT [a-z]+ (.*)/\1/p')"
	if printf '%s\n' "$3" | grep -q '^WAIT ok ' && within "$_ms" "$2"; then
		pass_check "$1 within ${2}s: $3"
	else
		fail_check "$1 within ${2}s: $3"
	fi
}
since() { awk -v a="$1" -v b="${2:-$(uptime_s)}" 'BEGIN { printf "%.1f", b - a }'; }
all_up() {
	reals_snap wms
	[ "$(awk '$4 == "up"' /tmp/reals.txt | wc -l)" = 6 ]
}
# drained_is ADDR VALUE: both directors report ADDR's drained as VALUE.
drained_is() {
	reals_snap wms
	[ "$(real_fields "$1" drained)" = "dir-a=$2 dir-b=$2" ]
}
removing_is() {
	reals_snap wms
	[ "$(real_fields "$1" removing)" = "dir-a=$2 dir-b=$2" ]
}
# pinned NAME: the real server hold NAME's first connection is on (rsN).
pinned() { sed -nE 's/^conn 1 sport [0-9]+ server (rs[0-9]+)$/\1/p' "/tmp/hold.$1.out"; }
# watch_start NAME ADDR / watch_stop NAME: lab-health watch of ADDR in both
# directors' IPVS, /tmp/watch.NAME.out; watch_stop prints its RESULT line.
watch_start() {
	rm -f "/tmp/watch.$1.stop"
	lab-health watch --ns dir-a,dir-b --real "$2" --stop-file "/tmp/watch.$1.stop" >"/tmp/watch.$1.out" 2>&1 &
	wait_line "/tmp/watch.$1.out" '^WATCH READY' 10 || fail_check "lab-health watch $1 started"
}
watch_stop() {
	touch "/tmp/watch.$1.stop"
	wait_line "/tmp/watch.$1.out" '^WATCH RESULT' 10 >/dev/null
	grep '^WATCH RESULT' "/tmp/watch.$1.out"
}
gone() { ! [ -e "/proc/$1" ]; }

step "Site, controller, agents in dir-a and dir-b, cluster wms: persistence 600 s, removeGrace ${GRACE}s, health rtsp"
ha_up
wait_until 20 all_up || fail_check "rs1-rs3 up on both directors within 20 s: $(oneline "$(cat /tmp/reals.txt)")"
for d in $HA_DIRECTORS; do
	expect_eq "$d: net.ipv4.vs.expire_quiescent_template" 1 "$(on "$d" cat /proc/sys/net/ipv4/vs/expire_quiescent_template)"
done
show on dir-a ipvsadm -Ln

step "A client persistent to one real server"
hold_start d1 42000 1 || die "a connection through $VIP held"
P=$(pinned d1)
P_IP=$(real_ip "$P")
note "the held connection is on $P ($P_IP)"
expect_eq "4 new connections of the same client: all on $P (persistence 600 s)" "$P 4" \
	"$(on client lab-client tcp "$VIP:554" -n 4 --count-by-server 2>&1)"
show lab-health ipvs --ns dir-a,dir-b --real "$P_IP"

step "lvsctl drain cluster wms real $P_IP"
t0=$(uptime_s)
out=$(lv drain cluster wms real "$P_IP" 2>&1)
expect_match "lvsctl drain" "^cluster/wms real $P_IP drained \\(revision [0-9]+\\)" "$out"
measure "drain of $P -> weight 0 on both directors" "$LIMIT_APPLY" "$(wait_weight "$P_IP" 0 "$t0" 20)"
for r in rs1 rs2 rs3; do
	want="dir-a=100 dir-b=100"
	[ "$r" = "$P" ] && want="dir-a=0 dir-b=0"
	expect_eq "$r's weights (ipvsadm)" "$want" "$(weights "$(real_ip "$r")")"
done
wait_until 10 drained_is "$P_IP" true
expect_eq "lvsctl status cluster wms: $P drained" "dir-a=true dir-b=true" "$(real_fields "$P_IP" drained)"
expect_match "lvsctl get cluster wms -o yaml: $P drained: true" "drained: true" \
	"$(lv get cluster wms -o yaml | grep -F "$P_IP")"
out=$(on client lab-client tcp "$VIP:554" -n 4 --count-by-server 2>&1)
if printf '%s\n' "$out" | grep -Eq '^rs[0-9]+ 4$' && ! printf '%s\n' "$out" | grep -q "^$P "; then
	pass_check "the same client's next 4 new connections: all on one other server ($out)"
else
	fail_check "the same client's next 4 new connections all on one server other than $P: saw $(oneline "$out")"
fi

step "lvsctl drain --wait --timeout 6s while the connection to $P is held"
t0=$(uptime_s)
out=$(lv drain cluster wms real "$P_IP" --wait --timeout 6s 2>&1)
rc=$?
took=$(since "$t0")
printf '%s\n' "$out" | sed 's/^/    /'
if [ "$rc" -ne 0 ] && awk -v t="$took" 'BEGIN { exit !(t >= 6) }'; then
	pass_check "drain --wait exited non-zero ($rc) after its timeout (${took} s)"
else
	fail_check "drain --wait exits non-zero after its 6 s timeout: saw status $rc after ${took} s"
fi
expect_match "drain --wait printed its progress, a line per poll" '^[3-9]|^[1-9][0-9]' \
	"$(printf '%s\n' "$out" | grep -c 'active/inactive/persistent')"
expect_match "drain --wait said what was left" 'timed out' "$out"

step "Agents restarted (kill -9, dir-b then dir-a): $P stays at weight 0 throughout"
watch_start restart "$P_IP"
for d in dir-b dir-a; do
	pid=$(agent_pid "$d")
	note "kill -9 $d's agent (pid $pid), start it again"
	kill -9 "$pid"
	wait_until 10 gone "$pid" || fail_check "$d's agent (pid $pid) died"
	start_agent_in "$d"
	wait_until 40 lv_healthy || fail_check "the pair healthy again within 40 s of $d's restart"
done
sleep 3 # the restarted agents' first checks and reports
res=$(watch_stop restart)
note "$res"
grep '^WATCH +' /tmp/watch.restart.out | head -n 20 | sed 's/^/    /'
expect_match "$P's weight in every sample of both kernels across the restarts: 0" ' dir-a=0 dir-b=0 ' "$res"
wait_until 10 drained_is "$P_IP" true
expect_eq "lvsctl status cluster wms after the restarts: $P drained" "dir-a=true dir-b=true" "$(real_fields "$P_IP" drained)"
res=$(hold_stop d1)
note "$res"
expect_match "the connection held on drained $P answered every probe (drain, --wait, restarts)" \
	'^HOLD RESULT OK conns 1 .* survived 1/1 ' "$res"

step "drain --wait returns once the counts reach 0 (persistence cut to ${DRAIN_WAIT_PERSISTENCE} s, a new client)"
rev_a=$(applied_rev dir-a)
rev_b=$(applied_rev dir-b)
lv get cluster wms -o yaml | sed "s/^persistence: {timeout: 600s}\$/persistence: {timeout: ${DRAIN_WAIT_PERSISTENCE}s}/" |
	lv apply -f - || fail_check "apply of persistence ${DRAIN_WAIT_PERSISTENCE}s"
wait_applied 30 dir-a "$rev_a" || fail_check "dir-a applied persistence ${DRAIN_WAIT_PERSISTENCE}s"
wait_applied 30 dir-b "$rev_b" || fail_check "dir-b applied persistence ${DRAIN_WAIT_PERSISTENCE}s"
expect_match "IPVS service now persistent ${DRAIN_WAIT_PERSISTENCE} s" "persistent $DRAIN_WAIT_PERSISTENCE\$" \
	"$(on dir-a ipvsadm -Ln | awk '$1 == "FWM" { $1 = $1; print }')"
expect_eq "get -o yaml re-applied: $P still drained (weights)" "dir-a=0 dir-b=0" "$(weights "$P_IP")"
add_client client2 192.0.2.101 || die "client2"
rm -f /tmp/hold.d2.stop
/usr/sbin/ip netns exec client2 lab-client hold "$VIP:554" -n 1 --sport 43000 --reset \
	--stop-file /tmp/hold.d2.stop >/tmp/hold.d2.out 2>&1 &
wait_line /tmp/hold.d2.out '^HOLD READY' 20 || die "client2's connection through $VIP held"
Q=$(pinned d2)
Q_IP=$(real_ip "$Q")
note "client2 (192.0.2.101) holds a connection to $Q ($Q_IP)"
watch_start q "$Q_IP"
t_drain=$(uptime_s)
(
	lv drain cluster wms real "$Q_IP" --wait --timeout 150s >/tmp/drainwait.out 2>&1
	echo "rc=$? up=$(uptime_s)" >>/tmp/drainwait.out
) &
sleep 4
expect_eq "drain --wait still waiting 4 s in, with client2's connection open" "" "$(grep '^rc=' /tmp/drainwait.out)"
expect_eq "$Q's weights while drained" "dir-a=0 dir-b=0" "$(weights "$Q_IP")"
t_close=$(uptime_s)
res=$(hold_stop d2)
note "client2 ends its connection with a reset: $res"
wait_until 150 grep -q '^rc=' /tmp/drainwait.out
res=$(watch_stop q)
show cat /tmp/drainwait.out
note "$Q_IP weight/active/inactive/persistent per director, as they changed:"
grep '^WATCH +' /tmp/watch.q.out | sed 's/^/    /'
note "$res"
end=$(sed -nE 's/^rc=([0-9]+) up=([0-9.]+)$/\1 \2/p' /tmp/drainwait.out)
zero_at=$(printf '%s\n' "$res" | sed -nE 's/.* zero_at=([0-9.]+)$/\1/p')
expect_eq "drain --wait exit status" 0 "${end%% *}"
expect_match "drain --wait said no connection is left" "^cluster/wms real $Q_IP has no connections left on dir-a, dir-b\$" \
	"$(grep 'no connections left' /tmp/drainwait.out)"
if [ -n "$zero_at" ] && [ -n "$end" ]; then
	lag=$(awk -v z="$zero_at" -v e="${end#* }" 'BEGIN { printf "%.1f", e - z }')
	MEASURED="$MEASURED
  drain --wait: counts of $Q 0 in both kernels $(since "$t_close" "$zero_at") s after the client's reset, --wait returned $lag s later ($(since "$t_drain" "${end#* }") s after it began)"
	if awk -v l="$lag" 'BEGIN { exit !(l >= -0.1 && l <= 5) }'; then
		pass_check "drain --wait returned once $Q's counts were 0 in both kernels: $lag s after (counts 0 $(since "$t_close" "$zero_at") s after the reset)"
	else
		fail_check "drain --wait returns after $Q's counts reach 0 in both kernels and within 5 s of it: returned $lag s after"
	fi
else
	fail_check "drain --wait returned and $Q's counts reached 0: saw end '$end', zero_at '$zero_at'"
fi

step "lvsctl enable"
for r in "$P_IP" "$Q_IP"; do
	t0=$(uptime_s)
	expect_match "lvsctl enable cluster wms real $r" "^cluster/wms real $r enabled" "$(lv enable cluster wms real "$r" 2>&1)"
	measure "enable of $r -> weight 100 on both directors" "$LIMIT_APPLY" "$(wait_weight "$r" 100 "$t0" 20)"
	wait_until 10 drained_is "$r" false
	expect_eq "lvsctl status cluster wms: $r drained" "dir-a=false dir-b=false" "$(real_fields "$r" drained)"
done
expect_eq "lvsctl get cluster wms -o yaml: nothing drained" "" "$(lv get cluster wms -o yaml | grep 'drained: true')"

step "Removing the real server of a held connection: weight 0 for removeGrace ${GRACE}s, the connection going on, then gone"
hold_start r1 44000 1 || die "a connection through $VIP held"
S=$(pinned r1)
S_IP=$(real_ip "$S")
note "the held connection is on $S ($S_IP); it is removed from the cluster"
t0=$(uptime_s)
lv get cluster wms -o yaml | sed "/{address: $(echo "$S_IP" | sed 's/\./\\./g'),/d" | lv apply -f - ||
	fail_check "apply of wms without $S"
out=$(wait_weight "$S_IP" 0 "$t0" 20)
measure "removal of $S -> weight 0 on both directors" "$LIMIT_APPLY" "$out"
# The grace runs from when the agents took the removal, the moment S's
# weight went to 0 (the later of the two directors).
t_grace=$(awk -v t="$t0" -v m="$(wait_ms "$out")" 'BEGIN { printf "%.2f", t + m / 1000 }')
wait_until 5 removing_is "$S_IP" true
expect_eq "lvsctl status cluster wms: $S removing" "dir-a=true dir-b=true" "$(real_fields "$S_IP" removing)"
# The held connection through the grace: stopped 2 s before it ends, or at
# once if the guest is already past that.
sleep "$(awk -v t="$t_grace" -v g="$GRACE" -v u="$(uptime_s)" 'BEGIN { d = t + g - 2 - u; print (d > 0 ? d : 0) }')"
res=$(hold_stop r1)
note "$res ($(since "$t_grace") s into the grace)"
grep -E '^conn 1 (probe failed|sport)' /tmp/hold.r1.out | sed 's/^/    /'
expect_match "the connection to $S answered every probe from before its removal until 2 s before the grace ends" \
	'^HOLD RESULT OK conns 1 .* survived 1/1 ' "$res"
out=$(wait_weight "$S_IP" absent "$t_grace" $((GRACE + 20)))
ms=$(wait_ms "$out")
MEASURED="$MEASURED
  removal of $S with a connection: gone from both kernels, from the weight 0, $(printf '%s\n' "$out" | sed -nE 's/^WAIT [a-z]+ (.*)/\1/p') (grace ${GRACE} s)"
if printf '%s\n' "$out" | grep -q '^WAIT ok ' && awk -v m="$ms" -v g="$GRACE" -v s="$LIMIT_APPLY" 'BEGIN { exit !(m >= g * 1000 * 0.9 && m <= (g + s) * 1000) }'; then
	pass_check "$S deleted from both kernels after the ${GRACE} s grace, not before (ms from its weight 0): $out"
else
	fail_check "$S deleted from both kernels between ${GRACE} s and $((GRACE + LIMIT_APPLY)) s after its weight 0: $out"
fi
expect_eq "$S in ipvsadm -Ln" "dir-a=absent dir-b=absent" "$(weights "$S_IP")"
out=$(on client lab-client tcp "$VIP:554" -n 4 --count-by-server 2>&1)
if ! printf '%s\n' "$out" | grep -Eq "^($S|errors) "; then
	pass_check "4 new connections: none on $S, none failed ($(oneline "$out"))"
else
	fail_check "4 new connections: none on $S, none failed: saw $(oneline "$out")"
fi

# A real server without connections goes at once (counts 0 ends the grace).
T=""
for r in rs1 rs2 rs3; do
	[ "$r" = "$S" ] && continue
	if ! lab-health ipvs --ns dir-a,dir-b --real "$(real_ip "$r")" | grep -vq 'active=0 inactive=0 persistent=0$'; then
		T=$r
		break
	fi
done
if [ -n "$T" ]; then
	T_IP=$(real_ip "$T")
	t0=$(uptime_s)
	lv get cluster wms -o yaml | sed "/{address: $(echo "$T_IP" | sed 's/\./\\./g'),/d" | lv apply -f - ||
		fail_check "apply of wms without $T"
	out=$(wait_weight "$T_IP" absent "$t0" $((GRACE + 20)))
	MEASURED="$MEASURED
  removal of $T without connections: gone from both kernels $(printf '%s\n' "$out" | sed -nE 's/^WAIT [a-z]+ (.*)/\1/p')"
	if printf '%s\n' "$out" | grep -q '^WAIT ok ' && within "$(wait_ms "$out")" $((GRACE - 1)); then
		pass_check "$T (no connections) deleted from both kernels before the grace ran out: $out"
	else
		fail_check "$T (no connections) deleted from both kernels within $((GRACE - 1)) s: $out"
	fi
else
	note "every remaining real server has connections or templates: the removal without connections is not shown"
	lab-health ipvs --ns dir-a,dir-b | sed 's/^/    /'
fi

step "Measured"
note "ms from the command to both kernels (per director, when each showed it):$MEASURED"
[ "$LAB_FAILS" -gt 0 ] && ha_logs
finish

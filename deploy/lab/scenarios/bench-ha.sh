#!/bin/sh
# bench-ha: takeover time, lvsctl against keepalived, in one boot (make
# bench; runs by name only: it measures). The site is site_ha's: two
# directors, the VIP and the reals' gateway floating between them, the same
# hand-made-or-lvsctl WMS-like FWM service (rr, masq to rs1-rs3) on both.
#
# Each run kills the director holding the VIP: SIGKILL to its daemon (all of
# keepalived's processes; lvs-agent) then its three links down in one ip call,
# and times death -> the first new TCP connection through the VIP answered by
# a real server (lab-ha takeover, from the client, a new connection every
# 10 ms). The dead director then comes back as after a reboot (no floating
# addresses, links up, its daemon started) and the next run waits until the
# pair is healthy. HA_RUNS runs (default 9: the median of 5 moved by 30-40 ms
# from boot to boot in the emulated guest) of each:
#   keepalived 2.2.7: VRRPv3, advert_int 0.1 (KA_ADVERT), nopreempt on both,
#                     lvs_sync_daemon eth1 id 7
#   lvsctl:           controller + two agents, the group's default failover
#                     settings (heartbeat 50 ms, dead after 150 ms, fence 200 ms)
# lab-ha watch samples both directors' addresses every 10 ms through each
# half. Prints
#   LAB-BENCH takeover_keepalived min=.. median=.. max=.. runs=.. dual=..
#   LAB-BENCH takeover_lvsctl min=.. median=.. max=.. runs=.. dual=..
#   LAB-BENCH takeover ratio=<lvsctl median / keepalived median>
#   LAB-BENCH takeover_death ...  (how long the deaths took: under 1 ms when the
#                                  guest has its CPU; more means every figure is stretched)
# and fails if lvsctl ever had two directors holding an address on an up link
# (dual > 0) or a run did not heal; keepalived's dual count is reported only.
# HA_ONLY=keepalived or HA_ONLY=lvsctl runs one half (LAB_ENV=HA_ONLY=...),
# for working on it; the ratio then reads "-".
# lab-timeout: 900
. ./lib.sh

RUNS=${HA_RUNS:-9}

# cpu_top SECS: the processes that used the most CPU over the next SECS
# seconds, in percent of one CPU (HA_DIGEST=1).
cpu_top() {
	for _p in /proc/[0-9]*; do
		[ -r "$_p/stat" ] && echo "${_p#/proc/} $(cut -d' ' -f14,15 "$_p/stat" 2>/dev/null)"
	done >/tmp/cpu1
	sleep "$1"
	for _p in /proc/[0-9]*; do
		[ -r "$_p/stat" ] && echo "${_p#/proc/} $(cut -d' ' -f14,15 "$_p/stat" 2>/dev/null)"
	done >/tmp/cpu2
	# utime and stime count clock ticks (USER_HZ, 100 on Linux).
	awk -v secs="$1" 'NR == FNR { u[$1] = $2 + $3; next }
		($1 in u) && $2 + $3 > u[$1] { printf "%.1f %s\n", ($2 + $3 - u[$1]) / secs, $1 }' /tmp/cpu1 /tmp/cpu2 |
		sort -rn | head -n 8 | while read -r _pct _pid; do
			echo "    $_pct% $_pid $(tr '\0' ' ' <"/proc/$_pid/cmdline" 2>/dev/null | cut -c1-70)"
		done
}

# cpu_busy SECS: how busy the guest's CPUs were over the next SECS seconds, in
# percent (from /proc/stat: all but idle and iowait). Each half prints its
# background load before its takeovers: in the emulated guest, what the pair
# costs at rest slows every step of a takeover.
cpu_busy() {
	_c1=$(head -n 1 /proc/stat)
	sleep "$1"
	_c2=$(head -n 1 /proc/stat)
	printf '%s\n%s\n' "$_c1" "$_c2" | awk '
		{ t = 0; for (i = 2; i <= NF; i++) t += $i; idle = $5 + $6 }
		NR == 1 { t1 = t; i1 = idle } NR == 2 { printf "%.0f", 100 * (1 - (idle - i1) / (t - t1)) }'
}

step "Site: client, dir-a and dir-b, rs1-rs3 (gateway $GATEWAY floats)"
site_ha
start_reals

# ---- keepalived ----------------------------------------------------------------
prio() { if [ "$1" = dir-a ]; then echo 200; else echo 100; fi; }
ka_restart() {
	ka_start "$1" "$(prio "$1")"
	# Ten adverts from the MASTER: the new BACKUP has heard it.
	sleep 1
}
ka_healthy() { ka_settled && sleep 1 && ka_settled; }
# ka_settled: one MASTER holding both addresses, the other BACKUP. Under a
# starved guest keepalived at 0.1 s may flap; healthy is settled twice, 1 s
# apart.
ka_settled() {
	_h=$(holders "$VIP")
	case $_h in dir-a | dir-b) ;; *) return 1 ;; esac
	[ "$(holders "$GATEWAY")" = "$_h" ] &&
		[ "$(ka_state "$_h")" = MASTER ] &&
		[ "$(ka_state "$(other_director "$_h")")" = BACKUP ]
}
ka_checks() {
	wait_until 5 test "$(holders "$VIP") $(holders "$GATEWAY")" = "$1 $1" ||
		fail_check "keepalived: $1 holds $VIP and $GATEWAY after $2 died (holders: $(holders "$VIP") / $(holders "$GATEWAY"))"
}

KA_MS=""
KA_DEATH=""
ka_dual=""
ka_half() {
if [ "${HA_ONLY:-keepalived}" = keepalived ]; then
	step "keepalived $KA_ADVERT s VRRPv3 on both directors, the IPVS service by hand on both"
	for d in $HA_DIRECTORS; do
		ka_program_ipvs "$d" || die "programming IPVS in $d"
	done
	show on dir-a ipvsadm -Ln
	start_watch
	ka_start dir-a 200
	ka_start dir-b 100
	wait_until 20 ka_healthy || {
		ka_logs
		die "keepalived: no MASTER holding $VIP and $GATEWAY within 20 s"
	}
	wait_until 10 on client lab-client tcp "$VIP:554" --timeout 1s || die "no answer through $VIP under keepalived"
	note "MASTER: $(holders "$VIP")"
	show on "$(holders "$VIP")" ipvsadm -L --daemon

	KA_BUSY=$(cpu_busy 5)
	echo "LAB-BENCH at_rest_cpu_busy keepalived=$KA_BUSY%"
	[ -n "${HA_DIGEST:-}" ] && cpu_top 5
	step "keepalived: $RUNS takeovers"
	TAKEOVER_MS=""
	TAKEOVER_DEATH_MS=""
	TAKEOVER_RUN=0
	takeover_runs ka "$RUNS"
	KA_MS=$TAKEOVER_MS
	KA_DEATH=$TAKEOVER_DEATH_MS
	stop_watch >/dev/null
	ka_dual=$WATCH_DUAL
	note "sampler: $WATCH_RESULT"

	step "keepalived stopped (SIGTERM: it removes its addresses), the hand-made IPVS and nftables removed"
	# SIGTERM to the parent alone: it stops its children and removes the addresses.
	# Signalled at once, a child may die first and be respawned by the parent,
	# and the orphan become MASTER once its links are up again: the lvsctl half
	# would then see a second holder that no agent owns.
	for d in $HA_DIRECTORS; do
		kill "$(cat "/run/ka.$d.main.pid")" 2>/dev/null
	done
	if ! wait_until 10 no_keepalived; then
		note "keepalived processes left after SIGTERM: $(keepalived_procs); killed"
		kill -9 $(keepalived_procs) 2>/dev/null
		wait_until 5 no_keepalived || fail_check "no keepalived process left before the lvsctl half (left: $(keepalived_procs))"
	fi
	for d in $HA_DIRECTORS; do
		on "$d" ipvsadm -C
		on "$d" ipvsadm --stop-daemon master 2>/dev/null
		on "$d" ipvsadm --stop-daemon backup 2>/dev/null
		on "$d" nft delete table inet lab-ha
		revive "$d"
	done
	expect_eq "no director holds $VIP after keepalived stopped" "" "$(holders "$VIP")"
fi
}

# ---- lvsctl ----------------------------------------------------------------------
lv_pids() { agent_pid "$1"; }
lv_restart() { start_agent_in "$1"; }
lv_checks() {
	wait_until 5 test "$(holders "$VIP") $(holders "$GATEWAY")" = "$1 $1" ||
		fail_check "lvsctl: $1 holds $VIP and $GATEWAY after $2 died (holders: $(holders "$VIP") / $(holders "$GATEWAY"))"
}

LV_MS=""
LV_DEATH=""
lv_dual=""
lv_half() {
if [ "${HA_ONLY:-lvsctl}" = lvsctl ]; then
	step "lvsctl: controller, agents in dir-a and dir-b, group edge-1 with default failover settings"
	start_watch
	start_controller
	start_agent_in dir-a
	start_agent_in dir-b
	ha_manifest >/tmp/ha.yaml
	lv apply -f /tmp/ha.yaml 2>&1 | sed 's/^/    /'
	if wait_until 30 lv_healthy; then
		wait_until 10 on client lab-client tcp "$VIP:554" --timeout 1s || fail_check "lvsctl: an answer through $VIP"
		note "ACTIVE: $(active_of)"
		show lv status
		LV_BUSY=$(cpu_busy 5)
		echo "LAB-BENCH at_rest_cpu_busy lvsctl=$LV_BUSY%"
		[ -n "${HA_DIGEST:-}" ] && cpu_top 5
		step "lvsctl: $RUNS takeovers"
		TAKEOVER_MS=""
		TAKEOVER_DEATH_MS=""
		TAKEOVER_RUN=0
		takeover_runs lv "$RUNS"
		LV_MS=$TAKEOVER_MS
		LV_DEATH=$TAKEOVER_DEATH_MS
		# LAB_ENV=HA_DIGEST=1: the role decisions and address changes, to set
		# against each run's death_at.
		if [ -n "${HA_DIGEST:-}" ]; then ha_digest; fi
	else
		fail_check "lvsctl: one ACTIVE holding $VIP and $GATEWAY, both directors connected and applied within 30 s"
		show lv status
		ha_logs
		LV_MS=""
fi
stop_watch >/dev/null
lv_dual=$WATCH_DUAL
note "sampler: $WATCH_RESULT"
expect_eq "lvsctl: no sample with two directors holding $VIP or $GATEWAY on an up link" 0 "$lv_dual" || {
	watch_duals
	ha_digest
}
fi
}

# lv_teardown leaves the directors as keepalived's half expects them: no agent, no
# controller, nothing of lvsctl's in the kernel.
lv_teardown() {
	step "lvsctl stopped; its IPVS service, nftables table, sync daemons and addresses removed"
	kill "$CONTROLLER_PID" 2>/dev/null
	for d in $HA_DIRECTORS; do
		_pid=$(agent_pid "$d")
		kill "$_pid" 2>/dev/null
		wait_until 10 sh -c "! kill -0 $_pid 2>/dev/null" || kill -9 "$_pid" 2>/dev/null
		on "$d" ipvsadm -C
		on "$d" ipvsadm --stop-daemon master 2>/dev/null
		on "$d" ipvsadm --stop-daemon backup 2>/dev/null
		on "$d" nft delete table inet lvsctl 2>/dev/null
		revive "$d"
	done
	expect_eq "no director holds $VIP after lvsctl stopped" "" "$(holders "$VIP")"
}

# The order of the halves (HA_ORDER=lvsctl-first swaps them): whichever runs second
# finds the guest after the first; running both orders shows whether that matters.
case ${HA_ORDER:-keepalived-first} in
lvsctl-first)
	lv_half
	if [ -z "${HA_ONLY:-}" ]; then lv_teardown; fi
	ka_half
	;;
*)
	ka_half
	lv_half
	;;
esac

step "Results (ms from the death to the first new connection answered through $VIP)"
# shellcheck disable=SC2086 # the lists are words
ka_stats=$(stats $KA_MS)
# shellcheck disable=SC2086
lv_stats=$(stats $LV_MS)
echo "LAB-BENCH takeover_keepalived $ka_stats dual=${ka_dual:--} advert_int=$KA_ADVERT times=$(echo $KA_MS | tr ' ' ,)"
echo "LAB-BENCH takeover_lvsctl $lv_stats dual=${lv_dual:--} times=$(echo $LV_MS | tr ' ' ,)"
ratio=$(awk -v l="$(median_of "$lv_stats")" -v k="$(median_of "$ka_stats")" \
	'BEGIN { if (l == "" || k == "" || k == 0) print "-"; else printf "%.2f", l / k }')
echo "LAB-BENCH takeover ratio=$ratio"
# How long the deaths themselves took: a starved guest stretches every figure above.
# shellcheck disable=SC2086
echo "LAB-BENCH takeover_death_ms $(stats $KA_DEATH | sed 's/\([a-z]*\)=/keepalived_\1=/g') $(stats $LV_DEATH | sed 's/\([a-z]*\)=/lvsctl_\1=/g')"
[ "${HA_ONLY:-keepalived}" != keepalived ] || [ "$(echo $KA_MS | wc -w)" -ge "$RUNS" ] || fail_check "keepalived: $RUNS measured runs (got $(echo $KA_MS | wc -w))"
[ "${HA_ONLY:-lvsctl}" != lvsctl ] || [ "$(echo $LV_MS | wc -w)" -ge "$RUNS" ] || fail_check "lvsctl: $RUNS measured runs (got $(echo $LV_MS | wc -w))"
finish

#!/bin/sh
# ha-takeover: unplanned failover with two directors (issue 7: takeover, no
# split brain, GARP). The controller on br-mgmt, agents in dir-a and dir-b,
# the group edge-1 of issue 7 (VIP on eth0, gateway 198.51.100.254/24 on
# eth1, sync on eth1 id 7) with lab failover timings (below). HA_RUNS
# (default 5) times, the ACTIVE dies (lvs-agent SIGKILL, then its three
# links down in one ip call; the next run kills the survivor, so the
# directions alternate), and each time:
#   - a new TCP connection through the VIP is answered by a real server
#     (lab-ha takeover: the time from the death, printed, never judged);
#   - the former STANDBY holds the VIP and the gateway;
#   - the client's neighbour entry for the VIP and each real server's entry
#     for the gateway hold the new ACTIVE's MAC (its gratuitous ARP: no cache
#     is flushed, and each entry was fresh with the old MAC before the death);
#   - lvsctl status -o json shows it ACTIVE with an epoch above the one before;
# then the dead one comes back as after a reboot (no floating addresses,
# links up, agent started) and must rejoin as STANDBY with nothing moving.
# lab-ha watch samples both directors' addresses every 10 ms throughout:
# never two holding the VIP or the gateway on an up link.
# lab-timeout: 600
. ./lib.sh

RUNS=${HA_RUNS:-5}

# Failover timings of the group: this scenario checks what a takeover does
# (addresses, GARP, epochs, no dual holder), not how fast; bench-ha times the
# defaults against keepalived. The guest is emulated, 10-50 times slower than
# a host, and on a busy CI host it stalls processes past the default 200 ms
# fence, so the ACTIVE's lease would lapse with nothing killed. A fence of
# 1 s keeps the check about takeovers. LAB_ENV=HA_FAILOVER= runs the defaults.
HA_FAILOVER=${HA_FAILOVER-"{heartbeatInterval: 100ms, deadAfter: 1s, fenceTime: 1s}"}

step "Site: client, dir-a and dir-b, rs1-rs3 (gateway $GATEWAY floats)"
site_ha
start_reals
start_watch

step "Controller, agents in dir-a and dir-b, group edge-1, failover ${HA_FAILOVER:-defaults}"
start_controller
start_agent_in dir-a
start_agent_in dir-b
ha_manifest >/tmp/ha.yaml
show lv apply -f /tmp/ha.yaml

wait_until 40 lv_healthy || {
	show lv status
	ha_logs
	die "no healthy pair (one ACTIVE holding $VIP and $GATEWAY, a STANDBY hearing it) within 40 s"
}
first=$(active_of)
expect_eq "dir-a (priority 200) is the first ACTIVE" dir-a "$first"
expect_match "a connection through $VIP is answered" '^rs[1-3]$' "$(on client lab-client tcp "$VIP:554" 2>&1)"
show lv status

lv_pids() { agent_pid "$1"; }
lv_restart() {
	start_agent_in "$1"
	# It must come back as STANDBY (no preemption) and change nothing.
	wait_until 20 lv_healthy
	expect_eq "$1 rejoins as STANDBY, $(other_director "$1") stays ACTIVE" "$(other_director "$1")" "$(holders "$VIP")" ||
		ha_digest
}

# Before each death: the client and the reals talk to the ACTIVE, so their
# entries for the VIP and the gateway are fresh with its MACs; its epoch.
# Read once the pair is healthy (the caller waited); an empty read (a
# status call that failed) is retried, so the epoch check compares numbers.
before_death() {
	on client lab-client tcp "$VIP:554" -n 3 >/dev/null 2>&1
	_a=$(holders "$VIP")
	EPOCH_BEFORE=""
	wait_until 5 epoch_read "$_a"
	OLD_MAC0=$(mac_of "$_a" eth0 2>/dev/null)
}
epoch_read() {
	EPOCH_BEFORE=$(status_field "$1" epoch)
	[ -n "$EPOCH_BEFORE" ]
}
lv_checks() {
	_new=$1
	_old=$2
	wait_until 5 test "$(holders "$VIP") $(holders "$GATEWAY")" = "$_new $_new"
	expect_eq "$_new holds $VIP and $GATEWAY after $_old died" "$_new $_new" "$(holders "$VIP") $(holders "$GATEWAY")"
	_mac0=$(mac_of "$_new" eth0)
	_mac1=$(mac_of "$_new" eth1)
	expect_eq "the client's entry for $VIP holds $_new's eth0 MAC (was $_old's $OLD_MAC0)" "$_mac0" "$(neigh_mac client "$VIP")"
	_macs=""
	for _rs in $REALS; do _macs="$_macs $(neigh_mac "$_rs" "$GATEWAY")"; done
	expect_eq "rs1-rs3's entries for $GATEWAY hold $_new's eth1 MAC" " $_mac1 $_mac1 $_mac1" "$_macs"
	status_snap
	_role=$(sfield "$_new" role)
	_epoch=$(sfield "$_new" epoch)
	if [ "$_role" = '"ACTIVE"' ] && [ -n "$_epoch" ] && [ "$_epoch" -gt "${EPOCH_BEFORE:-0}" ] 2>/dev/null; then
		pass_check "lvsctl status: $_new ACTIVE, epoch $_epoch > $EPOCH_BEFORE"
	else
		fail_check "lvsctl status: $_new ACTIVE with an epoch above $EPOCH_BEFORE: saw role $_role epoch $_epoch"
	fi
}

step "$RUNS unplanned takeovers: the ACTIVE's agent killed -9 and its links down at once"
TAKEOVER_MS=""
run=1
while [ "$run" -le "$RUNS" ]; do
	wait_until 30 lv_healthy || {
		fail_check "run $run: a healthy pair to kill the ACTIVE of, within 30 s"
		show lv status
		ha_logs
		break
	}
	before_death
	takeover_runs lv 1 || break
	run=$((run + 1))
done

step "After $RUNS takeovers"
show lv status
stop_watch >/dev/null
expect_eq "the sampler saw no two directors holding $VIP or $GATEWAY on an up link" \
	"WATCH RESULT samples dual 0 errors 0" "$(printf '%s\n' "$WATCH_RESULT" | sed -E 's/samples [0-9]+/samples/')"
[ "$WATCH_DUAL" = 0 ] || { watch_duals; ha_digest; }
grep '^WATCH +' /tmp/watch.out | tail -n 40 | sed 's/^/    /'
# shellcheck disable=SC2086 # the list is words
note "takeover, death -> first new connection answered (ms): $(stats $TAKEOVER_MS) ($(echo $TAKEOVER_MS))"
finish

#!/bin/sh
# restart: restarting the agent or the controller never touches a working
# data plane.
#
# The seed's WMS cluster is applied and the client holds a TCP connection
# through the VIP. Then, in turn:
#   A. the agent is killed (SIGKILL) and started again;
#   B. the controller is killed (SIGKILL) and started again on the same data
#      directory;
#   C. the agent is killed, the controller is killed, the agent is started
#      while the controller is down (--offline-after 2s, so it falls back on
#      its saved state), and then the controller is started.
# After each: dir-a's kernel is identical (ipvsadm -Sn, nft list table inet
# lvsctl, ip addr show dev eth0), its counters were not reset (ipvsadm
# --stats --exact: no Conns or InPkts went down), the held connection
# answered every probe, and the agent acked the same revision
# (appliedRevision == desiredRevision == the revision of the first apply)
# with no kernel operation (lvsctl_agent_kernel_operations_total of a new
# agent stays 0, of a surviving agent does not move, and no "reconciled"
# log line appears, since the agent logs one only when it changed
# something). After B and C, `lvsctl get cluster wms -o yaml` still says the
# same revision: etcd's data survived the kill.
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

began=$(uptime_s)
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }'; }

# pid_of NAME PID: PID if it is NAME, else PID's child called NAME (a
# function run in the background, like start_agent's `on dir-a lvs-agent &`,
# may leave a shell between the job and the program).
pid_of() {
	if [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; then
		echo "$2"
		return
	fi
	for _s in /proc/[0-9]*/stat; do
		# comm is in parentheses, the parent pid is the 4th field
		awk -v n="($1)" -v p="$2" '$2 == n && $4 == p { print $1 }' "$_s" 2>/dev/null
	done | head -n 1
}

gone() { ! [ -e "/proc/$1" ]; }

# kill_hard NAME JOBPID: SIGKILL the program NAME started as job JOBPID, and
# reap the job.
kill_hard() {
	_p=$(pid_of "$1" "$2")
	[ -n "$_p" ] || die "no $1 process under job $2"
	note "kill -9 $1 (pid $_p)"
	kill -9 "$_p"
	wait "$2" 2>/dev/null
	wait_until 10 gone "$_p" || die "$1 (pid $_p) did not die"
}

# kernel_state: dir-a's kernel configuration, which must survive restarts.
kernel_state() {
	echo "## ipvsadm -Sn"
	on dir-a ipvsadm -Sn
	echo "## nft list table inet lvsctl"
	on dir-a nft list table inet lvsctl
	echo "## ip addr show dev eth0"
	on dir-a ip addr show dev eth0
}

# counters: "NAME CONNS INPKTS" per service and real server, from ipvsadm
# --stats --exact.
counters() {
	on dir-a ipvsadm -Ln --stats --exact |
		awk '$1 == "FWM" { print "FWM:" $2, $3, $4 } $1 == "->" && $2 ~ /^[0-9]/ { print $2, $3, $4 }'
}

# counters_down BEFORE AFTER: lines of BEFORE (files of counters) whose
# Conns or InPkts went down in AFTER, or that are missing there.
counters_down() {
	awk 'NR == FNR { c[$1] = $2; p[$1] = $3; next }
		{ seen[$1] = 1; if ($2 < c[$1] || $3 < p[$1]) print $1 " Conns " c[$1] " -> " $2 ", InPkts " p[$1] " -> " $3 }
		END { for (k in c) if (!(k in seen)) print k " missing" }' "$1" "$2"
}

# hold_trouble: lines of the hold's output that say a probe went wrong.
hold_trouble() { grep -E 'probe failed|answered by' /tmp/hold.out; }

ops() { metric lvsctl_agent_kernel_operations_total; }
agent_applied() { metric lvsctl_agent_applied_revision; }
agent_applied_rev() { [ "$(agent_applied)" = "$REV" ]; }

# conns_counted: the service's Conns in ipvsadm --stats is above 0.
conns_counted() { [ "$(counters | awk '/^FWM:/ { print $2 }')" -gt 0 ] 2>/dev/null; }

# acked_same: dir-a is connected and has acked $REV, which is also its
# desired revision.
acked_same() {
	[ "$(status_field dir-a connected)" = true ] &&
		[ "$(status_field dir-a desiredRevision)" = "$REV" ] &&
		[ "$(status_field dir-a appliedRevision)" = "$REV" ]
}

# changing_reconciles FILE: the agent log's "reconciled" lines (it logs one
# only for a reconcile that made kernel operations, or had errors).
changing_reconciles() { grep -E 'msg="?reconciled' "$1"; }

# same_kernel WHAT: dir-a's kernel state equals the one recorded at the
# start, its counters did not go down, the held connection is fine.
same_kernel() {
	kernel_state >/tmp/state.now
	if cmp -s /tmp/state.before /tmp/state.now; then
		pass_check "$1: ipvsadm -Sn, nft table inet lvsctl and eth0's addresses identical"
	else
		fail_check "$1: expected dir-a's kernel state unchanged, saw differences:"
		diff /tmp/state.before /tmp/state.now | sed 's/^/    /'
	fi
	counters >/tmp/counters.now
	expect_eq "$1: no IPVS counter went down (before: $(oneline "$(cat /tmp/counters.before)"); now: $(oneline "$(cat /tmp/counters.now)"))" \
		"" "$(counters_down /tmp/counters.before /tmp/counters.now)"
	cp /tmp/counters.now /tmp/counters.before
	expect_eq "$1: the held connection answered every probe" "" "$(hold_trouble)"
}

step "Topology and responders"
topology
start_reals

step "Controller, agent, apply the seed's WMS cluster"
start_controller
start_agent
show lv apply -f /lab/examples/wms.yaml || die "apply of wms.yaml failed"
wait_applied 30 || die "dir-a did not apply wms"
REV=$(status_field dir-a appliedRevision)
expect_eq "lvsctl get cluster wms -o yaml: revision" "revision: $REV" "$(lv get cluster wms -o yaml | grep '^revision:')"

step "The client holds a TCP connection to $VIP:554; record dir-a's kernel"
rm -f /tmp/hold.stop
on client lab-client hold "$VIP:554" -n 1 --stop-file /tmp/hold.stop >/tmp/hold.out 2>&1 &
wait_line /tmp/hold.out '^HOLD READY' 20 || die "the held connection did not open"
note "$(grep '^conn 1 ' /tmp/hold.out)"
# Let the rate estimator fold the held connection into the counters (every
# 2 s), so the recorded counters are not zero.
wait_until 6 conns_counted
kernel_state >/tmp/state.before
counters >/tmp/counters.before
show cat /tmp/state.before
show cat /tmp/counters.before
show lv status
note "acked revision: $REV"

step "A. Kill the agent (SIGKILL) and start it again"
kill_hard lvs-agent "$AGENT_PID"
cp /tmp/agent.log /tmp/agent.1.log
t=$(uptime_s)
# The ack after the restart must come from the new agent, not be the
# controller's memory of the old one: the controller must see it gone.
disconnected() { [ "$(status_field dir-a connected)" = false ]; }
wait_until 15 disconnected
expect_eq "A. lvsctl status sees the dead agent (connected; after $(since "$t")s)" false "$(status_field dir-a connected)"
same_kernel "A. agent dead"
t=$(uptime_s)
start_agent
if wait_until 30 agent_applied_rev; then
	note "new agent applied revision $REV $(since "$t")s after it was started"
else
	fail_check "A. new agent: expected lvsctl_agent_applied_revision $REV within 30s, saw '$(agent_applied)'"
fi
wait_until 30 acked_same
expect_eq "A. lvsctl status after the agent's restart: connected, desired, applied" "true $REV $REV" \
	"$(status_field dir-a connected) $(status_field dir-a desiredRevision) $(status_field dir-a appliedRevision)"
note "acked by the controller $(since "$t")s after the agent was started"
expect_eq "A. new agent's kernel operations (lvsctl_agent_kernel_operations_total)" 0 "$(ops)"
expect_eq "A. new agent's 'reconciled' log lines (one is logged only for a reconcile with operations or errors)" "" \
	"$(changing_reconciles /tmp/agent.log)"
same_kernel "A. after the agent's restart"
show cat /tmp/agent.log

step "B. Kill the controller (SIGKILL) and start it again on the same data directory"
ops_b=$(ops)
lines_b=$(changing_reconciles /tmp/agent.log | wc -l)
kill_hard lvs-controller "$CONTROLLER_PID"
cp /tmp/controller.log /tmp/controller.1.log
same_kernel "B. controller dead"
t=$(uptime_s)
start_controller
expect_eq "B. lvsctl get cluster wms -o yaml after the controller's restart: revision (etcd's data survived)" \
	"revision: $REV" "$(lv get cluster wms -o yaml 2>&1 | grep -E '^revision:|rror')"
if wait_until 40 acked_same; then
	note "agent reconnected and acked $(since "$t")s after the controller was started"
fi
expect_eq "B. lvsctl status after the controller's restart: connected, desired, applied" "true $REV $REV" \
	"$(status_field dir-a connected) $(status_field dir-a desiredRevision) $(status_field dir-a appliedRevision)"
expect_match "B. the new controller's log: dir-a connected and said it had applied $REV" \
	"msg=\"agent connected\".* director=dir-a .*last_applied_revision=$REV\$" "$(grep 'agent connected' /tmp/controller.log)"
expect_eq "B. agent's kernel operations (lvsctl_agent_kernel_operations_total, was $ops_b)" "$ops_b" "$(ops)"
expect_eq "B. agent's 'reconciled' log lines since the controller's restart" "$lines_b" \
	"$(changing_reconciles /tmp/agent.log | wc -l)"
same_kernel "B. after the controller's restart"
show cat /tmp/controller.log

step "C. Kill the agent and the controller; start the agent alone (--offline-after 2s), then the controller"
kill_hard lvs-agent "$AGENT_PID"
cp /tmp/agent.log /tmp/agent.2.log
kill_hard lvs-controller "$CONTROLLER_PID"
cp /tmp/controller.log /tmp/controller.2.log
t=$(uptime_s)
start_agent --offline-after 2s
if wait_line /tmp/agent.log 'controller unreachable: applying the last saved desired state' 20; then
	note "agent fell back on its saved state $(since "$t")s after it was started"
else
	fail_check "C. expected the agent to log 'controller unreachable: applying the last saved desired state' within 20s"
fi
wait_until 10 agent_applied_rev
expect_eq "C. agent without controller: applied revision (lvsctl_agent_applied_revision)" "$REV" "$(agent_applied)"
expect_eq "C. agent without controller: kernel operations" 0 "$(ops)"
expect_eq "C. agent without controller: 'reconciled' log lines" "" "$(changing_reconciles /tmp/agent.log)"
same_kernel "C. agent alone, controller down"
t=$(uptime_s)
start_controller
if wait_until 40 acked_same; then
	note "agent reconnected and acked $(since "$t")s after the controller was started"
fi
expect_eq "C. lvsctl status once the controller is back: connected, desired, applied" "true $REV $REV" \
	"$(status_field dir-a connected) $(status_field dir-a desiredRevision) $(status_field dir-a appliedRevision)"
expect_match "C. the new controller's log: dir-a connected and said it had applied $REV" \
	"msg=\"agent connected\".* director=dir-a .*last_applied_revision=$REV\$" "$(grep 'agent connected' /tmp/controller.log)"
expect_eq "C. lvsctl get cluster wms -o yaml: revision" "revision: $REV" "$(lv get cluster wms -o yaml 2>&1 | grep -E '^revision:|rror')"
expect_eq "C. agent's kernel operations after reconnecting" 0 "$(ops)"
expect_eq "C. agent's 'reconciled' log lines after reconnecting" "" "$(changing_reconciles /tmp/agent.log)"
same_kernel "C. after the controller is back"
show cat /tmp/agent.log

step "Stop the held connection: every probe answered"
touch /tmp/hold.stop
wait_line /tmp/hold.out '^HOLD RESULT' 20
show cat /tmp/hold.out
expect_match "held connection survived both restarts" '^HOLD RESULT OK conns 1 probes [1-9][0-9]* failed 0 ' \
	"$(grep '^HOLD RESULT' /tmp/hold.out)"
show on dir-a ipvsadm -Ln --stats --exact

note "scenario body took $(since "$began")s of guest time"
finish

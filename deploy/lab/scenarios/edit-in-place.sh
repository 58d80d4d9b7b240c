#!/bin/sh
# edit-in-place: every editable change to a cluster is made in place, with
# one kernel operation, while a client's connection keeps flowing.
#
# The seed's WMS cluster is applied, the client holds one TCP connection
# through the VIP, and then five changes are applied one at a time, each by
# editing `lvsctl get cluster wms -o yaml` with sed:
#   scheduler wlc -> rr, persistence 600s -> 300s, one weight 100 -> 50,
#   a fourth real server (rs4) added, another real server removed (one the
#   held connection is NOT pinned to).
# After each: ipvsadm -Ln shows the change; the agent made exactly one kernel
# operation for it (lvsctl_agent_kernel_operations_total rises by 1 and its
# log says operations=1 for that revision, with one "kernel change" line of
# the expected kind: update-service, update-destination, add-destination,
# never a delete-service), except the removal of a real server, which is two:
# its weight set to 0, then, its connections gone, delete-destination (issue
# 9's removal grace); the FWM service was never
# deleted (its Conns and InPkts in ipvsadm --stats never go down, and at the
# end Conns counts the held connection plus the one new connection made
# after each change); and every probe of the held connection is answered
# (HOLD RESULT OK at the end).
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

began=$(uptime_s)

# svc_line: the cluster's IPVS service line of ipvsadm -Ln, fields
# single-spaced ("FWM 1 wlc persistent 600").
svc_line() {
	on dir-a ipvsadm -Ln | awk -v m="$FWM" '$1 == "FWM" && $2 == m { $1 = $1; print }'
}

# reals_line: the service's real servers as "ADDR:PORT WEIGHT", sorted, on
# one line joined by ", " (there is only this one service on dir-a).
reals_line() {
	on dir-a ipvsadm -Ln | awk '$1 == "->" && $2 ~ /^[0-9]/ { print $2, $4 }' | sort |
		awk 'NR > 1 { printf ", " } { printf "%s", $0 } END { print "" }'
}

# reals_are LINE: reals_line is LINE now.
reals_are() { [ "$(reals_line)" = "$1" ]; }

# svc_stats: "CONNS INPKTS" of the service from ipvsadm -Ln --stats --exact.
svc_stats() {
	on dir-a ipvsadm -Ln --stats --exact | awk -v m="$FWM" '$1 == "FWM" && $2 == m { print $3, $4 }'
}

# ops: the agent's kernel operation counter.
ops() { metric lvsctl_agent_kernel_operations_total; }

# applied_rev_is REV: dir-a has acked REV (lvsctl status) and the agent's
# metrics say it applied REV.
applied_rev_is() {
	[ "$(status_field dir-a appliedRevision)" = "$1" ] && [ "$(metric lvsctl_agent_applied_revision)" = "$1" ]
}

# log_ops REV: the operations= of the agent's "reconciled" line for REV.
log_ops() {
	grep -E "msg=\"?reconciled.* revision=$1 " /tmp/agent.log | sed -nE 's/.* operations=([0-9]+).*/\1/p' | tail -n 1
}

# hold_trouble: lines of the hold's output that say a probe went wrong.
hold_trouble() { grep -E 'probe failed|answered by' /tmp/hold.out; }

step "Topology, responders on rs1-rs3 and rs4 (rs4 not in the cluster yet)"
topology
start_reals
add_rs4 || die "cannot add rs4"

step "Controller, agent, apply the seed's WMS cluster"
start_controller
start_agent
show lv apply -f /lab/examples/wms.yaml || die "apply of wms.yaml failed"
wait_applied 30 || die "dir-a did not apply wms"
FWM=$(lv get cluster wms -o yaml | sed -n 's/^fwmark: *//p')
[ -n "$FWM" ] || die "no fwmark in lvsctl get cluster wms -o yaml"
show on dir-a ipvsadm -Ln
expect_eq "IPVS service as applied" "FWM $FWM wlc persistent 600" "$(svc_line)"
reals="198.51.100.1:0 100, 198.51.100.2:0 100, 198.51.100.3:0 100"
expect_eq "real servers as applied" "$reals" "$(reals_line)"

step "The client holds one TCP connection to $VIP:554"
rm -f /tmp/hold.stop
on client lab-client hold "$VIP:554" -n 1 --stop-file /tmp/hold.stop >/tmp/hold.out 2>&1 &
wait_line /tmp/hold.out '^HOLD READY' 20 || die "the held connection did not open"
pinned=$(sed -nE 's/^conn 1 sport [0-9]+ server (rs[0-9])$/\1/p' /tmp/hold.out)
[ -n "$pinned" ] || die "cannot tell which real server the held connection reached: $(oneline "$(cat /tmp/hold.out)")"
pinned_ip=198.51.100.${pinned#rs}
# The real server to remove: the first one the held connection is not on.
for r in 1 2 3; do
	[ "198.51.100.$r" = "$pinned_ip" ] || { gone_ip=198.51.100.$r; break; }
done
note "held connection pinned to $pinned ($pinned_ip); $gone_ip will be removed"
prev_stats=$(svc_stats)
conns_made=1
note "service Conns InPkts before the changes: $prev_stats"

# change WHAT SED-SCRIPT SVC-LINE REALS OP: apply the sed-edited manifest,
# then check the kernel, the operation count (and that the one operation
# the agent logged is OP), the counters and the connection.
change() {
	_what=$1 _sed=$2 _want_svc=$3 _want_reals=$4 _want_op=$5
	step "Change: $_what"
	_t=$(uptime_s)
	_ops0=$(ops)
	_opl0=$(grep -c ' op=' /tmp/agent.log)
	_out=$(lv get cluster wms -o yaml | sed "$_sed" | lv apply -f - 2>&1)
	note "lvsctl apply: $_out"
	_rev=$(printf '%s\n' "$_out" | sed -nE 's/^cluster\/wms configured \(revision ([0-9]+)\)$/\1/p')
	if [ -z "$_rev" ]; then
		fail_check "$_what: expected 'cluster/wms configured (revision N)', saw $(oneline "$_out")"
		return 1
	fi
	if ! wait_until 30 applied_rev_is "$_rev"; then
		fail_check "$_what: expected dir-a to ack revision $_rev within 30s, saw appliedRevision $(status_field dir-a appliedRevision), agent metric $(metric lvsctl_agent_applied_revision)"
		return 1
	fi
	note "revision $_rev applied $(awk -v a="$_t" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s after the apply began"
	# A removed real server is drained first (weight 0, issue 9) and deleted once its
	# connections are gone: its change ends with the deletion, a moment after the ack.
	wait_until 10 reals_are "$_want_reals"
	show on dir-a ipvsadm -Ln
	expect_eq "$_what: ipvsadm service line" "$_want_svc" "$(svc_line)"
	expect_eq "$_what: ipvsadm real servers" "$_want_reals" "$(reals_line)"
	_ops1=$(ops)
	# shellcheck disable=SC2086 # a list of operations
	_n=$(echo $_want_op | wc -w)
	expect_eq "$_what: kernel operations counted by the agent (lvsctl_agent_kernel_operations_total $_ops0 -> $_ops1)" "$_n" \
		"$(awk -v a="$_ops0" -v b="$_ops1" 'BEGIN { print b - a }')"
	expect_eq "$_what: operations= of the agent's last 'reconciled' line for revision $_rev" 1 "$(log_ops "$_rev")"
	_opl=$(grep ' op=' /tmp/agent.log | tail -n +$((_opl0 + 1)))
	_want_opl=$(printf '%s\n' $_want_op | sed 's/^/op=/' | tr '\n' ' ' | sed 's/ *$//')
	expect_eq "$_what: the agent's 'kernel change' log lines: $_want_opl" "$_want_opl" \
		"$(printf '%s\n' "$_opl" | sed -nE 's/.* (op=[^ ]+).*/\1/p' | tr '\n' ' ' | sed 's/ *$//')"
	note "agent: $(oneline "$_opl")"
	# The service keeps its counters. The kernel folds its per-CPU counters
	# into what ipvsadm reads every 2 s (the rate estimator's timer), so they
	# lag: here they must only never go down; the exact total is checked at
	# the end.
	_now=$(svc_stats)
	# shellcheck disable=SC2086 # split "CONNS INPKTS"
	set -- $prev_stats $_now
	expect_eq "$_what: service counters never went down (Conns InPkts before $1 $2, now $3 $4)" ok \
		"$([ "$3" -ge "$1" ] && [ "$4" -ge "$2" ] && echo ok || echo "went down")"
	prev_stats=$_now
	# One more connection per change; a re-created service would miss it.
	on client lab-client tcp "$VIP:554" >/dev/null 2>&1 || fail_check "$_what: a new connection through the VIP failed"
	conns_made=$((conns_made + 1))
	expect_eq "$_what: the held connection answered every probe so far" "" "$(hold_trouble)"
}

change "scheduler wlc -> rr" 's/^scheduler: wlc$/scheduler: rr/' \
	"FWM $FWM rr persistent 600" "$reals" update-service
change "persistence 600s -> 300s" 's/^persistence: {timeout: 600s}$/persistence: {timeout: 300s}/' \
	"FWM $FWM rr persistent 300" "$reals" update-service
reals=$(echo "$reals" | sed "s/$pinned_ip:0 100/$pinned_ip:0 50/")
change "weight of $pinned_ip 100 -> 50" "s/{address: $pinned_ip, weight: 100}/{address: $pinned_ip, weight: 50}/" \
	"FWM $FWM rr persistent 300" "$reals" update-destination
reals="$reals, 198.51.100.4:0 100"
change "add real server rs4 (198.51.100.4)" '/^  - {address: 198\.51\.100\.3,/a\  - {address: 198.51.100.4, weight: 100}' \
	"FWM $FWM rr persistent 300" "$reals" add-destination
reals=$(echo "$reals" | sed -E "s/(^|, )$gone_ip:0 100//; s/^, //")
change "remove real server $gone_ip" "/{address: $(echo "$gone_ip" | sed 's/\./\\./g'),/d" \
	"FWM $FWM rr persistent 300" "$reals" "update-destination delete-destination"

step "Stop the held connection: every probe answered"
touch /tmp/hold.stop
wait_line /tmp/hold.out '^HOLD RESULT' 20
show cat /tmp/hold.out
expect_match "held connection survived all five changes" '^HOLD RESULT OK conns 1 probes [1-9][0-9]* failed 0 ' \
	"$(grep '^HOLD RESULT' /tmp/hold.out)"
# conns_made: the held connection and one per change. Conns counts every
# connection the service ever scheduled, so only a service that lived
# through every change reaches it (allow the estimator's 2 s to fold it in).
conns_total() { [ "$(svc_stats | cut -d' ' -f1)" = "$conns_made" ]; }
wait_until 6 conns_total
expect_eq "FWM $FWM service Conns: every connection made through all the changes" "$conns_made" "$(svc_stats | cut -d' ' -f1)"
show on dir-a ipvsadm -Ln --stats --exact
show grep -E 'msg="?reconciled' /tmp/agent.log

note "scenario body took $(awk -v a="$began" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s of guest time"
finish

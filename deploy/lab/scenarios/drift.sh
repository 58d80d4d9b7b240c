#!/bin/sh
# drift: what others do to the agent's kernel state is put back within about
# a second, not at the next resync.
#
# The seed's WMS cluster is applied and the client reaches it through the
# VIP. The agent runs with --resync 10m, so a repair inside the limits below
# can only come from its change notifications. Then, on dir-a:
#   A. `nft flush ruleset` (what `systemctl reload nftables` does with
#      Debian's /etc/nftables.conf): table inet lvsctl is gone, the VIP's
#      traffic is no longer marked, so IPVS no longer balances it;
#   B. `ip addr del 192.0.2.10/32 dev eth0` (ifupdown or networkd
#      reconfiguring the interface): the VIP is gone.
# After each: within 2 s the table (same text as before the flush) or the VIP
# is back, the client's TCP 554 through the VIP is answered by a real server,
# and the agent logged a "reconciled" line with trigger=kernel-change. The
# measured repair times are printed. At the end: with nothing changing, the
# agent reconciles no more (its repair's own changes make one more reconcile
# that finds nothing to do, and that one changes nothing: no loop), and
# `lvsctl status -o json` succeeds, lists dir-a, and shows it the revision
# applied without errors.
# shellcheck disable=SC2317 # (whole file) helpers are called through repaired_within
. ./lib.sh

began=$(uptime_s)
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN { printf "%.2f", b - a }'; }

# repaired_within SECS CMD...: poll CMD every 0.05 s from now; prints the
# seconds until it first succeeded (the poll's own time included, so an upper
# bound), or returns 1 after SECS.
repaired_within() {
	_lim=$1
	shift
	_t0=$(uptime_s)
	while ! "$@" >/dev/null 2>&1; do
		if awk -v a="$_t0" -v b="$(uptime_s)" -v l="$_lim" 'BEGIN { exit !(b - a > l) }'; then
			return 1
		fi
		sleep 0.05
	done
	since "$_t0"
}

table() { on dir-a nft list table inet lvsctl; }
table_back() { [ "$(table 2>/dev/null)" = "$TABLE_BEFORE" ]; }
vip_on_eth0() { on dir-a ip -4 -br addr show dev eth0 | grep -Eq " $VIP/32( |\$)"; }
answered() { on client lab-client tcp "$VIP:554" 2>&1; }
kernel_change_lines() { grep -cE 'msg="?reconciled.* trigger=kernel-change' /tmp/agent.log; }
reconciles() { metric lvsctl_agent_reconcile_duration_seconds_count; }

# settled_reconciles WHAT BEFORE: a second after a repair, the reconciles since
# the drift (BEFORE: the count before it) are the repair and at most one more,
# the one that finds the repair's own changes and nothing to do.
settled_reconciles() {
	sleep 1
	_n=$(($(reconciles) - $2))
	if [ "$_n" -ge 1 ] && [ "$_n" -le 2 ]; then
		pass_check "$1. reconciles since the drift, a second after the repair: $_n (the repair, and one finding nothing to do)"
	else
		fail_check "$1. reconciles since the drift, a second after the repair: expected 1 or 2, saw $_n"
	fi
}

step "Topology, responders, controller, agent (--resync 10m: no periodic repair during the scenario)"
topology
start_reals
start_controller
start_agent --resync 10m

step "Apply the WMS cluster; the client reaches it through the VIP"
show lv apply -f /lab/examples/wms.yaml || die "apply of wms.yaml failed"
wait_applied 30 || die "dir-a did not apply wms"
wait_until 10 vip_on_eth0 || die "the VIP $VIP is not on dir-a's eth0 10 s after the revision was applied"
expect_match "tcp $VIP:554 answered by a real server" '^rs[1-3]$' "$(answered)"
TABLE_BEFORE=$(table)
[ -n "$TABLE_BEFORE" ] || die "dir-a has no table inet lvsctl"
show on dir-a nft list table inet lvsctl

step "A. nft flush ruleset on dir-a (systemctl reload nftables)"
lines=$(kernel_change_lines)
r=$(reconciles)
show on dir-a nft flush ruleset
if took=$(repaired_within 2 table_back); then
	pass_check "A. table inet lvsctl back, identical, ${took}s after the flush"
	REPAIR_A=$took
else
	fail_check "A. table inet lvsctl: expected it back as before within 2 s of the flush, saw: $(oneline "$(table 2>&1)")"
	REPAIR_A=none
fi
expect_match "A. tcp $VIP:554 answered by a real server after the repair" '^rs[1-3]$' "$(answered)"
expect_eq "A. the agent's 'reconciled ... trigger=kernel-change' lines" "$((lines + 1))" "$(kernel_change_lines)"
settled_reconciles A "$r"

step "B. ip addr del $VIP/32 dev eth0 on dir-a (ifupdown)"
lines=$(kernel_change_lines)
r=$(reconciles)
show on dir-a ip addr del "$VIP/32" dev eth0
if took=$(repaired_within 2 vip_on_eth0); then
	pass_check "B. $VIP/32 back on dir-a's eth0 ${took}s after its removal"
	REPAIR_B=$took
else
	fail_check "B. $VIP/32 on eth0: expected it back within 2 s of its removal, saw: $(oneline "$(on dir-a ip -4 -br addr show dev eth0 2>&1)")"
	REPAIR_B=none
fi
expect_match "B. tcp $VIP:554 answered by a real server after the repair" '^rs[1-3]$' "$(answered)"
expect_eq "B. the agent's 'reconciled ... trigger=kernel-change' lines" "$((lines + 1))" "$(kernel_change_lines)"
settled_reconciles B "$r"

step "No loop: with nothing changing, the agent does not reconcile"
r0=$(reconciles)
sleep 3
expect_eq "reconciles over 3 quiet seconds (lvsctl_agent_reconcile_duration_seconds_count, was $r0)" "$r0" "$(reconciles)"
expect_eq "the table is still the one before the flush" "$TABLE_BEFORE" "$(table 2>&1)"
expect_ok "the VIP is still on eth0" vip_on_eth0
wait_applied 10 || true
# The status check must not pass on silence: lvsctl has to succeed and list
# dir-a, and dir-a's own errors field (always present, [] when none) is read
# from that same output.
st=$(lv status -o json 2>/tmp/status.err)
st_rc=$?
expect_eq "lvsctl status -o json: exit status (stderr: $(oneline "$(cat /tmp/status.err)"))" 0 "$st_rc"
st_dir_a=$(printf '%s\n' "$st" | tr -d '\n' | sed 's/}[[:space:]]*,[[:space:]]*{/}\n{/g' |
	grep -E '"name"[[:space:]]*:[[:space:]]*"dir-a"' | head -n 1)
expect_match "lvsctl status -o json lists dir-a" '"name"[[:space:]]*:[[:space:]]*"dir-a"' "$st_dir_a"
expect_eq "lvsctl status: dir-a's errors" "[]" \
	"$(printf '%s\n' "$st_dir_a" | sed -nE 's/.*"errors"[[:space:]]*:[[:space:]]*(\[[^]]*\]).*/\1/p' | tr -d ' ')"
show grep -E 'msg="?reconciled' /tmp/agent.log

step "Repair times (guest time, upper bounds: each poll of the kernel included)"
note "A. nft flush ruleset -> table inet lvsctl back: ${REPAIR_A}s"
note "B. ip addr del of the VIP -> VIP back: ${REPAIR_B}s"
note "scenario body took $(since "$began")s of guest time"
finish

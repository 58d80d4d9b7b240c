#!/bin/sh
# coexist: lvsctl's agent shares the director with IPVS services and
# nftables tables it did not make. Before the agent starts, dir-a gets a
# hand-made TCP service (192.0.2.50:80, rr, one real), a hand-made fwmark
# service (99, rr, one real) and a hand-made nftables table (inet handmade);
# then the WMS cluster is applied, edited (a weight) and deleted, and after
# each step the hand-made services and table must be byte-for-byte what
# they were.
. ./lib.sh

# handmade_ipvs: the hand-made services and their reals, as ipvsadm -Sn
# saves them.
handmade_ipvs() { on dir-a ipvsadm -Sn | grep -E -- '-(t 192\.0\.2\.50:80|f 99)( |$)'; }
handmade_nft() { on dir-a nft list table inet handmade; }

# unchanged WHEN: the hand-made state now is the state first recorded.
unchanged() {
	expect_eq "$1: hand-made IPVS services unchanged (ipvsadm -Sn)" "$IPVS0" "$(handmade_ipvs 2>&1)"
	expect_eq "$1: hand-made table inet handmade unchanged (nft list)" "$NFT0" "$(handmade_nft 2>&1)"
}

step "Topology and responders"
topology
start_reals

step "By hand on dir-a, before any agent: two IPVS services and an nftables table"
on dir-a ipvsadm -A -t 192.0.2.50:80 -s rr || die "ipvsadm -A -t failed"
on dir-a ipvsadm -a -t 192.0.2.50:80 -r 198.51.100.1:80 -m -w 5 || die "ipvsadm -a -t failed"
on dir-a ipvsadm -A -f 99 -s rr -p 120 || die "ipvsadm -A -f failed"
on dir-a ipvsadm -a -f 99 -r 198.51.100.2:0 -m -w 7 || die "ipvsadm -a -f failed"
on dir-a nft -f - <<'NFT' || die "nft rejected the hand-made table"
table inet handmade {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		ip daddr 192.0.2.50 tcp dport 8080 meta mark set 99 comment "made by hand"
	}
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 2222 drop
	}
}
NFT
IPVS0=$(handmade_ipvs 2>&1)
NFT0=$(handmade_nft 2>&1)
printf '%s\n' "$IPVS0" "$NFT0" | sed 's/^/    /'
expect_eq "four hand-made ipvsadm -Sn lines recorded" 4 "$(printf '%s\n' "$IPVS0" | grep -c .)"

step "Start the controller and the agent (nothing applied yet)"
start_controller
start_agent
# The agent's first reconcile, against the controller's empty desired state.
# shellcheck disable=SC2317 # called by wait_until
reconciled_once() { [ "$(metric lvsctl_agent_reconcile_duration_seconds_count)" -ge 1 ] 2>/dev/null; }
if wait_until 20 reconciled_once; then
	pass_check "the agent made its first reconcile (nothing desired yet)"
else
	fail_check "the agent reconciled once within 20 s of starting: lvsctl_agent_reconcile_duration_seconds_count is '$(metric lvsctl_agent_reconcile_duration_seconds_count)'"
fi
# Status lists the directors that a group names (a stream from any other name is not
# kept: a certificate holder cannot fill the controller's memory under made-up names).
expect_eq "dir-a, in no group yet, is not in lvsctl status" "" "$(status_field dir-a connected)"
unchanged "agent started"

step "Apply the WMS cluster"
lv apply -f /lab/examples/wms.yaml 2>&1 | sed 's/^/    /'
wait_applied 30 || fail_check "dir-a applied wms within 30 s"
expect_eq "dir-a, now in group edge-1, is connected" true "$(status_field dir-a connected)"
show on dir-a ipvsadm -Ln
services=$(on dir-a ipvsadm -Ln | grep -E '^(TCP|UDP|FWM|SCTP) ' | sed 's/ *$//' | sort)
expect_match "the WMS service is there next to the hand-made ones" '^FWM +[0-9]+ wlc persistent 600' "$(printf '%s\n' "$services" | grep -v '^FWM  *99 ')"
expect_eq "three services in all" 3 "$(printf '%s\n' "$services" | grep -c .)"
expect_match "the client reaches wms" '^rs[1-3]$' "$(on client lab-client tcp "$VIP:554" 2>&1)"
unchanged "after apply"

step "Change a weight of the WMS cluster (rs2 100 -> 50)"
before=$(applied_rev)
lv get cluster wms -o yaml >/tmp/wms-get.yaml || fail_check "lvsctl get cluster wms -o yaml failed"
awk '/198\.51\.100\.2([^0-9]|$)/ { f = 1 } f && /weight: *100/ { sub(/weight: *100/, "weight: 50"); f = 0 } { print }' \
	/tmp/wms-get.yaml >/tmp/wms-edit.yaml
show diff /tmp/wms-get.yaml /tmp/wms-edit.yaml
cmp -s /tmp/wms-get.yaml /tmp/wms-edit.yaml && die "could not edit rs2's weight in: $(oneline "$(cat /tmp/wms-get.yaml)")"
lv apply -f /tmp/wms-edit.yaml 2>&1 | sed 's/^/    /'
wait_applied 30 dir-a "$before" || fail_check "dir-a applied the edit within 30 s"
mark=$(awk '$1 == "fwmark:" { print $2 }' /tmp/wms-get.yaml)
expect_eq "rs2's weight is 50 in the kernel" "-a -f $mark -r 198.51.100.2:0 -m -w 50" "$(on dir-a ipvsadm -Sn | grep -E -- "^-a -f $mark -r 198\.51\.100\.2:")"
unchanged "after the edit"

step "Delete the WMS cluster"
before=$(applied_rev)
lv delete cluster wms 2>&1 | sed 's/^/    /'
wait_applied 30 dir-a "$before" || fail_check "dir-a applied the delete within 30 s"
show on dir-a ipvsadm -Ln
show on dir-a nft list ruleset
expect_eq "only the hand-made services are left" "FWM  99 rr persistent 120
TCP  192.0.2.50:80 rr" "$(on dir-a ipvsadm -Ln | grep -E '^(TCP|UDP|FWM|SCTP) ' | sed 's/ *$//' | sort)"
expect_fail "the VIP is gone from dir-a's eth0" sh -c "/usr/sbin/ip netns exec dir-a /usr/sbin/ip -4 -br addr show dev eth0 | grep -q ' $VIP/32'"
unchanged "after the delete"

finish

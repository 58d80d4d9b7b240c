#!/bin/sh
# balance: the scheduler and the weights lvsctl sets are the ones the kernel
# balances with. A cluster "web" (VIP 192.0.2.11, tcp 554, no persistence,
# masquerading to rs1-rs3) under rr spreads 30 connections 10/10/10; after
# re-applying it with wrr and weights 3:1:0, 32 connections go 24/8 to the
# first two and none to the weight-0 (quiesced) server.
. ./lib.sh

WEB_VIP=192.0.2.11

# web_manifest SCHEDULER W1 W2 W3: the cluster and its director group.
web_manifest() {
	cat <<YAML
kind: Cluster
name: web
directorGroup: edge-1
vips: [$WEB_VIP]
ports:
  - {protocol: tcp, port: 554}
scheduler: $1
forwarding: masq
reals:
  - {address: 198.51.100.1, weight: $2}
  - {address: 198.51.100.2, weight: $3}
  - {address: 198.51.100.3, weight: $4}
---
kind: DirectorGroup
name: edge-1
directors: [{name: dir-a, priority: 200}]
vipInterface: eth0
YAML
}

# reals_of: "ADDRESS FORWARD WEIGHT" of each real of the one service on dir-a.
reals_of() { on dir-a ipvsadm -Ln | awk '$1 == "->" && $2 != "RemoteAddress:Port" { print $2, $3, $4 }'; }

step "Topology, responders, controller, agent"
topology
start_reals
start_controller
start_agent

step "Apply cluster web: $WEB_VIP tcp 554, rr, no persistence, reals rs1-rs3 weight 1"
web_manifest rr 1 1 1 >/tmp/web.yaml
show cat /tmp/web.yaml
out=$(lv apply -f /tmp/web.yaml 2>&1)
printf '%s\n' "$out" | sed 's/^/    /'
expect_match "apply creates cluster/web" '^cluster/web created' "$out"
wait_applied 30 || fail_check "dir-a applied the desired revision within 30 s"
wait_until 10 on client lab-client tcp "$WEB_VIP:554" --timeout 1s || note "($WEB_VIP:554 did not answer within 10 s)"
show on dir-a ipvsadm -Ln
expect_match "one service, rr, no persistence" '^FWM +[0-9]+ rr *$' "$(on dir-a ipvsadm -Ln | grep -E '^(TCP|UDP|FWM|SCTP) ')"
expect_eq "reals: Masq, weight 1" "198.51.100.1:0 Masq 1
198.51.100.2:0 Masq 1
198.51.100.3:0 Masq 1" "$(reals_of)"

step "30 client connections under rr: 10 to each real server"
got=$(on client lab-client tcp "$WEB_VIP:554" -n 30 --count-by-server 2>&1)
expect_eq "rr spread of 30 connections" "rs1 10
rs2 10
rs3 10" "$got"

step "Re-apply web with wrr and weights 3:1:0"
before=$(applied_rev)
web_manifest wrr 3 1 0 >/tmp/web.yaml
out=$(lv apply -f /tmp/web.yaml 2>&1)
printf '%s\n' "$out" | sed 's/^/    /'
expect_match "apply configures cluster/web" '^cluster/web configured' "$out"
wait_applied 30 dir-a "$before" || fail_check "dir-a applied a revision above $before within 30 s"
show on dir-a ipvsadm -Ln
expect_match "the service is now wrr" '^FWM +[0-9]+ wrr *$' "$(on dir-a ipvsadm -Ln | grep -E '^(TCP|UDP|FWM|SCTP) ')"
expect_eq "reals: Masq, weights 3, 1, 0" "198.51.100.1:0 Masq 3
198.51.100.2:0 Masq 1
198.51.100.3:0 Masq 0" "$(reals_of)"

step "32 client connections under wrr 3:1:0: 24 to rs1, 8 to rs2, none to rs3"
got=$(on client lab-client tcp "$WEB_VIP:554" -n 32 --count-by-server 2>&1)
show echo "$got"
n1=$(printf '%s\n' "$got" | awk '$1 == "rs1" { print $2 }')
n2=$(printf '%s\n' "$got" | awk '$1 == "rs2" { print $2 }')
n3=$(printf '%s\n' "$got" | awk '$1 == "rs3" { print $2 }')
expect_eq "no connection reaches the weight-0 server rs3" "" "$n3"
expect_match "rs1 (weight 3) gets 24 of 32, within one" '^(23|24|25)$' "${n1:-0}"
expect_match "rs2 (weight 1) gets 8 of 32, within one" '^(7|8|9)$' "${n2:-0}"
expect_eq "all 32 answered" 32 "$((${n1:-0} + ${n2:-0} + ${n3:-0}))"
show on dir-a ipvsadm -Ln --stats

finish

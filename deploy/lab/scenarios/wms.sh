#!/bin/sh
# wms: the seed's Windows Media cluster (deploy/examples/wms.yaml) applied
# through lvsctl, programmed by the agent in a real IPVS kernel, and used by
# a real client. One fwmark gathers tcp/udp 554, tcp/udp 1755 and udp
# 1024-5000 into one IPVS service (wlc, persistent 600 s, masquerading to
# three reals of weight 100); persistence keeps one client's RTSP control
# connection and its UDP data streams on the same real server.
. ./lib.sh

step "Topology, responders, controller, agent"
topology
start_reals
start_controller
start_agent

step "Apply the WMS cluster"
out=$(lv apply -f /lab/examples/wms.yaml 2>&1)
printf '%s\n' "$out" | sed 's/^/    /'
expect_match "apply creates cluster/wms" '^cluster/wms created' "$out"
wait_applied 30 || fail_check "dir-a applied the desired revision within 30 s"
# The VIP is the agent's too: it follows the director's role.
wait_until 10 sh -c "/usr/sbin/ip netns exec dir-a /usr/sbin/ip -4 -br addr show dev eth0 | grep -Eq ' $VIP/32( |\$)'" ||
	note "(the VIP was not on eth0 10 s after the revision was applied)"

step "IPVS on dir-a: one fwmark service, wlc, persistent 600, three masqueraded reals of weight 100"
show on dir-a ipvsadm -Ln
ipvs=$(on dir-a ipvsadm -Ln 2>&1)
services=$(printf '%s\n' "$ipvs" | grep -E '^(TCP|UDP|FWM|SCTP) ')
expect_match "exactly one virtual service, a FWM one, wlc, persistent 600" '^FWM +[0-9]+ wlc persistent 600( |$)' "$services"
expect_eq "one virtual service in all" 1 "$(printf '%s\n' "$services" | grep -c .)"
mark=$(printf '%s\n' "$services" | awk '$1 == "FWM" { print $2; exit }')
reals=$(printf '%s\n' "$ipvs" | awk '$1 == "->" && $2 != "RemoteAddress:Port" { print $2, $3, $4 }')
expect_eq "reals: 198.51.100.1-3, Masq, weight 100" "198.51.100.1:0 Masq 100
198.51.100.2:0 Masq 100
198.51.100.3:0 Masq 100" "$reals"

step "nftables on dir-a: table inet lvsctl marks the cluster's ports with fwmark $mark"
show on dir-a nft list table inet lvsctl
nft=$(on dir-a nft list table inet lvsctl 2>&1)
hex=$(printf '0x%08x' "${mark:-0}")
# marked (lib.sh): some element of table inet lvsctl's maps gives all of these
# ports of the VIP this mark.
for pp in "tcp 554" "udp 554" "tcp 1755" "udp 1755" "udp 1024-5000"; do
	# shellcheck disable=SC2086 # split "tcp 554" into protocol and port
	set -- $pp
	if marked dir-a "$VIP" "$1" "$2" "$mark"; then
		pass_check "$1 $2 to $VIP is marked $mark ($hex)"
	else
		fail_check "$1 $2 to $VIP is marked $mark: expected an element '$VIP . $1 . $2 : $hex' (or a range holding $2), saw: $(oneline "$nft")"
	fi
done
expect_fail "nothing marks tcp 1024-5000" marked dir-a "$VIP" tcp 1024-5000 "$mark"
nft_marks dir-a >/tmp/wms.nft
printf '%s\n' "$VIP tcp 554 554 $mark" "$VIP udp 554 554 $mark" "$VIP tcp 1755 1755 $mark" "$VIP udp 1755 1755 $mark" \
	"$VIP udp 1024 5000 $mark" >/tmp/wms.want
expect_eq "no element marks more than the cluster's ports" "" "$(stray /tmp/wms.nft /tmp/wms.want)"

step "The client reaches the cluster through the VIP on every kind of port"
for t in "tcp 554" "tcp 1755" "udp 554" "udp 1755" "udp 3000"; do
	# shellcheck disable=SC2086
	set -- $t
	got=$(on client lab-client "$1" "$VIP:$2" 2>&1)
	expect_match "$1 $VIP:$2 answered by a real server" '^rs[1-3]$' "$got"
done

step "Persistence: the client's RTSP control connection and UDP streams stay on one real server"
first=$(on client lab-client tcp "$VIP:554" 2>&1)
expect_eq "tcp 554, udp 1755, udp 3000 and 10 more tcp 554 land on the first server" \
	"$first $first $first $first" \
	"$first $(on client lab-client udp "$VIP:1755" 2>&1) $(on client lab-client udp "$VIP:3000" 2>&1) $(on client lab-client tcp "$VIP:554" -n 10 --count-by-server 2>&1 | awk '$2 == 10 { print $1 }')"
show on dir-a ipvsadm -Ln --persistent-conn

step "lvsctl status: dir-a ACTIVE, connected, revision applied, no errors"
show lv status
expect_eq "dir-a role" '"ACTIVE"' "$(status_field dir-a role)"
expect_eq "dir-a connected" true "$(status_field dir-a connected)"
d=$(status_field dir-a desiredRevision)
expect_match "dir-a desiredRevision is set" '^[1-9][0-9]*$' "$d"
expect_eq "dir-a appliedRevision = desiredRevision" "$d" "$(status_field dir-a appliedRevision)"
expect_eq "dir-a has no errors" '[]' "$(status_field dir-a errors)"
expect_match "the VIP is on dir-a's eth0" " $VIP/32( |$)" "$(on dir-a ip -4 -br addr show dev eth0)"
expect_eq "the agent logged no error" "" "$(grep -E 'level=(ERROR|WARN)|with errors' /tmp/agent.log)"

step "TLS and roles: a viewer reads but cannot change; lvsctl will not speak plaintext off loopback"
lvs-controller pki issue "$PKI" --user eve --role viewer >>/tmp/pki.log 2>&1 || die "issuing a viewer certificate"
viewer() { LVSCTL_CERT=$PKI/user-eve.crt LVSCTL_KEY=$PKI/user-eve.key lvsctl "$@"; }
expect_match "a viewer lists the clusters" '^wms ' "$(viewer get clusters 2>&1 | sed 1d)"
out=$(viewer delete cluster wms 2>&1)
rc=$?
note "viewer: lvsctl delete cluster wms -> exit $rc: $out"
expect_match "a viewer's delete is refused, naming the role needed" 'admin' "$rc $out"
expect_eq "the viewer's delete failed" 1 "$rc"
expect_match "the cluster is still there" '^wms ' "$(lv get clusters 2>&1 | sed 1d)"
out=$(lvsctl --insecure get clusters 2>&1)
rc=$?
note "lvsctl --insecure to $CONTROLLER -> exit $rc: $out"
expect_eq "lvsctl refuses plaintext to a controller off loopback" 1 "$rc"

finish

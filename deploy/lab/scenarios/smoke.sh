#!/bin/sh
# smoke: proves the lab itself, without lvsctl. dir-a is programmed by hand
# the way the agent will do it for the seed's Windows Media cluster (one
# fwmark for tcp/udp 554, 1755 and udp 1024-5000, masquerading to three real
# servers), then the client must reach every kind of port through the VIP
# and round-robin must spread 30 connections evenly. If this fails, the lab
# is broken, not lvsctl.
. ./lib.sh

step "Build the topology: client, director dir-a, real servers rs1-rs3"
topology
show ip -br addr show dev br-mgmt

step "Start a responder on each real server"
start_reals

step "Program dir-a by hand: VIP, nftables fwmark 16, IPVS service fwmark 16 (rr, masq)"
on dir-a ip addr add "$VIP/32" dev eth0 || die "cannot add the VIP"
on dir-a nft -f - <<EOF || die "nft rejected the fwmark rules"
table inet lab-smoke {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		ip daddr $VIP tcp dport { 554, 1755 } meta mark set 16
		ip daddr $VIP udp dport { 554, 1755, 1024-5000 } meta mark set 16
	}
}
EOF
on dir-a ipvsadm -A -f 16 -s rr || die "ipvsadm -A failed"
for r in 198.51.100.1 198.51.100.2 198.51.100.3; do
	on dir-a ipvsadm -a -f 16 -r "$r:0" -m || die "ipvsadm -a $r failed"
done
show on dir-a nft list table inet lab-smoke
show on dir-a ipvsadm -Ln

step "The client reaches every port through the VIP"
for t in "tcp 554" "tcp 1755" "udp 554" "udp 1755" "udp 3000" "udp 1024" "udp 5000"; do
	# shellcheck disable=SC2086 # split "tcp 554" into protocol and port
	set -- $t
	got=$(on client lab-client "$1" "$VIP:$2" 2>&1)
	expect_match "$1 $2 answered by a real server" '^rs[1-3]$' "$got"
done

step "30 TCP connections to port 554 under rr are spread 10/10/10"
got=$(on client lab-client tcp "$VIP:554" -n 30 --count-by-server 2>&1)
expect_eq "rr spread of 30 connections" "rs1 10
rs2 10
rs3 10" "$got"

step "30 UDP datagrams to port 3000 (new source port each) are spread 10/10/10"
got=$(on client lab-client udp "$VIP:3000" -n 30 --count-by-server 2>&1)
expect_eq "rr spread of 30 UDP flows" "rs1 10
rs2 10
rs3 10" "$got"

step "Held connections keep their real server"
on client lab-client hold "$VIP:554" -n 3 --duration 2s >/tmp/hold.out 2>&1
expect_match "3 held connections answered every probe for 2s" '^HOLD RESULT OK' "$(tail -n 1 /tmp/hold.out)"
show cat /tmp/hold.out
show on dir-a ipvsadm -Ln --stats

finish

#!/bin/sh
# services: plain IPVS services (issue 12), each balancing real traffic from
# the client, programmed by lvsctl from one manifest:
#   http   tcp 192.0.2.30:80 -> rs1-rs3:8080 under masq (port mapping; rs2
#          with connection thresholds 1000/800), rr: 15 HTTP requests 5/5/5
#   dns    udp 192.0.2.30:53 -> rs1-rs3:554, rr, one-packet scheduling: 30
#          datagrams from ONE client socket reach the reals 10/10/10 (IPVS's
#          per-real counters: under masq ops leaves no entry to translate
#          the answers back); without ops (after the edit) the client's 30
#          datagrams are all answered by one real
#   http6  tcp [2001:db8::30]:80 -> [2001:db8:1::1-3]:8080 under masq, rr:
#          IPv6 end to end, 15 requests 5/5/5
#   mms    tcp 192.0.2.31:1755 -> rs1-rs3, mh with mh-port: one client's 30
#          connections spread over the reals (the source port is hashed)
# ipvsadm -Sn then shows what an operator expects (-t/-u services, the real
# servers' ports, -m, ops, -b mh-port; ipvsadm -Ln --thresholds the
# thresholds); no nftables rule is made for any of them.
# Tunnel types (after the edits): tun-ipip, tun-gue (port 6080, csum) and
# tun-gre, tcp 192.0.2.40-42:8080 tunnelled to rs1-rs3, which decapsulate
# (tunl0, a fou port, gre0) and answer the client directly: 15 requests 5/5/5
# each; ipvsadm -Sn shows --tun-type/--tun-port/--tun-csum as ipvsadm 1.31
# writes them; rs1 set back to ipip by hand (ipvsadm -e) is edited back to
# gue in place at the agent's next resync.
# Then edits, each made in place (the agent's kernel changes are
# update-service / update-destination, never a delete; the services' Conns
# never go down; a connection held through mms keeps answering):
#   mms drops mh-port: the client's 30 new connections all go to one real;
#   dns drops ops: 30 datagrams from one socket all go to one real;
#   http's rs2 thresholds 1000/800 -> 5/2 (ipvsadm -Ln --thresholds).
# The reals serve HTTP on 8080 (IPv4 and IPv6) with busybox httpd, a page
# naming the server; lab-responder serves udp 554 and tcp 1755.
# lab-timeout: 300
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

began=$(uptime_s)
HTTP_VIP=192.0.2.30
MMS_VIP=192.0.2.31
HTTP6_VIP=2001:db8::30

# manifest MMS_FLAGS DNS_OPS RS2_UPPER RS2_LOWER: the four clusters and the group.
manifest() {
	cat <<YAML
kind: Cluster
name: http
directorGroup: edge-1
service: {address: $HTTP_VIP, protocol: tcp, port: 80}
scheduler: rr
forwarding: masq
reals:
  - {address: 198.51.100.1, port: 8080, weight: 1}
  - {address: 198.51.100.2, port: 8080, weight: 1, upperThreshold: $3, lowerThreshold: $4}
  - {address: 198.51.100.3, port: 8080, weight: 1}
---
kind: Cluster
name: dns
directorGroup: edge-1
service: {address: $HTTP_VIP, protocol: udp, port: 53}
scheduler: rr
ops: $2
forwarding: masq
reals:
  - {address: 198.51.100.1, port: 554, weight: 1}
  - {address: 198.51.100.2, port: 554, weight: 1}
  - {address: 198.51.100.3, port: 554, weight: 1}
---
kind: Cluster
name: http6
directorGroup: edge-1
service: {address: "$HTTP6_VIP", protocol: tcp, port: 80}
scheduler: rr
forwarding: masq
reals:
  - {address: "2001:db8:1::1", port: 8080, weight: 1}
  - {address: "2001:db8:1::2", port: 8080, weight: 1}
  - {address: "2001:db8:1::3", port: 8080, weight: 1}
---
kind: Cluster
name: mms
directorGroup: edge-1
service: {address: $MMS_VIP, protocol: tcp, port: 1755}
scheduler: mh
schedulerFlags: [$1]
forwarding: masq
reals:
  - {address: 198.51.100.1, weight: 1}
  - {address: 198.51.100.2, weight: 1}
  - {address: 198.51.100.3, weight: 1}
---
kind: DirectorGroup
name: edge-1
directors: [{name: dir-a, priority: 200}]
vipInterface: eth0
YAML
}

# The tunnel services: the reals' HTTP port (a tunnel keeps the port).
TUN_IPIP=192.0.2.40
TUN_GUE=192.0.2.41
TUN_GRE=192.0.2.42
TUN_VIPS="$TUN_IPIP $TUN_GUE $TUN_GRE"

# tunnels: the three tunnelled clusters (ipip by default, gue to port 6080
# with checksums, gre).
tunnels() {
	for t in "ipip $TUN_IPIP" "gue $TUN_GUE {type: gue, port: 6080, checksum: csum}" "gre $TUN_GRE {type: gre}"; do
		# shellcheck disable=SC2086 # "NAME VIP [TUNNEL]"
		set -- $t
		_name=$1 _vip=$2
		shift 2
		echo "---"
		cat <<YAML
kind: Cluster
name: tun-$_name
directorGroup: edge-1
service: {address: $_vip, protocol: tcp, port: 8080}
scheduler: rr
forwarding: tunnel
YAML
		[ $# -gt 0 ] && echo "tunnel: $*"
		cat <<YAML
reals:
  - {address: 198.51.100.1, weight: 1}
  - {address: 198.51.100.2, weight: 1}
  - {address: 198.51.100.3, weight: 1}
YAML
	done
}

# v6_site: IPv6 beside the lab's IPv4: the client side 2001:db8::/64 (the
# VIP is in it, as 192.0.2.30 is in the client's /24), the reals' side
# 2001:db8:1::/64 with dir-a as their gateway.
v6_site() {
	on dir-a sysctl -qw net.ipv6.conf.all.forwarding=1
	on client ip -6 addr add 2001:db8::100/64 dev eth0 nodad
	on dir-a ip -6 addr add 2001:db8::2/64 dev eth0 nodad
	on dir-a ip -6 addr add 2001:db8:1::fe/64 dev eth1 nodad
	for _i in 1 2 3; do
		on "rs$_i" ip -6 addr add "2001:db8:1::$_i/64" dev eth0 nodad
		on "rs$_i" ip -6 route add default via 2001:db8:1::fe
	done
}

# start_httpd: busybox httpd on port 8080 (IPv4 and IPv6) in rs1-rs3, its
# page the server's name.
start_httpd() {
	for _rs in $REALS; do
		mkdir -p "/tmp/www/$_rs"
		echo "$_rs" >"/tmp/www/$_rs/index.html"
		on "$_rs" busybox httpd -f -p 8080 -h "/tmp/www/$_rs" >/dev/null 2>&1 &
	done
}

# http_get NS HOST PORT: one HTTP request from namespace NS, the page's last
# line (the server's name), "-" if none. busybox nc, not wget: the static
# busybox's wget crashes.
http_get() {
	_page=$(printf 'GET / HTTP/1.0\r\n\r\n' | on "$1" timeout 3 nc -w 2 "$2" "$3" 2>/dev/null | tail -n 1)
	echo "${_page:--}"
}

# http_count HOST PORT N: N requests from the client, "NAME COUNT" per real
# server, sorted ("-" for a request that got no page).
http_count() {
	_i=0
	while [ "$_i" -lt "$3" ]; do
		http_get client "$1" "$2"
		_i=$((_i + 1))
	done | sort | uniq -c | awk '{ print $2, $1 }'
}

# httpd_up: rs1's httpd answers on 8080.
httpd_up() { [ "$(http_get rs1 127.0.0.1 8080)" = rs1 ]; }

# indent TEXT: TEXT under the current step.
indent() { printf '%s\n' "$1" | sed 's/^/    /'; }

# dest_inpkts SVC: "ADDRESS:PORT INPKTS" of each real server of service SVC
# ("-u 192.0.2.30:53"), from IPVS's own per-destination counters.
dest_inpkts() {
	# shellcheck disable=SC2086 # "-u ADDRESS:PORT": two arguments
	on dir-a ipvsadm -Ln --stats --exact $1 | awk '$1 == "->" && $2 ~ /:[0-9]+$/ { print $2, $4 }' | sort
}

# servers_in COUNTS: how many real servers answered in a "NAME COUNT" list.
servers_in() { printf '%s\n' "$1" | awk '$1 ~ /^rs/ { n++ } END { print n + 0 }'; }
# total_in COUNTS: how many answers in all.
total_in() { printf '%s\n' "$1" | awk '$1 ~ /^rs/ { n += $2 } END { print n + 0 }'; }

# conns SVC: the Conns of service SVC ("-t 192.0.2.31:1755") from ipvsadm --stats.
conns() {
	_p=TCP
	case $1 in -u*) _p=UDP ;; esac
	on dir-a ipvsadm -Ln --stats --exact | awk -v p="$_p" -v a="${1#-? }" '$1 == p && $2 == a { print $3 }'
}

step "Topology (IPv4 and IPv6), responders and HTTP on 8080, controller, agent"
topology
v6_site
start_reals
start_httpd
wait_until 10 httpd_up || die "httpd did not start in rs1"
start_controller
start_agent

step "Apply four plain services: http (port mapping, thresholds), dns (udp, ops), http6 (IPv6), mms (mh, mh-port)"
manifest mh-port true 1000 800 >/tmp/services.yaml
show cat /tmp/services.yaml
out=$(lv apply -f /tmp/services.yaml 2>&1)
printf '%s\n' "$out" | sed 's/^/    /'
for c in http dns http6 mms; do
	expect_match "apply creates cluster/$c" "^cluster/$c created" "$(printf '%s\n' "$out" | grep "^cluster/$c ")"
done
wait_applied 30 dir-a || fail_check "dir-a applied the desired revision within 30 s"
wait_until 10 on client lab-client wait "$MMS_VIP:1755" --timeout 1s || note "($MMS_VIP:1755 did not answer within 10 s)"
show on dir-a ipvsadm -Sn
save=$(on dir-a ipvsadm -Sn)
expect_match "http: -A -t $HTTP_VIP:80 -s rr" "^-A -t $HTTP_VIP:80 -s rr$" "$(printf '%s\n' "$save" | grep -- "-A -t $HTTP_VIP:80 ")"
expect_eq "http: its reals on port 8080, masq (-m)" "-a -t $HTTP_VIP:80 -r 198.51.100.1:8080 -m -w 1
-a -t $HTTP_VIP:80 -r 198.51.100.2:8080 -m -w 1
-a -t $HTTP_VIP:80 -r 198.51.100.3:8080 -m -w 1" "$(printf '%s\n' "$save" | grep -- "-a -t $HTTP_VIP:80 " | sort)"
expect_match "dns: -A -u $HTTP_VIP:53 -s rr with one-packet scheduling" "^-A -u $HTTP_VIP:53 -s rr.* (-o|ops)" "$(printf '%s\n' "$save" | grep -- "-A -u $HTTP_VIP:53 ")"
expect_eq "dns: reals on port 554" 3 "$(printf '%s\n' "$save" | grep -c -- "-a -u $HTTP_VIP:53 -r 198.51.100.[123]:554 -m -w 1")"
expect_match "http6: -A -t [$HTTP6_VIP]:80 -s rr" "^-A -t \[$HTTP6_VIP\]:80 -s rr$" "$(printf '%s\n' "$save" | grep -F -- "-A -t [$HTTP6_VIP]:80 ")"
expect_eq "http6: IPv6 reals on port 8080" 3 "$(printf '%s\n' "$save" | grep -c -F -e "-a -t [$HTTP6_VIP]:80 -r [2001:db8:1::1]:8080 -m -w 1" -e "-r [2001:db8:1::2]:8080 -m -w 1" -e "-r [2001:db8:1::3]:8080 -m -w 1")"
expect_match "mms: -A -t $MMS_VIP:1755 -s mh -b mh-port" "^-A -t $MMS_VIP:1755 -s mh .*-b mh-port" "$(printf '%s\n' "$save" | grep -- "-A -t $MMS_VIP:1755 ")"
expect_eq "no firewall-mark service" "" "$(printf '%s\n' "$save" | grep -- '-f ')"
show on dir-a ipvsadm -Ln --thresholds -t "$HTTP_VIP:80"
expect_eq "http: rs2's thresholds upper 1000 lower 800 (ipvsadm -Ln --thresholds)" "1000 800" \
	"$(on dir-a ipvsadm -Ln --thresholds -t "$HTTP_VIP:80" | awk '$2 == "198.51.100.2:8080" { print $3, $4 }')"
expect_eq "no nftables mark (plain services need none)" "" "$(nft_marks dir-a)"
show on dir-a ip -br addr show dev eth0
expect_eq "the VIPs are held on dir-a's eth0, $HTTP_VIP once for two services" "$HTTP_VIP/32 $MMS_VIP/32 $HTTP6_VIP/128" \
	"$(on dir-a ip -o addr show dev eth0 | awk '{ print $4 }' | grep -E "^($HTTP_VIP|$HTTP6_VIP|$MMS_VIP)/" | sort | tr '\n' ' ' | sed 's/ $//')"

step "Traffic: HTTP to $HTTP_VIP:80 (reals' 8080), 15 requests under rr"
got=$(http_count "$HTTP_VIP" 80 15)
indent "$got"
expect_eq "http: 5 requests to each real server" "rs1 5
rs2 5
rs3 5" "$got"

step "Traffic: 30 UDP datagrams to $HTTP_VIP:53 from one client socket, ops under rr"
# Under masq the real servers' answers to a one-packet service are not
# translated back (ops keeps no connection entry, so IPVS has nothing to
# match them with: ops is for route/tunnel in practice), so what each real
# server received is read from IPVS's per-destination counters.
in0=$(dest_inpkts "-u $HTTP_VIP:53")
on client lab-client udp "$HTTP_VIP:53" -n 30 --same-source --timeout 100ms >/dev/null 2>&1
# The kernel folds its per-CPU counters into what ipvsadm reads every 2 s.
dns_delta() { printf '%s\n%s\n' "$in0" "$(dest_inpkts "-u $HTTP_VIP:53")" | awk '{ if ($1 in a) print $1, $2 - a[$1]; else a[$1] = $2 }' | sort; }
dns_all_counted() { [ "$(dns_delta | awk '{ n += $2 } END { print n + 0 }')" -ge 30 ]; }
wait_until 6 dns_all_counted
got=$(dns_delta)
indent "$got"
expect_eq "dns with ops: each datagram of one socket scheduled on its own, 10 to each real server" "198.51.100.1:554 10
198.51.100.2:554 10
198.51.100.3:554 10" "$got"

step "Traffic: HTTP to [$HTTP6_VIP]:80 over IPv6, 15 requests under rr"
got=$(http_count "$HTTP6_VIP" 80 15)
indent "$got"
expect_eq "http6: 5 requests to each real server" "rs1 5
rs2 5
rs3 5" "$got"

step "Traffic: 30 TCP connections from the client to $MMS_VIP:1755 under mh with mh-port"
got=$(on client lab-client tcp "$MMS_VIP:1755" -n 30 --count-by-server 2>&1)
indent "$got"
expect_eq "mms: all 30 answered" 30 "$(total_in "$got")"
expect_match "mms with mh-port: the source port is hashed, so one client reaches more than one real" '^[23]$' "$(servers_in "$got")"

step "The client holds one connection through mms while the services are edited"
rm -f /tmp/hold.stop
on client lab-client hold "$MMS_VIP:1755" -n 1 --stop-file /tmp/hold.stop >/tmp/hold.out 2>&1 &
wait_line /tmp/hold.out '^HOLD READY' 20 || die "the held connection did not open"
before_mms=$(conns "-t $MMS_VIP:1755")
before_dns=$(conns "-u $HTTP_VIP:53")
before_http=$(conns "-t $HTTP_VIP:80")
note "Conns before the edits: mms $before_mms, dns $before_dns, http $before_http"
opl0=$(grep -c ' op=' /tmp/agent.log)

step "Edit: mms drops mh-port, dns drops ops, http's rs2 thresholds 1000/800 -> 5/2"
before=$(applied_rev)
manifest mh-fallback false 5 2 >/tmp/services.yaml
out=$(lv apply -f /tmp/services.yaml 2>&1)
printf '%s\n' "$out" | sed 's/^/    /'

for c in http dns mms; do
	expect_match "apply configures cluster/$c" "^cluster/$c configured" "$(printf '%s\n' "$out" | grep "^cluster/$c ")"
done
expect_match "http6 is unchanged" "^cluster/http6 unchanged" "$(printf '%s\n' "$out" | grep '^cluster/http6 ')"
wait_applied 30 dir-a "$before" || fail_check "dir-a applied a revision above $before within 30 s"
sleep 1
opl=$(grep ' op=' /tmp/agent.log | tail -n +$((opl0 + 1)))
note "agent: $(oneline "$opl")"
expect_eq "the agent's kernel changes: two services and one destination edited in place" \
	"op=update-destination op=update-service op=update-service" \
	"$(printf '%s\n' "$opl" | sed -nE 's/.* (op=[^ ]+).*/\1/p' | sort | tr '\n' ' ' | sed 's/ *$//')"
show on dir-a ipvsadm -Sn
save=$(on dir-a ipvsadm -Sn)
expect_match "mms: -b mh-fallback now, no mh-port" "^-A -t $MMS_VIP:1755 -s mh -b mh-fallback$" "$(printf '%s\n' "$save" | grep -- "-A -t $MMS_VIP:1755 ")"
expect_match "dns: no ops now" "^-A -u $HTTP_VIP:53 -s rr$" "$(printf '%s\n' "$save" | grep -- "-A -u $HTTP_VIP:53 ")"
expect_eq "http: rs2's thresholds now upper 5 lower 2" "5 2" \
	"$(on dir-a ipvsadm -Ln --thresholds -t "$HTTP_VIP:80" | awk '$2 == "198.51.100.2:8080" { print $3, $4 }')"

got=$(on client lab-client tcp "$MMS_VIP:1755" -n 30 --count-by-server 2>&1)
indent "$got"
expect_eq "mms without mh-port: all 30 from one client to one real" "1 30" "$(servers_in "$got") $(total_in "$got")"
got=$(on client lab-client udp "$HTTP_VIP:53" -n 30 --same-source --count-by-server 2>&1)
indent "$got"
expect_eq "dns without ops: 30 datagrams from one socket, one connection entry, one real" "1 30" "$(servers_in "$got") $(total_in "$got")"

step "The services lived through the edits: the held connection, and Conns never went down"
touch /tmp/hold.stop
wait_line /tmp/hold.out '^HOLD RESULT' 20
show cat /tmp/hold.out
expect_match "the connection held through mms answered every probe" '^HOLD RESULT OK conns 1 probes [1-9][0-9]* failed 0 ' \
	"$(grep '^HOLD RESULT' /tmp/hold.out)"
show on dir-a ipvsadm -Ln --stats --exact
for s in "-t $MMS_VIP:1755 $before_mms" "-u $HTTP_VIP:53 $before_dns" "-t $HTTP_VIP:80 $before_http"; do
	# shellcheck disable=SC2086 # "FLAG ADDR BEFORE"
	set -- $s
	now=$(conns "$1 $2")
	expect_eq "$2: Conns $3 before, $now after (not re-created)" ok "$([ "${now:-0}" -ge "$3" ] && [ "$3" -gt 0 ] && echo ok || echo "went down")"
done

step "Tunnel types: ipip, gue and gre services, tunnelled to the reals, which decapsulate"
# Each real server takes the tunnels' VIPs on lo and decapsulates: ipip on
# tunl0 (the ipip module's catch-all device), gue through a fou port
# (ip fou add port 6080 gue, then tunl0), gre on gre0 (ip_gre's). rp_filter
# off: the inner packet comes from the client but arrives on the tunnel
# device. The reals answer the client directly, from the VIP, through dir-a
# (their gateway), which has the VIP itself: accept_local lets it forward
# them.
on dir-a sysctl -qw net.ipv4.conf.all.accept_local=1
on dir-a sysctl -qw net.ipv4.conf.eth1.accept_local=1
for m in fou ip_gre; do modprobe "$m" || note "(modprobe $m failed)"; done
for _rs in $REALS; do
	for _v in $TUN_VIPS; do on "$_rs" ip addr add "$_v/32" dev lo; done
	on "$_rs" ip fou add port 6080 gue
	on "$_rs" ip link set tunl0 up
	on "$_rs" ip link set gre0 up
	for _d in all default eth0 tunl0 gre0; do on "$_rs" sysctl -qw "net.ipv4.conf.$_d.rp_filter=0"; done
done
tunnels >/tmp/tunnels.yaml
show cat /tmp/tunnels.yaml
before=$(applied_rev)
out=$(lv apply -f /tmp/tunnels.yaml 2>&1)
printf '%s\n' "$out" | sed 's/^/    /'
for c in tun-ipip tun-gue tun-gre; do
	expect_match "apply creates cluster/$c" "^cluster/$c created" "$(printf '%s\n' "$out" | grep "^cluster/$c ")"
done
wait_applied 30 dir-a "$before" || fail_check "dir-a applied the tunnels within 30 s"
show on dir-a ipvsadm -Sn
save=$(on dir-a ipvsadm -Sn)
expect_eq "tun-ipip: -i, and ipvsadm 1.31 names the type" "-a -t $TUN_IPIP:8080 -r 198.51.100.1:8080 -i -w 1 --tun-type ipip
-a -t $TUN_IPIP:8080 -r 198.51.100.2:8080 -i -w 1 --tun-type ipip
-a -t $TUN_IPIP:8080 -r 198.51.100.3:8080 -i -w 1 --tun-type ipip" "$(printf '%s\n' "$save" | grep -- "-a -t $TUN_IPIP:8080 " | sort)"
expect_eq "tun-gue: --tun-type gue --tun-port 6080 --tun-csum" "-a -t $TUN_GUE:8080 -r 198.51.100.1:8080 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t $TUN_GUE:8080 -r 198.51.100.2:8080 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum
-a -t $TUN_GUE:8080 -r 198.51.100.3:8080 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum" "$(printf '%s\n' "$save" | grep -- "-a -t $TUN_GUE:8080 " | sort)"
expect_eq "tun-gre: --tun-type gre (and no checksum, --tun-nocsum)" "-a -t $TUN_GRE:8080 -r 198.51.100.1:8080 -i -w 1 --tun-type gre --tun-nocsum
-a -t $TUN_GRE:8080 -r 198.51.100.2:8080 -i -w 1 --tun-type gre --tun-nocsum
-a -t $TUN_GRE:8080 -r 198.51.100.3:8080 -i -w 1 --tun-type gre --tun-nocsum" "$(printf '%s\n' "$save" | grep -- "-a -t $TUN_GRE:8080 " | sort)"
show on dir-a ipvsadm -Ln --tun-info
for v in "$TUN_IPIP ipip" "$TUN_GUE gue" "$TUN_GRE gre"; do
	# shellcheck disable=SC2086 # "VIP NAME"
	set -- $v
	got=$(http_count "$1" 8080 15)
	indent "$got"
	expect_eq "$2: 15 requests through the tunnel, 5 to each real server" "rs1 5
rs2 5
rs3 5" "$got"
done

step "Tunnel drift: rs1 of tun-gue set back to ipip by hand (ipvsadm -e); the agent's resync edits it back in place"
conns_gue=$(conns "-t $TUN_GUE:8080")
opl0=$(grep -c ' op=' /tmp/agent.log)
show on dir-a ipvsadm -e -t "$TUN_GUE:8080" -r 198.51.100.1:8080 -i -w 1 --tun-type ipip
gue_back() { on dir-a ipvsadm -Sn | grep -q -- "-a -t $TUN_GUE:8080 -r 198.51.100.1:8080 -i -w 1 --tun-type gue --tun-port 6080 --tun-csum"; }
t0=$(uptime_s)
if wait_until 45 gue_back; then
	pass_check "rs1 of tun-gue is gue again after $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s (resync every 30 s)"
else
	fail_check "rs1 of tun-gue is gue again within 45 s"
fi
opl=$(grep ' op=' /tmp/agent.log | tail -n +$((opl0 + 1)))
note "agent: $(oneline "$opl")"
expect_eq "the repair is one destination edited in place" "op=update-destination" \
	"$(printf '%s\n' "$opl" | sed -nE 's/.* (op=[^ ]+).*/\1/p' | sort -u | tr '\n' ' ' | sed 's/ *$//')"
expect_eq "tun-gue: Conns not reset ($conns_gue before)" ok "$([ "$(conns "-t $TUN_GUE:8080")" -ge "$conns_gue" ] && echo ok || echo "went down")"
got=$(http_count "$TUN_GUE" 8080 15)
indent "$got"
expect_eq "gue after the repair: 5 to each real server" "rs1 5
rs2 5
rs3 5" "$got"

note "scenario body took $(awk -v a="$began" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }')s of guest time"
finish

# lib.sh: helpers for the lab's scenarios. Sourced (". ./lib.sh") by busybox
# sh inside the guest, so POSIX sh only: no arrays, no [[ ]], no "local" on
# anything that matters.
#
# The site, all inside one VM (bridges live in the guest's root namespace;
# each box is a network namespace joined to them by a veth pair):
#
#   br-client 192.0.2.0/24    client eth0 192.0.2.100   dir-a eth0 192.0.2.2
#                             VIP 192.0.2.10 (added by whoever programs dir-a)
#   br-real   198.51.100.0/24 dir-a eth1 198.51.100.254 (the reals' gateway)
#                             rs1..rs3 eth0 198.51.100.1..3, rs4 on demand
#   br-mgmt   203.0.113.0/24  root namespace 203.0.113.1 (controller :7443)
#                             dir-a eth2 203.0.113.11 (agent)
#
# A scenario prints what it checks; a failed check prints
#   FAIL: WHAT: expected X, saw Y
# and the scenario's exit status (from finish) makes the verdict.

# shellcheck disable=SC2034 # names for the scenarios that source this file
VIP=192.0.2.10
CLIENT_IP=192.0.2.100
GATEWAY=198.51.100.254
MGMT_ROOT_IP=203.0.113.1
CONTROLLER=203.0.113.1:7443
# A second controller's address on br-mgmt (ha-controllers: several controllers
# on an etcd cluster); the lab's controller certificate names both.
CONTROLLER_B=203.0.113.2:7443
DIR_A_CLIENT_IP=192.0.2.2
DIR_A_MGMT_IP=203.0.113.11
REALS="rs1 rs2 rs3"

LAB_FAILS=0
LAB_CHECKS=0

# busybox sh runs its own applets before $PATH, and busybox's ip has no
# netns: a function is looked up first, so every "ip" here is iproute2's.
ip() { /usr/sbin/ip "$@"; }

# on NS CMD...: run CMD in network namespace NS ("in" is a shell keyword).
on() {
	_ns=$1
	shift
	/usr/sbin/ip netns exec "$_ns" "$@"
}

uptime_s() { cut -d' ' -f1 /proc/uptime; }

# step TEXT: a banner for each stage; the demo shows these to a newcomer.
step() {
	echo
	echo "==== [$(uptime_s)s] $* ===="
}

# note TEXT: an indented remark under the current step.
note() { echo "  $*"; }

# show CMD...: print a command, run it, print its output indented; returns
# its status. "lv ..." is printed as "lvsctl ...".
show() {
	_shown=$*
	[ "$1" = lv ] && _shown="lvsctl ${_shown#lv }" # lv is lvsctl with the lab's controller
	echo "  \$ $_shown"
	_out=$("$@" 2>&1)
	_rc=$?
	[ -n "$_out" ] && printf '%s\n' "$_out" | sed 's/^/    /'
	return $_rc
}

# oneline VALUE: multi-line values on one line, joined by "; ".
oneline() { printf '%s\n' "$1" | awk 'NR > 1 { printf "; " } { printf "%s", $0 }'; }

pass_check() {
	LAB_CHECKS=$((LAB_CHECKS + 1))
	echo "ok: $1"
}

fail_check() {
	LAB_CHECKS=$((LAB_CHECKS + 1))
	LAB_FAILS=$((LAB_FAILS + 1))
	echo "FAIL: $*"
}

# expect_eq WHAT EXPECTED GOT
expect_eq() {
	if [ "$2" = "$3" ]; then
		pass_check "$1 ($(oneline "$3"))"
	else
		fail_check "$1: expected $(oneline "$2"), saw $(oneline "$3")"
		return 1
	fi
}

# expect_match WHAT REGEX GOT: GOT must match the extended REGEX (grep -E).
expect_match() {
	if printf '%s\n' "$3" | grep -Eq -- "$2"; then
		pass_check "$1 ($(oneline "$3"))"
	else
		fail_check "$1: expected to match /$2/, saw $(oneline "$3")"
		return 1
	fi
}

# expect_ok WHAT CMD...: CMD must exit 0; its output is shown when it does not.
expect_ok() {
	_what=$1
	shift
	_out=$("$@" 2>&1)
	_rc=$?
	if [ $_rc = 0 ]; then
		pass_check "$_what"
	else
		fail_check "$_what: expected success of '$*', saw exit $_rc: $(oneline "$_out")"
		return 1
	fi
}

# expect_fail WHAT CMD...: CMD must exit non-zero.
expect_fail() {
	_what=$1
	shift
	if _out=$("$@" 2>&1); then
		fail_check "$_what: expected '$*' to fail, it succeeded: $(oneline "$_out")"
		return 1
	fi
	pass_check "$_what"
}

# die TEXT: a setup step failed; the rest of the scenario would be noise.
die() {
	echo "FAIL: $*"
	exit 1
}

# finish: the scenario's last line; its exit status is the verdict.
finish() {
	echo
	if [ "$LAB_FAILS" -eq 0 ]; then
		echo "scenario passed: $LAB_CHECKS checks"
		exit 0
	fi
	echo "scenario FAILED: $LAB_FAILS of $LAB_CHECKS checks failed"
	exit 1
}

# wait_until SECS CMD...: retry CMD every 0.2 s until it succeeds; status 1
# once SECS have passed (by the clock: a CMD that takes seconds itself, as in
# a starved guest, does not stretch the limit).
wait_until() {
	_wu_end=$(awk -v l="$1" '{ printf "%d", $1 + l + 0.999 }' /proc/uptime)
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ "$(cut -d. -f1 /proc/uptime)" -ge "$_wu_end" ] && return 1
		sleep 0.2
	done
}

# wait_tcp HOST:PORT [SECS] [NS]: wait until HOST:PORT accepts TCP
# connections, from namespace NS (default: the root namespace).
wait_tcp() {
	if [ -n "${3:-}" ]; then
		on "$3" lab-client wait "$1" --timeout "${2:-10}s"
	else
		lab-client wait "$1" --timeout "${2:-10}s"
	fi
}

# wait_line FILE REGEX [SECS]: wait until a line of FILE matches REGEX (for
# programs that announce readiness in their log, e.g. "HOLD READY").
wait_line() {
	wait_until "${3:-10}" grep -Eq -- "$2" "$1" || {
		echo "  (waited ${3:-10}s for /$2/ in $1; it holds:)"
		tail -n 20 "$1" 2>/dev/null | sed 's/^/    /'
		return 1
	}
}

# bridge_up NAME [ADDR/PREFIX]: a bridge in the root namespace, with an
# address there if given.
bridge_up() {
	ip link add "$1" type bridge || return 1
	[ -n "${2:-}" ] && ip addr add "$2" dev "$1"
	ip link set "$1" up
}

# netns_up NS: a namespace with its loopback up.
netns_up() {
	ip netns add "$1" || return 1
	on "$1" ip link set lo up
}

# plug NS IFACE BRIDGE ADDR/PREFIX: a veth pair, IFACE inside NS with ADDR,
# the other end (named NS-IFACE, so keep NS to 10 characters) on BRIDGE.
plug() {
	ip link add "$1-$2" type veth peer name "$2" netns "$1" || return 1
	ip link set "$1-$2" master "$3" up
	on "$1" ip addr add "$4" dev "$2"
	on "$1" ip link set "$2" up
}

# add_director NAME CLIENT_ADDR REAL_ADDR MGMT_ADDR (each ADDR/PREFIX, REAL_ADDR
# may be "-" for none): eth0 on br-client, eth1 on br-real, eth2 on br-mgmt,
# forwarding on. A second director for failover would be e.g.
#   add_director dir-b 192.0.2.3/24 198.51.100.253/24 203.0.113.12/24
add_director() {
	netns_up "$1" || return 1
	plug "$1" eth0 br-client "$2"
	if [ "$3" = - ]; then
		ip link add "$1-eth1" type veth peer name eth1 netns "$1"
		ip link set "$1-eth1" master br-real up
		on "$1" ip link set eth1 up
	else
		plug "$1" eth1 br-real "$3"
	fi
	plug "$1" eth2 br-mgmt "$4"
	on "$1" sysctl -qw net.ipv4.ip_forward=1
}

# add_real NAME ADDR: a real server on br-real, routing through $GATEWAY.
add_real() {
	netns_up "$1" || return 1
	plug "$1" eth0 br-real "$2/24"
	on "$1" ip route add default via "$GATEWAY"
}

# add_client NAME ADDR: a client on br-client.
add_client() {
	netns_up "$1" || return 1
	plug "$1" eth0 br-client "$2/24"
}

# topology: the whole site above, without rs4 and without any VIP.
topology() {
	bridge_up br-client || die "cannot create bridge br-client"
	bridge_up br-real
	bridge_up br-mgmt "$MGMT_ROOT_IP/24"
	add_client client "$CLIENT_IP"
	add_director dir-a "$DIR_A_CLIENT_IP/24" "$GATEWAY/24" "$DIR_A_MGMT_IP/24"
	add_real rs1 198.51.100.1
	add_real rs2 198.51.100.2
	add_real rs3 198.51.100.3
	on client ip -br addr show dev eth0 >/dev/null || die "topology: client has no eth0"
	note "client 192.0.2.100 | dir-a 192.0.2.2, 198.51.100.254, 203.0.113.11 | rs1-3 198.51.100.1-3 | root 203.0.113.1"
}

# add_rs4: the optional fourth real server (198.51.100.4); starts its
# responder too.
add_rs4() {
	add_real rs4 198.51.100.4 || return 1
	start_real rs4
}

# start_real NAME: lab-responder in namespace NAME, logging to /tmp/NAME.log,
# its RTSP mode in /tmp/NAME.mode (rtsp_mode); returns once it has bound all
# its ports.
start_real() {
	on "$1" lab-responder --name "$1" --mode-file "/tmp/$1.mode" >"/tmp/$1.log" 2>&1 &
	wait_line "/tmp/$1.log" "ready" 20 || die "responder $1 did not start"
}

# start_reals: a responder in each of rs1..rs3 (and rs4 if it exists), as
# start_real starts one.
start_reals() {
	for _rs in $REALS; do
		on "$_rs" lab-responder --name "$_rs" --mode-file "/tmp/$_rs.mode" >"/tmp/$_rs.log" 2>&1 &
	done
	[ -e /run/netns/rs4 ] && on rs4 lab-responder --name rs4 --mode-file /tmp/rs4.mode >/tmp/rs4.log 2>&1 &
	for _rs in $REALS $([ -e /run/netns/rs4 ] && echo rs4); do
		wait_line "/tmp/$_rs.log" "ready" 20 || die "responder $_rs did not start"
	done
	note "responders ready on $REALS$([ -e /run/netns/rs4 ] && echo ' rs4'): tcp 554,1755 udp 554,1024-5000"
}

# ---- lvsctl in the lab: controller, agent, CLI, metrics -------------------
# The controller runs in the guest's root namespace on br-mgmt, the agents in
# their director namespaces; all of them speak TLS 1.3 with certificates of the
# lab's own CA (lvs-controller pki init), as an installation does by default.
AGENT_METRICS=$DIR_A_MGMT_IP:9444
PKI=/var/lib/lvsctl/pki
export LVSCTL_CONTROLLER=$CONTROLLER LVSCTL_CA=$PKI/ca.crt LVSCTL_CERT=$PKI/user-lab.crt LVSCTL_KEY=$PKI/user-lab.key

# lab_pki: the lab's CA, the controller's certificate (for both controller
# addresses on br-mgmt: one certificate for all controllers, as the README's
# production layout allows) and the operator "lab" (admin), made once per boot.
lab_pki() {
	[ -e "$PKI/ca.crt" ] && return 0
	lvs-controller pki init "$PKI" --san "${CONTROLLER%:*}" --san "${CONTROLLER_B%:*}" >/tmp/pki.log 2>&1 &&
		lvs-controller pki issue "$PKI" --user lab --role admin >>/tmp/pki.log 2>&1 || {
		sed 's/^/    /' /tmp/pki.log
		die "lvs-controller pki init $PKI"
	}
}

# director_cert NAME: the certificate of director NAME, issued once.
director_cert() {
	lab_pki
	[ -e "$PKI/director-$1.crt" ] && return 0
	lvs-controller pki issue "$PKI" --director "$1" >>/tmp/pki.log 2>&1 || {
		sed 's/^/    /' /tmp/pki.log
		die "lvs-controller pki issue $PKI --director $1"
	}
}

# agent_tls NAME: lvs-agent's TLS flags for director NAME.
agent_tls() { echo "--ca $PKI/ca.crt --cert $PKI/director-$1.crt --key $PKI/director-$1.key"; }

# start_controller: lvs-controller in the root namespace, logging to
# /tmp/controller.log; returns once it listens on $CONTROLLER.
start_controller() {
	lab_pki
	lvs-controller --data-dir /var/lib/lvsctl/controller --listen "$CONTROLLER" --tls-dir "$PKI" \
		--etcd-log-level fatal >/tmp/controller.log 2>&1 &
	CONTROLLER_PID=$!
	wait_tcp "$CONTROLLER" 30 || {
		tail -n 20 /tmp/controller.log | sed 's/^/    /'
		die "controller did not listen on $CONTROLLER"
	}
	note "controller listening on $CONTROLLER (TLS, pid $CONTROLLER_PID, log /tmp/controller.log)"
}

# start_agent [EXTRA FLAGS...]: lvs-agent for director dir-a inside dir-a,
# logging to /tmp/agent.log, metrics on $AGENT_METRICS; returns once the
# metrics endpoint answers.
# shellcheck disable=SC2120 # the arguments are optional
start_agent() {
	# iproute2 called directly, not through on(): a backgrounded function runs in a
	# subshell, and $! would be that shell's pid; ip netns exec execs the agent in place.
	director_cert dir-a
	# shellcheck disable=SC2046 # agent_tls is flags, split on purpose
	/usr/sbin/ip netns exec dir-a lvs-agent --director dir-a --controller "$CONTROLLER" --state-dir /var/lib/lvsctl/agent \
		$(agent_tls dir-a) --metrics-listen "$AGENT_METRICS" --stats-period 1s "$@" >/tmp/agent.log 2>&1 &
	AGENT_PID=$!
	wait_tcp "$AGENT_METRICS" 30 || {
		tail -n 20 /tmp/agent.log | sed 's/^/    /'
		die "agent did not serve metrics on $AGENT_METRICS"
	}
	note "agent for dir-a running (pid $AGENT_PID, log /tmp/agent.log, metrics http://$AGENT_METRICS/metrics)"
}

# lv ARGS...: lvsctl against the lab's controller (TLS, as the operator "lab",
# admin: LVSCTL_CA/CERT/KEY), with its exit status.
lv() {
	lvsctl --controller "$CONTROLLER" "$@"
}

# metric NAME [SUBSTRING]: the value of the first sample of metric NAME on
# the agent's /metrics whose labels contain SUBSTRING (e.g. 'real="198.51.100.1'),
# empty if none.
metric() { metric_at "$AGENT_METRICS" "$@"; }

# metric_at HOST:PORT NAME [SUBSTRING]: the same from the /metrics at HOST:PORT
# (with two directors: "$(mgmt_ip dir-b):9444").
metric_at() {
	timeout 10 wget -qO- "http://$1/metrics" 2>/dev/null |
		awk -v n="$2" -v s="${3:-}" '
			/^#/ { next }
			{ name = $1; sub(/\{.*/, "", name) }
			name == n && (s == "" || index($1, s)) { print $NF; exit }'
}

# status_field DIRECTOR FIELD: FIELD (desiredRevision, appliedRevision,
# connected, role, ...) of DIRECTOR in `lvsctl status -o json`, as its raw
# JSON text (numbers and booleans bare, strings quoted). No jq in the guest:
# lab-ha field finds the object whose "name" is DIRECTOR, the shallowest
# first, so the peers a director lists (objects named after the other
# directors) do not stand in for them.
status_field() { lv status -o json 2>/dev/null | lab-ha field "$1" "$2" 2>/dev/null; }

# status_snap, then sfield DIRECTOR FIELD: the same from one `lvsctl status`
# taken by status_snap (/tmp/status.json), for checks that read many fields.
status_snap() { lv status -o json >/tmp/status.json 2>/dev/null; }
sfield() { lab-ha field "$1" "$2" </tmp/status.json 2>/dev/null; }

# applied_rev [DIRECTOR]: DIRECTOR's (default dir-a) appliedRevision, as
# `lvsctl status` shows it (empty if it is not listed).
# shellcheck disable=SC2120 # the argument is optional
applied_rev() { status_field "${1:-dir-a}" appliedRevision; }

# applied_ok [DIRECTOR] [AFTER]: status 0 when DIRECTOR's (default dir-a)
# appliedRevision equals its desiredRevision and is above 0 and above AFTER.
applied_ok() {
	_d=$(status_field "${1:-dir-a}" desiredRevision)
	_a=$(status_field "${1:-dir-a}" appliedRevision)
	[ -n "$_d" ] && [ "$_d" -gt "${2:-0}" ] 2>/dev/null && [ "$_d" = "$_a" ]
}

# wait_applied [SECS] [DIRECTOR] [AFTER]: wait (default 30 s) until
# `lvsctl status` shows DIRECTOR (default dir-a) has applied its desired
# revision, which must be above 0, and above AFTER if given. After a change,
# pass the revision applied before it (AFTER=$(applied_rev)): the director's
# desired revision may not have moved yet when apply returns.
wait_applied() {
	wait_until "${1:-30}" applied_ok "${2:-dir-a}" "${3:-0}" || {
		echo "  (waited ${1:-30}s for ${2:-dir-a} to apply a revision above ${3:-0}; lvsctl status says:)"
		lv status 2>&1 | sed 's/^/    /'
		return 1
	}
}

# ---- the agent's nftables marks --------------------------------------------
# The agent keeps its marks as elements "VIP . PROTOCOL . PORTS : MARK" of the
# maps of table inet lvsctl (single ports and port ranges, IPv4 and IPv6, in
# maps of their own), looked up by fixed rules. nft prints the protocol as a
# number, the mark in hex, and wraps its lines between elements. Whether a
# port inside a range of the same mark (udp 1755 in udp 1024-5000) has an
# element of its own is the agent's choice, so what a cluster asks for is
# checked as covered, not as listed.

# nft_marks NS: the elements of table inet lvsctl in namespace NS, one
# "VIP PROTOCOL FIRST LAST MARK" per line (protocol by name, mark in decimal,
# FIRST = LAST for one port).
nft_marks() {
	on "$1" nft list table inet lvsctl 2>/dev/null | awk '
		function num(s,  v, i) {
			if (s !~ /^0x/) return s + 0
			v = 0
			for (i = 3; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(tolower(s), i, 1)) - 1
			return v
		}
		function proto(p) { return p == "6" ? "tcp" : p == "17" ? "udp" : p == "132" ? "sctp" : p }
		{
			line = $0
			while (match(line, /[0-9a-f.:]+ \. [a-z0-9]+ \. [0-9]+(-[0-9]+)? : (0x[0-9a-f]+|[0-9]+)/)) {
				split(substr(line, RSTART, RLENGTH), f, " ")
				n = split(f[5], p, "-")
				print f[1], proto(f[3]), p[1], (n > 1 ? p[2] : p[1]), num(f[7])
				line = substr(line, RSTART + RLENGTH)
			}
		}'
}

# uncovered MARKS WANTED: the lines of file WANTED ("VIP PROTOCOL FIRST LAST
# MARK") that no element in file MARKS (as nft_marks prints them) covers: same
# VIP, protocol and mark, ports inside the element's.
uncovered() {
	awk 'NR == FNR { k = $1 " " $2 " " $5; n[k]++; f[k, n[k]] = $3; l[k, n[k]] = $4; next }
		{
			k = $1 " " $2 " " $5
			for (i = 1; i <= n[k]; i++) if (f[k, i] <= $3 + 0 && $4 + 0 <= l[k, i]) next
			print
		}' "$1" "$2"
}

# stray MARKS WANTED: the elements in file MARKS that mark more than file
# WANTED asks for: an element must begin where a wanted range of its VIP,
# protocol and mark begins, and end where one ends (ranges that share an
# element are merged, never widened).
stray() {
	awk 'NR == FNR { first[$1 " " $2 " " $5 " " $3] = 1; last[$1 " " $2 " " $5 " " $4] = 1; next }
		!(($1 " " $2 " " $5 " " $3) in first) || !(($1 " " $2 " " $5 " " $4) in last)' "$2" "$1"
}

# marked NS VIP PROTOCOL PORTS MARK: status 0 if table inet lvsctl in NS marks
# all of PORTS ("554" or "1024-5000") of VIP and PROTOCOL with MARK.
marked() {
	nft_marks "$1" >/tmp/marked.nft
	echo "$2 $3 ${4%-*} ${4#*-} $5" >/tmp/marked.want
	[ -s /tmp/marked.nft ] && [ -z "$(uncovered /tmp/marked.nft /tmp/marked.want)" ]
}

# ---- two directors: failover (ha-*.sh, bench-ha.sh) -------------------------
# site_ha is topology's site with a second director and the reals' gateway
# floating between the two:
#
#   br-client  dir-a eth0 192.0.2.2       dir-b eth0 192.0.2.3    VIP 192.0.2.10 floats
#   br-real    dir-a eth1 198.51.100.252  dir-b eth1 198.51.100.253
#              (their own addresses: peer heartbeats, VRRP, the IPVS sync
#              daemons' multicast); gateway 198.51.100.254/24 floats
#   br-mgmt    dir-a eth2 203.0.113.11    dir-b eth2 203.0.113.12  controller 203.0.113.1
#
# Whoever is ACTIVE (lvsctl) or MASTER (keepalived) holds the VIP on eth0 and
# the gateway on eth1; the other holds neither.
DIR_B_CLIENT_IP=192.0.2.3
DIR_B_MGMT_IP=203.0.113.12
DIR_A_ADDR=198.51.100.252
DIR_B_ADDR=198.51.100.253
HA_DIRECTORS="dir-a dir-b"
SYNC_ID=7

site_ha() {
	bridge_up br-client || die "cannot create bridge br-client"
	bridge_up br-real
	bridge_up br-mgmt "$MGMT_ROOT_IP/24"
	add_client client "$CLIENT_IP"
	add_director dir-a "$DIR_A_CLIENT_IP/24" "$DIR_A_ADDR/24" "$DIR_A_MGMT_IP/24"
	add_director dir-b "$DIR_B_CLIENT_IP/24" "$DIR_B_ADDR/24" "$DIR_B_MGMT_IP/24"
	add_real rs1 198.51.100.1
	add_real rs2 198.51.100.2
	add_real rs3 198.51.100.3
	# The bridges forward multicast (VRRP, the sync daemons' 224.0.0.81) to
	# every port without snooping, as a dumb switch would.
	for _br in br-client br-real br-mgmt; do
		echo 0 >"/sys/class/net/$_br/bridge/multicast_snooping"
	done
	note "client 192.0.2.100 | dir-a 192.0.2.2, 198.51.100.252, 203.0.113.11 | dir-b 192.0.2.3, 198.51.100.253, 203.0.113.12"
	note "rs1-3 198.51.100.1-3 via $GATEWAY | VIP $VIP and gateway $GATEWAY float | controller $MGMT_ROOT_IP"
}

# other_director NAME: the other one of dir-a and dir-b.
other_director() { if [ "$1" = dir-a ]; then echo dir-b; else echo dir-a; fi; }

# mgmt_ip NAME: the director's address on br-mgmt.
mgmt_ip() { if [ "$1" = dir-a ]; then echo "$DIR_A_MGMT_IP"; else echo "$DIR_B_MGMT_IP"; fi; }

# mac_of NS IFACE: the MAC address of IFACE in NS.
mac_of() { on "$1" cat "/sys/class/net/$2/address"; }

# holds NS ADDR: status 0 if NS has ADDR on an interface that is up.
holds() { on "$1" ip -br addr show up 2>/dev/null | grep -q " $2/"; }

# holders ADDR: the directors holding ADDR on an up link (as lab-ha watch
# counts them: administratively up with carrier), space-separated ("" for
# none). One lab-ha process: every exec counts in the emulated guest.
holders() { lab-ha holders --ns dir-a,dir-b "$1" 2>/dev/null; }

# neigh_mac NS ADDR: the MAC NS's neighbour table holds for ADDR (empty if none).
neigh_mac() { on "$1" ip neigh show "$2" | sed -nE 's/.* lladdr ([0-9a-f:]+).*/\1/p' | head -n 1; }

# start_watch: lab-ha watch over dir-a and dir-b for the VIP and the gateway,
# every 10 ms, in the background until stop_watch; lines in /tmp/watch.out.
start_watch() {
	rm -f /tmp/watch.stop
	lab-ha watch --ns dir-a,dir-b --addr "$VIP,$GATEWAY" --stop-file /tmp/watch.stop >/tmp/watch.out 2>&1 &
	WATCH_PID=$!
	wait_line /tmp/watch.out '^WATCH READY' 10 || die "lab-ha watch did not start"
}

# stop_watch: stops the watch, prints its result line ("WATCH RESULT samples
# N dual D errors E") and sets WATCH_RESULT to it and WATCH_DUAL to D (the
# variables only when not called in a command substitution). It waits for the
# line in the file, not for the process: a subshell cannot wait for the
# watch.
stop_watch() {
	touch /tmp/watch.stop
	wait_until 10 grep -q '^WATCH RESULT' /tmp/watch.out || echo "  (lab-ha watch did not stop within 10 s)" >&2
	WATCH_RESULT=$(grep '^WATCH RESULT' /tmp/watch.out | tail -n 1)
	WATCH_DUAL=$(printf '%s\n' "$WATCH_RESULT" | awk '{print $6}')
	echo "$WATCH_RESULT"
}

# watch_duals: the watch's time line around each change where two
# directors held an address (3 lines before each), to see what led to it.
watch_duals() { grep '^WATCH +' /tmp/watch.out | grep -B3 ' [a-z0-9-]*,[a-z0-9-]*$' | head -n 60 | sed 's/^/    /'; }

# revive NS: brings back a director that died (its daemon killed, its links
# down: takeover_runs), as a host that
# rebooted: the floating addresses it held are gone (a dead host's kernel
# does not keep them over a reboot), then its links come up. Its daemon
# (keepalived or lvs-agent) is the caller's to start.
revive() {
	on "$1" ip addr del "$VIP/32" dev eth0 2>/dev/null
	on "$1" ip addr del "$VIP/24" dev eth0 2>/dev/null
	on "$1" ip addr del "$GATEWAY/24" dev eth1 2>/dev/null
	for _if in eth0 eth1 eth2; do on "$1" ip link set "$_if" up; done
}

# stats MS...: "min=.. median=.. max=.. runs=N" of the numbers given (median:
# the middle one, or the mean of the two middle ones).
stats() {
	printf '%s\n' "$@" | grep . | sort -n | awk '
		{ v[++n] = $1 }
		END {
			if (n == 0) { print "min=- median=- max=- runs=0"; exit }
			m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
			printf "min=%.0f median=%.0f max=%.0f runs=%d\n", v[1], m, v[n], n
		}'
}

# median_of "min=.. median=M ...": M.
median_of() { printf '%s\n' "$1" | sed -nE 's/.*median=([0-9.]+).*/\1/p'; }

# ---- keepalived, the reference (bench-ha) ------------------------------------
# Debian's keepalived 2.2.7 in each director's namespace, VRRPv3 on eth1 at
# advert_int 0.1 (KA_ADVERT), one vrrp_instance holding the VIP on eth0 and the
# gateway on eth1, lvs_sync_daemon on eth1 with sync id 7. Both start BACKUP
# with nopreempt: like lvsctl's default (no preemption), a director that
# comes back does not take the VIPs back. The IPVS service is programmed by
# hand, identically on both (ka_program_ipvs).
KA_ADVERT=${KA_ADVERT:-0.1}

# ka_conf NS PRIORITY: the configuration, in /tmp/keepalived.NS.conf.
ka_conf() {
	cat >"/tmp/keepalived.$1.conf" <<CONF
global_defs {
	router_id $1
	vrrp_version 3
	lvs_sync_daemon eth1 VI_1 id $SYNC_ID
}
vrrp_instance VI_1 {
	state BACKUP
	nopreempt
	interface eth1
	virtual_router_id 51
	priority $2
	advert_int $KA_ADVERT
	virtual_ipaddress {
		$VIP/32 dev eth0
		$GATEWAY/24 dev eth1
	}
}
CONF
}

# ka_program_ipvs NS: what the agent programs for the lab's WMS-like cluster,
# by hand: nftables marks tcp 554, 1755 and udp 554, 1755, 1024-5000 of the
# VIP with fwmark 16, one FWM service (rr, masq to rs1-rs3).
ka_program_ipvs() {
	on "$1" nft -f - <<NFT || return 1
table inet lab-ha {
	chain prerouting {
		type filter hook prerouting priority mangle; policy accept;
		ip daddr $VIP tcp dport { 554, 1755 } meta mark set 16
		ip daddr $VIP udp dport { 554, 1755, 1024-5000 } meta mark set 16
	}
}
NFT
	on "$1" ipvsadm -A -f 16 -s rr || return 1
	for _r in 198.51.100.1 198.51.100.2 198.51.100.3; do
		on "$1" ipvsadm -a -f 16 -r "$_r:0" -m || return 1
	done
}

# ka_facility NS: the syslog facility of NS's keepalived (LOG_LOCAL1 for
# dir-a, LOG_LOCAL2 for dir-b), so one syslogd tells them apart.
ka_facility() { if [ "$1" = dir-a ]; then echo 1; else echo 2; fi; }

# ka_start NS PRIORITY: keepalived in NS (config from ka_conf), in the
# foreground of a background job, with pid files of its own
# (/run/ka.NS.{main,vrrp,check}.pid). It logs to syslog, facility
# LOG_LOCAL<ka_facility NS>: busybox syslogd writes /tmp/keepalived.syslog
# (ka_state reads it). Not -l: that writes to the console, which in the guest
# is the serial line the scenario's log is read from; and Debian's build has
# no -g (log file).
ka_start() {
	if [ ! -S /dev/log ]; then
		syslogd -n -O /tmp/keepalived.syslog &
		wait_until 5 test -S /dev/log || die "syslogd did not start"
	fi
	ka_conf "$1" "$2"
	rm -f "/run/ka.$1.main.pid" "/run/ka.$1.vrrp.pid" "/run/ka.$1.check.pid"
	/usr/sbin/ip netns exec "$1" keepalived -n -D -S "$(ka_facility "$1")" -f "/tmp/keepalived.$1.conf" \
		-p "/run/ka.$1.main.pid" -r "/run/ka.$1.vrrp.pid" -c "/run/ka.$1.check.pid" \
		>>"/tmp/keepalived.$1.log" 2>&1 &
	wait_until 10 test -s "/run/ka.$1.vrrp.pid" || {
		tail -n 20 "/tmp/keepalived.$1.log" /tmp/keepalived.syslog | sed 's/^/    /'
		die "keepalived did not start in $1"
	}
}

# ka_pids NS: the pids of NS's keepalived processes, the VRRP child first:
# killed after its parent, it would get the parent-death SIGTERM and say
# goodbye (a priority 0 advert), which a dying host does not.
# The parent first: SIGKILLed after a child, it could respawn that child in
# between, an orphan that would take the addresses once the links are up again.
ka_pids() { cat "/run/ka.$1.main.pid" "/run/ka.$1.vrrp.pid" "/run/ka.$1.check.pid" 2>/dev/null | tr '\n' ' '; }

# keepalived_procs: the pids of every keepalived process in the guest.
keepalived_procs() {
	for _p in /proc/[0-9]*; do
		[ "$(cat "$_p/comm" 2>/dev/null)" = keepalived ] && printf '%s ' "${_p#/proc/}"
	done
	return 0
}
no_keepalived() { [ -z "$(keepalived_procs)" ]; }

# ka_state NS: MASTER, BACKUP or FAULT, from the last "Entering ... STATE"
# line of NS's keepalived in the syslog.
ka_state() {
	grep " local$(ka_facility "$1")\." /tmp/keepalived.syslog 2>/dev/null |
		sed -nE 's/.*Entering ([A-Z]+) STATE.*/\1/p' | tail -n 1
}

# ---- lvsctl with two directors ---------------------------------------------------

# ha_manifest: the lab's WMS-like cluster on the failover group edge-1, as in
# issue 7, with the default failover settings unless HA_FAILOVER holds the
# group's failover block in YAML flow style (LAB_ENV=HA_FAILOVER=... has no
# spaces: "{deadAfter:1s,fenceTime:1s}"). HA_CLUSTER_EXTRA: more lines of the
# cluster (health, persistence, removeGrace), YAML, at the top level.
ha_manifest() {
	cat <<YAML
kind: Cluster
name: wms
directorGroup: edge-1
vips: [$VIP]
ports:
  - {protocol: tcp, port: 554}
  - {protocol: udp, port: 554}
  - {protocol: tcp, port: 1755}
  - {protocol: udp, port: 1755}
  - {protocol: udp, ports: 1024-5000}
scheduler: rr
forwarding: masq
${HA_CLUSTER_EXTRA:-}
reals:
  - {address: 198.51.100.1, weight: 100}
  - {address: 198.51.100.2, weight: 100}
  - {address: 198.51.100.3, weight: 100}
---
kind: DirectorGroup
name: edge-1
directors:
  - {name: dir-a, priority: 200, address: $DIR_A_ADDR}
  - {name: dir-b, priority: 100, address: $DIR_B_ADDR}
vipInterface: eth0
gateway: {address: $GATEWAY/24, interface: eth1}
sync: {interface: eth1, syncId: $SYNC_ID}
YAML
	if [ -n "${HA_FAILOVER:-}" ]; then echo "failover: $(ha_failover)"; fi
}

# ha_failover: HA_FAILOVER with a space after each ':' and ',' (YAML's flow
# style needs one after ':'; LAB_ENV cannot carry spaces).
ha_failover() { printf '%s\n' "$HA_FAILOVER" | sed -E 's/([:,])([^ ])/\1 \2/g'; }

# start_agent_in NS [FLAGS...]: lvs-agent for director NS inside NS, state in
# /var/lib/lvsctl/NS, log /tmp/agent.NS.log (appended: restarts add to it),
# metrics on its br-mgmt address :9444; its pid in /run/agent.NS.pid.
# Its --controller is $CONTROLLERS if set (several: "A,B"), else $CONTROLLER.
# Returns once the metrics endpoint answers.
start_agent_in() {
	_ns=$1
	shift
	director_cert "$_ns"
	# shellcheck disable=SC2046 # agent_tls is flags, split on purpose
	/usr/sbin/ip netns exec "$_ns" lvs-agent --director "$_ns" --controller "${CONTROLLERS:-$CONTROLLER}" \
		--state-dir "/var/lib/lvsctl/$_ns" $(agent_tls "$_ns") --metrics-listen "$(mgmt_ip "$_ns"):9444" \
		--stats-period 1s "$@" >>"/tmp/agent.$_ns.log" 2>&1 &
	echo $! >"/run/agent.$_ns.pid"
	wait_tcp "$(mgmt_ip "$_ns"):9444" 30 || {
		tail -n 20 "/tmp/agent.$_ns.log" | sed 's/^/    /'
		die "agent did not serve metrics in $_ns"
	}
}

lv_logs() { ha_digest; }
ka_logs() { tail -n 40 /tmp/keepalived.syslog | cut -c1-300 | sed 's/^/    /'; }

# ha_logs: the last lines of the controller's and both agents' logs, for a
# failed check to show what the role machines did.
ha_logs() {
	for _f in /tmp/controller*.log /tmp/agent.dir-a.log /tmp/agent.dir-b.log; do
		[ -e "$_f" ] || continue
		echo "  --- last 30 lines of $_f"
		tail -n 30 "$_f" 2>/dev/null | cut -c1-400 | sed 's/^/    /'
	done
}

# agent_pid NS: the pid start_agent_in recorded.
agent_pid() { cat "/run/agent.$1.pid"; }

# active_of: the director `lvsctl status` shows ACTIVE (empty if none or
# more than one). Reads the status_snap it takes.
active_of() {
	status_snap
	_act=""
	for _d in $HA_DIRECTORS; do
		[ "$(sfield "$_d" role)" = '"ACTIVE"' ] && _act="$_act $_d"
	done
	_act=${_act# }
	case $_act in *" "*) echo "" ;; *) echo "$_act" ;; esac
}

# ---- takeover runs (bench-ha, ha-takeover) -------------------------------------
# takeover_runs KIND N: N unplanned takeovers. Each run finds the one
# director holding the VIP (the ACTIVE) and lets lab-ha takeover, in the
# client, kill it and time death -> first new TCP connection through the VIP
# answered by a real server. The death is the host's, as the network sees it:
# SIGKILL to the pids "KIND_pids NS" prints (no goodbye), then every link of
# NS down (no answer to ARP or ping), done by lab-ha itself, microseconds
# apart (an ip command would take tens to hundreds of ms in the guest). Then "KIND_checks NEW OLD" (the
# caller's checks right after the takeover; may do nothing), and the dead one
# comes back: revive, "KIND_restart NS", and "KIND_healthy" must succeed
# within 30 s before the next run, so the next death always finds a healthy
# pair. The runs alternate directions by themselves: the survivor is the next
# victim. Times (ms) are added to TAKEOVER_MS, one per run; a run that did not
# heal fails a check and adds nothing.
# TAKEOVER_RUN numbers the runs across calls (a scenario may call it once per
# run, with checks of its own in between). TAKEOVER_DEATH_MS gets how long
# each death took (a kill and three netlink requests: well under 1 ms on a
# guest that has its CPU; tens or hundreds of ms say the guest was starved,
# and every time measured with it is stretched).
TAKEOVER_MS=""
TAKEOVER_DEATH_MS=""
TAKEOVER_RUN=0
takeover_runs() {
	_kind=$1
	_n=$2
	_i=1
	while [ "$_i" -le "$_n" ]; do
		TAKEOVER_RUN=$((TAKEOVER_RUN + 1))
		_run=$TAKEOVER_RUN
		# A healthy pair to kill the ACTIVE of, still one holder when read
		# right after (a starved guest may flap: up to 5 tries).
		_act=""
		_try=0
		while [ "$_try" -lt 5 ]; do
			_try=$((_try + 1))
			wait_until 30 "${_kind}_healthy" || continue
			_act=$(holders "$VIP")
			case $_act in dir-a | dir-b) break ;; esac
			note "$_kind run $_run: healthy, then holders '$_act' at once: waiting again"
			_act=""
		done
		if [ -z "$_act" ]; then
			fail_check "$_kind run $_run: a healthy pair with one director holding $VIP before the death"
			command -v "${_kind}_logs" >/dev/null && "${_kind}_logs"
			return 1
		fi
		_stby=$(other_director "$_act")
		_pids=$("${_kind}_pids" "$_act" | tr -s ' \n' ',,')
		_out=$(on client lab-ha takeover "$VIP:554" --kill "${_pids%,}" --down "$_act" --limit 20s 2>&1)
		_ms=$(printf '%s\n' "$_out" | sed -nE 's/^TAKEOVER ms=([0-9.]+) .*/\1/p')
		if [ -n "$_ms" ]; then
			TAKEOVER_MS="$TAKEOVER_MS $_ms"
			TAKEOVER_DEATH_MS="$TAKEOVER_DEATH_MS $(printf '%s\n' "$_out" | sed -nE 's/^TAKEOVER .* cmd_ms=([0-9.]+) .*/\1/p')"
			note "$_kind run $_run: $_act died, $(printf '%s\n' "$_out" | grep '^TAKEOVER')"
			# A takeover over 3 s: show what the daemons decided meanwhile.
			if [ "${_ms%.*}" -gt 3000 ] && command -v "${_kind}_logs" >/dev/null; then "${_kind}_logs"; fi
		else
			fail_check "$_kind run $_run: a new connection through $VIP after $_act died: $(oneline "$_out")"
		fi
		"${_kind}_checks" "$_stby" "$_act"
		revive "$_act"
		"${_kind}_restart" "$_act"
		wait_until 30 "${_kind}_healthy" || {
			fail_check "$_kind run $_run: the pair is healthy again within 30 s after $_act came back"
			command -v "${_kind}_logs" >/dev/null && "${_kind}_logs"
			return 1
		}
		_i=$((_i + 1))
	done
}

# lv_healthy: the lvsctl pair is healthy: one ACTIVE by lvsctl status, holding
# the VIP and the gateway on up links, the other STANDBY hearing it (its peer
# entry reachable), both connected and applied.
lv_healthy() {
	_h=$(holders "$VIP")
	case $_h in dir-a | dir-b) ;; *) return 1 ;; esac
	_o=$(other_director "$_h")
	[ "$(holders "$GATEWAY")" = "$_h" ] || return 1
	# One status and one lab-ha for every field (each exec counts here).
	_f=$(lv status -o json 2>/dev/null | lab-ha field "$_h" role "$_o" role "$_h" connected "$_o" connected \
		"$_o/$_h" reachable "$_h" appliedRevision "$_h" desiredRevision \
		"$_o" appliedRevision "$_o" desiredRevision 2>/dev/null | tr '\n' ' ')
	printf '%s\n' "$_f" | awk '$1 == "\"ACTIVE\"" && $2 == "\"STANDBY\"" && $3 == "true" && $4 == "true" &&
		$5 == "true" && $6 == $7 && $8 == $9 && $7 > 0 { ok = 1 } END { exit !ok }'
}

# ---- failover scenarios: sync, partitions, outages (ha-sync, ha-partition, ha-outage)

# ha_up: site_ha with responders, the sampler (start_watch; not with
# HA_WATCH=0), the controller, agents in dir-a and dir-b and ha_manifest
# applied; returns once the pair is healthy (lv_healthy).
ha_up() {
	site_ha
	start_reals
	[ "${HA_WATCH:-1}" = 1 ] && start_watch
	start_controller
	start_agent_in dir-a
	start_agent_in dir-b
	ha_manifest >/tmp/ha.yaml
	# HA_FAILOVER: the group's failover block, as ha_manifest takes it (the
	# group is the manifest's last document).
	if [ -n "${HA_FAILOVER:-}" ] && ! grep -q '^failover:' /tmp/ha.yaml; then
		echo "failover: $(ha_failover)" >>/tmp/ha.yaml
	fi
	show lv apply -f /tmp/ha.yaml
	wait_until 40 lv_healthy || {
		show lv status
		note "holders: $VIP $(holders "$VIP"), $GATEWAY $(holders "$GATEWAY")"
		ha_digest
		die "no healthy pair (one ACTIVE holding $VIP and $GATEWAY, a STANDBY hearing it) within 40 s"
	}
}

# hold_start NAME SPORT [N]: lab-client hold in the client, N (default 20)
# TCP connections to $VIP:554 from source ports SPORT.., each probed every
# 200 ms (an RTSP OPTIONS answered by its real server), until hold_stop NAME;
# output in /tmp/hold.NAME.out. Returns once every connection is open.
hold_start() {
	rm -f "/tmp/hold.$1.stop"
	/usr/sbin/ip netns exec client lab-client hold "$VIP:554" -n "${3:-20}" --sport "$2" \
		--interval 200ms --stop-file "/tmp/hold.$1.stop" >"/tmp/hold.$1.out" 2>&1 &
	wait_line "/tmp/hold.$1.out" '^HOLD READY' 20
}

# hold_stop NAME: stops hold NAME and prints its result line, "HOLD RESULT
# OK|FAIL conns N probes P failed F maxgap G survived S/N moved M".
hold_stop() {
	touch "/tmp/hold.$1.stop"
	wait_line "/tmp/hold.$1.out" '^HOLD RESULT' 15 >/dev/null
	grep '^HOLD RESULT' "/tmp/hold.$1.out" | tail -n 1
}

# hold_field RESULT WORD: the value after WORD in a HOLD RESULT line
# ("survived" -> 20/20, "failed" -> 0).
hold_field() { printf '%s\n' "$1" | awk -v w="$2" '{ for (i = 1; i < NF; i++) if ($i == w) { print $(i + 1); exit } }'; }

# synced_count NS SPORT [N]: how many of the client's connections from source
# ports SPORT..SPORT+N-1 (N default 20) NS's IPVS connection table lists as
# ESTABLISHED (on a STANDBY: what its backup sync daemon received).
synced_count() {
	on "$1" ipvsadm -Lnc 2>/dev/null | awk -v c="$CLIENT_IP" -v lo="$2" -v hi="$(($2 + ${3:-20} - 1))" '
		$3 == "ESTABLISHED" { split($4, s, ":"); if (s[1] == c && s[2] + 0 >= lo && s[2] + 0 <= hi) n++ }
		END { print n + 0 }'
}

# synced_all NS SPORT [N]: status 0 once synced_count sees all N.
synced_all() { [ "$(synced_count "$1" "$2" "${3:-20}")" -ge "${3:-20}" ]; }

# loop_start NAME: new TCP connections to $VIP:554 from the client, five at a
# time with a 0.2 s pause between, until loop_stop NAME. Answers (real
# servers' names) go to /tmp/loop.NAME.ok, failures ("try N: ...") to
# /tmp/loop.NAME.err.
loop_start() {
	rm -f "/tmp/loop.$1.stop" "/tmp/loop.$1.ok" "/tmp/loop.$1.err"
	(
		while [ ! -e "/tmp/loop.$1.stop" ]; do
			/usr/sbin/ip netns exec client lab-client tcp "$VIP:554" -n 5 >>"/tmp/loop.$1.ok" 2>>"/tmp/loop.$1.err"
			sleep 0.2
		done
	) &
	eval "LOOP_PID_$1=\$!"
}

# loop_stop NAME: stops loop NAME and prints "answered A failed F".
loop_stop() {
	touch "/tmp/loop.$1.stop"
	eval "wait \$LOOP_PID_$1"
	echo "answered $(grep -c '^rs' "/tmp/loop.$1.ok") failed $(grep -c 'try [0-9]' "/tmp/loop.$1.err")"
}

# watch_changes: how many holder changes (WATCH +... lines) the sampler has
# printed so far; watch_since N: those after the first N, one per line.
watch_changes() { grep -c '^WATCH +' /tmp/watch.out; }
watch_since() { grep '^WATCH +' /tmp/watch.out | tail -n +"$(($1 + 1))"; }

# role_changes NS: how many times NS's agent has logged that it added or
# removed the group's addresses (its hold changed) so far.
role_changes() { grep -c 'group addresses changed' "/tmp/agent.$1.log"; }

# epochs: "dir-a=E dir-b=E" as lvsctl status shows them now.
epochs() {
	status_snap
	echo "dir-a=$(sfield dir-a epoch) dir-b=$(sfield dir-b epoch)"
}

# test_holders NS: status 0 if NS, and no one else, holds both the VIP and
# the gateway on up links.
test_holders() { [ "$(holders "$VIP") $(holders "$GATEWAY")" = "$1 $1" ]; }

# ha_digest: what decided the roles, for a reader of a failed run: the
# controller's role decisions and each agent's hold changes, warnings and
# errors (the last 25 lines of each).
ha_digest() {
	# Every controller's log (several with ha-controllers: /tmp/controller.N.log).
	for _f in /tmp/controller*.log; do
		[ -e "$_f" ] || continue
		echo "  controller ($_f): role decisions, leadership"
		grep -E 'role decision|role assignment|msg=leading|no longer leading|level=(WARN|ERROR)' "$_f" | tail -n 25 | sed 's/^/    /'
	done
	for _d in $HA_DIRECTORS; do
		echo "  agent $_d: hold changes, warnings, errors"
		grep -E 'role assigned|group addresses changed|announced addresses|level=(WARN|ERROR)' "/tmp/agent.$_d.log" 2>/dev/null | tail -n 25 | sed 's/^/    /'
	done
}

# hold_recovered NAME: status 0 if every connection of hold NAME whose probe
# failed has answered again since (lab-client prints both).
hold_recovered() {
	awk '$1 == "conn" && $3 == "probe" { down[$2] = 1 }
		$1 == "conn" && $3 == "answering" { down[$2] = 0 }
		END { for (c in down) if (down[c]) exit 1 }' "/tmp/hold.$1.out"
}

# ---- health checks and drain (health.sh, drain.sh) -------------------------
# The real servers' RTSP side misbehaves on demand (lab-responder's modes:
# ok, off, hang, 404); what each director makes of it is read from its IPVS
# table (ipvsadm, or lab-health for timings and counts) and from `lvsctl
# status cluster NAME -o json` (lab-health reals: the guest has no jq).

# real_ip NAME: the address of real server NAME (rs2 -> 198.51.100.2).
real_ip() { echo "198.51.100.${1#rs}"; }

# rtsp_mode NAME MODE: NAME's responder switches its RTSP side to MODE;
# returns once its log says so (within 5 s, else a failed check).
rtsp_mode() {
	echo "$2" >"/tmp/$1.mode.tmp" && mv "/tmp/$1.mode.tmp" "/tmp/$1.mode"
	wait_until 5 rtsp_mode_is "$1" "$2" || fail_check "responder $1 switched its RTSP side to $2 within 5 s"
}
rtsp_mode_is() { [ "$(sed -n 's/.* rtsp mode \([a-z0-9]*\)$/\1/p' "/tmp/$1.log" | tail -n 1)" = "$2" ]; }

# ipvs_weight NS ADDR: ADDR's weight in NS's IPVS table (ipvsadm -Ln; the lab
# has one service per real server here), "absent" if it is not there.
ipvs_weight() {
	on "$1" ipvsadm -Ln | awk -v a="$2:0" '$1 == "->" && $2 == a { w = $4 } END { print (w == "" ? "absent" : w) }'
}

# weights ADDR: "dir-a=W dir-b=W", ADDR's weight in each director's kernel.
weights() { echo "dir-a=$(ipvs_weight dir-a "$1") dir-b=$(ipvs_weight dir-b "$1")"; }

# wait_weight ADDR WEIGHT T0 LIMIT: lab-health wait: until ADDR has WEIGHT
# (or is absent) in both directors' IPVS, sampled every 20 ms; prints its
# WAIT line (ms counted from T0, an uptime_s taken before the change).
# Status 1 after LIMIT seconds.
wait_weight() {
	lab-health wait --ns dir-a,dir-b --real "$1" --weight "$2" --since "$3" --limit "${4}s" 2>&1
}

# wait_ms "WAIT ok ms=N ...": N.
wait_ms() { printf '%s\n' "$1" | sed -nE 's/^WAIT [a-z]+ ms=([0-9.]+).*/\1/p'; }

# within MS LIMIT_S: status 0 if MS (a number, possibly with decimals) is at
# most LIMIT_S seconds.
within() { [ -n "$1" ] && awk -v m="$1" -v l="$2" 'BEGIN { exit !(m <= l * 1000) }'; }

# The fields reals_snap keeps, in its columns 3.. (healthError last: it may
# hold blanks).
REALS_FIELDS=weight,health,drained,removing,activeConns,inactiveConns,persistentConns,healthSince,healthError

# reals_snap CLUSTER: `lvsctl status cluster CLUSTER -o json` as lab-health
# reals prints it, "DIRECTOR ADDRESS" then REALS_FIELDS, in /tmp/reals.txt.
reals_snap() { lv status cluster "$1" -o json 2>/dev/null | lab-health reals --fields "$REALS_FIELDS" >/tmp/reals.txt; }

# real_field DIRECTOR ADDRESS FIELD: FIELD of the last reals_snap ("" if the
# director does not list ADDRESS).
real_field() {
	awk -v d="$1" -v a="$2" -v f="$3" -v fields="$REALS_FIELDS" '
		BEGIN { n = split(fields, F, ","); for (i = 1; i <= n; i++) if (F[i] == f) col = i + 2 }
		$1 == d && $2 == a {
			v = $col
			if (f == "healthError") { v = $0; for (i = 1; i < col; i++) sub(/^[^ ]+ /, "", v) }
			print v
		}' /tmp/reals.txt
}

# real_fields ADDRESS FIELD: "dir-a=V dir-b=V" from the last reals_snap.
real_fields() { echo "dir-a=$(real_field dir-a "$1" "$2") dir-b=$(real_field dir-b "$1" "$2")"; }

# health_all CLUSTER ADDRESS STATE: status 0 if both directors report
# ADDRESS's health as STATE (up, down, unknown) now (takes a reals_snap).
health_all() {
	reals_snap "$1"
	[ "$(real_fields "$2" health)" = "dir-a=$3 dir-b=$3" ]
}

# ---- several controllers on an etcd cluster (ha-controllers.sh, issue 11) ----
# Debian's etcd (etcd-server 3.4, the "etcd" extra: "# lab-needs: etcd") as a
# cluster of three members e1-e3 in the root namespace on loopback, and
# lvs-controllers on it, each on an address of its own on br-mgmt
# ($CONTROLLER, $CONTROLLER_B).
ETCD_MEMBERS="e1 e2 e3"
ETCD_ENDPOINTS=http://127.0.0.1:2379,http://127.0.0.1:2479,http://127.0.0.1:2579
# Timings: etcd's heartbeat and election timeout (ms) and the controllers'
# --election-ttl (s), read when a member or controller starts: ETCD_HEARTBEAT,
# ETCD_ELECTION, ELECTION_TTL; unset, the README's LAN layout (100 ms, 500 ms, 1 s;
# ha-controllers scales them for the guest); LAB_ENV may set others.

# etcd_port MEMBER KIND: e1..e3's client (2379, 2479, 2579) or peer (2380,
# 2480, 2580) port.
etcd_port() {
	_n=${1#e}
	if [ "$2" = client ]; then echo $((2279 + 100 * _n)); else echo $((2280 + 100 * _n)); fi
}

# start_etcd_member MEMBER [STATE]: one member, heartbeat ETCD_HEARTBEAT ms and
# election timeout ETCD_ELECTION ms (etcd allows a lease of 1.5 election
# timeouts at least), the README's transaction limits (an apply of thousands of
# objects is one transaction), data in /var/lib/etcd/MEMBER, log /tmp/etcd.MEMBER.log
# (appended), pid /run/etcd.MEMBER.pid. STATE: new (default) or existing (a
# member restarted on its data).
start_etcd_member() {
	_ic=""
	for _m in $ETCD_MEMBERS; do _ic="$_ic,$_m=http://127.0.0.1:$(etcd_port "$_m" peer)"; done
	_c=http://127.0.0.1:$(etcd_port "$1" client)
	_p=http://127.0.0.1:$(etcd_port "$1" peer)
	etcd --name "$1" --data-dir "/var/lib/etcd/$1" \
		--listen-client-urls "$_c" --advertise-client-urls "$_c" \
		--listen-peer-urls "$_p" --initial-advertise-peer-urls "$_p" \
		--initial-cluster "${_ic#,}" --initial-cluster-token lvsctl-lab --initial-cluster-state "${2:-new}" \
		--heartbeat-interval "${ETCD_HEARTBEAT:-100}" --election-timeout "${ETCD_ELECTION:-500}" --logger zap --log-level warn \
		--max-txn-ops 65536 --max-request-bytes 67108864 \
		>>"/tmp/etcd.$1.log" 2>&1 &
	echo $! >"/run/etcd.$1.pid"
}

# etcd_health MEMBER: status 0 if MEMBER's /health says true (it has a
# leader and answers reads).
etcd_health() { timeout 10 wget -qO- "http://127.0.0.1:$(etcd_port "$1" client)/health" 2>/dev/null | grep -q '"health": *"true"'; }

# start_etcd_cluster: the three members; returns once each says it is healthy.
start_etcd_cluster() {
	command -v etcd >/dev/null || die "no etcd in the guest (the scenario needs '# lab-needs: etcd')"
	for _m in $ETCD_MEMBERS; do start_etcd_member "$_m"; done
	for _m in $ETCD_MEMBERS; do
		wait_until 60 etcd_health "$_m" || {
			tail -n 20 "/tmp/etcd.$_m.log" | cut -c1-300 | sed 's/^/    /'
			die "etcd member $_m not healthy within 60 s"
		}
	done
	note "etcd $(etcd --version | sed -n 's/^etcd Version: //p'): members $ETCD_MEMBERS on $ETCD_ENDPOINTS (heartbeat ${ETCD_HEARTBEAT:-100} ms, election ${ETCD_ELECTION:-500} ms)"
}

# start_controller_at N HOST:PORT: lvs-controller number N on the etcd cluster,
# listening on and advertising HOST:PORT (an address of the root namespace on
# br-mgmt), TLS from the lab's PKI, --election-ttl ELECTION_TTL s (default 1); log
# /tmp/controller-N.log (appended), pid /run/controller-N.pid. Returns once it
# listens.
start_controller_at() {
	lab_pki
	lvs-controller --etcd-endpoints "$ETCD_ENDPOINTS" --listen "$2" --advertise "$2" --tls-dir "$PKI" \
		--election-ttl "${ELECTION_TTL:-1}s" >>"/tmp/controller-$1.log" 2>&1 &
	echo $! >"/run/controller-$1.pid"
	wait_tcp "$2" 30 || {
		tail -n 20 "/tmp/controller-$1.log" | sed 's/^/    /'
		die "controller $1 did not listen on $2"
	}
	note "controller $1 listening on $2 (TLS, pid $(cat "/run/controller-$1.pid"), log /tmp/controller-$1.log)"
}

# controllers_via HOST:PORT: `lvsctl get controllers -o json` asked of the
# controller at HOST:PORT alone, as "ADDRESS=leader|follower ..." sorted by
# address (empty if it did not answer).
controllers_via() {
	lvsctl --controller "$1" get controllers -o json 2>/dev/null | awk -F'"' '
		$2 == "address" { a = $4 }
		$2 == "leader" { print a "=" ($0 ~ /true/ ? "leader" : "follower") }' | sort | tr '\n' ' ' | sed 's/ $//'
}

# controller_conn NS: the controller address(es) NS's agent holds an
# established TCP connection to (port 7443), space-separated.
controller_conn() {
	on "$1" netstat -tn 2>/dev/null | awk '$6 == "ESTABLISHED" && $5 ~ /:7443$/ { print $5 }' | sort | tr '\n' ' ' | sed 's/ $//'
}

# ---- several controllers under faults (ha-controllers-faults.sh, issue 11) ----

# controller_addr N: controller N's address (1: $CONTROLLER, 2: $CONTROLLER_B);
# controller_num ADDR: the other way round.
controller_addr() { if [ "$1" = 1 ]; then echo "$CONTROLLER"; else echo "$CONTROLLER_B"; fi; }
controller_num() { if [ "$1" = "$CONTROLLER" ]; then echo 1; else echo 2; fi; }

# leader_via HOST:PORT: the leader's address as `lvsctl get controllers -o json`
# asked of the controller at HOST:PORT lists it (empty if none or no answer).
leader_via() { controllers_via "$1" | tr ' ' '\n' | sed -n 's/=leader$//p'; }

# controllers_are LEADER FOLLOWER: status 0 if, asked of either controller,
# `get controllers` lists exactly these two, LEADER leading.
controllers_are() {
	_want=$(printf '%s\n' "$1=leader" "$2=follower" | sort | tr '\n' ' ' | sed 's/ $//')
	[ "$(controllers_via "$CONTROLLER")" = "$_want" ] && [ "$(controllers_via "$CONTROLLER_B")" = "$_want" ]
}

# decisions_since FILE N: the controller log FILE's "role decision" lines after
# its first N (N from `grep -c 'role decision' FILE` taken before).
decisions_since() { grep 'role decision' "$1" 2>/dev/null | tail -n +"$(($2 + 1))"; }
decisions_count() { grep -c 'role decision' "$1" 2>/dev/null; }

# release_timeline N FROM TO: from the sampler's holder changes after its
# first N (watch_since), the partition of director FROM cut from everything but
# its clients (its eth1 down: the gateway held by nobody), in the sampler's
# ms: "PART REL TAKE DUAL": PART when the gateway was first held by nobody,
# REL when the VIP was (FROM released it, its eth0 still up), TAKE when TO
# held the VIP, DUAL the times of samples with two holders ("none"); "-" for
# a time not seen. ha-partition's check, for one director pair.
release_timeline() {
	watch_since "$1" | awk -v vip="$VIP" -v gw="$GATEWAY" -v to="$3" '
		{ t = substr($2, 2); sub(/ms$/, "", t) }
		$4 == gw && $5 == "-" && part == "" { part = t }
		$4 == vip && $5 == "-" && rel == "" { rel = t }
		$4 == vip && $5 == to && take == "" { take = t }
		$4 == vip && index($5, ",") { dual = dual "," t }
		END { printf "%s %s %s %s\n", part == "" ? "-" : part, rel == "" ? "-" : rel, take == "" ? "-" : take, dual == "" ? "none" : substr(dual, 2) }'
}

# loop_start_every NAME SECS: loop_start's new connections (five at a time),
# SECS apart instead of 0.2 s: the same check at a fraction of the execs, for
# scenarios whose guest runs an etcd cluster and several controllers besides.
# Stopped by loop_stop NAME.
loop_start_every() {
	rm -f "/tmp/loop.$1.stop" "/tmp/loop.$1.ok" "/tmp/loop.$1.err"
	(
		while [ ! -e "/tmp/loop.$1.stop" ]; do
			/usr/sbin/ip netns exec client lab-client tcp "$VIP:554" -n 5 >>"/tmp/loop.$1.ok" 2>>"/tmp/loop.$1.err"
			sleep "$2"
		done
	) &
	eval "LOOP_PID_$1=\$!"
}

#!/bin/sh
# import: issue 12's "Lab:" comparison, in one boot, in dir-a's namespace.
# 1. For each keepalived configuration in import/ (a fwmark virtual_server with
#    persistence and NAT reals; a virtual_server_group of two fwmarks with
#    TCP_CHECKs the reals pass; a vrrp_instance holding the VIP with two fwmark
#    services; plain virtual_server IP PORT services, TCP with real ports and
#    UDP with ops; tunnelled services, lvs_method TUN type ipip, gue with
#    port and remcsum, gre with csum on each real_server): Debian's
#    keepalived 2.2.7 runs it, `ipvsadm -Sn` is kept,
#    keepalived is stopped (SIGTERM: it removes its services) and the kernel
#    must be empty; then `lvsctl import keepalived` (with the marks script,
#    --group edge-1) and `lvsctl apply -f`; once dir-a applied, `ipvsadm -Sn`
#    must equal keepalived's line for line, and table inet lvsctl must mark
#    every (VIP, protocol, ports) of the marks script with its mark. The
#    clusters are deleted before the next configuration.
# 2. The Windows Media guide's own commands (import/wms-guide.sh: the VIP by
#    `ip addr`, iptables -t mangle MARK rules, ipvsadm -A -f 1 -s rr -p 600,
#    three masqueraded reals), 20 connections held through the VIP; then
#    ipvsadm -Sn / iptables-save -t mangle -> `lvsctl import ipvsadm --marks
#    --group edge-1` + the DirectorGroup, `lvsctl apply --adopt`: `ipvsadm -Sn`
#    byte-identical before and after, the service's connection counters not
#    reset (no delete and re-create), the held connections answer throughout,
#    status shows the cluster applied with no error; then the operator removes
#    the iptables rules: lvsctl's nftables marks carry the traffic alone.
# ipvsadm-save is a shell script (`ipvsadm -S $NUMERIC`) that the lab does not
# carry: `ipvsadm -Sn` is what it runs.
# lab-timeout: 360
. ./lib.sh

DATA=/lab/scenarios/import
began=$(uptime_s)

command -v iptables-save >/dev/null || die "no iptables in the guest (deploy/lab/fetch.sh fetches Debian's iptables into the base)"

# ka_run CONF: keepalived in dir-a with CONF, as bench-ha runs it (foreground
# of a background job, syslog facility 1, its own pid files).
ka_run() {
	if [ ! -S /dev/log ]; then
		syslogd -n -O /tmp/keepalived.syslog &
		wait_until 5 test -S /dev/log || die "syslogd did not start"
	fi
	rm -f /run/ka.dir-a.main.pid /run/ka.dir-a.vrrp.pid /run/ka.dir-a.check.pid
	/usr/sbin/ip netns exec dir-a keepalived -n -D -S 1 -f "$1" \
		-p /run/ka.dir-a.main.pid -r /run/ka.dir-a.vrrp.pid -c /run/ka.dir-a.check.pid \
		>>/tmp/keepalived.dir-a.log 2>&1 &
	wait_until 10 test -s /run/ka.dir-a.main.pid || {
		tail -n 20 /tmp/keepalived.dir-a.log /tmp/keepalived.syslog | sed 's/^/    /'
		die "keepalived did not start in dir-a with $1"
	}
}

# gone PID...: status 0 when none of the PIDs is alive (builtins only).
gone() {
	for _p in "$@"; do kill -0 "$_p" 2>/dev/null && return 1; done
	return 0
}

# ka_stop: SIGTERM to keepalived's parent, which stops its children, which
# remove their services and addresses; waits until no keepalived is left.
ka_stop() {
	_ka=$(ka_pids dir-a)
	kill -TERM "$(cat /run/ka.dir-a.main.pid)" 2>/dev/null
	# Its own pids, not a scan of /proc (no_keepalived): every exec is dear in
	# the emulated guest.
	# shellcheck disable=SC2086 # the pids, split on purpose
	wait_until 15 gone $_ka || fail_check "keepalived ($_ka) ended within 15 s of SIGTERM"
}

# ipvs_sorted: dir-a's `ipvsadm -Sn`, sorted (keepalived and the agent add
# services and reals in different orders; the kernel lists them in its hash
# order, which depends on when they were added, not on what they are).
ipvs_sorted() { on dir-a ipvsadm -Sn | LC_ALL=C sort; }

# ipvs_count: services plus reals in dir-a's kernel.
ipvs_count() { on dir-a ipvsadm -Sn | grep -c '^-[Aa] '; }
count_is() { [ "$(ipvs_count)" = "$1" ]; }
sorted_is() { [ "$(ipvs_sorted)" = "$1" ]; }
kernel_empty() { count_is 0; }

# want_marks MARKS: the iptables MARK lines of a marks script as
# "VIP PROTOCOL PORTS MARK" (PORTS as 554 or 1024-5000).
want_marks() {
	awk '/--set-mark/ {
		for (i = 1; i < NF; i++) {
			if ($i == "-p") p = $(i + 1)
			if ($i == "-d") { d = $(i + 1); sub(/\/32$/, "", d) }
			if ($i == "--dport") { o = $(i + 1); sub(/:/, "-", o) }
			if ($i == "--set-mark") m = $(i + 1)
		}
		print d, p, o, m
	}' "$1"
}

# clusters_of FILE: the names of the Cluster documents of a manifest.
clusters_of() { awk '/^kind:/ { k = $2 } /^name:/ && k == "Cluster" { print $2 }' "$1"; }

step "Topology, responders, controller, agent; group edge-1 = dir-a"
topology
start_reals
start_controller
start_agent
cat >/tmp/edge-1.yaml <<'YAML'
kind: DirectorGroup
name: edge-1
directors: [{name: dir-a, priority: 200}]
vipInterface: eth0
YAML
lv apply -f /tmp/edge-1.yaml >/dev/null 2>&1 || die "lvsctl apply -f /tmp/edge-1.yaml"
note "keepalived: $(keepalived -v 2>&1 | head -n 1); iptables: $(iptables --version 2>&1)"

# compare NAME SERVICES+REALS [--group edge-1]: part 1 for import/NAME.conf.
compare() {
	name=$1
	want=$2
	shift 2
	conf=$DATA/$name.conf
	marks=
	[ -e "$DATA/$name.marks" ] && marks="--marks $DATA/$name.marks"

	step "$name: keepalived 2.2 runs $name.conf in dir-a"
	sed -n '/^[^!]/p' "$conf" | sed 's/^/    /'
	ka_run "$conf"
	wait_until 20 count_is "$want" || fail_check "keepalived programmed $want services + reals within 20 s (saw $(ipvs_count))"
	# Settled: the same listing twice, a second apart (keepalived adds a
	# checked real server once its first check passed).
	sleep 1
	ipvs_sorted >"/tmp/$name.ka"
	show on dir-a ipvsadm -Sn
	if [ "$name" = vrrp ]; then
		wait_until 10 holds dir-a "$VIP" || fail_check "keepalived's vrrp_instance holds $VIP on dir-a's eth0 (MASTER)"
		holds dir-a "$VIP" && note "keepalived holds $VIP on eth0"
	fi
	ka_stop
	expect_eq "$name: the kernel is empty once keepalived stopped" "" "$(on dir-a ipvsadm -Sn)"
	[ "$name" = vrrp ] && expect_fail "$name: keepalived removed $VIP" holds dir-a "$VIP"

	step "$name: lvsctl import keepalived $name.conf $marks $*, lvsctl apply"
	# shellcheck disable=SC2086 # $marks is a flag and its value, or nothing
	lvsctl import keepalived "$conf" $marks "$@" >"/tmp/$name.yaml" 2>"/tmp/$name.err"
	expect_eq "$name: lvsctl import exits 0" 0 "$?"
	note "stderr (settings not carried over):"
	sed 's/^/    /' "/tmp/$name.err"
	note "manifest:"
	sed 's/^/    /' "/tmp/$name.yaml"
	after=$(applied_rev)
	out=$(lv apply -f "/tmp/$name.yaml" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed 's/^/    /'
	expect_eq "$name: lvsctl apply -f exits 0" 0 "$rc"
	wait_applied 30 dir-a "$after" || fail_check "$name: dir-a applied the import within 30 s"
	# Applied means programmed; the reals of a checked cluster may follow
	# their first check by a moment.
	wait_until 15 sorted_is "$(cat "/tmp/$name.ka")"
	ipvs_sorted >"/tmp/$name.lv"
	show on dir-a ipvsadm -Sn
	if cmp -s "/tmp/$name.ka" "/tmp/$name.lv"; then
		pass_check "$name: ipvsadm -Sn under lvsctl equals keepalived's, line for line ($(wc -l <"/tmp/$name.lv") lines)"
	else
		fail_check "$name: ipvsadm -Sn under lvsctl equals keepalived's: keepalived only: $(oneline "$(LC_ALL=C comm -23 "/tmp/$name.ka" "/tmp/$name.lv")"); lvsctl only: $(oneline "$(LC_ALL=C comm -13 "/tmp/$name.ka" "/tmp/$name.lv")")"
	fi
	if [ -e "$DATA/$name.marks" ]; then
		# One listing of table inet lvsctl, every rule of the script checked
		# against it (uncovered, lib.sh: "VIP PROTOCOL FIRST LAST MARK").
		want_marks "$DATA/$name.marks" | awk '{ n = split($3, p, "-"); print $1, $2, p[1], (n > 1 ? p[2] : p[1]), $4 }' >"/tmp/$name.want"
		nft_marks dir-a >"/tmp/$name.nft"
		sed 's/^/    nft: /' "/tmp/$name.nft"
		expect_eq "$name: table inet lvsctl marks every rule of $name.marks" "" "$(uncovered "/tmp/$name.nft" "/tmp/$name.want")"
	fi
	expect_eq "$name: dir-a has no errors" '[]' "$(status_field dir-a errors)"
	[ "$name" = vrrp ] && expect_ok "$name: lvsctl holds $VIP on dir-a's eth0" wait_until 10 holds dir-a "$VIP"

	for c in $(clusters_of "/tmp/$name.yaml"); do
		lv delete cluster "$c" >/dev/null 2>&1 || fail_check "lvsctl delete cluster $c"
	done
	wait_until 15 kernel_empty || fail_check "$name: the kernel is empty after lvsctl delete (saw $(oneline "$(on dir-a ipvsadm -Sn)"))"
}

compare fwmark 4 --group edge-1
compare group 6 --group edge-1
# No --group: the vrrp_instance EDGE_1 makes the group (edge-1, dir-a from router_id).
compare vrrp 6
compare plain 6 --group edge-1
compare tunnel 9 --group edge-1

step "The Windows Media guide's commands, by hand, in dir-a"
sed -n '/^[^#]/p' "$DATA/wms-guide.sh" | sed 's/^/    /'
on dir-a sh "$DATA/wms-guide.sh" || fail_check "the guide's script ran without error"
show on dir-a ipvsadm -Sn
show on dir-a iptables-save -t mangle
wait_tcp "$VIP:554" 10 client || fail_check "the client reaches $VIP:554 through the guide's setup"
expect_match "tcp 554 answered by a real server (iptables marks)" '^rs[1-3]$' "$(on client lab-client tcp "$VIP:554" 2>&1)"
expect_match "udp 3000 answered by a real server (iptables marks)" '^rs[1-3]$' "$(on client lab-client udp "$VIP:3000" 2>&1)"
hold_start wms 40000 20 || fail_check "20 connections held through $VIP:554"
on dir-a ipvsadm -Sn >/tmp/wms.before
conns_before=$(on dir-a ipvsadm -Ln --stats | awk '$1 == "FWM" { print $3 }')
note "service FWM 1 counted $conns_before connections"

step "ipvsadm -Sn and iptables-save -t mangle -> lvsctl import ipvsadm --marks --group edge-1"
on dir-a ipvsadm -Sn >/tmp/s.txt
on dir-a iptables-save -t mangle >/tmp/m.txt
lvsctl import ipvsadm /tmp/s.txt --marks /tmp/m.txt --group edge-1 >/tmp/w.yaml 2>/tmp/w.err
expect_eq "lvsctl import ipvsadm exits 0" 0 "$?"
note "stderr:"
sed 's/^/    /' /tmp/w.err
{
	cat /tmp/w.yaml
	echo ---
	cat /tmp/edge-1.yaml
} >/tmp/w-all.yaml
sed 's/^/    /' /tmp/w-all.yaml

step "lvsctl apply --adopt -f w.yaml: the kernel is not touched"
after=$(applied_rev)
show lv apply --adopt -f /tmp/w-all.yaml
wait_applied 30 dir-a "$after" || fail_check "dir-a applied the adopting revision within 30 s"
show lv status
on dir-a ipvsadm -Sn >/tmp/wms.after
if cmp -s /tmp/wms.before /tmp/wms.after; then
	pass_check "ipvsadm -Sn byte-identical before and after the adoption"
else
	fail_check "ipvsadm -Sn byte-identical before and after the adoption: before $(oneline "$(cat /tmp/wms.before)"); after $(oneline "$(cat /tmp/wms.after)")"
fi
conns_after=$(on dir-a ipvsadm -Ln --stats | awk '$1 == "FWM" { print $3 }')
expect_ok "the service's connection counter went on ($conns_before -> $conns_after: not deleted and re-created)" \
	[ "${conns_after:-0}" -ge "${conns_before:-1}" ]
expect_eq "dir-a has no errors" '[]' "$(status_field dir-a errors)"
status=$(lv status cluster "$(clusters_of /tmp/w.yaml | head -n 1)" 2>&1)
printf '%s\n' "$status" | sed 's/^/    /'
expect_eq "the agent logged no error" "" "$(grep -E 'level=ERROR|with errors' /tmp/agent.log | tail -n 5)"
for pp in "tcp 554" "udp 554" "tcp 1755" "udp 1755" "udp 1024-5000"; do
	# shellcheck disable=SC2086 # split "tcp 554" into protocol and port
	set -- $pp
	expect_ok "lvsctl's nftables marks $1 $2 of $VIP with fwmark 1" marked dir-a "$VIP" "$1" "$2" 1
done

step "The operator removes the guide's iptables rules: lvsctl's marks carry the traffic"
on dir-a iptables -t mangle -F PREROUTING
show on dir-a iptables-save -t mangle
expect_eq "no MARK rule is left in iptables" "" "$(on dir-a iptables-save -t mangle | grep -- '--set-xmark\|--set-mark')"
expect_match "a new tcp 554 connection answered by a real server" '^rs[1-3]$' "$(on client lab-client tcp "$VIP:554" 2>&1)"
expect_match "udp 3000 answered by a real server" '^rs[1-3]$' "$(on client lab-client udp "$VIP:3000" 2>&1)"
expect_match "tcp 1755 answered by a real server" '^rs[1-3]$' "$(on client lab-client tcp "$VIP:1755" 2>&1)"
r=$(hold_stop wms)
note "$r"
expect_eq "the 20 held connections all answered throughout" "20/20 0" "$(hold_field "$r" survived) $(hold_field "$r" failed)"
expect_eq "ipvsadm -Sn still the guide's" "$(cat /tmp/wms.before)" "$(on dir-a ipvsadm -Sn)"

note "scenario time: $(awk -v a="$began" -v b="$(uptime_s)" 'BEGIN { printf "%.1f s", b - a }')"
finish

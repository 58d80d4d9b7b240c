#!/bin/sh
# scale: a few hundred WMS-style clusters (SCALE_CLUSTERS, default 300) in ONE
# `lvsctl apply -f`, each with its own VIP (198.18.0.1, .2, ...: RFC 2544's
# benchmarking range, routed by the client to dir-a), the five WMS port
# ranges (tcp/udp 554, tcp/udp 1755, udp 1024-5000), and two or three
# masqueraded reals out of rs1-rs3 with weights of their own. Most clusters
# are wlc with persistence 600; ten, spread over the range from the first to
# the last, are rr without persistence so that their traffic shows the
# balance.
#
# Checked, against what the manifest asked for:
#   - status: dir-a applied the desired revision, no errors, ACTIVE;
#   - ipvsadm -Ln: exactly one FWM service per cluster, with the cluster's
#     scheduler, persistence and reals (address, Masq, weight), joined to the
#     cluster through the fwmark the controller allocated (lvsctl get);
#   - nftables: every (VIP, protocol, ports) of every cluster is marked with
#     its cluster's fwmark by the maps of table inet lvsctl, and nothing else
#     is;
#   - the N VIPs are on dir-a's eth0;
#   - traffic: one TCP 554 connection and one UDP 3000 datagram to EVERY VIP
#     are answered by one of that cluster's reals; 12 TCP connections to each
#     of the ten rr clusters split evenly over its reals (6/6 or 4/4/4).
# LAB_ENV=SCALE_CLUSTERS=20 deploy/lab/run.sh scale is the quick version.
# lab-timeout: 600
. ./lib.sh

N=${SCALE_CLUSTERS:-300}
case $N in '' | *[!0-9]*) die "SCALE_CLUSTERS must be a number, not '$N'" ;; esac
[ "$N" -ge 1 ] && [ "$N" -le 2000 ] || die "SCALE_CLUSTERS must be 1-2000, not $N"
VIP_NET=198.18.0.0/15
rm -f /tmp/scale.*

# /tmp/scale.yaml is the manifest; the other files are what it asks for:
#   scale.expected  "VIP SCHEDULER PERSISTENCE ADDR:PORT/FWD/WEIGHT..." per cluster
#   scale.ports     "VIP PROTOCOL PORTS" per port range
#   scale.reals     "VIP rsN..." per cluster (the names lab-responder answers with)
#   scale.samples   "VIP rsN..." per rr cluster
# Cluster I (1-based) has VIP 198.18.(I-1)/200.(I-1)%200+1 and reals by I mod 3:
# 0: rs1-rs3, 1: rs1 rs2, 2: rs2 rs3; real rsJ's weight is J*100 + I mod 50.
awk -v n="$N" '
	function out(f, s) { print s >> ("/tmp/scale." f) }
	BEGIN {
		for (k = 0; k < 10; k++) sample[int(1 + k * (n - 1) / 9 + 0.5)] = 1
		w = length(n "")
		if (w < 3) w = 3
		split("1 2 3|1 2|2 3", sets, "|")
		for (i = 1; i <= n; i++) {
			vip = sprintf("198.18.%d.%d", int((i - 1) / 200), (i - 1) % 200 + 1)
			rr = (i in sample)
			split(sets[i % 3 + 1], js, " ")
			y = sprintf("kind: Cluster\nname: wms-%0" w "d\ndirectorGroup: edge-1\nvips: [%s]\n", i, vip)
			y = y "ports:\n  - {protocol: tcp, port: 554}\n  - {protocol: udp, port: 554}\n"
			y = y "  - {protocol: tcp, port: 1755}\n  - {protocol: udp, port: 1755}\n"
			y = y "  - {protocol: udp, ports: 1024-5000}\n"
			y = y (rr ? "scheduler: rr\n" : "scheduler: wlc\npersistence: {timeout: 600s}\n")
			y = y "forwarding: masq\nreals:\n"
			e = vip (rr ? " rr -" : " wlc 600")
			names = vip
			for (x = 1; x in js; x++) {
				j = js[x]
				weight = rr ? 100 : j * 100 + i % 50
				y = y sprintf("  - {address: 198.51.100.%d, weight: %d}\n", j, weight)
				e = e sprintf(" 198.51.100.%d:0/Masq/%d", j, weight)
				names = names " rs" j
			}
			out("yaml", y "---")
			out("expected", e)
			out("reals", names)
			if (rr) out("samples", names)
			out("ports", vip " tcp 554\n" vip " udp 554\n" vip " tcp 1755\n" vip " udp 1755\n" vip " udp 1024-5000")
		}
		out("yaml", "kind: DirectorGroup\nname: edge-1\ndirectors: [{name: dir-a, priority: 200}]\nvipInterface: eth0")
	}'
sort -o /tmp/scale.expected /tmp/scale.expected

# same_table WHAT EXPECTED-FILE SEEN-FILE: a check that two sorted tables are
# equal; on a difference, how many lines differ and the first few.
same_table() {
	if cmp -s "$2" "$3"; then
		pass_check "$1 ($(wc -l <"$3") lines)"
		return 0
	fi
	_d=$(diff "$2" "$3" | grep -E '^[-+][^-+]')
	fail_check "$1: $(printf '%s\n' "$_d" | grep -c '^-') expected lines missing, $(printf '%s\n' "$_d" | grep -c '^+') unexpected; first differences (- expected, + seen): $(oneline "$(printf '%s\n' "$_d" | head -n 8)")"
	return 1
}

step "Topology, responders, controller, agent; the client routes $VIP_NET to dir-a"
topology
on client ip route add "$VIP_NET" via "$DIR_A_CLIENT_IP" || die "client: no route to $VIP_NET"
start_reals
start_controller
start_agent

step "Apply $N WMS-style clusters in one manifest ($(wc -l </tmp/scale.yaml) lines)"
show head -n 20 /tmp/scale.yaml
began=$(uptime_s)
out=$(lv apply -f /tmp/scale.yaml 2>&1)
rc=$?
applied_at=$(uptime_s)
printf '%s\n' "$out" | head -n 3 | sed 's/^/    /'
note "... ($(printf '%s\n' "$out" | wc -l) lines; exit $rc; $(awk -v a="$began" -v b="$applied_at" 'BEGIN { printf "%.1f", b - a }') s)"
expect_eq "apply creates $N clusters" "$N" "$(printf '%s\n' "$out" | grep -Ec '^cluster/wms-[0-9]+ created')"
if wait_applied 200; then
	pass_check "dir-a applied the desired revision, $(awk -v a="$began" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s after the apply began"
else
	fail_check "dir-a applied the desired revision within 200 s"
fi

step "lvsctl status: dir-a ACTIVE, connected, applied = desired, no errors"
show lv status
expect_eq "dir-a role" '"ACTIVE"' "$(status_field dir-a role)"
expect_eq "dir-a connected" true "$(status_field dir-a connected)"
d=$(status_field dir-a desiredRevision)
expect_match "dir-a desiredRevision is set" '^[1-9][0-9]*$' "$d"
expect_eq "dir-a appliedRevision = desiredRevision" "$d" "$(status_field dir-a appliedRevision)"
expect_eq "dir-a has no errors" '[]' "$(status_field dir-a errors)"

step "The controller's fwmarks: one per cluster, all different"
# lvsctl get clusters: NAME GROUP VIPS PORTS FWMARK ...; one VIP each here.
lv get clusters 2>&1 | awk 'NR > 1 && $3 ~ /^198\.18\./ { print $3, $5 }' | sort >/tmp/scale.marks
expect_eq "clusters listed with a VIP in $VIP_NET" "$N" "$(wc -l </tmp/scale.marks)"
expect_eq "distinct non-zero fwmarks" "$N" "$(awk '$2 > 0 { print $2 }' /tmp/scale.marks | sort -u | wc -l)"

step "IPVS on dir-a: $N FWM services with each cluster's scheduler, persistence and reals"
on dir-a ipvsadm -Ln >/tmp/scale.ipvs 2>&1
show head -n 12 /tmp/scale.ipvs
services=$(grep -cE '^(TCP|UDP|SCTP|FWM) ' /tmp/scale.ipvs)
expect_eq "virtual services in all" "$N" "$services"
expect_eq "FWM services" "$N" "$(grep -cE '^FWM ' /tmp/scale.ipvs)"
# "MARK REAL" per real (sorted), then one line per service: VIP (through the
# controller's marks) SCHEDULER PERSISTENCE REALS.
awk '
	$1 == "FWM" { mark = $2; sched[mark] = $3; persist[mark] = ($4 == "persistent" ? $5 : "-"); next }
	$1 ~ /^(TCP|UDP|SCTP)$/ { mark = ""; next }
	$1 == "->" && $2 ~ /^[0-9]/ && mark != "" { print "R", mark, $2 "/" $3 "/" $4 }
	END { for (m in sched) print "S", m, sched[m], persist[m] }' /tmp/scale.ipvs | sort -k1,1 -k2n -k3 >/tmp/scale.ipvs.flat
awk '
	FILENAME == "/tmp/scale.marks" { vip[$2] = $1; next }
	$1 == "S" { line[$2] = $3 " " $4; next }
	$1 == "R" { reals[$2] = reals[$2] " " $3 }
	END { for (m in line) print (m in vip ? vip[m] : "fwmark-" m "-of-no-cluster"), line[m] reals[m] }' \
	/tmp/scale.marks /tmp/scale.ipvs.flat | sort >/tmp/scale.ipvs.seen
same_table "every cluster's service: VIP scheduler persistence address/forwarding/weight" /tmp/scale.expected /tmp/scale.ipvs.seen

step "nftables on dir-a: every VIP, protocol and port range of every cluster carries its fwmark"
on dir-a nft list table inet lvsctl >/tmp/scale.nft 2>&1
show head -n 12 /tmp/scale.nft
note "... ($(wc -l </tmp/scale.nft) lines)"
# What the clusters ask for, "VIP PROTOCOL FIRST LAST MARK", against the maps'
# elements (nft_marks, uncovered and stray in lib.sh).
nft_marks dir-a >/tmp/scale.nft.seen
awk 'NR == FNR { mark[$1] = $2; next }
	{ n = split($3, p, "-"); print $1, $2, p[1], (n > 1 ? p[2] : p[1]), mark[$1] }' \
	/tmp/scale.marks /tmp/scale.ports >/tmp/scale.nft.want
note "$(wc -l </tmp/scale.nft.seen) map elements for $(wc -l </tmp/scale.nft.want) port ranges"
if [ -s /tmp/scale.nft.seen ]; then
	expect_eq "port ranges of the $N clusters not marked with their cluster's fwmark" "" "$(uncovered /tmp/scale.nft.seen /tmp/scale.nft.want | head -n 8)"
	expect_eq "elements that mark more than the clusters ask for" "" "$(stray /tmp/scale.nft.seen /tmp/scale.nft.want | head -n 8)"
	expect_eq "VIPs with marks" "$N" "$(cut -d' ' -f1 /tmp/scale.nft.seen | sort -u | wc -l)"
else
	fail_check "table inet lvsctl on dir-a holds map elements: saw none"
fi

step "The $N VIPs are on dir-a's eth0"
on dir-a ip -4 -o addr show dev eth0 | awk '{ sub(/\/.*/, "", $4); if ($4 ~ /^198\.18\./) print $4 }' | sort >/tmp/scale.vips.seen
cut -d' ' -f1 /tmp/scale.expected >/tmp/scale.vips.expected
same_table "VIPs on eth0" /tmp/scale.vips.expected /tmp/scale.vips.seen

step "Traffic to every VIP: TCP 554 and UDP 3000 answered by one of its cluster's reals"
vips=$(cut -d' ' -f1 /tmp/scale.expected)
# answered_by_own PORT: "VIP ok" per VIP whose answer came from one of its
# reals, else "VIP answered-by-NAME" (or "VIP no-answer").
answered_by_own() {
	awk -v port="$1" '
		FILENAME == "/tmp/scale.reals" { for (i = 2; i <= NF; i++) own[$1 " " $i] = 1; want[$1] = 1; next }
		{ v = $1; sub(":" port "$", "", v); got[v] = $2 }
		END {
			for (v in want) {
				if (!(v in got)) print v, "no-answer"
				else if ((v " " got[v]) in own) print v, "ok"
				else print v, "answered-by-" got[v]
			}
		}' /tmp/scale.reals - | sort
}
for pp in "tcp 554" "udp 3000"; do
	# shellcheck disable=SC2086 # "tcp 554" into protocol and port
	set -- $pp
	t0=$(uptime_s)
	# shellcheck disable=SC2046 # one address per VIP
	on client lab-client "$1" $(for v in $vips; do echo "$v:$2"; done) --timeout 1s 2>/tmp/scale.sweep.err | answered_by_own "$2" >/tmp/scale.sweep
	note "$1 $2 to $N VIPs: $(awk -v a="$t0" -v b="$(uptime_s)" 'BEGIN { printf "%.1f", b - a }') s"
	expect_eq "$1 $2: VIPs answered by one of their own reals" "$N" "$(grep -c ' ok$' /tmp/scale.sweep)"
	bad=$(grep -v ' ok$' /tmp/scale.sweep | head -n 5)
	[ -n "$bad" ] && note "first failures: $(oneline "$bad"); $(head -n 3 /tmp/scale.sweep.err | tr '\n' ' ')"
done

step "Balance: 12 TCP connections to each of the $(wc -l </tmp/scale.samples) rr clusters split evenly over its reals"
show cat /tmp/scale.samples
# shellcheck disable=SC2046 # one address per sampled VIP
got=$(on client lab-client tcp $(awk '{ print $1 ":554" }' /tmp/scale.samples) -n 12 --count-by-server 2>&1)
want=$(awk '{ for (i = 2; i <= NF; i++) print $1 ":554", $i, 12 / (NF - 1) }' /tmp/scale.samples)
expect_eq "rr spread per sampled VIP (VIP:port real connections)" "$want" "$got"
show on dir-a ipvsadm -Ln --stats -f "$(awk -v v="$(head -n 1 /tmp/scale.samples | cut -d' ' -f1)" '$1 == v { print $2 }' /tmp/scale.marks)"

step "The agent's log"
expect_eq "the agent logged no error" "" "$(grep -E 'level=(ERROR|WARN)|with errors' /tmp/agent.log | head -n 5)"

finish

#!/bin/sh
# bench-ipvs: the agent's kernel work against ipvsadm's, on the same rules, in
# the same boot (make bench; not in the default lab run). The lab's kernel
# runs in software emulation, so the figures to keep are the ratios.
#
# Each run makes two fresh network namespaces and, in an order that
# alternates between runs:
#   - bench-ipvsadm-R: `ipvsadm -R` of BENCH_SERVICES (2000) firewall-mark
#     services x BENCH_REALS (10) masqueraded reals (wlc, persistent 600);
#   - bench-agent-R: lab-bench agent, the agent's reconciler with its real
#     IPVS, nftables, address and state backends, applies the same services
#     and reals (plus one nftables mark per service, tcp 80 on its VIP; role
#     STANDBY, so no VIP is added: ipvsadm adds none) from nothing: the cold
#     apply. Then, with nothing to change, the same Apply again: the drift
#     check, which reads the whole kernel back; against it, `ipvsadm -Sn` of
#     the same state.
# Checked in every run: both namespaces' `ipvsadm -Sn` list the same services
# and reals, as many as asked; the agent reported no errors; the drift check
# changed nothing. Each run's figures are printed ("  run R: ..."), and their
# medians over BENCH_RUNS (3) runs as
#   LAB-BENCH cold_apply services=... reals=... runs=... agent_ms=... ipvsadm_ms=... ratio=... agent_ipvs_read_ms=...
#   LAB-BENCH drift_check services=... reals=... runs=... agent_ms=... ipvsadm_ms=... ratio=... agent_ipvs_read_ms=...
# ratio = agent / ipvsadm (below 1: the agent is faster), the median of the
# runs' own ratios (each run's pair is measured close together, under the
# same load of the host; agent_ms and ipvsadm_ms are the medians of the
# times themselves, so their quotient may differ); the agent_*_ms
# after it are the medians of where its Apply's time went (IPVS reads, IPVS
# writes, nftables, state saves, the rest: lab-bench agent). Times: the agent's
# Apply alone (its backends are open, as in a running agent); ipvsadm's whole
# process. The agent's state directory is on the guest's tmpfs, where fsync
# is cheap.
# lab-timeout: 1200
. ./lib.sh

SERVICES=${BENCH_SERVICES:-2000}
REALS=${BENCH_REALS:-10}
RUNS=${BENCH_RUNS:-3}

# fresh_ns NS: a new namespace with an eth0 (a dummy: the bench's director
# group names it as its VIP interface).
fresh_ns() {
	netns_up "$1" || die "cannot create namespace $1"
	on "$1" ip link add eth0 type dummy && on "$1" ip link set eth0 up
}

# field NAME FILE: the value of NAME=VALUE in the last line of FILE holding it.
field() { sed -nE "s/.*(^| )$1=([^ ]+).*/\\2/p" "$2" | tail -n 1; }

# median NAME: the median of NAME over the runs' raw files.
median() {
	for _r in $(seq 1 "$RUNS"); do field "$1" "/tmp/bench.raw.$_r"; done | sort -n |
		awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# parts NAME: the medians of the parts of the agent's Apply NAME (agent_cold,
# agent_drift): time in IPVS reads, IPVS writes, nftables, state saves, the rest.
parts() {
	for _p in ipvs_read ipvs_write nft state other; do
		printf ' agent_%s_ms=%s' "$_p" "$(median "${1}_${_p}_ms")"
	done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }

# counts FILE: "SERVICES REALS" in an ipvsadm -Sn listing.
counts() { echo "$(grep -c '^-A ' "$1") $(grep -c '^-a ' "$1")"; }

step "The rules: $SERVICES firewall-mark services x $REALS reals, $RUNS runs"
lab-bench rules -services "$SERVICES" -reals "$REALS" >/tmp/bench.rules || die "lab-bench rules failed"
show head -n 3 /tmp/bench.rules
note "... $(wc -l </tmp/bench.rules) lines of ipvsadm -R input"

valid=1
for r in $(seq 1 "$RUNS"); do
	step "Run $r of $RUNS"
	a=bench-agent-$r
	i=bench-ipvsadm-$r
	raw=/tmp/bench.raw.$r
	: >"$raw"
	fresh_ns "$a"
	fresh_ns "$i"
	# Alternate who goes first, so that neither always meets the warmer kernel.
	if [ $((r % 2)) = 1 ]; then order="ipvsadm agent"; else order="agent ipvsadm"; fi
	for who in $order; do
		case $who in
		ipvsadm)
			if on "$i" lab-bench time ipvsadm_restore -- ipvsadm -R </tmp/bench.rules 2>>"$raw"; then
				note "ipvsadm -R: $(field ipvsadm_restore_ms "$raw") ms"
			else
				fail_check "run $r: ipvsadm -R: $(oneline "$(tail -n 3 "$raw")")"
				valid=0
			fi
			;;
		agent)
			if on "$a" lab-bench agent -services "$SERVICES" -reals "$REALS" -state-dir "/tmp/bench-state-$r" \
				-drift 1 >>"$raw" 2>/tmp/bench.agent.err; then
				note "agent: $(grep -h agent_cold "$raw")"
				note "agent: $(grep -h agent_drift "$raw")"
			else
				fail_check "run $r: the agent's applies: $(oneline "$(cat "$raw" /tmp/bench.agent.err | tail -n 8)")"
				valid=0
			fi
			;;
		esac
	done
	# The drift check's counterpart: ipvsadm reading the same state back.
	if on "$a" lab-bench time ipvsadm_save -- ipvsadm -Sn >"/tmp/bench.save.agent" 2>>"$raw"; then
		note "ipvsadm -Sn: $(field ipvsadm_save_ms "$raw") ms"
	else
		fail_check "run $r: ipvsadm -Sn in $a failed"
		valid=0
	fi
	on "$i" ipvsadm -Sn >/tmp/bench.save.ipvsadm
	expect_eq "run $r: ipvsadm -R made the services and reals asked for" "$SERVICES $((SERVICES * REALS))" "$(counts /tmp/bench.save.ipvsadm)" || valid=0
	# Sorted lines: the kernel lists services in its hash order, which depends on
	# the order they were made in; each line names its service.
	sort /tmp/bench.save.agent >/tmp/bench.save.agent.sorted
	sort /tmp/bench.save.ipvsadm >/tmp/bench.save.ipvsadm.sorted
	if cmp -s /tmp/bench.save.agent.sorted /tmp/bench.save.ipvsadm.sorted; then
		pass_check "run $r: the agent's IPVS state is ipvsadm -R's (ipvsadm -Sn, $(wc -l </tmp/bench.save.agent) lines)"
	else
		fail_check "run $r: the agent's IPVS state differs from ipvsadm -R's: $(oneline "$(diff /tmp/bench.save.ipvsadm.sorted /tmp/bench.save.agent.sorted | grep -E '^[-+][^-+]' | head -n 6)")"
		valid=0
	fi
	# Each run's own ratios: its pair of measurements is taken close together, so
	# they share the host's load more than runs do.
	echo "cold_ratio=$(ratio "$(field agent_cold_ms "$raw")" "$(field ipvsadm_restore_ms "$raw")")" \
		"drift_ratio=$(ratio "$(field agent_drift_ms "$raw")" "$(field ipvsadm_save_ms "$raw")")" >>"$raw"
	note "$a: table inet lvsctl is $(on "$a" nft list table inet lvsctl | wc -l) lines"
	sed "s/^/  run $r: /" "$raw"
	# Free the kernel's memory for the next run.
	ip netns del "$a"
	ip netns del "$i"
done

step "Medians of $RUNS runs"
if [ "$valid" = 1 ]; then
	cold_a=$(median agent_cold_ms)
	cold_i=$(median ipvsadm_restore_ms)
	drift_a=$(median agent_drift_ms)
	drift_i=$(median ipvsadm_save_ms)
	size="services=$SERVICES reals=$REALS runs=$RUNS"
	echo "LAB-BENCH cold_apply $size agent_ms=$cold_a ipvsadm_ms=$cold_i ratio=$(median cold_ratio)$(parts agent_cold)"
	echo "LAB-BENCH drift_check $size agent_ms=$drift_a ipvsadm_ms=$drift_i ratio=$(median drift_ratio)$(parts agent_drift)"
else
	note "no LAB-BENCH lines: a run failed its checks, so its times measure something else"
fi

finish

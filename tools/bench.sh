#!/usr/bin/env bash
# bench.sh: runs lvsctl's benchmarks (`make bench`) and writes docs/benchmarks.md.
#
# Benchmarks measure; they are not timed tests and nothing here fails on a slow figure. Each
# Go benchmark reports its own figures (b.ReportMetric: ms/apply, cpu-ms/op, MiB, ...); this
# script runs them with a fixed iteration count (their set-up is large: 10,000 clusters), keeps
# the raw `go test -bench` output in docs/benchmarks.raw.txt, and renders every reported figure
# into a table. The lab's figures (real IPVS under qemu) are ratios measured in one boot.
#
# As root (the nftables benchmark makes a network namespace; the lab boots qemu).
#   tools/bench.sh            everything
#   BENCH_LAB=0 tools/bench.sh  without the lab
#   BENCH_RENDER=1 tools/bench.sh  only render docs/benchmarks.md again from the raw output
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
export LVSCTL_REQUIRE_PRIVILEGED=1

out=docs/benchmarks.md
raw=docs/benchmarks.raw.txt
if [ "${BENCH_RENDER:-0}" != 1 ]; then
: >"$raw"

# One line per benchmark run: package, -bench pattern, -benchtime, the issue's measure number.
benches=(
	"./controlplane/config|BenchmarkApplyOneCluster|200x|1"
	"./controlplane/config|BenchmarkApplyTenThousandClusters|1x|1"
	"./e2e|BenchmarkPropagation$|30x|2"
	"./e2e|BenchmarkPropagationFanout|30x|2"
	"./e2e|BenchmarkControllerMemory|1x|3"
	"./e2e|BenchmarkCancelledApply|5x|cancel"
	"./agent/daemon|BenchmarkAgent|5x|4"
	"./agent/nft|BenchmarkApply10kClusters|5x|6"
	"./controlplane/fanout|BenchmarkSnapshotSize|1x|sizes"
	"./controlplane/fleet|BenchmarkReport|20x|sizes"
)

for b in "${benches[@]}"; do
	IFS='|' read -r pkg pattern benchtime measure <<<"$b"
	if [ ! -d "$pkg" ]; then
		echo "bench: $pkg does not exist, skipped" >&2
		continue
	fi
	echo "bench: $pkg $pattern ($benchtime)" >&2
	echo "# measure=$measure pkg=$pkg" >>"$raw"
	go test -run '^$' -bench "$pattern" -benchtime "$benchtime" -timeout 30m "$pkg" | tee -a "$raw" >&2
done

lab=""
if [ "${BENCH_LAB:-1}" = 1 ]; then
	# bench-ipvs: the agent against ipvsadm; bench-ha: takeover against keepalived's VRRP.
	for run in bench-ipvs:5 bench-ha:takeover; do
		scenario=${run%%:*}
		echo "bench: lab $scenario" >&2
		deploy/lab/run.sh "$scenario" >&2 || true
		lab=""
		if [ -f "deploy/lab/.build/logs/$scenario.log" ]; then
			lab=$(grep -a 'LAB-BENCH' "deploy/lab/.build/logs/$scenario.log" | sed 's/\r$//' || true)
		fi
		echo "# measure=${run#*:} pkg=lab" >>"$raw"
		echo "$lab" >>"$raw"
	done
fi
fi

{
	cat <<EOF
# Benchmarks

Written by \`make bench\` (\`tools/bench.sh\`) on $(date -u +%Y-%m-%d), $(nproc) cores,
$(uname -r), $(go version | awk '{print $3}'). Raw output: \`docs/benchmarks.raw.txt\`.
Rerun: \`make bench\` as root (\`BENCH_LAB=0 make bench\` skips the qemu lab). What each measure
is and the goals are in issues 8 (fleet scale, measures 1-5) and 7 (failover: takeover); how the numbers were reached is in \`docs/design.md\`.

Fake kernels where the host has no real one (IPVS), real gRPC over loopback, the embedded etcd,
the host kernel's nftables in a network namespace, and Debian's kernel under qemu for IPVS.
Figures of one run: timings on a shared 2-core machine move by tens of percent between runs;
the lab compares only ratios measured in the same boot.

| measure | benchmark | figures |
| --- | --- | --- |
EOF
	awk '
		/^# measure=/ { split($2, m, "="); measure = m[2]; next }
		/^Benchmark/ {
			name = $1; sub(/-[0-9]+$/, "", name)
			figs = ""
			for (i = 3; i + 1 <= NF; i += 2) {
				if ($(i+1) == "B/op" || $(i+1) == "allocs/op") continue
				if ($(i+1) == "ns/op") { figs = figs (figs == "" ? "" : ", ") sprintf("%.3g", $i / 1e6) " ms/op (wall)"; continue }
				figs = figs (figs == "" ? "" : ", ") $i " " $(i+1)
			}
			if (figs == "") figs = $3 " " $4
			printf "| %s | `%s` | %s |\n", measure, name, figs
		}
		/^LAB-BENCH/ {
			name = $2; figs = ""
			for (i = 3; i <= NF; i++) figs = figs (figs == "" ? "" : ", ") $i
			printf "| %s | lab `%s` | %s |\n", measure, name, figs
		}
	' "$raw"
	echo
	cat docs/benchmarks.notes.md 2>/dev/null || true
} >"$out"
echo "bench: wrote $out" >&2

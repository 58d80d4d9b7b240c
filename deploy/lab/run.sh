#!/bin/bash
# run.sh [SCENARIO...]: run lab scenarios in Debian's kernel under qemu.
# run.sh --demo: the newcomer's walk-through (scenarios/demo.sh) with the
# console streamed live; exits non-zero if the demo's checks fail.
#
# This machine's kernel has no IPVS, so each scenario boots a small VM (one
# boot per scenario: a clean kernel each time, no state leaks between them)
# whose /init runs deploy/lab/scenarios/SCENARIO.sh and prints
# "LAB-VERDICT SCENARIO PASS|FAIL rc=N". With no arguments, every scenario
# but demo (it repeats what wms proves, for a reader: run it with --demo)
# and the bench-* ones (measurements: run.sh bench-ipvs, as make bench does).
#
# Steps: fetch.sh (cached), build the static Go binaries into $LAB_BIN (and
# the agent's IPVS backend tests as $LAB_BIN/ipvs-backend.test, for the
# ipvs-backend scenario),
# build-initramfs.sh, then one qemu boot per scenario. Console logs go to
# deploy/lab/.build/logs/SCENARIO.log. Exits non-zero if any scenario failed
# or printed no verdict.
#
# Environment:
#   LAB_VERBOSE=1      stream each console live (the demo uses this)
#   LAB_SHELL=1        after the scenario, a shell on the guest console
#                      (interactive; implies LAB_VERBOSE; one scenario only)
#   LAB_TIMEOUT=SECS   scenario time limit inside the guest (default: the
#                      scenario's "# lab-timeout: SECS" line, else 240);
#                      the boot's wall-clock limit is this plus 90 s
#   LAB_ACCEL=tcg|kvm  default tcg (software emulation). KVM is opt-in: on
#                      the project's machines /dev/kvm exists, qemu accepts
#                      it, and the guest kernel then hangs after the BIOS.
#   LAB_ENV="N=V ..."  variables exported to the scenario in the guest (e.g.
#                      LAB_ENV=SCALE_CLUSTERS=20 for a quick scale run);
#                      values without spaces
#   LAB_BIN=DIR        where the Go binaries are built (default .build/bin)
#   LAB_CACHE=DIR      fetch cache (default /var/cache/lvsctl-lab)
#
# A scenario's "# lab-memory: MB" line sets the guest's memory (default
# 1024), and "# lab-needs: EXTRA" boots it with initrd-EXTRA.img (see
# build-initramfs.sh: ffmpeg), which is built only when a scenario to run
# needs it.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$LAB_DIR/../.." && pwd)
BUILD=$LAB_DIR/.build
export LAB_BIN=${LAB_BIN:-$BUILD/bin}
VERBOSE=${LAB_VERBOSE:-0}
SHELL_MODE=${LAB_SHELL:-0}
[ "$SHELL_MODE" = 1 ] && VERBOSE=1

say() { echo "lab: $*"; }
# qemu's stderr without its warning that fw_cfg names should start with
# "opt/" (etc/sercon-port is SeaBIOS's own name, see below).
quiet_qemu() { grep -v 'fw_cfg item names should be prefixed' >&2 || true; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }

# Scenarios: the arguments, or every scenarios/*.sh but the helpers, the
# demo and the benchmarks (bench-*.sh: they measure, not check; make bench
# runs them by name).
if [ "${1:-}" = --demo ]; then
	[ $# = 1 ] || { say "--demo takes no other arguments"; exit 2; }
	VERBOSE=1
	set -- demo
fi
scenarios=()
if [ $# -gt 0 ]; then
	for s in "$@"; do
		s=${s%.sh}
		s=${s##*/}
		[ -f "$LAB_DIR/scenarios/$s.sh" ] || { say "no scenario $LAB_DIR/scenarios/$s.sh"; exit 2; }
		scenarios+=("$s")
	done
else
	for f in "$LAB_DIR"/scenarios/*.sh; do
		s=$(basename "$f" .sh)
		case $s in
		lib | demo | bench-*) ;; # helpers, the walk-through, benchmarks (make bench)
		*) scenarios+=("$s") ;;
		esac
	done
fi
if [ "$SHELL_MODE" = 1 ] && [ ${#scenarios[@]} -ne 1 ]; then
	say "LAB_SHELL=1 needs exactly one scenario"
	exit 2
fi

t0=$(now)
"$LAB_DIR/fetch.sh"
t_fetch=$(since "$t0")

# The Go binaries: whichever of the project's commands exist yet.
t1=$(now)
GO=$(command -v go || echo /usr/local/go/bin/go)
pkgs=()
for p in controlplane/cmd/lvs-controller agent/cmd/lvs-agent cli/cmd/lvsctl "$LAB_DIR"/cmd/*; do
	p=${p#"$REPO"/}
	ls "$REPO/$p"/*.go >/dev/null 2>&1 && pkgs+=("./$p")
done
[ "$LAB_BIN" = "$BUILD/bin" ] && rm -rf "$LAB_BIN"
mkdir -p "$LAB_BIN"
gobuild() { (cd "$REPO" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags='-s -w' -o "$LAB_BIN/" "$@"); }
say "go build ${pkgs[*]}"
broken=()
if ! gobuild "${pkgs[@]}" 2>/dev/null; then
	# Someone's command does not compile: build the others one by one, so
	# the scenarios still run (and show what works), but fail the run.
	for p in "${pkgs[@]}"; do
		gobuild "$p" || broken+=("$p")
	done
	# All of them built one by one: the first failure was passing (a file
	# changing under the build, in a tree others edit), not a broken command.
	if [ ${#broken[@]} -gt 0 ]; then
		say "BUILD FAILED: ${broken[*]} (the run will fail; scenarios that need it too)"
	fi
fi
# The agent's IPVS backend tests, compiled for the guest: its real kernel
# runs TestKernelRoundTrip, which skips on hosts without IPVS.
if [ -d "$REPO/agent/ipvs" ]; then
	if ! (cd "$REPO" && CGO_ENABLED=0 "$GO" test -c -trimpath -o "$LAB_BIN/ipvs-backend.test" ./agent/ipvs); then
		broken+=("./agent/ipvs (test)")
		say "BUILD FAILED: ./agent/ipvs tests"
	fi
fi
t_go=$(since "$t1")

# needs SCENARIO: its "# lab-needs:" extra, if any (one per scenario).
needs() { sed -nE 's/^# lab-needs: ([a-z0-9-]+)$/\1/p' "$LAB_DIR/scenarios/$1.sh" | head -n 1; }
extras=$(for s in "${scenarios[@]}"; do needs "$s"; done | sort -u | tr '\n' ' ')

t2=$(now)
# shellcheck disable=SC2086 # one word per extra
"$LAB_DIR/build-initramfs.sh" $extras
t_initrd=$(since "$t2")

# Software emulation unless KVM is asked for (see LAB_ACCEL above: a
# /dev/kvm that opens is no proof that a guest runs).
case ${LAB_ACCEL:-tcg} in
kvm) accel=(-accel kvm -cpu host) ;;
tcg) accel=(-accel tcg) ;;
*) say "LAB_ACCEL must be tcg or kvm"; exit 2 ;;
esac

# LAB_ENV rides on the kernel command line, one lab.env= per variable.
envargs=""
for kv in ${LAB_ENV:-}; do
	case $kv in
	[A-Za-z_]*=*) envargs="$envargs lab.env=$kv" ;;
	*) say "LAB_ENV: '$kv' is not NAME=VALUE"; exit 2 ;;
	esac
done

mkdir -p "$BUILD/logs"
passed=0
failed=0
summary=()
failures=()
for s in "${scenarios[@]}"; do
	log=$BUILD/logs/$s.log
	# A scenario that needs longer (a large site, a benchmark) says so itself.
	TIMEOUT=${LAB_TIMEOUT:-$(sed -nE 's/^# lab-timeout: ([0-9]+)$/\1/p' "$LAB_DIR/scenarios/$s.sh" | head -n 1)}
	TIMEOUT=${TIMEOUT:-240}
	MEMORY=$(sed -nE 's/^# lab-memory: ([0-9]+)$/\1/p' "$LAB_DIR/scenarios/$s.sh" | head -n 1)
	initrd=$BUILD/initrd.img
	extra=$(needs "$s")
	[ -n "$extra" ] && initrd=$BUILD/initrd-$extra.img
	# sercon-port=0: SeaBIOS keeps off the serial console, where it would
	# reset the terminal and turn line wrapping off (ESC c, ESC [?7l).
	# shellcheck disable=SC2054 # the commas belong to qemu's option syntax
	cmd=(qemu-system-x86_64 -m "${MEMORY:-1024}" -smp 2 -nographic -no-reboot -nic none "${accel[@]}"
		-fw_cfg name=etc/sercon-port,string=0
		-kernel "$BUILD/vmlinuz" -initrd "$initrd"
		-append "console=ttyS0 quiet panic=-1 lab.scenario=$s lab.timeout=$TIMEOUT lab.shell=$SHELL_MODE$envargs")
	say "boot for scenario $s${extra:+ with $extra}${MEMORY:+, ${MEMORY} MB} (log $log)"
	tb=$(now)
	set +e
	for attempt in 1 2; do
		if [ "$SHELL_MODE" = 1 ]; then
			"${cmd[@]}" 2> >(quiet_qemu) | tee "$log"
		elif [ "$VERBOSE" = 1 ]; then
			timeout $((TIMEOUT + 90)) "${cmd[@]}" </dev/null 2> >(quiet_qemu) | tee "$log"
		else
			timeout $((TIMEOUT + 90)) "${cmd[@]}" </dev/null 2> >(quiet_qemu >"$log.stderr") >"$log"
		fi
		qrc=$?
		wait # for quiet_qemu
		# qemu itself crashing before the guest printed a line (CI saw one SIGSEGV of
		# qemu-system-x86_64 at boot, empty log) is the host's, not the scenario's: boot
		# once more, and say so. A guest that printed anything is judged as it ran.
		if [ "$attempt" = 1 ] && [ "$qrc" -gt 128 ] && [ "$qrc" != 124 ] && [ ! -s "$log" ]; then
			say "qemu died with signal $((qrc - 128)) before the guest printed anything: booting $s once more"
			continue
		fi
		break
	done
	if [ -s "$log.stderr" ]; then cat "$log.stderr" >>"$log"; fi
	rm -f "$log.stderr"
	sed -i 's/\r$//' "$log" # the serial line ends lines with CR LF
	set -e
	took=$(since "$tb")
	verdict=$(grep -a '^LAB-VERDICT ' "$log" | tail -n 1 || true)
	case $verdict in
	"LAB-VERDICT $s PASS "*) result=PASS ;;
	"LAB-VERDICT $s FAIL "*) result="FAIL (${verdict##* })" ;;
	*)
		result="NO VERDICT"
		[ $qrc = 124 ] && result="NO VERDICT (killed after $((TIMEOUT + 90))s)"
		;;
	esac
	if [ "$result" = PASS ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		if [ "$VERBOSE" != 1 ]; then
			say "--- $s: failed checks ---"
			grep -a '^FAIL' "$log" || true
			say "--- $s: last 40 lines of $log ---"
			tail -n 40 "$log"
		fi
	fi
	summary+=("$(printf '%-24s %-30s %6ss  %s' "$s" "$result" "$took" "${log#"$REPO"/}")")
	if [ "$result" != PASS ]; then
		# Repeated under the summary: CI keeps only the tail of a long run's output.
		fails=$(grep -a -e '^FAIL' -e '^lab-init: scenario .* killed after' "$log" | head -n 20 || true)
		# A scenario killed at its time limit: what was running then (lab-init lists it).
		stuck=$(sed -n '/^lab-init: scenario .* killed after/,/^lab-init: scenario .* took/p' "$log" | grep -a '^    ' | grep -v -e ' /init$' -e ' ps$' | head -n 12 || true)
		failures+=("$s: ${fails:-$(grep -a -v '^\s*$' "$log" | tail -n 5)}${stuck:+
$stuck}")
	fi
done

echo
say "fetch ${t_fetch}s, go build ${t_go}s, initramfs ${t_initrd}s, total $(since "$t0")s (accel: ${accel[*]})"
for line in "${summary[@]}"; do say "$line"; done
[ ${#broken[@]} -gt 0 ] && say "BUILD FAILED: ${broken[*]}"
for f in "${failures[@]}"; do say "failed $f"; done
say "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ ${#broken[@]} = 0 ]

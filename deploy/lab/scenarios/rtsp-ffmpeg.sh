#!/bin/sh
# rtsp-ffmpeg: the agent's RTSP check against an RTSP server nobody in this
# project wrote (issue 9): Debian's ffmpeg in RTSP listen mode,
#   ffmpeg -rtsp_flags listen -i rtsp://198.51.100.1:554/live -f null -
# in rs1's namespace, probed from dir-a's by lab-health probe, which runs
# agent/checker.Probe (the code every agent runs) with health.Spec{Kind:
# rtsp, Port: 554} once. ffmpeg serves one client, expects CSeq 1 first, and
# exits when the client hangs up, so it is started for each probe:
#   - started: the check (default URL rtsp://198.51.100.1:554/, as the agent
#     sends it when a manifest names no url) reports it up, and ffmpeg then
#     ends on the hang-up, having read the OPTIONS;
#   - gone: the same check reports it down (connection refused);
#   - started again: a check with the stream's own URL (--url, as
#     `health: {check: rtsp, port: 554, url: ...}` would send) is up too;
#   - DESCRIBE (describe: true) is not something a listen-mode ffmpeg
#     answers (it only takes ANNOUNCE and OPTIONS before a stream is pushed):
#     that check is down, shown, not judged.
# ffmpeg and its libraries (217 MB) are booted only for this scenario
# (lab-needs), with more memory for them.
# lab-needs: ffmpeg
# lab-memory: 2048
# shellcheck disable=SC2317 # (whole file) helpers are called through wait_until
. ./lib.sh

RS=198.51.100.1

# rtsp_listening NS: status 0 if something listens on TCP 554 in NS
# (/proc/net/tcp: state 0A is LISTEN, the port is hex 022A). Not a
# connection: ffmpeg would take it as its one client.
rtsp_listening() { on "$1" cat /proc/net/tcp | awk '$4 == "0A" && $2 ~ /:022A$/ { f = 1 } END { exit !f }'; }

# ffmpeg_start N: ffmpeg listening in rs1, log /tmp/ffmpeg.N.log (its exit
# status is appended as "ffmpeg exit RC"); returns once it listens.
FF_PID=""
ffmpeg_start() {
	_t=$(uptime_s)
	(
		/usr/sbin/ip netns exec rs1 ffmpeg -hide_banner -nostdin -rtsp_flags listen \
			-i "rtsp://$RS:554/live" -f null - >"/tmp/ffmpeg.$1.log" 2>&1
		echo "ffmpeg exit $?" >>"/tmp/ffmpeg.$1.log"
	) &
	FF_PID=$!
	if wait_until 60 rtsp_listening rs1; then
		note "ffmpeg $1 listening on $RS:554 after $(awk -v a="$_t" -v b="$(uptime_s)" 'BEGIN {printf "%.1f", b - a}') s"
	else
		sed 's/^/    /' "/tmp/ffmpeg.$1.log" 2>/dev/null
		die "ffmpeg did not listen on $RS:554 within 60 s"
	fi
}

# ffmpeg_ended N: status 0 once ffmpeg N has exited.
ffmpeg_ended() { grep -q '^ffmpeg exit ' "/tmp/ffmpeg.$1.log"; }

step "Topology (no responders: rs1's RTSP server is ffmpeg)"
topology

step "Debian's ffmpeg in the guest"
expect_match "ffmpeg -version runs in the guest" '^ffmpeg version [0-9]' "$(ffmpeg -hide_banner -version 2>&1 | head -n 2)"

step "ffmpeg listening in rs1: the check from dir-a reports it up"
ffmpeg_start 1
out=$(on dir-a lab-health probe "$RS" --check rtsp --port 554 2>&1)
note "$out"
expect_match "rtsp check (port 554, default URL) of ffmpeg: up" '^PROBE up check=rtsp target=198\.51\.100\.1:554 ' "$out"
wait_until 20 ffmpeg_ended 1
expect_match "ffmpeg ended when the check hung up (one client per run)" '^ffmpeg exit ' "$(grep '^ffmpeg exit ' /tmp/ffmpeg.1.log)"
show cat /tmp/ffmpeg.1.log
wait "$FF_PID" 2>/dev/null

step "ffmpeg gone: the same check reports it down"
expect_fail "nothing listens on $RS:554 any more" rtsp_listening rs1
out=$(on dir-a lab-health probe "$RS" --check rtsp --port 554 2>&1)
note "$out"
expect_match "rtsp check of the stopped ffmpeg: down, connection refused" '^PROBE down check=rtsp .* reason=refused ' "$out"

step "ffmpeg again: the check with the stream's URL is up too"
ffmpeg_start 2
out=$(on dir-a lab-health probe "$RS" --check rtsp --port 554 --url "rtsp://$RS:554/live" 2>&1)
note "$out"
expect_match "rtsp check with url rtsp://$RS:554/live: up" '^PROBE up check=rtsp ' "$out"
wait_until 20 ffmpeg_ended 2
show cat /tmp/ffmpeg.2.log
wait "$FF_PID" 2>/dev/null

step "DESCRIBE against listen-mode ffmpeg (shown, not judged)"
ffmpeg_start 3
note "$(on dir-a lab-health probe "$RS" --check rtsp --port 554 --url "rtsp://$RS:554/live" --describe 2>&1)"
wait_until 20 ffmpeg_ended 3
show cat /tmp/ffmpeg.3.log
wait "$FF_PID" 2>/dev/null

finish

#!/bin/sh
# ipvs-backend: the agent's IPVS backend (agent/ipvs) against a real IPVS.
# The development hosts have no IPVS, so there TestKernelRoundTrip skips;
# run.sh compiles the package's tests for the guest (ipvs-backend.test), and
# here they run as root in a fresh network namespace with
# LVSCTL_REQUIRE_IPVS=1 and LVSCTL_REQUIRE_PRIVILEGED=1, which turn those
# skips into failures. The scenario passes only if the test binary passes
# and TestKernelRoundTrip and TestKernelBatch actually ran and passed.
. ./lib.sh

step "The agent's IPVS backend tests, in a fresh namespace of a kernel with IPVS"
command -v ipvs-backend.test >/dev/null || die "no ipvs-backend.test in the guest (run.sh builds it from ./agent/ipvs)"
netns_up t || die "cannot create namespace t"
note "\$ LVSCTL_REQUIRE_IPVS=1 LVSCTL_REQUIRE_PRIVILEGED=1 ipvs-backend.test -test.v -test.count=1   (in namespace t)"
on t env LVSCTL_REQUIRE_IPVS=1 LVSCTL_REQUIRE_PRIVILEGED=1 ipvs-backend.test -test.v -test.count=1 >/tmp/ipvs-test.out 2>&1
rc=$?
sed 's/^/    /' /tmp/ipvs-test.out
expect_eq "the test binary exits 0" 0 "$rc"
expect_eq "TestKernelRoundTrip ran and passed" "--- PASS: TestKernelRoundTrip" \
	"$(grep -E -- '^--- (PASS|FAIL|SKIP): TestKernelRoundTrip( |$)' /tmp/ipvs-test.out | sed 's/ (.*//')"
expect_eq "TestKernelBatch (many requests a send, replies matched by sequence number) ran and passed" "--- PASS: TestKernelBatch" \
	"$(grep -E -- '^--- (PASS|FAIL|SKIP): TestKernelBatch( |$)' /tmp/ipvs-test.out | sed 's/ (.*//')"
expect_eq "TestKernelTunnel (ipip, gue and gre destinations made, read back and edited) ran and passed" "--- PASS: TestKernelTunnel" \
	"$(grep -E -- '^--- (PASS|FAIL|SKIP): TestKernelTunnel( |$)' /tmp/ipvs-test.out | sed 's/ (.*//')"
expect_eq "no test skipped but the no-IPVS one (this kernel has IPVS)" "--- SKIP: TestNewWithoutIPVS" \
	"$(grep -E -- '^ *--- SKIP: ' /tmp/ipvs-test.out | sed 's/ (.*//; s/^ *//')"
expect_eq "the test left no IPVS service in namespace t" "" "$(on t ipvsadm -Sn)"

finish

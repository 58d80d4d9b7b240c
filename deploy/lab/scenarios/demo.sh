#!/bin/sh
# demo: a walk-through for a newcomer, run by `make lab-demo` /
# `deploy/lab/run.sh --demo` with the console streamed live. It builds the
# site, starts lvsctl's controller and agent, applies the seed's Windows
# Media cluster, shows what lvsctl reports and what it programmed into the
# kernel, and sends real traffic through the director. Its checks are few
# (wms.sh proves the same in detail) but they count: a demo that shows
# something broken fails.
. ./lib.sh

step "The site: one VM, a network namespace per box"
cat <<'TOPO'
                        client 192.0.2.100   (also client2 .101, client3 .102)
                           |
     br-client 192.0.2.0/24          VIP 192.0.2.10 (held by the ACTIVE director)
                           |
                 eth0 192.0.2.2
      dir-a  (director: IPVS + nftables, runs lvs-agent)  eth2 203.0.113.11 --- br-mgmt 203.0.113.0/24
                 eth1 198.51.100.254                                              |
                           |                                    lvs-controller 203.0.113.1:7443
     br-real 198.51.100.0/24                                    (and lvsctl, the CLI)
          |                |                |
    rs1 198.51.100.1  rs2 198.51.100.2  rs3 198.51.100.3   (real servers: RTSP on tcp 554,
                                                           tcp 1755, udp 554 and 1024-5000)
TOPO
note "Below, 'on NS CMD' runs CMD inside namespace NS (ip netns exec)."
topology
add_client client2 192.0.2.101
add_client client3 192.0.2.102
start_reals

step "Start the controller (root namespace) and the agent (inside dir-a)"
note "lvs-controller pki init $PKI --san ${CONTROLLER%:*}   (the site's CA, the controller's certificate)"
note "lvs-controller pki issue $PKI --director dir-a; ... --user lab --role admin   (one certificate per director and operator)"
note "lvs-controller --listen $CONTROLLER --tls-dir $PKI ...   (TLS 1.3, client certificates required; desired state in embedded etcd)"
start_controller
note "lvs-agent --director dir-a --controller $CONTROLLER --ca ... --cert director-dir-a.crt --key ...   (programs dir-a's kernel)"
start_agent
note "(lvsctl below presents user-lab.crt, role admin: LVSCTL_CA, LVSCTL_CERT, LVSCTL_KEY)"

step "Apply the Windows Media cluster: lvsctl apply -f wms.yaml"
show cat /lab/examples/wms.yaml
out=$(lv apply -f /lab/examples/wms.yaml 2>&1)
echo "  \$ lvsctl apply -f /lab/examples/wms.yaml"
printf '%s\n' "$out" | sed 's/^/    /'
expect_match "apply created cluster/wms" '^cluster/wms created' "$out"
wait_applied 30 || fail_check "dir-a applied the cluster within 30 s"

step "What lvsctl knows: clusters, the cluster as a manifest, the directors"
show lv get clusters
show lv get cluster wms -o yaml
note "(fwmark: the one mark that gathers all the ports into one IPVS service; revision: the version stored)"
show lv status
expect_eq "dir-a: ACTIVE, connected, applied = desired, no errors" '"ACTIVE" true yes []' \
	"$(status_field dir-a role) $(status_field dir-a connected) $([ "$(applied_rev)" = "$(status_field dir-a desiredRevision)" ] && echo yes) $(status_field dir-a errors)"

step "What the agent programmed into dir-a's kernel"
show on dir-a ipvsadm -Ln
expect_match "one fwmark service, wlc, persistent 600" '^FWM +[0-9]+ wlc persistent 600' "$(on dir-a ipvsadm -Ln | grep '^FWM')"
show on dir-a nft list table inet lvsctl
show on dir-a ip -4 -br addr show dev eth0
note "(the VIP $VIP/32 was added by the agent: dir-a is the ACTIVE director of group edge-1)"

step "Traffic: an RTSP OPTIONS request to the VIP, answered by a real server"
# shellcheck disable=SC2028 # the \r\n are to be printed as they are typed
echo "  \$ printf 'OPTIONS rtsp://$VIP/ RTSP/1.0\\r\\nCSeq: 1\\r\\n\\r\\n' | nc $VIP 554   (from client)"
rtsp=$(printf 'OPTIONS rtsp://%s/ RTSP/1.0\r\nCSeq: 1\r\n\r\n' "$VIP" | on client nc -w 2 "$VIP" 554 2>&1 | tr -d '\r')
printf '%s\n' "$rtsp" | sed 's/^/    /'
expect_match "RTSP/1.0 200 OK from rs1, rs2 or rs3" '^Server: rs[1-3]$' "$rtsp"
first=$(printf '%s\n' "$rtsp" | sed -n 's/^Server: //p')

step "Traffic: UDP to port 3000 (the data range 1024-5000) and TCP 1755, same client"
show on client lab-client udp "$VIP:3000"
show on client lab-client tcp "$VIP:1755"
expect_eq "persistence keeps the client on $first for udp 3000 and tcp 1755" "$first $first" \
	"$(on client lab-client udp "$VIP:3000" 2>&1) $(on client lab-client tcp "$VIP:1755" 2>&1)"

step "Traffic: 30 connections from three clients, 10 each"
note "persistence (600 s) keeps each client on one real server; wlc sends each new client to the least loaded"
all=""
for c in client client2 client3; do
	got=$(on "$c" lab-client tcp "$VIP:554" -n 10 --count-by-server 2>&1)
	echo "  \$ lab-client tcp $VIP:554 -n 10 --count-by-server   (from $c)"
	printf '%s\n' "$got" | sed 's/^/    /'
	all="$all$got
"
done
expect_eq "each client's 10 connections on one server, the three clients on rs1, rs2, rs3" "rs1 10
rs2 10
rs3 10" "$(printf '%s' "$all" | sort)"

step "Counters: lvsctl status cluster wms, and the kernel's own"
# The agent samples the kernel every second and reports to the controller.
# shellcheck disable=SC2317 # called by wait_until
reported() { [ "$(metric lvsctl_cluster_connections_total 'cluster="wms"')" -ge 30 ] 2>/dev/null; }
wait_until 10 reported || note "(the agent had not counted 30 connections within 10 s)"
sleep 1.5
show lv status cluster wms || fail_check "lvsctl status cluster wms failed"
show on dir-a ipvsadm -Ln --stats
show on dir-a ipvsadm -Ln --persistent-conn

finish

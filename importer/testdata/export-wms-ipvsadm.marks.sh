#!/bin/sh
# The firewall marks of the clusters below (lvsctl export --marks): lvsctl marks in nftables
# (prerouting, priority mangle); these iptables rules mark the same traffic.
set -e
# cluster fwmark-1 (fwmark 1)
iptables -t mangle -A PREROUTING -d 192.0.2.10/32 -p tcp --dport 554 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -d 192.0.2.10/32 -p tcp --dport 1755 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -d 192.0.2.10/32 -p udp --dport 1024:5000 -j MARK --set-mark 1
# cluster fwmark-2 (fwmark 2)
iptables -t mangle -A PREROUTING -d 192.0.2.11/32 -p tcp --dport 80 -j MARK --set-mark 2

#!/bin/sh
# The firewall marks of group edge-2's clusters (lvsctl export --marks): lvsctl marks in nftables
# (prerouting, priority mangle); these iptables rules mark the same traffic.
set -e
# cluster web (fwmark 10)
iptables -t mangle -A PREROUTING -d 192.0.2.30/32 -p tcp --dport 80 -j MARK --set-mark 10
iptables -t mangle -A PREROUTING -d 192.0.2.30/32 -p tcp --dport 443 -j MARK --set-mark 10
# cluster dns (fwmark 11)
iptables -t mangle -A PREROUTING -d 192.0.2.31/32 -p udp --dport 53 -j MARK --set-mark 11
# cluster media (fwmark 12)
iptables -t mangle -A PREROUTING -d 192.0.2.32/32 -p tcp --dport 554 -j MARK --set-mark 12
iptables -t mangle -A PREROUTING -d 192.0.2.32/32 -p udp --dport 1024:5000 -j MARK --set-mark 12

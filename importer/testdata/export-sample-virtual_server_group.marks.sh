#!/bin/sh
# The firewall marks of the clusters below (lvsctl export --marks): lvsctl marks in nftables
# (prerouting, priority mangle); these iptables rules mark the same traffic.
set -e
# cluster fwmark-1 (fwmark 1)
iptables -t mangle -A PREROUTING -d 10.0.0.5/32 -p tcp --dport 80 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -d 10.0.0.5/32 -p tcp --dport 443 -j MARK --set-mark 1
# cluster fwmark-2 (fwmark 2)
iptables -t mangle -A PREROUTING -d 10.0.0.6/32 -p tcp --dport 8000:8010 -j MARK --set-mark 2

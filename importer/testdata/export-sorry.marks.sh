#!/bin/sh
# The firewall marks of the clusters below (lvsctl export --marks): lvsctl marks in nftables
# (prerouting, priority mangle); these iptables rules mark the same traffic.
set -e

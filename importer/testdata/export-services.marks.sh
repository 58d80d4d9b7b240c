#!/bin/sh
# The firewall marks of group vi-web's clusters (lvsctl export --marks): lvsctl marks in nftables
# (prerouting, priority mangle); these iptables rules mark the same traffic.
set -e

#!/bin/sh
# The Windows Media guide's director setup, as its commands: the VIP on the
# director, every Windows Media port of the VIP marked 1 in the mangle table
# (RTSP tcp/udp 554, MMS tcp/udp 1755, the UDP data ports 1024-5000), one
# fwmark service, round robin, persistent 600 s, the real servers masqueraded.
# Run in dir-a's namespace by import.sh; the lab's VIP and real servers.
set -e
VIP=192.0.2.10
/usr/sbin/ip addr add $VIP/32 dev eth0
iptables -t mangle -A PREROUTING -p tcp -d $VIP/32 --dport 554 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -p udp -d $VIP/32 --dport 554 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -p tcp -d $VIP/32 --dport 1755 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -p udp -d $VIP/32 --dport 1755 -j MARK --set-mark 1
iptables -t mangle -A PREROUTING -p udp -d $VIP/32 --dport 1024:5000 -j MARK --set-mark 1
ipvsadm -A -f 1 -s rr -p 600
for RS in 198.51.100.1 198.51.100.2 198.51.100.3; do
	ipvsadm -a -f 1 -r $RS:0 -m
done

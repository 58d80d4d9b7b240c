#!/bin/bash
# build-initramfs.sh [EXTRA...]: make the lab guest's initramfs,
# deploy/lab/.build/initrd.img, and for each EXTRA (ffmpeg, etcd)
# initrd-EXTRA.img.
#
# Two cpio archives, concatenated (the kernel unpacks each in turn):
#   base.cpio     busybox, ipvsadm, nft, ip, iptables and their libraries, and the
#                 kernel modules the lab may need. It changes only when the
#                 fetch cache or this script changes, so it is kept between
#                 runs and rebuilt only then (base.key records what made it).
#   lab.cpio      /init, the scenarios (/lab/scenarios), the repo's
#                 deploy/examples (/lab/examples) and the static Go binaries
#                 from $LAB_BIN (/usr/local/bin). Rebuilt on every run: it is
#                 what changes while someone works on lvsctl.
# An EXTRA is a tree fetch.sh made in the cache ($LAB_CACHE/EXTRA) that
# only some scenarios need and that would weigh on every boot: ffmpeg and
# its libraries are 217 MB, more than base and lab together; Debian's etcd
# (etcd-server 3.4, 21 MB, the external cluster of ha-controllers) is one
# binary only that scenario runs. EXTRA.cpio is kept like base.cpio (and
# rebuilt when $LAB_CACHE/EXTRA.stamp, if fetch.sh wrote one, changes);
# initrd-EXTRA.img is base + EXTRA + lab, booted by the scenarios that say
# "# lab-needs: EXTRA" (run.sh).
# None is compressed: the guest unpacks a compressed archive in emulated
# code, and gzip made each boot 2 s slower (7.5 s against 5.3 s wall for the
# same 64 MB); memory is plenty. Needs fetch.sh to have filled the cache. The
# archives are written with the cached static busybox, so the host needs no
# cpio package.
set -euo pipefail

LAB_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$LAB_DIR/../.." && pwd)
CACHE=${LAB_CACHE:-/var/cache/lvsctl-lab}
BUILD=$LAB_DIR/.build
LAB_BIN=${LAB_BIN:-$BUILD/bin}

log() { echo "initramfs: $*" >&2; }

[ -e "$CACHE/fetch.stamp" ] || { log "no complete cache in $CACHE: run deploy/lab/fetch.sh"; exit 1; }
KVER=$(cat "$CACHE/kernel.version")
BB=$CACHE/userland/bin/busybox
mkdir -p "$BUILD"

# pack DIR OUT: DIR as a newc cpio archive, every file owned by root.
pack() {
	(cd "$1" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc -R 0:0 2>/dev/null) >"$2.tmp"
	mv "$2.tmp" "$2"
}

# The modules the lab may load: IPVS and netfilter (fwmark, NAT, conntrack),
# xfrm (a Debian host loads xfrm_user on demand: vishvananda/netlink's
# default handle opens an XFRM socket and fails without it),
# IPv4/IPv6 tunnels (for tunnel forwarding), bridging and VLANs, traffic
# control, and the virtual devices that make a topology. Their dependencies
# are added from the full modules.dep below.
MODULE_DIRS="kernel/net/netfilter kernel/net/ipv4 kernel/net/ipv6 kernel/net/bridge kernel/net/802
	kernel/net/llc kernel/net/8021q kernel/net/sched kernel/net/core kernel/net/packet kernel/net/netlink
	kernel/net/xfrm kernel/drivers/net/ipvlan kernel/drivers/net/vxlan kernel/drivers/net/bonding"
MODULE_FILES="kernel/crypto/crc32c_generic.ko kernel/drivers/net/veth.ko kernel/drivers/net/dummy.ko
	kernel/drivers/net/macvlan.ko kernel/drivers/net/geneve.ko kernel/drivers/net/tun.ko
	kernel/drivers/net/ifb.ko kernel/drivers/net/vrf.ko"

build_base() {
	local root=$BUILD/base-root mods=$CACHE/kernel/lib/modules/$KVER
	log "building base ($KVER)"
	rm -rf "$root"
	mkdir -p "$root"
	cp -a "$CACHE/userland/." "$root/"
	# iptables (nft backend, the import scenario), fetched on its own by fetch.sh.
	if [ -d "$CACHE/iptables" ]; then cp -a "$CACHE/iptables/." "$root/"; fi
	mkdir -p "$root"/{proc,sys,dev,tmp,run,etc,root,mnt,usr/bin,usr/local/bin,sbin,var/lib}
	ln -s ../run "$root/var/run"
	ln -s /proc/mounts "$root/etc/mtab"
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"

	# busybox applets as links, except where the real tool is present (ip):
	# ip netns only exists in iproute2's.
	local applet
	for applet in $("$BB" --list-full); do
		[ -e "$root/$applet" ] || [ -e "$root/usr/sbin/${applet##*/}" ] && continue
		mkdir -p "$root/$(dirname "$applet")"
		ln -s /bin/busybox "$root/$applet"
	done

	# Selected modules plus their dependency closure.
	local want=$BUILD/modules.want
	{
		for d in $MODULE_DIRS; do (cd "$mods" && find "$d" -name '*.ko*'); done
		for f in $MODULE_FILES; do echo "$f"; done
	} | sort -u >"$want"
	awk -v want="$want" '
		BEGIN { while ((getline l < want) > 0) sel[l] = 1 }
		{ sub(/:$/, "", $1); dep[$1] = $0 }
		END {
			for (m in sel) print m
			for (m in sel) { n = split(dep[m], d, " "); for (i = 2; i <= n; i++) print d[i] }
		}' "$mods/modules.dep" | sort -u >"$want.closure"
	while read -r m; do
		install -D -m 0644 "$mods/$m" "$root/lib/modules/$KVER/$m"
	done <"$want.closure"
	cp "$mods"/modules.builtin "$mods"/modules.builtin.modinfo "$mods"/modules.order "$root/lib/modules/$KVER/"
	"$BB" depmod -b "$root" "$KVER"
	log "base: $(wc -l <"$want.closure") modules"

	pack "$root" "$BUILD/base.cpio"
	rm -rf "$root"
}

# The base is what the cache and this script make it: rebuild it when either
# changed (another LAB_CACHE, a re-fetch, an edit here).
key="$CACHE $(cat "$CACHE/fetch.stamp") $(cat "$CACHE/iptables.stamp" 2>/dev/null || true) $(cksum <"$0")"
if [ ! -e "$BUILD/base.cpio" ] || [ "$key" != "$(cat "$BUILD/base.key" 2>/dev/null)" ]; then
	build_base
	echo "$key" >"$BUILD/base.key"
fi

root=$BUILD/lab-root
rm -rf "$root"
mkdir -p "$root/lab/scenarios" "$root/usr/local/bin"
install -m 0755 "$LAB_DIR/init" "$root/init"
cp "$LAB_DIR"/scenarios/*.sh "$root/lab/scenarios/"
# A scenario's data files live in a folder of its own (scenarios/import/).
for d in "$LAB_DIR"/scenarios/*/; do
	if [ -d "$d" ]; then cp -a "$d" "$root/lab/scenarios/"; fi
done
if [ -d "$REPO/deploy/examples" ]; then
	cp -a "$REPO/deploy/examples" "$root/lab/examples"
fi
if [ -d "$LAB_BIN" ]; then
	find "$LAB_BIN" -maxdepth 1 -type f -perm -u+x -exec cp {} "$root/usr/local/bin/" \;
fi
echo "$KVER" >"$root/lab/kernel.version"
pack "$root" "$BUILD/lab.cpio"
rm -rf "$root"

cat "$BUILD/base.cpio" "$BUILD/lab.cpio" >"$BUILD/initrd.img.tmp"
mv "$BUILD/initrd.img.tmp" "$BUILD/initrd.img"
ln -sf "$CACHE/kernel/boot/vmlinuz-$KVER" "$BUILD/vmlinuz"
log "$BUILD/initrd.img: $(du -h "$BUILD/initrd.img" | cut -f1) (base $(du -h "$BUILD/base.cpio" | cut -f1))"

for extra in "$@"; do
	case $extra in
	*/* | .* | '') log "no such extra: '$extra'"; exit 1 ;;
	esac
	[ -d "$CACHE/$extra" ] || { log "no $CACHE/$extra (fetch.sh makes the extras: ffmpeg, etcd)"; exit 1; }
	# Rebuilt with the base's key (the cache or this script changed) or the
	# extra's own stamp (etcd, fetched on its own into an older cache).
	xkey="$key $(cat "$CACHE/$extra.stamp" 2>/dev/null || true)"
	if [ ! -e "$BUILD/$extra.cpio" ] || [ "$xkey" != "$(cat "$BUILD/$extra.key" 2>/dev/null)" ]; then
		log "building $extra.cpio"
		pack "$CACHE/$extra" "$BUILD/$extra.cpio"
		echo "$xkey" >"$BUILD/$extra.key"
	fi
	cat "$BUILD/base.cpio" "$BUILD/$extra.cpio" "$BUILD/lab.cpio" >"$BUILD/initrd-$extra.img.tmp"
	mv "$BUILD/initrd-$extra.img.tmp" "$BUILD/initrd-$extra.img"
	log "$BUILD/initrd-$extra.img: $(du -h "$BUILD/initrd-$extra.img" | cut -f1) ($extra $(du -h "$BUILD/$extra.cpio" | cut -f1))"
done

#!/bin/bash
# fetch.sh: gather what the lab's guest needs, once, into a cache folder.
#
# The machines this runs on have no IPVS in their own kernel, so the lab boots
# Debian's kernel under qemu (see shared/LAB.md). This script puts into
# ${LAB_CACHE:-/var/cache/lvsctl-lab}:
#   kernel/        Debian's linux-image-<version>-amd64 unpacked with dpkg -x
#                  (never installed: the host's /boot is left alone), plus the
#                  modules.dep that its postinst would have made
#   userland/      busybox (static) and ipvsadm, nft, iproute2's ip with every
#                  shared library ldd lists for them, at the same paths; and
#                  keepalived (the failover reference, bench-ha), unpacked
#                  from Debian's package with the libraries it needs
#   ffmpeg/        Debian's ffmpeg (the RTSP check's reference peer, issue 9)
#                  with the libraries it needs that userland/ lacks: an
#                  initramfs of its own (build-initramfs.sh), booted only by
#                  the scenarios that say "# lab-needs: ffmpeg"
#   iptables/      Debian's iptables 1.8 (nft backend) with the libraries and
#                  extensions userland/ lacks: part of the base (import scenario),
#                  fetched on its own like etcd (iptables.stamp)
#   etcd/          Debian's etcd-server 3.4 (etcd only: the external etcd
#                  cluster of ha-controllers, issue 11), the same way:
#                  "# lab-needs: etcd" (fetched alone into a cache made before it)
#   kernel.version the kernel release (the /lib/modules folder name)
#   fetch.stamp    written last: its presence means the cache is complete
# and installs qemu-system-x86 on the host if it is missing.
#
# ipvsadm, nftables and iproute2 are installed on the host rather than only
# unpacked: ldd resolves libraries against the installed system, and that is
# the only way to get exactly the libraries (and versions) those binaries
# need without re-doing apt's dependency resolution here. busybox-static is
# unpacked instead, because installing it would replace the host's busybox.
#
# keepalived is unpacked, never installed: installing it on the host would
# register a service there. The libraries it links that the host lacks
# (libsnmp40 and its own, on these machines) are unpacked from their packages
# into keepalived.libs/, and ldd resolves against that folder then the host.
#
# ffmpeg is unpacked, never installed: it pulls about 90 packages. The ones
# apt would install for it on this host (apt-get install -s: what the host
# lacks) are unpacked into ffmpeg.libs/, and ldd resolves against that folder
# then the host, as for keepalived. ffmpeg/ (217 MB: the codecs, filters and
# devices libraries, all linked and loaded whether used or not) would more
# than double every boot's initramfs, and the guest's root file system is
# its RAM (1024 MB), hence an initramfs of its own.
#
# Idempotent: with a complete cache it does nothing (LAB_REFETCH=1 redoes it).
# Runs as root, without standard input (CI).
set -euo pipefail

CACHE=${LAB_CACHE:-/var/cache/lvsctl-lab}
export DEBIAN_FRONTEND=noninteractive

log() { echo "fetch: $*" >&2; }

updated=no
apt_update_once() {
	if [ "$updated" = no ]; then
		log "apt-get update"
		apt-get update -qq </dev/null
		updated=yes
	fi
}

# apt_install PKG...: install whatever is missing; refresh the package lists
# only if apt does not know a package (a fresh machine has empty lists).
apt_install() {
	local missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	log "apt-get install ${missing[*]}"
	if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2; then
		apt_update_once
		apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null >&2
	fi
}

# candidate PKG: the version apt would fetch, updating the lists if unknown.
candidate() {
	local v
	v=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		apt_update_once
		v=$(apt-cache policy "$1" | awk '/Candidate:/ {print $2}')
	fi
	if [ -z "$v" ] || [ "$v" = "(none)" ]; then
		log "no package $1 in the apt sources"
		exit 1
	fi
	echo "$v"
}

# cached_deb PKG VERSION: the path of its .deb in $CACHE/debs; status 1 if
# there is none. apt-get download names it PKG_VERSION_ARCH.deb, with ':'
# as %3a.
cached_deb() {
	local deb
	for deb in "$CACHE/debs/${1}_${2//:/%3a}_"*.deb; do
		[ -e "$deb" ] && { echo "$deb"; return 0; }
	done
	return 1
}

# download PKG: its .deb into $CACHE/debs (kept: a re-fetch is then offline).
download() {
	local pkg=$1 ver try
	ver=$(candidate "$pkg")
	for try in cached fetched; do
		cached_deb "$pkg" "$ver" && return 0
		[ $try = fetched ] && break
		log "apt-get download $pkg=$ver"
		# The sandbox user _apt cannot write to a root-owned cache folder.
		(cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" </dev/null >&2)
	done
	log "apt-get download $pkg=$ver left no .deb in $CACHE/debs"
	exit 1
}

# copy_with_libs FILE DEST: FILE and every library ldd lists, plus the
# dynamic loader, at the same paths under DEST.
copy_with_libs() {
	local f=$1 dest=$2 lib
	install -D -m 0755 "$f" "$dest$f"
	for lib in $(ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		[ -e "$dest$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$dest$lib"
	done
}

# etcd: Debian's etcd-server (3.4), the external cluster of the several-controller
# scenario (ha-controllers, issue 11), unpacked, never installed (its package would
# start a service on the host). Its one binary is a Go program linked against libc
# only, which userland/ has; any library ldd lists that userland/ lacks is copied
# too. An extra of its own ("# lab-needs: etcd"), fetched on its own: a cache that
# is complete but older than it gets etcd/ added, nothing else redone (a re-fetch
# of the kernel would pull the files from under a lab booting from this cache).
# $CACHE/etcd.stamp records the version; build-initramfs.sh keys etcd.cpio on it.
fetch_etcd() {
	[ -x "$CACHE/etcd/usr/bin/etcd" ] && [ -e "$CACHE/etcd.stamp" ] && [ "${LAB_REFETCH:-0}" != 1 ] && return 0
	[ "$(id -u)" = 0 ] || { log "must run as root (apt-get)"; exit 1; }
	local deb ver tmp=$CACHE/etcd.unpack new=$CACHE/etcd.new lib
	mkdir -p "$CACHE/debs"
	ver=$(candidate etcd-server)
	deb=$(download etcd-server)
	rm -rf "$tmp" "$new"
	dpkg -x "$deb" "$tmp"
	[ -x "$tmp/usr/bin/etcd" ] || { log "the etcd-server package has no /usr/bin/etcd"; exit 1; }
	install -D -m 0755 "$tmp/usr/bin/etcd" "$new/usr/bin/etcd"
	for lib in $(ldd "$tmp/usr/bin/etcd" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
		[ -e "$CACHE/userland$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$new$lib"
	done
	"$new/usr/bin/etcd" --version >/dev/null || { log "the unpacked etcd does not run: $new/usr/bin/etcd --version"; exit 1; }
	rm -rf "$tmp" "$CACHE/etcd"
	mv "$new" "$CACHE/etcd"
	echo "etcd-server $ver" >"$CACHE/etcd.stamp"
	log "etcd: $("$CACHE/etcd/usr/bin/etcd" --version | head -n 1) in $CACHE/etcd ($(du -sh "$CACHE/etcd" | cut -f1))"
}

# iptables: Debian's iptables (1.8, the nft backend: xtables-nft-multi as
# iptables, iptables-save, iptables-restore) for the import scenario, which runs
# the Windows Media guide's own "iptables -t mangle ... -j MARK" lines and reads
# them back with iptables-save (issue 12). Unpacked, never installed (that would
# register alternatives on the host), with the packages apt would install for it
# here (apt-get install -s: libip6tc2, libnfnetlink0, libnetfilter-conntrack3 on
# these machines); ldd resolves against them, then the host, as for keepalived.
# The match and target extensions (xtables/libxt_*.so) are loaded with dlopen,
# which ldd does not see: the folder is copied whole. Into a tree of its own,
# $CACHE/iptables, that build-initramfs.sh adds to the base; fetched on its own
# like etcd (a complete cache made before it gets iptables/ added, nothing else
# redone), stamped in iptables.stamp, which the base's key includes.
fetch_iptables() {
	[ -x "$CACHE/iptables/usr/sbin/xtables-nft-multi" ] && [ -e "$CACHE/iptables.stamp" ] && [ "${LAB_REFETCH:-0}" != 1 ] && return 0
	[ "$(id -u)" = 0 ] || { log "must run as root (apt-get)"; exit 1; }
	local ver tmp=$CACHE/iptables.unpack new=$CACHE/iptables.new pv deb lib so xt=/usr/lib/x86_64-linux-gnu/xtables
	local want
	mkdir -p "$CACHE/debs"
	ver=$(candidate iptables)
	want=$( (
		echo "iptables=$ver"
		apt-get install -s -qq --no-install-recommends iptables </dev/null |
			sed -nE 's/^Inst ([^ ]+) (\[[^]]*\] )?\(([^ ]+) .*/\1=\3/p'
	) | sort -u)
	rm -rf "$tmp" "$new"
	for pv in $want; do
		deb=$(cached_deb "${pv%%=*}" "${pv#*=}") || {
			log "apt-get download $pv"
			(cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "$pv" </dev/null >&2)
			deb=$(cached_deb "${pv%%=*}" "${pv#*=}") || { log "apt-get download $pv left no .deb in $CACHE/debs"; exit 1; }
		}
		dpkg -x "$deb" "$tmp"
	done
	[ -x "$tmp/usr/sbin/xtables-nft-multi" ] || { log "the iptables package has no /usr/sbin/xtables-nft-multi"; exit 1; }
	[ -d "$tmp$xt" ] || { log "the iptables package has no $xt"; exit 1; }
	install -D -m 0755 "$tmp/usr/sbin/xtables-nft-multi" "$new/usr/sbin/xtables-nft-multi"
	# The names Debian's alternatives would point at it (the nft backend).
	for so in iptables iptables-nft iptables-save iptables-nft-save iptables-restore iptables-nft-restore; do
		ln -s xtables-nft-multi "$new/usr/sbin/$so"
	done
	mkdir -p "$new$xt"
	cp -a "$tmp$xt/." "$new$xt/"
	# Libraries of the binary and of every extension: from the unpacked packages
	# (under the names ldd asked for, in a folder the guest's loader searches),
	# else the host's at their paths; the ones userland/ has are left out.
	for f in "$tmp/usr/sbin/xtables-nft-multi" "$tmp$xt"/*.so; do
		LD_LIBRARY_PATH=$tmp/usr/lib/x86_64-linux-gnu ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
	done | sort -u | while read -r so lib; do
		case $lib in
		"$tmp"/*) dest=/usr/lib/x86_64-linux-gnu/$so ;;
		*) dest=$lib ;;
		esac
		[ -e "$CACHE/userland$dest" ] || [ -e "$new$dest" ] || install -D -m 0755 "$(readlink -f "$lib")" "$new$dest"
	done
	if LD_LIBRARY_PATH=$tmp/usr/lib/x86_64-linux-gnu ldd "$tmp/usr/sbin/xtables-nft-multi" | grep -q 'not found'; then
		log "iptables misses libraries: $(LD_LIBRARY_PATH=$tmp/usr/lib/x86_64-linux-gnu ldd "$tmp/usr/sbin/xtables-nft-multi" | grep 'not found' | tr -s ' \t\n' ' ')"
		exit 1
	fi
	LD_LIBRARY_PATH=$new/usr/lib/x86_64-linux-gnu "$new/usr/sbin/iptables-nft" --version >/dev/null ||
		{ log "the unpacked iptables does not run: $new/usr/sbin/iptables-nft --version"; exit 1; }
	rm -rf "$tmp" "$CACHE/iptables"
	mv "$new" "$CACHE/iptables"
	echo "iptables $ver" >"$CACHE/iptables.stamp"
	log "iptables: $(LD_LIBRARY_PATH=$CACHE/iptables/usr/lib/x86_64-linux-gnu "$CACHE/iptables/usr/sbin/iptables-nft" --version) in $CACHE/iptables ($(du -sh "$CACHE/iptables" | cut -f1))"
}

# A cache made before keepalived or ffmpeg joined the lab is refetched; one made
# before etcd or iptables did gets those only.
if [ -e "$CACHE/fetch.stamp" ] && grep -q '^keepalived ' "$CACHE/fetch.stamp" &&
	grep -q '^ffmpeg ' "$CACHE/fetch.stamp" &&
	[ "${LAB_REFETCH:-0}" != 1 ] && command -v qemu-system-x86_64 >/dev/null; then
	fetch_etcd
	fetch_iptables
	log "cache complete in $CACHE ($(cat "$CACHE/kernel.version"))"
	exit 0
fi
[ "$(id -u)" = 0 ] || { log "must run as root (apt-get)"; exit 1; }

start=$(date +%s)
mkdir -p "$CACHE/debs"
rm -f "$CACHE/fetch.stamp"

apt_install qemu-system-x86 ipvsadm nftables iproute2

# linux-image-amd64 is a metapackage; the kernel is its versioned dependency.
candidate linux-image-amd64 >/dev/null
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kpkg" ] || { log "cannot find the kernel package linux-image-amd64 depends on"; exit 1; }
kdeb=$(download "$kpkg")
bdeb=$(download busybox-static)

log "unpacking $(basename "$kdeb")"
rm -rf "$CACHE/kernel" "$CACHE/userland"
dpkg -x "$kdeb" "$CACHE/kernel"
kver=$(ls "$CACHE/kernel/lib/modules")
[ "$(echo "$kver" | wc -w)" = 1 ] || { log "expected one kernel in $kdeb, found: $kver"; exit 1; }

mkdir -p "$CACHE/userland/bin"
dpkg -x "$bdeb" "$CACHE/busybox.tmp"
install -m 0755 "$CACHE/busybox.tmp/bin/busybox" "$CACHE/userland/bin/busybox"
rm -rf "$CACHE/busybox.tmp"

# The package has no modules.dep (depmod runs in its postinst); busybox's
# depmod makes one without needing kmod on the host.
"$CACHE/userland/bin/busybox" depmod -b "$CACHE/kernel" "$kver"

for tool in /usr/sbin/ipvsadm /usr/sbin/nft /usr/sbin/ip; do
	copy_with_libs "$tool" "$CACHE/userland"
done

# keepalived: its .deb unpacked, then, while ldd finds a library missing, the
# package that ships it unpacked too (the sonames keepalived 2.2.7 and its
# SNMP library pull in; an unknown one stops the fetch with its name).
kadir=$CACHE/keepalived.libs
rm -rf "$kadir"
dpkg -x "$(download keepalived)" "$kadir"
soname_package() {
	case $1 in
	libnetsnmp*.so.40) echo libsnmp40 ;;
	libpci.so.3) echo libpci3 ;;
	libwrap.so.0) echo libwrap0 ;;
	libsensors.so.5) echo libsensors5 ;;
	libperl.so.5.36) echo libperl5.36 ;;
	*) return 1 ;;
	esac
}
for _ in 1 2 3 4; do
	missing=$(LD_LIBRARY_PATH=$kadir/usr/lib/x86_64-linux-gnu ldd "$kadir/usr/sbin/keepalived" | awk '$3 == "not" {print $1}')
	[ -z "$missing" ] && break
	for so in $missing; do
		pkg=$(soname_package "$so") || { log "keepalived needs $so, and fetch.sh knows no package for it"; exit 1; }
		dpkg -x "$(download "$pkg")" "$kadir"
	done
done
LD_LIBRARY_PATH=$kadir/usr/lib/x86_64-linux-gnu ldd "$kadir/usr/sbin/keepalived" | grep -q 'not found' &&
	{ log "keepalived still misses libraries: $(ldd "$kadir/usr/sbin/keepalived" | grep 'not found')"; exit 1; }
install -D -m 0755 "$kadir/usr/sbin/keepalived" "$CACHE/userland/usr/sbin/keepalived"
for lib in $(LD_LIBRARY_PATH=$kadir/usr/lib/x86_64-linux-gnu ldd "$kadir/usr/sbin/keepalived" |
	awk '$2 == "=>" && $3 ~ /^\// {print $3}'); do
	case $lib in
	"$kadir"/*) dest=$CACHE/userland/${lib#"$kadir"/} ;;
	*) dest=$CACHE/userland$lib ;;
	esac
	[ -e "$dest" ] || install -D -m 0755 "$(readlink -f "$lib")" "$dest"
done

# ffmpeg: its .deb and those of every package apt would install with it here
# (the host's own packages are left to ldd), unpacked into ffmpeg.libs/. The
# guest's loader has no ld.so.cache and none of the alternatives links
# (libblas.so.3 lives in blas/) that the packages' scripts would make, so the
# libraries from ffmpeg.libs/ go, under the names ldd asked for, into
# /usr/lib/x86_64-linux-gnu, a folder it always searches; those from the
# host keep their paths, and the ones userland/ already has are left out.
ffdir=$CACHE/ffmpeg.libs
fftree=$CACHE/ffmpeg
rm -rf "$ffdir" "$fftree"
# apt-get install -s prints "Inst NAME [OLD] (VERSION ...)" per package; one
# apt-get download fetches those not cached yet (one call per package, as
# download does, took minutes of apt's CPU for about 90).
ffwant=$( (
	echo "ffmpeg=$(candidate ffmpeg)"
	apt-get install -s -qq --no-install-recommends ffmpeg </dev/null |
		sed -nE 's/^Inst ([^ ]+) (\[[^]]*\] )?\(([^ ]+) .*/\1=\3/p'
) | sort -u)
ffmissing=()
for pv in $ffwant; do
	cached_deb "${pv%%=*}" "${pv#*=}" >/dev/null || ffmissing+=("$pv")
done
if [ ${#ffmissing[@]} -gt 0 ]; then
	log "apt-get download ${ffmissing[*]}"
	(cd "$CACHE/debs" && apt-get download -qq -o APT::Sandbox::User=root "${ffmissing[@]}" </dev/null >&2)
fi
for pv in $ffwant; do
	deb=$(cached_deb "${pv%%=*}" "${pv#*=}") || { log "apt-get download $pv left no .deb in $CACHE/debs"; exit 1; }
	dpkg -x "$deb" "$ffdir"
done
[ -x "$ffdir/usr/bin/ffmpeg" ] || { log "the ffmpeg package has no /usr/bin/ffmpeg"; exit 1; }
ffpath=$(find "$ffdir" -name '*.so*' -printf '%h\n' | sort -u | tr '\n' ':')
ffldd() { LD_LIBRARY_PATH=$ffpath ldd "$ffdir/usr/bin/ffmpeg"; }
if ffldd | grep -q 'not found'; then
	log "ffmpeg misses libraries: $(ffldd | grep 'not found' | tr -s ' \t\n' ' ')"
	exit 1
fi
install -D -m 0755 "$ffdir/usr/bin/ffmpeg" "$fftree/usr/bin/ffmpeg"
ffmpeg_libdir=/usr/lib/x86_64-linux-gnu # the lab is amd64 (qemu-system-x86_64, linux-image-amd64)
ffldd | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r so lib; do
	case $lib in
	"$ffdir"/*) dest=$fftree$ffmpeg_libdir/$so ;;
	*) dest=$fftree$lib ;;
	esac
	[ -e "$CACHE/userland${dest#"$fftree"}" ] || [ -e "$dest" ] || install -D -m 0755 "$(readlink -f "$lib")" "$dest"
done
# The tree must run on its own plus userland/: the host's loader stands in
# for the guest's (same libc), pointed at the tree first.
LD_LIBRARY_PATH=$fftree$ffmpeg_libdir "$fftree/usr/bin/ffmpeg" -hide_banner -version >/dev/null ||
	{ log "the unpacked ffmpeg does not run: LD_LIBRARY_PATH=$fftree$ffmpeg_libdir $fftree/usr/bin/ffmpeg -version"; exit 1; }
log "ffmpeg: $(du -sh "$fftree" | cut -f1) in $fftree ($(find "$fftree" -type f | wc -l) files)"

fetch_etcd
fetch_iptables

echo "$kver" >"$CACHE/kernel.version"
{
	echo "kernel $kpkg $(candidate "$kpkg")"
	echo "busybox-static $(candidate busybox-static)"
	for p in ipvsadm nftables iproute2; do
		echo "$p $(dpkg-query -W -f='${Version}' "$p")"
	done
	echo "keepalived $(candidate keepalived)"
	echo "ffmpeg $(candidate ffmpeg)"
} >"$CACHE/fetch.stamp.tmp"
mv "$CACHE/fetch.stamp.tmp" "$CACHE/fetch.stamp"
log "cache ready in $CACHE ($kver) in $(($(date +%s) - start))s"

#!/bin/bash
# build-image.sh OUT: the design's pull benchmark image as an OCI layout in
# OUT (tag "latest"): layer 1 = `debootstrap --variant=minbase bookworm`,
# layer 2 = python3 installed on top (the overlay upper dir of the install,
# its whiteouts turned into OCI .wh. files). The rootfs trees are cached
# under /var/cache/strata-bench/ (network access to deb.debian.org needed
# once).
set -euo pipefail
out=$1
cache=${STRATA_BENCH_CACHE:-/var/cache/strata-bench}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
mkimage="$here/../../tests/integration/lib/mkimage.sh"
mkdir -p "$cache"

if [ ! -e "$cache/base.done" ]; then
	rm -rf "$cache/base"
	debootstrap --variant=minbase bookworm "$cache/base" "$mirror" >"$cache/debootstrap.log" 2>&1
	rm -rf "$cache/base/var/cache/apt/archives/"*.deb "$cache/base/var/lib/apt/lists/"*
	touch "$cache/base.done"
fi

if [ ! -e "$cache/python.done" ]; then
	rm -rf "$cache/py-upper" "$cache/py-work" "$cache/py-merged"
	mkdir -p "$cache/py-upper" "$cache/py-work" "$cache/py-merged"
	mount -t overlay overlay -o "lowerdir=$cache/base,upperdir=$cache/py-upper,workdir=$cache/py-work" \
		"$cache/py-merged"
	trap 'umount -l "$cache/py-merged/proc" 2>/dev/null || true; umount -l "$cache/py-merged" 2>/dev/null || true' EXIT
	mount -t proc proc "$cache/py-merged/proc"
	cp /etc/resolv.conf "$cache/py-merged/etc/resolv.conf"
	chroot "$cache/py-merged" /bin/sh -c \
		"echo 'deb $mirror bookworm main' >/etc/apt/sources.list && apt-get update -q && \
		 DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 && \
		 apt-get clean && rm -rf /var/lib/apt/lists/*" >"$cache/python.log" 2>&1
	umount "$cache/py-merged/proc"
	umount "$cache/py-merged"
	trap - EXIT
	# overlay whiteouts (0/0 char devices) -> OCI whiteouts; opaque dirs too
	find "$cache/py-upper" -type c | while read -r f; do
		if [ "$(stat -c %t:%T "$f")" = "0:0" ]; then
			rm -f "$f"
			touch "$(dirname "$f")/.wh.$(basename "$f")"
		fi
	done
	find "$cache/py-upper" -type d | while read -r d; do
		if [ "$(getfattr --only-values -n trusted.overlay.opaque "$d" 2>/dev/null)" = y ]; then
			setfattr -x trusted.overlay.opaque "$d"
			touch "$d/.wh..wh..opq"
		fi
	done
	touch "$cache/python.done"
fi

rm -rf "$out"
bash "$mkimage" "$out" latest "$cache/base" "$cache/py-upper"

#!/bin/bash
# mkimage.sh OUT TAG ROOTFS [ROOTFS...]: build an OCI image layout with one
# gzip'd tar layer per ROOTFS (in order, bottom first) for the host's
# architecture. Deterministic: fixed mtimes and owners.
# Environment (all optional):
#   MKIMAGE_KEEP_OWNERS=1  keep the files' uid/gid instead of root:root
#   MKIMAGE_ARCH=arm64     the config's architecture (default: the host's)
#   MKIMAGE_VARIANT=v8     the config's variant (default: none)
set -euo pipefail
out=$1 tag=$2
shift 2
arch=${MKIMAGE_ARCH:-$(dpkg --print-architecture)}
owners=(--owner=0 --group=0)
[ "${MKIMAGE_KEEP_OWNERS:-0}" = 1 ] && owners=()
variant=""
[ -n "${MKIMAGE_VARIANT:-}" ] && variant=",\"variant\":\"$MKIMAGE_VARIANT\""
mkdir -p "$out/blobs/sha256"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

put_blob() { # file -> prints digest hex, moves file into blobs/
	local hex
	hex=$(sha256sum "$1" | cut -d' ' -f1)
	mv "$1" "$out/blobs/sha256/$hex"
	echo "$hex"
}

layers_json="" diffids_json=""
for rootfs in "$@"; do
	tar --sort=name --mtime=@1700000000 "${owners[@]}" --numeric-owner \
		--xattrs --xattrs-include='*' --pax-option=delete=atime,delete=ctime -C "$rootfs" -cf "$tmp/layer.tar" .
	diffid=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
	gzip -n -6 "$tmp/layer.tar"
	size=$(stat -c %s "$tmp/layer.tar.gz")
	hex=$(put_blob "$tmp/layer.tar.gz")
	layers_json+="${layers_json:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}"
	diffids_json+="${diffids_json:+,}\"sha256:$diffid\""
done

printf '{"architecture":"%s"%s,"os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[]}' \
	"$arch" "$variant" "$diffids_json" >"$tmp/config.json"
csize=$(stat -c %s "$tmp/config.json")
chex=$(put_blob "$tmp/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
	"$chex" "$csize" "$layers_json" >"$tmp/manifest.json"
msize=$(stat -c %s "$tmp/manifest.json")
mhex=$(put_blob "$tmp/manifest.json")

echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
	"$mhex" "$msize" "$tag" >"$out/index.json"

#!/bin/bash
# mkindex.sh OUT TAG LAYOUT [LAYOUT...]: a multi-platform image as an OCI
# layout in OUT: an image index (tag TAG) over the single manifest of each
# LAYOUT (built by mkimage.sh, one per platform), each index entry carrying
# the platform of its manifest's config (os, architecture, variant). Blobs
# are copied, so the inputs stay usable. Push it with `skopeo copy --all`.
set -euo pipefail
out=$1 tag=$2
shift 2
mkdir -p "$out/blobs/sha256"
entries=""
for layout in "$@"; do
	cp -n "$layout"/blobs/sha256/* "$out/blobs/sha256/"
	mdigest=$(jq -r '.manifests[0].digest' "$layout/index.json")
	msize=$(jq -r '.manifests[0].size' "$layout/index.json")
	mtype=$(jq -r '.manifests[0].mediaType' "$layout/index.json")
	cfg=$(jq -r '.config.digest' "$layout/blobs/sha256/${mdigest#sha256:}")
	platform=$(jq -c '{os, architecture} + (if .variant then {variant} else {} end)' \
		"$layout/blobs/sha256/${cfg#sha256:}")
	entries+="${entries:+,}{\"mediaType\":\"$mtype\",\"digest\":\"$mdigest\",\"size\":$msize,\"platform\":$platform}"
done
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
	"$entries" >"$tmp"
hex=$(sha256sum "$tmp" | cut -d' ' -f1)
size=$(stat -c %s "$tmp")
mv "$tmp" "$out/blobs/sha256/$hex"
trap - EXIT
echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
	"$hex" "$size" "$tag" >"$out/index.json"

#!/bin/sh
# Runs protoc-c over Strata's .proto tree and flattens the output into one
# directory, because meson outputs cannot live in subdirectories. The protos
# keep upstream's nested import paths ("google/protobuf/timestamp.proto") so
# that the Python test clients and containerd's own files resolve the same
# names; only the generated C includes are rewritten to the flat names (all
# basenames are unique).
#
# usage: protoc-c-flat.sh PROTOC_C PROTO_ROOT OUTDIR PROTO...
set -eu
protoc_c=$1
root=$(realpath "$2")
outdir=$3
shift 3

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rel=""
for f in "$@"; do
	abs=$(realpath "$f")
	rel="$rel ${abs#"$root"/}"
done

# shellcheck disable=SC2086
"$protoc_c" --proto_path="$root" --c_out="$tmp" $rel

for r in $rel; do
	base=${r%.proto}
	for ext in c h; do
		sed -e 's|#include "\([^"]*/\)\{0,1\}\([^/"]*\.pb-c\.h\)"|#include "\2"|' \
			"$tmp/$base.pb-c.$ext" >"$outdir/$(basename "$base").pb-c.$ext"
	done
done

#!/bin/bash
# README command 1: install what is needed, build Strata, and run the main
# job: a container started lazily from a local registry.
#
#   1. a private registry on 127.0.0.1 (Debian's docker-registry)
#   2. a demo image (busybox-static + a 64 MiB file the container never reads)
#   3. `strata convert --estargz` turns it into eStargz in the same registry
#   4. `strata run` starts the daemon itself, pulls the image lazily (FUSE
#      layers fetched chunk by chunk) and runs the container
#   5. how many bytes of the image were fetched to do that
# Everything lives in a temp dir and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT_DIR=$(pwd)

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
	echo "demo.sh: run as root (it mounts filesystems and runs containers)" >&2
	exit 1
fi

step "Installing Debian packages (scripts/install-deps.sh)"
bash scripts/install-deps.sh

step "Building Strata (meson + ninja)"
if [ -d build/meson-private ]; then meson configure build >/dev/null; else meson setup build >/dev/null; fi
ninja -C build >/dev/null
STRATA=$ROOT_DIR/build/cli/strata
"$STRATA" version

step "Checking the host (strata doctor)"
"$STRATA" doctor

# Reuse the integration-test helpers: private registry in a temp dir,
# everything stopped and removed on exit.
BATS_TEST_DIRNAME="$ROOT_DIR/tests/integration"
# shellcheck source=../tests/integration/helpers.bash
source "$BATS_TEST_DIRNAME/helpers.bash"
common_setup
DEMO_ROOT="$TEST_TMP/strata-root"
DEMO_SOCK="$TEST_TMP/run/strata.sock"
s() { "$STRATA" --root "$DEMO_ROOT" --address "$DEMO_SOCK" "$@"; }
cleanup() {
	# the daemon `strata run` started for us
	if [ -f "$DEMO_ROOT/strata.pid" ]; then
		kill -TERM "$(cat "$DEMO_ROOT/strata.pid")" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$(cat "$DEMO_ROOT/strata.pid")" 2>/dev/null || break; sleep 0.1; done
	fi
	common_teardown
}
trap cleanup EXIT

step "Starting a private registry on 127.0.0.1"
start_registry
echo "registry: http://$REGISTRY"

step "Building a demo image: busybox-static + a 64 MiB file the container never reads"
build_busybox_image "$TEST_TMP/oci" latest >/dev/null
head -c $((64 * 1024 * 1024)) /dev/urandom >"$TEST_TMP/rootfs-busybox/unused.bin"
rm -rf "$TEST_TMP/oci"
bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$TEST_TMP/rootfs-busybox"
push_image "$TEST_TMP/oci" latest demo/app:latest
IMAGE_BYTES=$(du -cb "$TEST_TMP"/oci/blobs/sha256/* | tail -1 | cut -f1)
echo "image: $REGISTRY/demo/app:latest ($IMAGE_BYTES bytes compressed)"

step "Converting it to eStargz (strata convert --estargz)"
s convert --estargz "$REGISTRY/demo/app:latest" "$REGISTRY/demo/app:estargz"

step "Running it lazily: strata run starts the daemon, pulls lazily, runs the container"
s run --rm --net none "$REGISTRY/demo/app:estargz" /bin/cat /etc/motd

step "What was fetched from the registry"
s snapshots ls | sed 's/^/  /'
FETCHED=$(s snapshots ls --json 2>/dev/null | python3 -c '
import json, sys
total = 0
for snap in json.load(sys.stdin):
    lazy = snap.get("lazy") or {}
    total += int(lazy.get("bytes_fetched", 0) or 0)
print(total)' 2>/dev/null || echo "?")
echo "fetched $FETCHED bytes of a $IMAGE_BYTES-byte image to run the container"

step "Done: stopping the daemon and the registry, removing temp files"

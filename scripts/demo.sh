#!/bin/bash
# README command 1: install what is needed, build Strata, and run the main job
# as far as this version implements it. Every step says what it really did.
#
# Today (0.1): build, host checks, a private registry on 127.0.0.1 with a
# busybox image pushed to it, `strata serve`, and a private containerd that
# pulls and runs that image through Strata's snapshotter and content store
# (proxy_plugins). Lazy pulling joins this script when it lands (README
# "Status").
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
./build/cli/strata version

step "Checking the host (strata doctor)"
./build/cli/strata doctor

# Reuse the integration-test helpers: private registry and containerd in a
# temp dir, cleaned up on exit.
BATS_TEST_DIRNAME="$ROOT_DIR/tests/integration"
# shellcheck source=../tests/integration/helpers.bash
source "$BATS_TEST_DIRNAME/helpers.bash"
common_setup
trap common_teardown EXIT

step "Starting a private registry on 127.0.0.1 and pushing a busybox image"
start_registry
build_busybox_image "$TEST_TMP/oci" latest
push_image "$TEST_TMP/oci" latest demo/busybox:latest
echo "registry: http://$REGISTRY  image: $REGISTRY/demo/busybox:latest"

step "Starting strata serve (root and socket under $TEST_TMP)"
start_strata
echo "strata: $STRATA_SOCK"

step "Starting a private containerd whose snapshotter and content store are Strata"
start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
echo "containerd: $CONTAINERD_SOCK (proxy_plugins: strata, strata-content)"

step "containerd pulls the image into Strata (full pull: lazy pull is not implemented yet)"
ctr_ images pull --plain-http --snapshotter strata "$REGISTRY/demo/busybox:latest" >/dev/null
echo "blobs in Strata's content store:"
ls -l "$STRATA_ROOT_DIR/content/blobs/sha256" | tail -n +2 | awk '{print "  " $5 " bytes  sha256:" $9}'
echo "snapshots in Strata's snapshotter:"
ctr_ snapshots --snapshotter strata ls | sed 's/^/  /'

step "Running the container on Strata's snapshot (ctr run --snapshotter strata)"
ctr_ run --rm --snapshotter strata "$REGISTRY/demo/busybox:latest" demo-$$ /bin/cat /etc/motd

step "Done: cleaning up the registry, containerd, strata and temp files"

#!/usr/bin/env bats
# Strata's own pull (strata.images.v1.Images on the daemon) against a real
# docker-registry: layers unpacked into snapshots, verification, resume,
# the image store and prune, and coexistence with containerd on one store.
#
# The client is lib/strata-images.py (grpcio) until `strata pull` lands;
# Strata's own snapshots are invisible over gRPC by design, so they are
# inspected with pull-test-tool while the daemon is stopped.

load helpers

BUILD_DIR=${STRATA_BUILD_DIR:-$(cd "$(dirname "$STRATA_BIN")/.." && pwd)}
PULL_TOOL="$BUILD_DIR/tests/unit/pull/pull-test-tool"

setup() {
	common_setup
	start_registry
}
teardown() { common_teardown; }

images_() { /usr/bin/python3 "$BATS_TEST_DIRNAME/lib/strata-images.py" "$STRATA_SOCK" "$@"; }

stop_strata() {
	kill -TERM "$STRATA_PID"
	wait_for 20 bash -c "! kill -0 $STRATA_PID"
}

# Layer states of a pull's last progress message, space-separated.
final_states() { tail -1 | jq -r '[.layers[].state] | join(" ")'; }

# rootfs 1: busybox, /etc/a, /etc/b, /data/big (optional); rootfs 2: /etc/c,
# a whiteout of /etc/b.
make_rootfs() {
	R1="$TEST_TMP/r1" R2="$TEST_TMP/r2"
	mkdir -p "$R1/bin" "$R1/etc" "$R2/etc"
	cp /bin/busybox "$R1/bin/busybox"
	echo one >"$R1/etc/a"
	echo gone >"$R1/etc/b"
	echo two >"$R2/etc/c"
	touch "$R2/etc/.wh.b"
}

strata_snapshots() { "$PULL_TOOL" "$STRATA_ROOT_DIR" snapshots; }

@test "pull unpacks a 2-layer image with a whiteout; pulling again finds every layer" {
	make_rootfs
	bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$R1" "$R2"
	push_image "$TEST_TMP/oci" latest test/two:latest
	start_strata
	run images_ pull "$REGISTRY/test/two:latest"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | final_states)" = "DONE DONE" ]
	# plain gzip layers cannot be lazy: the pull says why and unpacks them
	echo "$output" | grep -q 'is not eStargz (no containerd.io/snapshot/stargz/toc.digest annotation): pulling it in full'
	name=$(echo "$output" | tail -1 | jq -r .image.name)
	[ "$name" = "$REGISTRY/test/two:latest" ]
	top=$(echo "$output" | tail -1 | jq -r '.image.chain_ids[-1]')

	run images_ pull "$REGISTRY/test/two:latest"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | final_states)" = "EXISTS EXISTS" ]

	run images_ list
	[ "$(echo "$output" | jq -r '.images | length')" = 1 ]
	run images_ get "$REGISTRY/test/two"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jq -r '.config.rootfs.diff_ids | length')" = 2 ]
	# blobs carry containerd's GC labels (checked through the content layout)
	for f in "$TEST_TMP"/oci/blobs/sha256/*; do
		cmp "$f" "$STRATA_ROOT_DIR/content/blobs/sha256/$(basename "$f")"
	done

	stop_strata
	strata_snapshots | grep -c "^@strata/sha256:.* committed$" | grep -qx 2
	mkdir "$TEST_TMP/mnt"
	"$PULL_TOOL" "$STRATA_ROOT_DIR" mount "@strata/$top" "$TEST_TMP/mnt"
	ls -la "$TEST_TMP/mnt/etc"
	[ "$(cat "$TEST_TMP/mnt/etc/a")" = one ]
	[ "$(cat "$TEST_TMP/mnt/etc/c")" = two ]
	[ ! -e "$TEST_TMP/mnt/etc/b" ]
	cmp /bin/busybox "$TEST_TMP/mnt/bin/busybox"
	"$PULL_TOOL" "$STRATA_ROOT_DIR" unmount "$TEST_TMP/mnt"
}

@test "a registry serving a corrupted blob: the pull fails, no blob, no snapshot" {
	make_rootfs
	bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$R1" "$R2"
	push_image "$TEST_TMP/oci" latest test/bad:latest
	# flip bytes in the first layer in the registry's own storage
	layer=$(jq -r '.layers[0].digest' "$TEST_TMP/oci/blobs/sha256/$(jq -r '.manifests[0].digest' "$TEST_TMP/oci/index.json" | cut -d: -f2)" | cut -d: -f2)
	data=$(find "$TEST_TMP/registry/data" -path "*blobs/sha256/*/$layer/data")
	[ -f "$data" ]
	printf 'XXXXXXXX' | dd of="$data" bs=1 seek=1000 conv=notrunc status=none
	start_strata
	run images_ pull "$REGISTRY/test/bad:latest"
	echo "$output"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "layer sha256:$layer"
	echo "$output" | grep -qi "digest"
	[ ! -e "$STRATA_ROOT_DIR/content/blobs/sha256/$layer" ]
	# the corrupted layer's ingest is gone; another layer cancelled mid-way
	# may keep its (verified-so-far) ingest for a later resume
	! grep -qs "sha256:$layer" "$STRATA_ROOT_DIR"/content/ingest/*/ref
	run images_ list
	[ "$(echo "$output" | jq -r '.images | length')" = 0 ]
	stop_strata
	run strata_snapshots
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "lazy=always refuses a layer that is not eStargz, naming why" {
	make_rootfs
	bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$R1"
	push_image "$TEST_TMP/oci" latest test/plain:latest
	start_strata
	run images_ pull --lazy always "$REGISTRY/test/plain:latest"
	echo "$output"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "cannot be mounted lazily: .*toc.digest annotation"
	# and nothing was recorded
	run images_ list
	! echo "$output" | grep -q "test/plain"
}

@test "a pull killed mid-download resumes from the ingest offset" {
	make_rootfs
	mkdir -p "$R1/data"
	head -c $((50 * 1024 * 1024)) /dev/urandom >"$R1/data/big"
	bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$R1" "$R2"
	push_image "$TEST_TMP/oci" latest test/big:latest
	port=$(free_port)
	/usr/bin/python3 "$HELPERS_DIR/lib/slow-proxy.py" "$port" "$REGISTRY" $((20 * 1024 * 1024)) \
		"$TEST_TMP/proxy-bytes" &
	track_pid $!
	wait_for 10 curl -so /dev/null "http://127.0.0.1:$port/v2/"
	: >"$TEST_TMP/proxy-bytes"
	STRATA_LOG_LEVEL=debug start_strata
	images_ pull "127.0.0.1:$port/test/big:latest" >"$TEST_TMP/pull1.log" 2>&1 &
	pull=$!
	# kill -9 the daemon once ~15 MiB of the big layer are in its ingest
	wait_for 30 bash -c "[ \$(find '$STRATA_ROOT_DIR/content/ingest' -name data -size +15M | wc -l) -ge 1 ]"
	kill -KILL "$STRATA_PID"
	wait "$pull" || true
	first=$(find "$STRATA_ROOT_DIR/content/ingest" -name data -size +1M -printf '%s\n')
	echo "ingest offset after the kill: $first"
	[ "$first" -gt $((10 * 1024 * 1024)) ]
	[ "$first" -lt $((50 * 1024 * 1024)) ]
	: >"$TEST_TMP/proxy-bytes"
	STRATA_LOG_LEVEL=debug start_strata
	run images_ pull "127.0.0.1:$port/test/big:latest"
	echo "$output" | tail -1
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | final_states)" = "DONE DONE" ]
	grep -q "resuming at byte $first" "$TEST_TMP/strata.log"
	# the second pull fetched what was missing, not the whole layer again
	size=$(echo "$output" | tail -1 | jq -r '.layers[0].size')
	second=$(awk '{ s += $1 } END { print s }' "$TEST_TMP/proxy-bytes")
	echo "layer $size bytes, second pull moved $second bytes"
	[ "$second" -lt $((size - first + 1024 * 1024)) ]
	stop_strata
	strata_snapshots | grep -c committed | grep -qx 2
}

@test "delete + prune removes exactly the unreferenced blobs and snapshots" {
	make_rootfs
	R3="$TEST_TMP/r3"
	mkdir -p "$R3/etc"
	echo three >"$R3/etc/d"
	# A and B must share their first layer byte for byte: mkimage.sh's
	# --xattrs makes GNU tar write atime/ctime pax headers, so drop them
	sed 's/--numeric-owner/--numeric-owner --pax-option=delete=atime,delete=ctime/' \
		"$HELPERS_DIR/lib/mkimage.sh" >"$TEST_TMP/mkimage.sh"
	bash "$TEST_TMP/mkimage.sh" "$TEST_TMP/oci-a" latest "$R1" "$R2"
	bash "$TEST_TMP/mkimage.sh" "$TEST_TMP/oci-b" latest "$R1" "$R3"
	[ "$(jq -r .rootfs.diff_ids[0] "$TEST_TMP"/oci-a/blobs/sha256/* 2>/dev/null | grep sha256)" = \
		"$(jq -r .rootfs.diff_ids[0] "$TEST_TMP"/oci-b/blobs/sha256/* 2>/dev/null | grep sha256)" ]
	push_image "$TEST_TMP/oci-a" latest test/a:latest
	push_image "$TEST_TMP/oci-b" latest test/b:latest
	start_strata
	images_ pull "$REGISTRY/test/a:latest" >/dev/null
	images_ pull "$REGISTRY/test/b:latest" >/dev/null
	run images_ prune
	[ "$(echo "$output" | jq -r '.removed_blobs | length')" = 0 ]
	[ "$(echo "$output" | jq -r '.removed_snapshots | length')" = 0 ]
	a=$(images_ list 'name~=test/a' | jq -r '.images[0]')
	images_ delete "$REGISTRY/test/a:latest"
	run images_ prune --dry-run
	echo "$output"
	[ "$(echo "$output" | jq -r '.removed_blobs | length')" = 3 ]
	run images_ prune
	echo "$output"
	[ "$status" -eq 0 ]
	# A's manifest, config and second layer; B shares the first layer
	want=$(jq -r '.manifests[0].digest' "$TEST_TMP/oci-a/index.json")
	mf="$TEST_TMP/oci-a/blobs/sha256/${want#sha256:}"
	expect=$(printf '%s\n' "$want" "$(jq -r .config.digest "$mf")" "$(jq -r '.layers[1].digest' "$mf")" | sort)
	[ "$(echo "$output" | jq -r '.removed_blobs[]' | sort)" = "$expect" ]
	[ "$(echo "$output" | jq -r '.removed_snapshots[]')" = "@strata/$(echo "$a" | jq -r '.chain_ids[1]')" ]
	[ "$(echo "$output" | jq -r '.reclaimed_bytes')" -gt 0 ]
	for d in $expect; do [ ! -e "$STRATA_ROOT_DIR/content/blobs/sha256/${d#sha256:}" ]; done
	# B is whole
	run images_ pull "$REGISTRY/test/b:latest"
	[ "$(echo "$output" | final_states)" = "EXISTS EXISTS" ]
	run images_ prune
	[ "$(echo "$output" | jq -r '.removed_blobs | length')" = 0 ]
}

# containerd through proxy_plugins (snapshots + content) on the same daemon.
start_containerd_on_strata() {
	start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
}

@test "coexistence: containerd's GC keeps Strata's image, Strata's prune keeps containerd's" {
	build_busybox_image "$TEST_TMP/oci" latest
	push_image "$TEST_TMP/oci" latest test/busybox:latest
	IMAGE="$REGISTRY/test/busybox:latest"
	start_strata
	start_containerd_on_strata

	# Strata first, then containerd pulls the same image, then removes it
	run images_ pull "$IMAGE"
	[ "$status" -eq 0 ]
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE"
	ctr_ run --rm --snapshotter strata "$IMAGE" c1 /bin/cat /etc/motd | grep -q "hello from strata"
	ctr_ images rm --sync "$IMAGE"
	[ "$(ctr_ snapshots --snapshotter strata ls | grep -c Committed)" -eq 0 ]
	run images_ list
	[ "$(echo "$output" | jq -r '.images | length')" = 1 ]
	for f in "$TEST_TMP"/oci/blobs/sha256/*; do
		cmp "$f" "$STRATA_ROOT_DIR/content/blobs/sha256/$(basename "$f")"
	done
	run images_ pull "$IMAGE"
	[ "$(echo "$output" | final_states)" = "EXISTS" ]
	# containerd's content list does not show Strata's blobs
	[ -z "$(ctr_ content ls -q)" ]

	# vice versa: containerd pulls again, Strata deletes its image and prunes
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE"
	images_ delete "$IMAGE"
	run images_ prune
	echo "$output"
	[ "$(echo "$output" | jq -r '.removed_blobs | length')" = 0 ]
	[ "$(echo "$output" | jq -r '.removed_snapshots | length')" = 1 ]
	ctr_ images check | grep -q complete
	ctr_ run --rm --snapshotter strata "$IMAGE" c2 /bin/cat /etc/motd | grep -q "hello from strata"

	# and containerd first: Strata pulls what containerd already has
	run images_ pull "$IMAGE"
	[ "$status" -eq 0 ]
	ctr_ images rm --sync "$IMAGE"
	run images_ pull "$IMAGE"
	[ "$(echo "$output" | final_states)" = "EXISTS" ]
	for f in "$TEST_TMP"/oci/blobs/sha256/*; do
		cmp "$f" "$STRATA_ROOT_DIR/content/blobs/sha256/$(basename "$f")"
	done
}

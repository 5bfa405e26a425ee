#!/usr/bin/env bats
# containerd (Debian's 1.6.20, private config) uses Strata through
# proxy_plugins: its snapshotter, and its content store.

load helpers

setup() {
	common_setup
	start_registry
	build_busybox_image "$TEST_TMP/oci" latest
	push_image "$TEST_TMP/oci" latest test/busybox:latest
	IMAGE="$REGISTRY/test/busybox:latest"
	start_strata
}
teardown() { common_teardown; }

@test "containerd pulls and runs busybox on Strata's snapshotter" {
	start_containerd "" "$(strata_proxy_config)"
	run ctr_ plugins ls
	echo "$output" | grep -E 'io.containerd.snapshotter.v1 +strata .*ok'
	run ctr_ images pull --plain-http --snapshotter strata "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	# the unpacked layer is a committed snapshot in Strata's store
	run ctr_ snapshots --snapshotter strata ls
	echo "$output"
	echo "$output" | grep -q "Committed"
	ls "$STRATA_ROOT_DIR"/snapshots/*/fs/bin/busybox
	run ctr_ run --rm --snapshotter strata "$IMAGE" it1 /bin/cat /etc/motd
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello from strata" ]
	# a container's writes land in its active snapshot and vanish with it
	run ctr_ run --rm --snapshotter strata "$IMAGE" it2 /bin/sh -c 'echo x > /tmp/f && cat /tmp/f'
	[ "$status" -eq 0 ]
	[ "$output" = "x" ]
}

@test "containerd's garbage collector removes Strata snapshots when the image goes" {
	start_containerd "" "$(strata_proxy_config)"
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE"
	[ -n "$(ls "$STRATA_ROOT_DIR/snapshots")" ]
	ctr_ images rm --sync "$IMAGE"
	# GC is synchronous with --sync: the snapshot and its directory are gone
	run ctr_ snapshots --snapshotter strata ls
	echo "$output"
	[ "$(echo "$output" | grep -c Committed)" -eq 0 ]
	wait_for 10 bash -c "[ -z \"\$(ls '$STRATA_ROOT_DIR/snapshots')\" ]"
}

@test "containerd stores image content in Strata's content store" {
	start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
	run ctr_ images pull --plain-http --snapshotter strata "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	# every blob of the image is in Strata's blobs/ under its own digest
	for f in "$TEST_TMP"/oci/blobs/sha256/*; do
		hex=$(basename "$f")
		cmp "$f" "$STRATA_ROOT_DIR/content/blobs/sha256/$hex"
	done
	run ctr_ content ls
	echo "$output"
	echo "$output" | grep -q "containerd.io/gc.ref.content"
	run ctr_ run --rm --snapshotter strata "$IMAGE" it3 /bin/cat /etc/motd
	[ "$output" = "hello from strata" ]
	# removing the image lets containerd's GC delete the blobs through Strata
	ctr_ images rm --sync "$IMAGE"
	wait_for 10 bash -c "[ -z \"\$(ls '$STRATA_ROOT_DIR/content/blobs/sha256')\" ]"
}

@test "strata serve refuses a second daemon on the same address and exits 0 on SIGTERM" {
	run "$STRATA_BIN" --root "$TEST_TMP/other-root" --address "$STRATA_SOCK" serve
	[ "$status" -eq 1 ]
	echo "$output" | grep -qi "already"
	kill -TERM "$STRATA_PID"
	wait "$STRATA_PID"
	[ "$?" -eq 0 ]
	[ ! -e "$STRATA_SOCK" ]
}

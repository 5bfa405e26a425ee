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

@test "ctr snapshots ls|info|tree|usage|label|rm behave as with the built-in snapshotter" {
	start_containerd "" "$(strata_proxy_config)"
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE" >/dev/null
	chain=$(ctr_ snapshots --snapshotter strata ls | awk '/Committed/ {print $1}')
	[ -n "$chain" ]
	run ctr_ snapshots --snapshotter strata info "$chain"
	echo "$output"
	echo "$output" | grep -q '"Kind": "Committed"'
	ctr_ snapshots --snapshotter strata prepare t-active "$chain"
	run ctr_ snapshots --snapshotter strata tree
	echo "$output"
	echo "$output" | grep -q "t-active"
	# writes into the active snapshot show in usage
	upper=$(ctr_ snapshots --snapshotter strata mounts "$TEST_TMP/mnt" t-active | grep -o 'upperdir=[^,]*' | cut -d= -f2)
	[ -d "$upper" ]
	head -c 1048576 /dev/zero >"$upper/blob"
	run ctr_ snapshots --snapshotter strata usage t-active
	echo "$output"
	echo "$output" | grep -E "t-active +1\.[0-9]+ MiB"
	ctr_ snapshots --snapshotter strata label t-active team=storage
	run ctr_ snapshots --snapshotter strata info t-active
	echo "$output" | grep -q '"team": "storage"'
	# a parent with children cannot go; the child can, then the parent
	run ctr_ snapshots --snapshotter strata rm "$chain"
	[ "$status" -ne 0 ]
	echo "$output" | grep -qi "precondition\|children\|parent"
	ctr_ snapshots --snapshotter strata rm t-active
	run ctr_ snapshots --snapshotter strata info t-active
	[ "$status" -ne 0 ]
	echo "$output" | grep -qi "not found"
}

@test "ctr content ls|get|label|rm behave as with the built-in content store" {
	start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE" >/dev/null
	layer=$(ls -S "$TEST_TMP/oci/blobs/sha256" | head -1)
	ctr_ content get "sha256:$layer" >"$TEST_TMP/got"
	cmp "$TEST_TMP/got" "$TEST_TMP/oci/blobs/sha256/$layer"
	ctr_ content label "sha256:$layer" owner=strata-test
	run ctr_ content ls
	echo "$output" | grep "sha256:$layer" | grep -q "owner=strata-test"
	# a blob written by ctr content ingest lands under its digest
	echo "some bytes" >"$TEST_TMP/extra"
	ctr_ content ingest --expected-digest "sha256:$(sha256sum "$TEST_TMP/extra" | cut -d' ' -f1)" \
		--expected-size "$(stat -c %s "$TEST_TMP/extra")" extra-ref <"$TEST_TMP/extra"
	hex=$(sha256sum "$TEST_TMP/extra" | cut -d' ' -f1)
	cmp "$TEST_TMP/extra" "$STRATA_ROOT_DIR/content/blobs/sha256/$hex"
	ctr_ content rm "sha256:$hex"
	# containerd deletes from its metadata, then its GC deletes through Strata
	wait_for 10 test ! -e "$STRATA_ROOT_DIR/content/blobs/sha256/$hex"
	run ctr_ content get "sha256:$hex"
	[ "$status" -ne 0 ]
}

@test "restarting strata serve or containerd loses nothing" {
	start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE" >/dev/null
	before_snaps=$(ctr_ snapshots --snapshotter strata ls | sort)
	before_content=$(ctr_ content ls -q | sort)
	# restart strata
	kill -TERM "$STRATA_PID"
	wait "$STRATA_PID"
	start_strata
	# containerd reconnects by itself (dial with backoff)
	wait_for 15 ctr_ snapshots --snapshotter strata ls
	[ "$(ctr_ snapshots --snapshotter strata ls | sort)" = "$before_snaps" ]
	[ "$(ctr_ content ls -q | sort)" = "$before_content" ]
	run ctr_ run --rm --snapshotter strata "$IMAGE" r1 /bin/cat /etc/motd
	[ "$output" = "hello from strata" ]
	# restart containerd
	kill -TERM "$CONTAINERD_PID"
	wait_for 10 bash -c "! kill -0 $CONTAINERD_PID"
	start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
	[ "$(ctr_ snapshots --snapshotter strata ls | sort)" = "$before_snaps" ]
	run ctr_ run --rm --snapshotter strata "$IMAGE" r2 /bin/cat /etc/motd
	[ "$output" = "hello from strata" ]
}

@test "strata content verify re-hashes every blob and names a corrupted one" {
	start_containerd "$(strata_proxy_toplevel)" "$(strata_proxy_config content)"
	ctr_ images pull --plain-http --snapshotter strata "$IMAGE" >/dev/null
	run "$STRATA_BIN" --root "$STRATA_ROOT_DIR" content ls
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c '^sha256:')" -eq "$(ls "$TEST_TMP/oci/blobs/sha256" | wc -l)" ]
	run "$STRATA_BIN" --root "$STRATA_ROOT_DIR" content verify
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "all blobs verified"
	# flip one byte of the config blob behind Strata's back
	cfg=$(ls -S "$STRATA_ROOT_DIR/content/blobs/sha256" | tail -1)
	printf 'X' | dd of="$STRATA_ROOT_DIR/content/blobs/sha256/$cfg" bs=1 seek=0 conv=notrunc 2>/dev/null
	run "$STRATA_BIN" --root "$STRATA_ROOT_DIR" content verify
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "sha256:$cfg: content does not match its digest"
	echo "$output" | grep -q "1 blob do not match"
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

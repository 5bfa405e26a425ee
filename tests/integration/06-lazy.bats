#!/usr/bin/env bats
# Lazy pulling through containerd: an eStargz image made by an independent
# producer (Debian's ctr-remote), pulled with containerd's remote-snapshot
# labels (ctr-remote images rpull) onto Strata's snapshotter, run by ctr.

load helpers

# A busybox image with a 16 MiB file nobody reads, so "fetched only what the
# container read" is visible in the byte count.
build_lazy_image() {
	local out=$1 rootfs="$TEST_TMP/rootfs-lazy"
	mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/data"
	cp /bin/busybox "$rootfs/bin/busybox"
	for a in sh ls cat echo true sleep; do ln -sf busybox "$rootfs/bin/$a"; done
	echo "hello from a lazy layer" >"$rootfs/etc/motd"
	head -c $((16 << 20)) /dev/urandom >"$rootfs/data/unread"
	bash "$HELPERS_DIR/lib/mkimage.sh" "$out" latest "$rootfs"
}

# Bytes Strata fetched from the registry for lazy layers, from its debug log:
# the TOC reads at mount plus every chunk fetch.
lazy_bytes() {
	local toc chunks
	toc=$(sed -n 's/.*mounted lazily.*, \([0-9]*\) of [0-9]* bytes fetched.*/\1/p' "$TEST_TMP/strata.log" | paste -sd+ | bc)
	chunks=$(sed -n 's/.*: fetched \([0-9]*\) bytes at .*/\1/p' "$TEST_TMP/strata.log" | paste -sd+ | bc)
	echo $(( ${toc:-0} + ${chunks:-0} ))
}

setup() {
	common_setup
	start_registry
	build_lazy_image "$TEST_TMP/oci"
	push_image "$TEST_TMP/oci" latest test/lazy:plain
	PLAIN="$REGISTRY/test/lazy:plain"
	ESGZ="$REGISTRY/test/lazy:esgz"
	STRATA_LOG_LEVEL=debug start_strata
	start_containerd "" "$(strata_proxy_config)"
	# convert with ctr-remote through containerd's own snapshotter, push
	ctr_ images pull --plain-http "$PLAIN" >/dev/null
	ctr-remote --address "$CONTAINERD_SOCK" images convert --estargz --oci "$PLAIN" "$ESGZ"
	ctr_ images push --plain-http "$ESGZ" >/dev/null
	ctr_ images rm "$PLAIN" "$ESGZ" >/dev/null
	IMAGE_SIZE=$(curl -s "http://$REGISTRY/v2/test/lazy/manifests/esgz" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' |
		python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
}
teardown() { common_teardown; }

@test "rpull of an eStargz image mounts its layer lazily and ctr run reads it" {
	run ctr-remote --address "$CONTAINERD_SOCK" images rpull --plain-http --snapshotter strata "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -q "mounted lazily" "$TEST_TMP/strata.log"
	# the snapshot is committed and labelled remote
	chain=$(ctr_ snapshots --snapshotter strata ls | awk '/Committed/ { print $1 }' | head -1)
	[ -n "$chain" ]
	ctr_ snapshots --snapshotter strata info "$chain" | grep -q '"containerd.io/snapshot/remote": "strata"'
	run ctr_ run --rm --snapshotter strata "$ESGZ" lazy1 /bin/cat /etc/motd
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "hello from a lazy layer" ]
	fetched=$(lazy_bytes)
	echo "fetched $fetched of $IMAGE_SIZE bytes before the first output" >&3
	# busybox (~2 MB, read by exec) yes, the 16 MiB file no
	[ "$fetched" -lt $((IMAGE_SIZE / 3)) ]
}

@test "a non-eStargz image falls back to a full pull, says why, and runs" {
	run ctr-remote --address "$CONTAINERD_SOCK" images rpull --plain-http --snapshotter strata "$PLAIN"
	echo "$output"
	[ "$status" -eq 0 ]
	# an ordinary gzip layer has no toc.digest annotation, which is checked
	# first (no unverified layers); the reason is logged at info
	grep -E 'level=info msg="layer sha256:[0-9a-f]+: no toc.digest annotation: refusing unverified layer: falling back to full pull"' "$TEST_TMP/strata.log"
	run ctr_ run --rm --snapshotter strata "$PLAIN" plain1 /bin/cat /etc/motd
	[ "$status" -eq 0 ]
	[ "$output" = "hello from a lazy layer" ]
}

@test "restarting strata serve keeps lazy snapshots serving" {
	ctr-remote --address "$CONTAINERD_SOCK" images rpull --plain-http --snapshotter strata "$ESGZ"
	run ctr_ run --rm --snapshotter strata "$ESGZ" before /bin/cat /etc/motd
	[ "$status" -eq 0 ]
	kill -TERM "$STRATA_PID"
	wait_for 10 bash -c "! kill -0 $STRATA_PID"
	cp "$TEST_TMP/strata.log" "$TEST_TMP/strata.log.1"
	STRATA_LOG_LEVEL=debug start_strata
	wait_for 10 grep -q "remote snapshots: 1 remounted" "$TEST_TMP/strata.log"
	# containerd reconnects by itself; the layer serves again
	run wait_for 20 ctr_ run --rm --snapshotter strata "$ESGZ" after /bin/cat /etc/motd
	echo "$output"
	[ "$status" -eq 0 ]
	run ctr_ run --rm --snapshotter strata "$ESGZ" after2 /bin/sh -c 'wc -c </data/unread'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "16777216" ]
}

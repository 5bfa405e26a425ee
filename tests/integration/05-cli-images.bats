#!/usr/bin/env bats
# strata pull / images / images inspect / rmi / prune: the CLI as a client of
# `strata serve` (Images service), against a real docker-registry serving an
# image the test builds.

load helpers

setup() {
	common_setup
	start_registry
	build_busybox_image "$TEST_TMP/oci" latest
	push_image "$TEST_TMP/oci" latest test/busybox:latest
	IMAGE="$REGISTRY/test/busybox:latest"
	# What the registry serves: the manifest digest, its layer and config.
	DIGEST=$(jq -r '.manifests[0].digest' "$TEST_TMP/oci/index.json")
	MANIFEST="$TEST_TMP/oci/blobs/sha256/${DIGEST#sha256:}"
	LAYER=$(jq -r '.layers[0].digest' "$MANIFEST")
	CONFIG=$(jq -r '.config.digest' "$MANIFEST")
	start_strata
}
teardown() { common_teardown; }

strata() { "$STRATA_BIN" --address "$STRATA_SOCK" "$@"; }

@test "pull busybox: images lists it with the manifest digest" {
	run strata pull --plain-http "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	# "pulled NAME (DIGEST), N layers, SIZE in T s"
	echo "$output" | grep -E "^pulled $IMAGE \($DIGEST\), 1 layer, [0-9.]+ [kMG]?B in [0-9.]+ s$"

	run strata images
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" =~ ^NAME\ +DIGEST\ +SIZE\ +CREATED$ ]]
	echo "$output" | grep -E "^$IMAGE +${DIGEST:7:12} +[0-9.]+ [kMG]?B +(Less than a second|[0-9]+ seconds?) ago$"

	run strata images -q
	[ "$status" -eq 0 ]
	[ "$output" = "$IMAGE" ]

	run strata images --json
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jq -r --arg n "$IMAGE" '.[] | select(.name == $n) | .digest')" = "$DIGEST" ]
	[ "$(echo "$output" | jq -r '.[0].config_digest')" = "$CONFIG" ]
	[ "$(echo "$output" | jq -r '.[0].chain_ids | length')" = 1 ]
	[ "$(echo "$output" | jq -r '.[0].size')" -gt 0 ]
	echo "$output" | jq -e '.[0].created_at | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T")'
}

@test "pull output: plain lines without a terminal, only NAME@DIGEST with --quiet" {
	run strata pull --plain-http "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	# not a terminal: log-style lines naming the layer, no ANSI escapes
	echo "$output" | grep -q "^$LAYER: "
	[[ "$output" != *$'\033'* ]]

	run strata pull --quiet --plain-http "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "$IMAGE@$DIGEST" ]
}

@test "images inspect prints the image, its manifest and its config" {
	strata pull --quiet --plain-http "$IMAGE"
	run strata images inspect "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jq -r '.image.name')" = "$IMAGE" ]
	[ "$(echo "$output" | jq -r '.image.digest')" = "$DIGEST" ]
	[ "$(echo "$output" | jq -r '.manifest.layers[0].digest')" = "$LAYER" ]
	[ "$(echo "$output" | jq -r '.config.config.Cmd[0]')" = "/bin/sh" ]
	[ "$(echo "$output" | jq -r '.config.rootfs.diff_ids | length')" = 1 ]

	run strata images inspect "$REGISTRY/test/busybox:other"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "busybox:other"
}

@test "pull of a tag the registry does not have fails naming the tag" {
	run strata pull --plain-http "$REGISTRY/test/busybox:no-such-tag"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "^strata: pull: .*no-such-tag"
	run strata images -q
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "rmi removes the image; a missing one exits 1 naming it" {
	strata pull --quiet --plain-http "$IMAGE"
	run strata rmi "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "removed $IMAGE" ]
	run strata images -q
	[ -z "$output" ]

	# every reference is tried; the missing one is named and makes it exit 1
	strata pull --quiet --plain-http "$IMAGE"
	run strata rmi "$REGISTRY/test/missing:1" "$IMAGE"
	echo "$output"
	[ "$status" -eq 1 ]
	# named once, whether or not the daemon's message already names it
	echo "$output" | grep -q "^strata: rmi: .*$REGISTRY/test/missing:1.*not found"
	echo "$output" | grep -q "^removed $IMAGE$"
	run strata images -q
	[ -z "$output" ]
}

@test "prune removes the blobs and snapshots no image references" {
	strata pull --quiet --plain-http "$IMAGE"
	blob="$STRATA_ROOT_DIR/content/blobs/sha256/${LAYER#sha256:}"
	[ -f "$blob" ]

	# while the image exists nothing of it is pruned
	run strata prune
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *"$LAYER"* ]]
	[ -f "$blob" ]

	strata rmi "$IMAGE"
	run strata prune --dry-run
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^would remove blob $LAYER$"
	echo "$output" | grep -q "would reclaim"
	[ -f "$blob" ]

	run strata prune
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^removed blob $LAYER$"
	echo "$output" | grep -q "^removed blob $CONFIG$"
	echo "$output" | grep -q "^removed snapshot "
	echo "$output" | grep -qE "reclaimed [0-9.]+ [kMG]?B$"
	[ ! -e "$blob" ]
	# snapshot directories may go a moment after their records
	wait_for 10 bash -c "[ -z \"\$(ls '$STRATA_ROOT_DIR/snapshots')\" ]"
}

@test "without a daemon, pull and images fail with the 'is strata serve running?' hint" {
	run "$STRATA_BIN" --address "$TEST_TMP/nothing/strata.sock" pull --plain-http "$IMAGE"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "cannot connect to the Strata daemon at $TEST_TMP/nothing/strata.sock"
	echo "$output" | grep -q 'is `strata serve` running?'
	# no autostart: nothing appeared at the address
	[ ! -e "$TEST_TMP/nothing/strata.sock" ]

	# a stale socket file (a daemon that died) is "connection refused"
	python3 -c 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$TEST_TMP/stale.sock"
	STRATA_ADDRESS="$TEST_TMP/stale.sock" run "$STRATA_BIN" images
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "refused"
	echo "$output" | grep -q 'is `strata serve` running?'
	for c in rmi prune; do
		args=()
		[ "$c" = rmi ] && args=(x)
		run "$STRATA_BIN" --address "$TEST_TMP/stale.sock" "$c" "${args[@]}"
		[ "$status" -eq 1 ]
		echo "$output" | grep -q 'is `strata serve` running?'
	done
}

@test "usage errors exit 2" {
	for args in "pull" "pull a b" "pull --lazy --no-lazy x" "pull --bogus x" "pull --platform" \
		"images extra" "images inspect" "images inspect a b" "images --json -q" \
		"images --bogus" "rmi" "rmi --bogus x" "prune extra" "prune --bogus"; do
		# shellcheck disable=SC2086
		run strata $args
		echo "strata $args -> $status: $output"
		[ "$status" -eq 2 ]
	done
	# --user without a password needs a terminal to ask on
	run strata pull --plain-http --user bob "$IMAGE" </dev/null
	echo "$output"
	[ "$status" -eq 2 ]
	echo "$output" | grep -q "USER:PASSWORD"
}

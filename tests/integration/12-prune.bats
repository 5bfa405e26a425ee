#!/usr/bin/env bats
# strata prune and container snapshots "@strata/ctr/<id>": one left behind by
# a `strata run --rm` whose daemon died (its Remove failed, its record went)
# is removed once older than the grace period, --dry-run removes nothing, and
# the snapshot of a live container is kept, also when its record is in a
# state dir this prune does not look at (the snapshot is mounted). Real
# registry, daemon, shim, runc; containers are removed even on failure.

load helpers
bats_require_minimum_version 1.5.0

setup() {
	common_setup
	setup_run_env
	printf '[runtime]\ncni_conf_dir = "%s"\nstate_dir = "%s"\n' "$TEST_TMP/net.d" \
		"$TEST_TMP/state2" >"$TEST_TMP/config2.toml"
}

teardown() {
	local id
	for id in $(strata2 ps -a -q 2>/dev/null); do strata2 rm -f "$id" >/dev/null 2>&1 || true; done
	for id in $(strata ps -a -q 2>/dev/null); do strata rm -f "$id" >/dev/null 2>&1 || true; done
	stop_strata_root "$ROOT" "$SOCK"
	common_teardown
}

strata() { "$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config.toml" "$@"; }
# the same daemon, container records in another state dir
strata2() { "$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config2.toml" "$@"; }
strata_exec() { exec "$STRATA_BIN" --root "$ROOT" --address "$SOCK" --config "$TEST_TMP/config.toml" "$@"; }

has_snapshot() { strata snapshots ls -q | grep -qx "$1"; }

@test "an orphaned container snapshot: kept within the grace period, listed by --dry-run, removed by prune" {
	strata_exec run --rm --plain-http --net none "$IMAGE" sh -c 'echo ready; exec sleep 2' \
		>"$TEST_TMP/out" 2>&1 3>&- &
	pid=$!
	wait_for 20 grep -q ready "$TEST_TMP/out"
	id=$(ls "$STATE/containers")
	[ -n "$id" ]
	key="@strata/ctr/$id"
	has_snapshot "$key"
	# the daemon dies while the container runs: the CLI's Remove fails
	kill -KILL "$(cat "$ROOT/strata.pid")"
	st=0
	wait "$pid" || st=$?
	cat "$TEST_TMP/out"
	[ "$st" -eq 1 ]
	grep -q "remove snapshot $key" "$TEST_TMP/out"
	[ ! -e "$STATE/containers/$id" ]

	# a daemon again (autostarted by a run that cleans up after itself)
	run strata run --rm --net none "$IMAGE" true
	echo "$output"
	[ "$status" -eq 0 ]
	has_snapshot "$key"

	# younger than the default grace period (60 s): kept
	run strata prune
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *"container snapshot"* ]]
	has_snapshot "$key"

	run env STRATA_PRUNE_GRACE=0 "$STRATA_BIN" --root "$ROOT" --address "$SOCK" \
		--config "$TEST_TMP/config.toml" prune --dry-run
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"would remove container snapshot $key"* ]]
	has_snapshot "$key"

	run env STRATA_PRUNE_GRACE=0 "$STRATA_BIN" --root "$ROOT" --address "$SOCK" \
		--config "$TEST_TMP/config.toml" prune
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"removed container snapshot $key"* ]]
	! has_snapshot "$key"
	# the image's layer stays (the image names it), nothing else
	[ "$(ls "$ROOT/snapshots" | wc -l)" = 1 ]
	run strata run --rm --net none "$IMAGE" echo still-runs
	[ "$output" = still-runs ]
}

@test "prune keeps the snapshots of live containers, with or without a record it can see" {
	id=$(strata run -d --plain-http --net none "$IMAGE" sleep 120)
	id2=$(strata2 run -d --net none "$IMAGE" sleep 120)
	[ -e "$STATE/containers/$id" ]
	[ -e "$TEST_TMP/state2/containers/$id2" ]
	[ ! -e "$STATE/containers/$id2" ]

	run --separate-stderr env STRATA_PRUNE_GRACE=0 "$STRATA_BIN" --root "$ROOT" \
		--address "$SOCK" --config "$TEST_TMP/config.toml" prune
	echo "$output"
	echo "$stderr"
	[ "$status" -eq 0 ]
	[[ "$output" != *"container snapshot"* ]]
	# no record in STATE, but its rootfs is mounted: kept, and said so
	[[ "$stderr" == *"container snapshot @strata/ctr/$id2 has no container record but is mounted: kept"* ]]
	has_snapshot "@strata/ctr/$id"
	has_snapshot "@strata/ctr/$id2"
	# both still run
	[ "$(strata exec "$id" echo ok)" = ok ]
	[ "$(strata2 exec "$id2" echo ok)" = ok ]

	run strata2 rm -f "$id2"
	[ "$status" -eq 0 ]
	run strata rm -f "$id"
	[ "$status" -eq 0 ]
	! has_snapshot "@strata/ctr/$id"
	! has_snapshot "@strata/ctr/$id2"
}

#!/usr/bin/env bats
# The strata command-line contract: help, version, exit codes, global options.

load helpers

setup() { common_setup; }
teardown() { common_teardown; }

@test "strata --help lists every command of the contract" {
	run "$STRATA_BIN" --help
	[ "$status" -eq 0 ]
	for c in serve pull images rmi run ps logs stop rm convert snapshots prune doctor version; do
		echo "$output" | grep -qE "^  $c " || { echo "missing $c"; false; }
	done
	echo "$output" | grep -q -- "--root DIR"
	echo "$output" | grep -q "STRATA_ADDRESS"
}

@test "strata version prints the meson version and the git commit" {
	run "$STRATA_BIN" version
	[ "$status" -eq 0 ]
	want=$(sed -n "s/^ *version : '\(.*\)',/\1/p" "$BATS_TEST_DIRNAME/../../meson.build")
	[ "${lines[0]}" = "strata version $want" ]
	[[ "${lines[1]}" =~ ^commit:\ [0-9a-f]{12}$|^commit:\ unknown$ ]]
	run "$STRATA_BIN" --version
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "strata version $want" ]
}

@test "strata COMMAND --help prints that command's usage and exits 0" {
	run "$STRATA_BIN" run --help
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "Usage: strata run"
	echo "$output" | grep -q -- "--runtime-binary"
	run "$STRATA_BIN" help pull
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "Usage: strata pull"
}

@test "commands not built yet exit 1 with 'not implemented yet', never a fake success" {
	# whatever --help marks as not implemented must fail honestly
	run "$STRATA_BIN" --help
	pending=$(echo "$output" | awk '/\(not implemented yet\)/ {print $1}')
	for c in $pending; do
		run "$STRATA_BIN" "$c" x
		[ "$status" -eq 1 ]
		echo "$output" | grep -q "strata: $c: not implemented yet"
	done
	# and the implemented ones are not marked
	run "$STRATA_BIN" --help
	! echo "$output" | grep -E '^  (doctor|version|serve|pull) .*not implemented'
}

@test "usage errors exit 2 with a hint" {
	run "$STRATA_BIN" frobnicate
	[ "$status" -eq 2 ]
	echo "$output" | grep -q 'unknown command "frobnicate"'
	echo "$output" | grep -q "strata --help"
	run "$STRATA_BIN" --log-level loud version
	[ "$status" -eq 2 ]
	echo "$output" | grep -q 'invalid --log-level "loud"'
	run "$STRATA_BIN" --bogus version
	[ "$status" -eq 2 ]
	run "$STRATA_BIN"
	[ "$status" -eq 2 ]
	run "$STRATA_BIN" version extra
	[ "$status" -eq 2 ]
}

@test "global options win over STRATA_* environment, which wins over defaults" {
	run "$STRATA_BIN" doctor --paths
	echo "$output" | grep -qx "root=/var/lib/strata"
	echo "$output" | grep -qx "address=/run/strata/strata.sock"
	echo "$output" | grep -qx "config=/etc/strata/config.toml"

	STRATA_ROOT=/env/root STRATA_ADDRESS=/env/sock STRATA_CONFIG=/dev/null \
		run "$STRATA_BIN" doctor --paths
	echo "$output" | grep -qx "root=/env/root"
	echo "$output" | grep -qx "address=/env/sock"
	echo "$output" | grep -qx "config=/dev/null"

	STRATA_ROOT=/env/root STRATA_ADDRESS=/env/sock \
		run "$STRATA_BIN" --root /opt/root --address /opt/sock --config /dev/null doctor --paths
	echo "$output" | grep -qx "root=/opt/root"
	echo "$output" | grep -qx "address=/opt/sock"
}

@test "doctor passes on a prepared host and names the fix for what is missing" {
	run "$STRATA_BIN" doctor
	echo "$output"
	[ "$status" -eq 0 ]
	for c in root fuse overlayfs containerd-shim-runc-v2 runc cni iptables; do
		echo "$output" | grep -qE "^\[ok  \] $c " || { echo "check $c not ok"; false; }
	done
	# runc and the shim hidden from PATH: each failure says how to install it
	PATH=/nonexistent run "$STRATA_BIN" doctor
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "FAIL.*containerd-shim-runc-v2.*apt-get install containerd"
	echo "$output" | grep -q "FAIL.*runc.*apt-get install runc"
	STRATA_CNI_PATH="$TEST_TMP/nocni" run "$STRATA_BIN" doctor
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "FAIL.*cni.*missing in $TEST_TMP/nocni: bridge, host-local"
}

@test "a config file with a syntax error names the line and column" {
	printf 'root = "/x"\naddress = \n' >"$TEST_TMP/bad.toml"
	run "$STRATA_BIN" --config "$TEST_TMP/bad.toml" doctor --paths
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "bad.toml: line 2, column"
	run "$STRATA_BIN" --config "$TEST_TMP/missing.toml" doctor --paths
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "missing.toml"
}

@test "the config file sets root and address, and options still win" {
	printf '# strata config\nroot = "/cfg/root"\naddress = "/cfg/sock"\n' >"$TEST_TMP/ok.toml"
	run "$STRATA_BIN" --config "$TEST_TMP/ok.toml" doctor --paths
	[ "$status" -eq 0 ]
	echo "$output" | grep -qx "root=/cfg/root"
	echo "$output" | grep -qx "address=/cfg/sock"
	run "$STRATA_BIN" --config "$TEST_TMP/ok.toml" --root /opt/r doctor --paths
	echo "$output" | grep -qx "root=/opt/r"
}

#!/bin/bash
# README command 2: install what is needed, build, and run every test:
#   - the full suite (unit, integration with real registry/containerd/mounts,
#     lint) on a -Dwerror=true build;
#   - the unit tests again under AddressSanitizer + UBSan.
# Ends with one line "N passed, N failed[, N skipped]" and exits non-zero if
# anything failed. STRATA_TEST_STRICT=1 turns skips into failures (CI).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "test.sh: run as root: the integration tests mount filesystems and run containers" >&2
	exit 1
fi
bash scripts/install-deps.sh || exit 1

configure() { # dir options...
	local dir=$1
	shift
	if [ -d "$dir/meson-private" ]; then
		meson configure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

status=0
configure build -Dwerror=true || exit 1
ninja -C build || exit 1
meson test -C build --print-errorlogs --num-processes 2 || status=1

configure build-asan -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false \
	-Dbuildtype=debug || exit 1
ninja -C build-asan || exit 1
meson test -C build-asan --suite unit --print-errorlogs --num-processes 2 || status=1

python3 scripts/test-summary.py build/meson-logs/testlog.json \
	build-asan/meson-logs/testlog.json || status=1
exit $status

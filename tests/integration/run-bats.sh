#!/bin/bash
# run-bats.sh FILE.bats: bats in TAP mode for meson, with each failed test's
# diagnostics ("# " lines after "not ok") repeated on stderr, which
# `meson test --print-errorlogs` shows (it does not show TAP comments), so a
# CI log says why a test failed.
set -o pipefail
bats --tap "$@" | awk '
	/^not ok / { failing = 1; print > "/dev/stderr"; print; fflush(); next }
	/^ok / { failing = 0 }
	failing && /^#/ { print > "/dev/stderr" }
	{ print; fflush() }'

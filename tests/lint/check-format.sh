#!/bin/bash
# Fails when any C file in the tree differs from .clang-format's style.
# Prints the files and a diff hint; fix with: clang-format -i FILE...
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v clang-format >/dev/null || { echo "clang-format missing: run scripts/install-deps.sh" >&2; exit 1; }
mapfile -t files < <(find common content snapshotter proxy runtime cli tests bench \
	\( -name '*.c' -o -name '*.h' \) -not -path '*/build*' -not -name '*.pb-c.*' 2>/dev/null | sort)
bad=()
for f in "${files[@]}"; do
	clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
echo "1..1"
if [ "${#bad[@]}" -gt 0 ]; then
	echo "not ok 1 - ${#bad[@]} of ${#files[@]} files need clang-format: ${bad[*]}"
	exit 1
fi
echo "ok 1 - ${#files[@]} files match .clang-format"

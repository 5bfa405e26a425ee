#!/bin/bash
# The image commands of the strata CLI against fake-images-server (a canned
# Images service): output formats, exit codes and error paths, without a
# registry. The real thing is tests/integration/05-cli-images.bats.
#
# usage: test-cli-images.sh STRATA_BIN FAKE_SERVER
set -uo pipefail
strata_bin=$1 fake=$2
tmp=$(mktemp -d /tmp/strata-cli-images.XXXXXX)
sock=$tmp/s.sock
pid=
n=0 failed=0

cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

start_fake() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	"$fake" "$sock" >"$tmp/ready" 2>"$tmp/fake.log" &
	pid=$!
	for _ in $(seq 50); do
		grep -q ready "$tmp/ready" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "# fake server did not start" && cat "$tmp/fake.log"
	return 1
}

s() { "$strata_bin" --address "$sock" "$@"; }

# check NAME CMD...: one TAP line; CMD's output is shown on failure.
check() {
	local name=$1
	shift
	n=$((n + 1))
	if out=$("$@" 2>&1); then
		echo "ok $n - $name"
	else
		echo "not ok $n - $name"
		echo "$out" | sed 's/^/# /'
		failed=$((failed + 1))
	fi
}

# expect STATUS PATTERN CMD...: CMD exits STATUS and its output matches the
# extended regex PATTERN.
expect() {
	local want=$1 pat=$2 got
	shift 2
	out=$("$@" 2>&1)
	got=$?
	echo "$out"
	[ "$got" -eq "$want" ] || {
		echo "exit $got, wanted $want"
		return 1
	}
	echo "$out" | grep -Eq -- "$pat" || {
		echo "no match for: $pat"
		return 1
	}
}

start_fake || exit 1
A=sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
D=sha256:1111111111111111111111111111111111111111111111111111111111111111

check "pull: plain progress lines and the summary" \
	expect 0 "^pulled example.com/app:1 \($D\), 2 layers, 2.35 MB in [0-9.]+ s$" s pull x
check "pull: plain lines name each layer's state" \
	expect 0 "^$A: downloading \(2.00 MB\)$" s pull x
check "pull --quiet prints NAME@DIGEST only" \
	bash -c '[ "$("$0" --address "$1" pull -q x)" = "example.com/app:1@$2" ]' "$strata_bin" "$sock" "$D"
check "pull on a terminal draws bars in place" \
	expect 0 $'\033\\[2A.*aaaaaaaaaaaa \\[=+>? *\\] +[0-9.]+ [kM]?B / 2.00 MB' \
	script -qec "$strata_bin --address $sock pull x" /dev/null
check "pull: a daemon error exits 1 naming the ref once" \
	expect 1 "^strata: pull: missing:1: not found$" s pull missing:1
check "pull: --user USER:PASS reaches the daemon" \
	expect 0 "^pulled " s pull --user bob:secret x
check "pull: wrong credentials are reported, the password is not" \
	bash -c '! "$0" --address "$1" pull --user bob:hunter2 x 2>&1 | grep -q hunter2' "$strata_bin" "$sock"
check "pull: --user without password and no terminal is a usage error" \
	expect 2 "USER:PASSWORD" s pull --user bob x
check "images: table" \
	expect 0 "^example.com/app:1  111111111111  2.35 MB +3 minutes ago$" s images
check "images: header" expect 0 "^NAME +DIGEST +SIZE +CREATED$" s images
check "images --json: full fields" \
	bash -c '"$0" --address "$1" images --json | jq -e ".[0].digest == \"$2\" and (.[0].chain_ids|length) == 2 and .[0].size == 2345678 and (.[0].created_at|test(\"Z$\"))"' \
	"$strata_bin" "$sock" "$D"
check "images -q: names" bash -c '[ "$("$0" --address "$1" images -q)" = example.com/app:1 ]' "$strata_bin" "$sock"
check "images inspect: manifest and config as JSON" \
	bash -c '"$0" --address "$1" images inspect example.com/app:1 | jq -e ".config.config.Cmd[0] == \"/bin/sh\" and .manifest.layers[0].digest == \"$2\" and .image.name == \"example.com/app:1\""' \
	"$strata_bin" "$sock" "$A"
check "images inspect: missing image exits 1" \
	expect 1 '^strata: images inspect: image "nope": not found$' s images inspect nope
check "prune --dry-run" expect 0 "^would remove 2 blobs and 1 snapshot, would reclaim 2.30 MB$" s prune --dry-run
check "prune" expect 0 "^removed blob $A$" s prune
check "rmi: one missing, one present: exit 1, both handled" \
	expect 1 "^removed example.com/app:1$" s rmi nope example.com/app:1
check "rmi: the missing one is named" expect 1 '^strata: rmi: image "example.com/app:1": not found$' \
	s rmi example.com/app:1
check "images: empty list prints only the header" \
	bash -c '[ "$("$0" --address "$1" images | wc -l)" = 1 ]' "$strata_bin" "$sock"
check "pull: the daemon dying mid-stream is a clear error" \
	expect 1 "closed the connection \(did it exit\?\)" s pull die:1
check "no daemon: the 'is strata serve running?' hint" \
	expect 1 'is `strata serve` running\?' s images

echo "1..$n"
[ "$failed" -eq 0 ]

#!/bin/bash
# bench/run/run.sh: `strata run --rm IMG true` (image local, daemon running)
# against `ctr run --rm IMG ID true` on a private containerd, same run, same
# shim (containerd-shim-runc-v2) and runc. Both without CNI: ctr gives its
# container a fresh network namespace with only lo, which is strata's
# --net none. Also shown: strata --net host / bridge vs ctr --net-host, and
# `runc run` of a prepared bundle as the floor.
#
# Usage: bench/run/run.sh [BUILD_DIR] (default: build). Root only.
# Env: RUNS (default 20), WARMUP (default 3), BASELINE=/path/to/strata: also
# time that binary's run --rm --net none in the same hyperfine run (before/after
# on a shared machine).
# Prints a table and the ratios; target: strata/ctr <= 0.7. Then `strata exec
# ID true` against `ctr task exec` in a running container of each.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/build}
strata_bin=$build/cli/strata
runs=${RUNS:-20}
warmup=${WARMUP:-3}
[ -x "$strata_bin" ] || { echo "no $strata_bin: build first (ninja -C $build)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for b in hyperfine containerd ctr docker-registry skopeo runc containerd-shim-runc-v2 jq; do
	command -v "$b" >/dev/null || { echo "missing $b" >&2; exit 1; }
done

tmp=$(mktemp -d /var/tmp/strata-bench-run.XXXXXX)
pids=()
cleanup() {
	set +e
	# ctr's exec-bench container: its shim outlives containerd
	if [ -n "${CTR:-}" ]; then
		$CTR task kill -s SIGKILL execbench >/dev/null 2>&1
		for _ in $(seq 30); do $CTR task delete execbench >/dev/null 2>&1 && break; sleep 0.1; done
		$CTR containers rm execbench >/dev/null 2>&1
	fi
	[ -n "${S:-}" ] && for id in $($S ps -a -q 2>/dev/null); do
		$S rm -f "$id" >/dev/null 2>&1
	done
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
	done
	awk -v d="$tmp/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT

wait_for() {
	local n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; n=$((n - 1)); done
	echo "timed out: $*" >&2
	return 1
}

# --- registry + a busybox image ---------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/registry/data" "$tmp/rootfs/bin" "$tmp/rootfs/etc" "$tmp/rootfs/tmp"
cat >"$tmp/registry/config.yml" <<CFG
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $tmp/registry/data}}
http: {addr: 127.0.0.1:$port}
CFG
docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
pids+=($!)
wait_for 20 curl -so /dev/null "http://127.0.0.1:$port/v2/"
cp /bin/busybox "$tmp/rootfs/bin/busybox"
for a in sh true echo; do ln -sf busybox "$tmp/rootfs/bin/$a"; done
echo "root:x:0:0:root:/root:/bin/sh" >"$tmp/rootfs/etc/passwd"
echo "root:x:0:" >"$tmp/rootfs/etc/group"
bash "$top/tests/integration/lib/mkimage.sh" "$tmp/oci" latest "$tmp/rootfs" >/dev/null
IMG=127.0.0.1:$port/bench/busybox:latest
skopeo copy --quiet --dest-tls-verify=false "oci:$tmp/oci:latest" "docker://$IMG"

# --- strata serve, image pulled --------------------------------------------
S_ROOT=$tmp/strata/root
S_SOCK=$tmp/strata/strata.sock
mkdir -p "$tmp/strata/net.d"
printf '[runtime]\ncni_conf_dir = "%s"\n' "$tmp/strata/net.d" >"$tmp/strata/config.toml"
"$strata_bin" --root "$S_ROOT" --address "$S_SOCK" --config "$tmp/strata/config.toml" \
	--log-level warn serve >"$tmp/strata/log" 2>&1 &
pids+=($!)
wait_for 10 test -S "$S_SOCK"
S="$strata_bin --root $S_ROOT --address $S_SOCK --config $tmp/strata/config.toml"
$S pull -q "$IMG" >/dev/null
$S run --rm --net none "$IMG" true

# --- containerd, image pulled ----------------------------------------------
C=$tmp/containerd
mkdir -p "$C/root" "$C/state"
cat >"$C/config.toml" <<CFG
version = 2
root = "$C/root"
state = "$C/state"
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
[metrics]
  address = ""
CFG
containerd --config "$C/config.toml" >"$C/log" 2>&1 &
pids+=($!)
wait_for 30 ctr --address "$C/containerd.sock" version
CTR="ctr --address $C/containerd.sock"
$CTR images pull --plain-http "$IMG" >/dev/null
$CTR run --rm "$IMG" warm true

# --- runc floor: a prepared bundle ------------------------------------------
mkdir -p "$tmp/bundle/rootfs"
cp -a "$tmp/rootfs/." "$tmp/bundle/rootfs/"
(cd "$tmp/bundle" && runc spec && jq '.process.terminal=false | .process.args=["true"]' config.json >c && mv c config.json)

hyperfine -N --help >/dev/null 2>&1 && shellopt=(-S bash) || shellopt=()
baseline=()
if [ -n "${BASELINE:-}" ]; then
	B="$BASELINE --root $S_ROOT --address $S_SOCK --config $tmp/strata/config.toml"
	baseline=(-n "baseline run --rm --net none" "$B run --rm --net none $IMG true")
fi
hyperfine "${shellopt[@]}" --warmup "$warmup" --runs "$runs" --export-json "$tmp/h.json" \
	"${baseline[@]}" \
	-n "strata run --rm --net none" "$S run --rm --net none $IMG true" \
	-n "ctr run --rm" "$CTR run --rm $IMG b\$RANDOM\$RANDOM true" \
	-n "strata run --rm --net host" "$S run --rm --net host $IMG true" \
	-n "ctr run --rm --net-host" "$CTR run --rm --net-host $IMG b\$RANDOM\$RANDOM true" \
	-n "strata run --rm (bridge)" "$S run --rm $IMG true" \
	-n "runc run (floor)" "runc --root $tmp/runc run --bundle $tmp/bundle f\$RANDOM\$RANDOM" \
	>"$tmp/hyperfine.out" 2>&1 || { cat "$tmp/hyperfine.out"; exit 1; }

echo "# run --rm busybox true, image local ($runs runs, $warmup warmup), $(uname -r)"
printf '%-30s %10s %10s %10s\n' "command" "mean ms" "p50 ms" "stddev"
jq -r '.results[] | [.command, (.mean*1000), (.median*1000), (.stddev*1000)] | @tsv' "$tmp/h.json" |
	while IFS=$'\t' read -r name mean med sd; do
		printf '%-30s %10.1f %10.1f %10.1f\n' "$name" "$mean" "$med" "$sd"
	done
ratio() { jq -r --arg a "$1" --arg b "$2" --arg f "$3" \
	'[.results[] | select(.command == $a or .command == $b)] as $r |
	 (($r[] | select(.command == $a))[$f] / ($r[] | select(.command == $b))[$f]) | . * 100 | round / 100' "$tmp/h.json"; }
echo
echo "ratio strata/ctr (--net none vs default): mean $(ratio 'strata run --rm --net none' 'ctr run --rm' mean)x, p50 $(ratio 'strata run --rm --net none' 'ctr run --rm' median)x (target <= 0.7)"
echo "ratio strata/ctr (host network):          mean $(ratio 'strata run --rm --net host' 'ctr run --rm --net-host' mean)x, p50 $(ratio 'strata run --rm --net host' 'ctr run --rm --net-host' median)x"
[ -n "${BASELINE:-}" ] &&
	echo "ratio baseline/ctr (--net none):          mean $(ratio 'baseline run --rm --net none' 'ctr run --rm' mean)x, p50 $(ratio 'baseline run --rm --net none' 'ctr run --rm' median)x"

# --- exec in a running container -----------------------------------------------
sid=$($S run -d --net none "$IMG" busybox sleep 100000)
$CTR run -d "$IMG" execbench busybox sleep 100000 >/dev/null
$S exec "$sid" true
$CTR task exec --exec-id warm execbench true
hyperfine "${shellopt[@]}" --warmup "$warmup" --runs "$runs" --export-json "$tmp/h.json" \
	-n "strata exec" "$S exec $sid true" \
	-n "ctr task exec" "$CTR task exec --exec-id e\$RANDOM\$RANDOM execbench true" \
	>"$tmp/hyperfine-exec.out" 2>&1 || { cat "$tmp/hyperfine-exec.out"; exit 1; }
echo
echo "# exec true in a running container ($runs runs, $warmup warmup)"
printf '%-30s %10s %10s %10s\n' "command" "mean ms" "p50 ms" "stddev"
jq -r '.results[] | [.command, (.mean*1000), (.median*1000), (.stddev*1000)] | @tsv' "$tmp/h.json" |
	while IFS=$'\t' read -r name mean med sd; do
		printf '%-30s %10.1f %10.1f %10.1f\n' "$name" "$mean" "$med" "$sd"
	done
echo "ratio strata/ctr exec: mean $(ratio 'strata exec' 'ctr task exec' mean)x, p50 $(ratio 'strata exec' 'ctr task exec' median)x"
exit 0

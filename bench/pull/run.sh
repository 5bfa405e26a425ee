#!/bin/bash
# Full (non-lazy) pull + unpack of the Debian minbase + python3 image (two
# layers, ~66 MB compressed; bench/pull/build-image.sh) from a local
# docker-registry on loopback: Strata's Images.Pull vs `ctr images pull`
# into containerd's own content store and overlayfs snapshotter, same run,
# fresh stores for every pull, alternating, N rounds (median reported).
# Strata's time is the Pull RPC's wall time (client connected), ctr's the
# command's wall time. Also reports the daemon's peak RSS.
# Usage: bench/pull/run.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
ROUNDS=${2:-3}
STRATA=$BUILD/cli/strata
CLIENT="/usr/bin/python3 $SRC/tests/integration/lib/strata-images.py"
[ -x "$STRATA" ] || { echo "run.sh: $STRATA not built" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/strata-bench-pull.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	awk -v d="$WORK/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

wait_for() { for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

# image + registry
"$HERE/build-image.sh" "$WORK/oci" >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry/data}}
http: {addr: 127.0.0.1:$port}
CFG
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
PIDS+=($!)
wait_for curl -sf "http://127.0.0.1:$port/v2/"
IMAGE=127.0.0.1:$port/bench/python:latest
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:latest" "docker://$IMAGE"
size=$(du -cb "$WORK"/oci/blobs/sha256/* | tail -1 | cut -f1)


ctr_pull() { # -> seconds
	local d=$WORK/c$1
	mkdir -p "$d/root" "$d/state"
	cat >"$d/config.toml" <<CFG
version = 2
root = "$d/root"
state = "$d/state"
[grpc]
  address = "$d/c.sock"
[ttrpc]
  address = "$d/c.sock.ttrpc"
[metrics]
  address = ""
CFG
	containerd --config "$d/config.toml" >"$d/log" 2>&1 &
	local pid=$!
	wait_for ctr --address "$d/c.sock" version
	local t0 t1
	sync
	t0=$(date +%s.%N)
	ctr --address "$d/c.sock" images pull --plain-http "$IMAGE" >/dev/null
	t1=$(date +%s.%N)
	kill -TERM "$pid"
	wait "$pid" || true
	awk -v d="$d/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$d"
	echo "$t1 - $t0" | bc -l
}

S=() C=() R=()
for i in $(seq "$ROUNDS"); do
	# strata's time is printed by the client before the directory goes
	d=$WORK/s$i
	mkdir -p "$d"
	"$STRATA" --root "$d/root" --address "$d/s.sock" --log-level warn serve >"$d/log" 2>&1 &
	pid=$!
	PIDS+=("$pid")
	wait_for test -S "$d/s.sock"
	sync # both contestants start with no dirty pages from the round before
	t=$(STRATA_IMAGES_TIME=1 $CLIENT "$d/s.sock" pull --lazy never "$IMAGE" 2>&1 >/dev/null |
		sed -n 's/^elapsed_s=//p')
	R+=("$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")")
	kill -TERM "$pid"
	wait "$pid" || true
	rm -rf "$d"
	S+=("$t")
	C+=("$(ctr_pull "$i")")
	printf 'round %d: strata %.2f s, ctr %.2f s\n' "$i" "${S[-1]}" "${C[-1]}"
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=$(median "${S[@]}")
c=$(median "${C[@]}")
r=$(median "${R[@]}")
printf 'image: %d bytes compressed, 2 layers\n' "$size"
printf 'strata pull+unpack: %.2f s (median of %d)\n' "$s" "$ROUNDS"
printf 'ctr images pull:    %.2f s\n' "$c"
printf 'ratio:              %.2fx (target <= 0.6x)\n' "$(echo "$s / $c" | bc -l)"
printf 'strata daemon peak RSS: %d KiB\n' "$r"

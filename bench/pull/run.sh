#!/bin/bash
# Full (non-lazy) pull + unpack of the Debian minbase + python3 image (two
# layers, ~66 MB compressed; bench/pull/build-image.sh) from a local
# docker-registry: Strata's Images.Pull vs `ctr images pull` into
# containerd's own content store and overlayfs snapshotter, same run, fresh
# stores for every pull, alternating, N rounds (median reported), over two
# links:
#   loopback  the registry itself on 127.0.0.1
#   shaped    the registry behind bench/net/delay-proxy.py: 10 ms each way
#             (20 ms RTT) and 100 Mbit/s per direction (a token bucket in
#             the proxy; the kernel has no netem). What the link really
#             delivers is measured first (bench/net/measure.py).
# Every store is kept until the end (~250 MB each): deleting one right
# before the next pull makes ext4's inode allocator skip the recently freed
# inodes one by one (recently_deleted(), seen in perf at ~50% of the pull's
# CPU), which slowed whichever contestant came next 2-4x.
# Strata's time is the Pull RPC's wall time (client connected), ctr's the
# command's wall time. Also reports the daemon's peak RSS.
# Usage: bench/pull/run.sh [BUILD_DIR] [ROUNDS] [LINKS]
#   LINKS: "loopback shaped" (default), or one of them
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
ROUNDS=${2:-3}
LINKS=${3:-loopback shaped}
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
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:latest" \
	"docker://127.0.0.1:$port/bench/python:latest"
size=$(du -cb "$WORK"/oci/blobs/sha256/* | tail -1 | cut -f1)
mdigest=$(jq -r '.manifests[0].digest' "$WORK/oci/index.json")
big_layer=$(jq -r '.layers | max_by(.size) | .digest' "$WORK/oci/blobs/sha256/${mdigest#sha256:}")

# the shaped link: a second address for the same registry
pport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/bin/python3 "$SRC/bench/net/delay-proxy.py" --delay-ms 10 --rate-mbit 100 "$pport" \
	"127.0.0.1:$port" >"$WORK/proxy.log" 2>&1 &
PIDS+=($!)
wait_for curl -sf "http://127.0.0.1:$pport/v2/"

ctr_pull() { # NAME -> seconds
	local d=$WORK/c-$1
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
	echo "$t1 - $t0" | bc -l
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# run_link LABEL HOST:PORT: N alternating rounds, then the medians.
run_link() {
	local label=$1 IMAGE=$2/bench/python:latest i d pid t s c r
	local S=() C=() R=()
	echo "== $label ($2)"
	for i in $(seq "$ROUNDS"); do
		# strata's time is printed by the client (the Pull RPC's wall time)
		d=$WORK/s-$label-$i
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
		S+=("$t")
		C+=("$(ctr_pull "$label-$i")")
		printf 'round %d: strata %.2f s, ctr %.2f s\n' "$i" "${S[-1]}" "${C[-1]}"
	done
	s=$(median "${S[@]}")
	c=$(median "${C[@]}")
	r=$(median "${R[@]}")
	printf '%s: strata pull+unpack: %.2f s (median of %d)\n' "$label" "$s" "$ROUNDS"
	printf '%s: ctr images pull:    %.2f s\n' "$label" "$c"
	printf '%s: ratio:              %.2fx (target <= 0.6x on loopback)\n' "$label" \
		"$(echo "$s / $c" | bc -l)"
	printf '%s: strata daemon peak RSS: %d KiB\n' "$label" "$r"
}

printf 'image: %d bytes compressed, 2 layers\n' "$size"
for link in $LINKS; do
	case $link in
	loopback) run_link loopback "127.0.0.1:$port" ;;
	shaped)
		echo "== shaped link as measured (delay-proxy: 10 ms each way, 100 Mbit/s)"
		/usr/bin/python3 "$SRC/bench/net/measure.py" "127.0.0.1:$pport" \
			"/v2/bench/python/blobs/$big_layer"
		run_link shaped "127.0.0.1:$pport"
		;;
	*) echo "run.sh: unknown link \"$link\" (loopback, shaped)" >&2; exit 2 ;;
	esac
done

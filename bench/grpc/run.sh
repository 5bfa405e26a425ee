#!/bin/bash
# gRPC benchmarks (issue 5, "Performance"), one run, both peers:
#  1. Prepare + Mounts + Commit + Remove cycles/s with 1 and 16 clients (one
#     connection each) against `strata serve` and against containerd's
#     built-in overlayfs through containerd's own socket (snapshotter
#     "overlayfs", containerd-namespace header set, under a lease as ctr and
#     CRI do, else its GC may collect the snapshot mid-cycle); p50/p99 per cycle;
#     ratio Strata/containerd (target >= 2x).
#  2. Content Write of a 1 GiB blob over gRPC to Strata (STAT, 1 MiB WRITEs
#     each answered before the next, as containerd's remote writer does,
#     COMMIT with the digest) vs the in-process ingest of the same file
#     (content/bench-content; target >= 0.7x), sha256sum as the floor.
# Everything lives in a private temp dir (never /var/lib/containerd or
# /run/containerd); daemons are killed by PID and the dir removed on exit.
#
# Usage: bench/grpc/run.sh [BUILD_DIR]     (default: build)
# Env:   DURATION=4 (seconds per cycles run)  ROUNDS=5  CLIENTS="1 16"  SIZE_MB=1024
#        REPEAT=2 (content runs, best kept)  INFLIGHT=1  WORK_PARENT=/var/tmp
#        SKIP_CONTAINERD=1  SKIP_CYCLES=1  SKIP_CONTENT=1  KEEP_LOGS=DIR (copy the logs there)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" 2>/dev/null && pwd) || {
	echo "run.sh: build dir ${1:-$SRC/build} missing (meson setup it first)" >&2
	exit 1
}
DURATION=${DURATION:-4}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-"1 16"}
SIZE_MB=${SIZE_MB:-1024}
REPEAT=${REPEAT:-2}
INFLIGHT=${INFLIGHT:-1}
NS=bench

WORK=$(mktemp -d "${WORK_PARENT:-/var/tmp}/strata-bench-grpc.XXXXXX")
PIDS=()

cleanup() {
	local rc=$? pid mp
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	# Nothing here mounts, but never leave a mount behind under WORK.
	awk -v w="$WORK" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r mp; do umount -l "$mp" || true; done
	if [ -n "${KEEP_LOGS:-}" ]; then
		mkdir -p "$KEEP_LOGS"
		cp "$WORK"/*.log "$KEEP_LOGS"/ 2>/dev/null || true
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "run.sh: $*" >&2
	exit 1
}

wait_for() { # SECONDS CMD...
	local t=$(($1 * 10))
	shift
	for _ in $(seq "$t"); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

get() { sed -n "s/^$1=//p"; }

# --- build ---
STRATA=$BUILD/cli/strata
BENCH_CONTENT=$BUILD/content/bench-content
if [ ! -x "$STRATA" ] || [ ! -f "$BUILD/proxy/snapshots.pb-c.c" ]; then
	ninja -C "$BUILD" >&2 || die "build failed in $BUILD"
fi
BENCH=$BUILD/bench/grpc/bench-grpc # when the top-level meson.build has subdir('bench/grpc')
if [ ! -x "$BENCH" ]; then
	BENCH=$WORK/bench-grpc
	P=$BUILD/proxy
	cc -O2 -g -D_GNU_SOURCE -I"$P" -o "$BENCH" \
		"$SRC/bench/grpc/bench-grpc.c" "$SRC/bench/grpc/h2c.c" \
		"$P"/{snapshots,content,mount,timestamp,empty,field_mask}.pb-c.c \
		$(pkg-config --cflags --libs libnghttp2 libprotobuf-c libcrypto) -lpthread ||
		die "cannot compile bench-grpc"
fi

# --- daemons ---
STRATA_SOCK=$WORK/strata/run/strata.sock
mkdir -p "$WORK/strata/root"
"$STRATA" --root "$WORK/strata/root" --address "$STRATA_SOCK" --log-level warn serve \
	>"$WORK/strata.log" 2>&1 &
PIDS+=($!)
wait_for 10 test -S "$STRATA_SOCK" || {
	cat "$WORK/strata.log" >&2
	die "strata serve did not come up"
}

CTRD_SOCK=$WORK/containerd/containerd.sock
if [ -z "${SKIP_CONTAINERD:-}" ]; then
	command -v containerd >/dev/null || die "containerd not installed"
	mkdir -p "$WORK/containerd/root" "$WORK/containerd/state"
	cat >"$WORK/containerd/config.toml" <<CFG
version = 2
disabled_plugins = ["io.containerd.grpc.v1.cri"]
root = "$WORK/containerd/root"
state = "$WORK/containerd/state"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[debug]
  level = "warn"
[metrics]
  address = ""
CFG
	containerd --config "$WORK/containerd/config.toml" >"$WORK/containerd.log" 2>&1 &
	PIDS+=($!)
	wait_for 30 ctr --address "$CTRD_SOCK" version || {
		tail -30 "$WORK/containerd.log" >&2
		die "containerd did not come up"
	}
fi

# --- 1. snapshot cycles: ROUNDS rounds, the two peers alternating within each
# round (this disk's fsync latency wanders with the neighbours' load), the
# median round reported ---
declare -A R
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
cycles() { # SIDE CLIENTS ROUND
	local out k
	if [ "$1" = strata ]; then
		out=$("$BENCH" cycles --socket "$STRATA_SOCK" --snapshotter strata \
			--clients "$2" --duration "$DURATION" --prefix "s$2-$3") || die "strata cycles failed"
	else
		out=$("$BENCH" cycles --socket "$CTRD_SOCK" --snapshotter overlayfs --namespace "$NS" \
			--lease bench --clients "$2" --duration "$DURATION" --prefix "c$2-$3") ||
			die "containerd cycles failed"
	fi
	echo "$1 clients=$2 round=$3: $(echo "$out" | tr '\n' ' ')" >>"$WORK/cycles.log"
	for k in cycles_per_s p50_ms p99_ms prepare_mean_ms mounts_mean_ms commit_mean_ms \
		remove_mean_ms; do
		R[$1,$2,$k]="${R[$1,$2,$k]:-} $(echo "$out" | get $k)"
	done
}
SIDES="strata"
[ -n "${SKIP_CONTAINERD:-}" ] || SIDES="strata containerd"
[ -z "${SKIP_CYCLES:-}" ] || ROUNDS=0 CLIENTS=""
for round in $(seq "$ROUNDS"); do
	for n in $CLIENTS; do
		for side in $SIDES; do
			cycles "$side" "$n" "$round"
		done
	done
done
med() { echo "${R[$1,$2,$3]}" | median; }
best() { echo "${R[$1,$2,$3]}" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }

[ -n "${SKIP_CYCLES:-}" ] || {
	echo
	echo "Snapshot cycles over gRPC: Prepare(parent \"\") + Mounts + Commit + Remove"
	echo "(${DURATION} s per run, median of ${ROUNDS} alternating rounds; all rounds in cycles.log)"
	printf '%-7s | %9s %7s %7s %9s | %9s %7s %7s %9s | %6s %6s\n' clients "strata/s" "p50 ms" \
		"p99 ms" "best/s" "ctrd/s" "p50 ms" "p99 ms" "best/s" ratio "best"
	for n in $CLIENTS; do
		line=$(printf '%-7s | %9s %7s %7s %9s |' "$n" "$(med strata "$n" cycles_per_s)" \
			"$(med strata "$n" p50_ms)" "$(med strata "$n" p99_ms)" "$(best strata "$n" cycles_per_s)")
		if [ -z "${SKIP_CONTAINERD:-}" ]; then
			ratio=$(echo "$(med strata "$n" cycles_per_s) / $(med containerd "$n" cycles_per_s)" | bc -l)
			bratio=$(echo "$(best strata "$n" cycles_per_s) / $(best containerd "$n" cycles_per_s)" | bc -l)
			line+=$(printf ' %9s %7s %7s %9s | %5.2fx %5.2fx' "$(med containerd "$n" cycles_per_s)" \
				"$(med containerd "$n" p50_ms)" "$(med containerd "$n" p99_ms)" \
				"$(best containerd "$n" cycles_per_s)" "$ratio" "$bratio")
		fi
		echo "$line"
	done
	echo "(ratio: of the medians; best: of each side's best round, the least disturbed by other load)"
	echo "target: ratio >= 2x at 1 and 16 clients (goal 4x at 1, 5x at 16)"
	echo "mean ms per RPC (median of rounds):  Prepare  Mounts  Commit  Remove"
	for side in $SIDES; do
		for n in $CLIENTS; do
			printf '  %-10s %2s clients:    %7s %7s %7s %7s\n' "$side" "$n" \
				"$(med "$side" "$n" prepare_mean_ms)" "$(med "$side" "$n" mounts_mean_ms)" \
				"$(med "$side" "$n" commit_mean_ms)" "$(med "$side" "$n" remove_mean_ms)"
		done
	done
}

# --- 2. content write ---
[ -z "${SKIP_CONTENT:-}" ] || exit 0
FILE=$WORK/blob
head -c "${SIZE_MB}M" /dev/urandom >"$FILE"
cat "$FILE" >/dev/null # warm, as for every contestant

out=$("$BENCH" write --socket "$STRATA_SOCK" --file "$FILE" --repeat "$REPEAT" \
	--inflight "$INFLIGHT" --prefix w) || die "content write failed"
grpc_s=$(echo "$out" | get write_s)
grpc_commit_s=$(echo "$out" | get commit_s)
# The same with 4 WRITEs on the wire: how much of the gap is round-trip
# latency rather than throughput (containerd itself keeps one in flight).
out=$("$BENCH" write --socket "$STRATA_SOCK" --file "$FILE" --repeat "$REPEAT" \
	--inflight 4 --prefix w4) || die "content write (4 in flight) failed"
grpc4_s=$(echo "$out" | get write_s)

t0=$(date +%s.%N)
sha256sum "$FILE" >/dev/null
t1=$(date +%s.%N)
sha_s=$(echo "$t1 - $t0" | bc -l)

inproc_s=""
if [ -x "$BENCH_CONTENT" ]; then
	for _ in $(seq "$REPEAT"); do
		rm -rf "$WORK/inproc"
		s=$("$BENCH_CONTENT" ingest "$WORK/inproc" "$FILE" | get ingest_s)
		if [ -z "$inproc_s" ] || [ "$(echo "$s < $inproc_s" | bc -l)" = 1 ]; then inproc_s=$s; fi
	done
	rm -rf "$WORK/inproc"
fi

mbps() { echo "$SIZE_MB / $1" | bc -l; }
echo
echo "Content Write of ${SIZE_MB} MiB (1 MiB WRITE messages, ${INFLIGHT} in flight, best of ${REPEAT})"
printf '%-34s %7.2f s %8.0f MB/s  (of which COMMIT %.2f s)\n' "gRPC Write to strata serve" \
	"$grpc_s" "$(mbps "$grpc_s")" "$grpc_commit_s"
printf '%-34s %7.2f s %8.0f MB/s\n' "  same, 4 WRITEs in flight" "$grpc4_s" "$(mbps "$grpc4_s")"
if [ -n "$inproc_s" ]; then
	printf '%-34s %7.2f s %8.0f MB/s\n' "in-process ingest (bench-content)" "$inproc_s" \
		"$(mbps "$inproc_s")"
fi
printf '%-34s %7.2f s %8.0f MB/s\n' "sha256sum (floor)" "$sha_s" "$(mbps "$sha_s")"
if [ -n "$inproc_s" ]; then
	printf 'ratio gRPC / in-process: %.2fx (target >= 0.7x)\n' "$(echo "$inproc_s / $grpc_s" | bc -l)"
else
	printf 'ratio gRPC / sha256sum: %.2fx (bench-content not built)\n' \
		"$(echo "$sha_s / $grpc_s" | bc -l)"
fi

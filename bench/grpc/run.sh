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
#        REPEAT=3 (content rounds)  INFLIGHT=1  WORK_PARENT=/var/tmp
#        SKIP_CONTAINERD=1  SKIP_CYCLES=1  SKIP_CONTENT=1  KEEP_LOGS=DIR (copy the logs there)
#        BASE_BUILD=DIR: a second build (e.g. of the previous commit) run as a third
#        side "base" in the same rounds, for before/after figures from one run
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
REPEAT=${REPEAT:-3}
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
start_strata() { # NAME BINARY
	mkdir -p "$WORK/$1/root"
	"$2" --root "$WORK/$1/root" --address "$WORK/$1/run/strata.sock" --log-level warn serve \
		>"$WORK/$1.log" 2>&1 &
	PIDS+=($!)
	wait_for 10 test -S "$WORK/$1/run/strata.sock" || {
		cat "$WORK/$1.log" >&2
		die "$2 serve did not come up"
	}
}
STRATA_SOCK=$WORK/strata/run/strata.sock
start_strata strata "$STRATA"
BASE_SOCK=$WORK/base/run/strata.sock
if [ -n "${BASE_BUILD:-}" ]; then
	BASE_BUILD=$(cd "$BASE_BUILD" && pwd)
	start_strata base "$BASE_BUILD/cli/strata"
fi

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
	if [ "$1" = strata ] || [ "$1" = base ]; then
		out=$("$BENCH" cycles --socket "$WORK/$1/run/strata.sock" --snapshotter strata \
			--clients "$2" --duration "$DURATION" --prefix "s$2-$3") || die "$1 cycles failed"
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
[ -z "${BASE_BUILD:-}" ] || SIDES="$SIDES base"
[ -n "${SKIP_CONTAINERD:-}" ] || SIDES="$SIDES containerd"
[ -z "${SKIP_CYCLES:-}" ] || ROUNDS=0 CLIENTS=""
# The first side of a round runs right after the last one of the round
# before (containerd's GC, for one, deletes its removed snapshots after the
# run): the order rotates from round to round.
rotate() { # N WORDS...: the words rotated left by N
	local n=$1
	shift
	local w=("$@")
	local k=${#w[@]}
	for ((i = 0; i < k; i++)); do printf '%s ' "${w[$(((i + n) % k))]}"; done
}
for round in $(seq "$ROUNDS"); do
	for n in $CLIENTS; do
		# shellcheck disable=SC2086
		for side in $(rotate "$round" $SIDES); do
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
		if [ -n "${BASE_BUILD:-}" ]; then
			line=$(printf '%-7s | %9s %7s %7s %9s |' "base" "$(med base "$n" cycles_per_s)" \
				"$(med base "$n" p50_ms)" "$(med base "$n" p99_ms)" "$(best base "$n" cycles_per_s)")
			if [ -z "${SKIP_CONTAINERD:-}" ]; then
				ratio=$(echo "$(med base "$n" cycles_per_s) / $(med containerd "$n" cycles_per_s)" | bc -l)
				bratio=$(echo "$(best base "$n" cycles_per_s) / $(best containerd "$n" cycles_per_s)" | bc -l)
				line+=$(printf ' %9s %7s %7s %9s | %5.2fx %5.2fx' "" "" "" "" "$ratio" "$bratio")
			fi
			echo "$line"
		fi
	done
	[ -z "${BASE_BUILD:-}" ] || echo "(base: $BASE_BUILD, same rounds)"
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
# Written back and warm before anyone is timed: otherwise the first
# contestant competes with the write-back of the blob itself.
sync "$FILE"
cat "$FILE" >/dev/null

# REPEAT rounds, each one gRPC write (and base's) then one in-process ingest
# of the same warm file, so both see the same load; every ingest, in-process
# or not, ends with the same fsync'd commit. Reported: each side's best, and
# the median of the per-round ratios.
grpc_s="" grpc_commit_s="" base_s="" inproc_s="" ratios="" bratios=""
grpc_round() { # ROUND
	local out g
	out=$("$BENCH" write --socket "$STRATA_SOCK" --file "$FILE" --repeat 1 \
		--inflight "$INFLIGHT" --prefix "w$1") || die "content write failed"
	g=$(echo "$out" | get write_s)
	if [ -z "$grpc_s" ] || [ "$(echo "$g < $grpc_s" | bc -l)" = 1 ]; then
		grpc_s=$g
		grpc_commit_s=$(echo "$out" | get commit_s)
	fi
	last_g=$g
}
base_round() { # ROUND
	local out b
	out=$("$BENCH" write --socket "$BASE_SOCK" --file "$FILE" --repeat 1 \
		--inflight "$INFLIGHT" --prefix "wb$1") || die "content write (base) failed"
	b=$(echo "$out" | get write_s)
	if [ -z "$base_s" ] || [ "$(echo "$b < $base_s" | bc -l)" = 1 ]; then base_s=$b; fi
	last_b=$b
}
last_g="" last_b=""
for round in $(seq "$REPEAT"); do
	# with a base, the two take turns going first
	if [ -n "${BASE_BUILD:-}" ] && [ $((round % 2)) = 0 ]; then
		base_round "$round"
		grpc_round "$round"
	else
		grpc_round "$round"
		[ -z "${BASE_BUILD:-}" ] || base_round "$round"
	fi
	if [ -x "$BENCH_CONTENT" ]; then
		rm -rf "$WORK/inproc"
		i=$("$BENCH_CONTENT" ingest "$WORK/inproc" "$FILE" | get ingest_s)
		rm -rf "$WORK/inproc"
		if [ -z "$inproc_s" ] || [ "$(echo "$i < $inproc_s" | bc -l)" = 1 ]; then inproc_s=$i; fi
		ratios+=" $(echo "$i / $last_g" | bc -l)"
		[ -z "${BASE_BUILD:-}" ] || bratios+=" $(echo "$i / $last_b" | bc -l)"
		echo "content round $round: grpc_s=$last_g base_s=$last_b inproc_s=$i" >>"$WORK/content.log"
	fi
done
# The same with 4 WRITEs on the wire: how much of the gap is round-trip
# latency rather than throughput (containerd itself keeps one in flight).
out=$("$BENCH" write --socket "$STRATA_SOCK" --file "$FILE" --repeat 1 \
	--inflight 4 --prefix w4) || die "content write (4 in flight) failed"
grpc4_s=$(echo "$out" | get write_s)

t0=$(date +%s.%N)
sha256sum "$FILE" >/dev/null
t1=$(date +%s.%N)
sha_s=$(echo "$t1 - $t0" | bc -l)

mbps() { echo "$SIZE_MB / $1" | bc -l; }
echo
echo "Content Write of ${SIZE_MB} MiB (1 MiB WRITE messages, ${INFLIGHT} in flight, best of ${REPEAT} rounds alternating with the in-process ingest)"
printf '%-34s %7.2f s %8.0f MB/s  (of which COMMIT %.2f s)\n' "gRPC Write to strata serve" \
	"$grpc_s" "$(mbps "$grpc_s")" "$grpc_commit_s"
printf '%-34s %7.2f s %8.0f MB/s\n' "  same, 4 WRITEs in flight" "$grpc4_s" "$(mbps "$grpc4_s")"
[ -z "${BASE_BUILD:-}" ] || printf '%-34s %7.2f s %8.0f MB/s\n' "gRPC Write to base" "$base_s" \
	"$(mbps "$base_s")"
if [ -n "$inproc_s" ]; then
	printf '%-34s %7.2f s %8.0f MB/s\n' "in-process ingest (bench-content)" "$inproc_s" \
		"$(mbps "$inproc_s")"
fi
printf '%-34s %7.2f s %8.0f MB/s\n' "sha256sum (floor)" "$sha_s" "$(mbps "$sha_s")"
if [ -n "$inproc_s" ]; then
	printf 'ratio gRPC / in-process: %.2fx of the bests, %.2fx median of rounds (%s) (target >= 0.7x)\n' \
		"$(echo "$inproc_s / $grpc_s" | bc -l)" "$(echo "$ratios" | median)" \
		"$(for r in $ratios; do printf '%.2f ' "$r"; done | sed 's/ $//')"
	[ -z "${BASE_BUILD:-}" ] || printf 'ratio base gRPC / in-process: %.2fx of the bests, %.2fx median of rounds\n' \
		"$(echo "$inproc_s / $base_s" | bc -l)" "$(echo "$bratios" | median)"
else
	printf 'ratio gRPC / sha256sum: %.2fx (bench-content not built)\n' \
		"$(echo "$sha_s / $grpc_s" | bc -l)"
fi

#!/bin/bash
# Lazy pulling benchmarks (issue 7; targets in ../shared/design.md):
#
#   cold     cold start of the Debian minbase + python3 image
#            (bench/pull/build-image.sh) converted to eStargz by Debian's
#            ctr-remote (no prefetch list), `python3 -c 'print(1)'`:
#              strata:  `ctr-remote images rpull --snapshotter strata` +
#                       `ctr run --snapshotter strata` (containerd with
#                       Strata as its proxy snapshotter)
#              peer:    `ctr images pull` + `ctr run` of the original gzip
#                       image (containerd's own content store + overlayfs)
#            registry on loopback; fresh daemons and stores every round,
#            page cache dropped before each contestant, alternating, median
#            of ROUNDS. Also: run phase (ctr run start -> first output) of
#            each, and bytes Strata fetched from the registry before the
#            first output (TOC reads + chunk fetches, from its debug log)
#            against the eStargz image's size.
#   shaped   the same through bench/net/delay-proxy.py (10 ms each way,
#            100 Mbit/s); what the link delivers is measured first.
#   cached   a 1 GiB random file in a lazy layer, read once to fill the
#            chunk cache, then `cat >/dev/null` three times through an
#            overlay over the FUSE layer vs three times through an overlay
#            over the same file on the local disk, alternating, caches
#            dropped before every read (median). Also, for the breakdown:
#            the lazy read with only the FUSE file's pages dropped (chunk
#            files still in the page cache).
#   rss      strata serve's RSS with 100 lazy layers mounted (one image of
#            100 small eStargz layers, rpulled lazily), then after a
#            container read a file of each.
#
# Usage: bench/lazy/run.sh [BUILD_DIR] [ROUNDS] [PARTS]
#   PARTS: any of "cold shaped cached rss" (default: all)
# STRATA_BENCH_LOGS=DIR keeps each lazy round's daemon log (debug level).
# STRATA_BENCH_B=BUILD_DIR (cold only): each round also runs that build's
# lazy round, after BUILD_DIR's, and prints both against the same
# containerd round (the medians stay BUILD_DIR's).
# Needs root, network once (build-image.sh's debootstrap, cached in
# /var/cache/strata-bench, as are the converted python image and the 1 GiB
# test image; remove $CACHE/python-esgz.done after changing build-image.sh).
# Everything else lives under a temp dir removed on exit; every step is
# bounded by a timeout.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
BUILD=$(cd "${1:-$SRC/build}" && pwd)
ROUNDS=${2:-3}
PARTS=${3:-cold shaped cached rss}
STRATA=$BUILD/cli/strata
CACHE=${STRATA_BENCH_CACHE:-/var/cache/strata-bench}
FIRSTOUT=$HERE/firstout.py
T=${STRATA_BENCH_TIMEOUT:-600} # per step, seconds
[ -x "$STRATA" ] || { echo "run.sh: $STRATA not built" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/strata-bench-lazy.XXXXXX)
PIDS=()
unmount_under() {
	awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for _ in $(seq 50); do
		alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	unmount_under "$WORK"
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { echo "scale=4; $1 / $2" | bc -l; }
verdict() { # VALUE OP TARGET -> PASS/FAIL
	if [ "$(echo "$1 $2 $3" | bc -l)" = 1 ]; then echo PASS; else echo FAIL; fi
}
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
stop_pid() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
}
RESULTS=$WORK/results
: >"$RESULTS"
result() { # WHAT MEASURED PEER RATIO TARGET VERDICT
	printf '%s|%s|%s|%s|%s|%s\n' "$@" >>"$RESULTS"
}

# --- daemons ---------------------------------------------------------------
# start_containerd DIR [STRATA_SOCK]: a private containerd; with a socket,
# Strata is its proxy snapshotter "strata". Sets CTRD_PID, CTRD_SOCK.
start_containerd() {
	local d=$1 proxy=""
	mkdir -p "$d/root" "$d/state"
	[ -n "${2:-}" ] && proxy="[proxy_plugins]
  [proxy_plugins.strata]
    type = \"snapshot\"
    address = \"$2\""
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
$proxy
CFG
	containerd --config "$d/config.toml" >"$d/containerd.log" 2>&1 &
	CTRD_PID=$!
	PIDS+=("$CTRD_PID")
	CTRD_SOCK=$d/c.sock
	wait_for ctr --address "$CTRD_SOCK" version || { tail "$d/containerd.log" >&2; return 1; }
}

# start_strata DIR: strata serve at debug level (its fetch log lines are the
# byte count). Sets STRATA_PID, STRATA_SOCK.
start_strata() {
	local d=$1
	mkdir -p "$d"
	STRATA_SOCK=$d/s.sock
	"$STRATA" --root "$d/root" --address "$STRATA_SOCK" --log-level debug serve >"$d/strata.log" 2>&1 &
	STRATA_PID=$!
	PIDS+=("$STRATA_PID")
	wait_for test -S "$STRATA_SOCK" || { tail "$d/strata.log" >&2; return 1; }
}

# finish DIR: stop what runs for this directory, unmount, remove.
finish() {
	local d=$1
	[ -n "${CTRD_PID:-}" ] && stop_pid "$CTRD_PID"
	[ -n "${STRATA_PID:-}" ] && stop_pid "$STRATA_PID"
	CTRD_PID="" STRATA_PID=""
	unmount_under "$d"
	rm -rf "$d"
}

# Bytes Strata fetched from registries: TOC reads at mount + chunk fetches.
lazy_bytes() {
	local toc chunks
	toc=$(sed -n 's/.*mounted lazily.*, \([0-9]*\) of [0-9]* bytes fetched.*/\1/p' "$1" | paste -sd+ | bc)
	chunks=$(sed -n 's/.*: fetched \([0-9]*\) bytes at .*/\1/p' "$1" | paste -sd+ | bc)
	echo $((${toc:-0} + ${chunks:-0}))
}

# --- registry and images -----------------------------------------------------
port=$(free_port)
mkdir -p "$WORK/registry"
cat >"$WORK/registry/config.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry/data}}
http: {addr: 127.0.0.1:$port}
CFG
docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
PIDS+=($!)
REG=127.0.0.1:$port
wait_for curl -sf "http://$REG/v2/"

# A containerd of its own converts with ctr-remote and pushes.
start_containerd "$WORK/tool"
TOOL_PID=$CTRD_PID TOOL_SOCK=$CTRD_SOCK
CTRD_PID=""
to_estargz() { # NAME: $REG/NAME:plain -> $REG/NAME:esgz
	ctr --address "$TOOL_SOCK" images pull --plain-http "$REG/$1:plain" >/dev/null
	timeout "$T" ctr-remote --address "$TOOL_SOCK" images convert --estargz --oci \
		"$REG/$1:plain" "$REG/$1:esgz" >/dev/null
	ctr --address "$TOOL_SOCK" images push --plain-http "$REG/$1:esgz" >/dev/null
	ctr --address "$TOOL_SOCK" images rm "$REG/$1:plain" "$REG/$1:esgz" >/dev/null
}
layers_size() { # REF-PATH (NAME:TAG) -> sum of layer sizes
	curl -s "http://$REG/v2/${1%%:*}/manifests/${1#*:}" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' |
		jq '[.layers[].size] | add'
}
push_layout() { # LAYOUT REF
	skopeo copy --quiet --dest-tls-verify=false "oci:$1:latest" "docker://$REG/$2"
}

want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

# --- cold start ---------------------------------------------------------------
# round_ctr HOST:PORT DIR: containerd full pull + run. Sets RES to
# "pull_s run_first_s run_exit_s run2_first_s" (run2: a second container
# after drop_caches, for the breakdown).
round_ctr() {
	local img=$1/bench/python:plain d=$2 t0 t1 out
	start_containerd "$d"
	drop_caches
	t0=$(date +%s.%N)
	timeout "$T" ctr --address "$CTRD_SOCK" images pull --plain-http "$img" >/dev/null
	t1=$(date +%s.%N)
	out=$(timeout "$T" "$FIRSTOUT" ctr --address "$CTRD_SOCK" run --rm "$img" cold \
		python3 -c 'print(1)' 2>&1 >"$d/out")
	[ "$(cat "$d/out")" = 1 ] || { echo "containerd run printed: $(cat "$d/out")" >&2; return 1; }
	drop_caches
	out2=$(timeout "$T" "$FIRSTOUT" ctr --address "$CTRD_SOCK" run --rm "$img" cold2 \
		python3 -c 'print(1)' 2>&1 >/dev/null)
	finish "$d"
	RES="$(echo "$t1 - $t0" | bc -l) $(echo "$out" | sed -n 's/.*first_s=\([0-9.]*\) exit_s=\([0-9.]*\).*/\1 \2/p') $(echo "$out2" | sed -n 's/.*first_s=\([0-9.]*\) .*/\1/p')"
}

# round_lazy HOST:PORT DIR: rpull + run with Strata. Sets RES to
# "pull_s run_first_s run_exit_s bytes requests run2_first_s" (run2: a
# second container after drop_caches: everything it reads is in the chunk
# cache, so run - run2 is what waiting on the registry cost).
round_lazy() {
	local img=$1/bench/python:esgz d=$2 t0 t1 out
	start_strata "$d/s"
	start_containerd "$d/c" "$STRATA_SOCK"
	drop_caches
	t0=$(date +%s.%N)
	timeout "$T" ctr-remote --address "$CTRD_SOCK" images rpull --plain-http --snapshotter strata \
		"$img" >/dev/null
	t1=$(date +%s.%N)
	out=$(timeout "$T" "$FIRSTOUT" ctr --address "$CTRD_SOCK" run --rm --snapshotter strata "$img" \
		cold python3 -c 'print(1)' 2>&1 >"$d/out")
	cp "$d/s/strata.log" "$d/strata.log.at-exit"
	[ "$(cat "$d/out")" = 1 ] || { echo "strata run printed: $(cat "$d/out")" >&2; return 1; }
	local n
	n=$(grep -c 'mounted lazily' "$d/strata.log.at-exit" || true)
	[ "$n" = 2 ] || { echo "strata: $n of 2 layers mounted lazily" >&2; grep 'falling back' "$d/strata.log.at-exit" >&2; }
	local bytes
	bytes=$(lazy_bytes "$d/strata.log.at-exit")
	requests=$(grep -c ': fetched [0-9]* bytes at ' "$d/strata.log.at-exit" || true)
	drop_caches
	out2=$(timeout "$T" "$FIRSTOUT" ctr --address "$CTRD_SOCK" run --rm --snapshotter strata "$img" \
		cold2 python3 -c 'print(1)' 2>&1 >/dev/null)
	# STRATA_BENCH_LOGS=DIR keeps each round's daemon log
	[ -n "${STRATA_BENCH_LOGS:-}" ] && mkdir -p "$STRATA_BENCH_LOGS" &&
		cp "$d/strata.log.at-exit" "$STRATA_BENCH_LOGS/strata-$(basename "$d")-$(date +%s).log"
	finish "$d"
	RES="$(echo "$t1 - $t0" | bc -l) $(echo "$out" | sed -n 's/.*first_s=\([0-9.]*\) exit_s=\([0-9.]*\).*/\1 \2/p') $bytes $requests $(echo "$out2" | sed -n 's/.*first_s=\([0-9.]*\) .*/\1/p')"
}

# cold_link LABEL HOST:PORT TARGET
cold_link() {
	local label=$1 host=$2 target=$3 i c s
	local CP=() CF=() CE=() CT=() C2=() SP=() SF=() SE=() ST=() SB=() SR=() S2=()
	echo "== cold start, $label ($host)"
	for i in $(seq "$ROUNDS"); do
		round_ctr "$host" "$WORK/ctr$i"
		read -r cp cf ce c2 <<<"$RES"
		round_lazy "$host" "$WORK/lazy$i"
		read -r sp sf se sb sr s2 <<<"$RES"
		CP+=("$cp") CF+=("$cf") CE+=("$ce") CT+=("$(echo "$cp + $ce" | bc -l)") C2+=("$c2")
		SP+=("$sp") SF+=("$sf") SE+=("$se") ST+=("$(echo "$sp + $se" | bc -l)") SB+=("$sb")
		SR+=("$sr") S2+=("$s2")
		printf 'round %d: containerd pull %.2f s + run %.2f s (first output %.2f s; 2nd run %.2f s) | strata rpull %.2f s + run %.2f s (first output %.2f s; 2nd run %.2f s), %d bytes in %d requests\n' \
			"$i" "$cp" "$ce" "$cf" "$c2" "$sp" "$se" "$sf" "$s2" "$sb" "$sr"
		# STRATA_BENCH_B=BUILD_DIR: a second build's lazy round right
		# after, against the same containerd round (A/B in one run)
		if [ -n "${STRATA_BENCH_B:-}" ]; then
			local sa=$STRATA
			STRATA=$STRATA_BENCH_B/cli/strata
			round_lazy "$host" "$WORK/lazyb$i"
			STRATA=$sa
			read -r sp sf se sb sr s2 <<<"$RES"
			printf 'round %d B: strata rpull %.2f s + run %.2f s (first output %.2f s; 2nd run %.2f s), %d bytes in %d requests; cold ratio %.3fx, run phase ratio %.2fx\n' \
				"$i" "$sp" "$se" "$sf" "$s2" "$sb" "$sr" "$(echo "($sp + $se) / ($cp + $ce)" | bc -l)" \
				"$(echo "$sf / $cf" | bc -l)"
			printf 'round %d A: cold ratio %.3fx, run phase ratio %.2fx\n' "$i" \
				"$(echo "(${SP[-1]} + ${SE[-1]}) / ($cp + $ce)" | bc -l)" "$(echo "${SF[-1]} / $cf" | bc -l)"
		fi
	done
	c=$(median "${CT[@]}")
	s=$(median "${ST[@]}")
	local r rc rs rr b
	r=$(ratio "$s" "$c")
	printf '%s: cold start: strata %.2f s, containerd %.2f s, ratio %.3fx (target <= %sx) (medians of %d)\n' \
		"$label" "$s" "$c" "$r" "$target" "$ROUNDS"
	result "cold start, $label" "$(printf '%.2f s' "$s")" "$(printf '%.2f s' "$c")" \
		"$(printf '%.3fx' "$r")" "<= ${target}x" "$(verdict "$r" '<=' "$target")"
	if [ "$label" = loopback ]; then
		rs=$(median "${SF[@]}")
		rc=$(median "${CF[@]}")
		rr=$(ratio "$rs" "$rc")
		printf '%s: run phase to first output: strata %.3f s, unpacked image %.3f s, ratio %.2fx (target <= 2x)\n' \
			"$label" "$rs" "$rc" "$rr"
		printf '%s: breakdown: 2nd run after drop_caches (chunks cached): strata %.3f s, containerd %.3f s; %s registry requests before the first output\n' \
			"$label" "$(median "${S2[@]}")" "$(median "${C2[@]}")" "$(median "${SR[@]}")"
		result "run phase (ctr run -> first output), $label" "$(printf '%.3f s' "$rs")" \
			"$(printf '%.3f s' "$rc")" "$(printf '%.2fx' "$rr")" "<= 2x" "$(verdict "$rr" '<=' 2)"
		b=$(median "${SB[@]}")
		rr=$(echo "scale=2; 100 * $b / $ESGZ_SIZE" | bc -l)
		printf '%s: fetched before first output: %d of %d bytes = %.2f%% (target <= 8%%)\n' \
			"$label" "$b" "$ESGZ_SIZE" "$rr"
		result "bytes fetched before first output" "$b B" "$ESGZ_SIZE B (eStargz layers)" \
			"${rr}%" "<= 8%" "$(verdict "$rr" '<=' 8)"
	fi
}

if want cold || want shaped; then
	# The converted image is kept in $CACHE (python-esgz), like the 1 GiB
	# test image: the conversion is the same every run and takes minutes.
	if [ -e "$CACHE/python-esgz.done" ]; then
		push_layout "$CACHE/python-plain" bench/python:plain
		push_layout "$CACHE/python-esgz" bench/python:esgz
	else
		rm -rf "$CACHE/python-plain" "$CACHE/python-esgz"
		"$SRC/bench/pull/build-image.sh" "$WORK/oci" >/dev/null
		push_layout "$WORK/oci" bench/python:plain
		to_estargz bench/python
		skopeo copy --quiet --src-tls-verify=false "docker://$REG/bench/python:plain" \
			"oci:$CACHE/python-plain:latest"
		skopeo copy --quiet --src-tls-verify=false "docker://$REG/bench/python:esgz" \
			"oci:$CACHE/python-esgz:latest"
		touch "$CACHE/python-esgz.done"
	fi
	PLAIN_SIZE=$(layers_size bench/python:plain)
	ESGZ_SIZE=$(layers_size bench/python:esgz)
	printf 'image: Debian minbase + python3, 2 layers: %d bytes gzip, %d bytes eStargz (ctr-remote, no prefetch list)\n' \
		"$PLAIN_SIZE" "$ESGZ_SIZE"
	want cold && cold_link loopback "$REG" 0.10
	if want shaped; then
		pport=$(free_port)
		/usr/bin/python3 "$SRC/bench/net/delay-proxy.py" --delay-ms 10 --rate-mbit 100 "$pport" "$REG" \
			>"$WORK/delay-proxy.log" 2>&1 &
		PIDS+=($!)
		wait_for curl -sf "http://127.0.0.1:$pport/v2/"
		big=$(curl -s "http://$REG/v2/bench/python/manifests/plain" \
			-H 'Accept: application/vnd.oci.image.manifest.v1+json' | jq -r '.layers | max_by(.size) | .digest')
		echo "== shaped link as measured (delay-proxy.py: 10 ms each way, 100 Mbit/s)"
		/usr/bin/python3 "$SRC/bench/net/measure.py" "127.0.0.1:$pport" "/v2/bench/python/blobs/$big" |
			tee "$WORK/link"
		LINK=$(sed -n 's/^rtt.*median of [0-9]*): \([0-9.]* ms\).*/RTT \1/p; s/^throughput:.* = \(.*\)$/\1/p' "$WORK/link" | paste -sd, | sed 's/,/, /')
		cold_link "shaped ($LINK)" "127.0.0.1:$pport" 0.15
	fi
fi

# --- re-read of a cached 1 GiB file -------------------------------------------
# read_s FILE [fuse-only]: seconds for cat FILE >/dev/null, caches dropped
# first; with fuse-only, only FILE's own pages are dropped (fadvise
# DONTNEED, which overlayfs passes down to the FUSE file), so Strata serves
# the reads from chunk files that are still in the page cache.
read_s() {
	local t0 t1
	if [ -n "${2:-}" ]; then
		python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"
	else
		drop_caches
	fi
	t0=$(date +%s.%N)
	cat "$1" >/dev/null
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
if want cached; then
	echo "== re-read of a cached 1 GiB file"
	big=$CACHE/lazy-big1g
	if [ ! -e "$big.done" ]; then
		rm -rf "$big" "$big-root" "$big-oci"
		mkdir -p "$big-root"
		head -c $((1 << 30)) /dev/urandom >"$big-root/big"
		bash "$SRC/tests/integration/lib/mkimage.sh" "$big-oci" latest "$big-root"
		push_layout "$big-oci" bench/big:plain
		to_estargz bench/big
		skopeo copy --quiet --src-tls-verify=false "docker://$REG/bench/big:esgz" "oci:$big:latest"
		rm -rf "$big-oci"
		touch "$big.done"
	else
		push_layout "$big" bench/big:esgz
	fi
	d=$WORK/cached
	start_strata "$d/s"
	start_containerd "$d/c" "$STRATA_SOCK"
	timeout "$T" ctr-remote --address "$CTRD_SOCK" images rpull --plain-http --snapshotter strata \
		"$REG/bench/big:esgz" >/dev/null
	fuse=$(awk -v p="$d/s/root/snapshots/" 'index($5, p) == 1 && / - fuse/ { print $5 }' /proc/self/mountinfo)
	if [ -z "$fuse" ] || [ "$(echo "$fuse" | wc -l)" != 1 ]; then
		echo "cached: expected one FUSE layer, got: $fuse" >&2
		exit 1
	fi
	for side in lazy native; do
		mkdir -p "$d/$side/u" "$d/$side/w" "$d/$side/m"
	done
	mount -t overlay overlay -o "lowerdir=$fuse,upperdir=$d/lazy/u,workdir=$d/lazy/w" "$d/lazy/m"
	mount -t overlay overlay -o "lowerdir=$big-root,upperdir=$d/native/u,workdir=$d/native/w" "$d/native/m"
	t0=$(date +%s.%N)
	sum=$(timeout "$T" sha256sum <"$d/lazy/m/big" | cut -d' ' -f1)
	t1=$(date +%s.%N)
	fill=$(lazy_bytes "$d/s/strata.log")
	printf 'fill: first read fetched %d bytes in %.2f s\n' "$fill" "$(echo "$t1 - $t0" | bc -l)"
	[ "$sum" = "$(sha256sum <"$big-root/big" | cut -d' ' -f1)" ] || { echo "cached: content differs!" >&2; exit 1; }
	L=() N=() F=()
	for i in 1 2 3; do
		L+=("$(read_s "$d/lazy/m/big")")
		# right after L: its chunk files are still in the page cache
		F+=("$(read_s "$d/lazy/m/big" fuse-only)")
		N+=("$(read_s "$d/native/m/big")")
		printf 'read %d: lazy %.3f s (%.0f MiB/s), native overlay %.3f s (%.0f MiB/s); lazy with the chunk files in the page cache: %.3f s (%.0f MiB/s)\n' \
			"$i" "${L[-1]}" "$(echo "1024 / ${L[-1]}" | bc -l)" "${N[-1]}" "$(echo "1024 / ${N[-1]}" | bc -l)" \
			"${F[-1]}" "$(echo "1024 / ${F[-1]}" | bc -l)"
	done
	after=$(lazy_bytes "$d/s/strata.log")
	[ "$after" = "$fill" ] || echo "warning: the re-reads fetched $((after - fill)) more bytes" >&2
	lt=$(median "${L[@]}")
	nt=$(median "${N[@]}")
	r=$(ratio "$nt" "$lt") # throughput ratio = inverse time ratio
	printf 'cached re-read: lazy %.0f MiB/s, native %.0f MiB/s, throughput ratio %.2fx (target >= 0.8x)\n' \
		"$(echo "1024 / $lt" | bc -l)" "$(echo "1024 / $nt" | bc -l)" "$r"
	printf 'cached re-read, chunk files already in the page cache (FUSE overhead alone): %.0f MiB/s\n' \
		"$(echo "1024 / $(median "${F[@]}")" | bc -l)"
	result "re-read of a cached 1 GiB file (median of 3)" "$(printf '%.0f MiB/s' "$(echo "1024 / $lt" | bc -l)")" \
		"$(printf '%.0f MiB/s' "$(echo "1024 / $nt" | bc -l)")" "$(printf '%.2fx' "$r")" ">= 0.8x" \
		"$(verdict "$r" '>=' 0.8)"
	finish "$d"
fi

# --- RSS with 100 lazy layers ---------------------------------------------------
if want rss; then
	echo "== daemon RSS with 100 lazy layers"
	d=$WORK/rss
	mkdir -p "$d/layers/0/bin"
	cp /bin/busybox "$d/layers/0/bin/busybox"
	for a in sh cat wc ls; do ln -s busybox "$d/layers/0/bin/$a"; done
	dirs=("$d/layers/0")
	for i in $(seq 1 99); do
		mkdir -p "$d/layers/$i/l$i/sub"
		head -c 8192 /dev/urandom >"$d/layers/$i/l$i/file"
		echo "$i" >"$d/layers/$i/l$i/sub/n"
		dirs+=("$d/layers/$i")
	done
	bash "$SRC/tests/integration/lib/mkimage.sh" "$d/oci" latest "${dirs[@]}"
	push_layout "$d/oci" bench/many:plain
	to_estargz bench/many
	start_strata "$d/s"
	rss0=$(awk '/VmRSS/ {print $2}' "/proc/$STRATA_PID/status")
	start_containerd "$d/c" "$STRATA_SOCK"
	timeout "$T" ctr-remote --address "$CTRD_SOCK" images rpull --plain-http --snapshotter strata \
		"$REG/bench/many:esgz" >/dev/null
	n=$(awk -v p="$d/s/root/snapshots/" 'index($5, p) == 1 && / - fuse/' /proc/self/mountinfo | wc -l)
	sleep 1
	rss1=$(awk '/VmRSS/ {print $2}' "/proc/$STRATA_PID/status")
	out=$(timeout "$T" ctr --address "$CTRD_SOCK" run --rm --snapshotter strata "$REG/bench/many:esgz" many \
		/bin/sh -c 'cat /l*/file | wc -c')
	rss2=$(awk '/VmRSS/ {print $2}' "/proc/$STRATA_PID/status")
	hwm=$(awk '/VmHWM/ {print $2}' "/proc/$STRATA_PID/status")
	threads=$(awk '/Threads/ {print $2}' "/proc/$STRATA_PID/status")
	printf 'FUSE layers mounted: %d; container read %s bytes from 99 of them\n' "$n" "$out"
	printf 'RSS: %d KiB at start, %d KiB with %d lazy layers mounted, %d KiB after the container read them (peak %d KiB, %d threads)\n' \
		"$rss0" "$rss1" "$n" "$rss2" "$hwm" "$threads"
	m=$((rss1 > rss2 ? rss1 : rss2))
	m=$(echo "scale=1; $m / 1024" | bc -l)
	result "daemon RSS, $n lazy layers mounted (after a container read all)" "$m MiB" \
		"stargz: GBs (reported)" "-" "<= 64 MiB" "$(verdict "$m" '<=' 64)"
	finish "$d"
fi

stop_pid "$TOOL_PID"
echo
echo "| what | strata | peer | ratio | target | verdict |"
echo "|---|---|---|---|---|---|"
awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6 }' "$RESULTS"

#!/bin/bash
# bench/convert/run.sh: `strata convert --estargz` versus Debian's
# `ctr-remote images convert --estargz --oci` on the same input in the same
# run: the Debian + python3 image (bench/pull/build-image.sh), served by a
# local docker-registry.
#   strata:     registry -> registry (fetch, convert, push), one process
#   ctr-remote: through a private containerd; the convert alone is timed
#               (layers already in containerd's store), and pull+convert+push
# Sizes are the sums of the converted layers. Needs root (containerd).
# Environment: RUNS (default 3), STRATA_BIN (default build/cli/strata).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top="$here/../.."
STRATA_BIN=${STRATA_BIN:-$top/build/cli/strata}
RUNS=${RUNS:-3}
tmp=$(mktemp -d /tmp/strata-bench-convert.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	awk -v d="$tmp/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

echo "building the image (cached under /var/cache/strata-bench)..." >&2
bash "$top/bench/pull/build-image.sh" "$tmp/oci" >&2

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$port
mkdir -p "$tmp/registry"
cat >"$tmp/registry/config.yml" <<CFG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $tmp/registry/data
  delete:
    enabled: true
http:
  addr: $REG
CFG
docker-registry serve "$tmp/registry/config.yml" >"$tmp/registry/log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -so /dev/null "http://$REG/v2/" && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$tmp/oci:latest" "docker://$REG/bench/py:plain"

mkdir -p "$tmp/ctd/root" "$tmp/ctd/state"
SOCK="$tmp/ctd/containerd.sock"
cat >"$tmp/ctd/config.toml" <<CFG
version = 2
root = "$tmp/ctd/root"
state = "$tmp/ctd/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[metrics]
  address = ""
CFG
containerd --config "$tmp/ctd/config.toml" >"$tmp/ctd/log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do ctr --address "$SOCK" version >/dev/null 2>&1 && break; sleep 0.1; done

layers_size() { # REF(repo:tag) -> sum of layer sizes
	curl -s "http://$REG/v2/${1%%:*}/manifests/${1##*:}" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' |
		python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))'
}

in_size=$(layers_size bench/py:plain)
echo "input: $(python3 -c "print(round($in_size/1e6,1))") MB compressed, 2 layers; $(nproc) CPUs; $RUNS runs" >&2
best_s=999 best_c=999 best_ce=999
for i in $(seq "$RUNS"); do
	t0=$(now)
	"$STRATA_BIN" convert --estargz -q "$REG/bench/py:plain" "$REG/bench/py:strata$i" >/dev/null
	t1=$(now)
	s=$(secs "$t0" "$t1")

	# a fresh namespace per run: ctr-remote converts from scratch each time
	C=(ctr --address "$SOCK" -n "bench$i")
	t2=$(now)
	"${C[@]}" images pull --plain-http "$REG/bench/py:plain" >/dev/null
	t3=$(now)
	ctr-remote --address "$SOCK" -n "bench$i" images convert --estargz --oci \
		"$REG/bench/py:plain" "$REG/bench/py:ctr$i" >/dev/null
	t4=$(now)
	"${C[@]}" images push --plain-http "$REG/bench/py:ctr$i" >/dev/null
	t5=$(now)
	c=$(secs "$t3" "$t4")
	ce=$(secs "$t2" "$t5")
	printf 'run %d: strata %.2f s (fetch+convert+push) | ctr-remote convert %.2f s, pull+convert+push %.2f s\n' \
		"$i" "$s" "$c" "$ce" >&2
	best_s=$(echo "if ($s < $best_s) $s else $best_s" | bc)
	best_c=$(echo "if ($c < $best_c) $c else $best_c" | bc)
	best_ce=$(echo "if ($ce < $best_ce) $ce else $best_ce" | bc)
done
ss=$(layers_size bench/py:strata1)
cs=$(layers_size bench/py:ctr1)
printf '\nbest of %d:\n' "$RUNS"
printf '  strata convert (registry -> registry):     %6.2f s\n' "$best_s"
printf '  ctr-remote convert (layers already local): %6.2f s   speedup %.2fx\n' "$best_c" "$(echo "$best_c / $best_s" | bc -l)"
printf '  ctr-remote pull + convert + push:          %6.2f s   speedup %.2fx\n' "$best_ce" "$(echo "$best_ce / $best_s" | bc -l)"
printf '  output: strata %d bytes, ctr-remote %d bytes (%+.2f%%)\n' "$ss" "$cs" "$(echo "($ss - $cs) * 100 / $cs" | bc -l)"

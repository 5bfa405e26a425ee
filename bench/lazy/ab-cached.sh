#!/bin/bash
# bench/lazy/ab-cached.sh BUILD_A BUILD_B [ROUNDS=3]: the cached 1 GiB re-read
# (run.sh "cached") as an A/B: both builds' daemons mount the same eStargz
# image at once (each with its own containerd), and the reads alternate
# A, B, native overlay, with drop_caches before each; a "hot" read drops only
# the FUSE file's pages (the chunk files stay in the page cache). Needs
# /var/cache/strata-bench/lazy-big1g from a run.sh "cached" run. Root.
set -euo pipefail
A=$1; B=$2; N=${3:-3}
CACHE=/var/cache/strata-bench
W=$(mktemp -d /var/tmp/lazyab.XXXXXX)
PIDS=()
cleanup() { set +e; for p in "${PIDS[@]}"; do kill $p; done; sleep 1; awk -v d="$W/" 'index($5,d)==1{print $5}' /proc/self/mountinfo | sort -r | while read m; do umount -l $m; done; rm -rf $W; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p $W/reg
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/reg/data}}\nhttp: {addr: 127.0.0.1:%s}\n' $W $port > $W/reg/config.yml
docker-registry serve $W/reg/config.yml >$W/reg/log 2>&1 & PIDS+=($!)
REG=127.0.0.1:$port
for i in $(seq 100); do curl -sf http://$REG/v2/ >/dev/null && break; sleep 0.1; done
skopeo copy --quiet --dest-tls-verify=false "oci:$CACHE/lazy-big1g:latest" "docker://$REG/bench/big:esgz"
setup() { # NAME BUILD
  local n=$1 b=$2
  $b/cli/strata --root $W/$n/s/root --address $W/$n/s.sock --log-level info serve >$W/$n.strata.log 2>&1 & PIDS+=($!)
  mkdir -p $W/$n/c/root $W/$n/c/state
  printf 'version = 2\nroot = "%s/%s/c/root"\nstate = "%s/%s/c/state"\n[grpc]\n  address = "%s/%s/c/c.sock"\n[ttrpc]\n  address = "%s/%s/c/c.sock.ttrpc"\n[metrics]\n  address = ""\n[proxy_plugins]\n  [proxy_plugins.strata]\n    type = "snapshot"\n    address = "%s/%s/s.sock"\n' $W $n $W $n $W $n $W $n $W $n > $W/$n/c/config.toml
  for i in $(seq 100); do test -S $W/$n/s.sock && break; sleep 0.1; done
  containerd --config $W/$n/c/config.toml >$W/$n/c/log 2>&1 & PIDS+=($!)
  for i in $(seq 100); do ctr --address $W/$n/c/c.sock version >/dev/null 2>&1 && break; sleep 0.1; done
  timeout 600 ctr-remote --address $W/$n/c/c.sock images rpull --plain-http --snapshotter strata $REG/bench/big:esgz >/dev/null
  local fuse=$(awk -v p="$W/$n/s/root/snapshots/" 'index($5, p) == 1 && / - fuse/ { print $5 }' /proc/self/mountinfo)
  mkdir -p $W/$n/u $W/$n/w $W/$n/m
  mount -t overlay overlay -o "lowerdir=$fuse,upperdir=$W/$n/u,workdir=$W/$n/w" $W/$n/m
  timeout 600 cat $W/$n/m/big >/dev/null
}
setup a $A; setup b $B
mkdir -p $W/nat/u $W/nat/w $W/nat/m
mount -t overlay overlay -o "lowerdir=$CACHE/lazy-big1g-root,upperdir=$W/nat/u,workdir=$W/nat/w" $W/nat/m
rd() { sync; echo 3 >/proc/sys/vm/drop_caches; t0=$(date +%s.%N); timeout 600 cat $1 >/dev/null; t1=$(date +%s.%N); echo "scale=0; 1024/($t1-$t0)" | bc -l; }
hot() { python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' $1; t0=$(date +%s.%N); timeout 600 cat $1 >/dev/null; t1=$(date +%s.%N); echo "scale=0; 1024/($t1-$t0)" | bc -l; }
for i in $(seq $N); do
  a=$(rd $W/a/m/big); ah=$(hot $W/a/m/big); b=$(rd $W/b/m/big); bh=$(hot $W/b/m/big); nat=$(rd $W/nat/m/big)
  echo "round $i: A cold-cache $a MiB/s (hot chunk files $ah) | B cold-cache $b MiB/s (hot $bh) | native $nat MiB/s | load $(cut -d' ' -f1 /proc/loadavg)"
done

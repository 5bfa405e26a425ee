#!/usr/bin/env bats
# Lazy pulling, the hard cases: a whole image compared file by file with its
# original tree, a registry that goes away and comes back, a registry that
# ignores Range or corrupts chunks, daemon restarts between containers.
# eStargz images are made by Debian's ctr-remote (an independent producer)
# and pulled through containerd with its remote-snapshot labels (ctr-remote
# images rpull) onto Strata's proxy snapshotter.

load helpers

TREE="$HELPERS_DIR/lib/tree-manifest.py"

setup() {
	common_setup
	start_registry_named main
	REGISTRY=$NAMED_REGISTRY
	REGISTRY_PID=$NAMED_REGISTRY_PID
	export REGISTRY
	STRATA_LOG_LEVEL=debug start_strata
	start_containerd "" "$(strata_proxy_config)"
}
teardown() {
	# a container left running by a failed test, then the FUSE fd holder
	# (it would exit by itself once the mounts are gone)
	if [ -n "${READER:-}" ]; then
		ctr_ tasks kill -s KILL "$READER" >/dev/null 2>&1 || true
		sleep 0.5
		ctr_ tasks rm -f "$READER" >/dev/null 2>&1 || true
		ctr_ containers rm "$READER" >/dev/null 2>&1 || true
	fi
	local holder
	holder=$(cat "$TEST_TMP/strata-root/run/fuse-fds.pid" 2>/dev/null) || true
	common_teardown
	[ -z "$holder" ] || kill -KILL "$holder" 2>/dev/null || true
}

# Give every entry under DIR its own whole-second mtime (derived from its
# path), so mtimes that are carried through prove something.
stamp_mtimes() {
	local dir=$1 p c
	(cd "$dir" && find . -mindepth 1) | while read -r p; do
		c=$(printf '%s' "$p" | cksum | cut -d' ' -f1)
		touch -h -d "@$((1500000000 + c % 100000000))" "$dir/$p"
	done
}

# The rich tree (layer 1): busybox, modes, owners, links, xattrs, special
# files, odd names, a multi-chunk file.
build_rich_tree() {
	local r=$1
	mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/data" "$r/home/user/sub/deeper/deepest" "$r/srv/shared" \
		"$r/opq" "$r/dir with spaces"
	cp /bin/busybox "$r/bin/busybox"
	for a in sh ls cat echo true sleep sha256sum wc stat find; do ln -s busybox "$r/bin/$a"; done
	echo "root:x:0:0:root:/root:/bin/sh" >"$r/etc/passwd"
	echo "root:x:0:" >"$r/etc/group"
	echo "motd of layer 1" >"$r/etc/motd"
	chmod 1777 "$r/tmp"
	# owners and modes
	echo "user's file" >"$r/home/user/file"
	head -c 70000 /dev/urandom >"$r/home/user/sub/deeper/deepest/blob"
	chmod 0640 "$r/home/user/file"
	chmod 0750 "$r/home/user"
	chown -R 1000:1000 "$r/home/user"
	chown 0:1000 "$r/srv/shared"
	chmod 2775 "$r/srv/shared"
	cp /bin/busybox "$r/srv/setuid"
	chmod 4755 "$r/srv/setuid"
	echo secret >"$r/srv/private"
	chmod 0400 "$r/srv/private"
	echo "exec only" >"$r/srv/x"
	chmod 0111 "$r/srv/x"
	# data: a file of several chunks (ctr-remote's default chunk is 4 MiB),
	# small files, an empty one
	head -c $((21 << 20)) /dev/urandom >"$r/data/big"
	head -c 100000 /dev/urandom >"$r/data/a"
	head -c 100000 /dev/urandom >"$r/data/b"
	: >"$r/data/empty"
	echo "to be deleted by layer 2" >"$r/data/gone"
	# links
	echo "linked" >"$r/data/hard1"
	ln "$r/data/hard1" "$r/data/hard2"
	ln "$r/data/hard1" "$r/home/user/hard3"
	ln -s ../etc/motd "$r/data/rel-link"
	ln -s /etc/passwd "$r/data/abs-link"
	ln -s /nowhere/at/all "$r/data/dangling"
	ln -s home/user "$r/userdir"
	# xattrs: user.* on a file and a directory, a file capability
	setfattr -n user.colour -v blue "$r/data/a"
	setfattr -n user.empty "$r/data/empty"
	setfattr -n user.dir -v 0x00ff10 "$r/srv/shared"
	cp /bin/busybox "$r/srv/capped"
	setcap cap_net_raw+ep "$r/srv/capped"
	# special files
	mkfifo "$r/data/fifo"
	mknod "$r/data/null" c 1 3
	mknod -m 0600 "$r/data/loop9" b 7 9
	# names
	echo x >"$r/dir with spaces/file with spaces"
	echo y >"$r/data/ünïcødé-名前"
	echo z >"$r/data/$(printf 'l%.0s' $(seq 200))"
	echo old1 >"$r/opq/old1"
	echo old2 >"$r/opq/old2"
	stamp_mtimes "$r"
}

# Layer 2 twice: $1 in overlay format (0/0 char whiteout, opaque xattr), to
# build the expected tree with the kernel's overlay; $2 in OCI format, for
# the image.
build_layer2() {
	local u=$1 l=$2
	mkdir -p "$u/etc" "$u/data" "$u/opq" "$u/home/user"
	echo "motd of layer 2" >"$u/etc/motd"
	echo "added by layer 2" >"$u/etc/added"
	mknod "$u/data/gone" c 0 0
	setfattr -n trusted.overlay.opaque -v y "$u/opq"
	echo new >"$u/opq/new"
	echo "export PS1=x" >"$u/home/user/.profile"
	chown 1000:1000 "$u/home/user" "$u/home/user/.profile"
	chmod 0750 "$u/home/user"
	cp -a "$u/." "$l/"
	rm "$l/data/gone"
	touch "$l/data/.wh.gone"
	setfattr -x trusted.overlay.opaque "$l/opq"
	touch "$l/opq/.wh..wh..opq"
	stamp_mtimes "$u"
	stamp_mtimes "$l"
}

# What a user would compare: tree-manifest.py (content, mode, owner,
# regular-file mtimes, link targets, hard-link groups, xattrs) plus the
# mtimes of directories and symlinks, which a lazy layer serves from its TOC.
listing() {
	python3 "$TREE" "$1"
	(cd "$1" && find . -mindepth 1 \( -type d -o -type l \) -printf '%p %y %T@\n' |
		sed 's/\.[0-9]*$//' | LC_ALL=C sort)
}

@test "every file of a lazily pulled two-layer image equals the original tree" {
	local l1=$TEST_TMP/l1 u2=$TEST_TMP/u2 l2=$TEST_TMP/l2
	mkdir -p "$l1" "$u2" "$l2"
	build_rich_tree "$l1"
	build_layer2 "$u2" "$l2"
	mkimage_exact "$TEST_TMP/oci" latest "$l1" "$l2"
	push_estargz "$TEST_TMP/oci" test/rich
	ESGZ=$REGISTRY/test/rich:esgz

	# the original, merged by the kernel's overlayfs
	mkdir -p "$TEST_TMP/ref"
	mount -t overlay overlay -o "lowerdir=$u2:$l1" "$TEST_TMP/ref"
	listing "$TEST_TMP/ref" >"$TEST_TMP/expected"
	umount "$TEST_TMP/ref"

	run rpull_lazy "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c 'mounted lazily' "$TEST_TMP/strata.log")" -eq 2 ]
	[ "$(lazy_fuse_mounts "$STRATA_ROOT_DIR" | wc -l)" -eq 2 ]
	top=$(lazy_top_chain)
	[ -n "$top" ]
	mount_lazy_snapshot check "$top" "$TEST_TMP/lazy"
	listing "$TEST_TMP/lazy" >"$TEST_TMP/actual"
	umount "$TEST_TMP/lazy"
	ctr_ snapshots --snapshotter strata rm check

	diff -u "$TEST_TMP/expected" "$TEST_TMP/actual"
	# the listing is not vacuous
	grep -q '^/data/big file 0644 0:0 [0-9]* - [0-9a-f]\{64\} -$' "$TEST_TMP/actual"
	grep -q '^/home/user/hard3 file 0644 0:0 [0-9]* =/data/hard1 ' "$TEST_TMP/actual"
	grep -q '^/srv/capped .*security.capability=' "$TEST_TMP/actual"
	grep -q '^/data/loop9 block 0600 0:0 [0-9]* - 7,9 -$' "$TEST_TMP/actual"
	! grep -q '^/data/gone \|^/opq/old1 \|landmark' "$TEST_TMP/actual"

	# and a container sees the same bytes; nothing read the big file before
	want=$(sha256sum "$l1/data/big" | cut -d' ' -f1)
	run ctr_ run --rm --snapshotter strata "$ESGZ" rich1 /bin/sh -c 'sha256sum /data/big; cat /etc/motd'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$want  /data/big" ]
	[ "${lines[1]}" = "motd of layer 2" ]
	! grep -q 'failed verification' "$TEST_TMP/strata.log"
}

# A small two-layer image for the tests below: /data/{a,b,c} are separate
# chunks in layer 1, /etc/motd in layer 2.
build_small_image() {
	local l1=$TEST_TMP/s1 l2=$TEST_TMP/s2
	mkdir -p "$l1/bin" "$l1/etc" "$l1/data" "$l2/etc"
	cp /bin/busybox "$l1/bin/busybox"
	for a in sh cat sha256sum wc; do ln -s busybox "$l1/bin/$a"; done
	for f in a b c; do head -c 300000 /dev/urandom >"$l1/data/$f"; done
	echo "motd of layer 2" >"$l2/etc/motd"
	mkimage_exact "$TEST_TMP/oci" latest "$l1" "$l2"
	push_estargz "$TEST_TMP/oci" test/small
	ESGZ=$REGISTRY/test/small:esgz
}

@test "registry stopped after mount: cached data served, uncached reads fail cleanly and recover" {
	build_small_image
	run rpull_lazy "$ESGZ"
	[ "$status" -eq 0 ]
	mount_lazy_snapshot down "$(lazy_top_chain)" "$TEST_TMP/mnt"
	want_a=$(sha256sum "$TEST_TMP/s1/data/a" | cut -d' ' -f1)
	want_b=$(sha256sum "$TEST_TMP/s1/data/b" | cut -d' ' -f1)
	[ "$(sha256sum <"$TEST_TMP/mnt/data/a" | cut -d' ' -f1)" = "$want_a" ]

	kill -TERM "$REGISTRY_PID"
	wait_for 10 bash -c "! kill -0 $REGISTRY_PID"
	! curl -s "http://$REGISTRY/v2/"
	# the kernel's copy goes: data/a must come from Strata's chunk cache
	sync
	echo 3 >/proc/sys/vm/drop_caches
	[ "$(sha256sum <"$TEST_TMP/mnt/data/a" | cut -d' ' -f1)" = "$want_a" ]

	# an uncached file: EIO, within a bounded time (retries, no hang)
	t0=$(date +%s)
	run timeout 60 cat "$TEST_TMP/mnt/data/b"
	t1=$(date +%s)
	echo "status $status after $((t1 - t0)) s: ${output:0:200}"
	[ "$status" -eq 1 ]
	[[ "$output" == *"Input/output error"* ]]
	[ $((t1 - t0)) -le 15 ]
	grep -E 'level=warning msg="lazy layer [0-9]+: fetch bytes [0-9]+-[0-9]+( \([a-z]+\))?: ' "$TEST_TMP/strata.log" ||
		{ tail -20 "$TEST_TMP/strata.log"; false; }
	# containerd is told the layer is unavailable rather than given a
	# rootfs that fails later
	run ctr_ run --rm --snapshotter strata "$ESGZ" while-down /bin/cat /etc/motd
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *navailable* ]]

	# the registry returns (same port, same storage): the read succeeds
	docker-registry serve "$TEST_TMP/registry-main/config.yml" >>"$TEST_TMP/registry-main/log" 2>&1 &
	track_pid $!
	wait_for 20 curl -so /dev/null "http://$REGISTRY/v2/"
	[ "$(sha256sum <"$TEST_TMP/mnt/data/b" | cut -d' ' -f1)" = "$want_b" ]
	umount "$TEST_TMP/mnt"
	run ctr_ run --rm --snapshotter strata "$ESGZ" after /bin/sh -c 'sha256sum /data/c; cat /etc/motd'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[1]}" = "motd of layer 2" ]
	! grep -q 'failed verification' "$TEST_TMP/strata.log"
}

# A misbehaving registry: a proxy that forwards GET/HEAD to the registry.
# Its mode is read from $TEST_TMP/proxy-mode at each request:
#   norange   drop the Range header, so a Range request is answered 200 with
#             the whole blob (as some registries do); each dropped Range is
#             appended to $TEST_TMP/norange
#   corrupt   flip one byte in the middle of every 206 answer that does not
#             reach into the blob's last 100 kB (the footer and TOC stay
#             intact, chunk data does not)
#   pass      forward as is
#   slow      hold every 206 answer 5 s (noted in TMP/slow), then forward it
start_bad_proxy() {
	cat >"$TEST_TMP/badproxy.py" <<'PY'
import http.client, http.server, re, sys
port, target, tmp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def fwd(self):
        mode = open(tmp + "/proxy-mode").read().strip()
        drop = ("host", "connection") + (("range",) if mode == "norange" else ())
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in drop}
        if mode == "norange" and "Range" in self.headers:
            with open(tmp + "/norange", "a") as f: f.write(self.headers["Range"] + "\n")
        c = http.client.HTTPConnection(target, timeout=30)
        c.request(self.command, self.path, headers=hdrs)
        r = c.getresponse()
        body = r.read() if self.command != "HEAD" else b""
        cr = re.match(r"bytes (\d+)-(\d+)/(\d+)", r.getheader("Content-Range") or "")
        if mode == "slow" and r.status == 206:
            with open(tmp + "/slow", "a") as f: f.write(cr[0] + "\n")
            import time; time.sleep(5)
        if mode == "corrupt" and r.status == 206 and cr and int(cr[2]) < int(cr[3]) - 100000:
            i = len(body) // 2
            body = body[:i] + bytes([body[i] ^ 0xff]) + body[i + 1:]
            with open(tmp + "/corrupted", "a") as f: f.write(cr[0] + "\n")
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "keep-alive", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", r.getheader("Content-Length") if self.command == "HEAD" else str(len(body)))
        self.end_headers()
        try: self.wfile.write(body)
        except OSError: pass
        c.close()
    do_GET = do_HEAD = fwd
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
	local port
	port=$(free_port)
	echo "$1" >"$TEST_TMP/proxy-mode"
	: >"$TEST_TMP/norange"
	: >"$TEST_TMP/corrupted"
	python3 "$TEST_TMP/badproxy.py" "$port" "$REGISTRY" "$TEST_TMP" >"$TEST_TMP/badproxy.log" 2>&1 &
	track_pid $!
	BADREG=127.0.0.1:$port
	wait_for 10 curl -sf "http://$BADREG/v2/"
}

@test "a registry that ignores Range: Prepare falls back, says why, the container runs" {
	build_small_image
	start_bad_proxy norange
	# the proxy really answers a Range request with the whole blob
	dig=$(curl -s "http://$REGISTRY/v2/test/small/manifests/esgz" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' | jq -r '.layers[0].digest')
	code=$(curl -s -o /dev/null -w '%{http_code}' -r 0-9 "http://$BADREG/v2/test/small/blobs/$dig")
	[ "$code" = 200 ]

	run rpull_lazy "$BADREG/test/small:esgz"
	echo "$output"
	[ "$status" -eq 0 ]
	grep -E 'level=info msg="layer sha256:[0-9a-f]+: registry ignores Range: .*falling back to full pull"' \
		"$TEST_TMP/strata.log"
	! grep -q 'mounted lazily' "$TEST_TMP/strata.log"
	[ -z "$(lazy_fuse_mounts "$STRATA_ROOT_DIR")" ]
	! ctr_ snapshots --snapshotter strata info "$(lazy_top_chain)" | grep -q 'snapshot/remote"'
	[ -s "$TEST_TMP/norange" ]
	run ctr_ run --rm --snapshotter strata "$BADREG/test/small:esgz" full1 \
		/bin/sh -c 'sha256sum /data/b; cat /etc/motd'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$(sha256sum "$TEST_TMP/s1/data/b" | cut -d' ' -f1)  /data/b" ]
	[ "${lines[1]}" = "motd of layer 2" ]
}

@test "a registry serving corrupted chunks: reads fail with EIO, never wrong bytes, nothing bad cached" {
	build_small_image
	start_bad_proxy corrupt
	run rpull_lazy "$BADREG/test/small:esgz"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c 'mounted lazily' "$TEST_TMP/strata.log")" -eq 2 ]
	mount_lazy_snapshot bad "$(lazy_top_chain)" "$TEST_TMP/mnt"
	run cat "$TEST_TMP/mnt/data/b"
	[ "$status" -eq 1 ]
	[[ "$output" == *"Input/output error"* ]]
	[ -s "$TEST_TMP/corrupted" ]
	grep -E 'level=warning msg="lazy layer [0-9]+: chunk at offset 0 of [^ ]*data/b[^ ]* failed verification \((chunkDigest mismatch|corrupt gzip)\): not served"' \
		"$TEST_TMP/strata.log"
	# the bad bytes were not cached: once the registry is honest the same
	# file reads correctly
	echo pass >"$TEST_TMP/proxy-mode"
	[ "$(sha256sum <"$TEST_TMP/mnt/data/b" | cut -d' ' -f1)" = \
		"$(sha256sum "$TEST_TMP/s1/data/b" | cut -d' ' -f1)" ]
	umount "$TEST_TMP/mnt"
}

# restart_strata SIGNAL: stop the daemon with SIGNAL, start it again.
restart_strata() {
	kill "-$1" "$STRATA_PID"
	wait_for 10 bash -c "! kill -0 $STRATA_PID"
	cat "$TEST_TMP/strata.log" >>"$TEST_TMP/strata.log.old"
	STRATA_LOG_LEVEL=debug start_strata
}

restart_between_runs() {
	build_small_image
	run rpull_lazy "$ESGZ"
	[ "$status" -eq 0 ]
	run ctr_ run --rm --snapshotter strata "$ESGZ" first /bin/sh -c 'cat /etc/motd; wc -c </data/a'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "motd of layer 2" ]
	ctr_ snapshots --snapshotter strata ls | LC_ALL=C sort >"$TEST_TMP/snaps.before"

	restart_strata "$1"
	wait_for 20 grep -q "remote snapshots: 2 remounted, 0 failed" "$TEST_TMP/strata.log"
	[ "$(lazy_fuse_mounts "$STRATA_ROOT_DIR" | wc -l)" -eq 2 ]
	# containerd reconnects by itself; a file read before (cached) and one
	# never read (fetched now) both serve
	run wait_for 20 ctr_ snapshots --snapshotter strata ls
	run ctr_ run --rm --snapshotter strata "$ESGZ" second \
		/bin/sh -c 'cat /etc/motd; sha256sum /data/a /data/b'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "motd of layer 2" ]
	[ "${lines[1]}" = "$(sha256sum "$TEST_TMP/s1/data/a" | cut -d' ' -f1)  /data/a" ]
	[ "${lines[2]}" = "$(sha256sum "$TEST_TMP/s1/data/b" | cut -d' ' -f1)  /data/b" ]
	ctr_ snapshots --snapshotter strata ls | LC_ALL=C sort >"$TEST_TMP/snaps.after"
	diff -u "$TEST_TMP/snaps.before" "$TEST_TMP/snaps.after"
}

@test "daemon restart (SIGTERM) between two ctr runs of a lazy image: no snapshot lost" {
	restart_between_runs TERM
}

@test "daemon crash (SIGKILL) between two ctr runs of a lazy image: FUSE mounts resumed, no snapshot lost" {
	restart_between_runs KILL
}

# --- running containers survive a daemon restart -------------------------

# An image whose layer 1 has 80 files of 150 kB (each its own chunk, too big
# to be fetched along with a neighbour), so every file a container reads for
# the first time is fetched from the registry by the daemon serving it then.
build_many_files_image() {
	local l1=$TEST_TMP/m1 l2=$TEST_TMP/m2
	mkdir -p "$l1/bin" "$l1/etc" "$l1/data" "$l2/etc"
	cp /bin/busybox "$l1/bin/busybox"
	for a in sh cat sha256sum; do ln -s busybox "$l1/bin/$a"; done
	for i in $(seq 80); do head -c 150000 /dev/urandom >"$l1/data/f$i"; done
	echo "motd of layer 2" >"$l2/etc/motd"
	mkimage_exact "$TEST_TMP/oci" latest "$l1" "$l2"
	push_estargz "$TEST_TMP/oci" test/many
	ESGZ=$REGISTRY/test/many:esgz
	(cd "$l1" && sha256sum data/f*) | sed 's|  data/|  /data/|' >"$TEST_TMP/sums.expected"
}

# The reader: f1..f10, then f11..f60 round and round (a request may be in
# flight when the daemon goes), and after /ctl/go f61..f80, never read
# before; any failed read ends it with a non-zero status.
READER_SCRIPT='
set -e
for i in $(busybox seq 1 10); do sha256sum /data/f$i >>/ctl/sums; done
: >/ctl/phase1
i=11
while [ ! -e /ctl/go ]; do
	sha256sum /data/f$i >>/ctl/sums
	i=$((i + 1)); [ $i -le 60 ] || i=11
	busybox usleep 20000
done
for i in $(busybox seq 61 80); do sha256sum /data/f$i >>/ctl/sums; done
cat /etc/motd >>/ctl/sums
echo ok >/ctl/status
'

# restart_under_container SIGNAL: a container reads the lazy image in a
# loop while the daemon is stopped with SIGNAL and started again; it keeps
# reading correct bytes and exits 0, no snapshot is lost, and once it is
# removed a clean stop leaves no FUSE mount, holder or socket behind.
restart_under_container() {
	local holder sig=$1
	build_many_files_image
	run rpull_lazy "$ESGZ"
	[ "$status" -eq 0 ]
	ctr_ snapshots --snapshotter strata ls | LC_ALL=C sort >"$TEST_TMP/snaps.before"
	mkdir -p "$TEST_TMP/ctl"
	READER=reader
	ctr_ run -d --snapshotter strata \
		--mount "type=bind,src=$TEST_TMP/ctl,dst=/ctl,options=rbind:rw" \
		"$ESGZ" "$READER" /bin/sh -c "$READER_SCRIPT"
	wait_for 30 test -e "$TEST_TMP/ctl/phase1"
	# the holder keeps both layers' connections
	holder=$(cat "$STRATA_ROOT_DIR/run/fuse-fds.pid")
	kill -0 "$holder"
	[ "$(ls -l "/proc/$holder/fd" | grep -c ' -> /dev/fuse$')" -eq 2 ]

	restart_strata "$sig"
	wait_for 20 grep -q "remote snapshots: 2 remounted, 0 failed" "$TEST_TMP/strata.log"
	[ "$(grep -c 'resumed on its FUSE connection kept across the restart' "$TEST_TMP/strata.log")" -eq 2 ]
	if [ "$sig" = TERM ]; then
		[ "$(grep -c 'in use: left mounted' "$TEST_TMP/strata.log.old")" -eq 2 ]
	fi
	[ "$(lazy_fuse_mounts "$STRATA_ROOT_DIR" | wc -l)" -eq 2 ]
	touch "$TEST_TMP/ctl/go"
	wait_for 60 test -e "$TEST_TMP/ctl/status" || {
		cat "$TEST_TMP/ctl/sums" "$TEST_TMP/strata.log"
		false
	}
	[ "$(cat "$TEST_TMP/ctl/status")" = ok ]
	# every line is a correct sum, and f61..f80 (fetched from the registry
	# by the new daemon) were read
	tail -n1 "$TEST_TMP/ctl/sums" | grep -qx "motd of layer 2"
	sed '$d' "$TEST_TMP/ctl/sums" | LC_ALL=C sort -u >"$TEST_TMP/sums.got"
	LC_ALL=C sort "$TEST_TMP/sums.expected" >"$TEST_TMP/sums.want"
	[ -z "$(LC_ALL=C comm -13 "$TEST_TMP/sums.want" "$TEST_TMP/sums.got")" ]
	for i in $(seq 1 10) $(seq 61 80); do grep -q " /data/f$i\$" "$TEST_TMP/sums.got"; done
	# the new daemon fetched them (its background fetch waits 30 s)
	grep -q 'lazy layer [0-9]*: fetched [0-9]* bytes' "$TEST_TMP/strata.log"
	echo "reads before the go: $(($(wc -l <"$TEST_TMP/ctl/sums") - 21))" >&3
	! grep -q 'failed verification' "$TEST_TMP/strata.log"
	# the task exited 0
	wait_for 10 bash -c "ctr --address $CONTAINERD_SOCK tasks ls | grep -q '^$READER .*STOPPED'"
	run ctr_ tasks rm "$READER"
	echo "$output"
	[ "$status" -eq 0 ]
	ctr_ containers rm "$READER"
	READER=
	# containerd's connection to the proxy plugin may still be in its
	# reconnect back-off from the crash (RPCs fail fast with the old dial
	# error until it retries)
	wait_for 10 ctr_ snapshots --snapshotter strata ls
	ctr_ snapshots --snapshotter strata ls | LC_ALL=C sort >"$TEST_TMP/snaps.after"
	diff -u "$TEST_TMP/snaps.before" "$TEST_TMP/snaps.after"

	# nothing in use: a stop unmounts, the holder exits, its socket goes
	kill -TERM "$STRATA_PID"
	wait_for 10 bash -c "! kill -0 $STRATA_PID"
	[ -z "$(lazy_fuse_mounts "$STRATA_ROOT_DIR")" ]
	holder=$(cat "$STRATA_ROOT_DIR/run/fuse-fds.pid" 2>/dev/null || echo "$holder")
	wait_for 10 bash -c "! kill -0 $holder"
	[ ! -e "$STRATA_ROOT_DIR/run/fuse-fds.sock" ]
	[ ! -e "$STRATA_ROOT_DIR/run/fuse-fds.pid" ]
}

@test "a running container keeps reading its lazy layers across a daemon restart (SIGTERM)" {
	restart_under_container TERM
}

@test "a running container keeps reading its lazy layers across a daemon crash (SIGKILL)" {
	restart_under_container KILL
}

@test "a read in flight when the daemon is killed is answered by the next daemon" {
	# FUSE_NOTIFY_RESEND came with Linux 6.9
	local v
	v=$(uname -r | awk -F'[.-]' '{ print $1 * 1000 + $2 }')
	[ "$v" -ge 6009 ] || skip "Linux $(uname -r) cannot resend FUSE requests"
	build_many_files_image
	start_bad_proxy pass
	run rpull_lazy "$BADREG/test/many:esgz"
	[ "$status" -eq 0 ]
	mount_lazy_snapshot inflight "$(lazy_top_chain)" "$TEST_TMP/mnt"
	want=$(grep ' /data/f2$' "$TEST_TMP/sums.expected" | cut -d' ' -f1)
	sha256sum "$TEST_TMP/mnt/data/f1" >/dev/null

	# the daemon has read the FUSE request and waits for the registry
	: >"$TEST_TMP/slow"
	echo slow >"$TEST_TMP/proxy-mode"
	(timeout 60 sha256sum <"$TEST_TMP/mnt/data/f2" >"$TEST_TMP/f2.sum" 2>&1
		echo $? >"$TEST_TMP/f2.rc") &
	wait_for 20 test -s "$TEST_TMP/slow"
	echo pass >"$TEST_TMP/proxy-mode"
	restart_strata KILL
	wait_for 20 grep -q "remote snapshots: 2 remounted, 0 failed" "$TEST_TMP/strata.log"
	grep -q 'resumed on its FUSE connection kept across the restart' "$TEST_TMP/strata.log"
	# the kernel resent it to the new daemon (FUSE_NOTIFY_RESEND)
	wait_for 30 test -s "$TEST_TMP/f2.rc"
	cat "$TEST_TMP/f2.sum"
	[ "$(cat "$TEST_TMP/f2.rc")" = 0 ]
	[ "$(cut -d' ' -f1 "$TEST_TMP/f2.sum")" = "$want" ]
	umount "$TEST_TMP/mnt"
	ctr_ snapshots --snapshotter strata rm inflight
}

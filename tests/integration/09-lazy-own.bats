#!/usr/bin/env bats
# Lazy pulling on Strata's own path: `strata pull` of an eStargz image made
# by an independent producer (Debian's ctr-remote) mounts its layers through
# FUSE instead of downloading them; `strata snapshots`, the Prometheus
# endpoint and `strata prune --cache` show and manage what was fetched.

load helpers

# Two layers: busybox, files of several kinds and owners, a 16 MiB file
# nobody reads; then a change, a new file and a whiteout of a directory.
build_images() {
	R1="$TEST_TMP/r1" R2="$TEST_TMP/r2"
	mkdir -p "$R1/bin" "$R1/etc" "$R1/data" "$R1/dir/sub" "$R1/dir/keep" "$R1/dir/gone" "$R2/etc" "$R2/dir"
	cp /bin/busybox "$R1/bin/busybox"
	for a in sh ls cat echo true sleep; do ln -sf busybox "$R1/bin/$a"; done
	echo "hello from a lazy layer" >"$R1/etc/motd"
	ln "$R1/etc/motd" "$R1/etc/motd.hard"
	ln -s ../etc/motd "$R1/dir/link"
	printf 'owned\n' >"$R1/dir/sub/owned"
	chown 1234:5678 "$R1/dir/sub/owned"
	chmod 0640 "$R1/dir/sub/owned"
	printf 'exec\n' >"$R1/dir/keep/setuid"
	chmod 4755 "$R1/dir/keep/setuid"
	chmod 0750 "$R1/dir/keep"
	: >"$R1/dir/empty"
	echo "whited out" >"$R1/dir/gone/file"
	seq 1 200000 >"$R1/data/numbers"
	head -c $((16 << 20)) /dev/urandom >"$R1/data/unread"
	echo "changed in layer 2" >"$R2/etc/motd.new"
	echo "new in layer 2" >"$R2/etc/new"
	touch "$R2/dir/.wh.gone"
	MKIMAGE_KEEP_OWNERS=1 bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$R1" "$R2"
}

strata_() { "$STRATA_BIN" --root "$STRATA_ROOT_DIR" --address "$STRATA_SOCK" "$@"; }

# FUSE mounts under the Strata root.
fuse_mounts() {
	awk -v d="$STRATA_ROOT_DIR/snapshots/" 'index($5, d) == 1 && $0 ~ / - fuse/ { print $5 }' \
		/proc/self/mountinfo
}

# top_chain NAME: "@strata/<top chain ID>" of a pulled image.
top_chain() {
	strata_ images --json | jq -r --arg n "$1" '.[] | select(.name == $n) | "@strata/" + .chain_ids[-1]'
}

# tree_listing DIR: one line per path: type+mode, owner, size, sha256 or
# link target (what must be equal between a lazy and an unpacked image).
tree_listing() {
	python3 - "$1" <<'PY'
import hashlib, os, stat, sys
root = sys.argv[1]
for dirpath, dirs, files in os.walk(root):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(dirpath, name)
        st = os.lstat(p)
        rel = os.path.relpath(p, root)
        extra = ""
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                extra = hashlib.sha256(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = "-> " + os.readlink(p)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            extra = "dev %d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        print("%s %o %d:%d %d %s" % (rel, st.st_mode, st.st_uid, st.st_gid, size, extra))
PY
}

# mount_image NAME DIR KEY: a read-only view of the image's top layer on DIR.
mount_image() {
	mkdir -p "$2"
	strata_ snapshots mount "$3" "$(top_chain "$1")" "$2"
}

stop_strata() {
	kill -TERM "$STRATA_PID"
	wait_for 20 bash -c "! kill -0 $STRATA_PID"
}

start_strata_metrics() {
	METRICS_PORT=$(free_port)
	STRATA_ROOT_DIR="$TEST_TMP/strata-root"
	STRATA_SOCK="$TEST_TMP/run/strata.sock"
	"$STRATA_BIN" --root "$STRATA_ROOT_DIR" --address "$STRATA_SOCK" --log-level "${STRATA_LOG_LEVEL:-info}" \
		serve --metrics-address "127.0.0.1:$METRICS_PORT" >>"$TEST_TMP/strata.log" 2>&1 &
	STRATA_PID=$!
	track_pid "$STRATA_PID"
	export STRATA_ROOT_DIR STRATA_SOCK STRATA_PID
	wait_for 10 test -S "$STRATA_SOCK" || {
		cat "$TEST_TMP/strata.log" >&2
		return 1
	}
}

setup() {
	common_setup
	start_registry
	build_images
	push_image "$TEST_TMP/oci" latest test/own:plain
	PLAIN="$REGISTRY/test/own:plain"
	ESGZ="$REGISTRY/test/own:esgz"
	# convert with ctr-remote through containerd's own snapshotter, push
	start_containerd
	ctr_ images pull --plain-http "$PLAIN" >/dev/null
	ctr-remote --address "$CONTAINERD_SOCK" images convert --estargz --oci "$PLAIN" "$ESGZ" >/dev/null
	ctr_ images push --plain-http "$ESGZ" >/dev/null
	kill -TERM "$CONTAINERD_PID"
	wait_for 20 bash -c "! kill -0 $CONTAINERD_PID"
	ESGZ_SIZE=$(curl -s "http://$REGISTRY/v2/test/own/manifests/esgz" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' |
		python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
	STRATA_LOG_LEVEL=debug start_strata_metrics
}
teardown() { common_teardown; }

@test "strata pull mounts eStargz layers lazily: few bytes fetched, every file equals the unpacked original" {
	run strata_ pull "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c 'lazy (fetched on demand)')" -eq 2 ]
	[ "$(echo "$output" | grep -c 'mounted lazily (eStargz)')" -eq 2 ]
	[ "$(fuse_mounts | wc -l)" -eq 2 ]
	# no layer blob stored, manifest and config are
	run strata_ images inspect "$ESGZ"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | jq -r '.image.labels["strata.io/lazy.layers"]' | tr ',' '\n' | wc -l)" -eq 2 ]
	for l in $(echo "$output" | jq -r '.manifest.layers[].digest'); do
		[ ! -e "$STRATA_ROOT_DIR/content/blobs/sha256/${l#sha256:}" ]
	done

	top=$(top_chain "$ESGZ")
	run strata_ snapshots ls
	echo "$output"
	[ "$(echo "$output" | grep -c ' lazy ')" -eq 2 ]
	run strata_ snapshots info "$top"
	echo "$output"
	[ "$(echo "$output" | jq -r .remote)" = true ]
	[ "$(echo "$output" | jq -r .lazy.bytes_fetched)" -gt 0 ]
	total=0
	for k in $(strata_ snapshots ls --json | jq -r '.[] | select(.lazy) | .name'); do
		run strata_ snapshots info "$k"
		fetched=$(echo "$output" | jq -r .lazy.bytes_fetched)
		echo "after pull: $k fetched $fetched of $(echo "$output" | jq -r .lazy.blob_size) bytes" >&3
		total=$((total + fetched))
	done
	echo "after pull: $total of $ESGZ_SIZE bytes fetched" >&3
	[ "$total" -lt $((ESGZ_SIZE / 20)) ]

	# read one small file: far below the image's size
	mount_image "$ESGZ" "$TEST_TMP/lazy" "@strata/view/lazy"
	[ "$(cat "$TEST_TMP/lazy/etc/motd")" = "hello from a lazy layer" ]
	total=0
	for k in $(strata_ snapshots ls --json | jq -r '.[] | select(.lazy) | .name'); do
		total=$((total + $(strata_ snapshots info "$k" | jq -r .lazy.bytes_fetched)))
	done
	echo "after reading /etc/motd: $total of $ESGZ_SIZE bytes fetched" >&3
	[ "$total" -lt $((ESGZ_SIZE / 10)) ]

	# the Prometheus endpoint has the same counters
	run curl -sf "http://127.0.0.1:$METRICS_PORT/metrics"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q '^# TYPE strata_lazy_bytes_fetched_total counter$'
	echo "$output" | grep -q "^strata_lazy_bytes_fetched_total{snapshot=\"$top\"} [1-9]"
	echo "$output" | grep -q '^strata_lazy_layers 2$'
	echo "$output" | grep -q '^strata_images 1$'
	echo "$output" | grep -q '^strata_lazy_cache_misses_total{snapshot="@strata/sha256:'
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/nope")" = 404 ]

	# every file equals the unpacked plain image
	run strata_ pull --no-lazy "$PLAIN"
	[ "$status" -eq 0 ]
	mount_image "$PLAIN" "$TEST_TMP/plain" "@strata/view/plain"
	tree_listing "$TEST_TMP/plain" >"$TEST_TMP/plain.list"
	tree_listing "$TEST_TMP/lazy" >"$TEST_TMP/lazy.list"
	wc -l "$TEST_TMP/plain.list"
	grep -q '^dir/sub/owned 100640 1234:5678 6 ' "$TEST_TMP/lazy.list"
	grep -q '^dir/keep/setuid 104755 ' "$TEST_TMP/lazy.list"
	grep -q '^dir/link 120777 0:0 0 -> ../etc/motd$' "$TEST_TMP/lazy.list"
	[ -z "$(grep '^dir/gone' "$TEST_TMP/lazy.list")" ]
	diff "$TEST_TMP/plain.list" "$TEST_TMP/lazy.list"
	for k in $(strata_ snapshots ls --json | jq -r '.[] | select(.lazy) | .name'); do
		run strata_ snapshots info "$k"
		echo "after reading every file: $k $(echo "$output" | jq -c .lazy)" >&3
		[ "$(echo "$output" | jq -r .lazy.verify_failures)" = 0 ]
	done

	umount "$TEST_TMP/lazy" "$TEST_TMP/plain"
	run strata_ snapshots rm @strata/view/lazy @strata/view/plain "$top"
	echo "$output"
	[ "$status" -eq 1 ] # the image's chain is refused
	echo "$output" | grep -q "an image uses it"
	[ "$(fuse_mounts | wc -l)" -eq 2 ]

	# rmi + prune: the lazy layers go, and their FUSE mounts with them
	strata_ rmi "$ESGZ"
	run strata_ prune
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "removed snapshot $top"
	[ -z "$(fuse_mounts)" ]
}

@test "--no-lazy unpacks every layer of an eStargz image: no FUSE mount" {
	run strata_ pull --no-lazy "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$(echo "$output" | grep lazy)" ]
	[ "$(echo "$output" | grep -c ': done')" -ge 2 ]
	[ -z "$(fuse_mounts)" ]
	run strata_ images inspect "$ESGZ"
	[ "$(echo "$output" | jq -r '.image.labels["strata.io/lazy.layers"]')" = null ]
	mount_image "$ESGZ" "$TEST_TMP/m" "@strata/view/m"
	[ "$(cat "$TEST_TMP/m/etc/new")" = "new in layer 2" ]
	[ ! -e "$TEST_TMP/m/dir/gone" ]
	[ -z "$(fuse_mounts)" ]
}

@test "a non-eStargz image pulls in full with the reason; --lazy on it fails with the reason" {
	run strata_ pull --lazy "$PLAIN"
	echo "$output"
	[ "$status" -ne 0 ]
	echo "$output" | grep -q "cannot be mounted lazily: no containerd.io/snapshot/stargz/toc.digest annotation: not eStargz"
	run strata_ images
	[ -z "$(echo "$output" | grep test/own)" ]

	run strata_ pull "$PLAIN"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c 'is not eStargz (no containerd.io/snapshot/stargz/toc.digest annotation): pulling it in full')" -eq 2 ]
	[ -z "$(fuse_mounts)" ]
	mount_image "$PLAIN" "$TEST_TMP/m" "@strata/view/m"
	[ "$(cat "$TEST_TMP/m/etc/motd")" = "hello from a lazy layer" ]
}

@test "a registry ignoring Range: the snapshotter falls back, the pull says why and unpacks" {
	# a proxy that answers every request with 200 and the whole body
	port=$(free_port)
	cat >"$TEST_TMP/norange.py" <<'PY'
import http.server, sys, urllib.request
up = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def go(self, body):
        req = urllib.request.Request("http://" + up + self.path, method=self.command)
        for k in ("Accept", "Authorization"):
            if self.headers.get(k):
                req.add_header(k, self.headers[k])
        try:
            r = urllib.request.urlopen(req)
        except urllib.error.HTTPError as e:
            r = e
        data = r.read() if self.command != "HEAD" else b""
        self.send_response(r.status)
        for k, v in r.headers.items():
            if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-range"):
                self.send_header(k, v)
        self.send_header("Content-Length", r.headers.get("Content-Length") if self.command == "HEAD" else str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)
    def do_GET(self): self.go(True)
    def do_HEAD(self): self.go(False)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
	python3 "$TEST_TMP/norange.py" "$port" "$REGISTRY" &
	track_pid $!
	wait_for 10 curl -so /dev/null "http://127.0.0.1:$port/v2/"
	run strata_ pull "127.0.0.1:$port/test/own:esgz"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "cannot be mounted lazily: the registry ignores Range requests: pulling it in full"
	[ -z "$(fuse_mounts)" ]
	run strata_ pull --lazy "127.0.0.1:$port/test/own:esgz"
	[ "$status" -eq 0 ] # every layer exists by now
}

@test "prune --cache shrinks the chunk cache; after a restart the lazy image still reads" {
	run strata_ pull "$ESGZ"
	[ "$status" -eq 0 ]
	mount_image "$ESGZ" "$TEST_TMP/m" "@strata/view/m"
	sha=$(sha256sum <"$TEST_TMP/m/data/numbers")
	cmp "$TEST_TMP/m/bin/busybox" /bin/busybox
	before=$(du -sb "$STRATA_ROOT_DIR/cache" | cut -f1)
	echo "chunk cache after reads: $before bytes" >&3
	[ "$before" -gt $((1 << 20)) ]
	umount "$TEST_TMP/m"
	strata_ snapshots rm @strata/view/m

	run strata_ prune --cache
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q '^chunk cache: '
	after=$(du -sb "$STRATA_ROOT_DIR/cache" | cut -f1)
	echo "chunk cache after prune --cache: $after bytes" >&3
	[ "$after" -lt $((before / 4)) ]
	# the image is whole: its lazy snapshots were not pruned
	[ "$(fuse_mounts | wc -l)" -eq 2 ]

	stop_strata
	[ -z "$(fuse_mounts)" ]
	start_strata_metrics
	wait_for 10 grep -q "remote snapshots: 2 remounted" "$TEST_TMP/strata.log"
	[ "$(fuse_mounts | wc -l)" -eq 2 ]
	mount_image "$ESGZ" "$TEST_TMP/m2" "@strata/view/m2"
	[ "$(sha256sum <"$TEST_TMP/m2/data/numbers")" = "$sha" ]
	cmp "$TEST_TMP/m2/bin/busybox" /bin/busybox
	[ "$(cat "$TEST_TMP/m2/etc/new")" = "new in layer 2" ]
	# pulling again finds every layer
	run strata_ pull "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c 'already exists')" -eq 2 ]
	[ ! -e "$STRATA_ROOT_DIR/content/ingest" ] || [ -z "$(ls "$STRATA_ROOT_DIR/content/ingest")" ]
}

@test "pull --user: lazy layers of a private registry read with the pull's credentials, in memory only" {
	command -v htpasswd >/dev/null || skip "htpasswd missing (apache2-utils)"
	local pass='L4zy-S3cret-Quux' priv
	htpasswd -Bbn alice "$pass" >"$TEST_TMP/htpasswd"
	start_registry_named private "$TEST_TMP/htpasswd"
	priv="$NAMED_REGISTRY/test/private:esgz"
	skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
		--dest-creds "alice:$pass" "docker://$ESGZ" "docker://$priv"
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NAMED_REGISTRY/v2/test/private/tags/list")" = 401 ]

	# the daemon has no credentials of its own for it (DOCKER_CONFIG of the
	# test environment): only --user
	run strata_ pull --user "alice:$pass" "$priv"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c 'mounted lazily (eStargz)')" -eq 2 ]
	! echo "$output" | grep -q 'pulling it in full'
	[ "$(fuse_mounts | wc -l)" -eq 2 ]
	grep -q "lazy layers of $NAMED_REGISTRY/test/private read with the credentials" "$TEST_TMP/strata.log"
	mount_image "$priv" "$TEST_TMP/p" "@strata/view/p"
	[ "$(cat "$TEST_TMP/p/etc/motd")" = "hello from a lazy layer" ]
	cmp "$TEST_TMP/p/bin/busybox" /bin/busybox
	cmp "$TEST_TMP/p/data/unread" "$R1/data/unread"
	umount "$TEST_TMP/p"
	strata_ snapshots rm @strata/view/p
	# on disk only a flag that the pull's credentials were used
	for k in $(strata_ snapshots ls --json | jq -r '.[] | select(.lazy) | .name'); do
		[ "$(strata_ snapshots info "$k" | jq -r .lazy.pull_credentials)" = true ]
	done
	grep -l '^pull_credentials=1$' "$STRATA_ROOT_DIR"/snapshots/*/remote | wc -l | grep -qx 2
	! grep -rqF "$pass" "$STRATA_ROOT_DIR/snapshots" "$STRATA_ROOT_DIR/meta" "$TEST_TMP/strata.log"

	# after a restart the credentials are gone: the daemon says so, and the
	# layers answer Unavailable (the registry refuses the daemon's own)
	stop_strata
	STRATA_LOG_LEVEL=debug start_strata_metrics
	wait_for 10 grep -q "remote snapshots: 2 remounted" "$TEST_TMP/strata.log"
	[ "$(grep -c 'mounted with the credentials or transport given to `strata pull`, which are kept in memory only' "$TEST_TMP/strata.log")" -eq 2 ]
	run mount_image "$priv" "$TEST_TMP/p2" "@strata/view/p2"
	echo "$output"
	[ "$status" -ne 0 ]
	echo "$output" | grep -qi unavailable
	# pulling again with them hands them back: every layer exists already
	run strata_ pull --user "alice:$pass" "$priv"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c 'already exists')" -eq 2 ]
	mount_image "$priv" "$TEST_TMP/p2" "@strata/view/p2"
	cmp "$TEST_TMP/p2/data/numbers" "$R1/data/numbers"
	umount "$TEST_TMP/p2"
}

# lazy_field SNAPSHOT FIELD: one field of `strata snapshots info`'s lazy stats.
lazy_field() {
	strata_ snapshots info "$1" | jq -r ".lazy.$2"
}

@test "per-layer prefetch and background fetch state in snapshots info and /metrics" {
	local img="$REGISTRY/test/own:pf" bottom m i
	printf 'etc/motd\nbin/busybox\n' >"$TEST_TMP/prefetch"
	run "$STRATA_BIN" convert --estargz --prefetch-files "$TEST_TMP/prefetch" "$PLAIN" "$img"
	echo "$output"
	[ "$status" -eq 0 ]
	run strata_ pull "$img"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | grep -c 'mounted lazily (eStargz)')" -eq 2 ]
	bottom=$(strata_ images --json | jq -r --arg n "$img" '.[] | select(.name == $n) | "@strata/" + .chain_ids[0]')
	# the landmark range (busybox and motd) is fetched right after mount
	for i in $(seq 100); do
		[ "$(lazy_field "$bottom" prefetch)" = done ] && break
		sleep 0.1
	done
	strata_ snapshots info "$bottom" | jq -c .lazy
	[ "$(lazy_field "$bottom" prefetch)" = done ]
	[ "$(lazy_field "$bottom" prefetch_total)" -gt $((512 << 10)) ]
	[ "$(lazy_field "$bottom" prefetch_bytes)" -gt $((512 << 10)) ]
	# the rest waits 30 s, then is fetched in the background
	[ "$(lazy_field "$bottom" background)" = pending ]
	[ "$(lazy_field "$bottom" background_done)" -eq 0 ]
	[ "$(lazy_field "$bottom" background_total)" -gt $((16 << 20)) ]
	[ "$(lazy_field "$bottom" pull_credentials)" = false ]
	m=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics")
	echo "$m" | grep '^strata_lazy_prefetch\|^strata_lazy_background'
	echo "$m" | grep -q '^# TYPE strata_lazy_prefetch_state gauge$'
	echo "$m" | grep -qx "strata_lazy_prefetch_state{snapshot=\"$bottom\",state=\"done\"} 1"
	echo "$m" | grep -qx "strata_lazy_prefetch_state{snapshot=\"$bottom\",state=\"running\"} 0"
	echo "$m" | grep -qx "strata_lazy_background_state{snapshot=\"$bottom\",state=\"pending\"} 1"
	echo "$m" | grep -qx "strata_lazy_prefetch_fetched_bytes{snapshot=\"$bottom\"} $(lazy_field "$bottom" prefetch_bytes)"
	echo "$m" | grep -qx "strata_lazy_background_done_bytes{snapshot=\"$bottom\"} 0"
	[ "$(echo "$m" | grep -c '^strata_lazy_background_state{')" -eq 10 ]
	# the same counters as before alongside
	echo "$m" | grep -q "^strata_lazy_cache_hits_total{snapshot=\"$bottom\"} "

	for i in $(seq 600); do
		[ "$(lazy_field "$bottom" background)" = done ] && break
		sleep 0.1
	done
	strata_ snapshots info "$bottom" | jq -c .lazy
	[ "$(lazy_field "$bottom" background)" = done ]
	[ "$(lazy_field "$bottom" background_done)" = "$(lazy_field "$bottom" background_total)" ]
	m=$(curl -sf "http://127.0.0.1:$METRICS_PORT/metrics")
	echo "$m" | grep -qx "strata_lazy_background_state{snapshot=\"$bottom\",state=\"done\"} 1"
	echo "$m" | grep -qx "strata_lazy_background_done_bytes{snapshot=\"$bottom\"} $(lazy_field "$bottom" background_total)"
	# everything is local now: bytes fetched cover the whole blob
	[ "$(lazy_field "$bottom" bytes_fetched)" -ge "$(lazy_field "$bottom" background_total)" ]
}

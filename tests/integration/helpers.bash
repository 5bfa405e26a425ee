# Shared helpers for Strata's bats integration tests.
#
# Every test gets its own temp dir ($TEST_TMP); services a test starts
# (registry, containerd, strata) are recorded and stopped in teardown, and any
# mount left under $TEST_TMP is unmounted, even when the test failed.
#
# Strict mode (STRATA_TEST_STRICT=1, set by CI): a skipped test fails.

STRATA_BIN=${STRATA_BIN:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)/build/cli/strata}
HELPERS_DIR="$BATS_TEST_DIRNAME"

if [ "${STRATA_TEST_STRICT:-0}" = 1 ]; then
	# bats implements skip as a function: in strict mode a skip is a failure.
	skip() {
		echo "skipped in strict mode: ${1:-no reason given}" >&2
		return 1
	}
fi

common_setup() {
	TEST_TMP=$(mktemp -d "${BATS_TMPDIR:-/tmp}/strata-it.XXXXXX")
	export TEST_TMP
	: >"$TEST_TMP/pids"
}

# Kill everything we started, unmount whatever is left, remove the temp dir.
common_teardown() {
	[ -n "${TEST_TMP:-}" ] || return 0
	if [ -f "$TEST_TMP/pids" ]; then
		tac "$TEST_TMP/pids" | while read -r pid; do
			kill -TERM "$pid" 2>/dev/null || true
		done
		for _ in $(seq 50); do
			alive=0
			while read -r pid; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$TEST_TMP/pids"
			[ "$alive" = 0 ] && break
			sleep 0.1
		done
		while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done <"$TEST_TMP/pids"
	fi
	kill_fd_holders_under "$TEST_TMP"
	unmount_under "$TEST_TMP"
	rm -rf "$TEST_TMP"
}

# Unmount every mount below a directory, deepest first.
unmount_under() {
	local dir
	dir=$(realpath "$1")
	awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

# A FUSE fd holder (snapshotter/lazy-handover.c) outlives its daemon on
# purpose; after a failed test it would keep lazy layers mounted. Found by
# its open fds, not by walking DIR: a lookup inside a held FUSE mount with no
# daemon blocks until one comes back.
kill_fd_holders_under() {
	local dir pid fd
	dir=$(realpath "$1")
	for pid in $(pgrep -f -- '--fuse-fd-holder'); do
		for fd in /proc/"$pid"/fd/*; do
			case $(readlink "$fd" 2>/dev/null) in
			"$dir"/*)
				kill -KILL "$pid" 2>/dev/null || true
				break
				;;
			esac
		done
	done
}

track_pid() { echo "$1" >>"$TEST_TMP/pids"; }

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS CMD...: retry CMD every 0.1 s until it succeeds.
wait_for() {
	local secs=$1
	shift
	local n=$((secs * 10))
	while [ "$n" -gt 0 ]; do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
		n=$((n - 1))
	done
	echo "timed out after ${secs}s waiting for: $*" >&2
	return 1
}

# start_registry [htpasswd-file]: Debian's docker-registry on 127.0.0.1:<free
# port>, storage in $TEST_TMP. Sets REGISTRY=127.0.0.1:PORT.
start_registry() {
	command -v docker-registry >/dev/null || {
		echo "docker-registry missing: run scripts/install-deps.sh" >&2
		return 1
	}
	local port dir auth=""
	port=$(free_port)
	dir="$TEST_TMP/registry"
	mkdir -p "$dir/data"
	if [ -n "${1:-}" ]; then
		auth="auth:
  htpasswd:
    realm: strata-test
    path: $1"
	fi
	cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
CFG
	docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
	track_pid $!
	REGISTRY=127.0.0.1:$port
	export REGISTRY
	wait_for 20 curl -so /dev/null "http://$REGISTRY/v2/" || {
		cat "$dir/log" >&2
		return 1
	}
}

# start_containerd [TOP-LEVEL TOML] [TABLES TOML]: Debian's containerd with a
# private config (top-level keys such as disabled_plugins must come before the
# first table, hence two fragments);
# root, state and socket under $TEST_TMP. Sets CONTAINERD_SOCK.
start_containerd() {
	local dir="$TEST_TMP/containerd"
	mkdir -p "$dir/root" "$dir/state"
	CONTAINERD_SOCK="$dir/containerd.sock"
	cat >"$dir/config.toml" <<CFG
version = 2
${1:-}
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  level = "info"
[metrics]
  address = ""
${2:-}
CFG
	containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
	CONTAINERD_PID=$!
	track_pid "$CONTAINERD_PID"
	export CONTAINERD_SOCK CONTAINERD_PID
	wait_for 30 ctr --address "$CONTAINERD_SOCK" version || {
		tail -50 "$dir/log" >&2
		return 1
	}
}

ctr_() { ctr --address "$CONTAINERD_SOCK" "$@"; }

# build_busybox_image DIR [TAG]: an OCI layout with one busybox-static layer.
build_busybox_image() {
	local out=$1 tag=${2:-latest} rootfs="$TEST_TMP/rootfs-busybox"
	mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp"
	cp /bin/busybox "$rootfs/bin/busybox"
	for a in sh ls cat echo true false sleep id env; do ln -sf busybox "$rootfs/bin/$a"; done
	echo "root:x:0:0:root:/root:/bin/sh" >"$rootfs/etc/passwd"
	echo "root:x:0:" >"$rootfs/etc/group"
	echo "hello from strata" >"$rootfs/etc/motd"
	bash "$HELPERS_DIR/lib/mkimage.sh" "$out" "$tag" "$rootfs"
}

# push_image LAYOUT TAG NAME: copy an OCI layout into the test registry.
push_image() {
	skopeo copy --quiet --dest-tls-verify=false "oci:$1:$2" "docker://$REGISTRY/$3"
}

# start_strata: `strata serve` with root and socket under $TEST_TMP.
# Sets STRATA_ROOT_DIR, STRATA_SOCK and STRATA_PID.
start_strata() {
	STRATA_ROOT_DIR="$TEST_TMP/strata-root"
	STRATA_SOCK="$TEST_TMP/run/strata.sock"
	"$STRATA_BIN" --root "$STRATA_ROOT_DIR" --address "$STRATA_SOCK" --log-level "${STRATA_LOG_LEVEL:-info}" \
		serve >"$TEST_TMP/strata.log" 2>&1 &
	STRATA_PID=$!
	track_pid "$STRATA_PID"
	export STRATA_ROOT_DIR STRATA_SOCK STRATA_PID
	wait_for 10 test -S "$STRATA_SOCK" || {
		cat "$TEST_TMP/strata.log" >&2
		return 1
	}
}

# The containerd config fragments that point proxy plugins at Strata. When
# proxying content, containerd's own content store must be disabled (two
# content plugins would be picked at random): start_containerd
# "$(strata_proxy_toplevel)" "$(strata_proxy_config content)".
strata_proxy_toplevel() {
	echo 'disabled_plugins = ["io.containerd.content.v1.content"]'
}

strata_proxy_config() {
	local with_content=${1:-}
	cat <<CFG
[proxy_plugins]
  [proxy_plugins.strata]
    type = "snapshot"
    address = "$STRATA_SOCK"
CFG
	if [ -n "$with_content" ]; then
		cat <<CFG
  [proxy_plugins.strata-content]
    type = "content"
    address = "$STRATA_SOCK"
CFG
	fi
}

# stop_strata_root ROOT: remove every container `strata run` left under ROOT
# (rm -f: task, shim, netns, mounts, snapshot), then stop the daemon that
# `strata run` autostarted there (its pid is in ROOT/strata.pid). Safe to call
# when nothing runs.
stop_strata_root() {
	local root=$1 sock=${2:-} pid id
	[ -d "$root" ] || return 0
	# container records live in the runtime state dir (next to the socket),
	# so ask strata itself which containers exist
	for id in $("$STRATA_BIN" --root "$root" ${sock:+--address "$sock"} ps -a -q 2>/dev/null); do
		"$STRATA_BIN" --root "$root" ${sock:+--address "$sock"} rm -f "$id" >/dev/null 2>&1 ||
			echo "stop_strata_root: rm -f $id failed" >&2
	done
	if [ -f "$root/strata.pid" ]; then
		pid=$(cat "$root/strata.pid")
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# After a clean stop the FUSE fd holder exits by itself; not after a KILL.
	if [ -f "$root/run/fuse-fds.pid" ]; then
		pid=$(cat "$root/run/fuse-fds.pid")
		for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
}

# setup_run_env: what the tests of `strata run` need (after common_setup): a
# registry holding a busybox image (IMAGE), the daemon's ROOT and SOCK, the
# runtime state dir STATE (the socket's directory) and $TEST_TMP/config.toml
# with our own CNI config dir, so that no test writes the host's
# /etc/cni/net.d.
setup_run_env() {
	start_registry
	build_busybox_image "$TEST_TMP/oci" latest >/dev/null
	push_image "$TEST_TMP/oci" latest test/busybox:latest
	IMAGE="$REGISTRY/test/busybox:latest"
	ROOT="$TEST_TMP/strata-root"
	SOCK="$TEST_TMP/run/strata.sock"
	STATE="$TEST_TMP/run"
	mkdir -p "$TEST_TMP/net.d"
	printf '[runtime]\ncni_conf_dir = "%s"\n' "$TEST_TMP/net.d" >"$TEST_TMP/config.toml"
}

# start_registry_named NAME [htpasswd-file]: one more docker-registry (for
# tests that need several, e.g. an origin and its mirror), storage in
# $TEST_TMP/registry-NAME. Sets NAMED_REGISTRY=127.0.0.1:PORT and
# NAMED_REGISTRY_PID (to stop it on purpose).
start_registry_named() {
	local name=$1 port dir auth=""
	port=$(free_port)
	dir="$TEST_TMP/registry-$name"
	mkdir -p "$dir/data"
	if [ -n "${2:-}" ]; then
		auth="auth:
  htpasswd:
    realm: strata-test
    path: $2"
	fi
	cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: 127.0.0.1:$port
$auth
CFG
	docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
	NAMED_REGISTRY_PID=$!
	track_pid "$NAMED_REGISTRY_PID"
	NAMED_REGISTRY=127.0.0.1:$port
	wait_for 20 curl -so /dev/null "http://$NAMED_REGISTRY/v2/" || {
		cat "$dir/log" >&2
		return 1
	}
}

# push_image_to LAYOUT TAG DEST [CREDS]: copy an OCI layout, every platform of
# an index included, to DEST (a full reference: HOST:PORT/NAME:TAG).
push_image_to() {
	skopeo copy --quiet --all --dest-tls-verify=false ${4:+--dest-creds "$4"} \
		"oci:$1:$2" "docker://$3"
}

# --- lazy pulling (10-lazy-robust.bats) ---------------------------------------

# mkimage_exact OUT TAG ROOTFS...: like lib/mkimage.sh (one gzip'd layer per
# ROOTFS, bottom first) but keeping every file's mtime, owner and xattrs, so
# a lazily mounted layer can be compared with its original tree exactly.
mkimage_exact() {
	local out=$1 tag=$2 rootfs hex diffid size layers="" diffids="" t
	shift 2
	t=$(mktemp -d "$TEST_TMP/mkimage.XXXXXX")
	mkdir -p "$out/blobs/sha256"
	for rootfs in "$@"; do
		tar --sort=name --numeric-owner --xattrs --xattrs-include='*' \
			--pax-option=delete=atime,delete=ctime -C "$rootfs" -cf "$t/layer.tar" . || return 1
		diffid=$(sha256sum "$t/layer.tar" | cut -d' ' -f1)
		gzip -n -6 "$t/layer.tar"
		size=$(stat -c %s "$t/layer.tar.gz")
		hex=$(sha256sum "$t/layer.tar.gz" | cut -d' ' -f1)
		mv "$t/layer.tar.gz" "$out/blobs/sha256/$hex"
		layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$hex\",\"size\":$size}"
		diffids+="${diffids:+,}\"sha256:$diffid\""
	done
	printf '{"architecture":"%s","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
		"$(dpkg --print-architecture)" "$diffids" >"$t/config.json"
	local csize chex msize mhex
	csize=$(stat -c %s "$t/config.json")
	chex=$(sha256sum "$t/config.json" | cut -d' ' -f1)
	mv "$t/config.json" "$out/blobs/sha256/$chex"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
		"$chex" "$csize" "$layers" >"$t/manifest.json"
	msize=$(stat -c %s "$t/manifest.json")
	mhex=$(sha256sum "$t/manifest.json" | cut -d' ' -f1)
	mv "$t/manifest.json" "$out/blobs/sha256/$mhex"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$out/oci-layout"
	printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
		"$mhex" "$msize" "$tag" >"$out/index.json"
	rm -rf "$t"
}

# push_estargz LAYOUT NAME: push the OCI layout as $REGISTRY/NAME:plain, then
# convert it with Debian's ctr-remote (an independent eStargz producer, no
# prefetch list) through the running containerd and push $REGISTRY/NAME:esgz.
# containerd's own content store and overlayfs snapshotter do the work; the
# images are removed from containerd afterwards.
push_estargz() {
	local plain="$REGISTRY/$2:plain" esgz="$REGISTRY/$2:esgz"
	push_image "$1" latest "$2:plain" || return 1
	ctr_ images pull --plain-http "$plain" >/dev/null || return 1
	ctr-remote --address "$CONTAINERD_SOCK" images convert --estargz --oci "$plain" "$esgz" >/dev/null ||
		return 1
	ctr_ images push --plain-http "$esgz" >/dev/null || return 1
	ctr_ images rm "$plain" "$esgz" >/dev/null
}

# rpull_lazy REF: pull with containerd's remote-snapshot labels onto Strata.
rpull_lazy() {
	ctr-remote --address "$CONTAINERD_SOCK" images rpull --plain-http --snapshotter strata "$1"
}

# lazy_top_chain: the committed Strata snapshot that is no snapshot's parent
# (the top layer of the only image pulled so far).
lazy_top_chain() {
	ctr_ snapshots --snapshotter strata ls | awk '
		NR > 1 && $NF == "Committed" { c[$1] = 1; if (NF == 3) p[$2] = 1 }
		END { for (k in c) if (!(k in p)) print k }' | head -1
}

# mount_lazy_snapshot KEY PARENT TARGET: Prepare KEY on PARENT through
# containerd and mount what Strata answered on TARGET (as a container's
# rootfs would be).
mount_lazy_snapshot() {
	local key=$1 parent=$2 target=$3 cmd
	mkdir -p "$target"
	cmd=$(ctr_ snapshots --snapshotter strata prepare --target "$target" "$key" "$parent") || return 1
	echo "$cmd" | grep -q '^mount ' || return 1
	# "mount -t TYPE SOURCE TARGET -o OPTIONS", one line per mount
	while read -r _ _ type source tgt _ opts; do
		mount -t "$type" -o "$opts" "$source" "$tgt" || return 1
	done <<<"$cmd"
}

# lazy_fuse_mounts ROOT: mount points of the FUSE layers under a Strata root.
lazy_fuse_mounts() {
	awk -v d="$1/snapshots/" 'index($5, d) == 1 && $0 ~ / - fuse/ { print $5 }' /proc/self/mountinfo
}

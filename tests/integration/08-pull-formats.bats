#!/usr/bin/env bats
# `strata pull` against a real docker-registry, the formats and registry
# setups a user meets: a multi-layer image with every kind of file and
# metadata (checked file by file against containerd's own unpack of the same
# image), a multi-platform index, htpasswd basic auth (--user and a docker
# config.json), and a mirror configured through hosts.toml while the origin
# is down. (kill -9 mid-pull and resume: 04-pull.bats.)

load helpers

BUILD_DIR=${STRATA_BUILD_DIR:-$(cd "$(dirname "$STRATA_BIN")/.." && pwd)}
PULL_TOOL="$BUILD_DIR/tests/unit/pull/pull-test-tool"
TREE="$HELPERS_DIR/lib/tree-manifest.py"

setup() { common_setup; }
teardown() { common_teardown; }

strata() { "$STRATA_BIN" --address "$STRATA_SOCK" "$@"; }

stop_strata() {
	kill -TERM "$STRATA_PID"
	wait_for 20 bash -c "! kill -0 $STRATA_PID"
}

# Three layers covering what a layer can hold. L1: regular files (empty,
# large, a space in the name), a 3-link hardlink set, relative, absolute,
# dangling and directory symlinks, a fifo, a char device, a setuid binary, a
# setgid and a sticky directory, user.* xattrs (text and binary), a
# security.capability, a tree owned by 1000:1000, a directory that L2
# replaces with a file. L2: file and directory whiteouts, an opaque
# directory, new content + xattr for an L1 file, a hardlink pair of its own,
# a symlink replaced by a file, owners changed. L3: a file and a directory
# recreated after L2 whited them out.
make_format_layers() {
	L1="$TEST_TMP/l1" L2="$TEST_TMP/l2" L3="$TEST_TMP/l3"
	mkdir -p "$L1"/{bin,etc,hl,lnk,run,dev,opq/sub,gonedir/deep,home/user,data/sgid,data/dir-to-file/x,tmp}
	cp /bin/busybox "$L1/bin/busybox"
	cp /bin/busybox "$L1/bin/suid"
	chmod 4755 "$L1/bin/suid"
	cp /bin/busybox "$L1/bin/ping"
	setcap cap_net_raw+ep "$L1/bin/ping"
	echo one >"$L1/etc/a"
	setfattr -n user.foo -v bar "$L1/etc/a"
	echo gone >"$L1/etc/b"
	: >"$L1/etc/empty"
	echo spaced >"$L1/etc/with space"
	echo bin >"$L1/etc/xattr-bin"
	setfattr -n user.bin -v 0x00ff7f "$L1/etc/xattr-bin"
	head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$L1/data/big"
	echo hard >"$L1/hl/a"
	ln "$L1/hl/a" "$L1/hl/b"
	ln "$L1/hl/a" "$L1/etc/hl-c"
	ln -s ../etc/a "$L1/lnk/rel"
	ln -s /etc/a "$L1/lnk/abs"
	ln -s /nonexistent/target "$L1/lnk/dangling"
	ln -s ../hl "$L1/lnk/dir"
	ln -s ../etc/b "$L1/lnk/to-be-file"
	mkfifo -m 0640 "$L1/run/fifo"
	mknod -m 0666 "$L1/dev/null" c 1 3
	chmod 2775 "$L1/data/sgid"
	chmod 1777 "$L1/tmp"
	echo user >"$L1/home/user/file"
	mkdir "$L1/home/user/.config"
	chmod 0600 "$L1/home/user/file"
	chown -R 1000:1000 "$L1/home/user"
	chmod 0750 "$L1/home/user"
	echo root-owned-in-user >"$L1/home/user/root-file"
	echo x >"$L1/data/dir-to-file/x/y"
	echo o1 >"$L1/opq/old1"
	echo o2 >"$L1/opq/sub/old2"
	echo g >"$L1/gonedir/deep/f"

	mkdir -p "$L2"/{etc,opq,hl2,lnk,home/user,data}
	touch "$L2/etc/.wh.b" "$L2/.wh.gonedir" "$L2/opq/.wh..wh..opq"
	echo new >"$L2/opq/new"
	echo ONE >"$L2/etc/a"
	setfattr -n user.foo -v baz "$L2/etc/a"
	echo h2 >"$L2/hl2/x"
	ln "$L2/hl2/x" "$L2/hl2/y"
	setfattr -n user.dir -v 1 "$L2/hl2"
	echo not-a-link >"$L2/lnk/to-be-file"
	echo changed >"$L2/home/user/file"
	chown -R 1000:1000 "$L2/home/user"
	chmod 0750 "$L2/home/user"
	chmod 0640 "$L2/home/user/file"
	chown 1000:2000 "$L2/home/user/file"
	echo now-a-file >"$L2/data/dir-to-file"

	mkdir -p "$L3"/{etc,gonedir}
	echo back >"$L3/etc/b"
	echo reborn >"$L3/gonedir/new"
}

@test "multi-layer image: every file, mode, owner, link and xattr as containerd unpacks it" {
	make_format_layers
	MKIMAGE_KEEP_OWNERS=1 bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci" latest "$L1" "$L2" "$L3"
	start_registry
	push_image "$TEST_TMP/oci" latest test/formats:latest
	IMAGE="$REGISTRY/test/formats:latest"

	start_strata
	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	top=$(strata images --json | jq -r --arg n "$IMAGE" '.[] | select(.name == $n) | .chain_ids[-1]')
	[[ "$top" == sha256:* ]]
	stop_strata
	mkdir "$TEST_TMP/mnt"
	"$PULL_TOOL" "$STRATA_ROOT_DIR" mount "@strata/$top" "$TEST_TMP/mnt"
	"$TREE" "$TEST_TMP/mnt" >"$TEST_TMP/strata.tree"

	# the reference: containerd's own content store and overlayfs snapshotter
	start_containerd
	ctr_ images pull --plain-http "$IMAGE" >/dev/null
	mkdir "$TEST_TMP/ref"
	ctr_ images mount "$IMAGE" "$TEST_TMP/ref" >/dev/null
	"$TREE" "$TEST_TMP/ref" >"$TEST_TMP/containerd.tree"
	ctr_ images unmount "$TEST_TMP/ref" >/dev/null
	"$PULL_TOOL" "$STRATA_ROOT_DIR" unmount "$TEST_TMP/mnt"

	cat "$TEST_TMP/strata.tree"
	diff -u "$TEST_TMP/containerd.tree" "$TEST_TMP/strata.tree"
	[ "$(wc -l <"$TEST_TMP/strata.tree")" -gt 40 ]

	# and what the layers mean, spelled out
	t() { grep "^$1 " "$TEST_TMP/strata.tree"; }
	# L2's content and L2's xattr (62617a = "baz")
	[[ "$(t /etc/a)" == *" $(echo ONE | sha256sum | cut -d' ' -f1) user.foo=62617a" ]]
	t /etc/b | grep -q " $(echo back | sha256sum | cut -d' ' -f1) "
	[[ "$(t /etc/xattr-bin)" == *" user.bin=00ff7f" ]]
	t /bin/ping | grep -q "security.capability="
	t /bin/suid | grep -q "^/bin/suid file 4755 0:0 "
	t /data/sgid | grep -q "^/data/sgid dir 2775 "
	t /tmp | grep -q "^/tmp dir 1777 "
	t /home/user | grep -q "^/home/user dir 0750 1000:1000 "
	t /home/user/file | grep -q "^/home/user/file file 0640 1000:2000 "
	t /home/user/.config | grep -q " 1000:1000 "
	t /home/user/root-file | grep -q " 0:0 "
	t /hl/b | grep -q " =/etc/hl-c "
	t /hl/a | grep -q " =/etc/hl-c "
	t /hl2/y | grep -q " =/hl2/x "
	t /hl2 | grep -q "user.dir=31$"
	t /lnk/rel | grep -q " ->../etc/a "
	t /lnk/abs | grep -q " ->/etc/a "
	t /lnk/dangling | grep -q " ->/nonexistent/target "
	t /lnk/to-be-file | grep -q "^/lnk/to-be-file file "
	t /run/fifo | grep -q "^/run/fifo fifo 0640 "
	t /dev/null | grep -q "^/dev/null char 0666 0:0 .* 1,3 "
	t /data/dir-to-file | grep -q "^/data/dir-to-file file "
	t /data/big | grep -q " $(sha256sum "$L1/data/big" | cut -d' ' -f1) "
	t "/etc/with" | grep -q "^/etc/with space file "
	t /etc/empty | grep -q " $(sha256sum </dev/null | cut -d' ' -f1) "
	t /gonedir/new | grep -q " $(echo reborn | sha256sum | cut -d' ' -f1) "
	t /opq/new
	# whited out, opaque-hidden, replaced: gone
	! grep -qE "^(/gonedir/deep|/opq/old1|/opq/sub|/data/dir-to-file/x)( |/)" "$TEST_TMP/strata.tree"
	! grep -q "\.wh\." "$TEST_TMP/strata.tree"
}

# Two images, one per platform, under one index: amd64 (or whatever the host
# is) and arm64/v8 (any tar will do: it is only unpacked, never run).
make_index() {
	local host other
	host=$(dpkg --print-architecture)
	other=arm64
	[ "$host" = arm64 ] && other=amd64
	HOST_ARCH=$host OTHER_ARCH=$other
	# the record keeps the index's platform as written (like `ctr images ls`)
	OTHER_PLATFORM=linux/$other
	[ "$other" = arm64 ] && OTHER_PLATFORM=linux/arm64/v8
	mkdir -p "$TEST_TMP/rh/etc" "$TEST_TMP/ro/etc"
	echo "$host" >"$TEST_TMP/rh/etc/arch"
	echo "$other" >"$TEST_TMP/ro/etc/arch"
	bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci-host" latest "$TEST_TMP/rh"
	MKIMAGE_ARCH=$other MKIMAGE_VARIANT=$([ "$other" = arm64 ] && echo v8) \
		bash "$HELPERS_DIR/lib/mkimage.sh" "$TEST_TMP/oci-other" latest "$TEST_TMP/ro"
	bash "$HELPERS_DIR/lib/mkindex.sh" "$TEST_TMP/oci-multi" latest "$TEST_TMP/oci-host" "$TEST_TMP/oci-other"
	INDEX_DIGEST=$(jq -r '.manifests[0].digest' "$TEST_TMP/oci-multi/index.json")
	HOST_MANIFEST=$(jq -r '.manifests[0].digest' "$TEST_TMP/oci-host/index.json")
	OTHER_MANIFEST=$(jq -r '.manifests[0].digest' "$TEST_TMP/oci-other/index.json")
}

image_field() { # IMAGE FIELD
	strata images --json | jq -r --arg n "$1" ".[] | select(.name == \$n) | .$2"
}

@test "multi-platform index: the host's by default, --platform picks the other, a missing one lists them" {
	make_index
	start_registry
	push_image_to "$TEST_TMP/oci-multi" latest "$REGISTRY/test/multi:latest"
	IMAGE="$REGISTRY/test/multi:latest"
	start_strata

	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^pulled $IMAGE ($INDEX_DIGEST), 1 layer"
	echo "$output" | grep -q "selected $HOST_MANIFEST for linux/$HOST_ARCH"
	[ "$(image_field "$IMAGE" digest)" = "$INDEX_DIGEST" ]
	[ "$(image_field "$IMAGE" manifest_digest)" = "$HOST_MANIFEST" ]
	[ "$(image_field "$IMAGE" platform)" = "linux/$HOST_ARCH" ]
	[ "$(strata images inspect "$IMAGE" | jq -r .config.architecture)" = "$HOST_ARCH" ]

	# the same name, the other platform: the record follows
	run strata pull --platform "linux/$OTHER_ARCH" "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "selected $OTHER_MANIFEST for $OTHER_PLATFORM"
	[ "$(image_field "$IMAGE" digest)" = "$INDEX_DIGEST" ]
	[ "$(image_field "$IMAGE" manifest_digest)" = "$OTHER_MANIFEST" ]
	[ "$(image_field "$IMAGE" platform)" = "$OTHER_PLATFORM" ]
	[ "$(strata images inspect "$IMAGE" | jq -r .config.architecture)" = "$OTHER_ARCH" ]
	[ "$(strata images -q | wc -l)" = 1 ]

	# its layer is the other rootfs
	top=$(image_field "$IMAGE" 'chain_ids[-1]')
	stop_strata
	mkdir "$TEST_TMP/mnt"
	"$PULL_TOOL" "$STRATA_ROOT_DIR" mount "@strata/$top" "$TEST_TMP/mnt"
	[ "$(cat "$TEST_TMP/mnt/etc/arch")" = "$OTHER_ARCH" ]
	"$PULL_TOOL" "$STRATA_ROOT_DIR" unmount "$TEST_TMP/mnt"
	start_strata

	run strata pull --platform windows/amd64 "$IMAGE"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "^strata: pull: .*windows/amd64"
	echo "$output" | grep -q "linux/$HOST_ARCH"
	echo "$output" | grep -qF "$OTHER_PLATFORM"
	# the failed pull did not touch the record
	[ "$(image_field "$IMAGE" platform)" = "$OTHER_PLATFORM" ]
}

@test "htpasswd basic auth: refused without credentials, works with --user and with a docker config.json, never leaks the password" {
	command -v htpasswd >/dev/null || skip "htpasswd missing (apache2-utils)"
	PASS='S3cret-Pa55-Xyzzy'
	WRONG='Wr0ng-Pa55-Plugh'
	htpasswd -Bbn alice "$PASS" >"$TEST_TMP/htpasswd"
	start_registry "$TEST_TMP/htpasswd"
	build_busybox_image "$TEST_TMP/oci" latest
	push_image_to "$TEST_TMP/oci" latest "$REGISTRY/test/private:latest" "alice:$PASS"
	IMAGE="$REGISTRY/test/private:latest"
	# the registry really wants credentials
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$REGISTRY/v2/test/private/tags/list")" = 401 ]

	# a daemon with an empty docker config dir: nothing but --user
	mkdir -p "$TEST_TMP/no-docker"
	DOCKER_CONFIG="$TEST_TMP/no-docker" STRATA_LOG_LEVEL=debug start_strata
	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -qiE "auth|credential|unauthori[sz]ed"
	: >"$TEST_TMP/outputs"
	echo "$output" >>"$TEST_TMP/outputs"

	run strata pull --user "alice:$WRONG" "$IMAGE"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -qiE "auth|credential|unauthori[sz]ed|denied"
	echo "$output" >>"$TEST_TMP/outputs"

	run strata pull --user "alice:$PASS" "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" >>"$TEST_TMP/outputs"
	strata rmi "$IMAGE"
	stop_strata
	cp "$TEST_TMP/strata.log" "$TEST_TMP/strata-1.log"

	# credentials from the daemon's docker config.json: "auth" (base64)
	mkdir -p "$TEST_TMP/docker"
	AUTH=$(printf 'alice:%s' "$PASS" | base64 -w0)
	jq -n --arg h "$REGISTRY" --arg a "$AUTH" '{auths: {($h): {auth: $a}}}' \
		>"$TEST_TMP/docker/config.json"
	DOCKER_CONFIG="$TEST_TMP/docker" STRATA_LOG_LEVEL=debug start_strata
	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" >>"$TEST_TMP/outputs"
	strata rmi "$IMAGE"
	# ... and username/password under an http:// key (read at each pull)
	jq -n --arg h "http://$REGISTRY" --arg p "$PASS" \
		'{auths: {($h): {username: "alice", password: $p}}}' >"$TEST_TMP/docker/config.json"
	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" >>"$TEST_TMP/outputs"
	[ "$(image_field "$IMAGE" name)" = "$IMAGE" ]
	stop_strata

	# no secret anywhere: CLI output, daemon logs (at debug level)
	cat "$TEST_TMP/strata-1.log" "$TEST_TMP/strata.log" >"$TEST_TMP/all.log"
	grep -c . "$TEST_TMP/all.log"
	for secret in "$PASS" "$WRONG" "$AUTH" "$(printf 'alice:%s' "$WRONG" | base64 -w0)"; do
		! grep -qF "$secret" "$TEST_TMP/outputs"
		! grep -qF "$secret" "$TEST_TMP/all.log"
	done
}

@test "a mirror from hosts.toml serves the pull while the origin is down" {
	build_busybox_image "$TEST_TMP/oci" latest
	start_registry_named origin
	ORIGIN=$NAMED_REGISTRY ORIGIN_PID=$NAMED_REGISTRY_PID
	start_registry_named mirror
	MIRROR=$NAMED_REGISTRY
	push_image_to "$TEST_TMP/oci" latest "$ORIGIN/test/mirrored:1"
	push_image_to "$TEST_TMP/oci" latest "$MIRROR/test/mirrored:1"
	DIGEST=$(jq -r '.manifests[0].digest' "$TEST_TMP/oci/index.json")
	kill -TERM "$ORIGIN_PID"
	wait_for 20 bash -c "! curl -so /dev/null http://$ORIGIN/v2/"

	mkdir -p "$TEST_TMP/certs.d/$ORIGIN"
	cat >"$TEST_TMP/certs.d/$ORIGIN/hosts.toml" <<TOML
server = "http://$ORIGIN"

[host."http://$MIRROR"]
  capabilities = ["pull", "resolve"]
TOML
	cat >"$TEST_TMP/strata.toml" <<TOML
[registry]
config_path = "$TEST_TMP/certs.d"
TOML
	STRATA_CONFIG="$TEST_TMP/strata.toml" start_strata
	grep -q "registry hosts=$TEST_TMP/certs.d" "$TEST_TMP/strata.log"

	IMAGE="$ORIGIN/test/mirrored:1"
	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 0 ]
	echo "$output" | grep -q "^pulled $IMAGE ($DIGEST), 1 layer"
	[ "$(image_field "$IMAGE" digest)" = "$DIGEST" ]
	top=$(image_field "$IMAGE" 'chain_ids[-1]')

	# without the mirror the origin is simply down (hosts.toml is read per pull)
	strata rmi "$IMAGE"
	rm "$TEST_TMP/certs.d/$ORIGIN/hosts.toml"
	run strata pull "$IMAGE"
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "^strata: pull: .*$ORIGIN"

	stop_strata
	mkdir "$TEST_TMP/mnt"
	"$PULL_TOOL" "$STRATA_ROOT_DIR" mount "@strata/$top" "$TEST_TMP/mnt"
	[ "$(cat "$TEST_TMP/mnt/etc/motd")" = "hello from strata" ]
	"$PULL_TOOL" "$STRATA_ROOT_DIR" unmount "$TEST_TMP/mnt"
}

@test "a config.toml with a bad registry.config_path is refused at start" {
	cat >"$TEST_TMP/strata.toml" <<TOML
[registry]
config_path = 42
TOML
	run "$STRATA_BIN" --config "$TEST_TMP/strata.toml" --root "$TEST_TMP/root" \
		--address "$TEST_TMP/s.sock" serve
	echo "$output"
	[ "$status" -eq 1 ]
	echo "$output" | grep -q "registry.config_path"
}

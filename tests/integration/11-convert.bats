#!/usr/bin/env bats
# strata convert --estargz: a multi-layer image (whiteouts, an opaque
# directory, symlinks, hardlinks, owners, a big chunked file) converted from
# the test registry to another tag, then unpacked by containerd's own
# overlayfs snapshotter, mounted lazily through Strata (rpull by Debian's
# ctr-remote), checked by ctr-remote's get-toc-digest, and compared file by
# file with the original. Bad input: exit 1 and nothing pushed.

load helpers

TREE="$BATS_TEST_DIRNAME/lib/tree-manifest.py"

build_conv_image() {
	local out=$1 l1="$TEST_TMP/l1" l2="$TEST_TMP/l2" l3="$TEST_TMP/l3"
	mkdir -p "$l1/bin" "$l1/etc" "$l1/data" "$l1/old/sub" "$l1/opq" "$l1/tmp"
	cp /bin/busybox "$l1/bin/busybox"
	for a in sh ls cat echo true sleep wc; do ln -sf busybox "$l1/bin/$a"; done
	echo "root:x:0:0:root:/root:/bin/sh" >"$l1/etc/passwd"
	echo "first" >"$l1/etc/motd"
	ln "$l1/etc/motd" "$l1/etc/motd.hard"
	head -c $((9 << 20)) /dev/urandom >"$l1/data/big"
	head -c 4096 /dev/zero >"$l1/data/zeros"
	: >"$l1/data/empty"
	echo gone >"$l1/old/gone"
	echo sub >"$l1/old/sub/file"
	echo hidden >"$l1/opq/hidden"
	chown 1234:5678 "$l1/data/zeros"
	chmod 4755 "$l1/data/zeros"
	chmod 1777 "$l1/tmp"
	mkfifo "$l1/data/fifo"
	# layer 2: whiteouts (a file, a directory), an opaque directory, changes
	mkdir -p "$l2/etc" "$l2/old" "$l2/opq" "$l2/new"
	echo "second" >"$l2/etc/motd"
	: >"$l2/old/.wh.gone"
	: >"$l2/.wh.tmp"
	: >"$l2/opq/.wh..wh..opq"
	echo visible >"$l2/opq/visible"
	ln -s ../etc/motd "$l2/new/rel-link"
	ln -s /etc/passwd "$l2/new/abs-link"
	echo shared >"$l2/new/a"
	ln "$l2/new/a" "$l2/new/b"
	chown 42:43 "$l2/new/a"
	# layer 3: one small file
	mkdir -p "$l3/etc"
	echo third >"$l3/etc/third"
	chmod 600 "$l3/etc/third"
	MKIMAGE_KEEP_OWNERS=1 bash "$HELPERS_DIR/lib/mkimage.sh" "$out" latest "$l1" "$l2" "$l3"
}

# verify_blob REPO:TAG: every layer of the manifest: the blob is a gzip'd
# tar whose sha256 is the config's diff ID, the footer points at the TOC,
# sha256(TOC JSON) is the toc.digest annotation, the uncompressed size is
# right. Prints one toc digest per line.
verify_blobs() {
	python3 - "$REGISTRY" "$1" <<'PY'
import gzip, hashlib, io, json, sys, tarfile, urllib.request, zlib
reg, ref = sys.argv[1], sys.argv[2]
repo, tag = ref.rsplit(":", 1)
def get(path, accept=None):
    req = urllib.request.Request(f"http://{reg}/v2/{repo}/{path}")
    if accept: req.add_header("Accept", accept)
    return urllib.request.urlopen(req).read()
m = json.loads(get(f"manifests/{tag}", "application/vnd.oci.image.manifest.v1+json"))
assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json", m
cfg = json.loads(get(f"blobs/{m['config']['digest']}"))
for i, l in enumerate(m["layers"]):
    assert l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    blob = get(f"blobs/{l['digest']}")
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == l["digest"]
    raw = gzip.decompress(blob)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == cfg["rootfs"]["diff_ids"][i]
    ann = l["annotations"]
    assert int(ann["io.containers.estargz.uncompressed-size"]) == len(raw)
    foot = blob[-51:]
    assert foot[:4] == b"\x1f\x8b\x08\x04" and foot[12:14] == b"SG" and foot[32:38] == b"STARGZ", foot
    off = int(foot[16:32], 16)
    toc_tar = zlib.decompressobj(31).decompress(blob[off:-51])
    t = tarfile.open(fileobj=io.BytesIO(toc_tar))
    member = t.getmember("stargz.index.json")
    js = t.extractfile(member).read()
    assert "sha256:" + hashlib.sha256(js).hexdigest() == ann["containerd.io/snapshot/stargz/toc.digest"]
    toc = json.loads(js)
    names = [e["name"] for e in toc["entries"]]
    assert ".no.prefetch.landmark" in names or ".prefetch.landmark" in names
    print(ann["containerd.io/snapshot/stargz/toc.digest"], l["digest"])
PY
}

# chain_id REPO:TAG: the chain ID of the image's top layer.
chain_id() {
	python3 - "$REGISTRY" "$1" <<'PY'
import hashlib, json, sys, urllib.request
reg, ref = sys.argv[1], sys.argv[2]
repo, tag = ref.rsplit(":", 1)
def get(path, accept=None):
    req = urllib.request.Request(f"http://{reg}/v2/{repo}/{path}")
    if accept: req.add_header("Accept", accept)
    return urllib.request.urlopen(req).read()
m = json.loads(get(f"manifests/{tag}", "application/vnd.oci.image.manifest.v1+json"))
ids = json.loads(get(f"blobs/{m['config']['digest']}"))["rootfs"]["diff_ids"]
chain = ids[0]
for d in ids[1:]:
    chain = "sha256:" + hashlib.sha256(f"{chain} {d}".encode()).hexdigest()
print(chain)
PY
}

setup() {
	common_setup
	start_registry
	build_conv_image "$TEST_TMP/oci"
	push_image "$TEST_TMP/oci" latest test/conv:plain
	PLAIN="$REGISTRY/test/conv:plain"
	ESGZ="$REGISTRY/test/conv:esgz"
}
teardown() { common_teardown; }

@test "convert registry -> registry: containerd unpacks it, Strata mounts it lazily, same files" {
	run "$STRATA_BIN" convert --estargz --chunk-size 1M "$PLAIN" "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	run verify_blobs test/conv:esgz
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(echo "$output" | wc -l)" -eq 3 ]
	tocs="$output"
	# the 9 MiB file is in 1 MiB chunks
	big_chunks=$(curl -s "http://$REGISTRY/v2/test/conv/manifests/esgz" \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' | python3 -c '
import json, sys, urllib.request, zlib, io, tarfile
m = json.load(sys.stdin)
l = m["layers"][0]
b = urllib.request.urlopen("http://'"$REGISTRY"'/v2/test/conv/blobs/" + l["digest"]).read()
off = int(b[-51:][16:32], 16)
t = tarfile.open(fileobj=io.BytesIO(zlib.decompressobj(31).decompress(b[off:-51])))
toc = json.load(t.extractfile("stargz.index.json"))
print(sum(1 for e in toc["entries"] if e["name"] == "data/big"))')
	[ "$big_chunks" -eq 9 ]

	STRATA_LOG_LEVEL=debug start_strata
	start_containerd "" "$(strata_proxy_config)"
	# reference: the original image through containerd's overlayfs
	ctr_ images pull --plain-http "$PLAIN" >/dev/null
	mkdir -p "$TEST_TMP/m-plain" "$TEST_TMP/m-esgz" "$TEST_TMP/m-lazy"
	ctr_ images mount "$PLAIN" "$TEST_TMP/m-plain" >/dev/null
	python3 "$TREE" "$TEST_TMP/m-plain" >"$TEST_TMP/t-plain"

	# (b) lazily through Strata, pulled by Debian's ctr-remote (c)
	run ctr-remote --address "$CONTAINERD_SOCK" images rpull --plain-http --snapshotter strata "$ESGZ"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c "mounted lazily" "$TEST_TMP/strata.log")" -eq 3 ]
	# a read-only view on the top chain, mounted as containerd would (what
	# `ctr images mount` does after its Unpack; ctr 1.6.20's images mount
	# ignores --snapshotter and would use overlayfs: see 06-lazy.bats)
	chain=$(chain_id test/conv:esgz)
	ctr_ snapshots --snapshotter strata view conv-view "$chain" >/dev/null
	mnt=$(ctr_ snapshots --snapshotter strata mounts "$TEST_TMP/m-lazy" conv-view)
	echo "$mnt"
	eval "$mnt"
	python3 "$TREE" "$TEST_TMP/m-lazy" >"$TEST_TMP/t-lazy"
	diff -u "$TEST_TMP/t-plain" "$TEST_TMP/t-lazy"

	# (a) a normal unpack by containerd's overlayfs (the TOC and the
	# landmark are ordinary files there, as with every eStargz image)
	ctr_ images rm "$ESGZ" >/dev/null
	ctr_ images pull --plain-http "$ESGZ" >/dev/null
	ctr_ images mount "$ESGZ" "$TEST_TMP/m-esgz" >/dev/null
	python3 "$TREE" "$TEST_TMP/m-esgz" |
		grep -v -E '^/?(\./)?(stargz\.index\.json|\.no\.prefetch\.landmark) ' >"$TEST_TMP/t-esgz"
	diff -u "$TEST_TMP/t-plain" "$TEST_TMP/t-esgz"

	# (c) ctr-remote's own eStargz reader finds the same TOC digests
	echo "$tocs" | while read -r toc layer; do
		got=$(ctr-remote --address "$CONTAINERD_SOCK" images get-toc-digest "$layer")
		echo "$layer: $got (annotation $toc)"
		[ "$got" = "$toc" ]
	done

	# and a container runs from the lazy image
	run ctr_ run --rm --snapshotter strata "$ESGZ" conv1 /bin/sh -c 'cat /etc/motd /etc/third; wc -c </data/big'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "$(printf 'second\nthird\n9437184')" ]
}

@test "convert oci:DIR -> oci:DIR2 with prefetch files; skopeo copies the result" {
	printf '/etc/passwd\nbin/busybox\n# comment\n\nmissing\n' >"$TEST_TMP/prefetch"
	run "$STRATA_BIN" convert --estargz --prefetch-files "$TEST_TMP/prefetch" \
		"oci:$TEST_TMP/oci:latest" "oci:$TEST_TMP/oci2:esgz"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -f "$TEST_TMP/oci2/oci-layout" ]
	grep -q '"org.opencontainers.image.ref.name":"esgz"' "$TEST_TMP/oci2/index.json"
	# a second conversion into the same layout keeps both tags
	"$STRATA_BIN" convert --estargz -q "oci:$TEST_TMP/oci" "oci:$TEST_TMP/oci2:again"
	grep -q '"esgz"' "$TEST_TMP/oci2/index.json"
	grep -q '"again"' "$TEST_TMP/oci2/index.json"
	push_image "$TEST_TMP/oci2" esgz test/conv:from-oci
	run verify_blobs test/conv:from-oci
	echo "$output"
	[ "$status" -eq 0 ]
	# layer 1: etc/passwd and bin/busybox (with their directories) come before
	# the landmark, the rest after
	python3 - "$TEST_TMP/oci2" <<'PY'
import io, json, os, sys, tarfile, zlib
d = sys.argv[1]
blob = lambda dg: open(os.path.join(d, "blobs/sha256", dg[7:]), "rb").read()
idx = json.load(open(os.path.join(d, "index.json")))
m = json.loads(blob([x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == "esgz"][0]["digest"]))
b = blob(m["layers"][0]["digest"])
off = int(b[-51:][16:32], 16)
toc = json.load(tarfile.open(fileobj=io.BytesIO(zlib.decompressobj(31).decompress(b[off:-51]))).extractfile("stargz.index.json"))
names = [e["name"] for e in toc["entries"] if e["type"] != "chunk"]
lm = names.index(".prefetch.landmark")
assert set(names[:lm]) == {"./", "etc", "etc/passwd", "bin", "bin/busybox"}, names[:lm]
assert "data/big" in names[lm:]
# layer 3 has none of them: no prefetch landmark there
b = blob(m["layers"][2]["digest"])
off = int(b[-51:][16:32], 16)
toc = json.load(tarfile.open(fileobj=io.BytesIO(zlib.decompressobj(31).decompress(b[off:-51]))).extractfile("stargz.index.json"))
assert toc["entries"][0]["name"] == ".no.prefetch.landmark", toc["entries"][0]
PY
}

# bad_layout KIND: a copy of the test layout whose first layer is replaced:
# "notar" gzip'd random bytes, "zstd" announced as zstd.
bad_layout() {
	python3 - "$TEST_TMP/oci" "$TEST_TMP/bad-$1" "$1" <<'PY'
import gzip, hashlib, json, os, shutil, sys
src, dst, kind = sys.argv[1:]
shutil.copytree(src, dst)
B = os.path.join(dst, "blobs/sha256")
def put(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(B, h), "wb").write(data)
    return "sha256:" + h, len(data)
idx = json.load(open(os.path.join(dst, "index.json")))
m = json.load(open(os.path.join(B, idx["manifests"][0]["digest"][7:])))
if kind == "notar":
    d, n = put(gzip.compress(os.urandom(100000)))
    m["layers"][0].update(digest=d, size=n)
else:
    m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
d, n = put(json.dumps(m).encode())
idx["manifests"][0].update(digest=d, size=n)
json.dump(idx, open(os.path.join(dst, "index.json"), "w"))
PY
}

@test "a corrupt or unsupported source layer: exit 1, clear error, nothing pushed" {
	bad_layout notar
	bad_layout zstd
	push_image "$TEST_TMP/bad-notar" latest test/bad:notar
	run "$STRATA_BIN" convert --estargz "$REGISTRY/test/bad:notar" "$REGISTRY/test/badout:esgz"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"not a tar archive"* ]]
	run "$STRATA_BIN" convert --estargz "oci:$TEST_TMP/bad-zstd" "$REGISTRY/test/badout:esgz"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"tar+zstd is not supported"* ]]
	# nothing reached the registry: not even the good layers' blobs
	run curl -s "http://$REGISTRY/v2/_catalog"
	echo "$output"
	[[ "$output" != *badout* ]]
	# nor a layout
	run "$STRATA_BIN" convert --estargz "oci:$TEST_TMP/bad-notar" "oci:$TEST_TMP/badout"
	[ "$status" -eq 1 ]
	[ ! -e "$TEST_TMP/badout" ]
	# usage errors exit 2
	run "$STRATA_BIN" convert "$PLAIN" "$ESGZ"
	[ "$status" -eq 2 ]
}

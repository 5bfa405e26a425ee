#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""eStargz test layers, written by an independent (Python) producer, and an
OCI registry on 127.0.0.1 that serves them.

  estargz-registry.py gen DIR      write the layers to DIR/<name>.blob (+ .toc.json)
                                   and print a JSON summary
  estargz-registry.py serve DIR    serve them; prints "PORT" then the summary.
                                   Repository "<layer>/img", tag "v1".
                                   GET /stats: {"bytes": N, "requests": N, "tails": N}
                                   (tails: Range requests up to a blob's end)
                                   GET /fail?from=N: answer 503 to blob Range
                                   requests starting at byte N or later (the
                                   registry going down mid-read; -1: never)
                                   Repositories starting with "norange" ignore Range.
                                   Repository "multi/img": layers ra and valid.

The layout follows stargz-snapshotter's writer: every regular file's payload
(and each chunk of a large one) starts a new gzip member; tar headers ride in
the member before; the TOC is the last tar entry in its own member; then the
51-byte footer (or the legacy 47-byte one).
"""
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MTIME = "2024-01-02T03:04:05Z"
MTIME_EPOCH = 1704164645


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def gz(b):
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        f.write(b)
    return out.getvalue()


def tar_header(name, typ, size=0, mode=0o644, link="", uid=0, gid=0, xattrs=None,
               devmajor=0, devminor=0):
    ti = tarfile.TarInfo(name)
    ti.type = {"dir": tarfile.DIRTYPE, "reg": tarfile.REGTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE,
               "fifo": tarfile.FIFOTYPE}[typ]
    ti.size = size
    ti.mode = mode
    ti.linkname = link
    ti.uid, ti.gid = uid, gid
    ti.mtime = MTIME_EPOCH
    ti.devmajor, ti.devminor = devmajor, devminor
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + k: v.decode("latin-1") for k, v in xattrs.items()}
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def pattern(n, seed):
    out, h = bytearray(), seed.encode()
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


def build(entries, chunk_size=64 << 10, legacy=False, prefetch=None, mutate=None):
    """entries: dicts name/type/data/mode/link/xattrs/uid/gid. prefetch: names
    placed before a .prefetch.landmark (must come first in entries)."""
    blob = bytearray()
    cur = bytearray()
    toc = []

    def close():
        nonlocal cur
        if cur:
            blob.extend(gz(bytes(cur)))
            cur = bytearray()

    ordered = list(entries)
    if prefetch is not None:
        ordered = [e for e in ordered if e["name"] in prefetch] + \
                  [{"name": ".prefetch.landmark", "type": "reg", "data": b"\x0f"}] + \
                  [e for e in ordered if e["name"] not in prefetch]
    for e in ordered:
        data = e.get("data", b"")
        typ = e["type"]
        t = {"name": e["name"], "type": typ, "modtime": MTIME,
             "mode": e.get("mode", 0o755 if typ == "dir" else 0o644),
             "uid": e.get("uid", 0), "gid": e.get("gid", 0)}
        if typ in ("symlink", "hardlink"):
            t["linkName"] = e["link"]
        if typ == "reg":
            t["size"] = len(data)
            t["digest"] = sha(data)
        if e.get("xattrs"):
            import base64
            t["xattrs"] = {k: base64.b64encode(v).decode() for k, v in e["xattrs"].items()}
        cur.extend(tar_header(e["name"], typ, len(data) if typ == "reg" else 0,
                              t["mode"], e.get("link", ""), t["uid"], t["gid"],
                              e.get("xattrs")))
        if typ == "reg" and data:
            pos = 0
            first = True
            while pos < len(data):
                n = min(chunk_size, len(data) - pos)
                close()
                c = dict(t) if first else {"name": e["name"], "type": "chunk"}
                c["offset"] = len(blob)
                c["chunkOffset"] = pos
                if pos + n < len(data) or not first:
                    c["chunkSize"] = n if pos + n < len(data) else 0
                c["chunkDigest"] = sha(data[pos:pos + n])
                toc.append(c)
                cur.extend(data[pos:pos + n])
                pos += n
                first = False
            pad = (512 - len(data) % 512) % 512
            cur.extend(b"\0" * pad)
        else:
            toc.append(t)
    close()
    if mutate:
        mutate(toc)
    toc_json = json.dumps({"version": 1, "entries": toc}, separators=(",", ":")).encode()
    toc_off = len(blob)
    member = tar_header("stargz.index.json", "reg", len(toc_json)) + toc_json
    member += b"\0" * ((512 - len(toc_json) % 512) % 512) + b"\0" * 1024
    blob.extend(gz(member))
    payload = b"%016xSTARGZ" % toc_off
    if legacy:
        footer = bytes([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0]) + payload
    else:
        footer = bytes([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 26, 0,
                        ord("S"), ord("G"), 22, 0]) + payload
    footer += bytes([1, 0, 0, 0xff, 0xff]) + b"\0" * 8
    blob.extend(footer)
    return bytes(blob), toc_json


BIG = pattern(300 << 10, "big")
BASE = [
    {"name": "bin/", "type": "dir"},
    {"name": "bin/hello", "type": "reg", "data": b"hello, lazy world\n", "mode": 0o755},
    {"name": "bin/big", "type": "reg", "data": BIG},
    {"name": "bin/link", "type": "hardlink", "link": "bin/hello"},
    {"name": "bin/sym", "type": "symlink", "link": "hello"},
    {"name": "etc/", "type": "dir", "mode": 0o700, "uid": 1000, "gid": 1001},
    {"name": "etc/conf", "type": "reg", "data": b"k=v\n", "uid": 1000, "gid": 1001,
     "xattrs": {"user.note": b"lazy"}},
    {"name": "etc/empty", "type": "reg", "data": b""},
    {"name": "etc/.wh.gone", "type": "reg"},
    {"name": "opq/", "type": "dir"},
    {"name": "opq/.wh..wh..opq", "type": "reg"},
    {"name": "opq/kept", "type": "reg", "data": b"kept\n"},
    {"name": "deep/a/b/c/file", "type": "reg", "data": pattern(5000, "deep")},
    {"name": "fifo", "type": "fifo"},
]


def corrupt_big(toc):
    for e in toc:
        if e["name"] == "bin/big" and e.get("chunkOffset", 0) == 65536:
            e["chunkDigest"] = sha(b"not the chunk")


def hostile(toc):
    toc.append({"name": "../escape", "type": "reg", "size": 0, "modtime": MTIME})


def elf_with_needed(needed, pad=0):
    """A minimal little-endian ELF64 executable whose dynamic section names
    the libraries `needed` (DT_NEEDED), for the shared-library read-ahead;
    pad bytes before the dynamic section (to put it in another chunk)."""
    import struct
    strtab = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
    base, phoff, nph = 0x400000, 64, 2
    dyn_off = phoff + nph * 56 + pad
    ndyn = len(needed) + 3
    str_off = dyn_off + ndyn * 16
    total = str_off + len(strtab)
    dyn, o = b"", 1
    for n in needed:
        dyn += struct.pack("<qQ", 1, o)  # DT_NEEDED
        o += len(n) + 1
    dyn += struct.pack("<qQ", 5, base + str_off)  # DT_STRTAB
    dyn += struct.pack("<qQ", 10, len(strtab))  # DT_STRSZ
    dyn += struct.pack("<qQ", 0, 0)
    eh = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 + \
        struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, base, phoff, 0, 0, 64, 56, nph, 64, 0, 0)
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, total, total, 0x1000)
    dynh = struct.pack("<IIQQQQQQ", 2, 6, dyn_off, base + dyn_off, base + dyn_off,
                       ndyn * 16, ndyn * 16, 8)
    return eh + load + dynh + b"\0" * pad + dyn + strtab


# Read-ahead: a directory of small files followed by another directory's,
# an executable and the library it needs (through a symlink), a large file
# of 8 chunks whose third chunk does not verify, and an executable looked up
# before it is read (with a file beside it that is not executable).
RA = [{"name": "lib/", "type": "dir"}] + \
    [{"name": "lib/f%02d" % i, "type": "reg", "data": pattern(3000, "lib%d" % i)}
     for i in range(20)] + \
    [{"name": "lib/libfoo.so.1", "type": "symlink", "link": "libfoo.so.1.0"},
     {"name": "lib/libfoo.so.1.0", "type": "reg", "data": pattern(3000, "libfoo")},
     {"name": "lib/libbar.so.1", "type": "reg", "data": pattern(3000, "libbar")},
     {"name": "bin/", "type": "dir"},
     {"name": "bin/prog", "type": "reg", "mode": 0o755,
      "data": elf_with_needed(["libfoo.so.1", "libmissing.so.2"])},
     {"name": "bin/prog2", "type": "reg", "mode": 0o755,
      "data": elf_with_needed(["libbar.so.1"], pad=100000)}] + \
    [{"name": "other/", "type": "dir"}] + \
    [{"name": "other/g%02d" % i, "type": "reg", "data": pattern(3000, "other%d" % i)}
     for i in range(5)] + \
    [{"name": "data/", "type": "dir"},
     {"name": "data/big", "type": "reg", "data": pattern(8 << 16, "rabig")}] + \
    [{"name": "sbin/", "type": "dir"},
     {"name": "sbin/tool", "type": "reg", "mode": 0o755,
      "data": elf_with_needed(["libqux.so.1"])},
     {"name": "sbin/notes", "type": "reg", "data": pattern(3000, "notes")},
     {"name": "lib/libqux.so.1", "type": "reg", "data": pattern(3000, "libqux")}]


# Start-up files fetched at mount (no landmark): passwd and libc, and a
# file that is not one of them.
STARTUP = [{"name": "etc/", "type": "dir"},
           {"name": "etc/passwd", "type": "reg", "data": b"root:x:0:0::/root:/bin/sh\n"},
           {"name": "etc/motd", "type": "reg", "data": pattern(2000, "motd")},
           {"name": "usr/lib/x86_64-linux-gnu/", "type": "dir"},
           {"name": "usr/lib/x86_64-linux-gnu/libc.so.6", "type": "reg",
            "data": pattern(200000, "libc")},
           {"name": "etc/localtime", "type": "symlink", "link": "/usr/share/zoneinfo/Etc/UTC"},
           {"name": "usr/share/zoneinfo/Etc/", "type": "dir"},
           {"name": "usr/share/zoneinfo/Etc/UTC", "type": "reg", "data": pattern(114, "utc")},
           # python bytecode: stale.py's .pyc records another mtime (python
           # reads the source next), fresh.py's is valid
           {"name": "usr/lib/python3/", "type": "dir"},
           {"name": "usr/lib/python3/stale.py", "type": "reg", "data": pattern(3000, "stale")},
           {"name": "usr/lib/python3/fresh.py", "type": "reg", "data": pattern(3000, "fresh")},
           {"name": "usr/lib/python3/__pycache__/", "type": "dir"},
           {"name": "usr/lib/python3/__pycache__/stale.cpython-311.pyc", "type": "reg",
            "data": b"\xa7\x0d\x0d\x0a" + (0).to_bytes(4, "little") +
            (MTIME_EPOCH - 60).to_bytes(4, "little") + (3000).to_bytes(4, "little") +
            pattern(500, "stale-pyc")},
           {"name": "usr/lib/python3/__pycache__/fresh.cpython-311.pyc", "type": "reg",
            "data": b"\xa7\x0d\x0d\x0a" + (0).to_bytes(4, "little") +
            MTIME_EPOCH.to_bytes(4, "little") + (3000).to_bytes(4, "little") +
            pattern(500, "fresh-pyc")}]


def corrupt_ra(toc):
    for e in toc:
        if e["name"] == "data/big" and e.get("chunkOffset", 0) == 2 << 16:
            e["chunkDigest"] = sha(b"not the chunk")


def layers():
    out = {}
    out["ra"] = build(RA, mutate=corrupt_ra)
    out["startup"] = build(STARTUP)
    out["valid"] = build(BASE, prefetch=["bin/hello", "etc/conf"])
    out["legacy"] = build(BASE, legacy=True)
    out["corrupt"] = build(BASE, mutate=corrupt_big)
    out["hostile"] = build(BASE, mutate=hostile)
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w:gz") as t:
        ti = tarfile.TarInfo("plain")
        ti.size = 5
        t.addfile(ti, io.BytesIO(b"plain"))
    out["plain"] = (plain.getvalue(), None)
    return out


def bigtoc():
    """A 12 MiB layer whose TOC member (~76 KiB: a chunk per 8 KiB of random
    data) is bigger than a fixed 64 KiB tail but within blob/128 (~97 KiB):
    footer and TOC in one Range request. Served only (gen skips it)."""
    data = random.Random(7).randbytes(12 << 20)
    return build([{"name": "data", "type": "dir"},
                  {"name": "data/f", "type": "reg", "data": data}], chunk_size=8 << 10)


def summary(ls):
    s = {}
    for name, (blob, toc) in ls.items():
        s[name] = {"digest": sha(blob), "size": len(blob),
                   "toc_digest": sha(toc) if toc else None}
    s["big_digest"] = sha(BIG)
    # chunk digests of the read-ahead layer's files
    s["ra"]["chunks"] = {e["name"]: sha(e["data"]) for e in RA if e["type"] == "reg"}
    s["startup"]["chunks"] = {
        e["name"]: [sha(e["data"][i:i + (1 << 16)]) for i in range(0, len(e["data"]), 1 << 16)]
        for e in STARTUP if e["type"] == "reg"}
    big = [e["data"] for e in RA if e["name"] == "data/big"][0]
    s["ra"]["big_chunks"] = [sha(big[i:i + (1 << 16)]) for i in range(0, len(big), 1 << 16)]
    return s


def gen(d):
    ls = layers()
    os.makedirs(d, exist_ok=True)
    for name, (blob, toc) in ls.items():
        with open(os.path.join(d, name + ".blob"), "wb") as f:
            f.write(blob)
        if toc:
            with open(os.path.join(d, name + ".toc.json"), "wb") as f:
                f.write(toc)
    print(json.dumps(summary(ls)))


STATS = {"bytes": 0, "requests": 0, "tails": 0}
FAIL_FROM = [-1]
LOCK = threading.Lock()


def serve(d):
    ls = layers()
    ls["bigtoc"] = bigtoc()
    blobs = {}
    manifests = {}
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    blobs[sha(config)] = config
    for name, (blob, toc) in ls.items():
        blobs[sha(blob)] = blob
        layer = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                 "digest": sha(blob), "size": len(blob)}
        if toc:
            layer["annotations"] = {"containerd.io/snapshot/stargz/toc.digest": sha(toc)}
        m = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                   "digest": sha(config), "size": len(config)},
                        "layers": [layer]}).encode()
        manifests[name] = m
        manifests["norange" + name] = m
        blobs[sha(m)] = m
    # "multi": an image of two eStargz layers, ra then valid
    descs = []
    for name in ("ra", "valid"):
        blob, toc = ls[name]
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": sha(blob), "size": len(blob),
                      "annotations": {"containerd.io/snapshot/stargz/toc.digest": sha(toc)}})
    m = json.dumps({"schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": sha(config), "size": len(config)},
                    "layers": descs}).encode()
    manifests["multi"] = m
    blobs[sha(m)] = m

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def send(self, code, body=b"", headers=None, head=False):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
                if self.path == "/stats":
                    return
                with LOCK:
                    STATS["bytes"] += len(body)

        def route(self, head):
            with LOCK:
                STATS["requests"] += 1
            p = self.path.split("?")[0]
            if p == "/stats":
                return self.send(200, json.dumps(STATS).encode())
            if p == "/fail":
                FAIL_FROM[0] = int(self.path.split("from=")[1])
                return self.send(200, b"{}")
            if p == "/v2/":
                return self.send(200, b"{}", head=head)
            parts = p.split("/")
            # /v2/<layer>/img/(manifests|blobs)/<ref>
            if len(parts) != 6 or parts[0] != "" or parts[1] != "v2":
                return self.send(404, head=head)
            repo, kind, ref = parts[2], parts[4], parts[5]
            if kind == "manifests":
                m = manifests.get(repo)
                if m is None:
                    return self.send(404, head=head)
                if ref != "v1" and ref != sha(m):
                    return self.send(404, head=head)
                return self.send(200, m, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                          "Docker-Content-Digest": sha(m)}, head)
            b = blobs.get(ref)
            if b is None:
                return self.send(404, head=head)
            rng = self.headers.get("Range")
            if rng and FAIL_FROM[0] >= 0 and \
                    max(int(x.partition("-")[0]) for x in rng[6:].split(",")) >= FAIL_FROM[0]:
                return self.send(503, head=head)
            if rng and not repo.startswith("norange") and rng.startswith("bytes=") and \
                    "," in rng:
                # several ranges: multipart/byteranges (stats count the data only)
                out, data = b"", 0
                for one in rng[6:].split(","):
                    x, _, y = one.partition("-")
                    x, y = int(x), min(int(y), len(b) - 1)
                    out += (b"--BOUNDARY\r\nContent-Range: bytes %d-%d/%d\r\n\r\n"
                            % (x, y, len(b))) + b[x:y + 1] + b"\r\n"
                    data += y + 1 - x
                    if y == len(b) - 1:
                        with LOCK:
                            STATS["tails"] += 1
                out += b"--BOUNDARY--\r\n"
                with LOCK:
                    STATS["bytes"] -= len(out) - data
                return self.send(206, out, {"Content-Type":
                                            "multipart/byteranges; boundary=BOUNDARY"}, head)
            if rng and not repo.startswith("norange") and rng.startswith("bytes="):
                a, _, z = rng[6:].partition("-")
                a = int(a)
                z = min(int(z) if z else len(b) - 1, len(b) - 1)
                if z == len(b) - 1:
                    with LOCK:
                        STATS["tails"] += 1
                return self.send(206, b[a:z + 1],
                                 {"Content-Range": "bytes %d-%d/%d" % (a, z, len(b))}, head)
            return self.send(200, b, None, head)

        def do_GET(self):
            self.route(False)

        def do_HEAD(self):
            self.route(True)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(srv.server_address[1], flush=True)
    print(json.dumps(summary(ls)), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    {"gen": gen, "serve": serve}[sys.argv[1]](sys.argv[2] if len(sys.argv) > 2 else ".")

#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A misbehaving OCI registry for test-client.c, on 127.0.0.1.

Prints two lines on stdout: "MAINPORT BLOBPORT", then a JSON object with
the digests and sizes of what it serves. The repository name picks the
behaviour:
  plain/img       a well-behaved registry, no auth
  bearer/img      anonymous bearer tokens from /token
  bearerauth/img  bearer tokens only for alice:secret (Basic to /token)
  basic/img       HTTP Basic alice:secret
  liar/img        manifests by digest come back with other bytes
  norange/img     blob GETs ignore Range (200 + whole body)
  onepart/img     several ranges are answered with the first one only
  merge/img       several ranges are answered with one part covering them all
  shuffle/img     several ranges: multipart, parts in reverse order, a
                  quoted boundary, a preamble and bare-LF header lines
  flaky/img       every path answers 503 (Retry-After: 0) twice first
  redirect/img    blob GETs redirect to BLOBPORT; bearer auth
  truncate/img    the first blob GET is cut off half-way
  nohead/img      HEAD is 405, only GET works
  big/img         tag "v1" is a 5 MiB manifest
Tags: "v1" = the manifest, "multi" = an index of it for two platforms.
GET /stats gives counters as JSON.
"""
import base64
import hashlib
import json
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_layer(n):
    out, h = bytearray(), b"strata"
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


LAYER = make_layer(300000)
CONFIG = json.dumps({
    "architecture": "amd64", "os": "linux",
    "config": {"Cmd": ["/bin/sh"]},
    "rootfs": {"type": "layers", "diff_ids": [digest(b"uncompressed")]},
}).encode()
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": digest(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest(LAYER), "size": len(LAYER),
                "annotations": {"org.example.note": "hello"}}],
}).encode()
INDEX = json.dumps({
    "schemaVersion": 2, "mediaType": OCI_INDEX,
    "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest(MANIFEST), "size": len(MANIFEST),
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": digest(MANIFEST), "size": len(MANIFEST),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ],
}).encode()
BIG = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "pad": "x" * (5 << 20)}).encode()

BLOBS = {digest(LAYER): LAYER, digest(CONFIG): CONFIG}
MANIFESTS = {digest(MANIFEST): (MANIFEST, OCI_MANIFEST), digest(INDEX): (INDEX, OCI_INDEX),
             digest(BIG): (BIG, OCI_MANIFEST)}
TAGS = {"v1": digest(MANIFEST), "multi": digest(INDEX)}

BASIC_OK = "Basic " + base64.b64encode(b"alice:secret").decode()

lock = threading.Lock()
stats = {"requests": 0, "token_requests": 0, "redirect_requests": 0,
         "redirect_with_auth": 0, "blob_requests": 0, "multirange_requests": 0}
tokens = set()
flaky_counts = {}
truncated = set()
ports = {}


def bump(k):
    with lock:
        stats[k] += 1


def parse_ranges(h, total):
    if not h or not h.startswith("bytes="):
        return None
    out = []
    for one in h[6:].split(","):
        a, _, b = one.strip().partition("-")
        a = int(a)
        b = int(b) if b else total - 1
        out.append((a, min(b, total - 1)))
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body=b"", ctype="application/json", headers=None, head=False):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def error(self, code, ecode, msg, headers=None, head=False):
        body = json.dumps({"errors": [{"code": ecode, "message": msg}]}).encode()
        self.send(code, body, headers=headers, head=head)

    def send_blob(self, data, head=False, ignore_range=False, repo=""):
        rs = None if ignore_range else parse_ranges(self.headers.get("Range"), len(data))
        if rs is None:
            self.send(200, data, "application/octet-stream",
                      {"Docker-Content-Digest": digest(data)}, head)
            return
        if len(rs) > 1:
            bump("multirange_requests")
            if repo == "onepart/img":
                rs = rs[:1]
            elif repo == "merge/img":
                rs = [(rs[0][0], rs[-1][1])]
            else:
                self.send_multipart(data, rs, head, repo == "shuffle/img")
                return
        a, b = rs[0]
        if a >= len(data):
            self.send(416, b"", head=head)
            return
        self.send(206, data[a:b + 1], "application/octet-stream",
                  {"Content-Range": "bytes %d-%d/%d" % (a, b, len(data))}, head)

    def send_multipart(self, data, rs, head, odd):
        boundary = "b0und4ry" + secrets.token_hex(8)
        nl = b"\n" if odd else b"\r\n"
        body = b"a preamble to ignore\r\n" if odd else b""
        for a, b in (reversed(rs) if odd else rs):
            body += b"--" + boundary.encode() + b"\r\n"
            body += b"Content-Type: application/octet-stream" + nl
            body += ("Content-Range: bytes %d-%d/%d" % (a, b, len(data))).encode() + nl + nl
            body += data[a:b + 1] + b"\r\n"
        body += b"--" + boundary.encode() + b"--\r\n"
        ctype = 'multipart/byteranges; boundary=%s' % (
            '"%s"' % boundary if odd else boundary)
        self.send(206, body, ctype, None, head)

    def authorized(self, repo, head):
        """True if the request may go on; otherwise an answer was sent."""
        auth = self.headers.get("Authorization", "")
        if repo in ("bearer/img", "bearerauth/img", "redirect/img"):
            if auth.startswith("Bearer ") and auth[7:] in tokens:
                return True
            realm = "http://127.0.0.1:%d/token" % ports["main"]
            self.error(401, "UNAUTHORIZED", "authentication required", {
                "WWW-Authenticate": 'Bearer realm="%s",service="fake",scope="repository:%s:pull"'
                % (realm, repo)}, head)
            return False
        if repo == "basic/img":
            if auth == BASIC_OK:
                return True
            self.error(401, "UNAUTHORIZED", "authentication required",
                       {"WWW-Authenticate": 'Basic realm="fake"'}, head)
            return False
        return True

    def handle_token(self):
        bump("token_requests")
        q = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&")) \
            if "?" in self.path else {}
        scope = q.get("scope", "").replace("%3A", ":").replace("%2F", "/")
        if "bearerauth" in scope and self.headers.get("Authorization") != BASIC_OK:
            self.error(401, "UNAUTHORIZED", "bad credentials")
            return
        t = secrets.token_hex(8)
        with lock:
            tokens.add(t)
        self.send(200, json.dumps({"token": t, "expires_in": 300}).encode())

    def route(self, head):
        bump("requests")
        path = self.path.split("?", 1)[0]
        if path == "/stats":
            with lock:
                self.send(200, json.dumps(stats).encode())
            return
        if path.startswith("/token"):
            self.handle_token()
            return
        if path == "/v2/":
            self.send(200, b"{}")
            return
        if not path.startswith("/v2/"):
            self.error(404, "NOT_FOUND", "no such path", head=head)
            return
        rest = path[4:]
        kind = "manifests" if "/manifests/" in rest else "blobs" if "/blobs/" in rest else None
        if not kind:
            self.error(404, "NAME_UNKNOWN", "bad path", head=head)
            return
        repo, _, ref = rest.partition("/" + kind + "/")
        if repo == "flaky/img":
            with lock:
                n = flaky_counts.get(path + str(head), 0)
                flaky_counts[path + str(head)] = n + 1
            if n < 2:
                self.error(503, "UNAVAILABLE", "try again", {"Retry-After": "0"}, head)
                return
        if not self.authorized(repo, head):
            return
        if kind == "manifests":
            if repo == "nohead/img" and head:
                self.send(405, b"", head=True)
                return
            if repo == "big/img" and ref == "v1":
                ref = digest(BIG)
            d = TAGS.get(ref, ref)
            if d not in MANIFESTS:
                self.error(404, "MANIFEST_UNKNOWN", "manifest unknown", head=head)
                return
            body, mt = MANIFESTS[d]
            if repo == "liar/img" and ref.startswith("sha256:"):
                body = body + b" "
            self.send(200, body, mt, {"Docker-Content-Digest": d}, head)
            return
        bump("blob_requests")
        if ref not in BLOBS:
            self.error(404, "BLOB_UNKNOWN", "blob unknown", head=head)
            return
        data = BLOBS[ref]
        if repo == "redirect/img":
            self.send(307, b"", headers={
                "Location": "http://127.0.0.1:%d/blob/%s" % (ports["blob"], ref)}, head=head)
            return
        if repo == "truncate/img" and not head and not self.headers.get("Range"):
            with lock:
                first = ref not in truncated
                truncated.add(ref)
            if first:
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
        self.send_blob(data, head, ignore_range=(repo == "norange/img"), repo=repo)

    def do_GET(self):
        self.route(False)

    def do_HEAD(self):
        self.route(True)


class BlobHandler(Handler):
    """The "object store" that registry blob URLs redirect to."""

    def route(self, head):
        bump("redirect_requests")
        if self.headers.get("Authorization"):
            bump("redirect_with_auth")
            self.send(400, b"registry credentials leaked to the object store", head=head)
            return
        d = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        if d not in BLOBS:
            self.send(404, b"", head=head)
            return
        self.send_blob(BLOBS[d], head)


def main():
    main_srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    blob_srv = ThreadingHTTPServer(("127.0.0.1", 0), BlobHandler)
    main_srv.daemon_threads = blob_srv.daemon_threads = True
    ports["main"] = main_srv.server_address[1]
    ports["blob"] = blob_srv.server_address[1]
    threading.Thread(target=blob_srv.serve_forever, daemon=True).start()
    print("%d %d" % (ports["main"], ports["blob"]))
    print(json.dumps({
        "manifest": digest(MANIFEST), "manifest_size": len(MANIFEST),
        "index": digest(INDEX), "index_size": len(INDEX),
        "config": digest(CONFIG), "config_size": len(CONFIG),
        "layer": digest(LAYER), "layer_size": len(LAYER),
    }))
    sys.stdout.flush()
    main_srv.serve_forever()


if __name__ == "__main__":
    main()

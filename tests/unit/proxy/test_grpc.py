#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""End-to-end tests of proxy/'s gRPC server.

Clients: grpcio (gRPC's C-core, a real gRPC implementation) for the normal
paths, and h2 over a raw socket where the test must see or produce the exact
HTTP/2 frames (trailers-only, 415, garbage, truncated frames).

Message classes come from proxy/'s own .proto files and tests/unit/proxy/
test.proto, compiled with protoc --python_out at test time. The
google.protobuf well-known types are the library's own: Strata's copies have
the same file names and wire format, and defining them twice in one Python
process is an error.

usage: test_grpc.py TEST_SERVER PROXY_PROTO_ROOT TEST_PROTO_DIR PROTOC [unittest args]
Set PROXY_TEST_VALGRIND=1 to run every server under valgrind (leak check;
smaller workloads).
"""
import concurrent.futures
import importlib.util
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
import h2.config
import h2.connection
import h2.events

SERVER, PROTO_ROOT, TEST_PROTO_DIR, PROTOC = sys.argv[1:5]
del sys.argv[1:5]
VALGRIND = os.environ.get("PROXY_TEST_VALGRIND") == "1"
SCALE = 0.1 if VALGRIND else 1.0

GEN = tempfile.mkdtemp(prefix="strata-proxy-pb-")
subprocess.run(
    [PROTOC, "-I", PROTO_ROOT, "-I", TEST_PROTO_DIR, "--python_out=" + GEN,
     "containerd/types/mount.proto",
     "containerd/services/snapshots/v1/snapshots.proto",
     "containerd/services/content/v1/content.proto",
     "grpc/health/v1/health.proto",
     "test.proto"],
    check=True)
sys.path.insert(0, GEN)
import test_pb2 as pb  # noqa: E402


def load(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(GEN, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# "grpc" is the grpcio package, so the health module is loaded by path.
health_pb = load("health_pb2", "grpc/health/v1/health_pb2.py")
from containerd.services.content.v1 import content_pb2 as cpb  # noqa: E402
from containerd.services.snapshots.v1 import snapshots_pb2 as spb  # noqa: E402
from google.protobuf import empty_pb2  # noqa: E402

MiB = 1024 * 1024
ECHO = "/strata.test.v1.Test/Echo"
STREAM = "/strata.test.v1.Test/Stream"
BIDI = "/strata.test.v1.Test/Bidi"
STATS = "/strata.test.v1.Test/Stats"


class Server:
    """One proxy-test-server process on a socket in its own temp dir."""

    def __init__(self, address=None, drain_ms=None, root=None):
        self.dir = tempfile.mkdtemp(prefix="strata-proxy-")
        self.address = address or os.path.join(self.dir, "run", "strata.sock")
        cmd = [SERVER, self.address]
        if drain_ms is not None:
            cmd.append(str(drain_ms))
        if VALGRIND:
            cmd = ["valgrind", "-q", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                   "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99"] + cmd
        env = dict(os.environ)
        if root:
            env["PROXY_TEST_ROOT"] = root
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            err = self.proc.stderr.read().decode()
            self.proc.wait()
            raise RuntimeError("server did not start: %r %s" % (line, err))

    def target(self):
        return "unix:" + self.address

    def channel(self, **opts):
        options = [("grpc.max_receive_message_length", 64 * MiB),
                   ("grpc.max_send_message_length", 64 * MiB)]
        options += list(opts.items())
        return grpc.insecure_channel(self.target(), options=options)

    def stop(self, timeout=60):
        """SIGTERM, wait, return (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        err = self.proc.stderr.read().decode()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, err


def unary(ch, path, req, resp_cls, **kw):
    return ch.unary_unary(path, request_serializer=req.__class__.SerializeToString,
                          response_deserializer=resp_cls.FromString)(req, **kw)


def echo(ch, **kw):
    timeout = kw.pop("timeout", None)
    return unary(ch, ECHO, pb.EchoRequest(**kw), pb.EchoResponse, timeout=timeout)


def stats(ch):
    return unary(ch, STATS, pb.StatsRequest(), pb.StatsResponse)


def wait_for(pred, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


class RawH2:
    """A raw HTTP/2 client connection (prior knowledge) over the unix socket."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, path, body=b"", content_type="application/grpc", extra=(), end=True):
        sid = self.conn.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":path", path),
                   (":authority", "localhost"), ("content-type", content_type),
                   ("te", "trailers")] + list(extra)
        self.conn.send_headers(sid, headers, end_stream=(end and not body))
        if body:
            self.conn.send_data(sid, body, end_stream=end)
        self.flush()
        return sid

    def collect(self, sid, timeout=10):
        """Events of stream sid until it ends; returns (headers list, data, reset)."""
        headers, data, reset = [], b"", None
        end = time.time() + timeout
        while time.time() < end:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            for ev in self.conn.receive_data(chunk):
                if getattr(ev, "stream_id", None) != sid:
                    continue
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers.append(dict(ev.headers))
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset):
                    reset = ev.error_code
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                    self.flush()
                    return headers, data, reset
            self.flush()
        raise AssertionError("stream %d did not end: %r" % (sid, headers))

    def close(self):
        self.sock.close()


def frame(msg_bytes, flags=0):
    return bytes([flags]) + len(msg_bytes).to_bytes(4, "big") + msg_bytes


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.server = Server()
        self.ch = self.server.channel()

    def tearDown(self):
        self.ch.close()
        code, err = self.server.stop()
        self.assertEqual(code, 0, "server exit %d: %s" % (code, err))

    # --- unary ---

    def test_unary_ok(self):
        r = echo(self.ch, message="hello", payload=b"\x00\x01" * 100, seq=7)
        self.assertEqual((r.message, r.payload, r.seq), ("hello", b"\x00\x01" * 100, 7))
        # An empty message is a valid request (zero-length protobuf).
        self.assertEqual(echo(self.ch).message, "")

    def test_unary_errors_map_like_errdefs(self):
        cases = [(2, grpc.StatusCode.NOT_FOUND), (17, grpc.StatusCode.ALREADY_EXISTS),
                 (22, grpc.StatusCode.INVALID_ARGUMENT), (11, grpc.StatusCode.UNAVAILABLE),
                 (77, grpc.StatusCode.FAILED_PRECONDITION), (38, grpc.StatusCode.UNIMPLEMENTED),
                 (34, grpc.StatusCode.OUT_OF_RANGE), (28, grpc.StatusCode.RESOURCE_EXHAUSTED),
                 (5, grpc.StatusCode.UNKNOWN)]
        for errno_code, code in cases:
            with self.assertRaises(grpc.RpcError) as cm:
                echo(self.ch, errno_code=errno_code, error_message="thing %d failed" % errno_code)
            self.assertEqual(cm.exception.code(), code)
            self.assertEqual(cm.exception.details(), "thing %d failed" % errno_code)
        # Non-ASCII and '%' survive the percent-encoding of grpc-message.
        with self.assertRaises(grpc.RpcError) as cm:
            echo(self.ch, errno_code=2, error_message="blob \"naïve\" 100% gone\nline 2")
        self.assertEqual(cm.exception.details(), "blob \"naïve\" 100% gone\nline 2")

    def test_trailers_only_and_full_response(self):
        raw = RawH2(self.server.address)
        sid = raw.request(ECHO, frame(pb.EchoRequest(errno_code=2, error_message="no").SerializeToString()))
        headers, data, _ = raw.collect(sid)
        # One HEADERS frame carrying :status, content-type and the status.
        self.assertEqual(len(headers), 1)
        h = headers[0]
        self.assertEqual((h[":status"], h["content-type"], h["grpc-status"], h["grpc-message"]),
                         ("200", "application/grpc", "5", "no"))
        self.assertEqual(data, b"")
        # A successful call: HEADERS, one message, trailers.
        sid = raw.request(ECHO, frame(pb.EchoRequest(message="x").SerializeToString()))
        headers, data, _ = raw.collect(sid)
        self.assertEqual(len(headers), 2)
        self.assertNotIn("grpc-status", headers[0])
        self.assertEqual(headers[1]["grpc-status"], "0")
        self.assertEqual(pb.EchoResponse.FromString(data[5:]).message, "x")
        self.assertEqual(int.from_bytes(data[1:5], "big"), len(data) - 5)
        raw.close()

    def test_unknown_method_and_service(self):
        with self.assertRaises(grpc.RpcError) as cm:
            unary(self.ch, "/strata.test.v1.Test/Nope", pb.StatsRequest(), pb.StatsResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("unknown method Nope", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            unary(self.ch, "/no.Such/Thing", pb.StatsRequest(), pb.StatsResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertIn("unknown service no.Such", cm.exception.details())

    def test_wrong_content_type_is_415(self):
        raw = RawH2(self.server.address)
        sid = raw.request(ECHO, frame(b""), content_type="application/json")
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[0][":status"], "415")
        raw.close()
        self.assertEqual(echo(self.ch, message="still").message, "still")

    def test_health(self):
        check = lambda service: unary(self.ch, "/grpc.health.v1.Health/Check",
                                      health_pb.HealthCheckRequest(service=service),
                                      health_pb.HealthCheckResponse)
        self.assertEqual(check("").status, health_pb.HealthCheckResponse.SERVING)
        self.assertEqual(check("strata.test.v1.Test").status, health_pb.HealthCheckResponse.SERVING)
        with self.assertRaises(grpc.RpcError) as cm:
            check("no.such.Service")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    # --- limits ---

    def test_oversized_message(self):
        big = b"x" * (16 * MiB + 1)
        with self.assertRaises(grpc.RpcError) as cm:
            echo(self.ch, payload=big)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("larger than max", cm.exception.details())
        # Just under the limit passes both ways.
        ok = b"y" * (16 * MiB - 64)
        self.assertEqual(len(echo(self.ch, payload=ok).payload), len(ok))
        self.assertEqual(echo(self.ch, message="after").message, "after")

    def test_deadline(self):
        t0 = time.time()
        with self.assertRaises(grpc.RpcError) as cm:
            echo(self.ch, sleep_ms=5000, timeout=0.3)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.time() - t0, 3)
        # The server answers DEADLINE_EXCEEDED itself from grpc-timeout,
        # without the client cancelling.
        raw = RawH2(self.server.address)
        sid = raw.request(ECHO, frame(pb.EchoRequest(sleep_ms=5000).SerializeToString()),
                          extra=[("grpc-timeout", "200m")])
        t0 = time.time()
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "4")
        self.assertLess(time.time() - t0, 3)
        raw.close()
        # And the handler saw the deadline, not a plain cancel.
        self.assertTrue(wait_for(lambda: stats(self.ch).deadline >= 1))

    # --- streaming ---

    def test_server_stream_slow_reader_does_not_block_others(self):
        count, size = 4000, 64 * 1024  # 250 MiB if it were all produced
        it = self.ch.unary_stream(STREAM, request_serializer=pb.EchoRequest.SerializeToString,
                                  response_deserializer=pb.EchoResponse.FromString)(
            pb.EchoRequest(count=count, size=size))
        first = next(it)
        self.assertEqual((first.seq, len(first.payload)), (0, size))
        time.sleep(0.5)  # the producer fills the windows and must now be parked
        t0 = time.time()
        n = int(50 * SCALE) or 5
        for i in range(n):
            self.assertEqual(echo(self.ch, message=str(i)).message, str(i))
        elapsed = time.time() - t0
        self.assertLess(elapsed, 5 if VALGRIND else 1.0)
        # Resume reading: the stream continues in order.
        for i in range(1, 50):
            self.assertEqual(next(it).seq, i)
        it.cancel()
        self.assertTrue(wait_for(lambda: stats(self.ch).cancelled >= 1))
        self.assertTrue(wait_for(lambda: stats(self.ch).active == 0))
        print("\n  quick unary calls during a stalled stream: %d in %.3f s" % (n, elapsed),
              file=sys.stderr)

    def test_server_stream_many_messages(self):
        count = int(20000 * SCALE)
        it = self.ch.unary_stream(STREAM, request_serializer=pb.EchoRequest.SerializeToString,
                                  response_deserializer=pb.EchoResponse.FromString)(
            pb.EchoRequest(count=count, size=10, message="m"))
        seqs = [r.seq for r in it]
        self.assertEqual(seqs, list(range(count)))

    def test_client_cancel_mid_stream(self):
        it = self.ch.unary_stream(STREAM, request_serializer=pb.EchoRequest.SerializeToString,
                                  response_deserializer=pb.EchoResponse.FromString)(
            pb.EchoRequest(count=1000, size=100, sleep_ms=10))
        for i in range(3):
            self.assertEqual(next(it).seq, i)
        it.cancel()
        self.assertTrue(wait_for(lambda: stats(self.ch).cancelled >= 1))
        # A unary handler blocked in its sleep is cancelled too, and its
        # cancel callback runs.
        fut = self.ch.unary_unary(ECHO, request_serializer=pb.EchoRequest.SerializeToString,
                                  response_deserializer=pb.EchoResponse.FromString).future(
            pb.EchoRequest(sleep_ms=10000))
        self.assertTrue(wait_for(lambda: stats(self.ch).active == 1))
        fut.cancel()
        self.assertTrue(wait_for(lambda: stats(self.ch).cancel_callbacks >= 1))
        self.assertTrue(wait_for(lambda: stats(self.ch).active == 0))

    def test_bidi_ordering_1mib(self):
        n = max(int(256 * SCALE), 8)
        payloads = [bytes([i % 251]) * MiB for i in range(n)]
        call = self.ch.stream_stream(BIDI, request_serializer=pb.EchoRequest.SerializeToString,
                                     response_deserializer=pb.EchoResponse.FromString)
        t0 = time.time()
        got = 0
        for i, r in enumerate(call(pb.EchoRequest(seq=i, payload=p) for i, p in enumerate(payloads))):
            self.assertEqual(r.seq, i)
            self.assertEqual(r.payload, payloads[i])
            got += 1
        elapsed = time.time() - t0
        self.assertEqual(got, n)
        print("\n  bidi echo: %d x 1 MiB each way in %.2f s = %.0f MB/s up, %.0f MB/s round trip"
              % (n, elapsed, n * MiB / elapsed / 1e6, 2 * n * MiB / elapsed / 1e6), file=sys.stderr)

    def test_bidi_error_and_empty(self):
        call = self.ch.stream_stream(BIDI, request_serializer=pb.EchoRequest.SerializeToString,
                                     response_deserializer=pb.EchoResponse.FromString)
        self.assertEqual(list(call(iter([]))), [])
        with self.assertRaises(grpc.RpcError) as cm:
            list(call(iter([pb.EchoRequest(seq=1), pb.EchoRequest(errno_code=16, error_message="locked")])))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(cm.exception.details(), "locked")

    def test_concurrent_200_over_channels(self):
        chans = [self.server.channel() for _ in range(4)]
        n = 200
        t0 = time.time()
        futs = []
        for i in range(n):
            ch = chans[i % len(chans)]
            futs.append(ch.unary_unary(ECHO, request_serializer=pb.EchoRequest.SerializeToString,
                                       response_deserializer=pb.EchoResponse.FromString).future(
                pb.EchoRequest(message=str(i), sleep_ms=50)))
        for i, f in enumerate(futs):
            self.assertEqual(f.result(timeout=60).message, str(i))
        elapsed = time.time() - t0
        # 200 x 50 ms serially would be 10 s; the pool runs them side by side.
        self.assertLess(elapsed, 10 if VALGRIND else 3)
        for ch in chans:
            ch.close()
        print("\n  200 concurrent 50 ms calls over 4 channels: %.2f s" % elapsed, file=sys.stderr)

    # --- bad input ---

    def test_garbage_and_truncated_frames(self):
        # Not an HTTP/2 preface at all.
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.server.address)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(4096))
        while s.recv(65536):
            pass  # the server hangs up (possibly after SETTINGS/GOAWAY)
        s.close()
        # A valid preface, then half a frame header, then hang up.
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.server.address)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x06\x04")
        s.close()
        # A frame claiming more payload than it has.
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.server.address)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
                  + b"\x00\x40\x00\x01\x05\x00\x00\x00\x01" + b"\x82")
        s.close()
        # Random bytes after a valid preface.
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.server.address)
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(8192))
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        s.close()
        self.assertEqual(echo(self.ch, message="alive").message, "alive")

    def test_bad_messages_on_one_stream(self):
        raw = RawH2(self.server.address)
        # Undecodable protobuf: INTERNAL, as grpc-go answers.
        sid = raw.request(ECHO, frame(b"\xff\xff\xff\xff"))
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "13")
        self.assertIn("unmarshal", headers[-1]["grpc-message"])
        # A message cut short by END_STREAM.
        sid = raw.request(ECHO, frame(b"\x0a\x05hello")[:-2])
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "13")
        # No message at all.
        sid = raw.request(ECHO, b"")
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "13")
        # Compressed flag without an encoding.
        sid = raw.request(ECHO, frame(b"", flags=1))
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "12")
        # Malformed grpc-timeout.
        sid = raw.request(ECHO, frame(b""), extra=[("grpc-timeout", "soon")])
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "13")
        # Oversized length prefix; the server answers before the body ends
        # and resets the rest of the stream.
        sid = raw.request(ECHO, (17 * MiB).to_bytes(4, "big").rjust(5, b"\0") + b"x" * 100, end=False)
        headers, _, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "8")
        # The connection itself still works.
        sid = raw.request(ECHO, frame(pb.EchoRequest(message="ok").SerializeToString()))
        headers, data, _ = raw.collect(sid)
        self.assertEqual(headers[-1]["grpc-status"], "0")
        raw.close()

    def test_disconnect_mid_stream(self):
        for _ in range(3):
            raw = RawH2(self.server.address)
            sid = raw.request(BIDI, frame(pb.EchoRequest(seq=1).SerializeToString()) + b"\0\0\0\x10", end=False)
            raw.request(STREAM, frame(pb.EchoRequest(count=100000, size=1000).SerializeToString()))
            time.sleep(0.1)
            raw.close()
        self.assertTrue(wait_for(lambda: stats(self.ch).active == 0))
        self.assertEqual(echo(self.ch, message="alive").message, "alive")

    def test_idle_clients_come_and_go(self):
        for _ in range(20):
            ch = self.server.channel()
            self.assertEqual(echo(ch, message="a").message, "a")
            ch.close()
        socks = []
        for _ in range(50):
            s = socket.socket(socket.AF_UNIX)
            s.connect(self.server.address)
            socks.append(s)
        for s in socks:
            s.close()
        self.assertEqual(echo(self.ch, message="b").message, "b")


class LifecycleTest(unittest.TestCase):
    def test_socket_modes_and_single_instance(self):
        srv = Server()
        try:
            st = os.stat(srv.address)
            self.assertTrue(stat.S_ISSOCK(st.st_mode))
            self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
            self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(srv.address)).st_mode), 0o711)
            p = subprocess.run([SERVER, srv.address], capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 1)
            self.assertIn(b"another server is already listening", p.stderr)
            # The first server is unaffected.
            ch = srv.channel()
            self.assertEqual(echo(ch, message="x").message, "x")
            ch.close()
            # A killed server leaves a stale socket; the next one replaces it.
            srv.proc.kill()
            srv.proc.wait()
            self.assertTrue(os.path.exists(srv.address))
            srv2 = Server(address=srv.address)
            ch = srv2.channel()
            self.assertEqual(echo(ch, message="y").message, "y")
            ch.close()
            code, err = srv2.stop()
            self.assertEqual(code, 0, err)
            self.assertFalse(os.path.exists(srv.address))
        finally:
            if srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait()

    def test_not_a_socket(self):
        d = tempfile.mkdtemp(prefix="strata-proxy-")
        path = os.path.join(d, "file")
        open(path, "w").close()
        p = subprocess.run([SERVER, path], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"is not a socket", p.stderr)

    def test_stop_drains_in_flight_call(self):
        srv = Server()
        ch = srv.channel()
        fut = ch.unary_unary(ECHO, request_serializer=pb.EchoRequest.SerializeToString,
                             response_deserializer=pb.EchoResponse.FromString).future(
            pb.EchoRequest(message="drained", sleep_ms=1000))
        self.assertTrue(wait_for(lambda: stats(ch).active == 1))
        t0 = time.time()
        srv.proc.send_signal(signal.SIGTERM)
        self.assertEqual(fut.result(timeout=30).message, "drained")
        code, err = srv.stop()
        self.assertEqual(code, 0, err)
        self.assertLess(time.time() - t0, 10 if VALGRIND else 3)
        self.assertFalse(os.path.exists(srv.address))
        ch.close()

    def test_stop_cancels_after_drain_timeout(self):
        srv = Server(drain_ms=300)
        ch = srv.channel()
        fut = ch.unary_unary(ECHO, request_serializer=pb.EchoRequest.SerializeToString,
                             response_deserializer=pb.EchoResponse.FromString).future(
            pb.EchoRequest(sleep_ms=60000))
        self.assertTrue(wait_for(lambda: stats(ch).active == 1))
        t0 = time.time()
        code, err = srv.stop()
        self.assertEqual(code, 0, err)
        self.assertLess(time.time() - t0, 10 if VALGRIND else 3)
        with self.assertRaises(grpc.RpcError) as cm:
            fut.result(timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        ch.close()


CONTENT = "/containerd.services.content.v1.Content/"
SNAPS = "/containerd.services.snapshots.v1.Snapshots/"


class ServicesTest(unittest.TestCase):
    """containerd's Content and Snapshots services over real stores."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="strata-proxy-root-")
        self.server = Server(root=self.root)
        self.ch = self.server.channel()

    def tearDown(self):
        self.ch.close()
        code, err = self.server.stop()
        self.assertEqual(code, 0, "server exit %d: %s" % (code, err))
        subprocess.run(["rm", "-rf", self.root])

    def c(self, method, req, resp_cls, **kw):
        return unary(self.ch, CONTENT + method, req, resp_cls, **kw)

    def s(self, method, req, resp_cls, **kw):
        return unary(self.ch, SNAPS + method, req, resp_cls, **kw)

    def write(self, ref, data, chunk=MiB, expected=None, labels=None):
        import hashlib
        dgst = "sha256:" + hashlib.sha256(data).hexdigest()
        W = cpb.WriteContentRequest

        def reqs():
            yield W(action=cpb.STAT, ref=ref, total=len(data))
            for off in range(0, len(data), chunk):
                yield W(action=cpb.WRITE, ref=ref, offset=off, data=data[off:off + chunk])
            yield W(action=cpb.COMMIT, ref=ref, total=len(data), offset=len(data),
                    expected=expected or dgst, labels=labels or {})
        call = self.ch.stream_stream(CONTENT + "Write",
                                     request_serializer=W.SerializeToString,
                                     response_deserializer=cpb.WriteContentResponse.FromString)
        return dgst, list(call(reqs()))

    def test_content_roundtrip(self):
        data = os.urandom(3 * MiB + 123)
        dgst, resps = self.write("default/1/layer", data, labels={"a": "b"})
        self.assertEqual([r.action for r in resps][0], cpb.STAT)
        self.assertEqual(resps[0].offset, 0)
        self.assertEqual(resps[-1].action, cpb.COMMIT)
        self.assertEqual(resps[-1].digest, dgst)
        self.assertEqual(resps[-2].offset, len(data))
        info = self.c("Info", cpb.InfoRequest(digest=dgst), cpb.InfoResponse).info
        self.assertEqual((info.digest, info.size, dict(info.labels)), (dgst, len(data), {"a": "b"}))
        self.assertGreater(info.created_at.seconds, 0)
        read = self.ch.unary_stream(CONTENT + "Read",
                                    request_serializer=cpb.ReadContentRequest.SerializeToString,
                                    response_deserializer=cpb.ReadContentResponse.FromString)
        chunks = list(read(cpb.ReadContentRequest(digest=dgst)))
        self.assertTrue(all(len(c.data) <= MiB for c in chunks))
        self.assertEqual(b"".join(c.data for c in chunks), data)
        part = list(read(cpb.ReadContentRequest(digest=dgst, offset=MiB + 5, size=100)))
        self.assertEqual(part[0].offset, MiB + 5)
        self.assertEqual(b"".join(c.data for c in part), data[MiB + 5:MiB + 105])
        with self.assertRaises(grpc.RpcError) as cm:
            list(read(cpb.ReadContentRequest(digest=dgst, offset=len(data) + 1)))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        # Update: labels.<key> sets one key.
        upd = self.c("Update", cpb.UpdateRequest(info=cpb.Info(digest=dgst, labels={"x.y": "z"}),
                                                 update_mask={"paths": ["labels.x.y"]}),
                     cpb.UpdateResponse).info
        self.assertEqual(dict(upd.labels), {"a": "b", "x.y": "z"})
        listed = self.ch.unary_stream(CONTENT + "List",
                                      request_serializer=cpb.ListContentRequest.SerializeToString,
                                      response_deserializer=cpb.ListContentResponse.FromString)
        self.assertEqual([i.digest for m in listed(cpb.ListContentRequest()) for i in m.info], [dgst])
        # Committing the same content again: AlreadyExists.
        with self.assertRaises(grpc.RpcError) as cm:
            self.write("default/2/again", data)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.c("Delete", cpb.DeleteContentRequest(digest=dgst), empty_pb2.Empty)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c("Info", cpb.InfoRequest(digest=dgst), cpb.InfoResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_content_write_errors_and_status(self):
        W = cpb.WriteContentRequest
        call = self.ch.stream_stream(CONTENT + "Write", request_serializer=W.SerializeToString,
                                     response_deserializer=cpb.WriteContentResponse.FromString)
        with self.assertRaises(grpc.RpcError) as cm:
            list(call(iter([W(action=cpb.STAT)])))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as cm:
            self.write("default/3/bad", b"hello", expected="sha256:" + "0" * 64)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        # Half-close without COMMIT keeps the ingest; Status and ListStatuses see it.
        list(call(iter([W(action=cpb.STAT, ref="default/4/partial", total=10),
                        W(action=cpb.WRITE, ref="default/4/partial", offset=0, data=b"12345")])))
        st = self.c("Status", cpb.StatusRequest(ref="default/4/partial"), cpb.StatusResponse).status
        self.assertEqual((st.ref, st.offset, st.total), ("default/4/partial", 5, 10))
        sts = self.c("ListStatuses", cpb.ListStatusesRequest(filters=['ref~="partial"']),
                     cpb.ListStatusesResponse).statuses
        self.assertEqual([s.ref for s in sts], ["default/4/partial"])
        # Resume from the returned offset.
        resp = list(call(iter([W(action=cpb.STAT, ref="default/4/partial", total=10)])))
        self.assertEqual(resp[0].offset, 5)
        self.c("Abort", cpb.AbortRequest(ref="default/4/partial"), empty_pb2.Empty)
        with self.assertRaises(grpc.RpcError) as cm:
            self.c("Status", cpb.StatusRequest(ref="default/4/partial"), cpb.StatusResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_content_write_throughput(self):
        size = int(128 * SCALE) * MiB or MiB
        data = os.urandom(size)
        t0 = time.time()
        dgst, _ = self.write("default/5/big", data)
        elapsed = time.time() - t0
        print("\n  content Write over gRPC: %d MiB in %.2f s = %.0f MB/s"
              % (size // MiB, elapsed, size / elapsed / 1e6), file=sys.stderr)
        read = self.ch.unary_stream(CONTENT + "Read",
                                    request_serializer=cpb.ReadContentRequest.SerializeToString,
                                    response_deserializer=cpb.ReadContentResponse.FromString)
        t0 = time.time()
        n = sum(len(c.data) for c in read(cpb.ReadContentRequest(digest=dgst)))
        elapsed = time.time() - t0
        self.assertEqual(n, size)
        print("  content Read over gRPC: %.0f MB/s" % (size / elapsed / 1e6), file=sys.stderr)

    def test_snapshots(self):
        m = self.s("Prepare", spb.PrepareSnapshotRequest(snapshotter="strata", key="default/1/a",
                                                         labels={"l": "1"}),
                   spb.PrepareSnapshotResponse).mounts
        self.assertEqual(len(m), 1)
        self.assertIn(m[0].type, ("bind", "overlay"))
        with self.assertRaises(grpc.RpcError) as cm:
            self.s("Prepare", spb.PrepareSnapshotRequest(key="default/1/a"), spb.PrepareSnapshotResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.s("Commit", spb.CommitSnapshotRequest(name="default/2/base", key="default/1/a"),
               empty_pb2.Empty)
        m = self.s("Prepare", spb.PrepareSnapshotRequest(key="default/3/b", parent="default/2/base"),
                   spb.PrepareSnapshotResponse).mounts
        self.assertEqual(m[0].type, "overlay")
        self.assertEqual(len(self.s("Mounts", spb.MountsRequest(key="default/3/b"),
                                    spb.MountsResponse).mounts), 1)
        info = self.s("Stat", spb.StatSnapshotRequest(key="default/3/b"), spb.StatSnapshotResponse).info
        self.assertEqual((info.name, info.parent, info.kind), ("default/3/b", "default/2/base", spb.ACTIVE))
        self.assertGreater(info.created_at.seconds, 0)
        upd = self.s("Update", spb.UpdateSnapshotRequest(info=spb.Info(name="default/3/b", labels={"k": "v"}),
                                                         update_mask={"paths": ["labels.k"]}),
                     spb.UpdateSnapshotResponse).info
        self.assertEqual(dict(upd.labels), {"k": "v"})
        lst = self.ch.unary_stream(SNAPS + "List",
                                   request_serializer=spb.ListSnapshotsRequest.SerializeToString,
                                   response_deserializer=spb.ListSnapshotsResponse.FromString)
        names = sorted(i.name for msg in lst(spb.ListSnapshotsRequest()) for i in msg.info)
        self.assertEqual(names, ["default/2/base", "default/3/b"])
        committed = [i.name for msg in lst(spb.ListSnapshotsRequest(filters=["kind==committed"]))
                     for i in msg.info]
        self.assertEqual(committed, ["default/2/base"])
        u = self.s("Usage", spb.UsageRequest(key="default/2/base"), spb.UsageResponse)
        self.assertGreaterEqual(u.inodes, 1)
        with self.assertRaises(grpc.RpcError) as cm:
            self.s("Remove", spb.RemoveSnapshotRequest(key="default/2/base"), empty_pb2.Empty)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.s("Remove", spb.RemoveSnapshotRequest(key="default/3/b"), empty_pb2.Empty)
        self.s("Remove", spb.RemoveSnapshotRequest(key="default/2/base"), empty_pb2.Empty)
        with self.assertRaises(grpc.RpcError) as cm:
            self.s("Stat", spb.StatSnapshotRequest(key="default/2/base"), spb.StatSnapshotResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.s("Cleanup", spb.CleanupRequest(), empty_pb2.Empty)

    def test_list_batches_of_100(self):
        for i in range(250):
            self.s("Prepare", spb.PrepareSnapshotRequest(key="default/%d/k" % i),
                   spb.PrepareSnapshotResponse)
        lst = self.ch.unary_stream(SNAPS + "List",
                                   request_serializer=spb.ListSnapshotsRequest.SerializeToString,
                                   response_deserializer=spb.ListSnapshotsResponse.FromString)
        self.assertEqual([len(m.info) for m in lst(spb.ListSnapshotsRequest())], [100, 100, 50])


if __name__ == "__main__":
    unittest.main(verbosity=2)

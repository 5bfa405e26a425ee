#!/usr/bin/python3
"""measure.py HOST:PORT [BLOB_PATH]: what a (shaped) HTTP path really delivers.

RTT: 20 small HTTP/1.1 requests (GET /v2/) on one keep-alive connection,
time from the request's send to the whole answer; the median is printed (the
first request is left out: it pays the connection's handshake). Connect:
the time to the first answer on a fresh connection (handshake + request).
Throughput: GET BLOB_PATH (e.g. /v2/NAME/blobs/sha256:HEX), bytes over the
time from the first to the last byte of the body, in Mbit/s.
"""
import socket
import statistics
import sys
import time


def read_response(sock, buf=b""):
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise EOFError
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    return head, rest, length


def request(sock, host, path):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())


def main():
    hostport = sys.argv[1]
    host, port = hostport.rsplit(":", 1)
    t0 = time.monotonic()
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for i in range(21):
        t = time.monotonic()
        request(s, hostport, "/v2/")
        head, rest, length = read_response(s)
        while len(rest) < length:
            rest += s.recv(65536)
        if i == 0:
            print("connect+first request: %.1f ms" % ((time.monotonic() - t0) * 1000))
        else:
            rtts.append(time.monotonic() - t)
    print("rtt (small request, median of %d): %.1f ms (min %.1f, max %.1f)" % (
        len(rtts), statistics.median(rtts) * 1000, min(rtts) * 1000, max(rtts) * 1000))
    if len(sys.argv) > 2:
        request(s, hostport, sys.argv[2])
        head, rest, length = read_response(s)
        if not head.split(b" ")[1].startswith(b"2"):
            # a redirect or error: say so instead of measuring it
            print("blob: %s" % head.split(b"\r\n")[0].decode())
            return
        t1 = time.monotonic()
        got = len(rest)
        while got < length:
            d = s.recv(1 << 20)
            if not d:
                break
            got += len(d)
        t2 = time.monotonic()
        print("throughput: %d bytes in %.2f s = %.1f Mbit/s" % (
            got, t2 - t1, got * 8 / (t2 - t1) / 1e6))


main()

#!/usr/bin/python3
"""delay-proxy.py [options] LISTEN_PORT TARGET_HOST:PORT

A shaped link for benchmarks, since this kernel has no `tc netem`: a TCP
proxy on 127.0.0.1:LISTEN_PORT that forwards every connection to TARGET as
if over a link with a one-way delay (default 10 ms each way, so 20 ms RTT)
and a rate (default 100 Mbit/s in each direction).

The model is a link per direction shared by every connection (one FIFO, as
on a real bottleneck): a chunk read at time t leaves the link's queue at
  tx_done = max(t, link_busy_until) + len * 8 / rate
and is written to the other side at tx_done + delay. When the link's backlog
exceeds --queue-ms of transmission time the proxy stops reading, so TCP flow
control pushes back on the sender like a full router queue would. A new
connection's first bytes wait one extra RTT (the handshake the sender would
have paid end to end).

What it does not model: loss, and TCP's own congestion control over the
emulated path (each side's TCP runs on loopback, so there is no slow start
against the 20 ms RTT; a real link is somewhat slower for short transfers).

Options: --delay-ms N (one way, default 10), --rate-mbit N (default 100,
0 = unlimited), --queue-ms N (default 50), --stats FILE (bytes forwarded per
direction, written at exit).
"""
import argparse
import asyncio
import signal
import time

CHUNK = 64 * 1024


class Link:
    """One direction of the emulated link; shared by all connections."""

    def __init__(self, rate_bps, delay, queue):
        self.rate = rate_bps
        self.delay = delay
        self.queue = queue
        self.busy_until = 0.0
        self.bytes = 0

    def schedule(self, n, not_before):
        now = time.monotonic()
        start = max(now, not_before, self.busy_until)
        tx = n * 8 / self.rate if self.rate else 0.0
        self.busy_until = start + tx
        self.bytes += n
        return self.busy_until + self.delay

    def backlog(self):
        return self.busy_until - time.monotonic()


async def pump(reader, writer, link, not_before):
    """Read from reader, deliver to writer through link, in order."""
    pending = asyncio.Queue()

    async def deliver():
        while True:
            item = await pending.get()
            if item is None:
                break
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    task = asyncio.ensure_future(deliver())
    try:
        while True:
            while link.backlog() > link.queue:
                await asyncio.sleep(link.backlog() - link.queue)
            while pending.qsize() > 64:  # a receiver that stopped reading
                await asyncio.sleep(0.001)
            data = await reader.read(CHUNK)
            if not data:
                break
            pending.put_nowait((link.schedule(len(data), not_before), data))
    except (ConnectionError, OSError):
        pass
    pending.put_nowait(None)
    try:
        await task
    except (ConnectionError, OSError):
        pass


async def handle(creader, cwriter, args, up, down):
    accepted = time.monotonic()
    try:
        sreader, swriter = await asyncio.open_connection(args.host, args.port)
    except OSError:
        cwriter.close()
        return
    # the handshake's round trip, paid before the first request bytes
    ready = accepted + 2 * up.delay
    await asyncio.gather(pump(creader, swriter, up, ready), pump(sreader, cwriter, down, 0.0))
    for w in (swriter, cwriter):
        try:
            w.close()
        except OSError:
            pass


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[2])
    p.add_argument("listen_port", type=int)
    p.add_argument("target")
    p.add_argument("--delay-ms", type=float, default=10.0)
    p.add_argument("--rate-mbit", type=float, default=100.0)
    p.add_argument("--queue-ms", type=float, default=50.0)
    p.add_argument("--stats")
    args = p.parse_args()
    args.host, port = args.target.rsplit(":", 1)
    args.port = int(port)
    rate = args.rate_mbit * 1e6
    up = Link(rate, args.delay_ms / 1000, args.queue_ms / 1000)
    down = Link(rate, args.delay_ms / 1000, args.queue_ms / 1000)
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args, up, down), "127.0.0.1", args.listen_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()
    if args.stats:
        with open(args.stats, "w") as f:
            f.write("up_bytes=%d\ndown_bytes=%d\n" % (up.bytes, down.bytes))


if __name__ == "__main__":
    asyncio.run(main())

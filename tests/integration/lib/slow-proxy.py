#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A TCP forwarder that limits each connection's download rate, for tests
that must interrupt a transfer half-way on loopback.

usage: slow-proxy.py LISTEN_PORT TARGET_HOST:PORT BYTES_PER_SEC COUNT_FILE
Appends the number of bytes sent to the client to COUNT_FILE when each
connection ends.
"""
import asyncio
import sys
import time

listen_port = int(sys.argv[1])
host, port = sys.argv[2].rsplit(":", 1)
rate = int(sys.argv[3])
count_file = sys.argv[4]


async def pipe(reader, writer, limit):
    sent = 0
    start = time.monotonic()
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            sent += len(data)
            if limit:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass
    return sent


async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection(host, int(port))
    except OSError:
        cw.close()
        return
    up = asyncio.ensure_future(pipe(cr, uw, False))
    down = await pipe(ur, cw, True)
    up.cancel()
    with open(count_file, "a") as f:
        f.write("%d\n" % down)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()

asyncio.run(main())

#!/usr/bin/python3
"""firstout.py CMD...: run CMD; print "first_s=<seconds to its first byte on
stdout> exit_s=<seconds to its exit> status=<exit status>" on stderr, the
command's stdout on stdout. The clock starts right before the fork."""
import os
import subprocess
import sys
import time

t0 = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
first = None
out = b""
while True:
    d = os.read(p.stdout.fileno(), 65536)
    if not d:
        break
    if first is None:
        first = time.monotonic() - t0
    out += d
status = p.wait()
end = time.monotonic() - t0
sys.stdout.buffer.write(out)
sys.stdout.flush()
print("first_s=%.4f exit_s=%.4f status=%d" % (first if first is not None else -1, end, status),
      file=sys.stderr)
sys.exit(status)

#!/usr/bin/env python3
"""Count test cases across meson test logs and print 'N passed, N failed'.

TAP tests (cmocka, bats, lint) count each TAP case; other tests count as one.
With STRATA_TEST_STRICT=1 a skipped case counts as a failure. Exit 1 on any
failure."""
import json
import os
import re
import sys

strict = os.environ.get("STRATA_TEST_STRICT") == "1"
passed = failed = skipped = 0
failures = []

for path in sys.argv[1:]:
    if not os.path.exists(path):
        print(f"test-summary: {path} is missing (build failed?)", file=sys.stderr)
        failed += 1
        continue
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            name, result = t["name"], t["result"]
            lines = re.findall(r"^(?:not ok|ok)\b[^\n]*", t.get("stdout") or "", re.M)
            if not lines:
                if result in ("OK", "EXPECTEDFAIL"):
                    passed += 1
                elif result == "SKIP":
                    skipped += 1
                else:
                    failed += 1
                    failures.append(f"{name}: {result}")
                continue
            for l in lines:
                is_skip = re.search(r"#\s*skip", l, re.I) is not None
                if l.startswith("not ok") and not re.search(r"#\s*todo", l, re.I):
                    failed += 1
                    failures.append(f"{name}: {l}")
                elif is_skip:
                    skipped += 1
                else:
                    passed += 1
            # A TAP program that crashed after some cases still failed.
            if result not in ("OK", "EXPECTEDFAIL", "SKIP") and not any(
                    l.startswith("not ok") for l in lines):
                failed += 1
                failures.append(f"{name}: {result}")

if strict and skipped:
    failures.append(f"{skipped} skipped (strict mode: skips fail)")
    failed += skipped
    skipped = 0

for f in failures:
    print(f"FAILED: {f}")
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed else 0)

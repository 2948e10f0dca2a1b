#!/usr/bin/env python3
"""Prints N numbered lines (default 1000) on stdout: "line 1" … "line N".

Usage: lines.py [N] [INTERVAL_MS]. Without an interval the lines are written in large blocks, so a
million lines take well under a second; with one, each line is flushed and followed by a pause
(for live-log tests). The last line on stderr is a summary.
"""

import sys
import time

BLOCK = 10_000


def main(argv):
    try:
        count = int(argv[1]) if len(argv) > 1 else 1000
        interval_ms = float(argv[2]) if len(argv) > 2 else 0.0
    except ValueError:
        print("usage: lines.py [N] [INTERVAL_MS]", file=sys.stderr)
        return 2
    out = sys.stdout
    if interval_ms > 0:
        for n in range(1, count + 1):
            out.write(f"line {n}\n")
            out.flush()
            time.sleep(interval_ms / 1000)
    else:
        for start in range(1, count + 1, BLOCK):
            stop = min(start + BLOCK, count + 1)
            out.write("".join(f"line {n}\n" for n in range(start, stop)))
        out.flush()
    print(f"lines.py: wrote {count} lines", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

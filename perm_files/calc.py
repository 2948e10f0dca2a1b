#!/usr/bin/env python3
"""A small real calculation: the sum and count of the primes below N (default 100000).

Usage: calc.py [N]. Prints one result line; exits 2 on a bad argument.
"""

import sys
import time


def primes_below(limit):
    """Sieve of Eratosthenes; returns the list of primes < limit."""
    if limit < 3:
        return []
    sieve = bytearray([1]) * limit
    sieve[0] = sieve[1] = 0
    for n in range(2, int(limit ** 0.5) + 1):
        if sieve[n]:
            sieve[n * n :: n] = bytearray(len(range(n * n, limit, n)))
    return [n for n, is_prime in enumerate(sieve) if is_prime]


def main(argv):
    try:
        limit = int(argv[1]) if len(argv) > 1 else 100_000
    except ValueError:
        print(f"calc.py: N must be an integer, got {argv[1]!r}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    primes = primes_below(limit)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"calc: {len(primes)} primes below {limit}, sum {sum(primes)} ({elapsed_ms:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

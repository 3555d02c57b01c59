#!/usr/bin/env python3
"""The Python binding's per-message cost: a 100-byte round trip.

Alice encrypts 100 bytes for Bob and Bob decrypts them (no DH turn), through
the installed ``ratchetkit`` package: the same work as the native baseline
``op/roundtrip_100B`` of benches/protocol.rs, so the difference is the cost
of the binding (ctypes calls, argument conversion, copying the output into
``bytes`` and freeing the library's buffer).

    build/venv/bin/python benches/python_roundtrip.py [--quick] [--runs N]
        [--iterations N] [--size BYTES] [--native-us US] [--max-ratio R]

Prints the median over several runs of the mean time per round trip, in
microseconds (``--json``: one object whose first value is that median, as
benches/report.py reads it). With ``--native-us`` (the native round trip, for example from
``cargo bench --bench protocol -- op/roundtrip_100B``) it also prints the
ratio, and with ``--max-ratio`` fails when the ratio is above it.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import ratchetkit as rk


def measure(iterations: int, size: int) -> float:
    """Mean microseconds per round trip over ``iterations`` on a fresh pair."""
    alice, bob = rk.Store(), rk.Store()
    alice.process_bundle("bob", bob.create_bundle())
    plaintext = bytes([0x42]) * size
    # Warm up, and confirm the session so every message is a whisper message.
    assert bob.decrypt("alice", alice.encrypt("bob", plaintext)) == plaintext
    assert alice.decrypt("bob", bob.encrypt("alice", b"ok")) == b"ok"
    encrypt, decrypt = alice.encrypt, bob.decrypt
    for _ in range(min(1000, iterations)):
        decrypt("alice", encrypt("bob", plaintext))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(iterations):
            decrypt("alice", encrypt("bob", plaintext))
        elapsed = time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    assert decrypt("alice", encrypt("bob", plaintext)) == plaintext
    alice.close()
    bob.close()
    return elapsed / iterations * 1e6


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few short runs (for tests)")
    parser.add_argument("--runs", type=int, default=None, help="number of runs (default 7)")
    parser.add_argument("--iterations", type=int, default=None, help="round trips per run")
    parser.add_argument("--size", type=int, default=100, help="plaintext bytes (default 100)")
    parser.add_argument("--native-us", type=float, default=None, help="native round trip, us")
    parser.add_argument("--max-ratio", type=float, default=None, help="fail above this ratio")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 7)
    iterations = args.iterations or (2_000 if args.quick else 50_000)

    results = [measure(iterations, args.size) for _ in range(runs)]
    median = statistics.median(results)
    # The first value is the result (benches/report.py reads that one, as
    # it does benches/c_roundtrip.c's output).
    report = {
        f"python_roundtrip_{args.size}B_us": round(median, 4),
        "min_us": round(min(results), 3),
        "max_us": round(max(results), 3),
        "runs": runs,
        "iterations": iterations,
        "library": rk.library_version(),
    }
    ratio = None
    if args.native_us:
        ratio = median / args.native_us
        report["native_us"] = args.native_us
        report["ratio"] = round(ratio, 2)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"python round trip ({args.size} B encrypt + decrypt): median {median:.2f} us "
            f"(min {min(results):.2f}, max {max(results):.2f}; {runs} runs x {iterations})"
        )
        if ratio is not None:
            print(f"native round trip {args.native_us:.2f} us: ratio {ratio:.2f}x")
    if ratio is not None and args.max_ratio is not None and ratio > args.max_ratio:
        print(f"ratio {ratio:.2f} above {args.max_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Turn criterion results of benches/protocol.rs into a Markdown table.

    python3 benches/report.py [--dir target/criterion] [--check]

Each operation is shown with its median time, its floor (the sum of the
medians of the primitives it needs, measured in the same run), the ratio to
the floor, and the official library's reference figure (libsignal 0.72.1,
Rust benches, v3 sessions, from the performance issue). Because machines
differ, the table also calibrates: the reference machine ran the portable
X25519 ladder in 39.8 us; `floor/x25519_portable_ladder` measures the same
ladder here, and "ladder-calibrated" scales the reference by that factor.
"Floor-calibrated" compares ratios to the floor instead: the reference's
time over the sum of its own primitives (from the issue), against ours over
our floor; it needs no assumption about how the two machines compare (shown
where both floors use the same kind of primitives, i.e. not on DH paths).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

REF_LADDER_US = 39.8

# Floors: lists of (primitive id, count). "decrypt floor" etc. are expanded.
def msg_floor(direction: str, size: str) -> list[tuple[str, float]]:
    return [("floor/chain_step", 1), ("floor/hkdf_80", 1),
            (f"floor/aes_cbc_{direction}/{size}", 1), (f"floor/hmac_mac/{size}", 1)]

def turn_floor(size: str) -> list[tuple[str, float]]:
    return [("floor/x25519", 2), ("floor/keygen", 1), ("floor/hkdf_64", 2)] + msg_floor("decrypt", size)

# (label, bench id, floor parts, libsignal reference us, the reference's own floor us)
ROWS: list[tuple[str, str, list[tuple[str, float]], float | None, float | None]] = [
    ("encrypt, no DH turn, 100 B", "op/encrypt/100B", msg_floor("encrypt", "100B"), 2.48, 1.51),
    ("encrypt, no DH turn, 1 KiB", "op/encrypt/1KiB", msg_floor("encrypt", "1KiB"), 3.88, 2.79),
    ("encrypt, no DH turn, 64 KiB", "op/encrypt/64KiB", msg_floor("encrypt", "64KiB"), None, None),
    ("decrypt, no DH turn, 100 B", "op/decrypt/100B", msg_floor("decrypt", "100B"), 2.75, 1.5),
    ("decrypt, no DH turn, 1 KiB", "op/decrypt/1KiB", msg_floor("decrypt", "1KiB"), 3.49, 2.1),
    ("decrypt, no DH turn, 64 KiB", "op/decrypt/64KiB", msg_floor("decrypt", "64KiB"), None, None),
    ("decrypt with a DH turn, 100 B", "op/decrypt_dh_turn/100B", turn_floor("100B"), 92.9, 91.1),
    ("decrypt with a DH turn, 1 KiB", "op/decrypt_dh_turn/1KiB", turn_floor("1KiB"), None, None),
    ("decrypt with a DH turn, 64 KiB", "op/decrypt_dh_turn/64KiB", turn_floor("64KiB"), None, None),
    ("decrypt 1,000 ahead (1,000 skipped keys)", "op/decrypt_skip_1000",
     [("floor/chain_step", 1000)] + msg_floor("decrypt", "100B"), None, None),
    ("X3DH initiator, with one-time prekey", "op/x3dh_initiator_with_opk",
     [("floor/xeddsa_verify", 1), ("floor/keygen", 2), ("floor/x25519", 5), ("floor/hkdf_64", 2)], 272.5, 270.5),
    ("X3DH initiator, without one-time prekey", "op/x3dh_initiator_without_opk",
     [("floor/xeddsa_verify", 1), ("floor/keygen", 2), ("floor/x25519", 4), ("floor/hkdf_64", 2)], 233.0, 228.7),
    ("X3DH responder (first prekey message), with", "op/x3dh_responder_with_opk",
     [("floor/x25519", 4), ("floor/hkdf_64", 1)] + turn_floor("100B"), 248.4, 245.0),
    ("X3DH responder (first prekey message), without", "op/x3dh_responder_without_opk",
     [("floor/x25519", 3), ("floor/hkdf_64", 1)] + turn_floor("100B"), 212.5, 206.5),
    ("safety number, 5200 iterations, both sides", "op/safety_number",
     [("floor/sha512_fingerprint_round", 10400)], 1995.0, 1931.0),
    ("identity key generation", "op/identity_generate", [("floor/keygen", 1)], None, None),
    ("one-time prekey generation", "op/prekey_generate", [("floor/keygen", 1)], None, None),
    ("signed prekey generation", "op/signed_prekey_generate",
     [("floor/keygen", 1), ("floor/xeddsa_sign", 1)], None, None),
    ("honest worst case (24,999 ahead on a new chain)", "op/decrypt_worst_honest",
     [("floor/chain_step", 24999)] + turn_floor("100B"), None, None),
    ("forged worst case, whisper (40 archived states)", "op/decrypt_worst_forged_whisper", [], None, None),
    ("forged prekey message (40 archived states)", "op/decrypt_worst_forged_prekey", [], None, None),
    ("save a store with 100 sessions", "op/save_100_sessions", [], None, None),
    ("restore a store with 100 sessions", "op/restore_100_sessions", [], None, None),
]

# The honest worst case first: the others are compared to it.
FORGED = [
    ("honest worst case (24,999 ahead on a new chain)", "op/decrypt_worst_honest"),
    ("forged worst case, whisper (new ratchet key, counter 24,999)", "op/decrypt_worst_forged_whisper"),
    ("forged prekey message (new base key, counter 24,999)", "op/decrypt_worst_forged_prekey"),
]

PRIMITIVES = [
    ("X25519 DH (build's backend)", "floor/x25519", 39.8),
    ("X25519 DH, portable ladder (x25519-dalek)", "floor/x25519_portable_ladder", 39.8),
    ("key generation", "floor/keygen", 12.1),
    ("XEdDSA verify", "floor/xeddsa_verify", 40.3),
]


def same_primitives(parts: list[tuple[str, float]]) -> bool:
    """Whether a floor uses the same kind of primitives as the reference's:
    not for DH-bound paths, whose floor here has the faster X25519."""
    return not any(p.split("/")[1] in ("x25519", "keygen", "xeddsa_verify") for p, _ in parts)


def median_us(root: Path, bench_id: str) -> float:
    path = root / bench_id / "new" / "estimates.json"
    with path.open() as f:
        return json.load(f)["median"]["point_estimate"] / 1000.0


def fmt(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="target/criterion")
    ap.add_argument("--bindings", default=None,
                    help="directory with c.json / python.json from the binding round-trip benches")
    ap.add_argument("--check", action="store_true",
                    help="fail unless every benchmark of the table has a result")
    args = ap.parse_args()
    root = Path(args.dir)
    missing = []

    def get(bid: str) -> float | None:
        try:
            return median_us(root, bid)
        except (OSError, KeyError, ValueError):
            missing.append(bid)
            return None

    ladder = get("floor/x25519_portable_ladder")
    factor = (ladder / REF_LADDER_US) if ladder else None
    out = []
    out.append(f"Machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}, "
               f"{platform.system()} {platform.release()}. Medians from criterion.")
    if factor:
        out.append(f"Calibration: the portable X25519 ladder takes {ladder:.1f} us here vs "
                   f"{REF_LADDER_US} us on the reference machine (factor {factor:.2f}).")
    out.append("")
    out.append("| operation | ratchetkit us | floor us | ratio to floor | libsignal ref us | ref's ratio to its floor | faster than ref | faster than ref (ladder-calibrated) | faster than ref (floor-calibrated) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, bid, parts, ref, ref_floor in ROWS:
        t = get(bid)
        floor = None
        if parts:
            vals = [(get(p), n) for p, n in parts]
            if all(v is not None for v, _ in vals):
                floor = sum(v * n for v, n in vals)
        cells = [label, fmt(t) if t else "-", fmt(floor) if floor else "-",
                 f"{t / floor:.2f}x" if t and floor else "-",
                 fmt(ref) if ref else "-",
                 f"{ref / ref_floor:.2f}x" if ref and ref_floor else "-",
                 f"{ref / t:.2f}x" if t and ref else "-",
                 f"{ref * factor / t:.2f}x" if t and ref and factor else "-",
                 f"{(ref / ref_floor) / (t / floor):.2f}x"
                 if t and ref and ref_floor and floor and same_primitives(parts) else "-"]
        out.append("| " + " | ".join(cells) + " |")
    one, two = get("op/two_sessions_1_thread"), get("op/two_sessions_2_threads")
    out.append("")
    out.append("| one store, independent sessions, 100 B rounds (decrypt + encrypt in the store) | us per round | throughput vs 1 thread |")
    out.append("|---|---:|---:|")
    if one and two:
        out.append(f"| 1 thread, alternating two lanes | {fmt(one)} | 1.00x |")
        out.append(f"| 2 threads, one lane each | {fmt(two)} | {one / two:.2f}x |")
    c1, c2 = get("floor/cpu_work_1_thread"), get("floor/cpu_work_2_threads")
    if c1 and c2:
        out.append(f"| machine: pure computation, 2 threads vs 1 (no shared state) | - | {c1 / c2:.2f}x |")
    # Issue 14, item 2: what a forged message costs the receiver, against
    # the most expensive honest message, measured in the same run.
    honest = get("op/decrypt_worst_honest")
    out.append("")
    out.append("| decrypt, the sender's address has 40 archived states | us | vs honest worst case (target: at most 3x) |")
    out.append("|---|---:|---:|")
    for label, bid in FORGED:
        t = get(bid)
        ratio = f"{t / honest:.2f}x" if t and honest else "-"
        out.append(f"| {label} | {fmt(t) if t else '-'} | {ratio} |")
    native = get("op/roundtrip_100B")
    out.append("")
    out.append("| 100 B round trip (encrypt + decrypt, no DH turn) | us | vs native |")
    out.append("|---|---:|---:|")
    if native:
        out.append(f"| native Rust | {fmt(native)} | 1.00x |")
    if args.bindings:
        for name, label in [("c", "C ABI (benches/c_roundtrip.c)"),
                            ("python", "Python ctypes (benches/python_roundtrip.py)")]:
            path = Path(args.bindings) / f"{name}.json"
            try:
                value = float(next(iter(json.loads(path.read_text()).values())))
            except (OSError, ValueError, StopIteration):
                missing.append(str(path))
                continue
            ratio = f"{value / native:.2f}x" if native else "-"
            out.append(f"| {label} | {fmt(value)} | {ratio} |")
    out.append("")
    out.append("| primitive | ratchetkit us | libsignal ref us |")
    out.append("|---|---:|---:|")
    for label, bid, ref in PRIMITIVES:
        t = get(bid)
        out.append(f"| {label} | {fmt(t) if t else '-'} | {ref} |")
    print("\n".join(out))
    if args.check and missing:
        print(f"missing results: {', '.join(sorted(set(missing)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

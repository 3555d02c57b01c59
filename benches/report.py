#!/usr/bin/env python3
"""Turn criterion results of benches/protocol.rs into a Markdown table.

    python3 benches/report.py [--dir target/criterion] [--check]

It also has a "Durable store" section (benches/durable.rs): the durable
store's commit paths beside their floor (one SQLite write transaction with
the same settings; target: at most 1.2x), open time and resident memory by
store size (the memory figures from <dir>/durable/memory.json).

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

Session versions: the X3DH rows and the per-message rows without a suffix
run version-3 sessions, the PQXDH rows and the "v4" rows version-4 (PQXDH)
sessions. The PQXDH section (issue 11) puts each PQXDH path beside its floor
(target: at most 1.10x), version 4's per-message paths beside version 3's
(target: within 3%), and PQXDH's full setup beside X3DH's, with the official
library's figures for the same comparison.
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

# X3DH (version 3) and PQXDH (version 4). The initiator verifies the signed
# prekey's signature (and for PQXDH the Kyber prekey's, over 1569 bytes),
# makes its base key and first ratchet key, runs 3 or 4 agreements for
# X3DH plus one for its first sending chain, two HKDFs (the initial keys,
# the first chain), and for PQXDH encapsulates to the Kyber prekey. The
# responder runs 3 or 4 agreements, one HKDF, for PQXDH decapsulates, then
# decrypts the first message (a DH turn).
def x3dh_initiator_floor(opk: bool) -> list[tuple[str, float]]:
    return [("floor/xeddsa_verify", 1), ("floor/keygen", 2),
            ("floor/x25519", 5 if opk else 4), ("floor/hkdf_64", 2)]

def pqxdh_initiator_floor(opk: bool) -> list[tuple[str, float]]:
    return x3dh_initiator_floor(opk) + [("floor/xeddsa_verify_kyber_prekey", 1),
                                        ("floor/kyber1024_encapsulate", 1)]

def x3dh_responder_floor(opk: bool) -> list[tuple[str, float]]:
    return [("floor/x25519", 4 if opk else 3), ("floor/hkdf_64", 1)] + turn_floor("100B")

def pqxdh_responder_floor(opk: bool) -> list[tuple[str, float]]:
    return x3dh_responder_floor(opk) + [("floor/kyber1024_decapsulate", 1)]

# Full setup (with a one-time prekey): the initiator, its first message
# (100 B), the responder.
X3DH_FULL_FLOOR = x3dh_initiator_floor(True) + msg_floor("encrypt", "100B") + x3dh_responder_floor(True)
PQXDH_FULL_FLOOR = pqxdh_initiator_floor(True) + msg_floor("encrypt", "100B") + pqxdh_responder_floor(True)

# The official library's full setups (from process_bundle to the first
# message decrypted), both measured on one machine (issue 11).
REF_X3DH_FULL_US = 540.0
REF_PQXDH_FULL_US = 643.5

# Targets of issue 11.
PQXDH_FLOOR_TARGET = 1.10
V4_PER_MESSAGE_TOLERANCE = 0.03

# (label, bench id, floor parts, libsignal reference us, the reference's own floor us)
ROWS: list[tuple[str, str, list[tuple[str, float]], float | None, float | None]] = [
    ("encrypt, no DH turn, 100 B", "op/encrypt/100B", msg_floor("encrypt", "100B"), 2.48, 1.51),
    ("encrypt, no DH turn, 100 B, v4", "op/encrypt_v4/100B", msg_floor("encrypt", "100B"), None, None),
    ("encrypt, no DH turn, 1 KiB", "op/encrypt/1KiB", msg_floor("encrypt", "1KiB"), 3.88, 2.79),
    ("encrypt, no DH turn, 1 KiB, v4", "op/encrypt_v4/1KiB", msg_floor("encrypt", "1KiB"), None, None),
    ("encrypt, no DH turn, 64 KiB", "op/encrypt/64KiB", msg_floor("encrypt", "64KiB"), None, None),
    ("decrypt, no DH turn, 100 B", "op/decrypt/100B", msg_floor("decrypt", "100B"), 2.75, 1.5),
    ("decrypt, no DH turn, 100 B, v4", "op/decrypt_v4/100B", msg_floor("decrypt", "100B"), None, None),
    ("decrypt, no DH turn, 1 KiB", "op/decrypt/1KiB", msg_floor("decrypt", "1KiB"), 3.49, 2.1),
    ("decrypt, no DH turn, 1 KiB, v4", "op/decrypt_v4/1KiB", msg_floor("decrypt", "1KiB"), None, None),
    ("decrypt, no DH turn, 64 KiB", "op/decrypt/64KiB", msg_floor("decrypt", "64KiB"), None, None),
    ("decrypt with a DH turn, 100 B", "op/decrypt_dh_turn/100B", turn_floor("100B"), 92.9, 91.1),
    ("decrypt with a DH turn, 100 B, v4", "op/decrypt_dh_turn_v4/100B", turn_floor("100B"), None, None),
    ("decrypt with a DH turn, 1 KiB", "op/decrypt_dh_turn/1KiB", turn_floor("1KiB"), None, None),
    ("decrypt with a DH turn, 64 KiB", "op/decrypt_dh_turn/64KiB", turn_floor("64KiB"), None, None),
    ("decrypt 1,000 ahead (1,000 skipped keys)", "op/decrypt_skip_1000",
     [("floor/chain_step", 1000)] + msg_floor("decrypt", "100B"), None, None),
    ("X3DH initiator, with one-time prekey", "op/x3dh_initiator_with_opk",
     x3dh_initiator_floor(True), 272.5, 270.5),
    ("X3DH initiator, without one-time prekey", "op/x3dh_initiator_without_opk",
     x3dh_initiator_floor(False), 233.0, 228.7),
    ("X3DH responder (first prekey message), with", "op/x3dh_responder_with_opk",
     x3dh_responder_floor(True), 248.4, 245.0),
    ("X3DH responder (first prekey message), without", "op/x3dh_responder_without_opk",
     x3dh_responder_floor(False), 212.5, 206.5),
    ("X3DH full setup (bundle to first message decrypted)", "op/x3dh_full_setup",
     X3DH_FULL_FLOOR, None, None),
    ("PQXDH initiator, with one-time prekey", "op/pqxdh_initiator_with_opk",
     pqxdh_initiator_floor(True), None, None),
    ("PQXDH initiator, without one-time prekey", "op/pqxdh_initiator_without_opk",
     pqxdh_initiator_floor(False), None, None),
    ("PQXDH responder (first prekey message), with", "op/pqxdh_responder_with_opk",
     pqxdh_responder_floor(True), None, None),
    ("PQXDH responder (first prekey message), without", "op/pqxdh_responder_without_opk",
     pqxdh_responder_floor(False), None, None),
    ("PQXDH full setup (bundle to first message decrypted)", "op/pqxdh_full_setup",
     PQXDH_FULL_FLOOR, None, None),
    ("safety number, 5200 iterations, both sides", "op/safety_number",
     [("floor/sha512_fingerprint_round", 10400)], 1995.0, 1931.0),
    ("identity key generation", "op/identity_generate", [("floor/keygen", 1)], None, None),
    ("one-time prekey generation", "op/prekey_generate", [("floor/keygen", 1)], None, None),
    ("signed prekey generation", "op/signed_prekey_generate",
     [("floor/keygen", 1), ("floor/xeddsa_sign", 1)], None, None),
    ("Kyber prekey generation (one-time, signed)", "op/kyber_prekey_generate",
     [("floor/kyber1024_keygen", 1), ("floor/xeddsa_sign_kyber_prekey", 1)], None, None),
    ("honest worst case (24,999 ahead on a new chain)", "op/decrypt_worst_honest",
     [("floor/chain_step", 24999)] + turn_floor("100B"), None, None),
    ("forged worst case, whisper (40 archived states)", "op/decrypt_worst_forged_whisper", [], None, None),
    ("forged prekey message (40 archived states)", "op/decrypt_worst_forged_prekey", [], None, None),
    ("save a store with 100 sessions", "op/save_100_sessions", [], None, None),
    ("restore a store with 100 sessions", "op/restore_100_sessions", [], None, None),
]

# PQXDH paths against their floors (issue 11).
PQXDH_PATHS = [
    ("initiator, with one-time prekey", "op/pqxdh_initiator_with_opk", pqxdh_initiator_floor(True)),
    ("initiator, without one-time prekey", "op/pqxdh_initiator_without_opk", pqxdh_initiator_floor(False)),
    ("responder (first prekey message), with", "op/pqxdh_responder_with_opk", pqxdh_responder_floor(True)),
    ("responder (first prekey message), without", "op/pqxdh_responder_without_opk", pqxdh_responder_floor(False)),
    ("full setup (bundle to first message decrypted)", "op/pqxdh_full_setup", PQXDH_FULL_FLOOR),
]

# Per-message paths: (label, version-3 id, version-4 id).
PER_MESSAGE_V4 = [
    ("encrypt, no DH turn, 100 B", "op/encrypt/100B", "op/encrypt_v4/100B"),
    ("encrypt, no DH turn, 1 KiB", "op/encrypt/1KiB", "op/encrypt_v4/1KiB"),
    ("decrypt, no DH turn, 100 B", "op/decrypt/100B", "op/decrypt_v4/100B"),
    ("decrypt, no DH turn, 1 KiB", "op/decrypt/1KiB", "op/decrypt_v4/1KiB"),
    ("decrypt with a DH turn, 100 B", "op/decrypt_dh_turn/100B", "op/decrypt_dh_turn_v4/100B"),
]

# Not in the floors above: a check that the responder may run on the base
# key (prime-order subgroup, one scalar multiplication). Shown beside the
# responder paths and the full setup as a second ratio.
SUBGROUP_CHECK = "floor/prime_order_subgroup_check"
RESPONDER_PATHS = {"op/pqxdh_responder_with_opk", "op/pqxdh_responder_without_opk", "op/pqxdh_full_setup"}

# What PQXDH's full setup adds to X3DH's in primitives.
PQXDH_EXTRA = [("floor/xeddsa_verify_kyber_prekey", 1), ("floor/kyber1024_encapsulate", 1),
               ("floor/kyber1024_decapsulate", 1)]

# The honest worst case first: the others are compared to it.
FORGED = [
    ("honest worst case (24,999 ahead on a new chain)", "op/decrypt_worst_honest"),
    ("forged worst case, whisper (new ratchet key, counter 24,999)", "op/decrypt_worst_forged_whisper"),
    ("forged prekey message (new base key, counter 24,999)", "op/decrypt_worst_forged_prekey"),
]

# The durable store (benches/durable.rs): each path beside its floor, one
# SQLite write transaction with the same settings, measured in the same run.
DURABLE_TARGET = 1.2
# (label, bench id, floor id, in-memory op id)
DURABLE_ROWS = [
    ("decrypt + commit, 100 B, Durability::Full (default)", "durable/decrypt_commit/full",
     "durable/floor_write/full", "op/decrypt_v4/100B"),
    ("encrypt + commit, 100 B, Durability::Full (default)", "durable/encrypt_commit/full",
     "durable/floor_write/full", "op/encrypt_v4/100B"),
    ("decrypt + commit, 100 B, Durability::Normal", "durable/decrypt_commit/normal",
     "durable/floor_write/normal", "op/decrypt_v4/100B"),
    # Encrypt commits at full durability in every mode: its floor is FULL's.
    ("encrypt + commit, 100 B, Durability::Normal (encrypt still commits FULL)",
     "durable/encrypt_commit/normal", "durable/floor_write/full", "op/encrypt_v4/100B"),
]
# Group commit: 2 threads on one handle against 1 (throughput).
GROUP_COMMIT_TARGET = 1.6
DURABLE_FLOORS = [
    ("one write transaction, synchronous = FULL", "durable/floor_write/full"),
    ("one write transaction, synchronous = NORMAL", "durable/floor_write/normal"),
]
# Store sizes of the open and memory rows, unless memory.json lists others
# (`make bench-test` measures smaller ones).
DURABLE_SIZES = [100, 10_000, 100_000]

PRIMITIVES: list[tuple[str, str, float | None]] = [
    ("X25519 DH (build's backend)", "floor/x25519", 39.8),
    ("X25519 DH, portable ladder (x25519-dalek)", "floor/x25519_portable_ladder", 39.8),
    ("key generation", "floor/keygen", 12.1),
    ("XEdDSA verify", "floor/xeddsa_verify", 40.3),
    ("prime-order subgroup check of a public key (curve25519-dalek)", SUBGROUP_CHECK, None),
    ("XEdDSA verify, Kyber prekey (1569 bytes signed)", "floor/xeddsa_verify_kyber_prekey", None),
    ("XEdDSA sign, Kyber prekey (1569 bytes signed)", "floor/xeddsa_sign_kyber_prekey", None),
    ("Kyber1024 key generation (libcrux-ml-kem)", "floor/kyber1024_keygen", None),
    ("Kyber1024 encapsulate (libcrux-ml-kem)", "floor/kyber1024_encapsulate", None),
    ("Kyber1024 decapsulate (libcrux-ml-kem)", "floor/kyber1024_decapsulate", None),
]


def same_primitives(parts: list[tuple[str, float]]) -> bool:
    """Whether a floor uses the same kind of primitives as the reference's:
    not for DH-bound paths, whose floor here has the faster X25519."""
    return not any(p.split("/")[1] in ("x25519", "keygen", "xeddsa_verify")
                   or "kyber" in p for p, _ in parts)


def median_us(root: Path, bench_id: str) -> float:
    path = root / bench_id / "new" / "estimates.json"
    with path.open() as f:
        return json.load(f)["median"]["point_estimate"] / 1000.0


def fmt(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.1f}"


def durable_section(root: Path, get, missing: list[str]) -> list[str]:
    """The "Durable store" section: commit paths against their floors, open
    time and resident memory by store size."""
    out = ["", "## Durable store", "",
           "benches/durable.rs: a store file in cargo's temporary folder of the target directory "
           "(the build's filesystem). Floor: one SQLite write transaction (BEGIN IMMEDIATE, one "
           "row the size of the session row rewritten with a new random payload, COMMIT) with "
           "the store's settings (WAL; synchronous FULL resp. NORMAL), same filesystem, same run. "
           f"Target: at most {DURABLE_TARGET:.1f}x the floor. \"in-memory op\" is the same "
           "operation on an in-memory store (benches/protocol.rs, version 4), for scale. "
           "Each benchmark of a mode alternates a store commit and a floor write and times its "
           "own half. Rows at full durability are bound by the disk's fsync time, which on a "
           "shared or virtual disk drifts by several times within seconds: their ratio varies "
           "from run to run, read it as indicative.", "",
           f"| operation | us | floor us | ratio to floor | target: at most {DURABLE_TARGET:.1f}x | "
           "in-memory op us | ratio to floor + in-memory op |",
           "|---|---:|---:|---:|---|---:|---:|"]
    for label, bid, floor_id, mem_id in DURABLE_ROWS:
        t, floor = get(bid), get(floor_id)
        try:
            mem = median_us(root, mem_id)
        except (OSError, KeyError, ValueError):
            mem = None  # from the protocol bench: not required here
        ratio = t / floor if t and floor else None
        verdict = "-" if ratio is None else ("met" if ratio <= DURABLE_TARGET else "NOT met")
        both = f"{t / (floor + mem):.2f}x" if t and floor and mem else "-"
        out.append(f"| {label} | {fmt(t) if t else '-'} | {fmt(floor) if floor else '-'} | "
                   f"{f'{ratio:.2f}x' if ratio else '-'} | {verdict} | "
                   f"{fmt(mem) if mem else '-'} | {both} |")
    for label, floor_id in DURABLE_FLOORS:
        t = get(floor_id)
        out.append(f"| floor: {label} | {fmt(t) if t else '-'} | - | - | - | - | - |")
    one, two = get("durable/threads/1"), get("durable/threads/2")
    gain = one / two if one and two else None
    out.append("")
    out.append("Group commit (stretch goal): decrypt + commit at full durability by threads on one "
               "handle, each on its own session; time per message is the wall time over all "
               f"messages. Target: 2 threads at least {GROUP_COMMIT_TARGET:.1f}x the throughput "
               "of 1.")
    out.append("")
    out.append("| threads | us per message | throughput vs 1 thread | target |")
    out.append("|---:|---:|---:|---|")
    out.append(f"| 1 | {fmt(one) if one else '-'} | 1.00x | - |")
    out.append(f"| 2 | {fmt(two) if two else '-'} | {f'{gain:.2f}x' if gain else '-'} | "
               f"{'-' if gain is None else ('met' if gain >= GROUP_COMMIT_TARGET else 'NOT met')} |")
    memory_path = root / "durable" / "memory.json"
    try:
        memory = json.loads(memory_path.read_text())
    except (OSError, ValueError):
        memory = None
        missing.append(str(memory_path))
    cap = memory.get("session_cap") if memory else None
    out.append("")
    out.append("Open and memory by store size. The first 65,536 sessions (the most saved bytes "
               "hold) are copies of one established version-4 session, written in one "
               "transaction (import); the rest are started in the durable store with "
               "process_bundle, one transaction each. Resident memory: growth of the "
               "resident set (/proc/self/statm) of a fresh process across the open, and across "
               "the open and one encrypt (one session read, decoded, written)."
               + (f" A durable store holds at most {cap:,} sessions (MAX_DURABLE_SESSIONS)."
                  if cap else ""))
    out.append("")
    out.append("| sessions held | open us | resident memory after open KiB | "
               "after open + one encrypt KiB |")
    out.append("|---:|---:|---:|---:|")
    sizes = (sorted(int(k) for k in memory.get("sessions", {})) if memory else DURABLE_SIZES)
    if len(sizes) < 3:
        missing.append(f"{memory_path}: three store sizes")
    for n in sizes:
        t = get(f"durable/open/{n}")
        row = (memory or {}).get("sessions", {}).get(str(n))
        if memory is not None and row is None:
            missing.append(f"{memory_path}: {n}")
        kib = (lambda key: f"{row[key] / 1024:,.0f}" if row and key in row else "-")
        out.append(f"| {n:,} | {fmt(t) if t else '-'} | {kib('open_bytes')} | "
                   f"{kib('open_and_encrypt_bytes')} |")
    return out


# SPQR (issue 13). A message that carries no ML-KEM operation adds one SPQR
# chain step (an HKDF) and its chunk to a version-4 message: its floor is
# the version-4 message's plus one HKDF. Target: at most 1.15x the same
# message without SPQR. One epoch runs one ML-KEM-768 key generation, one
# encapsulation and one decapsulation.
SPQR_TARGET = 1.15
MLKEM768_EPOCH = [("floor/mlkem768_keygen", 1), ("floor/mlkem768_encapsulate", 1),
                  ("floor/mlkem768_decapsulate", 1)]
SPQR_PER_MESSAGE = [
    ("encrypt, no DH turn, 100 B", "op/encrypt_v4/100B", "op/encrypt_spqr/100B",
     msg_floor("encrypt", "100B"), msg_floor("encrypt", "100B") + [("floor/hkdf_64", 1)]),
    ("decrypt, no DH turn, 100 B", "op/decrypt_v4/100B", "op/decrypt_spqr/100B",
     msg_floor("decrypt", "100B"), msg_floor("decrypt", "100B") + [("floor/hkdf_64", 1)]),
]
SPQR_HEADING = "SPQR (issue 13)"


def spqr_section(get, floor_of) -> list[str]:
    """The SPQR section: per-message paths with and without SPQR, beside
    their floors; the conversation per message (the ML-KEM-768 operations
    amortised) and the epoch-carrying messages."""
    out = [f"{SPQR_HEADING}: version-4 messages with SPQR beside the same messages without it "
           f"(target for a message that carries no ML-KEM operation: at most {SPQR_TARGET:.2f}x), "
           "each beside its floor (with SPQR: plus one HKDF, the SPQR chain step; the erasure-code "
           "chunk is not in the floor).", ""]
    out.append(f"| 100 B message, no ML-KEM operation | v4 us | v4 floor us | SPQR us | SPQR floor us | "
               f"SPQR / v4 | target: at most {SPQR_TARGET:.2f}x |")
    out.append("|---|---:|---:|---:|---:|---:|---|")
    for label, v4_id, spqr_id, v4_parts, spqr_parts in SPQR_PER_MESSAGE:
        v4, sp = get(v4_id), get(spqr_id)
        f4, fs = floor_of(v4_parts), floor_of(spqr_parts)
        ratio = sp / v4 if v4 and sp else None
        verdict = "-" if ratio is None else ("met" if ratio <= SPQR_TARGET else "NOT met")
        out.append(f"| {label} | {fmt(v4) if v4 else '-'} | {fmt(f4) if f4 else '-'} | "
                   f"{fmt(sp) if sp else '-'} | {fmt(fs) if fs else '-'} | "
                   f"{f'{ratio:.2f}x' if ratio else '-'} | {verdict} |")
    conv4, convs = get("op/conversation_v4/100B"), get("op/conversation_spqr/100B")
    epoch_msg = get("op/spqr_epoch_message/100B")
    kem = floor_of(MLKEM768_EPOCH)
    out.append("")
    out.append("| 100 B, bursts of 4 each way (a DH turn every 4 messages), per message: encrypt + decrypt | us | vs v4 |")
    out.append("|---|---:|---:|")
    if conv4:
        out.append(f"| version 4 without SPQR | {fmt(conv4)} | 1.00x |")
    if convs:
        out.append(f"| with SPQR (ML-KEM-768 operations amortised over the messages) | {fmt(convs)} | "
                   f"{f'{convs / conv4:.2f}x' if conv4 else '-'} |")
    if epoch_msg:
        out.append(f"| with SPQR, only the messages on which the braid changes state (those carrying "
                   f"an ML-KEM operation) | {fmt(epoch_msg)} | "
                   f"{f'{epoch_msg / conv4:.2f}x' if conv4 else '-'} |")
    if kem:
        out.append(f"| floor: one epoch's ML-KEM-768 key generation + encapsulation + decapsulation | "
                   f"{fmt(kem)} | - |")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="target/criterion")
    ap.add_argument("--bindings", default=None,
                    help="directory with c.json / python.json from the binding round-trip benches")
    ap.add_argument("--spqr-only", action="store_true",
                    help="print the SPQR section only (for a run of the SPQR benchmarks alone)")
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

    if args.spqr_only:
        def floor_only(parts: list[tuple[str, float]]) -> float | None:
            vals = [(get(p), n) for p, n in parts]
            if not parts or any(v is None for v, _ in vals):
                return None
            return sum(v * n for v, n in vals)
        print("\n".join(spqr_section(get, floor_only)))
        if args.check and missing:
            print(f"missing results: {', '.join(sorted(set(missing)))}", file=sys.stderr)
            return 1
        return 0

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
    def floor_of(parts: list[tuple[str, float]]) -> float | None:
        vals = [(get(p), n) for p, n in parts]
        if not parts or any(v is None for v, _ in vals):
            return None
        return sum(v * n for v, n in vals)

    for label, bid, parts, ref, ref_floor in ROWS:
        t = get(bid)
        floor = floor_of(parts)
        cells = [label, fmt(t) if t else "-", fmt(floor) if floor else "-",
                 f"{t / floor:.2f}x" if t and floor else "-",
                 fmt(ref) if ref else "-",
                 f"{ref / ref_floor:.2f}x" if ref and ref_floor else "-",
                 f"{ref / t:.2f}x" if t and ref else "-",
                 f"{ref * factor / t:.2f}x" if t and ref and factor else "-",
                 f"{(ref / ref_floor) / (t / floor):.2f}x"
                 if t and ref and ref_floor and floor and same_primitives(parts) else "-"]
        out.append("| " + " | ".join(cells) + " |")
    # Issue 11: PQXDH (version 4) against its floors and against version 3.
    out.append("")
    out.append(f"PQXDH (issue 11): each path beside its floor (the same primitives in this run; "
               f"target: at most {PQXDH_FLOOR_TARGET:.2f}x), version 4's per-message paths beside "
               f"version 3's (target: within {V4_PER_MESSAGE_TOLERANCE:.0%}), and the full setup "
               f"beside X3DH's, with the official library's figures for the same comparison.")
    out.append("")
    out.append(f"| PQXDH path | us | floor us | ratio to floor | target: at most {PQXDH_FLOOR_TARGET:.2f}x | "
               f"ratio if the floor counts a base-key subgroup check |")
    out.append("|---|---:|---:|---:|---|---:|")
    check = get(SUBGROUP_CHECK)
    for label, bid, parts in PQXDH_PATHS:
        t, floor = get(bid), floor_of(parts)
        ratio = t / floor if t and floor else None
        verdict = "-" if ratio is None else ("met" if ratio <= PQXDH_FLOOR_TARGET else "NOT met")
        with_check = (f"{t / (floor + check):.2f}x"
                      if bid in RESPONDER_PATHS and t and floor and check else "-")
        out.append(f"| {label} | {fmt(t) if t else '-'} | {fmt(floor) if floor else '-'} | "
                   f"{f'{ratio:.2f}x' if ratio else '-'} | {verdict} | {with_check} |")
    out.append("")
    out.append(f"| per message | version 3 us | version 4 us | v4 / v3 | target: within {V4_PER_MESSAGE_TOLERANCE:.0%} |")
    out.append("|---|---:|---:|---:|---|")
    for label, v3_id, v4_id in PER_MESSAGE_V4:
        v3, v4 = get(v3_id), get(v4_id)
        ratio = v4 / v3 if v3 and v4 else None
        verdict = ("-" if ratio is None else
                   "met" if abs(ratio - 1) <= V4_PER_MESSAGE_TOLERANCE else "NOT met")
        out.append(f"| {label} | {fmt(v3) if v3 else '-'} | {fmt(v4) if v4 else '-'} | "
                   f"{f'{ratio:.3f}x' if ratio else '-'} | {verdict} |")
    x3dh_full, pqxdh_full = get("op/x3dh_full_setup"), get("op/pqxdh_full_setup")
    extra = floor_of(PQXDH_EXTRA)
    out.append("")
    out.append("| full setup, with one-time prekey (bundle processed to first message decrypted) | X3DH (v3) us | PQXDH (v4) us | PQXDH / X3DH | PQXDH adds us |")
    out.append("|---|---:|---:|---:|---:|")
    if x3dh_full and pqxdh_full:
        out.append(f"| ratchetkit (this run) | {fmt(x3dh_full)} | {fmt(pqxdh_full)} | "
                   f"{pqxdh_full / x3dh_full:.2f}x | {fmt(pqxdh_full - x3dh_full)} |")
    out.append(f"| libsignal (reference figures, their machine) | {fmt(REF_X3DH_FULL_US)} | "
               f"{fmt(REF_PQXDH_FULL_US)} | {REF_PQXDH_FULL_US / REF_X3DH_FULL_US:.2f}x | "
               f"{fmt(REF_PQXDH_FULL_US - REF_X3DH_FULL_US)} |")
    if extra:
        out.append(f"| the primitives PQXDH adds (Kyber prekey signature check, encapsulate, "
                   f"decapsulate; this run) | - | - | - | {fmt(extra)} |")
    out.append("")
    out.extend(spqr_section(get, floor_of))
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
    out.append("")
    out.append("Before the fix (commit cf565f6, the same benchmarks, 2026-12-01): honest worst case "
               "7.28 ms, forged whisper 295 ms (40.5x), forged prekey message 294 ms (40.4x).")
    out.extend(durable_section(root, get, missing))
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
        out.append(f"| {label} | {fmt(t) if t else '-'} | {ref if ref else '-'} |")
    print("\n".join(out))
    if args.check and missing:
        print(f"missing results: {', '.join(sorted(set(missing)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Races between closing a handle and calls using it (issue 14, item 4).

Run by test_handle_races.py, natively and under valgrind; by hand:

    python tests/python/handle_race.py close [--rounds N] [--threads N] [--seed N]
    python tests/python/handle_race.py exit

``close``: each round makes a store with a session, a bundle, a public key,
an identity key pair and a fingerprint, starts worker threads that call
every kind of method on them (including calls that take one of them as an
argument, such as ``store.process_bundle(name, bundle)``), and closes all
five from the main thread, in a random order, while the workers are inside
calls. A call may succeed or raise ``ValueError`` ("... is closed");
anything else is an error. Prints one JSON line; exits 1 on any error.

``exit``: daemon threads loop in calls on a store, a bundle and a
fingerprint; the main thread returns as soon as one of them has entered a
long library call (``generate_prekeys``), so the interpreter exits, and the
finalizers of the three objects run, while that call is in flight (and the
other daemon's calls, when they happen to be). A last exit hook lets the
long call return before the process ends, then exits with 3 if a daemon
saw an error other than ``ValueError``; otherwise the exit status is 0.

Only the public API is used, so the script runs against any version of the
binding.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Sequence, Tuple

import ratchetkit as rk

Op = Callable[[], Any]

#: The prekeys made by the long call of ``exit``: about 60 ms inside the
#: library natively, 2 s under valgrind.
LONG_CALL_PREKEYS = 5000


def bundle_argument_call(store: Any, bundle: Any) -> Callable[[], Any]:
    """A call that passes ``bundle`` to the library but is cheap: the name
    trusts another identity, so ``process_bundle`` is refused right after it
    borrowed the bundle, before any key agreement (a PQXDH run per call made
    the valgrind runs take minutes)."""
    store.approve_identity("someone-else", rk.IdentityKeyPair.generate().public_key)

    def call() -> Any:
        try:
            store.process_bundle("someone-else", bundle)
        except rk.UntrustedIdentityError:
            return None
        raise AssertionError("process_bundle should have been refused")

    return call


def make_objects() -> Tuple[Dict[str, Any], List[Op]]:
    """The objects of one round (the five to close under "victims") and the
    operations the workers run on them."""
    alice, bob, carol = rk.Store(), rk.Store(), rk.Store()
    alice.process_bundle("bob", bob.create_bundle())
    assert bob.decrypt("alice", alice.encrypt("bob", b"ping")) == b"ping"
    assert alice.decrypt("bob", bob.encrypt("alice", b"pong")) == b"pong"
    bundle = carol.create_bundle(one_time_prekey=False)
    key = bob.identity_key
    pair = rk.IdentityKeyPair.generate()
    other = pair.public_key
    signature = pair.sign(b"m")
    fp = alice.safety_number("bob", b"alice", b"bob", iterations=2)
    theirs = bob.safety_number("alice", b"bob", b"alice", iterations=2).scannable
    kyber = bundle.kyber_prekey_record
    spk, spk_signature = bundle.signed_prekey, bundle.signed_prekey_signature
    pt = b"x" * 100
    ops: List[Op] = [
        lambda: alice.encrypt("bob", pt),
        lambda: alice.decrypt("bob", bob.encrypt("alice", pt)),
        lambda: alice.save(),
        lambda: alice.has_session("bob"),
        bundle_argument_call(alice, bundle),  # the bundle is an argument
        lambda: alice.approve_identity("bob", key),  # the key is an argument
        lambda: alice.trusted_identity("bob") == key,
        lambda: alice.safety_number("bob", b"a", b"b", iterations=2),
        lambda: bundle.serialize(),
        lambda: bundle.identity_key,
        lambda: bundle.verify_signature(),
        lambda: bundle.kyber_prekey_record,
        lambda: alice.session_version("bob"),
        lambda: alice.policy,
        lambda: alice.kyber_prekey_count,
        lambda: rk.Bundle(1, 1, key, 1, spk, spk_signature, None, kyber),  # the key is an argument
        lambda: key.verify_signature(b"m", signature),
        lambda: key == other,
        lambda: rk.Fingerprint(b"a", key, b"b", other, iterations=2),
        lambda: pair.sign(b"m"),
        lambda: pair.public_key,
        lambda: fp.displayable,
        lambda: fp.compare(theirs),
        lambda: fp.qr_text(),
    ]
    objects = {
        "victims": [alice, bundle, key, pair, fp],
        "keep": [bob, carol, other],
    }
    return objects, ops


def race(
    rng: random.Random,
    victims: Sequence[Any],
    ops: Sequence[Op],
    threads: int,
    before_close: Callable[[], None] = lambda: None,
) -> Tuple[int, int, List[str]]:
    """Workers run ``ops`` until told to stop; the main thread closes
    ``victims`` while they run. Returns (calls that succeeded, calls refused
    as closed, errors)."""
    stop = threading.Event()
    started = threading.Barrier(threads + 1)
    warm = [threading.Event() for _ in range(threads)]
    lock = threading.Lock()
    counts = [0, 0]
    errors: List[str] = []

    def work(seed: int, warmed: threading.Event) -> None:
        order = list(ops)
        random.Random(seed).shuffle(order)
        ok = refused = 0
        started.wait()
        try:
            while not stop.is_set():
                if ok:
                    warmed.set()  # one pass done: the closing may start
                for op in order:
                    try:
                        op()
                        ok += 1
                    except ValueError as e:
                        if "closed" not in str(e):
                            raise
                        refused += 1
        except BaseException:
            with lock:
                errors.append(traceback.format_exc())
        warmed.set()
        with lock:
            counts[0] += ok
            counts[1] += refused

    workers = [
        threading.Thread(target=work, args=(rng.randrange(1 << 30), warm[i]))
        for i in range(threads)
    ]
    for w in workers:
        w.start()
    started.wait()
    for event in warm:
        event.wait(60)
    time.sleep(rng.uniform(0.0, 0.003))
    before_close()
    for victim in rng.sample(list(victims), len(victims)):
        victim.close()
        time.sleep(rng.uniform(0.0, 0.001))
    time.sleep(0.002)
    stop.set()
    for w in workers:
        w.join()
    return counts[0], counts[1], errors


def close_mode(rounds: int, threads: int, seed: int) -> int:
    rng = random.Random(seed)
    ok = refused = 0
    errors: List[str] = []
    start = time.perf_counter()
    for _ in range(rounds):
        objects, ops = make_objects()
        o, r, e = race(rng, objects["victims"], ops, threads)
        ok, refused, errors = ok + o, refused + r, errors + e
        for victim in objects["victims"]:
            if not victim.closed or "closed" not in repr(victim):
                errors.append(f"{type(victim).__name__} is not closed after close()")
    summary = {
        "mode": "close",
        "rounds": rounds,
        "threads": threads,
        "calls_ok": ok,
        "calls_refused_closed": refused,
        "errors": len(errors),
        "seconds": round(time.perf_counter() - start, 2),
    }
    for error in errors[:5]:
        print(error, file=sys.stderr)
    print(json.dumps(summary), flush=True)
    return 1 if errors else 0


def exit_mode() -> int:
    in_long_call = threading.Event()
    failed: List[str] = []

    def after_finalizers() -> None:
        # Registered before the first handle exists, so it runs after the
        # atexit hook of weakref.finalize (atexit runs hooks in reverse
        # order): the long call that was in flight when the finalizers ran
        # gets to return while the process is still alive, so that a store
        # freed under it is seen (by valgrind), not hidden by the exit.
        deadline = time.monotonic() + 120
        while in_long_call.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        if failed:
            sys.stderr.flush()
            os._exit(3)

    atexit.register(after_finalizers)
    alice, bob = rk.Store(), rk.Store()
    alice.process_bundle("bob", bob.create_bundle())
    bundle = bob.create_bundle(one_time_prekey=False)
    fp = alice.safety_number("bob", b"alice", b"bob", iterations=2)

    def fail() -> None:
        failed.append(traceback.format_exc())
        print(failed[-1], file=sys.stderr, flush=True)

    def long_calls() -> None:
        try:
            while True:
                alice.encrypt("bob", b"x" * 100)
                alice.save()
                in_long_call.set()
                try:
                    alice.generate_prekeys(LONG_CALL_PREKEYS)
                finally:
                    in_long_call.clear()
        except ValueError as e:
            if "closed" not in str(e):
                fail()
        except BaseException:
            fail()

    pass_bundle = bundle_argument_call(alice, bundle)

    def short_calls() -> None:
        try:
            while True:
                pass_bundle()
                bundle.serialize()
                _ = fp.displayable
                alice.has_session("bob")
        except ValueError as e:
            if "closed" not in str(e):
                fail()
        except BaseException:
            fail()

    threading.Thread(target=short_calls, daemon=True).start()
    long_thread = threading.Thread(target=long_calls, daemon=True)
    long_thread.start()
    if not wait_inside(long_thread, "generate_prekeys", 120):
        print("the daemon never got inside its long call", file=sys.stderr)
        return 2
    # The interpreter exits (and runs the finalizers of alice, bundle and fp)
    # while the daemon is inside the library in generate_prekeys.
    print(json.dumps({"mode": "exit", "exiting": True}), flush=True)
    return 0


def wait_inside(thread: threading.Thread, method: str, timeout: float) -> bool:
    """Waits until ``thread``'s innermost Python frame is ``method`` (for a
    method that spends nearly all its time in one library call: inside it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident or 0)
        if frame is not None and frame.f_code.co_name == method:
            return True
        time.sleep(0.0005)
    return False


def main(argv: "Sequence[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("close", "exit"))
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.mode == "close":
        return close_mode(args.rounds, args.threads, args.seed)
    return exit_mode()


if __name__ == "__main__":
    sys.exit(main())

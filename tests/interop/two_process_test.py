#!/usr/bin/env python3
"""Two processes on one durable store (issue 10).

Two ratchetkit peers in durable mode are the same user: the first `init`s
the store (`path`, `key`), the second `open`s the same file. They share one
session with a *live* peer (not durable), and run concurrently, each in its
own thread of this script: each alternately encrypts a message to the live
peer (which decrypts it at once) and decrypts a message the live peer has
just encrypted, `--ops` child operations per process. Now and then a
message one process decrypted is delivered to the other as well.

Neither process may run more than SLACK operations ahead of the other.
Without that bound, SQLite's lock is not fair: a process waiting for it
sleeps and retries while the other takes it again and again (waits of
hundreds of milliseconds were seen), and a message the live peer encrypted
for the waiting process can then fall behind more than five DH ratchet
turns of the session. Its receiving chain is then gone, as the protocol
says (MAX_RECEIVER_CHAINS = 5, as libsignal), and it fails with
`invalid_message`: a protocol limit, not a lost advance. Within the bound
the two processes still contend for the lock on every operation. The
longest time a request waited is reported.

    python3 tests/interop/two_process_test.py --child CMD --live CMD [--live CMD ...]
        [--ops N] [--seed N] [--timeout SECONDS]

Checks (any failure ends the run at once):
- no lost advance: every message either process encrypts decrypts at the
  live peer, with its plaintext; every message the live peer sends
  decrypts at the process it is given to, with its plaintext;
- exactly once: a message delivered to the second process after the first
  decrypted it is refused as `duplicate_message`, and so are the last
  messages delivered again to both processes at the end;
- message-key reuse: no two different messages from the two processes
  share a (ratchet key, counter) pair;
- no other error of any kind: in particular no `StoreBusy` (the processes
  use the default 5 s busy timeout);
- the database passes `PRAGMA integrity_check` at the end.

Output: one line per live peer with figures, then `N passed, N failed`.
Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import collections
import os
import queue
import random
import sys
import tempfile
import threading
import time

from durable_common import (KeyReuse, PeerError, ScenarioFailure, check, fail,
                            integrity_check, ratchet_pair, start)


# How many operations one process may be ahead of the other.
SLACK = 2


class Run:
    def __init__(self, child_cmd: str, live_cmd: str, ops: int, seed: int, workdir: str,
                 timeout: float):
        self.child_cmd = child_cmd
        self.live_cmd = live_cmd
        self.ops = ops
        self.seed = seed
        self.timeout = timeout
        self.workdir = workdir
        self.path = os.path.join(workdir, "shared.db")
        self.key = random.Random(seed).randbytes(32)
        self.live_lock = threading.Lock()
        self.reuse = KeyReuse("the two processes")
        self.live_sent: list[tuple[str, bytes, bytes, bytes]] = []  # type, body, plaintext, ratchet key
        self.stats = collections.Counter()
        self.stats_lock = threading.Lock()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.children = []
        self.live = None
        self.done = [0, 0]  # operations finished by each process
        self.progress = threading.Condition()
        self.slowest = 0.0  # the longest child request, in seconds

    def timed(self, child, op: str, **fields) -> dict:
        t0 = time.monotonic()
        try:
            return child.request(op, **fields)
        finally:
            dt = time.monotonic() - t0
            with self.stats_lock:
                self.slowest = max(self.slowest, dt)

    def count(self, what: str) -> None:
        with self.stats_lock:
            self.stats[what] += 1

    def setup(self) -> None:
        self.live = start("live", "live", self.live_cmd, self.timeout)
        check(4 in self.live.versions, f"the live peer ({self.live.impl}) cannot speak version 4")
        self.live.init()
        a = start("child A", "child", self.child_cmd, self.timeout)
        self.children.append(a)
        a.init(path=self.path, key=self.key.hex())
        b = start("child B", "child", self.child_cmd, self.timeout)
        self.children.append(b)
        r = b.request("open", path=self.path, key=self.key.hex())
        check((r.get("identity_key"), r.get("registration_id"))
              == (a.identity_key.hex(), a.registration_id),
              "the second process opened another identity than the first created")
        a.process_bundle("live", self.live.bundle(kyber="one_time"))
        # The live peer has the session once it decrypts a first message.
        self.child_encrypt(a, -1, random.Random(self.seed))

    def child_encrypt(self, child, i: int, rng: random.Random) -> None:
        pt = f"{child.role}#{i}:".encode() + rng.randbytes(rng.randint(0, 200))
        try:
            r = self.timed(child, "encrypt", peer="live", plaintext=pt.hex())
        except PeerError as e:
            fail(f"{child.role}: encrypt #{i}: {e.kind} ({e.message})")
        typ, body = r.get("type"), bytes.fromhex(r.get("body", ""))
        self.reuse.add(typ, body)
        with self.live_lock:
            try:
                got = self.live.request("decrypt", peer="child", type=typ, body=body.hex())
            except PeerError as e:
                fail(f"{child.role}'s message #{i} ({typ}) does not decrypt at the live peer: "
                     f"{e.kind} ({e.message})")
        check(bytes.fromhex(got.get("plaintext", "")) == pt,
              f"{child.role}'s message #{i}: wrong plaintext at the live peer")
        self.count("child->live messages")

    def child_decrypt(self, child, i: int, rng: random.Random, other_q: queue.Queue) -> None:
        pt = f"live to {child.role}#{i}:".encode() + rng.randbytes(rng.randint(0, 200))
        with self.live_lock:
            r = self.live.request("encrypt", peer="child", plaintext=pt.hex())
            typ, body = r.get("type"), bytes.fromhex(r.get("body", ""))
            _, (rk, _) = ratchet_pair(typ, body, "live peer")
            self.live_sent.append((typ, body, pt, rk))
        try:
            got = self.timed(child, "decrypt", peer="live", type=typ, body=body.hex())
        except PeerError as e:
            fail(f"{child.role}: decrypt of live message ({typ}, for #{i}): {e.kind} ({e.message})")
        check(bytes.fromhex(got.get("plaintext", "")) == pt,
              f"{child.role}: live message for #{i}: wrong plaintext")
        self.count("live->child messages")
        if rng.random() < 0.05:
            other_q.put((typ, body))

    def expect_duplicate(self, child, typ: str, body: bytes, why: str) -> None:
        try:
            child.request("decrypt", peer="live", type=typ, body=body.hex())
        except PeerError as e:
            check(e.kind == "duplicate_message",
                  f"{child.role}: {why}: expected duplicate_message, got {e.kind} ({e.message})")
            self.count("duplicates refused")
            return
        fail(f"{child.role}: {why}: a message already decrypted decrypted again")

    def worker(self, idx: int, my_q: queue.Queue, other_q: queue.Queue) -> None:
        child = self.children[idx]
        rng = random.Random(self.seed * 10 + idx)
        try:
            for i in range(self.ops):
                with self.progress:
                    while not self.stop.is_set() and self.done[1 - idx] < min(i - SLACK, self.ops):
                        self.progress.wait(1)
                if self.stop.is_set():
                    return
                while True:
                    try:
                        typ, body = my_q.get_nowait()
                    except queue.Empty:
                        break
                    self.expect_duplicate(child, typ, body, "message the other process decrypted")
                if (i + idx) % 2 == 0:
                    self.child_encrypt(child, i, rng)
                else:
                    self.child_decrypt(child, i, rng, other_q)
                with self.progress:
                    self.done[idx] = i + 1
                    self.progress.notify_all()
        except ScenarioFailure as e:
            self.errors.append(str(e))
            self.stop.set()
        except Exception as e:  # noqa: BLE001  (reported, never swallowed)
            self.errors.append(f"{child.role}: {type(e).__name__}: {e}")
            self.stop.set()
        finally:
            with self.progress:
                self.progress.notify_all()

    def run(self) -> float:
        self.setup()
        queues = [queue.Queue(), queue.Queue()]
        threads = [threading.Thread(target=self.worker, args=(i, queues[i], queues[1 - i]))
                   for i in range(2)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.monotonic() - t0
        if self.errors:
            fail("; ".join(self.errors))
        # The last live messages (last three ratchet keys), to both processes.
        keys = []
        for _, _, _, rk in self.live_sent:
            if not keys or keys[-1] != rk:
                keys.append(rk)
        tail = [m for m in self.live_sent if m[3] in keys[-3:]][-10:]
        for child in self.children:
            for typ, body, _, _ in tail:
                self.expect_duplicate(child, typ, body, "final redelivery")
        for p in self.children + [self.live]:
            p.close()
        integrity_check(self.path, os.path.join(self.workdir, "check"), True)
        return dt


def run_one(args, live_cmd: str, seed: int) -> bool:
    with tempfile.TemporaryDirectory(prefix="rk-two-") as workdir:
        run = Run(args.child, live_cmd, args.ops, seed, workdir, args.timeout)
        try:
            dt = run.run()
        except (ScenarioFailure, PeerError) as e:
            print(f"FAIL two processes, live {live_cmd!r}: {e}", flush=True)
            for p in run.children + [run.live]:
                if p is not None and p.stderr_tail:
                    print(f"--- stderr of {p.role} ({p.impl}), last lines:", file=sys.stderr)
                    for line in list(p.stderr_tail)[-20:]:
                        print(f"    {line}", file=sys.stderr)
            return False
        finally:
            for p in run.children + [run.live]:
                if p is not None:
                    p.kill()
    s = run.stats
    total = s["child->live messages"] + s["live->child messages"]
    print(f"PASS two processes, live {run.live.impl}: {args.ops} operations per process "
          f"({total} in all: {s['child->live messages']} encrypted by the two processes and "
          f"decrypted by the live peer, {s['live->child messages']} encrypted by the live peer "
          f"and decrypted once), {s['duplicates refused']} second deliveries refused as "
          f"duplicates, {len(run.reuse)} distinct (ratchet key, counter) pairs, "
          f"{dt:.1f} s ({total / dt:.0f} child operations/s), longest child request "
          f"{run.slowest * 1000:.0f} ms", flush=True)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", required=True, help="command of the durable peer (ratchetkit-peer)")
    ap.add_argument("--live", action="append", required=True,
                    help="command of a live peer (repeatable; one run each)")
    ap.add_argument("--ops", type=int, default=5000, help="operations per process")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}", flush=True)
    passed = failed = 0
    for i, live in enumerate(args.live):
        ok = run_one(args, live, seed * 1000 + i)
        passed += ok
        failed += not ok
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

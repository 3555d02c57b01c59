#!/usr/bin/env python3
"""SIGKILL crash test of ratchetkit's durable store (issue 10).

A *child* peer in durable mode (`init` with `path` and `key`) talks to a
*live* peer that is never killed (ratchetkit in memory, or the official
libsignal). The test drives a storm of encrypts and decrypts both ways and
kills the child with SIGKILL at random moments: in the middle of a request
(after a random delay about as long as the request takes), right after
reading an answer, between requests, and now and then while it opens the
store. After every kill it checks the database with SQLite's
`PRAGMA integrity_check`, starts a new child that `open`s the store, and
checks the invariants below; then the storm goes on.

    python3 tests/interop/crash_test.py --child CMD --live CMD [--live CMD ...]
        [--kills N] [--seed N] [--timeout SECONDS] [--verbose]

Each live peer gets two runs, each with a new store: in the first the
child starts the session (it processes the live peer's bundle), in the
second the live peer does (the child's first decrypts are prekey
messages). `--kills` is the total, split evenly over all runs. Every
session is version 4 (PQXDH).

Invariants ("reported" = the answer line was read; a complete answer line
the child wrote before it was killed counts as reported: the protocol says
an operation's effect is durable when its answer is written):
- the database opens in SQLite and `PRAGMA integrity_check` says ok after
  every kill (checked on a copy of the database and its WAL, so the next
  `open` recovers the files as the kill left them, and every other time
  in place); `open` answers the identity and registration id of `init`;
- a live->child message the child reported as decrypted is refused as
  `duplicate_message` when delivered again;
- a live->child message whose decrypt was not reported (killed mid-request)
  is delivered again after the restart: it either decrypts (the decrypt
  had not committed) or is `duplicate_message` (it had); no message ever
  decrypts twice, and no message delivered for the first time is refused;
- every message the child reported as encrypted decrypts at the live peer,
  exactly once; an encrypt that was not reported may have committed (the
  live peer then skips a counter), which is fine;
- message-key reuse: every SignalMessage the child produced is recorded by
  (ratchet key, counter), across all kills; two different messages under
  one pair fail the test;
- the conversation continues both ways after every kill (queued messages
  are delivered, then one message each way).

Output: one line per run with its figures, then `N passed, N failed`. Exit
status 0 exactly when every run passed. Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

from durable_common import (KeyReuse, PeerError, RawPeer, ScenarioFailure, check, fail,
                            integrity_check, start)

VERBOSE = False


def log(text: str) -> None:
    if VERBOSE:
        print(f"    . {text}", file=sys.stderr, flush=True)


@dataclass
class LiveMsg:
    """A message the live peer sent to the child."""

    seq: int
    typ: str
    body: bytes
    plaintext: bytes
    ratchet_key: bytes
    # queued: not delivered; unknown: delivered, the child was killed before
    # answering; decrypted: the child reported it; lost: its decrypt
    # committed but the answer never came (a second delivery is a duplicate)
    state: str = "queued"
    decrypts: int = 0


@dataclass
class ChildMsg:
    """A message the child reported as encrypted."""

    seq: int
    typ: str
    body: bytes
    plaintext: bytes
    decrypted: bool = False


# How a kill is placed around a child request (weights in KILL_MODES).
#   blind: send, wait a random delay, kill; any answer is ignored (unknown)
#   read:  send, wait a random delay, kill; a complete answer line written
#          before the kill is read and counts as reported
#   after: read the answer, then kill at once
#   idle:  read the answer, wait a random delay, kill between requests
KILL_MODES = {"blind": 35, "read": 30, "after": 15, "idle": 20}


class Run:
    def __init__(self, label: str, child_cmd: str, live_cmd: str, kills: int,
                 child_initiates: bool, rng: random.Random, workdir: str, timeout: float):
        self.label = label
        self.child_cmd = child_cmd
        self.live_cmd = live_cmd
        self.target_kills = kills
        self.child_initiates = child_initiates
        self.rng = rng
        self.timeout = timeout
        self.path = os.path.join(workdir, "child.db")
        self.scratch = os.path.join(workdir, "check")
        self.key = bytes(rng.getrandbits(8) for _ in range(32))
        self.child: RawPeer | None = None
        self.live: RawPeer | None = None
        self.identity = ("", 0)
        self.to_child: list[LiveMsg] = []  # queued, oldest first
        self.to_live: list[ChildMsg] = []
        self.live_msgs: list[LiveMsg] = []
        self.child_msgs: list[ChildMsg] = []
        self.live_keys: list[bytes] = []  # distinct live ratchet keys, in delivery order
        self.child_reuse = KeyReuse("child")
        self.live_reuse = KeyReuse("live")
        self.seq = 0
        self.latency: dict[str, float] = collections.defaultdict(lambda: 0.004)
        self.countdown = self.next_gap()
        self.stats = collections.Counter()
        self.dead_children: list[RawPeer] = []

    # -- plumbing

    def next_gap(self) -> int:
        return self.rng.randint(1, 8)

    def plaintext(self, tag: str) -> bytes:
        self.seq += 1
        return f"{tag}#{self.seq}:".encode() + self.rng.randbytes(self.rng.randint(0, 256))

    def pick_kill(self) -> str | None:
        """Whether (and how) the next child request is killed."""
        if self.kills >= self.target_kills:
            return None
        self.countdown -= 1
        if self.countdown > 0:
            return None
        self.countdown = self.next_gap()
        return self.rng.choices(list(KILL_MODES), weights=list(KILL_MODES.values()))[0]

    @property
    def kills(self) -> int:
        return sum(v for k, v in self.stats.items() if k.startswith("kill "))

    def call(self, op: str, mode: str | None, **fields) -> tuple[str, object]:
        """One child request with the kill `mode` (None: no kill). Returns
        ("ok", answer), ("error", PeerError) or ("unknown", None)."""
        child = self.child
        self.stats["child requests"] += 1
        t0 = time.monotonic()
        child.send(op, **fields)
        if mode in (None, "after", "idle"):
            try:
                result = ("ok", child.answer(op))
            except PeerError as e:
                result = ("error", e)
            dt = time.monotonic() - t0
            self.latency[op] = 0.8 * self.latency[op] + 0.2 * dt
            if mode == "after":
                self.kill(mode)
            elif mode == "idle":
                time.sleep(self.rng.uniform(0, 2 * self.latency[op]))
                self.kill(mode)
            return result
        # Up to 1.5 times the request's recent duration, more often early.
        time.sleep(1.5 * self.latency[op] * self.rng.random() ** 2)
        lines = self.kill(mode)
        written = "answer written" if lines else "no answer"
        self.stats[f"{mode} kill, {written}"] += 1
        if mode == "blind" or not lines:
            return ("unknown", None)
        try:
            return ("ok", child._parse(op, lines[0]))
        except PeerError as e:
            return ("error", e)

    def kill(self, mode: str) -> list[bytes]:
        child = self.child
        lines = child.kill_and_collect()
        check(child.was_killed(), f"the child ended by itself ({child._exit_status()}) "
                                  f"before SIGKILL")
        self.stats[f"kill {mode}"] += 1
        self.dead_children.append(child)
        self.child = None
        log(f"kill #{self.kills} ({mode})")
        return lines

    # -- the two peers' operations

    def child_encrypt(self, mode: str | None) -> ChildMsg | None:
        pt = self.plaintext("c")
        status, r = self.call("encrypt", mode, peer="live", plaintext=pt.hex())
        if status == "unknown":
            self.stats["unreported encrypts"] += 1
            return None
        if status == "error":
            fail(f"child encrypt failed: {r}")
        typ, body = r.get("type"), bytes.fromhex(r.get("body", ""))
        check(typ in ("prekey", "whisper"), f"child encrypt: type {typ!r}")
        self.child_reuse.add(typ, body)
        m = ChildMsg(self.seq, typ, body, pt)
        self.child_msgs.append(m)
        self.to_live.append(m)
        return m

    def live_encrypt(self) -> LiveMsg:
        pt = self.plaintext("l")
        r = self.live.request("encrypt", peer="child", plaintext=pt.hex())
        typ, body = r.get("type"), bytes.fromhex(r.get("body", ""))
        check(typ in ("prekey", "whisper"), f"live encrypt: type {typ!r}")
        rk, _ = self.live_reuse.add(typ, body)
        m = LiveMsg(self.seq, typ, body, pt, rk)
        self.live_msgs.append(m)
        self.to_child.append(m)
        return m

    def decrypted(self, m: LiveMsg, r: dict, what: str) -> None:
        got = bytes.fromhex(r.get("plaintext", ""))
        check(got == m.plaintext, f"{what}: live message #{m.seq}: wrong plaintext")
        m.decrypts += 1
        check(m.decrypts == 1, f"{what}: live message #{m.seq} decrypted {m.decrypts} times")
        m.state = "decrypted"
        if not self.live_keys or self.live_keys[-1] != m.ratchet_key:
            if m.ratchet_key in self.live_keys:
                self.live_keys.remove(m.ratchet_key)
            self.live_keys.append(m.ratchet_key)

    def deliver_to_child(self, m: LiveMsg, mode: str | None) -> None:
        self.to_child.remove(m)
        status, r = self.call("decrypt", mode, peer="live", type=m.typ, body=m.body.hex())
        if status == "unknown":
            m.state = "unknown"
            self.stats["unreported decrypts"] += 1
        elif status == "error":
            fail(f"first delivery of live message #{m.seq} ({m.typ}) to the child: {r}")
        else:
            self.decrypted(m, r, "first delivery")

    def deliver_to_live(self, m: ChildMsg) -> None:
        self.to_live.remove(m)
        try:
            r = self.live.request("decrypt", peer="child", type=m.typ, body=m.body.hex())
        except PeerError as e:
            fail(f"child message #{m.seq} ({m.typ}), reported as encrypted, does not decrypt "
                 f"at the live peer: {e}")
        check(bytes.fromhex(r.get("plaintext", "")) == m.plaintext,
              f"child message #{m.seq}: wrong plaintext at the live peer")
        m.decrypted = True

    def expect_duplicate(self, m: LiveMsg, why: str) -> None:
        try:
            r = self.child.request("decrypt", peer="live", type=m.typ, body=m.body.hex())
        except PeerError as e:
            check(e.kind == "duplicate_message",
                  f"live message #{m.seq} ({why}) delivered again: expected duplicate_message, "
                  f"got {e.kind} ({e.message})")
            self.stats["duplicates refused"] += 1
            return
        got = bytes.fromhex(r.get("plaintext", ""))
        fail(f"live message #{m.seq} ({why}) delivered again decrypted a second time"
             f"{'' if got == m.plaintext else ' (to a different plaintext)'}")

    # -- the run

    def start_child(self) -> RawPeer:
        return start("child", "child", self.child_cmd, self.timeout)

    def setup(self) -> None:
        self.live = start("live", "live", self.live_cmd, self.timeout)
        check(4 in self.live.versions, f"the live peer ({self.live.impl}) cannot speak version 4")
        self.live.init()
        self.child = self.start_child()
        self.child.init(path=self.path, key=self.key.hex())
        self.identity = (self.child.identity_key.hex(), self.child.registration_id)
        if self.child_initiates:
            self.child.process_bundle("live", self.live.bundle(kyber="one_time"))
            # The live peer needs the session before it can send.
            self.deliver_to_live(self.child_encrypt(None))
        else:
            self.live.process_bundle("child", self.child.bundle(kyber="one_time"))
            # The child needs the session before it can send; the live
            # peer's later prekey messages are delivered in the storm.
            self.deliver_to_child(self.live_encrypt(), None)

    def deliver_to_live_all(self) -> None:
        while self.to_live:
            self.deliver_to_live(self.to_live[0])

    def flush(self) -> None:
        """Deliver everything queued, both ways, oldest first."""
        while self.to_child:
            self.deliver_to_child(self.to_child[0], None)
        self.deliver_to_live_all()

    def restart(self) -> None:
        """After a kill: check the file, open it again (sometimes killing
        the opening process too), resolve the unreported request, check
        duplicates, and make sure the conversation goes on."""
        n = self.kills
        self.stats[f"integrity checks ({integrity_check(self.path, self.scratch, n % 2 == 0)})"] += 1
        while self.kills < self.target_kills and self.rng.random() < 0.1:
            c = self.start_child()
            c.send("open", path=self.path, key=self.key.hex())
            time.sleep(self.rng.uniform(0, 1.5 * self.latency["open"]))
            self.child = c
            self.kill("during open")
            self.stats[f"integrity checks ({integrity_check(self.path, self.scratch, False)})"] += 1
        self.child = self.start_child()
        t0 = time.monotonic()
        r = self.child.request("open", path=self.path, key=self.key.hex())
        self.latency["open"] = 0.8 * self.latency["open"] + 0.2 * (time.monotonic() - t0)
        check((r.get("identity_key"), r.get("registration_id")) == self.identity,
              "open answered another identity or registration id than init")
        self.stats["opens"] += 1
        for m in [m for m in self.live_msgs if m.state == "unknown"]:
            try:
                r = self.child.request("decrypt", peer="live", type=m.typ, body=m.body.hex())
            except PeerError as e:
                check(e.kind == "duplicate_message",
                      f"live message #{m.seq}, unreported decrypt, delivered again after the "
                      f"restart: {e.kind} ({e.message})")
                m.state = "lost"
                self.stats["unreported decrypts that had committed"] += 1
            else:
                self.decrypted(m, r, "delivery after the restart")
                self.stats["unreported decrypts that had not committed"] += 1
        recent = [m for m in self.live_msgs
                  if m.state in ("decrypted", "lost") and m.ratchet_key in self.live_keys[-3:]]
        for m in self.rng.sample(recent, min(3, len(recent))):
            self.expect_duplicate(m, m.state)
        self.flush()
        self.deliver_to_live(self.child_encrypt(None))
        self.deliver_to_child(self.live_encrypt(), None)

    def storm_step(self) -> None:
        choice = self.rng.choices(["child encrypt", "live encrypt", "to child", "to live"],
                                  weights=[30, 30, 25, 15])[0]
        if len(self.to_child) > 20:
            choice = "to child"
        if choice == "child encrypt":
            self.child_encrypt(self.pick_kill())
        elif choice == "live encrypt":
            self.live_encrypt()
        elif choice == "to child" and self.to_child:
            # Mostly in order; now and then one of the next three.
            i = 0 if self.rng.random() < 0.8 else self.rng.randrange(min(3, len(self.to_child)))
            self.deliver_to_child(self.to_child[i], self.pick_kill())
        elif choice == "to live" and self.to_live:
            i = 0 if self.rng.random() < 0.8 else self.rng.randrange(min(3, len(self.to_live)))
            self.deliver_to_live(self.to_live[i])
        if self.child is None:
            self.restart()

    def finish(self) -> None:
        self.flush()
        for m in self.live_msgs:
            check(m.state in ("decrypted", "lost"), f"live message #{m.seq} left in state {m.state}")
        tail = [m for m in self.live_msgs if m.ratchet_key in self.live_keys[-3:]]
        for m in tail[-10:]:
            self.expect_duplicate(m, "final check")
        for m in self.child_msgs:
            check(m.decrypted, f"child message #{m.seq} never decrypted at the live peer")
        for m in self.child_msgs[-3:]:
            try:
                self.live.request("decrypt", peer="child", type=m.typ, body=m.body.hex())
            except PeerError as e:
                check(e.kind == "duplicate_message",
                      f"child message #{m.seq} delivered again to the live peer: {e.kind}")
            else:
                fail(f"child message #{m.seq} decrypted twice at the live peer")
        self.child.close()
        self.live.close()
        integrity_check(self.path, self.scratch, True)

    def run(self) -> None:
        self.setup()
        while self.kills < self.target_kills:
            self.storm_step()
        self.finish()

    def summary(self) -> str:
        s = self.stats
        lost = s["unreported decrypts that had committed"]
        redone = s["unreported decrypts that had not committed"]
        modes = ", ".join(f"{m} {s['kill ' + m]}" for m in list(KILL_MODES) + ["during open"])
        written = ", ".join(f"{k} {v}" for k, v in sorted(s.items()) if "answer written" in k
                            or "no answer" in k)
        checks = sum(v for k, v in s.items() if k.startswith("integrity checks"))
        return (f"{self.kills} kills ({modes}); mid-request kills: {written}; "
                f"{s['child requests']} child requests, {len(self.live_msgs)} live->child and "
                f"{len(self.child_msgs)} reported child->live messages; unreported encrypts "
                f"{s['unreported encrypts']}; unreported decrypts {s['unreported decrypts']} "
                f"(committed: duplicate on redelivery {lost}, not committed: decrypted on "
                f"redelivery {redone}); duplicates refused {s['duplicates refused']}; "
                f"{checks} integrity checks; {len(self.child_reuse)} (ratchet key, counter) "
                f"pairs of the child, none reused")


def run_one(label: str, args, live_cmd: str, kills: int, child_initiates: bool, seed: int) -> bool:
    rng = random.Random(seed)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rk-crash-") as workdir:
        run = Run(label, args.child, live_cmd, kills, child_initiates, rng, workdir, args.timeout)
        who = "child initiates" if child_initiates else "live peer initiates"
        try:
            run.run()
        except (ScenarioFailure, PeerError) as e:
            print(f"FAIL {label} ({who}) after {run.kills} kills: {e}", flush=True)
            for p in ([run.child, run.live] + run.dead_children[-2:]):
                if p is not None and p.stderr_tail:
                    print(f"--- stderr of {p.role} ({p.impl}), last lines:", file=sys.stderr)
                    for line in list(p.stderr_tail)[-20:]:
                        print(f"    {line}", file=sys.stderr)
            if VERBOSE:
                traceback.print_exc()
            return False
        finally:
            for p in (run.child, run.live):
                if p is not None:
                    p.kill()
    dt = time.monotonic() - t0
    print(f"PASS {label} ({who}, {run.live.impl}), {dt:.1f} s: {run.summary()}", flush=True)
    return True


def main(argv=None) -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", required=True, help="command of the durable peer (ratchetkit-peer)")
    ap.add_argument("--live", action="append", required=True,
                    help="command of a live peer (repeatable; one run each)")
    ap.add_argument("--kills", type=int, default=40, help="total SIGKILLs, split over the runs")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"seed {seed}", flush=True)
    passed = failed = 0
    runs = [(live, child_initiates) for live in args.live for child_initiates in (True, False)]
    n = len(runs)
    t0 = time.monotonic()
    for i, (live, child_initiates) in enumerate(runs):
        kills = args.kills // n + (1 if i < args.kills % n else 0)
        label = f"crash run {i + 1}/{n}: live {live!r}"
        ok = run_one(label, args, live, kills, child_initiates, seed=seed * 1000 + i)
        passed += ok
        failed += not ok
    print(f"{time.monotonic() - t0:.1f} s in all")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the durable-store tests (crash_test.py, two_process_test.py).

Peer processes are driver.py's `Peer` (same spawning, reader threads and
SIGKILL of the process group); `RawPeer` adds sending a request without
waiting for its answer, so that a test can kill the process in the middle
of a request. Python 3.11, standard library only.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sqlite3
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import driver  # noqa: E402  (the scenario driver: Peer, wire parsers)

ScenarioFailure = driver.ScenarioFailure
PeerError = driver.PeerError
fail = driver.fail
check = driver.check


class RawPeer(driver.Peer):
    """A driver Peer that can also send a request and read its answer later."""

    def send(self, op: str, **fields) -> None:
        """Write one request; do not wait for the answer."""
        data = (json.dumps({"op": op, **fields}, separators=(",", ":")) + "\n").encode()
        self._write(data)

    def answer(self, op: str) -> dict:
        """The answer to the request sent last: a dict without `ok`, or
        PeerError for ok=false (as driver.Peer.request)."""
        try:
            line = self._answers.get(timeout=self.timeout)
        except queue.Empty:
            self.kill()
            fail(f"{self.role} ({self.impl}) gave no answer to {op} within {self.timeout:g} s")
        if line is None:
            self._answers.put(None)
            fail(f"{self.role} ({self.impl}) exited during {op} ({self._exit_status()})")
        return self._parse(op, line)

    def _parse(self, op: str, line: bytes) -> dict:
        try:
            resp = json.loads(line)
        except ValueError:
            fail(f"{self.role} answered {op} with a line that is not JSON: {line[:200]!r}")
        if not isinstance(resp, dict) or not isinstance(resp.get("ok"), bool):
            fail(f"{self.role} answered {op} without a boolean 'ok'")
        if not resp["ok"]:
            raise PeerError(self, op, str(resp.get("error")), str(resp.get("message", "")))
        resp.pop("ok")
        return resp

    def kill_and_collect(self) -> list[bytes]:
        """SIGKILL the process, then return every complete answer line it
        had written (a line without its newline was cut by the kill and
        does not count)."""
        self.kill()
        lines = []
        while True:
            try:
                line = self._answers.get(timeout=10)
            except queue.Empty:
                fail(f"{self.role}: stdout not closed 10 s after SIGKILL")
            if line is None:
                self._answers.put(None)
                return lines
            if line.endswith(b"\n"):
                lines.append(line)

    def was_killed(self) -> bool:
        return self.proc.returncode == -9


def start(role: str, name: str, cmd: str, timeout: float) -> RawPeer:
    p = RawPeer(role, name, cmd, timeout)
    p.hello()
    return p


# --------------------------------------------------------------------------
# the database


def integrity_check(path: str, scratch: str, in_place: bool) -> str:
    """PRAGMA integrity_check on the store at `path`, which no process holds
    open. in_place: on the file itself (this connection recovers the WAL
    and, on close, checkpoints it into the database); otherwise on a copy
    of the database and its WAL, which leaves the files exactly as the
    killed process left them for the next `open`. Returns "in place" or
    "copy"; fails unless SQLite answers exactly "ok"."""
    target = path
    if not in_place:
        os.makedirs(scratch, exist_ok=True)
        target = os.path.join(scratch, "check.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(target + suffix):
                os.remove(target + suffix)
        shutil.copyfile(path, target)
        if os.path.exists(path + "-wal"):
            shutil.copyfile(path + "-wal", target + "-wal")
    try:
        db = sqlite3.connect(target, timeout=5)
        try:
            rows = db.execute("PRAGMA integrity_check").fetchall()
            mode = db.execute("PRAGMA journal_mode").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            counts = None
            if "row_counts" in tables:
                counts = (db.execute("SELECT n FROM row_counts WHERE tbl = 'sessions'").fetchall(),
                          db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as e:
        fail(f"the database does not open in SQLite ({'in place' if in_place else 'copy'}): {e}")
    check(rows == [("ok",)], f"PRAGMA integrity_check: {rows[:5]!r}")
    check(mode.lower() == "wal", f"journal mode is {mode!r}, not wal")
    check("sessions" in tables and "store_key" in tables and "row_counts" in tables,
          f"tables missing: {sorted(tables)}")
    kept, rows_counted = counts
    check(kept == [(rows_counted,)],
          f"the kept session count {kept!r} is not the {rows_counted} session rows")
    return "in place" if in_place else "copy"


# --------------------------------------------------------------------------
# the message-key-reuse check


def ratchet_pair(typ: str, body: bytes, what: str) -> tuple[bytes, tuple[bytes, int]]:
    """The SignalMessage in a message of type `typ` (a PreKeySignalMessage
    carries it in field 4), and its (ratchet key, counter)."""
    try:
        inner = driver.parse_prekey(body).message if typ == "prekey" else body
        w = driver.parse_whisper(inner)
    except driver.WireError as e:
        fail(f"{what}: a {typ} message does not parse: {e}")
    return inner, (w.ratchet_key.value, w.counter.value)


class KeyReuse:
    """Every SignalMessage seen from one sender, by (ratchet key, counter):
    two different messages under one pair means a message key used twice."""

    def __init__(self, what: str):
        self.what = what
        self.seen: dict[tuple[bytes, int], bytes] = {}
        self.lock = threading.Lock()

    def add(self, typ: str, body: bytes) -> tuple[bytes, int]:
        inner, pair = ratchet_pair(typ, body, self.what)
        with self.lock:
            old = self.seen.setdefault(pair, inner)
        check(old == inner, f"{self.what}: two different messages for ratchet key "
                            f"{pair[0].hex()[:16]}... counter {pair[1]}: message key reused")
        return pair

    def __len__(self) -> int:
        return len(self.seen)

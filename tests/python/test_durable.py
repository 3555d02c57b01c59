"""Durable stores: Store.open / import_store / rekey / is_durable, two-phase
decrypt (commit, discard, conflict), several handles and processes, and
the store errors (wrong key, corrupt, busy, storage)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest
from conftest import converse

import ratchetkit as rk

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


def start(bob: rk.Store) -> rk.Store:
    """An in-memory Alice with a session to ``bob`` (not yet answered)."""
    alice = rk.Store()
    alice.process_bundle("bob", rk.Bundle.from_bytes(bob.create_bundle().serialize()))
    return alice


@pytest.fixture
def chat(db: Path) -> Iterator[Tuple[rk.Store, rk.Store]]:
    """Alice in memory, Bob durable at ``db``, one message each way."""
    bob = rk.Store.open(db, key=KEY)
    alice = start(bob)
    converse(alice, bob)
    yield alice, bob
    alice.close()
    bob.close()


# --- open, options, errors -----------------------------------------------------


def test_open_creates_then_reopens(db: Path) -> None:
    assert not db.exists()
    with rk.Store.open(db, key=KEY) as store:
        assert store.is_durable and db.exists()
        assert store.device_id == 1
        identity, registration_id = bytes(store.identity_key), store.registration_id
        store.generate_prekeys(3)
    with rk.Store.open(str(db), KEY, create=False) as again:
        assert bytes(again.identity_key) == identity
        assert again.registration_id == registration_id
        assert again.prekey_count == 3
    assert not rk.Store().is_durable


def test_open_options(tmp_path: Path) -> None:
    with rk.Store.open(tmp_path / "d7.db", key=KEY, device_id=7, durability="normal") as s:
        assert s.device_id == 7 and s.is_durable
    # The file's device id wins once it holds a store.
    with rk.Store.open(os.fsencode(tmp_path / "d7.db"), key=KEY, device_id=9) as s:
        assert s.device_id == 7
    with pytest.raises(rk.StorageError):
        rk.Store.open(tmp_path / "new.db", key=KEY, create=False)
    for bad in ({"durability": "sometimes"}, {"durability": 0}, {"busy_timeout": -1},
                {"busy_timeout": float("nan")}, {"busy_timeout": 1e10}, {"device_id": 0},
                {"device_id": -1}, {"device_id": 2**32}):
        with pytest.raises(ValueError):
            rk.Store.open(tmp_path / "x.db", key=KEY, **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rk.Store.open(tmp_path / "x.db", key=KEY, create=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rk.Store.open(tmp_path / "x.db", key="not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rk.Store.open(str(tmp_path / "x\0.db"), key=KEY)
    with pytest.raises(TypeError):
        rk.Store.open(tmp_path / "x.db", KEY, 1)  # type: ignore[misc]  # keywords only
    assert not (tmp_path / "x.db").exists()


def test_store_errors(tmp_path: Path, db: Path) -> None:
    rk.Store.open(db, key=KEY).close()
    with pytest.raises(rk.WrongStoreKeyError) as info:
        rk.Store.open(db, key=OTHER_KEY)
    assert info.value.status == 403 and info.value.status_name == "RK_STATUS_WRONG_STORE_KEY"
    with pytest.raises(rk.InvalidKeyError):
        rk.Store.open(db, key=KEY[:31])
    with pytest.raises(rk.StorageError):
        rk.Store.open(tmp_path / "missing" / "dir.db", key=KEY)
    junk = tmp_path / "junk.db"
    junk.write_bytes(bytes((i * 7 + 3) & 0xFF for i in range(8192)))
    with pytest.raises(rk.StoreCorruptError):
        rk.Store.open(junk, key=KEY)
    # Another application's SQLite database is not taken over.
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(rk.StorageError, match="other tables"):
        rk.Store.open(other, key=KEY)
    for cls in (rk.WrongStoreKeyError, rk.StoreCorruptError, rk.StoreBusyError,
                rk.ConflictError, rk.StorageError):
        assert issubclass(cls, rk.RatchetkitError) and cls.__module__ == "ratchetkit"


LOCK_HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    conn.close()
    """
)


def test_busy(db: Path) -> None:
    """Another process holds the database's write lock: StoreBusyError after
    the busy timeout, nothing written; the same call works once it is
    released. (The lock is held from another process: SQLite's POSIX locks
    do not exclude two SQLite copies inside one process.)"""
    store = rk.Store.open(db, key=KEY, busy_timeout=0.2)
    alice = start(store)
    message = alice.encrypt("bob", b"waits for the lock")
    before = store.save()
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        began = time.monotonic()
        with pytest.raises(rk.StoreBusyError):
            store.decrypt("alice", message)
        assert time.monotonic() - began >= 0.15
        with pytest.raises(rk.StoreBusyError):
            rk.Store.open(db, key=KEY, busy_timeout=0)
    finally:
        assert holder.stdin is not None
        holder.stdin.write("done\n")
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
        holder.stdout.close()  # type: ignore[union-attr]
    assert store.save() == before
    assert store.decrypt("alice", message) == b"waits for the lock"
    store.close()


# --- a conversation across close and reopen --------------------------------------


def test_conversation_across_reopen(chat: Tuple[rk.Store, rk.Store], db: Path) -> None:
    alice, bob = chat
    a1, a2, a3 = (alice.encrypt("bob", b"a%d" % i) for i in (1, 2, 3))
    assert bob.decrypt("alice", a1) == b"a1"
    assert bob.decrypt("alice", a3) == b"a3"  # a2's key kept as skipped
    in_flight = bob.encrypt("alice", b"sent before the restart")
    bob.close()

    bob = rk.Store.open(db, key=KEY)
    assert bob.has_session("alice") and bob.session_count == 1
    for seen in (a1, a3):
        with pytest.raises(rk.DuplicateMessageError):
            bob.decrypt("alice", seen)
    assert bob.decrypt("alice", a2) == b"a2"
    assert alice.decrypt("bob", in_flight) == b"sent before the restart"
    converse(alice, bob)
    bob.close()
    with rk.Store.open(db, key=KEY, durability="normal") as bob:
        with pytest.raises(rk.DuplicateMessageError):
            bob.decrypt("alice", a2)
        converse(alice, bob)


def test_failed_decrypt_writes_nothing(chat: Tuple[rk.Store, rk.Store]) -> None:
    alice, bob = chat
    message = alice.encrypt("bob", b"intact")
    before = bob.save()
    body = bytearray(message.body)
    body[-1] ^= 1
    with pytest.raises(rk.InvalidMessageError):
        bob.decrypt("alice", (message.type, bytes(body)))
    with pytest.raises(rk.InvalidMessageError):
        bob.decrypt_pending("alice", 1, message.type, bytes(body))
    assert bob.save() == before
    assert bob.decrypt("alice", message) == b"intact"


# --- rekey, import ----------------------------------------------------------------


def test_rekey(chat: Tuple[rk.Store, rk.Store], db: Path) -> None:
    alice, bob = chat
    with pytest.raises(rk.WrongStoreKeyError):
        bob.rekey(OTHER_KEY, OTHER_KEY)
    with pytest.raises(rk.InvalidKeyError):
        bob.rekey(KEY, OTHER_KEY[:16])
    with pytest.raises(rk.InvalidArgumentError):
        alice.rekey(KEY, OTHER_KEY)
    bob.rekey(bytearray(KEY), OTHER_KEY)
    converse(alice, bob)  # the open handle keeps working
    with pytest.raises(rk.WrongStoreKeyError):
        rk.Store.open(db, key=KEY)
    with pytest.raises(rk.WrongStoreKeyError):
        bob.rekey(KEY, OTHER_KEY)
    bob.close()
    with rk.Store.open(db, key=OTHER_KEY) as reopened:
        converse(alice, reopened)


def test_import_saved_bytes(tmp_path: Path) -> None:
    alice, bob = rk.Store(), rk.Store()
    alice.process_bundle("bob", rk.Bundle.from_bytes(bob.create_bundle().serialize()))
    converse(alice, bob)
    in_flight = bob.encrypt("alice", b"across the import")
    pickle_key = os.urandom(rk.PICKLE_KEY_LEN)
    saved = alice.save(key=pickle_key)  # what the app kept so far

    restored = rk.Store.restore(saved, key=pickle_key)
    path = tmp_path / "imported.db"
    durable = rk.Store.import_store(path, key=KEY, store=restored)
    assert durable.is_durable and not restored.is_durable
    assert restored.save(key=None) == durable.save()  # the same records
    assert durable.identity_key == alice.identity_key
    with pytest.raises(rk.StorageError):
        rk.Store.import_store(path, key=KEY, store=restored)  # holds a store already
    with pytest.raises(rk.InvalidArgumentError):
        rk.Store.import_store(tmp_path / "again.db", key=KEY, store=durable)
    restored.close()
    with pytest.raises(ValueError):
        rk.Store.import_store(tmp_path / "closed.db", key=KEY, store=restored)

    assert durable.decrypt("bob", in_flight) == b"across the import"
    converse(durable, bob)
    durable.close()
    with rk.Store.open(path, key=KEY) as reopened:
        with pytest.raises(rk.DuplicateMessageError):
            reopened.decrypt("bob", in_flight)
        converse(reopened, bob)


# --- several handles ----------------------------------------------------------


def test_two_handles_alternate(db: Path) -> None:
    h1 = rk.Store.open(db, key=KEY)
    h2 = rk.Store.open(db, key=KEY)
    assert h1.identity_key == h2.identity_key
    alice = start(h1)
    for i in range(6):
        h, other = (h2, h1) if i % 2 else (h1, h2)
        message = alice.encrypt("bob", b"to bob %d" % i)
        assert h.decrypt("alice", message) == b"to bob %d" % i
        with pytest.raises(rk.DuplicateMessageError):
            other.decrypt("alice", message)
        assert alice.decrypt("bob", h.encrypt("alice", b"back %d" % i)) == b"back %d" % i
    h1.close()
    converse(alice, h2)
    h2.close()


# --- two-phase decrypt --------------------------------------------------------


def test_pending_commit(db: Path) -> None:
    bob = rk.Store.open(db, key=KEY)
    alice = start(bob)
    prekeys = bob.prekey_count
    first = alice.encrypt("bob", b"first, two-phase")
    assert first.is_prekey
    before = bob.save()
    pending = bob.decrypt_pending("alice", 1, first.type, first.body)
    assert isinstance(pending, rk.PendingDecrypt)
    assert pending.plaintext == b"first, two-phase" and not pending.committed
    assert "pending" in repr(pending)
    assert bob.save() == before  # nothing written yet
    assert not bob.has_session("alice")
    pending.commit()
    assert pending.committed and pending.closed
    assert pending.plaintext == b"first, two-phase"  # kept after the commit
    assert bob.has_session("alice") and bob.prekey_count == prekeys - 1
    with pytest.raises(ValueError):
        pending.commit()
    with pytest.raises(rk.DuplicateMessageError):
        bob.decrypt("alice", first)
    with pytest.raises(rk.DuplicateMessageError):
        bob.decrypt_pending("alice", 1, first.type, first.body)
    # The usual shape: a with block, commit once the plaintext is kept.
    second = alice.encrypt("bob", b"second")
    inbox = []
    with bob.decrypt_pending("alice", 1, int(second.type), bytearray(second.body)) as p:
        inbox.append(p.plaintext)
        p.commit()
    assert inbox == [b"second"]
    with pytest.raises(rk.DuplicateMessageError):
        bob.decrypt("alice", second)
    bob.close()


def test_pending_discard(chat: Tuple[rk.Store, rk.Store]) -> None:
    alice, bob = chat
    message = alice.encrypt("bob", b"decrypted three times")
    before = bob.save()
    # A with block left without a commit discards...
    with bob.decrypt_pending("alice", 1, message.type, message.body) as p:
        assert p.plaintext == b"decrypted three times"
    assert p.closed and not p.committed
    # ...and so does discard(), and an exception inside the block.
    p = bob.decrypt_pending("alice", 1, message.type, message.body)
    p.discard()
    assert p.closed and not p.committed
    with pytest.raises(ValueError):
        p.commit()
    with pytest.raises(RuntimeError):
        with bob.decrypt_pending("alice", 1, message.type, message.body):
            raise RuntimeError("the app failed to keep the plaintext")
    assert bob.save() == before
    assert bob.decrypt("alice", message) == b"decrypted three times"


def test_pending_conflict(db: Path) -> None:
    h1 = rk.Store.open(db, key=KEY)
    h2 = rk.Store.open(db, key=KEY)
    alice = start(h1)
    converse(alice, h1)
    m5, m6 = alice.encrypt("bob", b"five"), alice.encrypt("bob", b"six")
    pending = h1.decrypt_pending("alice", 1, m5.type, m5.body)
    assert h2.decrypt("alice", m6) == b"six"  # another handle, in between
    before = h1.save()
    with pytest.raises(rk.ConflictError):
        pending.commit()
    assert pending.closed and not pending.committed
    assert h1.save() == before  # nothing written
    assert h1.decrypt("alice", m5) == b"five"  # decrypts again

    # Both handles decrypt the same message: one commit wins.
    m7 = alice.encrypt("bob", b"seven")
    p1 = h1.decrypt_pending("alice", 1, m7.type, m7.body)
    p2 = h2.decrypt_pending("alice", 1, m7.type, m7.body)
    p2.commit()
    with pytest.raises(rk.ConflictError):
        p1.commit()
    with pytest.raises(rk.DuplicateMessageError):
        h1.decrypt("alice", m7)
    h1.close()
    h2.close()


def test_pending_misuse(chat: Tuple[rk.Store, rk.Store]) -> None:
    alice, bob = chat
    message = alice.encrypt("bob", b"x")
    with pytest.raises(rk.InvalidArgumentError):
        alice.decrypt_pending("bob", 1, message.type, message.body)  # in memory
    with pytest.raises(rk.InvalidArgumentError):
        bob.decrypt_pending("alice", 1, 1, message.body)
    with pytest.raises(rk.InvalidMessageError):
        bob.decrypt_pending("alice", 1, message.type, b"")
    with pytest.raises(rk.NoSessionError):
        bob.decrypt_pending("alice", 2, message.type, message.body)
    with pytest.raises(ValueError):
        bob.decrypt_pending("alice", -1, message.type, message.body)
    with pytest.raises(TypeError):
        bob.decrypt_pending("alice", 1, message.type, "text")  # type: ignore[arg-type]
    # The pending decrypt outlives its store object.
    pending = bob.decrypt_pending("alice", 1, message.type, message.body)
    bob.close()
    with pytest.raises(ValueError):
        bob.decrypt_pending("alice", 1, message.type, message.body)
    pending.commit()
    assert pending.committed


# --- several processes ----------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import ratchetkit as rk

    path, key, mtype, body, mode = sys.argv[1:]
    store = rk.Store.open(path, key=bytes.fromhex(key))
    pending = store.decrypt_pending("alice", 1, int(mtype), bytes.fromhex(body))
    if mode == "commit":
        pending.commit()
    print(pending.plaintext.hex(), flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


def run_child(db: Path, message: rk.Message, mode: str) -> bytes:
    """A child process decrypts ``message`` (and commits it if ``mode`` is
    "commit"), reports the plaintext, and is killed with SIGKILL."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), KEY.hex(), str(int(message.type)),
         message.body.hex(), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.stderr.read() if child.stderr else ""
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    return bytes.fromhex(line.decode().strip())


def test_child_killed_before_commit(chat: Tuple[rk.Store, rk.Store], db: Path) -> None:
    alice, bob = chat
    message = alice.encrypt("bob", b"the child dies before its commit")
    assert run_child(db, message, "pending") == b"the child dies before its commit"
    # Nothing was written: the parent decrypts the message (after the
    # child's process, and its SQLite connection, are gone).
    assert bob.decrypt("alice", message) == b"the child dies before its commit"
    with rk.Store.open(db, key=KEY) as reopened:
        with pytest.raises(rk.DuplicateMessageError):
            reopened.decrypt("alice", message)


def test_child_killed_after_commit(chat: Tuple[rk.Store, rk.Store], db: Path) -> None:
    alice, bob = chat
    message = alice.encrypt("bob", b"the child commits, then dies")
    assert run_child(db, message, "commit") == b"the child commits, then dies"
    with pytest.raises(rk.DuplicateMessageError):
        bob.decrypt("alice", message)
    converse(alice, bob)  # the session goes on from the child's state


def test_c_default_options_match_the_binding() -> None:
    from ratchetkit import _lib, store

    c = _lib.lib.rk_store_options_default()
    ours = store._store_options(1, True, "full", 5.0)
    assert (c.create_device_id, c.durability, c.busy_timeout_ms) == (1, 0, 5000)
    assert (ours.create_device_id, ours.durability, ours.busy_timeout_ms) == (1, 0, 5000)

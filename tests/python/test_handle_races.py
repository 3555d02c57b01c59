"""Closing a handle while other threads use it (issue 14, item 4): the
rule of ratchetkit._handle, step by step and in races, in this process.

A handle is freed only when no call is using it: calls in flight finish,
later ones raise ``ValueError``, and the free happens once, by close() or
by the last call in flight to return. The same races run in subprocesses,
natively and under valgrind, in test_handle_races_valgrind.py.
"""

from __future__ import annotations

import ctypes
import gc
import random
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type

import handle_race
import pytest

import ratchetkit as rk
from ratchetkit import _handle

HANDLE_CLASSES = (rk.Store, rk.Bundle, rk.PublicKey, rk.IdentityKeyPair, rk.Fingerprint)
OWNER_TYPES = (_handle._Owner, _handle._LockedOwner)


# -- the owner protocol, step by step ----------------------------------------


class FakeFree:
    def __init__(self) -> None:
        self.freed: List[Any] = []

    def __call__(self, ptr: Any) -> None:
        self.freed.append(ptr)


@pytest.mark.parametrize("owner_type", OWNER_TYPES, ids=lambda t: t.__name__)
def test_close_without_calls_frees_at_once_and_once(owner_type: Type[_handle._Owner]) -> None:
    free = FakeFree()
    owner = owner_type("p", free, "Thing")
    with owner as ptr:
        assert ptr == "p" and owner.calls_in_flight == 1
    assert owner.calls_in_flight == 0 and free.freed == []
    owner.close()
    assert free.freed == ["p"] and owner.freed and owner.ptr is None
    owner.close()
    assert free.freed == ["p"]
    with pytest.raises(ValueError, match="Thing is closed"):
        owner.enter()
    assert owner.calls_in_flight == 0 and free.freed == ["p"]


@pytest.mark.parametrize("owner_type", OWNER_TYPES, ids=lambda t: t.__name__)
def test_close_during_calls_defers_the_free_to_the_last_call(
    owner_type: Type[_handle._Owner],
) -> None:
    free = FakeFree()
    owner = owner_type("p", free, "Thing")
    assert owner.enter() == "p"
    assert owner.enter() == "p"
    owner.close()  # returns at once: two calls are in flight
    assert owner.closed and free.freed == [] and owner.ptr == "p"
    with pytest.raises(ValueError, match="closed"):
        owner.enter()  # no new call
    assert owner.calls_in_flight == 2
    owner.leave()
    assert free.freed == []
    owner.leave()  # the last call out frees it
    assert free.freed == ["p"] and owner.calls_in_flight == 0
    owner.close()
    assert free.freed == ["p"]


@pytest.mark.parametrize("owner_type", OWNER_TYPES, ids=lambda t: t.__name__)
def test_a_failing_call_still_leaves(owner_type: Type[_handle._Owner]) -> None:
    free = FakeFree()
    owner = owner_type("p", free, "Thing")
    with pytest.raises(RuntimeError):
        with owner:
            owner.close()
            raise RuntimeError
    assert free.freed == ["p"] and owner.calls_in_flight == 0


@pytest.mark.parametrize("owner_type", OWNER_TYPES, ids=lambda t: t.__name__)
def test_owner_under_threads(owner_type: Type[_handle._Owner]) -> None:
    """Threads borrow and release while one closes: freed once, never borrowed after."""
    for _ in range(50):
        free = FakeFree()
        owner = owner_type("p", free, "Thing")
        bad: List[str] = []
        start = threading.Barrier(5)

        def work() -> None:
            start.wait()
            while True:
                try:
                    ptr = owner.enter()
                except ValueError:
                    return
                try:
                    if free.freed or ptr != "p":
                        bad.append("borrowed after the free")
                finally:
                    owner.leave()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        start.wait()
        time.sleep(random.uniform(0, 0.002))
        owner.close()
        for t in threads:
            t.join()
        assert not bad and free.freed == ["p"] and owner.calls_in_flight == 0


def test_the_owner_type_matches_the_interpreter() -> None:
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    assert _handle.OWNER is (_handle._Owner if gil else _handle._LockedOwner)


# -- every method borrows its handles ----------------------------------------


class Borrows:
    """Records which owners are borrowed around each C call."""

    def __init__(self) -> None:
        self.entered: List[_handle._Owner] = []


@pytest.fixture
def borrows(monkeypatch: pytest.MonkeyPatch) -> Iterator[Borrows]:
    record = Borrows()
    for cls in OWNER_TYPES:
        original = cls.enter

        def enter(self: _handle._Owner, _original: Callable[..., Any] = original) -> Any:
            record.entered.append(self)
            return _original(self)

        monkeypatch.setattr(cls, "enter", enter)
    yield record


def test_calls_that_take_a_handle_argument_borrow_it(borrows: Borrows) -> None:
    alice, bob = rk.Store(), rk.Store()
    bundle = bob.create_bundle()
    key = bob.identity_key
    pair = rk.IdentityKeyPair.generate()
    cases: List[Tuple[Callable[[], Any], List[Any]]] = [
        (lambda: alice.process_bundle("bob", bundle), [alice, bundle]),
        (lambda: alice.approve_identity("bob", key), [alice, key]),
        (lambda: key == pair.public_key, [key]),
        (lambda: rk.Fingerprint(b"a", key, b"b", key, iterations=2), [key]),
        (lambda: rk.Store.with_identity(pair, 7), [pair]),
        (
            lambda: rk.Bundle(1, 1, key, 1, bundle.signed_prekey, bundle.signed_prekey_signature,
                              rk.PreKey(5, key)),
            [key],
        ),
        (
            lambda: rk.Bundle(1, 1, key, 1, bundle.signed_prekey, bundle.signed_prekey_signature,
                              rk.PreKey(5, key), bundle.kyber_prekey_record),
            [key],
        ),
    ]
    for call, owners in cases:
        borrows.entered.clear()
        call()
        for obj in owners:
            assert any(o is obj._h for o in borrows.entered), (call, obj)
    # A closed argument is refused before the call, and the store's borrow
    # is given back (nothing stays counted).
    bundle.close()
    with pytest.raises(ValueError, match="Bundle is closed"):
        alice.process_bundle("bob", bundle, device_id=1)
    assert alice._h.calls_in_flight == 0 and not alice.closed


def test_no_method_uses_a_raw_pointer() -> None:
    """The binding reaches a handle's pointer only through a borrow."""
    package = Path(rk.__file__).resolve().parent
    for path in package.glob("*.py"):
        text = path.read_text()
        assert "._p()" not in text and "_h.ptr" not in text, path.name


# -- the races, natively --------------------------------------------------------


def test_close_while_threads_call_every_method(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round closes a store, a bundle, a public key, a key pair and a
    fingerprint while three threads call every kind of method on them.

    Hooks on the free functions check that each handle is freed exactly
    once, with no call in flight on it, and that frees were deferred to the
    last call at least sometimes (the closer found calls in flight)."""
    lock = threading.Lock()
    owners: Dict[int, _handle._Owner] = {}
    frees: List[Tuple[Any, Optional[_handle._Owner], Optional[int], bool]] = []
    original_adopt = _handle.Handle._adopt

    def adopt(self: _handle.Handle, ptr: Any) -> None:
        original_adopt(self, ptr)
        with lock:
            owners[ctypes.addressof(ptr.contents)] = self._h

    def hooked(free: Callable[[Any], None]) -> Callable[[Any], None]:
        def hook(ptr: Any) -> None:
            with lock:
                owner = owners.get(ctypes.addressof(ptr.contents))
                in_flight = owner.calls_in_flight if owner is not None else None
                on_main = threading.current_thread() is threading.main_thread()
                frees.append((ptr, owner, in_flight, on_main))
            free(ptr)

        return hook

    monkeypatch.setattr(_handle.Handle, "_adopt", adopt)
    for cls in HANDLE_CLASSES:
        monkeypatch.setattr(cls, "_free", hooked(cls.__dict__["_free"]))

    rng = random.Random(14)
    ok = refused = deferred = closed = 0
    for _ in range(40):
        objects, ops = handle_race.make_objects()
        victims = [v._h for v in objects["victims"]]
        o, r, errors = handle_race.race(rng, objects["victims"], ops, threads=3)
        assert errors == [], errors[0]
        ok, refused = ok + o, refused + r
        for owner in victims:
            assert owner.closed and owner.freed and owner.ptr is None
            assert owner.calls_in_flight == 0
            freed = [f for f in frees if f[1] is owner]
            assert len(freed) == 1
            closed += 1
            deferred += not freed[0][3]  # freed by a worker's last call, not by close()
    assert ok > 0 and refused > 0
    assert len({id(f[0]) for f in frees}) == len(frees), "a pointer was freed twice"
    assert [f for f in frees if f[2]] == [], "freed while a call was in flight"
    freed_owners = [id(f[1]) for f in frees if f[1] is not None]
    assert len(set(freed_owners)) == len(freed_owners), "a handle was freed twice"
    print(f"\n{ok} calls ran, {refused} were refused as closed; {deferred} of the {closed} "
          f"handles closed were freed by the last call in flight, not by close()")
    assert deferred > 0, "no close() found a call in flight: the race did not happen"


def test_failing_calls_give_their_borrow_back_and_gc_frees() -> None:
    store = rk.Store()
    owner = store._h
    for _ in range(3):
        with pytest.raises(rk.NoSessionError):
            store.encrypt("nobody", b"x")
        with pytest.raises(rk.InvalidMessageError):
            store.decrypt_whisper_message("nobody", b"x")
    assert owner.calls_in_flight == 0 and not owner.freed
    del store
    gc.collect()
    assert owner.freed


def test_the_exit_finalizer_frees_only_handles_no_call_uses() -> None:
    """At exit, weakref.finalize closes every live handle: those with a call
    in flight (a borrow held here, as a daemon thread inside a call would)
    are left allocated, the others are freed."""
    code = textwrap.dedent(
        """
        import os
        import ratchetkit as rk

        def report(name, free):
            def hook(ptr):
                os.write(1, f"freed {name}\\n".encode())
                free(ptr)
            return hook

        rk.Store._free = report("store", rk.Store._free)
        rk.Bundle._free = report("bundle", rk.Bundle._free)
        idle = rk.Store()
        busy = rk.Store()
        bundle = busy.create_bundle()
        busy._h.enter()      # a call in flight on busy ...
        bundle._h.enter()    # ... with the bundle as its argument
        del idle             # freed now, by garbage collection
        os.write(1, b"exiting\\n")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["freed store", "exiting"], out.stdout
    assert out.stderr == ""

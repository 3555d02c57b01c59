"""Handles: close(), with blocks, garbage collection, and bounded memory."""

from __future__ import annotations

import gc
import os
import time
import weakref

import pytest
from conftest import make_pair

import ratchetkit as rk


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_close_is_idempotent_and_use_after_close_raises() -> None:
    alice, bob = make_pair()
    key = alice.identity_key
    bundle = bob.create_bundle()
    fp = alice.safety_number("bob", b"a", b"b")
    pair = alice.identity_keypair()
    for obj in (alice, key, bundle, fp, pair):
        assert not obj.closed
        obj.close()
        assert obj.closed
        obj.close()  # a second close does nothing
        assert "closed" in repr(obj)
    with pytest.raises(ValueError, match="closed"):
        alice.encrypt("bob", b"x")
    with pytest.raises(ValueError, match="closed"):
        alice.decrypt("bob", (2, b"x"))
    with pytest.raises(ValueError, match="closed"):
        alice.save()
    with pytest.raises(ValueError, match="closed"):
        bytes(key)
    with pytest.raises(ValueError, match="closed"):
        bundle.serialize()
    with pytest.raises(ValueError, match="closed"):
        _ = fp.displayable
    with pytest.raises(ValueError, match="closed"):
        pair.sign(b"x")
    with pytest.raises(ValueError, match="closed"):
        bob.process_bundle("x", bundle)  # a closed argument, too
    with pytest.raises(ValueError, match="closed"):
        with alice:
            pass


def test_with_blocks_close() -> None:
    with rk.Store() as store:
        with store.create_bundle() as bundle:
            with bundle.identity_key as key:
                assert key == store.identity_key
            assert key.closed
        assert bundle.closed
        assert not store.closed
    assert store.closed


def test_objects_cannot_be_made_directly_copied_or_pickled() -> None:
    import copy
    import pickle

    with pytest.raises(TypeError):
        rk.IdentityKeyPair()
    store = rk.Store()
    with pytest.raises(TypeError):
        pickle.dumps(store)
    with pytest.raises(TypeError):
        copy.copy(store)


def test_garbage_collection_frees_handles() -> None:
    store = rk.Store()
    finalizer = store._finalizer
    ref = weakref.ref(store)
    assert finalizer.alive
    del store
    gc.collect()
    assert ref() is None and not finalizer.alive
    # An object in a reference cycle is freed by the cycle collector.
    key = rk.IdentityKeyPair.generate().public_key
    holder = {"key": key}
    holder["self"] = holder  # type: ignore[assignment]
    fin = key._finalizer
    del key, holder
    gc.collect()
    assert not fin.alive


def test_closed_objects_are_not_freed_again_by_gc() -> None:
    store = rk.Store()
    fin = store._finalizer
    store.close()
    assert not fin.alive
    del store
    gc.collect()  # nothing left to do; a double free would crash here


def test_memory_stays_bounded_over_100k_iterations() -> None:
    """100,000 iterations of create / encrypt / decrypt / free.

    Each iteration makes a public key and a fingerprint handle (freed
    alternately by close() and by garbage collection), encrypts and decrypts
    a message, and reads the safety number; every 1,000 iterations a new
    pair of stores with a session is made and the old one dropped. RSS is
    read from /proc/self/status after a warm-up and at the end: a leak of
    one public-key handle per iteration (about 48 bytes) adds 3.7 MiB.
    """
    pt = os.urandom(100)
    key_bytes = bytes(rk.IdentityKeyPair.generate().public_key)
    alice = bob = None
    start = time.perf_counter()
    samples = []
    for i in range(100_000):
        if i % 1000 == 0:
            alice, bob = make_pair()
            alice_key = alice.identity_key
        assert alice is not None and bob is not None
        key = rk.PublicKey(key_bytes)
        fp = rk.Fingerprint(b"a", alice_key, b"b", key, iterations=2)
        if i % 2:
            key.close()
            fp.close()
        m = alice.encrypt("bob", pt)
        if bob.decrypt("alice", m) != pt:
            raise AssertionError(f"iteration {i}")
        if i % 100 == 0:
            assert len(fp.displayable if not fp.closed else "0" * 60) == 60
        del key, fp, m
        if i == 20_000:
            gc.collect()
            samples.append(rss_kib())
    gc.collect()
    samples.append(rss_kib())
    elapsed = time.perf_counter() - start
    growth = samples[-1] - samples[0]
    print(f"\nRSS after 20k: {samples[0]} KiB, after 100k: {samples[-1]} KiB "
          f"(growth {growth} KiB) in {elapsed:.1f} s")
    assert growth < 2 * 1024, f"RSS grew by {growth} KiB over 80,000 iterations"

"""Saving a store to bytes and restoring it: plain and under a 32-byte key."""

from __future__ import annotations

import os

import pytest
from conftest import converse, make_pair

import ratchetkit as rk


def roundtrip(store: rk.Store, key: "bytes | None") -> rk.Store:
    saved = store.save(key=key)
    store.close()
    return rk.Store.restore(saved, key=key)


@pytest.mark.parametrize("key", [None, os.urandom(32)], ids=["plain", "key"])
def test_everything_survives_a_restore(key: "bytes | None") -> None:
    alice, bob = make_pair()
    identity = bytes(alice.identity_key)
    registration_id = alice.registration_id
    first = alice.encrypt("bob", b"in flight before the save")

    alice = roundtrip(alice, key)
    assert bytes(alice.identity_key) == identity
    assert alice.registration_id == registration_id
    assert alice.has_session("bob")
    assert bob.decrypt("alice", first) == b"in flight before the save"

    # Messages in flight both ways across a save, some skipped.
    from_bob = [bob.encrypt("alice", b"b%d" % i) for i in range(4)]
    assert alice.decrypt("bob", from_bob[2]) == b"b2"  # 0 and 1 skipped
    from_alice = [alice.encrypt("bob", b"a%d" % i) for i in range(3)]
    alice = roundtrip(alice, key)
    bob = roundtrip(bob, key)
    for i in (3, 0, 1):
        assert alice.decrypt("bob", from_bob[i]) == b"b%d" % i
    for i in (2, 1, 0):
        assert bob.decrypt("alice", from_alice[i]) == b"a%d" % i
    with pytest.raises(rk.DuplicateMessageError):
        alice.decrypt("bob", from_bob[2])  # used before the save
    converse(alice, bob)
    assert alice.trusted_identity("bob") == bob.identity_key


@pytest.mark.parametrize("key", [None, bytes(range(32))], ids=["plain", "key"])
def test_prekeys_survive_a_restore(key: "bytes | None") -> None:
    bob = rk.Store()
    bundle = bob.create_bundle()
    bob.generate_prekeys(3)
    bob = roundtrip(bob, key)
    assert bob.prekey_count == 4
    alice = rk.Store()
    alice.process_bundle("bob", bundle)
    assert bob.decrypt("alice", alice.encrypt("bob", b"hi")) == b"hi"
    assert bob.prekey_count == 3


def test_encrypted_save_is_opaque_and_fresh() -> None:
    store = rk.Store()
    key = os.urandom(32)
    plain = store.save()
    assert plain[:4] == b"RKST"
    a, b = store.save(key=key), store.save(key=key)
    assert a != b  # fresh nonce each time
    assert plain[5:] not in a and bytes(store.identity_key)[1:] not in a
    restored = rk.Store.restore(bytearray(a), key=memoryview(key))
    assert restored.identity_key == store.identity_key


def test_wrong_key_altered_bytes_and_misuse() -> None:
    store = rk.Store()
    key = bytes(range(32))
    saved = store.save(key=key)
    with pytest.raises(rk.WrongPickleKeyError):
        rk.Store.restore(saved, key=bytes(reversed(key)))
    altered = bytearray(saved)
    altered[-1] ^= 0x80
    with pytest.raises(rk.WrongPickleKeyError):
        rk.Store.restore(bytes(altered), key=key)
    with pytest.raises(rk.InvalidKeyError):
        rk.Store.restore(saved, key=key[:31])
    # Encrypted bytes are not plain saved state, and the other way round.
    with pytest.raises(rk.InvalidStateError):
        rk.Store.restore(saved)
    with pytest.raises(rk.RatchetkitError):
        rk.Store.restore(store.save(), key=key)
    with pytest.raises(rk.InvalidStateError):
        rk.Store.restore(store.save()[:-3])
    assert rk.Store.restore(saved, key=key).identity_key == store.identity_key

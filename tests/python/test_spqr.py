"""SPQR (issue 13): the store's SPQR policy and what a session shows, from
Python. Failing decrypts compare the saved store before and after."""

from __future__ import annotations

from pathlib import Path

import pytest

import ratchetkit as rk

P = rk.SpqrPolicy


def pair(a: rk.SpqrPolicy, b: rk.SpqrPolicy) -> "tuple[rk.Store, rk.Store]":
    alice, bob = rk.Store(), rk.Store()
    alice.spqr_policy = a
    bob.spqr_policy = b
    alice.process_bundle("bob", bob.create_bundle())
    return alice, bob


def talk(alice: rk.Store, bob: rk.Store, rounds: int) -> None:
    for i in range(rounds):
        text = f"ping {i}".encode()
        assert bob.decrypt("alice", alice.encrypt("bob", text)) == text
        assert alice.decrypt("bob", bob.encrypt("alice", b"pong")) == b"pong"


def test_required_by_default_and_the_epoch_advances() -> None:
    alice, bob = pair(P.REQUIRED, P.REQUIRED)
    assert rk.Store().spqr_policy is P.REQUIRED
    assert alice.session_spqr("bob") == (True, 1)
    talk(alice, bob, 60)
    has, epoch = bob.session_spqr("alice")
    assert has and epoch >= 2
    assert alice.session_has_spqr("bob")


def test_offered_falls_back_to_a_peer_without_spqr() -> None:
    alice, bob = pair(P.OFFERED, P.OFF)
    assert alice.session_spqr("bob") == (True, 1)  # offered, no reply yet
    talk(alice, bob, 3)
    assert alice.session_spqr("bob") == (False, 0)
    assert bob.session_spqr("alice") == (False, 0)


def test_required_refuses_and_the_store_is_unchanged() -> None:
    alice, bob = pair(P.OFF, P.REQUIRED)
    message = alice.encrypt("bob", b"no spqr")
    before = bob.save()
    with pytest.raises(rk.SpqrRequiredError):
        bob.decrypt("alice", message)
    assert bob.save() == before
    with pytest.raises(rk.NoSessionError):
        bob.session_spqr("alice")
    bob.spqr_policy = P.OFFERED
    assert bob.decrypt("alice", message) == b"no spqr"
    assert not bob.session_has_spqr("alice")


def test_the_policy_is_saved_and_kept_by_a_durable_store(tmp_path: Path) -> None:
    store = rk.Store()
    store.spqr_policy = P.OFF
    assert rk.Store.restore(store.save()).spqr_policy is P.OFF
    path = tmp_path / "store.db"
    key = bytes(range(32))
    durable = rk.Store.open(path, key)
    assert durable.spqr_policy is P.REQUIRED
    durable.spqr_policy = P.OFFERED
    durable.close()
    durable = rk.Store.open(path, key)
    assert durable.spqr_policy is P.OFFERED
    durable.close()


def test_misuse() -> None:
    store = rk.Store()
    with pytest.raises(TypeError):
        store.spqr_policy = 1  # type: ignore[assignment]
    assert store.spqr_policy is P.REQUIRED

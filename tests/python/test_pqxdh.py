"""PQXDH (message version 4, Kyber1024 prekeys) and the session policy
(issue 11): every method the binding added for them, happy paths first,
then misuse.

Every failing decrypt compares the saved store before and after, byte for
byte (a plain save is deterministic).
"""

from __future__ import annotations

import dataclasses
from typing import Tuple

import pytest
from conftest import converse

import ratchetkit as rk

KIND = rk.KyberPreKeyKind


def talk(store: rk.Store, name: str, bob: rk.Store) -> None:
    """One message each way between ``store`` (``name`` to Bob) and Bob."""
    text = b"ping from " + name.encode()
    assert bob.decrypt(name, store.encrypt("bob", text)) == text
    assert store.decrypt("bob", bob.encrypt(name, b"pong")) == b"pong"


def first_contact(alice: rk.Store, bob: rk.Store, bundle: rk.Bundle, name: str = "alice") -> rk.Message:
    """``alice`` starts a session from ``bundle``; ``bob`` decrypts her first
    message under ``name``. Returns that message."""
    alice.process_bundle("bob", bundle)
    message = alice.encrypt("bob", b"first from " + name.encode())
    assert message.is_prekey
    assert bob.decrypt(name, message) == b"first from " + name.encode()
    return message


# -- version 4 by default -----------------------------------------------------------


def test_sessions_are_version_4_by_default() -> None:
    alice, bob = rk.Store(), rk.Store()
    assert alice.policy == rk.SessionPolicy() == rk.SessionPolicy(False, False)
    bundle = rk.Bundle.from_bytes(bob.create_bundle().serialize())
    assert bundle.has_kyber_prekey and bundle.session_version == rk.SESSION_VERSION_PQXDH == 4
    first_contact(alice, bob, bundle)
    assert alice.session_version("bob") == bob.session_version("alice") == 4
    converse(alice, bob)
    assert alice.session_version("bob") == bob.session_version("alice") == 4


def test_session_version_without_a_session_and_bad_arguments() -> None:
    store = rk.Store()
    with pytest.raises(rk.NoSessionError):
        store.session_version("nobody")
    alice, bob = rk.Store(), rk.Store(device_id=3)
    alice.process_bundle("bob", bob.create_bundle())
    assert alice.session_version("bob", 3) == 4
    with pytest.raises(rk.NoSessionError):
        alice.session_version("bob")  # device 1
    with pytest.raises(ValueError):
        alice.session_version("bob", -1)
    with pytest.raises(ValueError):
        alice.session_version("b\0b")
    with pytest.raises(TypeError):
        alice.session_version(b"bob")  # type: ignore[arg-type]


def test_kyber_bundle_round_trips_as_bytes() -> None:
    bob = rk.Store()
    for kind in (KIND.ONE_TIME, KIND.LAST_RESORT):
        bundle = bob.create_bundle(kyber_prekey=kind)
        again = rk.Bundle.from_bytes(bundle.serialize())
        record = again.kyber_prekey_record
        assert record is not None and record == bundle.kyber_prekey_record
        assert record.id == again.kyber_prekey_id
        assert record.key == again.kyber_prekey and record.signature == again.kyber_prekey_signature
        assert len(record.key) == rk.KEM_PUBLIC_KEY_LEN and record.key[0] == 0x08
        assert bob.identity_key.verify_signature(record.key, record.signature)
        assert again.verify_signature() and again.serialize() == bundle.serialize()
        assert "1569 bytes" in repr(record)


# -- one-time and last-resort Kyber prekeys --------------------------------------------


def test_one_time_kyber_prekey_serves_one_initiator() -> None:
    bob = rk.Store()
    bundle = bob.create_bundle(one_time_prekey=False, kyber_prekey=KIND.ONE_TIME)
    kyber_id = bundle.kyber_prekey_id
    assert bundle.prekey is None and kyber_id is not None
    assert bob.kyber_prekey_count == 1 and bob.kyber_prekey(kyber_id) == bundle.kyber_prekey_record
    assert kyber_id != bob.last_resort_kyber_prekey_id

    first_contact(rk.Store(), bob, bundle, "alice")
    assert bob.kyber_prekey_count == 0  # used up
    with pytest.raises(rk.MissingPrekeyError):
        bob.kyber_prekey(kyber_id)

    # A second initiator with the same bundle: the Kyber prekey is gone.
    carol = rk.Store()
    carol.process_bundle("bob", bundle)
    before = bob.save()
    with pytest.raises(rk.MissingPrekeyError):
        bob.decrypt("carol", carol.encrypt("bob", b"too late"))
    assert bob.save() == before and not bob.has_session("carol")


def test_last_resort_kyber_prekey_serves_many_and_refuses_a_replay() -> None:
    bob = rk.Store()
    assert bob.last_resort_kyber_prekey_id is None
    b1 = bob.create_bundle(one_time_prekey=False)  # the default without one-time prekeys
    b2 = bob.create_bundle(one_time_prekey=False, kyber_prekey=KIND.LAST_RESORT)
    last_resort = bob.last_resort_kyber_prekey_id
    assert last_resort is not None
    assert b1.kyber_prekey_record == b2.kyber_prekey_record
    assert b1.kyber_prekey_id == last_resort and bob.kyber_prekey_count == 0

    alice, carol = rk.Store(), rk.Store()
    from_alice = first_contact(alice, bob, b1, "alice")
    first_contact(carol, bob, b2, "carol")
    assert bob.last_resort_kyber_prekey_id == last_resort
    assert bob.kyber_prekey(last_resort) == b1.kyber_prekey_record  # kept after use
    assert bob.session_version("alice") == bob.session_version("carol") == 4

    # Alice's first message again, under another name: a second session from
    # the same base key with the last-resort prekey is refused.
    before = bob.save()
    with pytest.raises(rk.InvalidMessageError):
        bob.decrypt("mallory", from_alice)
    assert bob.save() == before and not bob.has_session("mallory")
    talk(alice, "alice", bob)
    talk(carol, "carol", bob)


def test_generate_kyber_prekeys_for_upload() -> None:
    bob = rk.Store()
    assert bob.generate_kyber_prekeys(0) == [] and bob.kyber_prekey_count == 0
    made = bob.generate_kyber_prekeys(5, timestamp_ms=1_700_000_000_000)
    assert len(made) == 5 == bob.kyber_prekey_count
    assert len({k.id for k in made}) == 5
    key = bob.identity_key
    for k in made:
        assert isinstance(k, rk.KyberPreKey) and 1 <= k.id <= 0xFFFFFF
        assert len(k.key) == rk.KEM_PUBLIC_KEY_LEN and k.key[0] == 0x08
        assert len(k.signature) == rk.SIGNATURE_LEN
        assert key.verify_signature(k.key, k.signature)
        assert bob.kyber_prekey(k.id) == k
    assert len({k.key for k in made}) == 5
    assert bob.generate_kyber_prekeys(3)[0].id not in {k.id for k in made}
    assert bob.kyber_prekey_count == 8

    # An uploaded Kyber prekey in a bundle built from its parts.
    spk_bundle = bob.create_bundle(one_time_prekey=False, kyber_prekey=KIND.NONE)
    bundle = rk.Bundle(
        bob.registration_id,
        bob.device_id,
        bob.identity_key,
        spk_bundle.signed_prekey_id,
        spk_bundle.signed_prekey,
        spk_bundle.signed_prekey_signature,
        None,
        made[2],
    )
    assert bundle.kyber_prekey_id == made[2].id
    first_contact(rk.Store(), bob, bundle)
    assert bob.kyber_prekey_count == 7
    with pytest.raises(rk.MissingPrekeyError):
        bob.kyber_prekey(made[2].id)

    # Withdrawn from the server: removed.
    bob.remove_kyber_prekey(made[0].id)
    assert bob.kyber_prekey_count == 6
    with pytest.raises(rk.MissingPrekeyError):
        bob.remove_kyber_prekey(made[0].id)
    with pytest.raises(rk.MissingPrekeyError):
        bob.kyber_prekey(made[0].id)


def test_last_resort_kyber_prekey_rotation() -> None:
    bob = rk.Store()
    old = bob.generate_last_resort_kyber_prekey(timestamp_ms=1_700_000_000_000)
    assert bob.last_resort_kyber_prekey_id == old.id and bob.kyber_prekey(old.id) == old
    assert bob.identity_key.verify_signature(old.key, old.signature)
    assert bob.kyber_prekey_count == 0  # last-resort prekeys are not counted
    old_bundle = bob.create_bundle(one_time_prekey=False)
    assert old_bundle.kyber_prekey_record == old

    alice = rk.Store()
    alice.process_bundle("bob", old_bundle)
    in_flight = alice.encrypt("bob", b"made with the old last-resort prekey")

    new = bob.generate_last_resort_kyber_prekey()
    assert new.id != old.id and new.key != old.key
    assert bob.last_resort_kyber_prekey_id == new.id
    assert bob.create_bundle(one_time_prekey=False).kyber_prekey_id == new.id
    with pytest.raises(rk.InvalidArgumentError):
        bob.remove_kyber_prekey(new.id)  # the current one
    # The old one still serves messages in flight until removed.
    assert bob.decrypt("alice", in_flight) == b"made with the old last-resort prekey"
    bob.remove_kyber_prekey(old.id)
    carol = rk.Store()
    carol.process_bundle("bob", old_bundle)
    before = bob.save()
    with pytest.raises(rk.MissingPrekeyError):
        bob.decrypt("carol", carol.encrypt("bob", b"too late"))
    assert bob.save() == before


# -- version 3 and the policy ----------------------------------------------------------


def version_3_bundle(bob: rk.Store) -> rk.Bundle:
    bundle = bob.create_bundle(kyber_prekey=KIND.NONE)
    assert bundle.prekey is not None and not bundle.has_kyber_prekey
    assert bundle.session_version == rk.SESSION_VERSION_X3DH == 3
    assert bundle.kyber_prekey_id is None and bundle.kyber_prekey is None
    assert bundle.kyber_prekey_signature is None and bundle.kyber_prekey_record is None
    return bundle


def test_version_3_is_refused_by_default() -> None:
    alice, bob = rk.Store(), rk.Store()
    bundle = version_3_bundle(bob)
    with pytest.raises(rk.VersionRefusedError):
        alice.process_bundle("bob", bundle)
    assert not alice.has_session("bob") and alice.session_count == 0

    # Alice may start it; Bob still refuses the prekey message.
    alice.set_policy(allow_v3_initiation=True)
    alice.process_bundle("bob", bundle)
    assert alice.session_version("bob") == 3
    message = alice.encrypt("bob", b"version 3")
    before = bob.save()
    with pytest.raises(rk.VersionRefusedError):
        bob.decrypt("alice", message)
    assert bob.save() == before and not bob.has_session("alice")


def test_version_3_with_the_policy() -> None:
    alice, bob = rk.Store(), rk.Store()
    alice.set_policy(allow_v3_initiation=True)
    bob.policy = rk.SessionPolicy(accept_v3_prekey_messages=True)
    assert alice.policy == rk.SessionPolicy(allow_v3_initiation=True)
    assert bob.policy == rk.SessionPolicy(False, True)
    first_contact(alice, bob, version_3_bundle(bob))
    assert alice.session_version("bob") == bob.session_version("alice") == 3
    converse(alice, bob)

    # A Kyber bundle from the same peer still starts version 4.
    alice.process_bundle("bob", bob.create_bundle())
    assert alice.session_version("bob") == 4
    assert bob.decrypt("alice", alice.encrypt("bob", b"now v4")) == b"now v4"
    assert bob.session_version("alice") == 4

    # Existing version-3 sessions keep working after the policy is reset.
    carol = rk.Store()
    carol.set_policy(allow_v3_initiation=True)
    first_contact(carol, bob, version_3_bundle(bob), "carol")
    bob.set_policy()
    carol.set_policy()
    assert bob.policy == carol.policy == rk.SessionPolicy()
    talk(carol, "carol", bob)
    assert carol.session_version("bob") == bob.session_version("carol") == 3


def test_policy_values_and_types() -> None:
    store = rk.Store()
    for allow in (False, True):
        for accept in (False, True):
            store.set_policy(allow_v3_initiation=allow, accept_v3_prekey_messages=accept)
            assert store.policy == rk.SessionPolicy(allow, accept)
    store.policy = rk.SessionPolicy(allow_v3_initiation=True)
    # set_policy sets the whole policy: a flag not given is off.
    store.set_policy(accept_v3_prekey_messages=True)
    assert store.policy == rk.SessionPolicy(False, True)
    store.policy = dataclasses.replace(store.policy, allow_v3_initiation=True)
    assert store.policy == rk.SessionPolicy(True, True)

    with pytest.raises(TypeError):
        store.set_policy(allow_v3_initiation=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rk.SessionPolicy(accept_v3_prekey_messages="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.policy = (True, True)  # type: ignore[assignment]
    with pytest.raises(TypeError):
        store.set_policy(True, True)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        store.policy.allow_v3_initiation = False  # type: ignore[misc]
    assert store.policy == rk.SessionPolicy(True, True)  # unchanged by the failures


@pytest.mark.parametrize("key", [None, bytes(range(32))], ids=["plain", "key"])
def test_policy_and_kyber_prekeys_survive_a_restore(key: "bytes | None") -> None:
    bob = rk.Store()
    bob.set_policy(accept_v3_prekey_messages=True)
    one_time = bob.create_bundle(one_time_prekey=False, kyber_prekey=KIND.ONE_TIME)
    last_resort = bob.generate_last_resort_kyber_prekey()
    uploaded = bob.generate_kyber_prekeys(2)
    bob = rk.Store.restore(bob.save(key=key), key=key)
    assert bob.policy == rk.SessionPolicy(False, True)
    assert bob.kyber_prekey_count == 3 and bob.last_resort_kyber_prekey_id == last_resort.id
    assert bob.kyber_prekey(last_resort.id) == last_resort
    assert [bob.kyber_prekey(k.id) for k in uploaded] == uploaded
    alice = rk.Store()
    first_contact(alice, bob, one_time)
    assert bob.kyber_prekey_count == 2
    bob = rk.Store.restore(bob.save(key=key), key=key)
    assert bob.session_version("alice") == 4
    converse(alice, bob)


# -- create_bundle's Kyber choice --------------------------------------------------------


def test_create_bundle_kyber_choices() -> None:
    bob = rk.Store()
    # Today's positional form still works: one-time prekeys, then a timestamp.
    both = bob.create_bundle(True, 1_700_000_000_000)
    assert both.prekey is not None and both.kyber_prekey_id is not None
    assert bob.prekey_count == 1 and bob.kyber_prekey_count == 1
    neither = bob.create_bundle(False)
    assert neither.prekey is None and neither.kyber_prekey_id == bob.last_resort_kyber_prekey_id
    assert bob.prekey_count == 1 and bob.kyber_prekey_count == 1

    cases: Tuple[Tuple[bool, rk.KyberPreKeyKind, bool, str], ...] = (
        (True, KIND.NONE, True, "none"),
        (False, KIND.NONE, False, "none"),
        (True, KIND.LAST_RESORT, True, "last_resort"),
        (False, KIND.ONE_TIME, False, "one_time"),
    )
    for one_time, kind, has_prekey, kyber in cases:
        count = bob.kyber_prekey_count
        bundle = bob.create_bundle(one_time, kyber_prekey=kind)
        assert (bundle.prekey is not None) == has_prekey, kind
        if kyber == "none":
            assert bundle.kyber_prekey_id is None
        elif kyber == "last_resort":
            assert bundle.kyber_prekey_id == bob.last_resort_kyber_prekey_id
        else:
            assert bundle.kyber_prekey_id not in (None, bob.last_resort_kyber_prekey_id)
        assert bob.kyber_prekey_count == count + (kyber == "one_time")
    # A plain int of a kind is accepted, as for MessageType.
    assert bob.create_bundle(kyber_prekey=2).kyber_prekey_id == bob.last_resort_kyber_prekey_id  # type: ignore[arg-type]

    before = (bob.prekey_count, bob.kyber_prekey_count)
    with pytest.raises(ValueError):
        bob.create_bundle(kyber_prekey=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bob.create_bundle(kyber_prekey="one_time")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bob.create_bundle(kyber_prekey=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bob.create_bundle(True, None, KIND.ONE_TIME)  # type: ignore[call-arg]
    assert (bob.prekey_count, bob.kyber_prekey_count) == before


def test_kyber_prekey_argument_checks() -> None:
    store = rk.Store()
    for bad in (-1, 1 << 32, 1.5, True):
        with pytest.raises(ValueError):
            store.kyber_prekey(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            store.remove_kyber_prekey(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            store.generate_kyber_prekeys(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.generate_kyber_prekeys(1, timestamp_ms=-1)
    with pytest.raises(ValueError):
        store.generate_last_resort_kyber_prekey(timestamp_ms=1 << 64)
    assert store.kyber_prekey_count == 0 and store.last_resort_kyber_prekey_id is None
    with pytest.raises(rk.MissingPrekeyError):
        store.kyber_prekey(1)


def test_bundle_kyber_argument_types() -> None:
    good = rk.Store().create_bundle()
    kyber = good.kyber_prekey_record
    assert kyber is not None
    parts = (
        good.registration_id,
        good.device_id,
        good.identity_key,
        good.signed_prekey_id,
        good.signed_prekey,
        good.signed_prekey_signature,
    )
    with pytest.raises(TypeError):
        rk.Bundle(*parts, None, (kyber.id, kyber.key.hex(), kyber.signature))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        rk.Bundle(*parts, None, (kyber.id, kyber.key, None))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rk.Bundle(*parts, None, (kyber.id, kyber.key))  # type: ignore[arg-type]
    assert rk.Bundle(*parts, kyber_prekey=kyber).kyber_prekey_record == kyber


# -- closed handles ------------------------------------------------------------------------


def test_closed_handles_refuse_the_new_methods() -> None:
    alice, bob = rk.Store(), rk.Store()
    bundle = bob.create_bundle()
    kyber = bundle.kyber_prekey_record
    assert kyber is not None
    alice.process_bundle("bob", bundle)
    key = bob.identity_key
    key.close()
    with pytest.raises(ValueError, match="PublicKey is closed"):
        rk.Bundle(1, 1, key, 1, bundle.signed_prekey, bytes(64), None, kyber)
    bundle.close()
    for read in (
        lambda: bundle.has_kyber_prekey,
        lambda: bundle.session_version,
        lambda: bundle.kyber_prekey_id,
        lambda: bundle.kyber_prekey,
        lambda: bundle.kyber_prekey_signature,
        lambda: bundle.kyber_prekey_record,
    ):
        with pytest.raises(ValueError, match="Bundle is closed"):
            read()
    alice.close()
    for call in (
        lambda: alice.policy,
        lambda: alice.set_policy(allow_v3_initiation=True),
        lambda: setattr(alice, "policy", rk.SessionPolicy()),
        lambda: alice.session_version("bob"),
        lambda: alice.generate_kyber_prekeys(1),
        lambda: alice.generate_last_resort_kyber_prekey(),
        lambda: alice.kyber_prekey_count,
        lambda: alice.kyber_prekey(kyber.id),
        lambda: alice.last_resort_kyber_prekey_id,
        lambda: alice.remove_kyber_prekey(kyber.id),
        lambda: alice.create_bundle(kyber_prekey=KIND.ONE_TIME),
    ):
        with pytest.raises(ValueError, match="Store is closed"):
            call()
    assert alice._h.calls_in_flight == 0

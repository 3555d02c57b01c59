"""Complete flows through the public API."""

from __future__ import annotations

import random

import pytest
from conftest import converse, make_pair

import ratchetkit as rk


def test_first_contact_both_ways_and_message_types() -> None:
    alice, bob = rk.Store(), rk.Store()
    bundle_bytes = bob.create_bundle().serialize()
    bundle = rk.Bundle.from_bytes(bundle_bytes)
    assert bundle.verify_signature()
    assert not alice.has_session("bob")
    alice.process_bundle("bob", bundle)
    assert alice.has_session("bob") and not bob.has_session("alice")

    first = [alice.encrypt("bob", f"hello {i}".encode()) for i in range(3)]
    assert all(m.type is rk.MessageType.PREKEY and m.is_prekey for m in first)
    for i, m in enumerate(first):
        assert bob.decrypt("alice", m) == f"hello {i}".encode()
    assert bob.has_session("alice")

    reply = bob.encrypt("alice", b"hi alice")
    assert reply.type is rk.MessageType.WHISPER and not reply.is_prekey
    assert alice.decrypt("bob", reply) == b"hi alice"
    # Alice has her answer: whisper messages from now on.
    after = alice.encrypt("bob", b"got it")
    assert after.type == rk.MessageType.WHISPER == 2
    # A (type, body) pair works as well as a Message.
    assert bob.decrypt("alice", (int(after.type), after.body)) == b"got it"
    assert bytes(after) == after.body
    assert "WHISPER" in repr(after) and "bytes" in repr(after)


def test_long_conversation_random_sizes_and_order() -> None:
    alice, bob = make_pair()
    rng = random.Random(4)
    converse(alice, bob)
    parties = {"alice": alice, "bob": bob}
    for _ in range(30):
        sender = rng.choice(["alice", "bob"])
        receiver = "bob" if sender == "alice" else "alice"
        texts = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(rng.randrange(1, 6))]
        messages = [parties[sender].encrypt(receiver, t) for t in texts]
        order = list(range(len(texts)))
        rng.shuffle(order)
        for i in order:
            assert parties[receiver].decrypt(sender, messages[i]) == texts[i]


def test_out_of_order_across_dh_turns() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    held = [alice.encrypt("bob", b"old %d" % i) for i in range(5)]
    # Bob answers, Alice answers that: a new chain on both sides.
    assert alice.decrypt("bob", bob.encrypt("alice", b"turn")) == b"turn"
    new = alice.encrypt("bob", b"new chain")
    assert bob.decrypt("alice", new) == b"new chain"
    for i in reversed(range(5)):
        assert bob.decrypt("alice", held[i]) == b"old %d" % i


def test_empty_and_large_messages_and_bytes_like_inputs() -> None:
    alice, bob = make_pair()
    assert bob.decrypt("alice", alice.encrypt("bob", b"")) == b""
    big = random.Random(1).randbytes(1 << 20)
    m = alice.encrypt("bob", bytearray(big))
    assert bob.decrypt("alice", (m.type, memoryview(m.body))) == big
    with pytest.raises(TypeError):
        alice.encrypt("bob", "text is not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        alice.encrypt(b"bob", b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        alice.encrypt("bo\0b", b"x")


def test_typed_decrypt_functions() -> None:
    alice, bob = make_pair()
    m1 = alice.encrypt("bob", b"one")
    assert bob.decrypt_prekey_message("alice", m1.body) == b"one"
    reply = bob.encrypt("alice", b"two")
    assert alice.decrypt_whisper_message("bob", reply.body) == b"two"


def test_unicode_names_and_device_ids() -> None:
    alice, bob = rk.Store(device_id=1), rk.Store(device_id=7)
    assert bob.device_id == 7
    bundle = bob.create_bundle()
    assert bundle.device_id == 7
    alice.process_bundle("böb 😀", bundle)  # device id from the bundle
    assert alice.has_session("böb 😀", 7) and not alice.has_session("böb 😀", 1)
    m = alice.encrypt("böb 😀", b"x", device_id=7)
    assert bob.decrypt("älice", m) == b"x"
    with pytest.raises(rk.NoSessionError):
        alice.encrypt("böb 😀", b"x")  # device 1: no session
    with pytest.raises(ValueError):
        alice.encrypt("böb 😀", b"x", device_id=-1)
    with pytest.raises(ValueError):
        alice.has_session("x", 1 << 32)
    with pytest.raises(ValueError):
        bob.create_bundle(timestamp_ms=-1)


def test_store_properties_and_identity() -> None:
    store = rk.Store(device_id=3)
    assert 1 <= store.registration_id <= 16380
    assert store.device_id == 3
    key = store.identity_key
    assert len(bytes(key)) == rk.PUBLIC_KEY_LEN and bytes(key)[0] == 5
    pair = store.identity_keypair()
    assert pair.public_key == key
    sig = pair.sign(b"message")
    assert len(sig) == rk.SIGNATURE_LEN
    assert key.verify_signature(b"message", sig)
    assert not key.verify_signature(b"other", sig)
    assert not key.verify_signature(b"message", sig[:10])

    # A store around the same identity, and one restored from its private bytes.
    priv = pair.private_bytes()
    assert len(priv) == rk.PRIVATE_KEY_LEN
    again = rk.IdentityKeyPair.from_private_bytes(priv)
    assert again.public_key == key
    other = rk.Store.with_identity(again, registration_id=1234, device_id=2)
    assert other.identity_key == key and other.registration_id == 1234 and other.device_id == 2
    assert "registration_id=1234" in repr(other)


def test_public_keys_compare_hash_and_parse() -> None:
    a = rk.IdentityKeyPair.generate().public_key
    b = rk.PublicKey(bytes(a))
    c = rk.PublicKey.from_bytes(bytes(rk.IdentityKeyPair.generate().public_key))
    assert a == b and a != c and hash(a) == hash(b)
    assert len({a, b, c}) == 2
    assert a != "not a key"
    assert repr(a) == f"PublicKey({bytes(a).hex()})"


def test_prekeys_and_signed_prekey_rotation() -> None:
    bob = rk.Store()
    assert bob.prekey_count == 0
    prekeys = bob.generate_prekeys(5)
    assert len(prekeys) == 5 and bob.prekey_count == 5
    assert len({p.id for p in prekeys}) == 5
    assert all(1 <= p.id <= 0xFFFFFF and len(bytes(p.key)) == 33 for p in prekeys)
    assert bob.generate_prekeys(0) == []

    old_bundle = bob.create_bundle(one_time_prekey=False)
    assert old_bundle.prekey is None
    assert bob.prekey_count == 5
    assert old_bundle.kyber_prekey_id == bob.last_resort_kyber_prekey_id is not None
    old_id = old_bundle.signed_prekey_id
    new_id = bob.generate_signed_prekey()
    assert new_id != old_id
    new_bundle = bob.create_bundle(timestamp_ms=1_700_000_000_000)
    assert new_bundle.signed_prekey_id == new_id and new_bundle.prekey is not None
    assert bob.prekey_count == 6

    # A message made with the old signed prekey still decrypts.
    alice = rk.Store()
    alice.process_bundle("bob", old_bundle)
    assert bob.decrypt("alice", alice.encrypt("bob", b"old spk")) == b"old spk"
    with pytest.raises(rk.InvalidArgumentError):
        bob.remove_signed_prekey(new_id)  # the current one
    bob.remove_signed_prekey(old_id)
    with pytest.raises(rk.MissingPrekeyError):
        bob.remove_signed_prekey(old_id)


def test_bundle_from_parts_and_accessors() -> None:
    bob = rk.Store(device_id=4)
    original = bob.create_bundle()
    prekey = original.prekey
    kyber_id = original.kyber_prekey_id
    kyber_key = original.kyber_prekey
    kyber_signature = original.kyber_prekey_signature
    assert prekey is not None and kyber_id is not None
    assert kyber_key is not None and kyber_signature is not None
    rebuilt = rk.Bundle(
        original.registration_id,
        original.device_id,
        original.identity_key,
        original.signed_prekey_id,
        original.signed_prekey,
        original.signed_prekey_signature,
        (prekey.id, prekey.key),
        (kyber_id, bytearray(kyber_key), memoryview(kyber_signature)),  # type: ignore[arg-type]
    )
    assert rebuilt.serialize() == original.serialize()
    assert rebuilt.identity_key == bob.identity_key
    assert rebuilt.verify_signature()
    assert rebuilt.session_version == 4 and rebuilt.has_kyber_prekey
    assert "device_id=4" in repr(rebuilt) and f"kyber_prekey_id={kyber_id}" in repr(rebuilt)
    alice = rk.Store()
    alice.process_bundle("bob", rebuilt)
    assert bob.decrypt("alice", alice.encrypt("bob", b"parts", device_id=4)) == b"parts"
    assert alice.session_version("bob", 4) == bob.session_version("alice") == 4

    without = rk.Bundle(
        original.registration_id,
        original.device_id,
        original.identity_key,
        original.signed_prekey_id,
        original.signed_prekey,
        original.signed_prekey_signature,
    )
    assert without.prekey is None
    assert rk.Bundle.from_bytes(bytes(without)).prekey is None
    # No Kyber prekey: a version-3 bundle (format 1 bytes).
    assert not without.has_kyber_prekey and without.session_version == 3
    assert without.kyber_prekey_id is None and without.kyber_prekey is None
    assert without.kyber_prekey_signature is None and without.kyber_prekey_record is None
    assert "kyber_prekey_id=None" in repr(without)
    forged = rk.Bundle(
        original.registration_id,
        original.device_id,
        original.identity_key,
        original.signed_prekey_id,
        original.signed_prekey,
        bytes(64),
    )
    assert not forged.verify_signature()


def test_trust_and_identity_change() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    assert alice.trusted_identity("bob") == bob.identity_key
    assert bob.trusted_identity("alice") == alice.identity_key

    new_bob = rk.Store()  # bob reinstalls: a new identity under the same name
    with pytest.raises(rk.UntrustedIdentityError):
        alice.process_bundle("bob", new_bob.create_bundle())
    assert alice.decrypt("bob", bob.encrypt("alice", b"old session works")) == b"old session works"
    assert alice.approve_identity("bob", new_bob.identity_key) is True
    assert alice.approve_identity("bob", new_bob.identity_key) is False
    alice.process_bundle("bob", new_bob.create_bundle())
    assert new_bob.decrypt("alice", alice.encrypt("bob", b"hello again")) == b"hello again"


def test_safety_numbers() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    fa = alice.safety_number("bob", b"alice", b"bob")
    fb = bob.safety_number("alice", b"bob", b"alice")
    assert fa.displayable == fb.displayable == str(fa)
    assert len(fa.displayable) == rk.SAFETY_NUMBER_LEN and fa.displayable.isdigit()
    groups = fa.formatted().split(" ")
    assert len(groups) == 12 and all(len(g) == 5 for g in groups)
    assert fa.compare(fb.scannable) and fb.compare(fa.scannable)
    assert not fa.compare(fa.scannable)  # one's own is not the other side's

    # The same number from the keys directly; version only changes the scannable form.
    direct = rk.Fingerprint(b"alice", alice.identity_key, b"bob", bob.identity_key)
    assert direct.displayable == fa.displayable
    v1 = alice.safety_number("bob", b"alice", b"bob", version=1)
    assert v1.displayable == fa.displayable and v1.scannable != fa.scannable
    fast = alice.safety_number("bob", b"alice", b"bob", iterations=2)
    assert fast.displayable != fa.displayable

    carol = rk.Store()
    fc = rk.Fingerprint(b"carol", carol.identity_key, b"bob", bob.identity_key)
    assert not fb.compare(fc.scannable)

    svg = fa.qr_svg()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "</svg>" in svg
    text = fa.qr_text()
    lines = text.splitlines()
    assert len(lines) > 10 and text.endswith("\n")
    assert set("".join(lines)) <= set(" ▀▄█")
    assert "Fingerprint" in repr(fa)


def test_session_count_and_removal() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    assert alice.session_count == 1 and bob.session_count == 1
    trusted = alice.trusted_identity("bob")
    assert alice.remove_session("bob", 2) is False  # no such device
    assert alice.remove_session("bob") is True
    assert not alice.has_session("bob") and alice.session_count == 0
    assert alice.remove_session("bob") is False
    with pytest.raises(rk.NoSessionError):
        alice.encrypt("bob", b"gone")
    # The identity stays trusted; a new bundle starts a new session.
    assert alice.trusted_identity("bob") == trusted
    alice.process_bundle("bob", bob.create_bundle())
    assert bob.decrypt("alice", alice.encrypt("bob", b"again")) == b"again"
    assert alice.session_count == 1
    with pytest.raises(ValueError):
        alice.remove_session("bob", 1 << 32)

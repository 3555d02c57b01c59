"""Every exception class, raised by a real cause.

The usage statuses (1xx) cannot be reached through the public API, which
never passes NULL, wrong handles or short buffers; they are triggered here
through the declared C functions in ``ratchetkit._lib`` directly, the way a
buggy binding would. INTERNAL, PANIC and POISONED need a failing allocator
or a panic inside the library, which a release build offers no way to
cause; for them the mapping alone is checked (last test).
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_uint32, create_string_buffer
from pathlib import Path
from typing import Set, Type

import pytest
from conftest import converse, make_pair

import ratchetkit as rk
from ratchetkit import _errors, _lib

RAISED: Set[Type[rk.RatchetkitError]] = set()


def expect(cls: Type[rk.RatchetkitError]) -> "pytest.RaisesContext[rk.RatchetkitError]":
    RAISED.add(cls)
    return pytest.raises(cls)


def check_error(info: "pytest.ExceptionInfo[rk.RatchetkitError]", cls: type, status: int) -> None:
    err = info.value
    assert type(err) is cls
    assert err.status == status == cls.status  # type: ignore[attr-defined]
    assert err.status_name == next(k for k, v in rk.STATUS_CODES.items() if v == status)
    assert isinstance(err.detail, str)
    assert str(err)


# -- 1xx: usage, through the raw declarations ---------------------------------


def test_null_pointer() -> None:
    with expect(rk.NullPointerError) as info:
        _lib.lib.rk_store_new(1, None)
    check_error(info, rk.NullPointerError, 100)
    # bytes NULL with a nonzero length
    out = _lib.PublicKeyP()
    with expect(rk.NullPointerError):
        _lib.lib.rk_public_key_deserialize(None, 33, byref(out))


def test_invalid_argument() -> None:
    with expect(rk.InvalidArgumentError) as info:
        rk.Store(device_id=0)
    check_error(info, rk.InvalidArgumentError, 101)
    assert info.value.detail  # the library says why
    alice, bob = make_pair()
    m = alice.encrypt("bob", b"x")
    with expect(rk.InvalidArgumentError):
        bob.decrypt("alice", (7, m.body))  # unknown message type
    with expect(rk.InvalidArgumentError):
        rk.Store.with_identity(rk.IdentityKeyPair.generate(), registration_id=0)
    with expect(rk.InvalidArgumentError):
        alice.safety_number("bob", b"a", b"b", version=3)
    with expect(rk.InvalidArgumentError):
        name = create_string_buffer(b"\xff\xfe")  # not UTF-8
        with alice._h as store:
            _lib.lib.rk_store_has_session(store, name, 1, byref(ctypes.c_bool()))


def test_buffer_too_small() -> None:
    key = rk.IdentityKeyPair.generate().public_key
    buf = create_string_buffer(10)
    with expect(rk.BufferTooSmallError) as info, key._h as ptr:
        _lib.lib.rk_public_key_serialize(ptr, buf, len(buf))
    check_error(info, rk.BufferTooSmallError, 102)


def test_invalid_handle() -> None:
    bundle = rk.Store().create_bundle()
    with expect(rk.InvalidHandleError) as info, bundle._h as ptr:
        wrong = ctypes.cast(ptr, _lib.StoreP)  # a bundle where a store belongs
        _lib.lib.rk_store_registration_id(wrong, byref(c_uint32()))
    check_error(info, rk.InvalidHandleError, 103)
    assert bundle.device_id == 1  # the bundle itself is fine


def test_ctypes_refuses_handles_of_the_wrong_type() -> None:
    bundle = rk.Store().create_bundle()
    with pytest.raises(ctypes.ArgumentError), bundle._h as ptr:
        _lib.lib.rk_store_registration_id(ptr, byref(c_uint32()))


# -- 2xx: bad input ---------------------------------------------------------------


def test_invalid_key() -> None:
    with expect(rk.InvalidKeyError) as info:
        rk.PublicKey(b"\x05" * 32)  # one byte short
    check_error(info, rk.InvalidKeyError, 200)
    with expect(rk.InvalidKeyError):
        rk.PublicKey(b"\x06" + bytes(32))  # wrong type byte
    with expect(rk.InvalidKeyError):
        rk.IdentityKeyPair.from_private_bytes(b"short")
    with expect(rk.InvalidKeyError):
        rk.Store().save(key=b"k" * 16)


def test_invalid_kem_key() -> None:
    good = rk.Store().create_bundle()
    kyber = good.kyber_prekey_record
    assert kyber is not None

    def rebuild(key: bytes) -> rk.Bundle:
        return rk.Bundle(
            good.registration_id,
            good.device_id,
            good.identity_key,
            good.signed_prekey_id,
            good.signed_prekey,
            good.signed_prekey_signature,
            good.prekey,
            (kyber.id, key, kyber.signature),
        )

    with expect(rk.InvalidKeyError) as info:
        rebuild(kyber.key[1:])  # no type byte: 1568 bytes
    check_error(info, rk.InvalidKeyError, 200)
    with expect(rk.InvalidKeyError):
        rebuild(kyber.key + b"\x00")  # one byte too many
    with expect(rk.InvalidKeyError):
        rebuild(b"\x0a" + kyber.key[1:])  # ML-KEM-1024's type byte
    with expect(rk.InvalidKeyError):
        rebuild(b"\x05" + kyber.key[1:])  # a Curve25519 type byte
    with expect(rk.InvalidKeyError):
        rebuild(b"")
    assert rebuild(kyber.key).kyber_prekey_record == kyber


def test_invalid_signature() -> None:
    bob = rk.Store()
    good = bob.create_bundle()
    kyber = good.kyber_prekey_record
    assert kyber is not None
    forged = rk.Bundle(
        good.registration_id,
        good.device_id,
        good.identity_key,
        good.signed_prekey_id,
        good.signed_prekey,
        bytes(64),
        good.prekey,
        kyber,
    )
    alice = rk.Store()
    with expect(rk.InvalidSignatureError) as info:
        alice.process_bundle("bob", forged)
    check_error(info, rk.InvalidSignatureError, 201)
    assert not alice.has_session("bob")
    # The Kyber prekey's signature is checked too.
    forged_kyber = rk.Bundle(
        good.registration_id,
        good.device_id,
        good.identity_key,
        good.signed_prekey_id,
        good.signed_prekey,
        good.signed_prekey_signature,
        good.prekey,
        kyber._replace(signature=good.signed_prekey_signature),
    )
    assert not forged_kyber.verify_signature()
    with expect(rk.InvalidSignatureError):
        alice.process_bundle("bob", forged_kyber)
    assert not alice.has_session("bob")


def test_invalid_message() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    with expect(rk.InvalidMessageError) as info:
        bob.decrypt("alice", (rk.MessageType.WHISPER, b"garbage"))
    check_error(info, rk.InvalidMessageError, 202)
    m = alice.encrypt("bob", b"tamper me")
    tampered = bytearray(m.body)
    tampered[-1] ^= 1  # the MAC
    with expect(rk.InvalidMessageError):
        bob.decrypt("alice", (m.type, bytes(tampered)))
    with expect(rk.InvalidMessageError):
        bob.decrypt("alice", (m.type, b""))
    assert bob.decrypt("alice", m) == b"tamper me"  # unchanged by the failures


def test_duplicate_message() -> None:
    alice, bob = make_pair()
    m = alice.encrypt("bob", b"once")
    assert bob.decrypt("alice", m) == b"once"
    with expect(rk.DuplicateMessageError) as info:
        bob.decrypt("alice", m)
    check_error(info, rk.DuplicateMessageError, 203)
    reply = bob.encrypt("alice", b"reply")
    alice.decrypt("bob", reply)
    with expect(rk.DuplicateMessageError):
        alice.decrypt("bob", reply)


def test_invalid_bundle() -> None:
    with expect(rk.InvalidBundleError) as info:
        rk.Bundle.from_bytes(b"not a bundle")
    check_error(info, rk.InvalidBundleError, 204)
    good = rk.Store().create_bundle()
    with expect(rk.InvalidBundleError):
        rk.Bundle(1, 0, good.identity_key, 1, good.signed_prekey, bytes(64))  # device id 0
    with expect(rk.InvalidBundleError):
        rk.Bundle(1, 1, good.identity_key, 1, good.signed_prekey, bytes(63))
    with expect(rk.InvalidBundleError):
        rk.Bundle(1, 1, good.identity_key, 1 << 24, good.signed_prekey, bytes(64))
    kyber = good.kyber_prekey_record
    assert kyber is not None
    with expect(rk.InvalidBundleError):  # a Kyber prekey signature of 63 bytes
        rk.Bundle(1, 1, good.identity_key, 1, good.signed_prekey, bytes(64), None,
                  kyber._replace(signature=bytes(63)))
    for bad_id in (0, 1 << 24):
        with expect(rk.InvalidBundleError):
            rk.Bundle(1, 1, good.identity_key, 1, good.signed_prekey, bytes(64), None,
                      kyber._replace(id=bad_id))


def test_invalid_fingerprint() -> None:
    alice, bob = make_pair()
    fp = alice.safety_number("bob", b"a", b"b")
    with expect(rk.InvalidFingerprintError) as info:
        fp.compare(b"\x01\x02garbage")
    check_error(info, rk.InvalidFingerprintError, 205)


def test_fingerprint_version_mismatch() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    v2 = alice.safety_number("bob", b"alice", b"bob", version=2)
    v1 = bob.safety_number("alice", b"bob", b"alice", version=1)
    with expect(rk.FingerprintVersionMismatchError) as info:
        v2.compare(v1.scannable)
    check_error(info, rk.FingerprintVersionMismatchError, 206)


def test_limit_exceeded() -> None:
    store = rk.Store()
    with expect(rk.LimitExceededError) as info:
        store.generate_prekeys(rk.MAX_PREKEYS_PER_CALL + 1)
    check_error(info, rk.LimitExceededError, 207)
    assert store.prekey_count == 0
    with expect(rk.LimitExceededError):
        store.generate_kyber_prekeys(rk.MAX_KYBER_PREKEYS_PER_CALL + 1)
    assert store.kyber_prekey_count == 0


def test_spqr_required() -> None:
    bob = rk.Store()  # requires SPQR (the default)
    alice = rk.Store()
    alice.spqr_policy = rk.SpqrPolicy.OFF
    alice.process_bundle("bob", bob.create_bundle())
    message = alice.encrypt("bob", b"no spqr")
    before = bob.save()
    with expect(rk.SpqrRequiredError) as info:
        bob.decrypt("alice", message)
    check_error(info, rk.SpqrRequiredError, 209)
    assert "SPQR required" in info.value.detail
    assert bob.save() == before and not bob.has_session("alice")


def test_version_refused() -> None:
    bob = rk.Store()
    v3_bundle = bob.create_bundle(kyber_prekey=rk.KyberPreKeyKind.NONE)
    alice = rk.Store()
    with expect(rk.VersionRefusedError) as info:
        alice.process_bundle("bob", v3_bundle)  # the default policy
    check_error(info, rk.VersionRefusedError, 208)
    assert info.value.detail and not alice.has_session("bob")
    # An incoming version-3 prekey message: refused by default, store unchanged.
    alice.set_policy(allow_v3_initiation=True)
    alice.process_bundle("bob", v3_bundle)
    message = alice.encrypt("bob", b"version 3")
    before = bob.save()
    with expect(rk.VersionRefusedError):
        bob.decrypt("alice", message)
    assert bob.save() == before and not bob.has_session("alice")


def test_limit_exceeded_too_far_ahead() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    for _ in range(25_002):  # counter 25,001: past MAX_FORWARD_JUMPS (25,000)
        last = alice.encrypt("bob", b"")
    with expect(rk.LimitExceededError):
        bob.decrypt("alice", last)


# -- 3xx: sessions and trust --------------------------------------------------------


def test_untrusted_identity() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    impostor = rk.Store()
    with expect(rk.UntrustedIdentityError) as info:
        alice.process_bundle("bob", impostor.create_bundle())
    check_error(info, rk.UntrustedIdentityError, 300)
    # A prekey message from a new identity under a trusted name.
    impostor.process_bundle("alice", alice.create_bundle())
    with expect(rk.UntrustedIdentityError):
        alice.decrypt("bob", impostor.encrypt("alice", b"it's me, bob"))


def test_no_session() -> None:
    store = rk.Store()
    with expect(rk.NoSessionError) as info:
        store.encrypt("nobody", b"x")
    check_error(info, rk.NoSessionError, 301)
    alice, bob = make_pair()
    converse(alice, bob)
    with expect(rk.NoSessionError):
        store.decrypt("alice", alice.encrypt("bob", b"not for you"))  # whisper, no session


def test_missing_prekey() -> None:
    bob = rk.Store()
    bundle = bob.create_bundle()
    alice = rk.Store()
    alice.process_bundle("bob", bundle)
    assert bob.decrypt("alice", alice.encrypt("bob", b"first")) == b"first"
    # The same bundle again: its one-time prekeys were used up.
    alice.process_bundle("bob", bundle)
    with expect(rk.MissingPrekeyError) as info:
        bob.decrypt("alice", alice.encrypt("bob", b"second"))
    check_error(info, rk.MissingPrekeyError, 302)
    # Asking for a Kyber prekey the store or the bundle does not hold.
    kyber_id = bundle.kyber_prekey_id
    assert kyber_id is not None
    with expect(rk.MissingPrekeyError):
        bob.kyber_prekey(kyber_id)  # used up
    with expect(rk.MissingPrekeyError):
        bob.remove_kyber_prekey(kyber_id)


def test_no_trusted_identity() -> None:
    store = rk.Store()
    with expect(rk.NoTrustedIdentityError) as info:
        store.safety_number("stranger", b"a", b"b")
    check_error(info, rk.NoTrustedIdentityError, 303)
    with expect(rk.NoTrustedIdentityError):
        store.trusted_identity("stranger")


# -- 4xx: saved state ---------------------------------------------------------------


def test_invalid_state() -> None:
    with expect(rk.InvalidStateError) as info:
        rk.Store.restore(b"RKST\x01 this is not protobuf")
    check_error(info, rk.InvalidStateError, 400)
    with expect(rk.InvalidStateError):
        rk.Store.restore(b"", key=bytes(32))  # not encrypted saved state


def test_wrong_pickle_key() -> None:
    saved = rk.Store().save(key=bytes(range(32)))
    with expect(rk.WrongPickleKeyError) as info:
        rk.Store.restore(saved, key=bytes(32))
    check_error(info, rk.WrongPickleKeyError, 401)


def test_unsupported_state_version() -> None:
    saved = bytearray(rk.Store().save())
    assert saved[:5] == b"RKST\x02"  # format 2 (PQXDH); format 1 still restores
    saved[4] = 99
    with expect(rk.UnsupportedStateVersionError) as info:
        rk.Store.restore(bytes(saved))
    check_error(info, rk.UnsupportedStateVersionError, 402)


# -- 4xx: durable stores ------------------------------------------------------------


def test_wrong_store_key(tmp_path: Path) -> None:
    rk.Store.open(tmp_path / "s.db", key=bytes(range(32))).close()
    with expect(rk.WrongStoreKeyError) as info:
        rk.Store.open(tmp_path / "s.db", key=bytes(32))
    check_error(info, rk.WrongStoreKeyError, 403)


def test_store_corrupt(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database " * 600)
    with expect(rk.StoreCorruptError) as info:
        rk.Store.open(junk, key=bytes(32))
    check_error(info, rk.StoreCorruptError, 404)


def test_store_busy(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "s.db"
    rk.Store.open(path, key=bytes(32)).close()
    # The write lock is held by another process (two SQLite copies in one
    # process do not exclude each other).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], "
         "isolation_level=None); c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); "
         "sys.stdin.readline()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with expect(rk.StoreBusyError) as info:
            rk.Store.open(path, key=bytes(32), busy_timeout=0.05)
        check_error(info, rk.StoreBusyError, 405)
    finally:
        holder.communicate("done\n", timeout=30)
    rk.Store.open(path, key=bytes(32), busy_timeout=0.05).close()


def test_conflict(tmp_path: Path) -> None:
    h1 = rk.Store.open(tmp_path / "s.db", key=bytes(32))
    h2 = rk.Store.open(tmp_path / "s.db", key=bytes(32))
    alice = rk.Store()
    alice.process_bundle("bob", rk.Bundle.from_bytes(h1.create_bundle().serialize()))
    m1, m2 = alice.encrypt("bob", b"1"), alice.encrypt("bob", b"2")
    pending = h1.decrypt_pending("alice", 1, m1.type, m1.body)
    assert h2.decrypt("alice", m2) == b"2"
    with expect(rk.ConflictError) as info:
        pending.commit()
    check_error(info, rk.ConflictError, 406)


def test_storage(tmp_path: Path) -> None:
    with expect(rk.StorageError) as info:
        rk.Store.open(tmp_path / "new.db", key=bytes(32), create=False)
    check_error(info, rk.StorageError, 407)
    assert "creating one is off" in info.value.detail


# -- the rest ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [rk.InternalError, rk.PanicError, rk.PoisonedError])
def test_internal_statuses_map_to_their_classes(cls: Type[rk.RatchetkitError]) -> None:
    err = _errors.error_for(cls.status, "detail")
    assert type(err) is cls and err.detail == "detail"
    assert isinstance(err, rk.RatchetkitError)
    assert str(err).endswith("detail")


def test_every_other_class_was_raised_by_a_real_cause() -> None:
    # Runs last in this file (pytest keeps definition order).
    untriggerable = {rk.InternalError, rk.PanicError, rk.PoisonedError}
    assert set(_errors.ERRORS.values()) - untriggerable == RAISED


def test_error_detail_is_per_thread_and_cleared() -> None:
    import threading

    store = rk.Store()
    with pytest.raises(rk.NoSessionError) as info:
        store.encrypt("nobody", b"x")
    seen = []

    def other() -> None:
        seen.append(_lib.last_error_message())

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen == [""]
    assert "nobody" in info.value.detail
    assert store.registration_id > 0  # a successful call clears it
    assert _lib.last_error_message() == ""


def test_exceptions_pickle() -> None:
    import pickle

    err = rk.DuplicateMessageError("counter 3")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is rk.DuplicateMessageError and back.detail == "counter 3"
    odd = pickle.loads(pickle.dumps(_errors.error_for(4242, "x")))
    assert odd.status == 4242

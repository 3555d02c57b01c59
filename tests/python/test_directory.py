"""The key directory's library half from Python (issue 12): uploads in the
server's format, bundles from the server's answers, refill and rotation
with a grace period, and signed requests.

The "server" here is a few lines that build the answer the reference key
server builds (keyserver/README.md) from an upload, so the flow is the one
an application runs, without HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any, Dict, Optional

import pytest

import ratchetkit as rk

DAY = 24 * 3600 * 1000


def server_answer(name: str, upload: Dict[str, Any], i: Optional[int]) -> Dict[str, Any]:
    """The bundle a server serves from ``upload``: one-time keys ``i``, or
    the last-resort Kyber prekey and no one-time EC prekey for ``None``."""
    return {
        "version": 1,
        "name": name,
        "device_id": 1,
        "registration_id": upload["registration_id"],
        "identity_key": upload["identity_key"],
        "signed_prekey": upload["signed_prekey"],
        "prekey": None if i is None else upload["prekeys"][i],
        "kyber_prekey": (
            upload["last_resort_kyber_prekey"] if i is None else upload["kyber_prekeys"][i]
        ),
        "kyber_last_resort": i is None,
    }


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def test_upload_fetch_and_talk() -> None:
    bob, alice = rk.Store(), rk.Store()
    upload = json.loads(bob.prepare_upload(5, timestamp_ms=1_000))
    assert upload["version"] == rk.UPLOAD_FORMAT_VERSION == 1
    assert b64(upload["identity_key"]) == bob.identity_key.serialize()
    assert upload["registration_id"] == bob.registration_id
    assert len(upload["prekeys"]) == len(upload["kyber_prekeys"]) == 5
    assert bob.prekey_count == bob.kyber_prekey_count == 5
    # Every signature verifies under the identity key, as the server checks.
    for signed in [upload["signed_prekey"], upload["last_resort_kyber_prekey"], *upload["kyber_prekeys"]]:
        assert bob.identity_key.verify_signature(b64(signed["public_key"]), b64(signed["signature"]))

    answers = [
        server_answer("bob", upload, 2),
        {"devices": [server_answer("bob", upload, 3)]},
        server_answer("bob", upload, None),
    ]
    for n, answer in enumerate(answers):
        bundles = rk.bundles_from_json(json.dumps(answer).encode())
        assert len(bundles) == 1
        bundle = bundles[0]
        assert bundle.identity_key == bob.identity_key
        assert (bundle.prekey is None) == (n == 2)
        assert bundle.session_version == rk.SESSION_VERSION_PQXDH
        name = f"bob-{n}"
        alice.process_bundle(name, bundle)
        assert alice.session_version(name) == 4
        message = alice.encrypt(name, b"hello bob")
        assert bob.decrypt(f"alice-{n}", message) == b"hello bob"
    # Two one-time pairs went; the last-resort key stays.
    assert bob.prekey_count == bob.kyber_prekey_count == 3
    assert bob.last_resort_kyber_prekey_id == upload["last_resort_kyber_prekey"]["id"]


def test_all_devices_of_a_name() -> None:
    phone, laptop = rk.Store(device_id=1), rk.Store(device_id=2)
    devices = []
    for device_id, store in ((1, phone), (2, laptop)):
        answer = server_answer("carol", json.loads(store.prepare_upload(1)), 0)
        answer["device_id"] = device_id
        devices.append(answer)
    bundles = rk.bundles_from_json(json.dumps({"devices": devices}).encode())
    assert [b.device_id for b in bundles] == [1, 2]
    assert [b.identity_key for b in bundles] == [phone.identity_key, laptop.identity_key]


def test_malformed_answers_are_refused() -> None:
    upload = json.loads(rk.Store().prepare_upload(1))
    good = server_answer("bob", upload, 0)
    assert len(rk.bundles_from_json(json.dumps(good).encode())) == 1
    cases = []
    for field in ("identity_key", "signed_prekey", "kyber_prekey", "device_id"):
        case = dict(good)
        del case[field]
        cases.append(case)
    cases.append({**good, "identity_key": "not base64!"})
    cases.append({**good, "version": 2})
    cases.append({**good, "device_id": 0})
    cases.append({"devices": [good] * 65})
    for case in cases:
        with pytest.raises((rk.InvalidBundleError, rk.InvalidKeyError)):
            rk.bundles_from_json(json.dumps(case).encode())
    for raw in (b"{", b"[]", b"", b" " * ((1 << 20) + 1)):
        with pytest.raises(rk.InvalidBundleError):
            rk.bundles_from_json(raw)
    # A forged signature parses but is never processed.
    forged = json.loads(json.dumps(good))
    forged["signed_prekey"]["signature"] = base64.b64encode(bytes([7]) * 64).decode()
    bundle = rk.bundles_from_json(json.dumps(forged).encode())[0]
    alice = rk.Store()
    before = alice.save()
    with pytest.raises(rk.InvalidSignatureError):
        alice.process_bundle("bob", bundle)
    assert alice.save() == before


def test_refill_follows_the_count_and_the_threshold() -> None:
    bob = rk.Store()
    policy = rk.PreKeyPolicy(refill_below=10)
    fresh = bob.prekey_status(now_ms=0, policy=policy)
    assert fresh.refill and fresh.rotate
    assert fresh.signed_prekey_age_ms is None and fresh.last_resort_age_ms is None
    bob.prepare_upload(12, timestamp_ms=0)
    status = bob.prekey_status(now_ms=DAY, policy=policy)
    assert not status.refill and not status.rotate
    assert (status.prekeys_held, status.kyber_prekeys_held) == (12, 12)
    assert status.signed_prekey_age_ms == DAY
    # The server's count decides when given.
    assert bob.prekey_status(now_ms=DAY, server_count=9, policy=policy).refill
    assert not bob.prekey_status(now_ms=DAY, server_count=10, policy=policy).refill
    before = bob.save()
    with pytest.raises(rk.LimitExceededError):
        bob.prepare_upload(rk.MAX_UPLOAD_BATCH + 1)
    assert bob.save() == before
    again = json.loads(bob.prepare_upload(0, timestamp_ms=DAY))
    assert again["prekeys"] == [] and again["kyber_prekeys"] == []


def test_rotation_keeps_the_previous_keys_for_the_grace_period() -> None:
    bob, alice = rk.Store(), rk.Store()
    policy = rk.PreKeyPolicy(refill_below=1, rotate_after_ms=7 * DAY, grace_ms=3 * DAY)
    first = json.loads(bob.prepare_upload(2, timestamp_ms=0))
    # A sender fetched a bundle before the rotation; its message arrives after.
    stale = rk.bundles_from_json(json.dumps(server_answer("bob", first, None)).encode())[0]
    assert bob.rotate_prekeys(now_ms=DAY, policy=policy) == (False, 0)
    assert bob.prekey_status(now_ms=8 * DAY, policy=policy).rotate
    assert bob.rotate_prekeys(now_ms=8 * DAY, policy=policy) == (True, 0)
    second = json.loads(bob.prepare_upload(0, timestamp_ms=8 * DAY))
    assert second["signed_prekey"]["id"] != first["signed_prekey"]["id"]
    assert second["last_resort_kyber_prekey"]["id"] != first["last_resort_kyber_prekey"]["id"]
    alice.process_bundle("bob", stale)
    message = alice.encrypt("bob", b"sent before the rotation")
    assert bob.decrypt("alice", message) == b"sent before the rotation"
    # Past the grace period the replaced pair goes.
    assert bob.prekey_status(now_ms=12 * DAY, policy=policy).expired == 2
    assert bob.rotate_prekeys(now_ms=12 * DAY, policy=policy) == (False, 2)
    carol = rk.Store()
    carol.process_bundle("bob", stale)
    before = bob.save()
    with pytest.raises(rk.MissingPrekeyError):
        bob.decrypt("carol", carol.encrypt("bob", b"too late"))
    assert bob.save() == before


def test_durable_store_remembers_the_upload(tmp_path: Any) -> None:
    key = bytes(range(32))
    path = tmp_path / "bob.db"
    with rk.Store.open(path, key=key) as bob:
        upload = json.loads(bob.prepare_upload(3, timestamp_ms=5))
    with rk.Store.open(path, key=key) as bob:
        assert bob.prekey_count == bob.kyber_prekey_count == 3
        status = bob.prekey_status(now_ms=5 + DAY)
        assert status.signed_prekey_age_ms == DAY
        again = json.loads(bob.prepare_upload(0, timestamp_ms=5 + DAY))
        assert again["signed_prekey"] == upload["signed_prekey"]


AUTH = re.compile(
    r"^Ratchetkit name=(?P<name>[^,]+),device=(?P<device>\d+),ts=(?P<ts>\d+),"
    r"nonce=(?P<nonce>[0-9a-f]{32}),sig=(?P<sig>[A-Za-z0-9+/=]+)$"
)


def test_sign_request_verifies_under_the_identity_key() -> None:
    store = rk.Store(device_id=3)
    body = b'{"hello": 1}'
    header = store.sign_request("alice", "PUT", "/v1/keys/alice/3", body, timestamp=1_700_000_000)
    m = AUTH.match(header)
    assert m, header
    assert (m["name"], m["device"], m["ts"]) == ("alice", "3", "1700000000")
    signed = "\n".join(
        [
            "ratchetkit-keyserver-auth-v1",
            "alice",
            "3",
            "PUT",
            "/v1/keys/alice/3",
            hashlib.sha256(body).hexdigest(),
            "1700000000",
            m["nonce"],
        ]
    ).encode()
    signature = base64.b64decode(m["sig"])
    assert store.identity_key.verify_signature(signed, signature)
    assert not store.identity_key.verify_signature(signed.replace(b"PUT", b"GET"), signature)
    # A fresh nonce every time.
    other = AUTH.match(store.sign_request("alice", "PUT", "/v1/keys/alice/3", body, timestamp=1_700_000_000))
    assert other and other["nonce"] != m["nonce"]


@pytest.mark.parametrize(
    "name, method, path",
    [("a,b", "GET", "/x"), ("a b", "GET", "/x"), ("a=b", "GET", "/x"), ("", "GET", "/x"),
     ("alice", "get", "/x"), ("alice", "GET", "x")],
)
def test_sign_request_refuses_bad_fields(name: str, method: str, path: str) -> None:
    with pytest.raises(rk.InvalidArgumentError):
        rk.Store().sign_request(name, method, path)


def test_sign_request_refuses_nul_and_bad_types() -> None:
    store = rk.Store()
    with pytest.raises(ValueError):
        store.sign_request("alice", "GET", "/x\0y")
    with pytest.raises(TypeError):
        store.sign_request("alice", b"GET", "/x")  # type: ignore[arg-type]


def test_policy_values_are_checked() -> None:
    assert rk.PreKeyPolicy() == rk.PreKeyPolicy(20, 7 * DAY, 30 * DAY)
    for bad in ({"refill_below": -1}, {"rotate_after_ms": 1 << 64}, {"grace_ms": 1.5}):
        with pytest.raises(ValueError):
            rk.PreKeyPolicy(**bad)  # type: ignore[arg-type]

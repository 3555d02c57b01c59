#!/usr/bin/env python3
"""ratchetkit's Python binding behind the JSON-lines peer protocol.

Speaks the peer protocol, version 2 (shared/interop/PEER_PROTOCOL.md): one
JSON request per stdin line, exactly one JSON answer per stdout line,
diagnostics on stderr only. Uses nothing but the public API of the
*installed* ``ratchetkit`` package (``make py-venv``), so that the interop
driver tests the binding as users get it:

    python3 tests/interop/driver.py \\
        --alice "build/venv/bin/python tests/interop/python_peer.py" \\
        --bob "node tests/interop/libsignal-peer/peer.js"

Sessions, as tests/interop/ratchetkit-peer does: a bundle with Kyber
fields starts a version-4 (PQXDH) session, one without a version-3 (X3DH)
session, as the protocol says (so this peer's store allows starting
version-3 sessions); whether an incoming version-3 prekey message may
start a session is ``init``'s ``accept_v3``, by default the library's: no
(refused as ``invalid_message``). ``init``'s ``spqr`` sets the store's
SPQR policy ("required", the default, "offered" or "off"); durable stores (``open``, ``init`` with ``path``/``key``) are not
implemented: ``unsupported``.

A failed operation leaves the peer's state as it was: the store's calls are
all-or-nothing, and the two-step ``bundle`` with ``new_signed_prekey``
restores a snapshot when its second step fails.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Dict, Optional, Tuple

import ratchetkit as rk

IMPLEMENTATION = f"ratchetkit-python {rk.__version__} (library {rk.library_version()})"
PROTOCOL = 2
#: The session versions this peer starts and accepts (3 = X3DH, 4 = PQXDH).
VERSIONS = [rk.SESSION_VERSION_X3DH, rk.SESSION_VERSION_PQXDH]
#: The ``kyber`` option of ``bundle``.
KYBER_KINDS = {
    "none": rk.KyberPreKeyKind.NONE,
    "one_time": rk.KyberPreKeyKind.ONE_TIME,
    "last_resort": rk.KyberPreKeyKind.LAST_RESORT,
}
KYBER_FIELDS = ("kyber_prekey_id", "kyber_prekey", "kyber_prekey_signature")


class PeerError(Exception):
    """A failed operation: a protocol error kind and a message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def bad(message: str) -> PeerError:
    return PeerError("other", message)


# Protocol error kind of each binding exception. LimitExceededError and
# InvalidFingerprintError depend on the operation (see kind_of).
KINDS: Dict[type, str] = {
    rk.InvalidMessageError: "invalid_message",
    rk.DuplicateMessageError: "duplicate_message",
    rk.UntrustedIdentityError: "untrusted_identity",
    rk.InvalidSignatureError: "invalid_signature",
    rk.InvalidKeyError: "invalid_key",
    rk.NoSessionError: "no_session",
    rk.MissingPrekeyError: "missing_prekey",
    # A version-3 prekey message refused by policy: the protocol's kind.
    rk.VersionRefusedError: "invalid_message",
    rk.SpqrRequiredError: "invalid_message",
}


def kind_of(op: str, e: rk.RatchetkitError) -> str:
    kind = KINDS.get(type(e))
    if kind is not None:
        return kind
    # A message too far ahead of its chain: libsignal calls it an invalid message.
    if isinstance(e, rk.LimitExceededError) and op == "decrypt":
        return "invalid_message"
    # Scannable bytes that do not parse: malformed input, as libsignal says.
    if isinstance(e, rk.InvalidFingerprintError):
        return "invalid_message"
    return "other"


# -- argument helpers ------------------------------------------------------------


def str_arg(req: Dict[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str):
        raise bad(f"missing string field {key!r}")
    return value


def hex_arg(req: Dict[str, Any], key: str) -> bytes:
    try:
        return bytes.fromhex(str_arg(req, key))
    except ValueError:
        raise bad(f"field {key!r} is not hex") from None


def int_arg(req: Dict[str, Any], key: str, default: Optional[int] = None) -> int:
    value = req.get(key)
    if value is None:
        if default is None:
            raise bad(f"missing integer field {key!r}")
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise bad(f"field {key!r} is not a u32")
    return value


def bool_arg(req: Dict[str, Any], key: str, default: bool) -> bool:
    value = req.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad(f"field {key!r} is not a bool")
    return value


def key_arg(req: Dict[str, Any], key: str) -> rk.PublicKey:
    return rk.PublicKey(hex_arg(req, key))


# -- the peer ----------------------------------------------------------------------


class Peer:
    def __init__(self) -> None:
        self.store: Optional[rk.Store] = None
        # Device id of each name's last processed bundle.
        self.device_ids: Dict[str, int] = {}

    def need_store(self) -> rk.Store:
        if self.store is None:
            raise bad("init must come first")
        return self.store

    def device(self, name: str) -> int:
        return self.device_ids.get(name, 1)

    # Each op returns the answer's fields.

    def op_hello(self, req: Dict[str, Any]) -> Dict[str, Any]:
        return {"implementation": IMPLEMENTATION, "protocol": PROTOCOL, "versions": VERSIONS}

    def op_init(self, req: Dict[str, Any]) -> Dict[str, Any]:
        str_arg(req, "name")
        device_id = int_arg(req, "device_id", 1)
        spqr_name = req.get("spqr", "required")
        policies = {
            "required": rk.SpqrPolicy.REQUIRED,
            "offered": rk.SpqrPolicy.OFFERED,
            "off": rk.SpqrPolicy.OFF,
        }
        if spqr_name not in policies:
            raise PeerError("other", f"spqr {spqr_name!r}: not required, offered or off")
        if "path" in req or "key" in req:
            raise PeerError("unsupported", "durable stores are not implemented yet")
        accept_v3 = bool_arg(req, "accept_v3", False)
        store = rk.Store(device_id=device_id)
        store.set_policy(allow_v3_initiation=True, accept_v3_prekey_messages=accept_v3)
        store.spqr_policy = policies[spqr_name]
        if self.store is not None:
            self.store.close()
        self.store = store
        self.device_ids.clear()
        return {
            "identity_key": bytes(store.identity_key).hex(),
            "registration_id": store.registration_id,
        }

    def op_bundle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        one_time = bool_arg(req, "one_time_prekey", True)
        new_signed = bool_arg(req, "new_signed_prekey", False)
        kyber_name = req.get("kyber")
        if kyber_name is None:
            kyber_name = "none"
        kyber = KYBER_KINDS.get(kyber_name) if isinstance(kyber_name, str) else None
        if kyber is None:
            raise bad(f"unknown kyber kind {kyber_name!r}")
        store = self.need_store()
        snapshot = store.save() if new_signed else None
        try:
            if new_signed:
                store.generate_signed_prekey()
            bundle = store.create_bundle(one_time_prekey=one_time, kyber_prekey=kyber)
        except rk.RatchetkitError:
            if snapshot is not None:  # all or nothing: undo the rotation
                self.store = rk.Store.restore(snapshot)
                store.close()
            raise
        with bundle:
            out = {
                "registration_id": bundle.registration_id,
                "device_id": bundle.device_id,
                "identity_key": bytes(bundle.identity_key).hex(),
                "signed_prekey_id": bundle.signed_prekey_id,
                "signed_prekey": bytes(bundle.signed_prekey).hex(),
                "signed_prekey_signature": bundle.signed_prekey_signature.hex(),
            }
            prekey = bundle.prekey
            if prekey is not None:
                out["prekey_id"] = prekey.id
                out["prekey"] = bytes(prekey.key).hex()
            kyber_prekey = bundle.kyber_prekey_record
            if kyber_prekey is not None:
                out["kyber_prekey_id"] = kyber_prekey.id
                out["kyber_prekey"] = kyber_prekey.key.hex()
                out["kyber_prekey_signature"] = kyber_prekey.signature.hex()
        return out

    def op_process_bundle(self, req: Dict[str, Any]) -> Dict[str, Any]:
        name = str_arg(req, "peer")
        b = req.get("bundle")
        if not isinstance(b, dict):
            raise bad('missing object field "bundle"')
        has_id, has_key = "prekey_id" in b, "prekey" in b
        if has_id != has_key:
            raise bad("prekey_id and prekey must come together")
        prekey = rk.PreKey(int_arg(b, "prekey_id"), key_arg(b, "prekey")) if has_id else None
        present = [f in b for f in KYBER_FIELDS]
        if any(present) and not all(present):
            raise bad("the three Kyber fields must come together")
        kyber = (
            rk.KyberPreKey(
                int_arg(b, "kyber_prekey_id"),
                hex_arg(b, "kyber_prekey"),
                hex_arg(b, "kyber_prekey_signature"),
            )
            if all(present)
            else None
        )
        bundle = rk.Bundle(
            int_arg(b, "registration_id"),
            int_arg(b, "device_id", 1),
            key_arg(b, "identity_key"),
            int_arg(b, "signed_prekey_id"),
            key_arg(b, "signed_prekey"),
            hex_arg(b, "signed_prekey_signature"),
            prekey,
            kyber,
        )
        with bundle:
            device_id = bundle.device_id
            self.need_store().process_bundle(name, bundle, device_id)
        self.device_ids[name] = device_id
        return {}

    def op_encrypt(self, req: Dict[str, Any]) -> Dict[str, Any]:
        name = str_arg(req, "peer")
        plaintext = hex_arg(req, "plaintext")
        message = self.need_store().encrypt(name, plaintext, self.device(name))
        kind = "prekey" if message.type == rk.MessageType.PREKEY else "whisper"
        return {"type": kind, "body": message.body.hex()}

    def op_decrypt(self, req: Dict[str, Any]) -> Dict[str, Any]:
        name = str_arg(req, "peer")
        body = hex_arg(req, "body")
        kind = str_arg(req, "type")
        types = {"prekey": rk.MessageType.PREKEY, "whisper": rk.MessageType.WHISPER}
        if kind not in types:
            raise bad(f"unknown message type {kind!r}")
        store = self.need_store()
        plaintext = store.decrypt(name, rk.Message(types[kind], body), self.device(name))
        return {"plaintext": plaintext.hex()}

    def _fingerprint(self, req: Dict[str, Any]) -> rk.Fingerprint:
        name = str_arg(req, "peer")
        local_id = hex_arg(req, "local_id")
        remote_id = hex_arg(req, "remote_id")
        iterations = int_arg(req, "iterations", rk.DEFAULT_ITERATIONS)
        version = int_arg(req, "version", 2)
        return self.need_store().safety_number(
            name, local_id, remote_id, iterations=iterations, version=version
        )

    def op_fingerprint(self, req: Dict[str, Any]) -> Dict[str, Any]:
        with self._fingerprint(req) as fp:
            return {"displayable": fp.displayable, "scannable": fp.scannable.hex()}

    def op_compare_scannable(self, req: Dict[str, Any]) -> Dict[str, Any]:
        theirs = hex_arg(req, "scannable")
        with self._fingerprint(req) as fp:
            return {"match": fp.compare(theirs)}

    def op_trust(self, req: Dict[str, Any]) -> Dict[str, Any]:
        name = str_arg(req, "peer")
        with key_arg(req, "identity_key") as key:
            self.need_store().approve_identity(name, key)
        return {}

    def op_has_session(self, req: Dict[str, Any]) -> Dict[str, Any]:
        name = str_arg(req, "peer")
        return {"session": self.need_store().has_session(name, self.device(name))}

    def op_save(self, req: Dict[str, Any]) -> Dict[str, Any]:
        store = self.need_store()
        saved = store.save()
        restored = rk.Store.restore(saved)  # before anything is discarded
        # Discard every live object and go on from the bytes alone.
        store.close()
        self.store = restored
        return {}

    def op_open(self, req: Dict[str, Any]) -> Dict[str, Any]:
        raise PeerError("unsupported", "durable stores are not implemented yet")

    def op_quit(self, req: Dict[str, Any]) -> Dict[str, Any]:
        return {}

    def handle(self, op: str, req: Dict[str, Any]) -> Dict[str, Any]:
        method: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]]
        method = getattr(self, "op_" + op, None) if op.isidentifier() else None
        if method is None:
            raise PeerError("unsupported", f"unknown op {op!r}")
        result: Dict[str, Any] = method(req)
        return result


def answer(peer: Peer, line: str) -> Tuple[str, Dict[str, Any]]:
    try:
        req = json.loads(line)
    except ValueError:
        req = None
    if not isinstance(req, dict):
        return "", {"ok": False, "error": "other", "message": "request is not a JSON object"}
    op = req.get("op")
    op = op if isinstance(op, str) else ""
    try:
        out = peer.handle(op, req)
    except PeerError as e:
        kind, message = e.kind, str(e)
    except rk.RatchetkitError as e:
        kind, message = kind_of(op, e), f"{type(e).__name__}: {e}"
    except (ValueError, TypeError) as e:
        kind, message = "other", f"{type(e).__name__}: {e}"
    else:
        out["ok"] = True
        return op, out
    print(f"[python-peer] {op}: {kind}: {message}", file=sys.stderr, flush=True)
    return op, {"ok": False, "error": kind, "message": message}


def main() -> int:
    peer = Peer()
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        op, reply = answer(peer, line)
        out.write(json.dumps(reply, separators=(",", ":")) + "\n")
        out.flush()
        if op == "quit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())

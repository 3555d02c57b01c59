#!/usr/bin/env python3
"""Interop scenario driver for the JSON-lines peer protocol.

Starts two (or more) peer programs that speak the protocol described in
PEER_PROTOCOL.md (one JSON request per line on stdin, one JSON answer per
line on stdout), relays Signal-protocol messages between them, and checks
every plaintext end to end while reordering, dropping, duplicating and
corrupting messages in transit.

    python3 tests/interop/driver.py --alice "CMD" --bob "CMD" \
        [--seed N] [--only scenario,...] [--timeout SECONDS] [--verbose]

Each scenario starts fresh peer processes (alice from --alice; bob, and any
third identity such as carol, from --bob) and stops them afterwards. One
line per scenario is printed on stdout, then the summary "N passed, N failed".
Diagnostics (peer stderr tails on failure, --verbose traces) go to stderr.
The exit status is 0 iff no scenario failed.

Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass

# --------------------------------------------------------------------------
# errors


class ScenarioFailure(Exception):
    """The scenario failed; the message is the one-line reason."""


class Unsupported(ScenarioFailure):
    """A peer answered `unsupported`."""


class CannotRun(ScenarioFailure):
    """The pair cannot run this scenario (what hello or init said)."""


class PeerError(Exception):
    """A peer answered ok=false (with a kind other than `unsupported`)."""

    def __init__(self, peer: "Peer", op: str, kind: str, message: str):
        super().__init__(f"{peer.role}: {op} failed with {kind}: {message}")
        self.peer = peer
        self.op = op
        self.kind = kind
        self.message = message


class WireError(Exception):
    """Bytes that do not parse as the expected wire format."""


def fail(reason: str) -> None:
    raise ScenarioFailure(reason)


def check(cond: bool, reason: str) -> None:
    if not cond:
        raise ScenarioFailure(reason)


# --------------------------------------------------------------------------
# logging

VERBOSE = False


def vlog(text: str) -> None:
    if VERBOSE:
        print(f"    . {text}", file=sys.stderr, flush=True)


def short(value, limit: int = 48) -> str:
    """Abbreviate long hex strings in trace output."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}...({len(value) // 2} bytes)"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {short(v, limit)}" for k, v in value.items()) + "}"
    return json.dumps(value) if not isinstance(value, str) else value


# --------------------------------------------------------------------------
# a peer process

ROLE_NAMES = ("alice", "bob")


class Peer:
    """One peer process: one local user (`name`) with one device."""

    def __init__(self, role: str, name: str, cmd: str, timeout: float):
        self.role = role  # label used in reports (e.g. "bob2")
        self.name = name  # the protocol name the others address it by
        self.cmd = cmd
        self.timeout = timeout
        self.impl = "?"
        self.identity_key = b""
        self.registration_id = 0
        self.device_id = 1
        self.protocol = 1
        self.versions: list[int] = [3]  # what hello says; protocol 1 means [3]
        self.default_kyber = "none"  # the kyber kind of bundle() when not given
        # The session version this peer's session with each name must have
        # (from processed bundles and decrypted prekey messages); every
        # message it sends to that name is checked against it.
        self.session_version: dict[str, int] = {}
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=400)
        self._answers: queue.Queue = queue.Queue()
        try:
            argv = shlex.split(cmd)
        except ValueError as e:
            fail(f"cannot parse command for {role}: {e}")
        if not argv:
            fail(f"empty command for {role}")
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            fail(f"cannot start {role} ({cmd!r}): {e}")
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # -- plumbing

    def _read_stdout(self) -> None:
        try:
            for line in self.proc.stdout:
                self._answers.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._answers.put(None)

    def _read_stderr(self) -> None:
        try:
            for line in self.proc.stderr:
                text = line.decode("utf-8", "replace").rstrip("\n")
                if len(text) > 500:
                    text = text[:500] + "...[truncated]"
                self.stderr_tail.append(text)
        except (OSError, ValueError):
            pass

    def _write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # the reader sees EOF and reports the exit

    def _exit_status(self) -> str:
        try:
            rc = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "still running"
        return f"exit status {rc}"

    def request(self, op: str, **fields) -> dict:
        """Send one request; return the answer without `ok`.

        Raises PeerError for ok=false, Unsupported for `unsupported`,
        ScenarioFailure for timeouts, exits and malformed answers."""
        req = {"op": op, **fields}
        vlog(f"{self.role} <- {short(req)}")
        data = (json.dumps(req, separators=(",", ":")) + "\n").encode()
        writer = threading.Thread(target=self._write, args=(data,), daemon=True)
        writer.start()
        try:
            line = self._answers.get(timeout=self.timeout)
        except queue.Empty:
            self.kill()
            fail(f"{self.role} ({self.impl}) gave no answer to {op} within {self.timeout:g} s")
        if line is None:
            self._answers.put(None)  # stay at EOF for later requests
            fail(f"{self.role} ({self.impl}) exited during {op} ({self._exit_status()})")
        try:
            resp = json.loads(line)
        except ValueError:
            text = line[:200].decode("utf-8", "replace").strip()
            fail(f"{self.role} answered {op} with a line that is not JSON: {text!r}")
        if not isinstance(resp, dict) or not isinstance(resp.get("ok"), bool):
            fail(f"{self.role} answered {op} without a boolean 'ok': {short(resp)}")
        vlog(f"{self.role} -> {short(resp)}")
        if not resp["ok"]:
            kind = resp.get("error")
            message = str(resp.get("message", ""))
            if kind == "unsupported":
                raise Unsupported(
                    f"unsupported: {self.role} ({self.impl}) does not support {op}"
                    + (f" ({message})" if message else "")
                )
            raise PeerError(self, op, str(kind), message)
        resp.pop("ok")
        return resp

    def close(self) -> None:
        if self.proc.poll() is None:
            self._write(b'{"op":"quit"}\n')
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # our own session
            except OSError:
                self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    # -- typed operations

    def hello(self) -> None:
        r = self.request("hello")
        self.impl = str(r.get("implementation", "?"))
        proto = r.get("protocol")
        check(proto in (1, 2), f"{self.role} speaks protocol {proto!r}, not 1 or 2")
        self.protocol = proto
        if proto == 1:
            check("versions" not in r, f"{self.role}: a protocol-1 peer must not list versions")
            self.versions = [3]
        else:
            v = r.get("versions")
            check(isinstance(v, list) and v and all(x in KNOWN_VERSIONS for x in v) and len(set(v)) == len(v),
                  f"{self.role}: hello versions {v!r} is not a non-empty list of 3 and/or 4")
            self.versions = sorted(v)

    def init(self, **opts) -> None:
        if opts and self.protocol < 2:
            raise Unsupported(f"unsupported: {self.role} ({self.impl}) speaks protocol 1, which has no init "
                              f"option {', '.join(sorted(opts))}")
        r = self.request("init", name=self.name, **opts)
        self.identity_key = unhex(r.get("identity_key"), f"{self.role} init identity_key")
        check_pubkey(self.identity_key, f"{self.role}'s identity key")
        rid = r.get("registration_id")
        check(isinstance(rid, int) and 0 < rid < 16384,
              f"{self.role}'s registration id {rid!r} is not in 1..16383")
        self.registration_id = rid

    def bundle(self, one_time_prekey: bool = True, new_signed_prekey: bool = False,
               kyber: "str | None" = None) -> dict:
        """kyber: "one_time", "last_resort" or "none"; None: this peer's default
        for the scenario (none for session version 3, one_time for 4)."""
        if kyber is None:
            kyber = self.default_kyber
        opts = {}
        if not one_time_prekey:
            opts["one_time_prekey"] = False
        if new_signed_prekey:
            opts["new_signed_prekey"] = True
        if kyber != "none":
            if self.protocol < 2:
                raise Unsupported(f"unsupported: {self.role} ({self.impl}) speaks protocol 1: no Kyber prekeys")
            opts["kyber"] = kyber
        b = self.request("bundle", **opts)
        what = f"{self.role}'s bundle"
        check(b.get("registration_id") == self.registration_id,
              f"{what}: registration_id {b.get('registration_id')!r} differs from init's {self.registration_id}")
        check(isinstance(b.get("device_id"), int) and b["device_id"] > 0, f"{what}: bad device_id")
        check(unhex(b.get("identity_key"), what) == self.identity_key,
              f"{what}: identity_key differs from init's")
        check_id(b.get("signed_prekey_id"), f"{what}: signed_prekey_id")
        check_pubkey(unhex(b.get("signed_prekey"), what), f"{what}: signed_prekey")
        check(len(unhex(b.get("signed_prekey_signature"), what)) == 64,
              f"{what}: signed_prekey_signature is not 64 bytes")
        if one_time_prekey:
            check("prekey_id" in b and "prekey" in b, f"{what}: one-time prekey missing")
            check_id(b.get("prekey_id"), f"{what}: prekey_id")
            check_pubkey(unhex(b.get("prekey"), what), f"{what}: prekey")
        else:
            check("prekey_id" not in b and "prekey" not in b,
                  f"{what}: requested without one-time prekey but has prekey_id/prekey")
        kyber_fields = ("kyber_prekey_id", "kyber_prekey", "kyber_prekey_signature")
        if kyber == "none":
            check(not any(f in b for f in kyber_fields), f"{what}: requested with kyber none but has Kyber fields")
        else:
            check(all(f in b for f in kyber_fields), f"{what}: requested with kyber {kyber} but lacks Kyber fields")
            check_id(b.get("kyber_prekey_id"), f"{what}: kyber_prekey_id")
            kpk = unhex(b.get("kyber_prekey"), what)
            check(len(kpk) == KYBER_PUBLIC_KEY_LEN and kpk[0] == 0x08,
                  f"{what}: kyber_prekey is not a 1569-byte 0x08 key ({kpk[:2].hex()}..., {len(kpk)} bytes)")
            check(len(unhex(b.get("kyber_prekey_signature"), what)) == 64,
                  f"{what}: kyber_prekey_signature is not 64 bytes")
        return b

    def process_bundle(self, other: "Peer | str", bundle: dict) -> None:
        self.request("process_bundle", peer=peer_name(other), bundle=bundle)
        self.session_version[peer_name(other)] = bundle_version(bundle)

    def has_session(self, other: "Peer | str") -> bool:
        r = self.request("has_session", peer=peer_name(other))
        check(isinstance(r.get("session"), bool), f"{self.role}: has_session answer lacks a boolean")
        return r["session"]

    def save(self) -> None:
        self.request("save")

    def trust(self, other: "Peer | str", identity_key: bytes) -> None:
        self.request("trust", peer=peer_name(other), identity_key=identity_key.hex())

    def fingerprint(self, other: "Peer | str", local_id: bytes, remote_id: bytes, **opts) -> dict:
        return self.request("fingerprint", peer=peer_name(other), local_id=local_id.hex(),
                            remote_id=remote_id.hex(), **opts)

    def compare_scannable(self, other: "Peer | str", local_id: bytes, remote_id: bytes,
                          scannable: str, **opts) -> bool:
        r = self.request("compare_scannable", peer=peer_name(other), local_id=local_id.hex(),
                         remote_id=remote_id.hex(), scannable=scannable, **opts)
        check(isinstance(r.get("match"), bool), f"{self.role}: compare_scannable answer lacks 'match'")
        return r["match"]


def peer_name(p: "Peer | str") -> str:
    return p.name if isinstance(p, Peer) else p


def bundle_version(bundle: dict) -> int:
    """The session version a bundle starts: 4 with a Kyber prekey, else 3."""
    return 4 if "kyber_prekey" in bundle else 3


def unhex(value, what: str) -> bytes:
    if not isinstance(value, str):
        fail(f"{what}: expected a hex string, got {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        fail(f"{what}: not valid hex")


def check_pubkey(key: bytes, what: str) -> None:
    check(len(key) == 33 and key[0] == 0x05, f"{what} is not a 33-byte 0x05 key ({key[:4].hex()}..., {len(key)} bytes)")


def check_id(value, what: str) -> None:
    check(isinstance(value, int) and 1 <= value <= 0xFFFFFF, f"{what} {value!r} not in 1..16777215")


def expect_error(kind: str, what: str, fn, *args, **kwargs) -> PeerError:
    """Run fn and require it to fail with error kind `kind`."""
    try:
        fn(*args, **kwargs)
    except PeerError as e:
        if e.kind != kind:
            fail(f"{what}: expected {kind}, got {e.kind} ({e.message})")
        return e
    fail(f"{what}: expected {kind}, but it succeeded")


# --------------------------------------------------------------------------
# protobuf walker (varint and length-delimited only) and wire checks


@dataclass
class Field:
    num: int
    wire_type: int
    value: "int | bytes"
    start: int  # offset of the value bytes (varint bytes, or the payload)
    end: int
    key_start: int = 0  # offset of the field's key (tag) varint


def read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(buf):
            raise WireError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i
        if shift >= 64:
            raise WireError("varint too long")


def parse_pb(buf: bytes) -> dict[int, Field]:
    fields: dict[int, Field] = {}
    i = 0
    while i < len(buf):
        key_start = i
        key, i = read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise WireError("field number 0")
        if wt == 0:
            v, j = read_varint(buf, i)
            fields[num] = Field(num, wt, v, i, j, key_start)
            i = j
        elif wt == 2:
            n, j = read_varint(buf, i)
            if j + n > len(buf):
                raise WireError(f"field {num} overruns the buffer")
            fields[num] = Field(num, wt, bytes(buf[j:j + n]), j, j + n, key_start)
            i = j + n
        else:
            raise WireError(f"field {num} has unsupported wire type {wt}")
    return fields


def pb_get(fields: dict[int, Field], num: int, wt: int, what: str, required: bool = True):
    f = fields.get(num)
    if f is None:
        if required:
            raise WireError(f"{what}: field {num} missing")
        return None
    if f.wire_type != wt:
        raise WireError(f"{what}: field {num} has wire type {f.wire_type}, expected {wt}")
    return f


@dataclass
class WhisperInfo:
    version: int
    ratchet_key: Field
    counter: Field
    previous_counter: "Field | None"
    ciphertext: Field  # offsets relative to the whole SignalMessage


# Session versions the driver knows: 3 (X3DH) and 4 (PQXDH).
KNOWN_VERSIONS = (3, 4)
KYBER_CIPHERTEXT_LEN = 1569  # type byte 0x08 + 1568
KYBER_PUBLIC_KEY_LEN = 1569


def check_version_byte(b: int, what: str) -> None:
    if b >> 4 not in KNOWN_VERSIONS:
        raise WireError(f"{what} version byte 0x{b:02x} (high nibble must be 3 or 4)")


def parse_whisper(body: bytes) -> WhisperInfo:
    """A SignalMessage: version byte, protobuf, 8-byte MAC. Fields 5
    (pq_ratchet) and 6 (addresses) of newer official libraries are allowed."""
    if len(body) < 1 + 8 + 1:
        raise WireError(f"SignalMessage too short ({len(body)} bytes)")
    check_version_byte(body[0], "SignalMessage")
    pb = body[1:-8]
    fields = parse_pb(pb)
    for f in fields.values():  # make offsets relative to body
        f.start += 1
        f.end += 1
        f.key_start += 1
    rk = pb_get(fields, 1, 2, "SignalMessage ratchet_key")
    if len(rk.value) != 33 or rk.value[0] != 0x05:
        raise WireError("SignalMessage ratchet_key is not a 33-byte 0x05 key")
    ctr = pb_get(fields, 2, 0, "SignalMessage counter")
    prev = pb_get(fields, 3, 0, "SignalMessage previous_counter", required=False)
    ct = pb_get(fields, 4, 2, "SignalMessage ciphertext")
    return WhisperInfo(body[0], rk, ctr, prev, ct)


@dataclass
class PreKeyInfo:
    version: int
    registration_id: "int | None"
    pre_key_id: "int | None"
    signed_pre_key_id: int
    base_key: bytes
    identity_key: bytes
    message: bytes
    inner: WhisperInfo
    message_offset: int  # offset of the inner SignalMessage in the PreKeySignalMessage
    kyber_pre_key_id: "int | None" = None  # field 7 (version 4)
    kyber_ciphertext: "Field | None" = None  # field 8 (version 4); offsets relative to the protobuf


def parse_prekey(body: bytes) -> PreKeyInfo:
    if len(body) < 2:
        raise WireError("PreKeySignalMessage too short")
    check_version_byte(body[0], "PreKeySignalMessage")
    fields = parse_pb(body[1:])
    rid = pb_get(fields, 5, 0, "PreKeySignalMessage registration_id", required=False)
    pkid = pb_get(fields, 1, 0, "PreKeySignalMessage pre_key_id", required=False)
    spkid = pb_get(fields, 6, 0, "PreKeySignalMessage signed_pre_key_id")
    base = pb_get(fields, 2, 2, "PreKeySignalMessage base_key")
    ik = pb_get(fields, 3, 2, "PreKeySignalMessage identity_key")
    msg = pb_get(fields, 4, 2, "PreKeySignalMessage message")
    for what, key in (("base_key", base.value), ("identity_key", ik.value)):
        if len(key) != 33 or key[0] != 0x05:
            raise WireError(f"PreKeySignalMessage {what} is not a 33-byte 0x05 key")
    kid = pb_get(fields, 7, 0, "PreKeySignalMessage kyber_pre_key_id", required=False)
    kct = pb_get(fields, 8, 2, "PreKeySignalMessage kyber_ciphertext", required=False)
    inner = parse_whisper(msg.value)
    return PreKeyInfo(body[0], rid.value if rid else None, pkid.value if pkid else None,
                      spkid.value, base.value, ik.value, msg.value, inner, 1 + msg.start,
                      kid.value if kid else None, kct)


def without_fields(body: bytes, nums: set[int]) -> bytes:
    """A PreKeySignalMessage with the given top-level protobuf fields removed
    (the version byte and every other field byte for byte as they were)."""
    pb = body[1:]
    fields = sorted(parse_pb(pb).values(), key=lambda f: f.key_start)
    kept = b"".join(pb[f.key_start:f.end] for f in fields if f.num not in nums)
    return body[:1] + kept


# --------------------------------------------------------------------------
# messages in transit


@dataclass
class Msg:
    sender: Peer
    receiver: Peer
    type: str
    body: bytes
    plaintext: bytes
    seq: int

    def label(self) -> str:
        return (f"{self.sender.role}->{self.receiver.role} message #{self.seq} "
                f"({self.type}, {len(self.plaintext)} B)")

    def whisper(self) -> WhisperInfo:
        """The (inner) SignalMessage."""
        if self.type == "prekey":
            return parse_prekey(self.body).inner
        return parse_whisper(self.body)

    def ratchet_key(self) -> bytes:
        return self.whisper().ratchet_key.value

    def counter(self) -> int:
        return self.whisper().counter.value

    def spqr_epoch(self) -> "int | None":
        """The sender's SPQR epoch from the (inner) SignalMessage's field 5
        (pq_ratchet: version byte 1, then the epoch as a varint; SPQR.md
        §3), or None when the message carries no SPQR (field absent, empty
        or version 0)."""
        body = self.body
        if self.type == "prekey":
            info = parse_prekey(body)
            body = info.message
        fields = parse_pb(body[1:-8])
        f = pb_get(fields, 5, 2, "SignalMessage pq_ratchet", required=False)
        if f is None or len(f.value) == 0 or f.value[0] == 0:
            return None
        if f.value[0] != 1:
            fail(f"{self.label()}: SPQR version byte {f.value[0]} (expected 1)")
        try:
            epoch, _ = read_varint(f.value, 1)
        except WireError as e:
            fail(f"{self.label()}: SPQR message does not decode: {e}")
        return epoch


_seq = [0]


def encrypt(sender: Peer, receiver: Peer, plaintext: bytes, expect_type: "str | None" = None) -> Msg:
    _seq[0] += 1
    r = sender.request("encrypt", peer=receiver.name, plaintext=plaintext.hex())
    typ = r.get("type")
    check(typ in ("prekey", "whisper"), f"{sender.role}: encrypt answered type {typ!r}")
    m = Msg(sender, receiver, typ, unhex(r.get("body"), f"{sender.role} encrypt body"), plaintext, _seq[0])
    if expect_type is not None and typ != expect_type:
        fail(f"{m.label()}: expected a {expect_type} message, {sender.role} sent {typ}")
    check_wire(m)
    return m


def check_wire(m: Msg) -> None:
    """Structural checks of what a sender put on the wire, including the
    session version the sender's session with the receiver must have."""
    want_version = m.sender.session_version.get(m.receiver.name)
    try:
        if m.type == "prekey":
            info = parse_prekey(m.body)
            if info.identity_key != m.sender.identity_key:
                raise WireError("identity_key is not the sender's identity key")
            if info.registration_id != m.sender.registration_id:
                raise WireError(f"registration_id {info.registration_id} is not the sender's "
                                f"{m.sender.registration_id}")
            if info.pre_key_id == 0:
                raise WireError("pre_key_id is 0 (must be absent when no one-time prekey was used)")
            if info.version >> 4 != info.inner.version >> 4:
                raise WireError(f"version byte 0x{info.version:02x} but the inner SignalMessage has "
                                f"0x{info.inner.version:02x}")
            if info.version >> 4 == 4:
                if info.version != 0x44:
                    raise WireError(f"version byte 0x{info.version:02x}, expected 0x44")
                if info.kyber_pre_key_id is None or info.kyber_ciphertext is None:
                    raise WireError("a version-4 PreKeySignalMessage without kyber_pre_key_id (7) "
                                    "and kyber_ciphertext (8)")
                if info.kyber_pre_key_id == 0:
                    raise WireError("kyber_pre_key_id is 0")
                ct = info.kyber_ciphertext.value
                if len(ct) != KYBER_CIPHERTEXT_LEN or ct[0] != 0x08:
                    raise WireError(f"kyber_ciphertext is not 1569 bytes with type byte 0x08 "
                                    f"({ct[:2].hex()}..., {len(ct)} bytes)")
            elif info.kyber_pre_key_id is not None or info.kyber_ciphertext is not None:
                raise WireError("a version-3 PreKeySignalMessage carries Kyber fields (7/8)")
            w = info.inner
            got = info.version
        else:
            w = parse_whisper(m.body)
            got = w.version
            if got >> 4 == 4 and got != 0x44:
                raise WireError(f"version byte 0x{got:02x}, expected 0x44")
        if want_version is not None and got >> 4 != want_version:
            raise WireError(f"version byte 0x{got:02x} in a session of version {want_version}")
        n = len(m.plaintext)
        want = (n // 16 + 1) * 16  # AES-CBC with PKCS#7 padding
        if len(w.ciphertext.value) != want:
            raise WireError(f"ciphertext is {len(w.ciphertext.value)} bytes, expected {want} "
                            f"for {n} bytes of plaintext (AES-256-CBC, PKCS#7)")
    except WireError as e:
        fail(f"{m.label()}: malformed on the wire: {e}")


def decrypt_raw(m: Msg, body: "bytes | None" = None, typ: "str | None" = None,
                as_name: "str | None" = None) -> bytes:
    """The receiver decrypts m (or other bytes in its place), as from the
    sender's name or from `as_name`."""
    r = m.receiver.request("decrypt", peer=as_name or m.sender.name, type=typ or m.type,
                           body=(m.body if body is None else body).hex())
    return unhex(r.get("plaintext"), f"{m.receiver.role} decrypt plaintext")


def deliver(m: Msg) -> None:
    try:
        pt = decrypt_raw(m)
    except PeerError as e:
        fail(f"{m.label()}: {m.receiver.role} failed to decrypt: {e.kind} ({e.message})")
    if m.type == "prekey":
        # the receiver's session with the sender now has the message's version
        m.receiver.session_version[m.sender.name] = m.body[0] >> 4
    if pt != m.plaintext:
        diff = next((i for i, (x, y) in enumerate(zip(pt, m.plaintext)) if x != y),
                    min(len(pt), len(m.plaintext)))
        fail(f"{m.label()}: plaintext mismatch at {m.receiver.role} "
             f"(got {len(pt)} bytes, expected {len(m.plaintext)}, first difference at byte {diff})")


def deliver_all(msgs) -> None:
    for m in msgs:
        deliver(m)


def expect_decrypt_error(m: Msg, kind: str, what: str, body: "bytes | None" = None,
                         as_name: "str | None" = None) -> None:
    expect_error(kind, f"{m.label()} {what}", decrypt_raw, m, body, as_name=as_name)


def random_pt(rng: random.Random, lo: int = 0, hi: int = 2000) -> bytes:
    return rng.randbytes(rng.randint(lo, hi))


def send(rng, sender: Peer, receiver: Peer, n: int = 1, expect_type=None, hi: int = 2000) -> list[Msg]:
    return [encrypt(sender, receiver, random_pt(rng, 0, hi), expect_type) for _ in range(n)]


def exchange(rng, a: Peer, b: Peer, rounds: int = 2, expect_type=None) -> None:
    """Check the session works both ways: messages a->b, b->a, delivered in order."""
    for _ in range(rounds):
        deliver_all(send(rng, a, b, rng.randint(1, 2), expect_type, hi=300))
        deliver_all(send(rng, b, a, rng.randint(1, 2), expect_type, hi=300))


def random_rounds(rng, a: Peer, b: Peer, rounds: int, expect_type=None, hi: int = 2000) -> None:
    """Rounds where a random side sends 1-3 messages, delivered in order."""
    for _ in range(rounds):
        s, r = (a, b) if rng.random() < 0.5 else (b, a)
        deliver_all(send(rng, s, r, rng.randint(1, 3), expect_type, hi))


def establish(rng, w: "World", a: Peer, b: Peer, one_time_prekey: bool = True) -> None:
    """a processes b's bundle; a->b prekey message, b->a reply; both delivered."""
    a.process_bundle(b, b.bundle(one_time_prekey=one_time_prekey))
    deliver_all(send(rng, a, b, 1, "prekey", hi=200))
    deliver_all(send(rng, b, a, 1, "whisper", hi=200))


# --------------------------------------------------------------------------
# scenario environment


class World:
    """The peers of one scenario run, and what the scenario needs of them.

    `version` is the session version the scenario's sessions use by default
    (bundles then carry a one-time Kyber prekey when it is 4). `needs` maps
    a role to the session versions its peer must list in hello (roles not
    listed need `version`); `refuses_v3` names roles whose peer must *not*
    list version 3. A peer that falls short makes the scenario fail with
    "cannot run" as soon as it has said hello. When `version` is 3, every
    protocol-2 peer is initialized with accept_v3 true unless the scenario
    says otherwise (a peer that cannot honour it answers `unsupported`)."""

    def __init__(self, args, rng: random.Random, version: int = 3,
                 needs: "dict[str, set[int]] | None" = None, refuses_v3: "set[str] | None" = None):
        self.args = args
        self.rng = rng
        self.version = version
        self.needs = needs or {}
        self.refuses_v3 = refuses_v3 or set()
        self.peers: list[Peer] = []
        self.store_dir: "str | None" = None  # --durable: where the stores go

    def spawn(self, role: str, name: "str | None" = None, cmd: "str | None" = None, **init_opts) -> Peer:
        """Start a fresh peer; roles other than alice use the --bob command
        unless `cmd` says otherwise. init_opts go to init (accept_v3, spqr)."""
        if cmd is None:
            cmd = self.args.alice if role == "alice" else self.args.bob
        p = Peer(role, name or role, cmd, self.args.timeout)
        self.peers.append(p)
        p.hello()
        need = self.needs.get(role, {self.version})
        missing = sorted(need - set(p.versions))
        if missing:
            raise CannotRun(f"cannot run: {role} ({p.impl}) does not support session version "
                            f"{', '.join(map(str, missing))} (hello versions {p.versions})")
        if role in self.refuses_v3 and 3 in p.versions:
            raise CannotRun(f"cannot run: {role} ({p.impl}) lists version 3 (hello versions {p.versions}), "
                            "so whether it refuses version-3 sessions by default is its own choice")
        p.default_kyber = "one_time" if self.version == 4 else "none"
        if self.version == 3 and p.protocol >= 2 and "accept_v3" not in init_opts:
            # version-3 sessions need a responder that accepts version-3
            # prekey messages; a protocol-2 peer may refuse them by default
            init_opts["accept_v3"] = True
        if "spqr" not in init_opts:
            spqr = self.args.alice_spqr if cmd == self.args.alice else self.args.bob_spqr
            if spqr is not None:
                init_opts["spqr"] = spqr
        if self.args.durable in ("both", "alice" if cmd == self.args.alice else "bob"):
            if self.store_dir is None:
                self.store_dir = tempfile.mkdtemp(prefix="rk-driver-")
            init_opts["path"] = os.path.join(self.store_dir, f"{role}-{len(self.peers)}.db")
            init_opts["key"] = self.rng.randbytes(32).hex()
        p.init(**init_opts)
        return p

    def pair(self) -> tuple[Peer, Peer]:
        return self.spawn("alice"), self.spawn("bob")

    def impls(self) -> str:
        seen = {}
        for p in self.peers:
            if p.role in ROLE_NAMES and p.role not in seen:
                seen[p.role] = p.impl
        if not seen:
            seen = {"alice": "?", "bob": "?"}
        return " ".join(f"{k}={v}" for k, v in seen.items())

    def close(self) -> None:
        for p in self.peers:
            try:
                p.close()
            except Exception:  # noqa: BLE001 - cleanup must not mask results
                p.kill()
        if self.store_dir is not None:
            shutil.rmtree(self.store_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# scenarios


def basic_flow(w: World, init: Peer, resp: Peer, one_time_prekey: bool, kyber: "str | None" = None) -> None:
    rng = w.rng
    bundle = resp.bundle(one_time_prekey=one_time_prekey, kyber=kyber)
    check(not init.has_session(resp), f"{init.role} has a session before process_bundle")
    init.process_bundle(resp, bundle)
    check(init.has_session(resp), f"{init.role} has no session after process_bundle")

    first = send(rng, init, resp, 3, "prekey")
    base_keys, kyber_cts = set(), set()
    for m in first:
        info = parse_prekey(m.body)
        check(info.pre_key_id == bundle.get("prekey_id"),
              f"{m.label()}: pre_key_id {info.pre_key_id} but the bundle's prekey_id is {bundle.get('prekey_id')}")
        check(info.signed_pre_key_id == bundle["signed_prekey_id"],
              f"{m.label()}: signed_pre_key_id {info.signed_pre_key_id}, bundle has {bundle['signed_prekey_id']}")
        check(info.kyber_pre_key_id == bundle.get("kyber_prekey_id"),
              f"{m.label()}: kyber_pre_key_id {info.kyber_pre_key_id}, bundle has {bundle.get('kyber_prekey_id')}")
        base_keys.add(info.base_key)
        kyber_cts.add(info.kyber_ciphertext.value if info.kyber_ciphertext else None)
    check(len(base_keys) == 1, "the first prekey messages carry different base keys")
    check(len(kyber_cts) == 1, "the first prekey messages carry different Kyber ciphertexts")
    check([m.counter() for m in first] == [0, 1, 2],
          f"first message counters are {[m.counter() for m in first]}, expected [0, 1, 2]")
    check(not resp.has_session(init), f"{resp.role} has a session before receiving anything")
    deliver_all(first)
    check(resp.has_session(init), f"{resp.role} has no session after decrypting a prekey message")

    replies = send(rng, resp, init, 3, "whisper")
    check(len({m.ratchet_key() for m in replies}) == 1, "the replies carry different ratchet keys")
    check([m.counter() for m in replies] == [0, 1, 2],
          f"reply counters are {[m.counter() for m in replies]}, expected [0, 1, 2]")
    deliver_all(replies)
    # having received a reply, the initiator now sends whisper messages
    random_rounds(rng, init, resp, 20, expect_type="whisper")


def sc_basic(w: World) -> None:
    a, b = w.pair()
    basic_flow(w, a, b, one_time_prekey=True)


def sc_no_one_time_prekey(w: World) -> None:
    a, b = w.pair()
    basic_flow(w, a, b, one_time_prekey=False)


def sc_bob_initiates(w: World) -> None:
    a, b = w.pair()
    basic_flow(w, b, a, one_time_prekey=True)


def sc_out_of_order(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle())
    # 50 prekey messages delivered shuffled
    burst = send(rng, a, b, 50, "prekey", hi=400)
    shuffled = burst[:]
    rng.shuffle(shuffled)
    deliver_all(shuffled)
    deliver_all(send(rng, b, a, 1, "whisper", hi=400))

    for s, r in ((a, b), (b, a)):
        # an established-session burst, shuffled
        burst = send(rng, s, r, 50, "whisper", hi=400)
        rng.shuffle(burst)
        deliver_all(burst)
        # DH turn with held-back messages from the old chain
        old = send(rng, s, r, 6, "whisper", hi=400)
        held_idx = set(rng.sample(range(len(old)), 3))
        deliver_all(m for i, m in enumerate(old) if i not in held_idx)
        deliver_all(send(rng, r, s, 2, "whisper", hi=400))
        new = send(rng, s, r, 4, "whisper", hi=400)
        check(new[0].ratchet_key() != old[0].ratchet_key(),
              f"{s.role} did not start a new sending chain after receiving a reply")
        rng.shuffle(new)
        deliver_all(new)
        held = [m for i, m in enumerate(old) if i in held_idx]
        rng.shuffle(held)
        deliver_all(held)  # old-chain messages after new-chain ones
        exchange(rng, s, r)


def sc_drops(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle())
    # the very first prekey message is lost, the rest of the turn arrives
    first = send(rng, a, b, 4, "prekey", hi=500)
    deliver_all(first[1:])
    sender, receiver = b, a
    dropped = delivered = 0
    for turn in range(16):
        n = rng.randint(1, 6)
        msgs = send(rng, sender, receiver, n, hi=500)
        if turn in (3, 9):
            keep = []  # a whole chain lost
        else:
            keep = [m for m in msgs if rng.random() >= 0.4]
            if turn % 4 == 1 and msgs[-1] not in keep:
                keep.append(msgs[-1])  # sometimes the chain's tail is lost, sometimes not
        dropped += n - len(keep)
        delivered += len(keep)
        deliver_all(keep)
        sender, receiver = receiver, sender
    vlog(f"drops: {dropped} dropped, {delivered} delivered")
    check(dropped > 0, "no message was dropped (seed)")
    exchange(rng, a, b, 3)


def sc_duplicate(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle())
    p1, p2, p3 = send(rng, a, b, 3, "prekey", hi=300)
    deliver(p1)
    expect_decrypt_error(p1, "duplicate_message", "delivered twice")
    deliver(p3)
    expect_decrypt_error(p3, "duplicate_message", "delivered twice")
    deliver(p2)
    expect_decrypt_error(p2, "duplicate_message", "delivered twice")
    expect_decrypt_error(p1, "duplicate_message", "delivered a third time")
    r = encrypt(b, a, random_pt(rng, 0, 300), "whisper")
    deliver(r)
    expect_decrypt_error(r, "duplicate_message", "delivered twice")
    exchange(rng, a, b)
    # the very first prekey message replayed after the session moved on
    expect_decrypt_error(p1, "duplicate_message", "replayed after the session advanced")
    exchange(rng, a, b)

    for s, r_ in ((a, b), (b, a)):
        m = encrypt(s, r_, random_pt(rng, 0, 300), "whisper")
        deliver(m)
        expect_decrypt_error(m, "duplicate_message", "delivered twice")
        # duplicates of out-of-order deliveries (skipped keys)
        m1, m2, m3 = send(rng, s, r_, 3, "whisper", hi=300)
        deliver(m3)
        expect_decrypt_error(m3, "duplicate_message", "delivered twice")
        deliver(m1)
        expect_decrypt_error(m1, "duplicate_message", "delivered twice (skipped key)")
        deliver(m2)
        expect_decrypt_error(m2, "duplicate_message", "delivered twice (skipped key)")
        exchange(rng, s, r_)

    # a second prekey session (bob initiates towards alice) replayed too
    b2 = w.spawn("carol")
    b2.process_bundle(a, a.bundle())
    q = encrypt(b2, a, random_pt(rng, 0, 300), "prekey")
    deliver(q)
    expect_decrypt_error(q, "duplicate_message", "delivered twice")
    exchange(rng, a, b2)
    exchange(rng, a, b)


def flip_bit(body: bytes, start: int, end: int, rng: random.Random, skip_first: bool = False) -> tuple[bytes, str]:
    lo = start + 1 if skip_first else start
    pos = rng.randrange(lo, end)
    bit = rng.randrange(8)
    out = bytearray(body)
    out[pos] ^= 1 << bit
    return bytes(out), f"byte {pos} bit {bit}"


def encode_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def with_counter(body: bytes, counter: int) -> bytes:
    """A SignalMessage with its counter varint replaced (MAC left as is)."""
    c = parse_whisper(body).counter
    return body[:c.start] + encode_varint(counter) + body[c.end:]


def tamper_variants(m: Msg, rng: random.Random) -> list[tuple[str, bytes]]:
    body = m.body
    info = parse_whisper(body)
    out = []
    ct = info.ciphertext
    t, where = flip_bit(body, ct.start, ct.end, rng)
    out.append((f"ciphertext bit flipped ({where})", t))
    t, where = flip_bit(body, len(body) - 8, len(body), rng)
    out.append((f"MAC bit flipped ({where})", t))
    # counter: raise it (set a clear bit among the low 7 bits of its first
    # varint byte) so it stays a valid varint and points ahead of the chain
    cpos = info.counter.start
    free = [b for b in range(7) if not body[cpos] & (1 << b)]
    if free:
        bit = rng.choice(free)
        t = bytearray(body)
        t[cpos] ^= 1 << bit
        out.append((f"counter bit flipped ({info.counter.value} -> {info.counter.value + (1 << bit)})", bytes(t)))
    rk = info.ratchet_key
    t, where = flip_bit(body, rk.start, rk.end, rng, skip_first=True)
    out.append((f"ratchet key u-coordinate bit flipped ({where})", t))
    out.append(("truncated by one byte", body[:-1]))
    return out


def sc_tamper(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    establish(rng, w, a, b)
    exchange(rng, a, b)
    for s, r in ((a, b), (b, a), (a, b)):
        m = encrypt(s, r, random_pt(rng, 1, 500), "whisper")
        for what, body in tamper_variants(m, rng):
            expect_decrypt_error(m, "invalid_message", what, body=body)
        deliver(m)  # the untampered original still decrypts
        exchange(rng, s, r)
    # tampering a message that is ahead in the chain (a skipped key pending)
    m0, m1, m2 = send(rng, a, b, 3, "whisper", hi=300)
    deliver(m0)
    for what, body in tamper_variants(m2, rng):
        expect_decrypt_error(m2, "invalid_message", what, body=body)
    # a counter lowered to an already used one is caught as a duplicate
    expect_decrypt_error(m2, "duplicate_message", f"counter lowered to the used {m0.counter()}",
                         body=with_counter(m2.body, m0.counter()))
    deliver(m2)
    deliver(m1)
    exchange(rng, a, b)

    # tampered prekey messages at a fresh responder create nothing
    carol = w.spawn("carol")
    a.process_bundle(carol, carol.bundle())
    p = encrypt(a, carol, random_pt(rng, 1, 500), "prekey")
    info = parse_prekey(p.body)
    fields = parse_pb(p.body[1:])
    off = info.message_offset
    inner = info.inner
    variants = []
    t, where = flip_bit(p.body, off + inner.ciphertext.start, off + inner.ciphertext.end, rng)
    variants.append((f"prekey: inner ciphertext bit flipped ({where})", t))
    n = len(info.message)
    t, where = flip_bit(p.body, off + n - 8, off + n, rng)
    variants.append((f"prekey: inner MAC bit flipped ({where})", t))
    for num, label in ((2, "base key"), (3, "identity key")):
        f = fields[num]
        t, where = flip_bit(p.body, 1 + f.start, 1 + f.end, rng, skip_first=True)
        variants.append((f"prekey: {label} u-coordinate bit flipped ({where})", t))
    if info.kyber_ciphertext is not None:
        f = info.kyber_ciphertext
        t, where = flip_bit(p.body, 1 + f.start, 1 + f.end, rng, skip_first=True)
        variants.append((f"prekey: Kyber ciphertext bit flipped ({where})", t))
    for what, body in variants:
        expect_decrypt_error(p, "invalid_message", what, body=body)
        check(not carol.has_session(a), f"carol has a session after a failed {what}")
    deliver(p)  # nothing was consumed or trusted by the failures
    exchange(rng, a, carol)


def sc_simultaneous_initiation(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    ba, bb = a.bundle(), b.bundle()
    a.process_bundle(b, bb)
    b.process_bundle(a, ba)
    ma = send(rng, a, b, 2, "prekey", hi=300)
    mb = send(rng, b, a, 2, "prekey", hi=300)
    deliver_all(ma)
    deliver_all(mb)
    # converge: alternate, every message must decrypt
    for _ in range(4):
        deliver_all(send(rng, a, b, 1, hi=300))
        deliver_all(send(rng, b, a, 1, hi=300))
    # after convergence: both send concurrently, delivered in random order
    for _ in range(10):
        xs = send(rng, a, b, rng.randint(1, 2), "whisper", hi=300)
        ys = send(rng, b, a, rng.randint(1, 2), "whisper", hi=300)
        if rng.random() < 0.5:
            deliver_all(xs)
            deliver_all(ys)
        else:
            deliver_all(ys)
            deliver_all(xs)
    exchange(rng, a, b, 2, "whisper")


def sc_save_restore(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle())
    a.save()  # right after process_bundle, before anything was sent
    b.save()  # bob's one-time prekey must survive
    check(a.has_session(b), "alice lost her session in save right after process_bundle")
    p = send(rng, a, b, 3, "prekey", hi=500)
    deliver(p[0])
    b.save()  # session made from a prekey message; more prekey messages in flight
    deliver(p[2])
    deliver(p[1])

    r = send(rng, b, a, 3, "whisper", hi=500)
    deliver(r[1])
    x = send(rng, a, b, 3, "whisper", hi=500)
    # in flight both ways: r[0], r[2] (r[0] behind a skipped key), x[*]
    a.save()
    b.save()
    deliver_all([r[2], r[0]])
    deliver_all([x[1], x[0], x[2]])

    # more in flight both ways, across a save
    for _ in range(3):
        xs = send(rng, a, b, rng.randint(1, 3), hi=500)
        ys = send(rng, b, a, rng.randint(1, 3), hi=500)
        a.save()
        b.save()
        deliver_all(ys)
        deliver_all(xs)

    # conversation with saves at random points
    for _ in range(10):
        s, r_ = (a, b) if rng.random() < 0.5 else (b, a)
        msgs = send(rng, s, r_, rng.randint(1, 3), hi=500)
        for p_ in (a, b):
            if rng.random() < 0.4:
                p_.save()
        deliver_all(msgs)
    exchange(rng, a, b)


def sc_fingerprint(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    establish(rng, w, a, b)
    carol = w.spawn("carol")
    establish(rng, w, a, carol)

    ids_v2 = {p.name: rng.randbytes(16) for p in (a, b, carol)}  # service ids (UUIDs)
    ids_v1 = {p.name: ("+1415555" + "%04d" % rng.randrange(10000)).encode() for p in (a, b, carol)}

    def fp(me: Peer, other: Peer, ids: dict, **opts) -> dict:
        r = me.fingerprint(other, ids[me.name], ids[other.name], **opts)
        d = r.get("displayable")
        check(isinstance(d, str) and len(d) == 60 and d.isdigit(),
              f"{me.role}'s displayable fingerprint for {other.role} is not 60 digits: {d!r}")
        if "scannable" not in r:
            fail(f"{me.role} ({me.impl}) omits the scannable fingerprint")
        unhex(r["scannable"], f"{me.role} scannable")
        return r

    def cmp(me: Peer, other: Peer, ids: dict, scannable: str, **opts) -> bool:
        return me.compare_scannable(other, ids[me.name], ids[other.name], scannable, **opts)

    displayables = {}
    for version, ids in ((2, ids_v2), (1, ids_v1)):
        fa = fp(a, b, ids, version=version)
        fb = fp(b, a, ids, version=version)
        check(fa["displayable"] == fb["displayable"],
              f"v{version}: displayable differs: alice {fa['displayable']} bob {fb['displayable']}")
        check(cmp(a, b, ids, fb["scannable"], version=version),
              f"v{version}: alice's compare_scannable with bob's scannable gives match false")
        check(cmp(b, a, ids, fa["scannable"], version=version),
              f"v{version}: bob's compare_scannable with alice's scannable gives match false")
        # the version only changes the scannable form
        other_v = 3 - version
        fa2 = fp(a, b, ids, version=other_v)
        check(fa2["displayable"] == fa["displayable"],
              f"displayable depends on the version (v{version} vs v{other_v})")
        check(fa2["scannable"] != fa["scannable"],
              f"scannable is the same for versions {version} and {other_v}")
        # against a third identity
        fac = fp(a, carol, ids, version=version)
        fca = fp(carol, a, ids, version=version)
        check(fac["displayable"] == fca["displayable"], f"v{version}: alice/carol displayables differ")
        check(fac["displayable"] != fa["displayable"], f"v{version}: alice/carol equals alice/bob")
        check(cmp(carol, a, ids, fac["scannable"], version=version),
              f"v{version}: carol's compare with alice's scannable gives match false")
        check(not cmp(b, a, ids, fac["scannable"], version=version),
              f"v{version}: bob's compare with alice's scannable for carol gives match true")
        check(not cmp(a, b, ids, fca["scannable"], version=version),
              f"v{version}: alice's compare (for bob) with carol's scannable gives match true")
        check(not cmp(a, b, ids, fa["scannable"], version=version),
              f"v{version}: alice's compare with her own scannable gives match true")
        displayables[version] = fa["displayable"]
    check(displayables[1] != displayables[2], "displayable does not depend on the stable ids")

    # iterations
    f1 = fp(a, b, ids_v2, iterations=1024)
    f2 = fp(b, a, ids_v2, iterations=1024)
    check(f1["displayable"] == f2["displayable"], "iterations=1024: displayables differ")
    check(f1["displayable"] != displayables[2], "iterations has no effect on the displayable")
    check(cmp(b, a, ids_v2, f1["scannable"], iterations=1024), "iterations=1024: match false")

    # no trusted identity for a name
    expect_error("other", "alice fingerprint for an unknown name", a.fingerprint,
                 "nobody", ids_v2[a.name], b"nobody")
    exchange(rng, a, b)


def sc_identity_change(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    establish(rng, w, a, b)
    exchange(rng, a, b)
    old_key = b.identity_key
    b.close()
    b2 = w.spawn("bob2", name="bob")  # a new identity under the same name
    check(b2.identity_key != old_key, "the new bob has the same identity key")
    nb = b2.bundle()
    expect_error("untrusted_identity", "alice processing new bob's bundle", a.process_bundle, b2, nb)
    check(a.has_session(b2), "alice lost her old session with bob after a rejected bundle")

    b2.process_bundle(a, a.bundle())
    m = encrypt(b2, a, random_pt(rng, 0, 300), "prekey")
    expect_decrypt_error(m, "untrusted_identity", "from a new identity")
    m2 = encrypt(b2, a, random_pt(rng, 0, 300), "prekey")
    expect_decrypt_error(m2, "untrusted_identity", "from a new identity")

    a.trust(b2, unhex(nb["identity_key"], "new bundle identity_key"))
    deliver(m)  # the rejected message now decrypts
    deliver(m2)
    exchange(rng, a, b2)
    # and alice can initiate towards the new identity as well
    a.process_bundle(b2, b2.bundle())
    deliver_all(send(rng, a, b2, 2, "prekey", hi=300))
    exchange(rng, b2, a)


def sc_large_message(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle())
    big = 1 << 20
    deliver(encrypt(a, b, rng.randbytes(big), "prekey"))
    deliver(encrypt(a, b, b"", "prekey"))
    deliver(encrypt(b, a, rng.randbytes(big), "whisper"))
    deliver(encrypt(b, a, b"", "whisper"))
    deliver(encrypt(a, b, b"", "whisper"))
    deliver(encrypt(a, b, rng.randbytes(big), "whisper"))
    deliver(encrypt(b, a, b"", "whisper"))
    exchange(rng, a, b)


def sc_session_state(w: World) -> None:
    rng = w.rng
    a, b = w.pair()
    check(not a.has_session(b), "alice has a session before anything")
    check(not b.has_session(a), "bob has a session before anything")
    expect_error("no_session", "alice encrypt without a session", a.request,
                 "encrypt", peer=b.name, plaintext="00")
    # a well-formed SignalMessage from a name bob has no session with
    fake = bytes([0x33]) + (
        b"\x0a\x21\x05" + rng.randbytes(32) + b"\x10\x00\x18\x00\x22\x10" + rng.randbytes(16)
    ) + rng.randbytes(8)
    expect_error("no_session", "bob whisper decrypt without a session", b.request,
                 "decrypt", peer=a.name, type="whisper", body=fake.hex())

    bundle = b.bundle()
    bad = dict(bundle)
    sig = bytearray(unhex(bundle["signed_prekey_signature"], "signature"))
    sig[rng.randrange(32)] ^= 1 << rng.randrange(8)
    bad["signed_prekey_signature"] = bytes(sig).hex()
    expect_error("invalid_signature", "bundle with a bad signature", a.process_bundle, b, bad)
    bad = dict(bundle)
    bad["signed_prekey"] = bundle["signed_prekey"][2:]  # 32 bytes: no type byte
    expect_error("invalid_key", "bundle with a 32-byte signed prekey", a.process_bundle, b, bad)
    if "kyber_prekey" in bundle:
        bad = dict(bundle)
        sig = bytearray(unhex(bundle["kyber_prekey_signature"], "kyber signature"))
        sig[rng.randrange(32)] ^= 1 << rng.randrange(8)
        bad["kyber_prekey_signature"] = bytes(sig).hex()
        expect_error("invalid_signature", "bundle with a bad Kyber prekey signature", a.process_bundle, b, bad)
        bad = dict(bundle)
        bad["kyber_prekey"] = bundle["kyber_prekey"][2:]  # 1568 bytes: no type byte
        expect_error("invalid_key", "bundle with a 1568-byte Kyber prekey", a.process_bundle, b, bad)
    check(not a.has_session(b), "alice has a session after rejected bundles")

    # a newer signed prekey does not invalidate the older one
    newer = b.bundle(new_signed_prekey=True)
    check(newer["signed_prekey_id"] != bundle["signed_prekey_id"]
          and newer["signed_prekey"] != bundle["signed_prekey"],
          "new_signed_prekey did not produce a new signed prekey")
    a.process_bundle(b, bundle)
    check(a.has_session(b), "alice has no session after process_bundle")
    check(not b.has_session(a), "bob has a session before receiving anything")
    p1 = encrypt(a, b, random_pt(rng, 0, 300), "prekey")
    deliver(p1)
    check(b.has_session(a), "bob has no session after decrypting a prekey message")

    # the same bundle again: its one-time prekey is used up at bob
    a.process_bundle(b, bundle)
    p2 = encrypt(a, b, random_pt(rng, 0, 300), "prekey")
    check(parse_prekey(p2.body).base_key != parse_prekey(p1.body).base_key,
          "a second process_bundle reused the base key")
    expect_decrypt_error(p2, "missing_prekey", "naming a consumed one-time prekey")
    # bob's session still works; alice switches back to it on receipt
    r = encrypt(b, a, random_pt(rng, 0, 300), "whisper")
    deliver(r)
    exchange(rng, a, b, 2, "whisper")

    # a fresh bundle (with the newer signed prekey) works
    a.process_bundle(b, b.bundle())
    deliver_all(send(rng, a, b, 2, "prekey", hi=300))
    exchange(rng, b, a)


# --------------------------------------------------------------------------
# version-4 scenarios: Kyber prekeys


def sc_kyber_one_time_consumed(w: World) -> None:
    """A one-time Kyber prekey serves one session: a second initiator with
    the same bundle gets missing_prekey at bob."""
    rng = w.rng
    a, b = w.pair()
    carol = w.spawn("carol", cmd=w.args.alice)  # a second initiator, alice's implementation
    bundle = b.bundle(one_time_prekey=False, kyber="one_time")
    a.process_bundle(b, bundle)
    p1, p2 = send(rng, a, b, 2, "prekey", hi=300)
    deliver(p1)
    b.save()  # the used one-time Kyber prekey stays deleted across a restart
    carol.process_bundle(b, bundle)  # the same bundle: its one-time Kyber prekey is used up at bob
    q = encrypt(carol, b, random_pt(rng, 0, 300), "prekey")
    info = parse_prekey(q.body)
    check(info.kyber_pre_key_id == bundle["kyber_prekey_id"] and info.pre_key_id is None,
          f"{q.label()}: does not name the bundle's Kyber prekey alone")
    expect_decrypt_error(q, "missing_prekey", "naming the one-time Kyber prekey alice's session used")
    check(not b.has_session(carol), "bob has a session with carol after a refused prekey message")
    deliver(p2)  # alice's next prekey message matches her session's base key: no prekey needed
    exchange(rng, b, a)
    # carol with a bundle of her own
    carol.process_bundle(b, b.bundle(one_time_prekey=False, kyber="one_time"))
    deliver_all(send(rng, carol, b, 2, "prekey", hi=300))
    exchange(rng, b, carol)
    expect_decrypt_error(q, "missing_prekey", "again, after carol has a session of her own")
    exchange(rng, a, b)


def sc_kyber_last_resort_shared(w: World) -> None:
    """The last-resort Kyber prekey serves several initiators."""
    rng = w.rng
    a, b = w.pair()
    carol = w.spawn("carol", cmd=w.args.alice)
    b1 = b.bundle(one_time_prekey=False, kyber="last_resort")
    b2 = b.bundle(one_time_prekey=False, kyber="last_resort")
    for f in ("kyber_prekey_id", "kyber_prekey", "kyber_prekey_signature"):
        check(b1[f] == b2[f], f"two last-resort bundles differ in {f}")
    ot = b.bundle(one_time_prekey=False, kyber="one_time")
    check(ot["kyber_prekey_id"] != b1["kyber_prekey_id"],
          "a one-time Kyber prekey has the last-resort key's id")
    a.process_bundle(b, b1)
    carol.process_bundle(b, b2)
    pa = send(rng, a, b, 2, "prekey", hi=300)
    pc = send(rng, carol, b, 2, "prekey", hi=300)
    ia, ic = parse_prekey(pa[0].body), parse_prekey(pc[0].body)
    check(ia.kyber_pre_key_id == ic.kyber_pre_key_id == b1["kyber_prekey_id"],
          "the prekey messages do not both name the last-resort Kyber prekey")
    check(ia.base_key != ic.base_key, "alice and carol sent the same base key")
    deliver_all([pa[0], pc[0], pa[1], pc[1]])
    check(b.has_session(a) and b.has_session(carol), "bob lacks a session after both prekey messages")
    exchange(rng, b, a)
    exchange(rng, b, carol)
    random_rounds(rng, a, b, 5, "whisper", hi=500)
    random_rounds(rng, carol, b, 5, "whisper", hi=500)
    # the one-time Kyber prekey handed out in between is still there
    a.process_bundle(b, ot)
    deliver_all(send(rng, a, b, 2, "prekey", hi=300))
    exchange(rng, b, a)
    exchange(rng, b, carol)


def sc_kyber_last_resort_replay(w: World) -> None:
    """A repeated last-resort use (same Kyber prekey, signed prekey and base
    key) that matches no existing session is refused."""
    rng = w.rng
    a, b = w.pair()
    bundle = b.bundle(one_time_prekey=False, kyber="last_resort")
    a.process_bundle(b, bundle)
    p1, p2 = send(rng, a, b, 2, "prekey", hi=300)
    deliver(p1)
    b.save()  # the record of last-resort uses survives a restart
    # the same bytes under another name: bob has no session for "mallory",
    # so only the record of last-resort uses can refuse them
    expect_decrypt_error(p1, "invalid_message", "delivered again as from mallory (a repeated last-resort use)",
                         as_name="mallory")
    check(not b.has_session("mallory"), "bob has a session with mallory after a refused replay")
    expect_decrypt_error(p2, "invalid_message", "delivered as from mallory (a repeated last-resort use)",
                         as_name="mallory")
    deliver(p2)  # for alice it is still fine
    exchange(rng, b, a)
    expect_decrypt_error(p1, "invalid_message", "as from mallory after the session advanced", as_name="mallory")
    expect_decrypt_error(p1, "duplicate_message", "replayed as from alice after the session advanced")
    check(not b.has_session("mallory"), "bob has a session with mallory after refused replays")
    # a new base key with the same last-resort key and signed prekey is fine
    a.process_bundle(b, bundle)
    deliver_all(send(rng, a, b, 2, "prekey", hi=300))
    exchange(rng, b, a)
    expect_decrypt_error(p1, "invalid_message", "as from mallory at the end", as_name="mallory")


def sc_kyber_fields_missing(w: World) -> None:
    """A version-4 prekey message without its Kyber fields is invalid and
    changes nothing."""
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle(kyber="one_time"))
    p = encrypt(a, b, random_pt(rng, 1, 300), "prekey")
    variants = [
        ("with kyber_pre_key_id (7) and kyber_ciphertext (8) stripped", {7, 8}),
        ("with kyber_pre_key_id (7) stripped", {7}),
        ("with kyber_ciphertext (8) stripped", {8}),
    ]
    for what, nums in variants:
        body = without_fields(p.body, nums)
        info = parse_prekey(body)
        check((info.kyber_pre_key_id is None) == (7 in nums) and (info.kyber_ciphertext is None) == (8 in nums)
              and body[0] == 0x44, f"driver: stripping {sorted(nums)} went wrong")
        expect_decrypt_error(p, "invalid_message", what, body=body)
        check(not b.has_session(a), f"bob has a session after a refused message {what}")
    deliver(p)  # nothing was consumed: the genuine message decrypts
    exchange(rng, b, a)


# --------------------------------------------------------------------------
# version-3 policy: incoming X3DH prekey messages


def v3_refusal_flow(w: World, a: Peer, b: Peer) -> None:
    rng = w.rng
    a.process_bundle(b, b.bundle(kyber="none"))  # alice starts X3DH (version 3)
    p1, p2 = send(rng, a, b, 2, "prekey", hi=300)  # check_wire: version 3, no Kyber fields
    expect_decrypt_error(p1, "invalid_message", "a version-3 prekey message that would start a session")
    check(not b.has_session(a), "bob has a session after refusing a version-3 prekey message")
    expect_decrypt_error(p2, "invalid_message", "a version-3 prekey message that would start a session")
    # alice starts over with PQXDH; nothing of the refused attempt stands in the way
    a.process_bundle(b, b.bundle(kyber="one_time"))
    deliver_all(send(rng, a, b, 2, "prekey", hi=300))
    exchange(rng, b, a)
    # still refused: no session of bob's has their base key
    expect_decrypt_error(p1, "invalid_message", "a version-3 prekey message, after a version-4 session exists")
    exchange(rng, a, b)


def sc_v3_refused(w: World) -> None:
    """accept_v3 false: an incoming version-3 prekey message is refused."""
    a = w.spawn("alice")
    b = w.spawn("bob", accept_v3=False)
    v3_refusal_flow(w, a, b)


def sc_v3_refused_default(w: World) -> None:
    """A version-4-only peer refuses version-3 prekey messages by default."""
    a = w.spawn("alice")
    b = w.spawn("bob")  # no accept_v3: the peer's own default
    v3_refusal_flow(w, a, b)


def sc_v3_accepted(w: World) -> None:
    """accept_v3 true: a version-3 session starts and works; a version-4
    session replaces it afterwards."""
    rng = w.rng
    a = w.spawn("alice")
    b = w.spawn("bob", accept_v3=True)
    basic_flow(w, a, b, one_time_prekey=True, kyber="none")
    check(a.session_version.get(b.name) == 3 and b.session_version.get(a.name) == 3,
          "the session is not version 3")
    a.process_bundle(b, b.bundle(kyber="one_time"))
    deliver_all(send(rng, a, b, 2, "prekey", hi=300))
    exchange(rng, b, a, 2, "whisper")


# --------------------------------------------------------------------------
# SPQR (the post-quantum ratchet of version 4)

SPQR_TARGET_EPOCH = 6  # both senders past epoch 5 (so past 3 in both braid roles)
SPQR_MAX_TURNS = 600


def sc_spqr_long(w: World) -> None:
    """Both sides talk in bursts, with loss (20%), reordering (half the
    bursts shuffled) and duplicates (10% delivered again and refused),
    until both senders are past SPQR epoch 3 (each side has then done both
    braid roles). Every message must carry SPQR; every delivered message
    must decrypt to its plaintext; the epochs never go back."""
    rng = w.rng
    a, b = w.pair()
    a.process_bundle(b, b.bundle())
    first = send(rng, a, b, 3, "prekey", hi=200)
    rng.shuffle(first)
    deliver_all(first[1:])  # the first one lost
    epochs = {a.role: 0, b.role: 0}
    lost = dups = shuffled = 0
    sender, receiver = b, a
    turn = 0
    for turn in range(SPQR_MAX_TURNS):
        msgs = send(rng, sender, receiver, rng.randint(1, 8), hi=120)
        for m in msgs:
            e = m.spqr_epoch()
            check(e is not None, f"{m.label()}: no SPQR field in a session where both speak SPQR")
            check(e >= epochs[sender.role], f"{m.label()}: SPQR epoch {e} after {epochs[sender.role]}")
            epochs[sender.role] = e
        keep = [m for m in msgs if rng.random() >= 0.2]
        if not keep:
            keep = [msgs[-1]]  # at least one per turn, so that both sides keep hearing
        lost += len(msgs) - len(keep)
        if len(keep) > 1 and rng.random() < 0.5:
            rng.shuffle(keep)
            shuffled += 1
        for m in keep:
            deliver(m)
            if rng.random() < 0.1:
                expect_decrypt_error(m, "duplicate_message", "delivered twice")
                dups += 1
        if min(epochs.values()) >= SPQR_TARGET_EPOCH:
            break
        sender, receiver = receiver, sender
    vlog(f"spqr_long: {turn + 1} turns, epochs {epochs}, {lost} lost, {dups} duplicates, "
         f"{shuffled} shuffled bursts")
    check(min(epochs.values()) >= SPQR_TARGET_EPOCH,
          f"SPQR epochs {epochs} after {SPQR_MAX_TURNS} turns: not past epoch {SPQR_TARGET_EPOCH - 1} on both sides")
    check(lost > 0 and dups > 0 and shuffled > 0, "no loss, duplicate or reordering happened (seed)")
    exchange(rng, a, b, 3)


def sc_spqr_refused(w: World) -> None:
    """A peer requiring SPQR and one without it (spqr "off"): neither can
    read the other's first message. A ratchetkit receiver says why: its
    error text starts "SPQR required". Nothing of the refused attempt
    stays: no session is left at the refusing side."""
    rng = w.rng
    a = w.spawn("alice", spqr="off")
    b = w.spawn("bob", spqr="required")
    a.process_bundle(b, b.bundle())
    p1 = encrypt(a, b, random_pt(rng, 0, 200), "prekey")
    check(p1.spqr_epoch() is None, f"{p1.label()}: carries SPQR although alice has it off")
    e = expect_error("invalid_message", f"{p1.label()} without SPQR at a peer requiring it", decrypt_raw, p1)
    if b.impl.startswith("ratchetkit"):
        check("SPQR required" in e.message, f"ratchetkit refused without saying SPQR is required: {e.message}")
    check(not b.has_session(a), "bob has a session after refusing a prekey message without SPQR")
    # the other way round: bob requires SPQR and salts from his first
    # message; alice, without SPQR, cannot read it
    b.process_bundle(a, a.bundle())
    q1 = encrypt(b, a, random_pt(rng, 0, 200), "prekey")
    check(q1.spqr_epoch() is not None, f"{q1.label()}: no SPQR from a peer requiring it")
    expect_error("invalid_message", f"{q1.label()} with SPQR at a peer without it", decrypt_raw, q1)


def sc_spqr_offered(w: World) -> None:
    """Alice offers SPQR (spqr "offered") to bob as he is (his own
    default). If bob answers with SPQR, alice keeps speaking it; if not,
    she falls back and sends no SPQR from then on. Either way the session
    works both ways, in both roles of the handshake."""
    rng = w.rng
    for initiator_is_alice in (True, False):
        a = w.spawn("alice", spqr="offered")
        b = w.spawn("bob")
        if initiator_is_alice:
            a.process_bundle(b, b.bundle())
            deliver_all(send(rng, a, b, 2, "prekey", hi=200))
            replies = send(rng, b, a, 2, "whisper", hi=200)
        else:
            b.process_bundle(a, a.bundle())
            deliver_all(send(rng, b, a, 2, "prekey", hi=200))
            deliver_all(send(rng, a, b, 1, "whisper", hi=200))
            replies = send(rng, b, a, 2, "whisper", hi=200)
        deliver_all(replies)
        bob_speaks = replies[-1].spqr_epoch() is not None
        for _ in range(3):
            out = send(rng, a, b, 2, "whisper", hi=200)
            for m in out:
                if bob_speaks:
                    check(m.spqr_epoch() is not None, f"{m.label()}: alice dropped SPQR although bob speaks it")
                else:
                    check(m.spqr_epoch() is None, f"{m.label()}: alice still sends SPQR to a peer without it")
            deliver_all(out)
            back = send(rng, b, a, 2, "whisper", hi=200)
            for m in back:
                check((m.spqr_epoch() is not None) == bob_speaks, f"{m.label()}: bob changed his mind about SPQR")
            deliver_all(back)
        vlog(f"spqr_offered: bob {'speaks' if bob_speaks else 'does not speak'} SPQR "
             f"({'alice' if initiator_is_alice else 'bob'} initiated)")


# --------------------------------------------------------------------------
# the scenario table


@dataclass
class Scenario:
    name: str
    fn: object
    group: str  # "classic", "kyber", "v3policy" or "spqr"
    version: "int | None" = None  # session version; None: --session-version
    needs: "dict[str, set[int]] | None" = None  # role -> versions its peer must list
    refuses_v3: "set[str] | None" = None  # roles whose peer must not list version 3


CLASSIC = [
    ("basic", sc_basic),
    ("no_one_time_prekey", sc_no_one_time_prekey),
    ("bob_initiates", sc_bob_initiates),
    ("out_of_order", sc_out_of_order),
    ("drops", sc_drops),
    ("duplicate", sc_duplicate),
    ("tamper", sc_tamper),
    ("simultaneous_initiation", sc_simultaneous_initiation),
    ("save_restore", sc_save_restore),
    ("fingerprint", sc_fingerprint),
    ("identity_change", sc_identity_change),
    ("large_message", sc_large_message),
    ("session_state", sc_session_state),
]

SCENARIOS: list[Scenario] = [Scenario(n, f, "classic") for n, f in CLASSIC] + [
    Scenario("kyber_one_time_consumed", sc_kyber_one_time_consumed, "kyber", 4),
    Scenario("kyber_last_resort_shared", sc_kyber_last_resort_shared, "kyber", 4),
    Scenario("kyber_last_resort_replay", sc_kyber_last_resort_replay, "kyber", 4),
    Scenario("kyber_fields_missing", sc_kyber_fields_missing, "kyber", 4),
    Scenario("v3_refused", sc_v3_refused, "v3policy", 4, {"alice": {3, 4}, "bob": {4}}),
    Scenario("v3_refused_default", sc_v3_refused_default, "v3policy", 4, {"alice": {3, 4}, "bob": {4}}, {"bob"}),
    Scenario("v3_accepted", sc_v3_accepted, "v3policy", 3, {"alice": {3, 4}, "bob": {3, 4}}),
    Scenario("spqr_long", sc_spqr_long, "spqr", 4),
    Scenario("spqr_refused", sc_spqr_refused, "spqr", 4),
    Scenario("spqr_offered", sc_spqr_offered, "spqr", 4),
]

GROUPS = {
    "classic": [s.name for s in SCENARIOS if s.group == "classic"],
    "kyber": [s.name for s in SCENARIOS if s.group == "kyber"],
    "v3policy": [s.name for s in SCENARIOS if s.group == "v3policy"],
    "spqr": [s.name for s in SCENARIOS if s.group == "spqr"],
    "all": [s.name for s in SCENARIOS],
}


def select(spec: str) -> list[Scenario]:
    """Scenarios named by a comma-separated list of names and groups, in
    table order. Raises ValueError for an unknown word."""
    by_name = {s.name: s for s in SCENARIOS}
    wanted: set[str] = set()
    for word in (x.strip() for x in spec.split(",")):
        if not word:
            continue
        if word in GROUPS:
            wanted.update(GROUPS[word])
        elif word in by_name:
            wanted.add(word)
        else:
            raise ValueError(word)
    return [s for s in SCENARIOS if s.name in wanted]


# --------------------------------------------------------------------------
# main


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_scenario(sc: Scenario, args, seed: int) -> bool:
    name = sc.name
    rng = random.Random(f"{seed}:{name}")
    _seq[0] = 0  # message numbers restart in every scenario
    version = sc.version if sc.version is not None else args.session_version
    w = World(args, rng, version, sc.needs, sc.refuses_v3)
    label = f"{name} [v{version}]" if sc.group == "classic" else name
    t0 = time.monotonic()
    ok, reason = False, ""
    try:
        sc.fn(w)
        ok = True
    except ScenarioFailure as e:
        reason = str(e)
    except PeerError as e:
        reason = f"unexpected error: {e}"
    except Exception as e:  # noqa: BLE001 - a driver bug still gives one line
        reason = f"driver error: {type(e).__name__}: {e}"
        if VERBOSE:
            traceback.print_exc()
    finally:
        w.close()
    dt = time.monotonic() - t0
    if ok:
        print(f"PASS {label} ({w.impls()})", flush=True)
    else:
        print(f"FAIL {label}: {one_line(reason)} ({w.impls()})", flush=True)
        for p in w.peers:
            tail = list(p.stderr_tail)[-args.stderr_lines:]
            if tail:
                print(f"  -- {p.role} ({p.impl}) stderr, last {len(tail)} lines:", file=sys.stderr)
                for line in tail:
                    print(f"  | {line}", file=sys.stderr)
        sys.stderr.flush()
    vlog(f"{name}: {dt:.1f} s")
    return ok


def main(argv=None) -> int:
    global VERBOSE
    ap = argparse.ArgumentParser(description="Signal-protocol interop scenario driver (peer protocol v1 and v2)")
    ap.add_argument("--alice", help="command that starts alice's peer (shell-style)")
    ap.add_argument("--bob", help="command that starts bob's peer (also carol etc.)")
    ap.add_argument("--seed", type=int, default=None, help="seed for all random choices")
    ap.add_argument("--session-version", type=int, choices=KNOWN_VERSIONS, default=3,
                    help="session version of the classic scenarios: 3 (X3DH, bundles without Kyber) "
                         "or 4 (PQXDH, bundles with a one-time Kyber prekey); default 3")
    ap.add_argument("--scenarios", "--only", dest="scenarios", default="classic",
                    help="comma-separated scenario names and groups (classic, kyber, v3policy, spqr, all); "
                         "default classic")
    ap.add_argument("--timeout", type=float, default=120.0, help="per-request timeout in seconds")
    ap.add_argument("--durable", choices=("none", "alice", "bob", "both"), default="none",
                    help="peers started from that command get init with a new store file "
                         "(path, key): durable mode, peer protocol 2")
    for role in ("alice", "bob"):
        ap.add_argument(f"--{role}-spqr", choices=("required", "offered", "off"), default=None,
                        help=f"init's spqr for peers started from the --{role} command (default: not "
                             "given, the implementation's own; scenarios that set it win)")
    ap.add_argument("--stderr-lines", type=int, default=30, help="peer stderr lines shown on failure")
    ap.add_argument("--verbose", "-v", action="store_true", help="trace requests on stderr")
    ap.add_argument("--list", action="store_true", help="list scenarios and groups, then exit")
    args = ap.parse_args(argv)
    VERBOSE = args.verbose

    if args.list:
        for sc in SCENARIOS:
            if sc.version is None:
                version = "version: --session-version"
            elif sc.group == "v3policy":
                version = "version 3 (sent or refused), then 4"
            else:
                version = f"version {sc.version}"
            print(f"{sc.name:26} {sc.group:9} {version}")
        return 0
    if not args.alice or not args.bob:
        ap.error("--alice and --bob are required")
    try:
        selected = select(args.scenarios)
    except ValueError as e:
        ap.error(f"unknown scenario or group: {e} (groups: {', '.join(GROUPS)}; --list shows the names)")
    if not selected:
        ap.error("--scenarios selects nothing")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed}", flush=True)

    passed = failed = 0
    for sc in selected:
        if run_scenario(sc, args, seed):
            passed += 1
        else:
            failed += 1
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The protocol store of one device: identity, prekeys, sessions, trust."""

from __future__ import annotations

import math
import os
import time
from ctypes import byref, c_bool, c_size_t, c_uint32, c_uint64, create_string_buffer
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, List, NamedTuple, Optional, Tuple, Union

from ._handle import Handle
from ._lib import (
    _NAMES,
    BundleP,
    FingerprintP,
    IdentityKeyPairP,
    PendingDecryptP,
    PublicKeyP,
    StoreP,
    as_bytes,
    encode_name,
    lib,
    raise_status,
    rk_bytes,
    rk_prekey_status,
    rk_store_options,
    take_bytes,
    unchecked,
)
from .bundle import KEM_PUBLIC_KEY_LEN, Bundle, KyberPreKey, PreKey
from .directory import PreKeyPolicy, PreKeyStatus
from .fingerprint import DEFAULT_ITERATIONS, FINGERPRINT_VERSION, Fingerprint
from .identity import PUBLIC_KEY_LEN, SIGNATURE_LEN, IdentityKeyPair, PublicKey

__all__ = [
    "Store",
    "PendingDecrypt",
    "Message",
    "MessageType",
    "KyberPreKeyKind",
    "SessionPolicy",
    "PICKLE_KEY_LEN",
    "STORE_KEY_LEN",
    "MAX_PREKEYS_PER_CALL",
    "MAX_KYBER_PREKEYS_PER_CALL",
    "KYBER_PREKEY_RECORD_LEN",
    "SESSION_VERSION_X3DH",
    "SESSION_VERSION_PQXDH",
]

#: Length of the application key that encrypts saved state.
PICKLE_KEY_LEN = 32
#: Length of the application key that opens a durable store (:meth:`Store.open`).
STORE_KEY_LEN = 32
#: ``durability=`` of :meth:`Store.open` and :meth:`Store.import_store`, as
#: the C API's ``RK_DURABILITY_*`` values.
_DURABILITY = {"full": 0, "normal": 1}
#: The most prekeys one :meth:`Store.generate_prekeys` call makes.
MAX_PREKEYS_PER_CALL = 10000
#: The most Kyber prekeys one :meth:`Store.generate_kyber_prekeys` call makes.
MAX_KYBER_PREKEYS_PER_CALL = 1000
#: Length of one Kyber prekey record in the library's upload format: the id
#: (4 bytes, big-endian), the public key and its signature.
KYBER_PREKEY_RECORD_LEN = 4 + KEM_PUBLIC_KEY_LEN + SIGNATURE_LEN
#: The message version of sessions started with X3DH.
SESSION_VERSION_X3DH = 3
#: The message version of sessions started with PQXDH (X3DH and Kyber1024):
#: what stores start and accept by default.
SESSION_VERSION_PQXDH = 4
_PREKEY_RECORD_LEN = 4 + PUBLIC_KEY_LEN
_U32_MAX = 0xFFFFFFFF


class MessageType(IntEnum):
    """The type of a wire message; it travels along with the bytes."""

    #: A ``SignalMessage``: once the other side has answered.
    WHISPER = 2
    #: A ``PreKeySignalMessage``: sent until the other side has answered.
    PREKEY = 3


_TYPES = {2: MessageType.WHISPER, 3: MessageType.PREKEY}


class SpqrPolicy(IntEnum):
    """Whether new version-4 sessions speak SPQR, the post-quantum ratchet.

    Read it with :attr:`Store.spqr_policy`, assign it to change it. It is
    kept in saved state. Sessions that already exist keep the SPQR state
    they started with (one without SPQR keeps working under every policy);
    version-3 sessions never speak SPQR (see :class:`SessionPolicy`).
    """

    #: Every new version-4 session speaks SPQR; a peer that does not raises
    #: :class:`SpqrRequiredError` (the default, as the official library
    #: since 0.92).
    REQUIRED = 0
    #: SPQR is offered and dropped when the peer answers without it (to
    #: talk to libsignal 0.83-0.91 and libraries without SPQR).
    OFFERED = 1
    #: New sessions do not speak SPQR.
    OFF = 2


class KyberPreKeyKind(IntEnum):
    """Which Kyber prekey :meth:`Store.create_bundle` puts in a bundle."""

    #: None: the bundle starts version-3 (X3DH) sessions, which stores
    #: refuse by default.
    NONE = 0
    #: A new one-time Kyber prekey, kept, used by one session only.
    ONE_TIME = 1
    #: The store's last-resort Kyber prekey (made on first use), reused
    #: across bundles and kept after use.
    LAST_RESORT = 2


@dataclass(frozen=True)
class SessionPolicy:
    """What a store does beyond version-4 (PQXDH) sessions, which it always
    starts and accepts. Both flags are off by default, as in the official
    library; sessions that already exist keep working whatever the policy.

    Read it with :attr:`Store.policy`; set it with :meth:`Store.set_policy`
    or by assigning :attr:`Store.policy`. It is kept in saved state.
    """

    #: Start a version-3 (X3DH) session from a bundle without a Kyber
    #: prekey (:meth:`Store.process_bundle`); otherwise
    #: :class:`VersionRefusedError`.
    allow_v3_initiation: bool = False
    #: Accept an incoming version-3 prekey message that starts a new
    #: session (:meth:`Store.decrypt`); otherwise
    #: :class:`VersionRefusedError`.
    accept_v3_prekey_messages: bool = False

    def __post_init__(self) -> None:
        for name in ("allow_v3_initiation", "accept_v3_prekey_messages"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, not {getattr(self, name)!r}")


class Message(NamedTuple):
    """An encrypted message: its :class:`MessageType` and its wire bytes.

    Send both; give both (the :class:`Message` itself, or a ``(type, body)``
    pair) to :meth:`Store.decrypt` on the other side.
    """

    type: MessageType
    body: bytes

    @property
    def is_prekey(self) -> bool:
        """Whether this is a prekey message (the session is not yet confirmed)."""
        return self.type == MessageType.PREKEY

    def __bytes__(self) -> bytes:
        return self.body

    def __repr__(self) -> str:
        return f"Message(type=MessageType.{self.type.name}, body=<{len(self.body)} bytes>)"


def _u32(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U32_MAX:
        raise ValueError(f"{what} must be an int in 0..{_U32_MAX}, not {value!r}")
    return value


def _kyber_records(records: bytes) -> List[KyberPreKey]:
    """Splits the library's Kyber prekey records into :class:`KyberPreKey`."""
    key_end = 4 + KEM_PUBLIC_KEY_LEN
    return [
        KyberPreKey(
            int.from_bytes(records[i : i + 4], "big"),
            records[i + 4 : i + key_end],
            records[i + key_end : i + KYBER_PREKEY_RECORD_LEN],
        )
        for i in range(0, len(records), KYBER_PREKEY_RECORD_LEN)
    ]


def _timestamp(value: Optional[int]) -> int:
    """Milliseconds since the Unix epoch (now by default), checked for uint64_t."""
    if value is None:
        return time.time_ns() // 1_000_000
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
        raise ValueError(f"timestamp_ms must be an int in 0..2**64-1, not {value!r}")
    return value


def _store_options(
    device_id: int, create: bool, durability: str, busy_timeout: float
) -> rk_store_options:
    """The C options for :meth:`Store.open` and :meth:`Store.import_store`."""
    if not isinstance(create, bool):
        raise TypeError(f"create must be a bool, not {create!r}")
    device_id = _u32(device_id, "device_id")
    if create and device_id == 0:
        raise ValueError("device_id must be at least 1")
    mode = _DURABILITY.get(durability) if isinstance(durability, str) else None
    if mode is None:
        raise ValueError(f"durability must be 'full' or 'normal', not {durability!r}")
    if (
        not isinstance(busy_timeout, (int, float))
        or isinstance(busy_timeout, bool)
        or not math.isfinite(busy_timeout)
        or not 0 <= busy_timeout * 1000 <= _U32_MAX
    ):
        raise ValueError(
            f"busy_timeout must be a number of seconds in 0..{_U32_MAX // 1000}, "
            f"not {busy_timeout!r}"
        )
    return rk_store_options(
        create_device_id=device_id if create else 0,
        durability=mode,
        busy_timeout_ms=round(busy_timeout * 1000),
    )


def _path(path: "Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]") -> bytes:
    """A file path as the NUL-terminated bytes the C API takes (UTF-8)."""
    encoded = os.fsencode(path)
    if b"\0" in encoded:
        raise ValueError("path must not contain NUL characters")
    return encoded


class PendingDecrypt(Handle):
    """A message decrypted by :meth:`Store.decrypt_pending` whose changes to
    the durable store are not written yet (two-phase decrypt).

    Keep :attr:`plaintext` where the application keeps messages, then call
    :meth:`commit`. Without a commit nothing is written: :meth:`discard`,
    :meth:`close`, the end of a ``with`` block or garbage collection drop
    the change, and the message can be decrypted again (also after a crash
    between the two steps).

    >>> with store.decrypt_pending("alice", 1, message.type, message.body) as p:  # doctest: +SKIP
    ...     inbox.append(p.plaintext)
    ...     p.commit()
    """

    __slots__ = ("_plaintext", "_committed")
    _free = lib.rk_pending_decrypt_free

    @property
    def plaintext(self) -> bytes:
        """The decrypted message (immutable ``bytes``; kept after the commit)."""
        return self._plaintext

    @property
    def committed(self) -> bool:
        """Whether :meth:`commit` wrote the change."""
        return self._committed

    def commit(self) -> None:
        """Writes the decrypt's change in one transaction.

        Raises :class:`ConflictError` if the records the decrypt read
        changed since (another handle or process decrypted from the same
        session): nothing is written then; decrypt the message again. Also
        :class:`StoreBusyError` and :class:`StorageError`. Either way the
        object is spent and closed: a second commit raises
        :class:`ValueError`.
        """
        try:
            with self._h as ptr:
                lib.rk_pending_decrypt_commit(ptr)
            self._committed = True
        finally:
            self.close()

    def discard(self) -> None:
        """Drops the change (as :meth:`close`): the message can be decrypted again."""
        self.close()

    def __repr__(self) -> str:
        state = "committed" if self._committed else "closed" if self.closed else "pending"
        return f"<PendingDecrypt {state}, {len(self._plaintext)} bytes>"


# Prebound for the per-message path: declared in _lib.FUNCTIONS, bound
# without errcheck, status tested inline.
_encrypt = unchecked("rk_store_encrypt")
_decrypt = unchecked("rk_store_decrypt")
_decrypt_prekey = lib.rk_store_decrypt_prekey_message
_decrypt_whisper = lib.rk_store_decrypt_whisper_message
_bytes_free = lib.rk_bytes_free
_new_message = tuple.__new__


class Store(Handle):
    """The protocol store of one local device.

    It holds the identity key pair, the registration and device ids, the
    signed, one-time and Kyber prekeys, one session record per remote
    address (a name and a device id), the identity trusted for each name,
    and the :class:`SessionPolicy`. New sessions are version 4 (PQXDH) by
    default; version-3 (X3DH) ones only where the policy allows them.

    A store may be used from several threads at once: the library locks it
    for each call, and calls on it serialize (sessions with different
    addresses proceed in parallel inside the library). Every failing call
    leaves the store exactly as it was. :meth:`close` may be called while
    other threads are inside calls: those finish, and the store is freed
    when the last of them returns (see :class:`ratchetkit._handle.Handle`).

    >>> alice, bob = Store(), Store()
    >>> alice.process_bundle("bob", Bundle.from_bytes(bob.create_bundle().serialize()))
    >>> bob.decrypt("alice", alice.encrypt("bob", b"hi"))
    b'hi'
    """

    __slots__ = ()
    _free = lib.rk_store_free

    def __init__(self, device_id: int = 1) -> None:
        """A new store with a fresh identity and registration id for local device ``device_id`` (>= 1)."""
        ptr = StoreP()
        lib.rk_store_new(_u32(device_id, "device_id"), byref(ptr))
        self._adopt(ptr)

    @classmethod
    def with_identity(
        cls, identity: IdentityKeyPair, registration_id: int, device_id: int = 1
    ) -> "Store":
        """A new store around an existing identity (copied; ``identity`` stays yours).

        ``registration_id`` is in 1..16380, ``device_id`` at least 1
        (:class:`InvalidArgumentError` otherwise).
        """
        registration_id = _u32(registration_id, "registration_id")
        device_id = _u32(device_id, "device_id")
        ptr = StoreP()
        with identity._h as pair:
            lib.rk_store_new_with_identity(pair, registration_id, device_id, byref(ptr))
        return cls._wrap(ptr)

    @classmethod
    def restore(cls, data: bytes, key: Optional[bytes] = None) -> "Store":
        """Restores a store saved by :meth:`save`.

        With ``key`` (32 bytes), ``data`` must have been saved under the same
        key: a wrong key (or altered bytes) raises
        :class:`WrongPickleKeyError`. Corrupt data raises
        :class:`InvalidStateError`, an unknown format version
        :class:`UnsupportedStateVersionError`.
        """
        data = as_bytes(data, "saved state")
        ptr = StoreP()
        if key is None:
            lib.rk_store_restore(data, len(data), byref(ptr))
        else:
            key = as_bytes(key, "key")
            lib.rk_store_restore_encrypted(data, len(data), key, len(key), byref(ptr))
        return cls._wrap(ptr)

    @classmethod
    def open(
        cls,
        path: "Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]",
        key: bytes,
        *,
        device_id: int = 1,
        create: bool = True,
        durability: str = "full",
        busy_timeout: float = 5.0,
    ) -> "Store":
        """Opens the durable store in the SQLite database file at ``path``.

        ``key`` is the application's 32-byte key (from the platform's
        keystore) that seals every row. When the file holds no store yet
        and ``create`` is true, a store with a fresh identity for local
        device ``device_id`` is created in it; with ``create=False`` that
        raises :class:`StorageError`. Every call on the returned store
        commits its changes to the file before it returns.

        ``durability``: ``"full"`` (default): every change is on disk when
        the call returns. ``"normal"``: decrypts do not wait for the disk, so
        a power loss (not a process crash) may undo the last ones and those
        messages decrypt again; encrypt and every other call stay at full
        durability.

        Several handles, in one or several processes, may open one file:
        every call takes the database's write lock for its whole
        read-modify-write, waiting up to ``busy_timeout`` seconds
        (:class:`StoreBusyError` after that).

        Raises :class:`WrongStoreKeyError`, :class:`InvalidKeyError` (not
        32 bytes), :class:`StoreCorruptError` (not a database, damaged
        rows), :class:`StoreBusyError`, :class:`StorageError`.
        """
        options = _store_options(device_id, create, durability, busy_timeout)
        encoded = _path(path)
        key = as_bytes(key, "key")
        ptr = StoreP()
        lib.rk_store_open(encoded, key, len(key), byref(options), byref(ptr))
        return cls._wrap(ptr)

    @classmethod
    def import_store(
        cls,
        path: "Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]",
        key: bytes,
        store: "Store",
        *,
        durability: str = "full",
        busy_timeout: float = 5.0,
    ) -> "Store":
        """Creates a durable store at ``path`` holding everything the
        in-memory ``store`` holds, and opens it (as :meth:`open`).

        To move state kept as saved bytes into a file:
        ``Store.import_store(path, key=k, store=Store.restore(saved, key=pk))``.
        ``store`` is unchanged. Raises :class:`StorageError` if the file
        holds a store already, :class:`InvalidArgumentError` if ``store`` is
        a durable store, and what :meth:`open` raises.
        """
        options = _store_options(1, True, durability, busy_timeout)
        encoded = _path(path)
        key = as_bytes(key, "key")
        ptr = StoreP()
        with store._h as source:
            lib.rk_store_import(encoded, key, len(key), byref(options), source, byref(ptr))
        return cls._wrap(ptr)

    def rekey(self, old_key: bytes, new_key: bytes) -> None:
        """Replaces the key of a durable store: ``old_key`` (the key it was
        opened with) by ``new_key``. One row changes; handles open on the
        file keep working, and later opens need ``new_key``.

        Raises :class:`WrongStoreKeyError` (``old_key`` is wrong),
        :class:`InvalidKeyError` (lengths), :class:`InvalidArgumentError`
        (an in-memory store).
        """
        old_key = as_bytes(old_key, "old_key")
        new_key = as_bytes(new_key, "new_key")
        with self._h as store:
            lib.rk_store_rekey(store, old_key, len(old_key), new_key, len(new_key))

    @property
    def is_durable(self) -> bool:
        """Whether the store lives in a database file (:meth:`open`,
        :meth:`import_store`) rather than in memory."""
        value = c_bool()
        with self._h as store:
            lib.rk_store_is_durable(store, byref(value))
        return value.value

    def save(self, key: Optional[bytes] = None) -> bytes:
        """The whole store (identity, prekeys, sessions, trust) as bytes.

        Without ``key`` the bytes hold private keys in the clear. With a
        32-byte ``key`` (from the platform's keystore) they are encrypted
        and authenticated (XChaCha20-Poly1305); a key of another length
        raises :class:`InvalidKeyError`. A ``bytearray`` key is copied into
        immutable ``bytes`` for the call (Python cannot wipe that copy).
        """
        out = rk_bytes()
        if key is None:
            with self._h as store:
                lib.rk_store_save(store, byref(out))
        else:
            key = as_bytes(key, "key")
            with self._h as store:
                lib.rk_store_save_encrypted(store, key, len(key), byref(out))
        return take_bytes(out)

    # -- identity -----------------------------------------------------------

    @property
    def identity_key(self) -> PublicKey:
        """The local public identity key."""
        ptr = PublicKeyP()
        with self._h as store:
            lib.rk_store_identity_key(store, byref(ptr))
        return PublicKey._wrap(ptr)

    def identity_keypair(self) -> IdentityKeyPair:
        """A copy of the local identity key pair (holds the private key)."""
        ptr = IdentityKeyPairP()
        with self._h as store:
            lib.rk_store_identity_keypair(store, byref(ptr))
        return IdentityKeyPair._wrap(ptr)

    def _read(self, function: Any, value: Union[c_uint32, c_size_t]) -> int:
        """Calls a getter ``function(store, &value)`` and returns the value."""
        with self._h as store:
            function(store, byref(value))
        return int(value.value)

    @property
    def registration_id(self) -> int:
        """The local registration id (1..16380)."""
        return self._read(lib.rk_store_registration_id, c_uint32())

    @property
    def device_id(self) -> int:
        """The local device id."""
        return self._read(lib.rk_store_device_id, c_uint32())

    # -- prekeys ------------------------------------------------------------

    def generate_signed_prekey(self, timestamp_ms: Optional[int] = None) -> int:
        """Rotates the signed prekey; returns the new one's id.

        Older signed prekeys stay usable for messages in flight until
        removed with :meth:`remove_signed_prekey`. ``timestamp_ms`` defaults
        to now.
        """
        timestamp = _timestamp(timestamp_ms)
        value = c_uint32()
        with self._h as store:
            lib.rk_store_generate_signed_prekey(store, timestamp, byref(value))
        return value.value

    def remove_signed_prekey(self, prekey_id: int) -> None:
        """Removes an old signed prekey (not the current one)."""
        prekey_id = _u32(prekey_id, "prekey_id")
        with self._h as store:
            lib.rk_store_remove_signed_prekey(store, prekey_id)

    def generate_prekeys(self, count: int) -> List[PreKey]:
        """Makes ``count`` (at most 10,000) one-time prekeys and returns them for upload."""
        count = _u32(count, "count")
        out = rk_bytes()
        with self._h as store:
            lib.rk_store_generate_prekeys(store, count, byref(out))
        records = take_bytes(out)
        return [
            PreKey(
                int.from_bytes(records[i : i + 4], "big"),
                PublicKey(records[i + 4 : i + _PREKEY_RECORD_LEN]),
            )
            for i in range(0, len(records), _PREKEY_RECORD_LEN)
        ]

    @property
    def prekey_count(self) -> int:
        """The number of one-time prekeys held (made and not yet used)."""
        return self._read(lib.rk_store_prekey_count, c_size_t())

    def generate_kyber_prekeys(
        self, count: int, timestamp_ms: Optional[int] = None
    ) -> List[KyberPreKey]:
        """Makes ``count`` (at most 1,000) signed one-time Kyber1024 prekeys
        and returns them for upload.

        Each is deleted after the first session it starts. ``timestamp_ms``
        (their creation time) defaults to now. Raises
        :class:`LimitExceededError` for a ``count`` too large (nothing is
        kept then).
        """
        count = _u32(count, "count")
        timestamp = _timestamp(timestamp_ms)
        out = rk_bytes()
        with self._h as store:
            lib.rk_store_generate_kyber_prekeys(store, count, timestamp, byref(out))
        return _kyber_records(take_bytes(out))

    def generate_last_resort_kyber_prekey(self, timestamp_ms: Optional[int] = None) -> KyberPreKey:
        """Rotates the last-resort Kyber prekey; returns the new one, for upload.

        Bundles without a one-time Kyber prekey carry it
        (:attr:`KyberPreKeyKind.LAST_RESORT`); it serves any number of
        sessions and is kept after use. Older last-resort prekeys stay usable
        for messages in flight until removed with
        :meth:`remove_kyber_prekey`. ``timestamp_ms`` defaults to now.
        """
        timestamp = _timestamp(timestamp_ms)
        value = c_uint32()
        record = create_string_buffer(KYBER_PREKEY_RECORD_LEN)
        with self._h as store:
            lib.rk_store_generate_last_resort_kyber_prekey(store, timestamp, byref(value))
            lib.rk_store_kyber_prekey(store, value.value, record, KYBER_PREKEY_RECORD_LEN)
        return _kyber_records(record.raw)[0]

    @property
    def kyber_prekey_count(self) -> int:
        """The number of one-time Kyber prekeys held (made and not yet used;
        last-resort ones are not counted)."""
        return self._read(lib.rk_store_kyber_prekey_count, c_size_t())

    def kyber_prekey(self, prekey_id: int) -> KyberPreKey:
        """The Kyber prekey ``prekey_id`` (one-time or last resort) as uploaded.

        Raises :class:`MissingPrekeyError` if the store does not hold it
        (never made, removed, or a one-time one used up).
        """
        prekey_id = _u32(prekey_id, "prekey_id")
        record = create_string_buffer(KYBER_PREKEY_RECORD_LEN)
        with self._h as store:
            lib.rk_store_kyber_prekey(store, prekey_id, record, KYBER_PREKEY_RECORD_LEN)
        return _kyber_records(record.raw)[0]

    @property
    def last_resort_kyber_prekey_id(self) -> Optional[int]:
        """The id of the current last-resort Kyber prekey, or None if the
        store has not made one yet."""
        has = c_bool()
        value = c_uint32()
        with self._h as store:
            lib.rk_store_last_resort_kyber_prekey_id(store, byref(has), byref(value))
        return value.value if has.value else None

    def remove_kyber_prekey(self, prekey_id: int) -> None:
        """Removes a Kyber prekey: a one-time one withdrawn from the server,
        or an old last-resort one after rotation.

        Raises :class:`InvalidArgumentError` for the current last-resort
        Kyber prekey and :class:`MissingPrekeyError` for an id the store
        does not hold.
        """
        prekey_id = _u32(prekey_id, "prekey_id")
        with self._h as store:
            lib.rk_store_remove_kyber_prekey(store, prekey_id)

    # -- key directory (see ratchetkit.directory) ---------------------------

    def prepare_upload(self, count: int, timestamp_ms: Optional[int] = None) -> bytes:
        """An upload for the key server, as JSON bytes (format version 1,
        keyserver/README.md): the identity key, registration and device id,
        the current signed prekey and last-resort Kyber prekey (made first
        if missing) and ``count`` (at most 200) new one-time EC and Kyber
        prekeys, which the store keeps. ``timestamp_ms`` dates the keys made
        (now by default). A ``count`` above 200 raises
        :class:`LimitExceededError` and nothing is made.
        """
        count = _u32(count, "count")
        timestamp = _timestamp(timestamp_ms)
        out = rk_bytes()
        with self._h as store:
            lib.rk_store_prepare_upload(store, count, timestamp, byref(out))
        return take_bytes(out)

    def prekey_status(
        self,
        now_ms: Optional[int] = None,
        server_count: Optional[int] = None,
        policy: Optional[PreKeyPolicy] = None,
    ) -> PreKeyStatus:
        """What the store's prekeys need at ``now_ms`` (now by default)
        under ``policy`` (the defaults by default). ``server_count`` is the
        number of one-time prekeys the server says it still holds; without
        it the store's own count (an upper bound) decides.
        """
        now = _timestamp(now_ms)
        if server_count is None:
            count = -1
        else:
            count = _u32(server_count, "server_count")
        c_policy = (policy or PreKeyPolicy())._c()
        out = rk_prekey_status()
        with self._h as store:
            lib.rk_store_prekey_status(store, now, count, byref(c_policy), byref(out))
        return PreKeyStatus._from_c(out)

    def rotate_prekeys(
        self, now_ms: Optional[int] = None, policy: Optional[PreKeyPolicy] = None
    ) -> Tuple[bool, int]:
        """Rotates the signed and last-resort prekeys when ``policy`` says
        they are due (or missing), then removes replaced ones whose
        successor is older than the grace period. Returns ``(rotated,
        removed)``; after a rotation, upload with ``prepare_upload(0)``.
        """
        now = _timestamp(now_ms)
        c_policy = (policy or PreKeyPolicy())._c()
        rotated = c_bool()
        removed = c_uint32()
        with self._h as store:
            lib.rk_store_rotate_prekeys(store, now, byref(c_policy), byref(rotated), byref(removed))
        return rotated.value, int(removed.value)

    def sign_request(
        self,
        name: str,
        method: str,
        path: str,
        body: bytes = b"",
        device_id: Optional[int] = None,
        timestamp: Optional[int] = None,
    ) -> str:
        """The ``Authorization`` header value for a request to the key
        server by this store's device of ``name``: the uppercase
        ``method``, the ``path`` (with any query) and the ``body``, at
        ``timestamp`` (seconds since the Unix epoch, now by default),
        signed with the identity key under a fresh nonce. ``device_id``
        defaults to the store's. Raises :class:`InvalidArgumentError` for a
        name with ',', '=', spaces or controls, a lowercase method or a
        path not starting with '/'.
        """
        body = as_bytes(body, "body")
        for what, text in (("method", method), ("path", path)):
            if not isinstance(text, str):
                raise TypeError(f"{what} must be str, not {type(text).__name__}")
            if "\0" in text:
                raise ValueError(f"{what} must not contain NUL characters")
        device = self.device_id if device_id is None else _u32(device_id, "device_id")
        seconds = int(time.time()) if timestamp is None else _timestamp(timestamp)
        out = rk_bytes()
        with self._h as store:
            lib.rk_store_sign_request(
                store,
                encode_name(name),
                device,
                method.encode("utf-8"),
                path.encode("utf-8"),
                body,
                len(body),
                seconds,
                byref(out),
            )
        return take_bytes(out).rstrip(b"\0").decode("ascii")

    def create_bundle(
        self,
        one_time_prekey: bool = True,
        timestamp_ms: Optional[int] = None,
        *,
        kyber_prekey: Optional[KyberPreKeyKind] = None,
    ) -> Bundle:
        """A prekey bundle for this device, to publish.

        A signed prekey is made first if there is none (``timestamp_ms``
        defaults to now). With ``one_time_prekey``, a new one-time prekey is
        made, kept, and put in the bundle (never handed out twice).

        ``kyber_prekey`` chooses the Kyber prekey (a
        :class:`KyberPreKeyKind`). By default the bundle gets a new one-time
        Kyber prekey with ``one_time_prekey``, else the last-resort one
        (made on first use): either way it starts version-4 (PQXDH)
        sessions. :attr:`KyberPreKeyKind.NONE` makes a bundle that starts
        version-3 (X3DH) sessions, which stores refuse by default.
        """
        timestamp = _timestamp(timestamp_ms)
        flag = 1 if one_time_prekey else 0
        ptr = BundleP()
        if kyber_prekey is None:
            with self._h as store:
                lib.rk_store_create_bundle(store, flag, timestamp, byref(ptr))
        else:
            if isinstance(kyber_prekey, bool) or not isinstance(kyber_prekey, int):
                raise TypeError(
                    f"kyber_prekey must be a KyberPreKeyKind, not {type(kyber_prekey).__name__}"
                )
            kind = KyberPreKeyKind(kyber_prekey)  # ValueError outside the kinds
            with self._h as store:
                lib.rk_store_create_bundle_with(store, flag, int(kind), timestamp, byref(ptr))
        return Bundle._wrap(ptr)

    # -- session policy -----------------------------------------------------

    @property
    def policy(self) -> SessionPolicy:
        """The store's :class:`SessionPolicy` (whether it starts and accepts
        version-3 sessions). Assign a :class:`SessionPolicy` to change it,
        or call :meth:`set_policy`."""
        allow = c_uint32()
        accept = c_uint32()
        with self._h as store:
            lib.rk_store_policy(store, byref(allow), byref(accept))
        return SessionPolicy(bool(allow.value), bool(accept.value))

    @policy.setter
    def policy(self, policy: SessionPolicy) -> None:
        if not isinstance(policy, SessionPolicy):
            raise TypeError(f"policy must be a SessionPolicy, not {type(policy).__name__}")
        self.set_policy(
            allow_v3_initiation=policy.allow_v3_initiation,
            accept_v3_prekey_messages=policy.accept_v3_prekey_messages,
        )

    def set_policy(
        self, *, allow_v3_initiation: bool = False, accept_v3_prekey_messages: bool = False
    ) -> None:
        """Sets the whole session policy (see :class:`SessionPolicy`); a flag
        not given is set to its default, off.

        ``allow_v3_initiation``: :meth:`process_bundle` starts a version-3
        (X3DH) session from a bundle without a Kyber prekey.
        ``accept_v3_prekey_messages``: :meth:`decrypt` accepts a version-3
        prekey message that starts a new session. Refused otherwise, with
        :class:`VersionRefusedError`.
        """
        policy = SessionPolicy(allow_v3_initiation, accept_v3_prekey_messages)  # type checks
        with self._h as store:
            lib.rk_store_set_policy(
                store, int(policy.allow_v3_initiation), int(policy.accept_v3_prekey_messages)
            )

    @property
    def spqr_policy(self) -> SpqrPolicy:
        """The store's :class:`SpqrPolicy` for new version-4 sessions
        (:attr:`SpqrPolicy.REQUIRED` for a new store). Assign a
        :class:`SpqrPolicy` to change it."""
        value = c_uint32()
        with self._h as store:
            lib.rk_store_spqr_policy(store, byref(value))
        return SpqrPolicy(value.value)

    @spqr_policy.setter
    def spqr_policy(self, policy: SpqrPolicy) -> None:
        if not isinstance(policy, SpqrPolicy):
            raise TypeError(f"spqr_policy must be a SpqrPolicy, not {type(policy).__name__}")
        with self._h as store:
            lib.rk_store_set_spqr_policy(store, int(policy))

    def session_spqr(self, name: str, device_id: int = 1) -> Tuple[bool, int]:
        """Whether the current session with (``name``, ``device_id``) speaks
        SPQR, and its SPQR epoch: ``(True, epoch)`` when it does (a session
        that only offered SPQR stays so until the peer's first reply),
        ``(False, 0)`` when it does not. The epoch is 1 at the start and one
        more with every completed ML-KEM exchange. Raises
        :class:`NoSessionError` without a session."""
        encoded = encode_name(name)
        device_id = _u32(device_id, "device_id")
        has = c_uint32()
        epoch = c_uint64()
        with self._h as store:
            lib.rk_store_session_has_spqr(store, encoded, device_id, byref(has), byref(epoch))
        return bool(has.value), epoch.value

    def session_has_spqr(self, name: str, device_id: int = 1) -> bool:
        """Whether the current session with (``name``, ``device_id``) speaks
        SPQR (see :meth:`session_spqr`)."""
        return self.session_spqr(name, device_id)[0]

    # -- sessions -----------------------------------------------------------

    def process_bundle(self, name: str, bundle: Bundle, device_id: Optional[int] = None) -> None:
        """Starts a session with ``name`` from its bundle, as the initiator.

        A bundle with a Kyber prekey starts a version-4 session (PQXDH); one
        without a version-3 session (X3DH), which raises
        :class:`VersionRefusedError` unless the :attr:`policy` allows it.
        ``device_id`` defaults to the bundle's. The new session becomes
        current (an older one is archived). The bundle's identity is trusted
        on first use; a different one than trusted raises
        :class:`UntrustedIdentityError`, a bad signature (signed or Kyber
        prekey) :class:`InvalidSignatureError`.
        """
        encoded = encode_name(name)
        if device_id is None:
            device_id = bundle.device_id
        device_id = _u32(device_id, "device_id")
        with self._h as store, bundle._h as bundle_ptr:
            lib.rk_store_process_bundle(store, encoded, device_id, bundle_ptr)

    def has_session(self, name: str, device_id: int = 1) -> bool:
        """Whether :meth:`encrypt` for (``name``, ``device_id``) would find a session."""
        encoded = encode_name(name)
        device_id = _u32(device_id, "device_id")
        has = c_bool()
        with self._h as store:
            lib.rk_store_has_session(store, encoded, device_id, byref(has))
        return has.value

    def session_version(self, name: str, device_id: int = 1) -> int:
        """The message version of the current session with (``name``,
        ``device_id``): :data:`SESSION_VERSION_PQXDH` (4) or
        :data:`SESSION_VERSION_X3DH` (3). Raises :class:`NoSessionError`
        without a session."""
        encoded = encode_name(name)
        device_id = _u32(device_id, "device_id")
        version = c_uint32()
        with self._h as store:
            lib.rk_store_session_version(store, encoded, device_id, byref(version))
        return version.value

    @property
    def session_count(self) -> int:
        """The number of remote devices (name and device id) with a session record."""
        return self._read(lib.rk_store_session_count, c_size_t())

    def remove_session(self, name: str, device_id: int = 1) -> bool:
        """Deletes the session record of (``name``, ``device_id``), current and
        archived states with their keys. Returns whether there was one.

        The identity trusted for ``name`` stays trusted; a new session starts
        from a bundle or a prekey message as before.
        """
        encoded = encode_name(name)
        device_id = _u32(device_id, "device_id")
        removed = c_bool()
        with self._h as store:
            lib.rk_store_remove_session(store, encoded, device_id, byref(removed))
        return removed.value

    def encrypt(self, name: str, plaintext: bytes, device_id: int = 1) -> Message:
        """Encrypts ``plaintext`` (may be empty) for (``name``, ``device_id``).

        Raises :class:`NoSessionError` without a session, and
        :class:`UntrustedIdentityError` if the session's identity is no
        longer the trusted one.
        """
        encoded = _NAMES.get(name)
        if encoded is None:
            encoded = encode_name(name)
        if type(plaintext) is not bytes:
            plaintext = as_bytes(plaintext, "plaintext")
        if device_id != 1:
            _u32(device_id, "device_id")
        mtype = c_uint32()
        out = rk_bytes()
        h = self._h
        ptr = h.enter()
        try:
            status = _encrypt(ptr, encoded, device_id, plaintext, len(plaintext), mtype, out)
        finally:
            h.leave()
        if status:
            raise_status(status)
        try:
            body = out.ptr[: out.len]
        finally:
            _bytes_free(out)
        return _new_message(Message, (_TYPES[mtype.value], body))

    def decrypt(
        self,
        name: str,
        message: Union[Message, Tuple[int, bytes]],
        device_id: int = 1,
    ) -> bytes:
        """Decrypts a message from (``name``, ``device_id``); returns the plaintext.

        ``message`` is a :class:`Message` or a ``(type, body)`` pair. A
        prekey message from a new session runs PQXDH (or X3DH, if the
        :attr:`policy` accepts version 3) as the responder, uses up its
        one-time prekeys (a last-resort Kyber prekey is kept) and trusts the
        sender's identity on first use. Raises :class:`InvalidMessageError`
        (also for a second session from a base key already used with the
        last-resort Kyber prekey), :class:`DuplicateMessageError`,
        :class:`NoSessionError`, :class:`MissingPrekeyError` (a signed,
        one-time or Kyber prekey the store does not hold),
        :class:`VersionRefusedError` (a version-3 prekey message the policy
        refuses), :class:`UntrustedIdentityError`,
        :class:`LimitExceededError` (too far ahead) and leaves the store
        unchanged when it does. The plaintext is immutable ``bytes``, which
        Python cannot wipe.
        """
        encoded = _NAMES.get(name)
        if encoded is None:
            encoded = encode_name(name)
        mtype, body = message
        if type(body) is not bytes:
            body = as_bytes(body, "message body")
        if device_id != 1:
            _u32(device_id, "device_id")
        out = rk_bytes()
        h = self._h
        ptr = h.enter()
        try:
            status = _decrypt(ptr, encoded, device_id, mtype, body, len(body), out)
        finally:
            h.leave()
        if status:
            raise_status(status)
        try:
            plaintext: bytes = out.ptr[: out.len]
            return plaintext
        finally:
            _bytes_free(out)

    def _decrypt_typed(self, func: Any, name: str, body: bytes, device_id: int) -> bytes:
        encoded = encode_name(name)
        device_id = _u32(device_id, "device_id")
        body = as_bytes(body, "message body")
        out = rk_bytes()
        with self._h as store:
            func(store, encoded, device_id, body, len(body), out)
        return take_bytes(out)

    def decrypt_prekey_message(self, name: str, body: bytes, device_id: int = 1) -> bytes:
        """As :meth:`decrypt` for the bytes of a prekey message."""
        return self._decrypt_typed(_decrypt_prekey, name, body, device_id)

    def decrypt_whisper_message(self, name: str, body: bytes, device_id: int = 1) -> bytes:
        """As :meth:`decrypt` for the bytes of a whisper message."""
        return self._decrypt_typed(_decrypt_whisper, name, body, device_id)

    def decrypt_pending(
        self, name: str, device_id: int, message_type: int, data: bytes
    ) -> PendingDecrypt:
        """Decrypts a message of ``message_type`` (:class:`MessageType`)
        from (``name``, ``device_id``) with a durable store, writing nothing.

        Returns a :class:`PendingDecrypt`: keep its ``plaintext``, then
        ``commit()`` it; until then (and forever, if it is discarded or the
        process dies first) the message can be decrypted again. Raises what
        :meth:`decrypt` raises, and :class:`InvalidArgumentError` for an
        in-memory store.
        """
        encoded = encode_name(name)
        device_id = _u32(device_id, "device_id")
        message_type = _u32(message_type, "message_type")
        data = as_bytes(data, "message body")
        ptr = PendingDecryptP()
        with self._h as store:
            lib.rk_store_decrypt_pending(
                store, encoded, device_id, message_type, data, len(data), byref(ptr)
            )
        pending = PendingDecrypt._wrap(ptr)
        pending._committed = False
        pending._plaintext = b""
        try:
            out = rk_bytes()
            with pending._h as p:
                lib.rk_pending_decrypt_plaintext(p, byref(out))
            pending._plaintext = take_bytes(out)
        except BaseException:
            pending.close()
            raise
        return pending

    # -- trust --------------------------------------------------------------

    def trusted_identity(self, name: str) -> PublicKey:
        """The identity key trusted for ``name`` (:class:`NoTrustedIdentityError` if none)."""
        encoded = encode_name(name)
        ptr = PublicKeyP()
        with self._h as store:
            lib.rk_store_trusted_identity(store, encoded, byref(ptr))
        return PublicKey._wrap(ptr)

    def approve_identity(self, name: str, identity_key: PublicKey) -> bool:
        """Trusts ``identity_key`` for ``name``; returns whether a different key was trusted.

        Call it after the user accepted a changed key (following
        :class:`UntrustedIdentityError`) or verified it out of band.
        """
        encoded = encode_name(name)
        replaced = c_bool()
        with self._h as store, identity_key._h as key:
            lib.rk_store_approve_identity(store, encoded, key, byref(replaced))
        return replaced.value

    def safety_number(
        self,
        name: str,
        local_id: bytes,
        remote_id: bytes,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        version: int = FINGERPRINT_VERSION,
    ) -> Fingerprint:
        """The safety number between this store's identity and the one trusted for ``name``.

        ``local_id``/``remote_id`` are the two users' stable ids (bytes).
        Raises :class:`NoTrustedIdentityError` for a name with no trusted
        identity.
        """
        encoded = encode_name(name)
        local_id = as_bytes(local_id, "local_id")
        remote_id = as_bytes(remote_id, "remote_id")
        iterations = _u32(iterations, "iterations")
        version = _u32(version, "version")
        ptr = FingerprintP()
        with self._h as store:
            lib.rk_store_safety_number(
                store,
                encoded,
                local_id,
                len(local_id),
                remote_id,
                len(remote_id),
                iterations,
                version,
                byref(ptr),
            )
        return Fingerprint._wrap(ptr)

    def __repr__(self) -> str:
        if self.closed:
            return "<Store (closed)>"
        return f"<Store registration_id={self.registration_id} device_id={self.device_id}>"

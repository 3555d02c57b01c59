"""ratchetkit: Signal-protocol sessions (PQXDH or X3DH, then the Double
Ratchet), byte-compatible with the official Signal library.

New sessions are version 4 (PQXDH: X3DH with a Kyber1024 prekey) by
default: bundles from :meth:`Store.create_bundle` carry a Kyber prekey. A
store refuses to start or accept version-3 (X3DH) sessions, with
:class:`VersionRefusedError`, unless its :class:`SessionPolicy` allows them
(``store.set_policy(allow_v3_initiation=True,
accept_v3_prekey_messages=True)``); sessions that exist keep their version.

A thin ctypes binding over the ``libratchetkit`` C library. Objects own
library handles, freed by ``close()``, by a ``with`` block, or when garbage
collected; bytes go in and out; every failure raises a subclass of
:class:`RatchetkitError`, one per C status.

Closing an object while other threads are inside calls on it (or on calls
taking it as an argument) is safe: the handle is freed only once no call
uses it, by the last running call if need be, and calls made after the
close raise ``ValueError``. At interpreter exit, a handle that a daemon
thread is still using is left allocated.

Secrets in Python memory: the library wipes its own copies, Python cannot.
Plaintexts, saved state and private key bytes come back as immutable
``bytes``; a key or plaintext passed as a ``bytearray`` or ``memoryview`` is
copied into ``bytes`` before the call, so wiping the caller's buffer later
does not wipe that copy. Such copies stay in memory until Python reuses it.

>>> import ratchetkit
>>> alice, bob = ratchetkit.Store(), ratchetkit.Store()
>>> published = bob.create_bundle().serialize()          # bytes, to a server
>>> alice.process_bundle("bob", ratchetkit.Bundle.from_bytes(published))
>>> message = alice.encrypt("bob", b"Hi Bob!")
>>> message.type
<MessageType.PREKEY: 3>
>>> bob.decrypt("alice", message)
b'Hi Bob!'
>>> alice.session_version("bob")
4
"""

from __future__ import annotations

from ._errors import (
    STATUS_CODES,
    BufferTooSmallError,
    DuplicateMessageError,
    FingerprintVersionMismatchError,
    InternalError,
    InvalidArgumentError,
    InvalidBundleError,
    InvalidFingerprintError,
    InvalidHandleError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidSignatureError,
    InvalidStateError,
    LimitExceededError,
    MissingPrekeyError,
    NoSessionError,
    NoTrustedIdentityError,
    NullPointerError,
    PanicError,
    PoisonedError,
    RatchetkitError,
    ConflictError,
    StorageError,
    StoreBusyError,
    StoreCorruptError,
    UnsupportedStateVersionError,
    UntrustedIdentityError,
    VersionRefusedError,
    SpqrRequiredError,
    WrongPickleKeyError,
    WrongStoreKeyError,
)
from ._lib import ABI_VERSION, LIBRARY_PATH, LIBRARY_SOURCE
from ._lib import lib as _clib
from .bundle import KEM_PUBLIC_KEY_LEN, Bundle, KyberPreKey, PreKey
from .directory import (
    MAX_UPLOAD_BATCH,
    UPLOAD_FORMAT_VERSION,
    PreKeyPolicy,
    PreKeyStatus,
    bundles_from_json,
)
from .fingerprint import (
    DEFAULT_ITERATIONS,
    FINGERPRINT_VERSION,
    SAFETY_NUMBER_LEN,
    Fingerprint,
)
from .identity import (
    PRIVATE_KEY_LEN,
    PUBLIC_KEY_LEN,
    SIGNATURE_LEN,
    IdentityKeyPair,
    PublicKey,
)
from .store import (
    KYBER_PREKEY_RECORD_LEN,
    MAX_KYBER_PREKEYS_PER_CALL,
    MAX_PREKEYS_PER_CALL,
    PICKLE_KEY_LEN,
    SESSION_VERSION_PQXDH,
    SESSION_VERSION_X3DH,
    STORE_KEY_LEN,
    KyberPreKeyKind,
    Message,
    MessageType,
    PendingDecrypt,
    SessionPolicy,
    SpqrPolicy,
    Store,
)

__version__ = "0.1.0"


def library_version() -> str:
    """The version of the loaded C library, for example ``"0.1.0"``."""
    return _clib.rk_version()  # type: ignore[no-any-return]


def library_path() -> str:
    """The path of the loaded C library (for diagnostics)."""
    return LIBRARY_PATH


__all__ = [
    "Store",
    "PendingDecrypt",
    "Bundle",
    "PreKey",
    "KyberPreKey",
    "KyberPreKeyKind",
    "SessionPolicy",
    "PreKeyPolicy",
    "PreKeyStatus",
    "bundles_from_json",
    "MAX_UPLOAD_BATCH",
    "UPLOAD_FORMAT_VERSION",
    "SpqrPolicy",
    "PublicKey",
    "IdentityKeyPair",
    "Fingerprint",
    "Message",
    "MessageType",
    "library_version",
    "library_path",
    "ABI_VERSION",
    "LIBRARY_SOURCE",
    "PUBLIC_KEY_LEN",
    "PRIVATE_KEY_LEN",
    "SIGNATURE_LEN",
    "SAFETY_NUMBER_LEN",
    "DEFAULT_ITERATIONS",
    "FINGERPRINT_VERSION",
    "PICKLE_KEY_LEN",
    "STORE_KEY_LEN",
    "MAX_PREKEYS_PER_CALL",
    "KEM_PUBLIC_KEY_LEN",
    "KYBER_PREKEY_RECORD_LEN",
    "MAX_KYBER_PREKEYS_PER_CALL",
    "SESSION_VERSION_X3DH",
    "SESSION_VERSION_PQXDH",
    "STATUS_CODES",
    "RatchetkitError",
    "NullPointerError",
    "InvalidArgumentError",
    "BufferTooSmallError",
    "InvalidHandleError",
    "InvalidKeyError",
    "InvalidSignatureError",
    "InvalidMessageError",
    "DuplicateMessageError",
    "InvalidBundleError",
    "InvalidFingerprintError",
    "FingerprintVersionMismatchError",
    "LimitExceededError",
    "VersionRefusedError",
    "SpqrRequiredError",
    "UntrustedIdentityError",
    "NoSessionError",
    "MissingPrekeyError",
    "NoTrustedIdentityError",
    "InvalidStateError",
    "WrongPickleKeyError",
    "UnsupportedStateVersionError",
    "WrongStoreKeyError",
    "StoreCorruptError",
    "StoreBusyError",
    "ConflictError",
    "StorageError",
    "InternalError",
    "PanicError",
    "PoisonedError",
]

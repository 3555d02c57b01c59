"""Exceptions: one class per ``rk_status`` of the C API.

Every failing library call raises a subclass of :class:`RatchetkitError`
that carries the status number (:attr:`RatchetkitError.status`), its C name
(:attr:`RatchetkitError.status_name`) and the library's detail message for
the failed call (:attr:`RatchetkitError.detail`, from
``rk_last_error_message``; it never contains key material).
"""

from __future__ import annotations

from typing import Dict, Type

__all__ = [
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
    "error_for",
]

#: Every status of the C API by its C name (``enum rk_status`` in
#: ``ratchetkit.h``); the tests check this table against the header.
STATUS_CODES: Dict[str, int] = {
    "RK_STATUS_OK": 0,
    "RK_STATUS_NULL_POINTER": 100,
    "RK_STATUS_INVALID_ARGUMENT": 101,
    "RK_STATUS_BUFFER_TOO_SMALL": 102,
    "RK_STATUS_INVALID_HANDLE": 103,
    "RK_STATUS_INVALID_KEY": 200,
    "RK_STATUS_INVALID_SIGNATURE": 201,
    "RK_STATUS_INVALID_MESSAGE": 202,
    "RK_STATUS_DUPLICATE_MESSAGE": 203,
    "RK_STATUS_INVALID_BUNDLE": 204,
    "RK_STATUS_INVALID_FINGERPRINT": 205,
    "RK_STATUS_FINGERPRINT_VERSION_MISMATCH": 206,
    "RK_STATUS_LIMIT_EXCEEDED": 207,
    "RK_STATUS_VERSION_REFUSED": 208,
    "RK_STATUS_SPQR_REQUIRED": 209,
    "RK_STATUS_UNTRUSTED_IDENTITY": 300,
    "RK_STATUS_NO_SESSION": 301,
    "RK_STATUS_MISSING_PREKEY": 302,
    "RK_STATUS_NO_TRUSTED_IDENTITY": 303,
    "RK_STATUS_INVALID_STATE": 400,
    "RK_STATUS_WRONG_PICKLE_KEY": 401,
    "RK_STATUS_UNSUPPORTED_STATE_VERSION": 402,
    "RK_STATUS_WRONG_STORE_KEY": 403,
    "RK_STATUS_STORE_CORRUPT": 404,
    "RK_STATUS_STORE_BUSY": 405,
    "RK_STATUS_CONFLICT": 406,
    "RK_STATUS_STORAGE": 407,
    "RK_STATUS_INTERNAL": 900,
    "RK_STATUS_PANIC": 901,
    "RK_STATUS_POISONED": 902,
}


class RatchetkitError(Exception):
    """A ratchetkit call failed.

    Raised as one of its subclasses, one per C status; raised as this base
    class itself only for a status this binding does not know (a newer
    library).
    """

    #: The ``rk_status`` number (class default; instances carry their own).
    status: int = -1
    #: The C name of the status, for example ``"RK_STATUS_NO_SESSION"``.
    status_name: str = "RK_STATUS_UNKNOWN"

    @property
    def description(self) -> str:
        """The library's description of the status, for example ``"no session"``."""
        return _DESCRIPTIONS.get(self.status, "unknown status")

    def __init__(self, detail: str = "", status: "int | None" = None) -> None:
        if status is not None:
            self.status = status
        #: The library's detail message for the failed call (may be empty).
        self.detail = detail
        # The detail names the failure itself; the status's description
        # stands in when there is none.
        super().__init__(detail or _DESCRIPTIONS.get(self.status, "unknown status"))

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_rebuild, (type(self), self.detail, self.status))


def _rebuild(cls: "Type[RatchetkitError]", detail: str, status: int) -> RatchetkitError:
    return cls(detail, status)


# The classes are spelled out (not generated in a loop) so that type checkers
# and readers see every name.
class NullPointerError(RatchetkitError):
    """``RK_STATUS_NULL_POINTER``: a required pointer was NULL (a binding bug)."""

    status = 100
    status_name = "RK_STATUS_NULL_POINTER"


class InvalidArgumentError(RatchetkitError):
    """``RK_STATUS_INVALID_ARGUMENT``: an argument out of range or malformed."""

    status = 101
    status_name = "RK_STATUS_INVALID_ARGUMENT"


class BufferTooSmallError(RatchetkitError):
    """``RK_STATUS_BUFFER_TOO_SMALL``: an output buffer too small (a binding bug)."""

    status = 102
    status_name = "RK_STATUS_BUFFER_TOO_SMALL"


class InvalidHandleError(RatchetkitError):
    """``RK_STATUS_INVALID_HANDLE``: not a live handle of the expected type."""

    status = 103
    status_name = "RK_STATUS_INVALID_HANDLE"


class InvalidKeyError(RatchetkitError):
    """``RK_STATUS_INVALID_KEY``: key bytes of the wrong length or type, or a low-order key."""

    status = 200
    status_name = "RK_STATUS_INVALID_KEY"


class InvalidSignatureError(RatchetkitError):
    """``RK_STATUS_INVALID_SIGNATURE``: a signed prekey's signature does not verify."""

    status = 201
    status_name = "RK_STATUS_INVALID_SIGNATURE"


class InvalidMessageError(RatchetkitError):
    """``RK_STATUS_INVALID_MESSAGE``: malformed, unauthenticated or unsupported message bytes."""

    status = 202
    status_name = "RK_STATUS_INVALID_MESSAGE"


class DuplicateMessageError(RatchetkitError):
    """``RK_STATUS_DUPLICATE_MESSAGE``: the message's key was already used (a replay)."""

    status = 203
    status_name = "RK_STATUS_DUPLICATE_MESSAGE"


class InvalidBundleError(RatchetkitError):
    """``RK_STATUS_INVALID_BUNDLE``: bundle bytes or fields malformed or out of range."""

    status = 204
    status_name = "RK_STATUS_INVALID_BUNDLE"


class InvalidFingerprintError(RatchetkitError):
    """``RK_STATUS_INVALID_FINGERPRINT``: a scannable fingerprint that does not parse."""

    status = 205
    status_name = "RK_STATUS_INVALID_FINGERPRINT"


class FingerprintVersionMismatchError(RatchetkitError):
    """``RK_STATUS_FINGERPRINT_VERSION_MISMATCH``: scannable fingerprints of different versions."""

    status = 206
    status_name = "RK_STATUS_FINGERPRINT_VERSION_MISMATCH"


class LimitExceededError(RatchetkitError):
    """``RK_STATUS_LIMIT_EXCEEDED``: a deployed limit (message too far ahead, too many prekeys)."""

    status = 207
    status_name = "RK_STATUS_LIMIT_EXCEEDED"


class VersionRefusedError(RatchetkitError):
    """``RK_STATUS_VERSION_REFUSED``: the store's policy refuses the session version.

    A bundle without a Kyber prekey (a version-3 session) or an incoming
    version-3 prekey message starting a new session, while the policy
    refuses version 3 (the default, as the official library).
    """

    status = 208
    status_name = "RK_STATUS_VERSION_REFUSED"


class SpqrRequiredError(RatchetkitError):
    """``RK_STATUS_SPQR_REQUIRED``: the peer does not speak SPQR, and the store requires it.

    The store's SPQR policy is :attr:`SpqrPolicy.REQUIRED` (the default, as
    the official library since 0.92) and a version-4 message (prekey or
    not) came without the SPQR field: the peer is a library without SPQR,
    or has it turned off. Nothing was changed. Set the policy to
    :attr:`SpqrPolicy.OFFERED` to talk to such peers.
    """

    status = 209
    status_name = "RK_STATUS_SPQR_REQUIRED"


class UntrustedIdentityError(RatchetkitError):
    """``RK_STATUS_UNTRUSTED_IDENTITY``: the remote identity differs from the trusted one.

    Approve the new key with :meth:`ratchetkit.Store.approve_identity` after
    the user has checked it.
    """

    status = 300
    status_name = "RK_STATUS_UNTRUSTED_IDENTITY"


class NoSessionError(RatchetkitError):
    """``RK_STATUS_NO_SESSION``: no session (or no sending chain) for the address."""

    status = 301
    status_name = "RK_STATUS_NO_SESSION"


class MissingPrekeyError(RatchetkitError):
    """``RK_STATUS_MISSING_PREKEY``: a prekey message names a prekey this store does not hold."""

    status = 302
    status_name = "RK_STATUS_MISSING_PREKEY"


class NoTrustedIdentityError(RatchetkitError):
    """``RK_STATUS_NO_TRUSTED_IDENTITY``: no identity key is trusted for the name yet."""

    status = 303
    status_name = "RK_STATUS_NO_TRUSTED_IDENTITY"


class InvalidStateError(RatchetkitError):
    """``RK_STATUS_INVALID_STATE``: saved state that is corrupt or not a saved store."""

    status = 400
    status_name = "RK_STATUS_INVALID_STATE"


class WrongPickleKeyError(RatchetkitError):
    """``RK_STATUS_WRONG_PICKLE_KEY``: encrypted saved state that does not decrypt.

    The key is wrong, or the bytes were altered.
    """

    status = 401
    status_name = "RK_STATUS_WRONG_PICKLE_KEY"


class UnsupportedStateVersionError(RatchetkitError):
    """``RK_STATUS_UNSUPPORTED_STATE_VERSION``: saved state of a format this library does not read."""

    status = 402
    status_name = "RK_STATUS_UNSUPPORTED_STATE_VERSION"


class WrongStoreKeyError(RatchetkitError):
    """``RK_STATUS_WRONG_STORE_KEY``: a durable store opened (or rekeyed) with the wrong key."""

    status = 403
    status_name = "RK_STATUS_WRONG_STORE_KEY"


class StoreCorruptError(RatchetkitError):
    """``RK_STATUS_STORE_CORRUPT``: a durable store's file or a row in it is damaged.

    Rows are sealed: one that does not open under the store's key, or a
    file SQLite reports as corrupt (or not a database), raises this.
    """

    status = 404
    status_name = "RK_STATUS_STORE_CORRUPT"


class StoreBusyError(RatchetkitError):
    """``RK_STATUS_STORE_BUSY``: another connection held the database's
    write lock for longer than the busy timeout. Nothing was written; the
    call may be retried."""

    status = 405
    status_name = "RK_STATUS_STORE_BUSY"


class ConflictError(RatchetkitError):
    """``RK_STATUS_CONFLICT``: a pending decrypt's records changed before
    its commit (another handle or process wrote them). Nothing was
    written; decrypt the message again."""

    status = 406
    status_name = "RK_STATUS_CONFLICT"


class StorageError(RatchetkitError):
    """``RK_STATUS_STORAGE``: the database cannot be opened, created or
    written (a missing directory, not a ratchetkit database, a newer
    schema, no store while creating is off, a full disk)."""

    status = 407
    status_name = "RK_STATUS_STORAGE"


class InternalError(RatchetkitError):
    """``RK_STATUS_INTERNAL``: an internal error (for example out of memory)."""

    status = 900
    status_name = "RK_STATUS_INTERNAL"


class PanicError(RatchetkitError):
    """``RK_STATUS_PANIC``: a panic inside the library was caught (a library bug)."""

    status = 901
    status_name = "RK_STATUS_PANIC"


class PoisonedError(RatchetkitError):
    """``RK_STATUS_POISONED``: the store is unusable after an earlier panic.

    Close it and restore it from saved state.
    """

    status = 902
    status_name = "RK_STATUS_POISONED"


#: Exception class by status number (every status but OK).
ERRORS: Dict[int, Type[RatchetkitError]] = {
    cls.status: cls
    for cls in (
        NullPointerError,
        InvalidArgumentError,
        BufferTooSmallError,
        InvalidHandleError,
        InvalidKeyError,
        InvalidSignatureError,
        InvalidMessageError,
        DuplicateMessageError,
        InvalidBundleError,
        InvalidFingerprintError,
        FingerprintVersionMismatchError,
        LimitExceededError,
        VersionRefusedError,
        SpqrRequiredError,
        UntrustedIdentityError,
        NoSessionError,
        MissingPrekeyError,
        NoTrustedIdentityError,
        InvalidStateError,
        WrongPickleKeyError,
        UnsupportedStateVersionError,
        WrongStoreKeyError,
        StoreCorruptError,
        StoreBusyError,
        ConflictError,
        StorageError,
        InternalError,
        PanicError,
        PoisonedError,
    )
}

for _cls in ERRORS.values():
    _cls.__module__ = "ratchetkit"
    if STATUS_CODES.get(_cls.status_name) != _cls.status:  # pragma: no cover
        raise AssertionError(f"{_cls.__name__}: status table out of sync")
del _cls

# Filled in by _lib from rk_status_str once the library is loaded.
_DESCRIPTIONS: Dict[int, str] = {}


def error_for(status: int, detail: str = "") -> RatchetkitError:
    """The exception for ``status`` with the library's ``detail`` message."""
    cls = ERRORS.get(status)
    if cls is None:
        return RatchetkitError(detail, status)
    return cls(detail)

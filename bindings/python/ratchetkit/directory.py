"""The prekey lifecycle around a key server (the library half of the key directory).

The key server's formats are documented in ``keyserver/README.md``:

- :meth:`ratchetkit.Store.prepare_upload` makes the JSON a device uploads
  (its identity key, registration and device id, the current signed prekey,
  the last-resort Kyber prekey and a batch of one-time EC and Kyber
  prekeys), and the store remembers what it handed out;
- :meth:`ratchetkit.Store.prekey_status` says when to refill the one-time
  prekeys and when to rotate the signed and last-resort prekeys, under a
  :class:`PreKeyPolicy`; :meth:`ratchetkit.Store.rotate_prekeys` rotates
  them, keeping the replaced ones for the policy's grace period so that
  messages in flight still decrypt;
- :func:`bundles_from_json` reads the server's answer to a bundle fetch;
- :meth:`ratchetkit.Store.sign_request` makes the ``Authorization`` header
  that proves possession of the identity key to the server.

The library holds no HTTP client: the application sends the bytes.
"""

from __future__ import annotations

from ctypes import byref, c_size_t
from dataclasses import dataclass
from typing import List, Optional

from ._lib import BundleP, as_bytes, lib, rk_prekey_policy, rk_prekey_status
from .bundle import Bundle

__all__ = [
    "PreKeyPolicy",
    "PreKeyStatus",
    "bundles_from_json",
    "MAX_UPLOAD_BATCH",
    "UPLOAD_FORMAT_VERSION",
]

#: The most one-time prekeys of each kind one upload carries (``RK_MAX_UPLOAD_BATCH``).
MAX_UPLOAD_BATCH = 200
#: The ``version`` field of an upload made by :meth:`ratchetkit.Store.prepare_upload`.
UPLOAD_FORMAT_VERSION = 1

_U64 = 1 << 64
_DEFAULT = lib.rk_prekey_policy_default()


def _check_u(value: int, bits: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << bits:
        raise ValueError(f"{what} must be an int in 0..2**{bits}-1, not {value!r}")
    return value


@dataclass(frozen=True)
class PreKeyPolicy:
    """When the application wants its prekeys refilled and rotated.

    ``refill_below``: refill when fewer one-time prekeys than this are left.
    ``rotate_after_ms``: rotate the signed and last-resort prekeys at this
    age. ``grace_ms``: keep a replaced prekey this long after its successor
    was made. The defaults are the C library's (20, 7 days, 30 days).
    """

    refill_below: int = int(_DEFAULT.refill_below)
    rotate_after_ms: int = int(_DEFAULT.rotate_after_ms)
    grace_ms: int = int(_DEFAULT.grace_ms)

    def __post_init__(self) -> None:
        _check_u(self.refill_below, 32, "refill_below")
        _check_u(self.rotate_after_ms, 64, "rotate_after_ms")
        _check_u(self.grace_ms, 64, "grace_ms")

    def _c(self) -> rk_prekey_policy:
        return rk_prekey_policy(self.refill_below, self.rotate_after_ms, self.grace_ms)


@dataclass(frozen=True)
class PreKeyStatus:
    """What a store's prekeys need (:meth:`ratchetkit.Store.prekey_status`).

    Ages are in milliseconds, ``None`` when there is no such key.
    """

    #: One-time EC prekeys held (uploaded or made, not yet used by a message).
    prekeys_held: int
    #: One-time Kyber prekeys held.
    kyber_prekeys_held: int
    #: Age of the current signed prekey.
    signed_prekey_age_ms: Optional[int]
    #: Age of the current last-resort Kyber prekey.
    last_resort_age_ms: Optional[int]
    #: Replaced prekeys past their grace period (:meth:`~ratchetkit.Store.rotate_prekeys` removes them).
    expired: int
    #: Upload a new batch of one-time prekeys.
    refill: bool
    #: Rotate the signed and last-resort prekeys, then upload.
    rotate: bool

    @classmethod
    def _from_c(cls, s: rk_prekey_status) -> "PreKeyStatus":
        def age(v: int) -> Optional[int]:
            return None if v == _U64 - 1 else int(v)

        return cls(
            prekeys_held=int(s.prekeys_held),
            kyber_prekeys_held=int(s.kyber_prekeys_held),
            signed_prekey_age_ms=age(s.signed_prekey_age_ms),
            last_resort_age_ms=age(s.last_resort_age_ms),
            expired=int(s.expired),
            refill=bool(s.refill),
            rotate=bool(s.rotate),
        )


def bundles_from_json(data: bytes) -> List[Bundle]:
    """The device bundles in the key server's answer to a bundle fetch.

    ``data`` is one bundle or ``{"devices": [...]}`` (all devices of a
    name), as the server sends it. Raises :class:`InvalidBundleError` for
    anything else (a malformed field, too many devices, too large) and
    :class:`InvalidKeyError` for a key of the wrong form. Signatures are
    checked when a bundle is processed (:meth:`ratchetkit.Store.process_bundle`).
    """
    data = as_bytes(data, "data")
    count = c_size_t()
    lib.rk_bundles_json_count(data, len(data), byref(count))
    bundles = []
    for index in range(count.value):
        ptr = BundleP()
        lib.rk_bundle_from_json(data, len(data), index, byref(ptr))
        bundles.append(Bundle._wrap(ptr))
    return bundles

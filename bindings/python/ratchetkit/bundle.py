"""Prekey bundles: what a device publishes so that others can reach it."""

from __future__ import annotations

from contextlib import nullcontext
from ctypes import byref, c_bool, c_uint32, create_string_buffer
from typing import NamedTuple, Optional

from ._handle import Handle
from ._lib import BundleP, PublicKeyP, as_bytes, lib, rk_bytes, take_bytes
from .identity import SIGNATURE_LEN, PublicKey

__all__ = ["Bundle", "PreKey"]

#: Stands for an absent optional handle argument (a NULL pointer).
_NO_HANDLE = nullcontext(None)


class PreKey(NamedTuple):
    """A one-time prekey: its id (1..16777215) and public key."""

    id: int
    key: PublicKey


class Bundle(Handle):
    """A prekey bundle: registration id, device id, identity key, signed
    prekey with its signature, and optionally a one-time prekey.

    Bundles travel as bytes (:meth:`serialize`, :meth:`from_bytes`, format
    version 1) or as their parts (the constructor). The signature is checked
    when the bundle is processed (:meth:`ratchetkit.Store.process_bundle`)
    or by :meth:`verify_signature`. Immutable; may be shared between
    threads.
    """

    __slots__ = ()
    _free = lib.rk_bundle_free

    def __init__(
        self,
        registration_id: int,
        device_id: int,
        identity_key: PublicKey,
        signed_prekey_id: int,
        signed_prekey: PublicKey,
        signed_prekey_signature: bytes,
        prekey: Optional[PreKey] = None,
    ) -> None:
        """Builds a bundle from its parts (for example as fetched from a server).

        ``prekey`` is the optional one-time prekey, a :class:`PreKey` or an
        ``(id, key)`` pair. Raises :class:`InvalidBundleError` for a device id
        0, prekey ids outside 1..16777215 or a signature that is not 64
        bytes.
        """
        signature = as_bytes(signed_prekey_signature, "signature")
        prekey_id, prekey_key = (0, None) if prekey is None else prekey
        ptr = BundleP()
        with identity_key._h as identity, signed_prekey._h as signed, (
            _NO_HANDLE if prekey_key is None else prekey_key._h
        ) as one_time:
            lib.rk_bundle_new(
                registration_id,
                device_id,
                identity,
                signed_prekey_id,
                signed,
                signature,
                len(signature),
                prekey_id,
                one_time,
                byref(ptr),
            )
        self._adopt(ptr)

    @classmethod
    def from_bytes(cls, data: bytes) -> "Bundle":
        """Parses serialized bundle bytes strictly.

        Raises :class:`InvalidBundleError` (malformed) or
        :class:`InvalidKeyError` (a key of the wrong length or type).
        """
        data = as_bytes(data, "bundle")
        ptr = BundleP()
        lib.rk_bundle_deserialize(data, len(data), byref(ptr))
        return cls._wrap(ptr)

    def serialize(self) -> bytes:
        """The bundle as bytes (format version 1), for :meth:`from_bytes`."""
        out = rk_bytes()
        with self._h as bundle:
            lib.rk_bundle_serialize(bundle, byref(out))
        return take_bytes(out)

    __bytes__ = serialize

    def _u32(self, func: object) -> int:
        value = c_uint32()
        with self._h as bundle:
            func(bundle, byref(value))  # type: ignore[operator]
        return value.value

    @property
    def registration_id(self) -> int:
        """The registration id of the bundle's owner."""
        return self._u32(lib.rk_bundle_registration_id)

    @property
    def device_id(self) -> int:
        """The device id of the bundle's owner."""
        return self._u32(lib.rk_bundle_device_id)

    @property
    def signed_prekey_id(self) -> int:
        """The signed prekey's id."""
        return self._u32(lib.rk_bundle_signed_prekey_id)

    @property
    def identity_key(self) -> PublicKey:
        """The owner's identity key."""
        ptr = PublicKeyP()
        with self._h as bundle:
            lib.rk_bundle_identity_key(bundle, byref(ptr))
        return PublicKey._wrap(ptr)

    @property
    def signed_prekey(self) -> PublicKey:
        """The signed prekey."""
        ptr = PublicKeyP()
        with self._h as bundle:
            lib.rk_bundle_signed_prekey(bundle, byref(ptr))
        return PublicKey._wrap(ptr)

    @property
    def signed_prekey_signature(self) -> bytes:
        """The signed prekey's 64-byte XEdDSA signature."""
        buf = create_string_buffer(SIGNATURE_LEN)
        with self._h as bundle:
            lib.rk_bundle_signed_prekey_signature(bundle, buf, SIGNATURE_LEN)
        return buf.raw

    @property
    def prekey(self) -> Optional[PreKey]:
        """The one-time prekey, or None if the bundle has none."""
        has = c_bool()
        prekey_id = c_uint32()
        ptr = PublicKeyP()
        with self._h as bundle:
            lib.rk_bundle_prekey(bundle, byref(has), byref(prekey_id), byref(ptr))
        if not has.value:
            return None
        return PreKey(prekey_id.value, PublicKey._wrap(ptr))

    def verify_signature(self) -> bool:
        """Whether the signed prekey's signature verifies under the identity key."""
        valid = c_bool()
        with self._h as bundle:
            lib.rk_bundle_verify_signature(bundle, byref(valid))
        return valid.value

    def __repr__(self) -> str:
        if self.closed:
            return "<Bundle (closed)>"
        prekey = self.prekey
        return (
            f"<Bundle registration_id={self.registration_id} device_id={self.device_id} "
            f"signed_prekey_id={self.signed_prekey_id} "
            f"prekey_id={prekey.id if prekey else None}>"
        )

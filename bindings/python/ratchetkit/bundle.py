"""Prekey bundles: what a device publishes so that others can reach it."""

from __future__ import annotations

from contextlib import nullcontext
from ctypes import byref, c_bool, c_uint32, create_string_buffer
from typing import NamedTuple, Optional, Tuple, Union

from ._handle import Handle
from ._lib import BundleP, PublicKeyP, as_bytes, lib, rk_bytes, take_bytes
from .identity import SIGNATURE_LEN, PublicKey

__all__ = ["Bundle", "PreKey", "KyberPreKey", "KEM_PUBLIC_KEY_LEN"]

#: Length of a serialized Kyber1024 public key: the type byte ``0x08``
#: then 1568 bytes (``RK_KEM_PUBLIC_KEY_LEN``).
KEM_PUBLIC_KEY_LEN = 1569

#: Stands for an absent optional handle argument (a NULL pointer).
_NO_HANDLE = nullcontext(None)


class PreKey(NamedTuple):
    """A one-time prekey: its id (1..16777215) and public key."""

    id: int
    key: PublicKey


class KyberPreKey(NamedTuple):
    """A signed Kyber1024 prekey, as uploaded and as put in a bundle.

    ``id`` is in 1..16777215; ``key`` is the serialized public key
    (:data:`KEM_PUBLIC_KEY_LEN` bytes, type byte ``0x08``); ``signature`` is
    the identity key's 64-byte XEdDSA signature over ``key``.
    """

    id: int
    key: bytes
    signature: bytes

    def __repr__(self) -> str:
        return (
            f"KyberPreKey(id={self.id}, key=<{len(self.key)} bytes>, "
            f"signature={self.signature.hex()})"
        )


#: What the constructor takes for the Kyber prekey: a :class:`KyberPreKey`
#: or an ``(id, key, signature)`` triple.
KyberPreKeyLike = Union[KyberPreKey, Tuple[int, bytes, bytes]]


class Bundle(Handle):
    """A prekey bundle: registration id, device id, identity key, signed
    prekey with its signature, optionally a one-time prekey, and optionally
    a signed Kyber1024 prekey.

    A bundle with a Kyber prekey starts a version-4 (PQXDH) session, the
    default; one without starts a version-3 (X3DH) session, which a store
    refuses unless its policy allows it
    (:attr:`ratchetkit.Store.policy`).

    Bundles travel as bytes (:meth:`serialize`, :meth:`from_bytes`, format
    version 2 with a Kyber prekey, 1 without) or as their parts (the
    constructor). The signatures are checked when the bundle is processed
    (:meth:`ratchetkit.Store.process_bundle`) or by
    :meth:`verify_signature`. Immutable; may be shared between threads.
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
        prekey: Optional[Union[PreKey, Tuple[int, PublicKey]]] = None,
        kyber_prekey: Optional[KyberPreKeyLike] = None,
    ) -> None:
        """Builds a bundle from its parts (for example as fetched from a server).

        ``prekey`` is the optional one-time prekey, a :class:`PreKey` or an
        ``(id, key)`` pair. ``kyber_prekey`` is the signed Kyber prekey, a
        :class:`KyberPreKey` or an ``(id, key, signature)`` triple of an int
        and two bytes-like objects: with it the bundle starts version-4
        (PQXDH) sessions, without it version-3 (X3DH) ones.

        Raises :class:`InvalidBundleError` for a device id 0, prekey ids
        outside 1..16777215 or a signature that is not 64 bytes, and
        :class:`InvalidKeyError` for a Kyber key that is not
        :data:`KEM_PUBLIC_KEY_LEN` bytes of type ``0x08`` (ML-KEM's ``0x0A``
        is refused) or not well formed.
        """
        signature = as_bytes(signed_prekey_signature, "signature")
        prekey_id, prekey_key = (0, None) if prekey is None else prekey
        ptr = BundleP()
        if kyber_prekey is None:
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
        else:
            kyber_id, kyber_key, kyber_signature = kyber_prekey
            kyber_key = as_bytes(kyber_key, "Kyber prekey")
            kyber_signature = as_bytes(kyber_signature, "Kyber prekey signature")
            with identity_key._h as identity, signed_prekey._h as signed, (
                _NO_HANDLE if prekey_key is None else prekey_key._h
            ) as one_time:
                lib.rk_bundle_new_with_kyber_prekey(
                    registration_id,
                    device_id,
                    identity,
                    signed_prekey_id,
                    signed,
                    signature,
                    len(signature),
                    prekey_id,
                    one_time,
                    kyber_id,
                    kyber_key,
                    len(kyber_key),
                    kyber_signature,
                    len(kyber_signature),
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
        """The bundle as bytes (format version 2 with a Kyber prekey, 1
        without), for :meth:`from_bytes`."""
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

    @property
    def has_kyber_prekey(self) -> bool:
        """Whether the bundle carries a Kyber prekey (and so starts version-4,
        PQXDH, sessions)."""
        has = c_bool()
        with self._h as bundle:
            lib.rk_bundle_has_kyber_prekey(bundle, byref(has))
        return has.value

    @property
    def session_version(self) -> int:
        """The version of the sessions this bundle starts: 4 (PQXDH) with a
        Kyber prekey, 3 (X3DH) without."""
        return 4 if self.has_kyber_prekey else 3

    @property
    def kyber_prekey_id(self) -> Optional[int]:
        """The Kyber prekey's id, or None if the bundle has no Kyber prekey."""
        has = c_bool()
        value = c_uint32()
        with self._h as bundle:
            lib.rk_bundle_has_kyber_prekey(bundle, byref(has))
            if not has.value:
                return None
            lib.rk_bundle_kyber_prekey_id(bundle, byref(value))
        return value.value

    @property
    def kyber_prekey(self) -> Optional[bytes]:
        """The Kyber prekey's serialized public key (:data:`KEM_PUBLIC_KEY_LEN`
        bytes, ``0x08`` first), or None if the bundle has no Kyber prekey."""
        has = c_bool()
        buf = create_string_buffer(KEM_PUBLIC_KEY_LEN)
        with self._h as bundle:
            lib.rk_bundle_has_kyber_prekey(bundle, byref(has))
            if not has.value:
                return None
            lib.rk_bundle_kyber_prekey(bundle, buf, KEM_PUBLIC_KEY_LEN)
        return buf.raw

    @property
    def kyber_prekey_signature(self) -> Optional[bytes]:
        """The Kyber prekey's 64-byte signature by the identity key, or None
        if the bundle has no Kyber prekey."""
        has = c_bool()
        buf = create_string_buffer(SIGNATURE_LEN)
        with self._h as bundle:
            lib.rk_bundle_has_kyber_prekey(bundle, byref(has))
            if not has.value:
                return None
            lib.rk_bundle_kyber_prekey_signature(bundle, buf, SIGNATURE_LEN)
        return buf.raw

    @property
    def kyber_prekey_record(self) -> Optional[KyberPreKey]:
        """The Kyber prekey as a :class:`KyberPreKey` (id, key, signature),
        or None if the bundle has none: what the constructor takes back."""
        has = c_bool()
        value = c_uint32()
        key = create_string_buffer(KEM_PUBLIC_KEY_LEN)
        signature = create_string_buffer(SIGNATURE_LEN)
        with self._h as bundle:
            lib.rk_bundle_has_kyber_prekey(bundle, byref(has))
            if not has.value:
                return None
            lib.rk_bundle_kyber_prekey_id(bundle, byref(value))
            lib.rk_bundle_kyber_prekey(bundle, key, KEM_PUBLIC_KEY_LEN)
            lib.rk_bundle_kyber_prekey_signature(bundle, signature, SIGNATURE_LEN)
        return KyberPreKey(value.value, key.raw, signature.raw)

    def verify_signature(self) -> bool:
        """Whether the bundle's signatures verify under its identity key: the
        signed prekey's, and the Kyber prekey's if it has one."""
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
            f"prekey_id={prekey.id if prekey else None} "
            f"kyber_prekey_id={self.kyber_prekey_id}>"
        )

"""Keys: :class:`PublicKey` and :class:`IdentityKeyPair`."""

from __future__ import annotations

from ctypes import byref, c_bool, create_string_buffer
from typing import Any, Optional

from ._handle import Handle
from ._lib import IdentityKeyPairP, PublicKeyP, as_bytes, lib, rk_bytes, take_bytes

__all__ = ["PublicKey", "IdentityKeyPair", "PUBLIC_KEY_LEN", "PRIVATE_KEY_LEN", "SIGNATURE_LEN"]

#: Length of a serialized public key (``0x05`` then 32 bytes).
PUBLIC_KEY_LEN = 33
#: Length of a private key.
PRIVATE_KEY_LEN = 32
#: Length of an XEdDSA signature.
SIGNATURE_LEN = 64


class PublicKey(Handle):
    """A Curve25519 public key: 33 bytes, ``0x05`` then the 32-byte key.

    Immutable; may be shared between threads. Equality is constant-time
    and hashing uses the serialized bytes.

    >>> key = PublicKey(bytes.fromhex("05" + "09" * 32))
    >>> bytes(key) == bytes.fromhex("05" + "09" * 32)
    True
    """

    __slots__ = ("_raw",)
    _free = lib.rk_public_key_free
    _raw: Optional[bytes]

    def __init__(self, data: bytes) -> None:
        """Parses a serialized public key (:class:`InvalidKeyError` if malformed)."""
        data = as_bytes(data, "public key")
        ptr = PublicKeyP()
        lib.rk_public_key_deserialize(data, len(data), byref(ptr))
        self._adopt(ptr)
        self._raw = None  # serialized by the library on first use

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicKey":
        """Parses a serialized public key (:class:`InvalidKeyError` if malformed)."""
        return cls(data)

    @classmethod
    def _wrap(cls, ptr: Any) -> "PublicKey":
        self = super()._wrap(ptr)
        self._raw = None
        return self

    def serialize(self) -> bytes:
        """The 33 serialized bytes."""
        raw = self._raw
        if raw is None:
            buf = create_string_buffer(PUBLIC_KEY_LEN)
            with self._h as key:
                lib.rk_public_key_serialize(key, buf, PUBLIC_KEY_LEN)
            raw = self._raw = buf.raw
        else:
            self._check_open()
        return raw

    __bytes__ = serialize

    def verify_signature(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is an XEdDSA signature of ``message`` by this key."""
        message = as_bytes(message, "message")
        signature = as_bytes(signature, "signature")
        valid = c_bool()
        with self._h as key:
            lib.rk_public_key_verify_signature(
                key, message, len(message), signature, len(signature), byref(valid)
            )
        return valid.value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        equal = c_bool()
        with self._h as key, other._h as other_key:
            lib.rk_public_key_equals(key, other_key, byref(equal))
        return equal.value

    def __hash__(self) -> int:
        return hash(self.serialize())

    def __repr__(self) -> str:
        if self.closed:
            return "<PublicKey (closed)>"
        return f"PublicKey({self.serialize().hex()})"


class IdentityKeyPair(Handle):
    """A long-term identity key pair.

    The private key stays inside the library (zeroized when the handle is
    freed) unless :meth:`private_bytes` is called. Immutable; may be shared
    between threads.
    """

    __slots__ = ()
    _free = lib.rk_identity_keypair_free

    @classmethod
    def generate(cls) -> "IdentityKeyPair":
        """A new random identity key pair."""
        ptr = IdentityKeyPairP()
        lib.rk_identity_keypair_generate(byref(ptr))
        return cls._wrap(ptr)

    @classmethod
    def from_private_bytes(cls, private_key: bytes) -> "IdentityKeyPair":
        """Rebuilds a key pair from its 32 private key bytes (:meth:`private_bytes`)."""
        private_key = as_bytes(private_key, "private key")
        ptr = IdentityKeyPairP()
        lib.rk_identity_keypair_deserialize(private_key, len(private_key), byref(ptr))
        return cls._wrap(ptr)

    def private_bytes(self) -> bytes:
        """The 32 private key bytes: a secret (Python cannot zeroize the copy)."""
        out = rk_bytes()
        with self._h as pair:
            lib.rk_identity_keypair_serialize(pair, byref(out))
        return take_bytes(out)

    @property
    def public_key(self) -> PublicKey:
        """The public identity key."""
        ptr = PublicKeyP()
        with self._h as pair:
            lib.rk_identity_keypair_public_key(pair, byref(ptr))
        return PublicKey._wrap(ptr)

    def sign(self, message: bytes) -> bytes:
        """A 64-byte XEdDSA signature of ``message`` (randomized)."""
        message = as_bytes(message, "message")
        buf = create_string_buffer(SIGNATURE_LEN)
        with self._h as pair:
            lib.rk_identity_keypair_sign(pair, message, len(message), buf, SIGNATURE_LEN)
        return buf.raw

    def __repr__(self) -> str:
        if self.closed:
            return "<IdentityKeyPair (closed)>"
        return f"<IdentityKeyPair public={self.public_key.serialize().hex()}>"

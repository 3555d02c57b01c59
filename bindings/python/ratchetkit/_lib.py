"""Finding and loading ``libratchetkit``, and declaring its C functions.

The library is looked for, in this order:

1. the path in the environment variable ``RATCHETKIT_LIBRARY``, if set (an
   explicit choice: when it does not load, nothing else is tried);
2. the copy bundled inside this package (``ratchetkit/libratchetkit.so``,
   put there when the wheel is built);
3. the system loader, through ``ctypes.util.find_library("ratchetkit")``.

Nothing is ever downloaded or built at import time.

Every C function is declared once, in :data:`FUNCTIONS`: its ``restype``,
its ``argtypes`` and its ``errcheck``. Handles are typed pointers to opaque
structures (``POINTER(rk_store)`` and so on), so ctypes itself refuses a
handle of the wrong type and never converts a pointer through a Python int.
Functions returning ``rk_status`` raise the mapped :class:`RatchetkitError`
subclass through their ``errcheck``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from ctypes import (
    POINTER,
    Structure,
    byref,
    c_bool,
    c_char,
    c_char_p,
    c_size_t,
    c_uint32,
    c_uint64,
    create_string_buffer,
)
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._errors import _DESCRIPTIONS, STATUS_CODES, error_for

#: The environment variable naming the library to load.
ENV_VAR = "RATCHETKIT_LIBRARY"
#: The ABI version this binding is written for (``RK_ABI_VERSION``).
ABI_VERSION = 0

if sys.platform == "darwin":  # pragma: no cover - Linux is what is tested
    _BUNDLED_NAME = "libratchetkit.dylib"
elif sys.platform == "win32":  # pragma: no cover
    _BUNDLED_NAME = "ratchetkit.dll"
else:
    _BUNDLED_NAME = "libratchetkit.so"

# ---------------------------------------------------------------------------
# C types


class rk_bytes(Structure):
    """``struct rk_bytes``: a library-owned buffer.

    ``ptr`` is a ``char *`` so that ``out.ptr[:out.len]`` copies the bytes
    out in one step (the fastest copy ctypes offers).
    """

    _fields_ = [("ptr", POINTER(c_char)), ("len", c_size_t)]


class rk_store(Structure):
    """Opaque ``struct rk_store``."""


class rk_bundle(Structure):
    """Opaque ``struct rk_bundle``."""


class rk_public_key(Structure):
    """Opaque ``struct rk_public_key``."""


class rk_identity_keypair(Structure):
    """Opaque ``struct rk_identity_keypair``."""


class rk_fingerprint(Structure):
    """Opaque ``struct rk_fingerprint``."""


class rk_pending_decrypt(Structure):
    """Opaque ``struct rk_pending_decrypt``."""


class rk_store_options(Structure):
    """``struct rk_store_options``: how ``rk_store_open`` opens a durable store."""

    _fields_ = [
        ("create_device_id", c_uint32),
        ("durability", c_uint32),
        ("busy_timeout_ms", c_uint32),
    ]


class rk_prekey_policy(Structure):
    """``struct rk_prekey_policy``: when to refill and rotate prekeys."""

    _fields_ = [
        ("refill_below", c_uint32),
        ("rotate_after_ms", c_uint64),
        ("grace_ms", c_uint64),
    ]


class rk_prekey_status(Structure):
    """``struct rk_prekey_status``: what a store's prekeys need."""

    _fields_ = [
        ("prekeys_held", c_uint64),
        ("kyber_prekeys_held", c_uint64),
        ("signed_prekey_age_ms", c_uint64),
        ("last_resort_age_ms", c_uint64),
        ("expired", c_uint64),
        ("refill", c_bool),
        ("rotate", c_bool),
    ]


StoreP = POINTER(rk_store)
BundleP = POINTER(rk_bundle)
PublicKeyP = POINTER(rk_public_key)
IdentityKeyPairP = POINTER(rk_identity_keypair)
FingerprintP = POINTER(rk_fingerprint)
PendingDecryptP = POINTER(rk_pending_decrypt)
StoreOptionsP = POINTER(rk_store_options)

rk_status = c_uint32
_in_bytes = c_char_p  # const uint8_t * / const char * (borrowed input)
_out_buf = POINTER(c_char)  # uint8_t * / char * (caller buffer)
_out_bytes = POINTER(rk_bytes)

RK_STATUS_OK = STATUS_CODES["RK_STATUS_OK"]
RK_STATUS_BUFFER_TOO_SMALL = STATUS_CODES["RK_STATUS_BUFFER_TOO_SMALL"]

# ---------------------------------------------------------------------------
# Loading


def _load() -> Tuple[ctypes.CDLL, str, str]:
    """Loads the library: (handle, path, how it was found)."""
    tried: List[str] = []
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return ctypes.CDLL(env), env, ENV_VAR
        except OSError as e:
            raise ImportError(
                f"ratchetkit: ${ENV_VAR} is set to {env!r}, which does not load: {e}. "
                f"Unset it to use the library bundled in the package or the system one."
            ) from e
    tried.append(f"${ENV_VAR} is not set")

    bundled = Path(__file__).resolve().parent / _BUNDLED_NAME
    if bundled.is_file():
        try:
            return ctypes.CDLL(str(bundled)), str(bundled), "bundled"
        except OSError as e:
            tried.append(f"the bundled {bundled} does not load ({e})")
    else:
        tried.append(f"no bundled {bundled}")

    found = ctypes.util.find_library("ratchetkit")
    if found:
        try:
            return ctypes.CDLL(found), found, "system"
        except OSError as e:
            tried.append(f"the system's {found} does not load ({e})")
    else:
        tried.append('ctypes.util.find_library("ratchetkit") found nothing')

    raise ImportError(
        "ratchetkit: cannot find the native library libratchetkit ("
        + "; ".join(tried)
        + f"). Install the package with pip (it builds and bundles the library), "
        f"set ${ENV_VAR} to the path of libratchetkit.so, or install the "
        f"library system-wide (make install)."
    )


lib, LIBRARY_PATH, LIBRARY_SOURCE = _load()

# ---------------------------------------------------------------------------
# Errors


def last_error_message() -> str:
    """This thread's detail message for the last failed call ('' if none)."""
    length = c_size_t(0)
    buf = create_string_buffer(256)
    status = lib.rk_last_error_message(buf, len(buf), byref(length))
    if status == RK_STATUS_BUFFER_TOO_SMALL:
        buf = create_string_buffer(length.value + 1)
        status = lib.rk_last_error_message(buf, len(buf), byref(length))
    if status != RK_STATUS_OK:
        return ""
    return buf.raw[: length.value].decode("utf-8", "replace")


def _check(status: int, func: Any, args: Any) -> int:
    """errcheck of every status-returning function: raise on failure."""
    if status:
        raise error_for(status, last_error_message())
    return status


def _utf8(result: Optional[bytes], func: Any, args: Any) -> str:
    """errcheck of the functions returning a static C string."""
    return result.decode("utf-8") if result is not None else ""


# ---------------------------------------------------------------------------
# The table: name, restype, argtypes, errcheck. Every function of the C API,
# in the order of ratchetkit.h. ``None`` as errcheck: no status to check
# (void, a plain value, or rk_last_error_message, which is read by hand).

_Decl = Tuple[str, Any, Sequence[Any], Optional[Callable[..., Any]]]

FUNCTIONS: Tuple[_Decl, ...] = (
    ("rk_version", c_char_p, (), _utf8),
    ("rk_abi_version", c_uint32, (), None),
    ("rk_last_error_message", rk_status, (_out_buf, c_size_t, POINTER(c_size_t)), None),
    # bundle
    (
        "rk_bundle_new",
        rk_status,
        (
            c_uint32,
            c_uint32,
            PublicKeyP,
            c_uint32,
            PublicKeyP,
            _in_bytes,
            c_size_t,
            c_uint32,
            PublicKeyP,
            POINTER(BundleP),
        ),
        _check,
    ),
    (
        "rk_bundle_new_with_kyber_prekey",
        rk_status,
        (
            c_uint32,
            c_uint32,
            PublicKeyP,
            c_uint32,
            PublicKeyP,
            _in_bytes,
            c_size_t,
            c_uint32,
            PublicKeyP,
            c_uint32,
            _in_bytes,
            c_size_t,
            _in_bytes,
            c_size_t,
            POINTER(BundleP),
        ),
        _check,
    ),
    ("rk_bundle_serialize", rk_status, (BundleP, _out_bytes), _check),
    ("rk_bundle_deserialize", rk_status, (_in_bytes, c_size_t, POINTER(BundleP)), _check),
    ("rk_bundle_registration_id", rk_status, (BundleP, POINTER(c_uint32)), _check),
    ("rk_bundle_device_id", rk_status, (BundleP, POINTER(c_uint32)), _check),
    ("rk_bundle_signed_prekey_id", rk_status, (BundleP, POINTER(c_uint32)), _check),
    ("rk_bundle_identity_key", rk_status, (BundleP, POINTER(PublicKeyP)), _check),
    ("rk_bundle_signed_prekey", rk_status, (BundleP, POINTER(PublicKeyP)), _check),
    ("rk_bundle_signed_prekey_signature", rk_status, (BundleP, _out_buf, c_size_t), _check),
    (
        "rk_bundle_prekey",
        rk_status,
        (BundleP, POINTER(c_bool), POINTER(c_uint32), POINTER(PublicKeyP)),
        _check,
    ),
    ("rk_bundle_has_kyber_prekey", rk_status, (BundleP, POINTER(c_bool)), _check),
    ("rk_bundle_kyber_prekey_id", rk_status, (BundleP, POINTER(c_uint32)), _check),
    ("rk_bundle_kyber_prekey", rk_status, (BundleP, _out_buf, c_size_t), _check),
    ("rk_bundle_kyber_prekey_signature", rk_status, (BundleP, _out_buf, c_size_t), _check),
    ("rk_bundle_verify_signature", rk_status, (BundleP, POINTER(c_bool)), _check),
    ("rk_bundle_free", None, (BundleP,), None),
    ("rk_bytes_free", None, (rk_bytes,), None),
    # fingerprint
    (
        "rk_fingerprint_new",
        rk_status,
        (
            c_uint32,
            c_uint32,
            _in_bytes,
            c_size_t,
            PublicKeyP,
            _in_bytes,
            c_size_t,
            PublicKeyP,
            POINTER(FingerprintP),
        ),
        _check,
    ),
    ("rk_fingerprint_displayable", rk_status, (FingerprintP, _out_buf, c_size_t), _check),
    ("rk_fingerprint_scannable", rk_status, (FingerprintP, _out_bytes), _check),
    (
        "rk_fingerprint_compare",
        rk_status,
        (FingerprintP, _in_bytes, c_size_t, POINTER(c_bool)),
        _check,
    ),
    ("rk_fingerprint_qr_svg", rk_status, (FingerprintP, _out_bytes), _check),
    ("rk_fingerprint_qr_text", rk_status, (FingerprintP, _out_bytes), _check),
    ("rk_fingerprint_free", None, (FingerprintP,), None),
    # public key
    ("rk_public_key_deserialize", rk_status, (_in_bytes, c_size_t, POINTER(PublicKeyP)), _check),
    ("rk_public_key_serialize", rk_status, (PublicKeyP, _out_buf, c_size_t), _check),
    ("rk_public_key_equals", rk_status, (PublicKeyP, PublicKeyP, POINTER(c_bool)), _check),
    (
        "rk_public_key_verify_signature",
        rk_status,
        (PublicKeyP, _in_bytes, c_size_t, _in_bytes, c_size_t, POINTER(c_bool)),
        _check,
    ),
    ("rk_public_key_free", None, (PublicKeyP,), None),
    # identity key pair
    ("rk_identity_keypair_generate", rk_status, (POINTER(IdentityKeyPairP),), _check),
    (
        "rk_identity_keypair_deserialize",
        rk_status,
        (_in_bytes, c_size_t, POINTER(IdentityKeyPairP)),
        _check,
    ),
    ("rk_identity_keypair_serialize", rk_status, (IdentityKeyPairP, _out_bytes), _check),
    (
        "rk_identity_keypair_public_key",
        rk_status,
        (IdentityKeyPairP, POINTER(PublicKeyP)),
        _check,
    ),
    (
        "rk_identity_keypair_sign",
        rk_status,
        (IdentityKeyPairP, _in_bytes, c_size_t, _out_buf, c_size_t),
        _check,
    ),
    ("rk_identity_keypair_free", None, (IdentityKeyPairP,), None),
    # two-phase decrypt (durable stores)
    (
        "rk_store_decrypt_pending",
        rk_status,
        (StoreP, _in_bytes, c_uint32, c_uint32, _in_bytes, c_size_t, POINTER(PendingDecryptP)),
        _check,
    ),
    ("rk_pending_decrypt_plaintext", rk_status, (PendingDecryptP, _out_bytes), _check),
    ("rk_pending_decrypt_commit", rk_status, (PendingDecryptP,), _check),
    ("rk_pending_decrypt_free", None, (PendingDecryptP,), None),
    ("rk_status_str", c_char_p, (c_uint32,), _utf8),
    # store
    ("rk_store_new", rk_status, (c_uint32, POINTER(StoreP)), _check),
    (
        "rk_store_new_with_identity",
        rk_status,
        (IdentityKeyPairP, c_uint32, c_uint32, POINTER(StoreP)),
        _check,
    ),
    ("rk_store_free", None, (StoreP,), None),
    ("rk_store_identity_key", rk_status, (StoreP, POINTER(PublicKeyP)), _check),
    ("rk_store_identity_keypair", rk_status, (StoreP, POINTER(IdentityKeyPairP)), _check),
    ("rk_store_registration_id", rk_status, (StoreP, POINTER(c_uint32)), _check),
    ("rk_store_device_id", rk_status, (StoreP, POINTER(c_uint32)), _check),
    ("rk_store_trusted_identity", rk_status, (StoreP, _in_bytes, POINTER(PublicKeyP)), _check),
    (
        "rk_store_approve_identity",
        rk_status,
        (StoreP, _in_bytes, PublicKeyP, POINTER(c_bool)),
        _check,
    ),
    (
        "rk_store_safety_number",
        rk_status,
        (
            StoreP,
            _in_bytes,
            _in_bytes,
            c_size_t,
            _in_bytes,
            c_size_t,
            c_uint32,
            c_uint32,
            POINTER(FingerprintP),
        ),
        _check,
    ),
    ("rk_store_save", rk_status, (StoreP, _out_bytes), _check),
    ("rk_store_restore", rk_status, (_in_bytes, c_size_t, POINTER(StoreP)), _check),
    (
        "rk_store_save_encrypted",
        rk_status,
        (StoreP, _in_bytes, c_size_t, _out_bytes),
        _check,
    ),
    (
        "rk_store_restore_encrypted",
        rk_status,
        (_in_bytes, c_size_t, _in_bytes, c_size_t, POINTER(StoreP)),
        _check,
    ),
    # durable stores
    ("rk_store_options_default", rk_store_options, (), None),
    (
        "rk_store_open",
        rk_status,
        (_in_bytes, _in_bytes, c_size_t, StoreOptionsP, POINTER(StoreP)),
        _check,
    ),
    (
        "rk_store_import",
        rk_status,
        (_in_bytes, _in_bytes, c_size_t, StoreOptionsP, StoreP, POINTER(StoreP)),
        _check,
    ),
    (
        "rk_store_rekey",
        rk_status,
        (StoreP, _in_bytes, c_size_t, _in_bytes, c_size_t),
        _check,
    ),
    ("rk_store_is_durable", rk_status, (StoreP, POINTER(c_bool)), _check),
    # key directory
    ("rk_prekey_policy_default", rk_prekey_policy, (), None),
    ("rk_store_prepare_upload", rk_status, (StoreP, c_uint32, c_uint64, _out_bytes), _check),
    (
        "rk_store_prekey_status",
        rk_status,
        (
            StoreP,
            c_uint64,
            ctypes.c_int64,
            POINTER(rk_prekey_policy),
            POINTER(rk_prekey_status),
        ),
        _check,
    ),
    (
        "rk_store_rotate_prekeys",
        rk_status,
        (StoreP, c_uint64, POINTER(rk_prekey_policy), POINTER(c_bool), POINTER(c_uint32)),
        _check,
    ),
    ("rk_bundles_json_count", rk_status, (_in_bytes, c_size_t, POINTER(c_size_t)), _check),
    (
        "rk_bundle_from_json",
        rk_status,
        (_in_bytes, c_size_t, c_size_t, POINTER(BundleP)),
        _check,
    ),
    (
        "rk_store_sign_request",
        rk_status,
        (
            StoreP,
            _in_bytes,
            c_uint32,
            _in_bytes,
            _in_bytes,
            _in_bytes,
            c_size_t,
            c_uint64,
            _out_bytes,
        ),
        _check,
    ),
    (
        "rk_store_generate_signed_prekey",
        rk_status,
        (StoreP, c_uint64, POINTER(c_uint32)),
        _check,
    ),
    ("rk_store_remove_signed_prekey", rk_status, (StoreP, c_uint32), _check),
    ("rk_store_generate_prekeys", rk_status, (StoreP, c_uint32, _out_bytes), _check),
    ("rk_store_prekey_count", rk_status, (StoreP, POINTER(c_size_t)), _check),
    (
        "rk_store_generate_kyber_prekeys",
        rk_status,
        (StoreP, c_uint32, c_uint64, _out_bytes),
        _check,
    ),
    (
        "rk_store_generate_last_resort_kyber_prekey",
        rk_status,
        (StoreP, c_uint64, POINTER(c_uint32)),
        _check,
    ),
    ("rk_store_kyber_prekey_count", rk_status, (StoreP, POINTER(c_size_t)), _check),
    ("rk_store_kyber_prekey", rk_status, (StoreP, c_uint32, _out_buf, c_size_t), _check),
    (
        "rk_store_last_resort_kyber_prekey_id",
        rk_status,
        (StoreP, POINTER(c_bool), POINTER(c_uint32)),
        _check,
    ),
    ("rk_store_remove_kyber_prekey", rk_status, (StoreP, c_uint32), _check),
    (
        "rk_store_create_bundle",
        rk_status,
        (StoreP, c_uint32, c_uint64, POINTER(BundleP)),
        _check,
    ),
    (
        "rk_store_create_bundle_with",
        rk_status,
        (StoreP, c_uint32, c_uint32, c_uint64, POINTER(BundleP)),
        _check,
    ),
    ("rk_store_set_policy", rk_status, (StoreP, c_uint32, c_uint32), _check),
    (
        "rk_store_policy",
        rk_status,
        (StoreP, POINTER(c_uint32), POINTER(c_uint32)),
        _check,
    ),
    ("rk_store_set_spqr_policy", rk_status, (StoreP, c_uint32), _check),
    ("rk_store_spqr_policy", rk_status, (StoreP, POINTER(c_uint32)), _check),
    (
        "rk_store_session_has_spqr",
        rk_status,
        (StoreP, _in_bytes, c_uint32, POINTER(c_uint32), POINTER(c_uint64)),
        _check,
    ),
    ("rk_store_process_bundle", rk_status, (StoreP, _in_bytes, c_uint32, BundleP), _check),
    (
        "rk_store_has_session",
        rk_status,
        (StoreP, _in_bytes, c_uint32, POINTER(c_bool)),
        _check,
    ),
    (
        "rk_store_session_version",
        rk_status,
        (StoreP, _in_bytes, c_uint32, POINTER(c_uint32)),
        _check,
    ),
    ("rk_store_session_count", rk_status, (StoreP, POINTER(c_size_t)), _check),
    (
        "rk_store_remove_session",
        rk_status,
        (StoreP, _in_bytes, c_uint32, POINTER(c_bool)),
        _check,
    ),
    (
        "rk_store_encrypt",
        rk_status,
        (StoreP, _in_bytes, c_uint32, _in_bytes, c_size_t, POINTER(c_uint32), _out_bytes),
        _check,
    ),
    (
        "rk_store_decrypt",
        rk_status,
        (StoreP, _in_bytes, c_uint32, c_uint32, _in_bytes, c_size_t, _out_bytes),
        _check,
    ),
    (
        "rk_store_decrypt_prekey_message",
        rk_status,
        (StoreP, _in_bytes, c_uint32, _in_bytes, c_size_t, _out_bytes),
        _check,
    ),
    (
        "rk_store_decrypt_whisper_message",
        rk_status,
        (StoreP, _in_bytes, c_uint32, _in_bytes, c_size_t, _out_bytes),
        _check,
    ),
)


def _declare() -> None:
    missing = []
    for name, restype, argtypes, errcheck in FUNCTIONS:
        try:
            func = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        func.restype = restype
        func.argtypes = list(argtypes)
        if errcheck is not None:
            func.errcheck = errcheck
    if missing:
        raise ImportError(
            f"ratchetkit: the library at {LIBRARY_PATH} lacks {', '.join(missing)}: "
            f"it is older than this binding"
        )
    abi = lib.rk_abi_version()
    if abi != ABI_VERSION:
        raise ImportError(
            f"ratchetkit: the library at {LIBRARY_PATH} has ABI version {abi}, "
            f"this binding needs {ABI_VERSION}"
        )
    for code in STATUS_CODES.values():
        _DESCRIPTIONS[code] = lib.rk_status_str(code)


_declare()

# ---------------------------------------------------------------------------
# Helpers shared by the wrapper modules

_bytes_free = lib.rk_bytes_free
_DECLARED = {name: (restype, argtypes) for name, restype, argtypes, _ in FUNCTIONS}


def unchecked(name: str) -> Any:
    """A second binding of ``name`` with the table's types but no errcheck.

    For the per-message path only (encrypt and decrypt), where the caller
    tests the status inline and calls :func:`raise_status` on failure: that
    saves the Python-level errcheck call (about 0.2 us per C call).
    """
    restype, argtypes = _DECLARED[name]
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, lib))


def raise_status(status: int) -> None:
    """Raises the exception for a failed call's ``status`` (same thread)."""
    raise error_for(status, last_error_message())


def take_bytes(out: rk_bytes) -> bytes:
    """Copies an ``rk_bytes`` the library returned into ``bytes`` and frees it."""
    try:
        data: bytes = out.ptr[: out.len]
        return data
    finally:
        _bytes_free(out)


def as_bytes(data: Any, what: str = "data") -> bytes:
    """``data`` (any bytes-like object) as ``bytes``, for a ``const uint8_t *``."""
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        raise TypeError(f"{what} must be bytes-like, not str")
    try:
        return bytes(memoryview(data))
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, not {type(data).__name__}") from None


_NAMES: Dict[str, bytes] = {}


def encode_name(name: str) -> bytes:
    """A remote user's name as a NUL-terminated UTF-8 C string (cached)."""
    encoded = _NAMES.get(name)
    if encoded is not None:
        return encoded
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    if "\0" in name:
        raise ValueError("name must not contain NUL characters")
    encoded = name.encode("utf-8")
    if len(_NAMES) >= 4096:
        _NAMES.clear()
    _NAMES[name] = encoded
    return encoded

"""The binding matches include/ratchetkit.h: statuses, functions, constants."""

from __future__ import annotations

import ctypes
import re
from typing import Dict, List, Tuple

import pytest
from conftest import HEADER, REPO

import ratchetkit as rk
from ratchetkit import _errors, _lib, store

TEXT = HEADER.read_text()


def header_statuses() -> Dict[str, int]:
    body = re.search(r"enum rk_status\b[^{]*\{(.*?)\};", TEXT, re.S)
    assert body, "enum rk_status not found in the header"
    found = dict(
        (name, int(value)) for name, value in re.findall(r"\b(RK_STATUS_\w+)\s*=\s*(\d+)", body.group(1))
    )
    assert found, "no statuses parsed"
    return found


def test_status_codes_equal_the_header() -> None:
    assert rk.STATUS_CODES == header_statuses()


def test_one_exception_class_per_status() -> None:
    codes = {v for k, v in header_statuses().items() if k != "RK_STATUS_OK"}
    assert set(_errors.ERRORS) == codes
    names = set()
    for code, cls in _errors.ERRORS.items():
        assert issubclass(cls, rk.RatchetkitError)
        assert cls.status == code
        assert rk.STATUS_CODES[cls.status_name] == code
        assert getattr(rk, cls.__name__) is cls, "exported from the package"
        names.add(cls.__name__)
    assert len(names) == len(codes)


def test_descriptions_come_from_the_library() -> None:
    err = rk.NoSessionError("detail text")
    assert str(err) == "detail text" and err.description == "no session"
    assert err.detail == "detail text" and err.status == 301
    assert str(rk.WrongPickleKeyError()) == "wrong key for saved state, or altered bytes"
    unknown = _errors.error_for(4242, "")
    assert type(unknown) is rk.RatchetkitError and unknown.status == 4242
    assert str(unknown) == "unknown status" == unknown.description


# --- the function table against the prototypes ------------------------------

_SCALARS = {
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "int64_t": ctypes.c_int64,
    "size_t": ctypes.c_size_t,
    "rk_status": ctypes.c_uint32,
}
_POINTEES = {
    "uint32_t": ctypes.c_uint32,
    "uint64_t": ctypes.c_uint64,
    "size_t": ctypes.c_size_t,
    "bool": ctypes.c_bool,
}


def c_to_ctypes(decl: str) -> object:
    """The ctypes type the binding must use for a C parameter type."""
    decl = " ".join(decl.replace("*", " * ").split())
    const = decl.startswith("const ")
    if const:
        decl = decl[len("const ") :]
    stars = decl.count("*")
    base = decl.replace("*", "").replace("struct ", "").strip()
    if stars == 0:
        if base == "rk_bytes":
            return _lib.rk_bytes
        return _SCALARS[base]
    if base in ("uint8_t", "char"):
        assert stars == 1
        return ctypes.c_char_p if const else ctypes.POINTER(ctypes.c_char)
    if base == "rk_bytes":
        return ctypes.POINTER(_lib.rk_bytes)
    if base.startswith("rk_"):
        handle = ctypes.POINTER(getattr(_lib, base))
        return handle if stars == 1 else ctypes.POINTER(handle)
    return ctypes.POINTER(_POINTEES[base])


def header_prototypes() -> List[Tuple[str, str, List[str]]]:
    protos = []
    for ret, name, params in re.findall(
        r"^(?:RK_MUST_USE\s+)?((?:const\s+)?(?:struct\s+)?[a-z_0-9]+\s*\**)\s*(rk_[a-z0-9_]+)\(([^)]*)\);",
        TEXT,
        re.M | re.S,
    ):
        args = [] if params.strip() == "void" else [p.strip() for p in params.split(",")]
        types = [re.sub(r"\s*\b\w+$", "", a) for a in args]  # drop the parameter name
        protos.append((ret.strip(), name, types))
    return protos


def test_every_header_function_is_declared_with_its_types() -> None:
    protos = header_prototypes()
    symbols = (REPO / "include" / "ratchetkit.symbols").read_text().split()
    assert sorted(name for _, name, _ in protos) == sorted(symbols), "prototype parse"
    table = {name: (restype, list(argtypes), check) for name, restype, argtypes, check in _lib.FUNCTIONS}
    assert set(table) == set(symbols)
    for ret, name, params in protos:
        restype, argtypes, check = table[name]
        expected_args = [c_to_ctypes(p) for p in params]
        assert argtypes == expected_args, name
        if ret == "void":
            assert restype is None and check is None, name
        elif ret == "rk_status":
            assert restype is ctypes.c_uint32, name
            assert check is _lib._check or name == "rk_last_error_message", name
        elif ret == "const char *":
            assert restype is ctypes.c_char_p, name
        elif ret.startswith("struct rk_"):  # a struct returned by value
            assert restype is getattr(_lib, ret.split()[1]) and check is None, name
        else:
            assert restype is _SCALARS[ret], name
        func = getattr(_lib.lib, name)
        assert func.argtypes == argtypes and func.restype is restype, name


CONSTANTS = [
    ("RK_PUBLIC_KEY_LEN", rk.PUBLIC_KEY_LEN),
    ("RK_PRIVATE_KEY_LEN", rk.PRIVATE_KEY_LEN),
    ("RK_SIGNATURE_LEN", rk.SIGNATURE_LEN),
    ("RK_SAFETY_NUMBER_LEN", rk.SAFETY_NUMBER_LEN),
    ("RK_PICKLE_KEY_LEN", rk.PICKLE_KEY_LEN),
    ("RK_MAX_PREKEYS_PER_CALL", rk.MAX_PREKEYS_PER_CALL),
    ("RK_PREKEY_RECORD_LEN", store._PREKEY_RECORD_LEN),
    ("RK_KEM_PUBLIC_KEY_LEN", rk.KEM_PUBLIC_KEY_LEN),
    ("RK_KYBER_PREKEY_RECORD_LEN", rk.KYBER_PREKEY_RECORD_LEN),
    ("RK_MAX_KYBER_PREKEYS_PER_CALL", rk.MAX_KYBER_PREKEYS_PER_CALL),
    ("RK_KYBER_PREKEY_NONE", int(rk.KyberPreKeyKind.NONE)),
    ("RK_KYBER_PREKEY_ONE_TIME", int(rk.KyberPreKeyKind.ONE_TIME)),
    ("RK_KYBER_PREKEY_LAST_RESORT", int(rk.KyberPreKeyKind.LAST_RESORT)),
    ("RK_SESSION_VERSION_X3DH", rk.SESSION_VERSION_X3DH),
    ("RK_SESSION_VERSION_PQXDH", rk.SESSION_VERSION_PQXDH),
    ("RK_MESSAGE_TYPE_WHISPER", int(rk.MessageType.WHISPER)),
    ("RK_MESSAGE_TYPE_PREKEY", int(rk.MessageType.PREKEY)),
    ("RK_DEFAULT_ITERATIONS", rk.DEFAULT_ITERATIONS),
    ("RK_FINGERPRINT_VERSION", rk.FINGERPRINT_VERSION),
    ("RK_ABI_VERSION", rk.ABI_VERSION),
    ("RK_STORE_KEY_LEN", rk.STORE_KEY_LEN),
    ("RK_DURABILITY_FULL", store._DURABILITY["full"]),
    ("RK_DURABILITY_NORMAL", store._DURABILITY["normal"]),
    ("RK_MAX_UPLOAD_BATCH", rk.MAX_UPLOAD_BATCH),
    ("RK_SPQR_POLICY_REQUIRED", int(rk.SpqrPolicy.REQUIRED)),
    ("RK_SPQR_POLICY_OFFERED", int(rk.SpqrPolicy.OFFERED)),
    ("RK_SPQR_POLICY_OFF", int(rk.SpqrPolicy.OFF)),
]


@pytest.mark.parametrize("macro, value", CONSTANTS)
def test_constants_equal_the_header(macro: str, value: int) -> None:
    match = re.search(rf"^#define {macro} (\d+)$", TEXT, re.M)
    assert match, macro
    assert int(match.group(1)) == value


def test_every_header_constant_is_checked() -> None:
    """Each numeric RK_ macro of the header is in the table above, but the
    version numbers (test_versions_agree checks the version string)."""
    checked = {m for m, _ in CONSTANTS}
    skipped = {"RK_VERSION_MAJOR", "RK_VERSION_MINOR", "RK_VERSION_PATCH"}
    defined = set(re.findall(r"^#define (RK_\w+) \d+$", TEXT, re.M))
    assert defined - skipped == checked


def test_versions_agree() -> None:
    cargo = re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    assert cargo
    assert rk.__version__ == cargo.group(1)
    assert rk.library_version() == cargo.group(1)
    from importlib.metadata import version

    assert version("ratchetkit") == cargo.group(1)

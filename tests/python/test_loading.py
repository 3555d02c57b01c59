"""Finding the library: $RATCHETKIT_LIBRARY, the bundled copy, the system loader."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

import ratchetkit as rk

PACKAGE = Path(rk.__file__).resolve().parent
PROBE = "import ratchetkit as rk; print(rk.LIBRARY_SOURCE, rk.library_path(), rk.library_version())"


def run(
    code: str, env: Dict[str, str], cwd: Optional[Path] = None, path: Optional[Path] = None
) -> "subprocess.CompletedProcess[str]":
    drop = ("RATCHETKIT_LIBRARY", "LD_LIBRARY_PATH", "PYTHONPATH")
    full = {k: v for k, v in os.environ.items() if k not in drop}
    full.update(env)
    if path is not None:
        full["PYTHONPATH"] = str(path)
    return subprocess.run(
        [sys.executable, "-c", code], env=full, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def bundled_library() -> Path:
    lib = PACKAGE / "libratchetkit.so"
    if not lib.is_file():
        pytest.skip("the package under test has no bundled library")
    return lib


def package_copy_without_library(tmp_path: Path) -> Path:
    dest = tmp_path / "site" / "ratchetkit"
    shutil.copytree(PACKAGE, dest, ignore=shutil.ignore_patterns("*.so", "*.dylib", "__pycache__"))
    return dest.parent


def test_installed_package_uses_its_bundled_copy() -> None:
    lib = bundled_library()
    out = run(PROBE, {}, cwd=Path("/"))
    assert out.returncode == 0, out.stderr
    source, path, version = out.stdout.split()
    assert source == "bundled" and Path(path) == lib and version == rk.__version__


def test_environment_variable_comes_first(tmp_path: Path) -> None:
    lib = bundled_library()
    copy = tmp_path / "custom" / "libratchetkit-test.so"
    copy.parent.mkdir()
    shutil.copy(lib, copy)
    out = run(PROBE, {"RATCHETKIT_LIBRARY": str(copy)}, cwd=Path("/"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["RATCHETKIT_LIBRARY", str(copy)]


def test_environment_variable_that_does_not_load_is_an_error(tmp_path: Path) -> None:
    out = run(PROBE, {"RATCHETKIT_LIBRARY": str(tmp_path / "nope.so")}, cwd=Path("/"))
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "RATCHETKIT_LIBRARY" in out.stderr
    assert "nope.so" in out.stderr


def test_system_loader_comes_last(tmp_path: Path) -> None:
    lib = bundled_library()
    site = package_copy_without_library(tmp_path)
    libdir = tmp_path / "lib"
    libdir.mkdir()
    # As `make install` lays it out: the SONAME link and the dev link.
    shutil.copy(lib, libdir / "libratchetkit.so.0")
    (libdir / "libratchetkit.so").symlink_to("libratchetkit.so.0")
    out = run(PROBE, {"LD_LIBRARY_PATH": str(libdir)}, cwd=tmp_path, path=site)
    if out.returncode != 0 and "found nothing" in out.stderr:
        pytest.skip("ctypes.util.find_library needs gcc or ld to search LD_LIBRARY_PATH")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "system"


def test_nothing_found_names_all_three_places(tmp_path: Path) -> None:
    site = package_copy_without_library(tmp_path)
    out = run(PROBE, {"LD_LIBRARY_PATH": str(tmp_path / "empty")}, cwd=tmp_path, path=site)
    if out.returncode == 0:
        pytest.skip(f"a system-wide libratchetkit is installed: {out.stdout}")
    err = out.stderr
    assert "ImportError" in err and "cannot find the native library" in err
    assert "$RATCHETKIT_LIBRARY is not set" in err
    assert "no bundled" in err and str(site / "ratchetkit" / "libratchetkit.so") in err
    assert 'find_library("ratchetkit") found nothing' in err

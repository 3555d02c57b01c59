"""Builds the native library with cargo and bundles it in a platform wheel.

``pip install ./bindings/python`` and ``python -m build --wheel
bindings/python`` both run ``build_py`` below, which runs

    cargo build --release -p ratchetkit

in the repository holding this file (two levels up) and copies
``<target dir>/release/libratchetkit.so`` into the built package next to
``__init__.py``, where ``ratchetkit._lib`` finds it at import time. The
wheel is marked platform-specific (``py3-none-<platform>``): it holds
native code but no CPython extension, so one wheel serves every Python 3.

Environment overrides:
  RATCHETKIT_SOURCE_DIR        the repository root (the crate's Cargo.toml);
                               default: ../.. from this file
  RATCHETKIT_PREBUILT_LIBRARY  bundle this already built library instead of
                               running cargo
  RATCHETKIT_STRIP=0           keep the debug line tables in the bundled copy
  CARGO                        the cargo executable (default: cargo on PATH)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel as _bdist_wheel  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
if sys.platform == "darwin":
    LIB_NAME = "libratchetkit.dylib"
elif sys.platform == "win32":
    LIB_NAME = "ratchetkit.dll"
else:
    LIB_NAME = "libratchetkit.so"


def source_dir() -> Path:
    """The repository root: the directory of the ratchetkit crate's Cargo.toml."""
    override = os.environ.get("RATCHETKIT_SOURCE_DIR")
    root = Path(override).resolve() if override else HERE.parent.parent
    manifest = root / "Cargo.toml"
    if not manifest.is_file() or 'name = "ratchetkit"' not in manifest.read_text():
        raise SystemExit(
            f"ratchetkit: no ratchetkit Cargo.toml in {root}. Build from a checkout of the "
            f"repository (pip install ./bindings/python), or set RATCHETKIT_SOURCE_DIR to its "
            f"root, or RATCHETKIT_PREBUILT_LIBRARY to a built {LIB_NAME}."
        )
    return root


def crate_version() -> str:
    """The crate's version (Cargo.toml), which is the package's."""
    pkg_info = HERE / "PKG-INFO"  # an unpacked sdist records it
    try:
        text = (source_dir() / "Cargo.toml").read_text()
    except SystemExit:
        if os.environ.get("RATCHETKIT_PREBUILT_LIBRARY") and pkg_info.is_file():
            found = re.search(r"^Version: (\S+)$", pkg_info.read_text(), re.MULTILINE)
            if found:
                return found.group(1)
        raise
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise SystemExit("ratchetkit: no version in Cargo.toml")
    return match.group(1)


def build_native_library() -> Path:
    """Runs cargo (unless a prebuilt library is given) and returns the library's path."""
    prebuilt = os.environ.get("RATCHETKIT_PREBUILT_LIBRARY")
    if prebuilt:
        path = Path(prebuilt).resolve()
        if not path.is_file():
            raise SystemExit(f"ratchetkit: RATCHETKIT_PREBUILT_LIBRARY={prebuilt}: no such file")
        return path
    root = source_dir()
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        raise SystemExit(
            f"ratchetkit: {cargo!r} not found: building the package needs the Rust toolchain "
            f"(cargo), or RATCHETKIT_PREBUILT_LIBRARY set to a built {LIB_NAME}"
        )
    manifest = str(root / "Cargo.toml")
    cmd = [cargo, "build", "--release", "-p", "ratchetkit", "--manifest-path", manifest]
    print("ratchetkit: " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=root, check=True)
    meta = subprocess.run(
        [cargo, "metadata", "--format-version", "1", "--no-deps", "--manifest-path", manifest],
        cwd=root,
        check=True,
        stdout=subprocess.PIPE,
    )
    target_dir = Path(json.loads(meta.stdout)["target_directory"])
    path = target_dir / "release" / LIB_NAME
    if not path.is_file():
        raise SystemExit(f"ratchetkit: cargo built no {path}")
    return path


class build_py(_build_py):
    """build_py that also builds the native library and copies it into the package."""

    def run(self) -> None:
        super().run()
        library = build_native_library()
        dest = Path(self.build_lib) / "ratchetkit" / LIB_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Copy the bytes (never a symlink): the wheel must hold the library.
        shutil.copyfile(library, dest)
        os.chmod(dest, 0o755)
        # The release profile keeps line tables (debug = 1); the bundled copy
        # drops them (15 MB -> a few MB). RATCHETKIT_STRIP=0 keeps them.
        strip = shutil.which("strip")
        if strip and os.environ.get("RATCHETKIT_STRIP", "1") != "0" and sys.platform != "darwin":
            subprocess.run([strip, "--strip-debug", str(dest)], check=True)
        print(f"ratchetkit: bundled {library} as {dest}", flush=True)

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        return list(super().get_outputs(include_bytecode)) + [
            str(Path(self.build_lib) / "ratchetkit" / LIB_NAME)
        ]


class BinaryDistribution(Distribution):
    """A distribution with native code: the wheel gets a platform tag."""

    def has_ext_modules(self) -> bool:
        return True


class bdist_wheel(_bdist_wheel):
    """Tags the wheel py3-none-<platform>: native code, no CPython extension."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> Tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    version=crate_version(),
    distclass=BinaryDistribution,
    cmdclass={"build_py": build_py, "bdist_wheel": bdist_wheel},
)

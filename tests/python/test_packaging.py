"""`python -m build --wheel bindings/python` makes a platform wheel that
bundles the library, and that wheel installs and works in a fresh venv.

Slow-ish (an isolated build environment, a cargo build that is normally up
to date, a venv): skipped with RATCHETKIT_SKIP_WHEEL_TEST=1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

import ratchetkit as rk

pytestmark = pytest.mark.skipif(
    os.environ.get("RATCHETKIT_SKIP_WHEEL_TEST") == "1", reason="RATCHETKIT_SKIP_WHEEL_TEST=1"
)


def test_build_wheel_and_install_it_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), "bindings/python"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    wheels = list(dist.glob("*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert wheel.name == f"ratchetkit-{rk.__version__}-py3-none-{platform}.whl"

    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        wheel_meta = z.read(f"ratchetkit-{rk.__version__}.dist-info/WHEEL").decode()
    for module in ("__init__", "_lib", "_errors", "_handle", "store", "bundle", "identity", "fingerprint"):
        assert f"ratchetkit/{module}.py" in names
    assert "ratchetkit/py.typed" in names
    assert "ratchetkit/libratchetkit.so" in names
    assert "Root-Is-Purelib: false" in wheel_meta
    assert not any(".." in n or n.startswith("/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("RATCHETKIT_LIBRARY", "PYTHONPATH")}
    example = subprocess.run(
        [str(py), str(REPO / "examples" / "python" / "chat.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert example.returncode == 0, example.stderr
    assert "Bob scans Alice's code: verified" in example.stdout
    where = subprocess.run(
        [str(py), "-c", "import ratchetkit as rk; print(rk.LIBRARY_SOURCE, rk.library_path())"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    source, path = where.stdout.split()
    assert source == "bundled" and path.startswith(str(venv))

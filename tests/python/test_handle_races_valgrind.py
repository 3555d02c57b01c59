"""The races of handle_race.py in subprocesses: natively, and under valgrind
memcheck, which must see no invalid access in libratchetkit (issue 14,
item 4).

Only the scripts' exit status and valgrind's log are read, so these tests
run unchanged against any version of the binding: on the binding before
handles counted their calls in flight, valgrind reports dozens of invalid
reads and writes in memory freed by ``rk_store_free`` (and the bundle,
key and fingerprint frees), and the scripts fail or crash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "handle_race.py"


def run_script(
    *args: str, valgrind_log: Optional[Path] = None, timeout: float = 300
) -> "subprocess.CompletedProcess[str]":
    command = [sys.executable, str(SCRIPT), *args]
    env = dict(os.environ)
    if valgrind_log is not None:
        env["PYTHONMALLOC"] = "malloc"  # every Python object a malloc block valgrind tracks
        command = [
            "valgrind",
            "--tool=memcheck",
            "--num-callers=40",
            f"--log-file={valgrind_log}",
            *command,
        ]
    return subprocess.run(
        command, cwd=HERE, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_close_race_natively() -> None:
    """100 rounds of closing five objects while three threads call them."""
    out = run_script("close", "--rounds", "100", timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-4000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["errors"] == 0 and summary["calls_ok"] > 0
    assert summary["calls_refused_closed"] > 0
    print(f"\n{summary}")


def test_interpreter_exit_with_daemon_threads_inside_calls() -> None:
    for _ in range(3):
        out = run_script("exit")
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["exiting"]
        assert "Traceback" not in out.stderr and "Error" not in out.stderr, out.stderr


# -- the races under valgrind ---------------------------------------------------


def valgrind_errors_in_library(log: str) -> List[str]:
    """The error reports of a valgrind log that involve libratchetkit: the
    invalid access, or the free or allocation of the memory it touched."""
    reports: List[str] = []
    block: List[str] = []
    for line in log.splitlines() + ["==0== "]:
        m = re.match(r"==\d+== ?(.*)$", line)
        if m is None:
            continue
        body = m.group(1)
        if body.strip():
            if not re.match(r"Thread \d+:$", body):
                block.append(body)
            continue
        if block and "libratchetkit" in "\n".join(block):
            reports.append("\n".join(block))
        block = []
    return reports


def test_the_valgrind_filter_finds_a_use_after_free() -> None:
    log = textwrap.dedent(
        """\
        ==7== Thread 4:
        ==7== Invalid read of size 8
        ==7==    at 0x6696FFA: guard (in /x/ratchetkit/libratchetkit.so)
        ==7==    by 0x66CBA7C: rk_store_save (in /x/ratchetkit/libratchetkit.so)
        ==7==  Address 0x68c61a0 is 0 bytes inside a block of size 200 free'd
        ==7==    at 0x484417B: free (in /usr/libexec/valgrind/vgpreload_memcheck.so)
        ==7==    by 0x66CB59C: rk_store_free (in /x/ratchetkit/libratchetkit.so)
        ==7== 
        ==7== Conditional jump or move depends on uninitialised value(s)
        ==7==    at 0x49E04DA: maybe_small_long (longobject.c:71)
        ==7== 
        ==7== ERROR SUMMARY: 2 errors from 2 contexts (suppressed: 0 from 0)
        """
    )
    reports = valgrind_errors_in_library(log)
    assert len(reports) == 1 and reports[0].startswith("Invalid read of size 8")


@pytest.mark.parametrize(
    "args", [("close", "--rounds", "1", "--seed", "3"), ("exit",)], ids=["close", "exit"]
)
def test_races_under_valgrind(args: Tuple[str, ...], tmp_path: Path) -> None:
    """The same races under valgrind memcheck: no invalid read, write or free
    in (or of memory freed by) libratchetkit.

    CPython itself makes valgrind report uninitialised values (in its int
    code), so the check reads only the reports that involve the library. On
    the binding before this fix, both scripts produce dozens of reports
    ("Invalid read ... inside a block ... free'd ... by rk_store_free").
    """
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is not installed (make c-deps installs it): these races must "
                    "run under valgrind")
    log_path = tmp_path / "valgrind.log"
    start = time.monotonic()
    out = run_script(*args, valgrind_log=log_path, timeout=480)
    elapsed = time.monotonic() - start
    log = log_path.read_text()
    assert "ERROR SUMMARY" in log, log[-2000:]
    reports = valgrind_errors_in_library(log)
    summary = re.findall(r"ERROR SUMMARY: .*", log)[-1]
    print(f"\n{' '.join(args)}: {elapsed:.1f} s under valgrind; {out.stdout.strip()}; "
          f"{len(reports)} reports in libratchetkit (all: {summary})")
    if reports:
        pytest.fail(
            f"{len(reports)} valgrind reports in libratchetkit (the first 3):\n\n"
            + "\n\n".join(reports[:3]),
            pytrace=False,
        )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["mode"] == args[0]

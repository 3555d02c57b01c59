"""Shared fixtures for the Python binding's tests.

The tests import the *installed* ``ratchetkit`` package (``make py-venv``
installs it into build/venv); set RATCHETKIT_LIBRARY to test another
library build.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Tuple

import pytest

import ratchetkit as rk

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "include" / "ratchetkit.h"


def make_pair(one_time_prekey: bool = True) -> Tuple[rk.Store, rk.Store]:
    """Alice and Bob, with a session from Alice to Bob (not yet answered)."""
    alice, bob = rk.Store(), rk.Store()
    published = bob.create_bundle(one_time_prekey=one_time_prekey).serialize()
    alice.process_bundle("bob", rk.Bundle.from_bytes(published))
    return alice, bob


def converse(alice: rk.Store, bob: rk.Store) -> None:
    """One message each way, so that both sides hold a confirmed session."""
    assert bob.decrypt("alice", alice.encrypt("bob", b"ping")) == b"ping"
    assert alice.decrypt("bob", bob.encrypt("alice", b"pong")) == b"pong"


@pytest.fixture
def pair() -> Iterator[Tuple[rk.Store, rk.Store]]:
    alice, bob = make_pair()
    yield alice, bob
    alice.close()
    bob.close()


@pytest.fixture
def talking() -> Iterator[Tuple[rk.Store, rk.Store]]:
    alice, bob = make_pair()
    converse(alice, bob)
    yield alice, bob
    alice.close()
    bob.close()


def pytest_report_header(config: pytest.Config) -> str:
    return (
        f"ratchetkit {rk.__version__} from {os.path.dirname(rk.__file__)}; "
        f"library {rk.library_version()} ({rk.LIBRARY_SOURCE}: {rk.library_path()})"
    )

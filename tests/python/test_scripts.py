"""The example, the benchmark and the interop peer run with the installed package."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

import ratchetkit as rk


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, input=stdin, capture_output=True, text=True, timeout=300
    )


def test_example_chat() -> None:
    out = run("examples/python/chat.py")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "out of order" in text and "reopened her store" in text
    assert "(durable: True)" in text and "two-phase: kept, then committed" in text
    assert text.count("message version") == 1 and "(message version 4)" in text
    assert "WrongStoreKeyError" in text and "DuplicateMessageError" in text
    assert "Bob sees the same digits: yes" in text
    assert "Bob scans Alice's code: verified" in text
    assert "█" in text and text.rstrip().endswith("Done.")


def test_benchmark_quick() -> None:
    out = run("benches/python_roundtrip.py", "--quick", "--json", "--native-us", "4.5")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    median = next(iter(report.values()))  # what benches/report.py reads
    assert list(report)[0] == "python_roundtrip_100B_us"
    assert 0 < report["min_us"] <= median <= report["max_us"]
    print(f"\npython round trip: {median} us (quick)")


def test_interop_peer_answers_each_line() -> None:
    requests = [
        {"op": "hello"},
        {"op": "encrypt", "peer": "x", "plaintext": "00"},
        {"op": "init", "name": "alice", "spqr": "sometimes"},
        {"op": "init", "name": "alice", "path": "/tmp/x", "key": "00" * 32},
        {"op": "open", "path": "/tmp/x", "key": "00" * 32},
        {"op": "init", "name": "alice"},
        {"op": "bundle"},
        {"op": "bundle", "kyber": "one_time"},
        {"op": "bundle", "kyber": "last_resort", "one_time_prekey": False},
        {"op": "bundle", "kyber": "sometimes"},
        {"op": "has_session", "peer": "bob"},
        {"op": "encrypt", "peer": "bob", "plaintext": "00"},
        {"op": "fingerprint", "peer": "bob", "local_id": "", "remote_id": ""},
        {"op": "process_bundle", "peer": "bob", "bundle": {"registration_id": 1}},
        {"op": "nonsense"},
        {"op": "save"},
        {"op": "quit"},
    ]
    stdin = "".join(json.dumps(r) + "\n" for r in requests) + "not json\n"
    out = run("tests/interop/python_peer.py", stdin=stdin)
    assert out.returncode == 0, out.stderr
    answers = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(answers) == len(requests)  # stops at quit
    hello, early, spqr, durable, open_, init, bundle, one_time, last_resort, unknown = answers[:10]
    has, enc, fp, bad, nonsense, save, quit_ = answers[10:]
    assert hello["ok"] and hello["protocol"] == 2 and hello["versions"] == [3, 4]
    assert not early["ok"] and early["error"] == "other"
    assert spqr["error"] == "other"  # not required, offered or off
    assert durable["error"] == open_["error"] == "unsupported"
    assert init["ok"] and len(init["identity_key"]) == 66
    assert bundle["ok"] and "prekey_id" in bundle and len(bundle["signed_prekey_signature"]) == 128
    kyber_fields = ("kyber_prekey_id", "kyber_prekey", "kyber_prekey_signature")
    assert not any(f in bundle for f in kyber_fields)  # kyber "none" by default
    for b in (one_time, last_resort):
        assert b["ok"] and all(f in b for f in kyber_fields)
        assert len(b["kyber_prekey"]) == 2 * rk.KEM_PUBLIC_KEY_LEN and b["kyber_prekey"][:2] == "08"
        assert len(b["kyber_prekey_signature"]) == 128
    assert "prekey_id" in one_time and "prekey_id" not in last_resort
    assert one_time["kyber_prekey_id"] != last_resort["kyber_prekey_id"]
    assert unknown["error"] == "other"
    assert has == {"ok": True, "session": False}
    assert enc["error"] == "no_session"
    assert fp["error"] == "other"
    assert bad["error"] == "other"
    assert nonsense["error"] == "unsupported"
    assert save == {"ok": True} and quit_ == {"ok": True}

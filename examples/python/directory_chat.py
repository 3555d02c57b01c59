"""Two applications find each other the Signal way, through the key server.

``make demo`` runs this. It starts the reference key server
(``ratchetkit-keyserver``) on loopback with a SQLite database in a
temporary directory, then:

- Alice is the C client (examples/c/directory_client.c): every command is a
  new process that opens her durable store, does one thing and exits;
- Bob is this Python program, with his own durable store.

Both register, upload their keys, fetch each other's bundle (the server
hands out each one-time prekey once), start a version-4 session (PQXDH),
exchange messages through the server's mailbox (store and forward,
acknowledged deletion), and compare safety numbers as digits and as the
bytes a QR code carries. Bob's application restarts from its store in the
middle of the conversation. The server is stopped at the end.

    python directory_chat.py --server PATH/ratchetkit-keyserver --client PATH/directory_client

The key server's API: keyserver/README.md. A mailbox body is the message
type (one byte) then the message, in base64.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import ratchetkit as rk


class KeyServer:
    """The key server in a child process, on a free loopback port."""

    def __init__(self, binary: str, database: Path) -> None:
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--database", f"sqlite:{database}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.stop()
            raise SystemExit(f"the key server did not start: {line!r}")
        self.address = line.split()[-1]
        print(f"key server: listening on {self.address} (SQLite at {database.name})")

    def stop(self) -> None:
        """SIGTERM: the server finishes the requests in flight and exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise SystemExit("the key server did not stop on SIGTERM")
        print(f"key server: stopped (exit status {self.proc.returncode})")
        if self.proc.returncode != 0:
            raise SystemExit("the key server failed")


class Device:
    """Bob's application: device 1 of ``name``, its store on disk."""

    def __init__(self, server: str, name: str, path: Path, key: bytes) -> None:
        self.server, self.name, self.path, self.key = server, name, path, key
        self.store = rk.Store.open(path, key=key)

    def restart(self) -> None:
        """The application quits and starts again: only the file remains."""
        self.store.close()
        self.store = rk.Store.open(self.path, key=self.key)
        print(f"[{self.name}] restarted: store reopened from {self.path.name}")

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        auth = self.store.sign_request(self.name, method, path, data)
        req = urllib.request.Request(
            f"http://{self.server}{path}",
            data=data if body is not None else None,
            method=method,
            headers={"Authorization": auth, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as e:
            raise SystemExit(f"[{self.name}] {method} {path}: HTTP {e.code} {e.read()!r}")
        return json.loads(raw) if raw else None

    def register(self) -> None:
        identity = base64.b64encode(self.store.identity_key.serialize()).decode()
        self.request("PUT", f"/v1/devices/{self.name}/1", {"identity_key": identity})
        print(f"[{self.name}] registered device 1")
        self.upload(10)

    def upload(self, count: int) -> None:
        upload = json.loads(self.store.prepare_upload(count))
        held = self.request("PUT", f"/v1/keys/{self.name}/1", upload)
        print(f"[{self.name}] uploaded the signed prekeys and {count} one-time prekey pairs; server holds {held}")

    def send(self, peer: str, text: str) -> None:
        if not self.store.has_session(peer):
            answer = self.request("GET", f"/v1/keys/{peer}/1")
            bundle = rk.bundles_from_json(json.dumps(answer).encode())[0]
            self.store.process_bundle(peer, bundle)
            print(f"[{self.name}] fetched {peer}'s bundle; session version {self.store.session_version(peer)}")
        message = self.store.encrypt(peer, text.encode())
        body = base64.b64encode(bytes([int(message.type)]) + message.body).decode()
        self.request("POST", f"/v1/messages/{peer}/1", {"body": body})
        kind = "prekey" if message.is_prekey else "whisper"
        print(f"[{self.name}] -> {peer}: {text}  [{kind} message, {len(message.body)} bytes]")

    def receive(self) -> List[str]:
        texts = []
        for m in self.request("GET", f"/v1/messages/{self.name}/1")["messages"]:
            envelope = base64.b64decode(m["body"], validate=True)
            plaintext = self.store.decrypt(
                m["sender_name"], rk.Message(rk.MessageType(envelope[0]), envelope[1:]), m["sender_device"]
            )
            text = plaintext.decode()
            print(f"[{self.name}] <- {m['sender_name']}: {text}")
            # Acknowledged only once the decryption is committed to the store.
            self.request("DELETE", f"/v1/messages/{self.name}/1/{m['id']}")
            texts.append(text)
        return texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the ratchetkit-keyserver binary")
    parser.add_argument("--client", required=True, help="the C client (examples/c/directory_client)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ratchetkit-directory-") as tmp:
        tmpdir = Path(tmp)
        server = KeyServer(args.server, tmpdir / "keys.db")
        try:
            alice_key = secrets.token_hex(32)

            def alice(*command: str) -> str:
                """One run of Alice's C application (a restart each time)."""
                out = subprocess.run(
                    [args.client, server.address, str(tmpdir / "alice.db"), alice_key, "alice", *command],
                    check=True,
                    stdout=subprocess.PIPE,
                    text=True,
                ).stdout
                print(out, end="")
                return out

            bob = Device(server.address, "bob", tmpdir / "bob.db", secrets.token_bytes(32))
            print("\n== registration and key upload")
            alice("register")
            bob.register()

            print("\n== Alice fetches Bob's bundle and writes first (mailbox)")
            alice("send", "bob", "Hi Bob! Found you through the key server.")
            alice("send", "bob", "Both of these wait in your mailbox.")
            assert bob.receive() == [
                "Hi Bob! Found you through the key server.",
                "Both of these wait in your mailbox.",
            ]
            assert bob.store.session_version("alice") == rk.SESSION_VERSION_PQXDH

            print("\n== Bob answers; Alice reads later")
            bob.send("alice", "Hello Alice, got both.")
            out = alice("receive")
            assert "<- bob: Hello Alice, got both." in out

            print("\n== Bob's application restarts mid-conversation")
            bob.restart()
            bob.send("alice", "Still here after my restart.")
            alice("send", "bob", "And I restart on every command.")
            assert "Still here after my restart." in alice("receive")
            assert bob.receive() == ["And I restart on every command."]

            print("\n== Carol fetches Bob's bundle too: another one-time prekey")
            carol = Device(server.address, "carol", tmpdir / "carol.db", secrets.token_bytes(32))
            carol.register()
            carol.send("bob", "Hi Bob, Carol here.")
            assert bob.receive() == ["Hi Bob, Carol here."]
            count = bob.request("GET", "/v1/keys/bob/1/count")
            print(f"[bob] the server still holds {count}")
            assert count["prekeys"] == 8, count

            print("\n== safety numbers (compare the digits, or scan the QR code)")
            out = alice("safety", "bob")
            fingerprint = bob.store.safety_number("alice", b"bob", b"alice")
            digits = next(line for line in out.splitlines() if line.startswith("digits "))[7:]
            scannable = next(line for line in out.splitlines() if line.startswith("scannable "))[10:]
            print(f"[bob]   digits {fingerprint.formatted()}")
            assert digits.replace(" ", "") == fingerprint.displayable, "the safety numbers differ"
            assert fingerprint.compare(bytes.fromhex(scannable)), "the QR codes do not match"
            print("[bob]   Alice's QR code scanned: it matches; the digits are equal")
            for store in (bob, carol):
                store.store.close()
        finally:
            server.stop()
    print("\ndone: two applications met through the key server and chatted")
    return 0


if __name__ == "__main__":
    sys.exit(main())

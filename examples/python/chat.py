#!/usr/bin/env python3
"""ratchetkit from Python: Alice and Bob chat in one process.

Bob publishes a prekey bundle (handed over as bytes, as a server would)
with a signed Kyber1024 prekey, Alice starts a session from it (PQXDH:
message version 4, the default), and they exchange messages both ways,
some delivered out of order. Both keep their state in durable stores:
SQLite files (here in a temporary directory) sealed under a 32-byte
application key, where every call commits before it returns. Midway Alice's
app restarts: her store is closed and reopened from the same file with the
same key, and the conversation carries on. Bob takes one message in two
phases (decrypt, keep the plaintext, commit). Finally both compute the
safety number, shown as digits and as a QR code in the terminal.

Run it with the package installed (make demo-py, or pip install
./bindings/python first):

    python examples/python/chat.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import ratchetkit as rk


def send(sender: rk.Store, who: str, to: str, text: str) -> rk.Message:
    """Encrypts ``text``; the message type travels with the bytes."""
    message = sender.encrypt(to, text.encode())
    kind = "prekey" if message.is_prekey else "whisper"
    print(f"  {who:<5} -> {to:<5}  {text:<28} [{kind} message, {len(message.body)} bytes]")
    return message


def deliver(receiver: rk.Store, who: str, sender: str, message: rk.Message) -> None:
    print(f"  {who:<5} <- {sender:<5}  {receiver.decrypt(sender, message).decode()}")


def main() -> int:
    print(f"ratchetkit {rk.__version__} (library {rk.library_version()}), Python example\n")
    # A temporary directory for the demo (an app uses its data directory).
    with tempfile.TemporaryDirectory(prefix="ratchetkit-py-") as tmp:
        return chat(Path(tmp))


def chat(data_dir: Path) -> int:
    # Each app's store key: 32 bytes from the platform's keystore in a real
    # app (random here).
    alice_key = os.urandom(rk.STORE_KEY_LEN)
    bob_key = os.urandom(rk.STORE_KEY_LEN)

    # Two devices, each a durable store created on first open (device id 1,
    # full durability); `with` closes the handles at the end (GC would too).
    with rk.Store.open(data_dir / "bob.db", key=bob_key) as bob:
        alice = rk.Store.open(data_dir / "alice.db", key=alice_key)
        print(f"Alice and Bob keep their stores in {data_dir} (durable: {alice.is_durable}).")

        # Bob publishes a bundle with a one-time prekey and a one-time Kyber
        # prekey (the default); it travels as bytes.
        published = bob.create_bundle().serialize()
        print(f"Bob publishes a prekey bundle with a Kyber prekey ({len(published)} bytes).")

        # Alice fetches it and starts a session (PQXDH, as the bundle carries
        # a Kyber prekey). Her store refuses bundles without one (version-3
        # sessions) unless its policy allows them: rk.VersionRefusedError.
        alice.process_bundle("bob", rk.Bundle.from_bytes(published))
        version = alice.session_version("bob")
        print(f"Alice processed Bob's bundle: session established (message version {version}).")
        # SPQR, the post-quantum ratchet: required by default (as current
        # Signal clients); rk.SpqrPolicy.OFFERED also talks to peers without it.
        has_spqr, epoch = alice.session_spqr("bob")
        print(f"SPQR policy: {alice.spqr_policy.name.lower()}; the session speaks SPQR: "
              f"{'yes' if has_spqr else 'no'} (epoch {epoch}).\n")

        # Alice writes first: prekey messages until Bob answers.
        a1 = send(alice, "alice", "bob", "Hi Bob!")
        a2 = send(alice, "alice", "bob", "Are you there?")
        deliver(bob, "bob", "alice", a1)
        deliver(bob, "bob", "alice", a2)

        # Bob answers; the network reorders his three messages.
        b1 = send(bob, "bob", "alice", "Hi Alice, I'm here.")
        b2 = send(bob, "bob", "alice", "This one arrives first.")
        b3 = send(bob, "bob", "alice", "And this one second.")
        print("  (delivered out of order: 2, 3, 1)")
        for m in (b2, b3, b1):
            deliver(alice, "alice", "bob", m)

        # Midway: Alice's app restarts. Closing the store loses nothing: every
        # call committed its changes to alice.db before it returned.
        alice.close()
        print("\nAlice's app restarts: her store is closed.")
        try:
            rk.Store.open(data_dir / "alice.db", key=bytes(rk.STORE_KEY_LEN))
        except rk.WrongStoreKeyError as e:
            print(f"Opening alice.db with a wrong key: {type(e).__name__} ({e}).")
        alice = rk.Store.open(data_dir / "alice.db", key=alice_key, create=False)
        print("Alice reopened her store from alice.db with her key.\n")

        # The conversation carries on, again partly out of order.
        a3 = send(alice, "alice", "bob", "Back after a restart.")
        a4 = send(alice, "alice", "bob", "Did you get that?")
        print("  (delivered out of order: 2, 1)")
        deliver(bob, "bob", "alice", a4)
        # Two-phase decrypt: keep the plaintext (an app writes it to its
        # message database), then commit. Leaving the block without a commit
        # (or the process dying first) writes nothing: the message would
        # decrypt again. rk.ConflictError from commit() means another
        # process decrypted from the session meanwhile: decrypt again.
        with bob.decrypt_pending("alice", 1, a3.type, a3.body) as pending:
            kept = pending.plaintext
            print(f"  {'bob':<5} <- {'alice':<5}  {kept.decode()}  [two-phase: kept, then committed]")
            pending.commit()
        deliver(alice, "alice", "bob", send(bob, "bob", "alice", "Yes, both. Bye!"))

        # A replayed message is refused.
        try:
            bob.decrypt("alice", a3)
        except rk.DuplicateMessageError as e:
            print(f"  (a replay of Alice's message is refused: {type(e).__name__})")

        # Safety numbers: the same on both sides; compare the scannable form
        # as if Bob scanned Alice's QR code.
        with alice.safety_number("bob", b"alice", b"bob") as fa, bob.safety_number(
            "alice", b"bob", b"alice"
        ) as fb:
            groups = fa.formatted().split()
            print("\nSafety number (Alice's view):")
            print("  " + " ".join(groups[:6]))
            print("  " + " ".join(groups[6:]))
            same = fa.displayable == fb.displayable
            print(f"Bob sees the same digits: {'yes' if same else 'NO'}")
            match = fb.compare(fa.scannable)
            print(f"Bob scans Alice's code: {'verified' if match else 'MISMATCH'}\n")
            sys.stdout.write(fa.qr_text())

        alice.close()
    if not (same and match):
        return 1
    print("\nDone.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""ratchetkit from Python: Alice and Bob chat in one process.

Bob publishes a prekey bundle (handed over as bytes, as a server would)
with a signed Kyber1024 prekey, Alice starts a session from it (PQXDH:
message version 4, the default), and they exchange messages both ways,
some delivered out of order. Midway Alice saves her store encrypted under a
32-byte key, closes it, and restores it. Finally both compute the safety
number, shown as digits and as a QR code in the terminal.

Run it with the package installed (make demo-py, or pip install
./bindings/python first):

    python examples/python/chat.py
"""

from __future__ import annotations

import os
import sys

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

    # Two devices; `with` frees the handles at the end (GC would too).
    with rk.Store() as bob:
        alice = rk.Store()

        # Bob publishes a bundle with a one-time prekey and a one-time Kyber
        # prekey (the default); it travels as bytes.
        published = bob.create_bundle().serialize()
        print(f"Bob publishes a prekey bundle with a Kyber prekey ({len(published)} bytes).")

        # Alice fetches it and starts a session (PQXDH, as the bundle carries
        # a Kyber prekey). Her store refuses bundles without one (version-3
        # sessions) unless its policy allows them: rk.VersionRefusedError.
        alice.process_bundle("bob", rk.Bundle.from_bytes(published))
        version = alice.session_version("bob")
        print(f"Alice processed Bob's bundle: session established (message version {version}).\n")

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

        # Midway: Alice saves her whole store encrypted under an app key (in a
        # real app, from the platform keystore), closes it, and restores it.
        key = os.urandom(rk.PICKLE_KEY_LEN)
        saved = alice.save(key=key)
        alice.close()
        print(f"\nAlice saved her store encrypted ({len(saved)} bytes) and closed it.")
        try:
            rk.Store.restore(saved, key=bytes(rk.PICKLE_KEY_LEN))
        except rk.WrongPickleKeyError as e:
            print(f"Restoring with a wrong key: {type(e).__name__} ({e}).")
        alice = rk.Store.restore(saved, key=key)
        print("Alice restored her store with the right key.\n")

        # The conversation carries on, again partly out of order.
        a3 = send(alice, "alice", "bob", "Back after a restart.")
        a4 = send(alice, "alice", "bob", "Did you get that?")
        print("  (delivered out of order: 2, 1)")
        deliver(bob, "bob", "alice", a4)
        deliver(bob, "bob", "alice", a3)
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

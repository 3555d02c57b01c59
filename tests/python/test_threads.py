"""One store used from several threads at once.

The C library locks a store per call; ctypes releases the GIL during each
call, so these threads really run inside the library concurrently.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Tuple

from conftest import converse, make_pair

import ratchetkit as rk

THREADS = 4
ROUNDS = 200


def test_threads_on_different_sessions_of_one_store() -> None:
    alice = rk.Store()
    peers = {}
    for i in range(THREADS):
        peer = rk.Store()
        alice.process_bundle(f"peer{i}", peer.create_bundle())
        peers[i] = peer
    barrier = threading.Barrier(THREADS)

    def talk(i: int) -> int:
        peer, name = peers[i], f"peer{i}"
        barrier.wait()
        for n in range(ROUNDS):
            text = f"{name} {n}".encode()
            assert peer.decrypt("alice", alice.encrypt(name, text)) == text
            answer = b"re: " + text
            assert alice.decrypt(name, peer.encrypt("alice", answer)) == answer
            if n % 50 == 0:
                # Errors from other threads never leak into this one's detail.
                try:
                    alice.encrypt(f"nobody{i}", b"x")
                except rk.NoSessionError as e:
                    assert f"nobody{i}" in e.detail
        return ROUNDS

    with ThreadPoolExecutor(THREADS) as pool:
        assert sum(pool.map(talk, range(THREADS))) == THREADS * ROUNDS
    restored = rk.Store.restore(alice.save())
    for i in range(THREADS):
        assert restored.has_session(f"peer{i}")


def test_threads_on_the_same_session() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    barrier = threading.Barrier(THREADS)
    sent: List[Tuple[bytes, rk.Message]] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        barrier.wait()
        for n in range(ROUNDS):
            text = f"t{i} m{n}".encode()
            m = alice.encrypt("bob", text)
            with lock:
                sent.append((text, m))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == THREADS * ROUNDS
    # Every message got its own counter: all decrypt, in any order, from
    # several threads at once, and none twice.
    assert len({m.body for _, m in sent}) == len(sent)
    random.Random(3).shuffle(sent)
    chunks = [sent[i::THREADS] for i in range(THREADS)]
    results: Dict[bytes, bytes] = {}

    def receive(chunk: List[Tuple[bytes, rk.Message]]) -> None:
        for text, m in chunk:
            got = bob.decrypt("alice", m)
            assert got == text
            with lock:
                results[m.body] = got

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(receive, chunks))
    assert len(results) == len(sent)
    text, m = sent[0]
    try:
        bob.decrypt("alice", m)
        raise AssertionError("a second delivery decrypted")
    except rk.DuplicateMessageError:
        pass
    converse(alice, bob)


def test_shared_immutable_objects_and_store_reads() -> None:
    alice, bob = make_pair()
    converse(alice, bob)
    fp = alice.safety_number("bob", b"alice", b"bob", iterations=100)
    theirs = bob.safety_number("alice", b"bob", b"alice", iterations=100).scannable
    key = bob.identity_key
    bundle = bob.create_bundle()
    expected = (fp.displayable, bytes(key), bundle.serialize())

    def read(_: int) -> None:
        for _ in range(100):
            assert (fp.displayable, bytes(rk.PublicKey(bytes(key))), bundle.serialize()) == expected
            assert fp.compare(theirs)
            assert key == bundle.identity_key
            assert alice.trusted_identity("bob") == key
            alice.save()
            alice.create_bundle(one_time_prekey=False)

    def write(_: int) -> None:
        for n in range(100):
            assert bob.decrypt("alice", alice.encrypt("bob", b"%d" % n)) == b"%d" % n

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(read, i) for i in range(THREADS - 1)] + [pool.submit(write, 0)]
        for f in futures:
            f.result()

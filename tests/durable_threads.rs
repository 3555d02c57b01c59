//! Several threads on one durable store handle: calls at full durability
//! share commits (group commit, `src/store/durable/group.rs`). Every
//! call's changes are committed when it returns, a failing call writes
//! nothing and does not disturb the others, and the file holds every
//! advance afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TempDb;

use std::sync::Barrier;

use rand::rngs::OsRng;
use ratchetkit::{
    Address, CiphertextMessage, Durability, DurableOptions, DurableStore, Error, ProtocolStore,
};

const KEY: [u8; 32] = [0x42; 32];
const THREADS: usize = 4;
const ROUNDS: usize = 60;

fn open(db: &TempDb, durability: Durability) -> DurableStore {
    let options = DurableOptions {
        durability,
        ..DurableOptions::default()
    };
    DurableStore::open(&db.0, &KEY, &options).unwrap()
}

fn bob_addr() -> Address {
    Address::new("bob", 1)
}

fn peer_addr(i: usize) -> Address {
    Address::new(format!("peer{i}"), 1)
}

/// A peer (in memory) with a session with Bob that both sides have used.
fn peer(bob: &DurableStore, i: usize) -> ProtocolStore {
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    let mut p = ProtocolStore::generate(1, &mut OsRng).unwrap();
    p.process_bundle(&bob_addr(), &bundle, &mut OsRng).unwrap();
    let m = p.encrypt(&bob_addr(), b"hello").unwrap();
    deliver_to_bob(bob, i, &m).unwrap();
    let r = bob.encrypt(&peer_addr(i), b"hi").unwrap();
    p.decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    p
}

fn deliver_to_bob(
    bob: &DurableStore,
    i: usize,
    m: &CiphertextMessage,
) -> ratchetkit::Result<Vec<u8>> {
    bob.decrypt(&peer_addr(i), m.message_type(), m.serialize(), &mut OsRng)
}

/// Runs `round` ROUNDS times for each peer, each peer on its own thread
/// with its own clone of `bob`, the threads started together.
fn each_peer_on_its_thread(
    bob: &DurableStore,
    peers: &mut [ProtocolStore],
    round: impl Fn(usize, &mut ProtocolStore, &DurableStore, usize) + Sync,
) {
    let start = Barrier::new(peers.len());
    std::thread::scope(|s| {
        for (i, p) in peers.iter_mut().enumerate() {
            let (bob, start, round) = (bob.clone(), &start, &round);
            s.spawn(move || {
                start.wait();
                for n in 0..ROUNDS {
                    round(i, p, &bob, n);
                }
            });
        }
    });
}

/// Each thread converses with its own peer through one handle; some
/// calls fail (a forged message, a replay) in between. Then the file,
/// reopened, carries every conversation on.
fn conversations_on_one_handle(durability: Durability) {
    let db = TempDb::new("rk-threads");
    let bob = open(&db, durability);
    let mut peers: Vec<ProtocolStore> = (0..THREADS).map(|i| peer(&bob, i)).collect();
    each_peer_on_its_thread(&bob, &mut peers, |i, p, bob, round| {
        let text = format!("{i}:{round}");
        let m = p.encrypt(&bob_addr(), text.as_bytes()).unwrap();
        assert_eq!(deliver_to_bob(bob, i, &m).unwrap(), text.as_bytes());
        // A replay fails and writes nothing.
        let replay = deliver_to_bob(bob, i, &m);
        assert!(
            matches!(replay, Err(Error::DuplicateMessage { .. })),
            "thread {i} round {round}: {replay:?}"
        );
        // A forged message fails and writes nothing.
        let mut forged = m.serialize().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(bob
            .decrypt(&peer_addr(i), m.message_type(), &forged, &mut OsRng)
            .is_err());
        let r = bob.encrypt(&peer_addr(i), text.as_bytes()).unwrap();
        assert_eq!(
            p.decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
                .unwrap(),
            text.as_bytes()
        );
    });
    drop(bob);
    let bob = open(&db, durability);
    assert_eq!(bob.session_count().unwrap(), THREADS);
    for (i, p) in peers.iter_mut().enumerate() {
        let m = p.encrypt(&bob_addr(), b"after").unwrap();
        assert_eq!(deliver_to_bob(&bob, i, &m).unwrap(), b"after");
        let r = bob.encrypt(&peer_addr(i), b"back").unwrap();
        assert_eq!(
            p.decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
                .unwrap(),
            b"back"
        );
    }
}

#[test]
fn threads_converse_on_one_full_durability_handle() {
    conversations_on_one_handle(Durability::Full);
}

#[test]
fn threads_converse_on_one_normal_durability_handle() {
    // Decrypts commit at NORMAL outside the batches, encrypts at FULL in
    // them: the two paths interleave.
    conversations_on_one_handle(Durability::Normal);
}

/// Threads encrypting on one session never produce the same message key
/// twice: every message decrypts, once, at the peer, whatever the order.
#[test]
fn threads_encrypting_on_one_session_use_each_key_once() {
    let db = TempDb::new("rk-threads");
    let bob = open(&db, Durability::Full);
    let mut p = peer(&bob, 0);
    let start = Barrier::new(THREADS);
    let messages: Vec<Vec<CiphertextMessage>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let bob = bob.clone();
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    (0..ROUNDS)
                        .map(|n| {
                            bob.encrypt(&peer_addr(0), format!("{t}:{n}").as_bytes())
                                .unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = std::collections::BTreeSet::new();
    for (t, ms) in messages.iter().enumerate() {
        for (n, m) in ms.iter().enumerate() {
            let plain = p
                .decrypt(&bob_addr(), m.message_type(), m.serialize(), &mut OsRng)
                .unwrap();
            assert_eq!(plain, format!("{t}:{n}").as_bytes());
            assert!(seen.insert(m.serialize().to_vec()));
        }
    }
    // Reopened, Bob's chain is past every message sent.
    drop(bob);
    let bob = open(&db, Durability::Full);
    let next = bob.encrypt(&peer_addr(0), b"next").unwrap();
    assert_eq!(
        p.decrypt(
            &bob_addr(),
            next.message_type(),
            next.serialize(),
            &mut OsRng
        )
        .unwrap(),
        b"next"
    );
}

/// Two-phase decrypts and reads (which commit any open batch first) run
/// beside threads in batches.
#[test]
fn two_phase_commits_interleave_with_batches() {
    let db = TempDb::new("rk-threads");
    let bob = open(&db, Durability::Full);
    let mut peers: Vec<ProtocolStore> = (0..THREADS).map(|i| peer(&bob, i)).collect();
    each_peer_on_its_thread(&bob, &mut peers, |i, p, bob, round| {
        let m = p.encrypt(&bob_addr(), b"x").unwrap();
        if i % 2 == 0 {
            let pending = bob
                .decrypt_pending(&peer_addr(i), m.message_type(), m.serialize(), &mut OsRng)
                .unwrap();
            assert_eq!(pending.plaintext(), b"x");
            pending.commit().unwrap();
        } else {
            deliver_to_bob(bob, i, &m).unwrap();
        }
        assert_eq!(bob.session_count().unwrap(), THREADS, "round {round}");
        let replay = deliver_to_bob(bob, i, &m);
        assert!(
            matches!(replay, Err(Error::DuplicateMessage { .. })),
            "thread {i} round {round}: {replay:?}"
        );
    });
}

/// Two connections on one file (two handles), one at full durability and
/// one at normal, each with threads that start, use and remove sessions
/// (process_bundle always commits at full durability, so batches form on
/// both) beside two-phase decrypts: every call succeeds, and afterwards
/// the kept session count equals the rows and the sessions expected.
#[test]
fn two_connections_start_and_remove_sessions_beside_batches() {
    const CHURN: usize = 4;
    const CHURN_ROUNDS: usize = 24;
    let db = TempDb::new("rk-threads");
    let full = open(&db, Durability::Full);
    let normal = open(&db, Durability::Normal);
    let mut peers: Vec<ProtocolStore> = (0..2).map(|i| peer(&full, i)).collect();
    let start = Barrier::new(CHURN + 2);
    std::thread::scope(|s| {
        for t in 0..CHURN {
            let bob = if t % 2 == 0 {
                full.clone()
            } else {
                normal.clone()
            };
            let start = &start;
            s.spawn(move || {
                let mut remote = ProtocolStore::generate(7, &mut OsRng).unwrap();
                start.wait();
                for round in 0..CHURN_ROUNDS {
                    let a = Address::new(format!("churn{t}-{}", round % 3), 1);
                    if round % 4 == 3 {
                        bob.remove_session(&a).unwrap();
                        continue;
                    }
                    if !bob.has_session(&a).unwrap() {
                        let bundle = remote.create_bundle(true, 0, &mut OsRng).unwrap();
                        bob.process_bundle(&a, &bundle, &mut OsRng).unwrap();
                    }
                    bob.encrypt(&a, b"x").unwrap();
                }
            });
        }
        for (i, p) in peers.iter_mut().enumerate() {
            let bob = if i == 0 { full.clone() } else { normal.clone() };
            let start = &start;
            s.spawn(move || {
                start.wait();
                for _ in 0..ROUNDS / 2 {
                    let m = p.encrypt(&bob_addr(), b"y").unwrap();
                    let pending = bob
                        .decrypt_pending(&peer_addr(i), m.message_type(), m.serialize(), &mut OsRng)
                        .unwrap();
                    pending.commit().unwrap();
                    let r = bob.encrypt(&peer_addr(i), b"z").unwrap();
                    p.decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
                        .unwrap();
                }
            });
        }
    });
    // Which churn addresses end with a session (each thread has the same
    // plan), plus the two peers.
    let mut held = [false; 3];
    for round in 0..CHURN_ROUNDS {
        held[round % 3] = round % 4 != 3;
    }
    let expected = 2 + CHURN * held.iter().filter(|h| **h).count();
    drop((full, normal));
    let c = rusqlite::Connection::open(&db.0).unwrap();
    let rows: i64 = c
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    let kept: i64 = c
        .query_row("SELECT n FROM row_counts WHERE tbl = 'sessions'", [], |r| {
            r.get(0)
        })
        .unwrap();
    drop(c);
    assert_eq!((kept, rows), (expected as i64, expected as i64));
    assert_eq!(
        open(&db, Durability::Full).session_count().unwrap(),
        expected
    );
}

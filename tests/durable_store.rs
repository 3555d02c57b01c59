//! The durable store (SQLite): conversations across reopen, all-or-nothing
//! calls, two-phase decrypt, two connections on one file, encryption at
//! rest and tampering, import and rekey.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TempDb;

use rand::rngs::OsRng;
use ratchetkit::{Address, CiphertextMessage, DurableOptions, DurableStore, Error, ProtocolStore};
use rusqlite::Connection;

const KEY: [u8; 32] = [0x42; 32];

fn open(db: &TempDb) -> DurableStore {
    DurableStore::open(&db.0, &KEY, &DurableOptions::default()).unwrap()
}

fn alice_addr() -> Address {
    Address::new("alice", 1)
}
fn bob_addr() -> Address {
    Address::new("bob", 1)
}

/// Bob keeps his state in a durable store; Alice in memory. Alice has
/// processed Bob's bundle.
fn pair(db: &TempDb) -> (ProtocolStore, DurableStore) {
    let bob = open(db);
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    alice
        .process_bundle(&bob_addr(), &bundle, &mut OsRng)
        .unwrap();
    (alice, bob)
}

fn recv(bob: &DurableStore, m: &CiphertextMessage) -> ratchetkit::Result<Vec<u8>> {
    bob.decrypt(&alice_addr(), m.message_type(), m.serialize(), &mut OsRng)
}

#[test]
fn a_conversation_survives_reopening() {
    let db = TempDb::new("rk-durable");
    let (mut alice, bob) = pair(&db);
    let identity = *bob.identity_key();
    let m = alice.encrypt(&bob_addr(), b"hello").unwrap();
    assert_eq!(recv(&bob, &m).unwrap(), b"hello");
    assert_eq!(bob.session_version(&alice_addr()).unwrap(), Some(4));
    drop(bob);
    for round in 0..5u8 {
        let bob = open(&db);
        assert_eq!(*bob.identity_key(), identity);
        let r = bob.encrypt(&alice_addr(), &[round; 10]).unwrap();
        assert_eq!(
            alice
                .decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
                .unwrap(),
            [round; 10]
        );
        let m = alice.encrypt(&bob_addr(), &[round; 3]).unwrap();
        assert_eq!(recv(&bob, &m).unwrap(), [round; 3]);
        // A message delivered twice is a duplicate, also after reopening.
        drop(bob);
        let bob = open(&db);
        assert!(matches!(
            recv(&bob, &m),
            Err(Error::DuplicateMessage { .. })
        ));
    }
    let bob = open(&db);
    assert_eq!(bob.session_count().unwrap(), 1);
    assert_eq!(
        bob.trusted_identity("alice").unwrap(),
        Some(*alice.identity_key())
    );
    // The one-time prekeys of the first message are gone.
    assert_eq!(bob.prekey_count().unwrap(), 0);
    assert_eq!(bob.kyber_prekey_count().unwrap(), 0);
}

#[test]
fn a_wrong_key_has_its_own_error_and_rekeying_rewraps() {
    let db = TempDb::new("rk-durable");
    drop(open(&db));
    let err = DurableStore::open(&db.0, &[1u8; 32], &DurableOptions::default()).unwrap_err();
    assert_eq!(err, Error::WrongStoreKey);
    let err = DurableStore::open(&db.0, &[1u8; 31], &DurableOptions::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidKeyLength { .. }));
    let store = open(&db);
    store.rekey(&KEY, &[9u8; 32]).unwrap();
    assert_eq!(
        store.rekey(&KEY, &[9u8; 32]).unwrap_err(),
        Error::WrongStoreKey
    );
    drop(store);
    assert_eq!(
        DurableStore::open(&db.0, &KEY, &DurableOptions::default()).unwrap_err(),
        Error::WrongStoreKey
    );
    DurableStore::open(&db.0, &[9u8; 32], &DurableOptions::default()).unwrap();
}

#[test]
fn opening_without_create_fails_on_an_empty_file() {
    let db = TempDb::new("rk-durable");
    let options = DurableOptions {
        create_device_id: None,
        ..DurableOptions::default()
    };
    assert!(matches!(
        DurableStore::open(&db.0, &KEY, &options),
        Err(Error::Storage(_))
    ));
}

#[test]
fn a_failed_decrypt_writes_nothing() {
    let db = TempDb::new("rk-durable");
    let (mut alice, bob) = pair(&db);
    let m = alice.encrypt(&bob_addr(), b"first").unwrap();
    assert_eq!(recv(&bob, &m).unwrap(), b"first");
    let r = bob.encrypt(&alice_addr(), b"reply").unwrap();
    alice
        .decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    let before = bob.save().unwrap();
    let good = alice.encrypt(&bob_addr(), b"second").unwrap();
    let mut bad = good.serialize().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(bob
        .decrypt(&alice_addr(), good.message_type(), &bad, &mut OsRng)
        .is_err());
    assert_eq!(bob.save().unwrap(), before);
    assert_eq!(recv(&bob, &good).unwrap(), b"second");
}

#[test]
fn two_phase_decrypt_commit_discard_and_conflict() {
    let db = TempDb::new("rk-durable");
    let (alice, bob) = pair(&db);
    let m1 = alice.encrypt(&bob_addr(), b"one").unwrap();
    // Discard: nothing written, the message decrypts again.
    let pending = bob
        .decrypt_pending(&alice_addr(), m1.message_type(), m1.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(pending.plaintext(), b"one");
    drop(pending);
    assert!(!bob.has_session(&alice_addr()).unwrap());
    assert_eq!(bob.prekey_count().unwrap(), 1);
    // Commit.
    let pending = bob
        .decrypt_pending(&alice_addr(), m1.message_type(), m1.serialize(), &mut OsRng)
        .unwrap();
    pending.commit().unwrap();
    assert!(bob.has_session(&alice_addr()).unwrap());
    assert_eq!(bob.prekey_count().unwrap(), 0);
    assert!(matches!(
        recv(&bob, &m1),
        Err(Error::DuplicateMessage { .. })
    ));
    // Conflict: the session changes between decrypt and commit.
    let m2 = alice.encrypt(&bob_addr(), b"two").unwrap();
    let m3 = alice.encrypt(&bob_addr(), b"three").unwrap();
    let pending = bob
        .decrypt_pending(&alice_addr(), m2.message_type(), m2.serialize(), &mut OsRng)
        .unwrap();
    // Another connection (as another process would) decrypts m3.
    let other = open(&db);
    assert_eq!(recv(&other, &m3).unwrap(), b"three");
    assert_eq!(pending.commit().unwrap_err(), Error::StoreConflict);
    // m2 still decrypts (its skipped key was stored by m3's decrypt).
    assert_eq!(recv(&bob, &m2).unwrap(), b"two");
    assert!(matches!(
        recv(&other, &m2),
        Err(Error::DuplicateMessage { .. })
    ));
}

#[test]
fn two_connections_alternating_lose_no_advance() {
    let db = TempDb::new("rk-durable");
    let (mut alice, bob) = pair(&db);
    let other = open(&db);
    let m = alice.encrypt(&bob_addr(), b"start").unwrap();
    assert_eq!(recv(&bob, &m).unwrap(), b"start");
    for i in 0..200u32 {
        let side = if i % 2 == 0 { &bob } else { &other };
        let out = side.encrypt(&alice_addr(), &i.to_be_bytes()).unwrap();
        assert_eq!(
            alice
                .decrypt(&bob_addr(), out.message_type(), out.serialize(), &mut OsRng)
                .unwrap(),
            i.to_be_bytes()
        );
        let back = alice.encrypt(&bob_addr(), &i.to_le_bytes()).unwrap();
        let side = if i % 3 == 0 { &bob } else { &other };
        assert_eq!(recv(side, &back).unwrap(), i.to_le_bytes());
    }
}

/// A trust row (or the meta row) cached by one connection is read again
/// when another connection changes it (or removes its name's trust by
/// deleting the row), and a connection's own change is seen by both.
#[test]
fn trust_changed_by_another_connection_is_seen() {
    let db = TempDb::new("rk-durable");
    let one = open(&db);
    let two = open(&db);
    let k1 = *ProtocolStore::generate(1, &mut OsRng)
        .unwrap()
        .identity_key();
    let k2 = *ProtocolStore::generate(1, &mut OsRng)
        .unwrap()
        .identity_key();
    assert_eq!(one.trusted_identity("carol").unwrap(), None);
    assert!(!two.approve_identity("carol", k1).unwrap());
    assert_eq!(one.trusted_identity("carol").unwrap(), Some(k1));
    assert_eq!(two.trusted_identity("carol").unwrap(), Some(k1));
    assert!(two.approve_identity("carol", k2).unwrap());
    assert_eq!(one.trusted_identity("carol").unwrap(), Some(k2));
    assert!(one.approve_identity("carol", k1).unwrap());
    assert_eq!(one.trusted_identity("carol").unwrap(), Some(k1));
    assert_eq!(two.trusted_identity("carol").unwrap(), Some(k1));
    raw(&db).execute("DELETE FROM trust", []).unwrap();
    assert_eq!(one.trusted_identity("carol").unwrap(), None);
    assert_eq!(two.trusted_identity("carol").unwrap(), None);
    // The meta row likewise.
    let policy = one.policy().unwrap();
    let flipped = ratchetkit::store::SessionPolicy {
        allow_v3_initiation: !policy.allow_v3_initiation,
        ..policy
    };
    two.set_policy(flipped).unwrap();
    assert_eq!(one.policy().unwrap(), flipped);
    one.set_policy(policy).unwrap();
    assert_eq!(two.policy().unwrap(), policy);
    assert_eq!(one.policy().unwrap(), policy);
}

fn raw(db: &TempDb) -> Connection {
    Connection::open(&db.0).unwrap()
}

/// Flips byte `at` of every value of `table`.
fn flip(c: &Connection, table: &str, at: usize) {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = c
        .prepare(&format!("SELECT k, value FROM {table}"))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert!(!rows.is_empty());
    for (k, mut v) in rows {
        v[at] ^= 1;
        c.execute(
            &format!("UPDATE {table} SET value = ?1 WHERE k = ?2"),
            (v, k),
        )
        .unwrap();
    }
}

#[test]
fn tampered_records_are_refused_never_used() {
    let db = TempDb::new("rk-durable");
    let (alice, bob) = pair(&db);
    let m = alice.encrypt(&bob_addr(), b"hello").unwrap();
    recv(&bob, &m).unwrap();
    bob.approve_identity("carol", *alice.identity_key())
        .unwrap();
    drop(bob);
    let c = raw(&db);
    assert_eq!(
        c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
            .unwrap(),
        "ok"
    );
    // Flip one byte of the session's value.
    flip(&c, "sessions", 40);
    let bob = open(&db);
    let next = alice.encrypt(&bob_addr(), b"next").unwrap();
    assert!(matches!(recv(&bob, &next), Err(Error::StoreCorrupt(_))));
    assert!(matches!(
        bob.encrypt(&alice_addr(), b"x"),
        Err(Error::StoreCorrupt(_))
    ));
    // A deleted session row: no session.
    c.execute("DELETE FROM sessions", []).unwrap();
    assert!(matches!(
        bob.encrypt(&alice_addr(), b"x"),
        Err(Error::NoSession(_))
    ));
    // Two trust rows' values swapped: each refuses to open.
    c.execute_batch(
        "CREATE TEMP TABLE t AS SELECT k, value FROM trust;
         UPDATE trust SET value = (SELECT value FROM t WHERE t.k != trust.k);",
    )
    .unwrap();
    assert!(matches!(
        bob.trusted_identity("carol"),
        Err(Error::StoreCorrupt(_))
    ));
    // The meta row deleted: every call that needs it fails clearly.
    c.execute("DELETE FROM meta", []).unwrap();
    assert!(matches!(bob.policy(), Err(Error::StoreCorrupt(_))));
}

#[test]
fn the_file_does_not_list_names() {
    let db = TempDb::new("rk-durable");
    let (alice, bob) = pair(&db);
    let m = alice.encrypt(&bob_addr(), b"hello").unwrap();
    recv(&bob, &m).unwrap();
    drop(bob);
    let bytes = std::fs::read(&db.0).unwrap();
    let wal = std::fs::read(format!("{}-wal", db.0.display())).unwrap_or_default();
    for file in [&bytes, &wal] {
        assert!(!file.windows(5).any(|w| w == b"alice"));
        assert!(!file.windows(5).any(|w| w == b"hello"));
    }
}

#[test]
fn import_of_saved_bytes_and_save_round_trip() {
    let db = TempDb::new("rk-durable");
    let (alice, mut bob_mem) = {
        let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
        let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
        alice
            .process_bundle(&bob_addr(), &bundle, &mut OsRng)
            .unwrap();
        (alice, bob)
    };
    let m = alice.encrypt(&bob_addr(), b"before").unwrap();
    bob_mem
        .decrypt(&alice_addr(), m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    let saved = bob_mem.save_encrypted(&[3u8; 32], &mut OsRng).unwrap();
    let restored = ProtocolStore::restore_encrypted(&saved, &[3u8; 32]).unwrap();
    let bob = DurableStore::import(&db.0, &KEY, &restored, &DurableOptions::default()).unwrap();
    assert_eq!(bob.save().unwrap(), restored.save());
    let m = alice.encrypt(&bob_addr(), b"after").unwrap();
    assert_eq!(recv(&bob, &m).unwrap(), b"after");
    drop(bob);
    assert!(matches!(
        DurableStore::import(&db.0, &KEY, &restored, &DurableOptions::default()),
        Err(Error::Storage(_))
    ));
}

#[test]
fn prekey_management_is_durable() {
    let db = TempDb::new("rk-durable");
    let store = open(&db);
    let ids = store.generate_prekeys(10, &mut OsRng).unwrap();
    assert_eq!(ids.len(), 10);
    store.generate_kyber_prekeys(5, 1, &mut OsRng).unwrap();
    let lr = store
        .generate_last_resort_kyber_prekey(1, &mut OsRng)
        .unwrap();
    let spk = store.generate_signed_prekey(1, &mut OsRng).unwrap();
    drop(store);
    let store = open(&db);
    assert_eq!(store.prekey_count().unwrap(), 10);
    assert_eq!(store.kyber_prekey_count().unwrap(), 5);
    assert_eq!(store.last_resort_kyber_prekey_id().unwrap(), Some(lr));
    assert!(store.kyber_prekey(lr).unwrap().is_some());
    // The current signed prekey cannot be removed; an older one can.
    assert!(store.remove_signed_prekey(spk).is_err());
    store.generate_signed_prekey(2, &mut OsRng).unwrap();
    store.remove_signed_prekey(spk).unwrap();
    let mem = store.to_memory().unwrap();
    assert_eq!(mem.prekey_count(), 10);
}

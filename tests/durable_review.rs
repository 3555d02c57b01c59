//! Adversarial review of the durable store, through its public API.
//!
//! Tests named `documents_*` pass: they pin down an outcome the design
//! accepts (and the docs should state). The others reproduce a finding and
//! fail until it is fixed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TempDb;

use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use rand::RngCore;
use ratchetkit::{
    Address, CiphertextMessage, DurableOptions, DurableStore, Error, PreKeySignalMessage,
    ProtocolStore,
};
use rusqlite::Connection;

const KEY: [u8; 32] = [0x42; 32];

fn open(db: &TempDb) -> DurableStore {
    DurableStore::open(&db.0, &KEY, &DurableOptions::default()).unwrap()
}

fn raw(db: &TempDb) -> Connection {
    Connection::open(&db.0).unwrap()
}

fn bob_addr() -> Address {
    Address::new("bob", 1)
}

/// A new sender's first message to `bob`, from a bundle without a one-time
/// prekey (Bob's last-resort Kyber prekey: a reusable one).
fn first_message(bob: &DurableStore) -> (ProtocolStore, CiphertextMessage) {
    let bundle = bob.create_bundle(false, 0, &mut OsRng).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    alice
        .process_bundle(&bob_addr(), &bundle, &mut OsRng)
        .unwrap();
    let m = alice.encrypt(&bob_addr(), b"hi").unwrap();
    (alice, m)
}

/// Review finding: the store-key row removed (tampering, or a bad restore
/// of part of the file) is not reported: `open` silently creates a new
/// store in the same file, with a new identity, next to the old rows (which
/// it can no longer read). The application carries on under an identity
/// its contacts do not know, with every session gone.
#[test]
fn a_missing_key_row_is_corrupt_not_a_new_identity() {
    let db = TempDb::new("rk-review");
    let bob = open(&db);
    let identity = *bob.identity_key();
    let (_alice, m) = first_message(&bob);
    bob.decrypt(
        &Address::new("alice", 1),
        m.message_type(),
        m.serialize(),
        &mut OsRng,
    )
    .unwrap();
    drop(bob);
    raw(&db).execute("DELETE FROM store_key", []).unwrap();
    match DurableStore::open(&db.0, &KEY, &DurableOptions::default()) {
        Err(Error::StoreCorrupt(_)) => {}
        Ok(store) => panic!(
            "opened as a new store: identity changed {}, sessions {}",
            *store.identity_key() != identity,
            store.session_count().unwrap()
        ),
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

/// Review finding: every prekey message (type 3) from an address without a
/// session counts the whole sessions table (`SELECT COUNT(*) FROM
/// sessions`, a walk of every leaf page) before anything about the message
/// is checked: even one garbage byte, which fails to parse, costs a scan.
/// Anyone can send those. Timed against the same garbage as a whisper
/// message (which counts nothing), on a store of 20,000 sessions.
#[test]
fn a_garbage_prekey_message_scans_the_sessions_table() {
    let db = TempDb::new("rk-review");
    let bob = open(&db);
    // 20,000 rows the size of a small session record (only counted here).
    {
        let mut c = raw(&db);
        let tx = c.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare("INSERT INTO sessions (k, version, value) VALUES (?1, 1, ?2)")
                .unwrap();
            let value = vec![0u8; 1500];
            for _ in 0..20_000 {
                let mut k = [0u8; 32];
                OsRng.fill_bytes(&mut k);
                stmt.execute((&k[..], &value)).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let stranger = Address::new("mallory", 1);
    let garbage = [0x33u8];
    let fastest = |message_type: u8| {
        (0..15)
            .map(|_| {
                let t = Instant::now();
                assert!(bob
                    .decrypt(&stranger, message_type, &garbage, &mut OsRng)
                    .is_err());
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let whisper = fastest(2);
    let prekey = fastest(3);
    eprintln!("garbage whisper {whisper:?}, garbage prekey {prekey:?}");
    assert!(
        prekey < whisper * 5 + Duration::from_micros(500),
        "a one-byte forged prekey message costs {prekey:?}, the same garbage as whisper {whisper:?}"
    );
}

/// Documents: the file rolled back to an older copy (a backup restored, a
/// synced folder) opens without complaint, and the next encrypt reuses the
/// message key (same counter on the same chain) of a message already sent.
/// The at-rest encryption cannot see it: every row is genuine.
#[test]
fn documents_a_rolled_back_file_reuses_message_keys() {
    let db = TempDb::new("rk-review");
    let bob = open(&db);
    let alice = Address::new("alice", 1);
    let (mut a, m) = first_message(&bob);
    bob.decrypt(&alice, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    drop(bob);
    // A copy of the file (WAL checkpointed into it on close).
    let copy = std::fs::read(&db.0).unwrap();
    let bob = open(&db);
    let first = bob.encrypt(&alice, b"first").unwrap();
    drop(bob);
    std::fs::write(&db.0, &copy).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", db.0.display()));
    let bob = open(&db);
    let second = bob.encrypt(&alice, b"other").unwrap();
    let counter = |m: &CiphertextMessage| {
        ratchetkit::SignalMessage::deserialize(m.serialize())
            .unwrap()
            .counter()
    };
    assert_eq!(counter(&first), counter(&second));
    assert_eq!(
        a.decrypt(
            &bob_addr(),
            first.message_type(),
            first.serialize(),
            &mut OsRng
        )
        .unwrap(),
        b"first"
    );
    // The second (same key, other plaintext) is refused as a duplicate by
    // the receiver, but it is on the wire: keystream reuse.
    assert!(a
        .decrypt(
            &bob_addr(),
            second.message_type(),
            second.serialize(),
            &mut OsRng
        )
        .is_err());
}

/// Documents: rows can be deleted without the key. Deleting the base-key
/// use row (what refuses a second session from one base key) lets a
/// captured first message start a session under another address and
/// deliver its plaintext again.
#[test]
fn documents_a_deleted_use_row_lets_a_replay_through() {
    let db = TempDb::new("rk-review");
    let bob = open(&db);
    let (_a, m) = first_message(&bob);
    let parsed = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    assert!(parsed.pre_key_id().is_none());
    bob.decrypt(
        &Address::new("alice", 1),
        m.message_type(),
        m.serialize(),
        &mut OsRng,
    )
    .unwrap();
    let replay = |name: &str| {
        bob.decrypt(
            &Address::new(name, 1),
            m.message_type(),
            m.serialize(),
            &mut OsRng,
        )
    };
    assert!(replay("mallory").is_err());
    raw(&db).execute("DELETE FROM base_key_uses", []).unwrap();
    assert_eq!(replay("mallory2").unwrap(), b"hi");
}

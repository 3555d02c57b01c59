//! The durable store's schema versions.
//!
//! `tests/vectors/durable_v<N>.sqlite` is a database of schema version N
//! for every version so far (1: the record tables; 2: the session count),
//! each written by `write_durable_vector` (ignored) with the key [`KEY`]
//! when that version was current, and `tests/vectors/durable_v<N>.json`
//! records what it holds: Bob's identity, his session with Alice, and a
//! message Alice sent on it that the file has not yet received. Every run
//! opens a copy of each committed file with the current library (which
//! migrates the older ones) and checks the content, so a change to the
//! schema or the row format that old files do not survive fails here; a
//! new schema version needs a migration (`MIGRATIONS` in
//! `src/store/durable/schema.rs`) and a new vector beside these.
//!
//! To write the current version's vector (only when a new version is
//! made; earlier vectors are never rewritten):
//!
//! ```sh
//! cargo test --release --test durable_migration -- --ignored
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TempDb;

use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use ratchetkit::{Address, DurableOptions, DurableStore, Error, ProtocolStore, PublicKey};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

/// The application key of the committed vector.
const KEY: [u8; 32] = [0x5a; 32];
/// The schema version this library writes.
const CURRENT_VERSION: i64 = 2;

#[derive(Serialize, Deserialize)]
struct Vector {
    comment: String,
    schema_version: i64,
    /// Bob's identity public key (33 bytes, hex).
    identity_key: String,
    registration_id: u32,
    device_id: u32,
    /// Alice's identity key, trusted by Bob (hex).
    alice_identity_key: String,
    /// A message from Alice to Bob on the stored session (hex), not yet
    /// received by the stored state.
    message_type: u8,
    message: String,
    plaintext: String,
}

fn vector_path(version: i64, ext: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/vectors/durable_v{version}.{ext}"))
}

/// A copy of the committed vector of schema `version`.
fn copy_of_vector(version: i64) -> TempDb {
    let db = TempDb::new("rk-migration");
    std::fs::copy(vector_path(version, "sqlite"), &db.0).unwrap();
    db
}

fn open_existing(path: &Path) -> ratchetkit::Result<DurableStore> {
    let options = DurableOptions {
        create_device_id: None,
        ..DurableOptions::default()
    };
    DurableStore::open(path, &KEY, &options)
}

fn vector(version: i64) -> Vector {
    serde_json::from_slice(&std::fs::read(vector_path(version, "json")).unwrap()).unwrap()
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn every_version_opens_with_its_content() {
    for version in 1..=CURRENT_VERSION {
        opens_with_its_content(version);
    }
}

fn opens_with_its_content(version: i64) {
    let v = vector(version);
    assert_eq!(v.schema_version, version);
    let db = copy_of_vector(version);
    assert_eq!(user_version(&db.0), version);
    let bob = open_existing(&db.0).unwrap();
    assert_eq!(hex::encode(bob.identity_key().serialize()), v.identity_key);
    assert_eq!(bob.registration_id(), v.registration_id);
    assert_eq!(bob.device_id(), v.device_id);
    let alice = Address::new("alice", 1);
    assert_eq!(bob.session_count().unwrap(), 1);
    assert_eq!(bob.session_version(&alice).unwrap(), Some(4));
    assert_eq!(
        bob.trusted_identity("alice")
            .unwrap()
            .map(|k| hex::encode(k.serialize())),
        Some(v.alice_identity_key.clone())
    );
    // The stored session decrypts the recorded message, and sends.
    let plaintext = bob
        .decrypt(
            &alice,
            v.message_type,
            &hex::decode(&v.message).unwrap(),
            &mut OsRng,
        )
        .unwrap();
    assert_eq!(plaintext, v.plaintext.as_bytes());
    let reply = bob.encrypt(&alice, b"reply").unwrap();
    assert!(!reply.serialize().is_empty());
    // The prekeys survive: a new bundle, signed by the stored identity,
    // starts a session.
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    let mut carol = ProtocolStore::generate(1, &mut OsRng).unwrap();
    carol
        .process_bundle(&Address::new("bob", 1), &bundle, &mut OsRng)
        .unwrap();
    drop(bob);
    // Opening migrated the file to the current version, whose session
    // count matches the rows (and opening again changes nothing).
    assert_eq!(user_version(&db.0), CURRENT_VERSION);
    assert_eq!(stored_session_count(&db.0), (1, 1));
    let again = open_existing(&db.0).unwrap();
    assert_eq!(again.session_count().unwrap(), 1);
    drop(again);
    assert_eq!(user_version(&db.0), CURRENT_VERSION);
}

/// The session count schema 2 keeps, and the rows counted.
fn stored_session_count(path: &Path) -> (i64, i64) {
    let c = Connection::open(path).unwrap();
    let kept = c
        .query_row("SELECT n FROM row_counts WHERE tbl = 'sessions'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let rows = c
        .query_row("SELECT COUNT(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    (kept, rows)
}

/// A migration commits only with the open that succeeds: a wrong key
/// leaves the file at version 1, and the right key then migrates it.
#[test]
fn a_refused_open_does_not_migrate() {
    let db = copy_of_vector(1);
    let wrong = [0x11; 32];
    assert!(matches!(
        DurableStore::open(&db.0, &wrong, &DurableOptions::default()),
        Err(Error::WrongStoreKey)
    ));
    assert_eq!(user_version(&db.0), 1);
    open_existing(&db.0).unwrap();
    assert_eq!(user_version(&db.0), CURRENT_VERSION);
}

#[test]
fn a_newer_schema_version_is_refused() {
    for newer in [CURRENT_VERSION + 1, 1000] {
        let db = copy_of_vector(1);
        Connection::open(&db.0)
            .unwrap()
            .execute_batch(&format!("PRAGMA user_version = {newer}"))
            .unwrap();
        match open_existing(&db.0) {
            Err(Error::Storage(msg)) => assert_eq!(
                msg,
                format!(
                    "the database has schema version {newer}, newer than this library's {CURRENT_VERSION}"
                )
            ),
            other => panic!("version {newer}: {other:?}"),
        }
        // Refused without a change: the version is still the newer one.
        assert_eq!(user_version(&db.0), newer);
    }
}

#[test]
fn a_negative_schema_version_is_refused() {
    let db = copy_of_vector(1);
    Connection::open(&db.0)
        .unwrap()
        .execute_batch("PRAGMA user_version = -1")
        .unwrap();
    assert_eq!(
        open_existing(&db.0).map(drop),
        Err(Error::Storage("unknown schema version -1".into()))
    );
}

/// Writes the vector (the database and its description).
#[test]
#[ignore = "writes tests/vectors/durable_v<current>.*; run only for a new schema version"]
fn write_durable_vector() {
    let path = vector_path(CURRENT_VERSION, "sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let bob_addr = Address::new("bob", 1);
    let alice_addr = Address::new("alice", 1);
    let bob = DurableStore::open(&path, &KEY, &DurableOptions::default()).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    alice
        .process_bundle(&bob_addr, &bundle, &mut OsRng)
        .unwrap();
    let first = alice.encrypt(&bob_addr, b"first").unwrap();
    bob.decrypt(
        &alice_addr,
        first.message_type(),
        first.serialize(),
        &mut OsRng,
    )
    .unwrap();
    let back = bob.encrypt(&alice_addr, b"back").unwrap();
    alice
        .decrypt(&bob_addr, back.message_type(), back.serialize(), &mut OsRng)
        .unwrap();
    let plaintext = "recorded after the vector was written";
    let m = alice.encrypt(&bob_addr, plaintext.as_bytes()).unwrap();
    let key_hex = |k: &PublicKey| hex::encode(k.serialize());
    let v = Vector {
        comment: format!(
            "A durable store of schema version {CURRENT_VERSION} (durable_v{CURRENT_VERSION}.sqlite, \
             application key 32 bytes of 0x5a) and what it holds. Written by \
             tests/durable_migration.rs (write_durable_vector)."
        ),
        schema_version: CURRENT_VERSION,
        identity_key: key_hex(bob.identity_key()),
        registration_id: bob.registration_id(),
        device_id: bob.device_id(),
        alice_identity_key: key_hex(alice.identity_key()),
        message_type: m.message_type(),
        message: hex::encode(m.serialize()),
        plaintext: plaintext.into(),
    };
    drop(bob);
    assert!(!Path::new(&format!("{}-wal", path.display())).exists());
    // VACUUM: no free pages holding older sealed rows.
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = DELETE; VACUUM;")
        .unwrap();
    let mut json = serde_json::to_string_pretty(&v).unwrap();
    json.push('\n');
    std::fs::write(vector_path(CURRENT_VERSION, "json"), json).unwrap();
}

//! Tampering with a closed durable store's file, table by table.
//!
//! One fixture store holds rows in every table of the schema (the key
//! row, meta, two sessions, two trusted identities, two signed prekeys,
//! one-time and Kyber prekeys, two base-key uses) and two messages that
//! read them: a first message not yet delivered (it names a signed, a
//! one-time and a one-time Kyber prekey) and a first message already
//! delivered (its replay from another address reads the base-key uses).
//! Each case copies the fixture file, changes it with SQLite directly
//! while no store has it open, opens it and runs the call that reads the
//! changed table:
//!
//! - a flipped byte in a value, two rows' values swapped, a value moved in
//!   from another table: [`Error::StoreCorrupt`], for every table (for the
//!   key row, a flipped byte is [`Error::WrongStoreKey`]: the key row is
//!   what tells a wrong key, and altering it is indistinguishable);
//! - a deleted row: the error a missing record gives (no session, missing
//!   prekey), or the documented outcome where a missing row is not
//!   detectable (trust, base-key uses: see the module docs of
//!   `ratchetkit::store::durable`, "What encryption at rest does not
//!   cover");
//! - the whole file replaced by an older copy: opens, and every table is
//!   back to the older content (documented as undetectable; the
//!   consequence for message keys is pinned down by
//!   `documents_a_rolled_back_file_reuses_message_keys` in
//!   `tests/durable_review.rs`).
//!
//! - the session count (`row_counts`, plain, kept by triggers): a deleted
//!   count row is [`Error::StoreCorrupt`] for a call that starts a
//!   session, and a changed count only moves the session cap (documented
//!   in SECURITY.md).
//!
//! A wrong key has its own status: `a_wrong_key_has_its_own_error_and_rekeying_rewraps`
//! in `tests/durable_store.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::TempDb;

use std::sync::OnceLock;

use rand::rngs::OsRng;
use ratchetkit::{
    Address, CiphertextMessage, DurableOptions, DurableStore, Error, PreKeySignalMessage,
    ProtocolStore,
};
use rusqlite::Connection;

const KEY: [u8; 32] = [0x42; 32];

/// The record tables (every table of the schema but the key row).
const TABLES: [&str; 7] = [
    "meta",
    "sessions",
    "trust",
    "signed_prekeys",
    "prekeys",
    "kyber_prekeys",
    "base_key_uses",
];

fn open(db: &TempDb) -> ratchetkit::Result<DurableStore> {
    let options = DurableOptions {
        create_device_id: None,
        ..DurableOptions::default()
    };
    DurableStore::open(&db.0, &KEY, &options)
}

fn bob_addr() -> Address {
    Address::new("bob", 1)
}

/// The fixture: the file's bytes (checkpointed, closed) and the messages.
struct Fixture {
    file: Vec<u8>,
    /// Carol's first message, not delivered: names signed prekey
    /// `signed_id`, one-time prekey `one_time_id`, Kyber prekey `kyber_id`.
    pending: CiphertextMessage,
    signed_id: u32,
    one_time_id: u32,
    kyber_id: u32,
    /// Alice's first message, delivered (its base-key use is recorded).
    delivered: CiphertextMessage,
}

fn first_message(
    bob: &DurableStore,
    one_time: bool,
    name: &str,
) -> (ProtocolStore, CiphertextMessage) {
    let bundle = bob.create_bundle(one_time, 0, &mut OsRng).unwrap();
    let mut peer = ProtocolStore::generate(1, &mut OsRng).unwrap();
    peer.process_bundle(&bob_addr(), &bundle, &mut OsRng)
        .unwrap();
    let m = peer
        .encrypt(&bob_addr(), format!("hi from {name}").as_bytes())
        .unwrap();
    (peer, m)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let db = TempDb::new("rk-tamper");
        let bob = DurableStore::open(&db.0, &KEY, &DurableOptions::default()).unwrap();
        // Two sessions, two trusted names, two base-key uses (both on the
        // last-resort Kyber prekey).
        let (_alice, delivered) = first_message(&bob, false, "alice");
        let (_dave, dave_m) = first_message(&bob, false, "dave");
        for (name, m) in [("alice", &delivered), ("dave", &dave_m)] {
            bob.decrypt(
                &Address::new(name, 1),
                m.message_type(),
                m.serialize(),
                &mut OsRng,
            )
            .unwrap();
        }
        // A second signed prekey, more one-time prekeys, then Carol's
        // message from a bundle with one-time prekeys (under the current
        // signed prekey).
        bob.generate_signed_prekey(1, &mut OsRng).unwrap();
        bob.generate_prekeys(2, &mut OsRng).unwrap();
        let (_carol, pending) = first_message(&bob, true, "carol");
        drop(bob);
        let parsed = PreKeySignalMessage::deserialize(pending.serialize()).unwrap();
        let file = std::fs::read(&db.0).unwrap();
        assert!(
            !std::path::Path::new(&format!("{}-wal", db.0.display())).exists(),
            "closing the last connection checkpoints the WAL into the file"
        );
        let f = Fixture {
            file,
            signed_id: parsed.signed_pre_key_id(),
            one_time_id: parsed.pre_key_id().unwrap(),
            kyber_id: parsed.kyber().unwrap().pre_key_id,
            pending,
            delivered,
        };
        // Every table holds rows; the ones swapped within hold two or more.
        let c = Connection::open(&db.0).unwrap();
        for t in TABLES.iter().chain(&["store_key"]) {
            let n = rows(&c, t);
            assert!(n >= 1, "{t}: {n} rows");
            if !matches!(*t, "meta" | "store_key") {
                assert!(n >= 2, "{t}: {n} rows");
            }
        }
        f
    })
}

fn rows(c: &Connection, table: &str) -> usize {
    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as usize
}

/// A copy of the fixture file, changed by `tamper` while closed.
fn tampered(tamper: impl FnOnce(&Connection)) -> TempDb {
    let db = TempDb::new("rk-tamper");
    std::fs::write(&db.0, &fixture().file).unwrap();
    let c = Connection::open(&db.0).unwrap();
    tamper(&c);
    drop(c);
    db
}

/// Every (k, value) of `table`, ordered by k.
fn values(c: &Connection, table: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    c.prepare(&format!("SELECT k, value FROM {table} ORDER BY k"))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn set_value(c: &Connection, table: &str, k: &[u8], value: &[u8]) {
    let n = c
        .execute(
            &format!("UPDATE {table} SET value = ?1 WHERE k = ?2"),
            (value, k),
        )
        .unwrap();
    assert_eq!(n, 1);
}

/// Flips one byte (in the middle) of every value of `table`.
fn flip_every_value(c: &Connection, table: &str) {
    for (k, mut v) in values(c, table) {
        let at = v.len() / 2;
        v[at] ^= 0x01;
        set_value(c, table, &k, &v);
    }
}

/// Rotates the values of `table` by one row: every row holds another
/// row's genuine value.
fn swap_values(c: &Connection, table: &str) {
    let rows = values(c, table);
    assert!(rows.len() >= 2);
    for (i, (k, _)) in rows.iter().enumerate() {
        set_value(c, table, k, &rows[(i + 1) % rows.len()].1);
    }
}

/// Puts a genuine value of table `from` into every row of `table`.
fn move_values_from(c: &Connection, table: &str, from: &str) {
    let source = values(c, from)[0].1.clone();
    for (k, _) in values(c, table) {
        set_value(c, table, &k, &source);
    }
}

/// The call that reads `table`'s rows, on the opened store.
fn probe(table: &str, db: &TempDb) -> ratchetkit::Result<()> {
    let f = fixture();
    let bob = open(db)?;
    match table {
        "meta" => bob.policy().map(drop),
        "sessions" => bob.encrypt(&Address::new("alice", 1), b"x").map(drop),
        "trust" => bob.trusted_identity("alice").map(drop),
        "signed_prekeys" | "prekeys" | "kyber_prekeys" => bob
            .decrypt(
                &Address::new("carol", 1),
                f.pending.message_type(),
                f.pending.serialize(),
                &mut OsRng,
            )
            .map(drop),
        "base_key_uses" => bob
            .decrypt(
                &Address::new("mallory", 1),
                f.delivered.message_type(),
                f.delivered.serialize(),
                &mut OsRng,
            )
            .map(drop),
        other => panic!("no probe for {other}"),
    }
}

fn assert_corrupt(table: &str, case: &str, r: ratchetkit::Result<()>) {
    assert!(
        matches!(r, Err(Error::StoreCorrupt(_))),
        "{table}, {case}: {r:?}"
    );
}

#[test]
fn the_probes_succeed_on_the_untouched_fixture() {
    for table in TABLES {
        let db = tampered(|_| {});
        let r = probe(table, &db);
        if table == "base_key_uses" {
            // The replay is refused: the use is recorded.
            assert!(matches!(r, Err(Error::InvalidMessage(_))), "{table}: {r:?}");
        } else {
            assert_eq!(r, Ok(()), "{table}");
        }
    }
}

#[test]
fn a_flipped_byte_in_any_table_is_corrupt() {
    for table in TABLES {
        let db = tampered(|c| flip_every_value(c, table));
        assert_corrupt(table, "flipped byte", probe(table, &db));
    }
}

#[test]
fn a_flipped_byte_in_the_key_row_is_a_wrong_key() {
    let db = tampered(|c| {
        let mut wrapped: Vec<u8> = c
            .query_row("SELECT wrapped FROM store_key", [], |r| r.get(0))
            .unwrap();
        wrapped[30] ^= 0x01;
        c.execute("UPDATE store_key SET wrapped = ?1", [wrapped])
            .unwrap();
    });
    assert_eq!(open(&db).map(drop), Err(Error::WrongStoreKey));
}

#[test]
fn values_swapped_within_a_table_are_corrupt() {
    for table in TABLES {
        if table == "meta" {
            continue; // one row: see values_moved_between_tables_are_corrupt
        }
        let db = tampered(|c| swap_values(c, table));
        assert_corrupt(table, "values swapped", probe(table, &db));
    }
}

#[test]
fn values_moved_between_tables_are_corrupt() {
    for (i, table) in TABLES.iter().enumerate() {
        let from = TABLES[(i + 1) % TABLES.len()];
        let db = tampered(|c| move_values_from(c, table, from));
        assert_corrupt(table, &format!("value from {from}"), probe(table, &db));
    }
    // The row's plain columns are bound too: a base-key use whose counted
    // prekey id was changed does not open.
    let db = tampered(|c| {
        c.execute("UPDATE base_key_uses SET kyber_id = kyber_id + 1", [])
            .unwrap();
    });
    assert_corrupt(
        "base_key_uses",
        "kyber_id changed",
        probe("base_key_uses", &db),
    );
}

#[test]
fn deleted_rows_give_the_missing_record_error_or_the_documented_outcome() {
    let f = fixture();
    let deleted = |table: &str| tampered(|c| drop(c.execute(&format!("DELETE FROM {table}"), [])));
    // The meta row: corrupt (a store without one is not a store).
    assert_corrupt("meta", "deleted", probe("meta", &deleted("meta")));
    // A session: no session.
    assert_eq!(
        probe("sessions", &deleted("sessions")),
        Err(Error::NoSession("alice".into()))
    );
    // Prekeys: the prekey message names a missing prekey.
    assert_eq!(
        probe("signed_prekeys", &deleted("signed_prekeys")),
        Err(Error::MissingSignedPreKey(f.signed_id))
    );
    assert_eq!(
        probe("prekeys", &deleted("prekeys")),
        Err(Error::MissingPreKey(f.one_time_id))
    );
    assert_eq!(
        probe("kyber_prekeys", &deleted("kyber_prekeys")),
        Err(Error::MissingKyberPreKey(f.kyber_id))
    );
    // Documented: a deleted trust row is not detected; the name is
    // trusted on first use again.
    let db = deleted("trust");
    assert_eq!(open(&db).unwrap().trusted_identity("alice"), Ok(None));
    // Documented: a deleted base-key use lets the captured first message
    // start a session again (see also
    // documents_a_deleted_use_row_lets_a_replay_through).
    assert_eq!(probe("base_key_uses", &deleted("base_key_uses")), Ok(()));
    // The key row: corrupt, never a new store (open without create).
    let db = deleted("store_key");
    assert!(matches!(open(&db).map(drop), Err(Error::StoreCorrupt(_))));
}

/// Documented: the whole file replaced by an older copy opens without
/// complaint, and every table is back to the older content.
#[test]
fn an_older_copy_of_the_file_opens_with_the_older_content() {
    let f = fixture();
    let db = tampered(|_| {});
    let older = std::fs::read(&db.0).unwrap();
    let carol = Address::new("carol", 1);
    {
        // Changes in every table: Carol's message (a session, trust, the
        // one-time prekeys consumed), Frank's (a base-key use of the
        // last-resort Kyber prekey), a new signed prekey (meta: the
        // current one), a trusted name.
        let bob = open(&db).unwrap();
        bob.decrypt(
            &carol,
            f.pending.message_type(),
            f.pending.serialize(),
            &mut OsRng,
        )
        .unwrap();
        let (_frank, m) = first_message(&bob, false, "frank");
        bob.decrypt(
            &Address::new("frank", 1),
            m.message_type(),
            m.serialize(),
            &mut OsRng,
        )
        .unwrap();
        bob.generate_signed_prekey(2, &mut OsRng).unwrap();
        bob.approve_identity("erin", *bob.identity_key()).unwrap();
        assert!(bob.has_session(&carol).unwrap());
    }
    let newer_rows: Vec<_> = {
        let c = Connection::open(&db.0).unwrap();
        TABLES.iter().map(|t| values(&c, t)).collect()
    };
    std::fs::write(&db.0, &older).unwrap();
    let _ = std::fs::remove_file(format!("{}-wal", db.0.display()));
    let _ = std::fs::remove_file(format!("{}-shm", db.0.display()));
    let c = Connection::open(&db.0).unwrap();
    for (t, newer) in TABLES.iter().zip(&newer_rows) {
        assert_ne!(&values(&c, t), newer, "{t} changed after the copy");
    }
    drop(c);
    let bob = open(&db).unwrap();
    assert!(!bob.has_session(&carol).unwrap());
    assert_eq!(bob.trusted_identity("erin"), Ok(None));
    // The consumed one-time prekeys are back: the same first message
    // decrypts a second time.
    assert_eq!(
        bob.decrypt(
            &carol,
            f.pending.message_type(),
            f.pending.serialize(),
            &mut OsRng
        )
        .unwrap(),
        b"hi from carol"
    );
}

/// The session count is plain: changing it moves the cap and nothing
/// else; deleting it is corrupt for a call that adds a session, while the
/// calls on existing sessions go on.
#[test]
fn the_session_count_row_moves_only_the_cap() {
    let f = fixture();
    let carol = |bob: &DurableStore| {
        bob.decrypt(
            &Address::new("carol", 1),
            f.pending.message_type(),
            f.pending.serialize(),
            &mut OsRng,
        )
        .map(drop)
    };
    let db = tampered(|c| {
        c.execute("DELETE FROM row_counts", []).unwrap();
    });
    let bob = open(&db).unwrap();
    assert_corrupt("row_counts", "deleted", carol(&bob));
    assert_corrupt("row_counts", "deleted", bob.session_count().map(drop));
    bob.encrypt(&Address::new("alice", 1), b"x").unwrap();
    drop(bob);

    let db = tampered(|c| {
        c.execute(
            "UPDATE row_counts SET n = ?1 WHERE tbl = 'sessions'",
            [ratchetkit::store::MAX_DURABLE_SESSIONS as i64],
        )
        .unwrap();
    });
    let bob = open(&db).unwrap();
    assert!(matches!(carol(&bob), Err(Error::LimitExceeded(_))));
    bob.encrypt(&Address::new("alice", 1), b"x").unwrap();
    drop(bob);

    let db = tampered(|c| {
        c.execute("UPDATE row_counts SET n = -5 WHERE tbl = 'sessions'", [])
            .unwrap();
    });
    let bob = open(&db).unwrap();
    carol(&bob).unwrap();
}

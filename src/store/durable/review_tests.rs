//! Adversarial review of the durable store: reproducers that need the
//! store's internals (its connection, its sealer).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::Duration;

use rand::rngs::OsRng;
use rand::RngCore;
use rusqlite::params;

use super::{rows, DurableOptions, DurableStore, Load, Table, Write};
use crate::error::{Error, Result};
use crate::store::{
    Address, BaseKeyUse, ProtocolStore, SessionPolicy, MAX_BASE_KEY_USES_PER_PREKEY,
    MAX_DURABLE_SESSIONS, MAX_SESSIONS,
};
use crate::wire::CiphertextMessage;

const KEY: [u8; 32] = [0x5a; 32];

struct TempDb(PathBuf);

impl TempDb {
    fn new() -> Self {
        let mut n = [0u8; 8];
        OsRng.fill_bytes(&mut n);
        let name: String = n.iter().map(|b| format!("{b:02x}")).collect();
        TempDb(std::env::temp_dir().join(format!("rk-review-{name}.sqlite")))
    }
    fn open(&self) -> DurableStore {
        DurableStore::open(&self.0, &KEY, &DurableOptions::default()).unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// A first (prekey) message to `bob` from a new sender, made from a bundle
/// without a one-time prekey: it uses Bob's last-resort Kyber prekey, a
/// reusable prekey whose uses are counted.
fn first_message(bob: &DurableStore) -> CiphertextMessage {
    let bundle = bob.create_bundle(false, 0, &mut OsRng).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let b = Address::new("bob", 1);
    alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
    alice.encrypt(&b, b"hi").unwrap()
}

/// A valid, distinct base key for filler rows.
fn filler_base_key(n: u32) -> [u8; 32] {
    let mut u = [0x11u8; 32];
    u[..4].copy_from_slice(&n.to_le_bytes());
    u[31] = 0x22;
    u
}

/// Review finding: two-phase commit checks the rows a decrypt read, but
/// not the counts it read (the base-key uses of the prekey's share). Two
/// pending decrypts that each saw one free place both commit: the share is
/// exceeded, and the store then saves bytes that `restore` refuses.
#[test]
fn pending_commits_can_exceed_the_base_key_use_cap() {
    let db = TempDb::new();
    let bob = db.open();
    let m1 = first_message(&bob);
    let m2 = first_message(&bob);
    let kyber_id = bob.last_resort_kyber_prekey_id().unwrap().unwrap();
    let signed_id = m1_signed_id(&m1);
    // Fill the last-resort key's share but one, with genuine sealed rows.
    {
        let shared = &*bob.shared;
        let mut conn = shared.lock().unwrap();
        let writes: Vec<Write> = (0..MAX_BASE_KEY_USES_PER_PREKEY as u32 - 1)
            .map(|n| {
                let u = BaseKeyUse {
                    kyber_pre_key_id: kyber_id,
                    signed_pre_key_id: signed_id,
                    base_key: filler_base_key(n),
                };
                Write::Upsert {
                    table: Table::BaseKeyUses,
                    k: shared.sealer.lookup(Table::BaseKeyUses, &u.base_key),
                    columns: vec![i64::from(kyber_id), i64::from(signed_id)],
                    value: rows::encode_base_key_use(&u),
                }
            })
            .collect();
        conn.transaction(true, |c| c.apply(&shared.sealer, &writes).map(|_| ()))
            .unwrap();
    }
    let a1 = Address::new("alice1", 1);
    let a2 = Address::new("alice2", 1);
    let p1 = bob
        .decrypt_pending(&a1, m1.message_type(), m1.serialize(), &mut OsRng)
        .unwrap();
    let p2 = bob
        .decrypt_pending(&a2, m2.message_type(), m2.serialize(), &mut OsRng)
        .unwrap();
    p1.commit().unwrap();
    let second = p2.commit();
    let uses: i64 = {
        let conn = bob.shared.lock().unwrap();
        conn.db
            .query_row(
                "SELECT COUNT(*) FROM base_key_uses WHERE kyber_id = ?1",
                params![kyber_id],
                |r| r.get(0),
            )
            .unwrap()
    };
    let saved = bob.save().unwrap();
    assert!(
        second.is_err() && uses as usize <= MAX_BASE_KEY_USES_PER_PREKEY,
        "the second pending commit went through ({second:?}): {uses} uses of one prekey, \
         cap {MAX_BASE_KEY_USES_PER_PREKEY}; restore of the saved bytes: {:?}",
        ProtocolStore::restore(&saved).err()
    );
    ProtocolStore::restore(&saved).unwrap();
}

fn m1_signed_id(m: &CiphertextMessage) -> u32 {
    crate::wire::PreKeySignalMessage::deserialize(m.serialize())
        .unwrap()
        .signed_pre_key_id()
}

/// Review finding: as above for the session limit: two pending decrypts
/// from new addresses, each seeing room for one more session, both commit.
#[test]
fn pending_commits_can_exceed_the_session_cap() {
    let db = TempDb::new();
    let bob = db.open();
    let m1 = first_message(&bob);
    let m2 = first_message(&bob);
    // As if MAX_DURABLE_SESSIONS - 1 other sessions were held: the cap
    // reads the count the triggers keep (`store_counts_sessions_exactly`
    // checks it against the rows).
    set_session_count(&bob, MAX_DURABLE_SESSIONS - 1);
    let a1 = Address::new("alice1", 1);
    let a2 = Address::new("alice2", 1);
    let p1 = bob
        .decrypt_pending(&a1, m1.message_type(), m1.serialize(), &mut OsRng)
        .unwrap();
    let p2 = bob
        .decrypt_pending(&a2, m2.message_type(), m2.serialize(), &mut OsRng)
        .unwrap();
    p1.commit().unwrap();
    let second = p2.commit();
    let n = bob.session_count().unwrap();
    assert!(
        second.is_err() && n <= MAX_DURABLE_SESSIONS,
        "the second pending commit went through ({second:?}): {n} sessions, limit {MAX_DURABLE_SESSIONS}"
    );
    // Decrypting it again now fails on the limit.
    assert!(matches!(
        bob.decrypt(&a2, m2.message_type(), m2.serialize(), &mut OsRng),
        Err(Error::LimitExceeded(_))
    ));
}

fn v3() -> SessionPolicy {
    SessionPolicy {
        allow_v3_initiation: true,
        accept_v3_prekey_messages: true,
    }
}

/// Review finding: the transaction is begun with `BEGIN IMMEDIATE` as SQL,
/// not a guard: a panic inside a call unwinds past the ROLLBACK. The
/// connection stays inside the transaction holding the database's write
/// lock: every later call on it fails ("cannot start a transaction within
/// a transaction"), every other connection gets StoreBusy, and the
/// half-made change would be committed by the next COMMIT on it.
#[test]
fn a_panic_inside_a_call_leaves_the_write_transaction_open() {
    let db = TempDb::new();
    let bob = db.open();
    let options = DurableOptions {
        busy_timeout: Duration::from_millis(200),
        ..DurableOptions::default()
    };
    let other = DurableStore::open(&db.0, &KEY, &options).unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _: Result<()> = bob.with(&Load::meta(), true, |_s| panic!("a bug in a call"));
    }));
    assert!(panicked.is_err());
    assert_eq!(
        other.set_policy(v3()),
        Ok(()),
        "another connection is locked out"
    );
    assert_eq!(bob.policy(), Ok(v3()), "the panicking handle is stuck");
}

/// As above for two-phase decrypt's read transaction.
#[test]
fn a_panic_inside_decrypt_pending_leaves_the_read_transaction_open() {
    let db = TempDb::new();
    let bob = db.open();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let mut conn = bob.shared.lock().unwrap();
        let _: Result<()> = conn.read_transaction(|_c| panic!("a bug in a decrypt"));
    }));
    assert!(panicked.is_err());
    assert_eq!(bob.policy(), Ok(SessionPolicy::default()));
}

/// Overwrites the session count the schema's triggers keep.
fn set_session_count(store: &DurableStore, n: usize) {
    let conn = store.shared.lock().unwrap();
    let changed = conn
        .db
        .execute(
            "UPDATE row_counts SET n = ?1 WHERE tbl = 'sessions'",
            params![n as i64],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// The rows of the sessions table, counted.
fn counted_sessions(store: &DurableStore) -> usize {
    let conn = store.shared.lock().unwrap();
    conn.count("SELECT COUNT(*) FROM sessions", []).unwrap()
}

/// The triggers' count follows inserts, updates (upserts of an existing
/// row, which fire no insert trigger) and deletes exactly.
#[test]
fn store_counts_sessions_exactly() {
    let db = TempDb::new();
    let bob = db.open();
    assert_eq!(
        (bob.session_count().unwrap(), counted_sessions(&bob)),
        (0, 0)
    );
    let mut peers = Vec::new();
    for i in 0..5 {
        let m = first_message(&bob);
        let a = Address::new(format!("alice{i}"), 1);
        bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
            .unwrap();
        peers.push(a);
    }
    assert_eq!(
        (bob.session_count().unwrap(), counted_sessions(&bob)),
        (5, 5)
    );
    // Updates of existing rows: encrypts on every session.
    for a in &peers {
        for _ in 0..3 {
            bob.encrypt(a, b"again").unwrap();
        }
    }
    assert_eq!(
        (bob.session_count().unwrap(), counted_sessions(&bob)),
        (5, 5)
    );
    assert!(bob.remove_session(&peers[0]).unwrap());
    assert!(!bob.remove_session(&peers[0]).unwrap());
    assert_eq!(
        (bob.session_count().unwrap(), counted_sessions(&bob)),
        (4, 4)
    );
    // A refused new session (the cap) changes neither.
    set_session_count(&bob, MAX_DURABLE_SESSIONS);
    let m = first_message(&bob);
    assert!(matches!(
        bob.decrypt(
            &Address::new("late", 1),
            m.message_type(),
            m.serialize(),
            &mut OsRng
        ),
        Err(Error::LimitExceeded(_))
    ));
    assert_eq!(
        (bob.session_count().unwrap(), counted_sessions(&bob)),
        (MAX_DURABLE_SESSIONS, 4)
    );
    // Reopened, the count is the one kept.
    drop(bob);
    assert_eq!(db.open().session_count().unwrap(), MAX_DURABLE_SESSIONS);
}

/// A durable store holds more sessions than an in-memory store may, but
/// never saves what no in-memory store could restore: `save` and
/// `to_memory` refuse past MAX_SESSIONS, before reading the sessions.
#[test]
fn durable_cap_is_above_the_in_memory_cap_but_save_is_not() {
    let db = TempDb::new();
    let bob = db.open();
    set_session_count(&bob, MAX_SESSIONS);
    let m = first_message(&bob);
    let a = Address::new("one-more", 1);
    bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(bob.session_count().unwrap(), MAX_SESSIONS + 1);
    assert!(matches!(bob.save(), Err(Error::LimitExceeded(_))));
    assert!(matches!(bob.to_memory(), Err(Error::LimitExceeded(_))));
    // At the in-memory cap, both work, and the copy has the in-memory cap.
    set_session_count(&bob, 1);
    let saved = bob.save().unwrap();
    let restored = ProtocolStore::restore(&saved).unwrap();
    assert_eq!(restored.session_count(), 1);
    let memory = bob.to_memory().unwrap();
    assert_eq!(memory.session_cap, MAX_SESSIONS);
}

/// Group commit: threads encrypting on one handle share commits (fewer
/// batches than calls), and every call's change is in the file.
#[test]
fn threads_share_commits() {
    const THREADS: usize = 4;
    const CALLS: usize = 50;
    let db = TempDb::new();
    let bob = db.open();
    let peers: Vec<Address> = (0..THREADS)
        .map(|i| {
            let m = first_message(&bob);
            let a = Address::new(format!("peer{i}"), 1);
            bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
                .unwrap();
            a
        })
        .collect();
    let before = bob.shared.conn.lock().unwrap().next_batch;
    let start = std::sync::Barrier::new(THREADS);
    std::thread::scope(|s| {
        for a in &peers {
            let (bob, start) = (bob.clone(), &start);
            s.spawn(move || {
                start.wait();
                for _ in 0..CALLS {
                    bob.encrypt(a, b"x").unwrap();
                }
            });
        }
    });
    let batches = bob.shared.conn.lock().unwrap().next_batch - before;
    assert!(
        batches < (THREADS * CALLS) as u64,
        "{batches} batches for {} calls",
        THREADS * CALLS
    );
    // Each session's sending chain advanced once per call, in the file.
    drop(bob);
    let bob = db.open();
    for a in &peers {
        let record = bob.session(a).unwrap().unwrap();
        let index = record.current().unwrap().sender_chain.chain_key.index;
        assert_eq!(index, CALLS as u32, "{a:?}");
    }
}

/// `save` and `to_memory` refuse past MAX_SESSIONS by the kept count; a
/// count lower than the rows (the count is plain, so an altered file) must
/// not let `save` write bytes that `restore` refuses, nor `to_memory` make
/// an in-memory store above its cap.
#[test]
fn save_refuses_more_sessions_than_restore_takes_whatever_the_count() {
    let db = TempDb::new();
    let bob = db.open();
    let m = first_message(&bob);
    let a = Address::new("alice", 1);
    bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    let record = bob.session(&a).unwrap().unwrap();
    // MAX_SESSIONS more rows (copies of alice's session under other
    // addresses), written directly: MAX_SESSIONS + 1 rows in all.
    bob.with(&Load::session(&a), true, |s| -> Result<()> {
        for i in 0..MAX_SESSIONS {
            s.sessions.insert(
                Address::new(format!("filler{i}"), 1),
                crate::store::SessionCell::new(record.clone()),
            );
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(counted_sessions(&bob), MAX_SESSIONS + 1);
    assert_eq!(bob.session_count().unwrap(), MAX_SESSIONS + 1);
    // The count altered down.
    set_session_count(&bob, 1);
    match bob.save() {
        Err(Error::LimitExceeded(_)) => {}
        Err(e) => panic!("save: {e:?}"),
        Ok(saved) => panic!(
            "save wrote {} bytes that restore refuses: {:?}",
            saved.len(),
            ProtocolStore::restore(&saved).err()
        ),
    }
    assert!(matches!(bob.to_memory(), Err(Error::LimitExceeded(_))));
}

/// A session with "alice", and its sending chain's index as stored.
fn bob_with_alice(db: &TempDb) -> (DurableStore, Address) {
    let bob = db.open();
    let m = first_message(&bob);
    let a = Address::new("alice", 1);
    bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    (bob, a)
}

fn sending_index(bob: &DurableStore, a: &Address) -> u32 {
    let record = bob.session(a).unwrap().unwrap();
    record.current().unwrap().sender_chain.chain_key.index
}

/// Runs two full-durability calls in one batch: an encrypt to `a` that
/// holds the connection until `second` (run on this thread) is waiting
/// for it, so the encrypt leaves the batch open for `second`. Returns the
/// encrypt's result, `second`'s (or its panic), and the batches used.
fn in_one_batch<R>(
    bob: &DurableStore,
    a: &Address,
    second: impl FnOnce() -> R,
) -> (Result<()>, std::thread::Result<R>, u64) {
    let before = bob.shared.lock().unwrap().next_batch;
    let (tx, rx) = std::sync::mpsc::channel();
    let (first, second) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            bob.with(&Load::session(a), true, |st| {
                let r = st.encrypt(a, b"held").map(drop);
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                r
            })
        });
        rx.recv().unwrap();
        let second = catch_unwind(AssertUnwindSafe(second));
        (h.join().unwrap(), second)
    });
    let after = bob.shared.lock().unwrap().next_batch;
    (first, second, after - before)
}

/// A call that fails after writing, in a batch: its writes are undone,
/// the other call's are committed.
#[test]
fn a_failing_call_in_a_batch_writes_nothing_and_keeps_the_others() {
    let db = TempDb::new();
    let (bob, a) = bob_with_alice(&db);
    let index = sending_index(&bob, &a);
    let count = bob.session_count().unwrap();
    let (first, second, batches) = in_one_batch(&bob, &a, || {
        bob.shared.write_full(|conn| -> Result<()> {
            conn.db
                .execute(
                    "UPDATE row_counts SET n = n + 100 WHERE tbl = 'sessions'",
                    [],
                )
                .unwrap();
            Err(Error::StoreConflict)
        })
    });
    assert_eq!(batches, 1, "the two calls shared one batch");
    assert_eq!(first, Ok(()));
    assert_eq!(second.unwrap(), Err(Error::StoreConflict));
    drop(bob);
    let bob = db.open();
    assert_eq!(bob.session_count().unwrap(), count);
    assert_eq!(sending_index(&bob, &a), index + 1);
}

/// A call that panics in a batch: the batch is rolled back, the call
/// waiting on it fails (no hang, no Ok for an uncommitted change), and the
/// handle and the file stay usable.
#[test]
fn a_panic_in_a_batch_fails_its_waiting_calls() {
    let db = TempDb::new();
    let (bob, a) = bob_with_alice(&db);
    let index = sending_index(&bob, &a);
    let (first, second, batches) = in_one_batch(&bob, &a, || {
        let _: Result<()> = bob.with(&Load::meta(), true, |s| {
            s.set_policy(v3());
            panic!("a bug in a call")
        });
    });
    assert_eq!(batches, 1, "the two calls shared one batch");
    assert!(second.is_err(), "the second call panicked");
    assert!(matches!(first, Err(Error::Storage(_))), "{first:?}");
    assert_eq!(sending_index(&bob, &a), index, "rolled back");
    assert_eq!(bob.policy(), Ok(SessionPolicy::default()));
    let options = DurableOptions {
        busy_timeout: Duration::from_millis(200),
        ..DurableOptions::default()
    };
    let other = DurableStore::open(&db.0, &KEY, &options).unwrap();
    other.set_policy(v3()).unwrap();
    bob.encrypt(&a, b"after").unwrap();
    assert_eq!(sending_index(&other, &a), index + 1);
}

/// A commit that fails (here a deferred constraint of a table the test
/// adds): every call of the batch fails, nothing is written, and the
/// cache serves none of it.
#[test]
fn a_failed_commit_fails_every_call_of_the_batch() {
    let db = TempDb::new();
    let (bob, a) = bob_with_alice(&db);
    arm_deferred_foreign_key(&bob);
    let index = sending_index(&bob, &a);
    let (first, second, batches) = in_one_batch(&bob, &a, || {
        bob.shared.write_full(|conn| -> Result<()> {
            conn.db
                .execute("INSERT INTO child (p) VALUES (7)", [])
                .map_err(super::schema::sql_error)?;
            Ok(())
        })
    });
    assert_eq!(batches, 1, "the two calls shared one batch");
    assert!(matches!(first, Err(Error::Storage(_))), "{first:?}");
    assert!(matches!(second.unwrap(), Err(Error::Storage(_))));
    assert_eq!(sending_index(&bob, &a), index, "rolled back");
    bob.encrypt(&a, b"after").unwrap();
    assert_eq!(sending_index(&bob, &a), index + 1);
    drop(bob);
    assert_eq!(sending_index(&db.open(), &a), index + 1);
}

/// A call that fails in a batch returned its error before the batch's
/// commit, and kept it when the commit failed. Its error can come from
/// another call of the batch that is then undone: here a replay of a
/// message, refused as a duplicate because the first decrypt of it in the
/// same batch marked it used, and then that decrypt is rolled back (the
/// commit fails). The application was told "decrypt failed" and "already
/// seen" for one message that was never delivered: it drops the message.
/// A call of a failed batch must fail with the batch's error.
#[test]
fn a_refusal_based_on_a_rolled_back_batch_is_not_final() {
    let db = TempDb::new();
    let bob = db.open();
    let bundle = bob.create_bundle(false, 0, &mut OsRng).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let b = Address::new("bob", 1);
    let a = Address::new("alice", 1);
    alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
    let m1 = alice.encrypt(&b, b"one").unwrap();
    bob.decrypt(&a, m1.message_type(), m1.serialize(), &mut OsRng)
        .unwrap();
    let m = alice.encrypt(&b, b"two").unwrap();
    arm_deferred_foreign_key(&bob);
    let (tx, rx) = std::sync::mpsc::channel();
    let load = Load::decrypt(&a, m.message_type(), m.serialize());
    let (first, replay, failing) = std::thread::scope(|s| {
        let first = s.spawn(|| {
            bob.with(&load, false, |st| {
                let r = st.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng);
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                r
            })
        });
        rx.recv().unwrap();
        let replay = s.spawn(|| bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng));
        std::thread::sleep(Duration::from_millis(50));
        // A call whose commit fails (a deferred constraint).
        let failing = s.spawn(|| {
            bob.shared.write_full(|conn| -> Result<()> {
                conn.db
                    .execute("INSERT INTO child (p) VALUES (7)", [])
                    .map_err(super::schema::sql_error)?;
                Ok(())
            })
        });
        (
            first.join().unwrap(),
            replay.join().unwrap(),
            failing.join().unwrap(),
        )
    });
    assert!(failing.is_err());
    assert!(first.is_err(), "the batch failed: {first:?}");
    assert!(
        !matches!(replay, Err(Error::DuplicateMessage { .. })),
        "a replay refused against a decrypt that was rolled back"
    );
    // The message is still deliverable: nobody had it.
    assert_eq!(
        bob.decrypt(&a, m.message_type(), m.serialize(), &mut OsRng)
            .unwrap(),
        b"two"
    );
}

/// Tables whose deferred foreign key makes a commit fail after an insert
/// into `child` (a way to fail a batch's commit on purpose).
fn arm_deferred_foreign_key(bob: &DurableStore) {
    let conn = bob.shared.lock().unwrap();
    conn.db
        .execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (p INTEGER REFERENCES parent (id)
                 DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
}

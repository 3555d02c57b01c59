//! Benchmarks of the durable store (SQLite), each beside its floor measured
//! in the same run. `make bench` runs them; benches/report.py puts them in
//! BENCHMARKS.md ("Durable store").
//!
//! Ids:
//! - `durable/decrypt_commit/{full,normal}`: a 100-byte message decrypted on
//!   an established version-4 session (no DH turn) and committed, in each
//!   [`Durability`];
//! - `durable/encrypt_commit/{full,normal}`: a 100-byte message encrypted
//!   and committed (encrypt commits at full durability in both modes);
//! - `durable/floor_write/{full,normal}`: the floor, one SQLite write
//!   transaction (`BEGIN IMMEDIATE`, one row written, `COMMIT`) with the
//!   same settings (WAL, `synchronous` FULL resp. NORMAL) in a file on the
//!   same filesystem, writing one row the size of the session row with a
//!   new random payload each time.
//!
//! The three benchmarks of a mode each run the same alternation, a store
//! commit then a floor write, and time only their own half: the disk's
//! speed drifts with other processes' writes, and a store commit and its
//! floor measured minutes apart are not comparable.
//! - `durable/open/<n>`: opening a store that holds `n` sessions (100,
//!   10,000 and 100,000; 100, 1,000 and 10,000 with
//!   `RK_DURABLE_BENCH_QUICK` set, as `make bench-test` does). The first
//!   [`MAX_SESSIONS`] sessions (the most saved bytes hold; 5,000 when
//!   quick, so that the path runs there too) are imported from a restored
//!   store, the rest are started in the durable store itself with
//!   `process_bundle`, one call each.
//! - `durable/threads/<t>`: decrypt + commit at full durability by `t`
//!   threads (1 and 2) on one handle, each on its own session; the time
//!   per message is the wall time over all messages, so 2 threads beside
//!   1 is group commit's gain (target: 2 threads at least 1.6x the
//!   throughput of 1).
//!
//! Resident memory is not a criterion measurement: for each store size a
//! child process (this binary again) first opens and uses a small store
//! (so code and SQLite's global state are resident), then opens the store
//! and encrypts on one session, reading its resident set from
//! `/proc/self/statm` before and after; the figures go to
//! `<criterion dir>/durable/memory.json` with the sizes measured.
//!
//! The files live in cargo's temporary directory of the target folder
//! (`CARGO_TARGET_TMPDIR`), the filesystem the build runs on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{black_box, BenchmarkId, Criterion};
use prost::encoding::{decode_key, decode_varint, encode_key, encode_varint, WireType};
use prost::Message;
use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};
use ratchetkit::store::{MAX_DURABLE_SESSIONS, MAX_SESSIONS};
use ratchetkit::{
    Address, CiphertextMessage, Durability, DurableOptions, DurableStore, ProtocolStore,
};
use rusqlite::Connection;

const KEY: [u8; 32] = [0x42; 32];
const PAYLOAD: [u8; 100] = [0x61; 100];
/// Store sizes (sessions) for open time and memory.
const SIZES: [usize; 3] = [100, 10_000, 100_000];
/// Store sizes when [`QUICK_ENV`] is set (`make bench-test`: the bench
/// only has to run, in a few seconds).
const QUICK_SIZES: [usize; 3] = [100, 1_000, 10_000];
/// The most sessions imported when [`QUICK_ENV`] is set (the rest of a
/// store's are started with `process_bundle`).
const QUICK_IMPORT_CAP: usize = 5_000;
/// Set (to anything) for [`QUICK_SIZES`].
const QUICK_ENV: &str = "RK_DURABLE_BENCH_QUICK";
/// Set in the child process that measures memory: the store to open first
/// (its code paths then resident), a newline, the store measured.
const RSS_CHILD_ENV: &str = "RK_DURABLE_BENCH_RSS_CHILD";

fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("durable-bench");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

fn fresh_path(name: &str) -> PathBuf {
    let path = work_dir().join(format!("{name}.sqlite"));
    remove_db(&path);
    path
}

fn mode_name(d: Durability) -> &'static str {
    match d {
        Durability::Full => "full",
        Durability::Normal => "normal",
    }
}

/// Bob (durable, in `durability`) and Alice (in memory) with an
/// established version-4 session: each has sent and received.
fn durable_pair(path: &Path, durability: Durability) -> (DurableStore, ProtocolStore) {
    let options = DurableOptions {
        durability,
        ..DurableOptions::default()
    };
    let bob = DurableStore::open(path, &KEY, &options).unwrap();
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    let alice = {
        let mut a = ProtocolStore::generate(1, &mut OsRng).unwrap();
        a.process_bundle(&bob_addr(), &bundle, &mut OsRng).unwrap();
        a
    };
    let m = alice.encrypt(&bob_addr(), &PAYLOAD).unwrap();
    bob.decrypt(&alice_addr(), m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    let r = bob.encrypt(&alice_addr(), &PAYLOAD).unwrap();
    let mut alice = alice;
    alice
        .decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    (bob, alice)
}

fn alice_addr() -> Address {
    Address::new("alice", 1)
}

fn bob_addr() -> Address {
    Address::new("bob", 1)
}

/// The largest sealed session row in the file at `path`, in bytes.
fn session_row_len(path: &Path) -> usize {
    let c = Connection::open(path).unwrap();
    c.query_row("SELECT MAX(length(value)) FROM sessions", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as usize
}

/// The floor: one SQLite write transaction writing one row of `len`
/// bytes, with the durable store's settings.
struct Floor {
    db: Connection,
    value: Vec<u8>,
    rng: StdRng,
}

impl Floor {
    fn new(path: &Path, durability: Durability, len: usize) -> Self {
        let db = Connection::open(path).unwrap();
        let mode: String = db
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        db.execute_batch(
            "CREATE TABLE sessions (k BLOB PRIMARY KEY, version INTEGER NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        let mut f = Floor {
            db,
            value: vec![0; len],
            rng: StdRng::from_entropy(),
        };
        f.db.execute(
            "INSERT INTO sessions (k, version, value) VALUES (?1, 0, ?2)",
            ([0x55u8; 32].as_slice(), f.value.as_slice()),
        )
        .unwrap();
        // Past the first checkpoint (1,000 pages) without waiting for the
        // disk: the WAL file then has its steady size and commits overwrite
        // it, as in a store in use (and in the store measured, whose
        // warm-up alone commits more often than that).
        f.db.execute_batch("PRAGMA synchronous = OFF").unwrap();
        for _ in 0..1_100 {
            f.write();
        }
        f.db.execute_batch(&format!("PRAGMA synchronous = {sync}"))
            .unwrap();
        f
    }

    /// One write transaction: a new version and a new payload.
    fn write(&mut self) {
        self.rng.fill_bytes(&mut self.value);
        let version = (self.rng.next_u64() >> 1) as i64;
        self.db.execute_batch("BEGIN IMMEDIATE").unwrap();
        self.db
            .prepare_cached("UPDATE sessions SET version = ?1, value = ?2 WHERE k = ?3")
            .unwrap()
            .execute((version, self.value.as_slice(), [0x55u8; 32].as_slice()))
            .unwrap();
        self.db.execute_batch("COMMIT").unwrap();
    }
}

/// Times `iters` rounds of `op` then `other` (each round runs both), and
/// returns the time spent in `op` only: every benchmark of a mode runs the
/// same alternation of a store commit and a floor write, so the disk's
/// drifting speed (other processes share it) is the same for both.
fn alternating(iters: u64, mut op: impl FnMut(), mut other: impl FnMut()) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        op();
        spent += start.elapsed();
        other();
    }
    spent
}

fn bench_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable");
    for durability in [Durability::Full, Durability::Normal] {
        let mode = mode_name(durability);
        let path = fresh_path(&format!("pair-{mode}"));
        let (bob, alice) = durable_pair(&path, durability);
        let len = session_row_len(&path);
        let floor_path = fresh_path(&format!("floor-{mode}"));
        let floor = RefCell::new(Floor::new(&floor_path, durability, len));
        let messages = |n: u64| -> Vec<CiphertextMessage> {
            (0..n)
                .map(|_| alice.encrypt(&bob_addr(), &PAYLOAD).unwrap())
                .collect()
        };
        let decrypt = |m: &CiphertextMessage| {
            black_box(
                bob.decrypt(&alice_addr(), m.message_type(), m.serialize(), &mut OsRng)
                    .unwrap(),
            );
        };
        g.bench_function(BenchmarkId::new("decrypt_commit", mode), |b| {
            b.iter_custom(|iters| {
                let mut ms = messages(iters).into_iter();
                alternating(
                    iters,
                    || decrypt(&ms.next().unwrap()),
                    || floor.borrow_mut().write(),
                )
            })
        });
        g.bench_function(BenchmarkId::new("floor_write", mode), |b| {
            b.iter_custom(|iters| {
                let mut ms = messages(iters).into_iter();
                alternating(
                    iters,
                    || floor.borrow_mut().write(),
                    || decrypt(&ms.next().unwrap()),
                )
            })
        });
        g.bench_function(BenchmarkId::new("encrypt_commit", mode), |b| {
            b.iter_custom(|iters| {
                alternating(
                    iters,
                    || {
                        black_box(bob.encrypt(&alice_addr(), &PAYLOAD).unwrap());
                    },
                    || floor.borrow_mut().write(),
                )
            })
        });
        drop(floor);
        remove_db(&floor_path);
        drop(bob);
        remove_db(&path);
    }
    g.finish();
}

/// Decrypts at full durability by `threads` threads on one handle, each on
/// its own session with its own peer: the wall time of `iters` messages in
/// all.
fn threaded_decrypts(bob: &DurableStore, peers: &mut [ProtocolStore], iters: u64) -> Duration {
    let threads = peers.len();
    let per_thread = iters.div_ceil(threads as u64);
    let messages: Vec<Vec<CiphertextMessage>> = peers
        .iter_mut()
        .map(|p| {
            (0..per_thread)
                .map(|_| p.encrypt(&bob_addr(), &PAYLOAD).unwrap())
                .collect()
        })
        .collect();
    let start = std::sync::Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for (i, ms) in messages.iter().enumerate() {
            let (bob, start) = (bob.clone(), &start);
            s.spawn(move || {
                let from = Address::new(format!("peer{i}"), 1);
                start.wait();
                for m in ms {
                    black_box(
                        bob.decrypt(&from, m.message_type(), m.serialize(), &mut OsRng)
                            .unwrap(),
                    );
                }
            });
        }
        start.wait();
        // The scope joins the threads before it returns.
        Instant::now()
    })
    .elapsed()
}

fn bench_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable");
    for threads in [1usize, 2] {
        let path = fresh_path(&format!("threads-{threads}"));
        let bob = DurableStore::open(&path, &KEY, &DurableOptions::default()).unwrap();
        let mut peers: Vec<ProtocolStore> = (0..threads)
            .map(|i| {
                let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
                let mut p = ProtocolStore::generate(1, &mut OsRng).unwrap();
                p.process_bundle(&bob_addr(), &bundle, &mut OsRng).unwrap();
                let m = p.encrypt(&bob_addr(), &PAYLOAD).unwrap();
                let from = Address::new(format!("peer{i}"), 1);
                bob.decrypt(&from, m.message_type(), m.serialize(), &mut OsRng)
                    .unwrap();
                let r = bob.encrypt(&from, &PAYLOAD).unwrap();
                p.decrypt(&bob_addr(), r.message_type(), r.serialize(), &mut OsRng)
                    .unwrap();
                p
            })
            .collect();
        g.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| threaded_decrypts(&bob, &mut peers, iters))
        });
        drop(bob);
        remove_db(&path);
    }
    g.finish();
}

/// A session entry of the saved format (`StoreProto` field 9), with the
/// session states kept as encoded bytes.
#[derive(Clone, PartialEq, Message)]
struct SessionEntry {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    device_id: u32,
    #[prost(bytes = "vec", optional, tag = "3")]
    current: Option<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    previous: Vec<Vec<u8>>,
}

const SESSIONS_FIELD: u32 = 9;
const SAVE_HEADER_LEN: usize = 5;

/// The session entries of saved-store bytes (format header, then a
/// `StoreProto`).
fn saved_sessions(saved: &[u8]) -> Vec<SessionEntry> {
    let mut buf = &saved[SAVE_HEADER_LEN..];
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire_type) = decode_key(&mut buf).unwrap();
        match wire_type {
            WireType::Varint => {
                decode_varint(&mut buf).unwrap();
            }
            WireType::LengthDelimited => {
                let len = decode_varint(&mut buf).unwrap() as usize;
                if tag == SESSIONS_FIELD {
                    out.push(SessionEntry::decode(&buf[..len]).unwrap());
                }
                buf = &buf[len..];
            }
            WireType::SixtyFourBit => buf = &buf[8..],
            WireType::ThirtyTwoBit => buf = &buf[4..],
            other => panic!("unexpected wire type {other:?}"),
        }
    }
    out
}

/// A store file holding `n` sessions (`peer0`..). Up to `import_cap`
/// are copies of one established version-4 session (both chains, as a
/// conversation leaves them), written in one transaction (import of a
/// restored store); the rest are new sessions the store starts from one
/// bundle with `process_bundle` (a transaction each, at
/// [`Durability::Normal`] to spare the disk).
fn store_with_sessions(n: usize, import_cap: usize) -> PathBuf {
    let mut owner = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut peer = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let owner_addr = Address::new("owner", 1);
    let peer_addr = Address::new("peer0", 1);
    let bundle = peer.create_bundle(true, 0, &mut OsRng).unwrap();
    owner
        .process_bundle(&peer_addr, &bundle, &mut OsRng)
        .unwrap();
    let m = owner.encrypt(&peer_addr, &PAYLOAD).unwrap();
    peer.decrypt(&owner_addr, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
    let r = peer.encrypt(&owner_addr, &PAYLOAD).unwrap();
    owner
        .decrypt(&peer_addr, r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    let mut saved = owner.save();
    let [entry] = &saved_sessions(&saved)[..] else {
        panic!("one session saved")
    };
    let mut entry = entry.clone();
    let imported = n.min(import_cap);
    for i in 1..imported {
        entry.name = format!("peer{i}");
        let bytes = entry.encode_to_vec();
        encode_key(SESSIONS_FIELD, WireType::LengthDelimited, &mut saved);
        encode_varint(bytes.len() as u64, &mut saved);
        saved.extend_from_slice(&bytes);
    }
    let store = ProtocolStore::restore(&saved).unwrap();
    assert_eq!(store.session_count(), imported);
    let path = fresh_path(&format!("sessions-{n}"));
    let options = DurableOptions {
        durability: Durability::Normal,
        ..DurableOptions::default()
    };
    let durable = DurableStore::import(&path, &KEY, &store, &options).unwrap();
    for i in imported..n {
        durable
            .process_bundle(&Address::new(format!("peer{i}"), 1), &bundle, &mut OsRng)
            .unwrap();
    }
    assert_eq!(durable.session_count().unwrap(), n);
    path
}

fn bench_open(c: &mut Criterion, stores: &[(usize, PathBuf)]) {
    let mut g = c.benchmark_group("durable");
    for (n, path) in stores {
        g.bench_function(BenchmarkId::new("open", n), |b| {
            b.iter_with_large_drop(|| {
                DurableStore::open(path, &KEY, &DurableOptions::default()).unwrap()
            })
        });
    }
    g.finish();
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// In the child: open the store at `warm` and encrypt on it (so that the
/// code and SQLite's global state are resident), close it; then open the
/// store at `path`, encrypt to one session, print the resident-set growth
/// of each step as JSON.
fn rss_child(warm: &str, path: &str) {
    {
        let store = DurableStore::open(warm, &KEY, &DurableOptions::default()).unwrap();
        store.encrypt(&Address::new("peer0", 1), &PAYLOAD).unwrap();
    }
    let before = rss_bytes();
    let store = DurableStore::open(path, &KEY, &DurableOptions::default()).unwrap();
    let opened = rss_bytes();
    store.encrypt(&Address::new("peer0", 1), &PAYLOAD).unwrap();
    let used = rss_bytes();
    println!(
        "{{\"open_bytes\": {}, \"open_and_encrypt_bytes\": {}}}",
        opened.saturating_sub(before),
        used.saturating_sub(before)
    );
}

/// Runs the memory child for each store; writes the figures next to
/// criterion's results.
fn measure_memory(stores: &[(usize, PathBuf)]) {
    let mut rows = Vec::new();
    // A warm-up store: a copy of the smallest.
    let warm = work_dir().join("warm.sqlite");
    remove_db(&warm);
    std::fs::copy(&stores[0].1, &warm).unwrap();
    for (n, path) in stores {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env(
                RSS_CHILD_ENV,
                format!("{}\n{}", warm.display(), path.display()),
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "memory child failed: {out:?}");
        let line = String::from_utf8(out.stdout).unwrap();
        rows.push(format!("\"{n}\": {}", line.trim()));
    }
    let json = format!(
        "{{\"session_cap\": {MAX_DURABLE_SESSIONS}, \"sessions\": {{{}}}}}\n",
        rows.join(", ")
    );
    let dir = criterion_dir().join("durable");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("memory.json"), &json).unwrap();
    remove_db(&warm);
    println!("durable/memory: {json}");
}

/// Where criterion writes its results (as criterion finds it).
fn criterion_dir() -> PathBuf {
    match std::env::var_os("CRITERION_HOME") {
        Some(home) => PathBuf::from(home),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("criterion"),
    }
}

fn main() {
    if let Some(paths) = std::env::var_os(RSS_CHILD_ENV) {
        let (warm, path) = paths.to_str().unwrap().split_once('\n').unwrap();
        rss_child(warm, path);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_commit(&mut c);
    bench_threads(&mut c);
    let (sizes, import_cap) = match std::env::var_os(QUICK_ENV) {
        Some(_) => (QUICK_SIZES, QUICK_IMPORT_CAP),
        None => (SIZES, MAX_SESSIONS),
    };
    let stores: Vec<(usize, PathBuf)> = sizes
        .iter()
        .map(|&n| (n, store_with_sessions(n, import_cap)))
        .collect();
    bench_open(&mut c, &stores);
    measure_memory(&stores);
    for (_, path) in &stores {
        remove_db(path);
    }
    c.final_summary();
}

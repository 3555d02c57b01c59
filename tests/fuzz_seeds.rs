//! The fuzz fixture and seed corpora (`fuzz/fixtures/`, `fuzz/corpus/`).
//!
//! `write_fuzz_seeds` (ignored) writes them from a fresh run of real
//! sessions:
//!
//! ```sh
//! cargo test --release --test fuzz_seeds -- --ignored
//! ```
//!
//! `write_durable_fuzz_seeds` (ignored) writes the durable target's fixture
//! (`fuzz/fixtures/durable*`, a database and two held messages) and seeds;
//! `durable_fuzz_seeds_match_the_fixture` replays them (`ok-*` seeds run
//! every call, `err-*` seeds fail with the durable store's error).
//!
//! `fuzz_seeds_match_the_fixture` replays the committed seeds against the
//! committed fixture on every test run: seeds named `ok-*` must succeed,
//! `err-*` must fail and leave the store unchanged, and any other input in
//! the corpora must not panic or change the store when it fails. The
//! byte layouts (selector and mode bytes) are the fuzz targets', described
//! in `fuzz/src/lib.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod forge;

use std::fs;
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;
use ratchetkit::kem::{KemKeyPair, KemPublicKey};
use ratchetkit::spqr::SpqrPolicy;
use ratchetkit::{
    Address, CiphertextMessage, IdentityKeyPair, KeyPair, PreKeyBundle, PreKeySignalMessage,
    ProtocolStore, PublicKey, SignalMessage,
};

const PICKLE_KEY: [u8; 32] = [0x42; 32];
/// Selector bytes: indices into the fuzz targets' address list.
const ALICE: u8 = 0;
const CAROL: u8 = 1;
const DAVE: u8 = 2;
const ERIN: u8 = 3;
const FRANK: u8 = 4;
const ALICE_2: u8 = 5;
const MALLORY: u8 = 6;
const ADDRESSES: [(&str, u32); 8] = [
    ("alice", 1),
    ("carol", 1),
    ("dave", 1),
    ("erin", 1),
    ("frank", 1),
    ("alice", 2),
    ("mallory", 1),
    ("", 1),
];

fn address(selector: u8) -> Address {
    let (n, d) = ADDRESSES[usize::from(selector) % ADDRESSES.len()];
    Address::new(n, d)
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

struct Peer {
    store: ProtocolStore,
    addr: Address,
}

impl Peer {
    /// A peer without SPQR: the classic fixture's sessions do not speak
    /// it, and Bob accepts new sessions without it (the `decrypt_spqr`
    /// target has its own fixture).
    fn new(name: &str) -> Self {
        let mut store = ProtocolStore::generate(1, &mut OsRng).unwrap();
        store.set_spqr_policy(SpqrPolicy::Off);
        Peer {
            store,
            addr: Address::new(name, 1),
        }
    }
    fn send(&mut self, to: &Address, pt: &[u8]) -> CiphertextMessage {
        self.store.encrypt(to, pt).unwrap()
    }
}

fn deliver(to: &mut ProtocolStore, from: &Address, m: &CiphertextMessage) {
    to.decrypt(from, m.message_type(), m.serialize(), &mut OsRng)
        .unwrap();
}

fn with_selector(selector: u8, bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![selector];
    v.extend_from_slice(bytes);
    v
}

/// Everything the generator writes: (path under fuzz/, bytes).
fn generate() -> Vec<(String, Vec<u8>)> {
    let rng = &mut OsRng;
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut bob = Peer::new("bob");
    let bob_addr = bob.addr.clone();
    let mut alice = Peer::new("alice");
    let a = alice.addr.clone();

    // Alice and Bob: established, skipped keys, a second session.
    let b1 = bob.store.create_bundle(true, 1, rng).unwrap();
    alice.store.process_bundle(&bob_addr, &b1, rng).unwrap();
    let m0 = alice.send(&bob_addr, b"hello bob");
    deliver(&mut bob.store, &a, &m0);
    let r1 = bob.send(&a, b"hello alice");
    deliver(&mut alice.store, &bob_addr, &r1);
    let am: Vec<_> = (1..=5)
        .map(|i| alice.send(&bob_addr, format!("a{i}").as_bytes()))
        .collect();
    deliver(&mut bob.store, &a, &am[0]);
    deliver(&mut bob.store, &a, &am[3]);
    let r2 = bob.send(&a, b"turn");
    deliver(&mut alice.store, &bob_addr, &r2);
    let bb: Vec<_> = (1..=2)
        .map(|i| alice.send(&bob_addr, format!("b{i}").as_bytes()))
        .collect();
    let b2 = bob.store.create_bundle(true, 2, rng).unwrap();
    alice.store.process_bundle(&bob_addr, &b2, rng).unwrap();
    let p1 = alice.send(&bob_addr, b"second session");
    deliver(&mut bob.store, &a, &p1);
    let p2 = alice.send(&bob_addr, b"second session, again");

    // Carol (with a one-time prekey) and Dave (without): messages held.
    let mut carol = Peer::new("carol");
    let b3 = bob.store.create_bundle(true, 3, rng).unwrap();
    carol.store.process_bundle(&bob_addr, &b3, rng).unwrap();
    let c1 = carol.send(&bob_addr, b"carol 1");
    let c2 = carol.send(&bob_addr, b"carol 2");
    let mut dave = Peer::new("dave");
    let b4 = bob.store.create_bundle(false, 4, rng).unwrap();
    dave.store.process_bundle(&bob_addr, &b4, rng).unwrap();
    let d1 = dave.send(&bob_addr, b"dave 1");

    // Erin: Bob initiated; Erin's answer is held.
    let mut erin = Peer::new("erin");
    let e_bundle = erin.store.create_bundle(true, 5, rng).unwrap();
    bob.store
        .process_bundle(&erin.addr, &e_bundle, rng)
        .unwrap();
    let to_erin = bob.send(&erin.addr, b"hi erin");
    deliver(&mut erin.store, &bob_addr, &to_erin);
    let e1 = erin.send(&bob_addr, b"hi bob");

    // Frank: a changed identity Bob has not approved.
    let mut frank = Peer::new("frank");
    let b5 = bob.store.create_bundle(true, 6, rng).unwrap();
    frank.store.process_bundle(&bob_addr, &b5, rng).unwrap();
    let f1 = frank.send(&bob_addr, b"frank 1");
    bob.store
        .approve_identity("frank", KeyPair::generate(rng).public_key);

    // Bob is done: the fixture.
    let saved = bob.store.save();
    out.push(("fixtures/bob.store".into(), saved.clone()));
    out.push((
        "fixtures/held-whisper-alice".into(),
        am[4].serialize().to_vec(),
    ));
    out.push(("fixtures/held-prekey-alice".into(), p2.serialize().to_vec()));
    out.push(("fixtures/held-prekey-carol".into(), c1.serialize().to_vec()));
    out.push(("fixtures/alice.store".into(), alice.store.save()));

    // parse_message
    for (name, m) in [("whisper", &am[4]), ("prekey", &p2), ("prekey-no-opk", &d1)] {
        out.push((
            format!("corpus/parse_message/{name}"),
            m.serialize().to_vec(),
        ));
    }

    // decrypt_whisper
    let p2_inner = PreKeySignalMessage::deserialize(p2.serialize())
        .unwrap()
        .message()
        .serialize()
        .to_vec();
    let a5 = SignalMessage::deserialize(am[4].serialize()).unwrap();
    let low = PublicKey::from_u_coordinate([0u8; 32]).unwrap();
    let low_ratchet = forge::signal_message(
        &low,
        a5.counter(),
        a5.previous_counter(),
        a5.ciphertext(),
        forge::mac_of(a5.serialize()),
    );
    let w = "corpus/decrypt_whisper";
    for (name, sel, bytes) in [
        ("ok-skipped-key", ALICE, am[1].serialize().to_vec()),
        ("ok-skipped-key-2", ALICE, am[2].serialize().to_vec()),
        ("ok-ahead", ALICE, am[4].serialize().to_vec()),
        ("ok-new-chain-archived", ALICE, bb[0].serialize().to_vec()),
        ("ok-new-chain-archived-2", ALICE, bb[1].serialize().to_vec()),
        ("ok-prekey-inner", ALICE, p2_inner),
        ("ok-acknowledges", ERIN, e1.serialize().to_vec()),
        ("err-duplicate", ALICE, am[0].serialize().to_vec()),
        ("err-no-session", MALLORY, am[1].serialize().to_vec()),
        ("err-other-device", ALICE_2, am[1].serialize().to_vec()),
        ("err-low-order-ratchet-key", ALICE, low_ratchet),
    ] {
        out.push((format!("{w}/{name}"), with_selector(sel, &bytes)));
    }

    // decrypt_prekey
    let c1m = PreKeySignalMessage::deserialize(c1.serialize()).unwrap();
    let low_base = forge::prekey_message(
        c1m.kyber(),
        c1m.registration_id(),
        c1m.pre_key_id(),
        c1m.signed_pre_key_id(),
        &low,
        c1m.identity_key(),
        c1m.message().serialize(),
    );
    let p = "corpus/decrypt_prekey";
    for (name, sel, m) in [
        ("ok-known-base-key", ALICE, &p2),
        ("ok-one-time-prekey", CAROL, &c1),
        ("ok-one-time-prekey-2", CAROL, &c2),
        ("ok-no-one-time-prekey", DAVE, &d1),
        ("ok-new-address", MALLORY, &c1),
        ("err-duplicate", ALICE, &p1),
        ("err-untrusted", FRANK, &f1),
        ("err-untrusted-name", ALICE, &c1),
    ] {
        out.push((format!("{p}/{name}"), with_selector(sel, m.serialize())));
    }
    out.push((
        format!("{p}/err-low-order-base-key"),
        with_selector(CAROL, &low_base),
    ));

    // restore
    let fresh = ProtocolStore::generate(3, rng).unwrap().save();
    let mut r = |name: &str, mode: u8, bytes: &[u8]| {
        out.push((format!("corpus/restore/{name}"), with_selector(mode, bytes)));
    };
    r("ok-plain-bob", 0, &saved);
    r(
        "ok-keyed-bob",
        1,
        &bob.store.save_encrypted(&PICKLE_KEY, rng).unwrap(),
    );
    r("ok-sealed-fresh", 2, &fresh);
    r("ok-plain-alice", 0, &alice.store.save());
    r(
        "ok-keyed-carol",
        1,
        &carol.store.save_encrypted(&PICKLE_KEY, rng).unwrap(),
    );
    r("err-truncated", 0, &fresh[..fresh.len() / 2]);

    // bundle
    let mut gina = Peer::new("gina");
    let g1 = gina.store.create_bundle(true, 7, rng).unwrap();
    let g2 = gina.store.create_bundle(false, 7, rng).unwrap();
    let id = IdentityKeyPair::generate(rng);
    let spk = KeyPair::generate(rng).public_key;
    let sig = id.private_key().sign(&spk.serialize(), rng);
    let kyber = KemKeyPair::generate(rng).public_key;
    let kyber_sig = id.private_key().sign(&kyber.serialize(), rng);
    let signed = |b: PreKeyBundle, kyber_sig: &[u8]| {
        b.with_kyber_pre_key(4, kyber.clone(), kyber_sig).unwrap()
    };
    let low_opk = signed(
        PreKeyBundle::new(9, 1, *id.public_key(), 1, spk, &sig, Some((5, low))).unwrap(),
        &kyber_sig,
    );
    let mut bad_sig = sig;
    bad_sig[0] ^= 1;
    let bad = signed(
        PreKeyBundle::new(9, 1, *id.public_key(), 1, spk, &bad_sig, None).unwrap(),
        &kyber_sig,
    );
    let mut bad_kyber_sig = kyber_sig;
    bad_kyber_sig[0] ^= 1;
    let bad_kyber = signed(
        PreKeyBundle::new(9, 1, *id.public_key(), 1, spk, &sig, None).unwrap(),
        &bad_kyber_sig,
    );
    let v3 = PreKeyBundle::new(9, 1, *id.public_key(), 1, spk, &sig, None).unwrap();
    for (name, sel, b) in [
        ("ok-one-time-prekey", MALLORY, &g1),
        ("ok-signed-only", MALLORY, &g2),
        ("err-untrusted", ALICE, &g1),
        ("err-low-order-prekey", MALLORY, &low_opk),
        ("err-bad-signature", MALLORY, &bad),
        ("err-bad-kyber-signature", MALLORY, &bad_kyber),
        ("err-version-3", MALLORY, &v3),
    ] {
        out.push((
            format!("corpus/bundle/{name}"),
            with_selector(sel, &b.serialize()),
        ));
    }

    // kem: a public key (mode 0); ciphertexts to the fixture's last-resort
    // Kyber prekey (mode 1), one of ML-KEM's type.
    let last_resort = bob
        .store
        .kyber_prekey(bob.store.last_resort_kyber_prekey_id().unwrap())
        .unwrap()
        .key_pair
        .public_key
        .clone();
    out.push((
        "corpus/kem/ok-public-key".into(),
        with_selector(0, &last_resort.serialize()),
    ));
    let (ct, _) = last_resort.encapsulate(rng);
    out.push(("corpus/kem/ok-ciphertext".into(), with_selector(1, &ct)));
    let mut mlkem = ct.clone();
    mlkem[0] = 0x0a;
    out.push(("corpus/kem/err-mlkem-type".into(), with_selector(1, &mlkem)));

    // fingerprint
    for v in [1u32, 2] {
        let theirs = alice
            .store
            .safety_number("bob", b"alice", b"bob", 5200, v)
            .unwrap();
        let mode = ((v - 1) as u8) << 1;
        out.push((
            format!("corpus/fingerprint/ok-v{v}"),
            with_selector(mode, &theirs.scannable()),
        ));
    }
    let mut params = vec![3u8, 5];
    params.extend_from_slice(b"alice");
    params.extend_from_slice(alice.store.identity_key().u_coordinate());
    params.extend_from_slice(bob.store.identity_key().u_coordinate());
    params.extend_from_slice(b"bob");
    out.push((
        "corpus/fingerprint/pair-v2".into(),
        with_selector(1 | 2, &params),
    ));
    out.push((
        "corpus/fingerprint/pair-v1".into(),
        with_selector(1, &params),
    ));

    // ffi: operation sequences for the interpreter in fuzz/src/ffi.rs
    // (stores: 0 = bob, 1 = alice; names: 2 = "alice", 10 = "bob", 18 =
    // "carol"; u32 bytes index a table: 1 -> 1, 3 -> 3; pool entry 3 is the
    // first output kept).
    let hello = [0, 5, b'h', b'e', b'l', b'l', b'o'];
    let mut alice_to_bob = vec![11, 1, 10, 1];
    alice_to_bob.extend_from_slice(&hello);
    alice_to_bob.extend_from_slice(&[0, 12, 0, 2, 1, 14, 3, 0]);
    let mut new_session = vec![8, 0, 1, 0, 9, 1, 18, 1, 0, 11, 1, 18, 1];
    new_session.extend_from_slice(&hello);
    new_session.extend_from_slice(&[0, 13, 0, 2, 1, 14, 0, 0]);
    let keyed_round_trip = vec![3, 0, 3, 2, 14, 3, 30, 2, 10, 2, 2, 1, 0, 0, 0, 0];
    let misuse = vec![
        9, 15, 2, 1, 15, 30, 15, 29, 5, 0, 12, 0, 1, 1, 0, 0, 0, 0xFF, 31, 0x85, 1, 2, 3, 4, 3,
    ];
    let keys = vec![
        24, 1, 25, 0, 1, 25, 0, 2, 0, 3, b'a', b'b', b'c', 64, 30, 0, 21, 0, 2, b'i', b'd', 0, 2,
        b'i', b'e', 0, 1, 2, 3, 17, 0, 2, 0, 2, b'm', b'e', 0, 3, b'y', b'o', b'u', 0, 2, 18, 0,
        61, 19, 0, 2, 20, 0, 50,
    ];
    // PQXDH calls (ops 32 and up): a bundle with a one-time Kyber prekey
    // and its Kyber accessors; Kyber prekeys generated (records kept in the
    // pool, entry 3), one fetched back by the id at the start of that entry
    // (selector 13), the last-resort key made and queried; Alice's policy
    // set and read; her session version with bob; a bundle built from Bob's
    // parts and a kept Kyber record (entry 4; signature: entry 5, selector
    // 22), processed by Alice for "mallory" (name 26) and used; the current
    // last-resort key refused for removal, the fetched one removed.
    let mut pqxdh = vec![
        37, 0, 1, 1, 0, 39, 0, 1, 39, 0, 2, 0, 39, 0, 3, 64, 39, 0, 0, 33, 0, 2, 0, 0, 0, 35, 0,
        13, 0, 34, 0, 0, 0, 34, 0, 1, 34, 0, 2, 32, 1, 0, 1, 1, 32, 1, 1, 0, 38, 1, 10, 1, 28, 0,
        4, 0, 28, 0, 5, 1, 28, 0, 6, 64, 39, 0, 4, 1, 2, 1, 0, 0, 1, 2, 22, 6, 0, 9, 1, 26, 1, 1,
        11, 1, 26, 1,
    ];
    pqxdh.extend_from_slice(&hello);
    pqxdh.extend_from_slice(&[0, 38, 1, 26, 1, 36, 0, 0, 36, 0, 13]);
    for (name, seq) in [
        ("ok-alice-to-bob", alice_to_bob),
        ("ok-new-session", new_session),
        ("ok-keyed-round-trip", keyed_round_trip),
        ("ok-misuse", misuse),
        ("ok-keys-and-fingerprints", keys),
        ("ok-pqxdh", pqxdh),
    ] {
        out.push((format!("corpus/ffi/{name}"), seq));
    }
    out
}

/// Regenerates the fixture and seeds. Run on purpose (see the module docs).
#[test]
#[ignore = "writes fuzz/fixtures and fuzz/corpus"]
fn write_fuzz_seeds() {
    let dir = fuzz_dir();
    for target in [
        "kem",
        "parse_message",
        "decrypt_whisper",
        "decrypt_prekey",
        "restore",
        "bundle",
        "fingerprint",
        "ffi",
    ] {
        let d = dir.join("corpus").join(target);
        if d.exists() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("ok-") || name.starts_with("err-") {
                    fs::remove_file(p).unwrap();
                }
            }
        }
    }
    for (path, bytes) in generate() {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let d = fuzz_dir().join("corpus").join(target);
    let mut v: Vec<_> = fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

/// Runs `op` and checks the seed's expectation and the store invariant.
fn expect<T>(
    name: &str,
    store: &mut ProtocolStore,
    op: impl FnOnce(&mut ProtocolStore) -> ratchetkit::Result<T>,
) {
    let before = store.save();
    match op(store) {
        Ok(_) => assert!(!name.starts_with("err-"), "{name} succeeded"),
        Err(e) => {
            assert!(!name.starts_with("ok-"), "{name} failed: {e}");
            assert_eq!(
                store.save(),
                before,
                "{name}: failure ({e}) changed the store"
            );
        }
    }
}

#[test]
fn fuzz_seeds_match_the_fixture() {
    let fixture = ProtocolStore::restore(&fs::read(fuzz_dir().join("fixtures/bob.store")).unwrap())
        .expect("fixture restores");
    for (target, t) in [("decrypt_whisper", 2u8), ("decrypt_prekey", 3)] {
        let seeds = corpus(target);
        assert!(seeds.len() >= 8, "{target}: seeds missing");
        for (name, data) in seeds {
            let Some((&sel, msg)) = data.split_first() else {
                continue;
            };
            let mut store = fixture.clone();
            expect(&name, &mut store, |s| {
                s.decrypt(&address(sel), t, msg, &mut OsRng)
            });
        }
    }
    for (name, data) in corpus("parse_message") {
        let w = SignalMessage::deserialize(&data);
        let p = PreKeySignalMessage::deserialize(&data);
        if name.starts_with("ok-") || ["whisper", "prekey", "prekey-no-opk"].contains(&&*name) {
            assert!(w.is_ok() || p.is_ok(), "{name} does not parse");
        }
    }
    for (name, data) in corpus("restore") {
        let Some((&mode, bytes)) = data.split_first() else {
            continue;
        };
        let r = match mode % 3 {
            0 | 2 => ProtocolStore::restore(bytes),
            _ => ProtocolStore::restore_encrypted(bytes, &PICKLE_KEY),
        };
        assert_eq!(r.is_ok(), !name.starts_with("err-"), "{name}");
    }
    for (name, data) in corpus("bundle") {
        let Some((&sel, bytes)) = data.split_first() else {
            continue;
        };
        let Ok(b) = PreKeyBundle::deserialize(bytes) else {
            assert!(!name.starts_with("ok-"), "{name} does not parse");
            continue;
        };
        let mut store = fixture.clone();
        expect(&name, &mut store, |s| {
            s.process_bundle(&address(sel), &b, &mut OsRng)
        });
    }
    let last_resort = fixture
        .kyber_prekey(fixture.last_resort_kyber_prekey_id().unwrap())
        .unwrap();
    let kem_seeds = corpus("kem");
    assert!(kem_seeds.len() >= 3, "kem: seeds missing");
    for (name, data) in kem_seeds {
        let Some((&mode, bytes)) = data.split_first() else {
            continue;
        };
        let ok = if mode % 2 == 0 {
            KemPublicKey::deserialize(bytes).is_ok()
        } else {
            last_resort.key_pair.secret_key.decapsulate(bytes).is_ok()
        };
        if name.starts_with("ok-") || name.starts_with("err-") {
            assert_eq!(ok, name.starts_with("ok-"), "{name}");
        }
    }
    for (name, data) in corpus("fingerprint") {
        if let Some(v) = name.strip_prefix("ok-v") {
            let v: u32 = v.parse().unwrap();
            let ours = fixture
                .safety_number("alice", b"bob", b"alice", 5200, v)
                .unwrap();
            assert_eq!(ours.compare_scannable(&data[1..]), Ok(true), "{name}");
        }
    }
}

// ---- durable store ----------------------------------------------------------

/// The plaintexts of the durable fixture's held messages (as in
/// `fuzz/src/lib.rs`).
const DURABLE_HELD_PLAINTEXTS: [&[u8]; 2] = [b"held from alice", b"held from carol"];

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// The offset in `file` of a byte of the sealed value of `table`'s first
/// row (past its nonce).
fn value_offset(file: &[u8], db: &Path, table: &str) -> usize {
    let value: Vec<u8> = rusqlite::Connection::open(db)
        .unwrap()
        .query_row(&format!("SELECT value FROM {table} LIMIT 1"), [], |r| {
            r.get(0)
        })
        .unwrap();
    // The first 64 bytes (a long value continues on overflow pages).
    let head = &value[..64];
    let at = file
        .windows(head.len())
        .position(|w| w == head)
        .unwrap_or_else(|| panic!("{table}: value not found in the file"));
    at + 40
}

/// A patch (see `patched_durable_fixture` in fuzz/src/lib.rs) flipping the
/// low bit of the byte at `offset`.
fn flip_patch(file: &[u8], offset: usize) -> Vec<u8> {
    let o = (offset as u32).to_be_bytes();
    vec![o[1], o[2], o[3], file[offset] ^ 1]
}

/// Writes the durable fuzz target's fixture (a database, two held
/// messages) and seeds. Run on purpose, like `write_fuzz_seeds`.
#[test]
#[ignore = "writes fuzz/fixtures/durable* and fuzz/corpus/durable"]
fn write_durable_fuzz_seeds() {
    let fixtures = fuzz_dir().join("fixtures");
    let path = fixtures.join("durable.sqlite");
    remove_db(&path);
    let bob_addr = Address::new("bob", 1);
    let bob =
        ratchetkit::DurableStore::open(&path, &PICKLE_KEY, &ratchetkit::DurableOptions::default())
            .unwrap();
    // Alice: a session from a bundle without one-time prekeys (a base-key
    // use of the last-resort Kyber prekey), a message each way, then one
    // held.
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let bundle = bob.create_bundle(false, 0, &mut OsRng).unwrap();
    alice
        .process_bundle(&bob_addr, &bundle, &mut OsRng)
        .unwrap();
    let m = alice.encrypt(&bob_addr, b"first").unwrap();
    bob.decrypt(
        &Address::new("alice", 1),
        m.message_type(),
        m.serialize(),
        &mut OsRng,
    )
    .unwrap();
    let r = bob.encrypt(&Address::new("alice", 1), b"back").unwrap();
    alice
        .decrypt(&bob_addr, r.message_type(), r.serialize(), &mut OsRng)
        .unwrap();
    let held_alice = alice
        .encrypt(&bob_addr, DURABLE_HELD_PLAINTEXTS[0])
        .unwrap();
    assert_eq!(held_alice.message_type(), 2);
    // Carol: a first message naming a one-time prekey and a one-time
    // Kyber prekey, held.
    let mut carol = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
    carol
        .process_bundle(&bob_addr, &bundle, &mut OsRng)
        .unwrap();
    let held_carol = carol
        .encrypt(&bob_addr, DURABLE_HELD_PLAINTEXTS[1])
        .unwrap();
    assert_eq!(held_carol.message_type(), 3);
    drop(bob);
    // One self-contained file without free pages.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = DELETE; VACUUM;")
        .unwrap();
    fs::write(
        fixtures.join("durable-held-whisper-alice"),
        held_alice.serialize(),
    )
    .unwrap();
    fs::write(
        fixtures.join("durable-held-prekey-carol"),
        held_carol.serialize(),
    )
    .unwrap();
    let file = fs::read(&path).unwrap();
    let corpus = fuzz_dir().join("corpus/durable");
    if corpus.exists() {
        fs::remove_dir_all(&corpus).unwrap();
    }
    fs::create_dir_all(&corpus).unwrap();
    let mut seeds = vec![
        ("ok-untouched".to_owned(), Vec::new()),
        // The SQLite header's magic: not a database.
        ("err-header".to_owned(), flip_patch(&file, 0)),
        ("err-store-key".to_owned(), {
            let wrapped: Vec<u8> = rusqlite::Connection::open(&path)
                .unwrap()
                .query_row("SELECT wrapped FROM store_key", [], |r| r.get(0))
                .unwrap();
            let at = file
                .windows(wrapped.len())
                .position(|w| w == wrapped.as_slice())
                .unwrap();
            flip_patch(&file, at + 30)
        }),
    ];
    for table in ["meta", "sessions", "trust", "prekeys", "kyber_prekeys"] {
        let offset = value_offset(&file, &path, table);
        seeds.push((format!("err-{table}"), flip_patch(&file, offset)));
    }
    for (name, bytes) in seeds {
        fs::write(corpus.join(name), bytes).unwrap();
    }
}

/// What the durable fuzz target runs, on a copy of the fixture patched by
/// `patches`: the first error, if any.
fn run_durable_seed(patches: &[u8]) -> ratchetkit::Result<()> {
    let mut file = fs::read(fuzz_dir().join("fixtures/durable.sqlite")).unwrap();
    for p in patches.chunks_exact(4) {
        let offset = u32::from_be_bytes([0, p[0], p[1], p[2]]) as usize % file.len();
        file[offset] = p[3];
    }
    let mut n = [0u8; 8];
    rand::RngCore::fill_bytes(&mut OsRng, &mut n);
    let path = std::env::temp_dir().join(format!("rk-fuzz-seed-{}.sqlite", hex::encode(n)));
    fs::write(&path, &file).unwrap();
    let options = ratchetkit::DurableOptions {
        create_device_id: None,
        ..ratchetkit::DurableOptions::default()
    };
    let run = || -> ratchetkit::Result<()> {
        let store = ratchetkit::DurableStore::open(&path, &PICKLE_KEY, &options)?;
        let alice = Address::new("alice", 1);
        store.trusted_identity("alice")?;
        store.session_count()?;
        let held = [
            (
                Address::new("alice", 1),
                2,
                "fixtures/durable-held-whisper-alice",
            ),
            (
                Address::new("carol", 1),
                3,
                "fixtures/durable-held-prekey-carol",
            ),
        ];
        for (i, (from, t, file)) in held.iter().enumerate() {
            let msg = fs::read(fuzz_dir().join(file)).unwrap();
            let p = store.decrypt(from, *t, &msg, &mut OsRng)?;
            assert_eq!(p, DURABLE_HELD_PLAINTEXTS[i]);
        }
        store.encrypt(&alice, b"reply")?;
        store.create_bundle(false, 0, &mut OsRng)?;
        store.generate_prekeys(2, &mut OsRng)?;
        store.prekey_count()?;
        store.save()?;
        Ok(())
    };
    let r = run();
    remove_db(&path);
    r
}

#[test]
fn durable_fuzz_seeds_match_the_fixture() {
    let seeds = corpus("durable");
    assert!(seeds.len() >= 8, "durable: seeds missing");
    for (name, data) in seeds {
        let r = run_durable_seed(&data);
        if name.starts_with("ok-") {
            assert_eq!(r, Ok(()), "{name}");
        } else if name == "err-store-key" {
            assert_eq!(r, Err(ratchetkit::Error::WrongStoreKey), "{name}");
        } else if name.starts_with("err-") {
            assert!(
                matches!(r, Err(ratchetkit::Error::StoreCorrupt(_))),
                "{name}: {r:?}"
            );
        }
    }
}

// ---- SPQR (fuzz targets spqr_message and decrypt_spqr) -------------------------

/// The SPQR fixture and seeds: Bob and Alice with the default policy
/// (SPQR required) talk with losses until a few epochs have passed; then
/// Alice's messages Bob never got are the `decrypt_spqr` seeds (selector
/// 0: whisper), with tampered variants, and the SPQR fields of messages
/// of every kind seed `spqr_message`.
fn generate_spqr() -> Vec<(String, Vec<u8>)> {
    let rng = &mut OsRng;
    let mut out = Vec::new();
    let mut bob = ProtocolStore::generate(1, rng).unwrap();
    let mut alice = ProtocolStore::generate(1, rng).unwrap();
    let (a, b) = (Address::new("alice", 1), Address::new("bob", 1));
    let bundle = bob.create_bundle(true, 1, rng).unwrap();
    alice.process_bundle(&b, &bundle, rng).unwrap();
    let mut fields: Vec<Vec<u8>> = Vec::new();
    let field = |m: &CiphertextMessage| {
        let inner = match m.message_type() {
            3 => PreKeySignalMessage::deserialize(m.serialize())
                .unwrap()
                .message()
                .serialize()
                .to_vec(),
            _ => m.serialize().to_vec(),
        };
        SignalMessage::deserialize(&inner)
            .unwrap()
            .pq_ratchet()
            .to_vec()
    };
    for i in 0..200u32 {
        let m = alice.encrypt(&b, &i.to_le_bytes()).unwrap();
        fields.push(field(&m));
        if i % 5 != 3 {
            deliver(&mut bob, &a, &m);
        }
        let r = bob.encrypt(&a, &i.to_be_bytes()).unwrap();
        fields.push(field(&r));
        deliver(&mut alice, &b, &r);
    }
    let epoch = bob.session_spqr_epoch(&a).unwrap();
    assert!(epoch >= 3, "SPQR epoch {epoch}");
    let held: Vec<_> = (0..4)
        .map(|i| alice.encrypt(&b, format!("held {i}").as_bytes()).unwrap())
        .collect();
    out.push(("fixtures/spqr-bob.store".into(), bob.save()));
    let d = "corpus/decrypt_spqr";
    for (i, m) in held.iter().enumerate() {
        fields.push(field(m));
        out.push((format!("{d}/ok-held-{i}"), with_selector(0, m.serialize())));
    }
    // The SPQR field's bytes altered: its offset inside the message.
    let body = held[1].serialize();
    let pq = field(&held[1]);
    let at = body
        .windows(pq.len())
        .position(|w| w == pq.as_slice())
        .unwrap();
    for (name, offset, xor) in [
        ("err-spqr-version-0", 0, 0x01u8),
        ("err-spqr-epoch", 1, 0x02),
        ("err-spqr-index", 2, 0x40),
        ("err-spqr-type", 3, 0x07),
        ("err-spqr-chunk", pq.len() - 1, 0x80),
    ] {
        let mut bad = body.to_vec();
        bad[at + offset] ^= xor;
        out.push((format!("{d}/{name}"), with_selector(0, &bad)));
    }
    out.push((
        format!("{d}/err-as-prekey"),
        with_selector(1, held[0].serialize()),
    ));
    fields.sort();
    fields.dedup();
    for (i, f) in fields.iter().enumerate().take(40) {
        out.push((format!("corpus/spqr_message/ok-{i:02}"), f.clone()));
    }
    out.push(("corpus/spqr_message/err-epoch-0".into(), vec![1, 0, 1, 0]));
    out.push(("corpus/spqr_message/err-type".into(), vec![1, 1, 1, 9]));
    out
}

/// Regenerates the SPQR fixture and seeds only (see the module docs).
#[test]
#[ignore = "writes fuzz/fixtures/spqr-bob.store and fuzz/corpus/{spqr_message,decrypt_spqr}"]
fn write_spqr_fuzz_seeds() {
    let dir = fuzz_dir();
    for target in ["spqr_message", "decrypt_spqr"] {
        let d = dir.join("corpus").join(target);
        if d.exists() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if name.starts_with("ok-") || name.starts_with("err-") {
                    fs::remove_file(p).unwrap();
                }
            }
        }
    }
    for (path, bytes) in generate_spqr() {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }
}

/// The committed SPQR seeds against the committed SPQR fixture: `ok-*`
/// decrypt (and not twice), `err-*` fail and leave the store unchanged;
/// `spqr_message` seeds named `ok-*` decode, `err-*` do not.
#[test]
fn spqr_fuzz_seeds_match_the_fixture() {
    use ratchetkit::spqr::SpqrMessage;
    let fixture =
        ProtocolStore::restore(&fs::read(fuzz_dir().join("fixtures/spqr-bob.store")).unwrap())
            .expect("SPQR fixture restores");
    let a = Address::new("alice", 1);
    assert_eq!(fixture.session_has_spqr(&a), Some(true));
    let seeds = corpus("decrypt_spqr");
    assert!(seeds.len() >= 8, "decrypt_spqr: seeds missing");
    for (name, data) in seeds {
        let Some((&sel, msg)) = data.split_first() else {
            continue;
        };
        let t = if sel % 2 == 0 { 2 } else { 3 };
        let mut store = fixture.clone();
        expect(&name, &mut store, |s| s.decrypt(&a, t, msg, &mut OsRng));
        if name.starts_with("ok-") {
            expect("err-replay", &mut store, |s| {
                s.decrypt(&a, t, msg, &mut OsRng)
            });
        }
    }
    let seeds = corpus("spqr_message");
    assert!(seeds.len() >= 10, "spqr_message: seeds missing");
    for (name, data) in seeds {
        let decoded = SpqrMessage::decode(&data);
        if name.starts_with("ok-") {
            let m = decoded.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(SpqrMessage::decode(&m.encode()).unwrap(), m, "{name}");
        } else if name.starts_with("err-") {
            assert!(decoded.is_err(), "{name} decoded");
        }
    }
}

//! Shared fixture and checks of the ratchetkit fuzz targets.
//!
//! Every target body is a function here, so the targets stay one line each.
//! The fixture is a saved store (`fixtures/bob.store`, written together with
//! the seed corpora by `cargo test --release --test fuzz_seeds -- --ignored`
//! in the main crate): "bob", with established, archived and pending
//! sessions, skipped keys, one-time prekeys and trusted identities. The
//! decrypt seeds are real messages to that store that were never delivered,
//! so the fuzzer starts from inputs that decrypt.
//!
//! The invariant every target asserts: a call that fails leaves the store's
//! saved bytes exactly as they were; a call that succeeds leaves a store that
//! saves and restores to the same bytes.

use std::sync::OnceLock;

pub mod ffi;

use rand::rngs::StdRng;
use rand::SeedableRng;
use ratchetkit::{Address, Fingerprint, PreKeyBundle, PreKeySignalMessage, ProtocolStore, Result};
use ratchetkit::{PublicKey, SignalMessage};

/// The saved fixture store ("bob").
pub const FIXTURE_STORE: &[u8] = include_bytes!("../fixtures/bob.store");
/// The key of the keyed (encrypted) restore seeds.
pub const PICKLE_KEY: [u8; 32] = [0x42; 32];
/// Stable ids of the fixture's safety numbers with "alice".
pub const LOCAL_ID: &[u8] = b"bob";
/// See [`LOCAL_ID`].
pub const REMOTE_ID: &[u8] = b"alice";
/// Held messages to the fixture, replayed against restored stores.
const HELD: [(u8, &[u8]); 3] = [
    (2, include_bytes!("../fixtures/held-whisper-alice")),
    (3, include_bytes!("../fixtures/held-prekey-alice")),
    (3, include_bytes!("../fixtures/held-prekey-carol")),
];

/// The addresses a selector byte picks from (`selector % 8`): the fixture's
/// peers, a second device of one, a stranger and an empty name.
pub const ADDRESSES: [(&str, u32); 8] = [
    ("alice", 1),
    ("carol", 1),
    ("dave", 1),
    ("erin", 1),
    ("frank", 1),
    ("alice", 2),
    ("mallory", 1),
    ("", 1),
];

/// The address picked by `selector`.
pub fn address(selector: u8) -> Address {
    let (name, device) = ADDRESSES[usize::from(selector) % ADDRESSES.len()];
    Address::new(name, device)
}

/// The fixture store, restored once.
pub fn fixture() -> &'static ProtocolStore {
    static STORE: OnceLock<ProtocolStore> = OnceLock::new();
    STORE.get_or_init(|| ProtocolStore::restore(FIXTURE_STORE).expect("fixture restores"))
}

/// A deterministic RNG (inputs must reproduce).
pub fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

/// Asserts that `store` saves, restores and saves again to the same bytes.
pub fn assert_round_trips(store: &ProtocolStore) {
    let saved = store.save();
    let back = ProtocolStore::restore(&saved)
        .unwrap_or_else(|e| panic!("a store's own saved bytes do not restore: {e}"));
    assert!(back.save() == saved, "save/restore/save is not stable");
}

/// Runs `op` on `store`. A failure must leave the saved bytes unchanged; a
/// success must leave a store that round-trips.
pub fn checked<T>(
    store: &mut ProtocolStore,
    op: impl FnOnce(&mut ProtocolStore) -> Result<T>,
) -> Option<T> {
    let before = store.save();
    match op(store) {
        Ok(v) => {
            assert_round_trips(store);
            Some(v)
        }
        Err(e) => {
            assert!(
                store.save() == before,
                "failed call ({e}) changed the store"
            );
            None
        }
    }
}

// ---- targets -------------------------------------------------------------------

/// The protobuf of a `SignalMessage`, decoded by prost: the oracle for the
/// library's hand-written zero-copy parser.
#[derive(Clone, PartialEq, prost::Message)]
struct SignalMessageProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    ratchet_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    counter: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    previous_counter: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
    /// SPQR's message (empty when absent).
    #[prost(bytes = "vec", optional, tag = "5")]
    pq_ratchet: Option<Vec<u8>>,
    /// Sealed-sender addresses (not used by the library, but typed).
    #[prost(bytes = "vec", optional, tag = "6")]
    addresses: Option<Vec<u8>>,
}

/// What prost makes of `data` as a `SignalMessage` (version byte and MAC
/// around the protobuf), with the library's required fields.
fn prost_signal_message(data: &[u8]) -> Option<(PublicKey, u32, u32, Vec<u8>, Vec<u8>)> {
    if data.len() < 9
        || data.len() > ratchetkit::wire::MAX_MESSAGE_LEN
        || !(3..=4).contains(&(data[0] >> 4))
    {
        return None;
    }
    let p: SignalMessageProto = prost::Message::decode(&data[1..data.len() - 8]).ok()?;
    let key = PublicKey::deserialize(&p.ratchet_key?).ok()?;
    Some((
        key,
        p.counter?,
        p.previous_counter.unwrap_or(0),
        p.ciphertext?,
        p.pq_ratchet.unwrap_or_default(),
    ))
}

/// `parse_message`: both parsers on the same bytes. The `SignalMessage`
/// parser must agree with prost (accept exactly the same inputs, with the
/// same fields); a parsed message keeps its bytes and re-parses to the same
/// fields; parsed messages are then decrypted against the fixture.
pub fn parse_message(data: &[u8]) {
    let oracle = prost_signal_message(data);
    match (SignalMessage::deserialize(data), &oracle) {
        (Ok(m), Some((key, counter, previous, ciphertext, pq_ratchet))) => {
            assert!(m.ratchet_key() == key);
            assert!(m.pq_ratchet() == pq_ratchet.as_slice());
            assert!(m.counter() == *counter);
            assert!(m.previous_counter() == *previous);
            assert!(m.ciphertext() == ciphertext.as_slice());
        }
        (Err(_), None) => {}
        (Ok(_), None) => panic!("SignalMessage parser accepts what prost rejects"),
        (Err(e), Some(_)) => panic!("SignalMessage parser rejects what prost accepts: {e}"),
    }
    if let Ok(m) = SignalMessage::deserialize(data) {
        assert!(m.serialize() == data);
        let again = SignalMessage::deserialize(m.serialize()).expect("re-parse");
        assert!(again.ratchet_key() == m.ratchet_key());
        assert!(again.counter() == m.counter());
        assert!(again.previous_counter() == m.previous_counter());
        assert!(again.ciphertext() == m.ciphertext());
        let mut store = fixture().clone();
        checked(&mut store, |s| s.decrypt(&address(0), 2, data, &mut rng()));
    }
    if let Ok(m) = PreKeySignalMessage::deserialize(data) {
        assert!(m.serialize() == data);
        let inner = SignalMessage::deserialize(m.message().serialize()).expect("inner re-parse");
        assert!(inner.counter() == m.message().counter());
        let mut store = fixture().clone();
        checked(&mut store, |s| s.decrypt(&address(0), 3, data, &mut rng()));
    }
}

/// `decrypt_whisper` / `decrypt_prekey`: `selector || message` decrypted as
/// `message_type` from the selected address. A success must not repeat: the
/// same bytes again must fail (replay protection).
pub fn decrypt(message_type: u8, data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let addr = address(selector);
    let mut store = fixture().clone();
    let mut rng = rng();
    if checked(&mut store, |s| {
        s.decrypt(&addr, message_type, message, &mut rng)
    })
    .is_some()
    {
        let replay = checked(&mut store, |s| {
            s.decrypt(&addr, message_type, message, &mut rng)
        });
        assert!(replay.is_none(), "a replayed message decrypted twice");
        // The session still sends.
        checked(&mut store, |s| s.encrypt(&addr, b"reply")).expect("encrypt after decrypt");
    }
}

/// `restore`: `mode || bytes`.
/// - mode 0: plain restore of `bytes`;
/// - mode 1: keyed restore of `bytes` under [`PICKLE_KEY`];
/// - mode 2: `bytes` sealed under [`PICKLE_KEY`], then restored keyed: must
///   agree with the plain restore of `bytes`.
///
/// A restored store must round-trip, and is then exercised (encrypt to its
/// sessions, a bundle, the held messages) under the unchanged-on-failure
/// invariant.
pub fn restore(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let restored = match mode % 3 {
        0 => ProtocolStore::restore(bytes),
        1 => ProtocolStore::restore_encrypted(bytes, &PICKLE_KEY),
        _ => {
            let plain = ProtocolStore::restore(bytes);
            let sealed = seal(bytes);
            let keyed = ProtocolStore::restore_encrypted(&sealed, &PICKLE_KEY);
            match (&plain, &keyed) {
                (Ok(p), Ok(k)) => assert!(p.save() == k.save()),
                (Err(p), Err(k)) => assert!(p == k, "{p} vs {k}"),
                _ => panic!("plain and keyed restore disagree"),
            }
            plain
        }
    };
    let Ok(mut store) = restored else {
        return;
    };
    assert_round_trips(&store);
    let addresses: Vec<Address> = ADDRESSES
        .iter()
        .take(4)
        .map(|&(n, d)| Address::new(n, d))
        .collect();
    let mut rng = rng();
    for addr in &addresses {
        checked(&mut store, |s| s.encrypt(addr, b"x"));
    }
    for (message_type, message) in HELD {
        for addr in &addresses[..2] {
            checked(&mut store, |s| {
                s.decrypt(addr, message_type, message, &mut rng)
            });
        }
    }
    checked(&mut store, |s| s.create_bundle(true, 1, &mut rng));
    checked(&mut store, |s| {
        s.safety_number("alice", LOCAL_ID, REMOTE_ID, 2, 2)
    });
}

/// Saves `plain` the way [`ProtocolStore::save_encrypted`] does, but around
/// arbitrary bytes: the keyed format with a fixed nonce.
fn seal(plain: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let header = *b"RKSE\x01";
    let nonce = [7u8; 24];
    let cipher = XChaCha20Poly1305::new_from_slice(&PICKLE_KEY).expect("key length");
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &header,
            },
        )
        .expect("seal");
    let mut out = header.to_vec();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// `bundle`: `selector || bundle bytes`. A parsed bundle re-serializes to a
/// bundle that parses equal; it is then processed for the selected address
/// (X3DH), and a new session must encrypt a prekey message.
pub fn bundle(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let Ok(b) = PreKeyBundle::deserialize(bytes) else {
        return;
    };
    let again = PreKeyBundle::deserialize(&b.serialize()).expect("re-parse");
    assert!(again == b);
    let addr = address(selector);
    let mut store = fixture().clone();
    let mut rng = rng();
    if checked(&mut store, |s| s.process_bundle(&addr, &b, &mut rng)).is_some() {
        assert!(store.has_session(&addr));
        let m = checked(&mut store, |s| s.encrypt(&addr, b"x")).expect("encrypt");
        assert!(m.message_type() == 3);
    }
}

/// `kem`: `mode || bytes`.
/// - even mode: `bytes` as a serialized Kyber1024 public key; a parsed key
///   re-serializes to `bytes`, and a secret encapsulated to it is 32 bytes
///   in a 1569-byte ciphertext;
/// - odd mode: `bytes` as a KEM ciphertext, decapsulated by the fixture's
///   last-resort Kyber prekey: accepted exactly when it is 1569 bytes of
///   type 0x08 (a well-formed ciphertext always decapsulates, to a secret
///   unrelated to any other key when it was made for another: implicit
///   rejection).
pub fn kem(data: &[u8]) {
    use ratchetkit::kem::{KemPublicKey, KEM_CIPHERTEXT_LEN, KYBER1024_TYPE};
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(key) = KemPublicKey::deserialize(bytes) {
            assert!(key.serialize() == bytes);
            let (ct, _) = key.encapsulate(&mut rng());
            assert!(ct.len() == KEM_CIPHERTEXT_LEN && ct[0] == KYBER1024_TYPE);
        }
        return;
    }
    let store = fixture();
    let id = store
        .last_resort_kyber_prekey_id()
        .expect("the fixture has a last-resort Kyber prekey");
    let record = store.kyber_prekey(id).expect("held");
    let well_formed = bytes.len() == KEM_CIPHERTEXT_LEN && bytes[0] == KYBER1024_TYPE;
    assert!(record.key_pair.secret_key.decapsulate(bytes).is_ok() == well_formed);
}

/// The fixture's safety number with "alice", version 1 or 2 (5200 iterations).
fn fixture_fingerprint(version: u32) -> &'static Fingerprint {
    static FPS: OnceLock<[Fingerprint; 2]> = OnceLock::new();
    let fps = FPS.get_or_init(|| {
        [1, 2].map(|v| {
            fixture()
                .safety_number("alice", LOCAL_ID, REMOTE_ID, 5200, v)
                .expect("fixture trusts alice")
        })
    });
    &fps[(version as usize - 1) % 2]
}

/// `fingerprint`: `mode || bytes`.
/// - even mode: `bytes` is a scannable fingerprint compared with the
///   fixture's (version 1 or 2 from bit 1 of the mode);
/// - odd mode: `bytes` gives iterations, two ids and two keys; the two sides
///   must agree on the displayable number and accept each other's scannable
///   form, and the fixture computes a safety number for the selected name
///   under the unchanged-on-failure invariant.
pub fn fingerprint(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let version = 1 + u32::from((mode >> 1) & 1);
    if mode & 1 == 0 {
        let ours = fixture_fingerprint(version);
        if let Ok(true) = ours.compare_scannable(rest) {
            // Only the other side's exact values match.
            assert!(rest.len() >= 64);
        }
        return;
    }
    if rest.len() < 2 + 64 {
        return;
    }
    let iterations = 2 + u32::from(rest[0] % 8);
    let id_len = usize::from(rest[1]).min(rest.len() - 2 - 64);
    let (id_a, tail) = rest[2..].split_at(id_len);
    let (keys, id_b) = tail.split_at(64);
    let mut ka = [0u8; 32];
    let mut kb = [0u8; 32];
    ka.copy_from_slice(&keys[..32]);
    kb.copy_from_slice(&keys[32..]);
    // Non-canonical u-coordinates are refused when the keys are built.
    let (Ok(ka), Ok(kb)) = (
        PublicKey::from_u_coordinate(ka),
        PublicKey::from_u_coordinate(kb),
    ) else {
        return;
    };
    let a = Fingerprint::new(version, iterations, id_a, &ka, id_b, &kb).expect("valid arguments");
    let b = Fingerprint::new(version, iterations, id_b, &kb, id_a, &ka).expect("valid arguments");
    assert!(a.displayable() == b.displayable());
    assert!(a.displayable().len() == 60);
    assert!(a.displayable().bytes().all(|c| c.is_ascii_digit()));
    assert!(b.compare_scannable(&a.scannable()) == Ok(true));
    assert!(a.compare_scannable(&b.scannable()) == Ok(true));
    if (id_a, ka) != (id_b, kb) {
        assert!(a.compare_scannable(&a.scannable()) == Ok(false));
    }
    let other = 3 - version;
    assert!(fixture_fingerprint(other)
        .compare_scannable(&a.scannable())
        .is_err());
    let mut store = fixture().clone();
    let name = ADDRESSES[usize::from(mode >> 2) % ADDRESSES.len()].0;
    checked(&mut store, |s| {
        s.safety_number(name, id_a, id_b, iterations, version)
    });
}

// ---- durable store ---------------------------------------------------------------

/// The durable fixture: a SQLite file holding a durable store ("bob", with
/// a session with "alice", trust, signed, one-time and Kyber prekeys and
/// a base-key use), opened with [`PICKLE_KEY`]. Written with the seeds by
/// `cargo test --release --test fuzz_seeds -- --ignored`.
pub const DURABLE_FIXTURE: &[u8] = include_bytes!("../fixtures/durable.sqlite");
/// A whisper message from "alice" the durable fixture has not received.
const DURABLE_HELD_WHISPER: &[u8] = include_bytes!("../fixtures/durable-held-whisper-alice");
/// A prekey message from "carol" (naming a one-time prekey and a one-time
/// Kyber prekey) the durable fixture has not received.
const DURABLE_HELD_PREKEY: &[u8] = include_bytes!("../fixtures/durable-held-prekey-carol");
/// The plaintexts of the held messages.
pub const DURABLE_HELD_PLAINTEXTS: [&[u8]; 2] = [b"held from alice", b"held from carol"];

/// The durable fixture with `patches` applied: each 4 bytes are a 24-bit
/// big-endian offset (modulo the file's length) and the byte written there.
/// Trailing bytes (fewer than 4) are ignored.
pub fn patched_durable_fixture(patches: &[u8]) -> Vec<u8> {
    let mut file = DURABLE_FIXTURE.to_vec();
    for p in patches.chunks_exact(4) {
        let offset = u32::from_be_bytes([0, p[0], p[1], p[2]]) as usize % file.len();
        file[offset] = p[3];
    }
    file
}

/// `durable`: a list of patches (see [`patched_durable_fixture`]) to the
/// durable fixture's file. The patched file is opened with the right key
/// and used: read its identity and trust, receive both held messages,
/// encrypt, make a bundle (from held prekeys: no Kyber key generation,
/// which would dominate each run), add one-time prekeys, count them, save.
/// Any call may fail (typed errors); none may
/// panic, and a held message that decrypts gives its own plaintext (the
/// records are authenticated: no patch makes another plaintext). An
/// unpatched file must work throughout.
pub fn durable(data: &[u8]) {
    use ratchetkit::{Durability, DurableOptions, DurableStore};
    let file = patched_durable_fixture(data);
    let untouched = file == DURABLE_FIXTURE;
    // tmpfs when there is one: commits wait for no disk.
    let dir = std::path::Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("rk-fuzz-durable-{}.sqlite", std::process::id()));
    let remove = |path: &std::path::Path| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    };
    remove(&path);
    std::fs::write(&path, &file).expect("temp file writes");
    let options = DurableOptions {
        create_device_id: None,
        durability: Durability::Normal,
        busy_timeout: std::time::Duration::ZERO,
        cache_sessions: 4,
    };
    let run = || -> Result<()> {
        let store = DurableStore::open(&path, &PICKLE_KEY, &options)?;
        let alice = Address::new("alice", 1);
        let carol = Address::new("carol", 1);
        let _ = store.identity_key();
        let mut result = Ok(());
        let mut note = |r: Result<()>| {
            if result.is_ok() {
                result = r;
            }
        };
        note(store.trusted_identity("alice").map(drop));
        note(store.session_count().map(drop));
        let mut r = rng();
        for (i, (from, t, msg)) in [
            (&alice, 2, DURABLE_HELD_WHISPER),
            (&carol, 3, DURABLE_HELD_PREKEY),
        ]
        .into_iter()
        .enumerate()
        {
            note(store.decrypt(from, t, msg, &mut r).map(|p| {
                assert!(
                    p == DURABLE_HELD_PLAINTEXTS[i],
                    "a held message decrypted to another plaintext"
                );
            }));
        }
        note(store.encrypt(&alice, b"reply").map(drop));
        note(store.create_bundle(false, 0, &mut r).map(drop));
        note(store.generate_prekeys(2, &mut r).map(drop));
        note(store.prekey_count().map(drop));
        note(store.save().map(drop));
        result
    };
    let result = run();
    remove(&path);
    if untouched {
        if let Err(e) = result {
            panic!("the unpatched durable fixture fails: {e}");
        }
    }
}

// ---- SPQR ------------------------------------------------------------------------

/// The SPQR fixture (`fixtures/spqr-bob.store`): "bob" with a version-4
/// session with "alice" that speaks SPQR, a few epochs in, with skipped
/// keys and a KEM exchange under way; written with the seeds by
/// `cargo test --release --test fuzz_seeds -- --ignored`.
pub const SPQR_FIXTURE_STORE: &[u8] = include_bytes!("../fixtures/spqr-bob.store");

/// The SPQR fixture store, restored once.
pub fn spqr_fixture() -> &'static ProtocolStore {
    static STORE: OnceLock<ProtocolStore> = OnceLock::new();
    STORE.get_or_init(|| ProtocolStore::restore(SPQR_FIXTURE_STORE).expect("SPQR fixture restores"))
}

/// `spqr_message`: the SPQR message decoder (field 5 of a `SignalMessage`).
/// A decoded message re-encodes to bytes that decode to the same message
/// (the encoder writes the minimal form, so it may be shorter than the
/// input); the fixture session's SPQR state receives it without panicking,
/// and a state it accepts saves and restores.
pub fn spqr_message(data: &[u8]) {
    use ratchetkit::spqr::{SpqrMessage, SpqrState};
    if let Ok(m) = SpqrMessage::decode(data) {
        let again = SpqrMessage::decode(&m.encode()).expect("a re-encoded message decodes");
        assert!(again == m, "re-encoding changed the message");
        assert!(m.epoch >= 1, "epoch 0 decoded");
    }
    let alice = Address::new("alice", 1);
    let record = spqr_fixture().session(&alice).expect("fixture session");
    let state = record.current().expect("fixture state").spqr();
    let _ = state.recv_cost(data);
    if let Ok((next, _key)) = state.recv(data) {
        let saved = next.to_bytes();
        let back = SpqrState::from_bytes(&saved).expect("an accepted SPQR state restores");
        assert!(
            back.to_bytes() == saved,
            "SPQR state save/restore is not stable"
        );
    }
}

/// `decrypt_spqr`: `selector || message` decrypted as a whisper (selector
/// even) or prekey (odd) message from "alice" by the SPQR fixture. A
/// failure leaves the saved bytes unchanged; a success must not repeat,
/// and the session still sends.
pub fn decrypt_spqr(data: &[u8]) {
    let Some((&selector, message)) = data.split_first() else {
        return;
    };
    let message_type = if selector % 2 == 0 { 2 } else { 3 };
    let addr = Address::new("alice", 1);
    let mut store = spqr_fixture().clone();
    let mut rng = rng();
    if checked(&mut store, |s| {
        s.decrypt(&addr, message_type, message, &mut rng)
    })
    .is_some()
    {
        let replay = checked(&mut store, |s| {
            s.decrypt(&addr, message_type, message, &mut rng)
        });
        assert!(replay.is_none(), "a replayed message decrypted twice");
        checked(&mut store, |s| s.encrypt(&addr, b"reply")).expect("encrypt after decrypt");
    }
}

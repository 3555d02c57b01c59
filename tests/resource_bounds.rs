//! Resource bounds under hostile input: the largest message, hostile
//! counters, huge length prefixes, many new chains, many new sessions and
//! states. Memory stays bounded (counted through the public accessors and
//! measured as saved-state size against a bound computed from the limits),
//! and every rejected input leaves the store byte-for-byte unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The Double Ratchet's own limits and checks: sessions without SPQR
// (common::Party::without_spqr); SPQR's are in the SPQR tests.
mod common;
mod forge;

use common::{assert_fails_unchanged, dr_established_pair, dr_initiated_pair, Party};
use rand::rngs::OsRng;
use rand::{Rng, RngCore};
use ratchetkit::ratchet::{MAX_FORWARD_JUMPS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use ratchetkit::store::MAX_SESSIONS;
use ratchetkit::wire::{MAX_MESSAGE_LEN, MAX_PLAINTEXT_LEN};
use ratchetkit::{
    Address, Error, ErrorKind, KeyPair, PreKeySignalMessage, ProtocolStore, SessionRecord,
    SignalMessage, MAX_ARCHIVED_STATES,
};

// ---- a saved-size bound computed from the limits ---------------------------

/// Saved bytes of one skipped key: entry header (2), counter (6), seed (34).
const SKIPPED_KEY_BYTES: usize = 2 + 6 + 34;
/// Saved bytes of a receiving chain without its skipped keys: entry header
/// (4), ratchet key (35), chain key (34), index (6).
const CHAIN_BYTES: usize = 4 + 35 + 34 + 6;
/// Saved bytes of a state without its receiving chains: entry header (4),
/// version (2), two identities (70), root key (34), sending ratchet key
/// (34), sending chain key and index (40), previous counter (6), pending
/// prekey (51), registration ids (12), base key (35); rounded up.
const STATE_BYTES: usize = 320;

/// The most saved bytes one session state can take.
fn state_bound() -> usize {
    STATE_BYTES + MAX_RECEIVER_CHAINS * (CHAIN_BYTES + MAX_SKIPPED_KEYS * SKIPPED_KEY_BYTES)
}

/// The most saved bytes one session record (address entry with current and
/// archived states) can take; `name_len` is the address name's length.
fn record_bound(name_len: usize) -> usize {
    8 + name_len + 6 + (1 + MAX_ARCHIVED_STATES) * state_bound()
}

fn total_skipped(r: &SessionRecord) -> usize {
    r.current().map_or(0, |s| s.skipped_key_count())
        + r.previous_states()
            .map(|s| s.skipped_key_count())
            .sum::<usize>()
}

/// Checks every count of `store`'s record for `addr` against the limits.
fn assert_record_within_limits(store: &ProtocolStore, addr: &Address) {
    let r = store.session(addr).unwrap();
    assert!(r.previous_count() <= MAX_ARCHIVED_STATES);
    for s in r.current().into_iter().chain(r.previous_states()) {
        assert!(s.receiver_chain_count() <= MAX_RECEIVER_CHAINS);
        assert!(s.skipped_key_count() <= MAX_RECEIVER_CHAINS * MAX_SKIPPED_KEYS);
    }
}

#[test]
fn bounds_are_consistent() {
    assert_eq!(MAX_MESSAGE_LEN, 64 << 20);
    assert_eq!(MAX_PLAINTEXT_LEN, MAX_MESSAGE_LEN - 4096);
    assert_eq!(MAX_SESSIONS, 65_536);
    // One record at its worst is about 17 MB of saved state.
    assert!(record_bound(5) < 18_000_000, "{}", record_bound(5));
}

// ---- message size -------------------------------------------------------------

#[test]
fn one_mebibyte_messages_work_both_as_prekey_and_whisper() {
    let (mut alice, mut bob, _) = dr_initiated_pair();
    let mut big = vec![0u8; 1 << 20];
    OsRng.fill_bytes(&mut big);
    let m = alice.send(&bob, &big);
    assert_eq!(m.message_type(), 3);
    assert_eq!(bob.recv(&alice, &m).unwrap(), big);
    let r = bob.send(&alice, &big);
    assert_eq!(r.message_type(), 2);
    assert_eq!(alice.recv(&bob, &r).unwrap(), big);
}

#[test]
fn largest_plaintext_makes_a_message_the_other_side_accepts() {
    let (mut alice, mut bob) = dr_established_pair();
    let plaintext = vec![0x5au8; MAX_PLAINTEXT_LEN];
    let m = alice.send(&bob, &plaintext);
    assert!(m.serialize().len() <= MAX_MESSAGE_LEN);
    assert_eq!(bob.recv(&alice, &m).unwrap(), plaintext);
    drop(plaintext);
    // One byte more is refused before anything changes.
    let too_long = vec![0u8; MAX_PLAINTEXT_LEN + 1];
    let b = bob.addr.clone();
    let err = assert_fails_unchanged(&mut alice.store, |s| s.encrypt(&b, &too_long));
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
}

#[test]
fn messages_over_the_limit_are_rejected_unchanged() {
    let (alice, mut bob) = dr_established_pair();
    let a = alice.addr.clone();
    let mut huge = vec![0u8; MAX_MESSAGE_LEN + 1];
    huge[0] = 0x33;
    for t in [2, 3] {
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, t, &huge, &mut OsRng));
        assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
        assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    }
    assert!(matches!(
        SignalMessage::deserialize(&huge),
        Err(Error::LimitExceeded(_))
    ));
    assert!(matches!(
        PreKeySignalMessage::deserialize(&huge),
        Err(Error::LimitExceeded(_))
    ));
    // A well-formed message of MAX_MESSAGE_LEN + 1 bytes: also the limit.
    let key = KeyPair::generate(&mut OsRng).public_key;
    let shell = forge::signal_message(&key, 0, 0, &[], [0; 8]);
    let ct = vec![0u8; MAX_MESSAGE_LEN + 1 - shell.len() - 3];
    let bytes = forge::signal_message(&key, 0, 0, &ct, [0; 8]);
    assert_eq!(bytes.len(), MAX_MESSAGE_LEN + 1);
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &bytes, &mut OsRng));
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
}

#[test]
fn huge_length_prefixes_are_parse_errors() {
    let (alice, mut bob) = dr_established_pair();
    let a = alice.addr.clone();
    let key = KeyPair::generate(&mut OsRng).public_key.serialize();
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for len in [
        u64::from(u32::MAX),
        u64::MAX >> 1,
        u64::MAX,
        1 << 40,
        1 << 26,
    ] {
        // SignalMessage: ratchet key, counter, then a ciphertext claiming `len`.
        let mut m = vec![0x33, 0x0a, 33];
        m.extend_from_slice(&key);
        m.extend_from_slice(&[0x10, 0x00, 0x22]);
        forge::varint(len, &mut m);
        m.extend_from_slice(&[0xAB; 40]);
        cases.push(m);
        // A ratchet key field claiming `len`.
        let mut m = vec![0x33, 0x0a];
        forge::varint(len, &mut m);
        m.extend_from_slice(&[0xAB; 40]);
        cases.push(m);
        // PreKeySignalMessage whose inner message claims `len`.
        let mut m = vec![0x33, 0x28, 0x01, 0x30, 0x01, 0x12, 33];
        m.extend_from_slice(&key);
        m.extend_from_slice(&[0x1a, 33]);
        m.extend_from_slice(&key);
        m.push(0x22);
        forge::varint(len, &mut m);
        m.extend_from_slice(&[0xAB; 40]);
        cases.push(m);
    }
    for bytes in &cases {
        for t in [2, 3] {
            let err =
                assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, t, bytes, &mut OsRng));
            assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
        }
    }
}

// ---- hostile counters ---------------------------------------------------------

#[test]
fn hostile_counters_are_rejected_before_any_work() {
    let (mut alice, mut bob) = dr_established_pair();
    let a = alice.addr.clone();
    // Bob learns Alice's current chain: its index is then 1.
    let m = alice.send(&bob, b"x");
    bob.recv(&alice, &m).unwrap();
    let real = SignalMessage::deserialize(m.serialize()).unwrap();
    let known = *real.ratchet_key();
    let fresh = KeyPair::generate(&mut OsRng).public_key;
    let ct = real.ciphertext().to_vec();
    let cases: [(ratchetkit::PublicKey, u32, u64); 6] = [
        // (ratchet key, counter, expected jump)
        (known, u32::MAX, u64::from(u32::MAX) - 1),
        (
            known,
            1 + MAX_FORWARD_JUMPS + 1,
            u64::from(MAX_FORWARD_JUMPS) + 1,
        ),
        (known, 1 + 30_000, 30_000),
        (fresh, u32::MAX, u64::from(u32::MAX)),
        (
            fresh,
            MAX_FORWARD_JUMPS + 1,
            u64::from(MAX_FORWARD_JUMPS) + 1,
        ),
        (fresh, 1 << 31, 1 << 31),
    ];
    for (key, counter, jump) in cases {
        let bytes = forge::signal_message(&key, counter, u32::MAX, &ct, [0; 8]);
        let started = std::time::Instant::now();
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &bytes, &mut OsRng));
        assert_eq!(
            err,
            Error::TooFarAhead {
                jump,
                limit: MAX_FORWARD_JUMPS
            }
        );
        // Rejected without walking the chain (4 billion steps would take minutes).
        assert!(started.elapsed().as_secs() < 5);
    }
    // Exactly at the limit the jump is computed, then the MAC fails: still
    // nothing stored.
    for key in [known, fresh] {
        let counter = if key == known {
            1 + MAX_FORWARD_JUMPS
        } else {
            MAX_FORWARD_JUMPS
        };
        let bytes = forge::signal_message(&key, counter, 0, &ct, [0; 8]);
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &bytes, &mut OsRng));
        assert_eq!(err, Error::InvalidMessage("MAC verification failed"));
    }
    let record = bob.store.session(&a).unwrap();
    let r = record.current().unwrap();
    assert_eq!(r.skipped_key_count(), 0);
    // A genuine jump of exactly 25,000 keeps only the newest 2,000 keys.
    let msgs: Vec<_> = (0..MAX_FORWARD_JUMPS + 1)
        .map(|_| alice.send(&bob, b"y"))
        .collect();
    assert_eq!(bob.recv(&alice, msgs.last().unwrap()).unwrap(), b"y");
    let record = bob.store.session(&a).unwrap();
    let r = record.current().unwrap();
    assert_eq!(r.skipped_key_count(), MAX_SKIPPED_KEYS);
    assert_record_within_limits(&bob.store, &a);
}

// ---- many new chains -----------------------------------------------------------

#[test]
fn thousands_of_new_chains_from_a_real_sender_stay_bounded() {
    let (mut alice, mut bob) = dr_established_pair();
    let a = alice.addr.clone();
    let bound = 1024 + record_bound(a.name.len()) + record_bound(0);
    // Eight chains, each leaving 2,000 skipped keys behind.
    for round in 0..8 {
        let msgs: Vec<_> = (0..=MAX_SKIPPED_KEYS)
            .map(|_| alice.send(&bob, b"skip"))
            .collect();
        bob.recv(&alice, msgs.last().unwrap()).unwrap();
        let r = bob.send(&alice, b"turn");
        alice.recv(&bob, &r).unwrap();
        let record = bob.store.session(&a).unwrap();
        let state = record.current().unwrap();
        assert_eq!(state.receiver_chain_count(), (round + 2).min(5));
        assert_eq!(
            state.skipped_key_count(),
            MAX_SKIPPED_KEYS * (round + 1).min(MAX_RECEIVER_CHAINS)
        );
        assert!(bob.store.save().len() <= bound);
    }
    let full = bob.store.save().len();
    // Then 3,000 round trips, every message on a fresh ratchet key.
    let mut seen = std::collections::HashSet::new();
    for i in 0..3_000u32 {
        let m = alice.send(&bob, &i.to_be_bytes());
        let k = *SignalMessage::deserialize(m.serialize())
            .unwrap()
            .ratchet_key();
        assert!(seen.insert(k.serialize()), "ratchet key reused");
        assert_eq!(bob.recv(&alice, &m).unwrap(), i.to_be_bytes());
        let r = bob.send(&alice, b"ack");
        alice.recv(&bob, &r).unwrap();
        if i % 500 == 0 {
            assert_record_within_limits(&bob.store, &a);
            assert!(bob.store.save().len() <= full);
        }
    }
    let record = bob.store.session(&a).unwrap();
    let state = record.current().unwrap();
    assert_eq!(state.receiver_chain_count(), MAX_RECEIVER_CHAINS);
    // The chains with skipped keys were all pushed out.
    assert_eq!(state.skipped_key_count(), 0);
    assert!(bob.store.save().len() < 4096, "{}", bob.store.save().len());
}

#[test]
fn thousands_of_forged_new_chain_messages_change_nothing() {
    let (alice, mut bob) = dr_established_pair();
    let a = alice.addr.clone();
    let before = bob.store.save();
    for i in 0..5_000 {
        let key = KeyPair::generate(&mut OsRng).public_key;
        // Mostly short walks; a few at the limit show the worst case is bounded.
        let counter = if i % 1_000 == 0 {
            MAX_FORWARD_JUMPS
        } else {
            OsRng.gen_range(0..64)
        };
        let mut ct = vec![0u8; 16 * OsRng.gen_range(1..4)];
        OsRng.fill_bytes(&mut ct);
        let mut mac = [0u8; 8];
        OsRng.fill_bytes(&mut mac);
        let bytes = forge::signal_message(&key, counter, OsRng.gen(), &ct, mac);
        let err = bob.store.decrypt(&a, 2, &bytes, &mut OsRng).unwrap_err();
        assert_eq!(err, Error::InvalidMessage("MAC verification failed"));
    }
    assert_eq!(bob.store.save(), before);
    let record = bob.store.session(&a).unwrap();
    let state = record.current().unwrap();
    assert_eq!(state.receiver_chain_count(), 1);
    assert_eq!(state.skipped_key_count(), 0);
}

// ---- many states and sessions ---------------------------------------------------

#[test]
fn many_new_sessions_from_one_peer_archive_at_most_40_states() {
    let mut alice = Party::without_spqr("alice");
    let mut bob = Party::without_spqr("bob");
    let a = alice.addr.clone();
    let b = bob.addr.clone();
    for i in 0..(MAX_ARCHIVED_STATES + 10) {
        let bundle = bob.store.create_bundle(i % 2 == 0, 0, &mut OsRng).unwrap();
        alice.store.process_bundle(&b, &bundle, &mut OsRng).unwrap();
        // Skipped keys in every state, too.
        let msgs: Vec<_> = (0..50).map(|_| alice.send(&bob, b"p")).collect();
        bob.recv(&alice, msgs.last().unwrap()).unwrap();
    }
    for (store, addr) in [(&alice.store, &b), (&bob.store, &a)] {
        let r = store.session(addr).unwrap();
        assert_eq!(r.previous_count(), MAX_ARCHIVED_STATES);
        assert_record_within_limits(store, addr);
    }
    assert_eq!(
        total_skipped(&bob.store.session(&a).unwrap()),
        49 * (MAX_ARCHIVED_STATES + 1)
    );
    assert!(bob.store.save().len() <= 1024 + record_bound(a.name.len()));
    // Forged prekey messages with fresh base keys (and an inner message that
    // does not authenticate): rejected, nothing archived.
    let real = alice.send(&bob, b"p");
    let real = PreKeySignalMessage::deserialize(real.serialize()).unwrap();
    let mut inner = real.message().serialize().to_vec();
    *inner.last_mut().unwrap() ^= 1;
    let before = bob.store.save();
    for _ in 0..500 {
        let bytes = forge::prekey_message(
            real.kyber(),
            real.registration_id(),
            None,
            real.signed_pre_key_id(),
            &KeyPair::generate(&mut OsRng).public_key,
            real.identity_key(),
            &inner,
        );
        let err = bob.store.decrypt(&a, 3, &bytes, &mut OsRng).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    }
    assert_eq!(bob.store.save(), before);
}

/// Reads a protobuf varint at `*i`.
fn read_varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return v;
        }
        shift += 7;
    }
}

/// The payload of the first session entry (field 9) of saved bytes.
fn first_session_entry(saved: &[u8]) -> Vec<u8> {
    let body = &saved[5..];
    let mut i = 0;
    while i < body.len() {
        let key = read_varint(body, &mut i);
        match key & 7 {
            0 => {
                read_varint(body, &mut i);
            }
            2 => {
                let len = read_varint(body, &mut i) as usize;
                if key >> 3 == 9 {
                    return body[i..i + len].to_vec();
                }
                i += len;
            }
            1 => i += 8,
            5 => i += 4,
            w => panic!("wire type {w}"),
        }
    }
    panic!("no session entry");
}

/// `saved` with `count` more copies of its first session entry, each under
/// a new name.
fn with_extra_sessions(saved: &[u8], count: usize) -> Vec<u8> {
    let entry = first_session_entry(saved);
    // The name (field 1) comes first; keep everything after it.
    assert_eq!(entry[0], 0x0a);
    let rest = &entry[2 + entry[1] as usize..];
    let mut out = saved.to_vec();
    for k in 0..count {
        let name = format!("peer{k}");
        let mut e = vec![0x0a, name.len() as u8];
        e.extend_from_slice(name.as_bytes());
        e.extend_from_slice(rest);
        out.push(0x4a); // field 9, length-delimited
        forge::varint(e.len() as u64, &mut out);
        out.extend_from_slice(&e);
    }
    out
}

#[test]
fn sessions_per_store_are_capped() {
    let (mut alice, mut bob) = dr_established_pair();
    let mut carol = Party::without_spqr("carol");
    let bundles: Vec<_> = (0..2)
        .map(|_| bob.store.create_bundle(false, 0, &mut OsRng).unwrap())
        .collect();
    let saved = bob.store.save();
    assert_eq!(bob.store.session_count(), 1);

    // Restore refuses one session too many.
    let err = ProtocolStore::restore(&with_extra_sessions(&saved, MAX_SESSIONS)).unwrap_err();
    assert!(matches!(err, Error::CorruptState(_)), "{err}");

    let mut full = ProtocolStore::restore(&with_extra_sessions(&saved, MAX_SESSIONS - 1)).unwrap();
    assert_eq!(full.session_count(), MAX_SESSIONS);
    // A new address, from either side, is refused without change.
    let dave_bundle = Party::without_spqr("dave")
        .store
        .create_bundle(true, 0, &mut OsRng)
        .unwrap();
    let dave = Address::new("dave", 1);
    let err = assert_fails_unchanged(&mut full, |s| {
        s.process_bundle(&dave, &dave_bundle, &mut OsRng)
    });
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    carol
        .store
        .process_bundle(&bob.addr, &bundles[0], &mut OsRng)
        .unwrap();
    let c = carol.send(&bob, b"hello from a new address");
    let err = assert_fails_unchanged(&mut full, |s| {
        s.decrypt(&carol.addr, 3, c.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
    // Addresses already held keep working.
    let m = alice.send(&bob, b"still works");
    let pt = full
        .decrypt(&alice.addr, 2, m.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(pt, b"still works");
    full.process_bundle(&Address::new("peer7", 1), &bundles[1], &mut OsRng)
        .unwrap();
    assert_eq!(full.session_count(), MAX_SESSIONS);
    // Removing one makes room.
    assert!(full.remove_session(&Address::new("peer7", 1)));
    assert!(!full.remove_session(&Address::new("peer7", 1)));
    let pt = full
        .decrypt(&carol.addr, 3, c.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(pt, b"hello from a new address");
    assert_eq!(full.session_count(), MAX_SESSIONS);
}

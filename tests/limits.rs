//! The deployed limits: 25,000 forward jumps, 2,000 skipped keys per chain,
//! 5 receiving chains, 40 archived states.

// The Double Ratchet's own limits and checks: sessions without SPQR
// (common::Party::without_spqr); SPQR's are in the SPQR tests.
mod common;

use common::{assert_fails_unchanged, dr_established_pair, Party};
use rand::rngs::OsRng;
use ratchetkit::ratchet::{MAX_FORWARD_JUMPS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use ratchetkit::{Error, MAX_ARCHIVED_STATES};

#[test]
fn limits_have_deployed_values() {
    assert_eq!(MAX_FORWARD_JUMPS, 25_000);
    assert_eq!(MAX_SKIPPED_KEYS, 2_000);
    assert_eq!(MAX_RECEIVER_CHAINS, 5);
    assert_eq!(MAX_ARCHIVED_STATES, 40);
}

#[test]
fn message_25001_ahead_is_rejected_without_change() {
    let (mut alice, mut bob) = dr_established_pair();
    // Alice's current sending chain is new to Bob (a DH turn).
    let msgs: Vec<_> = (0..25_002)
        .map(|i| alice.send(&bob, &(i as u32).to_be_bytes()))
        .collect();
    let alice_addr = alice.addr.clone();
    let too_far = &msgs[25_001];
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(
            &alice_addr,
            too_far.message_type(),
            too_far.serialize(),
            &mut OsRng,
        )
    });
    assert!(
        matches!(
            err,
            Error::TooFarAhead {
                jump: 25_001,
                limit: 25_000
            }
        ),
        "{err}"
    );
    // Exactly 25,000 ahead is accepted.
    assert_eq!(
        bob.recv(&alice, &msgs[25_000]).unwrap(),
        25_000u32.to_be_bytes()
    );
    // Within an existing chain the limit applies to the jump from its index.
    let more: Vec<_> = (0..25_002).map(|_| alice.send(&bob, b"x")).collect();
    // counter 25,001 + 25,001 = jump 25,002 - 1 from index 25,001
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&alice_addr, 2, more[25_001].serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::TooFarAhead { .. }), "{err}");
    assert_eq!(bob.recv(&alice, &more[24_999]).unwrap(), b"x");
}

#[test]
fn hostile_counter_u32_max_is_rejected() {
    let (mut alice, mut bob) = dr_established_pair();
    // Forge nothing: a real message whose counter we cannot change without
    // breaking the MAC is enough to show the limit check comes first.
    let m = alice.send(&bob, b"x");
    let mut bytes = m.serialize().to_vec();
    // SignalMessage: version, then field 1 (0x0a, 33, key...), then field 2 (0x10, varint).
    assert_eq!(bytes[1], 0x0a);
    let counter_at = 1 + 2 + 33;
    assert_eq!(bytes[counter_at], 0x10);
    // Replace the 1-byte varint counter (0) with u32::MAX (5 bytes).
    let mut forged = bytes[..counter_at + 1].to_vec();
    forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    forged.extend_from_slice(&bytes[counter_at + 2..]);
    bytes = forged;
    let alice_addr = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&alice_addr, 2, &bytes, &mut OsRng)
    });
    assert!(matches!(err, Error::TooFarAhead { .. }), "{err}");
}

#[test]
fn skipped_keys_are_capped_at_2000_oldest_dropped_first() {
    let (mut alice, mut bob) = dr_established_pair();
    let msgs: Vec<_> = (0..2_101)
        .map(|i| alice.send(&bob, &(i as u32).to_be_bytes()))
        .collect();
    // Deliver the last: keys 0..=2099 are skipped, only the newest 2,000 kept.
    assert_eq!(
        bob.recv(&alice, &msgs[2_100]).unwrap(),
        2_100u32.to_be_bytes()
    );
    let alice_addr = alice.addr.clone();
    for i in [0usize, 50, 99] {
        let m = &msgs[i];
        let err = assert_fails_unchanged(&mut bob.store, |s| {
            s.decrypt(&alice_addr, 2, m.serialize(), &mut OsRng)
        });
        assert!(
            matches!(err, Error::DuplicateMessage { .. }),
            "message {i}: {err}"
        );
    }
    for i in [100usize, 1_000, 2_099] {
        assert_eq!(
            bob.recv(&alice, &msgs[i]).unwrap(),
            (i as u32).to_be_bytes()
        );
    }
}

#[test]
fn at_most_5_receiving_chains_oldest_dropped_first() {
    let (mut alice, mut bob) = dr_established_pair();
    let mut held = Vec::new();
    for round in 0..6 {
        let keep = alice.send(&bob, format!("keep {round}").as_bytes());
        held.push(alice.send(&bob, format!("held {round}").as_bytes()));
        bob.recv(&alice, &keep).unwrap();
        let reply = bob.send(&alice, b"turn");
        alice.recv(&bob, &reply).unwrap();
    }
    // Bob saw 7 chains from Alice; the first two are gone.
    let alice_addr = alice.addr.clone();
    let first = &held[0];
    assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&alice_addr, 2, first.serialize(), &mut OsRng)
    });
    for (round, m) in held.iter().enumerate().skip(1) {
        assert_eq!(
            bob.recv(&alice, m).unwrap(),
            format!("held {round}").as_bytes()
        );
    }
}

#[test]
fn at_most_40_archived_states() {
    let mut alice = Party::without_spqr("alice");
    let mut bob = Party::without_spqr("bob");
    for _ in 0..45 {
        let b = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
        alice
            .store
            .process_bundle(&bob.addr, &b, &mut OsRng)
            .unwrap();
    }
    let record = alice.store.session(&bob.addr).unwrap();
    assert_eq!(record.previous_count(), 40);
    assert!(record.current().is_some());
    // The store restores with that record intact.
    let restored = ratchetkit::ProtocolStore::restore(&alice.store.save()).unwrap();
    assert_eq!(restored.session(&bob.addr).unwrap().previous_count(), 40);
}

#[test]
fn previous_state_that_decrypts_becomes_current() {
    let (mut alice, mut bob) = dr_established_pair();
    // A message from Bob on the first session is in flight...
    let in_flight = bob.send(&alice, b"old session");
    // ...while Alice starts a second session.
    let b = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    alice
        .store
        .process_bundle(&bob.addr, &b, &mut OsRng)
        .unwrap();
    assert_eq!(alice.store.session(&bob.addr).unwrap().previous_count(), 1);
    assert!(alice
        .store
        .session(&bob.addr)
        .unwrap()
        .current()
        .unwrap()
        .has_unacknowledged_prekey_message());
    assert_eq!(alice.recv(&bob, &in_flight).unwrap(), b"old session");
    // The old state is current again: Alice now sends whisper messages on it.
    let rec = alice.store.session(&bob.addr).unwrap();
    assert!(!rec.current().unwrap().has_unacknowledged_prekey_message());
    let m = alice.send(&bob, b"back on the old session");
    assert_eq!(m.message_type(), 2);
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"back on the old session");
}

//! Property test of SPQR sessions: two stores with the default policy
//! (SPQR required) exchange 100,000 messages in one conversation, and in
//! 10 random cases of 10,000 more, in bursts from alternating senders, with random loss, reordering within
//! a burst and duplicates. Checked throughout:
//!
//! - keys agree: every delivered non-duplicate message decrypts to its
//!   plaintext, and every duplicate is refused as a duplicate (leaving the
//!   store unchanged, checked on a sample);
//! - epochs keep advancing: while both sides talk, the SPQR epoch of both
//!   sessions grows in every window of 1,000 messages;
//! - state stays bounded: both stores' saved sizes stay below
//!   [`SAVED_BOUND`].

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rand::rngs::{OsRng, StdRng};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ratchetkit::{Address, CiphertextMessage, Error, ProtocolStore};

const CASES: u32 = 10;
const MESSAGES_PER_CASE: u32 = 10_000;
const WINDOW: u32 = 1_000;
/// The most bytes either store may save: the Double Ratchet state (at most
/// 5 receiving chains, their skipped keys) plus the SPQR state (at most 3
/// epochs with their skipped keys, an ML-KEM exchange in flight).
const SAVED_BOUND: usize = 256 * 1024;

struct Side {
    store: ProtocolStore,
    addr: Address,
}

fn epoch(s: &Side, other: &Side) -> u64 {
    s.store
        .session_spqr_epoch(&other.addr)
        .expect("the session speaks SPQR")
}

fn run(seed: u64, loss: f64, dup: f64, max_burst: usize) {
    run_for(seed, loss, dup, max_burst, MESSAGES_PER_CASE);
}

fn run_for(seed: u64, loss: f64, dup: f64, max_burst: usize, messages: u32) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sides = [
        Side {
            store: ProtocolStore::generate(1, &mut OsRng).unwrap(),
            addr: Address::new("alice", 1),
        },
        Side {
            store: ProtocolStore::generate(1, &mut OsRng).unwrap(),
            addr: Address::new("bob", 1),
        },
    ];
    let bundle = sides[1].store.create_bundle(true, 0, &mut OsRng).unwrap();
    let bob = sides[1].addr.clone();
    sides[0]
        .store
        .process_bundle(&bob, &bundle, &mut OsRng)
        .unwrap();
    // Alice's first message arrives, so that both sides have a session.
    let first = sides[0].store.encrypt(&bob, b"first").unwrap();
    let alice = sides[0].addr.clone();
    assert_eq!(
        sides[1]
            .store
            .decrypt(&alice, first.message_type(), first.serialize(), &mut OsRng)
            .unwrap(),
        b"first"
    );
    let mut sent = 1u32;
    let mut from = 1usize;
    let mut last_epochs = (epoch(&sides[0], &sides[1]), epoch(&sides[1], &sides[0]));
    let mut next_window = WINDOW;
    let mut largest = 0usize;
    let mut duplicates = 0u32;
    while sent < messages {
        let n = rng.gen_range(1..=max_burst);
        let (s, r) = if from == 0 { (0, 1) } else { (1, 0) };
        let to = sides[r].addr.clone();
        let sender_addr = sides[s].addr.clone();
        let mut burst: Vec<(CiphertextMessage, Vec<u8>)> = (0..n)
            .map(|_| {
                let pt: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
                (sides[s].store.encrypt(&to, &pt).unwrap(), pt)
            })
            .collect();
        sent += n as u32;
        // Loss (at least one message per burst arrives, so both sides keep
        // hearing each other), then reordering.
        let keep = rng.gen_range(0..burst.len());
        let mut i = 0;
        burst.retain(|_| {
            i += 1;
            i - 1 == keep || !rng.gen_bool(loss)
        });
        burst.shuffle(&mut rng);
        let receiver = &mut sides[r].store;
        for (m, pt) in &burst {
            let got = receiver
                .decrypt(&sender_addr, m.message_type(), m.serialize(), &mut OsRng)
                .unwrap_or_else(|e| panic!("seed {seed}: message {sent} failed: {e}"));
            assert_eq!(&got, pt, "seed {seed}: keys disagree");
            if rng.gen_bool(dup) {
                duplicates += 1;
                let before = duplicates.is_multiple_of(16).then(|| receiver.save());
                let err = receiver
                    .decrypt(&sender_addr, m.message_type(), m.serialize(), &mut OsRng)
                    .expect_err("a duplicate decrypted");
                assert!(
                    matches!(err, Error::DuplicateMessage { .. }),
                    "seed {seed}: duplicate refused as {err}"
                );
                if let Some(before) = before {
                    assert!(
                        receiver.save() == before,
                        "a refused duplicate changed the store"
                    );
                }
            }
        }
        from = if rng.gen_bool(0.7) { 1 - from } else { from };
        if sent >= next_window {
            next_window += WINDOW;
            let epochs = (epoch(&sides[0], &sides[1]), epoch(&sides[1], &sides[0]));
            assert!(
                epochs.0 > last_epochs.0 && epochs.1 > last_epochs.1,
                "seed {seed}: SPQR epochs {last_epochs:?} -> {epochs:?} in {WINDOW} messages"
            );
            last_epochs = epochs;
            for side in &sides {
                let size = side.store.save().len();
                largest = largest.max(size);
                assert!(
                    size < SAVED_BOUND,
                    "seed {seed}: saved state of {size} bytes"
                );
            }
        }
    }
    assert!(duplicates > 0 || dup == 0.0);
    eprintln!(
        "seed {seed}: {sent} messages, epochs {last_epochs:?}, largest save {largest} B, \
         {duplicates} duplicates"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn spqr_keys_agree_epochs_advance_state_stays_bounded(
        seed in any::<u64>(),
        loss in 0.0f64..0.3,
        dup in 0.0f64..0.15,
        max_burst in 1usize..12,
    ) {
        run(seed, loss, dup, max_burst);
    }
}

/// One conversation of 100,000 messages between the same two stores, with
/// loss, duplicates and reordering (a seed drawn per run, printed on
/// failure).
#[test]
fn one_conversation_of_100_000_messages() {
    let seed = rand::random::<u64>();
    run_for(seed, 0.1, 0.05, 8, 100_000);
}

//! Property test: random schedules between two stores — send, deliver,
//! reorder, drop, duplicate, save/restore. Every delivered non-duplicate
//! message decrypts to its plaintext, and every duplicate is reported as one
//! (the model also knows when a message's chain has been evicted by the
//! 5-receiving-chain limit, and then expects a failure).

#![allow(clippy::unwrap_used)]

mod common;

use common::Party;
use proptest::prelude::*;
use rand::rngs::OsRng;
use ratchetkit::ratchet::MAX_RECEIVER_CHAINS;
use ratchetkit::{
    CiphertextMessage, Error, PreKeySignalMessage, ProtocolStore, PublicKey, SignalMessage,
};

#[derive(Clone, Debug)]
enum Op {
    Send { from: usize, len: usize },
    Deliver(usize),
    Drop(usize),
    Duplicate(usize),
    SaveRestore(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize, 0..300usize).prop_map(|(from, len)| Op::Send { from, len }),
        4 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => (0..2usize).prop_map(Op::SaveRestore),
    ]
}

struct InFlight {
    to: usize,
    message: CiphertextMessage,
    plaintext: Vec<u8>,
    ratchet_key: PublicKey,
}

fn ratchet_key(m: &CiphertextMessage) -> PublicKey {
    match m.message_type() {
        2 => *SignalMessage::deserialize(m.serialize())
            .unwrap()
            .ratchet_key(),
        _ => *PreKeySignalMessage::deserialize(m.serialize())
            .unwrap()
            .message()
            .ratchet_key(),
    }
}

/// Whether the receiver still holds the chain of `key` (or has never seen it).
fn chain_available(seen: &[PublicKey], key: &PublicKey) -> bool {
    match seen.iter().position(|k| k == key) {
        None => true,
        Some(i) => i + MAX_RECEIVER_CHAINS >= seen.len(),
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut parties = [Party::new("alice"), Party::new("bob")];
    let bundle = parties[1].store.create_bundle(true, 0, &mut OsRng).unwrap();
    let bob_addr = parties[1].addr.clone();
    parties[0]
        .store
        .process_bundle(&bob_addr, &bundle, &mut OsRng)
        .unwrap();

    let mut in_flight: Vec<InFlight> = Vec::new();
    let mut delivered: Vec<InFlight> = Vec::new();
    let mut seen: [Vec<PublicKey>; 2] = [Vec::new(), Vec::new()];
    let mut counter = 0u32;

    for op in ops {
        match op {
            Op::Send { from, len } => {
                // Bob can only answer once he has a session.
                let from = if parties[1].store.has_session(&parties[0].addr) {
                    from
                } else {
                    0
                };
                let to = 1 - from;
                counter += 1;
                let mut plaintext = counter.to_be_bytes().to_vec();
                plaintext.resize(len.max(4), (counter % 251) as u8);
                let to_addr = parties[to].addr.clone();
                let message = parties[from].store.encrypt(&to_addr, &plaintext).unwrap();
                let ratchet_key = ratchet_key(&message);
                in_flight.push(InFlight {
                    to,
                    message,
                    plaintext,
                    ratchet_key,
                });
            }
            Op::Deliver(i) | Op::Drop(i) if in_flight.is_empty() => {
                let _ = i;
            }
            Op::Deliver(i) => {
                let m = in_flight.remove(i % in_flight.len());
                let from_addr = parties[1 - m.to].addr.clone();
                let result = parties[m.to].store.decrypt(
                    &from_addr,
                    m.message.message_type(),
                    m.message.serialize(),
                    &mut OsRng,
                );
                if chain_available(&seen[m.to], &m.ratchet_key) {
                    prop_assert_eq!(
                        result.as_ref().ok(),
                        Some(&m.plaintext),
                        "{:?}",
                        result.as_ref().err()
                    );
                    if !seen[m.to].contains(&m.ratchet_key) {
                        seen[m.to].push(m.ratchet_key);
                    }
                    delivered.push(m);
                } else {
                    prop_assert!(result.is_err(), "message on an evicted chain decrypted");
                }
            }
            Op::Drop(i) => {
                in_flight.remove(i % in_flight.len());
            }
            Op::Duplicate(i) => {
                if delivered.is_empty() {
                    continue;
                }
                let m = &delivered[i % delivered.len()];
                let from_addr = parties[1 - m.to].addr.clone();
                let before = parties[m.to].store.save();
                let result = parties[m.to].store.decrypt(
                    &from_addr,
                    m.message.message_type(),
                    m.message.serialize(),
                    &mut OsRng,
                );
                prop_assert!(result.is_err(), "a duplicate decrypted");
                if chain_available(&seen[m.to], &m.ratchet_key) {
                    prop_assert!(
                        matches!(result, Err(Error::DuplicateMessage { .. })),
                        "{:?}",
                        result
                    );
                }
                prop_assert_eq!(parties[m.to].store.save(), before);
            }
            Op::SaveRestore(p) => {
                parties[p].store = ProtocolStore::restore(&parties[p].store.save()).unwrap();
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn random_schedules_deliver_every_message(ops in prop::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}

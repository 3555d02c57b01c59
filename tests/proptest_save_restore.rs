//! Property test (issue 14, item 3): whatever sequence of public operations
//! a store goes through — honest or hostile, succeeding or failing — its
//! saved bytes restore, and restoring then saving again gives the same
//! bytes. What the store accepts at run time it must restore; what restore
//! refuses the store must never create. Hostile inputs include addresses
//! with device id 0, bundles whose public fields were set out of range,
//! tampered, truncated and duplicated messages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use rand::rngs::OsRng;
use ratchetkit::{Address, CiphertextMessage, PreKeyBundle, ProtocolStore};

const NAMES: [&str; 3] = ["alice", "bob", "carol"];
/// Device ids an operation may use: 0 is never valid.
const DEVICES: [u32; 3] = [0, 1, 2];
/// Prekey ids a hostile bundle may carry: 0 and 2^24 are out of range.
const HOSTILE_IDS: [u32; 4] = [0, 1, 0x00FF_FFFF, 0x0100_0000];

#[derive(Clone, Debug)]
enum Op {
    Prekeys {
        party: usize,
        count: u32,
    },
    SignedPrekey {
        party: usize,
    },
    RemoveSignedPrekey {
        party: usize,
        id: u32,
    },
    /// `to` processes a bundle of `from`, possibly with fields set directly.
    Bundle {
        from: usize,
        to: usize,
        one_time: bool,
        device: usize,
        hostile: Option<(usize, usize, usize)>,
    },
    Send {
        from: usize,
        to: usize,
        len: usize,
    },
    Deliver {
        index: usize,
        device: usize,
        tamper: u8,
    },
    Approve {
        party: usize,
        name: usize,
        key_of: usize,
    },
    RemoveSession {
        party: usize,
        name: usize,
        device: usize,
    },
    SaveRestore {
        party: usize,
    },
}

/// A device index: mostly the valid device 1, sometimes 0 or 2.
fn device() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(1usize), 1 => Just(0usize), 1 => Just(2usize)]
}

fn op() -> impl Strategy<Value = Op> {
    let party = 0..3usize;
    prop_oneof![
        1 => (party.clone(), 0..3u32).prop_map(|(party, count)| Op::Prekeys { party, count }),
        1 => party.clone().prop_map(|party| Op::SignedPrekey { party }),
        1 => (party.clone(), any::<u32>()).prop_map(|(party, id)| Op::RemoveSignedPrekey { party, id }),
        3 => (party.clone(), party.clone(), any::<bool>(), device(),
              proptest::option::weighted(0.3, (0..4usize, 0..4usize, 0..3usize)))
            .prop_map(|(from, to, one_time, device, hostile)| Op::Bundle { from, to, one_time, device, hostile }),
        8 => (party.clone(), party.clone(), 0..200usize).prop_map(|(from, to, len)| Op::Send { from, to, len }),
        6 => (any::<usize>(), device(), 0..8u8).prop_map(|(index, device, tamper)| Op::Deliver { index, device, tamper }),
        1 => (party.clone(), 0..3usize, party.clone()).prop_map(|(party, name, key_of)| Op::Approve { party, name, key_of }),
        1 => (party.clone(), 0..3usize, device()).prop_map(|(party, name, device)| Op::RemoveSession { party, name, device }),
        2 => party.prop_map(|party| Op::SaveRestore { party }),
    ]
}

struct InFlight {
    from: usize,
    to: usize,
    message: CiphertextMessage,
}

/// Saves, restores and saves again: the bytes must be equal. Returns the
/// restored store.
fn round_trip(store: &ProtocolStore) -> ProtocolStore {
    let saved = store.save();
    let back = ProtocolStore::restore(&saved)
        .unwrap_or_else(|e| panic!("a store does not restore its own save: {e}"));
    assert_eq!(
        back.save(),
        saved,
        "save -> restore -> save changed the bytes"
    );
    back
}

fn run(ops: Vec<Op>) {
    let mut stores: Vec<ProtocolStore> = (0..3)
        .map(|_| ProtocolStore::generate(1, &mut OsRng).unwrap())
        .collect();
    let mut flight: Vec<InFlight> = Vec::new();
    for op in ops {
        match op {
            Op::Prekeys { party, count } => {
                let _ = stores[party].generate_prekeys(count, &mut OsRng);
            }
            Op::SignedPrekey { party } => {
                let _ = stores[party].generate_signed_prekey(1_000, &mut OsRng);
            }
            Op::RemoveSignedPrekey { party, id } => {
                let _ = stores[party].remove_signed_prekey(id % 4);
            }
            Op::Bundle {
                from,
                to,
                one_time,
                device,
                hostile,
            } => {
                let Ok(mut bundle) = stores[from].create_bundle(one_time, 1_000, &mut OsRng) else {
                    continue;
                };
                if let Some((spk, opk, dev)) = hostile {
                    // Public fields set directly, bypassing the constructor.
                    bundle.signed_pre_key_id = HOSTILE_IDS[spk];
                    if let Some((_, key)) = bundle.pre_key {
                        bundle.pre_key = Some((HOSTILE_IDS[opk], key));
                    }
                    bundle.device_id = DEVICES[dev];
                    bundle.registration_id = [0, 1, 16_380, u32::MAX][opk];
                }
                let address = Address::new(NAMES[from], DEVICES[device]);
                let _ = stores[to].process_bundle(&address, &bundle, &mut OsRng);
                // Round trip through bytes too (what a server would carry).
                if let Ok(b) = PreKeyBundle::deserialize(&bundle.serialize()) {
                    assert_eq!(b, bundle);
                }
            }
            Op::Send { from, to, len } => {
                let address = Address::new(NAMES[to], 1);
                if let Ok(message) = stores[from].encrypt(&address, &vec![7u8; len]) {
                    flight.push(InFlight { from, to, message });
                }
            }
            Op::Deliver {
                index,
                device,
                tamper,
            } => {
                if flight.is_empty() {
                    continue;
                }
                let m = &flight[index % flight.len()];
                let mut bytes = m.message.serialize().to_vec();
                match tamper {
                    0 => {
                        let at = index % bytes.len();
                        bytes[at] ^= 1 << (index % 8);
                    }
                    1 => bytes.truncate(index % bytes.len()),
                    _ => {}
                }
                let address = Address::new(NAMES[m.from], DEVICES[device]);
                let _ =
                    stores[m.to].decrypt(&address, m.message.message_type(), &bytes, &mut OsRng);
            }
            Op::Approve {
                party,
                name,
                key_of,
            } => {
                let key = *stores[key_of].identity_key();
                stores[party].approve_identity(NAMES[name], key);
            }
            Op::RemoveSession {
                party,
                name,
                device,
            } => {
                stores[party].remove_session(&Address::new(NAMES[name], DEVICES[device]));
            }
            Op::SaveRestore { party } => {
                stores[party] = round_trip(&stores[party]);
            }
        }
    }
    for store in &stores {
        round_trip(store);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn every_reachable_state_saves_and_restores(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

/// The two cases the review found, as plain regressions: a sender device
/// id of 0 on a decrypted message, and a bundle whose signed prekey id was
/// set to 0 through its public field.
#[test]
fn review_cases_save_and_restore() {
    use Op::*;
    run(vec![
        Bundle {
            from: 1,
            to: 0,
            one_time: true,
            device: 1,
            hostile: None,
        },
        Send {
            from: 0,
            to: 1,
            len: 5,
        },
        Deliver {
            index: 0,
            device: 0,
            tamper: 9,
        },
    ]);
    run(vec![Bundle {
        from: 1,
        to: 0,
        one_time: false,
        device: 1,
        hostile: Some((0, 1, 1)),
    }]);
}

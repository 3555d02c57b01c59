//! PQXDH (message version 4): sessions from bundles with a Kyber prekey,
//! one-time and last-resort Kyber prekeys, the version-3 policy, malformed
//! Kyber fields, and saved state of the previous format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod forge;

use common::{assert_fails_unchanged, initiated_pair, Party};
use rand::rngs::OsRng;
use ratchetkit::store::{BundleRequest, KyberPreKeyKind, SessionPolicy};
use ratchetkit::wire::KyberPayload;
use ratchetkit::{Address, Error, ErrorKind, PreKeyBundle, PreKeySignalMessage, ProtocolStore};

fn bundle(
    store: &mut ProtocolStore,
    one_time_prekey: bool,
    kyber: KyberPreKeyKind,
) -> PreKeyBundle {
    store
        .create_bundle_with(
            BundleRequest {
                one_time_prekey,
                kyber,
                timestamp: 1_000,
            },
            &mut OsRng,
        )
        .unwrap()
}

fn version(store: &ProtocolStore, addr: &Address) -> u8 {
    store.session(addr).unwrap().current().unwrap().version()
}

/// `m` (a prekey message) with its Kyber fields replaced by `kyber`.
fn with_kyber(m: &PreKeySignalMessage, kyber: Option<&KyberPayload>) -> Vec<u8> {
    forge::prekey_message(
        kyber,
        m.registration_id(),
        m.pre_key_id(),
        m.signed_pre_key_id(),
        m.base_key(),
        m.identity_key(),
        m.message().serialize(),
    )
}

/// A default bundle starts a version-4 session: 0x44 on the wire, the Kyber
/// fields repeated in every prekey message until the first reply, whisper
/// messages after.
#[test]
fn default_bundles_start_version_4_sessions() {
    let (mut alice, mut bob, b) = initiated_pair();
    assert!(b.kyber_pre_key.is_some());
    assert_eq!(
        b.serialize()[0],
        2,
        "a bundle with a Kyber prekey is format 2"
    );
    assert_eq!(version(&alice.store, &bob.addr), 4);
    let sent: Vec<_> = (0..3).map(|i| alice.send(&bob, &[i; 10])).collect();
    let parsed: Vec<_> = sent
        .iter()
        .map(|m| PreKeySignalMessage::deserialize(m.serialize()).unwrap())
        .collect();
    for p in &parsed {
        assert_eq!(p.serialize()[0], 0x44);
        assert_eq!(p.message().serialize()[0], 0x44);
        assert_eq!(p.version(), 4);
        assert_eq!(p.kyber(), parsed[0].kyber());
        assert_eq!(p.kyber().unwrap().ciphertext.len(), 1569);
        assert_eq!(
            p.kyber().unwrap().pre_key_id,
            b.kyber_pre_key.as_ref().unwrap().id
        );
    }
    // Out of order, all three decrypt; the one-time keys are used up once.
    let kyber_before = bob.store.kyber_prekey_count();
    for (i, m) in sent.iter().enumerate().rev() {
        assert_eq!(bob.recv(&alice, m).unwrap(), [i as u8; 10]);
    }
    assert_eq!(bob.store.kyber_prekey_count(), kyber_before - 1);
    assert_eq!(version(&bob.store, &alice.addr), 4);
    let r = bob.send(&alice, b"reply");
    assert_eq!(r.message_type(), 2);
    assert_eq!(r.serialize()[0], 0x44);
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"reply");
    let w = alice.send(&bob, b"whisper now");
    assert_eq!(w.message_type(), 2);
    assert_eq!(bob.recv(&alice, &w).unwrap(), b"whisper now");
}

/// A one-time Kyber prekey serves one session: a second initiator naming
/// it (with no one-time EC prekey, so that only the Kyber key matters)
/// gets a missing prekey, and Bob's store is unchanged.
#[test]
fn a_one_time_kyber_prekey_is_consumed() {
    let mut bob = Party::new("bob");
    let b = bundle(&mut bob.store, false, KyberPreKeyKind::OneTime);
    let kyber_id = b.kyber_pre_key.as_ref().unwrap().id;
    let mut alice = Party::new("alice");
    let mut carol = Party::new("carol");
    for p in [&mut alice, &mut carol] {
        p.store.process_bundle(&bob.addr, &b, &mut OsRng).unwrap();
    }
    let m = alice.send(&bob, b"first");
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"first");
    assert!(bob.store.kyber_prekey(kyber_id).is_none());
    let c = carol.send(&bob, b"second user of the key");
    let from = carol.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&from, 3, c.serialize(), &mut OsRng)
    });
    assert_eq!(err, Error::MissingKyberPreKey(kyber_id));
    assert_eq!(err.kind(), ErrorKind::MissingPreKey);
}

/// The last-resort Kyber prekey serves several initiators; a second session
/// from the same base key (Alice's message replayed under another name,
/// where no session exists to recognise it) is refused.
#[test]
fn the_last_resort_kyber_prekey_serves_many_and_refuses_a_repeat() {
    let mut bob = Party::new("bob");
    let mut initiators: Vec<Party> = ["alice", "carol", "dave"].map(Party::new).into();
    for p in &mut initiators {
        let b = bundle(&mut bob.store, false, KyberPreKeyKind::LastResort);
        p.store.process_bundle(&bob.addr, &b, &mut OsRng).unwrap();
    }
    let last_resort = bob.store.last_resort_kyber_prekey_id().unwrap();
    let mut first = None;
    for p in &mut initiators {
        let name = p.addr.name.clone();
        let m = p.send(&bob, name.as_bytes());
        assert_eq!(bob.recv(p, &m).unwrap(), name.as_bytes());
        first.get_or_insert(m);
        let r = bob.send(p, b"hi");
        assert_eq!(p.recv(&bob, &r).unwrap(), b"hi");
    }
    assert!(
        bob.store.kyber_prekey(last_resort).is_some(),
        "kept after use"
    );
    // The replay under another name: a faithful X3DH, refused by the record.
    let replay = first.unwrap();
    let mallory = Address::new("mallory", 1);
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&mallory, 3, replay.serialize(), &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert!(!bob.store.has_session(&mallory));
    // Under its own name it is a duplicate, as always.
    let a = initiators[0].addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&a, 3, replay.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::DuplicateMessage { .. }), "{err}");
    // Rotating the last-resort key forgets its uses.
    bob.store
        .generate_last_resort_kyber_prekey(2_000, &mut OsRng)
        .unwrap();
    bob.store.remove_kyber_prekey(last_resort).unwrap();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&mallory, 3, replay.serialize(), &mut OsRng)
    });
    assert_eq!(err, Error::MissingKyberPreKey(last_resort));
}

/// A version-4 prekey message without both Kyber fields is refused, and so
/// is a version-3 one with them; nothing changes, and the genuine message
/// decrypts afterwards.
#[test]
fn missing_or_stray_kyber_fields_are_refused() {
    let (mut alice, mut bob, _) = initiated_pair();
    let m = alice.send(&bob, b"genuine");
    let pm = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    let k = pm.kyber().unwrap().clone();
    let a = alice.addr.clone();
    // Neither field.
    let none = with_kyber(&pm, None);
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &none, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    // Only the id: the genuine bytes without field 8 (the ciphertext, last:
    // a one-byte tag, a two-byte length, 1569 bytes).
    let full = pm.serialize();
    let only_id = &full[..full.len() - (1 + 2 + 1569)];
    assert_eq!(with_kyber(&pm, Some(&k)), full);
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, only_id, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    // A ciphertext of the wrong length, or of another KEM type.
    let mut short = k.clone();
    short.ciphertext.pop();
    let mut mlkem = k.clone();
    mlkem.ciphertext[0] = 0x0a;
    for (bad, kind) in [
        (short, ErrorKind::InvalidMessage),
        (mlkem, ErrorKind::InvalidKey),
    ] {
        let bytes = with_kyber(&pm, Some(&bad));
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &bytes, &mut OsRng));
        assert_eq!(err.kind(), kind, "{err}");
    }
    // A tampered ciphertext decapsulates to another secret: the MAC fails.
    let mut flipped = k.clone();
    flipped.ciphertext[700] ^= 1;
    let bytes = with_kyber(&pm, Some(&flipped));
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &bytes, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"genuine");
}

/// The version-3 policy: refused both ways by default with their own error;
/// allowed when set; and an existing version-3 session keeps working after
/// the policy refuses version 3 again.
#[test]
fn the_version_3_policy() {
    let mut alice = Party::new("alice");
    let mut bob = Party::new("bob");
    let v3 = bundle(&mut bob.store, true, KyberPreKeyKind::None);
    assert_eq!(v3.serialize()[0], 1, "a bundle without Kyber is format 1");
    let b = bob.addr.clone();
    let err = assert_fails_unchanged(&mut alice.store, |s| s.process_bundle(&b, &v3, &mut OsRng));
    assert!(matches!(err, Error::VersionRefused(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    alice.store.set_policy(SessionPolicy {
        allow_v3_initiation: true,
        accept_v3_prekey_messages: false,
    });
    alice.store.process_bundle(&b, &v3, &mut OsRng).unwrap();
    assert_eq!(version(&alice.store, &bob.addr), 3);
    let m = alice.send(&bob, b"version 3");
    assert_eq!(m.serialize()[0], 0x33);
    let a = alice.addr.clone();
    // Kyber fields on a version-3 prekey message are refused as malformed.
    let stray = KyberPayload {
        pre_key_id: 1,
        ciphertext: [vec![0x08], vec![7; 1568]].concat(),
    };
    let pm = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    let bytes = with_kyber(&pm, Some(&stray));
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &bytes, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&a, 3, m.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::VersionRefused(_)), "{err}");
    let prekeys = bob.store.prekey_count();
    bob.store.set_policy(SessionPolicy {
        allow_v3_initiation: false,
        accept_v3_prekey_messages: true,
    });
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"version 3");
    assert_eq!(bob.store.prekey_count(), prekeys - 1);
    assert_eq!(version(&bob.store, &alice.addr), 3);
    // Refusing version 3 again: the existing session goes on, prekey
    // messages from its base key included.
    bob.store.set_policy(SessionPolicy::default());
    let again = alice.send(&bob, b"still a prekey message");
    assert_eq!(again.message_type(), 3);
    assert_eq!(bob.recv(&alice, &again).unwrap(), b"still a prekey message");
    let r = bob.send(&alice, b"reply");
    assert_eq!(r.serialize()[0], 0x33);
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"reply");
    // The policy is kept in saved state.
    let back = ProtocolStore::restore(&alice.store.save()).unwrap();
    assert!(back.policy().allow_v3_initiation);
}

/// A message of the other version than its session is refused.
#[test]
fn a_message_of_another_version_than_its_session_is_refused() {
    let (mut alice, mut bob) = common::established_pair();
    let w = alice.send(&bob, b"v4");
    let mut bytes = w.serialize().to_vec();
    bytes[0] = 0x33;
    let a = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &bytes, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(bob.recv(&alice, &w).unwrap(), b"v4");
}

/// Saved state: Kyber prekeys, last-resort uses, pending Kyber ciphertexts
/// and session versions survive save and restore, byte for byte.
#[test]
fn pqxdh_state_saves_and_restores() {
    let mut bob = Party::new("bob");
    bob.store.generate_kyber_prekeys(3, 5, &mut OsRng).unwrap();
    let b = bundle(&mut bob.store, false, KyberPreKeyKind::LastResort);
    let mut alice = Party::new("alice");
    alice
        .store
        .process_bundle(&bob.addr, &b, &mut OsRng)
        .unwrap();
    let m = alice.send(&bob, b"pending");
    // Alice's pending Kyber ciphertext survives a restart.
    let alice_saved = alice.store.save();
    assert_eq!(alice_saved[4], 2, "format version 2");
    alice.store = ProtocolStore::restore(&alice_saved).unwrap();
    assert_eq!(alice.store.save(), alice_saved);
    let again = alice.send(&bob, b"pending too");
    assert_eq!(
        PreKeySignalMessage::deserialize(again.serialize())
            .unwrap()
            .kyber(),
        PreKeySignalMessage::deserialize(m.serialize())
            .unwrap()
            .kyber()
    );
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"pending");
    let bob_saved = bob.store.save();
    bob.store = ProtocolStore::restore(&bob_saved).unwrap();
    assert_eq!(bob.store.save(), bob_saved);
    assert_eq!(bob.store.kyber_prekey_count(), 3);
    // The last-resort use is remembered across the restart.
    let mallory = Address::new("mallory", 1);
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&mallory, 3, m.serialize(), &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert_eq!(bob.recv(&alice, &again).unwrap(), b"pending too");
}

/// Saves of the previous format (version 1, written before PQXDH by the
/// released code; committed fixture) restore with the default policy, and
/// their version-3 sessions go on: a message skipped before the upgrade and
/// one in flight across it decrypt, and both sides keep talking.
#[test]
fn format_1_saves_restore_and_their_sessions_go_on() {
    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/store_v1.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let bytes = |k: &str| hex::decode(fixture[k].as_str().unwrap()).unwrap();
    let alice_v1 = bytes("alice");
    assert_eq!(alice_v1[4], 1);
    let mut alice = Party {
        store: ProtocolStore::restore(&alice_v1).unwrap(),
        addr: Address::new("alice", 1),
    };
    let mut bob = Party {
        store: ProtocolStore::restore(&bytes("bob")).unwrap(),
        addr: Address::new("bob", 1),
    };
    assert_eq!(bob.store.policy(), SessionPolicy::default());
    assert_eq!(version(&bob.store, &alice.addr), 3);
    let a = alice.addr.clone();
    for (m, pt) in [
        ("in_flight", "in_flight_plaintext"),
        ("skipped", "skipped_plaintext"),
    ] {
        assert_eq!(
            bob.store.decrypt(&a, 2, &bytes(m), &mut OsRng).unwrap(),
            bytes(pt)
        );
    }
    let r = bob.send(&alice, b"after the upgrade");
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"after the upgrade");
    // Saved again in format 2, and that restores to the same bytes.
    let saved = bob.store.save();
    assert_eq!(saved[4], 2);
    assert_eq!(ProtocolStore::restore(&saved).unwrap().save(), saved);
    // A format-1 header on format-2 content is refused.
    alice
        .store
        .generate_last_resort_kyber_prekey(1, &mut OsRng)
        .unwrap();
    let mut mixed = alice.store.save();
    mixed[4] = 1;
    assert!(matches!(
        ProtocolStore::restore(&mixed),
        Err(Error::CorruptState(_))
    ));
}

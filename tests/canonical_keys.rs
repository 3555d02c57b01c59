//! Non-canonical public keys (bit 255 set, or u >= p) are refused wherever
//! a remote key enters: X25519 cannot tell such an alias from its canonical
//! key, so accepting one would let a replayed prekey message pass the "a
//! session from this base key already exists" byte comparison (issue 14,
//! item 1: the responder decrypted the replay a second time and made a
//! fresh copy of the session current, breaking the conversation).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod forge;

use common::{assert_fails_unchanged, established_pair, Party};
use forge::non_canonical_low_order_points;
use rand::rngs::OsRng;
use ratchetkit::{
    Address, Error, ErrorKind, PreKeyBundle, PreKeySignalMessage, PublicKey, SignalMessage,
};

/// The u-coordinate of `key` with bit 255 set: the same X25519 key.
fn alias(key: &PublicKey) -> [u8; 32] {
    let mut u = *key.u_coordinate();
    u[31] |= 0x80;
    u
}

/// `m` (a prekey message) with its base key replaced by its bit-255 alias.
fn with_aliased_base_key(m: &PreKeySignalMessage) -> Vec<u8> {
    let bytes = forge::prekey_message(
        m.kyber(),
        m.registration_id(),
        m.pre_key_id(),
        m.signed_pre_key_id(),
        &alias(m.base_key()),
        m.identity_key(),
        m.message().serialize(),
    );
    // The forger changes nothing else.
    let genuine = forge::prekey_message(
        m.kyber(),
        m.registration_id(),
        m.pre_key_id(),
        m.signed_pre_key_id(),
        m.base_key(),
        m.identity_key(),
        m.message().serialize(),
    );
    assert_eq!(genuine, m.serialize());
    bytes
}

/// A prekey message sent without a one-time prekey, replayed with its base
/// key's top bit flipped, is refused; the conversation goes on both ways.
#[test]
fn replay_through_an_aliased_base_key_is_refused() {
    let mut alice = Party::new("alice");
    let mut bob = Party::new("bob");
    let bundle = bob.store.create_bundle(false, 0, &mut OsRng).unwrap();
    alice
        .store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    let m = alice.send(&bob, b"once");
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"once");
    let pm = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    let replay = with_aliased_base_key(&pm);
    let a = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &replay, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    // The plain replay is a duplicate, and Bob's session is still the one
    // Alice holds: his reply decrypts.
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&a, 3, m.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::DuplicateMessage { .. }), "{err}");
    let r = bob.send(&alice, b"reply");
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"reply");
    let w = alice.send(&bob, b"and on");
    assert_eq!(bob.recv(&alice, &w).unwrap(), b"and on");
}

/// With a one-time prekey, an aliased copy delivered first is refused and
/// the genuine message still decrypts (and consumes the prekey once).
#[test]
fn aliased_copy_delivered_first_does_not_spoil_the_genuine_message() {
    let (mut alice, mut bob, _) = common::initiated_pair();
    let m = alice.send(&bob, b"first");
    let pm = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    assert!(pm.pre_key_id().is_some());
    let forged = with_aliased_base_key(&pm);
    let a = alice.addr.clone();
    let prekeys = bob.store.prekey_count();
    assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &forged, &mut OsRng));
    assert_eq!(bob.store.prekey_count(), prekeys);
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"first");
    assert_eq!(bob.store.prekey_count(), prekeys - 1);
    let r = bob.send(&alice, b"reply");
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"reply");
}

/// Aliased identity keys in prekey messages and aliased ratchet keys in
/// whisper messages are refused before any key agreement.
#[test]
fn aliased_identity_and_ratchet_keys_are_refused() {
    let (mut alice, mut bob, _) = common::initiated_pair();
    let m = alice.send(&bob, b"first");
    let pm = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    let forged = forge::prekey_message(
        pm.kyber(),
        pm.registration_id(),
        pm.pre_key_id(),
        pm.signed_pre_key_id(),
        pm.base_key(),
        &alias(pm.identity_key()),
        pm.message().serialize(),
    );
    let a = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &forged, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"first");

    let (mut alice, mut bob) = established_pair();
    let w = alice.send(&bob, b"next");
    let sm = SignalMessage::deserialize(w.serialize()).unwrap();
    let a = alice.addr.clone();
    for u in std::iter::once(alias(sm.ratchet_key())).chain(non_canonical_low_order_points()) {
        let forged = forge::signal_message(
            &u,
            sm.counter(),
            sm.previous_counter(),
            sm.ciphertext(),
            forge::mac_of(sm.serialize()),
        );
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &forged, &mut OsRng));
        assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    }
    assert_eq!(bob.recv(&alice, &w).unwrap(), b"next");
}

/// Bundles: every key field refuses an alias when the bytes are parsed.
#[test]
fn aliased_keys_in_bundle_bytes_are_refused() {
    let mut bob = Party::new("bob");
    let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    let bytes = bundle.serialize();
    assert_eq!(PreKeyBundle::deserialize(&bytes).unwrap(), bundle);
    let keys = [
        bundle.identity_key,
        bundle.signed_pre_key,
        bundle.pre_key.unwrap().1,
    ];
    for key in keys {
        let at = bytes
            .windows(33)
            .position(|w| w == key.serialize())
            .expect("key in the bundle bytes");
        let mut bad = bytes.clone();
        bad[at + 32] |= 0x80;
        let err = PreKeyBundle::deserialize(&bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidKey, "{err}");
    }
    // And every non-canonical low-order encoding, as a raw key.
    for u in non_canonical_low_order_points() {
        assert_eq!(PublicKey::from_u_coordinate(u), Err(Error::NonCanonicalKey));
        let mut s = vec![0x05];
        s.extend_from_slice(&u);
        assert_eq!(PublicKey::deserialize(&s), Err(Error::NonCanonicalKey));
    }
    let _ = Address::new("unused", 1);
}

/// `key` plus the small-order point `EIGHT_TORSION[k]`: canonical bytes,
/// but the same X25519 results under every clamped scalar.
fn torsion_alias(key: &PublicKey, k: usize) -> [u8; 32] {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let e = MontgomeryPoint(*key.u_coordinate()).to_edwards(0).unwrap();
    (e + EIGHT_TORSION[k]).to_montgomery().to_bytes()
}

/// The same replay through a base key plus a point of small order (found
/// by review after the bit-255 fix): the alias is canonical, so only a
/// prime-order-subgroup check catches it. Refused for every torsion point,
/// in version 4 (last-resort Kyber prekey) and version 3, with and without a
/// one-time prekey; nothing changes and the conversation goes on.
#[test]
fn replay_through_a_torsion_alias_of_the_base_key_is_refused() {
    use ratchetkit::store::KyberPreKeyKind;
    for (kyber, one_time_prekey) in [
        (KyberPreKeyKind::LastResort, false),
        (KyberPreKeyKind::LastResort, true),
        (KyberPreKeyKind::None, false),
        (KyberPreKeyKind::None, true),
    ] {
        let (mut alice, mut bob) = common::pair_with(one_time_prekey, kyber, true);
        let m = alice.send(&bob, b"once");
        let pm = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
        let a = alice.addr.clone();
        for k in 1..8 {
            let alias = torsion_alias(pm.base_key(), k);
            assert!(PublicKey::from_u_coordinate(alias).is_ok(), "canonical");
            let forged = forge::prekey_message(
                pm.kyber(),
                pm.registration_id(),
                pm.pre_key_id(),
                pm.signed_pre_key_id(),
                &alias,
                pm.identity_key(),
                pm.message().serialize(),
            );
            // Each alias before the genuine message is delivered (it must
            // not spoil it) and after (it must not deliver the plaintext
            // again). Before, only the subgroup check can refuse it; after,
            // a used one-time prekey may refuse it first.
            for delivered in [false, true] {
                if delivered && k == 1 {
                    assert_eq!(bob.recv(&alice, &m).unwrap(), b"once");
                }
                let err = assert_fails_unchanged(&mut bob.store, |s| {
                    s.decrypt(&a, 3, &forged, &mut OsRng)
                });
                let genuine_seen = delivered || k > 1;
                assert!(
                    err.kind() == ErrorKind::InvalidMessage
                        || (genuine_seen && err.kind() == ErrorKind::MissingPreKey),
                    "{kyber:?} {k}: {err}"
                );
            }
        }
        let r = bob.send(&alice, b"reply");
        assert_eq!(alice.recv(&bob, &r).unwrap(), b"reply");
    }
}

/// A first message replayed under another address (another name, or
/// another device of the same name): refused whatever prekeys it used.
/// One-time prekeys (EC or Kyber) are gone after their first use; sessions
/// from prekeys that stay (a last-resort Kyber prekey, or in version 3 the
/// signed prekey alone) are recorded by base key, across addresses.
#[test]
fn a_first_message_replayed_under_another_address_is_refused() {
    use ratchetkit::store::KyberPreKeyKind;
    for (kyber, one_time_prekey) in [
        (KyberPreKeyKind::OneTime, false),
        (KyberPreKeyKind::LastResort, false),
        (KyberPreKeyKind::LastResort, true),
        (KyberPreKeyKind::None, false),
        (KyberPreKeyKind::None, true),
    ] {
        let (mut alice, mut bob) = common::pair_with(one_time_prekey, kyber, true);
        let m = alice.send(&bob, b"transfer 100");
        assert_eq!(bob.recv(&alice, &m).unwrap(), b"transfer 100");
        for other in [Address::new("alice", 2), Address::new("mallory", 1)] {
            let err = assert_fails_unchanged(&mut bob.store, |s| {
                s.decrypt(&other, 3, m.serialize(), &mut OsRng)
            });
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::InvalidMessage | ErrorKind::MissingPreKey
                ),
                "{kyber:?} {one_time_prekey}: {err}"
            );
            assert!(!bob.store.has_session(&other));
        }
    }
}

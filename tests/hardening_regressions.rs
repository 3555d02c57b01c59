//! Regression tests for problems found while hardening (fuzzing, review).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod forge;

use common::{assert_fails_unchanged, established_pair, Party};
use rand::rngs::OsRng;
use ratchetkit::store::KyberPreKeyKind;
use ratchetkit::{Error, ErrorKind, KeyPair, PreKeySignalMessage};

/// A message that only an archived state with a no-longer-trusted identity
/// can decrypt is `UntrustedIdentity`, and the store is unchanged: after the
/// user approves a peer's new identity, the old identity's sessions cannot
/// deliver messages or become current again.
#[test]
fn archived_state_with_replaced_identity_does_not_decrypt() {
    let (mut alice, mut bob) = established_pair();
    let held = alice.send(&bob, b"from the old install");
    // Alice reinstalls: same name, new identity; Bob approves the new key.
    let mut alice2 = Party::new("alice");
    bob.store
        .approve_identity("alice", *alice2.store.identity_key());
    let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    alice2
        .store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    let p = alice2.send(&bob, b"new install");
    assert_eq!(bob.recv(&alice2, &p).unwrap(), b"new install");
    assert_eq!(bob.store.session(&alice.addr).unwrap().previous_count(), 1);
    let a = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&a, held.message_type(), held.serialize(), &mut OsRng)
    });
    assert_eq!(err, Error::UntrustedIdentity("alice".into()));
    // Bob still talks to the new install.
    let r = bob.send(&alice2, b"hi new");
    assert_eq!(alice2.recv(&bob, &r).unwrap(), b"hi new");
}

/// A prekey message re-wrapped by an attacker (its inner message genuine
/// and undelivered, its base key fresh, naming one of the receiver's
/// one-time prekeys) is rejected without change. Before the fix it
/// decrypted through the existing session while a useless new state was
/// archived and the named one-time prekey deleted.
#[test]
fn rewrapped_prekey_message_consumes_nothing() {
    // The Kyber prekey is the last-resort one, so that the re-wrapped
    // message gets past it (a one-time Kyber prekey is gone after the first
    // message, which would refuse it earlier).
    let (mut alice, mut bob) = common::pair_with(true, KyberPreKeyKind::LastResort, false);
    let first = alice.send(&bob, b"first");
    assert_eq!(bob.recv(&alice, &first).unwrap(), b"first");
    // Bob has not answered: Alice's next message is a prekey message too.
    let held = alice.send(&bob, b"second");
    let held_pk = PreKeySignalMessage::deserialize(held.serialize()).unwrap();
    let spare = bob.store.generate_prekeys(2, &mut OsRng).unwrap();
    let rewrapped = forge::prekey_message(
        held_pk.kyber(),
        held_pk.registration_id(),
        Some(spare[0].0),
        held_pk.signed_pre_key_id(),
        &KeyPair::generate(&mut OsRng).public_key,
        held_pk.identity_key(),
        held_pk.message().serialize(),
    );
    let a = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &rewrapped, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    assert_eq!(bob.store.prekey_count(), 2);
    assert_eq!(bob.store.session(&a).unwrap().previous_count(), 0);
    // The genuine message still decrypts.
    assert_eq!(bob.recv(&alice, &held).unwrap(), b"second");
}

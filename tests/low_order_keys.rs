//! Low-order and non-contributory keys: a Diffie-Hellman result of all
//! zeros is `Error::NonContributoryKey`, wherever the key comes from (a
//! bundle, a prekey message, a ratchet key in a whisper message), and the
//! store is unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

// The Double Ratchet's own limits and checks: sessions without SPQR
// (common::Party::without_spqr); SPQR's are in the SPQR tests.
mod common;
mod forge;

use common::{assert_fails_unchanged, dr_established_pair, dr_initiated_pair, Party};
use forge::low_order_points;
use rand::rngs::OsRng;
use ratchetkit::kem::KemKeyPair;
use ratchetkit::{
    Address, Error, IdentityKeyPair, KeyPair, PreKeyBundle, PreKeySignalMessage, PrivateKey,
    PublicKey, SignalMessage,
};

#[test]
fn every_low_order_encoding_is_non_contributory() {
    assert_eq!(low_order_points().len(), 5);
    for _ in 0..8 {
        let k = PrivateKey::generate(&mut OsRng);
        for u in low_order_points() {
            assert_eq!(
                k.agree(&PublicKey::from_u_coordinate(u).unwrap())
                    .unwrap_err(),
                Error::NonContributoryKey,
                "u = {}",
                hex::encode(u)
            );
        }
    }
    // A contributory key next to them still agrees.
    let a = KeyPair::generate(&mut OsRng);
    let b = KeyPair::generate(&mut OsRng);
    assert_eq!(
        *a.private_key.agree(&b.public_key).unwrap(),
        *b.private_key.agree(&a.public_key).unwrap()
    );
}

/// A bundle whose signed prekey is `spk`, correctly signed by a real
/// identity, with an optional one-time prekey.
fn signed_bundle(spk: PublicKey, opk: Option<PublicKey>) -> PreKeyBundle {
    let id = IdentityKeyPair::generate(&mut OsRng);
    let sig = id.private_key().sign(&spk.serialize(), &mut OsRng);
    let kyber = KemKeyPair::generate(&mut OsRng).public_key;
    let kyber_sig = id.private_key().sign(&kyber.serialize(), &mut OsRng);
    PreKeyBundle::new(7, 1, *id.public_key(), 1, spk, &sig, opk.map(|k| (2, k)))
        .unwrap()
        .with_kyber_pre_key(3, kyber, &kyber_sig)
        .unwrap()
}

#[test]
fn x3dh_initiator_rejects_low_order_bundle_keys() {
    let (mut alice, bob) = dr_established_pair();
    let mallory = Address::new("mallory", 1);
    let good = KeyPair::generate(&mut OsRng).public_key;
    for u in low_order_points() {
        let low = PublicKey::from_u_coordinate(u).unwrap();
        // Low-order signed prekey (the signature over it is valid).
        let b = signed_bundle(low, None);
        assert!(b.verify_signature());
        let err = assert_fails_unchanged(&mut alice.store, |s| {
            s.process_bundle(&mallory, &b, &mut OsRng)
        });
        assert_eq!(err, Error::NonContributoryKey);
        // Low-order one-time prekey (it is not signed).
        let b = signed_bundle(good, Some(low));
        let err = assert_fails_unchanged(&mut alice.store, |s| {
            s.process_bundle(&mallory, &b, &mut OsRng)
        });
        assert_eq!(err, Error::NonContributoryKey);
        // Also for an address that already has a session: it stays current.
        let err = assert_fails_unchanged(&mut alice.store, |s| {
            s.process_bundle(&bob.addr, &b, &mut OsRng)
        });
        assert!(matches!(
            err,
            Error::NonContributoryKey | Error::UntrustedIdentity(_)
        ));
    }
    assert!(!alice.store.has_session(&mallory));
    assert!(alice.store.trusted_identity("mallory").is_none());
}

/// A forged XEdDSA signature under a low-order identity key: the Edwards
/// point A of u = 0 has order 2, so `s = r` with `R = r·B` satisfies the
/// verification equation `s·B - h·A = R` whenever the challenge hash h is
/// even. Verification refuses small-order keys before the equation (the
/// forgery verified before that check), and the bundle is refused as badly
/// signed.
#[test]
fn xeddsa_refuses_a_forgery_under_a_low_order_identity() {
    use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
    use curve25519_dalek::montgomery::MontgomeryPoint;
    use curve25519_dalek::scalar::Scalar;
    use rand::RngCore;
    use sha2::{Digest, Sha512};

    let identity = PublicKey::from_u_coordinate([0u8; 32]).unwrap();
    let a_point = MontgomeryPoint([0u8; 32]).to_edwards(0).unwrap();
    let spk = KeyPair::generate(&mut OsRng).public_key;
    let message = spk.serialize();
    let mut forged = None;
    for _ in 0..256 {
        let mut wide = [0u8; 64];
        OsRng.fill_bytes(&mut wide);
        let r = Scalar::from_bytes_mod_order_wide(&wide);
        let cap_r = (ED25519_BASEPOINT_TABLE * &r).compress();
        let h = Scalar::from_hash(
            Sha512::new()
                .chain_update(cap_r.as_bytes())
                .chain_update(a_point.compress().as_bytes())
                .chain_update(message),
        );
        // The verification equation holds: a genuine forgery.
        if (ED25519_BASEPOINT_TABLE * &r - h * a_point).compress() == cap_r {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(cap_r.as_bytes());
            sig[32..].copy_from_slice(r.as_bytes());
            forged = Some(sig);
            break;
        }
    }
    let sig = forged.expect("the equation holds about every other try");
    assert!(!identity.verify_signature(&message, &sig));
    let kyber = KemKeyPair::generate(&mut OsRng).public_key;
    let bundle = PreKeyBundle::new(7, 1, identity, 1, spk, &sig, None)
        .unwrap()
        .with_kyber_pre_key(3, kyber, &[0u8; 64])
        .unwrap();
    assert!(!bundle.verify_signature());
    let mut alice = Party::without_spqr("alice");
    let mallory = Address::new("mallory", 1);
    let err = assert_fails_unchanged(&mut alice.store, |s| {
        s.process_bundle(&mallory, &bundle, &mut OsRng)
    });
    assert!(matches!(err, Error::InvalidSignature(_)), "{err:?}");
}

#[test]
fn x3dh_responder_rejects_low_order_base_and_identity_keys() {
    let (mut alice, mut bob, _) = dr_initiated_pair();
    let real = alice.send(&bob, b"first");
    let real = PreKeySignalMessage::deserialize(real.serialize()).unwrap();
    // The encoder reproduces the real message exactly.
    assert_eq!(
        forge::prekey_message(
            real.kyber(),
            real.registration_id(),
            real.pre_key_id(),
            real.signed_pre_key_id(),
            real.base_key(),
            real.identity_key(),
            real.message().serialize(),
        ),
        real.serialize()
    );
    let a = alice.addr.clone();
    for u in low_order_points() {
        let low = PublicKey::from_u_coordinate(u).unwrap();
        for (base, identity) in [(low, *real.identity_key()), (*real.base_key(), low)] {
            let bytes = forge::prekey_message(
                real.kyber(),
                real.registration_id(),
                real.pre_key_id(),
                real.signed_pre_key_id(),
                &base,
                &identity,
                real.message().serialize(),
            );
            // A fresh name, so the trust check does not decide first.
            let who = Address::new(format!("m{}", hex::encode(&u[..4])), 1);
            for addr in [&a, &who] {
                let err = assert_fails_unchanged(&mut bob.store, |s| {
                    s.decrypt(addr, 3, &bytes, &mut OsRng)
                });
                if addr == &who || identity == *real.identity_key() {
                    assert_eq!(err, Error::NonContributoryKey, "{}", hex::encode(u));
                }
            }
        }
    }
    // The one-time prekey was not consumed: the real message still works.
    assert_eq!(bob.store.prekey_count(), 1);
    let pt = bob
        .store
        .decrypt(&a, 3, real.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(pt, b"first");
    assert_eq!(bob.store.prekey_count(), 0);
}

#[test]
fn ratchet_step_rejects_low_order_ratchet_key() {
    let (mut alice, mut bob) = dr_established_pair();
    // Alice's next message starts a new chain for Bob (a DH turn).
    let m = alice.send(&bob, b"new chain");
    let real = SignalMessage::deserialize(m.serialize()).unwrap();
    assert_eq!(
        forge::signal_message(
            real.ratchet_key(),
            real.counter(),
            real.previous_counter(),
            real.ciphertext(),
            forge::mac_of(real.serialize()),
        ),
        real.serialize()
    );
    let a = alice.addr.clone();
    for u in low_order_points() {
        let bytes = forge::signal_message(
            &u,
            real.counter(),
            real.previous_counter(),
            real.ciphertext(),
            forge::mac_of(real.serialize()),
        );
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &bytes, &mut OsRng));
        assert_eq!(err, Error::NonContributoryKey, "{}", hex::encode(u));
    }
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"new chain");
}

//! The store's SPQR policy: required by default, offered (falls back to
//! none), off; kept in saved state and in the durable store; a required
//! store refuses a peer without SPQR with `Error::SpqrRequired` and stays
//! unchanged; sessions without SPQR keep working after an upgrade.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_fails_unchanged, Party};
use rand::rngs::OsRng;
use ratchetkit::spqr::SpqrPolicy;
use ratchetkit::{DurableOptions, DurableStore, Error, ErrorKind};

/// Alice (policy `a`) starts a session with Bob (policy `b`).
fn pair(a: SpqrPolicy, b: SpqrPolicy) -> (Party, Party) {
    let mut alice = Party::new("alice");
    let mut bob = Party::new("bob");
    alice.store.set_spqr_policy(a);
    bob.store.set_spqr_policy(b);
    let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    alice
        .store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    (alice, bob)
}

/// `n` rounds of one message each way; every one decrypts.
fn talk(alice: &mut Party, bob: &mut Party, n: usize) {
    for i in 0..n {
        let m = alice.send(bob, format!("a{i}").as_bytes());
        assert_eq!(bob.recv(alice, &m).unwrap(), format!("a{i}").as_bytes());
        let r = bob.send(alice, format!("b{i}").as_bytes());
        assert_eq!(alice.recv(bob, &r).unwrap(), format!("b{i}").as_bytes());
    }
}

#[test]
fn a_new_store_requires_spqr_and_both_sides_speak_it() {
    let (mut alice, mut bob) = pair(SpqrPolicy::default(), SpqrPolicy::default());
    assert_eq!(alice.store.spqr_policy(), SpqrPolicy::Required);
    assert_eq!(alice.store.session_has_spqr(&bob.addr), Some(true));
    assert_eq!(alice.store.session_spqr_epoch(&bob.addr), Some(1));
    assert_eq!(alice.store.session_has_spqr(&Party::new("x").addr), None);
    talk(&mut alice, &mut bob, 120);
    assert_eq!(bob.store.session_has_spqr(&alice.addr), Some(true));
    let epoch = alice.store.session_spqr_epoch(&bob.addr).unwrap();
    assert!(
        epoch >= 3,
        "the SPQR epoch stays at {epoch} after 120 rounds"
    );
    assert_eq!(bob.store.session_spqr_epoch(&alice.addr), Some(epoch));
}

#[test]
fn required_refuses_a_prekey_message_without_spqr_unchanged() {
    let (mut alice, mut bob) = pair(SpqrPolicy::Off, SpqrPolicy::Required);
    assert_eq!(alice.store.session_has_spqr(&bob.addr), Some(false));
    let m = alice.send(&bob, b"no spqr");
    let from = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&from, m.message_type(), m.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::SpqrRequired(_)), "{err}");
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert!(!bob.store.has_session(&alice.addr));
    // The same message is read once Bob offers SPQR (falling back to none).
    bob.store.set_spqr_policy(SpqrPolicy::Offered);
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"no spqr");
    assert_eq!(bob.store.session_has_spqr(&alice.addr), Some(false));
    talk(&mut alice, &mut bob, 3);
}

/// A peer without SPQR cannot read a required store's salted messages;
/// its own prekey messages are refused by the required store; an offered
/// store falls back to none on the peer's reply and keeps working.
#[test]
fn peers_without_spqr_against_required_and_offered() {
    let (mut alice, mut bob) = pair(SpqrPolicy::Offered, SpqrPolicy::Off);
    let m = alice.send(&bob, b"offered");
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"offered");
    let r = bob.send(&alice, b"no spqr");
    let (mut carol, mut dave) = pair(SpqrPolicy::Required, SpqrPolicy::Off);
    let c = carol.send(&dave, b"salted");
    let err = dave.recv(&carol, &c).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidMessage, "{err}");
    // Dave cannot read it; neither can Carol read an unsalted answer.
    dave.store.set_spqr_policy(SpqrPolicy::Off);
    let bundle = carol.store.create_bundle(true, 0, &mut OsRng).unwrap();
    dave.store
        .process_bundle(&carol.addr, &bundle, &mut OsRng)
        .unwrap();
    let d = dave.send(&carol, b"no spqr");
    let from = dave.addr.clone();
    let err = assert_fails_unchanged(&mut carol.store, |s| {
        s.decrypt(&from, d.message_type(), d.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::SpqrRequired(_)), "{err}");
    // The offered session falls back on Bob's reply and keeps working.
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"no spqr");
    assert_eq!(alice.store.session_has_spqr(&bob.addr), Some(false));
    assert_eq!(alice.store.session_spqr_epoch(&bob.addr), None);
    talk(&mut alice, &mut bob, 5);
}

#[test]
fn offered_meets_required_and_speaks_spqr() {
    for (a, b) in [
        (SpqrPolicy::Offered, SpqrPolicy::Required),
        (SpqrPolicy::Required, SpqrPolicy::Offered),
        (SpqrPolicy::Offered, SpqrPolicy::Offered),
    ] {
        let (mut alice, mut bob) = pair(a, b);
        talk(&mut alice, &mut bob, 80);
        assert_eq!(alice.store.session_has_spqr(&bob.addr), Some(true));
        assert_eq!(bob.store.session_has_spqr(&alice.addr), Some(true));
        assert!(alice.store.session_spqr_epoch(&bob.addr).unwrap() >= 2);
    }
}

#[test]
fn the_policy_is_saved_and_restored() {
    for policy in [SpqrPolicy::Required, SpqrPolicy::Offered, SpqrPolicy::Off] {
        let mut p = Party::new("p");
        p.store.set_spqr_policy(policy);
        let restored = ratchetkit::ProtocolStore::restore(&p.store.save()).unwrap();
        assert_eq!(restored.spqr_policy(), policy);
    }
}

/// Saved bytes of the previous release (no policy field: field 17 of the
/// store message is new) restore as required, and their sessions, which
/// have no SPQR, keep working both ways; new sessions then speak SPQR.
#[test]
fn saves_without_the_policy_restore_as_required_and_old_sessions_go_on() {
    let (mut alice, mut bob) = pair(SpqrPolicy::Off, SpqrPolicy::Off);
    talk(&mut alice, &mut bob, 2);
    let mut saved = bob.store.save();
    // Off is written as field 17 (tag 0x88 0x01), value 2, the last field:
    // without it, the bytes are what the previous release wrote.
    assert_eq!(&saved[saved.len() - 3..], &[0x88, 0x01, 0x02]);
    saved.truncate(saved.len() - 3);
    bob.store = ratchetkit::ProtocolStore::restore(&saved).unwrap();
    assert_eq!(bob.store.spqr_policy(), SpqrPolicy::Required);
    assert_eq!(bob.store.session_has_spqr(&alice.addr), Some(false));
    talk(&mut alice, &mut bob, 3);
    // An unknown policy number is corrupt state.
    saved.extend_from_slice(&[0x88, 0x01, 0x03]);
    assert!(matches!(
        ratchetkit::ProtocolStore::restore(&saved),
        Err(Error::CorruptState(_))
    ));
}

#[test]
fn the_durable_store_keeps_the_policy_and_shows_spqr() {
    let db = common::TempDb::new("rk-spqr");
    let key = [7u8; 32];
    let open = || DurableStore::open(&db.0, &key, &DurableOptions::default()).unwrap();
    let store = open();
    assert_eq!(store.spqr_policy().unwrap(), SpqrPolicy::Required);
    store.set_spqr_policy(SpqrPolicy::Offered).unwrap();
    drop(store);
    let store = open();
    assert_eq!(store.spqr_policy().unwrap(), SpqrPolicy::Offered);
    store.set_spqr_policy(SpqrPolicy::Required).unwrap();
    let mut bob = Party::new("bob");
    let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    assert_eq!(store.session_has_spqr(&bob.addr).unwrap(), Some(true));
    assert_eq!(store.session_spqr_epoch(&bob.addr).unwrap(), Some(1));
    let alice = ratchetkit::Address::new("alice", 1);
    for i in 0..60u32 {
        let m = store.encrypt(&bob.addr, &i.to_le_bytes()).unwrap();
        assert_eq!(
            bob.store
                .decrypt(&alice, m.message_type(), m.serialize(), &mut OsRng)
                .unwrap(),
            i.to_le_bytes()
        );
        let r = bob.store.encrypt(&alice, &i.to_be_bytes()).unwrap();
        assert_eq!(
            store
                .decrypt(&bob.addr, r.message_type(), r.serialize(), &mut OsRng)
                .unwrap(),
            i.to_be_bytes()
        );
    }
    let epoch = store.session_spqr_epoch(&bob.addr).unwrap().unwrap();
    assert!(epoch >= 2, "epoch {epoch}");
    drop(store);
    let store = open();
    assert_eq!(store.session_spqr_epoch(&bob.addr).unwrap(), Some(epoch));
}

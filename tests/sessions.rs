//! Session behaviour through the store, and the all-or-nothing rule: every
//! failing operation leaves the store's saved bytes exactly as they were.

mod common;

use common::{assert_fails_unchanged, established_pair, initiated_pair, Party};
use rand::rngs::OsRng;
use ratchetkit::{Address, Error, ErrorKind, PreKeyBundle, ProtocolStore};

#[test]
fn prekey_messages_until_answered_then_whisper() {
    let (mut alice, mut bob, _) = initiated_pair();
    let m1 = alice.send(&bob, b"one");
    let m2 = alice.send(&bob, b"two");
    assert_eq!((m1.message_type(), m2.message_type()), (3, 3));
    // Delivered in reverse: both use the one session (same base key).
    assert_eq!(bob.recv(&alice, &m2).unwrap(), b"two");
    assert_eq!(bob.recv(&alice, &m1).unwrap(), b"one");
    assert_eq!(bob.store.session(&alice.addr).unwrap().previous_count(), 0);
    let r = bob.send(&alice, b"reply");
    assert_eq!(r.message_type(), 2);
    alice.recv(&bob, &r).unwrap();
    assert_eq!(alice.send(&bob, b"three").message_type(), 2);
}

#[test]
fn one_time_prekey_is_consumed_only_after_successful_decrypt() {
    let mut alice = Party::new("alice");
    let mut bob = Party::new("bob");
    let bundle = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    assert_eq!(bob.store.prekey_count(), 1);
    alice
        .store
        .process_bundle(&bob.addr, &bundle, &mut OsRng)
        .unwrap();
    let m = alice.send(&bob, b"first");
    let mut tampered = m.serialize().to_vec();
    // Flip a bit in the inner SignalMessage's MAC (fields are in tag order,
    // so the inner message is not at the end).
    let inner = ratchetkit::PreKeySignalMessage::deserialize(&tampered)
        .unwrap()
        .message()
        .serialize()
        .to_vec();
    let at = tampered
        .windows(inner.len())
        .position(|w| w == inner)
        .unwrap();
    tampered[at + inner.len() - 1] ^= 1;
    let addr = alice.addr.clone();
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&addr, 3, &tampered, &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::InvalidMessage);
    assert_eq!(bob.store.prekey_count(), 1);
    assert!(!bob.store.has_session(&alice.addr));
    assert!(bob.store.trusted_identity("alice").is_none());
    assert_eq!(bob.recv(&alice, &m).unwrap(), b"first");
    assert_eq!(bob.store.prekey_count(), 0);
    // A second delivery is a duplicate, not a missing prekey.
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&addr, 3, m.serialize(), &mut OsRng)
    });
    assert!(matches!(err, Error::DuplicateMessage { .. }), "{err}");
}

#[test]
fn failures_leave_the_store_unchanged() {
    let (mut alice, mut bob) = established_pair();
    let a = alice.addr.clone();
    let m = alice.send(&bob, b"payload that is long enough");
    let bytes = m.serialize().to_vec();

    // Tampering anywhere in a whisper message.
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x04;
        let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &t, &mut OsRng));
        assert!(
            matches!(
                err.kind(),
                ErrorKind::InvalidMessage | ErrorKind::InvalidKey
            ),
            "byte {i}: {err}"
        );
    }
    // Truncations and garbage.
    for n in 0..bytes.len() {
        assert_fails_unchanged(&mut bob.store, |s| {
            s.decrypt(&a, 2, &bytes[..n], &mut OsRng)
        });
        assert_fails_unchanged(&mut bob.store, |s| {
            s.decrypt(&a, 3, &bytes[..n], &mut OsRng)
        });
    }
    assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 9, &bytes, &mut OsRng));
    // Wrong message type for the bytes.
    assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 3, &bytes, &mut OsRng));
    // Unknown sender.
    let nobody = Address::new("nobody", 1);
    let err = assert_fails_unchanged(&mut bob.store, |s| {
        s.decrypt(&nobody, 2, &bytes, &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::NoSession);
    let err = assert_fails_unchanged(&mut bob.store, |s| s.encrypt(&nobody, b"x"));
    assert_eq!(err.kind(), ErrorKind::NoSession);
    // The genuine message still decrypts, then is a duplicate.
    assert_eq!(
        bob.recv(&alice, &m).unwrap(),
        b"payload that is long enough"
    );
    let err = assert_fails_unchanged(&mut bob.store, |s| s.decrypt(&a, 2, &bytes, &mut OsRng));
    assert_eq!(err.kind(), ErrorKind::DuplicateMessage);
    // And the session keeps working both ways.
    let r = bob.send(&alice, b"still here");
    assert_eq!(alice.recv(&bob, &r).unwrap(), b"still here");
}

#[test]
fn bad_bundles_are_rejected_without_change() {
    let mut alice = Party::new("alice");
    let mut bob = Party::new("bob");
    let good = bob.store.create_bundle(true, 0, &mut OsRng).unwrap();
    let b_addr = bob.addr.clone();

    let mut bad_sig = good.clone();
    bad_sig.signed_pre_key_signature[5] ^= 1;
    let err = assert_fails_unchanged(&mut alice.store, |s| {
        s.process_bundle(&b_addr, &bad_sig, &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::InvalidSignature);

    // A signature by another identity.
    let mallory = Party::new("mallory");
    let mut wrong = good.clone();
    wrong.identity_key = *mallory.store.identity_key();
    let err = assert_fails_unchanged(&mut alice.store, |s| {
        s.process_bundle(&b_addr, &wrong, &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::InvalidSignature);

    // Serialized bundles: every truncation and bad version fails cleanly.
    let bytes = good.serialize();
    assert_eq!(PreKeyBundle::deserialize(&bytes).unwrap(), good);
    assert!(PreKeyBundle::deserialize(&bytes[..10]).is_err());

    alice
        .store
        .process_bundle(&b_addr, &good, &mut OsRng)
        .unwrap();
    assert!(alice.store.has_session(&b_addr));
}

#[test]
fn identity_change_is_untrusted_until_approved() {
    let (mut alice, _bob) = established_pair();
    // Bob reinstalls: a new identity under the same name.
    let mut bob2 = Party::new("bob");
    let bundle = bob2.store.create_bundle(true, 0, &mut OsRng).unwrap();
    let b_addr = bob2.addr.clone();
    let err = assert_fails_unchanged(&mut alice.store, |s| {
        s.process_bundle(&b_addr, &bundle, &mut OsRng)
    });
    assert_eq!(err, Error::UntrustedIdentity("bob".into()));

    // New Bob initiates instead: his prekey message is untrusted too.
    let a_bundle = alice.store.create_bundle(true, 0, &mut OsRng).unwrap();
    bob2.store
        .process_bundle(&alice.addr, &a_bundle, &mut OsRng)
        .unwrap();
    let m = bob2.send(&alice, b"it's me, new phone");
    let err = assert_fails_unchanged(&mut alice.store, |s| {
        s.decrypt(&b_addr, 3, m.serialize(), &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::UntrustedIdentity);

    // Encrypting on the old session is fine until the key is approved...
    alice.store.encrypt(&b_addr, b"to old bob").unwrap();
    assert!(alice
        .store
        .approve_identity("bob", *bob2.store.identity_key()));
    // ...and untrusted after (the session's identity is no longer trusted).
    let err = assert_fails_unchanged(&mut alice.store, |s| s.encrypt(&b_addr, b"x"));
    assert_eq!(err.kind(), ErrorKind::UntrustedIdentity);

    let pt = alice
        .store
        .decrypt(&b_addr, 3, m.serialize(), &mut OsRng)
        .unwrap();
    assert_eq!(pt, b"it's me, new phone");
    let r = alice.send(&bob2, b"welcome back");
    assert_eq!(bob2.recv(&alice, &r).unwrap(), b"welcome back");
}

#[test]
fn missing_prekeys_are_typed_errors() {
    let (mut alice, mut bob, bundle) = initiated_pair();
    let m = alice.send(&bob, b"x");
    // Bob restored from before the prekey existed: it does not hold it.
    let mut fresh_bob = Party::new("bob");
    let a = alice.addr.clone();
    let err = assert_fails_unchanged(&mut fresh_bob.store, |s| {
        s.decrypt(&a, 3, m.serialize(), &mut OsRng)
    });
    assert_eq!(err.kind(), ErrorKind::MissingPreKey);
    // Bob with the signed prekey but not the one-time prekey.
    let mut bob_without_opk = ProtocolStore::restore(&bob.store.save()).unwrap();
    let opk = bundle.pre_key.unwrap().0;
    bob.recv(&alice, &m).unwrap(); // the real Bob consumes it
    let mut second = ProtocolStore::restore(&bob.store.save()).unwrap();
    // `second` no longer holds the one-time prekey, and has no session from
    // this base key under another name.
    let other = Address::new("alice-2", 1);
    let err = assert_fails_unchanged(&mut second, |s| {
        s.decrypt(&other, 3, m.serialize(), &mut OsRng)
    });
    assert_eq!(err, Error::MissingPreKey(opk));
    // The copy from before still has it.
    assert_eq!(
        bob_without_opk
            .decrypt(&a, 3, m.serialize(), &mut OsRng)
            .unwrap(),
        b"x"
    );
}

#[test]
fn safety_number_needs_a_trusted_identity() {
    let (alice, bob) = established_pair();
    assert!(matches!(
        alice.store.safety_number("nobody", b"a", b"b", 5200, 2),
        Err(Error::NoTrustedIdentity(_))
    ));
    let a = alice
        .store
        .safety_number("bob", b"alice", b"bob", 5200, 1)
        .unwrap();
    let b = bob
        .store
        .safety_number("alice", b"bob", b"alice", 5200, 1)
        .unwrap();
    assert_eq!(a.displayable(), b.displayable());
    assert_eq!(a.displayable().len(), 60);
    assert!(a.displayable().bytes().all(|c| c.is_ascii_digit()));
    assert!(a.compare_scannable(&b.scannable()).unwrap());
    assert!(alice.store.safety_number("bob", b"a", b"b", 1, 2).is_err());
    assert!(alice
        .store
        .safety_number("bob", b"a", b"b", 5200, 3)
        .is_err());
}

#[test]
fn save_restore_mid_conversation_with_messages_in_flight() {
    let (mut alice, mut bob) = established_pair();
    let to_bob: Vec<_> = (0..5)
        .map(|i| alice.send(&bob, format!("a{i}").as_bytes()))
        .collect();
    let to_alice: Vec<_> = (0..5)
        .map(|i| bob.send(&alice, format!("b{i}").as_bytes()))
        .collect();
    alice.store = ProtocolStore::restore(&alice.store.save()).unwrap();
    bob.store = ProtocolStore::restore(&bob.store.save()).unwrap();
    // Saving twice gives identical bytes (a stable, deterministic encoding).
    assert_eq!(
        alice.store.save(),
        ProtocolStore::restore(&alice.store.save()).unwrap().save()
    );
    for (i, m) in to_bob.iter().enumerate().rev() {
        assert_eq!(bob.recv(&alice, m).unwrap(), format!("a{i}").as_bytes());
    }
    for (i, m) in to_alice.iter().enumerate() {
        assert_eq!(alice.recv(&bob, m).unwrap(), format!("b{i}").as_bytes());
    }
}

#[test]
fn corrupt_saved_state_is_an_error() {
    let (alice, _bob) = established_pair();
    let saved = alice.store.save();
    assert!(ProtocolStore::restore(&saved).is_ok());
    assert!(matches!(
        ProtocolStore::restore(b""),
        Err(Error::CorruptState(_))
    ));
    assert!(matches!(
        ProtocolStore::restore(b"RKST"),
        Err(Error::CorruptState(_))
    ));
    let mut v = saved.clone();
    v[4] = 9;
    assert_eq!(
        ProtocolStore::restore(&v).unwrap_err(),
        Error::UnsupportedStateVersion(9)
    );
    // Every truncation fails or (when cut between whole records) restores a
    // valid store; it never panics.
    let mut errors = 0;
    for n in 0..saved.len() {
        if ProtocolStore::restore(&saved[..n]).is_err() {
            errors += 1;
        }
    }
    assert!(errors > saved.len() / 2);
    // Every single-bit flip either fails with a typed error or restores.
    for i in 5..saved.len() {
        let mut v = saved.clone();
        v[i] ^= 0x80;
        if let Err(e) = ProtocolStore::restore(&v) {
            assert!(matches!(e.kind(), ErrorKind::CorruptState), "{e}");
        }
    }
}

//! Secret-holding types zeroize on drop (checked at compile time through
//! the `ZeroizeOnDrop` marker), and their `Debug` output leaks nothing (the
//! private key bytes of a whole store, in any form `Debug` prints bytes,
//! appear in no `Debug` output). SECURITY.md lists these types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::established_pair;
use rand::rngs::OsRng;
use ratchetkit::ratchet::{ChainKey, MessageKeySeed, MessageKeys, RootKey};
use ratchetkit::{IdentityKeyPair, KeyPair, PrivateKey};
use zeroize::ZeroizeOnDrop;

fn zeroizes_on_drop<T: ZeroizeOnDrop>() {}

#[test]
fn secret_types_zeroize_on_drop() {
    zeroizes_on_drop::<PrivateKey>();
    zeroizes_on_drop::<RootKey>();
    zeroizes_on_drop::<ChainKey>();
    zeroizes_on_drop::<MessageKeySeed>();
    zeroizes_on_drop::<MessageKeys>();
    // The cipher states built per message and per save.
    zeroizes_on_drop::<aes::Aes256>();
    zeroizes_on_drop::<cbc::Encryptor<aes::Aes256>>();
    zeroizes_on_drop::<cbc::Decryptor<aes::Aes256>>();
    zeroizes_on_drop::<chacha20poly1305::XChaCha20Poly1305>();
    zeroizes_on_drop::<zeroize::Zeroizing<Vec<u8>>>();
}

/// The forms in which `Debug` could print 32 secret bytes.
fn forms(bytes: &[u8]) -> Vec<String> {
    vec![
        hex::encode(bytes),
        hex::encode_upper(bytes),
        format!("{bytes:?}"),
        format!("{bytes:#?}"),
        // A run of the first eight bytes as `Debug` lists them.
        format!("{:?}", &bytes[..8])
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    ]
}

#[test]
fn debug_output_holds_no_secret_bytes() {
    let (alice, mut bob) = established_pair();
    bob.store.generate_prekeys(3, &mut OsRng).unwrap();
    let id = bob.store.identity().private_key().serialize();
    let pair = KeyPair::generate(&mut OsRng);
    let pk = pair.private_key.serialize();
    let identity = IdentityKeyPair::generate(&mut OsRng);
    let ik = identity.private_key().serialize();
    let outputs = [
        format!("{:?}", bob.store),
        format!("{:#?}", bob.store),
        format!("{:?}", bob.store.session(&alice.addr)),
        format!("{pair:?} {pair:#?}"),
        format!("{identity:?} {identity:#?}"),
    ];
    for out in &outputs {
        assert!(out.contains("redacted"), "{out}");
        for secret in [&id[..], &pk[..], &ik[..]] {
            for form in forms(secret) {
                assert!(!out.contains(&form), "Debug output contains {form}");
            }
        }
    }
    // The saved store holds the identity key (that is what it is for)...
    let saved = bob.store.save();
    assert!(saved.windows(32).any(|w| w == &id[..]));
    // ...and its encrypted form does not.
    let sealed = bob.store.save_encrypted(&[9u8; 32], &mut OsRng).unwrap();
    assert!(!sealed.windows(32).any(|w| w == &id[..]));
}

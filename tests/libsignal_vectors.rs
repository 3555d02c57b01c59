//! Known-answer tests captured once from the official library
//! (@signalapp/libsignal-client 0.72.1, tests/interop/libsignal-peer/make-fixtures.js).

#![allow(clippy::unwrap_used)]

use ratchetkit::{Fingerprint, PrivateKey, PublicKey};
use serde_json::Value;

fn fixtures() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/libsignal_fixtures.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// Our safety number for one fixture case (one side's view).
fn fingerprint_of(c: &Value) -> Fingerprint {
    Fingerprint::new(
        c["version"].as_u64().unwrap() as u32,
        c["iterations"].as_u64().unwrap() as u32,
        &hex(&c["local_id"]),
        &PublicKey::deserialize(&hex(&c["local_identity_key"])).unwrap(),
        &hex(&c["remote_id"]),
        &PublicKey::deserialize(&hex(&c["remote_identity_key"])).unwrap(),
    )
    .unwrap()
}

#[test]
fn private_keys_clamp_and_derive_public_keys_like_libsignal() {
    let f = fixtures();
    let keys = f["keys"].as_array().unwrap();
    assert!(keys.len() >= 4);
    for k in keys {
        let private = PrivateKey::deserialize(&hex(&k["private_key"])).unwrap();
        assert_eq!(private.serialize().to_vec(), hex(&k["private_key_clamped"]));
        assert_eq!(
            private.public_key().serialize().to_vec(),
            hex(&k["public_key"]),
            "{}",
            k["name"]
        );
    }
}

#[test]
fn safety_numbers_match_libsignal() {
    let f = fixtures();
    let cases = f["fingerprints"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for c in cases {
        let fp = fingerprint_of(c);
        let name = format!("{} / {}", c["case"], c["view"]);
        assert_eq!(
            fp.displayable(),
            c["displayable"].as_str().unwrap(),
            "{name}"
        );
        assert_eq!(fp.scannable(), hex(&c["scannable"]), "{name}");
    }
    // Each side's scannable form matches the other side's view.
    for pair in cases.chunks(2) {
        let (a, b) = (fingerprint_of(&pair[0]), fingerprint_of(&pair[1]));
        assert_eq!(pair[0]["case"], pair[1]["case"]);
        assert!(a.compare_scannable(&hex(&pair[1]["scannable"])).unwrap());
        assert!(b.compare_scannable(&hex(&pair[0]["scannable"])).unwrap());
        // Our own form is not the other side's.
        assert!(!a.compare_scannable(&hex(&pair[0]["scannable"])).unwrap());
    }
}

#[test]
fn fingerprint_version_mismatch_is_its_own_error() {
    let f = fixtures();
    let cases = f["fingerprints"].as_array().unwrap();
    let v1 = cases.iter().find(|c| c["version"] == 1).unwrap();
    let v2 = cases.iter().find(|c| c["version"] == 2).unwrap();
    let fp = Fingerprint::new(
        2,
        5200,
        &hex(&v2["local_id"]),
        &PublicKey::deserialize(&hex(&v2["local_identity_key"])).unwrap(),
        &hex(&v2["remote_id"]),
        &PublicKey::deserialize(&hex(&v2["remote_identity_key"])).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        fp.compare_scannable(&hex(&v1["scannable"])),
        Err(ratchetkit::Error::FingerprintVersionMismatch { ours: 2, theirs: 1 })
    ));
    assert!(fp.compare_scannable(b"\xff\xff").is_err());
}

#[test]
fn libsignal_xeddsa_signatures_verify_under_ours() {
    let f = fixtures();
    let cases = f["xeddsa"].as_array().unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for c in cases {
        let key = PublicKey::deserialize(&hex(&c["public_key"])).unwrap();
        let ok = key.verify_signature(&hex(&c["message"]), &hex(&c["signature"]));
        assert_eq!(ok, c["valid"].as_bool().unwrap(), "{}", c["label"]);
        if ok {
            valid += 1;
        } else {
            invalid += 1;
        }
    }
    assert!(valid >= 5 && invalid >= 5);
}

#[test]
fn our_signatures_verify_for_fixture_keys() {
    // The same private keys libsignal signed with: ours sign, ours verify,
    // and the public keys are libsignal's (checked above).
    let f = fixtures();
    for k in f["keys"].as_array().unwrap() {
        let private = PrivateKey::deserialize(&hex(&k["private_key"])).unwrap();
        let public = PublicKey::deserialize(&hex(&k["public_key"])).unwrap();
        let sig = private.sign(b"signed prekey", &mut rand::rngs::OsRng);
        assert!(public.verify_signature(b"signed prekey", &sig));
    }
}

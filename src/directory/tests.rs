//! The prekey lifecycle and the key server's formats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use serde_json::{json, Value};

use super::*;
use crate::store::Address;

const DAY: u64 = 24 * 3600 * 1000;

/// The bundle answer the reference server builds from `upload`, claiming
/// one-time keys `i` (or serving the last-resort key when `i` is None).
fn server_bundle(name: &str, upload: &Value, i: Option<usize>) -> Value {
    let (prekey, kyber, last_resort) = match i {
        Some(i) => (
            upload["prekeys"][i].clone(),
            upload["kyber_prekeys"][i].clone(),
            false,
        ),
        None => (
            Value::Null,
            upload["last_resort_kyber_prekey"].clone(),
            true,
        ),
    };
    json!({
        "version": 1,
        "name": name,
        "device_id": 1,
        "registration_id": upload["registration_id"],
        "identity_key": upload["identity_key"],
        "signed_prekey": upload["signed_prekey"],
        "prekey": prekey,
        "kyber_prekey": kyber,
        "kyber_last_resort": last_resort,
    })
}

#[test]
fn upload_fetch_and_talk_through_the_server_format() {
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let upload = bob.prepare_upload(5, 1_000, &mut OsRng).unwrap();
    assert_eq!(upload.prekeys.len(), 5);
    assert_eq!(upload.kyber_prekeys.len(), 5);
    assert_eq!(bob.prekey_count(), 5);
    assert_eq!(bob.kyber_prekey_count(), 5);
    let text = upload.to_json();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value["version"], 1);
    assert_eq!(
        STANDARD
            .decode(value["identity_key"].as_str().unwrap())
            .unwrap(),
        bob.identity_key().serialize()
    );
    // Every signature verifies under the identity, as the server checks.
    let identity = *bob.identity_key();
    let verify = |k: &Value| {
        let key = STANDARD.decode(k["public_key"].as_str().unwrap()).unwrap();
        let sig = STANDARD.decode(k["signature"].as_str().unwrap()).unwrap();
        assert!(identity.verify_signature(&key, &sig));
    };
    verify(&value["signed_prekey"]);
    verify(&value["last_resort_kyber_prekey"]);
    value["kyber_prekeys"]
        .as_array()
        .unwrap()
        .iter()
        .for_each(verify);

    // One bundle, then all devices of a name; the last-resort fallback.
    for (n, answer) in [
        server_bundle("bob", &value, Some(2)),
        json!({"devices": [server_bundle("bob", &value, Some(3))]}),
        server_bundle("bob", &value, None),
    ]
    .iter()
    .enumerate()
    {
        let bundles = parse_bundles(answer.to_string().as_bytes()).unwrap();
        assert_eq!(bundles.len(), 1);
        let b = &bundles[0];
        assert_eq!(b.name, "bob");
        assert_eq!(b.kyber_last_resort, n == 2);
        assert_eq!(b.bundle.pre_key.is_none(), n == 2);
        let address = Address::new(format!("bob-{n}"), 1);
        alice
            .process_bundle(&address, &b.bundle, &mut OsRng)
            .unwrap();
        assert_eq!(alice.session_version(&address), Some(4));
        let m = alice.encrypt(&address, b"hello bob").unwrap();
        let from = Address::new(format!("alice-{n}"), 1);
        let plain = bob
            .decrypt(&from, m.message_type(), m.serialize(), &mut OsRng)
            .unwrap();
        assert_eq!(plain, b"hello bob");
    }
    // Two one-time key pairs were used; the last-resort key stays.
    assert_eq!(bob.prekey_count(), 3);
    assert_eq!(bob.kyber_prekey_count(), 3);
    assert_eq!(
        bob.last_resort_kyber_prekey_id(),
        Some(upload.last_resort_kyber_prekey.id)
    );
}

#[test]
fn malformed_answers_are_refused() {
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let value: Value =
        serde_json::from_str(&bob.prepare_upload(1, 0, &mut OsRng).unwrap().to_json()).unwrap();
    let good = server_bundle("bob", &value, Some(0));
    assert!(parse_bundles(good.to_string().as_bytes()).is_ok());
    let mut cases: Vec<Value> = Vec::new();
    for field in ["identity_key", "signed_prekey", "kyber_prekey", "device_id"] {
        let mut v = good.clone();
        v.as_object_mut().unwrap().remove(field);
        cases.push(v);
    }
    let mut v = good.clone();
    v["identity_key"] = json!("not base64!");
    cases.push(v);
    let mut v = good.clone();
    v["signed_prekey"]["public_key"] = json!(STANDARD.encode([5u8; 32]));
    cases.push(v);
    let mut v = good.clone();
    v["kyber_prekey"]["signature"] = json!(STANDARD.encode([0u8; 63]));
    cases.push(v);
    let mut v = good.clone();
    v["version"] = json!(2);
    cases.push(v);
    let mut v = good.clone();
    v["device_id"] = json!(0);
    cases.push(v);
    cases.push(json!({"devices": vec![good.clone(); MAX_DEVICES_FOR_TEST + 1]}));
    cases.push(json!([]));
    for case in &cases {
        assert!(
            parse_bundles(case.to_string().as_bytes()).is_err(),
            "accepted {case}"
        );
    }
    assert!(parse_bundles(b"{").is_err());
    assert!(parse_bundles(&vec![b' '; json::MAX_BUNDLES_JSON_LEN + 1]).is_err());
    // A bundle whose signature is wrong parses, but is not processed.
    let mut v = good.clone();
    v["signed_prekey"]["signature"] = json!(STANDARD.encode([7u8; 64]));
    let forged = parse_bundles(v.to_string().as_bytes()).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    assert!(alice
        .process_bundle(&Address::new("bob", 1), &forged[0].bundle, &mut OsRng)
        .is_err());
}

const MAX_DEVICES_FOR_TEST: usize = json::MAX_DEVICES;

#[test]
fn refill_follows_the_count_and_the_threshold() {
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let policy = PreKeyPolicy {
        refill_below: 10,
        ..PreKeyPolicy::default()
    };
    let fresh = bob.prekey_status(0, None, &policy);
    assert!(fresh.refill && fresh.rotate);
    assert_eq!(fresh.signed_prekey_age_ms, None);
    bob.prepare_upload(12, 0, &mut OsRng).unwrap();
    let s = bob.prekey_status(DAY, None, &policy);
    assert!(!s.refill && !s.rotate);
    assert_eq!((s.prekeys_held, s.kyber_prekeys_held), (12, 12));
    assert_eq!(s.signed_prekey_age_ms, Some(DAY));
    // The server's count decides when given.
    assert!(bob.prekey_status(DAY, Some(9), &policy).refill);
    assert!(!bob.prekey_status(DAY, Some(10), &policy).refill);
    assert!(matches!(
        bob.prepare_upload(MAX_UPLOAD_BATCH + 1, 0, &mut OsRng),
        Err(Error::LimitExceeded(_))
    ));
    assert_eq!(bob.prekey_count(), 12);
    // A count of zero re-uploads the signed keys only, unchanged.
    let again = bob.prepare_upload(0, DAY, &mut OsRng).unwrap();
    assert!(again.prekeys.is_empty() && again.kyber_prekeys.is_empty());
}

#[test]
fn rotation_keeps_the_previous_keys_for_the_grace_period() {
    let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let policy = PreKeyPolicy {
        refill_below: 1,
        rotate_after_ms: 7 * DAY,
        grace_ms: 3 * DAY,
    };
    let first: Value =
        serde_json::from_str(&bob.prepare_upload(2, 0, &mut OsRng).unwrap().to_json()).unwrap();
    // A sender fetched a bundle before the rotation; its message arrives
    // after it.
    let fetched = parse_bundles(server_bundle("bob", &first, None).to_string().as_bytes())
        .unwrap()
        .remove(0);
    assert_eq!(
        bob.rotate_prekeys(6 * DAY, &policy, &mut OsRng).unwrap(),
        Rotation::default()
    );
    let r = bob.rotate_prekeys(7 * DAY, &policy, &mut OsRng).unwrap();
    assert_eq!(
        r,
        Rotation {
            rotated: true,
            removed: 0
        }
    );
    let second = bob.prepare_upload(0, 7 * DAY, &mut OsRng).unwrap();
    assert_ne!(second.signed_prekey.id, fetched.bundle.signed_pre_key_id);
    assert_eq!(bob.prekey_status(8 * DAY, None, &policy).expired, 0);
    let bob_address = Address::new("bob", 1);
    alice
        .process_bundle(&bob_address, &fetched.bundle, &mut OsRng)
        .unwrap();
    let m = alice.encrypt(&bob_address, b"in flight").unwrap();
    let alice_address = Address::new("alice", 1);
    assert_eq!(
        bob.decrypt(&alice_address, m.message_type(), m.serialize(), &mut OsRng)
            .unwrap(),
        b"in flight"
    );
    // Past the grace period the replaced keys go; a message from a bundle
    // that old no longer starts a session.
    assert_eq!(bob.prekey_status(10 * DAY, None, &policy).expired, 2);
    let r = bob.rotate_prekeys(10 * DAY, &policy, &mut OsRng).unwrap();
    assert_eq!(
        r,
        Rotation {
            rotated: false,
            removed: 2
        }
    );
    let mut carol = ProtocolStore::generate(1, &mut OsRng).unwrap();
    carol
        .process_bundle(&bob_address, &fetched.bundle, &mut OsRng)
        .unwrap();
    let m = carol.encrypt(&bob_address, b"too late").unwrap();
    assert!(bob
        .decrypt(
            &Address::new("carol", 1),
            m.message_type(),
            m.serialize(),
            &mut OsRng
        )
        .is_err());
    // The current keys are never removed.
    assert_eq!(
        bob.last_resort_kyber_prekey_id(),
        Some(second.last_resort_kyber_prekey.id)
    );
}

#[test]
fn signed_requests_verify_under_the_identity() {
    let bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
    let body = br#"{"x":1}"#;
    let request = AuthRequest {
        name: "bob",
        device_id: 1,
        method: "PUT",
        path: "/v1/keys/bob/1",
        body,
        timestamp: 1_700_000_000,
    };
    let header = sign_request(bob.identity(), &request, &mut OsRng).unwrap();
    let rest = header.strip_prefix("Ratchetkit ").unwrap();
    let fields: std::collections::BTreeMap<&str, &str> = rest
        .split(',')
        .map(|kv| kv.split_once('=').unwrap())
        .collect();
    assert_eq!(fields["name"], "bob");
    assert_eq!(fields["device"], "1");
    assert_eq!(fields["ts"], "1700000000");
    assert_eq!(fields["nonce"].len(), 32);
    let sig = STANDARD.decode(fields["sig"]).unwrap();
    let digest: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let message = format!(
        "{AUTH_CONTEXT}\nbob\n1\nPUT\n/v1/keys/bob/1\n{digest}\n1700000000\n{}",
        fields["nonce"]
    );
    assert!(bob
        .identity_key()
        .verify_signature(message.as_bytes(), &sig));
    assert_eq!(signed_message(&request, fields["nonce"]), message);
    // The requester's name and device id are covered.
    for other in [
        AuthRequest {
            name: "bobby",
            ..request
        },
        AuthRequest {
            device_id: 2,
            ..request
        },
    ] {
        let m = signed_message(&other, fields["nonce"]);
        assert!(!bob.identity_key().verify_signature(m.as_bytes(), &sig));
    }
    let other = header.clone();
    assert_ne!(
        sign_request(bob.identity(), &request, &mut OsRng).unwrap(),
        other
    );
    for bad in [
        AuthRequest {
            name: "a,b",
            ..request
        },
        AuthRequest {
            name: "",
            ..request
        },
        AuthRequest {
            method: "put",
            ..request
        },
        AuthRequest {
            path: "v1",
            ..request
        },
        AuthRequest {
            path: "/a b",
            ..request
        },
    ] {
        assert!(sign_request(bob.identity(), &bad, &mut OsRng).is_err());
    }
}

use sha2::Digest as _;

//! Known answers from the official library, version 4 (PQXDH): a responder
//! store rebuilt from the private keys of a 0.90.0 "Bob" (committed fixture
//! `tests/vectors/libsignal_v4_fixture.json`, recorded by
//! `tests/interop/libsignal-peer-090/make-v4-fixture.js`) decrypts the
//! prekey messages 0.90.0 sent to it, with a one-time and with the
//! last-resort Kyber prekey; and, given the reply ratchet key 0.90.0 drew,
//! its reply is byte for byte the official one, and the initiator's answer
//! after its DH turn decrypts. The store offers SPQR as 0.90.0 does; the
//! initiator (0.72.1) has none, so the session falls back to none.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use ratchetkit::kem::{KemKeyPair, KemSecretKey};
use ratchetkit::prekey::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use ratchetkit::{Address, IdentityKeyPair, KeyPair, PrivateKey, ProtocolStore, PublicKey};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/libsignal_v4_fixture.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).unwrap()
}

fn u32_of(v: &Value) -> u32 {
    u32::try_from(v.as_u64().expect("integer")).unwrap()
}

fn sig64(v: &Value) -> [u8; 64] {
    hex(v).try_into().unwrap()
}

/// Bob's store from the fixture's private keys; every derived public key
/// must be the one the official library published.
fn bob(f: &Value) -> ProtocolStore {
    let b = &f["bob"];
    let identity = IdentityKeyPair::from_private_key(
        PrivateKey::deserialize(&hex(&b["identity_private_key"])).unwrap(),
    );
    assert_eq!(
        identity.public_key().serialize().to_vec(),
        hex(&b["identity_public_key"])
    );
    let mut store = ProtocolStore::with_identity(
        identity,
        u32_of(&b["registration_id"]),
        u32_of(&b["device_id"]),
        &mut OsRng,
    )
    .unwrap();
    // As 0.90.0: SPQR offered, falling back to none with a peer without
    // it (the fixture's initiator is 0.72.1).
    store.set_spqr_policy(ratchetkit::spqr::SpqrPolicy::Offered);
    let spk = &b["signed_prekey"];
    let key_pair =
        KeyPair::from_private_key(PrivateKey::deserialize(&hex(&spk["private_key"])).unwrap());
    assert_eq!(
        key_pair.public_key.serialize().to_vec(),
        hex(&spk["public_key"])
    );
    store
        .add_signed_prekey(
            SignedPreKeyRecord {
                id: u32_of(&spk["id"]),
                key_pair,
                signature: sig64(&spk["signature"]),
                timestamp: spk["timestamp"].as_u64().unwrap(),
            },
            true,
        )
        .unwrap();
    for p in b["one_time_prekeys"].as_array().unwrap() {
        let key_pair =
            KeyPair::from_private_key(PrivateKey::deserialize(&hex(&p["private_key"])).unwrap());
        assert_eq!(
            key_pair.public_key.serialize().to_vec(),
            hex(&p["public_key"])
        );
        store
            .add_prekey(PreKeyRecord {
                id: u32_of(&p["id"]),
                key_pair,
            })
            .unwrap();
    }
    for k in b["kyber_prekeys"].as_array().unwrap() {
        let key_pair =
            KemKeyPair::from_secret_key(KemSecretKey::deserialize(&hex(&k["secret_key"])).unwrap())
                .unwrap();
        assert_eq!(key_pair.public_key.serialize(), hex(&k["public_key"]));
        store
            .add_kyber_prekey(KyberPreKeyRecord {
                id: u32_of(&k["id"]),
                key_pair,
                signature: sig64(&k["signature"]),
                timestamp: k["timestamp"].as_u64().unwrap(),
                last_resort: k["last_resort"].as_bool().unwrap(),
            })
            .unwrap();
    }
    store
}

#[test]
fn prekey_messages_from_0_90_decrypt() {
    let f = fixture();
    let mut bob = bob(&f);
    let alice_key = PublicKey::deserialize(&hex(&f["alice"]["identity_public_key"])).unwrap();
    for (i, conv) in f["conversations"].as_array().unwrap().iter().enumerate() {
        // One address per conversation: each is its own session.
        let from = Address::new(format!("alice-{i}"), 1);
        let kyber_id = u32_of(&conv["bundle"]["kyber_prekey_id"]);
        let last_resort = bob.kyber_prekey(kyber_id).unwrap().last_resort;
        // Out of order: last first.
        for m in conv["messages"].as_array().unwrap().iter().rev() {
            let body = hex(&m["body"]);
            assert_eq!(body[0], 0x44);
            let pt = bob
                .decrypt(&from, 3, &body, &mut OsRng)
                .unwrap_or_else(|e| panic!("{}: message {}: {e}", conv["name"], m["counter"]));
            assert_eq!(pt, hex(&m["plaintext"]), "{}", conv["name"]);
        }
        let state = bob.session(&from).unwrap();
        assert_eq!(state.current().unwrap().version(), 4);
        assert_eq!(*state.current().unwrap().remote_identity(), alice_key);
        // A one-time Kyber prekey is gone after use; the last resort stays.
        assert_eq!(
            bob.kyber_prekey(kyber_id).is_some(),
            last_resort,
            "{}",
            conv["name"]
        );
    }
}

/// An RNG that yields `first` once, then the OS's randomness.
struct Scripted {
    first: Option<Vec<u8>>,
}

impl RngCore for Scripted {
    fn next_u32(&mut self) -> u32 {
        OsRng.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        OsRng.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match self.first.take() {
            Some(bytes) => {
                assert_eq!(
                    bytes.len(),
                    dest.len(),
                    "scripted bytes of the wrong length"
                );
                dest.copy_from_slice(&bytes);
            }
            None => OsRng.fill_bytes(dest),
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for Scripted {}

#[test]
fn reply_is_byte_for_byte_the_official_one() {
    let f = fixture();
    let mut bob = bob(&f);
    let r = &f["reply_exchange"];
    let from = Address::new("alice-0.72.1", 1);
    let msgs = r["messages"].as_array().unwrap();
    // Decrypting Alice's first message turns the ratchet: Bob's new ratchet
    // key is drawn here; draw the one 0.90.0 drew.
    let mut rng = Scripted {
        first: Some(hex(&r["bob_reply_ratchet_private_key"])),
    };
    let pt = bob
        .decrypt(&from, 3, &hex(&msgs[0]["body"]), &mut rng)
        .unwrap();
    assert_eq!(pt, hex(&msgs[0]["plaintext"]));
    assert!(rng.first.is_none(), "the scripted key was used");
    let reply = bob.encrypt(&from, &hex(&msgs[1]["plaintext"])).unwrap();
    assert_eq!(reply.message_type(), 2);
    assert_eq!(
        hex::encode(reply.serialize()),
        msgs[1]["body"].as_str().unwrap(),
        "the reply differs from the official library's"
    );
    let pt = bob
        .decrypt(&from, 2, &hex(&msgs[2]["body"]), &mut OsRng)
        .unwrap();
    assert_eq!(pt, hex(&msgs[2]["plaintext"]));
}

//! SPQR known answers: the building blocks of SPQR.md Appendix A, and both
//! recorded sessions of `tests/vectors/spqr` (libsignal 0.101.0 ↔ 0.101.0,
//! and a 0.90.0 initiator with `min_version` V0 ↔ 0.101.0) replayed at the
//! SPQR layer with the recorded randomness: every `pq_ratchet` field byte
//! for byte, every SPQR message key, the message keys, MACs and plaintexts
//! they give, the SPQR state after every event, and every negative case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use ratchetkit::spqr::{
    DecapsulationKey, Direction, MessageKey, SpqrError, SpqrPolicy, SpqrRandom, SpqrState,
};
use serde_json::Value;
use sha2::Sha256;
use zeroize::Zeroizing;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/spqr/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).unwrap()
}

fn hex32(v: &Value) -> [u8; 32] {
    hex(v).try_into().unwrap()
}

/// Randomness recorded for one event.
#[derive(Default)]
struct Replay {
    dk: Option<Vec<u8>>,
    m: Option<Vec<u8>>,
}

impl SpqrRandom for Replay {
    fn decapsulation_key(&mut self) -> DecapsulationKey {
        DecapsulationKey::from_bytes(&self.dk.take().expect("a recorded keygen")).unwrap()
    }
    fn encapsulation_randomness(&mut self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.m.take().expect("a recorded m").try_into().unwrap())
    }
}

fn policy(min_version: &Value) -> SpqrPolicy {
    match min_version.as_u64().unwrap() {
        0 => SpqrPolicy::Offered,
        1 => SpqrPolicy::Required,
        v => panic!("min_version {v}"),
    }
}

/// The state after an event, against the recorded snapshot (SPQR part).
fn check_snapshot(state: &SpqrState, snap: &Value, what: &str) {
    let ours = state.snapshot();
    assert_eq!(ours.state, snap["state"].as_str(), "{what}: state");
    assert_eq!(ours.epoch, snap["epoch"].as_u64(), "{what}: epoch");
    assert_eq!(
        ours.negotiating,
        snap["negotiating"].as_bool().unwrap(),
        "{what}: negotiating"
    );
    let (r, m) = ours.auth.unwrap();
    assert_eq!(r, hex32(&snap["auth"]["root_key"]), "{what}: auth R");
    assert_eq!(m, hex32(&snap["auth"]["mac_key"]), "{what}: auth M");
    let chain = &snap["chain"];
    match ours.chain {
        None => assert!(chain.is_null(), "{what}: chain expected"),
        Some(c) => {
            assert_eq!(
                c.current_epoch,
                chain["current_epoch"].as_u64().unwrap(),
                "{what}"
            );
            assert_eq!(
                c.send_epoch,
                chain["send_epoch"].as_u64().unwrap(),
                "{what}"
            );
            assert_eq!(c.next_root, hex32(&chain["next_root"]), "{what}: next_root");
            let links = chain["links"].as_array().unwrap();
            assert_eq!(c.links.len(), links.len(), "{what}: retained epochs");
            for (k, ((send, recv), link)) in c.links.iter().zip(links).enumerate() {
                for (half, l) in [(send, &link["send"]), (recv, &link["recv"])] {
                    assert_eq!(
                        half.ctr,
                        l["ctr"].as_u64().unwrap() as u32,
                        "{what} link {k}"
                    );
                    let next = hex(&l["next"]);
                    assert_eq!(
                        half.next.map(|n| n.to_vec()).unwrap_or_default(),
                        next,
                        "{what} link {k}: next"
                    );
                    assert_eq!(
                        half.stored_keys as u64,
                        l["stored_keys"].as_u64().unwrap(),
                        "{what} link {k}: stored"
                    );
                }
            }
        }
    }
}

/// `HKDF(salt, seed, "WhisperMessageKeys", 80)`.
fn message_keys(salt: Option<&[u8; 32]>, seed: &[u8]) -> [u8; 80] {
    let mut okm = [0u8; 80];
    hkdf::Hkdf::<Sha256>::new(salt.map(|s| &s[..]), seed)
        .expand(b"WhisperMessageKeys", &mut okm)
        .unwrap();
    okm
}

/// Checks one message's keys, MAC and plaintext from its SPQR key.
fn check_message(session: &Value, derived: &Value, id: usize, key: Option<&MessageKey>) {
    let msg = &session["messages"][id];
    let d = &derived["messages"][id];
    assert_eq!(d["id"].as_u64().unwrap() as usize, id);
    match key {
        Some(k) => assert_eq!(**k, hex32(&d["spqr_message_key"]), "message {id}: SPQR key"),
        None => assert!(
            d["spqr_message_key"].is_null(),
            "message {id}: key expected"
        ),
    }
    let okm = message_keys(key.map(|k| &**k), &hex(&d["dr_message_seed"]));
    assert_eq!(
        okm[..32],
        hex(&d["cipher_key"])[..],
        "message {id}: cipher key"
    );
    assert_eq!(okm[32..64], hex(&d["mac_key"])[..], "message {id}: MAC key");
    assert_eq!(okm[64..], hex(&d["iv"])[..], "message {id}: IV");
    let keys = &session["keys"];
    let (sender, receiver) = match msg["from"].as_str().unwrap() {
        "A" => (&keys["alice"], &keys["bob"]),
        _ => (&keys["bob"], &keys["alice"]),
    };
    let sm = hex(&msg["signal_message"]);
    let (body, mac) = sm.split_at(sm.len() - 8);
    let mut h = <Hmac<Sha256> as Mac>::new_from_slice(&okm[32..64]).unwrap();
    h.update(&hex(&sender["identity_pub"]));
    h.update(&hex(&receiver["identity_pub"]));
    h.update(body);
    assert_eq!(&h.finalize().into_bytes()[..8], mac, "message {id}: MAC");
    assert_eq!(hex(&msg["fields"]["mac"]), mac);
    let ct = hex(&msg["fields"]["ciphertext"]);
    let pt = cbc::Decryptor::<aes::Aes256Dec>::new(okm[..32].into(), okm[64..].into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .unwrap();
    assert_eq!(
        pt,
        msg["plaintext"].as_str().unwrap().as_bytes(),
        "message {id}"
    );
}

/// Replays one session; returns the number of messages checked.
fn replay(name: &str) -> usize {
    let session = load(&format!("{name}.json"));
    let derived = load(&format!("{name}.derived.json"));
    let ak = hex32(&session["alice_initial_state"]["spqr"]["negotiating"]["auth_key"]);
    let parties = &session["parties"];
    let mut a = SpqrState::new(
        policy(&parties["A"]["spqr_min_version"]),
        &ak,
        Direction::A2B,
        false,
    );
    let mut b = SpqrState::new(
        policy(&parties["B"]["spqr_min_version"]),
        &ak,
        Direction::B2A,
        false,
    );
    // The keys each sent message was salted with, by id.
    let mut sent: Vec<Option<Option<[u8; 32]>>> =
        vec![None; session["messages"].as_array().unwrap().len()];
    let mut checked = 0;
    for ev in session["events"].as_array().unwrap() {
        let id = ev["msg"].as_u64().unwrap() as usize;
        let msg = &session["messages"][id];
        let pq = msg["fields"]["pq_ratchet"]
            .as_str()
            .map(|h| hex::decode(h).unwrap())
            .unwrap_or_default();
        let what = format!(
            "{name} event {} ({} {} {id})",
            ev["n"], ev["actor"], ev["op"]
        );
        let state = match ev["actor"].as_str().unwrap() {
            "A" => &mut a,
            _ => &mut b,
        };
        match ev["op"].as_str().unwrap() {
            "send" => {
                let mut rng = Replay {
                    dk: ev["rand"].get("mlkem_keygen_dk").map(hex),
                    m: ev["rand"].get("mlkem_encaps_m").map(hex),
                };
                let (bytes, key) = state.send(&mut rng).unwrap();
                assert!(
                    rng.dk.is_none() && rng.m.is_none(),
                    "{what}: randomness unused"
                );
                assert_eq!(hex::encode(&bytes), hex::encode(&pq), "{what}: pq_ratchet");
                check_message(&session, &derived, id, key.as_ref());
                sent[id] = Some(key.map(|k| *k));
            }
            "recv" => {
                let (next, key) = state.recv(&pq).unwrap_or_else(|e| panic!("{what}: {e}"));
                *state = next;
                assert_eq!(
                    key.map(|k| *k),
                    sent[id].expect("sent before received"),
                    "{what}: key"
                );
            }
            op => panic!("{op}"),
        }
        // A save restores to the same state.
        let saved = state.to_bytes();
        let back = SpqrState::from_bytes(&saved).unwrap();
        assert_eq!(back.to_bytes(), saved, "{what}: save round trip");
        check_snapshot(state, &ev["snapshot"]["spqr"], &what);
        checked += 1;
    }
    check_snapshot(&a, &session["final"]["A"]["spqr"], "final A");
    check_snapshot(&b, &session["final"]["B"]["spqr"], "final B");

    // Negatives, against a copy of the receiver's final state.
    let mut negatives = 0;
    for n in session["negatives"].as_array().unwrap() {
        let Some(pq) = n.get("pq_ratchet") else {
            continue; // DR-level cases (MAC, exact replay): the session tests
        };
        let receiver = match n["from"].as_str().unwrap() {
            "A" => &b,
            _ => &a,
        };
        let before = receiver.to_bytes();
        let result = receiver.recv(&hex(pq));
        assert_eq!(receiver.to_bytes(), before);
        let label = n["label"].as_str().unwrap();
        match n["result"].as_str().unwrap() {
            "ok" => {
                let (_, key) = result.unwrap_or_else(|e| panic!("{label}: {e}"));
                assert!(key.is_none(), "{label}: unsalted");
            }
            _ => {
                let err = result.err().unwrap_or_else(|| panic!("{label}: accepted"));
                let log = n["log_excerpt"][0].as_str().unwrap();
                assert!(log.ends_with(&err.to_string()), "{label}: {err} vs {log}");
            }
        }
        negatives += 1;
    }
    assert_eq!(negatives, 9);
    checked
}

#[test]
fn session1_replays_byte_for_byte() {
    assert_eq!(replay("session1-v0.101.0"), 375);
}

#[test]
fn session2_replays_byte_for_byte() {
    assert_eq!(replay("session2-v0.90.0-initiator-to-v0.101.0"), 375);
}

#[test]
fn negatives_name_the_recorded_reasons() {
    // The reasons logged by libsignal, checked above by their text; the
    // typed errors here.
    let s = SpqrState::default();
    assert!(s.recv(&[1, 0, 0, 0]).is_ok(), "SPQR off ignores field 5");
    assert_eq!(
        SpqrState::new(SpqrPolicy::Required, &[1; 32], Direction::B2A, false)
            .recv(&[])
            .err(),
        Some(SpqrError::MinimumVersion)
    );
    let (off, key) = SpqrState::new(SpqrPolicy::Offered, &[1; 32], Direction::B2A, false)
        .recv(&[])
        .unwrap();
    assert!(key.is_none() && !off.is_active(), "offered: downgrade");
}

#[test]
fn building_blocks() {
    // The GF(2^16), erasure-code and KDF examples are unit tests of the
    // crate (src/spqr/*); here the message encodings.
    let blocks = load("building-blocks.json");
    let kdf = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["what"] == "kdf")
        .unwrap();
    for ex in kdf["spqr_msg_examples"].as_array().unwrap() {
        let bytes = hex(&ex["bytes"]);
        let m = ratchetkit::spqr::SpqrMessage::decode(&bytes).unwrap();
        assert_eq!(m.epoch, ex["epoch"].as_u64().unwrap());
        assert_eq!(u64::from(m.index), ex["index"].as_u64().unwrap());
        assert_eq!(m.encode(), bytes);
    }
}

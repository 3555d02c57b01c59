//! Version-4 sessions with SPQR (the Triple Ratchet): both recorded
//! libsignal sessions (`tests/vectors/spqr`) replayed through the session
//! layer byte for byte — every wire message the recorded party sent, every
//! plaintext received, the SPQR state after every event, every negative —
//! and a long conversation with loss, reordering and duplication.

use rand::rngs::StdRng;
use rand::{CryptoRng, Rng, RngCore, SeedableRng};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::kem::KemSecretKey;
use crate::keys::{IdentityKeyPair, KeyPair, PrivateKey, PublicKey};
use crate::ratchet::{ChainKey, RootKey};
use crate::session::{PendingPreKey, SessionState};
use crate::spqr::{DecapsulationKey, Direction, RngRandom, SpqrPolicy, SpqrRandom, SpqrState};
use crate::wire::{KyberPayload, PreKeySignalMessage, SignalMessage, SignalMessageRef};

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

fn private(v: &Value) -> PrivateKey {
    PrivateKey::deserialize(&hex(v)).unwrap()
}

fn public(v: &Value) -> PublicKey {
    PublicKey::deserialize(&hex(v)).unwrap()
}

/// The DR ratchet key one receive draws, from the recording.
struct DrReplay(Option<Vec<u8>>);

impl RngCore for DrReplay {
    fn next_u32(&mut self) -> u32 {
        unreachable!()
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        let bytes = self.0.take().expect("a recorded ratchet key");
        dest.copy_from_slice(&bytes);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for DrReplay {}

/// The SPQR randomness one send draws, from the recording.
struct SpqrReplay {
    dk: Option<Vec<u8>>,
    m: Option<Vec<u8>>,
}

impl SpqrRandom for SpqrReplay {
    fn decapsulation_key(&mut self) -> DecapsulationKey {
        DecapsulationKey::from_bytes(&self.dk.take().expect("a recorded keygen")).unwrap()
    }
    fn encapsulation_randomness(&mut self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.m.take().expect("a recorded m").try_into().unwrap())
    }
}

fn policy(min_version: &Value) -> SpqrPolicy {
    match min_version.as_u64() {
        Some(0) => SpqrPolicy::Offered,
        _ => SpqrPolicy::Required,
    }
}

/// The inner SignalMessage of a recorded wire message.
fn inner(msg: &Value) -> Vec<u8> {
    let wire = hex(&msg["wire"]);
    match msg["wire_type"].as_u64().unwrap() {
        3 => PreKeySignalMessage::deserialize(&wire)
            .unwrap()
            .message()
            .serialize()
            .to_vec(),
        _ => wire,
    }
}

/// Alice's state right after processing the bundle, from the recording.
fn alice_state(s: &Value) -> SessionState {
    let init = &s["alice_initial_state"];
    let keys = &s["keys"];
    let first = s["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["wire_type"] == 3 && m["from"] == "A")
        .unwrap();
    let pk = &first["prekey"];
    let base_key = public(&pk["base_key"]);
    let mut state = SessionState::new(
        4,
        public(&keys["alice"]["identity_pub"]),
        public(&keys["bob"]["identity_pub"]),
        RootKey(hex32(&init["root_key"])),
        KeyPair::from_private_key(private(&init["sender"]["ratchet_priv"])),
        ChainKey {
            key: hex32(&init["sender"]["chain_key"]["key"]),
            index: 0,
        },
        keys["alice"]["registration_id"].as_u64().unwrap() as u32,
        keys["bob"]["registration_id"].as_u64().unwrap() as u32,
        base_key,
    );
    let receiver = &init["receivers"][0];
    state.add_receiver_chain(
        public(&receiver["ratchet_pub"]),
        ChainKey {
            key: hex32(&receiver["chain_key"]["key"]),
            index: 0,
        },
    );
    state.pending_prekey = Some(PendingPreKey {
        pre_key_id: pk["pre_key_id"].as_u64().map(|v| v as u32),
        signed_pre_key_id: pk["signed_pre_key_id"].as_u64().unwrap() as u32,
        base_key,
        kyber: Some(KyberPayload {
            pre_key_id: pk["kyber_pre_key_id"].as_u64().unwrap() as u32,
            ciphertext: hex(&pk["kyber_ciphertext"]),
        }),
    });
    let spqr = &init["spqr"]["negotiating"];
    state.spqr = SpqrState::new(
        policy(&s["parties"]["A"]["spqr_min_version"]),
        &hex32(&spqr["auth_key"]),
        Direction::A2B,
        false,
    );
    state
}

/// Bob's state from PQXDH on the prekey message `msg`.
fn bob_state(s: &Value, msg: &Value) -> SessionState {
    let keys = &s["keys"];
    let bob = &keys["bob"];
    let wire = PreKeySignalMessage::deserialize(&hex(&msg["wire"])).unwrap();
    let kyber_key = KemSecretKey::deserialize(&hex(&bob["kyber_prekey"]["secret"])).unwrap();
    let opk = KeyPair::from_private_key(private(&bob["one_time_prekey"]["priv"]));
    let state = crate::x3dh::respond(
        &IdentityKeyPair::from_private_key(private(&bob["identity_priv"])),
        bob["registration_id"].as_u64().unwrap() as u32,
        &KeyPair::from_private_key(private(&bob["signed_prekey"]["priv"])),
        Some(&opk),
        wire.kyber().map(|k| (&kyber_key, &k.ciphertext[..])),
        wire.identity_key(),
        wire.base_key(),
        wire.registration_id(),
        policy(&s["parties"]["B"]["spqr_min_version"]),
    )
    .unwrap();
    // PQXDH gives the auth key Alice's state recorded.
    let ak = hex32(&s["alice_initial_state"]["spqr"]["negotiating"]["auth_key"]);
    let expected = SpqrState::new(
        policy(&s["parties"]["B"]["spqr_min_version"]),
        &ak,
        Direction::B2A,
        false,
    );
    assert_eq!(state.spqr.snapshot(), expected.snapshot());
    state
}

fn decrypt(
    state: &mut SessionState,
    bytes: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, Error> {
    let m = SignalMessageRef::parse(bytes)?;
    state.decrypt_then(&m, rng, Ok::<_, Error>)
}

fn replay(name: &str) -> (SessionState, SessionState) {
    let s = load(&format!("{name}.json"));
    let mut alice = alice_state(&s);
    let mut bob: Option<SessionState> = None;
    for ev in s["events"].as_array().unwrap() {
        let id = ev["msg"].as_u64().unwrap() as usize;
        let msg = &s["messages"][id];
        let what = format!("{name} event {}", ev["n"]);
        let actor = ev["actor"].as_str().unwrap();
        if actor == "B" && bob.is_none() {
            bob = Some(bob_state(&s, msg));
        }
        let state = match actor {
            "A" => &mut alice,
            _ => bob.as_mut().unwrap(),
        };
        match ev["op"].as_str().unwrap() {
            "send" => {
                let mut rng = SpqrReplay {
                    dk: ev["rand"].get("mlkem_keygen_dk").map(hex),
                    m: ev["rand"].get("mlkem_encaps_m").map(hex),
                };
                let addresses = msg["fields"]
                    .get("addresses")
                    .filter(|v| !v.is_null())
                    .map(hex);
                let plaintext = msg["plaintext"].as_str().unwrap().as_bytes();
                let out = state
                    .encrypt_with_then(plaintext, &mut rng, addresses.as_deref(), |m| {
                        Ok::<_, Error>(m)
                    })
                    .unwrap();
                assert_eq!(
                    out.message_type() as u64,
                    msg["wire_type"].as_u64().unwrap(),
                    "{what}"
                );
                assert_eq!(
                    hex::encode(out.serialize()),
                    msg["wire"].as_str().unwrap(),
                    "{what}: wire"
                );
            }
            "recv" => {
                let mut rng = DrReplay(ev["rand"].get("dr_new_ratchet_priv").map(hex));
                let pt =
                    decrypt(state, &inner(msg), &mut rng).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(pt, msg["plaintext"].as_str().unwrap().as_bytes(), "{what}");
                assert!(rng.0.is_none(), "{what}: recorded ratchet key unused");
            }
            op => panic!("{op}"),
        }
        let snap = state.spqr.snapshot();
        let rec = &ev["snapshot"]["spqr"];
        assert_eq!(snap.state, rec["state"].as_str(), "{what}");
        assert_eq!(
            snap.auth.unwrap().0,
            hex32(&rec["auth"]["root_key"]),
            "{what}"
        );
        let dr = &ev["snapshot"]["dr"];
        assert_eq!(
            state.root_key.0,
            hex32(&dr["root_key"]),
            "{what}: DR root key"
        );
        assert_eq!(
            state.sender_chain.ratchet_key.public_key,
            public(&dr["sender"]["ratchet_pub"]),
            "{what}"
        );
    }
    let bob = bob.unwrap();
    // Negatives: against copies of the final states.
    for n in s["negatives"].as_array().unwrap() {
        let label = n["label"].as_str().unwrap();
        let mut receiver = match n["from"].as_str().unwrap() {
            "A" => bob.clone(),
            _ => alice.clone(),
        };
        let wire = hex(&n["wire"]);
        let saved = crate::persist::state_bytes(&receiver);
        let result = decrypt(&mut receiver, &wire, &mut rand::rngs::OsRng);
        match n["result"].as_str().unwrap() {
            "ok" => {
                result.unwrap_or_else(|e| panic!("{label}: {e}"));
            }
            _ => {
                let err = result.err().unwrap_or_else(|| panic!("{label}: accepted"));
                if label.starts_with("exact replay") {
                    assert!(
                        matches!(err, Error::DuplicateMessage { .. }),
                        "{label}: {err}"
                    );
                }
                assert_eq!(
                    crate::persist::state_bytes(&receiver),
                    saved,
                    "{label}: unchanged"
                );
            }
        }
    }
    (alice, bob)
}

#[test]
fn session1_replays_through_the_session_layer() {
    let (a, b) = replay("session1-v0.101.0");
    assert_eq!(a.spqr.snapshot().epoch, Some(3));
    assert_eq!(b.spqr.snapshot().epoch, Some(3));
}

#[test]
fn session2_replays_through_the_session_layer() {
    let (a, b) = replay("session2-v0.90.0-initiator-to-v0.101.0");
    assert_eq!(a.spqr.snapshot().epoch, Some(3));
    assert_eq!(b.spqr.snapshot().epoch, Some(3));
}

/// A peer without SPQR (no field 5, as libsignal ≤ 0.73 or ratchetkit with
/// SPQR off) against each policy: required refuses (state unchanged),
/// offered falls back to no SPQR, off ignores field 5.
#[test]
fn negotiation_with_a_peer_without_spqr() {
    let s = load("session1-v0.101.0.json");
    let first = &s["messages"][1];
    // Alice without SPQR: her recorded state, SPQR off.
    for (policy, ok) in [
        (SpqrPolicy::Required, false),
        (SpqrPolicy::Offered, true),
        (SpqrPolicy::Off, true),
    ] {
        let mut alice = alice_state(&s);
        alice.spqr = SpqrState::default();
        let m = alice
            .encrypt_with_then(
                b"no spqr",
                &mut RngRandom(&mut rand::rngs::OsRng),
                None,
                Ok::<_, Error>,
            )
            .unwrap();
        let wire = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
        assert!(wire.message().pq_ratchet().is_empty());
        let mut bob = bob_state(&s, first);
        let ak = hex32(&s["alice_initial_state"]["spqr"]["negotiating"]["auth_key"]);
        bob.spqr = SpqrState::new(policy, &ak, Direction::B2A, false);
        let before = crate::persist::state_bytes(&bob);
        let r = decrypt(&mut bob, wire.message().serialize(), &mut rand::rngs::OsRng);
        assert_eq!(r.is_ok(), ok, "{policy:?}");
        if ok {
            assert!(!bob.spqr.is_active(), "{policy:?}: no SPQR from here on");
            // The answer carries no field 5 and decrypts without SPQR.
            let reply = bob
                .encrypt_with_then(b"back", &mut RngRandom(&mut rand::rngs::OsRng), None, |m| {
                    Ok::<_, Error>(m)
                })
                .unwrap();
            let reply = SignalMessage::deserialize(reply.serialize()).unwrap();
            assert!(reply.pq_ratchet().is_empty());
            assert_eq!(
                decrypt(&mut alice, reply.serialize(), &mut rand::rngs::OsRng).unwrap(),
                b"back"
            );
        } else {
            assert_eq!(crate::persist::state_bytes(&bob), before);
        }
    }
}

/// How many messages the lossy conversation exchanges (debug build: a few
/// seconds).
const CONVERSATION_LEN: usize = 12_000;

/// Two version-4 sessions with SPQR exchange many messages with random
/// loss (10%), reordering (within the 4 oldest in flight) and duplication
/// (5%): every message that arrives once decrypts to its plaintext, every
/// duplicate fails as a duplicate with the state unchanged, SPQR epochs keep
/// advancing, and the saved state stays bounded.
#[test]
fn lossy_reordered_duplicated_conversation() {
    let s = load("session1-v0.101.0.json");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut alice = alice_state(&s);
    let first = &s["messages"][0];
    let m = alice
        .encrypt_with_then(b"0", &mut RngRandom(&mut rng), None, Ok::<_, Error>)
        .unwrap();
    let mut bob = bob_state(&s, first);
    let inner0 = PreKeySignalMessage::deserialize(m.serialize()).unwrap();
    assert_eq!(
        decrypt(&mut bob, inner0.message().serialize(), &mut rng).unwrap(),
        b"0"
    );
    let mut sides = [alice, bob];
    // In flight: (to, bytes, plaintext, duplicate).
    let mut flight: Vec<(usize, Vec<u8>, Vec<u8>, bool)> = Vec::new();
    let mut delivered = 0usize;
    let mut max_saved = 0usize;
    for n in 1..CONVERSATION_LEN {
        let from = if rng.gen_bool(0.5) { 0 } else { 1 };
        let pt = n.to_string().into_bytes();
        let out = sides[from]
            .encrypt_with_then(&pt, &mut RngRandom(&mut rng), None, Ok::<_, Error>)
            .unwrap();
        let bytes = match PreKeySignalMessage::deserialize(out.serialize()) {
            Ok(p) => p.message().serialize().to_vec(),
            Err(_) => out.serialize().to_vec(),
        };
        if rng.gen_bool(0.9) {
            flight.push((1 - from, bytes.clone(), pt.clone(), false));
            if rng.gen_bool(0.05) {
                flight.push((1 - from, bytes, pt, true));
            }
        }
        while !flight.is_empty() && rng.gen_bool(0.55) {
            let pick = rng.gen_range(0..flight.len().min(4));
            let (to, bytes, pt, duplicate) = flight.remove(pick);
            let before = sides[to].spqr.to_bytes();
            match decrypt(&mut sides[to], &bytes, &mut rng) {
                Ok(got) => {
                    assert_eq!(got, pt, "message {n}");
                    delivered += 1;
                }
                Err(e) => {
                    // A duplicate may come out first; then the original is the
                    // duplicate. Either way it is refused by the DR.
                    assert!(
                        matches!(e, Error::DuplicateMessage { .. }),
                        "message {n} (duplicate: {duplicate}): {e}"
                    );
                    assert_eq!(sides[to].spqr.to_bytes(), before);
                }
            }
        }
        if n % 500 == 0 {
            for side in &sides {
                let saved = side.spqr.to_bytes();
                max_saved = max_saved.max(saved.len());
                assert_eq!(SpqrState::from_bytes(&saved).unwrap().to_bytes(), saved);
                assert!(side.receiver_chains.len() <= 5);
            }
        }
    }
    let epochs: Vec<u64> = sides
        .iter()
        .map(|s| s.spqr.snapshot().epoch.unwrap())
        .collect();
    assert!(
        epochs.iter().all(|&e| e >= 20),
        "epochs advance: {epochs:?}"
    );
    assert!(delivered > CONVERSATION_LEN * 8 / 10, "{delivered}");
    assert!(max_saved < 16 * 1024, "bounded: {max_saved}");
}

/// A store saves and restores sessions with SPQR state exactly, and the
/// restored sessions go on talking; a state whose SPQR bytes are corrupt
/// is refused.
#[test]
fn spqr_state_survives_save_and_restore() {
    use crate::store::{Address, ProtocolStore};
    let (alice, bob) = replay("session1-v0.101.0");
    let mut store = ProtocolStore::generate(1, &mut rand::rngs::OsRng).unwrap();
    let addr = Address::new("bob", 1);
    store
        .sessions
        .entry(addr.clone())
        .or_default()
        .get_mut()
        .promote_state(alice.clone());
    let saved = store.save();
    let mut back = ProtocolStore::restore(&saved).unwrap();
    assert_eq!(back.save(), saved);
    let restored = back
        .sessions
        .get_mut(&addr)
        .and_then(|c| c.get_mut().current.clone())
        .unwrap();
    assert_eq!(
        crate::persist::state_bytes(&restored),
        crate::persist::state_bytes(&alice)
    );
    assert_eq!(restored.spqr.snapshot(), alice.spqr.snapshot());
    // The restored Alice and the live Bob keep talking.
    let mut a = restored;
    let mut b = bob;
    for i in 0..60u32 {
        let (from, to) = if i % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let pt = i.to_be_bytes();
        let m = from
            .encrypt_with_then(&pt, &mut RngRandom(&mut rand::rngs::OsRng), None, |m| {
                Ok::<_, Error>(m)
            })
            .unwrap();
        assert_eq!(
            decrypt(to, m.serialize(), &mut rand::rngs::OsRng).unwrap(),
            pt
        );
    }
    // Corrupt SPQR bytes inside an otherwise valid save are refused.
    let spqr = alice.spqr.to_bytes();
    let at = saved
        .windows(spqr.len())
        .position(|w| w == spqr.as_slice())
        .unwrap();
    let mut bad = saved.clone();
    bad[at] = 9; // the format byte
    assert!(matches!(
        ProtocolStore::restore(&bad),
        Err(Error::CorruptState(_))
    ));
}

//! SPQR, the Sparse Post-Quantum Ratchet (the "Triple Ratchet" of message
//! version 4), implemented from the clean-room specification SPQR.md.
//!
//! A session's [`SpqrState`] produces, for every encrypted message, an SPQR
//! message (carried in `SignalMessage` field 5) and a 32-byte key, used as
//! the HKDF salt of that message's keys; the receiver recovers the same key
//! from the SPQR message. Underneath, a KEM braid agrees a fresh ML-KEM-768
//! secret every epoch (chunked with an erasure code, one chunk per message)
//! and a symmetric chain turns the epoch secrets into per-message keys.
//!
//! Every input from the network is decoded with typed errors
//! ([`SpqrError`]); receiving is transactional ([`SpqrState::recv`] returns a
//! new state and leaves the old one untouched). Randomness comes through
//! [`SpqrRandom`], so tests can replay recorded sessions byte for byte.

mod braid;
mod chain;
mod erasure;
mod gf16;
mod kdf;
pub mod kem;
mod persist;
pub mod wire;

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

pub use chain::Direction;
pub use erasure::Chunk;
pub use kem::DecapsulationKey;
pub use wire::{Payload, SpqrMessage};

use braid::Braid;
use chain::Chain;
use kdf::Secret32;

/// The SPQR message-key window: a receiving half keeps at most this many
/// skipped keys behind the newest (SPQR.md §2.3).
pub const MAX_OOO_KEYS: u32 = 2_000;
/// The largest forward jump of a receiving half, outside self-sessions.
pub const MAX_JUMP: u32 = 25_000;
/// The most chain epochs a saved SPQR state may hold.
pub const MAX_SAVED_EPOCHS: usize = persist::MAX_EPOCHS;
/// One SPQR chain step (an HKDF: three HMACs) counted in Double Ratchet
/// chain steps (two HMACs each).
pub const STEP_COST: u64 = 2;
/// The most [`SpqrState::recv_cost`] returns.
pub const MAX_RECV_COST: u64 = (MAX_JUMP as u64 + 1) * STEP_COST;
/// The forward jump a self-session ("note to self") records, as libsignal
/// does. Receiving still walks at most [`MAX_JUMP`] steps: the walk comes
/// before the MAC check, so anyone could otherwise make the receiver
/// derive up to 2^32 keys per forged message (the Double Ratchet caps
/// self-sessions at the same 25,000).
pub const MAX_JUMP_SELF: u32 = u32::MAX;

/// What can go wrong in SPQR. The names follow the reasons libsignal logs
/// (SPQR.md §8); every one makes the message fail without changing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpqrError {
    /// An empty or version-0 SPQR message before the first successful
    /// receive, while SPQR is required.
    #[error("Minimum version")]
    MinimumVersion,
    /// An empty or version-0 SPQR message after the first receive.
    #[error("Version mismatch after negotiation")]
    VersionMismatch,
    /// A malformed SPQR message (epoch 0, unknown type, truncated chunk,
    /// bad varint, index beyond u32, chunk index beyond 65,535).
    #[error("message decode failed")]
    MessageDecode,
    /// A braid epoch ahead of this side, or a chain epoch no longer held.
    #[error("epoch not in valid range: {0}")]
    EpochOutOfRange(u64),
    /// An index more than the allowed jump ahead of its chain.
    #[error("Key jump: {ctr} - {index}")]
    KeyJump {
        /// The chain's last index.
        ctr: u32,
        /// The index received.
        index: u32,
    },
    /// An index behind the out-of-order window.
    #[error("Key trimmed: {0}")]
    KeyTrimmed(u32),
    /// An index already used, or never kept.
    #[error("Key already requested: {0}")]
    KeyAlreadyRequested(u32),
    /// A header or ciphertext MAC that does not verify.
    #[error("MAC verification failed")]
    MacVerification,
    /// An encapsulation key that does not match its header, or fails the
    /// modulus check.
    #[error("Erroneous data received from remote party")]
    ErroneousData,
    /// Saved SPQR state that cannot be read.
    #[error("state decode failed")]
    StateDecode,
    /// No chain and no negotiation data (a corrupt state).
    #[error("Chain not available")]
    ChainNotAvailable,
    /// A send keyed from an older epoch than the last (a corrupt state).
    #[error("Send key epoch decreased")]
    SendEpochDecreased,
    /// A chain half at the end of its 32-bit index space.
    #[error("chain index exhausted")]
    IndexExhausted,
}

impl From<SpqrError> for crate::Error {
    fn from(e: SpqrError) -> Self {
        use crate::Error;
        match e {
            SpqrError::MinimumVersion => Error::SpqrRequired(
                "post-quantum ratchet error: Minimum version (the peer sent no SPQR)",
            ),
            SpqrError::VersionMismatch => Error::InvalidMessage(
                "post-quantum ratchet error: Version mismatch after negotiation",
            ),
            SpqrError::MessageDecode => {
                Error::InvalidMessage("post-quantum ratchet error: message decode failed")
            }
            SpqrError::EpochOutOfRange(_) => {
                Error::InvalidMessage("post-quantum ratchet error: epoch not in valid range")
            }
            SpqrError::KeyJump { .. } => {
                Error::InvalidMessage("post-quantum ratchet error: Key jump")
            }
            SpqrError::KeyTrimmed(_) => {
                Error::InvalidMessage("post-quantum ratchet error: Key trimmed")
            }
            SpqrError::KeyAlreadyRequested(_) => {
                Error::InvalidMessage("post-quantum ratchet error: Key already requested")
            }
            SpqrError::MacVerification => {
                Error::InvalidMessage("post-quantum ratchet error: MAC verification failed")
            }
            SpqrError::ErroneousData => Error::InvalidMessage(
                "post-quantum ratchet error: Erroneous data received from remote party",
            ),
            SpqrError::IndexExhausted => {
                Error::LimitExceeded("post-quantum ratchet chain index exhausted")
            }
            SpqrError::StateDecode => Error::CorruptState("post-quantum ratchet state"),
            SpqrError::ChainNotAvailable => {
                Error::CorruptState("post-quantum ratchet: chain not available")
            }
            SpqrError::SendEpochDecreased => {
                Error::CorruptState("post-quantum ratchet: send key epoch decreased")
            }
        }
    }
}

/// Whether a new version-4 session speaks SPQR (SPQR.md §2.9). The
/// default is [`Required`](Self::Required), as the official library since
/// 0.92.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpqrPolicy {
    /// SPQR V1, and the peer must speak it (`min_version` V1, as libsignal
    /// ≥ 0.92): a peer without SPQR fails with
    /// [`Error::SpqrRequired`](crate::Error::SpqrRequired).
    #[default]
    Required,
    /// SPQR V1, falling back to none with a peer without it (`min_version`
    /// V0, as libsignal 0.83–0.91). Until the first message is received,
    /// messages carry index 0 and unsalted keys.
    Offered,
    /// No SPQR (version 0): field 5 is neither sent nor read. Version-3
    /// sessions are always so.
    Off,
}

/// The randomness SPQR consumes: an ML-KEM-768 key pair per epoch on the
/// ek side, 32 bytes of encapsulation randomness per epoch on the ct side.
pub trait SpqrRandom {
    /// A fresh decapsulation key (production: key generation from 64
    /// random bytes).
    fn decapsulation_key(&mut self) -> DecapsulationKey;
    /// Fresh encapsulation randomness `m`.
    fn encapsulation_randomness(&mut self) -> Zeroizing<[u8; 32]>;
}

/// [`SpqrRandom`] from a cryptographic RNG.
pub struct RngRandom<'a, R: RngCore + CryptoRng>(pub &'a mut R);

impl<R: RngCore + CryptoRng> SpqrRandom for RngRandom<'_, R> {
    fn decapsulation_key(&mut self) -> DecapsulationKey {
        let mut seed = Zeroizing::new([0u8; 64]);
        self.0.fill_bytes(seed.as_mut());
        DecapsulationKey::from_seed(*seed)
    }
    fn encapsulation_randomness(&mut self) -> Zeroizing<[u8; 32]> {
        let mut m = Zeroizing::new([0u8; 32]);
        self.0.fill_bytes(m.as_mut());
        m
    }
}

/// The parameters kept until the first successful receive.
#[derive(Clone)]
pub(crate) struct Negotiation {
    pub(crate) auth_key: Secret32,
    pub(crate) direction: Direction,
    pub(crate) min_version: u8,
    pub(crate) max_jump: u32,
    pub(crate) max_ooo_keys: u32,
}

/// A 32-byte SPQR message key (the salt of one message's keys), wiped
/// when dropped.
pub type MessageKey = Zeroizing<[u8; 32]>;

/// The SPQR state of one session. Empty (version 0) when SPQR is off.
#[derive(Clone, Default)]
pub struct SpqrState {
    pub(crate) braid: Option<Box<Braid>>,
    pub(crate) chain: Option<Box<Chain>>,
    pub(crate) negotiation: Option<Box<Negotiation>>,
}

impl std::fmt::Debug for SpqrState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpqrState")
            .field("state", &self.braid.as_ref().map(|b| b.state.name()))
            .field("epoch", &self.braid.as_ref().map(|b| b.epoch))
            .field("negotiating", &self.negotiation.is_some())
            .finish_non_exhaustive()
    }
}

/// The version of an incoming SPQR message: `None` for unknown (newer).
fn message_version(bytes: &[u8]) -> Option<u8> {
    match bytes.first() {
        None | Some(0) => Some(0),
        Some(1) => Some(1),
        Some(_) => None,
    }
}

impl SpqrState {
    /// The state of a new session under `policy`: the initiator (who
    /// processed the bundle) is [`Direction::A2B`], the responder
    /// [`Direction::B2A`]. `auth_key` is bytes 64..96 of the PQXDH HKDF
    /// output. A self-session ("note to self") allows unlimited forward
    /// jumps.
    pub fn new(
        policy: SpqrPolicy,
        auth_key: &[u8; 32],
        direction: Direction,
        self_session: bool,
    ) -> Self {
        let min_version = match policy {
            SpqrPolicy::Off => return SpqrState::default(),
            SpqrPolicy::Offered => 0,
            SpqrPolicy::Required => 1,
        };
        let braid = match direction {
            Direction::A2B => Braid::initiator(auth_key),
            Direction::B2A => Braid::responder(auth_key),
        };
        SpqrState {
            braid: Some(Box::new(braid)),
            chain: None,
            negotiation: Some(Box::new(Negotiation {
                auth_key: Zeroizing::new(*auth_key),
                direction,
                min_version,
                max_jump: if self_session {
                    MAX_JUMP_SELF
                } else {
                    MAX_JUMP
                },
                max_ooo_keys: MAX_OOO_KEYS,
            })),
        }
    }

    /// Whether SPQR is active (version 1).
    pub fn is_active(&self) -> bool {
        self.braid.is_some()
    }

    /// The braid's epoch (1 at the start, one more with every completed
    /// ML-KEM exchange), or `None` when SPQR is not active.
    pub fn epoch(&self) -> Option<u64> {
        self.braid.as_ref().map(|b| b.epoch)
    }

    /// The SPQR message and key of the next outgoing message
    /// (`SPQR.send`, SPQR.md §2.9). The message is empty and the key absent
    /// when SPQR is off. On error the state may be half-changed: callers
    /// that need atomicity send on a copy.
    pub fn send(
        &mut self,
        rng: &mut dyn SpqrRandom,
    ) -> Result<(Vec<u8>, Option<MessageKey>), SpqrError> {
        let Some(braid) = self.braid.as_mut() else {
            return Ok((Vec::new(), None));
        };
        let epoch = braid.epoch;
        let (payload, new_secret) = braid.send(rng)?;
        if self.chain.is_none() {
            match &self.negotiation {
                Some(n) if n.min_version >= 1 => {
                    self.chain = Some(Box::new(Chain::new(
                        &n.auth_key,
                        n.direction,
                        n.max_jump,
                        n.max_ooo_keys,
                    )))
                }
                Some(_) => {}
                None => return Err(SpqrError::ChainNotAvailable),
            }
        }
        let Some(chain) = self.chain.as_mut() else {
            if new_secret.is_some() {
                return Err(SpqrError::ChainNotAvailable);
            }
            let msg = SpqrMessage {
                epoch,
                index: 0,
                payload,
            };
            return Ok((msg.encode(), None));
        };
        if let Some((e, secret)) = new_secret {
            chain.add_epoch(e, &secret)?;
        }
        let (index, key) = chain.send_key(epoch - 1)?;
        let msg = SpqrMessage {
            epoch,
            index,
            payload,
        };
        Ok((msg.encode(), Some(key)))
    }

    /// Receives an SPQR message (`SPQR.recv`, SPQR.md §2.9): the new state
    /// and the message key (absent for unsalted messages), or an error with
    /// `self` unchanged. `bytes` is field 5 as received (empty if absent).
    pub fn recv(&self, bytes: &[u8]) -> Result<(SpqrState, Option<MessageKey>), SpqrError> {
        let Some(version) = message_version(bytes) else {
            return Ok((self.clone(), None));
        };
        if version == 0 {
            if self.braid.is_none() {
                return Ok((self.clone(), None));
            }
            let Some(n) = &self.negotiation else {
                return Err(SpqrError::VersionMismatch);
            };
            if n.min_version > 0 {
                return Err(SpqrError::MinimumVersion);
            }
            return Ok((SpqrState::default(), None));
        }
        if self.braid.is_none() {
            return Ok((self.clone(), None));
        }
        let msg = SpqrMessage::decode(bytes)?;
        let mut next = self.clone();
        let new_secret = match next.braid.as_mut() {
            Some(braid) => braid.recv(msg.epoch, &msg.payload)?,
            None => None,
        };
        if next.chain.is_none() {
            let n = next
                .negotiation
                .as_ref()
                .ok_or(SpqrError::ChainNotAvailable)?;
            next.chain = Some(Box::new(Chain::new(
                &n.auth_key,
                n.direction,
                n.max_jump,
                n.max_ooo_keys,
            )));
        }
        let chain = next.chain.as_mut().ok_or(SpqrError::ChainNotAvailable)?;
        if let Some((e, secret)) = new_secret {
            chain.add_epoch(e, &secret)?;
        }
        let key = if msg.epoch == 1 && msg.index == 0 {
            None
        } else {
            Some(chain.recv_key(msg.epoch - 1, msg.index)?)
        };
        next.negotiation = None;
        Ok((next, key))
    }

    /// The work, in Double Ratchet chain steps, that [`recv`](Self::recv)
    /// of `bytes` costs at most before the message's MAC can be checked:
    /// the walk of a receiving half to the message's index (an SPQR step is
    /// an HKDF, counted as [`STEP_COST`] chain steps). Computed from the
    /// header alone; at most [`MAX_RECV_COST`].
    pub fn recv_cost(&self, bytes: &[u8]) -> u64 {
        if self.braid.is_none() || message_version(bytes) != Some(1) {
            return 0;
        }
        let Ok(msg) = SpqrMessage::decode(bytes) else {
            return 0;
        };
        let (ctr, max_jump) = match &self.chain {
            Some(c) => match c.epochs.iter().find(|e| e.epoch + 1 == msg.epoch) {
                Some(e) => (e.recv.ctr, c.max_jump),
                None => return 0,
            },
            None => (0, self.negotiation.as_ref().map_or(0, |n| n.max_jump)),
        };
        let steps = u64::from(msg.index.saturating_sub(ctr))
            .min(u64::from(max_jump).min(u64::from(MAX_JUMP)) + 1);
        steps * STEP_COST
    }

    /// The state serialized in ratchetkit's own format (empty when off).
    pub fn to_bytes(&self) -> Vec<u8> {
        persist::encode(self)
    }

    /// A state from [`to_bytes`](Self::to_bytes), validated.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SpqrError> {
        persist::decode(bytes)
    }

    /// A test and debugging view of the state (no secrets beyond what the
    /// recorded vectors show): braid state name, epoch, whether negotiating,
    /// the chain's current and send epochs and, per retained epoch, the two
    /// halves' counters and stored-key counts.
    #[doc(hidden)]
    pub fn snapshot(&self) -> SpqrSnapshot {
        SpqrSnapshot {
            state: self.braid.as_ref().map(|b| b.state.name()),
            epoch: self.braid.as_ref().map(|b| b.epoch),
            negotiating: self.negotiation.is_some(),
            auth: self.braid.as_ref().map(|b| (*b.auth.root, *b.auth.mac)),
            chain: self.chain.as_ref().map(|c| ChainSnapshot {
                current_epoch: c.current_epoch,
                send_epoch: c.send_epoch,
                next_root: *c.next_root,
                links: c
                    .epochs
                    .iter()
                    .map(|e| {
                        let half = |h: &chain::Half| HalfSnapshot {
                            ctr: h.ctr,
                            next: h.next.as_ref().map(|k| **k),
                            stored_keys: h.stored.len(),
                        };
                        (half(&e.send), half(&e.recv))
                    })
                    .collect(),
            }),
        }
    }
}

/// See [`SpqrState::snapshot`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpqrSnapshot {
    /// The braid state's name in SPQR.md.
    pub state: Option<&'static str>,
    /// The braid epoch.
    pub epoch: Option<u64>,
    /// Whether the negotiation block is held.
    pub negotiating: bool,
    /// The authenticator `(R, M)`.
    pub auth: Option<([u8; 32], [u8; 32])>,
    /// The chain.
    pub chain: Option<ChainSnapshot>,
}

/// See [`SpqrState::snapshot`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSnapshot {
    /// The newest epoch.
    pub current_epoch: u64,
    /// The epoch of the last send.
    pub send_epoch: u64,
    /// The next root.
    pub next_root: [u8; 32],
    /// The retained epochs, oldest first: (send half, receive half).
    pub links: Vec<(HalfSnapshot, HalfSnapshot)>,
}

/// See [`SpqrState::snapshot`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HalfSnapshot {
    /// The last index derived.
    pub ctr: u32,
    /// The next chain key, `None` once wiped.
    pub next: Option<[u8; 32]>,
    /// The number of stored out-of-order keys.
    pub stored_keys: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn hex(v: &Value) -> Vec<u8> {
        hex::decode(v.as_str().unwrap()).unwrap()
    }

    fn hex16(v: &Value) -> u16 {
        u16::from_str_radix(v.as_str().unwrap(), 16).unwrap()
    }

    /// Every check of `building-blocks.json`.
    #[test]
    fn building_blocks_json() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/spqr/building-blocks.json"
        );
        let blocks: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut seen = 0;
        for b in blocks.as_array().unwrap() {
            match b["what"].as_str().unwrap() {
                "gf16" => {
                    assert_eq!(b["modulus"], "1100b");
                    for m in b["mul"].as_array().unwrap() {
                        assert_eq!(gf16::mul(hex16(&m["a"]), hex16(&m["b"])), hex16(&m["a*b"]));
                    }
                    for m in b["inv"].as_array().unwrap() {
                        assert_eq!(gf16::inv(hex16(&m["a"])), hex16(&m["inverse"]));
                    }
                }
                "erasure" => {
                    let message = hex(&b["message"]);
                    let enc = erasure::Encoder::new(message.clone());
                    let mut dec = erasure::Decoder::new(message.len());
                    for c in b["chunks"].as_array().unwrap() {
                        let index = c["index"].as_u64().unwrap() as u16;
                        assert_eq!(enc.chunk(index).to_vec(), hex(&c["data"]));
                    }
                    for i in b["decoded_from_chunk_indices"].as_array().unwrap() {
                        let index = i.as_u64().unwrap() as u16;
                        dec.add(Chunk {
                            index,
                            data: enc.chunk(index),
                        });
                    }
                    assert_eq!(dec.decode().unwrap(), message);
                }
                "kdf" => {
                    let ak: [u8; 32] = hex(&b["auth_key"]).try_into().unwrap();
                    let mut chain = Chain::new(&ak, Direction::A2B, MAX_JUMP, MAX_OOO_KEYS);
                    let mut okm = [0u8; 96];
                    crate::ratchet::hkdf(None, &ak, kdf::L_START, &mut okm);
                    assert_eq!(okm.to_vec(), hex(&b["chain_start_okm96"]));
                    for k in b["a2b_epoch0_keys"].as_array().unwrap() {
                        let (i, key) = chain.send_key(0).unwrap();
                        assert_eq!(u64::from(i), k[0].as_u64().unwrap());
                        assert_eq!(key.to_vec(), hex(&k[1]));
                    }
                    let after = &b["after_add_epoch1_with_secret_42x32"];
                    chain.add_epoch(1, &[0x42; 32]).unwrap();
                    assert_eq!(chain.next_root.to_vec(), hex(&after["next_root"]));
                    let (i, key) = chain.send_key(1).unwrap();
                    assert_eq!(u64::from(i), after["a2b_epoch1_key1"][0].as_u64().unwrap());
                    assert_eq!(key.to_vec(), hex(&after["a2b_epoch1_key1"][1]));
                    let mut auth = kdf::Authenticator::new(&ak);
                    let init = &b["authenticator_initial"];
                    assert_eq!(auth.root.to_vec(), hex(&init["root_key"]));
                    assert_eq!(auth.mac.to_vec(), hex(&init["mac_key"]));
                    assert_eq!(
                        auth.hdr_mac(1, &[0; 64]).to_vec(),
                        hex(&b["hdr_mac_epoch1_of_64_zero_bytes"])
                    );
                    assert_eq!(
                        auth.ct_mac(1, &[0; 960], &[0; 128]).to_vec(),
                        hex(&b["ct_mac_epoch1_of_1088_zero_bytes"])
                    );
                    auth.update(1, &[0x42; 32]);
                    let upd = &b["authenticator_after_update_epoch1_secret_42x32"];
                    assert_eq!(auth.root.to_vec(), hex(&upd["root_key"]));
                    assert_eq!(auth.mac.to_vec(), hex(&upd["mac_key"]));
                    assert_eq!(
                        kdf::epoch_secret(&[0x11; 32], 1).to_vec(),
                        hex(&b["epoch_secret_epoch1_of_ss_11x32"])
                    );
                    for ex in b["spqr_msg_examples"].as_array().unwrap() {
                        let bytes = hex(&ex["bytes"]);
                        assert_eq!(SpqrMessage::decode(&bytes).unwrap().encode(), bytes);
                    }
                }
                other => panic!("unknown block {other}"),
            }
            seen += 1;
        }
        assert_eq!(seen, 4);
    }

    /// Two states talk with random loss, reordering and duplication: keys
    /// always agree, epochs advance, and the state stays bounded.
    #[test]
    fn lossy_conversation_agrees_and_advances() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let ak = [3u8; 32];
        let mut sides = [
            SpqrState::new(SpqrPolicy::Required, &ak, Direction::A2B, false),
            SpqrState::new(SpqrPolicy::Required, &ak, Direction::B2A, false),
        ];
        // In flight: (to, bytes, key).
        let mut flight: Vec<(usize, Vec<u8>, Option<[u8; 32]>)> = Vec::new();
        // The responder exists only once it received something.
        let (bytes, key) = sides[0].send(&mut RngRandom(&mut rng)).unwrap();
        let (next, got) = sides[1].recv(&bytes).unwrap();
        sides[1] = next;
        assert_eq!(got.map(|k| *k), key.map(|k| *k));
        let mut max_len = 0;
        for round in 0..4_000 {
            let from = rng.gen_range(0..2);
            let (bytes, key) = sides[from].send(&mut RngRandom(&mut rng)).unwrap();
            if rng.gen_bool(0.9) {
                flight.push((1 - from, bytes.clone(), key.as_ref().map(|k| **k)));
            }
            if rng.gen_bool(0.05) {
                flight.push((1 - from, bytes, key.map(|k| *k))); // duplicate
            }
            while !flight.is_empty() && rng.gen_bool(0.6) {
                let pick = if rng.gen_bool(0.8) {
                    0
                } else {
                    rng.gen_range(0..flight.len())
                };
                let (to, bytes, key) = flight.remove(pick);
                match sides[to].recv(&bytes) {
                    Ok((next, got)) => {
                        assert_eq!(got.map(|k| *k), key, "round {round}");
                        sides[to] = next;
                    }
                    // Only a duplicate may fail: its key was used.
                    Err(SpqrError::KeyAlreadyRequested(_)) => {}
                    Err(e) => panic!("round {round}: {e}"),
                }
            }
            for s in &sides {
                let saved = s.to_bytes();
                max_len = max_len.max(saved.len());
                if round % 97 == 0 {
                    assert_eq!(SpqrState::from_bytes(&saved).unwrap().to_bytes(), saved);
                }
                let c = s.chain.as_ref().unwrap();
                assert!(c.epochs.len() <= 3, "{} epochs", c.epochs.len());
            }
        }
        let epochs = sides
            .iter()
            .map(|s| s.braid.as_ref().unwrap().epoch)
            .min()
            .unwrap();
        assert!(epochs >= 10, "epochs advance: {epochs}");
        assert!(max_len < 16 * 1024, "state bounded: {max_len}");
    }

    /// A forged message to a self-session ("note to self", every session
    /// with one's own linked devices) cannot make the receiver walk its
    /// chain further than [`MAX_JUMP`] before the message's MAC is
    /// checked: with the jump unlimited, index 2^32 - 2 cost about 4·10^9
    /// HKDFs (hours) per forged message. The Double Ratchet caps
    /// self-sessions at the same 25,000.
    #[test]
    fn self_session_forged_jump_is_bounded() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let ak = [4u8; 32];
        let mut a = SpqrState::new(SpqrPolicy::Required, &ak, Direction::A2B, true);
        let b = SpqrState::new(SpqrPolicy::Required, &ak, Direction::B2A, true);
        let (bytes, _) = a.send(&mut RngRandom(&mut rng)).unwrap();
        let (b, _) = b.recv(&bytes).unwrap();
        let before = b.to_bytes();
        for index in [MAX_JUMP + 2, u32::MAX - 1] {
            let forged = SpqrMessage {
                epoch: 1,
                index,
                payload: Payload::None,
            }
            .encode();
            assert!(b.recv_cost(&forged) <= MAX_RECV_COST);
            assert!(
                matches!(b.recv(&forged), Err(SpqrError::KeyJump { .. })),
                "index {index}"
            );
        }
        // A jump within the limit still works.
        let ok = SpqrMessage {
            epoch: 1,
            index: MAX_JUMP + 1,
            payload: Payload::None,
        }
        .encode();
        assert!(b.recv(&ok).is_ok());
        assert_eq!(b.to_bytes(), before);
    }

    /// Saved state cannot widen the out-of-order window (the stored keys
    /// it lets a peer make us keep): a window beyond [`MAX_OOO_KEYS`] is
    /// refused, in the chain and in the negotiation block. Before, a saved
    /// window of 2^32 - 1 let one message store 25,000 keys per half.
    #[test]
    fn saved_window_beyond_the_limit_is_refused() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let mut a = SpqrState::new(SpqrPolicy::Required, &[5; 32], Direction::A2B, false);
        a.send(&mut RngRandom(&mut rng)).unwrap();
        assert!(SpqrState::from_bytes(&a.to_bytes()).is_ok());
        let mut wide_chain = a.clone();
        wide_chain.chain.as_mut().unwrap().max_ooo_keys = u32::MAX;
        assert_eq!(
            SpqrState::from_bytes(&wide_chain.to_bytes()).err(),
            Some(SpqrError::StateDecode)
        );
        let mut wide_negotiation = a.clone();
        wide_negotiation.negotiation.as_mut().unwrap().max_ooo_keys = MAX_OOO_KEYS + 1;
        assert_eq!(
            SpqrState::from_bytes(&wide_negotiation.to_bytes()).err(),
            Some(SpqrError::StateDecode)
        );
    }

    /// Saved state whose epochs sit at the end of the u64 range is refused:
    /// the next epoch (`e + 1`, in the braid, the chain and
    /// [`SpqrState::recv_cost`]) would overflow (a panic in debug builds,
    /// a wrap to the invalid epoch 0 in release builds).
    #[test]
    fn saved_epoch_at_the_end_of_its_range_is_refused() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut a = SpqrState::new(SpqrPolicy::Required, &[6; 32], Direction::A2B, false);
        a.send(&mut RngRandom(&mut rng)).unwrap();
        let mut braid_end = a.clone();
        braid_end.braid.as_mut().unwrap().epoch = u64::MAX;
        assert_eq!(
            SpqrState::from_bytes(&braid_end.to_bytes()).err(),
            Some(SpqrError::StateDecode)
        );
        let mut chain_end = a.clone();
        let c = chain_end.chain.as_mut().unwrap();
        c.current_epoch = u64::MAX;
        c.send_epoch = u64::MAX;
        c.epochs[0].epoch = u64::MAX;
        assert_eq!(
            SpqrState::from_bytes(&chain_end.to_bytes()).err(),
            Some(SpqrError::StateDecode)
        );
    }

    /// Decoding saved state never panics, whatever the bytes.
    #[test]
    fn corrupt_saved_state_is_refused() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut a = SpqrState::new(SpqrPolicy::Required, &[1; 32], Direction::A2B, false);
        a.send(&mut RngRandom(&mut rng)).unwrap();
        let saved = a.to_bytes();
        for n in 0..saved.len() {
            assert!(SpqrState::from_bytes(&saved[..n]).is_err() || n == 0);
        }
        for _ in 0..2_000 {
            let mut bad = saved.clone();
            let at = rng.gen_range(0..bad.len());
            bad[at] = rng.gen();
            let _ = SpqrState::from_bytes(&bad);
        }
        let mut longer = saved;
        longer.push(0);
        assert_eq!(
            SpqrState::from_bytes(&longer).err(),
            Some(SpqrError::StateDecode)
        );
    }
}

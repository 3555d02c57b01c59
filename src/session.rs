//! Session state (one Double Ratchet conversation) and session records (the
//! current state plus archived previous states).
//!
//! Decryption plans every change on the side and commits it only after the
//! MAC, the decryption and every limit check have passed, so a failed
//! decrypt leaves the state exactly as it was, without cloning the state per
//! message.

use std::collections::VecDeque;

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::ratchet::{
    ChainKey, MessageKeySeed, RootKey, MAX_FORWARD_JUMPS, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS,
};
use crate::scrub;
use crate::spqr::{self, RngRandom, SpqrRandom, SpqrState};
use crate::wire::{
    CiphertextMessage, Extras, KyberPayload, PreKeySignalMessage, SignalMessage, SignalMessageRef,
};

/// A session record keeps at most this many previous (archived) states.
pub const MAX_ARCHIVED_STATES: usize = 40;

/// Our sending chain: our current ratchet key pair and its chain key.
#[derive(Clone, Debug)]
pub(crate) struct SenderChain {
    pub(crate) ratchet_key: KeyPair,
    pub(crate) chain_key: ChainKey,
}

/// A receiving chain: the other side's ratchet key, the chain key and the
/// message keys skipped on it (oldest first).
#[derive(Clone, Debug)]
pub(crate) struct ReceiverChain {
    pub(crate) ratchet_key: PublicKey,
    pub(crate) chain_key: ChainKey,
    pub(crate) skipped: VecDeque<MessageKeySeed>,
}

/// What the initiator repeats in every message until the other side answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PendingPreKey {
    pub(crate) pre_key_id: Option<u32>,
    pub(crate) signed_pre_key_id: u32,
    pub(crate) base_key: PublicKey,
    /// Version 4: the Kyber prekey id and the KEM ciphertext.
    pub(crate) kyber: Option<KyberPayload>,
}

/// One Double Ratchet conversation with one remote device.
#[derive(Clone, Debug)]
pub struct SessionState {
    pub(crate) version: u8,
    pub(crate) local_identity: PublicKey,
    pub(crate) remote_identity: PublicKey,
    pub(crate) root_key: RootKey,
    pub(crate) sender_chain: SenderChain,
    /// Oldest first.
    pub(crate) receiver_chains: VecDeque<ReceiverChain>,
    pub(crate) previous_counter: u32,
    pub(crate) pending_prekey: Option<PendingPreKey>,
    pub(crate) local_registration_id: u32,
    pub(crate) remote_registration_id: u32,
    /// The initiator's base key: identifies the X3DH run that built this state.
    pub(crate) alice_base_key: PublicKey,
    /// The SPQR state (empty: SPQR off, always so for version 3). It
    /// changes together with the Double Ratchet state, per message.
    pub(crate) spqr: SpqrState,
}

/// What a planned decryption would change, before the MAC is checked. A DH
/// turn is only half done here: the new sending ratchet key and its chain
/// are made after the MAC matched, so that a forged message costs one key
/// agreement per state tried, not three.
enum Plan {
    /// A stored skipped key is used.
    UseSkipped { chain: usize, position: usize },
    /// An existing receiving chain moves forward.
    Advance {
        chain: usize,
        chain_key: ChainKey,
        skipped: Vec<MessageKeySeed>,
    },
    /// A new ratchet key from the other side: the receiving half of a turn.
    HalfTurn(Box<HalfTurn>),
}

/// The receiving half of a DH turn: the new receiving chain (walked to the
/// message) and the root key after it.
struct HalfTurn {
    receiver: ReceiverChain,
    receiver_root: RootKey,
}

/// How a successful decryption changes a state; applied only on success.
enum ChainUpdate {
    /// A stored skipped key was used: remove it.
    UseSkipped { chain: usize, position: usize },
    /// An existing receiving chain moved forward.
    Advance {
        chain: usize,
        chain_key: ChainKey,
        skipped: Vec<MessageKeySeed>,
    },
    /// A new ratchet key from the other side: a DH turn. Boxed: the turn is
    /// rare and large, and the common updates should stay small to move.
    Turn(Box<Turn>),
}

/// The parts of a state a DH turn replaces.
struct Turn {
    receiver: ReceiverChain,
    root_key: RootKey,
    sender: SenderChain,
    previous_counter: u32,
}

/// Walks `chain_key` forward to `counter`, returning the message key seed at
/// `counter`, the chain key after it, and the seeds skipped on the way (only
/// the newest [`MAX_SKIPPED_KEYS`], as older ones would be evicted anyway).
fn walk_chain(
    chain_key: &ChainKey,
    counter: u32,
) -> Result<(MessageKeySeed, ChainKey, Vec<MessageKeySeed>)> {
    let jump = u64::from(counter) - u64::from(chain_key.index);
    if jump > u64::from(MAX_FORWARD_JUMPS) {
        return Err(Error::TooFarAhead {
            jump,
            limit: MAX_FORWARD_JUMPS,
        });
    }
    // The chain index after `counter` must fit: u32::MAX is never used
    // (the index would wrap to 0 and skipped keys would lie ahead of it).
    if counter == u32::MAX {
        return Err(Error::LimitExceeded(
            "message counter at the end of the chain",
        ));
    }
    let keep_from = counter.saturating_sub(MAX_SKIPPED_KEYS as u32);
    // Sized up front: a growing Vec would leave copies of seeds behind.
    let mut skipped = Vec::with_capacity((counter - chain_key.index.max(keep_from)) as usize);
    let mut ck = chain_key.clone();
    while ck.index < counter {
        let (seed, next) = ck.step();
        if seed.counter >= keep_from {
            skipped.push(seed);
        }
        ck = next;
    }
    let (seed, next) = ck.step();
    Ok((seed, next, skipped))
}

impl SessionState {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        version: u8,
        local_identity: PublicKey,
        remote_identity: PublicKey,
        root_key: RootKey,
        sender_ratchet: KeyPair,
        sender_chain_key: ChainKey,
        local_registration_id: u32,
        remote_registration_id: u32,
        alice_base_key: PublicKey,
    ) -> Self {
        SessionState {
            version,
            local_identity,
            remote_identity,
            root_key,
            sender_chain: SenderChain {
                ratchet_key: sender_ratchet,
                chain_key: sender_chain_key,
            },
            receiver_chains: VecDeque::new(),
            previous_counter: 0,
            pending_prekey: None,
            local_registration_id,
            remote_registration_id,
            alice_base_key,
            spqr: SpqrState::default(),
        }
    }

    pub(crate) fn add_receiver_chain(&mut self, ratchet_key: PublicKey, chain_key: ChainKey) {
        self.push_receiver_chain(ReceiverChain {
            ratchet_key,
            chain_key,
            skipped: VecDeque::new(),
        });
    }

    fn push_receiver_chain(&mut self, chain: ReceiverChain) {
        scrub::reserve(&mut self.receiver_chains, 1);
        self.receiver_chains.push_back(chain);
        let excess = self
            .receiver_chains
            .len()
            .saturating_sub(MAX_RECEIVER_CHAINS);
        scrub::drop_front(&mut self.receiver_chains, excess);
    }

    /// The session's message version: 3 (started with X3DH) or 4 (PQXDH).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The remote identity key of this session.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote_identity
    }

    /// The remote registration id.
    pub fn remote_registration_id(&self) -> u32 {
        self.remote_registration_id
    }

    /// The number of receiving chains held (at most
    /// [`MAX_RECEIVER_CHAINS`](crate::ratchet::MAX_RECEIVER_CHAINS)).
    pub fn receiver_chain_count(&self) -> usize {
        self.receiver_chains.len()
    }

    /// The number of skipped message keys held, over all receiving chains
    /// (at most [`MAX_SKIPPED_KEYS`](crate::ratchet::MAX_SKIPPED_KEYS) per
    /// chain).
    pub fn skipped_key_count(&self) -> usize {
        self.receiver_chains.iter().map(|c| c.skipped.len()).sum()
    }

    /// The session's SPQR state (inactive when SPQR is off).
    pub fn spqr(&self) -> &SpqrState {
        &self.spqr
    }

    /// True while this side has not yet received any message in this session
    /// (so it still sends prekey messages).
    pub fn has_unacknowledged_prekey_message(&self) -> bool {
        self.pending_prekey.is_some()
    }

    /// Encrypts `plaintext` and hands the message to `sink`; the sending
    /// chain advances only when both succeed (so a failing `sink`, such as
    /// an output allocation at the C boundary, leaves the state unchanged
    /// and a retry sends under the same counter instead of losing it).
    pub(crate) fn encrypt_then<T, E: From<Error>>(
        &mut self,
        plaintext: &[u8],
        sink: impl FnOnce(CiphertextMessage) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.encrypt_with_then(
            plaintext,
            &mut RngRandom(&mut rand::rngs::OsRng),
            None,
            sink,
        )
    }

    /// [`encrypt_then`](Self::encrypt_then) with SPQR's randomness from
    /// `spqr_rng`, and `addresses` (SignalMessage field 6, see
    /// [`addresses_field`](crate::wire::addresses_field)) written into
    /// prekey messages. The SPQR state and the sending chain advance
    /// together, only when everything (and `sink`) succeeded.
    pub(crate) fn encrypt_with_then<T, E: From<Error>>(
        &mut self,
        plaintext: &[u8],
        spqr_rng: &mut dyn SpqrRandom,
        addresses: Option<&[u8]>,
        sink: impl FnOnce(CiphertextMessage) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        if self.sender_chain.chain_key.index == u32::MAX {
            return Err(Error::LimitExceeded("sending chain exhausted").into());
        }
        let mut spqr = self.spqr.clone();
        let (pq_ratchet, pq_key) = spqr.send(spqr_rng).map_err(Error::from)?;
        let (seed, next) = self.sender_chain.chain_key.step();
        let extras = Extras {
            pq_ratchet: &pq_ratchet,
            addresses: addresses.filter(|_| self.pending_prekey.is_some()),
        };
        let message = SignalMessage::encrypt_with(
            self.version,
            &seed.derive_salted(pq_key.as_deref()),
            self.sender_chain.ratchet_key.public_key,
            self.sender_chain.chain_key.index,
            self.previous_counter,
            plaintext,
            extras,
            &self.local_identity,
            &self.remote_identity,
        )?;
        let message = match &self.pending_prekey {
            Some(p) => CiphertextMessage::PreKey(PreKeySignalMessage::new(
                p.kyber.clone(),
                self.local_registration_id,
                p.pre_key_id,
                p.signed_pre_key_id,
                p.base_key,
                self.local_identity,
                message,
            )),
            None => CiphertextMessage::Whisper(message),
        };
        let out = sink(message)?;
        self.sender_chain.chain_key = next;
        self.spqr = spqr;
        Ok(out)
    }

    /// Works out the message key for `message` and the change to apply on
    /// success, without touching `self`.
    fn plan(&self, message: &SignalMessageRef<'_>) -> Result<(MessageKeySeed, Plan)> {
        if message.version != self.version {
            return Err(Error::InvalidMessage(
                "message version differs from its session's version",
            ));
        }
        let counter = message.counter;
        match self.chain_index(&message.ratchet_key) {
            Some(chain) => {
                let rc = &self.receiver_chains[chain];
                if counter < rc.chain_key.index {
                    let position = rc
                        .skipped
                        .iter()
                        .position(|s| s.counter == counter)
                        .ok_or(Error::DuplicateMessage { counter })?;
                    Ok((
                        rc.skipped[position].clone(),
                        Plan::UseSkipped { chain, position },
                    ))
                } else {
                    let (seed, chain_key, skipped) = walk_chain(&rc.chain_key, counter)?;
                    Ok((
                        seed,
                        Plan::Advance {
                            chain,
                            chain_key,
                            skipped,
                        },
                    ))
                }
            }
            None => {
                if counter > MAX_FORWARD_JUMPS {
                    return Err(Error::TooFarAhead {
                        jump: u64::from(counter),
                        limit: MAX_FORWARD_JUMPS,
                    });
                }
                let their = &message.ratchet_key;
                let (receiver_root, receiver_ck) = self
                    .root_key
                    .create_chain(their, &self.sender_chain.ratchet_key.private_key)?;
                let (seed, chain_key, skipped) = walk_chain(&receiver_ck, counter)?;
                Ok((
                    seed,
                    Plan::HalfTurn(Box::new(HalfTurn {
                        receiver: ReceiverChain {
                            ratchet_key: *their,
                            chain_key,
                            skipped: skipped.into(),
                        },
                        receiver_root,
                    })),
                ))
            }
        }
    }

    /// Completes a plan once the message authenticated: a half turn gets
    /// its new sending ratchet key and chain.
    fn finish<R: RngCore + CryptoRng>(&self, plan: Plan, rng: &mut R) -> Result<ChainUpdate> {
        Ok(match plan {
            Plan::UseSkipped { chain, position } => ChainUpdate::UseSkipped { chain, position },
            Plan::Advance {
                chain,
                chain_key,
                skipped,
            } => ChainUpdate::Advance {
                chain,
                chain_key,
                skipped,
            },
            Plan::HalfTurn(half) => {
                let new_ratchet = KeyPair::generate(rng);
                let (root_key, sender_ck) = half
                    .receiver_root
                    .create_chain(&half.receiver.ratchet_key, &new_ratchet.private_key)?;
                // Cloned out of the box, which then drops (and zeroizes) its
                // own copies.
                ChainUpdate::Turn(Box::new(Turn {
                    receiver: half.receiver.clone(),
                    root_key,
                    sender: SenderChain {
                        ratchet_key: new_ratchet,
                        chain_key: sender_ck,
                    },
                    previous_counter: self.sender_chain.chain_key.index.saturating_sub(1),
                }))
            }
        })
    }

    fn commit(&mut self, update: ChainUpdate, spqr: SpqrState) {
        self.spqr = spqr;
        match update {
            ChainUpdate::UseSkipped { chain, position } => {
                scrub::remove(&mut self.receiver_chains[chain].skipped, position);
            }
            ChainUpdate::Advance {
                chain,
                chain_key,
                skipped,
            } => {
                let rc = &mut self.receiver_chains[chain];
                rc.chain_key = chain_key;
                scrub::extend(&mut rc.skipped, skipped);
                let excess = rc.skipped.len().saturating_sub(MAX_SKIPPED_KEYS);
                scrub::drop_front(&mut rc.skipped, excess);
            }
            ChainUpdate::Turn(mut turn) => {
                // Secrets are swapped or cloned out of the box, never moved:
                // the box then drops (and zeroizes) the replaced values and
                // its own copies instead of freeing heap memory holding keys.
                let excess = turn.receiver.skipped.len().saturating_sub(MAX_SKIPPED_KEYS);
                scrub::drop_front(&mut turn.receiver.skipped, excess);
                self.push_receiver_chain(ReceiverChain {
                    ratchet_key: turn.receiver.ratchet_key,
                    chain_key: turn.receiver.chain_key.clone(),
                    skipped: std::mem::take(&mut turn.receiver.skipped),
                });
                std::mem::swap(&mut self.root_key, &mut turn.root_key);
                std::mem::swap(&mut self.sender_chain, &mut turn.sender);
                self.previous_counter = turn.previous_counter;
            }
        }
        self.pending_prekey = None;
    }

    /// The position of the receiving chain for `ratchet_key`, if held.
    fn chain_index(&self, ratchet_key: &PublicKey) -> Option<usize> {
        self.receiver_chains
            .iter()
            .position(|c| c.ratchet_key == *ratchet_key)
    }

    /// The work, in chain steps, that trying `message` on this state costs
    /// before its MAC can be checked: a key agreement (as
    /// [`KEY_AGREEMENT_COST`] steps) and the walk of a new chain, or the walk
    /// of a held chain, plus the MAC over the message. Computed from the
    /// header alone, without cryptography.
    fn attempt_cost(&self, message: &SignalMessageRef<'_>) -> u64 {
        let counter = u64::from(message.counter);
        let steps = match self.chain_index(&message.ratchet_key) {
            Some(i) => counter.saturating_sub(u64::from(self.receiver_chains[i].chain_key.index)),
            None => KEY_AGREEMENT_COST + counter + 1,
        };
        steps + self.spqr.recv_cost(message.pq_ratchet) + mac_cost(message.serialized.len())
    }

    /// Decrypts `message` and hands the plaintext to `sink`; the state
    /// changes only when both succeed. On any error it is unchanged.
    pub(crate) fn decrypt_then<R, T, E>(
        &mut self,
        message: &SignalMessageRef<'_>,
        rng: &mut R,
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        let (plaintext, update, spqr) = self.open(message, rng)?;
        let out = sink(plaintext)?;
        self.commit(update, spqr);
        Ok(out)
    }

    /// Decrypts `message` without changing the state: the plaintext and the
    /// changes that [`decrypt_then`](Self::decrypt_then) commits. The Double
    /// Ratchet step comes first (its errors, a duplicate for one, before
    /// SPQR runs), then SPQR (SPQR.md §2.5), whose key salts the message
    /// keys, then the MAC.
    fn open<R: RngCore + CryptoRng>(
        &self,
        message: &SignalMessageRef<'_>,
        rng: &mut R,
    ) -> Result<(Vec<u8>, ChainUpdate, SpqrState)> {
        let (seed, plan) = self.plan(message)?;
        let (spqr, pq_key) = self.spqr.recv(message.pq_ratchet)?;
        let keys = seed.derive_salted(pq_key.as_deref());
        let plaintext = message.decrypt(&keys, &self.remote_identity, &self.local_identity)?;
        match self.finish(plan, rng) {
            Ok(update) => Ok((plaintext, update, spqr)),
            Err(e) => {
                drop(Zeroizing::new(plaintext));
                Err(e)
            }
        }
    }
}

/// A key agreement (X25519) costs about as much as this many chain steps
/// (each two HMAC-SHA256 over one block): 24-52 us against about 0.28 us
/// measured here, rounded up.
pub const KEY_AGREEMENT_COST: u64 = 200;

/// The cost, in chain steps, of a MAC over `len` message bytes: one chain
/// step hashes about 8 SHA-256 blocks (512 bytes).
fn mac_cost(len: usize) -> u64 {
    (len as u64).div_ceil(512)
}

/// Where the state that decrypted a prekey message comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StateSource {
    /// A new X3DH run.
    New,
    /// The record's current state.
    Current,
    /// The record's archived state at this position.
    Previous(usize),
}

/// All the states held for one remote device: the current one and up to
/// [`MAX_ARCHIVED_STATES`] previous ones (newest first).
#[derive(Clone, Debug, Default)]
pub struct SessionRecord {
    pub(crate) current: Option<SessionState>,
    pub(crate) previous: VecDeque<SessionState>,
}

impl SessionRecord {
    /// The current state, if any.
    pub fn current(&self) -> Option<&SessionState> {
        self.current.as_ref()
    }

    /// The number of archived states.
    pub fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// The archived states, newest first.
    pub fn previous_states(&self) -> impl Iterator<Item = &SessionState> {
        self.previous.iter()
    }

    /// Makes `state` current, archiving the old current state.
    pub(crate) fn promote_state(&mut self, state: SessionState) {
        if let Some(old) = self.current.replace(state) {
            scrub::reserve(&mut self.previous, 1);
            self.previous.push_front(old);
            self.previous.truncate(MAX_ARCHIVED_STATES);
        }
    }

    /// A copy of the state built from `base_key` (the X3DH run a prekey
    /// message names), and where it is, if one is held.
    pub(crate) fn state_from_base_key(
        &self,
        base_key: &PublicKey,
    ) -> Option<(StateSource, SessionState)> {
        if let Some(s) = self
            .current
            .as_ref()
            .filter(|s| s.alice_base_key == *base_key)
        {
            return Some((StateSource::Current, s.clone()));
        }
        self.previous
            .iter()
            .position(|s| s.alice_base_key == *base_key)
            .map(|i| (StateSource::Previous(i), self.previous[i].clone()))
    }

    /// Decrypts `message` and hands the plaintext to `sink`; the record
    /// changes only when both succeed (on error nothing changes).
    ///
    /// Which states are tried, so that the work a forged message causes is
    /// bounded independently of the number of archived states:
    /// - the one state that holds a receiving chain for the message's
    ///   ratchet key, if any (ratchet keys are fresh per session: an honest
    ///   message can come from no other state);
    /// - otherwise (a new ratchet key: a DH turn) the current state, then
    ///   archived states newest first while their summed
    ///   [`attempt_cost`](SessionState::attempt_cost) stays within one
    ///   honest message's worst case ([`MAX_FORWARD_JUMPS`] steps, a key
    ///   agreement and one MAC over the message). A message that only a
    ///   state beyond that budget could decrypt fails as the current state
    ///   failed.
    ///
    /// `trust` vets a state's remote identity: the current state must pass;
    /// a previous state that does not pass is never used, and when it alone
    /// would decrypt the message, its error is returned (as libsignal checks
    /// the identity of the state that decrypted).
    pub(crate) fn decrypt_then<R, T, E>(
        &mut self,
        message: &SignalMessageRef<'_>,
        rng: &mut R,
        trust: impl Fn(&PublicKey) -> Result<()>,
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        R: RngCore + CryptoRng,
        E: From<Error>,
    {
        let current = self
            .current
            .as_mut()
            .ok_or(Error::InvalidMessage("no current session state"))?;
        trust(&current.remote_identity)?;
        let key = &message.ratchet_key;
        if current.chain_index(key).is_some() {
            return current.decrypt_then(message, rng, sink);
        }
        if let Some(i) = self
            .previous
            .iter()
            .position(|s| s.chain_index(key).is_some())
        {
            let opened = self.open_previous(i, message, rng, &trust)?;
            return self.commit_previous(i, opened, sink);
        }
        let first_error = match current.open(message, rng) {
            Ok((plaintext, update, spqr)) => {
                let out = sink(plaintext)?;
                current.commit(update, spqr);
                return Ok(out);
            }
            Err(e) if !Self::try_older(&e) => return Err(e.into()),
            Err(e) => e,
        };
        let mut budget = u64::from(MAX_FORWARD_JUMPS)
            + 1
            + KEY_AGREEMENT_COST
            + spqr::MAX_RECV_COST
            + mac_cost(message.serialized.len());
        for i in 0..self.previous.len() {
            let cost = self.previous[i].attempt_cost(message);
            if cost > budget {
                break;
            }
            budget -= cost;
            match self.open_previous(i, message, rng, &trust) {
                Ok(opened) => return self.commit_previous(i, opened, sink),
                Err(e) if !Self::try_older(&e) => return Err(e.into()),
                Err(Error::UntrustedIdentity(name)) => {
                    return Err(Error::UntrustedIdentity(name).into())
                }
                Err(_) => {}
            }
        }
        Err(first_error.into())
    }

    /// Opens `message` with archived state `i`: an untrusted state that
    /// would decrypt it gives its trust error.
    fn open_previous<R: RngCore + CryptoRng>(
        &self,
        i: usize,
        message: &SignalMessageRef<'_>,
        rng: &mut R,
        trust: &impl Fn(&PublicKey) -> Result<()>,
    ) -> Result<(Vec<u8>, ChainUpdate, SpqrState)> {
        let state = &self.previous[i];
        let opened = state.open(message, rng)?;
        if let Err(untrusted) = trust(&state.remote_identity) {
            drop(Zeroizing::new(opened.0));
            return Err(untrusted);
        }
        Ok(opened)
    }

    /// Hands `plaintext` to `sink`, then applies `update` to archived state
    /// `i` and makes it current.
    fn commit_previous<T, E: From<Error>>(
        &mut self,
        i: usize,
        (plaintext, update, spqr): (Vec<u8>, ChainUpdate, SpqrState),
        sink: impl FnOnce(Vec<u8>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let out = sink(plaintext)?;
        self.previous[i].commit(update, spqr);
        if let Some(state) = scrub::remove(&mut self.previous, i) {
            self.promote_state(state);
        }
        Ok(out)
    }

    fn try_older(e: &Error) -> bool {
        !matches!(e, Error::DuplicateMessage { .. })
    }
}

#[cfg(test)]
#[path = "session_spqr_tests.rs"]
mod spqr_tests;

#[cfg(test)]
mod counter_limit_tests {
    use rand::rngs::OsRng;

    use crate::error::Error;
    use crate::store::{Address, ProtocolStore};

    /// The state of `store`'s current session with `addr`.
    fn state<'a>(store: &'a mut ProtocolStore, addr: &Address) -> &'a mut super::SessionState {
        store
            .sessions
            .get_mut(addr)
            .and_then(|c| c.get_mut().current.as_mut())
            .expect("session")
    }

    /// A chain that reaches the end of the counter space: the last counter,
    /// u32::MAX, is neither sent nor accepted (the chain index would wrap to
    /// 0, and the store would no longer restore its own saved bytes).
    #[test]
    fn chains_stop_before_the_counter_wraps() {
        let (a, b) = (Address::new("alice", 1), Address::new("bob", 1));
        let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
        alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
        let m = alice.encrypt(&b, b"hi").unwrap();
        bob.decrypt(&a, 3, m.serialize(), &mut OsRng).unwrap();
        let r = bob.encrypt(&a, b"hi").unwrap();
        alice.decrypt(&b, 2, r.serialize(), &mut OsRng).unwrap();
        let w = alice.encrypt(&b, b"new chain").unwrap();
        bob.decrypt(&a, 2, w.serialize(), &mut OsRng).unwrap();
        // Both ends of Alice's sending chain jump to u32::MAX - 3.
        let ck = {
            let s = state(&mut alice, &b);
            s.sender_chain.chain_key.index = u32::MAX - 3;
            s.sender_chain.chain_key.clone()
        };
        let bob_state = state(&mut bob, &a);
        let newest = bob_state.receiver_chains.len() - 1;
        bob_state.receiver_chains[newest].chain_key = ck;
        let msgs: Vec<_> = (0..3).map(|_| alice.encrypt(&b, b"x").unwrap()).collect();
        // The sending chain is exhausted: nothing changes.
        let before = alice.save();
        assert!(matches!(
            alice.encrypt(&b, b"x"),
            Err(Error::LimitExceeded(_))
        ));
        assert_eq!(alice.save(), before);
        // A counter of u32::MAX is refused; the last real one is fine.
        let mut forged = msgs[2].serialize().to_vec();
        // version, ratchet key field (2 + 33), counter tag, then the varint.
        assert_eq!(&forged[37..42], &[0xfe, 0xff, 0xff, 0xff, 0x0f]);
        forged[37] = 0xff;
        let before = bob.save();
        assert!(matches!(
            bob.decrypt(&a, 2, &forged, &mut OsRng),
            Err(Error::LimitExceeded(_))
        ));
        assert_eq!(bob.save(), before);
        bob.decrypt(&a, 2, msgs[2].serialize(), &mut OsRng).unwrap();
        // Skipped keys stay behind the chain: the store restores its save.
        let saved = bob.save();
        let back = ProtocolStore::restore(&saved).expect("a store restores its own save");
        assert_eq!(back.save(), saved);
        for m in &msgs[..2] {
            bob.decrypt(&a, 2, m.serialize(), &mut OsRng).unwrap();
        }
    }
}

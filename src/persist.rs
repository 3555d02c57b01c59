//! Saving a [`ProtocolStore`] to bytes and restoring it.
//!
//! The 4 bytes `RKST`, one format-version byte, then a protobuf
//! `StoreProto` (below). Format version 2 (written since PQXDH) adds Kyber
//! prekeys (fields 11–13), base-key uses (14: sessions from prekeys that stay after use), the session policy (15,
//! 16), version-4 session states and their pending Kyber ciphertexts;
//! session states may carry SPQR (field 14 of a state, absent when off:
//! older saves restore as sessions without SPQR); the store's SPQR policy
//! is field 17 (0 or absent: required, 1 offered, 2 off — saves from before
//! it restore as required, the default);
//! version 1 (the same message without them) still restores, with the
//! default (refusing) policy. Every field is validated on load:
//! key lengths and types, id ranges, the deployed limits (5 receiving
//! chains, 2,000 skipped keys per chain, 40 archived states, 65,536
//! sessions), and references between fields. Corrupt input gives
//! [`Error::CorruptState`].

use std::collections::{BTreeMap, VecDeque};

use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::kem::{KemKeyPair, KemSecretKey, KEM_CIPHERTEXT_LEN};
use crate::keys::{IdentityKeyPair, KeyPair, PrivateKey, PublicKey};
use crate::prekey::{check_prekey_id, KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use crate::ratchet::{ChainKey, MessageKeySeed, RootKey, MAX_RECEIVER_CHAINS, MAX_SKIPPED_KEYS};
use crate::session::{
    PendingPreKey, ReceiverChain, SenderChain, SessionRecord, SessionState, MAX_ARCHIVED_STATES,
};
use crate::spqr::{SpqrPolicy, SpqrState};
use crate::store::{
    check_address, check_device_id, check_registration_id, Address, BaseKeyUse, BaseKeyUses,
    ProtocolStore, Refused, SessionCell, SessionPolicy, TrustMap, MAX_SESSIONS,
};
use crate::wire::{KyberPayload, MESSAGE_VERSION, PQXDH_VERSION};

const MAGIC: &[u8; 4] = b"RKST";
/// The current saved-state format version.
pub(crate) const FORMAT_VERSION: u8 = 2;
/// The previous format version, still restored.
const FORMAT_VERSION_1: u8 = 1;

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct StoreProto {
    #[prost(bytes = "vec", tag = "1")]
    identity_private: Vec<u8>,
    #[prost(uint32, tag = "2")]
    registration_id: u32,
    #[prost(uint32, tag = "3")]
    device_id: u32,
    #[prost(message, repeated, tag = "4")]
    pub(crate) signed_prekeys: Vec<SignedPreKeyProto>,
    #[prost(uint32, optional, tag = "5")]
    current_signed_prekey: Option<u32>,
    #[prost(message, repeated, tag = "6")]
    pub(crate) prekeys: Vec<PreKeyProto>,
    #[prost(uint32, tag = "7")]
    next_prekey_id: u32,
    #[prost(uint32, tag = "8")]
    next_signed_prekey_id: u32,
    #[prost(message, repeated, tag = "9")]
    pub(crate) sessions: Vec<SessionEntryProto>,
    #[prost(message, repeated, tag = "10")]
    pub(crate) trusted: Vec<TrustProto>,
    #[prost(message, repeated, tag = "11")]
    pub(crate) kyber_prekeys: Vec<KyberPreKeyProto>,
    #[prost(uint32, optional, tag = "12")]
    current_last_resort: Option<u32>,
    #[prost(uint32, tag = "13")]
    next_kyber_prekey_id: u32,
    #[prost(message, repeated, tag = "14")]
    pub(crate) base_key_uses: Vec<BaseKeyUseProto>,
    #[prost(bool, tag = "15")]
    allow_v3_initiation: bool,
    #[prost(bool, tag = "16")]
    accept_v3_prekey_messages: bool,
    /// The SPQR policy: 0 (or absent) required, 1 offered, 2 off.
    #[prost(uint32, tag = "17")]
    spqr_policy: u32,
}

/// The SPQR policy's number in saved state. Required is 0, so that it is
/// not written and a store saved before the policy existed (no field 17)
/// restores as required, the default of a new store: sessions it holds keep
/// their SPQR state whatever the policy, so only sessions started after the
/// upgrade are affected, as with an upgraded official client.
fn spqr_policy_number(policy: SpqrPolicy) -> u32 {
    match policy {
        SpqrPolicy::Required => 0,
        SpqrPolicy::Offered => 1,
        SpqrPolicy::Off => 2,
    }
}

fn spqr_policy_from_number(n: u32) -> Result<SpqrPolicy> {
    match n {
        0 => Ok(SpqrPolicy::Required),
        1 => Ok(SpqrPolicy::Offered),
        2 => Ok(SpqrPolicy::Off),
        _ => Err(corrupt("unknown SPQR policy")),
    }
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct KyberPreKeyProto {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(bytes = "vec", tag = "2")]
    secret_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
    #[prost(uint64, tag = "4")]
    timestamp: u64,
    #[prost(bool, tag = "5")]
    last_resort: bool,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct BaseKeyUseProto {
    #[prost(uint32, tag = "1")]
    kyber_pre_key_id: u32,
    #[prost(uint32, tag = "2")]
    signed_pre_key_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    base_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct SignedPreKeyProto {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(bytes = "vec", tag = "2")]
    private_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
    #[prost(uint64, tag = "4")]
    timestamp: u64,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct PreKeyProto {
    #[prost(uint32, tag = "1")]
    id: u32,
    #[prost(bytes = "vec", tag = "2")]
    private_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct TrustProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "vec", tag = "2")]
    identity_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
pub(crate) struct SessionEntryProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(uint32, tag = "2")]
    device_id: u32,
    #[prost(message, optional, tag = "3")]
    current: Option<SessionStateProto>,
    #[prost(message, repeated, tag = "4")]
    previous: Vec<SessionStateProto>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct SessionStateProto {
    #[prost(uint32, tag = "1")]
    version: u32,
    #[prost(bytes = "vec", tag = "2")]
    local_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    remote_identity: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    root_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    sender_ratchet_private: Vec<u8>,
    #[prost(bytes = "vec", tag = "6")]
    sender_chain_key: Vec<u8>,
    #[prost(uint32, tag = "7")]
    sender_chain_index: u32,
    #[prost(message, repeated, tag = "8")]
    receiver_chains: Vec<ReceiverChainProto>,
    #[prost(uint32, tag = "9")]
    previous_counter: u32,
    /// Boxed: version 4 made it large, and most states have none. Holds no
    /// secret (ids, the public base key, the KEM ciphertext).
    #[prost(message, optional, boxed, tag = "10")]
    #[zeroize(skip)]
    pending_prekey: Option<Box<PendingPreKeyProto>>,
    #[prost(uint32, tag = "11")]
    local_registration_id: u32,
    #[prost(uint32, tag = "12")]
    remote_registration_id: u32,
    #[prost(bytes = "vec", tag = "13")]
    alice_base_key: Vec<u8>,
    /// The SPQR state in its own encoding (`SpqrState::to_bytes`); empty
    /// (absent) when SPQR is off, as in every save before SPQR.
    #[prost(bytes = "vec", tag = "14")]
    pq_ratchet_state: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct ReceiverChainProto {
    #[prost(bytes = "vec", tag = "1")]
    ratchet_key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    chain_key: Vec<u8>,
    #[prost(uint32, tag = "3")]
    index: u32,
    #[prost(message, repeated, tag = "4")]
    skipped: Vec<SkippedKeyProto>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct SkippedKeyProto {
    #[prost(uint32, tag = "1")]
    counter: u32,
    #[prost(bytes = "vec", tag = "2")]
    seed: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct PendingPreKeyProto {
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(uint32, tag = "2")]
    signed_pre_key_id: u32,
    #[prost(bytes = "vec", tag = "3")]
    base_key: Vec<u8>,
    #[prost(uint32, optional, tag = "4")]
    kyber_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "5")]
    kyber_ciphertext: Option<Vec<u8>>,
}

// ---- save ----------------------------------------------------------------

fn state_to_proto(s: &SessionState) -> SessionStateProto {
    SessionStateProto {
        version: u32::from(s.version),
        local_identity: s.local_identity.serialize().to_vec(),
        remote_identity: s.remote_identity.serialize().to_vec(),
        root_key: s.root_key.0.to_vec(),
        sender_ratchet_private: s.sender_chain.ratchet_key.private_key.serialize().to_vec(),
        sender_chain_key: s.sender_chain.chain_key.key.to_vec(),
        sender_chain_index: s.sender_chain.chain_key.index,
        receiver_chains: s
            .receiver_chains
            .iter()
            .map(|c| ReceiverChainProto {
                ratchet_key: c.ratchet_key.serialize().to_vec(),
                chain_key: c.chain_key.key.to_vec(),
                index: c.chain_key.index,
                skipped: c
                    .skipped
                    .iter()
                    .map(|k| SkippedKeyProto {
                        counter: k.counter,
                        seed: k.seed.to_vec(),
                    })
                    .collect(),
            })
            .collect(),
        previous_counter: s.previous_counter,
        pending_prekey: s.pending_prekey.as_ref().map(|p| {
            Box::new(PendingPreKeyProto {
                pre_key_id: p.pre_key_id,
                signed_pre_key_id: p.signed_pre_key_id,
                base_key: p.base_key.serialize().to_vec(),
                kyber_pre_key_id: p.kyber.as_ref().map(|k| k.pre_key_id),
                kyber_ciphertext: p.kyber.as_ref().map(|k| k.ciphertext.clone()),
            })
        }),
        local_registration_id: s.local_registration_id,
        remote_registration_id: s.remote_registration_id,
        alice_base_key: s.alice_base_key.serialize().to_vec(),
        pq_ratchet_state: s.spqr.to_bytes(),
    }
}

impl ProtocolStore {
    /// Saves the whole store (identity, prekeys, sessions, trust) to bytes.
    /// The bytes hold private keys: protect them at rest.
    ///
    /// A point-in-time snapshot even while other threads encrypt and decrypt
    /// through `&self`: every session's lock is taken (in the map's order,
    /// so two saves cannot deadlock) and then the trust map's, and all are
    /// held until the bytes are made.
    pub fn save(&self) -> Vec<u8> {
        let records: Vec<_> = self
            .sessions
            .iter()
            .map(|(address, cell)| (address, cell.lock()))
            .collect();
        let trusted = self.trusted.read();
        let proto = Zeroizing::new(StoreProto {
            signed_prekeys: self
                .signed_prekeys
                .values()
                .map(signed_prekey_to_proto)
                .collect(),
            prekeys: self.prekeys.values().map(prekey_to_proto).collect(),
            sessions: records
                .iter()
                .map(|(a, r)| session_to_proto(a, r))
                .collect(),
            trusted: trusted.iter().map(|(n, k)| trust_to_proto(n, k)).collect(),
            kyber_prekeys: self
                .kyber_prekeys
                .values()
                .map(kyber_prekey_to_proto)
                .collect(),
            base_key_uses: self
                .base_key_uses
                .iter()
                .map(base_key_use_to_proto)
                .collect(),
            ..meta_to_proto(self)
        });
        let mut out = Vec::with_capacity(5 + prost::Message::encoded_len(&*proto));
        out.extend_from_slice(MAGIC);
        out.push(FORMAT_VERSION);
        let _ = prost::Message::encode(&*proto, &mut out);
        out
    }

    /// Restores a store saved by [`save`](Self::save), validating every field.
    pub fn restore(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < 5 || &bytes[..4] != MAGIC {
            return Err(Error::CorruptState(
                "not a ratchetkit saved store (bad magic)",
            ));
        }
        let version = bytes[4];
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(Error::UnsupportedStateVersion(u32::from(version)));
        }
        let body = &bytes[5..];
        // Counts, record sizes and the wire format are checked before
        // anything is decoded, so decoding allocates at most
        // EXPANSION_BOUND times the input (see persist_scan).
        let counts = crate::persist_scan::scan_store(body)?;
        const _: () = assert!(crate::persist_scan::within_bound(
            &crate::persist_scan::DecodedSizes {
                entry: size_of::<SessionEntryProto>(),
                state: size_of::<SessionStateProto>(),
                chain: size_of::<ReceiverChainProto>(),
                skipped: size_of::<SkippedKeyProto>(),
                signed_prekey: size_of::<SignedPreKeyProto>(),
                prekey: size_of::<PreKeyProto>(),
                trust: size_of::<TrustProto>(),
                kyber_prekey: size_of::<KyberPreKeyProto>(),
                base_key_use: size_of::<BaseKeyUseProto>(),
                pending: size_of::<PendingPreKeyProto>(),
            }
        ));
        // Decoded in place, so that whatever was decoded is wiped however
        // restoring ends; the top-level lists never grow (no copies left).
        let mut proto = Zeroizing::new(StoreProto::default());
        proto.signed_prekeys.reserve_exact(counts.signed_prekeys);
        proto.prekeys.reserve_exact(counts.prekeys);
        proto.sessions.reserve_exact(counts.sessions);
        proto.trusted.reserve_exact(counts.trusted);
        proto.kyber_prekeys.reserve_exact(counts.kyber_prekeys);
        proto.base_key_uses.reserve_exact(counts.base_key_uses);
        prost::Message::merge(&mut *proto, crate::persist_scan::WipingBuf(body))
            .map_err(|_| Error::CorruptState("protobuf does not parse"))?;
        from_proto(&proto, version)
    }
}

// ---- restore ---------------------------------------------------------------

fn corrupt(what: &'static str) -> Error {
    Error::CorruptState(what)
}

fn public(bytes: &[u8], what: &'static str) -> Result<PublicKey> {
    PublicKey::deserialize(bytes).map_err(|_| corrupt(what))
}

fn private(bytes: &[u8], what: &'static str) -> Result<PrivateKey> {
    if bytes.len() != 32 {
        return Err(corrupt(what));
    }
    PrivateKey::deserialize(bytes).map_err(|_| corrupt(what))
}

fn key32(bytes: &[u8], what: &'static str) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| corrupt(what))
}

/// Runs one of the checks the store applies when it creates state, as a
/// check of saved state: the store restores exactly what it can create.
fn shared(check: Result<()>, what: &'static str) -> Result<()> {
    check.map_err(|_| corrupt(what))
}

fn prekey_id(id: u32, what: &'static str) -> Result<u32> {
    check_prekey_id(id).map_err(|_| corrupt(what))
}

fn state_from_proto(p: &SessionStateProto) -> Result<SessionState> {
    let version = match u8::try_from(p.version) {
        Ok(v @ (MESSAGE_VERSION | PQXDH_VERSION)) => v,
        _ => return Err(corrupt("session version is not 3 or 4")),
    };
    if p.receiver_chains.len() > MAX_RECEIVER_CHAINS {
        return Err(corrupt("more than 5 receiving chains"));
    }
    let sender_private = private(&p.sender_ratchet_private, "sender ratchet key")?;
    let mut receiver_chains = VecDeque::with_capacity(p.receiver_chains.len());
    for c in &p.receiver_chains {
        if c.skipped.len() > MAX_SKIPPED_KEYS {
            return Err(corrupt("more than 2000 skipped keys on a chain"));
        }
        let mut skipped = VecDeque::with_capacity(c.skipped.len());
        for k in &c.skipped {
            if k.counter >= c.index {
                return Err(corrupt("skipped key not behind its chain"));
            }
            skipped.push_back(MessageKeySeed {
                seed: key32(&k.seed, "skipped message key")?,
                counter: k.counter,
            });
        }
        receiver_chains.push_back(ReceiverChain {
            ratchet_key: public(&c.ratchet_key, "receiving chain ratchet key")?,
            chain_key: ChainKey {
                key: key32(&c.chain_key, "receiving chain key")?,
                index: c.index,
            },
            skipped,
        });
    }
    let pending_prekey = match &p.pending_prekey {
        Some(pp) => Some(PendingPreKey {
            pre_key_id: match pp.pre_key_id {
                Some(id) => Some(prekey_id(id, "pending prekey id")?),
                None => None,
            },
            signed_pre_key_id: prekey_id(pp.signed_pre_key_id, "pending signed prekey id")?,
            base_key: public(&pp.base_key, "pending base key")?,
            kyber: match (version, pp.kyber_pre_key_id, &pp.kyber_ciphertext) {
                (MESSAGE_VERSION, None, None) => None,
                (PQXDH_VERSION, Some(id), Some(ct)) if ct.len() == KEM_CIPHERTEXT_LEN => {
                    Some(KyberPayload {
                        pre_key_id: prekey_id(id, "pending Kyber prekey id")?,
                        ciphertext: ct.clone(),
                    })
                }
                _ => {
                    return Err(corrupt(
                        "pending Kyber prekey does not match the session version",
                    ))
                }
            },
        }),
        None => None,
    };
    Ok(SessionState {
        version,
        local_identity: public(&p.local_identity, "session local identity")?,
        remote_identity: public(&p.remote_identity, "session remote identity")?,
        root_key: RootKey(key32(&p.root_key, "root key")?),
        sender_chain: SenderChain {
            ratchet_key: KeyPair::from_private_key(sender_private),
            chain_key: ChainKey {
                key: key32(&p.sender_chain_key, "sending chain key")?,
                index: p.sender_chain_index,
            },
        },
        receiver_chains,
        previous_counter: p.previous_counter,
        pending_prekey,
        local_registration_id: p.local_registration_id,
        remote_registration_id: p.remote_registration_id,
        alice_base_key: public(&p.alice_base_key, "session base key")?,
        spqr: match (version, p.pq_ratchet_state.is_empty()) {
            (_, true) => SpqrState::default(),
            (PQXDH_VERSION, false) => SpqrState::from_bytes(&p.pq_ratchet_state)
                .map_err(|_| corrupt("post-quantum ratchet state"))?,
            _ => return Err(corrupt("post-quantum ratchet state in a version-3 session")),
        },
    })
}

fn from_proto(p: &StoreProto, format_version: u8) -> Result<ProtocolStore> {
    if format_version == FORMAT_VERSION_1
        && (!p.kyber_prekeys.is_empty()
            || p.current_last_resort.is_some()
            || p.next_kyber_prekey_id != 0
            || !p.base_key_uses.is_empty()
            || p.allow_v3_initiation
            || p.accept_v3_prekey_messages)
    {
        return Err(corrupt("format version 1 with version-2 fields"));
    }
    let mut store = meta_from_proto(p, format_version)?;
    for s in &p.signed_prekeys {
        let record = signed_prekey_from_proto(s)?;
        if store.signed_prekeys.insert(record.id, record).is_some() {
            return Err(corrupt("duplicate signed prekey id"));
        }
    }
    if let Some(id) = store.current_signed_prekey {
        if !store.signed_prekeys.contains_key(&id) {
            return Err(corrupt("current signed prekey is not held"));
        }
    }
    for k in &p.prekeys {
        let record = prekey_from_proto(k)?;
        if store.prekeys.insert(record.id, record).is_some() {
            return Err(corrupt("duplicate prekey id"));
        }
    }
    if p.sessions.len() > MAX_SESSIONS {
        return Err(corrupt("more than 65536 sessions"));
    }
    for e in &p.sessions {
        let (address, record) = session_from_proto(e)?;
        if store
            .sessions
            .insert(address, SessionCell::new(record))
            .is_some()
        {
            return Err(corrupt("duplicate session address"));
        }
    }
    let trusted = store.trusted.get_mut();
    for t in &p.trusted {
        let (name, key) = trust_from_proto(t)?;
        if trusted.insert(name, key).is_some() {
            return Err(corrupt("duplicate trusted name"));
        }
    }
    for k in &p.kyber_prekeys {
        let record = kyber_prekey_from_proto(k)?;
        if store.kyber_prekeys.insert(record.id, record).is_some() {
            return Err(corrupt("duplicate Kyber prekey id"));
        }
    }
    if let Some(id) = store.current_last_resort {
        if !store.kyber_prekeys.get(&id).is_some_and(|k| k.last_resort) {
            return Err(corrupt("current last-resort Kyber prekey is not held"));
        }
    }
    for u in &p.base_key_uses {
        let used = base_key_use_from_proto(u)?;
        if store.base_key_uses.check(&used) == Err(Refused::Full) {
            return Err(corrupt("too many base-key uses for one prekey"));
        }
        if !store.base_key_uses.insert(used) {
            return Err(corrupt("duplicate base-key use"));
        }
    }
    Ok(store)
}

// ---- one record at a time (the saved format's pieces, also the rows of
// the durable store) --------------------------------------------------------

/// What [`meta_to_proto`] encodes, without the encoding (the identity by
/// its public key, from which the private key is never told apart: a
/// store's identity never changes): two stores with equal fields encode to
/// the same meta row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MetaFields {
    identity: PublicKey,
    registration_id: u32,
    device_id: u32,
    current_signed_prekey: Option<u32>,
    next_prekey_id: u32,
    next_signed_prekey_id: u32,
    current_last_resort: Option<u32>,
    next_kyber_prekey_id: u32,
    allow_v3_initiation: bool,
    accept_v3_prekey_messages: bool,
    spqr_policy: u32,
}

/// The fields of `store` that [`meta_to_proto`] encodes. The proto is
/// built from them, so a field added there is compared here too.
pub(crate) fn meta_fields(store: &ProtocolStore) -> MetaFields {
    MetaFields {
        identity: *store.identity.public_key(),
        registration_id: store.registration_id,
        device_id: store.device_id,
        current_signed_prekey: store.current_signed_prekey,
        next_prekey_id: store.next_prekey_id,
        next_signed_prekey_id: store.next_signed_prekey_id,
        current_last_resort: store.current_last_resort,
        next_kyber_prekey_id: store.next_kyber_prekey_id,
        allow_v3_initiation: store.policy.allow_v3_initiation,
        accept_v3_prekey_messages: store.policy.accept_v3_prekey_messages,
        spqr_policy: spqr_policy_number(store.spqr_policy),
    }
}

/// The store's scalar fields (identity, ids, counters, policy) as a
/// `StoreProto` with every list empty.
pub(crate) fn meta_to_proto(store: &ProtocolStore) -> StoreProto {
    let MetaFields {
        identity: _,
        registration_id,
        device_id,
        current_signed_prekey,
        next_prekey_id,
        next_signed_prekey_id,
        current_last_resort,
        next_kyber_prekey_id,
        allow_v3_initiation,
        accept_v3_prekey_messages,
        spqr_policy,
    } = meta_fields(store);
    StoreProto {
        // The public identity key is derived from the private one.
        identity_private: store.identity.private_key().serialize().to_vec(),
        registration_id,
        device_id,
        current_signed_prekey,
        next_prekey_id,
        next_signed_prekey_id,
        current_last_resort,
        next_kyber_prekey_id,
        allow_v3_initiation,
        accept_v3_prekey_messages,
        spqr_policy,
        ..StoreProto::default()
    }
}

/// A store holding only the scalar fields of `p` (no prekeys, sessions or
/// trust). The current signed and last-resort ids are taken as they are:
/// the caller checks them against the records it holds.
pub(crate) fn meta_from_proto(p: &StoreProto, format_version: u8) -> Result<ProtocolStore> {
    let identity = IdentityKeyPair::from_private_key(private(&p.identity_private, "identity key")?);
    shared(
        check_registration_id(p.registration_id),
        "registration id out of range",
    )?;
    shared(check_device_id(p.device_id), "device id is 0")?;
    let current_signed_prekey = match p.current_signed_prekey {
        Some(id) => Some(prekey_id(id, "current signed prekey id")?),
        None => None,
    };
    let current_last_resort = match p.current_last_resort {
        Some(id) => Some(prekey_id(id, "current last-resort Kyber prekey id")?),
        None => None,
    };
    Ok(ProtocolStore {
        identity,
        registration_id: p.registration_id,
        device_id: p.device_id,
        signed_prekeys: BTreeMap::new(),
        current_signed_prekey,
        prekeys: BTreeMap::new(),
        next_prekey_id: prekey_id(p.next_prekey_id, "next prekey id")?,
        next_signed_prekey_id: prekey_id(p.next_signed_prekey_id, "next signed prekey id")?,
        kyber_prekeys: BTreeMap::new(),
        current_last_resort,
        next_kyber_prekey_id: match format_version {
            FORMAT_VERSION_1 => 1,
            _ => prekey_id(p.next_kyber_prekey_id, "next Kyber prekey id")?,
        },
        base_key_uses: BaseKeyUses::default(),
        policy: SessionPolicy {
            allow_v3_initiation: p.allow_v3_initiation,
            accept_v3_prekey_messages: p.accept_v3_prekey_messages,
        },
        spqr_policy: spqr_policy_from_number(p.spqr_policy)?,
        prekeys_generation: 0,
        sessions: BTreeMap::new(),
        trusted: TrustMap::new(BTreeMap::new()),
        unloaded_sessions: 0,
        session_cap: MAX_SESSIONS,
    })
}

pub(crate) fn signed_prekey_to_proto(s: &SignedPreKeyRecord) -> SignedPreKeyProto {
    SignedPreKeyProto {
        id: s.id,
        private_key: s.key_pair.private_key.serialize().to_vec(),
        signature: s.signature.to_vec(),
        timestamp: s.timestamp,
    }
}

pub(crate) fn signed_prekey_from_proto(s: &SignedPreKeyProto) -> Result<SignedPreKeyRecord> {
    Ok(SignedPreKeyRecord {
        id: prekey_id(s.id, "signed prekey id")?,
        key_pair: KeyPair::from_private_key(private(&s.private_key, "signed prekey")?),
        signature: <[u8; 64]>::try_from(s.signature.as_slice())
            .map_err(|_| corrupt("signed prekey signature length"))?,
        timestamp: s.timestamp,
    })
}

pub(crate) fn prekey_to_proto(p: &PreKeyRecord) -> PreKeyProto {
    PreKeyProto {
        id: p.id,
        private_key: p.key_pair.private_key.serialize().to_vec(),
    }
}

pub(crate) fn prekey_from_proto(k: &PreKeyProto) -> Result<PreKeyRecord> {
    Ok(PreKeyRecord {
        id: prekey_id(k.id, "prekey id")?,
        key_pair: KeyPair::from_private_key(private(&k.private_key, "prekey")?),
    })
}

pub(crate) fn kyber_prekey_to_proto(k: &KyberPreKeyRecord) -> KyberPreKeyProto {
    KyberPreKeyProto {
        id: k.id,
        secret_key: k.key_pair.secret_key.serialize().to_vec(),
        signature: k.signature.to_vec(),
        timestamp: k.timestamp,
        last_resort: k.last_resort,
    }
}

pub(crate) fn kyber_prekey_from_proto(k: &KyberPreKeyProto) -> Result<KyberPreKeyRecord> {
    let secret_key =
        KemSecretKey::deserialize(&k.secret_key).map_err(|_| corrupt("Kyber prekey secret key"))?;
    Ok(KyberPreKeyRecord {
        id: prekey_id(k.id, "Kyber prekey id")?,
        key_pair: KemKeyPair::from_secret_key(secret_key)
            .map_err(|_| corrupt("Kyber prekey secret key"))?,
        signature: <[u8; 64]>::try_from(k.signature.as_slice())
            .map_err(|_| corrupt("Kyber prekey signature length"))?,
        timestamp: k.timestamp,
        last_resort: k.last_resort,
    })
}

pub(crate) fn session_to_proto(address: &Address, r: &SessionRecord) -> SessionEntryProto {
    SessionEntryProto {
        name: address.name.clone(),
        device_id: address.device_id,
        current: r.current.as_ref().map(state_to_proto),
        previous: r.previous.iter().map(state_to_proto).collect(),
    }
}

pub(crate) fn session_from_proto(e: &SessionEntryProto) -> Result<(Address, SessionRecord)> {
    let address = Address::new(e.name.clone(), e.device_id);
    shared(check_address(&address), "session device id is 0")?;
    if e.previous.len() > MAX_ARCHIVED_STATES {
        return Err(corrupt("more than 40 archived session states"));
    }
    let record = SessionRecord {
        current: match &e.current {
            Some(s) => Some(state_from_proto(s)?),
            None => None,
        },
        previous: e
            .previous
            .iter()
            .map(state_from_proto)
            .collect::<Result<VecDeque<_>>>()?,
    };
    Ok((address, record))
}

pub(crate) fn trust_to_proto(name: &str, key: &PublicKey) -> TrustProto {
    TrustProto {
        name: name.to_owned(),
        identity_key: key.serialize().to_vec(),
    }
}

pub(crate) fn trust_from_proto(t: &TrustProto) -> Result<(String, PublicKey)> {
    Ok((
        t.name.clone(),
        public(&t.identity_key, "trusted identity key")?,
    ))
}

pub(crate) fn base_key_use_to_proto(u: &BaseKeyUse) -> BaseKeyUseProto {
    BaseKeyUseProto {
        kyber_pre_key_id: u.kyber_pre_key_id,
        signed_pre_key_id: u.signed_pre_key_id,
        base_key: PublicKey::from_u_coordinate(u.base_key)
            .map(|k| k.serialize().to_vec())
            .unwrap_or_default(),
    }
}

pub(crate) fn base_key_use_from_proto(u: &BaseKeyUseProto) -> Result<BaseKeyUse> {
    Ok(BaseKeyUse {
        // 0: a version-3 use of the signed prekey alone.
        kyber_pre_key_id: match u.kyber_pre_key_id {
            0 => 0,
            id => prekey_id(id, "base-key use Kyber prekey id")?,
        },
        signed_pre_key_id: prekey_id(u.signed_pre_key_id, "base-key use signed prekey id")?,
        base_key: *public(&u.base_key, "base-key use base key")?.u_coordinate(),
    })
}

/// One session state as saved (tests compare states before and after).
#[cfg(test)]
pub(crate) fn state_bytes(s: &SessionState) -> Vec<u8> {
    prost::Message::encode_to_vec(&state_to_proto(s))
}

//! Wire messages: `SignalMessage` ("whisper", type 2) and
//! `PreKeySignalMessage` (type 3), protobuf through prost, byte-exact with the
//! official library.

use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::ratchet::hmac_sha256;

/// The message version this library speaks.
pub const MESSAGE_VERSION: u8 = 3;
/// The version byte written on every message: `(3 << 4) | 3`.
pub const VERSION_BYTE: u8 = (MESSAGE_VERSION << 4) | MESSAGE_VERSION;
/// Length of the truncated MAC that ends a `SignalMessage`.
pub const MAC_LEN: usize = 8;
/// Message type number of a `SignalMessage` as applications use it.
pub const WHISPER_TYPE: u8 = 2;
/// Message type number of a `PreKeySignalMessage` as applications use it.
pub const PREKEY_TYPE: u8 = 3;
/// The largest serialized message (whisper or prekey) accepted: 64 MiB.
/// Longer input is rejected with [`Error::LimitExceeded`] before any parsing
/// or copying.
pub const MAX_MESSAGE_LEN: usize = 64 << 20;
/// The largest plaintext [`encrypt`](crate::ProtocolStore::encrypt) accepts:
/// [`MAX_MESSAGE_LEN`] less 4 KiB for the header, padding and MAC, so that
/// every message produced is accepted by the other side.
pub const MAX_PLAINTEXT_LEN: usize = MAX_MESSAGE_LEN - 4096;

fn check_length(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(Error::LimitExceeded("message longer than 64 MiB"));
    }
    Ok(())
}

#[derive(Clone, PartialEq, prost::Message)]
struct SignalMessageProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    ratchet_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    counter: Option<u32>,
    #[prost(uint32, optional, tag = "3")]
    previous_counter: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    ciphertext: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PreKeySignalMessageProto {
    #[prost(uint32, optional, tag = "5")]
    registration_id: Option<u32>,
    #[prost(uint32, optional, tag = "1")]
    pre_key_id: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    signed_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "2")]
    base_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "3")]
    identity_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "4")]
    message: Option<Vec<u8>>,
}

fn check_version(byte: u8) -> Result<u8> {
    let version = byte >> 4;
    if version < MESSAGE_VERSION {
        return Err(Error::LegacyMessage(version));
    }
    if version > MESSAGE_VERSION {
        return Err(Error::UnrecognizedMessageVersion(version));
    }
    Ok(version)
}

fn message_key(bytes: Option<Vec<u8>>, what: &'static str) -> Result<PublicKey> {
    let bytes = bytes.ok_or(Error::InvalidMessage(what))?;
    PublicKey::deserialize(&bytes).map_err(|_| Error::InvalidMessage(what))
}

/// A `SignalMessage`: `version || protobuf || MAC(8)`.
#[derive(Clone, Debug)]
pub struct SignalMessage {
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    ciphertext: Vec<u8>,
    serialized: Vec<u8>,
}

impl SignalMessage {
    /// Builds and MACs a message (version 3).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        mac_key: &[u8; 32],
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        ciphertext: Vec<u8>,
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> Self {
        let proto = SignalMessageProto {
            ratchet_key: Some(ratchet_key.serialize().to_vec()),
            counter: Some(counter),
            previous_counter: Some(previous_counter),
            ciphertext: Some(ciphertext),
        };
        let mut serialized = Vec::with_capacity(1 + prost::Message::encoded_len(&proto) + MAC_LEN);
        serialized.push(VERSION_BYTE);
        // Encoding into a Vec only fails on lack of capacity, which a Vec grows.
        let _ = prost::Message::encode(&proto, &mut serialized);
        let mac = compute_mac(mac_key, sender_identity, receiver_identity, &serialized);
        serialized.extend_from_slice(&mac);
        let ciphertext = proto.ciphertext.unwrap_or_default();
        SignalMessage {
            ratchet_key,
            counter,
            previous_counter,
            ciphertext,
            serialized,
        }
    }

    /// Parses a serialized message strictly. The MAC is checked later, by the
    /// session that holds the key.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        check_length(bytes)?;
        if bytes.len() < 1 + MAC_LEN {
            return Err(Error::InvalidMessage("SignalMessage too short"));
        }
        check_version(bytes[0])?;
        let body = &bytes[1..bytes.len() - MAC_LEN];
        let proto: SignalMessageProto = prost::Message::decode(body)
            .map_err(|_| Error::InvalidMessage("SignalMessage protobuf does not parse"))?;
        let ratchet_key = message_key(
            proto.ratchet_key,
            "SignalMessage ratchet key missing or invalid",
        )?;
        let counter = proto
            .counter
            .ok_or(Error::InvalidMessage("SignalMessage counter missing"))?;
        let ciphertext = proto
            .ciphertext
            .ok_or(Error::InvalidMessage("SignalMessage ciphertext missing"))?;
        Ok(SignalMessage {
            ratchet_key,
            counter,
            previous_counter: proto.previous_counter.unwrap_or(0),
            ciphertext,
            serialized: bytes.to_vec(),
        })
    }

    /// Checks the truncated MAC in constant time.
    pub(crate) fn verify_mac(
        &self,
        mac_key: &[u8; 32],
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> bool {
        let split = self.serialized.len() - MAC_LEN;
        let expected = compute_mac(
            mac_key,
            sender_identity,
            receiver_identity,
            &self.serialized[..split],
        );
        bool::from(expected.ct_eq(&self.serialized[split..]))
    }

    /// The sender's ratchet key.
    pub fn ratchet_key(&self) -> &PublicKey {
        &self.ratchet_key
    }
    /// The message's index in its chain.
    pub fn counter(&self) -> u32 {
        self.counter
    }
    /// The length of the sender's previous sending chain.
    pub fn previous_counter(&self) -> u32 {
        self.previous_counter
    }
    /// The AES-CBC ciphertext.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
    /// The serialized bytes.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
    /// Consumes the message, giving its serialized bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.serialized
    }
}

fn compute_mac(
    mac_key: &[u8; 32],
    sender_identity: &PublicKey,
    receiver_identity: &PublicKey,
    versioned_body: &[u8],
) -> [u8; MAC_LEN] {
    let full = hmac_sha256(
        mac_key,
        &[
            &sender_identity.serialize(),
            &receiver_identity.serialize(),
            versioned_body,
        ],
    );
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// A `PreKeySignalMessage`: `version || protobuf`, wrapping a `SignalMessage`.
#[derive(Clone, Debug)]
pub struct PreKeySignalMessage {
    registration_id: u32,
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: PublicKey,
    identity_key: PublicKey,
    message: SignalMessage,
    serialized: Vec<u8>,
}

impl PreKeySignalMessage {
    /// Wraps `message` (version 3).
    pub(crate) fn new(
        registration_id: u32,
        pre_key_id: Option<u32>,
        signed_pre_key_id: u32,
        base_key: PublicKey,
        identity_key: PublicKey,
        message: SignalMessage,
    ) -> Self {
        let proto = PreKeySignalMessageProto {
            registration_id: Some(registration_id),
            pre_key_id,
            signed_pre_key_id: Some(signed_pre_key_id),
            base_key: Some(base_key.serialize().to_vec()),
            identity_key: Some(identity_key.serialize().to_vec()),
            message: Some(message.serialize().to_vec()),
        };
        let mut serialized = Vec::with_capacity(1 + prost::Message::encoded_len(&proto));
        serialized.push(VERSION_BYTE);
        let _ = prost::Message::encode(&proto, &mut serialized);
        PreKeySignalMessage {
            registration_id,
            pre_key_id,
            signed_pre_key_id,
            base_key,
            identity_key,
            message,
            serialized,
        }
    }

    /// Parses a serialized prekey message strictly (including the inner message).
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        check_length(bytes)?;
        let Some((&first, body)) = bytes.split_first() else {
            return Err(Error::InvalidMessage("PreKeySignalMessage is empty"));
        };
        check_version(first)?;
        let proto: PreKeySignalMessageProto = prost::Message::decode(body)
            .map_err(|_| Error::InvalidMessage("PreKeySignalMessage protobuf does not parse"))?;
        let signed_pre_key_id = proto.signed_pre_key_id.ok_or(Error::InvalidMessage(
            "PreKeySignalMessage signed prekey id missing",
        ))?;
        let base_key = message_key(
            proto.base_key,
            "PreKeySignalMessage base key missing or invalid",
        )?;
        let identity_key = message_key(
            proto.identity_key,
            "PreKeySignalMessage identity key missing or invalid",
        )?;
        let inner = proto.message.ok_or(Error::InvalidMessage(
            "PreKeySignalMessage inner message missing",
        ))?;
        let message = SignalMessage::deserialize(&inner)?;
        Ok(PreKeySignalMessage {
            registration_id: proto.registration_id.unwrap_or(0),
            pre_key_id: proto.pre_key_id,
            signed_pre_key_id,
            base_key,
            identity_key,
            message,
            serialized: bytes.to_vec(),
        })
    }

    /// The sender's registration id.
    pub fn registration_id(&self) -> u32 {
        self.registration_id
    }
    /// The one-time prekey used, if any.
    pub fn pre_key_id(&self) -> Option<u32> {
        self.pre_key_id
    }
    /// The signed prekey used.
    pub fn signed_pre_key_id(&self) -> u32 {
        self.signed_pre_key_id
    }
    /// The sender's base (ephemeral) key.
    pub fn base_key(&self) -> &PublicKey {
        &self.base_key
    }
    /// The sender's identity key.
    pub fn identity_key(&self) -> &PublicKey {
        &self.identity_key
    }
    /// The wrapped `SignalMessage`.
    pub fn message(&self) -> &SignalMessage {
        &self.message
    }
    /// The serialized bytes.
    pub fn serialize(&self) -> &[u8] {
        &self.serialized
    }
    /// Consumes the message, giving its serialized bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.serialized
    }
}

/// A message produced by encryption: whisper or prekey.
#[derive(Clone, Debug)]
pub enum CiphertextMessage {
    /// A `SignalMessage` (type 2).
    Whisper(SignalMessage),
    /// A `PreKeySignalMessage` (type 3).
    PreKey(PreKeySignalMessage),
}

impl CiphertextMessage {
    /// The application-level type number: 2 (whisper) or 3 (prekey).
    pub fn message_type(&self) -> u8 {
        match self {
            CiphertextMessage::Whisper(_) => WHISPER_TYPE,
            CiphertextMessage::PreKey(_) => PREKEY_TYPE,
        }
    }
    /// The serialized bytes.
    pub fn serialize(&self) -> &[u8] {
        match self {
            CiphertextMessage::Whisper(m) => m.serialize(),
            CiphertextMessage::PreKey(m) => m.serialize(),
        }
    }
    /// Consumes the message, giving its serialized bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            CiphertextMessage::Whisper(m) => m.into_bytes(),
            CiphertextMessage::PreKey(m) => m.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyPair;
    use rand::rngs::OsRng;

    fn sample() -> (SignalMessage, PublicKey, PublicKey, [u8; 32]) {
        let a = KeyPair::generate(&mut OsRng).public_key;
        let b = KeyPair::generate(&mut OsRng).public_key;
        let rk = KeyPair::generate(&mut OsRng).public_key;
        let key = [9u8; 32];
        (
            SignalMessage::new(&key, rk, 7, 3, vec![1, 2, 3], &a, &b),
            a,
            b,
            key,
        )
    }

    #[test]
    fn signal_message_round_trip_and_mac() {
        let (m, a, b, key) = sample();
        assert_eq!(m.serialize()[0], 0x33);
        let p = SignalMessage::deserialize(m.serialize()).unwrap();
        assert_eq!(p.counter(), 7);
        assert_eq!(p.previous_counter(), 3);
        assert_eq!(p.ciphertext(), &[1, 2, 3]);
        assert!(p.verify_mac(&key, &a, &b));
        assert!(!p.verify_mac(&key, &b, &a));
        assert!(!p.verify_mac(&[8u8; 32], &a, &b));
    }

    #[test]
    fn versions_are_checked() {
        let (m, ..) = sample();
        let mut bytes = m.serialize().to_vec();
        bytes[0] = 0x34; // libsignal 0.72 writes this: accepted
        assert!(SignalMessage::deserialize(&bytes).is_ok());
        bytes[0] = 0x22;
        assert_eq!(
            SignalMessage::deserialize(&bytes).unwrap_err(),
            Error::LegacyMessage(2)
        );
        bytes[0] = 0x44;
        assert_eq!(
            SignalMessage::deserialize(&bytes).unwrap_err(),
            Error::UnrecognizedMessageVersion(4)
        );
    }

    #[test]
    fn truncations_never_panic() {
        let (m, a, b, _) = sample();
        let pk = PreKeySignalMessage::new(1, None, 2, a, b, m.clone());
        for bytes in [m.serialize(), pk.serialize()] {
            for n in 0..bytes.len() {
                let _ = SignalMessage::deserialize(&bytes[..n]);
                let _ = PreKeySignalMessage::deserialize(&bytes[..n]);
            }
        }
        assert!(SignalMessage::deserialize(&[]).is_err());
        assert!(PreKeySignalMessage::deserialize(&[]).is_err());
    }

    #[test]
    fn prekey_message_without_one_time_prekey_omits_field_1() {
        let (m, a, b, _) = sample();
        let pk = PreKeySignalMessage::new(1, None, 2, a, b, m);
        let bytes = pk.serialize();
        // field 1, wire type 0 would be tag byte 0x08
        assert!(!bytes[1..].starts_with(&[0x08]));
        let p = PreKeySignalMessage::deserialize(bytes).unwrap();
        assert_eq!(p.pre_key_id(), None);
        assert_eq!(p.signed_pre_key_id(), 2);
    }
}

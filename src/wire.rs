//! Wire messages: `SignalMessage` ("whisper", type 2) and
//! `PreKeySignalMessage` (type 3), protobuf through prost, byte-exact with the
//! official library.

use std::ops::Range;

use aes::cipher::block_padding::{Pkcs7, RawPadding};
use aes::cipher::inout::InOutBuf;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::Mac;
use prost::encoding::{
    decode_key, decode_varint, encode_key, encode_varint, encoded_len_varint, key_len, skip_field,
    DecodeContext, WireType,
};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{PublicKey, PUBLIC_KEY_LEN};
use crate::ratchet::{hmac_keyed, HmacSha256, MessageKeys};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256Enc>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256Dec>;

/// The AES block size.
const BLOCK_LEN: usize = 16;
/// Ciphertext is processed in chunks of this many bytes, each encrypted (or
/// decrypted) and fed to the MAC in turn, so that the CPU overlaps the AES of
/// one chunk with the SHA-256 of the previous one. Four AES blocks, one
/// SHA-256 block.
const STITCH_LEN: usize = 4 * BLOCK_LEN;
/// The same for decryption, which runs eight blocks in parallel.
const DECRYPT_STITCH_LEN: usize = 16 * BLOCK_LEN;
/// Ciphertexts up to this length are decrypted alongside the MAC; longer
/// ones after the MAC has matched (so that a forged long message, tried
/// against every archived state, costs no decryption).
const DECRYPT_STITCH_MAX: usize = 16 * 1024;

/// One AES block.
type Block = aes::cipher::generic_array::GenericArray<u8, aes::cipher::consts::U16>;

/// Message version 3: sessions started with X3DH.
pub const MESSAGE_VERSION: u8 = 3;
/// Message version 4: sessions started with PQXDH (X3DH + Kyber1024).
pub const PQXDH_VERSION: u8 = 4;
/// The version byte of version-3 messages: `(3 << 4) | 3`.
pub const VERSION_BYTE: u8 = version_byte(MESSAGE_VERSION);

/// The version byte written on messages of `version`: `(v << 4) | v`.
pub const fn version_byte(version: u8) -> u8 {
    (version << 4) | version
}
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

/// The prost-generated form of `SignalMessage`: the oracle the hand-walked
/// encoder and parser are tested against.
#[cfg(test)]
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
    #[prost(bytes = "vec", optional, tag = "5")]
    pq_ratchet: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    addresses: Option<Vec<u8>>,
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
    #[prost(uint32, optional, tag = "7")]
    kyber_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    kyber_ciphertext: Option<Vec<u8>>,
}

/// The message version from a version byte's high nibble: 3 or 4.
fn check_version(byte: u8) -> Result<u8> {
    let version = byte >> 4;
    if version < MESSAGE_VERSION {
        return Err(Error::LegacyMessage(version));
    }
    if version > PQXDH_VERSION {
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
    version: u8,
    ratchet_key: PublicKey,
    counter: u32,
    previous_counter: u32,
    /// Where the ciphertext sits in `serialized`.
    ciphertext: Range<usize>,
    /// Where field 5 (SPQR) sits in `serialized` (empty when absent).
    pq_ratchet: Range<usize>,
    /// Where field 6 (addresses) sits in `serialized`, if present.
    addresses: Option<Range<usize>>,
    serialized: Vec<u8>,
}

/// Where `inner`, a subslice of `outer`, lies in it.
fn range_in(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = (inner.as_ptr() as usize).saturating_sub(outer.as_ptr() as usize);
    start..start + inner.len()
}

/// A parsed `SignalMessage` borrowing the bytes it was parsed from: the
/// per-message decrypt path reads messages without copying them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SignalMessageRef<'a> {
    /// The message version (the version byte's high nibble): 3 or 4.
    pub(crate) version: u8,
    pub(crate) ratchet_key: PublicKey,
    pub(crate) counter: u32,
    pub(crate) previous_counter: u32,
    pub(crate) ciphertext: &'a [u8],
    /// Where `ciphertext` starts in `serialized`.
    pub(crate) ciphertext_start: usize,
    /// The whole message as received (version byte, protobuf, MAC).
    pub(crate) serialized: &'a [u8],
    /// Field 5, the SPQR message (empty when absent).
    pub(crate) pq_ratchet: &'a [u8],
    /// Field 6, the addresses, if present.
    pub(crate) addresses: Option<&'a [u8]>,
}

/// Takes a length-delimited field's payload off `buf`.
fn take_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = decode_varint(buf)
        .map_err(|_| Error::InvalidMessage("SignalMessage protobuf does not parse"))?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= buf.len())
        .ok_or(Error::InvalidMessage(
            "SignalMessage protobuf does not parse",
        ))?;
    let (field, rest) = buf.split_at(len);
    *buf = rest;
    Ok(field)
}

impl<'a> SignalMessageRef<'a> {
    /// Parses a serialized message strictly without copying it: the same
    /// acceptance as prost's generated decoder for `SignalMessage` (last
    /// occurrence of a field wins, unknown fields skipped), plus the required
    /// fields. The MAC is checked later, by the session that holds the key.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self> {
        const BAD: Error = Error::InvalidMessage("SignalMessage protobuf does not parse");
        check_length(bytes)?;
        if bytes.len() < 1 + MAC_LEN {
            return Err(Error::InvalidMessage("SignalMessage too short"));
        }
        let version = check_version(bytes[0])?;
        let body_len = bytes.len() - MAC_LEN;
        let mut buf = &bytes[1..body_len];
        let (mut ratchet_key, mut counter, mut previous_counter, mut ciphertext) =
            (None, None, None, None);
        let (mut pq_ratchet, mut addresses) = (&[][..], None);
        while !buf.is_empty() {
            let (tag, wire_type) = decode_key(&mut buf).map_err(|_| BAD)?;
            match (tag, wire_type) {
                (1, WireType::LengthDelimited) => ratchet_key = Some(take_bytes(&mut buf)?),
                (2, WireType::Varint) => {
                    counter = Some(decode_varint(&mut buf).map_err(|_| BAD)? as u32)
                }
                (3, WireType::Varint) => {
                    previous_counter = Some(decode_varint(&mut buf).map_err(|_| BAD)? as u32)
                }
                (4, WireType::LengthDelimited) => {
                    let field = take_bytes(&mut buf)?;
                    // The field ends where the unread rest begins.
                    ciphertext = Some((field, body_len - buf.len() - field.len()));
                }
                (5, WireType::LengthDelimited) => pq_ratchet = take_bytes(&mut buf)?,
                (6, WireType::LengthDelimited) => addresses = Some(take_bytes(&mut buf)?),
                (1..=6, _) => return Err(BAD),
                _ => skip_field(wire_type, tag, &mut buf, DecodeContext::default())
                    .map_err(|_| BAD)?,
            }
        }
        let ratchet_key = ratchet_key
            .and_then(|k| PublicKey::deserialize(k).ok())
            .ok_or(Error::InvalidMessage(
                "SignalMessage ratchet key missing or invalid",
            ))?;
        let (ciphertext, ciphertext_start) =
            ciphertext.ok_or(Error::InvalidMessage("SignalMessage ciphertext missing"))?;
        Ok(SignalMessageRef {
            version,
            ratchet_key,
            counter: counter.ok_or(Error::InvalidMessage("SignalMessage counter missing"))?,
            previous_counter: previous_counter.unwrap_or(0),
            ciphertext,
            ciphertext_start,
            serialized: bytes,
            pq_ratchet,
            addresses,
        })
    }

    /// Checks the MAC and decrypts: the plaintext, or an error with nothing
    /// returned. The MAC fails first (as in the official library), then the
    /// ciphertext length, then the padding.
    ///
    /// A well-formed ciphertext of up to 16 KiB is decrypted into a fresh
    /// buffer chunk by chunk while the MAC reads it; the buffer is zeroized
    /// and dropped unless the MAC matches, and the padding is looked at only
    /// after that. A longer one is decrypted only after the MAC matches.
    pub(crate) fn decrypt(
        &self,
        keys: &MessageKeys,
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> Result<Vec<u8>> {
        const BAD_MAC: Error = Error::InvalidMessage("MAC verification failed");
        let Some((body, received)) = self.serialized.split_last_chunk::<MAC_LEN>() else {
            return Err(BAD_MAC);
        };
        let ct = self.ciphertext;
        let ct_range = self.ciphertext_start..self.ciphertext_start + ct.len();
        let (Some(before), Some(after)) = (body.get(..ct_range.start), body.get(ct_range.end..))
        else {
            return Err(BAD_MAC);
        };
        let mut mac = mac_start(keys.mac_key(), sender_identity, receiver_identity);
        mac.update(before);
        if ct.is_empty() || !ct.len().is_multiple_of(BLOCK_LEN) {
            mac.update(ct);
            mac.update(after);
            if !mac_matches(mac, received) {
                return Err(BAD_MAC);
            }
            return Err(Error::InvalidMessage(
                "ciphertext length is not a multiple of 16",
            ));
        }
        // Short ciphertexts are decrypted alongside the MAC; long ones only
        // after it matches, so a forged long message costs no decryption.
        let mut stitched = None;
        if ct.len() <= DECRYPT_STITCH_MAX {
            stitched = Some(mac);
        } else {
            mac.update(ct);
            mac.update(after);
            if !mac_matches(mac, received) {
                return Err(BAD_MAC);
            }
        }
        // The output buffer is the only allocation.
        let mut buf = Zeroizing::new(vec![0u8; ct.len()]);
        let mut cipher = Aes256CbcDec::new(keys.cipher_key().into(), keys.iv().into());
        for (input, output) in ct
            .chunks(DECRYPT_STITCH_LEN)
            .zip(buf.chunks_mut(DECRYPT_STITCH_LEN))
        {
            if let Some(mac) = stitched.as_mut() {
                mac.update(input);
            }
            // Whole blocks: both lengths are the same multiple of 16.
            let chunk = InOutBuf::new(input, output)
                .map_err(|_| Error::InvalidMessage("ciphertext and output lengths differ"))?;
            cipher.decrypt_blocks_inout_mut(chunk.into_chunks().0);
        }
        if let Some(mut mac) = stitched {
            mac.update(after);
            if !mac_matches(mac, received) {
                return Err(BAD_MAC);
            }
        }
        let padded_from = buf.len() - BLOCK_LEN;
        let len = padded_from
            + Pkcs7::raw_unpad(&buf[padded_from..])
                .map_err(|_| Error::InvalidMessage("bad padding"))?
                .len();
        let mut plaintext = std::mem::take(&mut *buf);
        plaintext.truncate(len);
        Ok(plaintext)
    }
}

/// Length of the AES-CBC/PKCS#7 ciphertext of `plaintext_len` bytes.
pub(crate) fn padded_len(plaintext_len: usize) -> usize {
    (plaintext_len / 16 + 1) * 16
}

/// `SignalMessage` field 6 (libsignal ≥ 0.91, prekey messages only):
/// `ServiceId(17) ‖ device(1) ‖ ServiceId(17) ‖ device(1)`, sender first.
/// A ServiceId is a type byte (0 for an ACI, written as a bare UUID; 1 for
/// a PNI, written `PNI:<uuid>`) and the 16 UUID bytes. `None` unless both
/// names are ServiceIds and both device ids fit in a byte (then the field
/// is not sent).
pub fn addresses_field(
    sender_name: &str,
    sender_device: u32,
    recipient_name: &str,
    recipient_device: u32,
) -> Option<[u8; 36]> {
    fn service_id(name: &str) -> Option<[u8; 17]> {
        let (kind, uuid) = match name.strip_prefix("PNI:") {
            Some(rest) => (1u8, rest),
            None => (0u8, name),
        };
        let bytes = uuid.as_bytes();
        if bytes.len() != 36 {
            return None;
        }
        let mut out = [0u8; 17];
        out[0] = kind;
        let mut n = 0;
        let mut nibbles = [0u8; 32];
        for (i, &c) in bytes.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if c != b'-' {
                    return None;
                }
                continue;
            }
            *nibbles.get_mut(n)? = (c as char).to_digit(16)? as u8;
            n += 1;
        }
        for (k, pair) in nibbles.chunks(2).enumerate() {
            out[1 + k] = (pair[0] << 4) | pair[1];
        }
        Some(out)
    }
    let mut out = [0u8; 36];
    out[..17].copy_from_slice(&service_id(sender_name)?);
    out[17] = u8::try_from(sender_device).ok()?;
    out[18..35].copy_from_slice(&service_id(recipient_name)?);
    out[35] = u8::try_from(recipient_device).ok()?;
    Some(out)
}

/// The optional fields of a `SignalMessage` after the ciphertext.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Extras<'a> {
    /// Field 5: the SPQR message (omitted when empty).
    pub(crate) pq_ratchet: &'a [u8],
    /// Field 6: the sender and recipient addresses (prekey messages).
    pub(crate) addresses: Option<&'a [u8]>,
}

impl Extras<'_> {
    fn fields(&self) -> impl Iterator<Item = (u32, &[u8])> {
        (!self.pq_ratchet.is_empty())
            .then_some((5, self.pq_ratchet))
            .into_iter()
            .chain(self.addresses.map(|a| (6, a)))
    }

    fn encoded_len(&self) -> usize {
        self.fields()
            .map(|(tag, b)| key_len(tag) + encoded_len_varint(b.len() as u64) + b.len())
            .sum()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for (tag, bytes) in self.fields() {
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        }
    }
}

impl SignalMessage {
    /// Builds, encrypts and MACs a message of `version` in one buffer: the
    /// protobuf header is written with prost's encoders, the plaintext is
    /// AES-256-CBC encrypted in place, and the MAC appended. The only
    /// allocation is the message itself.
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encrypt(
        version: u8,
        keys: &MessageKeys,
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        plaintext: &[u8],
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> Result<Self> {
        Self::encrypt_with(
            version,
            keys,
            ratchet_key,
            counter,
            previous_counter,
            plaintext,
            Extras::default(),
            sender_identity,
            receiver_identity,
        )
    }

    /// [`encrypt`](Self::encrypt) with the optional fields 5 (`pq_ratchet`,
    /// omitted when empty) and 6 (`addresses`), written after the
    /// ciphertext and covered by the MAC.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn encrypt_with(
        version: u8,
        keys: &MessageKeys,
        ratchet_key: PublicKey,
        counter: u32,
        previous_counter: u32,
        plaintext: &[u8],
        extras: Extras<'_>,
        sender_identity: &PublicKey,
        receiver_identity: &PublicKey,
    ) -> Result<Self> {
        let ct_len = padded_len(plaintext.len());
        let header_len = 1
            + key_len(1)
            + 1
            + PUBLIC_KEY_LEN
            + key_len(2)
            + encoded_len_varint(u64::from(counter))
            + key_len(3)
            + encoded_len_varint(u64::from(previous_counter))
            + key_len(4)
            + encoded_len_varint(ct_len as u64);
        let extras_len = extras.encoded_len();
        let mut out = Vec::with_capacity(header_len + ct_len + extras_len + MAC_LEN);
        out.push(version_byte(version));
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(PUBLIC_KEY_LEN as u64, &mut out);
        out.extend_from_slice(&ratchet_key.serialize());
        encode_key(2, WireType::Varint, &mut out);
        encode_varint(u64::from(counter), &mut out);
        encode_key(3, WireType::Varint, &mut out);
        encode_varint(u64::from(previous_counter), &mut out);
        encode_key(4, WireType::LengthDelimited, &mut out);
        encode_varint(ct_len as u64, &mut out);
        let ct_start = out.len();
        out.extend_from_slice(plaintext);
        // PKCS#7: 1 to 16 bytes, each holding the padding length.
        out.resize(ct_start + ct_len, (ct_len - plaintext.len()) as u8);
        let mut mac = mac_start(keys.mac_key(), sender_identity, receiver_identity);
        let (header, ct) = out.split_at_mut(ct_start);
        mac.update(header);
        if !ct.len().is_multiple_of(BLOCK_LEN) {
            return Err(Error::InvalidArgument(
                "padded plaintext is not whole blocks",
            ));
        }
        let mut cipher = Aes256CbcEnc::new(keys.cipher_key().into(), keys.iv().into());
        for chunk in ct.chunks_mut(STITCH_LEN) {
            // Whole blocks: the length is a multiple of 16.
            for block in chunk.chunks_exact_mut(BLOCK_LEN) {
                cipher.encrypt_block_mut(Block::from_mut_slice(block));
            }
            mac.update(chunk);
        }
        let extras_start = out.len();
        extras.encode(&mut out);
        mac.update(&out[extras_start..]);
        // Field 5 ends where field 6 (if any) begins.
        let addresses_len = extras.addresses.map_or(0, |a| {
            key_len(6) + encoded_len_varint(a.len() as u64) + a.len()
        });
        let pq_end = out.len() - addresses_len;
        let pq_ratchet = pq_end - extras.pq_ratchet.len()..pq_end;
        let addresses = extras.addresses.map(|a| out.len() - a.len()..out.len());
        out.extend_from_slice(&mac_finish(mac));
        Ok(SignalMessage {
            version,
            ratchet_key,
            counter,
            previous_counter,
            ciphertext: ct_start..ct_start + ct_len,
            pq_ratchet,
            addresses,
            serialized: out,
        })
    }

    /// Parses a serialized message strictly. The MAC is checked later, by the
    /// session that holds the key.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let parsed = SignalMessageRef::parse(bytes)?;
        let start = parsed.ciphertext_start;
        Ok(SignalMessage {
            version: parsed.version,
            ratchet_key: parsed.ratchet_key,
            counter: parsed.counter,
            previous_counter: parsed.previous_counter,
            ciphertext: start..start + parsed.ciphertext.len(),
            pq_ratchet: range_in(bytes, parsed.pq_ratchet),
            addresses: parsed.addresses.map(|a| range_in(bytes, a)),
            serialized: bytes.to_vec(),
        })
    }

    /// This message as the decrypt path reads it.
    pub(crate) fn borrowed(&self) -> SignalMessageRef<'_> {
        SignalMessageRef {
            version: self.version,
            ratchet_key: self.ratchet_key,
            counter: self.counter,
            previous_counter: self.previous_counter,
            ciphertext: &self.serialized[self.ciphertext.clone()],
            ciphertext_start: self.ciphertext.start,
            serialized: &self.serialized,
            pq_ratchet: self
                .serialized
                .get(self.pq_ratchet.clone())
                .unwrap_or_default(),
            addresses: self.addresses.clone().and_then(|r| self.serialized.get(r)),
        }
    }

    /// Field 5: the SPQR message (empty when absent).
    pub fn pq_ratchet(&self) -> &[u8] {
        self.serialized
            .get(self.pq_ratchet.clone())
            .unwrap_or_default()
    }

    /// Field 6: the sender and recipient addresses, if present.
    pub fn addresses(&self) -> Option<&[u8]> {
        self.addresses.clone().and_then(|r| self.serialized.get(r))
    }

    /// The message version (3 or 4, the version byte's high nibble).
    pub fn version(&self) -> u8 {
        self.version
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
        &self.serialized[self.ciphertext.clone()]
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

/// The MAC state after the two identity keys (sender first); the rest of
/// the MAC input is the versioned message body.
fn mac_start(
    mac_key: &[u8; 32],
    sender_identity: &PublicKey,
    receiver_identity: &PublicKey,
) -> HmacSha256 {
    let mut identities = [0u8; 2 * PUBLIC_KEY_LEN];
    let (sender, receiver) = identities.split_at_mut(PUBLIC_KEY_LEN);
    sender.copy_from_slice(&sender_identity.serialize());
    receiver.copy_from_slice(&receiver_identity.serialize());
    let mut mac = hmac_keyed(mac_key);
    mac.update(&identities);
    mac
}

/// The MAC truncated to [`MAC_LEN`] bytes.
fn mac_finish(mac: HmacSha256) -> [u8; MAC_LEN] {
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

/// Whether the finished MAC equals `received`, in constant time (as one
/// 64-bit word).
fn mac_matches(mac: HmacSha256, received: &[u8; MAC_LEN]) -> bool {
    let expected = mac_finish(mac);
    bool::from(u64::from_le_bytes(expected).ct_eq(&u64::from_le_bytes(*received)))
}

/// The truncated MAC over both identities and the versioned message body.
#[cfg(test)]
fn compute_mac(
    mac_key: &[u8; 32],
    sender_identity: &PublicKey,
    receiver_identity: &PublicKey,
    versioned_body: &[u8],
) -> [u8; MAC_LEN] {
    let mut mac = mac_start(mac_key, sender_identity, receiver_identity);
    mac.update(versioned_body);
    mac_finish(mac)
}

/// What a version-4 prekey message carries for PQXDH: the Kyber prekey it
/// names and the KEM ciphertext to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KyberPayload {
    /// The id of the responder's Kyber prekey.
    pub pre_key_id: u32,
    /// The serialized KEM ciphertext (`0x08` + 1568 bytes).
    pub ciphertext: Vec<u8>,
}

/// A `PreKeySignalMessage`: `version || protobuf`, wrapping a `SignalMessage`.
#[derive(Clone, Debug)]
pub struct PreKeySignalMessage {
    version: u8,
    kyber: Option<KyberPayload>,
    registration_id: u32,
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: PublicKey,
    identity_key: PublicKey,
    message: SignalMessage,
    serialized: Vec<u8>,
}

impl PreKeySignalMessage {
    /// Wraps `message`, of the same version; a version-4 message carries
    /// `kyber`, a version-3 one does not.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        kyber: Option<KyberPayload>,
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
            kyber_pre_key_id: kyber.as_ref().map(|k| k.pre_key_id),
            kyber_ciphertext: kyber.as_ref().map(|k| k.ciphertext.clone()),
        };
        let version = message.version();
        let mut serialized = Vec::with_capacity(1 + prost::Message::encoded_len(&proto));
        serialized.push(version_byte(version));
        let _ = prost::Message::encode(&proto, &mut serialized);
        PreKeySignalMessage {
            version,
            kyber,
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
        let version = check_version(first)?;
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
        if message.version() != version {
            return Err(Error::InvalidMessage(
                "PreKeySignalMessage and its inner message differ in version",
            ));
        }
        let kyber = match (version, proto.kyber_pre_key_id, proto.kyber_ciphertext) {
            (MESSAGE_VERSION, None, None) => None,
            (MESSAGE_VERSION, _, _) => {
                return Err(Error::InvalidMessage(
                    "version-3 PreKeySignalMessage with Kyber fields",
                ))
            }
            (_, Some(pre_key_id), Some(ciphertext)) => {
                if ciphertext.len() != crate::kem::KEM_CIPHERTEXT_LEN {
                    return Err(Error::InvalidMessage(
                        "PreKeySignalMessage Kyber ciphertext must be 1569 bytes",
                    ));
                }
                Some(KyberPayload {
                    pre_key_id,
                    ciphertext,
                })
            }
            _ => {
                return Err(Error::InvalidMessage(
                    "version-4 PreKeySignalMessage without its Kyber prekey id and ciphertext",
                ))
            }
        };
        Ok(PreKeySignalMessage {
            version,
            kyber,
            registration_id: proto.registration_id.unwrap_or(0),
            pre_key_id: proto.pre_key_id,
            signed_pre_key_id,
            base_key,
            identity_key,
            message,
            serialized: bytes.to_vec(),
        })
    }

    /// The message version: 3 (X3DH) or 4 (PQXDH).
    pub fn version(&self) -> u8 {
        self.version
    }
    /// The Kyber prekey id and KEM ciphertext (version 4 only).
    pub fn kyber(&self) -> Option<&KyberPayload> {
        self.kyber.as_ref()
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
        let keys = test_keys();
        (
            SignalMessage::encrypt(MESSAGE_VERSION, &keys, rk, 7, 3, &[1, 2, 3], &a, &b).unwrap(),
            a,
            b,
            *keys.mac_key(),
        )
    }

    fn test_keys() -> MessageKeys {
        MessageKeys::from_parts([1u8; 32], [9u8; 32], [4u8; 16])
    }

    #[test]
    fn encoding_is_byte_identical_to_prost() {
        let (a, b) = (
            KeyPair::generate(&mut OsRng).public_key,
            KeyPair::generate(&mut OsRng).public_key,
        );
        for (counter, prev, len) in [
            (0u32, 0u32, 0usize),
            (1, 0, 15),
            (127, 128, 16),
            (300, 70000, 1000),
            (u32::MAX, u32::MAX, 33),
        ] {
            let rk = KeyPair::generate(&mut OsRng).public_key;
            let pt = vec![0x5au8; len];
            let m = SignalMessage::encrypt(
                MESSAGE_VERSION,
                &test_keys(),
                rk,
                counter,
                prev,
                &pt,
                &a,
                &b,
            )
            .unwrap();
            let proto = SignalMessageProto {
                ratchet_key: Some(rk.serialize().to_vec()),
                counter: Some(counter),
                previous_counter: Some(prev),
                ciphertext: Some(m.ciphertext().to_vec()),
                pq_ratchet: None,
                addresses: None,
            };
            let mut expected = vec![VERSION_BYTE];
            prost::Message::encode(&proto, &mut expected).unwrap();
            let bytes = m.serialize();
            assert_eq!(&bytes[..bytes.len() - MAC_LEN], &expected[..]);
            assert_eq!(m.ciphertext().len(), padded_len(len));
            let p = SignalMessage::deserialize(bytes).unwrap();
            assert_eq!((p.counter(), p.previous_counter()), (counter, prev));
            assert_eq!(p.ciphertext(), m.ciphertext());
        }
    }

    /// The hand-walked parser accepts exactly what prost's generated decoder
    /// accepts (then requires the mandatory fields), on mutated messages and
    /// on random bytes.
    #[test]
    fn parser_agrees_with_prost() {
        use rand::{Rng, RngCore};
        let (m, ..) = sample();
        let base = m.serialize().to_vec();
        let mut rng = OsRng;
        for i in 0..20_000 {
            let mut bytes = base.clone();
            match i % 3 {
                0 => {
                    let n = rng.gen_range(1..4);
                    for _ in 0..n {
                        let at = rng.gen_range(1..bytes.len() - MAC_LEN);
                        bytes[at] = rng.gen();
                    }
                }
                1 => {
                    let len = rng.gen_range(9..80);
                    bytes = vec![0u8; len];
                    rng.fill_bytes(&mut bytes);
                    bytes[0] = 0x33;
                }
                _ => {
                    let at = rng.gen_range(1..bytes.len() - MAC_LEN);
                    let extra: Vec<u8> = (0..rng.gen_range(1..6)).map(|_| rng.gen()).collect();
                    bytes.splice(at..at, extra);
                }
            }
            let ours = SignalMessageRef::parse(&bytes);
            let theirs: std::result::Result<SignalMessageProto, _> =
                prost::Message::decode(&bytes[1..bytes.len() - MAC_LEN]);
            match (&ours, theirs) {
                (Ok(o), Ok(t)) => {
                    assert_eq!(Some(o.ratchet_key.serialize().to_vec()), t.ratchet_key);
                    assert_eq!(Some(o.counter), t.counter);
                    assert_eq!(o.previous_counter, t.previous_counter.unwrap_or(0));
                    assert_eq!(Some(o.ciphertext.to_vec()), t.ciphertext);
                    assert_eq!(o.pq_ratchet, t.pq_ratchet.as_deref().unwrap_or_default());
                    assert_eq!(o.addresses, t.addresses.as_deref());
                }
                (Ok(_), Err(e)) => panic!("we accept what prost rejects ({e}): {bytes:02x?}"),
                (Err(_), Ok(t)) => {
                    // Only a missing or invalid required field may make us stricter.
                    let key_ok = t
                        .ratchet_key
                        .as_deref()
                        .is_some_and(|k| PublicKey::deserialize(k).is_ok());
                    assert!(
                        !key_ok || t.counter.is_none() || t.ciphertext.is_none(),
                        "we reject what prost accepts: {bytes:02x?}"
                    );
                }
                (Err(_), Err(_)) => {}
            }
        }
    }

    #[test]
    fn signal_message_round_trip_and_mac() {
        let (m, a, b, key) = sample();
        assert_eq!(m.serialize()[0], 0x33);
        let p = SignalMessage::deserialize(m.serialize()).unwrap();
        assert_eq!(p.counter(), 7);
        assert_eq!(p.previous_counter(), 3);
        assert_eq!(p.ciphertext(), m.ciphertext());
        assert_eq!(p.ciphertext().len(), 16);
        let keys = test_keys();
        assert_eq!(*keys.mac_key(), key);
        assert_eq!(p.borrowed().decrypt(&keys, &a, &b).unwrap(), [1, 2, 3]);
        let bad_mac = Error::InvalidMessage("MAC verification failed");
        assert_eq!(p.borrowed().decrypt(&keys, &b, &a).unwrap_err(), bad_mac);
        let other = MessageKeys::from_parts(*keys.cipher_key(), [8u8; 32], *keys.iv());
        assert_eq!(p.borrowed().decrypt(&other, &a, &b).unwrap_err(), bad_mac);
    }

    fn random_key() -> PublicKey {
        KeyPair::generate(&mut OsRng).public_key
    }

    fn push_bytes_field(body: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
        encode_key(tag, WireType::LengthDelimited, body);
        encode_varint(bytes.len() as u64, body);
        body.extend_from_slice(bytes);
    }

    fn push_varint_field(body: &mut Vec<u8>, tag: u32, value: u64) {
        encode_key(tag, WireType::Varint, body);
        encode_varint(value, body);
    }

    /// The stitched encrypt-and-MAC and decrypt-and-MAC give exactly what the
    /// plain crates give: AES-256-CBC/PKCS#7 from `cbc`, then HMAC-SHA256
    /// from `hmac` over both identities and the body, for every length
    /// around the chunk and block boundaries.
    #[test]
    fn stitched_cipher_and_mac_equal_the_plain_crates() {
        use aes::cipher::block_padding::Pkcs7;
        let (a, b) = (random_key(), random_key());
        let keys = MessageKeys::from_parts([0x11; 32], [0x22; 32], [0x33; 16]);
        let rk = random_key();
        for len in (0..=200).chain([255, 256, 257, 1023, 1024, 1025, 16383, 16384, 65536]) {
            let pt: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let m = SignalMessage::encrypt(MESSAGE_VERSION, &keys, rk, 5, 2, &pt, &a, &b).unwrap();
            let plain_ct = Aes256CbcEnc::new(keys.cipher_key().into(), keys.iv().into())
                .encrypt_padded_vec_mut::<Pkcs7>(&pt);
            assert_eq!(m.ciphertext(), &plain_ct[..], "length {len}");
            let bytes = m.serialize();
            let (body, mac) = bytes.split_at(bytes.len() - MAC_LEN);
            let mut plain_mac = <HmacSha256 as Mac>::new_from_slice(keys.mac_key()).unwrap();
            plain_mac.update(&a.serialize());
            plain_mac.update(&b.serialize());
            plain_mac.update(body);
            assert_eq!(mac, &plain_mac.finalize().into_bytes()[..MAC_LEN]);
            let parsed = SignalMessageRef::parse(bytes).unwrap();
            assert_eq!(parsed.decrypt(&keys, &a, &b).unwrap(), pt, "length {len}");
            // A flipped bit in the last ciphertext block or in the MAC fails
            // the MAC, whether decryption runs alongside it or after it.
            for at in [bytes.len() - MAC_LEN - 1, bytes.len() - 1] {
                let mut bad = bytes.to_vec();
                bad[at] ^= 0x04;
                let parsed = SignalMessageRef::parse(&bad).unwrap();
                assert_eq!(
                    parsed.decrypt(&keys, &a, &b).unwrap_err(),
                    Error::InvalidMessage("MAC verification failed"),
                    "length {len}"
                );
            }
        }
    }

    /// The ciphertext need not be the last field: the MAC covers the body as
    /// sent, whatever the field order, and unknown fields are MACed too.
    #[test]
    fn decrypt_finds_the_ciphertext_in_any_field_order() {
        let (a, b) = (random_key(), random_key());
        let keys = test_keys();
        let rk = random_key();
        let pt = [0x5au8; 70];
        let m = SignalMessage::encrypt(MESSAGE_VERSION, &keys, rk, 9, 4, &pt, &a, &b).unwrap();
        let ct = m.ciphertext();
        let mut body = vec![VERSION_BYTE];
        // Unknown field 9 (varint), the ciphertext, then the other fields.
        push_varint_field(&mut body, 9, 77);
        push_bytes_field(&mut body, 4, ct);
        push_bytes_field(&mut body, 1, &rk.serialize());
        push_varint_field(&mut body, 2, 9);
        push_varint_field(&mut body, 3, 4);
        let mac = compute_mac(keys.mac_key(), &a, &b, &body);
        let mut bytes = body.clone();
        bytes.extend_from_slice(&mac);
        let parsed = SignalMessageRef::parse(&bytes).unwrap();
        assert_eq!(&bytes[parsed.ciphertext_start..][..ct.len()], ct);
        assert_eq!(parsed.decrypt(&keys, &a, &b).unwrap(), pt);
        // Every flipped bit of the body (incl. the unknown field) fails the MAC.
        for i in 0..body.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            if let Ok(p) = SignalMessageRef::parse(&bad) {
                assert!(p.decrypt(&keys, &a, &b).is_err(), "byte {i}");
            }
        }
    }

    /// A ciphertext of a bad length is reported after the MAC (a bad MAC
    /// first), and bad padding after a good MAC.
    #[test]
    fn decrypt_error_order() {
        let (a, b) = (random_key(), random_key());
        let keys = test_keys();
        let rk = random_key();
        let build = |ct: &[u8], good_mac: bool| {
            let mut body = vec![VERSION_BYTE];
            push_bytes_field(&mut body, 1, &rk.serialize());
            push_varint_field(&mut body, 2, 1);
            push_bytes_field(&mut body, 4, ct);
            let mut mac = compute_mac(keys.mac_key(), &a, &b, &body);
            if !good_mac {
                mac[0] ^= 1;
            }
            body.extend_from_slice(&mac);
            body
        };
        let bad_mac = Error::InvalidMessage("MAC verification failed");
        for ct in [&[][..], &[7u8; 15], &[7u8; 33]] {
            let bytes = build(ct, false);
            let p = SignalMessageRef::parse(&bytes).unwrap();
            assert_eq!(p.decrypt(&keys, &a, &b).unwrap_err(), bad_mac);
            let bytes = build(ct, true);
            let p = SignalMessageRef::parse(&bytes).unwrap();
            assert_eq!(
                p.decrypt(&keys, &a, &b).unwrap_err(),
                Error::InvalidMessage("ciphertext length is not a multiple of 16")
            );
        }
        // Whole blocks of garbage under a good MAC: the padding is bad (or,
        // rarely, happens to be valid and yields garbage; try a few).
        let bad_padding = (0..20u8).any(|i| {
            let bytes = build(&[i; 32], true);
            let p = SignalMessageRef::parse(&bytes).unwrap();
            p.decrypt(&keys, &a, &b).err() == Some(Error::InvalidMessage("bad padding"))
        });
        assert!(bad_padding);
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
        // Version 4 parses (the session checks that it is its version).
        bytes[0] = 0x44;
        assert_eq!(SignalMessage::deserialize(&bytes).unwrap().version(), 4);
        bytes[0] = 0x55;
        assert_eq!(
            SignalMessage::deserialize(&bytes).unwrap_err(),
            Error::UnrecognizedMessageVersion(5)
        );
    }

    #[test]
    fn truncations_never_panic() {
        let (m, a, b, _) = sample();
        let pk = PreKeySignalMessage::new(None, 1, None, 2, a, b, m.clone());
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
        let pk = PreKeySignalMessage::new(None, 1, None, 2, a, b, m);
        let bytes = pk.serialize();
        // field 1, wire type 0 would be tag byte 0x08
        assert!(!bytes[1..].starts_with(&[0x08]));
        let p = PreKeySignalMessage::deserialize(bytes).unwrap();
        assert_eq!(p.pre_key_id(), None);
        assert_eq!(p.signed_pre_key_id(), 2);
    }
}

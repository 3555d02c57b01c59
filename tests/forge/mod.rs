//! Hand-encoded wire messages for hostile-input tests: the same protobuf
//! layout the library writes, with any field value an attacker likes.
#![allow(dead_code)]

use ratchetkit::wire::KyberPayload;
use ratchetkit::PublicKey;

/// Appends `v` as a protobuf varint.
pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push((tag << 3) | 2);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn uint_field(tag: u8, v: u32, out: &mut Vec<u8>) {
    out.push(tag << 3);
    varint(u64::from(v), out);
}

/// A `SignalMessage`: version byte 0x44, the protobuf, then `mac`.
pub fn signal_message(
    ratchet_key: &impl KeyBytes,
    counter: u32,
    previous_counter: u32,
    ciphertext: &[u8],
    mac: [u8; 8],
) -> Vec<u8> {
    // Version 4: the sessions tests make are PQXDH sessions.
    let mut out = vec![0x44];
    bytes_field(1, &ratchet_key.key_bytes(), &mut out);
    uint_field(2, counter, &mut out);
    uint_field(3, previous_counter, &mut out);
    bytes_field(4, ciphertext, &mut out);
    out.extend_from_slice(&mac);
    out
}

/// A `PreKeySignalMessage` wrapping the serialized `inner` message, of its
/// version, with the Kyber fields of a version-4 message, fields in the
/// order the library writes them (by tag number).
pub fn prekey_message(
    kyber: Option<&KyberPayload>,
    registration_id: u32,
    pre_key_id: Option<u32>,
    signed_pre_key_id: u32,
    base_key: &impl KeyBytes,
    identity_key: &impl KeyBytes,
    inner: &[u8],
) -> Vec<u8> {
    // The version of the inner message (0x33 or 0x44).
    let mut out = vec![inner.first().copied().unwrap_or(0x33)];
    if let Some(id) = pre_key_id {
        uint_field(1, id, &mut out);
    }
    bytes_field(2, &base_key.key_bytes(), &mut out);
    bytes_field(3, &identity_key.key_bytes(), &mut out);
    bytes_field(4, inner, &mut out);
    uint_field(5, registration_id, &mut out);
    uint_field(6, signed_pre_key_id, &mut out);
    if let Some(k) = kyber {
        uint_field(7, k.pre_key_id, &mut out);
        bytes_field(8, &k.ciphertext, &mut out);
    }
    out
}

/// The MAC (last 8 bytes) of a serialized `SignalMessage`.
pub fn mac_of(signal_message: &[u8]) -> [u8; 8] {
    let mut mac = [0u8; 8];
    mac.copy_from_slice(&signal_message[signal_message.len() - 8..]);
    mac
}

fn u(hex: &str) -> [u8; 32] {
    let v = hex::decode(hex).unwrap_or_default();
    let mut out = [0u8; 32];
    out.copy_from_slice(&v);
    out
}

/// The canonical encodings of the small-order X25519 u-coordinates: 0
/// (order 2), 1 and p-1 (order 4), the two points of order 8. With a
/// clamped scalar (a multiple of 8) X25519 of every one is all zeros.
/// [`non_canonical_low_order_points`] has their other encodings.
pub fn low_order_points() -> Vec<[u8; 32]> {
    vec![
        u("0000000000000000000000000000000000000000000000000000000000000000"),
        u("0100000000000000000000000000000000000000000000000000000000000000"),
        u("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
        u("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
        u("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ]
}

/// Non-canonical encodings of low-order points: p and p + 1 (aliases of 0
/// and 1), and every canonical one with bit 255 set. `PublicKey` refuses
/// them all.
pub fn non_canonical_low_order_points() -> Vec<[u8; 32]> {
    let mut all = vec![
        u("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        u("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    ];
    for mut p in low_order_points().into_iter().chain(all.clone()) {
        p[31] |= 0x80;
        all.push(p);
    }
    all
}

/// The serialized form (`0x05 || u`) of a key, for forging: a `PublicKey`
/// or raw u-coordinate bytes (which `PublicKey` may refuse).
pub trait KeyBytes {
    /// `0x05 || u`.
    fn key_bytes(&self) -> Vec<u8>;
}

impl KeyBytes for PublicKey {
    fn key_bytes(&self) -> Vec<u8> {
        self.serialize().to_vec()
    }
}

impl KeyBytes for [u8; 32] {
    fn key_bytes(&self) -> Vec<u8> {
        let mut out = vec![0x05];
        out.extend_from_slice(self);
        out
    }
}

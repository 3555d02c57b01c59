//! Records as row values: each is the saved format's `StoreProto` holding
//! exactly one record (or, for the meta row, only the scalar fields), so a
//! row decodes with the same bounds and checks as saved state.

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::PublicKey;
use crate::persist::{self, StoreProto, FORMAT_VERSION};
use crate::persist_scan::{scan_store, WipingBuf};
use crate::prekey::{KyberPreKeyRecord, PreKeyRecord, SignedPreKeyRecord};
use crate::session::SessionRecord;
use crate::store::{Address, BaseKeyUse, ProtocolStore};

/// The natural key of a session row: the name's length, the name, the
/// device id (big-endian).
pub(crate) fn session_key(address: &Address) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + address.name.len());
    k.extend_from_slice(&(address.name.len() as u32).to_be_bytes());
    k.extend_from_slice(address.name.as_bytes());
    k.extend_from_slice(&address.device_id.to_be_bytes());
    k
}

/// The natural key of a prekey row: its id, big-endian.
pub(crate) fn id_key(id: u32) -> [u8; 4] {
    id.to_be_bytes()
}

/// The natural key of the meta row.
pub(crate) const META_KEY: &[u8] = b"meta";

pub(crate) fn encode(proto: &StoreProto) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(prost::Message::encoded_len(proto)));
    let _ = prost::Message::encode(proto, &mut *out);
    out
}

/// A `StoreProto` with only what `fill` puts in it, encoded.
fn encode_with(fill: impl FnOnce(&mut StoreProto)) -> Zeroizing<Vec<u8>> {
    let mut proto = Zeroizing::new(StoreProto::default());
    fill(&mut proto);
    encode(&proto)
}

fn decode(bytes: &[u8]) -> Result<Zeroizing<StoreProto>> {
    scan_store(bytes).map_err(|_| Error::StoreCorrupt("a record does not decode"))?;
    let mut proto = Zeroizing::new(StoreProto::default());
    prost::Message::merge(&mut *proto, WipingBuf(bytes))
        .map_err(|_| Error::StoreCorrupt("a record does not decode"))?;
    Ok(proto)
}

fn corrupt(e: Error) -> Error {
    match e {
        Error::CorruptState(what) => Error::StoreCorrupt(what),
        other => other,
    }
}

fn one<T>(items: &[T]) -> Result<&T> {
    match items {
        [item] => Ok(item),
        _ => Err(Error::StoreCorrupt(
            "a record row does not hold exactly one record",
        )),
    }
}

pub(crate) fn encode_meta(store: &ProtocolStore) -> Zeroizing<Vec<u8>> {
    encode(&Zeroizing::new(persist::meta_to_proto(store)))
}

pub(crate) fn decode_meta(bytes: &[u8]) -> Result<ProtocolStore> {
    persist::meta_from_proto(&*decode(bytes)?, FORMAT_VERSION).map_err(corrupt)
}

/// `StoreProto`'s field of session entries.
const SESSIONS_FIELD: u32 = 9;

pub(crate) fn encode_session(address: &Address, record: &SessionRecord) -> Zeroizing<Vec<u8>> {
    // The bytes of a `StoreProto` holding only this entry (every other
    // field empty, so not written), without building one.
    let entry = Zeroizing::new(persist::session_to_proto(address, record));
    let mut out = Zeroizing::new(Vec::with_capacity(prost::encoding::message::encoded_len(
        SESSIONS_FIELD,
        &*entry,
    )));
    prost::encoding::message::encode(SESSIONS_FIELD, &*entry, &mut *out);
    out
}

pub(crate) fn decode_session(bytes: &[u8]) -> Result<(Address, SessionRecord)> {
    persist::session_from_proto(one(&decode(bytes)?.sessions)?).map_err(corrupt)
}

pub(crate) fn encode_trust(name: &str, key: &PublicKey) -> Zeroizing<Vec<u8>> {
    encode_with(|p| p.trusted.push(persist::trust_to_proto(name, key)))
}

pub(crate) fn decode_trust(bytes: &[u8]) -> Result<(String, PublicKey)> {
    persist::trust_from_proto(one(&decode(bytes)?.trusted)?).map_err(corrupt)
}

pub(crate) fn encode_signed_prekey(r: &SignedPreKeyRecord) -> Zeroizing<Vec<u8>> {
    encode_with(|p| p.signed_prekeys.push(persist::signed_prekey_to_proto(r)))
}

pub(crate) fn decode_signed_prekey(bytes: &[u8]) -> Result<SignedPreKeyRecord> {
    persist::signed_prekey_from_proto(one(&decode(bytes)?.signed_prekeys)?).map_err(corrupt)
}

pub(crate) fn encode_prekey(r: &PreKeyRecord) -> Zeroizing<Vec<u8>> {
    encode_with(|p| p.prekeys.push(persist::prekey_to_proto(r)))
}

pub(crate) fn decode_prekey(bytes: &[u8]) -> Result<PreKeyRecord> {
    persist::prekey_from_proto(one(&decode(bytes)?.prekeys)?).map_err(corrupt)
}

pub(crate) fn encode_kyber_prekey(r: &KyberPreKeyRecord) -> Zeroizing<Vec<u8>> {
    encode_with(|p| p.kyber_prekeys.push(persist::kyber_prekey_to_proto(r)))
}

pub(crate) fn decode_kyber_prekey(bytes: &[u8]) -> Result<KyberPreKeyRecord> {
    persist::kyber_prekey_from_proto(one(&decode(bytes)?.kyber_prekeys)?).map_err(corrupt)
}

pub(crate) fn encode_base_key_use(u: &BaseKeyUse) -> Zeroizing<Vec<u8>> {
    encode_with(|p| p.base_key_uses.push(persist::base_key_use_to_proto(u)))
}

pub(crate) fn decode_base_key_use(bytes: &[u8]) -> Result<BaseKeyUse> {
    persist::base_key_use_from_proto(one(&decode(bytes)?.base_key_uses)?).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::rngs::OsRng;

    use super::*;

    /// A session row is exactly a `StoreProto` holding only that session.
    #[test]
    fn a_session_row_is_a_store_proto_of_one_session() {
        let mut alice = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let mut bob = ProtocolStore::generate(1, &mut OsRng).unwrap();
        let b = Address::new("bob", 7);
        let bundle = bob.create_bundle(true, 0, &mut OsRng).unwrap();
        alice.process_bundle(&b, &bundle, &mut OsRng).unwrap();
        alice.encrypt(&b, b"hi").unwrap();
        let record = alice.session(&b).unwrap();
        let row = encode_session(&b, &record);
        let via_store = encode_with(|p| p.sessions.push(persist::session_to_proto(&b, &record)));
        assert_eq!(*row, *via_store);
        let (address, decoded) = decode_session(&row).unwrap();
        assert_eq!(address, b);
        assert_eq!(*encode_session(&address, &decoded), *row);
    }
}

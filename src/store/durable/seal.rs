//! Encryption at rest for the durable store.
//!
//! - The application's 32-byte key wraps a random 32-byte *store key*
//!   (XChaCha20-Poly1305 under a key derived from the application key with
//!   HKDF-SHA256). Rekeying rewraps it: one row changes.
//! - From the store key, HKDF derives a *value key* and a *lookup key*.
//! - Every record value is `nonce (24) || XChaCha20-Poly1305(value key)`
//!   with the table's name and the row's lookup key (and the row's plain
//!   columns) as associated data: a value moved to another row or table
//!   does not open.
//! - Lookup keys are HMAC-SHA256 under the lookup key of the table's name
//!   and the record's natural key (a remote name and device id, a prekey
//!   id, a base key): the file does not list who the user talks to.

use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::Mac;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::ratchet::hmac_keyed;

use super::rows::META_KEY;

/// Length of the application's key that opens a durable store.
pub const STORE_KEY_LEN: usize = 32;

pub(crate) const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const WRAP_INFO: &[u8] = b"ratchetkit durable store v1: key wrapping";
const WRAP_AD: &[u8] = b"ratchetkit durable store v1: store key";
const VALUE_INFO: &[u8] = b"ratchetkit durable store v1: record values";
const LOOKUP_INFO: &[u8] = b"ratchetkit durable store v1: lookup keys";
const RECORD_AD: &[u8] = b"ratchetkit durable store v1: record";

/// The tables whose rows are sealed records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Table {
    Meta,
    Sessions,
    Trust,
    SignedPreKeys,
    PreKeys,
    KyberPreKeys,
    BaseKeyUses,
}

impl Table {
    /// The SQL table name (also bound into every sealed value).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Sessions => "sessions",
            Table::Trust => "trust",
            Table::SignedPreKeys => "signed_prekeys",
            Table::PreKeys => "prekeys",
            Table::KyberPreKeys => "kyber_prekeys",
            Table::BaseKeyUses => "base_key_uses",
        }
    }
}

fn expand(ikm: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = Hkdf::<Sha256>::new(None, ikm).expand(info, &mut *out);
    out
}

fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

fn check_app_key(app_key: &[u8]) -> Result<&[u8; STORE_KEY_LEN]> {
    app_key.try_into().map_err(|_| Error::InvalidKeyLength {
        expected: STORE_KEY_LEN,
        got: app_key.len(),
    })
}

/// A fresh random store key, wrapped under `app_key`.
pub(crate) fn new_store_key(app_key: &[u8]) -> Result<(Zeroizing<[u8; 32]>, Vec<u8>)> {
    let mut store_key = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut *store_key);
    let wrapped = wrap(app_key, &store_key)?;
    Ok((store_key, wrapped))
}

/// `store_key` wrapped under `app_key` (the bytes of the key row).
pub(crate) fn wrap(app_key: &[u8], store_key: &[u8; 32]) -> Result<Vec<u8>> {
    let kek = expand(check_app_key(app_key)?, WRAP_INFO);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let ct = cipher(&kek)
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: store_key,
                aad: WRAP_AD,
            },
        )
        .map_err(|_| Error::Storage("store key wrapping failed".into()))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The store key from the key row; [`Error::WrongStoreKey`] if `app_key`
/// does not open it.
pub(crate) fn unwrap(app_key: &[u8], wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let kek = expand(check_app_key(app_key)?, WRAP_INFO);
    if wrapped.len() != NONCE_LEN + 32 + TAG_LEN {
        return Err(Error::StoreCorrupt("the key row has the wrong length"));
    }
    let plain = Zeroizing::new(
        cipher(&kek)
            .decrypt(
                XNonce::from_slice(&wrapped[..NONCE_LEN]),
                Payload {
                    msg: &wrapped[NONCE_LEN..],
                    aad: WRAP_AD,
                },
            )
            .map_err(|_| Error::WrongStoreKey)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&plain);
    Ok(key)
}

/// The keys derived from the store key.
pub(crate) struct Sealer {
    value: XChaCha20Poly1305,
    lookup_key: Zeroizing<[u8; 32]>,
    /// The meta row's lookup key (read by every call).
    meta_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer { .. }")
    }
}

impl Sealer {
    pub(crate) fn new(store_key: &[u8; 32]) -> Self {
        let mut sealer = Sealer {
            value: cipher(&expand(store_key, VALUE_INFO)),
            lookup_key: expand(store_key, LOOKUP_INFO),
            meta_key: [0; 32],
        };
        sealer.meta_key = sealer.lookup(Table::Meta, META_KEY);
        sealer
    }

    /// The meta row's lookup key: `lookup(Table::Meta, META_KEY)`.
    pub(crate) fn meta_key(&self) -> &[u8; 32] {
        &self.meta_key
    }

    /// The row key of a record: a keyed hash of its table and natural key.
    pub(crate) fn lookup(&self, table: Table, natural_key: &[u8]) -> [u8; 32] {
        let mut mac = hmac_keyed(&self.lookup_key);
        mac.update(table.name().as_bytes());
        mac.update(&[0]);
        mac.update(natural_key);
        mac.finalize().into_bytes().into()
    }

    fn ad(table: Table, lookup: &[u8], columns: &[i64]) -> Vec<u8> {
        let mut ad = Vec::with_capacity(RECORD_AD.len() + 24 + lookup.len() + 8 * columns.len());
        ad.extend_from_slice(RECORD_AD);
        ad.extend_from_slice(table.name().as_bytes());
        ad.push(0);
        ad.extend_from_slice(lookup);
        for c in columns {
            ad.extend_from_slice(&c.to_be_bytes());
        }
        ad
    }

    /// Seals a record value for row `lookup` of `table`, binding the row's
    /// plain `columns` too.
    #[cfg(test)]
    pub(crate) fn seal(
        &self,
        table: Table,
        lookup: &[u8],
        columns: &[i64],
        plain: &[u8],
    ) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        self.seal_with_nonce(table, lookup, columns, plain, &nonce)
    }

    /// As `seal`, with a `nonce` the caller took from the system's
    /// generator (never reused: 24 random bytes).
    pub(crate) fn seal_with_nonce(
        &self,
        table: Table,
        lookup: &[u8],
        columns: &[i64],
        plain: &[u8],
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Vec<u8>> {
        // Encrypted in place, in a buffer of the final size (no copy of
        // the ciphertext, no reallocation leaving plaintext behind).
        let mut out = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN));
        out.extend_from_slice(nonce);
        out.extend_from_slice(plain);
        let tag = self
            .value
            .encrypt_in_place_detached(
                XNonce::from_slice(nonce),
                &Self::ad(table, lookup, columns),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| Error::Storage("record sealing failed".into()))?;
        out.extend_from_slice(&tag);
        // Only ciphertext now: nothing to wipe.
        Ok(std::mem::take(&mut *out))
    }

    /// Opens a record value read from row `lookup` of `table`.
    pub(crate) fn open(
        &self,
        table: Table,
        lookup: &[u8],
        columns: &[i64],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::StoreCorrupt("a record is truncated"));
        }
        self.value
            .decrypt(
                XNonce::from_slice(&sealed[..NONCE_LEN]),
                Payload {
                    msg: &sealed[NONCE_LEN..],
                    aad: &Self::ad(table, lookup, columns),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                Error::StoreCorrupt(
                    "a record does not authenticate (altered, or moved from another row)",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_key_and_moved_values_are_refused() {
        let app = [7u8; 32];
        let (key, wrapped) = new_store_key(&app).unwrap();
        assert_eq!(*unwrap(&app, &wrapped).unwrap(), *key);
        assert_eq!(
            unwrap(&[8u8; 32], &wrapped).unwrap_err(),
            Error::WrongStoreKey
        );
        let s = Sealer::new(&key);
        let a = s.lookup(Table::Sessions, b"alice");
        let b = s.lookup(Table::Sessions, b"bob");
        let sealed = s.seal(Table::Sessions, &a, &[], b"record").unwrap();
        assert_eq!(
            &**s.open(Table::Sessions, &a, &[], &sealed).unwrap(),
            b"record"
        );
        assert!(s.open(Table::Sessions, &b, &[], &sealed).is_err());
        assert!(s.open(Table::Trust, &a, &[], &sealed).is_err());
        assert!(s.open(Table::Sessions, &a, &[1], &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(s.open(Table::Sessions, &a, &[], &flipped).is_err());
    }
}

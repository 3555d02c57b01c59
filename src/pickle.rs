//! Encrypted saved state: a [`ProtocolStore`] saved under a 32-byte key
//! supplied by the application.
//!
//! # Format (version 1)
//!
//! ```text
//! "RKSE" (4 bytes) | format version 0x01 (1) | nonce (24) | ciphertext || tag (16)
//! ```
//!
//! The ciphertext is XChaCha20-Poly1305 over the plain saved store (the
//! bytes of [`ProtocolStore::save`]), with a fresh random 24-byte nonce for
//! every save and the 5-byte header (magic and version) as associated data.
//! A wrong key or any altered byte gives [`Error::StateDecryptionFailed`];
//! bytes that are not an encrypted store at all give [`Error::CorruptState`];
//! another format version gives [`Error::UnsupportedStateVersion`].

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::store::ProtocolStore;

/// Length of the key that encrypts saved state.
pub const PICKLE_KEY_LEN: usize = 32;
/// The format version byte of encrypted saved state.
pub const PICKLE_FORMAT_VERSION: u8 = 1;

const MAGIC: &[u8; 4] = b"RKSE";
const HEADER_LEN: usize = 5;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

fn cipher(key: &[u8]) -> Result<XChaCha20Poly1305> {
    if key.len() != PICKLE_KEY_LEN {
        return Err(Error::InvalidKeyLength {
            expected: PICKLE_KEY_LEN,
            got: key.len(),
        });
    }
    XChaCha20Poly1305::new_from_slice(key).map_err(|_| Error::InvalidKeyLength {
        expected: PICKLE_KEY_LEN,
        got: key.len(),
    })
}

impl ProtocolStore {
    /// Saves the whole store like [`save`](Self::save), encrypted and
    /// authenticated under the 32-byte `key` (see the [module docs](crate::pickle)).
    /// Every call uses a fresh random nonce, so two saves of the same store
    /// differ.
    pub fn save_encrypted<R: RngCore + CryptoRng>(
        &self,
        key: &[u8],
        rng: &mut R,
    ) -> Result<Vec<u8>> {
        let cipher = cipher(key)?;
        let plain = Zeroizing::new(self.save());
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(MAGIC);
        header[4] = PICKLE_FORMAT_VERSION;
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &header,
                },
            )
            .map_err(|_| Error::InvalidArgument("saved state too large to encrypt"))?;
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Restores a store saved by [`save_encrypted`](Self::save_encrypted)
    /// under the same `key`, validating every field.
    pub fn restore_encrypted(bytes: &[u8], key: &[u8]) -> Result<Self> {
        let cipher = cipher(key)?;
        if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
            return Err(Error::CorruptState(
                "not an encrypted ratchetkit saved store (bad magic)",
            ));
        }
        if bytes[4] != PICKLE_FORMAT_VERSION {
            return Err(Error::UnsupportedStateVersion(u32::from(bytes[4])));
        }
        if bytes.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(Error::CorruptState("encrypted saved state is truncated"));
        }
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: header,
                    },
                )
                .map_err(|_| Error::StateDecryptionFailed)?,
        );
        ProtocolStore::restore(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;
    use rand::rngs::OsRng;

    fn store() -> ProtocolStore {
        let mut rng = OsRng;
        let mut a = ProtocolStore::generate(1, &mut rng).unwrap();
        let mut b = ProtocolStore::generate(2, &mut rng).unwrap();
        let bundle = b.create_bundle(true, 1, &mut rng).unwrap();
        a.process_bundle(&Address::new("bob", 2), &bundle, &mut rng)
            .unwrap();
        a
    }

    #[test]
    fn round_trip() {
        let a = store();
        let key = [7u8; 32];
        let sealed = a.save_encrypted(&key, &mut OsRng).unwrap();
        assert_eq!(&sealed[..5], b"RKSE\x01");
        let back = ProtocolStore::restore_encrypted(&sealed, &key).unwrap();
        assert_eq!(back.save(), a.save());
        // Fresh nonce every time.
        assert_ne!(a.save_encrypted(&key, &mut OsRng).unwrap(), sealed);
    }

    #[test]
    fn wrong_key_and_altered_bytes() {
        let a = store();
        let key = [7u8; 32];
        let sealed = a.save_encrypted(&key, &mut OsRng).unwrap();
        let mut other = key;
        other[31] ^= 1;
        assert_eq!(
            ProtocolStore::restore_encrypted(&sealed, &other).unwrap_err(),
            Error::StateDecryptionFailed
        );
        for i in 0..sealed.len() {
            let mut v = sealed.clone();
            v[i] ^= 0x40;
            let e = ProtocolStore::restore_encrypted(&v, &key).unwrap_err();
            match i {
                0..=3 => assert!(matches!(e, Error::CorruptState(_)), "{i}: {e:?}"),
                4 => assert!(matches!(e, Error::UnsupportedStateVersion(_)), "{e:?}"),
                _ => assert_eq!(e, Error::StateDecryptionFailed, "byte {i}"),
            }
        }
        for n in 0..sealed.len() {
            assert!(ProtocolStore::restore_encrypted(&sealed[..n], &key).is_err());
        }
    }

    #[test]
    fn key_length_and_format_confusion() {
        let a = store();
        assert!(matches!(
            a.save_encrypted(&[0u8; 31], &mut OsRng),
            Err(Error::InvalidKeyLength {
                expected: 32,
                got: 31
            })
        ));
        assert!(matches!(
            ProtocolStore::restore_encrypted(&a.save(), &[0u8; 32]),
            Err(Error::CorruptState(_))
        ));
        let sealed = a.save_encrypted(&[0u8; 32], &mut OsRng).unwrap();
        assert!(matches!(
            ProtocolStore::restore(&sealed),
            Err(Error::CorruptState(_))
        ));
    }
}

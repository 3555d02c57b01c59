//! Kyber1024 (NIST PQC round 3) keys for PQXDH, through `libcrux-ml-kem`.
//!
//! Serialized forms carry a type byte first, as the official library's:
//! `0x08` then the raw key or ciphertext (public key 1569 bytes, secret key
//! 3169, ciphertext 1569). Type `0x0A` (ML-KEM-1024, the FIPS 203 standard,
//! same sizes) is refused with [`Error::InvalidKemKey`]: the official
//! bridges never generate it and its shared secrets differ from Kyber's, so
//! accepting it would only open a second path nobody uses. Any other type
//! byte or length is refused too.
//!
//! Secret keys live in a box and are zeroized on drop. `libcrux-ml-kem`
//! does not zeroize its own stack: every KEM call (key generation,
//! encapsulation, decapsulation) therefore runs in a frame of its own, and
//! the stack below the caller is overwritten with zeros right after it
//! returns ([`scrub_stack`], [`STACK_SCRUB_LEN`] bytes), which wipes the
//! copies of the secret key, the seed, the randomness and the shared secret
//! that the library and the call left there (`tests/kem_stack_residue.rs`
//! scans the dead stack for them).

use libcrux_ml_kem::kyber1024;
use libcrux_ml_kem::mlkem1024::{MlKem1024Ciphertext, MlKem1024PrivateKey, MlKem1024PublicKey};
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// The type byte of a Kyber1024 key or ciphertext.
pub const KYBER1024_TYPE: u8 = 0x08;
/// The type byte of ML-KEM-1024 (refused).
pub const MLKEM1024_TYPE: u8 = 0x0A;
/// Raw Kyber1024 public key length.
const PUBLIC_RAW_LEN: usize = 1568;
/// Raw Kyber1024 secret key length.
const SECRET_RAW_LEN: usize = 3168;
/// Raw Kyber1024 ciphertext length.
const CIPHERTEXT_RAW_LEN: usize = 1568;
/// Length of a serialized KEM public key (type byte + 1568).
pub const KEM_PUBLIC_KEY_LEN: usize = 1 + PUBLIC_RAW_LEN;
/// Length of a serialized KEM secret key (type byte + 3168).
pub const KEM_SECRET_KEY_LEN: usize = 1 + SECRET_RAW_LEN;
/// Length of a serialized KEM ciphertext (type byte + 1568).
pub const KEM_CIPHERTEXT_LEN: usize = 1 + CIPHERTEXT_RAW_LEN;
/// Length of the KEM shared secret.
pub const KEM_SHARED_SECRET_LEN: usize = 32;

/// How much stack below the caller [`scrub_stack`] zeroes: above the depth
/// of the deepest KEM call (measured: key generation and decapsulation
/// leave nothing beyond 40 KiB; the residue test scans 512 KiB).
pub const STACK_SCRUB_LEN: usize = 96 * 1024;

/// Zeroes [`STACK_SCRUB_LEN`] bytes of stack below the caller's frame: the
/// frames a KEM call just used. Must not be inlined (its frame is what
/// overwrites theirs).
#[inline(never)]
fn scrub_stack() {
    let mut area = [0u8; STACK_SCRUB_LEN];
    zeroize::zeroize_bytes(&mut area);
    std::hint::black_box(&mut area);
}

/// A KEM shared secret (32 bytes), boxed so that returning it moves only a
/// pointer (a moved array would leave a copy in the returning frame), and
/// zeroized on drop.
pub struct KemSharedSecret(Box<[u8; KEM_SHARED_SECRET_LEN]>);

impl KemSharedSecret {
    fn new() -> Self {
        KemSharedSecret(Box::new([0u8; KEM_SHARED_SECRET_LEN]))
    }
}

impl std::ops::Deref for KemSharedSecret {
    type Target = [u8; KEM_SHARED_SECRET_LEN];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Zeroize for KemSharedSecret {
    fn zeroize(&mut self) {
        zeroize::zeroize_bytes(&mut self.0[..]);
    }
}

impl Drop for KemSharedSecret {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for KemSharedSecret {}

impl std::fmt::Debug for KemSharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KemSharedSecret(<redacted>)")
    }
}

/// Checks the type byte and length of a serialized KEM object; returns the
/// raw bytes after the type byte.
fn raw<'a>(bytes: &'a [u8], len: usize, what: &'static str) -> Result<&'a [u8]> {
    let Some((&kind, rest)) = bytes.split_first() else {
        return Err(Error::InvalidKemKey(what));
    };
    match kind {
        KYBER1024_TYPE => {}
        MLKEM1024_TYPE => {
            return Err(Error::InvalidKemKey(
                "ML-KEM-1024 (type 0x0a) is not supported; only Kyber1024 (0x08)",
            ))
        }
        _ => {
            return Err(Error::InvalidKemKey(
                "unknown KEM type byte (expected 0x08)",
            ))
        }
    }
    if bytes.len() != len {
        return Err(Error::InvalidKemKey(what));
    }
    Ok(rest)
}

/// A Kyber1024 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Box<[u8; PUBLIC_RAW_LEN]>);

impl KemPublicKey {
    /// Parses the serialized form (`0x08` + 1568 bytes). Refuses other type
    /// bytes and lengths, and keys whose coefficients are not reduced (no
    /// honest key generation makes one).
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let raw = raw(
            bytes,
            KEM_PUBLIC_KEY_LEN,
            "KEM public key must be 1569 bytes (0x08 + 1568)",
        )?;
        let mut key = Box::new([0u8; PUBLIC_RAW_LEN]);
        key.copy_from_slice(raw);
        let checked = MlKem1024PublicKey::from(&*key);
        if !kyber1024::validate_public_key(&checked) {
            return Err(Error::InvalidKemKey("KEM public key is not well formed"));
        }
        Ok(KemPublicKey(key))
    }

    /// The serialized form (`0x08` + 1568 bytes), as signed in prekeys.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(KEM_PUBLIC_KEY_LEN);
        out.push(KYBER1024_TYPE);
        out.extend_from_slice(&self.0[..]);
        out
    }

    /// Encapsulates a fresh shared secret to this key: the serialized
    /// ciphertext (`0x08` + 1568 bytes) and the 32-byte secret.
    pub fn encapsulate<R: RngCore + CryptoRng>(&self, rng: &mut R) -> (Vec<u8>, KemSharedSecret) {
        let mut randomness = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(randomness.as_mut());
        let mut secret = KemSharedSecret::new();
        let mut out = vec![0u8; KEM_CIPHERTEXT_LEN];
        out[0] = KYBER1024_TYPE;
        encapsulate_in_frame(&self.0, &randomness, &mut out[1..], &mut secret.0);
        scrub_stack();
        (out, secret)
    }
}

impl std::fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KemPublicKey(08")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// Encapsulation in a frame of its own (see [`scrub_stack`]).
#[inline(never)]
fn encapsulate_in_frame(
    public: &[u8; PUBLIC_RAW_LEN],
    randomness: &[u8; 32],
    ciphertext: &mut [u8],
    secret: &mut [u8; KEM_SHARED_SECRET_LEN],
) {
    let key = MlKem1024PublicKey::from(public);
    let (ct, ss) = kyber1024::encapsulate(&key, *randomness);
    ciphertext.copy_from_slice(ct.as_ref());
    secret.copy_from_slice(ss.as_ref());
}

/// Decapsulation in a frame of its own (see [`scrub_stack`]).
#[inline(never)]
fn decapsulate_in_frame(
    key: &MlKem1024PrivateKey,
    ciphertext: &MlKem1024Ciphertext,
    secret: &mut [u8; KEM_SHARED_SECRET_LEN],
) {
    let ss = kyber1024::decapsulate(key, ciphertext);
    secret.copy_from_slice(ss.as_ref());
}

/// Key generation in a frame of its own (see [`scrub_stack`]).
#[inline(never)]
fn generate_in_frame(
    seed: &[u8; 64],
    secret: &mut MlKem1024PrivateKey,
    public: &mut [u8; PUBLIC_RAW_LEN],
) {
    let pair = kyber1024::generate_key_pair(*seed);
    secret[0..SECRET_RAW_LEN].copy_from_slice(pair.private_key().as_slice());
    public.copy_from_slice(pair.public_key().as_slice());
}

/// A Kyber1024 secret key, held in the library's own type (so that no call
/// copies it), boxed. Zeroized on drop; `Debug` is redacted.
#[derive(Clone)]
pub struct KemSecretKey(Box<MlKem1024PrivateKey>);

impl Zeroize for KemSecretKey {
    fn zeroize(&mut self) {
        zeroize::zeroize_bytes(&mut self.0[0..SECRET_RAW_LEN]);
    }
}

impl Drop for KemSecretKey {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl ZeroizeOnDrop for KemSecretKey {}

impl KemSecretKey {
    /// An all-zero key in its box, to be filled in place.
    fn empty() -> Self {
        KemSecretKey(Box::new(MlKem1024PrivateKey::default()))
    }

    /// The raw 3168 bytes.
    fn raw(&self) -> &[u8] {
        &self.0[0..SECRET_RAW_LEN]
    }
}

impl KemSecretKey {
    /// Parses the serialized form (`0x08` + 3168 bytes).
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let raw = raw(
            bytes,
            KEM_SECRET_KEY_LEN,
            "KEM secret key must be 3169 bytes (0x08 + 3168)",
        )?;
        let mut key = KemSecretKey::empty();
        key.0[0..SECRET_RAW_LEN].copy_from_slice(raw);
        Ok(key)
    }

    /// The serialized form (`0x08` + 3168 bytes). Handle with care.
    pub fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(KEM_SECRET_KEY_LEN));
        out.push(KYBER1024_TYPE);
        out.extend_from_slice(self.raw());
        out
    }

    /// Decapsulates a serialized ciphertext (`0x08` + 1568 bytes). A
    /// ciphertext of another type or length is [`Error::InvalidKemKey`]; a
    /// well-formed ciphertext made for another key gives an unrelated
    /// secret (Kyber's implicit rejection), which then fails the MAC.
    pub fn decapsulate(&self, ciphertext: &[u8]) -> Result<KemSharedSecret> {
        let raw = raw(
            ciphertext,
            KEM_CIPHERTEXT_LEN,
            "KEM ciphertext must be 1569 bytes (0x08 + 1568)",
        )?;
        let ct = MlKem1024Ciphertext::try_from(raw)
            .map_err(|_| Error::InvalidKemKey("KEM ciphertext must be 1569 bytes"))?;
        let mut secret = KemSharedSecret::new();
        decapsulate_in_frame(&self.0, &ct, &mut secret.0);
        scrub_stack();
        Ok(secret)
    }
}

impl std::fmt::Debug for KemSecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KemSecretKey(<redacted>)")
    }
}

/// A Kyber1024 key pair.
#[derive(Clone, Debug)]
pub struct KemKeyPair {
    /// The public key.
    pub public_key: KemPublicKey,
    /// The secret key.
    pub secret_key: KemSecretKey,
}

impl KemKeyPair {
    /// Generates a fresh key pair from 64 random bytes.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut());
        let mut secret_key = KemSecretKey::empty();
        let mut public_key = Box::new([0u8; PUBLIC_RAW_LEN]);
        generate_in_frame(&seed, &mut secret_key.0, &mut public_key);
        scrub_stack();
        KemKeyPair {
            public_key: KemPublicKey(public_key),
            secret_key,
        }
    }

    /// Completes a key pair from a serialized secret key: Kyber's secret
    /// key embeds the public key (bytes 1536..3104 of the raw key).
    pub fn from_secret_key(secret_key: KemSecretKey) -> Result<Self> {
        let mut public = Vec::with_capacity(KEM_PUBLIC_KEY_LEN);
        public.push(KYBER1024_TYPE);
        public.extend_from_slice(&secret_key.raw()[1536..1536 + PUBLIC_RAW_LEN]);
        Ok(KemKeyPair {
            public_key: KemPublicKey::deserialize(&public)?,
            secret_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;

    #[test]
    fn encapsulate_then_decapsulate() {
        let pair = KemKeyPair::generate(&mut OsRng);
        let (ct, ss) = pair.public_key.encapsulate(&mut OsRng);
        assert_eq!(ct.len(), KEM_CIPHERTEXT_LEN);
        assert_eq!(ct[0], KYBER1024_TYPE);
        assert_eq!(*pair.secret_key.decapsulate(&ct).unwrap(), *ss);
        // Another key: implicit rejection gives another secret.
        let other = KemKeyPair::generate(&mut OsRng);
        assert_ne!(*other.secret_key.decapsulate(&ct).unwrap(), *ss);
    }

    #[test]
    fn serialized_forms_round_trip_and_are_strict() {
        let pair = KemKeyPair::generate(&mut OsRng);
        let pk = pair.public_key.serialize();
        assert_eq!(pk.len(), KEM_PUBLIC_KEY_LEN);
        assert_eq!(KemPublicKey::deserialize(&pk).unwrap(), pair.public_key);
        let sk = pair.secret_key.serialize();
        assert_eq!(sk.len(), KEM_SECRET_KEY_LEN);
        let back = KemKeyPair::from_secret_key(KemSecretKey::deserialize(&sk).unwrap()).unwrap();
        assert_eq!(back.public_key, pair.public_key);
        for (bytes, len) in [
            (pk.clone(), KEM_PUBLIC_KEY_LEN),
            (sk.to_vec(), KEM_SECRET_KEY_LEN),
        ] {
            let mut wrong_type = bytes.clone();
            wrong_type[0] = MLKEM1024_TYPE;
            assert!(KemPublicKey::deserialize(&wrong_type).is_err());
            assert!(KemSecretKey::deserialize(&wrong_type).is_err());
            wrong_type[0] = 0x05;
            assert!(KemPublicKey::deserialize(&wrong_type).is_err());
            assert!(KemPublicKey::deserialize(&bytes[..len - 1]).is_err());
            assert!(KemSecretKey::deserialize(&bytes[..len - 1]).is_err());
        }
        let (ct, _) = pair.public_key.encapsulate(&mut OsRng);
        let mut bad = ct.clone();
        bad[0] = MLKEM1024_TYPE;
        assert!(matches!(
            pair.secret_key.decapsulate(&bad),
            Err(Error::InvalidKemKey(_))
        ));
        assert!(pair.secret_key.decapsulate(&ct[..100]).is_err());
        // Unreduced coefficients: 0xff bytes everywhere.
        let mut unreduced = vec![0xffu8; KEM_PUBLIC_KEY_LEN];
        unreduced[0] = KYBER1024_TYPE;
        assert!(KemPublicKey::deserialize(&unreduced).is_err());
        assert_eq!(format!("{:?}", pair.secret_key), "KemSecretKey(<redacted>)");
    }
}

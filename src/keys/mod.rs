//! Curve25519 keys: public keys with the 33-byte serialization, private keys,
//! key pairs, identity key pairs, XEdDSA signatures and registration ids.

mod curve;
mod xeddsa;

use rand::{CryptoRng, Rng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};

/// The type byte that starts every serialized public key.
pub const DJB_KEY_TYPE: u8 = 0x05;
/// Length of a serialized public key: type byte + 32-byte u-coordinate.
pub const PUBLIC_KEY_LEN: usize = 33;
/// Length of a private key.
pub const PRIVATE_KEY_LEN: usize = 32;
/// Length of an XEdDSA signature.
pub const SIGNATURE_LEN: usize = 64;
/// Largest registration id (14 bits, as deployed).
pub const MAX_REGISTRATION_ID: u32 = 16380;

/// A Curve25519 public key (a Montgomery u-coordinate).
///
/// Always canonical: bit 255 is clear and `u < 2^255 - 19`. X25519 ignores
/// the top bit and reduces `u` modulo p, so a non-canonical encoding is an
/// alias of a canonical key with other bytes; every way to build a
/// `PublicKey` from outside bytes refuses aliases
/// ([`Error::NonCanonicalKey`]), so that comparing two keys' bytes compares
/// the keys (a replayed prekey message cannot pass as new by flipping its
/// base key's top bit). Keys this library derives are always canonical.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

/// True when `u` is the canonical encoding of a field element: bit 255
/// clear and `u < p = 2^255 - 19`. Public data: not constant time.
pub(crate) fn is_canonical_u(u: &[u8; 32]) -> bool {
    // Non-canonical exactly when the top bit is set, or u is in p..2^255-1:
    // 0x7f ff..ff (bytes 30..1) and a low byte of at least 0xed.
    if u[31] & 0x80 != 0 {
        return false;
    }
    !(u[31] == 0x7f && u[1..31].iter().all(|&b| b == 0xff) && u[0] >= 0xed)
}

impl PublicKey {
    /// Parses the 33-byte serialized form (`0x05 || u`). A non-canonical
    /// `u` is [`Error::NonCanonicalKey`].
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != PUBLIC_KEY_LEN {
            return Err(Error::InvalidKeyLength {
                expected: PUBLIC_KEY_LEN,
                got: bytes.len(),
            });
        }
        if bytes[0] != DJB_KEY_TYPE {
            return Err(Error::InvalidKeyType(bytes[0]));
        }
        let mut u = [0u8; 32];
        u.copy_from_slice(&bytes[1..]);
        Self::from_u_coordinate(u)
    }

    /// The 33-byte serialized form (`0x05 || u`).
    pub fn serialize(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out[0] = DJB_KEY_TYPE;
        out[1..].copy_from_slice(&self.0);
        out
    }

    /// The raw 32-byte u-coordinate.
    pub fn u_coordinate(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a key from a raw u-coordinate. A non-canonical `u` is
    /// [`Error::NonCanonicalKey`].
    pub fn from_u_coordinate(u: [u8; 32]) -> Result<Self> {
        if !is_canonical_u(&u) {
            return Err(Error::NonCanonicalKey);
        }
        Ok(PublicKey(u))
    }

    /// Verifies an XEdDSA signature made by the private key of this public key.
    /// Returns `false` for any malformed or wrong signature, and for every
    /// signature under a low-order key (for which signatures can be forged
    /// without a private key).
    pub fn verify_signature(&self, message: &[u8], signature: &[u8]) -> bool {
        match <&[u8; SIGNATURE_LEN]>::try_from(signature) {
            Ok(sig) => xeddsa::verify(&self.0, message, sig),
            Err(_) => false,
        }
    }

    /// Whether the key is a point of the curve (not its twist) in the
    /// prime-order subgroup: no small-order component. Every honestly made
    /// key is (a clamped scalar times the base point); a key plus a point of
    /// small order is a second encoding that X25519 with clamped scalars
    /// cannot tell apart. One scalar multiplication; public data, not
    /// constant time.
    pub fn is_in_prime_order_subgroup(&self) -> bool {
        curve25519_dalek::montgomery::MontgomeryPoint(self.0)
            .to_edwards(0)
            .is_some_and(|p| p.is_torsion_free() && !p.is_small_order())
    }

    /// Constant-time equality of two public keys: the byte differences are
    /// OR-ed together without an early exit, then compared with zero by
    /// `subtle` (one optimization barrier instead of one per byte).
    pub fn ct_eq(&self, other: &PublicKey) -> bool {
        let diff = self
            .0
            .iter()
            .zip(&other.0)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        bool::from(diff.ct_eq(&0))
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(05")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A Curve25519 private key: 32 bytes, clamped as X25519 clamps.
/// Zeroized on drop; its `Debug` output is redacted.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey(Box<[u8; 32]>);

impl PrivateKey {
    /// Generates a fresh random private key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(bytes.as_mut());
        Self::from_bytes(&bytes)
    }

    /// Builds a private key from 32 bytes, clamping them.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let arr = <&[u8; 32]>::try_from(bytes).map_err(|_| Error::InvalidKeyLength {
            expected: PRIVATE_KEY_LEN,
            got: bytes.len(),
        })?;
        Ok(Self::from_bytes(arr))
    }

    fn from_bytes(bytes: &[u8; 32]) -> Self {
        let mut k = Box::new(*bytes);
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        PrivateKey(k)
    }

    /// The 32 clamped private key bytes. Handle with care.
    pub fn serialize(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(*self.0)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(curve::x25519_base(&self.0))
    }

    /// X25519 with `their` public key. Fails with
    /// [`Error::NonContributoryKey`] when the result is all zeros (a
    /// low-order point).
    pub fn agree(&self, their: &PublicKey) -> Result<Zeroizing<[u8; 32]>> {
        curve::x25519(&self.0, &their.0)
            .map(Zeroizing::new)
            .ok_or(Error::NonContributoryKey)
    }

    /// Signs `message` with XEdDSA (the deployed variant).
    pub fn sign<R: RngCore + CryptoRng>(&self, message: &[u8], rng: &mut R) -> [u8; SIGNATURE_LEN] {
        let mut z = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(z.as_mut());
        xeddsa::sign(&self.0, message, &z)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// A Curve25519 key pair.
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The public half.
    pub public_key: PublicKey,
    /// The private half.
    pub private_key: PrivateKey,
}

impl KeyPair {
    /// Generates a fresh key pair.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::from_private_key(PrivateKey::generate(rng))
    }

    /// Completes a key pair from its private key.
    pub fn from_private_key(private_key: PrivateKey) -> Self {
        KeyPair {
            public_key: private_key.public_key(),
            private_key,
        }
    }
}

/// A long-term identity key pair.
#[derive(Clone, Debug)]
pub struct IdentityKeyPair(KeyPair);

impl IdentityKeyPair {
    /// Generates a fresh identity.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        IdentityKeyPair(KeyPair::generate(rng))
    }

    /// Builds an identity from its private key.
    pub fn from_private_key(private_key: PrivateKey) -> Self {
        IdentityKeyPair(KeyPair::from_private_key(private_key))
    }

    /// The public identity key.
    pub fn public_key(&self) -> &PublicKey {
        &self.0.public_key
    }

    /// The private identity key.
    pub fn private_key(&self) -> &PrivateKey {
        &self.0.private_key
    }
}

/// Generates a random registration id in `1..=16380`.
pub fn generate_registration_id<R: RngCore + CryptoRng>(rng: &mut R) -> u32 {
    rng.gen_range(1..=MAX_REGISTRATION_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    #[test]
    fn public_key_ct_eq_sees_every_byte_and_bit() {
        let key = KeyPair::generate(&mut rand::rngs::OsRng).public_key;
        assert!(key.ct_eq(&key.clone()));
        for byte in 0..32 {
            for bit in 0..8 {
                let mut other = key;
                other.0[byte] ^= 1 << bit;
                assert!(!key.ct_eq(&other), "byte {byte} bit {bit}");
                assert!(!other.ct_eq(&key));
            }
        }
    }

    #[test]
    fn rfc7748_x25519_vectors() {
        // RFC 7748 section 5.2
        let k = h("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4");
        let u = h("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c");
        assert_eq!(
            x25519_dalek::x25519(k, u),
            h("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
        );
        // RFC 7748 section 6.1 (Diffie-Hellman), through our key types
        let a = PrivateKey::deserialize(&h(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ))
        .unwrap();
        let b = PrivateKey::deserialize(&h(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ))
        .unwrap();
        assert_eq!(
            a.public_key().u_coordinate(),
            &h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            b.public_key().u_coordinate(),
            &h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(*a.agree(&b.public_key()).unwrap(), shared);
        assert_eq!(*b.agree(&a.public_key()).unwrap(), shared);
    }

    #[test]
    fn low_order_point_is_rejected() {
        let a = PrivateKey::generate(&mut rand::rngs::OsRng);
        for u in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                a.agree(&PublicKey::from_u_coordinate(u).unwrap())
                    .unwrap_err(),
                Error::NonContributoryKey
            );
        }
    }

    #[test]
    fn public_key_serialization_is_strict() {
        let k = KeyPair::generate(&mut rand::rngs::OsRng).public_key;
        let s = k.serialize();
        assert_eq!(s[0], 5);
        assert_eq!(PublicKey::deserialize(&s).unwrap(), k);
        assert!(matches!(
            PublicKey::deserialize(&s[..32]),
            Err(Error::InvalidKeyLength {
                expected: 33,
                got: 32
            })
        ));
        let mut bad = s;
        bad[0] = 6;
        assert_eq!(PublicKey::deserialize(&bad), Err(Error::InvalidKeyType(6)));
    }

    #[test]
    fn non_canonical_public_keys_are_refused() {
        let p_minus_1 = h("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f");
        assert!(PublicKey::from_u_coordinate(p_minus_1).is_ok());
        // p, p + 1, 2^255 - 1: u >= p.
        for low in [0xedu8, 0xee, 0xff] {
            let mut u = p_minus_1;
            u[0] = low;
            assert_eq!(PublicKey::from_u_coordinate(u), Err(Error::NonCanonicalKey));
        }
        // Bit 255 set on real keys: the aliases X25519 cannot tell apart.
        for _ in 0..100 {
            let k = KeyPair::generate(&mut rand::rngs::OsRng);
            let mut alias = k.public_key.serialize();
            alias[32] |= 0x80;
            assert_eq!(PublicKey::deserialize(&alias), Err(Error::NonCanonicalKey));
            let other = PrivateKey::generate(&mut rand::rngs::OsRng);
            let mut u = [0u8; 32];
            u.copy_from_slice(&alias[1..]);
            // The alias agrees to the same secret: why it must be refused.
            assert_eq!(
                curve::x25519(&other.serialize(), &u).unwrap(),
                *other.agree(&k.public_key).unwrap()
            );
            // Every key this library derives is canonical.
            assert!(is_canonical_u(k.public_key.u_coordinate()));
        }
    }

    #[test]
    fn xeddsa_verify_refuses_aliases_and_small_order_keys() {
        let kp = KeyPair::generate(&mut rand::rngs::OsRng);
        let sig = kp.private_key.sign(b"m", &mut rand::rngs::OsRng);
        assert!(xeddsa::verify(kp.public_key.u_coordinate(), b"m", &sig));
        let mut alias = *kp.public_key.u_coordinate();
        alias[31] |= 0x80;
        assert!(!xeddsa::verify(&alias, b"m", &sig));
        // u = 0 maps to an Edwards point of order 2: R = identity, s = 0
        // satisfies the equation for every message whose challenge is even.
        let mut identity_r = [0u8; 64];
        identity_r[0] = 1;
        for i in 0..16u8 {
            assert!(!xeddsa::verify(&[0u8; 32], &[i], &identity_r));
        }
    }

    #[test]
    fn prime_order_subgroup_check_agrees_with_torsion_freeness() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        use curve25519_dalek::montgomery::MontgomeryPoint;
        for _ in 0..200 {
            let k = KeyPair::generate(&mut rand::rngs::OsRng).public_key;
            assert!(k.is_in_prime_order_subgroup());
            let e = MontgomeryPoint(k.0).to_edwards(0).unwrap();
            for t in &EIGHT_TORSION[1..] {
                let alias = PublicKey((e + t).to_montgomery().to_bytes());
                assert!(!alias.is_in_prime_order_subgroup());
            }
        }
    }

    #[test]
    fn private_key_debug_is_redacted() {
        let k = PrivateKey::generate(&mut rand::rngs::OsRng);
        assert_eq!(format!("{k:?}"), "PrivateKey(<redacted>)");
    }

    #[test]
    fn registration_ids_in_range() {
        for _ in 0..1000 {
            let id = generate_registration_id(&mut rand::rngs::OsRng);
            assert!((1..=16380).contains(&id));
        }
    }
}

//! XEdDSA over Curve25519, in the variant deployed by Signal: the Edwards
//! public key `A = a·B` is not negated; its sign bit travels in the top bit of
//! the signature's last byte.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

fn hash_to_scalar(parts: &[&[u8]]) -> Scalar {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    Scalar::from_hash(h)
}

/// Signs `message` with the clamped X25519 private key `k` and 64 random bytes `z`.
pub(crate) fn sign(k: &[u8; 32], message: &[u8], z: &[u8; 64]) -> [u8; 64] {
    let a = Zeroizing::new(Scalar::from_bytes_mod_order(*k));
    let cap_a = (ED25519_BASEPOINT_TABLE * &*a).compress();
    let sign_bit = cap_a.as_bytes()[31] & 0x80;

    const PREFIX: [u8; 32] = {
        let mut p = [0xFFu8; 32];
        p[0] = 0xFE;
        p
    };
    let r = Zeroizing::new(hash_to_scalar(&[&PREFIX, k, message, z]));
    let cap_r = (ED25519_BASEPOINT_TABLE * &*r).compress();
    let h = hash_to_scalar(&[cap_r.as_bytes(), cap_a.as_bytes(), message]);
    let s = h * *a + *r;

    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(cap_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    sig[63] = (sig[63] & 0x7F) | sign_bit;
    sig
}

/// Verifies `signature` over `message` under the public u-coordinate `u`.
///
/// Refuses a non-canonical `u` (bit 255 set or `u >= p`: an alias of another
/// key) and a small-order key (any signature "verifies" under the identity
/// point, and the other small-order points allow forgeries without a private
/// key) before looking at the signature.
pub(crate) fn verify(u: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    if !super::is_canonical_u(u) {
        return false;
    }
    let sign_bit = signature[63] >> 7;
    let Some(a_point) = MontgomeryPoint(*u).to_edwards(sign_bit) else {
        return false;
    };
    if a_point.is_small_order() {
        return false;
    }
    let cap_a = a_point.compress();
    let mut cap_r = [0u8; 32];
    cap_r.copy_from_slice(&signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&signature[32..]);
    s_bytes[31] &= 0x7F;
    if s_bytes[31] & 0xE0 != 0 {
        return false;
    }
    // Stricter than the deployed library: s must also be canonical (< q).
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let h = hash_to_scalar(&[&cap_r, cap_a.as_bytes(), message]);
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&h, &-a_point, &s).compress();
    bool::from(check.as_bytes().ct_eq(CompressedEdwardsY(cap_r).as_bytes()))
}

#[cfg(test)]
mod tests {
    use crate::keys::{KeyPair, PrivateKey};
    use rand::rngs::OsRng;

    #[test]
    fn sign_then_verify() {
        for len in [0usize, 1, 33, 100, 1000] {
            let kp = KeyPair::generate(&mut OsRng);
            let msg = vec![0xA5u8; len];
            let sig = kp.private_key.sign(&msg, &mut OsRng);
            assert!(kp.public_key.verify_signature(&msg, &sig));
            // another message, another key
            assert!(!kp.public_key.verify_signature(b"other", &sig));
            let other = KeyPair::generate(&mut OsRng);
            assert!(!other.public_key.verify_signature(&msg, &sig));
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let kp = KeyPair::generate(&mut OsRng);
        let msg = b"signed prekey";
        let sig = kp.private_key.sign(msg, &mut OsRng);
        for bit in 0..512 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !kp.public_key.verify_signature(msg, &bad),
                "bit {bit} flipped still verifies"
            );
        }
    }

    #[test]
    fn flipped_sign_bit_is_rejected() {
        let kp = KeyPair::generate(&mut OsRng);
        let sig = kp.private_key.sign(b"m", &mut OsRng);
        let mut bad = sig;
        bad[63] ^= 0x80;
        assert!(!kp.public_key.verify_signature(b"m", &bad));
    }

    #[test]
    fn non_canonical_s_is_rejected() {
        let kp = KeyPair::generate(&mut OsRng);
        let msg = b"m";
        let sig = kp.private_key.sign(msg, &mut OsRng);
        // s + q: the same scalar mod q, but not canonical.
        // q = 2^252 + 27742317777372353535851937790883648493, little-endian
        let q: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        s[31] &= 0x7F;
        let mut carry = 0u16;
        for i in 0..32 {
            let v = s[i] as u16 + q[i] as u16 + carry;
            s[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0);
        let mut bad = sig;
        bad[32..].copy_from_slice(&s);
        bad[63] |= sig[63] & 0x80;
        assert!(!kp.public_key.verify_signature(msg, &bad));
        // high bits of s set
        let mut bad = sig;
        bad[63] |= 0x20;
        assert!(!kp.public_key.verify_signature(msg, &bad));
    }

    #[test]
    fn wrong_length_is_rejected() {
        let kp = KeyPair::generate(&mut OsRng);
        let sig = kp.private_key.sign(b"m", &mut OsRng);
        assert!(!kp.public_key.verify_signature(b"m", &sig[..63]));
        let _ = PrivateKey::generate(&mut OsRng);
    }
}

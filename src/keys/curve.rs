//! X25519 scalar multiplication, with a fast backend selected at build time.
//!
//! With the default `fast-x25519` feature, X25519 runs through AWS-LC
//! (`aws-lc-sys`), whose x86-64 and aarch64 code is s2n-bignum's formally
//! verified, constant-time assembly — about twice as fast as the portable
//! Montgomery ladder. Without the feature, `x25519-dalek` computes DH and
//! curve25519-dalek's precomputed Edwards basepoint table derives public
//! keys. Both backends give identical results on every input (tested on the
//! RFC 7748 vectors, random, non-canonical, twist and low-order inputs).

/// `X25519(k, u)`; `None` when the result is all zeros (a low-order `u`).
#[cfg(feature = "fast-x25519")]
#[allow(unsafe_code)]
pub(crate) fn x25519(k: &[u8; 32], u: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    // SAFETY: the three pointers are valid for 32 bytes each, as
    // X25519(3) requires; out does not alias the inputs. The function only
    // reads k and u and writes out.
    let ok = unsafe { aws_lc_sys::X25519(out.as_mut_ptr(), k.as_ptr(), u.as_ptr()) };
    // AWS-LC returns 0 exactly when the shared secret is all zeros.
    (ok == 1).then_some(out)
}

/// `X25519(k, 9)`: the public key of private key `k`.
#[cfg(feature = "fast-x25519")]
#[allow(unsafe_code)]
pub(crate) fn x25519_base(k: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    // SAFETY: both pointers are valid for 32 bytes and do not alias.
    unsafe { aws_lc_sys::X25519_public_from_private(out.as_mut_ptr(), k.as_ptr()) };
    out
}

/// `X25519(k, u)`; `None` when the result is all zeros (a low-order `u`).
#[cfg(not(feature = "fast-x25519"))]
pub(crate) fn x25519(k: &[u8; 32], u: &[u8; 32]) -> Option<[u8; 32]> {
    use subtle::ConstantTimeEq;
    let out = x25519_dalek::x25519(*k, *u);
    (!bool::from(out.ct_eq(&[0u8; 32]))).then_some(out)
}

/// `X25519(k, 9)`: the public key of private key `k`.
#[cfg(not(feature = "fast-x25519"))]
pub(crate) fn x25519_base(k: &[u8; 32]) -> [u8; 32] {
    curve25519_dalek::EdwardsPoint::mul_base_clamped(*k)
        .to_montgomery()
        .to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore};

    /// The portable reference: x25519-dalek's Montgomery ladder.
    fn reference(k: &[u8; 32], u: &[u8; 32]) -> Option<[u8; 32]> {
        let out = x25519_dalek::x25519(*k, *u);
        (out != [0u8; 32]).then_some(out)
    }

    fn low_order_points() -> Vec<[u8; 32]> {
        let h = |s: &str| -> [u8; 32] {
            let v: Vec<u8> = (0..64)
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect();
            v.try_into().unwrap()
        };
        let mut pts = vec![
            [0u8; 32],
            {
                let mut one = [0u8; 32];
                one[0] = 1;
                one
            },
            h("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
            h("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
            // p - 1, p, p + 1 (non-canonical encodings of -1, 0, 1)
            h("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            h("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
            h("eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
        ];
        // The same points with the (ignored) top bit set.
        let with_top: Vec<[u8; 32]> = pts
            .iter()
            .map(|p| {
                let mut q = *p;
                q[31] |= 0x80;
                q
            })
            .collect();
        pts.extend(with_top);
        pts
    }

    #[test]
    fn equals_reference_on_rfc7748_iterated_vector() {
        // RFC 7748 section 5.2, 1,000 iterations.
        let mut k = [0u8; 32];
        k[0] = 9;
        let mut u = k;
        for _ in 0..1000 {
            let out = x25519(&k, &u).unwrap();
            assert_eq!(Some(out), reference(&k, &u));
            u = k;
            k = out;
        }
        assert_eq!(k[..8], [0x68, 0x4c, 0xf5, 0x9b, 0xa8, 0x33, 0x09, 0x55]);
    }

    #[test]
    fn equals_reference_on_100000_random_inputs() {
        let mut rng = rand::rngs::OsRng;
        for i in 0..100_000u32 {
            let mut k = [0u8; 32];
            let mut u = [0u8; 32];
            rng.fill_bytes(&mut k);
            rng.fill_bytes(&mut u);
            match i % 4 {
                // non-canonical u-coordinates (>= p, including the top bit)
                0 => {
                    u[1..].fill(0xff);
                    u[0] = rng.gen_range(0xed..=0xff);
                }
                // twist points are about half of all random u: no change
                1 => {}
                // random top bit
                2 => u[31] |= 0x80,
                // small u
                _ => {
                    u = [0u8; 32];
                    u[0] = rng.gen();
                }
            }
            assert_eq!(x25519(&k, &u), reference(&k, &u), "k={k:02x?} u={u:02x?}");
            assert_eq!(
                x25519_base(&k),
                x25519_dalek::x25519(k, x25519_dalek::X25519_BASEPOINT_BYTES)
            );
        }
    }

    #[test]
    fn low_order_points_give_none_like_reference() {
        let mut rng = rand::rngs::OsRng;
        for u in low_order_points() {
            for _ in 0..20 {
                let mut k = [0u8; 32];
                rng.fill_bytes(&mut k);
                assert_eq!(x25519(&k, &u), None, "u={u:02x?}");
                assert_eq!(reference(&k, &u), None);
            }
        }
    }
}

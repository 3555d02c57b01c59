//! Arithmetic in GF(2¹⁶) = GF(2)\[x\] / (x¹⁶ + x¹² + x³ + x + 1) (SPQR.md
//! §6.1): an element is a `u16` whose bit *i* is the coefficient of xⁱ;
//! addition is XOR.

/// The reduction polynomial x¹⁶ + x¹² + x³ + x + 1.
pub(crate) const MODULUS: u32 = 0x1100B;

/// The product `a · b`: carry-less multiplication, then reduction.
pub(crate) fn mul(a: u16, b: u16) -> u16 {
    let (a, b) = (u32::from(a), u32::from(b));
    let mut product = 0u32;
    for bit in 0..16 {
        // Branch-free: the mask is all ones when bit `bit` of b is set.
        product ^= (a << bit) & 0u32.wrapping_sub((b >> bit) & 1);
    }
    for bit in (16..32).rev() {
        product ^= (MODULUS << (bit - 16)) & 0u32.wrapping_sub((product >> bit) & 1);
    }
    product as u16
}

/// The inverse `a⁻¹ = a^(2¹⁶ − 2)`; 0 for `a = 0` (never used so).
pub(crate) fn inv(a: u16) -> u16 {
    // 2^16 - 2 = 0b1111_1111_1111_1110.
    let mut result = 1u16;
    let mut base = a;
    let mut exp = 0xFFFEu32;
    while exp > 0 {
        if exp & 1 == 1 {
            result = mul(result, base);
        }
        base = mul(base, base);
        exp >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appendix_a1() {
        assert_eq!(mul(0x0002, 0x0003), 0x0006);
        assert_eq!(mul(0x8000, 0x0002), 0x100B);
        assert_eq!(mul(0x0100, 0x0100), 0x100B);
        assert_eq!(mul(0x1234, 0x5678), 0x6324);
        assert_eq!(mul(0xFFFF, 0xFFFF), 0x0733);
        assert_eq!(inv(0x0001), 0x0001);
        assert_eq!(inv(0x0002), 0x8805);
        assert_eq!(inv(0x0003), 0xF006);
        assert_eq!(inv(0x1234), 0x2CE9);
        assert_eq!(inv(0xFFFF), 0x0894);
    }

    #[test]
    fn every_nonzero_element_has_an_inverse() {
        for a in 1..=u16::MAX {
            assert_eq!(mul(a, inv(a)), 1, "{a:#06x}");
        }
    }

    #[test]
    fn multiplication_commutes_and_distributes() {
        let samples = [0u16, 1, 2, 3, 0x00ff, 0x1234, 0x8000, 0xabcd, 0xffff];
        for &a in &samples {
            for &b in &samples {
                assert_eq!(mul(a, b), mul(b, a));
                for &c in &samples {
                    assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
                }
            }
        }
    }
}

//! Public keys and identity key pairs.

use rand::rngs::OsRng;

use super::bytes::rk_bytes;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_bytes, new_handle, out_buf, out_ptr,
};
use super::status::rk_status;
use crate::keys::{IdentityKeyPair, PrivateKey, PublicKey};

/// A Curve25519 public key (serialized as 33 bytes: `0x05` then 32 bytes).
/// Immutable: may be read from several threads at once.
pub struct rk_public_key {
    _opaque: [u8; 0],
}
impl_handle!(rk_public_key, PublicKey, 0x726b_7075_626b_6579);

impl rk_public_key {
    pub(crate) fn boxed(key: PublicKey) -> *mut rk_public_key {
        new_handle(key)
    }
}

/// A long-term identity key pair (private key held inside, zeroized when the
/// handle is freed). Immutable: may be read from several threads at once.
pub struct rk_identity_keypair {
    _opaque: [u8; 0],
}
impl_handle!(rk_identity_keypair, IdentityKeyPair, 0x726b_6964_6b70_6169);

impl rk_identity_keypair {
    pub(crate) fn boxed(pair: IdentityKeyPair) -> *mut rk_identity_keypair {
        new_handle(pair)
    }
}

/// Parses a serialized public key: exactly `RK_PUBLIC_KEY_LEN` (33) bytes,
/// the first being the key type `0x05`.
///
/// On `RK_STATUS_OK`, `*key_out` receives a new handle the caller owns and
/// frees with `rk_public_key_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER` (`key_out` NULL, or `bytes` NULL with a
/// nonzero length), `RK_STATUS_INVALID_KEY` (wrong length, or a type byte
/// other than `0x05`).
/// Thread safety: any thread.
///
/// # Safety
/// `bytes` must point to `len` readable bytes (it is only read during the
/// call); `key_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_public_key_deserialize(
    bytes: *const u8,
    len: usize,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bytes = unsafe { input_bytes(bytes, len, "bytes") }?;
        let out = out_ptr(key_out, "key_out")?;
        let key = PublicKey::deserialize(bytes)?;
        out.write(rk_public_key::boxed(key));
        Ok(())
    })
}

/// Writes the 33-byte serialized form of `key` into `out`, which must hold at
/// least `RK_PUBLIC_KEY_LEN` bytes (`out_cap`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL` (`out_cap` < 33).
/// Thread safety: any thread; `key` may be shared.
///
/// # Safety
/// `key` must be NULL or a live `rk_public_key`; `out` must point to
/// `out_cap` writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_public_key_serialize(
    key: *const rk_public_key,
    out: *mut u8,
    out_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let key = unsafe { handle_ref(key) }?;
        let out = out_buf(out, out_cap, crate::keys::PUBLIC_KEY_LEN, "out")?;
        out.write(&key.serialize())
    })
}

/// Sets `*equal_out` to whether `a` and `b` are the same key (constant
/// time).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; the keys may be shared.
///
/// # Safety
/// `a` and `b` must be NULL or live `rk_public_key` handles; `equal_out`
/// must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_public_key_equals(
    a: *const rk_public_key,
    b: *const rk_public_key,
    equal_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let (a, b) = unsafe { (handle_ref(a)?, handle_ref(b)?) };
        let out = out_ptr(equal_out, "equal_out")?;
        out.write(a.ct_eq(b));
        Ok(())
    })
}

/// Sets `*valid_out` to whether `signature` (`RK_SIGNATURE_LEN` = 64 bytes,
/// XEdDSA) is a signature of `message` by the private key of `key`. A
/// signature of the wrong length is simply not valid (status OK, false).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `key` may be shared.
///
/// # Safety
/// `key` must be NULL or a live `rk_public_key`; `message` and `signature`
/// must point to their lengths in readable bytes; `valid_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_public_key_verify_signature(
    key: *const rk_public_key,
    message: *const u8,
    message_len: usize,
    signature: *const u8,
    signature_len: usize,
    valid_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let key = unsafe { handle_ref(key) }?;
        // SAFETY: caller's contract.
        let message = unsafe { input_bytes(message, message_len, "message") }?;
        // SAFETY: caller's contract.
        let signature = unsafe { input_bytes(signature, signature_len, "signature") }?;
        let out = out_ptr(valid_out, "valid_out")?;
        out.write(key.verify_signature(message, signature));
        Ok(())
    })
}

/// Frees a public key handle. NULL is a no-op.
///
/// Thread safety: no other thread may be using the handle.
///
/// # Safety
/// `key` must be NULL or a live `rk_public_key`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rk_public_key_free(key: *mut rk_public_key) {
    // SAFETY: caller's contract.
    unsafe { free_handle(key) }
}

/// Generates a new random identity key pair. On `RK_STATUS_OK`,
/// `*pair_out` receives a new handle the caller frees with
/// `rk_identity_keypair_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER` (`pair_out` NULL).
/// Thread safety: any thread.
///
/// # Safety
/// `pair_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_identity_keypair_generate(
    pair_out: *mut *mut rk_identity_keypair,
) -> rk_status {
    guard(|| {
        let out = out_ptr(pair_out, "pair_out")?;
        out.write(rk_identity_keypair::boxed(IdentityKeyPair::generate(
            &mut OsRng,
        )));
        Ok(())
    })
}

/// Rebuilds an identity key pair from its `RK_PRIVATE_KEY_LEN` (32) private
/// key bytes (as written by `rk_identity_keypair_serialize`). On
/// `RK_STATUS_OK`, `*pair_out` receives a new handle the caller frees with
/// `rk_identity_keypair_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_KEY` (not 32
/// bytes).
/// Thread safety: any thread.
///
/// # Safety
/// `private_key` must point to `len` readable bytes; `pair_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_identity_keypair_deserialize(
    private_key: *const u8,
    len: usize,
    pair_out: *mut *mut rk_identity_keypair,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bytes = unsafe { input_bytes(private_key, len, "private_key") }?;
        let out = out_ptr(pair_out, "pair_out")?;
        let key = PrivateKey::deserialize(bytes)?;
        out.write(rk_identity_keypair::boxed(
            IdentityKeyPair::from_private_key(key),
        ));
        Ok(())
    })
}

/// Writes the 32 private key bytes of `pair` into a new `rk_bytes` at
/// `*private_key_out` (a secret: keep it safe, free it with `rk_bytes_free`,
/// which zeroizes it).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `pair` may be shared.
///
/// # Safety
/// `pair` must be NULL or a live `rk_identity_keypair`; `private_key_out`
/// must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_identity_keypair_serialize(
    pair: *const rk_identity_keypair,
    private_key_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let pair = unsafe { handle_ref(pair) }?;
        let out = out_ptr(private_key_out, "private_key_out")?;
        let secret = pair.private_key().serialize();
        out.write(rk_bytes::copy_from(&secret[..])?);
        Ok(())
    })
}

/// Gives the public identity key of `pair` as a new handle at `*key_out`,
/// which the caller frees with `rk_public_key_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `pair` may be shared.
///
/// # Safety
/// `pair` must be NULL or a live `rk_identity_keypair`; `key_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_identity_keypair_public_key(
    pair: *const rk_identity_keypair,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let pair = unsafe { handle_ref(pair) }?;
        let out = out_ptr(key_out, "key_out")?;
        out.write(rk_public_key::boxed(*pair.public_key()));
        Ok(())
    })
}

/// Signs `message` with the identity private key (XEdDSA, randomized) and
/// writes the `RK_SIGNATURE_LEN` (64) byte signature into `signature_out`,
/// which holds `signature_cap` bytes.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL` (`signature_cap` < 64).
/// Thread safety: any thread; `pair` may be shared.
///
/// # Safety
/// `pair` must be NULL or a live `rk_identity_keypair`; `message` must point
/// to `message_len` readable bytes; `signature_out` to `signature_cap`
/// writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_identity_keypair_sign(
    pair: *const rk_identity_keypair,
    message: *const u8,
    message_len: usize,
    signature_out: *mut u8,
    signature_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let pair = unsafe { handle_ref(pair) }?;
        // SAFETY: caller's contract.
        let message = unsafe { input_bytes(message, message_len, "message") }?;
        let out = out_buf(
            signature_out,
            signature_cap,
            crate::keys::SIGNATURE_LEN,
            "signature_out",
        )?;
        out.write(&pair.private_key().sign(message, &mut OsRng))
    })
}

/// Frees an identity key pair handle, zeroizing the private key. NULL is a
/// no-op.
///
/// Thread safety: no other thread may be using the handle.
///
/// # Safety
/// `pair` must be NULL or a live `rk_identity_keypair`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rk_identity_keypair_free(pair: *mut rk_identity_keypair) {
    // SAFETY: caller's contract.
    unsafe { free_handle(pair) }
}

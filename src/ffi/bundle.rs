//! Prekey bundles.

use super::bytes::rk_bytes;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_bytes, new_handle, out_buf, out_ptr,
    FfiError, FfiResult,
};
use super::keys::rk_public_key;
use super::status::rk_status;
use crate::kem::KemPublicKey;
use crate::prekey::{PreKeyBundle, SignedKyberPreKey};

/// A prekey bundle: what a device publishes so that others can start a
/// session with it. Immutable: may be read from several threads at once.
pub struct rk_bundle {
    _opaque: [u8; 0],
}
impl_handle!(rk_bundle, PreKeyBundle, 0x726b_6275_6e64_6c65);

impl rk_bundle {
    pub(crate) fn boxed(bundle: PreKeyBundle) -> *mut rk_bundle {
        new_handle(bundle)
    }
}

/// The parts of a bundle without its Kyber prekey, checked and converted.
///
/// # Safety
/// As `rk_bundle_new`.
#[allow(clippy::too_many_arguments)]
unsafe fn bundle_from_parts(
    registration_id: u32,
    device_id: u32,
    identity_key: *const rk_public_key,
    signed_prekey_id: u32,
    signed_prekey: *const rk_public_key,
    signature: *const u8,
    signature_len: usize,
    prekey_id: u32,
    prekey: *const rk_public_key,
) -> FfiResult<PreKeyBundle> {
    // SAFETY: caller's contract.
    let identity_key = unsafe { handle_ref(identity_key) }?;
    // SAFETY: caller's contract.
    let signed_prekey = unsafe { handle_ref(signed_prekey) }?;
    // SAFETY: caller's contract.
    let signature = unsafe { input_bytes(signature, signature_len, "signature") }?;
    let pre_key = if prekey.is_null() {
        None
    } else {
        // SAFETY: caller's contract.
        Some((prekey_id, *unsafe { handle_ref(prekey) }?))
    };
    Ok(PreKeyBundle::new(
        registration_id,
        device_id,
        *identity_key,
        signed_prekey_id,
        *signed_prekey,
        signature,
        pre_key,
    )?)
}

/// Builds a bundle without a Kyber prekey from its parts (for example as
/// fetched from a server). Such a bundle starts a version-3 (X3DH) session,
/// which a store refuses by default (`RK_STATUS_VERSION_REFUSED` from
/// `rk_store_process_bundle`, see `rk_store_set_policy`); a bundle with a
/// Kyber prekey comes from `rk_bundle_new_with_kyber_prekey`. `prekey` is
/// the optional one-time prekey: NULL for none (then `prekey_id` is
/// ignored). The signature is checked when the bundle is processed
/// (`rk_store_process_bundle`), or by `rk_bundle_verify_signature`.
///
/// On `RK_STATUS_OK`, `*bundle_out` receives a new handle the caller frees
/// with `rk_bundle_free`. The key handles are only read during the call.
///
/// Statuses: `RK_STATUS_NULL_POINTER` (a required handle, `signature` with a
/// nonzero length, or `bundle_out` NULL), `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_BUNDLE` (device id 0, prekey ids outside
/// 1..=16777215, a signature that is not 64 bytes).
/// Thread safety: any thread.
///
/// # Safety
/// The key handles must be NULL or live `rk_public_key` handles;
/// `signature` must point to `signature_len` readable bytes; `bundle_out`
/// must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_new(
    registration_id: u32,
    device_id: u32,
    identity_key: *const rk_public_key,
    signed_prekey_id: u32,
    signed_prekey: *const rk_public_key,
    signature: *const u8,
    signature_len: usize,
    prekey_id: u32,
    prekey: *const rk_public_key,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe {
            bundle_from_parts(
                registration_id,
                device_id,
                identity_key,
                signed_prekey_id,
                signed_prekey,
                signature,
                signature_len,
                prekey_id,
                prekey,
            )
        };
        let out = out_ptr(bundle_out, "bundle_out")?;
        out.write(rk_bundle::boxed(bundle?));
        Ok(())
    })
}

/// Builds a bundle with a Kyber prekey from its parts: what
/// `rk_bundle_new` takes, plus the signed Kyber prekey: its id
/// (1..=16777215), its serialized public key (`kyber_prekey_len` =
/// `RK_KEM_PUBLIC_KEY_LEN` bytes: `0x08` then 1568 bytes of a Kyber1024
/// key) and the identity key's signature over those bytes
/// (`kyber_signature_len` = `RK_SIGNATURE_LEN`). Such a bundle starts a
/// version-4 (PQXDH) session. Both signatures are checked when the bundle
/// is processed (`rk_store_process_bundle`), or by
/// `rk_bundle_verify_signature`.
///
/// On `RK_STATUS_OK`, `*bundle_out` receives a new handle the caller frees
/// with `rk_bundle_free`. The key handles and bytes are only read during
/// the call.
///
/// Statuses: `RK_STATUS_NULL_POINTER` (a required handle, bytes with a
/// nonzero length, or `bundle_out` NULL), `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_KEY` (a Kyber key of the wrong length, a type byte
/// other than `0x08` - ML-KEM-1024's `0x0A` included - or a key that is not
/// well formed), `RK_STATUS_INVALID_BUNDLE` (device id 0, prekey ids
/// outside 1..=16777215, a signature that is not 64 bytes).
/// Thread safety: any thread.
///
/// # Safety
/// The key handles must be NULL or live `rk_public_key` handles; each byte
/// pointer must point to its length in readable bytes; `bundle_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_new_with_kyber_prekey(
    registration_id: u32,
    device_id: u32,
    identity_key: *const rk_public_key,
    signed_prekey_id: u32,
    signed_prekey: *const rk_public_key,
    signature: *const u8,
    signature_len: usize,
    prekey_id: u32,
    prekey: *const rk_public_key,
    kyber_prekey_id: u32,
    kyber_prekey: *const u8,
    kyber_prekey_len: usize,
    kyber_signature: *const u8,
    kyber_signature_len: usize,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe {
            bundle_from_parts(
                registration_id,
                device_id,
                identity_key,
                signed_prekey_id,
                signed_prekey,
                signature,
                signature_len,
                prekey_id,
                prekey,
            )
        };
        // SAFETY: caller's contract.
        let kyber_prekey = unsafe { input_bytes(kyber_prekey, kyber_prekey_len, "kyber_prekey") }?;
        // SAFETY: caller's contract.
        let kyber_signature =
            unsafe { input_bytes(kyber_signature, kyber_signature_len, "kyber_signature") }?;
        let out = out_ptr(bundle_out, "bundle_out")?;
        // The handles' errors first, then the Kyber key's.
        let bundle = bundle?.with_kyber_pre_key(
            kyber_prekey_id,
            KemPublicKey::deserialize(kyber_prekey)?,
            kyber_signature,
        )?;
        out.write(rk_bundle::boxed(bundle));
        Ok(())
    })
}

/// Serializes `bundle` (format version 1 without a Kyber prekey, 2 with
/// one; see the crate docs) into a new `rk_bytes` at `*bytes_out`, freed
/// with `rk_bytes_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `bytes_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_serialize(
    bundle: *const rk_bundle,
    bytes_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_ptr(bytes_out, "bytes_out")?;
        out.write(rk_bytes::from_vec(bundle.serialize())?);
        Ok(())
    })
}

/// Parses serialized bundle bytes strictly. On `RK_STATUS_OK`,
/// `*bundle_out` receives a new handle the caller frees with
/// `rk_bundle_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_BUNDLE` (empty,
/// truncated, unknown format version, missing or inconsistent fields, Kyber
/// fields in a format-1 bundle or missing from a format-2 one),
/// `RK_STATUS_INVALID_KEY` (a key of the wrong length or type, a Kyber key
/// included).
/// Thread safety: any thread.
///
/// # Safety
/// `bytes` must point to `len` readable bytes; `bundle_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_deserialize(
    bytes: *const u8,
    len: usize,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bytes = unsafe { input_bytes(bytes, len, "bytes") }?;
        let out = out_ptr(bundle_out, "bundle_out")?;
        out.write(rk_bundle::boxed(PreKeyBundle::deserialize(bytes)?));
        Ok(())
    })
}

/// Reads one `uint32_t` field of a bundle.
unsafe fn bundle_u32(
    bundle: *const rk_bundle,
    out: *mut u32,
    field: impl FnOnce(&PreKeyBundle) -> u32,
) -> rk_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_ptr(out, "out")?;
        out.write(field(bundle));
        Ok(())
    })
}

/// Reads one key field of a bundle as a new handle.
unsafe fn bundle_key(
    bundle: *const rk_bundle,
    out: *mut *mut rk_public_key,
    field: impl FnOnce(&PreKeyBundle) -> crate::keys::PublicKey,
) -> rk_status {
    guard(|| {
        // SAFETY: forwarded contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_ptr(out, "key_out")?;
        out.write(rk_public_key::boxed(field(bundle)));
        Ok(())
    })
}

/// The registration id of the bundle's owner, at `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_registration_id(
    bundle: *const rk_bundle,
    id_out: *mut u32,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { bundle_u32(bundle, id_out, |b| b.registration_id) }
}

/// The device id of the bundle's owner, at `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_device_id(
    bundle: *const rk_bundle,
    id_out: *mut u32,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { bundle_u32(bundle, id_out, |b| b.device_id) }
}

/// The signed prekey's id, at `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_signed_prekey_id(
    bundle: *const rk_bundle,
    id_out: *mut u32,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { bundle_u32(bundle, id_out, |b| b.signed_pre_key_id) }
}

/// The owner's identity key, as a new handle at `*key_out` (free with
/// `rk_public_key_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `key_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_identity_key(
    bundle: *const rk_bundle,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { bundle_key(bundle, key_out, |b| b.identity_key) }
}

/// The signed prekey, as a new handle at `*key_out` (free with
/// `rk_public_key_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `key_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_signed_prekey(
    bundle: *const rk_bundle,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { bundle_key(bundle, key_out, |b| b.signed_pre_key) }
}

/// Writes the signed prekey's 64-byte signature into `signature_out`, which
/// holds `signature_cap` bytes.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL` (`signature_cap` < `RK_SIGNATURE_LEN`).
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `signature_out` must point
/// to `signature_cap` writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_signed_prekey_signature(
    bundle: *const rk_bundle,
    signature_out: *mut u8,
    signature_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_buf(
            signature_out,
            signature_cap,
            crate::keys::SIGNATURE_LEN,
            "signature_out",
        )?;
        out.write(&bundle.signed_pre_key_signature)
    })
}

/// The optional one-time prekey. On `RK_STATUS_OK` all three outputs are
/// written: `*has_out` is whether the bundle has one; if so `*id_out` is its
/// id and `*key_out` a new handle (free with `rk_public_key_free`), else
/// `*id_out` is 0 and `*key_out` NULL.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; the outputs must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_prekey(
    bundle: *const rk_bundle,
    has_out: *mut bool,
    id_out: *mut u32,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let has_out = out_ptr(has_out, "has_out")?;
        let id_out = out_ptr(id_out, "id_out")?;
        let key_out = out_ptr(key_out, "key_out")?;
        match bundle.pre_key {
            Some((id, key)) => {
                has_out.write(true);
                id_out.write(id);
                key_out.write(rk_public_key::boxed(key));
            }
            None => {
                has_out.write(false);
                id_out.write(0);
                key_out.write(std::ptr::null_mut());
            }
        }
        Ok(())
    })
}

/// Sets `*has_out` to whether the bundle carries a Kyber prekey (and so
/// starts version-4, PQXDH, sessions).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `has_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_has_kyber_prekey(
    bundle: *const rk_bundle,
    has_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_ptr(has_out, "has_out")?;
        out.write(bundle.kyber_pre_key.is_some());
        Ok(())
    })
}

/// The bundle's signed Kyber prekey, or the error for a bundle without one.
fn kyber_of(bundle: &PreKeyBundle) -> FfiResult<&SignedKyberPreKey> {
    bundle
        .kyber_pre_key
        .as_ref()
        .ok_or_else(|| FfiError::new(rk_status::MissingPrekey, "the bundle has no Kyber prekey"))
}

/// The Kyber prekey's id, at `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_MISSING_PREKEY` (the bundle has no Kyber prekey).
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_kyber_prekey_id(
    bundle: *const rk_bundle,
    id_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_ptr(id_out, "id_out")?;
        out.write(kyber_of(bundle)?.id);
        Ok(())
    })
}

/// Writes the Kyber prekey's serialized public key (`0x08` then 1568 bytes)
/// into `key_out`, which holds `key_cap` bytes (at least
/// `RK_KEM_PUBLIC_KEY_LEN`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL` (`key_cap` < `RK_KEM_PUBLIC_KEY_LEN`),
/// `RK_STATUS_MISSING_PREKEY` (the bundle has no Kyber prekey).
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `key_out` must point to
/// `key_cap` writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_kyber_prekey(
    bundle: *const rk_bundle,
    key_out: *mut u8,
    key_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_buf(key_out, key_cap, crate::kem::KEM_PUBLIC_KEY_LEN, "key_out")?;
        out.write(&kyber_of(bundle)?.key.serialize())
    })
}

/// Writes the Kyber prekey's 64-byte signature (by the identity key, over
/// the serialized Kyber public key) into `signature_out`, which holds
/// `signature_cap` bytes.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL` (`signature_cap` < `RK_SIGNATURE_LEN`),
/// `RK_STATUS_MISSING_PREKEY` (the bundle has no Kyber prekey).
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `signature_out` must point
/// to `signature_cap` writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_kyber_prekey_signature(
    bundle: *const rk_bundle,
    signature_out: *mut u8,
    signature_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_buf(
            signature_out,
            signature_cap,
            crate::keys::SIGNATURE_LEN,
            "signature_out",
        )?;
        out.write(&kyber_of(bundle)?.signature)
    })
}

/// Sets `*valid_out` to whether the bundle's signatures verify under its
/// identity key: the signed prekey's, and the Kyber prekey's if it has one.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `bundle` may be shared.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`; `valid_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_bundle_verify_signature(
    bundle: *const rk_bundle,
    valid_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        let out = out_ptr(valid_out, "valid_out")?;
        out.write(bundle.verify_signature());
        Ok(())
    })
}

/// Frees a bundle handle. NULL is a no-op.
///
/// Thread safety: no other thread may be using the handle.
///
/// # Safety
/// `bundle` must be NULL or a live `rk_bundle`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rk_bundle_free(bundle: *mut rk_bundle) {
    // SAFETY: caller's contract.
    unsafe { free_handle(bundle) }
}

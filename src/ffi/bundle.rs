//! Prekey bundles.

use super::bytes::rk_bytes;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_bytes, new_handle, out_buf, out_ptr,
};
use super::keys::rk_public_key;
use super::status::rk_status;
use crate::prekey::PreKeyBundle;

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

/// Builds a bundle from its parts (for example as fetched from a server).
/// `prekey` is the optional one-time prekey: NULL for none (then
/// `prekey_id` is ignored). The signature is checked when the bundle is
/// processed (`rk_store_process_bundle`), or by `rk_bundle_verify_signature`.
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
        let out = out_ptr(bundle_out, "bundle_out")?;
        let bundle = PreKeyBundle::new(
            registration_id,
            device_id,
            *identity_key,
            signed_prekey_id,
            *signed_prekey,
            signature,
            pre_key,
        )?;
        out.write(rk_bundle::boxed(bundle));
        Ok(())
    })
}

/// Serializes `bundle` (format version 1, see the crate docs) into a new
/// `rk_bytes` at `*bytes_out`, freed with `rk_bytes_free`.
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
/// truncated, unknown format version, missing or inconsistent fields),
/// `RK_STATUS_INVALID_KEY` (a key of the wrong length or type).
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

/// Sets `*valid_out` to whether the signed prekey's signature verifies
/// under the bundle's identity key.
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

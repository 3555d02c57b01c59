//! Safety numbers: displayable digits, scannable bytes, comparison, QR.

use std::ffi::c_char;

use super::bytes::rk_bytes;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_bytes, new_handle, out_buf, out_ptr,
    FfiResult,
};
use super::keys::rk_public_key;
use super::status::rk_status;
use crate::fingerprint::Fingerprint;

/// A safety number between a local and a remote identity. Immutable: may be
/// read from several threads at once.
pub struct rk_fingerprint {
    _opaque: [u8; 0],
}
impl_handle!(rk_fingerprint, Fingerprint, 0x726b_6670_7269_6e74);

impl rk_fingerprint {
    pub(crate) fn boxed(fingerprint: Fingerprint) -> *mut rk_fingerprint {
        new_handle(fingerprint)
    }
}

/// Computes a safety number from both identities. `version` is 1 or 2 (it
/// only affects the scannable form; Signal uses 2 with service-id bytes as
/// the stable ids); `iterations` is in 2..=1000000 (Signal uses
/// `RK_DEFAULT_ITERATIONS`, 5200). `local_id`/`remote_id` are the stable ids
/// (bytes; may be empty). On `RK_STATUS_OK`, `*fingerprint_out` receives a
/// new handle the caller frees with `rk_fingerprint_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (version or iterations out of range).
/// Thread safety: any thread; the keys may be shared.
///
/// # Safety
/// The ids must point to their lengths in readable bytes; the keys must be
/// NULL or live `rk_public_key` handles; `fingerprint_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_fingerprint_new(
    version: u32,
    iterations: u32,
    local_id: *const u8,
    local_id_len: usize,
    local_key: *const rk_public_key,
    remote_id: *const u8,
    remote_id_len: usize,
    remote_key: *const rk_public_key,
    fingerprint_out: *mut *mut rk_fingerprint,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let local_id = unsafe { input_bytes(local_id, local_id_len, "local_id") }?;
        // SAFETY: caller's contract.
        let local_key = unsafe { handle_ref(local_key) }?;
        // SAFETY: caller's contract.
        let remote_id = unsafe { input_bytes(remote_id, remote_id_len, "remote_id") }?;
        // SAFETY: caller's contract.
        let remote_key = unsafe { handle_ref(remote_key) }?;
        let out = out_ptr(fingerprint_out, "fingerprint_out")?;
        let fp = Fingerprint::new(
            version, iterations, local_id, local_key, remote_id, remote_key,
        )?;
        out.write(rk_fingerprint::boxed(fp));
        Ok(())
    })
}

/// Writes the 60-digit safety number (the same on both sides), followed by a
/// NUL, into `out`, which holds `out_cap` bytes: at least
/// `RK_SAFETY_NUMBER_LEN + 1` (61). Apps show it in 12 groups of 5 digits.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_BUFFER_TOO_SMALL`.
/// Thread safety: any thread; `fingerprint` may be shared.
///
/// # Safety
/// `fingerprint` must be NULL or a live `rk_fingerprint`; `out` must point
/// to `out_cap` writable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_fingerprint_displayable(
    fingerprint: *const rk_fingerprint,
    out: *mut c_char,
    out_cap: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let fp = unsafe { handle_ref(fingerprint) }?;
        let digits = fp.displayable().as_bytes();
        let mut text = [0u8; crate::fingerprint::SAFETY_NUMBER_DIGITS + 1];
        text[..digits.len()].copy_from_slice(digits);
        let out = out_buf(out.cast::<u8>(), out_cap, text.len(), "out")?;
        out.write(&text)
    })
}

/// Writes the scannable form (the bytes a QR code carries, to compare with
/// the other side's by `rk_fingerprint_compare`) into a new `rk_bytes` at
/// `*scannable_out`, freed with `rk_bytes_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `fingerprint` may be shared.
///
/// # Safety
/// `fingerprint` must be NULL or a live `rk_fingerprint`; `scannable_out`
/// must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_fingerprint_scannable(
    fingerprint: *const rk_fingerprint,
    scannable_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let fp = unsafe { handle_ref(fingerprint) }?;
        let out = out_ptr(scannable_out, "scannable_out")?;
        out.write(rk_bytes::from_vec(fp.scannable())?);
        Ok(())
    })
}

/// Compares the other side's scannable form (`theirs`, as scanned from its
/// QR code) with ours, in constant time. `*matches_out` is true exactly
/// when both sides computed the safety number over the same two identity
/// keys.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_FINGERPRINT` (the bytes do not parse),
/// `RK_STATUS_FINGERPRINT_VERSION_MISMATCH` (the other side uses another
/// version).
/// Thread safety: any thread; `fingerprint` may be shared.
///
/// # Safety
/// `fingerprint` must be NULL or a live `rk_fingerprint`; `theirs` must
/// point to `theirs_len` readable bytes; `matches_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_fingerprint_compare(
    fingerprint: *const rk_fingerprint,
    theirs: *const u8,
    theirs_len: usize,
    matches_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let fp = unsafe { handle_ref(fingerprint) }?;
        // SAFETY: caller's contract.
        let theirs = unsafe { input_bytes(theirs, theirs_len, "theirs") }?;
        let out = out_ptr(matches_out, "matches_out")?;
        out.write(fp.compare_scannable(theirs)?);
        Ok(())
    })
}

unsafe fn qr(
    fingerprint: *const rk_fingerprint,
    out: *mut rk_bytes,
    render: impl FnOnce(&Fingerprint) -> crate::Result<String>,
) -> FfiResult<()> {
    // SAFETY: forwarded contract.
    let fp = unsafe { handle_ref(fingerprint) }?;
    let out = out_ptr(out, "out")?;
    out.write(rk_bytes::from_string(render(fp)?)?);
    Ok(())
}

/// Renders the scannable form as a QR code in an SVG document (UTF-8 text)
/// into a new `rk_bytes` at `*svg_out` (freed with `rk_bytes_free`; the
/// text is NUL-terminated, so `(const char *)svg_out->ptr` is a C string).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `fingerprint` may be shared.
///
/// # Safety
/// `fingerprint` must be NULL or a live `rk_fingerprint`; `svg_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_fingerprint_qr_svg(
    fingerprint: *const rk_fingerprint,
    svg_out: *mut rk_bytes,
) -> rk_status {
    // SAFETY: caller's contract.
    guard(|| unsafe { qr(fingerprint, svg_out, Fingerprint::qr_svg) })
}

/// Renders the scannable form as a QR code for a terminal: UTF-8 lines of
/// block characters (two modules per character cell, with a quiet zone),
/// each ending in `\n`, drawn for light text on a dark background. The text
/// goes into a new `rk_bytes` at `*text_out` (freed with `rk_bytes_free`;
/// NUL-terminated, so it can be passed to `fputs`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread; `fingerprint` may be shared.
///
/// # Safety
/// `fingerprint` must be NULL or a live `rk_fingerprint`; `text_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_fingerprint_qr_text(
    fingerprint: *const rk_fingerprint,
    text_out: *mut rk_bytes,
) -> rk_status {
    // SAFETY: caller's contract.
    guard(|| unsafe { qr(fingerprint, text_out, Fingerprint::qr_text) })
}

/// Frees a fingerprint handle. NULL is a no-op.
///
/// Thread safety: no other thread may be using the handle.
///
/// # Safety
/// `fingerprint` must be NULL or a live `rk_fingerprint`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn rk_fingerprint_free(fingerprint: *mut rk_fingerprint) {
    // SAFETY: caller's contract.
    unsafe { free_handle(fingerprint) }
}

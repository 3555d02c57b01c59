//! `rk_pending_decrypt`: two-phase decrypt with a durable store. The
//! message is decrypted without writing anything; the change is written by
//! `rk_pending_decrypt_commit` (after the application has stored the
//! plaintext), or discarded when the handle is freed.

use std::ffi::c_char;
use std::sync::Mutex;

use rand::rngs::OsRng;

use super::bytes::rk_bytes;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_address, input_bytes, new_handle, out_ptr,
    FfiError,
};
use super::status::rk_status;
use super::store::rk_store;
use crate::store::durable::PendingDecrypt;
use crate::wire::{PREKEY_TYPE, WHISPER_TYPE};

/// A decrypted message whose changes to a durable store are not written
/// yet (two-phase decrypt): commit them with `rk_pending_decrypt_commit`
/// once the application has stored the plaintext; `rk_pending_decrypt_free`
/// without a commit discards them, and the message can be decrypted again.
pub struct rk_pending_decrypt {
    _opaque: [u8; 0],
}
impl_handle!(
    rk_pending_decrypt,
    Mutex<Option<PendingDecrypt>>,
    0x726b_7065_6e64_6921
);

/// Decrypts a message of type `message_type` (2 whisper, 3 prekey) from
/// (`name`, `device_id`) with a durable store, writing nothing. On
/// `RK_STATUS_OK`, `*pending_out` receives a new handle holding the
/// plaintext (`rk_pending_decrypt_plaintext`) and the change.
///
/// Statuses: as `rk_store_decrypt`, and `RK_STATUS_INVALID_ARGUMENT` (an
/// in-memory store), `RK_STATUS_STORE_CORRUPT`, `RK_STATUS_STORAGE`.
/// Thread safety: any thread.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` NULL or a
/// NUL-terminated string; `message` must point to `message_len` readable
/// bytes; `pending_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_decrypt_pending(
    store: *const rk_store,
    name: *const c_char,
    device_id: u32,
    message_type: u32,
    message: *const u8,
    message_len: usize,
    pending_out: *mut *mut rk_pending_decrypt,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        // SAFETY: caller's contract.
        let message = unsafe { input_bytes(message, message_len, "message") }?;
        let out = out_ptr(pending_out, "pending_out")?;
        let message_type = match u8::try_from(message_type) {
            Ok(t @ (PREKEY_TYPE | WHISPER_TYPE)) => t,
            _ => {
                return Err(FfiError::invalid(format!(
                    "message type must be 2 (whisper) or 3 (prekey), got {message_type}"
                )))
            }
        };
        if message.is_empty() {
            return Err(FfiError::new(rk_status::InvalidMessage, "message is empty"));
        }
        let durable = store
            .durable()
            .ok_or_else(|| FfiError::invalid("rk_store_decrypt_pending needs a durable store"))?;
        let pending = durable.decrypt_pending(&address, message_type, message, &mut OsRng)?;
        out.write(new_handle::<rk_pending_decrypt>(Mutex::new(Some(pending))));
        Ok(())
    })
}

fn spent() -> FfiError {
    FfiError::invalid("the pending decrypt was committed already")
}

/// A copy of the pending decrypt's plaintext, as a new `rk_bytes` at
/// `*plaintext_out` (free it with `rk_bytes_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (committed already).
/// Thread safety: any thread.
///
/// # Safety
/// `pending` must be NULL or a live `rk_pending_decrypt`; `plaintext_out`
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_pending_decrypt_plaintext(
    pending: *const rk_pending_decrypt,
    plaintext_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let pending = unsafe { handle_ref(pending) }?;
        let out = out_ptr(plaintext_out, "plaintext_out")?;
        let held = pending.lock().unwrap_or_else(|e| e.into_inner());
        let p = held.as_ref().ok_or_else(spent)?;
        out.write(rk_bytes::copy_from(p.plaintext())?);
        Ok(())
    })
}

/// Writes the pending decrypt's change in one transaction, if the records
/// it read are unchanged; otherwise `RK_STATUS_CONFLICT` and nothing is
/// written (decrypt the message again). Either way the handle is spent:
/// free it with `rk_pending_decrypt_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (committed already), `RK_STATUS_CONFLICT`,
/// `RK_STATUS_LIMIT_EXCEEDED` (other commits since filled the store's
/// sessions or the prekey's base-key uses), `RK_STATUS_STORE_BUSY`,
/// `RK_STATUS_STORAGE`.
/// Thread safety: any thread.
///
/// # Safety
/// `pending` must be NULL or a live `rk_pending_decrypt`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_pending_decrypt_commit(
    pending: *const rk_pending_decrypt,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let pending = unsafe { handle_ref(pending) }?;
        let taken = pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(spent)?;
        taken.commit()?;
        Ok(())
    })
}

/// Frees a pending decrypt, discarding its change if it was not committed
/// (the plaintext is zeroized). NULL is a no-op.
///
/// Thread safety: no other thread may be using the handle.
///
/// # Safety
/// `pending` must be NULL or a live `rk_pending_decrypt`, not used
/// afterwards.
#[no_mangle]
pub unsafe extern "C" fn rk_pending_decrypt_free(pending: *mut rk_pending_decrypt) {
    // SAFETY: caller's contract.
    unsafe { free_handle(pending) }
}

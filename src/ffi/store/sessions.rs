//! The store's sessions: the session policy, starting sessions from
//! bundles, encrypting and decrypting.

use std::ffi::c_char;

use rand::rngs::OsRng;

use super::rk_store;
use super::{write_count, Count};
use crate::ffi::bundle::rk_bundle;
use crate::ffi::bytes::rk_bytes;
use crate::ffi::bytes::OwnedBytes;
use crate::ffi::guard::{
    guard, handle_ref, input_address, input_bytes, input_flag, out_ptr, FfiError, FfiResult,
};
use crate::ffi::status::rk_status;
use crate::store::durable::Load;
use crate::store::{Committed, ProtocolStore, SessionPolicy};
use crate::wire::{PREKEY_TYPE, WHISPER_TYPE};

/// Sets the store's session policy, which decides what it does beyond
/// version-4 (PQXDH) sessions, which it always starts and accepts. Each
/// flag is 0 or 1:
/// - `allow_v3_initiation`: start a version-3 (X3DH) session from a bundle
///   without a Kyber prekey (`rk_store_process_bundle`);
/// - `accept_v3_prekey_messages`: accept an incoming version-3 prekey
///   message that starts a new session (`rk_store_decrypt`).
///
/// A new store has both off: such bundles and messages are refused with
/// `RK_STATUS_VERSION_REFUSED`, as the official library does. Sessions that
/// already exist keep working whatever the policy. The policy is kept in
/// saved state (`rk_store_save`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (a flag other than 0 or 1; nothing is set),
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_set_policy(
    store: *mut rk_store,
    allow_v3_initiation: u32,
    accept_v3_prekey_messages: u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let policy = SessionPolicy {
            allow_v3_initiation: input_flag(allow_v3_initiation, "allow_v3_initiation")?,
            accept_v3_prekey_messages: input_flag(
                accept_v3_prekey_messages,
                "accept_v3_prekey_messages",
            )?,
        };
        store.exclusive(Load::meta, |s| {
            s.set_policy(policy);
            Ok(())
        })?;
        Ok(())
    })
}

/// The store's session policy (see `rk_store_set_policy`): on
/// `RK_STATUS_OK`, `*allow_v3_initiation_out` and
/// `*accept_v3_prekey_messages_out` are each 0 or 1.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; the outputs must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_policy(
    store: *const rk_store,
    allow_v3_initiation_out: *mut u32,
    accept_v3_prekey_messages_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let allow_out = out_ptr(allow_v3_initiation_out, "allow_v3_initiation_out")?;
        let accept_out = out_ptr(
            accept_v3_prekey_messages_out,
            "accept_v3_prekey_messages_out",
        )?;
        let policy = store.shared(Load::meta, |s| Ok(s.policy()))?;
        allow_out.write(u32::from(policy.allow_v3_initiation));
        accept_out.write(u32::from(policy.accept_v3_prekey_messages));
        Ok(())
    })
}

/// Starts a session with the device at (`name`, `device_id`) from its
/// bundle, as the initiator: PQXDH (a version-4 session) if the bundle
/// carries a Kyber prekey, else X3DH (version 3), which only a store whose
/// policy allows it starts (`rk_store_set_policy`). Both signatures of the
/// bundle (signed prekey, Kyber prekey) are verified. The new session
/// becomes current (an older one is archived). The bundle's identity is
/// trusted on first use.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8),
/// `RK_STATUS_VERSION_REFUSED` (no Kyber prekey, and the policy does not
/// allow version 3), `RK_STATUS_INVALID_SIGNATURE` (a signature does not
/// verify), `RK_STATUS_INVALID_KEY` (a low-order key),
/// `RK_STATUS_UNTRUSTED_IDENTITY` (the identity differs from the trusted
/// one), `RK_STATUS_LIMIT_EXCEEDED` (too many sessions),
/// `RK_STATUS_POISONED`. On failure the store is unchanged.
/// Thread safety: any thread (the store is locked for the call); `bundle`
/// may be shared.
///
/// # Safety
/// `store`/`bundle` must be NULL or live handles of their types; `name` must
/// be NULL or a NUL-terminated string.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_process_bundle(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    bundle: *const rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        // SAFETY: caller's contract.
        let bundle = unsafe { handle_ref(bundle) }?;
        store.exclusive(
            || Load::new_session(&address),
            |s| Ok(s.process_bundle(&address, bundle, &mut OsRng)?),
        )?;
        Ok(())
    })
}

/// Sets `*has_out` to whether the store can encrypt for (`name`,
/// `device_id`) now, that is, holds a current session for it.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `has_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_has_session(
    store: *const rk_store,
    name: *const c_char,
    device_id: u32,
    has_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        let out = out_ptr(has_out, "has_out")?;
        out.write(store.shared(|| Load::session(&address), |s| Ok(s.has_session(&address)))?);
        Ok(())
    })
}

/// The message version of the current session with (`name`, `device_id`),
/// at `*version_out`: 4 for a session started with PQXDH, 3 for one started
/// with X3DH.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8), `RK_STATUS_NO_SESSION`
/// (no current session for the address), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `version_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_session_version(
    store: *const rk_store,
    name: *const c_char,
    device_id: u32,
    version_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        let out = out_ptr(version_out, "version_out")?;
        let version = store
            .shared(
                || Load::session(&address),
                |s| Ok(s.session_version(&address)),
            )?
            .ok_or_else(|| crate::Error::NoSession(address.name.clone()))?;
        out.write(u32::from(version));
        Ok(())
    })
}

/// The number of remote devices (name and device id) the store holds a
/// session record for, at `*count_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `count_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_session_count(
    store: *const rk_store,
    count_out: *mut usize,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { write_count(store, count_out, Count::Sessions) }
}

/// Deletes the session record of (`name`, `device_id`): its current and
/// archived states, with their keys (zeroized). `*removed_out` says whether
/// there was one. The identity trusted for `name` stays trusted; a new
/// session starts from a bundle or a prekey message as before.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `removed_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_remove_session(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    removed_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        let out = out_ptr(removed_out, "removed_out")?;
        out.write(store.exclusive(
            || Load::session(&address),
            |s| Ok(s.remove_session(&address)),
        )?);
        Ok(())
    })
}

/// Encrypts `plaintext` (may be empty) for (`name`, `device_id`). On
/// `RK_STATUS_OK`, `*type_out` is the message type to send along
/// (`RK_MESSAGE_TYPE_PREKEY` = 3 until the other side has answered, then
/// `RK_MESSAGE_TYPE_WHISPER` = 2) and `*ciphertext_out` a new `rk_bytes`
/// (freed with `rk_bytes_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8), `RK_STATUS_NO_SESSION`,
/// `RK_STATUS_UNTRUSTED_IDENTITY` (the session's identity is no longer the
/// trusted one), `RK_STATUS_POISONED`. On failure the store is unchanged.
/// Thread safety: any thread. Runs under the store's shared lock and the
/// session's own lock: encrypting for different addresses runs in parallel.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `plaintext` must point to `plaintext_len`
/// readable bytes; the outputs must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_encrypt(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    plaintext: *const u8,
    plaintext_len: usize,
    type_out: *mut u32,
    ciphertext_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        // SAFETY: caller's contract.
        let plaintext = unsafe { input_bytes(plaintext, plaintext_len, "plaintext") }?;
        let type_out = out_ptr(type_out, "type_out")?;
        let ciphertext_out = out_ptr(ciphertext_out, "ciphertext_out")?;
        // The output is allocated before the sending chain advances: if the
        // allocation fails, nothing changes and a retry loses no message.
        // Durable: the output is freed if the commit fails after it.
        let encrypt = |s: &ProtocolStore| {
            s.encrypt_then(&address, plaintext, |m| {
                let message_type = u32::from(m.message_type());
                Ok::<_, FfiError>((message_type, OwnedBytes::from_vec(m.into_bytes())?))
            })
        };
        let (message_type, bytes) = match store.durable() {
            Some(d) => d.with(&Load::session(&address), true, |s| encrypt(s))?,
            None => encrypt(&*store.read()?)?,
        };
        type_out.write(message_type);
        ciphertext_out.write(bytes.release());
        Ok(())
    })
}

enum Kind {
    Any(u32),
    Prekey,
    Whisper,
}

unsafe fn decrypt(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    kind: Kind,
    message: *const u8,
    message_len: usize,
    plaintext_out: *mut rk_bytes,
) -> FfiResult<()> {
    // SAFETY: forwarded contract.
    let store = unsafe { handle_ref(store) }?;
    // SAFETY: forwarded contract.
    let address = unsafe { input_address(name, device_id) }?;
    // SAFETY: forwarded contract.
    let message = unsafe { input_bytes(message, message_len, "message") }?;
    let out = out_ptr(plaintext_out, "plaintext_out")?;
    let message_type = match kind {
        Kind::Prekey => PREKEY_TYPE,
        Kind::Whisper => WHISPER_TYPE,
        Kind::Any(t) if t == u32::from(PREKEY_TYPE) => PREKEY_TYPE,
        Kind::Any(t) if t == u32::from(WHISPER_TYPE) => WHISPER_TYPE,
        Kind::Any(t) => {
            return Err(FfiError::invalid(format!(
                "message type must be 2 (whisper) or 3 (prekey), got {t}"
            )))
        }
    };
    if message.is_empty() {
        return Err(FfiError::new(rk_status::InvalidMessage, "message is empty"));
    }
    // The output is allocated before the session changes: if the
    // allocation fails, nothing changes and the message decrypts again.
    if let Some(d) = store.durable() {
        // One transaction: read, decrypt, write, commit; the output is
        // freed if the commit fails after it was made.
        let plaintext = d.with(
            &Load::decrypt(&address, message_type, message),
            false,
            |s| {
                s.decrypt_then(
                    &address,
                    message_type,
                    message,
                    &mut OsRng,
                    OwnedBytes::from_vec,
                )
            },
        )?;
        out.write(plaintext.release());
        return Ok(());
    }
    let plaintext = if message_type == WHISPER_TYPE {
        store
            .read()?
            .decrypt_message_then(&address, message, &mut OsRng, rk_bytes::from_vec)?
    } else {
        // X3DH and the decryption run under the shared lock (other sessions
        // go on); only the commit takes the exclusive lock. If this address's
        // session changed in between, both run again under the exclusive
        // lock (only a message that decrypts gets that far).
        let opened = store
            .read()?
            .open_prekey_message(&address, message, &mut OsRng)?;
        let mut exclusive = store.lock()?;
        match exclusive.commit_prekey_message(opened, rk_bytes::from_vec)? {
            Committed::Done(plaintext) => plaintext,
            Committed::Stale => exclusive.decrypt_prekey_message_then(
                &address,
                message,
                &mut OsRng,
                rk_bytes::from_vec,
            )?,
        }
    };
    out.write(plaintext);
    Ok(())
}

/// Decrypts a message of type `message_type` (as returned by
/// `rk_store_encrypt`: 2 whisper, 3 prekey) from (`name`, `device_id`). A
/// prekey message from a new session runs PQXDH (message version 4) or
/// X3DH (version 3, only if the policy accepts it: `rk_store_set_policy`)
/// as the responder and uses up its one-time prekey and one-time Kyber
/// prekey (a last-resort Kyber prekey is kept). On `RK_STATUS_OK`,
/// `*plaintext_out` is a new `rk_bytes` (freed, and zeroized, with
/// `rk_bytes_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8, unknown type),
/// `RK_STATUS_INVALID_MESSAGE` (empty, malformed, unauthenticated, wrong
/// version, a base key already used with the last-resort Kyber prekey),
/// `RK_STATUS_DUPLICATE_MESSAGE`, `RK_STATUS_LIMIT_EXCEEDED` (too far
/// ahead, too many sessions or last-resort uses), `RK_STATUS_NO_SESSION`
/// (whisper without session), `RK_STATUS_VERSION_REFUSED` (a version-3
/// prekey message that would start a new session, and the policy does not
/// accept them), `RK_STATUS_MISSING_PREKEY` (a signed, one-time or Kyber
/// prekey the store does not hold), `RK_STATUS_INVALID_KEY`,
/// `RK_STATUS_UNTRUSTED_IDENTITY`, `RK_STATUS_POISONED`. On failure the
/// store is unchanged.
/// Thread safety: any thread. Whisper messages are decrypted under the
/// store's shared lock and their session's own lock, so different sessions
/// decrypt in parallel. Prekey messages run X3DH (or PQXDH) and decrypt
/// under the shared lock too, and take the store's exclusive lock only to
/// apply the result (a new session, one-time prekeys deleted), so a forged prekey
/// message does not hold up other sessions. The output buffer is allocated
/// before anything changes.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `message` must point to `message_len` readable
/// bytes; `plaintext_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_decrypt(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    message_type: u32,
    message: *const u8,
    message_len: usize,
    plaintext_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        unsafe {
            decrypt(
                store,
                name,
                device_id,
                Kind::Any(message_type),
                message,
                message_len,
                plaintext_out,
            )
        }
    })
}

/// As `rk_store_decrypt` with type 3: decrypts a prekey message.
///
/// Statuses, thread safety and ownership: as `rk_store_decrypt`.
///
/// # Safety
/// As `rk_store_decrypt`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_decrypt_prekey_message(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    message: *const u8,
    message_len: usize,
    plaintext_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        unsafe {
            decrypt(
                store,
                name,
                device_id,
                Kind::Prekey,
                message,
                message_len,
                plaintext_out,
            )
        }
    })
}

/// As `rk_store_decrypt` with type 2: decrypts a whisper message.
///
/// Statuses, thread safety and ownership: as `rk_store_decrypt`.
///
/// # Safety
/// As `rk_store_decrypt`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_decrypt_whisper_message(
    store: *mut rk_store,
    name: *const c_char,
    device_id: u32,
    message: *const u8,
    message_len: usize,
    plaintext_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        unsafe {
            decrypt(
                store,
                name,
                device_id,
                Kind::Whisper,
                message,
                message_len,
                plaintext_out,
            )
        }
    })
}

//! The store handle: identity, prekeys, sessions, trust, safety numbers,
//! save and restore. Internally locked.

use std::ffi::c_char;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::rngs::OsRng;

use super::bundle::rk_bundle;
use super::bytes::rk_bytes;
use super::fingerprint::rk_fingerprint;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_address, input_bytes, input_flag, input_str,
    new_handle, out_ptr, FfiError, FfiResult,
};
use super::keys::{rk_identity_keypair, rk_public_key};
use super::status::rk_status;
use super::RK_MAX_PREKEYS_PER_CALL;
use crate::store::{Committed, ProtocolStore};
use crate::wire::{PREKEY_TYPE, WHISPER_TYPE};

/// The protocol store of one local device: identity, registration id,
/// prekeys, sessions per remote address, trusted identities.
///
/// Internally locked: a store handle may be used from several threads at
/// once. Encrypting and decrypting whisper messages for different addresses
/// run in parallel (each session has its own lock); calls that create
/// sessions or change keys or trust serialize with everything else. Every
/// failing call leaves the store exactly as it was.
pub struct rk_store {
    _opaque: [u8; 0],
}
impl_handle!(rk_store, StoreCell, 0x726b_7374_6f72_6521);

/// What a store handle holds.
pub(crate) struct StoreCell {
    inner: RwLock<ProtocolStore>,
}

#[cfg(test)]
thread_local! {
    /// Test hook: panic inside the next store call on this thread, while
    /// the lock is held.
    pub(crate) static PANIC_WHILE_LOCKED: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

impl rk_store {
    fn boxed(store: ProtocolStore) -> *mut rk_store {
        new_handle(StoreCell {
            inner: RwLock::new(store),
        })
    }
}

fn poisoned() -> FfiError {
    FfiError::new(
        rk_status::Poisoned,
        "the store is unusable: an earlier call panicked while holding it; \
         free it and restore from saved state",
    )
}

#[cfg(test)]
fn test_panic_hook() {
    if PANIC_WHILE_LOCKED.with(|p| p.replace(false)) {
        #[allow(clippy::panic)]
        {
            panic!("test hook: panic while the store is locked");
        }
    }
}

impl StoreCell {
    /// Exclusive access: for calls that create sessions or change keys,
    /// prekeys or trust.
    fn lock(&self) -> FfiResult<RwLockWriteGuard<'_, ProtocolStore>> {
        let guard = self.inner.write().map_err(|_| poisoned())?;
        #[cfg(test)]
        test_panic_hook();
        Ok(guard)
    }

    /// Shared access: reads, and encrypt / whisper decrypt, which lock only
    /// their own session inside the store.
    fn read(&self) -> FfiResult<RwLockReadGuard<'_, ProtocolStore>> {
        let guard = self.inner.read().map_err(|_| poisoned())?;
        #[cfg(test)]
        test_panic_hook();
        Ok(guard)
    }
}

/// Creates a store with a fresh identity key pair and registration id, for
/// local device `device_id` (at least 1). On `RK_STATUS_OK`, `*store_out`
/// receives a new handle the caller frees with `rk_store_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_ARGUMENT`
/// (`device_id` 0).
/// Thread safety: any thread.
///
/// # Safety
/// `store_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_new(device_id: u32, store_out: *mut *mut rk_store) -> rk_status {
    guard(|| {
        let out = out_ptr(store_out, "store_out")?;
        out.write(rk_store::boxed(ProtocolStore::generate(
            device_id, &mut OsRng,
        )?));
        Ok(())
    })
}

/// Creates a store around an existing identity (for example one restored
/// from a backup), with `registration_id` in 1..=16380 and `device_id` at
/// least 1. The identity is copied; `identity` stays owned by the caller.
/// On `RK_STATUS_OK`, `*store_out` receives a new handle the caller frees
/// with `rk_store_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (ids out of range).
/// Thread safety: any thread; `identity` may be shared.
///
/// # Safety
/// `identity` must be NULL or a live `rk_identity_keypair`; `store_out` must
/// be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_new_with_identity(
    identity: *const rk_identity_keypair,
    registration_id: u32,
    device_id: u32,
    store_out: *mut *mut rk_store,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let identity = unsafe { handle_ref(identity) }?;
        let out = out_ptr(store_out, "store_out")?;
        let store =
            ProtocolStore::with_identity(identity.clone(), registration_id, device_id, &mut OsRng)?;
        out.write(rk_store::boxed(store));
        Ok(())
    })
}

/// Frees a store handle, zeroizing its keys. NULL is a no-op.
///
/// Thread safety: no other thread may be using the handle, or use it
/// afterwards.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rk_store_free(store: *mut rk_store) {
    // SAFETY: caller's contract.
    unsafe { free_handle(store) }
}

/// The local public identity key, as a new handle at `*key_out` (free with
/// `rk_public_key_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `key_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_identity_key(
    store: *const rk_store,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(key_out, "key_out")?;
        let key = *store.read()?.identity_key();
        out.write(rk_public_key::boxed(key));
        Ok(())
    })
}

/// A copy of the local identity key pair (holding the private key), as a
/// new handle at `*pair_out` (free with `rk_identity_keypair_free`). For
/// backups and for `rk_store_new_with_identity`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `pair_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_identity_keypair(
    store: *const rk_store,
    pair_out: *mut *mut rk_identity_keypair,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(pair_out, "pair_out")?;
        let pair = store.read()?.identity().clone();
        out.write(rk_identity_keypair::boxed(pair));
        Ok(())
    })
}

/// The local registration id (1..=16380), at `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_registration_id(
    store: *const rk_store,
    id_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(id_out, "id_out")?;
        out.write(store.read()?.registration_id());
        Ok(())
    })
}

/// The local device id, at `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_device_id(store: *const rk_store, id_out: *mut u32) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(id_out, "id_out")?;
        out.write(store.read()?.device_id());
        Ok(())
    })
}

/// Generates a new signed prekey (rotation), which becomes the one put in
/// new bundles; older signed prekeys stay usable for messages in flight
/// until removed with `rk_store_remove_signed_prekey`. `timestamp_ms` is
/// the creation time in milliseconds since the Unix epoch. Its id goes to
/// `*id_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (all ids in use), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `id_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_generate_signed_prekey(
    store: *mut rk_store,
    timestamp_ms: u64,
    id_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(id_out, "id_out")?;
        let id = store
            .lock()?
            .generate_signed_prekey(timestamp_ms, &mut OsRng)?;
        out.write(id);
        Ok(())
    })
}

/// Removes an old signed prekey (after rotation, once messages made with it
/// are no longer expected).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (it is the current signed prekey),
/// `RK_STATUS_MISSING_PREKEY` (no such id), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_remove_signed_prekey(store: *mut rk_store, id: u32) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        store.lock()?.remove_signed_prekey(id)?;
        Ok(())
    })
}

/// Generates `count` (at most `RK_MAX_PREKEYS_PER_CALL`) one-time prekeys
/// and writes them, for upload, into a new `rk_bytes` at `*records_out`
/// (freed with `rk_bytes_free`): `count` records of `RK_PREKEY_RECORD_LEN`
/// (37) bytes, each the id as 4 bytes big-endian followed by the 33-byte
/// public key. `count` 0 gives an empty buffer.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_LIMIT_EXCEEDED` (`count` too large, or prekey ids
/// exhausted), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `records_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_generate_prekeys(
    store: *mut rk_store,
    count: u32,
    records_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(records_out, "records_out")?;
        if count > RK_MAX_PREKEYS_PER_CALL {
            return Err(FfiError::new(
                rk_status::LimitExceeded,
                format!("count {count} is more than {RK_MAX_PREKEYS_PER_CALL} prekeys per call"),
            ));
        }
        let keys = store.lock()?.generate_prekeys(count, &mut OsRng)?;
        let mut records = Vec::with_capacity(keys.len() * super::RK_PREKEY_RECORD_LEN);
        for (id, key) in keys {
            records.extend_from_slice(&id.to_be_bytes());
            records.extend_from_slice(&key.serialize());
        }
        out.write(rk_bytes::from_vec(records)?);
        Ok(())
    })
}

/// The number of one-time prekeys the store holds (made and not yet used),
/// at `*count_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `count_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_prekey_count(
    store: *const rk_store,
    count_out: *mut usize,
) -> rk_status {
    // SAFETY: caller's contract.
    unsafe { write_count(store, count_out, ProtocolStore::prekey_count) }
}

/// Writes `count(store)` to `*count_out` (the shared body of the count
/// getters).
///
/// # Safety
/// As the callers: `store` NULL or a live `rk_store`, `count_out` writable.
unsafe fn write_count(
    store: *const rk_store,
    count_out: *mut usize,
    count: fn(&ProtocolStore) -> usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(count_out, "count_out")?;
        out.write(count(&*store.read()?));
        Ok(())
    })
}

/// Makes a prekey bundle for this device. A signed prekey is generated
/// first if there is none (with `timestamp_ms`, milliseconds since the Unix
/// epoch). With `with_one_time_prekey` = 1, a new one-time prekey is made,
/// kept, and put in the bundle (never handed out twice); with 0, none. On
/// `RK_STATUS_OK`, `*bundle_out` receives a new handle the caller frees with
/// `rk_bundle_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`with_one_time_prekey` not 0 or 1),
/// `RK_STATUS_LIMIT_EXCEEDED`, `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `bundle_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_create_bundle(
    store: *mut rk_store,
    with_one_time_prekey: u32,
    timestamp_ms: u64,
    bundle_out: *mut *mut rk_bundle,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let one_time = input_flag(with_one_time_prekey, "with_one_time_prekey")?;
        let out = out_ptr(bundle_out, "bundle_out")?;
        let bundle = store
            .lock()?
            .create_bundle(one_time, timestamp_ms, &mut OsRng)?;
        out.write(rk_bundle::boxed(bundle));
        Ok(())
    })
}

/// Starts a session with the device at (`name`, `device_id`) from its
/// bundle (X3DH as the initiator). The new session becomes current (an
/// older one is archived). The bundle's identity is trusted on first use.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8),
/// `RK_STATUS_INVALID_SIGNATURE` (the signed prekey's signature does not
/// verify), `RK_STATUS_INVALID_KEY` (a low-order key),
/// `RK_STATUS_UNTRUSTED_IDENTITY` (the identity differs from the trusted
/// one), `RK_STATUS_POISONED`. On failure the store is unchanged.
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
        store.lock()?.process_bundle(&address, bundle, &mut OsRng)?;
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
        out.write(store.read()?.has_session(&address));
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
    unsafe { write_count(store, count_out, ProtocolStore::session_count) }
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
        out.write(store.lock()?.remove_session(&address));
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
        let (message_type, bytes) = store.read()?.encrypt_then(&address, plaintext, |m| {
            let message_type = u32::from(m.message_type());
            Ok::<_, FfiError>((message_type, rk_bytes::from_vec(m.into_bytes())?))
        })?;
        type_out.write(message_type);
        ciphertext_out.write(bytes);
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
/// prekey message from a new session runs X3DH as the responder and uses up
/// its one-time prekey. On `RK_STATUS_OK`, `*plaintext_out` is a new
/// `rk_bytes` (freed, and zeroized, with `rk_bytes_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8, unknown type),
/// `RK_STATUS_INVALID_MESSAGE` (empty, malformed, unauthenticated, wrong
/// version), `RK_STATUS_DUPLICATE_MESSAGE`, `RK_STATUS_LIMIT_EXCEEDED` (too
/// far ahead), `RK_STATUS_NO_SESSION` (whisper without session),
/// `RK_STATUS_MISSING_PREKEY`, `RK_STATUS_INVALID_KEY`,
/// `RK_STATUS_UNTRUSTED_IDENTITY`, `RK_STATUS_POISONED`. On failure the
/// store is unchanged.
/// Thread safety: any thread. Whisper messages are decrypted under the
/// store's shared lock and their session's own lock, so different sessions
/// decrypt in parallel. Prekey messages run X3DH and decrypt under the
/// shared lock too, and take the store's exclusive lock only to apply the
/// result (a new session, the one-time prekey deleted), so a forged prekey
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

/// The identity key trusted for `name`, as a new handle at `*key_out`
/// (free with `rk_public_key_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8),
/// `RK_STATUS_NO_TRUSTED_IDENTITY` (none yet), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `key_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_trusted_identity(
    store: *const rk_store,
    name: *const c_char,
    key_out: *mut *mut rk_public_key,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let name = unsafe { input_str(name, "name") }?;
        let out = out_ptr(key_out, "key_out")?;
        let key = store
            .read()?
            .trusted_identity(name)
            .ok_or_else(|| crate::Error::NoTrustedIdentity(name.to_owned()))?;
        out.write(rk_public_key::boxed(key));
        Ok(())
    })
}

/// Trusts `identity_key` for `name`: after the user accepted a changed key
/// (following `RK_STATUS_UNTRUSTED_IDENTITY`) or verified it out of band.
/// `*replaced_out` is whether a different key was trusted before.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call);
/// `identity_key` may be shared.
///
/// # Safety
/// `store`/`identity_key` must be NULL or live handles of their types;
/// `name` must be NULL or a NUL-terminated string; `replaced_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_approve_identity(
    store: *mut rk_store,
    name: *const c_char,
    identity_key: *const rk_public_key,
    replaced_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let name = unsafe { input_str(name, "name") }?;
        // SAFETY: caller's contract.
        let key = unsafe { handle_ref(identity_key) }?;
        let out = out_ptr(replaced_out, "replaced_out")?;
        let replaced = store.lock()?.approve_identity(name, *key);
        out.write(replaced);
        Ok(())
    })
}

/// The safety number between this store's identity and the identity
/// trusted for `name`. `local_id`/`remote_id` are the stable ids of the two
/// users (bytes, may be empty); `iterations` and `version` as in
/// `rk_fingerprint_new`. On `RK_STATUS_OK`, `*fingerprint_out` receives a
/// new handle the caller frees with `rk_fingerprint_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8, version or iterations out
/// of range), `RK_STATUS_NO_TRUSTED_IDENTITY`, `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; the ids must point to their lengths in readable
/// bytes; `fingerprint_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_safety_number(
    store: *const rk_store,
    name: *const c_char,
    local_id: *const u8,
    local_id_len: usize,
    remote_id: *const u8,
    remote_id_len: usize,
    iterations: u32,
    version: u32,
    fingerprint_out: *mut *mut rk_fingerprint,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let name = unsafe { input_str(name, "name") }?;
        // SAFETY: caller's contract.
        let local_id = unsafe { input_bytes(local_id, local_id_len, "local_id") }?;
        // SAFETY: caller's contract.
        let remote_id = unsafe { input_bytes(remote_id, remote_id_len, "remote_id") }?;
        let out = out_ptr(fingerprint_out, "fingerprint_out")?;
        // Copy the keys out, so the (slow) iterated hashing runs unlocked.
        let (local_key, remote_key) = {
            let s = store.read()?;
            let remote = s
                .trusted_identity(name)
                .ok_or_else(|| crate::Error::NoTrustedIdentity(name.to_owned()))?;
            (*s.identity_key(), remote)
        };
        let fp = crate::Fingerprint::new(
            version,
            iterations,
            local_id,
            &local_key,
            remote_id,
            &remote_key,
        )?;
        out.write(rk_fingerprint::boxed(fp));
        Ok(())
    })
}

/// Saves the whole store (identity, prekeys, sessions, trust) into a new
/// `rk_bytes` at `*saved_out`. The bytes hold private keys in the clear:
/// prefer `rk_store_save_encrypted` for storage. Free with `rk_bytes_free`
/// (which zeroizes).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`.
/// Thread safety: any thread. The bytes are a point-in-time snapshot: the
/// call holds the store's shared lock and every session's lock (waiting for
/// encrypts and decrypts in flight on other threads) until they are made.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `saved_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_save(
    store: *const rk_store,
    saved_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(saved_out, "saved_out")?;
        let saved = store.read()?.save();
        out.write(rk_bytes::from_vec(saved)?);
        Ok(())
    })
}

/// Restores a store from bytes made by `rk_store_save`, validating every
/// field. On `RK_STATUS_OK`, `*store_out` receives a new handle the caller
/// frees with `rk_store_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_STATE` (corrupt
/// or not a saved store), `RK_STATUS_UNSUPPORTED_STATE_VERSION`.
/// Thread safety: any thread.
///
/// # Safety
/// `saved` must point to `saved_len` readable bytes; `store_out` must be
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_restore(
    saved: *const u8,
    saved_len: usize,
    store_out: *mut *mut rk_store,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let saved = unsafe { input_bytes(saved, saved_len, "saved") }?;
        let out = out_ptr(store_out, "store_out")?;
        out.write(rk_store::boxed(ProtocolStore::restore(saved)?));
        Ok(())
    })
}

/// Saves the whole store encrypted and authenticated (XChaCha20-Poly1305,
/// fresh random nonce) under the application's `key` of `RK_PICKLE_KEY_LEN`
/// (32) bytes, into a new `rk_bytes` at `*saved_out` (freed with
/// `rk_bytes_free`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_KEY` (`key_len` not 32), `RK_STATUS_POISONED`.
/// Thread safety: any thread; a point-in-time snapshot, as
/// `rk_store_save`.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `key` must point to `key_len`
/// readable bytes; `saved_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_save_encrypted(
    store: *const rk_store,
    key: *const u8,
    key_len: usize,
    saved_out: *mut rk_bytes,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let key = unsafe { input_bytes(key, key_len, "key") }?;
        let out = out_ptr(saved_out, "saved_out")?;
        let sealed = store.read()?.save_encrypted(key, &mut OsRng)?;
        out.write(rk_bytes::from_vec(sealed)?);
        Ok(())
    })
}

/// Restores a store from bytes made by `rk_store_save_encrypted` under the
/// same 32-byte `key`. On `RK_STATUS_OK`, `*store_out` receives a new
/// handle the caller frees with `rk_store_free`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_KEY` (`key_len`
/// not 32), `RK_STATUS_WRONG_PICKLE_KEY` (wrong key, or altered bytes),
/// `RK_STATUS_INVALID_STATE` (not encrypted saved state, truncated),
/// `RK_STATUS_UNSUPPORTED_STATE_VERSION`.
/// Thread safety: any thread.
///
/// # Safety
/// `saved` must point to `saved_len` readable bytes, `key` to `key_len`;
/// `store_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_restore_encrypted(
    saved: *const u8,
    saved_len: usize,
    key: *const u8,
    key_len: usize,
    store_out: *mut *mut rk_store,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let saved = unsafe { input_bytes(saved, saved_len, "saved") }?;
        // SAFETY: caller's contract.
        let key = unsafe { input_bytes(key, key_len, "key") }?;
        let out = out_ptr(store_out, "store_out")?;
        out.write(rk_store::boxed(ProtocolStore::restore_encrypted(
            saved, key,
        )?));
        Ok(())
    })
}

//! The store handle: identity, trust, safety numbers, save and restore
//! here; prekeys and bundles in `prekeys`, sessions (policy, encrypt,
//! decrypt) in `sessions`. Internally locked.

use std::ffi::c_char;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use rand::rngs::OsRng;

use super::bytes::rk_bytes;
use super::fingerprint::rk_fingerprint;
use super::guard::{
    free_handle, guard, handle_ref, impl_handle, input_bytes, input_str, new_handle, out_ptr,
    FfiError, FfiResult,
};
use super::keys::{rk_identity_keypair, rk_public_key};
use super::status::rk_status;
use crate::store::durable::{DurableStore, Load};
use crate::store::ProtocolStore;

mod directory;
mod durable;
mod prekeys;
mod sessions;
mod spqr;

pub use directory::*;
pub use durable::*;
pub use prekeys::*;
pub use sessions::*;
pub use spqr::*;

/// The protocol store of one local device: identity, registration id,
/// prekeys, sessions per remote address, trusted identities.
///
/// Internally locked: a store handle may be used from several threads at
/// once. Encrypting and decrypting whisper messages for different addresses
/// run in parallel (each session has its own lock); calls that create
/// sessions or change keys or trust serialize with everything else. Every
/// failing call leaves the store exactly as it was.
///
/// Two kinds, one handle type: in-memory stores (`rk_store_new`,
/// `rk_store_restore`, ...) and durable stores (`rk_store_open`,
/// `rk_store_import`), kept in an SQLite database. Every `rk_store_*`
/// function works on both. On a durable store, each call runs in one
/// write transaction of the database (taken before anything is read, so
/// threads and processes sharing the file never interleave a
/// read-modify-write) and commits its changes before it returns: at full
/// durability (on disk), except decrypts under `RK_DURABILITY_NORMAL`.
/// A failing call writes nothing. Calls on one durable handle serialize on
/// its connection; other handles and processes wait for the write lock up
/// to the busy timeout (`RK_STATUS_STORE_BUSY` after it). The thread-safety
/// notes of each function (shared or exclusive lock) describe in-memory
/// stores.
pub struct rk_store {
    _opaque: [u8; 0],
}
impl_handle!(rk_store, StoreCell, 0x726b_7374_6f72_6521);

/// What a store handle holds: an in-memory store behind a reader-writer
/// lock, or a durable store (which locks and commits per call itself).
// The cell lives in its handle's own allocation; boxing the larger variant
// would only add an indirection.
#[allow(clippy::large_enum_variant)]
pub(crate) enum StoreCell {
    Memory(RwLock<ProtocolStore>),
    Durable(DurableStore),
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
        new_handle(StoreCell::Memory(RwLock::new(store)))
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
    /// Exclusive access to an in-memory store: for calls that create
    /// sessions or change keys, prekeys or trust.
    fn lock(&self) -> FfiResult<RwLockWriteGuard<'_, ProtocolStore>> {
        let StoreCell::Memory(inner) = self else {
            return Err(FfiError::invalid("internal: not an in-memory store"));
        };
        let guard = inner.write().map_err(|_| poisoned())?;
        #[cfg(test)]
        test_panic_hook();
        Ok(guard)
    }

    /// Shared access to an in-memory store: reads, and encrypt / whisper
    /// decrypt, which lock only their own session inside the store.
    fn read(&self) -> FfiResult<RwLockReadGuard<'_, ProtocolStore>> {
        let StoreCell::Memory(inner) = self else {
            return Err(FfiError::invalid("internal: not an in-memory store"));
        };
        let guard = inner.read().map_err(|_| poisoned())?;
        #[cfg(test)]
        test_panic_hook();
        Ok(guard)
    }

    /// Runs `f` under shared access (in memory) or on a view of what `load`
    /// names (durable: one transaction, nothing written unless `f` changed
    /// something).
    pub(crate) fn shared<T>(
        &self,
        load: impl FnOnce() -> Load,
        f: impl FnOnce(&ProtocolStore) -> FfiResult<T>,
    ) -> FfiResult<T> {
        match self {
            StoreCell::Memory(_) => f(&*self.read()?),
            StoreCell::Durable(d) => d.with(&load(), false, |s| f(s)),
        }
    }

    /// Runs `f` under exclusive access (in memory) or on a view of what
    /// `load` names, committing its changes at full durability (durable).
    pub(crate) fn exclusive<T>(
        &self,
        load: impl FnOnce() -> Load,
        f: impl FnOnce(&mut ProtocolStore) -> FfiResult<T>,
    ) -> FfiResult<T> {
        match self {
            StoreCell::Memory(_) => f(&mut *self.lock()?),
            StoreCell::Durable(d) => d.with(&load(), true, f),
        }
    }

    /// The durable store, if this is one.
    pub(crate) fn durable(&self) -> Option<&DurableStore> {
        match self {
            StoreCell::Durable(d) => Some(d),
            StoreCell::Memory(_) => None,
        }
    }
}

/// What a count getter counts.
#[derive(Clone, Copy)]
pub(crate) enum Count {
    Sessions,
    PreKeys,
    KyberPreKeys,
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
        let key = store.shared(Load::meta, |s| Ok(*s.identity_key()))?;
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
        let pair = store.shared(Load::meta, |s| Ok(s.identity().clone()))?;
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
        out.write(store.shared(Load::meta, |s| Ok(s.registration_id()))?);
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
        out.write(store.shared(Load::meta, |s| Ok(s.device_id()))?);
        Ok(())
    })
}

/// Writes `count(store)` to `*count_out` (the shared body of the count
/// getters).
///
/// # Safety
/// As the callers: `store` NULL or a live `rk_store`, `count_out` writable.
unsafe fn write_count(store: *const rk_store, count_out: *mut usize, count: Count) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(count_out, "count_out")?;
        let n = match (store.durable(), count) {
            (Some(d), Count::Sessions) => d.session_count()?,
            (Some(d), Count::PreKeys) => d.prekey_count()?,
            (Some(d), Count::KyberPreKeys) => d.kyber_prekey_count()?,
            (None, Count::Sessions) => store.read()?.session_count(),
            (None, Count::PreKeys) => store.read()?.prekey_count(),
            (None, Count::KyberPreKeys) => store.read()?.kyber_prekey_count(),
        };
        out.write(n);
        Ok(())
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
            .shared(|| Load::trust(name), |s| Ok(s.trusted_identity(name)))?
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
        let replaced =
            store.exclusive(|| Load::trust(name), |s| Ok(s.approve_identity(name, *key)))?;
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
        let (local_key, remote_key) = store.shared(
            || Load::trust(name),
            |s| {
                let remote = s
                    .trusted_identity(name)
                    .ok_or_else(|| crate::Error::NoTrustedIdentity(name.to_owned()))?;
                Ok((*s.identity_key(), remote))
            },
        )?;
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
        let saved = store.shared(Load::everything, |s| Ok(s.save()))?;
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
        let sealed = store.shared(Load::everything, |s| Ok(s.save_encrypted(key, &mut OsRng)?))?;
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

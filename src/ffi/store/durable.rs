//! Durable stores at the C boundary: opening one (the same `rk_store`
//! handle; every `rk_store_*` function works on either kind), importing an
//! in-memory store into a new database, rekeying. Two-phase decrypt's
//! handle is in `ffi::pending`.

use std::ffi::c_char;
use std::time::Duration;

use super::{rk_store, StoreCell};
use crate::ffi::guard::{
    guard, handle_ref, input_bytes, input_str, new_handle, out_ptr, FfiError, FfiResult,
};
use crate::ffi::status::rk_status;
use crate::store::durable::{Durability, DurableOptions, DurableStore};

/// Length of the application key that opens a durable store.
pub const RK_STORE_KEY_LEN: usize = 32;
/// `rk_store_options.durability`: every change is on disk when the call
/// returns (the default).
pub const RK_DURABILITY_FULL: u32 = 0;
/// `rk_store_options.durability`: decrypts commit without waiting for the
/// disk (a power loss, not a crash, may undo the last ones: those messages
/// then decrypt again). Encrypt and every other call stay at full
/// durability, so a sending chain's advance is never lost and no message
/// key is used twice.
pub const RK_DURABILITY_NORMAL: u32 = 1;

/// Options for `rk_store_open`. Start from `rk_store_options_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct rk_store_options {
    /// The local device id of a new store, when the file holds none yet;
    /// 0: opening a file without a store fails (`RK_STATUS_STORAGE`).
    /// Default 1.
    pub create_device_id: u32,
    /// `RK_DURABILITY_FULL` (default) or `RK_DURABILITY_NORMAL`.
    pub durability: u32,
    /// How long a call waits for another connection's (thread's or
    /// process's) write lock before failing with `RK_STATUS_STORE_BUSY`, in
    /// milliseconds. Default 5000.
    pub busy_timeout_ms: u32,
}

/// The default options: create with device id 1, full durability, 5 s busy
/// timeout.
///
/// Thread safety: any thread.
#[no_mangle]
pub extern "C" fn rk_store_options_default() -> rk_store_options {
    rk_store_options {
        create_device_id: 1,
        durability: RK_DURABILITY_FULL,
        busy_timeout_ms: 5000,
    }
}

fn options_from(options: Option<&rk_store_options>) -> FfiResult<DurableOptions> {
    let o = options
        .copied()
        .unwrap_or_else(|| rk_store_options_default());
    Ok(DurableOptions {
        create_device_id: (o.create_device_id != 0).then_some(o.create_device_id),
        durability: match o.durability {
            RK_DURABILITY_FULL => Durability::Full,
            RK_DURABILITY_NORMAL => Durability::Normal,
            other => {
                return Err(FfiError::invalid(format!(
                    "durability must be RK_DURABILITY_FULL or RK_DURABILITY_NORMAL, got {other}"
                )))
            }
        },
        busy_timeout: Duration::from_millis(u64::from(o.busy_timeout_ms)),
        ..DurableOptions::default()
    })
}

/// Opens the durable store in the SQLite database file at `path` (UTF-8)
/// with the application's `RK_STORE_KEY_LEN`-byte `key`, creating it with
/// a fresh identity when the file holds no store and
/// `options->create_device_id` is not 0. `options` may be NULL (defaults).
/// On `RK_STATUS_OK`, `*store_out` receives a new handle (free it with
/// `rk_store_free`, which closes the database); every `rk_store_*`
/// function works on it, and commits its changes before it returns.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_ARGUMENT`
/// (`path` not UTF-8, bad options), `RK_STATUS_INVALID_KEY` (key length),
/// `RK_STATUS_WRONG_STORE_KEY`, `RK_STATUS_STORE_CORRUPT`,
/// `RK_STATUS_STORE_BUSY`, `RK_STATUS_STORAGE` (cannot open or create,
/// not a ratchetkit database, a newer schema, no store and creating is
/// off).
/// Thread safety: any thread. Several handles (threads or processes) may
/// open one file: every call takes the database's write lock for its
/// whole read-modify-write, and a lock held by a process that died is
/// released by the system.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `key` must point to
/// `key_len` readable bytes; `options` must be NULL or point to an
/// `rk_store_options`; `store_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_open(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
    options: *const rk_store_options,
    store_out: *mut *mut rk_store,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { input_str(path, "path") }?;
        // SAFETY: caller's contract.
        let key = unsafe { input_bytes(key, key_len, "key") }?;
        // SAFETY: caller's contract (NULL or a valid pointer).
        let options = options_from(unsafe { options.as_ref() })?;
        let out = out_ptr(store_out, "store_out")?;
        let store = DurableStore::open(path, key, &options)?;
        out.write(new_handle(StoreCell::Durable(store)));
        Ok(())
    })
}

/// Creates a durable store at `path` holding everything the in-memory
/// store `from` holds (for example one made by `rk_store_restore` or
/// `rk_store_restore_encrypted` from saved bytes), and opens it. The file
/// must not hold a store yet. `from` is unchanged.
///
/// Statuses: as `rk_store_open`, and `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`from` is a durable store).
/// Thread safety: any thread; `from` may be shared.
///
/// # Safety
/// As `rk_store_open`; `from` must be NULL or a live `rk_store`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_import(
    path: *const c_char,
    key: *const u8,
    key_len: usize,
    options: *const rk_store_options,
    from: *const rk_store,
    store_out: *mut *mut rk_store,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { input_str(path, "path") }?;
        // SAFETY: caller's contract.
        let key = unsafe { input_bytes(key, key_len, "key") }?;
        // SAFETY: caller's contract (NULL or a valid pointer).
        let options = options_from(unsafe { options.as_ref() })?;
        // SAFETY: caller's contract.
        let from = unsafe { handle_ref(from) }?;
        let out = out_ptr(store_out, "store_out")?;
        if from.durable().is_some() {
            return Err(FfiError::invalid(
                "rk_store_import takes an in-memory store (open a durable one directly)",
            ));
        }
        let snapshot = from.shared(crate::store::durable::Load::everything, |s| Ok(s.clone()))?;
        let store = DurableStore::import(path, key, &snapshot, &options)?;
        out.write(new_handle(StoreCell::Durable(store)));
        Ok(())
    })
}

/// Rewraps a durable store's key: `old_key` (the key it was opened with)
/// is replaced by `new_key`; one row changes.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (an in-memory store), `RK_STATUS_INVALID_KEY`
/// (lengths), `RK_STATUS_WRONG_STORE_KEY` (`old_key` is wrong),
/// `RK_STATUS_STORE_BUSY`, `RK_STATUS_STORAGE`.
/// Thread safety: any thread.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; the keys must point to their
/// lengths of readable bytes.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_rekey(
    store: *const rk_store,
    old_key: *const u8,
    old_key_len: usize,
    new_key: *const u8,
    new_key_len: usize,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let old_key = unsafe { input_bytes(old_key, old_key_len, "old_key") }?;
        // SAFETY: caller's contract.
        let new_key = unsafe { input_bytes(new_key, new_key_len, "new_key") }?;
        let durable = store
            .durable()
            .ok_or_else(|| FfiError::invalid("rk_store_rekey needs a durable store"))?;
        durable.rekey(old_key, new_key)?;
        Ok(())
    })
}

/// Whether `store` is durable (opened with `rk_store_open` or
/// `rk_store_import`), at `*durable_out`.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`.
/// Thread safety: any thread.
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `durable_out` writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_is_durable(
    store: *const rk_store,
    durable_out: *mut bool,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        out_ptr(durable_out, "durable_out")?.write(store.durable().is_some());
        Ok(())
    })
}

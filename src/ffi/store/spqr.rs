//! The store's SPQR policy (the post-quantum "triple ratchet" of version-4
//! sessions) and what a session's SPQR state shows the application.

use std::ffi::c_char;

use super::rk_store;
use crate::ffi::guard::{guard, handle_ref, input_address, out_ptr, FfiError};
use crate::ffi::status::rk_status;
use crate::spqr::SpqrPolicy;
use crate::store::durable::Load;

/// `rk_store_set_spqr_policy`: every new version-4 session speaks SPQR, and
/// a peer that does not fails with `RK_STATUS_SPQR_REQUIRED` (the default,
/// as the official library since 0.92).
pub const RK_SPQR_POLICY_REQUIRED: u32 = 0;
/// `rk_store_set_spqr_policy`: new version-4 sessions offer SPQR and drop it
/// when the peer answers without it (to talk to libsignal 0.83–0.91 and
/// libraries without SPQR).
pub const RK_SPQR_POLICY_OFFERED: u32 = 1;
/// `rk_store_set_spqr_policy`: new sessions do not speak SPQR.
pub const RK_SPQR_POLICY_OFF: u32 = 2;

fn policy_from(policy: u32) -> Result<SpqrPolicy, FfiError> {
    match policy {
        RK_SPQR_POLICY_REQUIRED => Ok(SpqrPolicy::Required),
        RK_SPQR_POLICY_OFFERED => Ok(SpqrPolicy::Offered),
        RK_SPQR_POLICY_OFF => Ok(SpqrPolicy::Off),
        _ => Err(crate::Error::InvalidArgument("unknown SPQR policy").into()),
    }
}

fn policy_number(policy: SpqrPolicy) -> u32 {
    match policy {
        SpqrPolicy::Required => RK_SPQR_POLICY_REQUIRED,
        SpqrPolicy::Offered => RK_SPQR_POLICY_OFFERED,
        SpqrPolicy::Off => RK_SPQR_POLICY_OFF,
    }
}

/// Sets the store's SPQR policy for sessions started from now on:
/// `RK_SPQR_POLICY_REQUIRED` (a new store's), `RK_SPQR_POLICY_OFFERED` or
/// `RK_SPQR_POLICY_OFF`. Sessions that already exist keep the SPQR state
/// they were started with (one without SPQR keeps working under every
/// policy). Version-3 sessions never speak SPQR; `rk_store_set_policy`
/// alone decides whether they are started or accepted. The policy is kept
/// in saved state and in a durable store.
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (an unknown policy; nothing is set),
/// `RK_STATUS_POISONED`, and a durable store's storage statuses.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_set_spqr_policy(store: *mut rk_store, policy: u32) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let policy = policy_from(policy)?;
        store.exclusive(Load::meta, |s| {
            s.set_spqr_policy(policy);
            Ok(())
        })?;
        Ok(())
    })
}

/// The store's SPQR policy at `*policy_out` (one of `RK_SPQR_POLICY_*`).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_POISONED`, and a durable store's storage statuses.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `policy_out` must be writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_spqr_policy(
    store: *const rk_store,
    policy_out: *mut u32,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        let out = out_ptr(policy_out, "policy_out")?;
        let policy = store.shared(Load::meta, |s| Ok(s.spqr_policy()))?;
        out.write(policy_number(policy));
        Ok(())
    })
}

/// Whether the current session with (`name`, `device_id`) speaks SPQR: on
/// `RK_STATUS_OK`, `*has_out` is 1 when its state runs SPQR (a session that
/// only offered it stays 1 until the peer's first reply shows whether it
/// speaks it), else 0; and `*epoch_out` (when not NULL) is the SPQR epoch
/// (1 at the start, one more with every completed ML-KEM exchange; 0
/// without SPQR).
///
/// Statuses: `RK_STATUS_NULL_POINTER`, `RK_STATUS_INVALID_HANDLE`,
/// `RK_STATUS_INVALID_ARGUMENT` (`name` not UTF-8), `RK_STATUS_NO_SESSION`
/// (no current session for the address), `RK_STATUS_POISONED`.
/// Thread safety: any thread (the store is locked for the call).
///
/// # Safety
/// `store` must be NULL or a live `rk_store`; `name` must be NULL or a
/// NUL-terminated string; `has_out` must be writable; `epoch_out` NULL or
/// writable.
#[no_mangle]
#[must_use]
pub unsafe extern "C" fn rk_store_session_has_spqr(
    store: *const rk_store,
    name: *const c_char,
    device_id: u32,
    has_out: *mut u32,
    epoch_out: *mut u64,
) -> rk_status {
    guard(|| {
        // SAFETY: caller's contract.
        let store = unsafe { handle_ref(store) }?;
        // SAFETY: caller's contract.
        let address = unsafe { input_address(name, device_id) }?;
        let out = out_ptr(has_out, "has_out")?;
        let (has, epoch) = store.shared(
            || Load::session(&address),
            |s| Ok((s.session_has_spqr(&address), s.session_spqr_epoch(&address))),
        )?;
        let has = has.ok_or_else(|| crate::Error::NoSession(address.name.clone()))?;
        out.write(u32::from(has));
        if !epoch_out.is_null() {
            let epoch_out = out_ptr(epoch_out, "epoch_out")?;
            epoch_out.write(epoch.unwrap_or(0));
        }
        Ok(())
    })
}

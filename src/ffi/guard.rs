//! The one guard every extern fn runs through, the thread-local last error,
//! and the checked conversions of C arguments.

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::rk_status;
use crate::error::Error;
use crate::store::Address;

/// An error on its way to C: a status and a message without secrets.
#[derive(Debug)]
pub(crate) struct FfiError {
    pub(crate) status: rk_status,
    pub(crate) message: Cow<'static, str>,
}

impl FfiError {
    pub(crate) fn new(status: rk_status, message: impl Into<Cow<'static, str>>) -> Self {
        FfiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn null(what: &'static str) -> Self {
        FfiError::new(rk_status::NullPointer, format!("{what} is NULL"))
    }
    pub(crate) fn invalid(message: impl Into<Cow<'static, str>>) -> Self {
        FfiError::new(rk_status::InvalidArgument, message)
    }
}

impl From<Error> for FfiError {
    fn from(e: Error) -> Self {
        FfiError::new(rk_status::from(&e), e.to_string())
    }
}

pub(crate) type FfiResult<T> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn set_last_error(message: &str) {
    // try_with: during thread teardown the slot may be gone; then the detail
    // is dropped, never a panic.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(message);
        }
    });
}

pub(crate) fn clear_last_error() {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
        }
    });
}

pub(crate) fn with_last_error<T>(f: impl FnOnce(&str) -> T) -> Option<T> {
    LAST_ERROR
        .try_with(|e| e.try_borrow().ok().map(|e| f(&e)))
        .ok()
        .flatten()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    match what {
        Some(m) => format!("internal error (panic caught): {m}"),
        None => "internal error (panic caught)".to_owned(),
    }
}

/// Runs `f`, turning its error into a status and the thread's last error,
/// and a panic into `rk_status::Panic`. On success the last error is cleared.
pub(crate) fn guard(f: impl FnOnce() -> FfiResult<()>) -> rk_status {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            clear_last_error();
            rk_status::Ok
        }
        Ok(Err(e)) => {
            set_last_error(&e.message);
            e.status
        }
        Err(payload) => {
            // Formatting the payload could itself panic (a Display impl);
            // contain that too.
            let msg = catch_unwind(AssertUnwindSafe(|| panic_message(&*payload)))
                .unwrap_or_else(|_| "internal error (panic caught)".to_owned());
            set_last_error(&msg);
            // Drop the payload without letting its destructor unwind out.
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            rk_status::Panic
        }
    }
}

/// For the few functions without a status: runs `f`, or returns `default`
/// if it panics. The last error is not touched.
pub(crate) fn guard_value<T>(default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
            default
        }
    }
}

// ---- argument conversions ------------------------------------------------

/// Borrows `len` bytes at `ptr`. NULL with length 0 is an empty input.
///
/// # Safety
/// Unless NULL or `len` is 0, `ptr` must point to `len` readable bytes that
/// stay valid and unmodified for `'a`.
pub(crate) unsafe fn input_bytes<'a>(
    ptr: *const u8,
    len: usize,
    what: &'static str,
) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::new(
            rk_status::NullPointer,
            format!("{what} is NULL with length {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(FfiError::invalid(format!(
            "{what}: length {len} is too large"
        )));
    }
    // SAFETY: non-NULL, length checked, validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Borrows a NUL-terminated UTF-8 string.
///
/// # Safety
/// Unless NULL, `ptr` must point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn input_str<'a>(ptr: *const c_char, what: &'static str) -> FfiResult<&'a str> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(ptr) };
    c.to_str()
        .map_err(|_| FfiError::invalid(format!("{what} is not valid UTF-8")))
}

/// An address from a C name and device id.
///
/// # Safety
/// As [`input_str`].
pub(crate) unsafe fn input_address(name: *const c_char, device_id: u32) -> FfiResult<Address> {
    // SAFETY: forwarded contract.
    let name = unsafe { input_str(name, "name") }?;
    Ok(Address::new(name, device_id))
}

/// A 0/1 flag from C (never a C `bool` argument: other values would be UB).
pub(crate) fn input_flag(value: u32, what: &'static str) -> FfiResult<bool> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(FfiError::invalid(format!("{what} must be 0 or 1, got {v}"))),
    }
}

/// A checked out-pointer: NULL and misalignment are refused up front, so
/// that the later write (after the core has succeeded) cannot fail.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Writes `value` without reading or dropping the old contents.
    pub(crate) fn write(self, value: T) {
        // SAFETY: checked non-NULL and aligned in `out_ptr`; writability is
        // the caller's contract.
        unsafe { self.0.write(value) }
    }
}

/// Checks an out-pointer.
pub(crate) fn out_ptr<T>(ptr: *mut T, what: &'static str) -> FfiResult<Out<T>> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    if !ptr.is_aligned() {
        return Err(FfiError::invalid(format!("{what} is misaligned")));
    }
    Ok(Out(ptr))
}

/// A checked caller buffer for a fixed-size output of `need` bytes.
pub(crate) struct OutBuf {
    ptr: *mut u8,
    need: usize,
}

impl OutBuf {
    /// Copies `data` (exactly `need` bytes) into the buffer.
    pub(crate) fn write(self, data: &[u8]) -> FfiResult<()> {
        if data.len() != self.need {
            return Err(FfiError::new(rk_status::Internal, "output length mismatch"));
        }
        // SAFETY: the buffer holds at least `need` writable bytes (checked
        // capacity, caller's contract); the source is a Rust slice and
        // cannot overlap caller memory we were told is ours to write.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr, self.need) };
        Ok(())
    }
}

/// Checks a caller buffer of `cap` bytes that must hold `need` bytes.
pub(crate) fn out_buf(
    ptr: *mut u8,
    cap: usize,
    need: usize,
    what: &'static str,
) -> FfiResult<OutBuf> {
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    if cap < need {
        return Err(FfiError::new(
            rk_status::BufferTooSmall,
            format!("{what} holds {cap} bytes, {need} are needed"),
        ));
    }
    Ok(OutBuf { ptr, need })
}

// ---- handles ---------------------------------------------------------------

/// An opaque handle type as C sees it: a marker struct that is never
/// instantiated. The pointer C holds points to a [`Tagged`] of `Inner`.
pub(crate) trait Handle {
    /// What the handle holds.
    type Inner;
    /// The tag of live handles of this type.
    const TAG: u64;
    /// The C name, for messages.
    const NAME: &'static str;
}

/// The heap object behind every handle: the type tag first (at offset 0
/// whatever `T` is, thanks to `repr(C)`), so that a handle of another type
/// is recognised by reading 8 bytes that every handle has.
#[repr(C)]
pub(crate) struct Tagged<T> {
    tag: u64,
    value: T,
}

const DEAD_TAG: u64 = 0xDEAD_DEAD_DEAD_DEAD;

/// Reads the tag of a non-NULL handle pointer, checking alignment.
///
/// # Safety
/// `ptr` must point to at least 8 readable bytes (any live handle does).
unsafe fn tag_of<H: Handle>(ptr: *const H) -> Option<u64> {
    let t = ptr.cast::<Tagged<H::Inner>>();
    if !t.is_aligned() {
        return None;
    }
    // SAFETY: aligned for Tagged (so for u64, its first field at offset 0);
    // readable by the caller's contract.
    Some(unsafe { t.cast::<u64>().read() })
}

/// Borrows what a handle holds.
///
/// # Safety
/// Unless NULL, `ptr` must be a live handle made by this library (a live
/// handle of another type is detected and refused; a freed one is not
/// reliably detected, see [`free_handle`]).
pub(crate) unsafe fn handle_ref<'a, H: Handle>(ptr: *const H) -> FfiResult<&'a H::Inner> {
    if ptr.is_null() {
        return Err(FfiError::null(H::NAME));
    }
    // SAFETY: non-NULL; the caller's contract.
    if unsafe { tag_of(ptr) } != Some(H::TAG) {
        return Err(FfiError::new(
            rk_status::InvalidHandle,
            format!("{} is not a live handle of that type", H::NAME),
        ));
    }
    // SAFETY: the tag shows a live Tagged<H::Inner> made by `new_handle`;
    // handles are only read through shared references.
    Ok(unsafe { &(*ptr.cast::<Tagged<H::Inner>>()).value })
}

/// Moves a new handle to the heap for C.
pub(crate) fn new_handle<H: Handle>(value: H::Inner) -> *mut H {
    Box::into_raw(Box::new(Tagged { tag: H::TAG, value })).cast()
}

/// Frees a handle; NULL is a no-op, and so is a pointer whose tag is not
/// that of a live handle of this type (a wrong-type free leaks rather than
/// corrupting the heap).
///
/// A double free or a use after free is NOT reliably detected: the tag is
/// overwritten with `DEAD_TAG` before the memory is freed, which catches a
/// second use only while the allocator leaves that memory alone. Once it is
/// reused (for another handle of the same type, say), a stale pointer reads
/// a live tag and acts on the new object. Both remain undefined behaviour.
///
/// # Safety
/// As [`handle_ref`]; after this call the handle must not be used.
pub(crate) unsafe fn free_handle<H: Handle>(ptr: *mut H) {
    guard_value((), || {
        // SAFETY: non-NULL; the caller's contract.
        if ptr.is_null() || unsafe { tag_of(ptr) } != Some(H::TAG) {
            return;
        }
        // SAFETY: made by `new_handle` (tag checked); ownership returns here.
        let mut b = unsafe { Box::from_raw(ptr.cast::<Tagged<H::Inner>>()) };
        // Volatile, so the store is not elided before the free.
        // SAFETY: a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(&mut b.tag, DEAD_TAG) };
        drop(b);
    })
}

/// Declares what a handle marker type holds and its tag.
macro_rules! impl_handle {
    ($name:ident, $inner:ty, $tag:expr) => {
        impl $crate::ffi::guard::Handle for $name {
            type Inner = $inner;
            const TAG: u64 = $tag;
            const NAME: &'static str = stringify!($name);
        }
    };
}
pub(crate) use impl_handle;

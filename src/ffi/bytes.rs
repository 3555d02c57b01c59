//! `rk_bytes`: the one scheme for variable-length outputs.

use std::alloc::{alloc, dealloc, Layout};

use zeroize::Zeroize;

use super::guard::{guard_value, FfiError, FfiResult};
use super::status::rk_status;

/// A byte buffer allocated by the library: `len` bytes at `ptr`, followed by
/// one NUL byte that is not counted in `len` (so text outputs, such as the
/// QR SVG, can be used as C strings directly). On `RK_STATUS_OK`, `ptr` is
/// never NULL, even when `len` is 0.
///
/// Ownership: the caller owns it and releases it exactly once with
/// `rk_bytes_free`, which zeroizes the whole buffer first. Do not change
/// `ptr`; do not free it with `free()`.
#[repr(C)]
#[derive(Debug)]
pub struct rk_bytes {
    /// The first byte.
    pub ptr: *mut u8,
    /// The number of bytes (not counting the trailing NUL).
    pub len: usize,
}

#[cfg(test)]
thread_local! {
    /// Test hook: the next output allocation on this thread fails as if
    /// out of memory.
    pub(crate) static FAIL_NEXT_OUTPUT: std::cell::Cell<bool> =
        const { std::cell::Cell::new(false) };
}

/// Bytes before `ptr` holding the allocation size (keeps `ptr` 16-aligned).
const HEADER: usize = 16;
const ALIGN: usize = 16;

impl rk_bytes {
    /// Copies `data` into a new library allocation.
    pub(crate) fn copy_from(data: &[u8]) -> FfiResult<rk_bytes> {
        let total = data
            .len()
            .checked_add(HEADER + 1)
            .ok_or_else(|| FfiError::new(rk_status::Internal, "output too large"))?;
        let layout = Layout::from_size_align(total, ALIGN)
            .map_err(|_| FfiError::new(rk_status::Internal, "output too large"))?;
        // SAFETY: `layout` has a nonzero size.
        let base = unsafe { alloc(layout) };
        #[cfg(test)]
        let base = if FAIL_NEXT_OUTPUT.with(|f| f.replace(false)) {
            // SAFETY: allocated just above with this layout.
            unsafe { dealloc(base, layout) };
            std::ptr::null_mut()
        } else {
            base
        };
        if base.is_null() {
            return Err(FfiError::new(
                rk_status::Internal,
                "out of memory for an output buffer",
            ));
        }
        // SAFETY: `base` holds `total` bytes, 16-aligned: the header is an
        // aligned usize, the data and the NUL fit after it.
        unsafe {
            base.cast::<usize>().write(total);
            let ptr = base.add(HEADER);
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len());
            ptr.add(data.len()).write(0);
            Ok(rk_bytes {
                ptr,
                len: data.len(),
            })
        }
    }

    /// Moves `data` out, zeroizing the Rust copy.
    pub(crate) fn from_vec(mut data: Vec<u8>) -> FfiResult<rk_bytes> {
        let out = rk_bytes::copy_from(&data);
        data.zeroize();
        out
    }

    /// Moves a string out, zeroizing the Rust copy.
    pub(crate) fn from_string(s: String) -> FfiResult<rk_bytes> {
        rk_bytes::from_vec(s.into_bytes())
    }
}

/// An output buffer not yet handed to the caller: freed (and zeroized) if
/// dropped, for example when a durable store's commit fails after the
/// output was made.
pub(crate) struct OwnedBytes(Option<rk_bytes>);

impl OwnedBytes {
    /// Moves `data` into a new output buffer, zeroizing the Rust copy.
    pub(crate) fn from_vec(data: Vec<u8>) -> FfiResult<OwnedBytes> {
        Ok(OwnedBytes(Some(rk_bytes::from_vec(data)?)))
    }

    /// Hands the buffer over (to be written to an output pointer).
    pub(crate) fn release(mut self) -> rk_bytes {
        self.0.take().unwrap_or(rk_bytes {
            ptr: std::ptr::null_mut(),
            len: 0,
        })
    }
}

impl Drop for OwnedBytes {
    fn drop(&mut self) {
        if let Some(bytes) = self.0.take() {
            // SAFETY: made by `rk_bytes::from_vec` and never handed out.
            unsafe { rk_bytes_free(bytes) }
        }
    }
}

/// Zeroizes and frees a buffer returned by the library. `{NULL, 0}` (and any
/// `rk_bytes` with a NULL `ptr`) is a no-op.
///
/// Ownership: takes the buffer; it must have come from this library and must
/// not be used or freed again afterwards. Freeing it twice is undefined
/// behaviour (set `ptr` to NULL after freeing to be safe).
/// Thread safety: any thread may free a buffer. Does not touch the thread's
/// last error.
///
/// # Safety
/// `bytes.ptr` must be NULL or a pointer from an `rk_bytes` this library
/// returned and that was not freed yet.
#[no_mangle]
pub unsafe extern "C" fn rk_bytes_free(bytes: rk_bytes) {
    guard_value((), || {
        if bytes.ptr.is_null() {
            return;
        }
        // SAFETY: `ptr` came from `copy_from`: HEADER bytes before it hold
        // the total size of an allocation with alignment ALIGN.
        unsafe {
            let base = bytes.ptr.sub(HEADER);
            let total = base.cast::<usize>().read();
            std::slice::from_raw_parts_mut(base, total).zeroize();
            if let Ok(layout) = Layout::from_size_align(total, ALIGN) {
                dealloc(base, layout);
            }
        }
    })
}

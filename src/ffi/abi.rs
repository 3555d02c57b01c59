// Shared by the crate (src/ffi/mod.rs) and build.rs (which puts it in the
// SONAME, libratchetkit.so.<RK_ABI_VERSION>). No inner attributes here:
// build.rs include!s this file.

/// The ABI version of this header and library: raised on every incompatible
/// change of the C API (a removed or changed function or type). Compare it
/// with `rk_abi_version()` at run time.
pub const RK_ABI_VERSION: u32 = 0;

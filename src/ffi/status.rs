//! `rk_status`: the status every fallible C function returns, with stable
//! numbers in ranges that are never renumbered, and `rk_status_str`.

use std::ffi::c_char;

use crate::error::Error;

/// The status of a C API call. `RK_STATUS_OK` (0) is success; every other
/// value is an error whose detail `rk_last_error_message` gives on the same
/// thread. The numbers are stable: ranges are `1xx` usage, `2xx` bad input,
/// `3xx` session and trust, `4xx` saved state, `9xx` internal. Numbers are
/// never reused; new codes are only added. (Numbers not listed are reserved.)
///
/// In C, `rk_status` is a `uint32_t`, so a newer library can return a code
/// that an older header does not name: treat unknown codes as errors.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum rk_status {
    /// Success.
    Ok = 0,
    /// A required pointer argument (handle, out-pointer, or bytes with a
    /// nonzero length) was NULL.
    NullPointer = 100,
    /// An argument is out of range or malformed (for example a name that is
    /// not UTF-8, an unknown message type, a flag other than 0 or 1).
    InvalidArgument = 101,
    /// A caller buffer is too small for a fixed-size or text output.
    BufferTooSmall = 102,
    /// A handle is not a live handle of the expected type: a live handle of
    /// another type (always detected), or memory without a live tag (a
    /// freed handle whose memory was not reused yet). A freed handle whose
    /// memory was reused is NOT detected: use after free and double free
    /// are undefined behaviour.
    InvalidHandle = 103,
    /// Key bytes of the wrong length or type, a low-order key, or a public
    /// key that is not canonical (bit 255 set, or u >= 2^255 - 19).
    InvalidKey = 200,
    /// A signature (signed prekey) does not verify.
    InvalidSignature = 201,
    /// Message bytes that are malformed, unauthenticated, of an unsupported
    /// version, or fail to decrypt.
    InvalidMessage = 202,
    /// A message whose key was already used (a replay or second delivery).
    DuplicateMessage = 203,
    /// Bundle bytes or bundle fields that are malformed or out of range.
    InvalidBundle = 204,
    /// A scannable fingerprint that cannot be parsed.
    InvalidFingerprint = 205,
    /// Two scannable fingerprints of different versions.
    FingerprintVersionMismatch = 206,
    /// A deployed limit was exceeded (a message too far ahead of its chain,
    /// prekey ids exhausted, too many prekeys requested at once).
    LimitExceeded = 207,
    /// The store's session policy refuses the session version: a bundle
    /// without a Kyber prekey (starting a version-3 session), or an incoming
    /// version-3 prekey message that would start a new session. See
    /// `rk_store_set_policy`.
    VersionRefused = 208,
    /// The store's SPQR policy is required (the default, see
    /// `rk_store_set_spqr_policy`) and the peer does not speak SPQR: a
    /// version-4 message (prekey or not) without the SPQR field, from a
    /// library without SPQR (before 0.83) or with it turned off. Nothing was
    /// changed. Set the policy to `RK_SPQR_POLICY_OFFERED` to talk to such a
    /// peer. (SPQR is read before the MAC is checked, as in the official
    /// library: a message altered in transit so that its SPQR field reads
    /// as absent gets this status too.)
    SpqrRequired = 209,
    /// The remote identity key differs from the trusted one: approve it with
    /// `rk_store_approve_identity` after the user has checked it.
    UntrustedIdentity = 300,
    /// No session (or no sending chain) for the address.
    NoSession = 301,
    /// A prekey message names a (signed, one-time or Kyber) prekey this
    /// store does not hold; or a Kyber prekey was asked of a store or bundle
    /// that does not hold it.
    MissingPrekey = 302,
    /// No identity key is trusted for the name yet.
    NoTrustedIdentity = 303,
    /// Saved state that is corrupt or not a saved store.
    InvalidState = 400,
    /// Encrypted saved state that does not decrypt: wrong key, or the bytes
    /// were altered.
    WrongPickleKey = 401,
    /// Saved state of a format version this library does not read.
    UnsupportedStateVersion = 402,
    /// A durable store opened with the wrong key (`rk_store_open`,
    /// `rk_store_rekey`).
    WrongStoreKey = 403,
    /// A durable store's record that does not open or decode (tampered,
    /// truncated, moved to another row), or a database file SQLite reports
    /// as corrupt. Nothing was changed; the record was not used.
    StoreCorrupt = 404,
    /// Another connection (thread or process) held a durable store's write
    /// lock for longer than the busy timeout. Nothing was changed; retry.
    StoreBusy = 405,
    /// A pending decrypt (`rk_pending_decrypt_commit`) whose session changed
    /// after the message was decrypted. Nothing was written; decrypt the
    /// message again.
    Conflict = 406,
    /// A durable store's database could not be opened, read or written (I/O
    /// error, disk full, permissions, a newer schema).
    Storage = 407,
    /// An internal error (for example out of memory for an output buffer).
    Internal = 900,
    /// A panic inside the library was caught; it did not cross into the
    /// caller.
    Panic = 901,
    /// The store handle is unusable because an earlier call panicked while
    /// holding its lock. Free it and restore from saved state.
    Poisoned = 902,
}

impl rk_status {
    /// Every status, in numeric order.
    pub fn all() -> [rk_status; 30] {
        [
            rk_status::Ok,
            rk_status::NullPointer,
            rk_status::InvalidArgument,
            rk_status::BufferTooSmall,
            rk_status::InvalidHandle,
            rk_status::InvalidKey,
            rk_status::InvalidSignature,
            rk_status::InvalidMessage,
            rk_status::DuplicateMessage,
            rk_status::InvalidBundle,
            rk_status::InvalidFingerprint,
            rk_status::FingerprintVersionMismatch,
            rk_status::LimitExceeded,
            rk_status::VersionRefused,
            rk_status::SpqrRequired,
            rk_status::UntrustedIdentity,
            rk_status::NoSession,
            rk_status::MissingPrekey,
            rk_status::NoTrustedIdentity,
            rk_status::InvalidState,
            rk_status::WrongPickleKey,
            rk_status::UnsupportedStateVersion,
            rk_status::WrongStoreKey,
            rk_status::StoreCorrupt,
            rk_status::StoreBusy,
            rk_status::Conflict,
            rk_status::Storage,
            rk_status::Internal,
            rk_status::Panic,
            rk_status::Poisoned,
        ]
    }

    /// The status with number `code`, if any.
    pub fn from_u32(code: u32) -> Option<rk_status> {
        Self::all().into_iter().find(|s| *s as u32 == code)
    }

    /// The static, NUL-terminated description of this status.
    pub(crate) fn description(self) -> &'static str {
        match self {
            rk_status::Ok => "ok\0",
            rk_status::NullPointer => "null pointer\0",
            rk_status::InvalidArgument => "invalid argument\0",
            rk_status::BufferTooSmall => "buffer too small\0",
            rk_status::InvalidHandle => "invalid handle\0",
            rk_status::InvalidKey => "invalid key\0",
            rk_status::InvalidSignature => "invalid signature\0",
            rk_status::InvalidMessage => "invalid message\0",
            rk_status::DuplicateMessage => "duplicate message\0",
            rk_status::InvalidBundle => "invalid bundle\0",
            rk_status::InvalidFingerprint => "invalid fingerprint\0",
            rk_status::FingerprintVersionMismatch => "fingerprint version mismatch\0",
            rk_status::LimitExceeded => "limit exceeded\0",
            rk_status::VersionRefused => "session version refused by policy\0",
            rk_status::SpqrRequired => "SPQR required: the peer does not speak it\0",
            rk_status::UntrustedIdentity => "untrusted identity\0",
            rk_status::NoSession => "no session\0",
            rk_status::MissingPrekey => "missing prekey\0",
            rk_status::NoTrustedIdentity => "no trusted identity\0",
            rk_status::InvalidState => "invalid saved state\0",
            rk_status::WrongPickleKey => "wrong key for saved state, or altered bytes\0",
            rk_status::UnsupportedStateVersion => "unsupported saved-state version\0",
            rk_status::WrongStoreKey => "wrong key for the durable store\0",
            rk_status::StoreCorrupt => "durable store record corrupt or tampered with\0",
            rk_status::StoreBusy => "durable store busy (write lock held past the busy timeout)\0",
            rk_status::Conflict => "pending change conflicts with a newer change\0",
            rk_status::Storage => "storage error\0",
            rk_status::Internal => "internal error\0",
            rk_status::Panic => "internal error (panic caught)\0",
            rk_status::Poisoned => "store unusable after an earlier panic\0",
        }
    }
}

impl From<&Error> for rk_status {
    fn from(e: &Error) -> Self {
        // Exhaustive on purpose: a new core error must be given a status.
        match e {
            Error::InvalidKeyLength { .. }
            | Error::InvalidKeyType(_)
            | Error::NonContributoryKey
            | Error::NonCanonicalKey
            | Error::InvalidKemKey(_) => rk_status::InvalidKey,
            Error::InvalidSignature(_) => rk_status::InvalidSignature,
            Error::InvalidMessage(_)
            | Error::LegacyMessage(_)
            | Error::UnrecognizedMessageVersion(_) => rk_status::InvalidMessage,
            Error::DuplicateMessage { .. } => rk_status::DuplicateMessage,
            Error::TooFarAhead { .. } | Error::LimitExceeded(_) => rk_status::LimitExceeded,
            Error::UntrustedIdentity(_) => rk_status::UntrustedIdentity,
            Error::NoSession(_) | Error::NoSendingChain(_) => rk_status::NoSession,
            Error::MissingPreKey(_)
            | Error::MissingSignedPreKey(_)
            | Error::MissingKyberPreKey(_) => rk_status::MissingPrekey,
            Error::VersionRefused(_) => rk_status::VersionRefused,
            Error::SpqrRequired(_) => rk_status::SpqrRequired,
            Error::InvalidBundle(_) => rk_status::InvalidBundle,
            Error::CorruptState(_) => rk_status::InvalidState,
            Error::UnsupportedStateVersion(_) => rk_status::UnsupportedStateVersion,
            Error::StateDecryptionFailed => rk_status::WrongPickleKey,
            Error::FingerprintVersionMismatch { .. } => rk_status::FingerprintVersionMismatch,
            Error::InvalidFingerprint(_) => rk_status::InvalidFingerprint,
            Error::InvalidArgument(_) => rk_status::InvalidArgument,
            Error::NoTrustedIdentity(_) => rk_status::NoTrustedIdentity,
            Error::WrongStoreKey => rk_status::WrongStoreKey,
            Error::StoreCorrupt(_) => rk_status::StoreCorrupt,
            Error::StoreBusy => rk_status::StoreBusy,
            Error::StoreConflict => rk_status::Conflict,
            Error::Storage(_) => rk_status::Storage,
        }
    }
}

/// A static, NUL-terminated English description of status `code` (for
/// example "no session"), or "unknown status" for a number this library
/// does not define.
///
/// Ownership: the string is static; never free or modify it.
/// Thread safety: may be called from any thread. Does not touch the
/// thread's last error.
#[no_mangle]
pub extern "C" fn rk_status_str(code: u32) -> *const c_char {
    super::guard::guard_value(c"internal error".as_ptr(), || {
        match rk_status::from_u32(code) {
            Some(s) => s.description(),
            None => "unknown status\0",
        }
        .as_ptr()
        .cast::<c_char>()
    })
}

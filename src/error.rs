//! The one error type of ratchetkit.
//!
//! Every variant names a distinct failure. Messages carry lengths, indices,
//! ids and names only, never key material.

/// Everything that can go wrong in ratchetkit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key bytes of the wrong length.
    #[error("invalid key: expected {expected} bytes, got {got}")]
    InvalidKeyLength {
        /// The length that was expected.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// A serialized public key with a type byte other than 0x05.
    #[error("invalid key: unknown key type byte 0x{0:02x} (expected 0x05)")]
    InvalidKeyType(u8),
    /// A Diffie-Hellman result of all zeros: the other side's key is a
    /// low-order point and contributes nothing.
    #[error("invalid key: Diffie-Hellman with a low-order point (non-contributory key)")]
    NonContributoryKey,
    /// A public key whose u-coordinate is not in canonical form (bit 255
    /// set, or u >= 2^255 - 19). X25519 ignores the top bit and reduces u
    /// modulo p, so such a key is an alias of a canonical one; honest peers
    /// never send one, and accepting it would let a replayed message pass a
    /// byte comparison with the original.
    #[error("invalid key: non-canonical public key (bit 255 set or u >= 2^255 - 19)")]
    NonCanonicalKey,
    /// A KEM (Kyber1024) public key, secret key or ciphertext with a wrong
    /// type byte or length, or a malformed public key.
    #[error("invalid KEM key: {0}")]
    InvalidKemKey(&'static str),
    /// A signature (signed prekey) does not verify.
    #[error("invalid signature: {0}")]
    InvalidSignature(&'static str),
    /// A message that cannot be parsed or authenticated.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// A message of a version older than 3.
    #[error("invalid message: legacy message version {0}")]
    LegacyMessage(u8),
    /// A message of a version newer than this library speaks.
    #[error("invalid message: unrecognized message version {0}")]
    UnrecognizedMessageVersion(u8),
    /// A message whose key was already used: a replay or a second delivery.
    #[error("duplicate message: counter {counter} was already received on this chain")]
    DuplicateMessage {
        /// The counter of the duplicate.
        counter: u32,
    },
    /// A message too far ahead of its chain.
    #[error("limit exceeded: message is {jump} steps ahead of its chain (at most {limit})")]
    TooFarAhead {
        /// How far ahead the message is.
        jump: u64,
        /// The limit (25,000).
        limit: u32,
    },
    /// A remote identity key differs from the one trusted for that name.
    #[error("untrusted identity for {0:?}: the identity key differs from the trusted one")]
    UntrustedIdentity(String),
    /// No session for that address.
    #[error("no session for {0:?}")]
    NoSession(String),
    /// A session exists but cannot send (it has no sending chain).
    #[error("session for {0:?} has no sending chain")]
    NoSendingChain(String),
    /// A prekey message names a one-time prekey this store does not hold.
    #[error("missing one-time prekey with id {0}")]
    MissingPreKey(u32),
    /// A prekey message names a Kyber prekey this store does not hold (or
    /// no longer: a one-time Kyber prekey is deleted after its first use).
    #[error("missing Kyber prekey with id {0}")]
    MissingKyberPreKey(u32),
    /// A session version the store's policy refuses: a bundle without a
    /// Kyber prekey (starting a version-3 session), or a version-3 prekey
    /// message that would start a new session.
    #[error("session version refused: {0}")]
    VersionRefused(&'static str),
    /// The store's SPQR policy is [`SpqrPolicy::Required`](crate::spqr::SpqrPolicy::Required)
    /// and the peer does not speak SPQR: a message of a version-4 session
    /// that carries no SPQR field where SPQR is required (the peer is a
    /// library without SPQR, or with it turned off). Nothing was changed.
    #[error("SPQR required: {0}")]
    SpqrRequired(&'static str),
    /// A prekey message names a signed prekey this store does not hold.
    #[error("missing signed prekey with id {0}")]
    MissingSignedPreKey(u32),
    /// A bundle that cannot be parsed or is inconsistent.
    #[error("invalid bundle: {0}")]
    InvalidBundle(&'static str),
    /// Saved state that cannot be restored.
    #[error("corrupt saved state: {0}")]
    CorruptState(&'static str),
    /// Saved state written by a format version this library does not read.
    #[error("saved state has unsupported format version {0}")]
    UnsupportedStateVersion(u32),
    /// Encrypted saved state that does not authenticate under the given
    /// key: the key is wrong, or the bytes were altered.
    #[error("saved state does not decrypt: wrong key, or the bytes were altered")]
    StateDecryptionFailed,
    /// Two scannable fingerprints of different versions.
    #[error("fingerprint version mismatch: ours {ours}, theirs {theirs}")]
    FingerprintVersionMismatch {
        /// Our version.
        ours: u32,
        /// The scanned version.
        theirs: u32,
    },
    /// A scannable fingerprint that cannot be parsed.
    #[error("invalid scannable fingerprint: {0}")]
    InvalidFingerprint(&'static str),
    /// A caller-supplied argument outside its allowed range.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// No identity is trusted for that name.
    #[error("no trusted identity for {0:?}")]
    NoTrustedIdentity(String),
    /// A durable store opened with a key that does not unwrap its store
    /// key: the wrong key (or the key row was altered).
    #[error("durable store: wrong key (the store key does not unwrap)")]
    WrongStoreKey,
    /// A record of a durable store that does not open (tampered, truncated,
    /// moved to another row or table) or does not decode, or a database
    /// file SQLite reports as corrupt. The record is never used.
    #[error("durable store is corrupt or was tampered with: {0}")]
    StoreCorrupt(&'static str),
    /// Another connection (thread or process) held the database's write
    /// lock for longer than the busy timeout. Nothing was changed; retry.
    #[error("durable store busy: another connection held the write lock past the busy timeout")]
    StoreBusy,
    /// A pending change (two-phase decrypt) whose records changed after it
    /// was made (another thread or process used the session). Nothing was
    /// written; decrypt the message again.
    #[error("pending change conflicts: the records it read changed since")]
    StoreConflict,
    /// The database could not be opened, read or written (I/O error, disk
    /// full, permissions), or has a schema newer than this library.
    #[error("storage error: {0}")]
    Storage(String),
    /// Prekey ids are exhausted (more than 16,777,215 in use).
    #[error("limit exceeded: {0}")]
    LimitExceeded(&'static str),
}

/// The coarse kind of an [`Error`], matching the error kinds of the peer
/// protocol and the status ranges of the C API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed, unauthenticated or unsupported message bytes.
    InvalidMessage,
    /// A message received twice.
    DuplicateMessage,
    /// A changed identity key not yet approved.
    UntrustedIdentity,
    /// A signature that does not verify.
    InvalidSignature,
    /// Key bytes of the wrong length or type, or a low-order key.
    InvalidKey,
    /// No session (or no sending chain) for the address.
    NoSession,
    /// A prekey that is not held.
    MissingPreKey,
    /// A deployed limit was exceeded.
    LimitExceeded,
    /// Saved state or bundle bytes that cannot be read.
    CorruptState,
    /// A bad argument from the caller.
    InvalidArgument,
    /// Fingerprint problems (version mismatch, bad encoding, no trusted identity).
    Fingerprint,
    /// A durable store's problem: wrong key, corrupt record, busy, a
    /// conflicting pending change, an I/O error.
    Storage,
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidKeyLength { .. }
            | Error::InvalidKeyType(_)
            | Error::NonContributoryKey
            | Error::NonCanonicalKey
            | Error::InvalidKemKey(_) => ErrorKind::InvalidKey,
            Error::InvalidSignature(_) => ErrorKind::InvalidSignature,
            Error::InvalidMessage(_)
            | Error::LegacyMessage(_)
            | Error::UnrecognizedMessageVersion(_) => ErrorKind::InvalidMessage,
            Error::DuplicateMessage { .. } => ErrorKind::DuplicateMessage,
            Error::TooFarAhead { .. } | Error::LimitExceeded(_) => ErrorKind::LimitExceeded,
            Error::UntrustedIdentity(_) => ErrorKind::UntrustedIdentity,
            Error::NoSession(_) | Error::NoSendingChain(_) => ErrorKind::NoSession,
            Error::MissingPreKey(_)
            | Error::MissingSignedPreKey(_)
            | Error::MissingKyberPreKey(_) => ErrorKind::MissingPreKey,
            Error::VersionRefused(_) | Error::SpqrRequired(_) => ErrorKind::InvalidMessage,
            Error::InvalidBundle(_)
            | Error::CorruptState(_)
            | Error::UnsupportedStateVersion(_)
            | Error::StateDecryptionFailed => ErrorKind::CorruptState,
            Error::FingerprintVersionMismatch { .. }
            | Error::InvalidFingerprint(_)
            | Error::NoTrustedIdentity(_) => ErrorKind::Fingerprint,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::WrongStoreKey
            | Error::StoreCorrupt(_)
            | Error::StoreBusy
            | Error::StoreConflict
            | Error::Storage(_) => ErrorKind::Storage,
        }
    }
}

/// Shorthand for results of ratchetkit operations.
pub type Result<T> = std::result::Result<T, Error>;

//! Safety numbers (fingerprints), versions 1 and 2: the 60-digit displayable
//! form and the scannable (QR) form.

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::keys::PublicKey;

/// The iteration count used by Signal clients.
pub const DEFAULT_ITERATIONS: u32 = 5200;
/// Number of digits in the displayable safety number.
pub const SAFETY_NUMBER_DIGITS: usize = 60;

#[derive(Clone, PartialEq, prost::Message)]
struct LogicalFingerprintProto {
    #[prost(bytes = "vec", optional, tag = "1")]
    content: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CombinedFingerprintsProto {
    #[prost(uint32, optional, tag = "1")]
    version: Option<u32>,
    #[prost(message, optional, tag = "2")]
    local_fingerprint: Option<LogicalFingerprintProto>,
    #[prost(message, optional, tag = "3")]
    remote_fingerprint: Option<LogicalFingerprintProto>,
}

/// The iterated hash of one side: `SHA-512(0x0000 || key || id || key)` then
/// `iterations - 1` rounds of `SHA-512(h || key)`.
fn side_hash(iterations: u32, stable_id: &[u8], key: &PublicKey) -> [u8; 64] {
    let key = key.serialize();
    let mut h: [u8; 64] = Sha512::new()
        .chain_update([0u8, 0u8])
        .chain_update(key)
        .chain_update(stable_id)
        .chain_update(key)
        .finalize()
        .into();
    for _ in 1..iterations {
        h = Sha512::new()
            .chain_update(h)
            .chain_update(key)
            .finalize()
            .into();
    }
    h
}

fn display_half(hash: &[u8; 64]) -> String {
    let mut s = String::with_capacity(30);
    for chunk in hash[..30].chunks_exact(5) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        s.push_str(&format!("{:05}", v % 100_000));
    }
    s
}

/// A safety number between a local and a remote identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint {
    displayable: String,
    version: u32,
    local: [u8; 32],
    remote: [u8; 32],
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprint")
            .field("displayable", &self.displayable)
            .field("version", &self.version)
            .finish()
    }
}

impl Fingerprint {
    /// Computes the safety number. `version` is 1 or 2 and only affects the
    /// scannable form; `iterations` must be in `2..=1_000_000`.
    pub fn new(
        version: u32,
        iterations: u32,
        local_id: &[u8],
        local_key: &PublicKey,
        remote_id: &[u8],
        remote_key: &PublicKey,
    ) -> Result<Self> {
        if !(1..=2).contains(&version) {
            return Err(Error::InvalidArgument("fingerprint version must be 1 or 2"));
        }
        if !(2..=1_000_000).contains(&iterations) {
            return Err(Error::InvalidArgument("iterations must be in 2..=1000000"));
        }
        let l = side_hash(iterations, local_id, local_key);
        let r = side_hash(iterations, remote_id, remote_key);
        let (dl, dr) = (display_half(&l), display_half(&r));
        let displayable = if dl <= dr { dl + &dr } else { dr + &dl };
        let mut local = [0u8; 32];
        let mut remote = [0u8; 32];
        local.copy_from_slice(&l[..32]);
        remote.copy_from_slice(&r[..32]);
        Ok(Fingerprint {
            displayable,
            version,
            local,
            remote,
        })
    }

    /// The 60-digit safety number (the same on both sides).
    pub fn displayable(&self) -> &str {
        &self.displayable
    }

    /// The scannable form (what the QR code encodes).
    pub fn scannable(&self) -> Vec<u8> {
        let proto = CombinedFingerprintsProto {
            version: Some(self.version),
            local_fingerprint: Some(LogicalFingerprintProto {
                content: Some(self.local.to_vec()),
            }),
            remote_fingerprint: Some(LogicalFingerprintProto {
                content: Some(self.remote.to_vec()),
            }),
        };
        prost::Message::encode_to_vec(&proto)
    }

    /// Compares the other side's scannable form with ours: its local must be
    /// our remote and its remote our local (constant time). A different
    /// version is [`Error::FingerprintVersionMismatch`].
    pub fn compare_scannable(&self, theirs: &[u8]) -> Result<bool> {
        let p: CombinedFingerprintsProto = prost::Message::decode(theirs)
            .map_err(|_| Error::InvalidFingerprint("protobuf does not parse"))?;
        let version = p
            .version
            .ok_or(Error::InvalidFingerprint("version missing"))?;
        if version != self.version {
            return Err(Error::FingerprintVersionMismatch {
                ours: self.version,
                theirs: version,
            });
        }
        let content = |f: Option<LogicalFingerprintProto>| {
            f.and_then(|f| f.content)
                .ok_or(Error::InvalidFingerprint("fingerprint content missing"))
        };
        let their_local = content(p.local_fingerprint)?;
        let their_remote = content(p.remote_fingerprint)?;
        let same = their_local.ct_eq(&self.remote[..]) & their_remote.ct_eq(&self.local[..]);
        Ok(bool::from(same))
    }
}

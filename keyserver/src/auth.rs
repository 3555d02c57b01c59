//! The `Authorization` header of signed requests (keyserver/README.md,
//! "Authentication"): `Ratchetkit name=N,device=D,ts=T,nonce=HEX32,sig=B64`,
//! an XEdDSA signature by the device's identity key over
//! [`ratchetkit::directory::signed_message`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ratchetkit::directory::{signed_message, AuthRequest};
use ratchetkit::PublicKey;

/// A parsed `Authorization` header.
#[derive(Clone, Debug)]
pub struct AuthHeader {
    /// The requesting device's name.
    pub name: String,
    /// The requesting device's id.
    pub device_id: u32,
    /// Seconds since the Unix epoch.
    pub timestamp: u64,
    /// 32 lowercase hex digits.
    pub nonce: String,
    /// The 64-byte signature.
    pub signature: Vec<u8>,
}

/// Why a header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header")]
    Missing,
    /// The header is not of the documented form.
    #[error("malformed Authorization header")]
    Malformed,
    /// The timestamp is outside the accepted window.
    #[error("timestamp outside the accepted window")]
    Stale,
    /// The requesting device is not registered.
    #[error("unknown device")]
    UnknownDevice,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The nonce was used before.
    #[error("nonce already used")]
    Replayed,
}

/// Whether `name` is a valid name: 1 to 64 ASCII letters, digits or
/// `. _ - @ +`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@+".contains(&b))
}

/// Parses a header value.
pub fn parse(value: &str) -> Result<AuthHeader, AuthError> {
    let rest = value
        .strip_prefix("Ratchetkit ")
        .ok_or(AuthError::Malformed)?;
    let (mut name, mut device, mut ts, mut nonce, mut sig) = (None, None, None, None, None);
    for field in rest.split(',') {
        let (k, v) = field.split_once('=').ok_or(AuthError::Malformed)?;
        let slot = match k {
            "name" => &mut name,
            "device" => &mut device,
            "ts" => &mut ts,
            "nonce" => &mut nonce,
            "sig" => &mut sig,
            _ => return Err(AuthError::Malformed),
        };
        if slot.replace(v).is_some() {
            return Err(AuthError::Malformed);
        }
    }
    let name = name.ok_or(AuthError::Malformed)?;
    if !valid_name(name) {
        return Err(AuthError::Malformed);
    }
    let number = |s: Option<&str>| -> Result<u64, AuthError> {
        let s = s.ok_or(AuthError::Malformed)?;
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::Malformed);
        }
        s.parse().map_err(|_| AuthError::Malformed)
    };
    let device_id = u32::try_from(number(device)?).map_err(|_| AuthError::Malformed)?;
    let timestamp = number(ts)?;
    let nonce = nonce.ok_or(AuthError::Malformed)?;
    if nonce.len() != 32
        || !nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(AuthError::Malformed);
    }
    let signature = STANDARD
        .decode(sig.ok_or(AuthError::Malformed)?)
        .map_err(|_| AuthError::Malformed)?;
    if signature.len() != 64 {
        return Err(AuthError::Malformed);
    }
    Ok(AuthHeader {
        name: name.to_owned(),
        device_id,
        timestamp,
        nonce: nonce.to_owned(),
        signature,
    })
}

/// Whether the timestamp is within `window` seconds of `now`.
pub fn fresh(header: &AuthHeader, now: u64, window: u64) -> bool {
    header.timestamp.abs_diff(now) <= window
}

/// Whether `header`'s signature over the request verifies under `key`.
pub fn verify(header: &AuthHeader, method: &str, path: &str, body: &[u8], key: &PublicKey) -> bool {
    let request = AuthRequest {
        name: &header.name,
        device_id: header.device_id,
        method,
        path,
        body,
        timestamp: header.timestamp,
    };
    let message = signed_message(&request, &header.nonce);
    key.verify_signature(message.as_bytes(), &header.signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::OsRng;
    use ratchetkit::directory::sign_request;
    use ratchetkit::IdentityKeyPair;

    #[test]
    fn library_headers_parse_and_verify() {
        let id = IdentityKeyPair::generate(&mut OsRng);
        let req = AuthRequest {
            name: "alice",
            device_id: 3,
            method: "GET",
            path: "/v1/keys/bob",
            body: b"",
            timestamp: 1_700_000_000,
        };
        let value = sign_request(&id, &req, &mut OsRng).unwrap();
        let h = parse(&value).unwrap();
        assert_eq!((h.name.as_str(), h.device_id), ("alice", 3));
        assert!(verify(&h, "GET", "/v1/keys/bob", b"", id.public_key()));
        assert!(!verify(&h, "GET", "/v1/keys/bo", b"", id.public_key()));
        assert!(!verify(&h, "PUT", "/v1/keys/bob", b"", id.public_key()));
        assert!(!verify(&h, "GET", "/v1/keys/bob", b"x", id.public_key()));
        assert!(fresh(&h, 1_700_000_300, 300));
        assert!(!fresh(&h, 1_700_000_301, 300));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "Bearer x",
            "Ratchetkit name=a",
            "Ratchetkit name=a,device=1,ts=1,nonce=00,sig=AA==",
            "Ratchetkit name=a b,device=1,ts=1,nonce=00000000000000000000000000000000,sig=AA==",
            "Ratchetkit name=a,name=b,device=1,ts=1,nonce=00000000000000000000000000000000,sig=AA==",
            "Ratchetkit name=a,device=99999999999,ts=1,nonce=00000000000000000000000000000000,sig=AA==",
        ] {
            assert_eq!(parse(bad).unwrap_err(), AuthError::Malformed, "{bad}");
        }
    }
}

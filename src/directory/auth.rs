//! Request authentication for the reference key server: a device proves
//! possession of its identity key on every request that touches its own
//! data by signing the request (keyserver/README.md, "Authentication").

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::keys::IdentityKeyPair;

/// The first line of every signed request.
pub const AUTH_CONTEXT: &str = "ratchetkit-keyserver-auth-v1";

/// The longest name the header carries.
const MAX_NAME_LEN: usize = 256;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A request to the key server, as its signature covers it.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// The requesting device's name.
    pub name: &'a str,
    /// The requesting device's id.
    pub device_id: u32,
    /// The HTTP method, uppercase.
    pub method: &'a str,
    /// The path, with any query.
    pub path: &'a str,
    /// The body (empty for none).
    pub body: &'a [u8],
    /// Seconds since the Unix epoch (the server refuses stale ones).
    pub timestamp: u64,
}

/// The bytes a request's signature covers: `AUTH_CONTEXT \n name \n
/// device_id \n METHOD \n path \n hex(SHA-256(body)) \n timestamp \n
/// nonce` (decimal numbers, lowercase hex). The requester's name and device
/// id are covered so that a signed request cannot be passed off as another
/// device's (devices may share an identity key). The server rebuilds this
/// from the request and the header to verify the signature.
pub fn signed_message(request: &AuthRequest<'_>, nonce: &str) -> String {
    format!(
        "{AUTH_CONTEXT}\n{}\n{}\n{}\n{}\n{}\n{}\n{nonce}",
        request.name,
        request.device_id,
        request.method,
        request.path,
        hex(&Sha256::digest(request.body)),
        request.timestamp
    )
}

/// The `Authorization` header value for `request`: an XEdDSA signature by
/// `identity` over [`signed_message`], with a fresh random 16-byte nonce (the server
/// refuses every nonce it has seen).
pub fn sign_request<R: RngCore + CryptoRng>(
    identity: &IdentityKeyPair,
    request: &AuthRequest<'_>,
    rng: &mut R,
) -> Result<String> {
    let AuthRequest {
        name,
        device_id,
        method,
        path,
        body: _,
        timestamp,
    } = *request;
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || name
            .chars()
            .any(|c| c == ',' || c == '=' || c.is_whitespace() || c.is_control())
    {
        return Err(Error::InvalidArgument(
            "name must be 1 to 256 characters without ',', '=', spaces or controls",
        ));
    }
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::InvalidArgument(
            "method must be an uppercase HTTP method",
        ));
    }
    if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument(
            "path must start with '/' and hold no spaces or controls",
        ));
    }
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    let nonce = hex(&nonce);
    let message = signed_message(request, &nonce);
    let sig = identity.private_key().sign(message.as_bytes(), rng);
    Ok(format!(
        "Ratchetkit name={name},device={device_id},ts={timestamp},nonce={nonce},sig={}",
        STANDARD.encode(sig)
    ))
}

//! The reference key server's JSON formats (keyserver/README.md): the
//! upload a device sends and the bundles a sender receives. Keys are in
//! Signal's serialization (a type byte, then the key), base64 with the
//! standard alphabet and padding.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::{KeyUpload, UploadedKyberPreKey, UPLOAD_FORMAT_VERSION};
use crate::error::{Error, Result};
use crate::kem::KemPublicKey;
use crate::keys::PublicKey;
use crate::prekey::PreKeyBundle;

/// The largest answer [`parse_bundles`] reads (the bundles of a name's
/// devices are a few KiB each).
pub const MAX_BUNDLES_JSON_LEN: usize = 1 << 20;

/// The most devices one answer may list.
pub const MAX_DEVICES: usize = 64;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedKeyJson {
    id: u32,
    public_key: String,
    signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyJson {
    id: u32,
    public_key: String,
}

#[derive(Serialize)]
struct UploadJson {
    version: u32,
    identity_key: String,
    registration_id: u32,
    signed_prekey: SignedKeyJson,
    last_resort_kyber_prekey: SignedKeyJson,
    prekeys: Vec<KeyJson>,
    kyber_prekeys: Vec<SignedKeyJson>,
}

#[derive(Deserialize)]
struct BundleJson {
    version: u32,
    name: String,
    device_id: u32,
    registration_id: u32,
    identity_key: String,
    signed_prekey: SignedKeyJson,
    prekey: Option<KeyJson>,
    kyber_prekey: SignedKeyJson,
    kyber_last_resort: bool,
}

#[derive(Deserialize)]
struct DevicesJson {
    devices: Vec<BundleJson>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AnswerJson {
    Devices(DevicesJson),
    One(Box<BundleJson>),
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

fn unb64(text: &str, what: &'static str) -> Result<Vec<u8>> {
    STANDARD
        .decode(text)
        .map_err(|_| Error::InvalidBundle(what))
}

fn kyber_json(k: &UploadedKyberPreKey) -> SignedKeyJson {
    SignedKeyJson {
        id: k.id,
        public_key: b64(&k.public_key.serialize()),
        signature: b64(&k.signature),
    }
}

impl KeyUpload {
    /// The upload as the reference server takes it (format version
    /// [`UPLOAD_FORMAT_VERSION`]; the device id travels in the path).
    pub fn to_json(&self) -> String {
        let upload = UploadJson {
            version: UPLOAD_FORMAT_VERSION,
            identity_key: b64(&self.identity_key.serialize()),
            registration_id: self.registration_id,
            signed_prekey: SignedKeyJson {
                id: self.signed_prekey.id,
                public_key: b64(&self.signed_prekey.public_key.serialize()),
                signature: b64(&self.signed_prekey.signature),
            },
            last_resort_kyber_prekey: kyber_json(&self.last_resort_kyber_prekey),
            prekeys: self
                .prekeys
                .iter()
                .map(|(id, k)| KeyJson {
                    id: *id,
                    public_key: b64(&k.serialize()),
                })
                .collect(),
            kyber_prekeys: self.kyber_prekeys.iter().map(kyber_json).collect(),
        };
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(&upload).unwrap_or_default()
    }
}

/// One device's bundle from the key server.
#[derive(Clone, Debug)]
pub struct DirectoryBundle {
    /// The name the bundle was published under.
    pub name: String,
    /// The device id.
    pub device_id: u32,
    /// The bundle (not yet verified: processing it checks both signatures).
    pub bundle: PreKeyBundle,
    /// The server had no one-time Kyber prekey left and served the
    /// last-resort one (and no one-time EC prekey).
    pub kyber_last_resort: bool,
}

fn bundle_from_json(b: BundleJson) -> Result<DirectoryBundle> {
    if b.version != 1 {
        return Err(Error::InvalidBundle("unknown bundle JSON version"));
    }
    let pre_key = match b.prekey {
        Some(k) => Some((
            k.id,
            PublicKey::deserialize(&unb64(&k.public_key, "prekey is not base64")?)?,
        )),
        None => None,
    };
    let bundle = PreKeyBundle::new(
        b.registration_id,
        b.device_id,
        PublicKey::deserialize(&unb64(&b.identity_key, "identity key is not base64")?)?,
        b.signed_prekey.id,
        PublicKey::deserialize(&unb64(
            &b.signed_prekey.public_key,
            "signed prekey is not base64",
        )?)?,
        &unb64(
            &b.signed_prekey.signature,
            "signed prekey signature is not base64",
        )?,
        pre_key,
    )?
    .with_kyber_pre_key(
        b.kyber_prekey.id,
        KemPublicKey::deserialize(&unb64(
            &b.kyber_prekey.public_key,
            "Kyber prekey is not base64",
        )?)?,
        &unb64(
            &b.kyber_prekey.signature,
            "Kyber prekey signature is not base64",
        )?,
    )?;
    Ok(DirectoryBundle {
        name: b.name,
        device_id: b.device_id,
        bundle,
        kyber_last_resort: b.kyber_last_resort,
    })
}

/// Parses the key server's answer to a bundle fetch: one bundle, or
/// `{"devices": [...]}` for all devices of a name. Strict: a malformed
/// field is an [`Error::InvalidBundle`] (or a key error); signatures are
/// checked when a bundle is processed.
pub fn parse_bundles(json: &[u8]) -> Result<Vec<DirectoryBundle>> {
    if json.len() > MAX_BUNDLES_JSON_LEN {
        return Err(Error::InvalidBundle("bundle answer too long"));
    }
    let answer: AnswerJson = serde_json::from_slice(json)
        .map_err(|_| Error::InvalidBundle("not a bundle answer of the key server"))?;
    let list = match answer {
        AnswerJson::One(b) => vec![*b],
        AnswerJson::Devices(d) => d.devices,
    };
    if list.len() > MAX_DEVICES {
        return Err(Error::InvalidBundle("too many devices in one answer"));
    }
    list.into_iter().map(bundle_from_json).collect()
}

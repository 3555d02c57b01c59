//! Prekeys and prekey bundles.
//!
//! # Bundle byte format (versions 1 and 2)
//!
//! A serialized [`PreKeyBundle`] is a format-version byte followed by a
//! protobuf (proto2) message. Version `0x01` is a bundle without a Kyber
//! prekey (it starts a version-3, X3DH session); version `0x02` carries one
//! (fields 9–11, all three required; it starts a version-4, PQXDH
//! session). A reader of version 1 only refuses a version-2 bundle instead
//! of silently starting a session without the Kyber prekey.
//!
//! ```text
//! message PreKeyBundle {
//!   optional uint32 registration_id          = 1;  // 1..=16380
//!   optional uint32 device_id                = 2;  // >= 1
//!   optional bytes  identity_key             = 3;  // 33 bytes, 0x05 || u
//!   optional uint32 signed_pre_key_id        = 4;  // 1..=0xFFFFFF
//!   optional bytes  signed_pre_key           = 5;  // 33 bytes
//!   optional bytes  signed_pre_key_signature = 6;  // 64 bytes, XEdDSA
//!   optional uint32 pre_key_id               = 7;  // 1..=0xFFFFFF, with 8
//!   optional bytes  pre_key                  = 8;  // 33 bytes, with 7
//!   optional uint32 kyber_pre_key_id         = 9;  // 1..=0xFFFFFF (version 2)
//!   optional bytes  kyber_pre_key            = 10; // 1569 bytes, 0x08 || key
//!   optional bytes  kyber_pre_key_signature  = 11; // 64 bytes, XEdDSA over 10
//! }
//! ```
//! Fields 1–6 are required; 7 and 8 come together or not at all; 9–11 come
//! together, in version 2 only. A reader rejects any other format version.

use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::kem::{KemKeyPair, KemPublicKey};
use crate::keys::{KeyPair, PublicKey, SIGNATURE_LEN};

/// The largest prekey or signed prekey id (ids are 24-bit in practice).
pub const MAX_PREKEY_ID: u32 = 0x00FF_FFFF;
/// The format version byte of serialized bundles without a Kyber prekey.
pub const BUNDLE_FORMAT_VERSION: u8 = 1;
/// The format version byte of serialized bundles with a Kyber prekey.
pub const BUNDLE_FORMAT_VERSION_KYBER: u8 = 2;

pub(crate) fn check_prekey_id(id: u32) -> Result<u32> {
    if id == 0 || id > MAX_PREKEY_ID {
        return Err(Error::InvalidArgument("prekey ids must be in 1..=16777215"));
    }
    Ok(id)
}

/// A one-time prekey held by its owner.
#[derive(Clone, Debug)]
pub struct PreKeyRecord {
    /// Its id.
    pub id: u32,
    /// Its key pair.
    pub key_pair: KeyPair,
}

/// A signed prekey held by its owner.
#[derive(Clone, Debug)]
pub struct SignedPreKeyRecord {
    /// Its id.
    pub id: u32,
    /// Its key pair.
    pub key_pair: KeyPair,
    /// XEdDSA signature by the identity key over the 33-byte public key.
    pub signature: [u8; SIGNATURE_LEN],
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// A signed Kyber1024 prekey held by its owner: one-time (deleted after its
/// first successful use) or last resort (kept and reused).
#[derive(Clone, Debug)]
pub struct KyberPreKeyRecord {
    /// Its id (shared id space with neither EC prekeys nor signed prekeys).
    pub id: u32,
    /// Its KEM key pair.
    pub key_pair: KemKeyPair,
    /// XEdDSA signature by the identity key over the serialized public key
    /// (`0x08` included).
    pub signature: [u8; SIGNATURE_LEN],
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Whether it is the last-resort key (kept after use).
    pub last_resort: bool,
}

/// The public part of a signed Kyber prekey, as a bundle carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedKyberPreKey {
    /// Its id.
    pub id: u32,
    /// The KEM public key.
    pub key: KemPublicKey,
    /// XEdDSA signature by the identity key over `key`'s serialized form.
    pub signature: [u8; SIGNATURE_LEN],
}

/// What a server hands out so that others can start a session with a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreKeyBundle {
    /// The owner's registration id.
    pub registration_id: u32,
    /// The owner's device id.
    pub device_id: u32,
    /// The owner's identity key.
    pub identity_key: PublicKey,
    /// The signed prekey's id.
    pub signed_pre_key_id: u32,
    /// The signed prekey.
    pub signed_pre_key: PublicKey,
    /// The signature of the signed prekey by the identity key.
    pub signed_pre_key_signature: [u8; SIGNATURE_LEN],
    /// An optional one-time prekey: id and key.
    pub pre_key: Option<(u32, PublicKey)>,
    /// The signed Kyber prekey: with it, processing the bundle starts a
    /// version-4 (PQXDH) session; without it, a version-3 (X3DH) one.
    pub kyber_pre_key: Option<SignedKyberPreKey>,
}

#[derive(Clone, PartialEq, prost::Message, Zeroize)]
struct BundleProto {
    #[prost(uint32, optional, tag = "1")]
    registration_id: Option<u32>,
    #[prost(uint32, optional, tag = "2")]
    device_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "3")]
    identity_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "4")]
    signed_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "5")]
    signed_pre_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    signed_pre_key_signature: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "7")]
    pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pre_key: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "9")]
    kyber_pre_key_id: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "10")]
    kyber_pre_key: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "11")]
    kyber_pre_key_signature: Option<Vec<u8>>,
}

fn bundle_key(bytes: Option<Vec<u8>>) -> Result<PublicKey> {
    PublicKey::deserialize(&bytes.ok_or(Error::InvalidBundle("a required key is missing"))?)
}

impl PreKeyBundle {
    /// Builds a bundle from its parts, checking ids and ranges (the signature
    /// is checked when the bundle is processed).
    pub fn new(
        registration_id: u32,
        device_id: u32,
        identity_key: PublicKey,
        signed_pre_key_id: u32,
        signed_pre_key: PublicKey,
        signed_pre_key_signature: &[u8],
        pre_key: Option<(u32, PublicKey)>,
    ) -> Result<Self> {
        let signed_pre_key_signature = <[u8; SIGNATURE_LEN]>::try_from(signed_pre_key_signature)
            .map_err(|_| Error::InvalidBundle("signed prekey signature must be 64 bytes"))?;
        let bundle = PreKeyBundle {
            registration_id,
            device_id,
            identity_key,
            signed_pre_key_id,
            signed_pre_key,
            signed_pre_key_signature,
            pre_key,
            kyber_pre_key: None,
        };
        bundle.validate()?;
        Ok(bundle)
    }

    /// Adds a signed Kyber prekey (id, public key, signature): the bundle
    /// then starts version-4 (PQXDH) sessions.
    pub fn with_kyber_pre_key(
        mut self,
        id: u32,
        key: KemPublicKey,
        signature: &[u8],
    ) -> Result<Self> {
        let signature = <[u8; SIGNATURE_LEN]>::try_from(signature)
            .map_err(|_| Error::InvalidBundle("Kyber prekey signature must be 64 bytes"))?;
        self.kyber_pre_key = Some(SignedKyberPreKey { id, key, signature });
        self.validate()?;
        Ok(self)
    }

    /// Checks the ids and ranges of a bundle's fields (not the signature).
    /// The one check for bundles however they were made — [`new`](Self::new),
    /// [`deserialize`](Self::deserialize), or public fields set directly —
    /// which [`ProtocolStore::process_bundle`](crate::ProtocolStore::process_bundle)
    /// runs again, so that no bundle makes session state that a saved store
    /// could not restore.
    pub fn validate(&self) -> Result<()> {
        if self.device_id == 0 {
            return Err(Error::InvalidBundle("device id must be at least 1"));
        }
        check_prekey_id(self.signed_pre_key_id)
            .map_err(|_| Error::InvalidBundle("signed prekey id out of range"))?;
        if let Some((id, _)) = self.pre_key {
            check_prekey_id(id).map_err(|_| Error::InvalidBundle("prekey id out of range"))?;
        }
        if let Some(k) = &self.kyber_pre_key {
            check_prekey_id(k.id)
                .map_err(|_| Error::InvalidBundle("Kyber prekey id out of range"))?;
        }
        Ok(())
    }

    /// Serializes the bundle (format version 1 without a Kyber prekey, 2
    /// with one; see the module docs).
    pub fn serialize(&self) -> Vec<u8> {
        let proto = BundleProto {
            registration_id: Some(self.registration_id),
            device_id: Some(self.device_id),
            identity_key: Some(self.identity_key.serialize().to_vec()),
            signed_pre_key_id: Some(self.signed_pre_key_id),
            signed_pre_key: Some(self.signed_pre_key.serialize().to_vec()),
            signed_pre_key_signature: Some(self.signed_pre_key_signature.to_vec()),
            pre_key_id: self.pre_key.map(|(id, _)| id),
            pre_key: self.pre_key.map(|(_, k)| k.serialize().to_vec()),
            kyber_pre_key_id: self.kyber_pre_key.as_ref().map(|k| k.id),
            kyber_pre_key: self.kyber_pre_key.as_ref().map(|k| k.key.serialize()),
            kyber_pre_key_signature: self.kyber_pre_key.as_ref().map(|k| k.signature.to_vec()),
        };
        let version = match self.kyber_pre_key {
            Some(_) => BUNDLE_FORMAT_VERSION_KYBER,
            None => BUNDLE_FORMAT_VERSION,
        };
        let mut out = vec![version];
        let _ = prost::Message::encode(&proto, &mut out);
        out
    }

    /// Parses a serialized bundle strictly.
    pub fn deserialize(bytes: &[u8]) -> Result<Self> {
        let Some((&version, body)) = bytes.split_first() else {
            return Err(Error::InvalidBundle("empty input"));
        };
        if version != BUNDLE_FORMAT_VERSION && version != BUNDLE_FORMAT_VERSION_KYBER {
            return Err(Error::InvalidBundle("unknown bundle format version"));
        }
        let p: BundleProto = prost::Message::decode(body)
            .map_err(|_| Error::InvalidBundle("protobuf does not parse"))?;
        let pre_key = match (p.pre_key_id, p.pre_key) {
            (Some(id), Some(k)) => Some((id, PublicKey::deserialize(&k)?)),
            (None, None) => None,
            _ => {
                return Err(Error::InvalidBundle(
                    "prekey id and prekey must come together",
                ))
            }
        };
        let kyber =
            match (
                p.kyber_pre_key_id,
                p.kyber_pre_key,
                p.kyber_pre_key_signature,
            ) {
                (None, None, None) if version == BUNDLE_FORMAT_VERSION => None,
                (Some(id), Some(key), Some(sig)) if version == BUNDLE_FORMAT_VERSION_KYBER => {
                    Some((id, KemPublicKey::deserialize(&key)?, sig))
                }
                _ => return Err(Error::InvalidBundle(
                    "Kyber prekey id, key and signature come together, in format version 2 only",
                )),
            };
        let bundle = PreKeyBundle::new(
            p.registration_id
                .ok_or(Error::InvalidBundle("registration id missing"))?,
            p.device_id
                .ok_or(Error::InvalidBundle("device id missing"))?,
            bundle_key(p.identity_key)?,
            p.signed_pre_key_id
                .ok_or(Error::InvalidBundle("signed prekey id missing"))?,
            bundle_key(p.signed_pre_key)?,
            &p.signed_pre_key_signature
                .ok_or(Error::InvalidBundle("signed prekey signature missing"))?,
            pre_key,
        )?;
        match kyber {
            Some((id, key, sig)) => bundle.with_kyber_pre_key(id, key, &sig),
            None => Ok(bundle),
        }
    }

    /// Checks the signatures under the identity key: the signed prekey's,
    /// and the Kyber prekey's when the bundle has one.
    pub fn verify_signature(&self) -> bool {
        let signed = self.identity_key.verify_signature(
            &self.signed_pre_key.serialize(),
            &self.signed_pre_key_signature,
        );
        let kyber = self.kyber_pre_key.as_ref().is_none_or(|k| {
            self.identity_key
                .verify_signature(&k.key.serialize(), &k.signature)
        });
        signed && kyber
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentityKeyPair;
    use rand::rngs::OsRng;

    fn bundle(with_prekey: bool) -> PreKeyBundle {
        let id = IdentityKeyPair::generate(&mut OsRng);
        let spk = KeyPair::generate(&mut OsRng);
        let sig = id
            .private_key()
            .sign(&spk.public_key.serialize(), &mut OsRng);
        PreKeyBundle::new(
            77,
            1,
            *id.public_key(),
            5,
            spk.public_key,
            &sig,
            with_prekey.then(|| (9, KeyPair::generate(&mut OsRng).public_key)),
        )
        .unwrap()
    }

    #[test]
    fn round_trip() {
        for p in [true, false] {
            let b = bundle(p);
            assert!(b.verify_signature());
            let bytes = b.serialize();
            assert_eq!(bytes[0], 1);
            assert_eq!(PreKeyBundle::deserialize(&bytes).unwrap(), b);
        }
    }

    #[test]
    fn strict_parsing() {
        let bytes = bundle(true).serialize();
        for n in 0..bytes.len() {
            // A cut exactly before fields 7/8 is a valid bundle without a
            // one-time prekey; every other cut is an error.
            if let Ok(b) = PreKeyBundle::deserialize(&bytes[..n]) {
                assert_eq!(b.pre_key, None, "prefix {n}");
            }
        }
        let mut v = bytes.clone();
        v[0] = 2;
        assert!(PreKeyBundle::deserialize(&v).is_err());
        assert!(PreKeyBundle::new(
            1,
            0,
            bundle(false).identity_key,
            1,
            bundle(false).identity_key,
            &[0; 64],
            None
        )
        .is_err());
        assert!(PreKeyBundle::new(
            1,
            1,
            bundle(false).identity_key,
            0,
            bundle(false).identity_key,
            &[0; 64],
            None
        )
        .is_err());
        assert!(PreKeyBundle::new(
            1,
            1,
            bundle(false).identity_key,
            1,
            bundle(false).identity_key,
            &[0; 63],
            None
        )
        .is_err());
    }
}

//! X3DH as deployed (message version 3) and PQXDH (version 4: X3DH with a
//! Kyber1024 KEM secret appended): the initiator processes a bundle, the
//! responder processes the first prekey message. Both end with a fresh
//! [`SessionState`].

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::kem::KemSecretKey;
use crate::keys::{IdentityKeyPair, KeyPair, PublicKey};
use crate::prekey::PreKeyBundle;
use crate::ratchet::{hkdf, ChainKey, RootKey};
use crate::session::{PendingPreKey, SessionState};
use crate::spqr::{Direction, SpqrPolicy, SpqrState};
use crate::wire::{KyberPayload, MESSAGE_VERSION, PQXDH_VERSION};

/// The HKDF info of version-3 (X3DH) sessions.
const INFO_V3: &[u8] = b"WhisperText";
/// The HKDF info of version-4 (PQXDH) sessions.
const INFO_V4: &[u8] = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024";

/// `HKDF(no salt, 0xFF×32 || DHs [|| KEM secret], info, 96)` → root key,
/// chain key, and (bytes 64..96) the SPQR auth key. With a KEM secret
/// (version 4) the info is PQXDH's. HKDF output is prefix-stable: the
/// first 64 bytes are those of a 64-byte expansion.
fn derive_initial_keys(
    dh_results: &[&[u8; 32]],
    kem_secret: Option<&[u8; 32]>,
) -> (RootKey, ChainKey, Zeroizing<[u8; 32]>) {
    let mut secret = Zeroizing::new(Vec::with_capacity(32 * (dh_results.len() + 2)));
    secret.extend_from_slice(&[0xFFu8; 32]);
    for dh in dh_results {
        secret.extend_from_slice(&dh[..]);
    }
    let info = match kem_secret {
        Some(ss) => {
            secret.extend_from_slice(ss);
            INFO_V4
        }
        None => INFO_V3,
    };
    let mut okm = Zeroizing::new([0u8; 96]);
    hkdf(None, &secret, info, okm.as_mut());
    let mut rk = [0u8; 32];
    let mut ck = [0u8; 32];
    let mut auth_key = Zeroizing::new([0u8; 32]);
    rk.copy_from_slice(&okm[..32]);
    ck.copy_from_slice(&okm[32..64]);
    auth_key.copy_from_slice(&okm[64..]);
    (RootKey(rk), ChainKey { key: ck, index: 0 }, auth_key)
}

/// The SPQR state of a new session: version 4 under `policy` (a
/// self-session, where both identities are the same, allows unlimited
/// forward jumps), none for version 3.
fn spqr_state(
    version: u8,
    policy: SpqrPolicy,
    auth_key: &[u8; 32],
    direction: Direction,
    our_identity: &PublicKey,
    their_identity: &PublicKey,
) -> SpqrState {
    if version == PQXDH_VERSION {
        SpqrState::new(policy, auth_key, direction, our_identity == their_identity)
    } else {
        SpqrState::default()
    }
}

/// X3DH as the initiator ("Alice") with a verified-by-this-function bundle.
/// A version-4 session speaks SPQR as `spqr_policy` says.
pub(crate) fn initiate<R: RngCore + CryptoRng>(
    our_identity: &IdentityKeyPair,
    our_registration_id: u32,
    bundle: &PreKeyBundle,
    spqr_policy: SpqrPolicy,
    rng: &mut R,
) -> Result<SessionState> {
    if !bundle.verify_signature() {
        return Err(Error::InvalidSignature(
            "signed prekey or Kyber prekey signature does not verify",
        ));
    }
    let base_key = KeyPair::generate(rng);
    let dh1 = our_identity.private_key().agree(&bundle.signed_pre_key)?;
    let dh2 = base_key.private_key.agree(&bundle.identity_key)?;
    let dh3 = base_key.private_key.agree(&bundle.signed_pre_key)?;
    let dh4 = match &bundle.pre_key {
        Some((_, opk)) => Some(base_key.private_key.agree(opk)?),
        None => None,
    };
    let mut dhs: Vec<&[u8; 32]> = vec![&dh1, &dh2, &dh3];
    if let Some(d) = &dh4 {
        dhs.push(d);
    }
    let kem = bundle
        .kyber_pre_key
        .as_ref()
        .map(|k| (k.id, k.key.encapsulate(rng)));
    let (root_key, chain_key, auth_key) =
        derive_initial_keys(&dhs, kem.as_ref().map(|(_, (_, ss))| &**ss));
    let version = if kem.is_some() {
        PQXDH_VERSION
    } else {
        MESSAGE_VERSION
    };

    let sending_ratchet = KeyPair::generate(rng);
    let (root_key2, sending_chain) =
        root_key.create_chain(&bundle.signed_pre_key, &sending_ratchet.private_key)?;

    let mut state = SessionState::new(
        version,
        *our_identity.public_key(),
        bundle.identity_key,
        root_key2,
        sending_ratchet,
        sending_chain,
        our_registration_id,
        bundle.registration_id,
        base_key.public_key,
    );
    state.spqr = spqr_state(
        version,
        spqr_policy,
        &auth_key,
        Direction::A2B,
        our_identity.public_key(),
        &bundle.identity_key,
    );
    state.add_receiver_chain(bundle.signed_pre_key, chain_key);
    state.pending_prekey = Some(PendingPreKey {
        pre_key_id: bundle.pre_key.map(|(id, _)| id),
        signed_pre_key_id: bundle.signed_pre_key_id,
        base_key: base_key.public_key,
        kyber: kem.map(|(pre_key_id, (ciphertext, _))| KyberPayload {
            pre_key_id,
            ciphertext,
        }),
    });
    Ok(state)
}

/// X3DH as the responder ("Bob") for a prekey message from `their_identity`
/// with base key `their_base_key`; PQXDH (version 4) when `kyber` gives the
/// Kyber prekey's secret key and the message's KEM ciphertext. A version-4
/// session speaks SPQR as `spqr_policy` says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn respond(
    our_identity: &IdentityKeyPair,
    our_registration_id: u32,
    signed_pre_key: &KeyPair,
    one_time_pre_key: Option<&KeyPair>,
    kyber: Option<(&KemSecretKey, &[u8])>,
    their_identity: &PublicKey,
    their_base_key: &PublicKey,
    their_registration_id: u32,
    spqr_policy: SpqrPolicy,
) -> Result<SessionState> {
    let dh1 = signed_pre_key.private_key.agree(their_identity)?;
    let dh2 = our_identity.private_key().agree(their_base_key)?;
    let dh3 = signed_pre_key.private_key.agree(their_base_key)?;
    let dh4 = match one_time_pre_key {
        Some(opk) => Some(opk.private_key.agree(their_base_key)?),
        None => None,
    };
    let mut dhs: Vec<&[u8; 32]> = vec![&dh1, &dh2, &dh3];
    if let Some(d) = &dh4 {
        dhs.push(d);
    }
    let kem_secret = match kyber {
        Some((secret_key, ciphertext)) => Some(secret_key.decapsulate(ciphertext)?),
        None => None,
    };
    let (root_key, chain_key, auth_key) = derive_initial_keys(&dhs, kem_secret.as_deref());
    let version = if kem_secret.is_some() {
        PQXDH_VERSION
    } else {
        MESSAGE_VERSION
    };
    let mut state = SessionState::new(
        version,
        *our_identity.public_key(),
        *their_identity,
        root_key,
        signed_pre_key.clone(),
        chain_key,
        our_registration_id,
        their_registration_id,
        *their_base_key,
    );
    state.spqr = spqr_state(
        version,
        spqr_policy,
        &auth_key,
        Direction::B2A,
        our_identity.public_key(),
        their_identity,
    );
    Ok(state)
}

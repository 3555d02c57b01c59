//! X3DH as deployed (message version 3, no Kyber): the initiator processes a
//! bundle, the responder processes the first prekey message. Both end with a
//! fresh [`SessionState`].

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keys::{IdentityKeyPair, KeyPair, PublicKey};
use crate::prekey::PreKeyBundle;
use crate::ratchet::{hkdf, ChainKey, RootKey};
use crate::session::{PendingPreKey, SessionState};

/// `HKDF(no salt, 0xFF×32 || DHs, "WhisperText", 64)` → root key, chain key.
fn derive_initial_keys(dh_results: &[&[u8; 32]]) -> (RootKey, ChainKey) {
    let mut secret = Zeroizing::new(Vec::with_capacity(32 * (dh_results.len() + 1)));
    secret.extend_from_slice(&[0xFFu8; 32]);
    for dh in dh_results {
        secret.extend_from_slice(&dh[..]);
    }
    let mut okm = Zeroizing::new([0u8; 64]);
    hkdf(None, &secret, b"WhisperText", okm.as_mut());
    let mut rk = [0u8; 32];
    let mut ck = [0u8; 32];
    rk.copy_from_slice(&okm[..32]);
    ck.copy_from_slice(&okm[32..]);
    (RootKey(rk), ChainKey { key: ck, index: 0 })
}

/// X3DH as the initiator ("Alice") with a verified-by-this-function bundle.
pub(crate) fn initiate<R: RngCore + CryptoRng>(
    our_identity: &IdentityKeyPair,
    our_registration_id: u32,
    bundle: &PreKeyBundle,
    rng: &mut R,
) -> Result<SessionState> {
    if !bundle.verify_signature() {
        return Err(Error::InvalidSignature(
            "signed prekey signature does not verify",
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
    let (root_key, chain_key) = derive_initial_keys(&dhs);

    let sending_ratchet = KeyPair::generate(rng);
    let (root_key2, sending_chain) =
        root_key.create_chain(&bundle.signed_pre_key, &sending_ratchet.private_key)?;

    let mut state = SessionState::new(
        *our_identity.public_key(),
        bundle.identity_key,
        root_key2,
        sending_ratchet,
        sending_chain,
        our_registration_id,
        bundle.registration_id,
        base_key.public_key,
    );
    state.add_receiver_chain(bundle.signed_pre_key, chain_key);
    state.pending_prekey = Some(PendingPreKey {
        pre_key_id: bundle.pre_key.map(|(id, _)| id),
        signed_pre_key_id: bundle.signed_pre_key_id,
        base_key: base_key.public_key,
    });
    Ok(state)
}

/// X3DH as the responder ("Bob") for a prekey message from `their_identity`
/// with base key `their_base_key`.
pub(crate) fn respond(
    our_identity: &IdentityKeyPair,
    our_registration_id: u32,
    signed_pre_key: &KeyPair,
    one_time_pre_key: Option<&KeyPair>,
    their_identity: &PublicKey,
    their_base_key: &PublicKey,
    their_registration_id: u32,
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
    let (root_key, chain_key) = derive_initial_keys(&dhs);
    Ok(SessionState::new(
        *our_identity.public_key(),
        *their_identity,
        root_key,
        signed_pre_key.clone(),
        chain_key,
        our_registration_id,
        their_registration_id,
        *their_base_key,
    ))
}

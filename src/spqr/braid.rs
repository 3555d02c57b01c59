//! The KEM braid (SPQR.md §5, §7): the eleven-state machine that agrees one
//! epoch secret per epoch, the roles swapping every epoch.

use super::erasure::{Decoder, Encoder};
use super::kdf::{epoch_secret, mac_eq, Authenticator, Secret32};
use super::kem::{self, DecapsulationKey, CT1_LEN, CT2_LEN, EK_VECTOR_LEN, HDR_LEN};
use super::wire::Payload;
use super::{SpqrError, SpqrRandom};

/// `hdr ‖ hdr_mac`.
pub(crate) const HDR_PAYLOAD_LEN: usize = HDR_LEN + 32;
/// `ct2 ‖ ct_mac`.
pub(crate) const CT2_PAYLOAD_LEN: usize = CT2_LEN + 32;

/// The braid states (SPQR.md §7.1), with their data.
#[derive(Clone)]
pub(crate) enum BraidState {
    /// ek side, no keypair yet.
    EIdle,
    /// ek side, sending the header.
    ESendHdr {
        dk: DecapsulationKey,
        enc_hdr: Encoder,
    },
    /// ek side, sending ek, receiving ct1.
    ESendEk {
        dk: DecapsulationKey,
        enc_ek: Encoder,
        dec_ct1: Decoder,
    },
    /// ek side, has ct1, still sending ek (as `EK_ACK`).
    ESendEkCt1Done {
        dk: DecapsulationKey,
        ct1: Vec<u8>,
        enc_ek: Encoder,
    },
    /// ek side, receiving ct2.
    EWaitCt2 {
        dk: DecapsulationKey,
        ct1: Vec<u8>,
        dec_ct2: Decoder,
    },
    /// ct side, receiving the header.
    CWaitHdr { dec_hdr: Decoder },
    /// ct side, has the header; the next send encapsulates.
    CHdrReady { hdr: [u8; HDR_LEN] },
    /// ct side, sending ct1, receiving ek.
    CSendCt1 {
        hdr: [u8; HDR_LEN],
        m: Secret32,
        enc_ct1: Encoder,
        dec_ek: Decoder,
    },
    /// ct side, has ek, still sending ct1.
    CSendCt1EkDone {
        hdr: [u8; HDR_LEN],
        m: Secret32,
        ek_vector: Vec<u8>,
        enc_ct1: Encoder,
    },
    /// ct side, ct1 acknowledged, receiving ek.
    CWaitEk {
        hdr: [u8; HDR_LEN],
        m: Secret32,
        ct1: Vec<u8>,
        dec_ek: Decoder,
    },
    /// ct side, sending ct2.
    CSendCt2 { enc_ct2: Encoder },
}

impl BraidState {
    /// The state's name in SPQR.md.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            BraidState::EIdle => "E_IDLE",
            BraidState::ESendHdr { .. } => "E_SEND_HDR",
            BraidState::ESendEk { .. } => "E_SEND_EK",
            BraidState::ESendEkCt1Done { .. } => "E_SEND_EK_CT1_DONE",
            BraidState::EWaitCt2 { .. } => "E_WAIT_CT2",
            BraidState::CWaitHdr { .. } => "C_WAIT_HDR",
            BraidState::CHdrReady { .. } => "C_HDR_READY",
            BraidState::CSendCt1 { .. } => "C_SEND_CT1",
            BraidState::CSendCt1EkDone { .. } => "C_SEND_CT1_EK_DONE",
            BraidState::CWaitEk { .. } => "C_WAIT_EK",
            BraidState::CSendCt2 { .. } => "C_SEND_CT2",
        }
    }
}

/// A new epoch secret `(e, S_e)`.
pub(crate) type NewSecret = (u64, Secret32);

/// The braid: epoch, authenticator, state.
#[derive(Clone)]
pub(crate) struct Braid {
    pub(crate) epoch: u64,
    pub(crate) auth: Authenticator,
    pub(crate) state: BraidState,
}

fn ct2_encoder(
    auth: &Authenticator,
    epoch: u64,
    hdr: &[u8; HDR_LEN],
    m: &[u8; 32],
    ek_vector: &[u8],
    ct1: &[u8],
) -> Result<BraidState, SpqrError> {
    let ct2 = kem::encaps2(hdr, m, ek_vector)?;
    let mac = auth.ct_mac(epoch, ct1, &ct2);
    let mut payload = Vec::with_capacity(CT2_PAYLOAD_LEN);
    payload.extend_from_slice(&ct2);
    payload.extend_from_slice(&mac);
    Ok(BraidState::CSendCt2 {
        enc_ct2: Encoder::new(payload),
    })
}

impl Braid {
    /// The initiator's braid: ek side, epoch 1.
    pub(crate) fn initiator(auth_key: &[u8; 32]) -> Self {
        Braid {
            epoch: 1,
            auth: Authenticator::new(auth_key),
            state: BraidState::EIdle,
        }
    }

    /// The responder's braid: ct side, epoch 1.
    pub(crate) fn responder(auth_key: &[u8; 32]) -> Self {
        Braid {
            epoch: 1,
            auth: Authenticator::new(auth_key),
            state: BraidState::CWaitHdr {
                dec_hdr: Decoder::new(HDR_PAYLOAD_LEN),
            },
        }
    }

    /// `braid.send()` (SPQR.md §7.2): the payload of the next message, and
    /// the new epoch secret when this send completes one.
    pub(crate) fn send(
        &mut self,
        rng: &mut dyn SpqrRandom,
    ) -> Result<(Payload, Option<NewSecret>), SpqrError> {
        let e = self.epoch;
        let (payload, next, secret) = match &mut self.state {
            BraidState::EIdle => {
                let dk = rng.decapsulation_key();
                let hdr = dk.hdr();
                let mac = self.auth.hdr_mac(e, &hdr);
                let mut payload = Vec::with_capacity(HDR_PAYLOAD_LEN);
                payload.extend_from_slice(&hdr);
                payload.extend_from_slice(&mac);
                let mut enc_hdr = Encoder::new(payload);
                let chunk = enc_hdr.next_chunk();
                (
                    Payload::Hdr(chunk),
                    Some(BraidState::ESendHdr { dk, enc_hdr }),
                    None,
                )
            }
            BraidState::ESendHdr { enc_hdr, .. } => {
                (Payload::Hdr(enc_hdr.next_chunk()), None, None)
            }
            BraidState::ESendEk { enc_ek, .. } => (Payload::Ek(enc_ek.next_chunk()), None, None),
            BraidState::ESendEkCt1Done { enc_ek, .. } => {
                (Payload::EkCt1Ack(enc_ek.next_chunk()), None, None)
            }
            BraidState::EWaitCt2 { .. } => (Payload::Ct1Ack, None, None),
            BraidState::CWaitHdr { .. } | BraidState::CWaitEk { .. } => (Payload::None, None, None),
            BraidState::CHdrReady { hdr } => {
                let m = rng.encapsulation_randomness();
                let (ct1, key) = kem::encaps1(hdr, &m)?;
                let secret = epoch_secret(&key, e);
                self.auth.update(e, &secret);
                let mut enc_ct1 = Encoder::new(ct1.to_vec());
                let chunk = enc_ct1.next_chunk();
                (
                    Payload::Ct1(chunk),
                    Some(BraidState::CSendCt1 {
                        hdr: *hdr,
                        m,
                        enc_ct1,
                        dec_ek: Decoder::new(EK_VECTOR_LEN),
                    }),
                    Some((e, secret)),
                )
            }
            BraidState::CSendCt1 { enc_ct1, .. } | BraidState::CSendCt1EkDone { enc_ct1, .. } => {
                (Payload::Ct1(enc_ct1.next_chunk()), None, None)
            }
            BraidState::CSendCt2 { enc_ct2 } => (Payload::Ct2(enc_ct2.next_chunk()), None, None),
        };
        if let Some(next) = next {
            self.state = next;
        }
        Ok((payload, secret))
    }

    /// `braid.recv(msg_epoch, payload)` (SPQR.md §7.3). On error the braid
    /// may be half-changed: callers work on a copy.
    pub(crate) fn recv(
        &mut self,
        msg_epoch: u64,
        payload: &Payload,
    ) -> Result<Option<NewSecret>, SpqrError> {
        let e = self.epoch;
        if msg_epoch > e {
            if matches!(self.state, BraidState::CSendCt2 { .. })
                && Some(msg_epoch) == e.checked_add(1)
            {
                self.epoch = msg_epoch;
                self.state = BraidState::EIdle;
                return Ok(None);
            }
            return Err(SpqrError::EpochOutOfRange(msg_epoch));
        }
        if msg_epoch < e {
            return Ok(None);
        }
        let mut secret = None;
        let next = match (&mut self.state, payload) {
            (BraidState::ESendHdr { dk, .. }, Payload::Ct1(c)) => {
                let mut dec_ct1 = Decoder::new(CT1_LEN);
                dec_ct1.add(*c);
                Some(BraidState::ESendEk {
                    dk: dk.clone(),
                    enc_ek: Encoder::new(dk.ek_vector()),
                    dec_ct1,
                })
            }
            (
                BraidState::ESendEk {
                    dk,
                    enc_ek,
                    dec_ct1,
                },
                Payload::Ct1(c),
            ) => {
                dec_ct1.add(*c);
                dec_ct1.decode().map(|ct1| BraidState::ESendEkCt1Done {
                    dk: dk.clone(),
                    ct1,
                    enc_ek: enc_ek.clone(),
                })
            }
            (BraidState::ESendEkCt1Done { dk, ct1, .. }, Payload::Ct2(c)) => {
                let mut dec_ct2 = Decoder::new(CT2_PAYLOAD_LEN);
                dec_ct2.add(*c);
                Some(BraidState::EWaitCt2 {
                    dk: dk.clone(),
                    ct1: std::mem::take(ct1),
                    dec_ct2,
                })
            }
            (BraidState::EWaitCt2 { dk, ct1, dec_ct2 }, Payload::Ct2(c)) => {
                dec_ct2.add(*c);
                match dec_ct2.decode() {
                    Some(data) => {
                        let ct1_arr = <&[u8; CT1_LEN]>::try_from(ct1.as_slice())
                            .map_err(|_| SpqrError::StateDecode)?;
                        let (ct2, mac) = data.split_at(CT2_LEN);
                        let ct2 =
                            <&[u8; CT2_LEN]>::try_from(ct2).map_err(|_| SpqrError::StateDecode)?;
                        let key = dk.decapsulate(ct1_arr, ct2);
                        let s = epoch_secret(&key, e);
                        self.auth.update(e, &s);
                        if !mac_eq(&self.auth.ct_mac(e, ct1, ct2), mac) {
                            return Err(SpqrError::MacVerification);
                        }
                        secret = Some((e, s));
                        self.epoch = e + 1;
                        Some(BraidState::CWaitHdr {
                            dec_hdr: Decoder::new(HDR_PAYLOAD_LEN),
                        })
                    }
                    None => None,
                }
            }
            (BraidState::CWaitHdr { dec_hdr }, Payload::Hdr(c)) => {
                dec_hdr.add(*c);
                match dec_hdr.decode() {
                    Some(data) => {
                        let (hdr, mac) = data.split_at(HDR_LEN);
                        if !mac_eq(&self.auth.hdr_mac(e, hdr), mac) {
                            return Err(SpqrError::MacVerification);
                        }
                        let hdr =
                            <[u8; HDR_LEN]>::try_from(hdr).map_err(|_| SpqrError::StateDecode)?;
                        Some(BraidState::CHdrReady { hdr })
                    }
                    None => None,
                }
            }
            (
                BraidState::CSendCt1 {
                    hdr,
                    m,
                    enc_ct1,
                    dec_ek,
                },
                Payload::Ek(c) | Payload::EkCt1Ack(c),
            ) => {
                let ack = matches!(payload, Payload::EkCt1Ack(_));
                dec_ek.add(*c);
                match dec_ek.decode() {
                    Some(ek_vector) => {
                        if !kem::validate(hdr, &ek_vector) {
                            return Err(SpqrError::ErroneousData);
                        }
                        if ack {
                            Some(ct2_encoder(
                                &self.auth,
                                e,
                                hdr,
                                m,
                                &ek_vector,
                                enc_ct1.payload(),
                            )?)
                        } else {
                            Some(BraidState::CSendCt1EkDone {
                                hdr: *hdr,
                                m: m.clone(),
                                ek_vector,
                                enc_ct1: enc_ct1.clone(),
                            })
                        }
                    }
                    None if ack => Some(BraidState::CWaitEk {
                        hdr: *hdr,
                        m: m.clone(),
                        ct1: enc_ct1.payload().to_vec(),
                        dec_ek: dec_ek.clone(),
                    }),
                    None => None,
                }
            }
            (
                BraidState::CSendCt1EkDone {
                    hdr,
                    m,
                    ek_vector,
                    enc_ct1,
                },
                Payload::Ct1Ack | Payload::EkCt1Ack(_),
            ) => Some(ct2_encoder(
                &self.auth,
                e,
                hdr,
                m,
                ek_vector,
                enc_ct1.payload(),
            )?),
            (
                BraidState::CWaitEk {
                    hdr,
                    m,
                    ct1,
                    dec_ek,
                },
                Payload::Ek(c) | Payload::EkCt1Ack(c),
            ) => {
                dec_ek.add(*c);
                match dec_ek.decode() {
                    Some(ek_vector) => {
                        if !kem::validate(hdr, &ek_vector) {
                            return Err(SpqrError::ErroneousData);
                        }
                        Some(ct2_encoder(&self.auth, e, hdr, m, &ek_vector, ct1)?)
                    }
                    None => None,
                }
            }
            _ => None,
        };
        if let Some(next) = next {
            self.state = next;
        }
        Ok(secret)
    }
}

//! # ratchetkit
//!
//! Signal-protocol sessions — PQXDH (message version 4, the default), X3DH
//! (version 3, off unless the store's [`SessionPolicy`](store::SessionPolicy)
//! allows it) and the Double Ratchet — producing and accepting exactly the
//! bytes of the official Signal library.
//!
//! The application holds a [`ProtocolStore`] per local device. A store makes
//! prekey bundles for others (with a signed Kyber1024 prekey), processes
//! their bundles (PQXDH as initiator), encrypts, decrypts prekey and whisper
//! messages (PQXDH as responder and the Double Ratchet), keeps trusted
//! identities, computes safety numbers, and saves to and restores from
//! bytes.
//!
//! ```
//! use ratchetkit::{Address, ProtocolStore};
//! let mut rng = rand::rngs::OsRng;
//! let mut alice = ProtocolStore::generate(1, &mut rng)?;
//! let mut bob = ProtocolStore::generate(1, &mut rng)?;
//!
//! // Bob publishes a bundle; Alice starts a session with it (PQXDH).
//! let bundle = bob.create_bundle(true, 0, &mut rng)?;
//! let bob_addr = Address::new("bob", 1);
//! alice.process_bundle(&bob_addr, &bundle, &mut rng)?;
//!
//! // Alice's first messages are prekey messages.
//! let msg = alice.encrypt(&bob_addr, b"hello bob")?;
//! let alice_addr = Address::new("alice", 1);
//! let pt = bob.decrypt(&alice_addr, msg.message_type(), msg.serialize(), &mut rng)?;
//! assert_eq!(pt, b"hello bob");
//! assert_eq!(bob.session(&alice_addr).unwrap().current().unwrap().version(), 4);
//!
//! // Bob answers with a whisper message.
//! let reply = bob.encrypt(&alice_addr, b"hi alice")?;
//! let pt = alice.decrypt(&bob_addr, reply.message_type(), reply.serialize(), &mut rng)?;
//! assert_eq!(pt, b"hi alice");
//!
//! // Both see the same 60-digit safety number.
//! let a = alice.safety_number("bob", b"alice", b"bob", 5200, 2)?;
//! let b = bob.safety_number("alice", b"bob", b"alice", 5200, 2)?;
//! assert_eq!(a.displayable(), b.displayable());
//! assert!(b.compare_scannable(&a.scannable())?);
//!
//! // The whole store saves to bytes and restores from them.
//! let saved = alice.save();
//! let alice = ProtocolStore::restore(&saved)?;
//! assert!(alice.has_session(&bob_addr));
//! # Ok::<(), ratchetkit::Error>(())
//! ```

#![deny(unsafe_code)]

pub mod directory;
pub mod error;
pub mod ffi;
pub mod fingerprint;
pub mod kem;
pub mod keys;
mod persist;
mod persist_scan;
pub mod pickle;
pub mod prekey;
pub mod qr;
pub mod ratchet;
mod scrub;
pub mod session;
pub mod spqr;
pub mod store;
pub mod wire;
mod x3dh;

pub use error::{Error, ErrorKind, Result};
pub use fingerprint::Fingerprint;
pub use keys::{IdentityKeyPair, KeyPair, PrivateKey, PublicKey};
pub use prekey::PreKeyBundle;
pub use session::{SessionRecord, SessionState, MAX_ARCHIVED_STATES};
pub use store::durable::{Durability, DurableOptions, DurableStore, PendingDecrypt};
pub use store::{Address, ProtocolStore};
pub use wire::{CiphertextMessage, PreKeySignalMessage, SignalMessage};

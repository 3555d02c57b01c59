//! `ratchetkit-peer`: ratchetkit behind the JSON-lines peer protocol
//! (shared/interop/PEER_PROTOCOL.md, version 2), for interop tests.
//!
//! Sessions: a bundle with Kyber fields starts a version-4 (PQXDH) session,
//! one without a version-3 (X3DH) session, as the protocol says (so this
//! program allows starting version-3 sessions); whether an incoming
//! version-3 prekey message may start a session is `init`'s `accept_v3`,
//! by default the library's: no. `init`'s `spqr` sets the store's SPQR
//! policy ("required", the default, "offered" or "off"); a peer refused
//! for not speaking SPQR fails with `invalid_message` whose text starts
//! "SPQR required".
//!
//! Durable mode: `init` with `path` and `key` creates a
//! [`DurableStore`] (SQLite) at `path`, which must not exist yet; `open`
//! makes this peer the user kept in an existing one, as an application
//! starting again (possibly after being killed). Every operation then
//! commits before its answer is written. `save` closes the database and
//! opens it again. What is not in the store: the device id of each name's
//! last processed bundle (this process's memory; after `open`, device 1
//! until a bundle is processed again). `bundle` with `new_signed_prekey`
//! is two transactions (rotate, then the bundle): if the second fails, the
//! new signed prekey stays.
//!
//! Reads one JSON request per line on stdin and answers each with one JSON
//! line on stdout. Diagnostics go to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ratchetkit::fingerprint::DEFAULT_ITERATIONS;
use ratchetkit::kem::KemPublicKey;
use ratchetkit::spqr::SpqrPolicy;
use ratchetkit::store::{BundleRequest, KyberPreKeyKind, SessionPolicy};
use ratchetkit::{
    Address, CiphertextMessage, DurableOptions, DurableStore, Error, ErrorKind, Fingerprint,
    PreKeyBundle, ProtocolStore, PublicKey,
};
use serde_json::{json, Map, Value};

type Reply = Result<Value, (&'static str, String)>;

/// Where this peer's user is kept.
enum Store {
    /// In memory (`init` without `path`).
    Memory(Box<ProtocolStore>),
    /// In a durable store; the path and key are kept to open it again
    /// (`save`).
    Durable {
        store: DurableStore,
        path: PathBuf,
        key: Vec<u8>,
    },
}

/// A message type on the wire: 3 prekey, 2 whisper.
const PREKEY_TYPE: u8 = 3;
const WHISPER_TYPE: u8 = 2;

impl Store {
    fn identity_key(&self) -> PublicKey {
        match self {
            Store::Memory(s) => *s.identity_key(),
            Store::Durable { store, .. } => *store.identity_key(),
        }
    }

    fn registration_id(&self) -> u32 {
        match self {
            Store::Memory(s) => s.registration_id(),
            Store::Durable { store, .. } => store.registration_id(),
        }
    }

    fn bundle(&mut self, new_signed: bool, request: BundleRequest) -> Result<PreKeyBundle, Error> {
        let rng = &mut rand::rngs::OsRng;
        match self {
            Store::Memory(store) => {
                // All or nothing: rotate on a copy only if the bundle follows.
                let mut next = (**store).clone();
                if new_signed {
                    next.generate_signed_prekey(request.timestamp, rng)?;
                }
                let b = next.create_bundle_with(request, rng)?;
                **store = next;
                Ok(b)
            }
            Store::Durable { store, .. } => {
                if new_signed {
                    store.generate_signed_prekey(request.timestamp, rng)?;
                }
                store.create_bundle_with(request, rng)
            }
        }
    }

    fn process_bundle(&mut self, address: &Address, bundle: &PreKeyBundle) -> Result<(), Error> {
        let rng = &mut rand::rngs::OsRng;
        match self {
            Store::Memory(s) => s.process_bundle(address, bundle, rng),
            Store::Durable { store, .. } => store.process_bundle(address, bundle, rng),
        }
    }

    fn encrypt(&mut self, address: &Address, plaintext: &[u8]) -> Result<CiphertextMessage, Error> {
        match self {
            Store::Memory(s) => s.encrypt(address, plaintext),
            Store::Durable { store, .. } => store.encrypt(address, plaintext),
        }
    }

    fn decrypt(
        &mut self,
        address: &Address,
        message_type: u8,
        body: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let rng = &mut rand::rngs::OsRng;
        match self {
            Store::Memory(s) => s.decrypt(address, message_type, body, rng),
            Store::Durable { store, .. } => store.decrypt(address, message_type, body, rng),
        }
    }

    fn safety_number(
        &self,
        name: &str,
        local_id: &[u8],
        remote_id: &[u8],
        iterations: u32,
        version: u32,
    ) -> Result<Fingerprint, Error> {
        match self {
            Store::Memory(s) => s.safety_number(name, local_id, remote_id, iterations, version),
            Store::Durable { store, .. } => {
                store.safety_number(name, local_id, remote_id, iterations, version)
            }
        }
    }

    fn approve_identity(&mut self, name: &str, key: PublicKey) -> Result<(), Error> {
        match self {
            Store::Memory(s) => {
                s.approve_identity(name, key);
            }
            Store::Durable { store, .. } => {
                store.approve_identity(name, key)?;
            }
        }
        Ok(())
    }

    fn has_session(&self, address: &Address) -> Result<bool, Error> {
        match self {
            Store::Memory(s) => Ok(s.has_session(address)),
            Store::Durable { store, .. } => store.has_session(address),
        }
    }

    /// Rebuilds from what is saved alone: the saved bytes, or the database.
    fn reload(&self) -> Result<Store, Error> {
        match self {
            Store::Memory(s) => Ok(Store::Memory(Box::new(ProtocolStore::restore(&s.save())?))),
            Store::Durable { path, key, .. } => Ok(Store::Durable {
                store: open_existing(path, key)?,
                path: path.clone(),
                key: key.clone(),
            }),
        }
    }
}

/// Opens the durable store at `path`, which must hold one.
fn open_existing(path: &Path, key: &[u8]) -> Result<DurableStore, Error> {
    let options = DurableOptions {
        create_device_id: None,
        ..DurableOptions::default()
    };
    DurableStore::open(path, key, &options)
}

struct Peer {
    store: Option<Store>,
    /// Device id of each name's last processed bundle.
    device_ids: BTreeMap<String, u32>,
}

fn kind(e: &Error) -> &'static str {
    match e.kind() {
        ErrorKind::InvalidMessage => "invalid_message",
        ErrorKind::DuplicateMessage => "duplicate_message",
        ErrorKind::UntrustedIdentity => "untrusted_identity",
        ErrorKind::InvalidSignature => "invalid_signature",
        ErrorKind::InvalidKey => "invalid_key",
        ErrorKind::NoSession => "no_session",
        ErrorKind::MissingPreKey => "missing_prekey",
        // Too far ahead is how libsignal reports it: an invalid message.
        ErrorKind::LimitExceeded => match e {
            Error::TooFarAhead { .. } => "invalid_message",
            _ => "other",
        },
        ErrorKind::Fingerprint => match e {
            Error::InvalidFingerprint(_) => "invalid_message",
            _ => "other",
        },
        _ => "other",
    }
}

fn lib(e: Error) -> (&'static str, String) {
    (kind(&e), e.to_string())
}

fn bad(msg: impl Into<String>) -> (&'static str, String) {
    ("other", msg.into())
}

fn str_arg<'a>(req: &'a Map<String, Value>, key: &str) -> Result<&'a str, (&'static str, String)> {
    req.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("missing string field {key:?}")))
}

fn hex_arg(req: &Map<String, Value>, key: &str) -> Result<Vec<u8>, (&'static str, String)> {
    hex::decode(str_arg(req, key)?).map_err(|_| bad(format!("field {key:?} is not hex")))
}

fn u32_arg(
    req: &Map<String, Value>,
    key: &str,
    default: Option<u32>,
) -> Result<u32, (&'static str, String)> {
    match req.get(key) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| bad(format!("missing integer field {key:?}")))
        }
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("field {key:?} is not a u32"))),
    }
}

fn bool_arg(
    req: &Map<String, Value>,
    key: &str,
    default: bool,
) -> Result<bool, (&'static str, String)> {
    match req.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad(format!("field {key:?} is not a bool"))),
    }
}

fn key_arg(req: &Map<String, Value>, key: &str) -> Result<PublicKey, (&'static str, String)> {
    PublicKey::deserialize(&hex_arg(req, key)?).map_err(lib)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Peer {
    fn store(&mut self) -> Result<&mut Store, (&'static str, String)> {
        self.store
            .as_mut()
            .ok_or_else(|| bad("init must come first"))
    }

    fn address(&self, name: &str) -> Address {
        Address::new(name, self.device_ids.get(name).copied().unwrap_or(1))
    }

    fn handle(&mut self, op: &str, req: &Map<String, Value>) -> Reply {
        let rng = &mut rand::rngs::OsRng;
        match op {
            "hello" => Ok(json!({
                "implementation": format!("ratchetkit {}", env!("CARGO_PKG_VERSION")),
                "protocol": 2,
                "versions": [3, 4],
            })),
            "init" => {
                let device_id = u32_arg(req, "device_id", Some(1))?;
                str_arg(req, "name")?;
                let spqr = match req.get("spqr") {
                    None | Some(Value::Null) => SpqrPolicy::default(),
                    Some(v) => match v.as_str() {
                        Some("required") => SpqrPolicy::Required,
                        Some("offered") => SpqrPolicy::Offered,
                        Some("off") => SpqrPolicy::Off,
                        _ => return Err(bad(format!("spqr {v}: not required, offered or off"))),
                    },
                };
                let accept_v3 = bool_arg(req, "accept_v3", false)?;
                let policy = SessionPolicy {
                    allow_v3_initiation: true,
                    accept_v3_prekey_messages: accept_v3,
                };
                let store = if req.contains_key("path") || req.contains_key("key") {
                    let path = PathBuf::from(str_arg(req, "path")?);
                    let key = hex_arg(req, "key")?;
                    if path.exists() {
                        return Err(bad(format!(
                            "{} exists: init creates a new store (open opens one)",
                            path.display()
                        )));
                    }
                    let options = DurableOptions {
                        create_device_id: Some(device_id),
                        ..DurableOptions::default()
                    };
                    let store = DurableStore::open(&path, &key, &options).map_err(lib)?;
                    store.set_policy(policy).map_err(lib)?;
                    store.set_spqr_policy(spqr).map_err(lib)?;
                    Store::Durable { store, path, key }
                } else {
                    let mut store = ProtocolStore::generate(device_id, rng).map_err(lib)?;
                    store.set_policy(policy);
                    store.set_spqr_policy(spqr);
                    Store::Memory(Box::new(store))
                };
                let reply = json!({
                    "identity_key": hex::encode(store.identity_key().serialize()),
                    "registration_id": store.registration_id(),
                });
                self.store = Some(store);
                self.device_ids.clear();
                Ok(reply)
            }
            "bundle" => {
                let one_time = bool_arg(req, "one_time_prekey", true)?;
                let new_signed = bool_arg(req, "new_signed_prekey", false)?;
                let kyber = match req.get("kyber").and_then(Value::as_str) {
                    None | Some("none") => KyberPreKeyKind::None,
                    Some("one_time") => KyberPreKeyKind::OneTime,
                    Some("last_resort") => KyberPreKeyKind::LastResort,
                    Some(other) => return Err(bad(format!("unknown kyber kind {other:?}"))),
                };
                let request = BundleRequest {
                    one_time_prekey: one_time,
                    kyber,
                    timestamp: now_ms(),
                };
                let b = self.store()?.bundle(new_signed, request).map_err(lib)?;
                let mut out = json!({
                    "registration_id": b.registration_id,
                    "device_id": b.device_id,
                    "identity_key": hex::encode(b.identity_key.serialize()),
                    "signed_prekey_id": b.signed_pre_key_id,
                    "signed_prekey": hex::encode(b.signed_pre_key.serialize()),
                    "signed_prekey_signature": hex::encode(b.signed_pre_key_signature),
                });
                if let Some((id, key)) = b.pre_key {
                    out["prekey_id"] = json!(id);
                    out["prekey"] = json!(hex::encode(key.serialize()));
                }
                if let Some(k) = &b.kyber_pre_key {
                    out["kyber_prekey_id"] = json!(k.id);
                    out["kyber_prekey"] = json!(hex::encode(k.key.serialize()));
                    out["kyber_prekey_signature"] = json!(hex::encode(k.signature));
                }
                Ok(out)
            }
            "process_bundle" => {
                let name = str_arg(req, "peer")?.to_owned();
                let b = req
                    .get("bundle")
                    .and_then(Value::as_object)
                    .ok_or_else(|| bad("missing object field \"bundle\""))?;
                let pre_key = match (b.get("prekey_id"), b.get("prekey")) {
                    (Some(_), Some(_)) => {
                        Some((u32_arg(b, "prekey_id", None)?, key_arg(b, "prekey")?))
                    }
                    (None, None) => None,
                    _ => return Err(bad("prekey_id and prekey must come together")),
                };
                let bundle = PreKeyBundle::new(
                    u32_arg(b, "registration_id", None)?,
                    u32_arg(b, "device_id", Some(1))?,
                    key_arg(b, "identity_key")?,
                    u32_arg(b, "signed_prekey_id", None)?,
                    key_arg(b, "signed_prekey")?,
                    &hex_arg(b, "signed_prekey_signature")?,
                    pre_key,
                )
                .map_err(lib)?;
                let bundle = match (
                    b.get("kyber_prekey_id"),
                    b.get("kyber_prekey"),
                    b.get("kyber_prekey_signature"),
                ) {
                    (None, None, None) => bundle,
                    (Some(_), Some(_), Some(_)) => bundle
                        .with_kyber_pre_key(
                            u32_arg(b, "kyber_prekey_id", None)?,
                            KemPublicKey::deserialize(&hex_arg(b, "kyber_prekey")?).map_err(lib)?,
                            &hex_arg(b, "kyber_prekey_signature")?,
                        )
                        .map_err(lib)?,
                    _ => return Err(bad("the three Kyber fields must come together")),
                };
                let address = Address::new(name.clone(), bundle.device_id);
                self.store()?
                    .process_bundle(&address, &bundle)
                    .map_err(lib)?;
                self.device_ids.insert(name, bundle.device_id);
                Ok(json!({}))
            }
            "encrypt" => {
                let address = self.address(str_arg(req, "peer")?);
                let plaintext = hex_arg(req, "plaintext")?;
                let m = self.store()?.encrypt(&address, &plaintext).map_err(lib)?;
                let ty = if m.message_type() == 3 {
                    "prekey"
                } else {
                    "whisper"
                };
                Ok(json!({"type": ty, "body": hex::encode(m.serialize())}))
            }
            "decrypt" => {
                let address = self.address(str_arg(req, "peer")?);
                let body = hex_arg(req, "body")?;
                let message_type = match str_arg(req, "type")? {
                    "prekey" => PREKEY_TYPE,
                    "whisper" => WHISPER_TYPE,
                    other => return Err(bad(format!("unknown message type {other:?}"))),
                };
                let pt = self
                    .store()?
                    .decrypt(&address, message_type, &body)
                    .map_err(lib)?;
                Ok(json!({"plaintext": hex::encode(pt)}))
            }
            "fingerprint" | "compare_scannable" => {
                let name = str_arg(req, "peer")?;
                let local_id = hex_arg(req, "local_id")?;
                let remote_id = hex_arg(req, "remote_id")?;
                let iterations = u32_arg(req, "iterations", Some(DEFAULT_ITERATIONS))?;
                let version = u32_arg(req, "version", Some(2))?;
                let store = self.store()?;
                let fp = store
                    .safety_number(name, &local_id, &remote_id, iterations, version)
                    .map_err(lib)?;
                if op == "fingerprint" {
                    Ok(
                        json!({"displayable": fp.displayable(), "scannable": hex::encode(fp.scannable())}),
                    )
                } else {
                    let theirs = hex_arg(req, "scannable")?;
                    Ok(json!({"match": fp.compare_scannable(&theirs).map_err(lib)?}))
                }
            }
            "trust" => {
                let name = str_arg(req, "peer")?.to_owned();
                let key = key_arg(req, "identity_key")?;
                self.store()?.approve_identity(&name, key).map_err(lib)?;
                Ok(json!({}))
            }
            "has_session" => {
                let address = self.address(str_arg(req, "peer")?);
                let session = self.store()?.has_session(&address).map_err(lib)?;
                Ok(json!({ "session": session }))
            }
            "save" => {
                // Rebuild from what is saved alone; the old objects (and
                // the database connection) go when it is replaced.
                let next = self.store()?.reload().map_err(lib)?;
                self.store = Some(next);
                Ok(json!({}))
            }
            "open" => {
                let path = PathBuf::from(str_arg(req, "path")?);
                let key = hex_arg(req, "key")?;
                if !path.is_file() {
                    return Err(bad(format!("no store at {}", path.display())));
                }
                let store = open_existing(&path, &key).map_err(lib)?;
                let store = Store::Durable { store, path, key };
                let reply = json!({
                    "identity_key": hex::encode(store.identity_key().serialize()),
                    "registration_id": store.registration_id(),
                });
                self.store = Some(store);
                self.device_ids.clear();
                Ok(reply)
            }
            "quit" => Ok(json!({})),
            other => Err(("unsupported", format!("unknown op {other:?}"))),
        }
    }
}

fn main() {
    let mut peer = Peer {
        store: None,
        device_ids: BTreeMap::new(),
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let (op, reply) = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(req)) => {
                let op = req
                    .get("op")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                let r = peer.handle(&op, &req);
                (op, r)
            }
            _ => (String::new(), Err(bad("request is not a JSON object"))),
        };
        let value = match reply {
            Ok(Value::Object(mut m)) => {
                m.insert("ok".into(), json!(true));
                Value::Object(m)
            }
            Ok(_) => json!({"ok": true}),
            Err((kind, message)) => {
                eprintln!("[ratchetkit-peer] {op}: {kind}: {message}");
                json!({"ok": false, "error": kind, "message": message})
            }
        };
        if writeln!(out, "{value}").and_then(|_| out.flush()).is_err() {
            break;
        }
        if op == "quit" {
            break;
        }
    }
}

#!/usr/bin/env node
// Reference peer for ratchetkit's interoperability tests.
//
// Wraps the official @signalapp/libsignal-client (pinned to 0.72.1) and
// speaks the JSON-lines "peer protocol, version 1" (see
// shared/interop/PEER_PROTOCOL.md): one JSON request per stdin line, exactly
// one JSON answer per stdout line. Diagnostics go to stderr only.
//
// State model: every record is kept as serialized bytes (the way an
// application would persist it). Each operation runs against a shallow copy
// of the state and the copy replaces the live state only when the operation
// succeeded, so a failed operation leaves the peer exactly as it was.

'use strict';

const crypto = require('node:crypto');
const readline = require('node:readline');
const SignalClient = require('@signalapp/libsignal-client');

const {
  ErrorCode,
  LibSignalErrorBase,
  IdentityKeyPair,
  PrivateKey,
  PublicKey,
  ProtocolAddress,
  PreKeyBundle,
  PreKeyRecord,
  SignedPreKeyRecord,
  KyberPreKeyRecord,
  SessionRecord,
  SignalMessage,
  PreKeySignalMessage,
  CiphertextMessageType,
  Fingerprint,
  ScannableFingerprint,
  IdentityChange,
  SessionStore,
  IdentityKeyStore,
  PreKeyStore,
  SignedPreKeyStore,
  KyberPreKeyStore,
  processPreKeyBundle,
  signalEncrypt,
  signalDecrypt,
  signalDecryptPreKey,
} = SignalClient;

const IMPLEMENTATION = 'libsignal-client 0.72.1 (node)';
const PROTOCOL = 1;
const MAX_ID = 0xffffff; // prekey ids live in 1..=16777215
const MISSING_PREKEY_TAG = '[peer:missing_prekey]';

function log(...args) {
  process.stderr.write(`[libsignal-peer] ${args.join(' ')}\n`);
}

// ---------------------------------------------------------------------------
// Errors

class PeerError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

function requestError(message) {
  return new PeerError('other', message);
}

// Thrown by our stores when libsignal asks for a prekey we do not hold.
// libsignal passes store exceptions back to JS; the tag in the message lets
// us recognise it whether the original object or a wrapped error arrives.
class MissingPreKeyError extends Error {
  constructor(what, id) {
    super(`${MISSING_PREKEY_TAG} no ${what} with id ${id}`);
    this.kind = 'missing_prekey';
  }
}

// Maps a libsignal error (or one of ours) to a protocol error kind.
//
// libsignal-client 0.72.1 only gives dedicated ErrorCodes to a few protocol
// errors; most (bad MAC, bad key, bad signature, missing session, ...)
// arrive as ErrorCode.Generic and are told apart by the Display text of the
// Rust SignalProtocolError.
function classify(err) {
  if (err instanceof PeerError || err instanceof MissingPreKeyError) {
    return err.kind;
  }
  const message = String(err && err.message !== undefined ? err.message : err);
  if (message.includes(MISSING_PREKEY_TAG)) {
    return 'missing_prekey';
  }
  if (err instanceof LibSignalErrorBase) {
    switch (err.code) {
      case ErrorCode.DuplicatedMessage:
        return 'duplicate_message';
      case ErrorCode.UntrustedIdentity:
        return 'untrusted_identity';
      case ErrorCode.InvalidSession:
        return 'no_session';
      case ErrorCode.VerificationFailed:
        return 'invalid_signature';
      case ErrorCode.Generic:
        return classifyGenericMessage(message);
      default:
        return 'other';
    }
  }
  return 'other';
}

// Display strings of libsignal-protocol's SignalProtocolError, as seen
// through the 0.72.1 Node bridge (ErrorCode.Generic).
const GENERIC_PATTERNS = [
  // invalid_key
  [/^bad key type </, 'invalid_key'],
  [/^bad key length </, 'invalid_key'],
  [/^invalid private key/i, 'invalid_key'],
  [/^invalid public key/i, 'invalid_key'],
  // invalid_signature
  [/^invalid signature detected/, 'invalid_signature'],
  [/^signature validation failed/, 'invalid_signature'],
  // no_session
  [/^session with .* not found/, 'no_session'],
  [/^no sender key state/, 'no_session'],
  // missing_prekey
  [/^invalid prekey identifier/, 'missing_prekey'],
  [/^invalid signed prekey identifier/, 'missing_prekey'],
  [/^invalid Kyber prekey identifier/i, 'missing_prekey'],
  // duplicate (normally ErrorCode.DuplicatedMessage)
  [/^message with old counter/, 'duplicate_message'],
  // untrusted (normally ErrorCode.UntrustedIdentity)
  [/^untrusted identity/, 'untrusted_identity'],
  // invalid_message
  [/^ciphertext serialized bytes were too short/, 'invalid_message'],
  [/^ciphertext version was too old/, 'invalid_message'],
  [/^ciphertext version was unrecognized/, 'invalid_message'],
  [/^unrecognized message version/, 'invalid_message'],
  [/^protobuf encoding was invalid/, 'invalid_message'],
  [/^invalid .*message/i, 'invalid_message'],
  [/^invalid MAC/i, 'invalid_message'],
  [/^message decryption failed/i, 'invalid_message'],
  [/^invalid ciphertext/i, 'invalid_message'],
  [/^ciphertext .*invalid/i, 'invalid_message'],
  [/^fingerprint parsing error/, 'invalid_message'],
  [/^invalid sealed sender message/i, 'invalid_message'],
];

function classifyGenericMessage(message) {
  for (const [re, kind] of GENERIC_PATTERNS) {
    if (re.test(message)) return kind;
  }
  return 'other';
}

// ---------------------------------------------------------------------------
// Request field helpers

const HEX_RE = /^(?:[0-9a-fA-F]{2})*$/;

function hexField(req, field, { optional = false } = {}) {
  const v = req[field];
  if (v === undefined || v === null) {
    if (optional) return undefined;
    throw requestError(`missing field "${field}"`);
  }
  if (typeof v !== 'string' || !HEX_RE.test(v)) {
    throw requestError(`field "${field}" is not a hex string`);
  }
  return Buffer.from(v, 'hex');
}

function strField(req, field) {
  const v = req[field];
  if (typeof v !== 'string') {
    throw requestError(`field "${field}" must be a string`);
  }
  return v;
}

function intField(req, field, { dflt, min = 0, max = 0xffffffff } = {}) {
  let v = req[field];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw requestError(`missing field "${field}"`);
    v = dflt;
  }
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    throw requestError(`field "${field}" must be an integer in ${min}..=${max}`);
  }
  return v;
}

function boolField(req, field, dflt) {
  const v = req[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw requestError(`field "${field}" must be a boolean`);
  return v;
}

// A public key from the harness: exactly 33 bytes, type byte 0x05.
// (libsignal itself ignores trailing bytes after the 33rd; the protocol
// table asks for invalid_key on a wrong length, so check it here.)
function publicKeyField(obj, field) {
  const bytes = hexField(obj, field);
  if (bytes.length !== 33) {
    throw new PeerError('invalid_key', `field "${field}": public key must be 33 bytes, got ${bytes.length}`);
  }
  return PublicKey.deserialize(bytes);
}

const hex = (buf) => Buffer.from(buf).toString('hex');

// ---------------------------------------------------------------------------
// State: everything as bytes

class State {
  constructor() {
    this.name = null;
    this.deviceId = 1;
    this.registrationId = 0;
    this.identityKeyPair = null; // Buffer, IdentityKeyPair.serialize()
    this.nextPreKeyId = 1;
    this.nextSignedPreKeyId = 1;
    this.currentSignedPreKeyId = null; // number | null
    this.preKeys = new Map(); // id -> Buffer (PreKeyRecord)
    this.signedPreKeys = new Map(); // id -> Buffer (SignedPreKeyRecord)
    this.sessions = new Map(); // "name\0device" -> Buffer (SessionRecord)
    this.identities = new Map(); // name -> Buffer (33-byte public key)
    this.deviceIds = new Map(); // name -> device id of the last processed bundle
  }

  // A copy whose maps can be changed without touching this one. Values are
  // Buffers that are never mutated in place, so a shallow copy suffices.
  clone() {
    const c = new State();
    c.name = this.name;
    c.deviceId = this.deviceId;
    c.registrationId = this.registrationId;
    c.identityKeyPair = this.identityKeyPair;
    c.nextPreKeyId = this.nextPreKeyId;
    c.nextSignedPreKeyId = this.nextSignedPreKeyId;
    c.currentSignedPreKeyId = this.currentSignedPreKeyId;
    c.preKeys = new Map(this.preKeys);
    c.signedPreKeys = new Map(this.signedPreKeys);
    c.sessions = new Map(this.sessions);
    c.identities = new Map(this.identities);
    c.deviceIds = new Map(this.deviceIds);
    return c;
  }

  // --- whole-state serialization for `save` -------------------------------

  serialize() {
    const mapToObj = (m) => {
      const o = {};
      for (const [k, v] of m) o[k] = typeof v === 'number' ? v : hex(v);
      return o;
    };
    const doc = {
      format: 'ratchetkit-libsignal-peer-state/1',
      name: this.name,
      device_id: this.deviceId,
      registration_id: this.registrationId,
      identity_key_pair: hex(this.identityKeyPair),
      next_prekey_id: this.nextPreKeyId,
      next_signed_prekey_id: this.nextSignedPreKeyId,
      current_signed_prekey_id: this.currentSignedPreKeyId,
      prekeys: mapToObj(this.preKeys),
      signed_prekeys: mapToObj(this.signedPreKeys),
      sessions: mapToObj(this.sessions),
      identities: mapToObj(this.identities),
      device_ids: mapToObj(this.deviceIds),
    };
    return Buffer.from(JSON.stringify(doc), 'utf8');
  }

  // Rebuilds a state from bytes alone. Every record goes through libsignal's
  // deserialize/serialize so corrupt bytes are caught here.
  static deserialize(bytes) {
    const doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
    if (doc.format !== 'ratchetkit-libsignal-peer-state/1') {
      throw new Error('unknown state format');
    }
    const s = new State();
    s.name = doc.name;
    s.deviceId = doc.device_id;
    s.registrationId = doc.registration_id;
    s.identityKeyPair = IdentityKeyPair.deserialize(Buffer.from(doc.identity_key_pair, 'hex')).serialize();
    s.nextPreKeyId = doc.next_prekey_id;
    s.nextSignedPreKeyId = doc.next_signed_prekey_id;
    s.currentSignedPreKeyId = doc.current_signed_prekey_id;
    for (const [id, h] of Object.entries(doc.prekeys)) {
      s.preKeys.set(Number(id), PreKeyRecord.deserialize(Buffer.from(h, 'hex')).serialize());
    }
    for (const [id, h] of Object.entries(doc.signed_prekeys)) {
      s.signedPreKeys.set(Number(id), SignedPreKeyRecord.deserialize(Buffer.from(h, 'hex')).serialize());
    }
    for (const [k, h] of Object.entries(doc.sessions)) {
      s.sessions.set(k, SessionRecord.deserialize(Buffer.from(h, 'hex')).serialize());
    }
    for (const [name, h] of Object.entries(doc.identities)) {
      s.identities.set(name, PublicKey.deserialize(Buffer.from(h, 'hex')).serialize());
    }
    for (const [name, dev] of Object.entries(doc.device_ids)) {
      s.deviceIds.set(name, dev);
    }
    return s;
  }
}

const sessionKey = (address) => `${address.name()}\u0000${address.deviceId()}`;

// ---------------------------------------------------------------------------
// Stores over a State (all in memory, records kept as bytes)

class PeerSessionStore extends SessionStore {
  constructor(state) {
    super();
    this.state = state;
  }
  async saveSession(address, record) {
    this.state.sessions.set(sessionKey(address), record.serialize());
  }
  async getSession(address) {
    const bytes = this.state.sessions.get(sessionKey(address));
    return bytes ? SessionRecord.deserialize(bytes) : null;
  }
  async getExistingSessions(addresses) {
    return addresses.map((a) => {
      const bytes = this.state.sessions.get(sessionKey(a));
      if (!bytes) throw new Error(`no session for ${a.toString()}`);
      return SessionRecord.deserialize(bytes);
    });
  }
}

class PeerIdentityKeyStore extends IdentityKeyStore {
  constructor(state) {
    super();
    this.state = state;
  }
  async getIdentityKey() {
    return IdentityKeyPair.deserialize(this.state.identityKeyPair).privateKey;
  }
  async getLocalRegistrationId() {
    return this.state.registrationId;
  }
  // Trust on first use, per name (device ids do not matter for trust).
  async saveIdentity(address, key) {
    const name = address.name();
    const bytes = key.serialize();
    const old = this.state.identities.get(name);
    this.state.identities.set(name, bytes);
    return old && !old.equals(bytes) ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(address, key, _direction) {
    const old = this.state.identities.get(address.name());
    return !old || old.equals(key.serialize());
  }
  async getIdentity(address) {
    const old = this.state.identities.get(address.name());
    return old ? PublicKey.deserialize(old) : null;
  }
}

class PeerPreKeyStore extends PreKeyStore {
  constructor(state) {
    super();
    this.state = state;
  }
  async savePreKey(id, record) {
    this.state.preKeys.set(id, record.serialize());
  }
  async getPreKey(id) {
    const bytes = this.state.preKeys.get(id);
    if (!bytes) throw new MissingPreKeyError('prekey', id);
    return PreKeyRecord.deserialize(bytes);
  }
  async removePreKey(id) {
    this.state.preKeys.delete(id);
  }
}

class PeerSignedPreKeyStore extends SignedPreKeyStore {
  constructor(state) {
    super();
    this.state = state;
  }
  async saveSignedPreKey(id, record) {
    this.state.signedPreKeys.set(id, record.serialize());
  }
  async getSignedPreKey(id) {
    const bytes = this.state.signedPreKeys.get(id);
    if (!bytes) throw new MissingPreKeyError('signed prekey', id);
    return SignedPreKeyRecord.deserialize(bytes);
  }
}

// Bundles never carry Kyber keys, so this store never holds anything; it
// exists because signalDecryptPreKey requires one.
class PeerKyberPreKeyStore extends KyberPreKeyStore {
  async saveKyberPreKey(_id, _record) {
    throw new Error('this peer does not use Kyber prekeys');
  }
  async getKyberPreKey(id) {
    throw new MissingPreKeyError('kyber prekey', id);
  }
  async markKyberPreKeyUsed(_id) {}
}

function storesFor(state) {
  return {
    sessions: new PeerSessionStore(state),
    identity: new PeerIdentityKeyStore(state),
    preKeys: new PeerPreKeyStore(state),
    signedPreKeys: new PeerSignedPreKeyStore(state),
    kyberPreKeys: new PeerKyberPreKeyStore(),
  };
}

// ---------------------------------------------------------------------------
// The peer

let state = null; // State | null before init

function requireInit() {
  if (!state) throw requestError('no identity: send "init" first');
  return state;
}

function addressFor(st, name) {
  return ProtocolAddress.new(name, st.deviceIds.get(name) ?? 1);
}

function takeId(st, counterField) {
  const id = st[counterField];
  st[counterField] = id >= MAX_ID ? 1 : id + 1;
  return id;
}

// Runs fn against a copy of the state; the copy becomes live only on success.
async function transact(fn) {
  const draft = requireInit().clone();
  const result = await fn(draft);
  state = draft;
  return result;
}

const ops = {
  async hello() {
    return { implementation: IMPLEMENTATION, protocol: PROTOCOL };
  },

  async init(req) {
    const name = strField(req, 'name');
    const deviceId = intField(req, 'device_id', { dflt: 1, min: 1, max: 0x7fffffff });
    const s = new State();
    s.name = name;
    s.deviceId = deviceId;
    s.registrationId = 1 + crypto.randomInt(16380); // 1..=16380 (14-bit)
    const ikp = IdentityKeyPair.generate();
    s.identityKeyPair = ikp.serialize();
    // Start ids at a random point so two inits do not reuse the same ids.
    s.nextPreKeyId = 1 + crypto.randomInt(MAX_ID);
    s.nextSignedPreKeyId = 1 + crypto.randomInt(MAX_ID);
    state = s;
    return { identity_key: hex(ikp.publicKey.serialize()), registration_id: s.registrationId };
  },

  async bundle(req) {
    const wantOneTime = boolField(req, 'one_time_prekey', true);
    const newSigned = boolField(req, 'new_signed_prekey', false);
    return transact(async (st) => {
      const ikp = IdentityKeyPair.deserialize(st.identityKeyPair);
      if (st.currentSignedPreKeyId === null || newSigned) {
        const id = takeId(st, 'nextSignedPreKeyId');
        const priv = PrivateKey.generate();
        const pub = priv.getPublicKey();
        const sig = ikp.privateKey.sign(pub.serialize());
        const rec = SignedPreKeyRecord.new(id, Date.now(), pub, priv, sig);
        st.signedPreKeys.set(id, rec.serialize());
        st.currentSignedPreKeyId = id;
      }
      const spk = SignedPreKeyRecord.deserialize(st.signedPreKeys.get(st.currentSignedPreKeyId));
      const out = {
        registration_id: st.registrationId,
        device_id: st.deviceId,
        identity_key: hex(ikp.publicKey.serialize()),
        signed_prekey_id: spk.id(),
        signed_prekey: hex(spk.publicKey().serialize()),
        signed_prekey_signature: hex(spk.signature()),
      };
      if (wantOneTime) {
        let id = takeId(st, 'nextPreKeyId');
        // Never hand out an id we still hold (only possible after wrapping).
        while (st.preKeys.has(id)) id = takeId(st, 'nextPreKeyId');
        const priv = PrivateKey.generate();
        const pub = priv.getPublicKey();
        st.preKeys.set(id, PreKeyRecord.new(id, pub, priv).serialize());
        out.prekey_id = id;
        out.prekey = hex(pub.serialize());
      }
      return out;
    });
  },

  async process_bundle(req) {
    const peer = strField(req, 'peer');
    const b = req.bundle;
    if (!b || typeof b !== 'object' || Array.isArray(b)) throw requestError('missing object field "bundle"');
    const registrationId = intField(b, 'registration_id');
    const deviceId = intField(b, 'device_id', { dflt: 1 });
    const identityKey = publicKeyField(b, 'identity_key');
    const signedPreKeyId = intField(b, 'signed_prekey_id');
    const signedPreKey = publicKeyField(b, 'signed_prekey');
    const signature = hexField(b, 'signed_prekey_signature');
    const hasPreKey = b.prekey !== undefined && b.prekey !== null;
    const hasPreKeyId = b.prekey_id !== undefined && b.prekey_id !== null;
    if (hasPreKey !== hasPreKeyId) throw requestError('"prekey" and "prekey_id" go together');
    const preKeyId = hasPreKeyId ? intField(b, 'prekey_id') : null;
    const preKey = hasPreKey ? publicKeyField(b, 'prekey') : null;
    // No Kyber prekey: the 0.72.1 API makes those arguments optional, and
    // without them the session is message version 3.
    const bundle = PreKeyBundle.new(
      registrationId, deviceId, preKeyId, preKey,
      signedPreKeyId, signedPreKey, signature, identityKey,
      null, null, null,
    );
    return transact(async (st) => {
      const stores = storesFor(st);
      const address = ProtocolAddress.new(peer, deviceId);
      await processPreKeyBundle(bundle, address, stores.sessions, stores.identity);
      st.deviceIds.set(peer, deviceId);
      return {};
    });
  },

  async encrypt(req) {
    const peer = strField(req, 'peer');
    const plaintext = hexField(req, 'plaintext');
    return transact(async (st) => {
      const stores = storesFor(st);
      const address = addressFor(st, peer);
      const ct = await signalEncrypt(plaintext, address, stores.sessions, stores.identity);
      const t = ct.type();
      let type;
      if (t === CiphertextMessageType.PreKey) type = 'prekey';
      else if (t === CiphertextMessageType.Whisper) type = 'whisper';
      else throw new PeerError('other', `unexpected ciphertext type ${t}`);
      return { type, body: hex(ct.serialize()) };
    });
  },

  async decrypt(req) {
    const peer = strField(req, 'peer');
    const type = strField(req, 'type');
    const body = hexField(req, 'body');
    if (type !== 'prekey' && type !== 'whisper') {
      throw requestError(`"type" must be "prekey" or "whisper", got ${JSON.stringify(type)}`);
    }
    return transact(async (st) => {
      const stores = storesFor(st);
      const address = addressFor(st, peer);
      let plaintext;
      if (type === 'prekey') {
        const msg = PreKeySignalMessage.deserialize(body);
        plaintext = await signalDecryptPreKey(
          msg, address, stores.sessions, stores.identity,
          stores.preKeys, stores.signedPreKeys, stores.kyberPreKeys,
        );
      } else {
        const msg = SignalMessage.deserialize(body);
        plaintext = await signalDecrypt(msg, address, stores.sessions, stores.identity);
      }
      return { plaintext: hex(plaintext) };
    });
  },

  async fingerprint(req) {
    const fp = fingerprintFor(req);
    return {
      displayable: fp.displayableFingerprint().toString(),
      scannable: hex(fp.scannableFingerprint().toBuffer()),
    };
  },

  async compare_scannable(req) {
    const theirs = hexField(req, 'scannable');
    const fp = fingerprintFor(req);
    const match = fp.scannableFingerprint().compare(ScannableFingerprint._fromBuffer(theirs));
    return { match: Boolean(match) };
  },

  async trust(req) {
    const peer = strField(req, 'peer');
    const key = publicKeyField(req, 'identity_key');
    return transact(async (st) => {
      st.identities.set(peer, key.serialize());
      return {};
    });
  },

  async has_session(req) {
    const peer = strField(req, 'peer');
    const st = requireInit();
    const bytes = st.sessions.get(sessionKey(addressFor(st, peer)));
    const session = bytes ? SessionRecord.deserialize(bytes).hasCurrentState() : false;
    return { session };
  },

  async save() {
    const bytes = requireInit().serialize();
    // Throw every live object away and rebuild from the bytes alone.
    state = null;
    try {
      state = State.deserialize(bytes);
    } catch (e) {
      // Should never happen; keep the peer usable by rebuilding again.
      state = State.deserialize(bytes);
      throw e;
    }
    log(`save: ${bytes.length} bytes of state`);
    return {};
  },

  async quit() {
    return {};
  },
};

function fingerprintFor(req) {
  const peer = strField(req, 'peer');
  const localId = hexField(req, 'local_id');
  const remoteId = hexField(req, 'remote_id');
  const iterations = intField(req, 'iterations', { dflt: 5200 });
  const version = intField(req, 'version', { dflt: 2 });
  const st = requireInit();
  const remote = st.identities.get(peer);
  if (!remote) throw new PeerError('other', `no trusted identity for "${peer}"`);
  const local = IdentityKeyPair.deserialize(st.identityKeyPair).publicKey;
  return Fingerprint.new(iterations, version, localId, local, remoteId, PublicKey.deserialize(remote));
}

// ---------------------------------------------------------------------------
// Main loop

function writeLine(obj) {
  return new Promise((resolve) => {
    process.stdout.write(`${JSON.stringify(obj)}\n`, () => resolve());
  });
}

// Answers one request line; never throws.
async function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    return { ok: false, error: 'other', message: `malformed JSON request: ${e.message}` };
  }
  if (!req || typeof req !== 'object' || Array.isArray(req)) {
    return { ok: false, error: 'other', message: 'request must be a JSON object' };
  }
  const op = req.op;
  if (typeof op !== 'string') {
    return { ok: false, error: 'other', message: 'request has no string "op"' };
  }
  if (!Object.prototype.hasOwnProperty.call(ops, op)) {
    return { ok: false, error: 'unsupported', message: `unknown op "${op}"` };
  }
  try {
    const result = await ops[op](req);
    return { ok: true, ...result };
  } catch (e) {
    const kind = classify(e);
    const message = e && e.message !== undefined ? String(e.message) : String(e);
    const code = e instanceof LibSignalErrorBase ? ` code=${e.code}(${e.name}) operation=${e.operation}` : '';
    log(`op ${op} failed: ${kind}:${code} ${message}`);
    return { ok: false, error: kind, message };
  }
}

function isQuit(line) {
  try {
    const req = JSON.parse(line);
    return Boolean(req) && req.op === 'quit';
  } catch (_) {
    return false;
  }
}

async function main() {
  // readline puts no limit on line length; requests of several MiB are fine.
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === '') continue; // a blank line is not a request
    await writeLine(await handle(line));
    if (isQuit(line)) break;
  }
  rl.close();
  process.exit(0);
}

process.on('uncaughtException', (e) => {
  log(`uncaught exception: ${e && e.stack ? e.stack : e}`);
});
process.on('unhandledRejection', (e) => {
  log(`unhandled rejection: ${e && e.stack ? e.stack : e}`);
});

main().catch((e) => {
  log(`fatal: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});

// The body of the reference peers that wrap the official
// @signalapp/libsignal-client for ratchetkit's interoperability tests.
//
// Each peer directory pins one library version and holds a small entry
// point that loads *its own* copy of the library and hands it to run():
//
//   libsignal-peer/peer.js      CommonJS, libsignal-client 0.72.1 (v3 and v4)
//   libsignal-peer-090/peer.js  ES module, libsignal-client 0.90.0 (v4 only)
//
// This file requires nothing but Node built-ins, so it works from both (an
// ES module imports it as a CommonJS module). Everything that differs
// between library versions is in the `profile` passed to run().
//
// Protocol: the JSON-lines "peer protocol, version 2" (PEER_PROTOCOL.md):
// one JSON request per stdin line, exactly one JSON answer per stdout line,
// diagnostics on stderr only.
//
// State model: every record is kept as serialized bytes (the way an
// application would persist it). Each operation runs against a shallow copy
// of the state and the copy replaces the live state only when the operation
// succeeded, so a failed operation leaves the peer exactly as it was.

'use strict';

const crypto = require('node:crypto');
const readline = require('node:readline');

const PROTOCOL = 2;
const MAX_ID = 0xffffff; // prekey ids live in 1..=16777215
const STATE_FORMAT = 'ratchetkit-libsignal-peer-state/2';

// Tags carried in the messages of errors our stores throw. libsignal passes
// store exceptions back to JS, sometimes wrapped in its own error whose text
// includes ours ("error in method call 'x': Error: <our message>"); the tag
// is recognised either way.
const MISSING_PREKEY_TAG = '[peer:missing_prekey]';
const REFUSED_TAG = '[peer:invalid_message]';

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

function unsupported(message) {
  return new PeerError('unsupported', message);
}

// Thrown by our stores when libsignal asks for a prekey we do not hold.
class MissingPreKeyError extends Error {
  constructor(what, id) {
    super(`${MISSING_PREKEY_TAG} no ${what} with id ${id}`);
    this.kind = 'missing_prekey';
  }
}

// Thrown by our stores to refuse a prekey message by policy (a repeated
// last-resort use, or a new version-3 session when accept_v3 is false).
class RefusedError extends Error {
  constructor(message) {
    super(`${REFUSED_TAG} ${message}`);
    this.kind = 'invalid_message';
  }
}

// Display strings of libsignal-protocol's SignalProtocolError as seen through
// the Node bridge. libsignal-client gives dedicated ErrorCodes to a few
// protocol errors only; the rest (bad MAC, bad key, bad signature, missing
// session, ...) arrive as ErrorCode.Generic and are told apart by the text.
// The list covers both pinned versions (0.72.1 and 0.90.0).
const GENERIC_PATTERNS = [
  // invalid_key
  [/^bad key type </, 'invalid_key'],
  [/^bad key length </, 'invalid_key'],
  [/^bad KEM key type/i, 'invalid_key'],
  [/^bad KEM key length/i, 'invalid_key'],
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
  [/^bad KEM ciphertext/i, 'invalid_message'],
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

function enumField(req, field, allowed, dflt) {
  const v = req[field];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'string' || !allowed.includes(v)) {
    throw requestError(`field "${field}" must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}`);
  }
  return v;
}

const has = (obj, field) => obj[field] !== undefined && obj[field] !== null;

// Bytes returned by libsignal (a Buffer in 0.72.1, a Uint8Array in 0.90.0)
// as a Buffer of our own.
const toBuf = (bytes) => Buffer.from(bytes);
const hex = (bytes) => Buffer.from(bytes).toString('hex');

// ---------------------------------------------------------------------------
// A minimal protobuf reader for the PreKeySignalMessage wrapper (varint and
// length-delimited fields only). The peer reads the message's version byte,
// base key and prekey ids itself: the library's accessors do not expose all
// of them, and the accept_v3 and last-resort rules need them.

function readVarint(buf, i) {
  let value = 0;
  let mul = 1;
  for (let n = 0; n < 10; n += 1) {
    if (i >= buf.length) return null;
    const b = buf[i];
    i += 1;
    value += (b & 0x7f) * mul;
    mul *= 128;
    if (!(b & 0x80)) return [value, i];
  }
  return null;
}

// { version, baseKey, signedPreKeyId, preKeyId, kyberPreKeyId } or null when
// the bytes are not a well-formed wrapper (libsignal then reports the error).
function parsePreKeyMessage(body) {
  if (body.length < 2) return null;
  const out = { version: body[0] >> 4 };
  let i = 1;
  while (i < body.length) {
    const k = readVarint(body, i);
    if (!k) return null;
    i = k[1];
    const num = Math.floor(k[0] / 8);
    const wt = k[0] % 8;
    if (wt === 0) {
      const v = readVarint(body, i);
      if (!v) return null;
      i = v[1];
      if (num === 1) out.preKeyId = v[0];
      else if (num === 6) out.signedPreKeyId = v[0];
      else if (num === 7) out.kyberPreKeyId = v[0];
    } else if (wt === 2) {
      const n = readVarint(body, i);
      if (!n || n[1] + n[0] > body.length) return null;
      const value = body.subarray(n[1], n[1] + n[0]);
      i = n[1] + n[0];
      if (num === 2) out.baseKey = Buffer.from(value);
    } else {
      return null;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The peer

// lib: the loaded @signalapp/libsignal-client module.
// profile: {
//   implementation: string            (hello's "implementation")
//   logName: string                   (stderr prefix)
//   versions: number[]                (session versions it starts and accepts)
//   canStartV3: bool                  (process_bundle without Kyber fields)
//   acceptV3: { dflt: bool, allowed: bool[] }
//   emulateRefuseV3: bool             (the library accepts v3 prekey messages
//                                      itself; refuse them in the stores when
//                                      accept_v3 is false)
//   spqr: { dflt: string, allowed: string[] }
//   maxDeviceId: number
//   localAddress: bool                (0.101.0: processPreKeyBundle,
//                                      signalEncrypt, signalDecrypt and
//                                      signalDecryptPreKey take the local
//                                      address right after the remote one;
//                                      found black-box, see the 0.101.0 peer)
// }
function run(lib, profile) {
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
    KEMKeyPair,
    KEMPublicKey,
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
  } = lib;

  function log(...args) {
    process.stderr.write(`[${profile.logName}] ${args.join(' ')}\n`);
  }

  // Maps a libsignal error (or one of ours) to a protocol error kind.
  function classify(err) {
    if (err instanceof PeerError || err instanceof MissingPreKeyError || err instanceof RefusedError) {
      return err.kind;
    }
    const message = String(err && err.message !== undefined ? err.message : err);
    if (message.includes(MISSING_PREKEY_TAG)) return 'missing_prekey';
    if (message.includes(REFUSED_TAG)) return 'invalid_message';
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

  // A KEM public key: type byte then 1568 bytes (1569). The type byte is
  // left to libsignal (0x08 Kyber1024; anything else is refused there).
  function kemPublicKeyField(obj, field) {
    const bytes = hexField(obj, field);
    if (bytes.length !== 1569) {
      throw new PeerError('invalid_key', `field "${field}": KEM public key must be 1569 bytes, got ${bytes.length}`);
    }
    return KEMPublicKey.deserialize(bytes);
  }

  // -------------------------------------------------------------------------
  // State: everything as bytes

  class State {
    constructor() {
      this.name = null;
      this.deviceId = 1;
      this.registrationId = 0;
      this.acceptV3 = profile.acceptV3.dflt;
      this.spqr = profile.spqr.dflt;
      this.identityKeyPair = null; // Buffer, IdentityKeyPair.serialize()
      this.nextPreKeyId = 1;
      this.nextSignedPreKeyId = 1;
      this.nextKyberPreKeyId = 1;
      this.currentSignedPreKeyId = null; // number | null
      this.lastResortKyberId = null; // number | null (the record is in kyberPreKeys)
      this.preKeys = new Map(); // id -> Buffer (PreKeyRecord)
      this.signedPreKeys = new Map(); // id -> Buffer (SignedPreKeyRecord)
      this.kyberPreKeys = new Map(); // id -> Buffer (KyberPreKeyRecord), one-time and last resort
      this.lastResortUses = new Set(); // "kyberId:signedPreKeyId:baseKeyHex"
      this.sessions = new Map(); // "name\0device" -> Buffer (SessionRecord)
      this.identities = new Map(); // name -> Buffer (33-byte public key)
      this.deviceIds = new Map(); // name -> device id of the last processed bundle
    }

    // A copy whose maps can be changed without touching this one. Values are
    // Buffers that are never mutated in place, so a shallow copy suffices.
    clone() {
      const c = new State();
      for (const k of Object.keys(this)) {
        const v = this[k];
        c[k] = v instanceof Map ? new Map(v) : v instanceof Set ? new Set(v) : v;
      }
      return c;
    }

    // --- whole-state serialization for `save` ------------------------------

    serialize() {
      const mapToObj = (m) => {
        const o = {};
        for (const [k, v] of m) o[k] = typeof v === 'number' ? v : hex(v);
        return o;
      };
      const doc = {
        format: STATE_FORMAT,
        name: this.name,
        device_id: this.deviceId,
        registration_id: this.registrationId,
        accept_v3: this.acceptV3,
        spqr: this.spqr,
        identity_key_pair: hex(this.identityKeyPair),
        next_prekey_id: this.nextPreKeyId,
        next_signed_prekey_id: this.nextSignedPreKeyId,
        next_kyber_prekey_id: this.nextKyberPreKeyId,
        current_signed_prekey_id: this.currentSignedPreKeyId,
        last_resort_kyber_id: this.lastResortKyberId,
        prekeys: mapToObj(this.preKeys),
        signed_prekeys: mapToObj(this.signedPreKeys),
        kyber_prekeys: mapToObj(this.kyberPreKeys),
        last_resort_uses: [...this.lastResortUses],
        sessions: mapToObj(this.sessions),
        identities: mapToObj(this.identities),
        device_ids: mapToObj(this.deviceIds),
      };
      return Buffer.from(JSON.stringify(doc), 'utf8');
    }

    // Rebuilds a state from bytes alone. Every record goes through
    // libsignal's deserialize/serialize so corrupt bytes are caught here.
    static deserialize(bytes) {
      const doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
      if (doc.format !== STATE_FORMAT) throw new Error('unknown state format');
      const s = new State();
      const h = (x) => Buffer.from(x, 'hex');
      s.name = doc.name;
      s.deviceId = doc.device_id;
      s.registrationId = doc.registration_id;
      s.acceptV3 = doc.accept_v3;
      s.spqr = doc.spqr;
      s.identityKeyPair = toBuf(IdentityKeyPair.deserialize(h(doc.identity_key_pair)).serialize());
      s.nextPreKeyId = doc.next_prekey_id;
      s.nextSignedPreKeyId = doc.next_signed_prekey_id;
      s.nextKyberPreKeyId = doc.next_kyber_prekey_id;
      s.currentSignedPreKeyId = doc.current_signed_prekey_id;
      s.lastResortKyberId = doc.last_resort_kyber_id;
      for (const [id, x] of Object.entries(doc.prekeys)) {
        s.preKeys.set(Number(id), toBuf(PreKeyRecord.deserialize(h(x)).serialize()));
      }
      for (const [id, x] of Object.entries(doc.signed_prekeys)) {
        s.signedPreKeys.set(Number(id), toBuf(SignedPreKeyRecord.deserialize(h(x)).serialize()));
      }
      for (const [id, x] of Object.entries(doc.kyber_prekeys)) {
        s.kyberPreKeys.set(Number(id), toBuf(KyberPreKeyRecord.deserialize(h(x)).serialize()));
      }
      for (const use of doc.last_resort_uses) s.lastResortUses.add(String(use));
      for (const [k, x] of Object.entries(doc.sessions)) {
        s.sessions.set(k, toBuf(SessionRecord.deserialize(h(x)).serialize()));
      }
      for (const [name, x] of Object.entries(doc.identities)) {
        s.identities.set(name, toBuf(PublicKey.deserialize(h(x)).serialize()));
      }
      for (const [name, dev] of Object.entries(doc.device_ids)) {
        s.deviceIds.set(name, dev);
      }
      return s;
    }
  }

  const sessionKey = (address) => `${address.name()}\u0000${address.deviceId()}`;

  // -------------------------------------------------------------------------
  // Stores over a State (all in memory, records kept as bytes).
  //
  // `incoming` describes the prekey message being decrypted (parsed by us):
  // { version, baseKey, signedPreKeyId, refuseNewSession }. libsignal asks
  // the prekey stores for anything only when the message starts a *new*
  // session (a message whose base key matches an existing session goes to
  // that session first), which is where the accept_v3 policy applies.

  class PeerSessionStore extends SessionStore {
    constructor(state) {
      super();
      this.state = state;
    }
    async saveSession(address, record) {
      this.state.sessions.set(sessionKey(address), toBuf(record.serialize()));
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
      const bytes = toBuf(key.serialize());
      const old = this.state.identities.get(name);
      this.state.identities.set(name, bytes);
      return old && !old.equals(bytes) ? IdentityChange.ReplacedExisting : IdentityChange.NewOrUnchanged;
    }
    async isTrustedIdentity(address, key, _direction) {
      const old = this.state.identities.get(address.name());
      return !old || old.equals(toBuf(key.serialize()));
    }
    async getIdentity(address) {
      const old = this.state.identities.get(address.name());
      return old ? PublicKey.deserialize(old) : null;
    }
  }

  function checkNewSessionAllowed(incoming) {
    if (incoming && incoming.refuseNewSession) {
      throw new RefusedError('a version-3 prekey message may not start a session (accept_v3 is false)');
    }
  }

  class PeerPreKeyStore extends PreKeyStore {
    constructor(state, incoming) {
      super();
      this.state = state;
      this.incoming = incoming;
    }
    async savePreKey(id, record) {
      this.state.preKeys.set(id, toBuf(record.serialize()));
    }
    async getPreKey(id) {
      checkNewSessionAllowed(this.incoming);
      const bytes = this.state.preKeys.get(id);
      if (!bytes) throw new MissingPreKeyError('prekey', id);
      return PreKeyRecord.deserialize(bytes);
    }
    async removePreKey(id) {
      this.state.preKeys.delete(id);
    }
  }

  class PeerSignedPreKeyStore extends SignedPreKeyStore {
    constructor(state, incoming) {
      super();
      this.state = state;
      this.incoming = incoming;
    }
    async saveSignedPreKey(id, record) {
      this.state.signedPreKeys.set(id, toBuf(record.serialize()));
    }
    async getSignedPreKey(id) {
      checkNewSessionAllowed(this.incoming);
      const bytes = this.state.signedPreKeys.get(id);
      if (!bytes) throw new MissingPreKeyError('signed prekey', id);
      return SignedPreKeyRecord.deserialize(bytes);
    }
  }

  // One-time Kyber prekeys are deleted on use. For the last-resort key the
  // store remembers (kyber id, signed prekey id, base key) of every use and
  // refuses a repeat (libsignal calls markKyberPreKeyUsed only for a message
  // that starts a new session, i.e. matches no existing one). 0.90.0 passes
  // the signed prekey id and base key; 0.72.1 passes only the Kyber id, so
  // the values parsed from the message are used there.
  class PeerKyberPreKeyStore extends KyberPreKeyStore {
    constructor(state, incoming) {
      super();
      this.state = state;
      this.incoming = incoming;
    }
    async saveKyberPreKey(id, record) {
      this.state.kyberPreKeys.set(id, toBuf(record.serialize()));
    }
    async getKyberPreKey(id) {
      checkNewSessionAllowed(this.incoming);
      const bytes = this.state.kyberPreKeys.get(id);
      if (!bytes) throw new MissingPreKeyError('kyber prekey', id);
      return KyberPreKeyRecord.deserialize(bytes);
    }
    async markKyberPreKeyUsed(id, signedPreKeyId, baseKey) {
      const st = this.state;
      if (id !== st.lastResortKyberId) {
        st.kyberPreKeys.delete(id);
        return;
      }
      const inc = this.incoming || {};
      const spk = signedPreKeyId !== undefined ? signedPreKeyId : inc.signedPreKeyId;
      const base = baseKey !== undefined ? toBuf(baseKey.serialize()) : inc.baseKey;
      if (spk === undefined || !base) {
        throw new Error(`cannot record the use of last-resort Kyber prekey ${id}: message not parsed`);
      }
      if (inc.baseKey && (!inc.baseKey.equals(base) || inc.signedPreKeyId !== spk)) {
        log(`warning: libsignal reports signed prekey ${spk} / base key ${hex(base)} for a message that names `
          + `${inc.signedPreKeyId} / ${hex(inc.baseKey)}`);
      }
      const use = `${id}:${spk}:${hex(base)}`;
      if (st.lastResortUses.has(use)) {
        throw new RefusedError(`reused base key: last-resort Kyber prekey ${id} with signed prekey ${spk} `
          + 'and this base key was already used for another session');
      }
      st.lastResortUses.add(use);
    }
  }

  function storesFor(state, incoming = null) {
    return {
      sessions: new PeerSessionStore(state),
      identity: new PeerIdentityKeyStore(state),
      preKeys: new PeerPreKeyStore(state, incoming),
      signedPreKeys: new PeerSignedPreKeyStore(state, incoming),
      kyberPreKeys: new PeerKyberPreKeyStore(state, incoming),
    };
  }

  // -------------------------------------------------------------------------
  // Operations

  let state = null; // State | null before init

  function requireInit() {
    if (!state) throw requestError('no identity: send "init" first');
    return state;
  }

  // The local address argument of 0.101.0's calls (none before it).
  function localArgs(st) {
    return profile.localAddress ? [ProtocolAddress.new(st.name, st.deviceId)] : [];
  }

  function addressFor(st, name) {
    return ProtocolAddress.new(name, st.deviceIds.get(name) ?? 1);
  }

  // The next id from a counter in 1..=MAX_ID, skipping ids still held.
  function takeId(st, counterField, held) {
    for (;;) {
      const id = st[counterField];
      st[counterField] = id >= MAX_ID ? 1 : id + 1;
      if (!held || !held.has(id)) return id;
    }
  }

  // Runs fn against a copy of the state; the copy becomes live only on success.
  async function transact(fn) {
    const draft = requireInit().clone();
    const result = await fn(draft);
    state = draft;
    return result;
  }

  function newKyberPreKey(st, ikp) {
    const id = takeId(st, 'nextKyberPreKeyId', st.kyberPreKeys);
    const kp = KEMKeyPair.generate();
    const sig = ikp.privateKey.sign(kp.getPublicKey().serialize());
    const rec = KyberPreKeyRecord.new(id, Date.now(), kp, sig);
    st.kyberPreKeys.set(id, toBuf(rec.serialize()));
    return rec;
  }

  const ops = {
    async hello() {
      return { implementation: profile.implementation, protocol: PROTOCOL, versions: profile.versions };
    },

    async init(req) {
      const name = strField(req, 'name');
      if (has(req, 'path') || has(req, 'key')) {
        throw unsupported('this peer keeps its state in memory only (no durable store: "path"/"key")');
      }
      const deviceId = intField(req, 'device_id', { dflt: 1, min: 1, max: 0x7fffffff });
      if (deviceId > profile.maxDeviceId) {
        throw unsupported(`device ids above ${profile.maxDeviceId} are not accepted by this library version`);
      }
      const acceptV3 = boolField(req, 'accept_v3', profile.acceptV3.dflt);
      if (!profile.acceptV3.allowed.includes(acceptV3)) {
        throw unsupported(`accept_v3 ${acceptV3} cannot be honoured: ${profile.acceptV3.why}`);
      }
      const spqr = enumField(req, 'spqr', ['required', 'offered', 'off'], profile.spqr.dflt);
      if (!profile.spqr.allowed.includes(spqr)) {
        throw unsupported(`spqr "${spqr}" cannot be honoured: ${profile.spqr.why}`);
      }
      const s = new State();
      s.name = name;
      s.deviceId = deviceId;
      s.acceptV3 = acceptV3;
      s.spqr = spqr;
      s.registrationId = 1 + crypto.randomInt(16380); // 1..=16380 (14-bit)
      const ikp = IdentityKeyPair.generate();
      s.identityKeyPair = toBuf(ikp.serialize());
      // Start ids at a random point so two inits do not reuse the same ids.
      s.nextPreKeyId = 1 + crypto.randomInt(MAX_ID);
      s.nextSignedPreKeyId = 1 + crypto.randomInt(MAX_ID);
      s.nextKyberPreKeyId = 1 + crypto.randomInt(MAX_ID);
      state = s;
      return { identity_key: hex(ikp.publicKey.serialize()), registration_id: s.registrationId };
    },

    async open() {
      throw unsupported('this peer keeps its state in memory only (no durable store)');
    },

    async bundle(req) {
      const wantOneTime = boolField(req, 'one_time_prekey', true);
      const newSigned = boolField(req, 'new_signed_prekey', false);
      const kyber = enumField(req, 'kyber', ['one_time', 'last_resort', 'none'], 'none');
      return transact(async (st) => {
        const ikp = IdentityKeyPair.deserialize(st.identityKeyPair);
        if (st.currentSignedPreKeyId === null || newSigned) {
          const id = takeId(st, 'nextSignedPreKeyId', st.signedPreKeys);
          const priv = PrivateKey.generate();
          const pub = priv.getPublicKey();
          const sig = ikp.privateKey.sign(pub.serialize());
          const rec = SignedPreKeyRecord.new(id, Date.now(), pub, priv, sig);
          st.signedPreKeys.set(id, toBuf(rec.serialize()));
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
          // Never hand out an id we still hold (only possible after wrapping).
          const id = takeId(st, 'nextPreKeyId', st.preKeys);
          const priv = PrivateKey.generate();
          const pub = priv.getPublicKey();
          st.preKeys.set(id, toBuf(PreKeyRecord.new(id, pub, priv).serialize()));
          out.prekey_id = id;
          out.prekey = hex(pub.serialize());
        }
        let krec = null;
        if (kyber === 'one_time') {
          krec = newKyberPreKey(st, ikp);
        } else if (kyber === 'last_resort') {
          if (st.lastResortKyberId === null) st.lastResortKyberId = newKyberPreKey(st, ikp).id();
          krec = KyberPreKeyRecord.deserialize(st.kyberPreKeys.get(st.lastResortKyberId));
        }
        if (krec) {
          out.kyber_prekey_id = krec.id();
          out.kyber_prekey = hex(krec.publicKey().serialize());
          out.kyber_prekey_signature = hex(krec.signature());
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
      if (has(b, 'prekey') !== has(b, 'prekey_id')) throw requestError('"prekey" and "prekey_id" go together');
      const preKeyId = has(b, 'prekey_id') ? intField(b, 'prekey_id') : null;
      const preKey = has(b, 'prekey') ? publicKeyField(b, 'prekey') : null;
      const kyberFields = ['kyber_prekey_id', 'kyber_prekey', 'kyber_prekey_signature'];
      const kyberCount = kyberFields.filter((f) => has(b, f)).length;
      if (kyberCount !== 0 && kyberCount !== 3) {
        throw requestError(`the Kyber fields (${kyberFields.join(', ')}) go together`);
      }
      let kyberArgs;
      if (kyberCount === 3) {
        kyberArgs = [
          intField(b, 'kyber_prekey_id'),
          kemPublicKeyField(b, 'kyber_prekey'),
          hexField(b, 'kyber_prekey_signature'),
        ];
      } else if (profile.canStartV3) {
        // Without a Kyber prekey the session is message version 3.
        kyberArgs = [null, null, null];
      } else {
        throw unsupported('a bundle without a Kyber prekey would start a version-3 (X3DH) session, '
          + 'which this library version cannot do');
      }
      const bundle = PreKeyBundle.new(
        registrationId, deviceId, preKeyId, preKey,
        signedPreKeyId, signedPreKey, signature, identityKey,
        ...kyberArgs,
      );
      return transact(async (st) => {
        const stores = storesFor(st);
        const address = ProtocolAddress.new(peer, deviceId);
        await processPreKeyBundle(bundle, address, ...localArgs(st), stores.sessions, stores.identity);
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
        const ct = await signalEncrypt(plaintext, address, ...localArgs(st), stores.sessions, stores.identity);
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
        const address = addressFor(st, peer);
        let plaintext;
        if (type === 'prekey') {
          const parsed = parsePreKeyMessage(body);
          const incoming = parsed ? { ...parsed } : null;
          if (incoming && incoming.version === 3 && !st.acceptV3 && profile.emulateRefuseV3) {
            incoming.refuseNewSession = true;
          }
          const stores = storesFor(st, incoming);
          const msg = PreKeySignalMessage.deserialize(body);
          plaintext = await signalDecryptPreKey(
            msg, address, ...localArgs(st), stores.sessions, stores.identity,
            stores.preKeys, stores.signedPreKeys, stores.kyberPreKeys,
          );
        } else {
          const stores = storesFor(st);
          const msg = SignalMessage.deserialize(body);
          plaintext = await signalDecrypt(msg, address, ...localArgs(st), stores.sessions, stores.identity);
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
        st.identities.set(peer, toBuf(key.serialize()));
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

  // -------------------------------------------------------------------------
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
}

module.exports = { run, parsePreKeyMessage, PROTOCOL };

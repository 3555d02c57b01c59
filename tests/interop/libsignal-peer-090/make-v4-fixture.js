#!/usr/bin/env node
// Known-answer fixture for PQXDH (message version 4), recorded from the
// official @signalapp/libsignal-client 0.90.0:
//
//   node tests/interop/libsignal-peer-090/make-v4-fixture.js           verify the file (default)
//   node tests/interop/libsignal-peer-090/make-v4-fixture.js --write   record a new file
//
// Key generation and encryption are randomized, so every --write gives a new
// (equally valid) file: regenerate it only on purpose. The default mode
// rebuilds Bob from the recorded material with 0.90.0 and decrypts every
// recorded message again, without writing.
//
// The reply exchange needs a version-4 initiator without SPQR, so that every
// message of it can be checked without SPQR: that initiator is 0.72.1, loaded
// from ../libsignal-peer (run `npm ci` there too).
//
// Output: tests/vectors/libsignal_v4_fixture.json. All byte strings are
// lowercase hex; public keys are 33 bytes (0x05 || x), private keys 32 bytes;
// Kyber keys carry their 0x08 type byte. Shape:
//
// {
//   "note": str,
//   "generator": { "library": "@signalapp/libsignal-client", "version": "0.90.0",
//                  "reply_initiator_version": "0.72.1", "node": str },
//   "bob": {                                   // the responder (0.90.0)
//     "name": "bob", "device_id": 1, "registration_id": int,
//     "identity_private_key": hex32, "identity_public_key": hex33,
//     "signed_prekey": { "id": int, "timestamp": int, "private_key": hex32,
//                        "public_key": hex33, "signature": hex64 },
//     "one_time_prekeys": [ { "id": int, "private_key": hex32, "public_key": hex33 } ],
//     "kyber_prekeys": [ { "id": int, "last_resort": bool, "timestamp": int,
//                          "secret_key": hex3169, "public_key": hex1569,
//                          "signature": hex64,        // XEdDSA(identity, public_key incl. 0x08)
//                          "record": hex } ]          // libsignal's serialized KyberPreKeyRecord
//                                                     // (libsignal-private layout; used by --check)
//   },
//   "alice": { "name": "alice", "device_id": 1, "identity_public_key": hex33,
//              "registration_id": int, "library": "0.90.0" },
//   "conversations": [                         // Alice (0.90.0) -> Bob, before Bob answers
//     { "name": "one_time" | "last_resort", "description": str,
//       "bundle": { "prekey_id": int | null, "signed_prekey_id": int, "kyber_prekey_id": int },
//       "base_key": hex33, "kyber_pre_key_id": int, "kyber_ciphertext": hex1569,
//       "messages": [ { "type": "prekey", "counter": int, "body": hex, "plaintext": hex } ] }
//   ],
//   "reply_exchange": {                        // Alice (0.72.1, no SPQR) <-> Bob (0.90.0)
//     "description": str,
//     "alice": { "name": "alice", "device_id": 1, "identity_public_key": hex33,
//                "registration_id": int, "library": "0.72.1" },
//     "bundle": { "prekey_id": int, "signed_prekey_id": int, "kyber_prekey_id": int },
//     "messages": [                            // in order: alice->bob prekey, bob->alice
//       { "from": "alice" | "bob", "type": "prekey" | "whisper",   // whisper, alice->bob whisper
//         "counter": int, "ratchet_key": hex33, "body": hex, "plaintext": hex } ],
//     "bob_reply_ratchet_private_key": hex32,  // Bob's sending ratchet key for his reply
//     "bob_session_after_reply": hex           // Bob's serialized SessionRecord right after
//                                              // replying (libsignal-private; used by --check)
//   }
// }
//
// Every message of the conversations is a PreKeySignalMessage with version
// byte 0x44 and fields 7 (kyber_pre_key_id) and 8 (kyber_ciphertext); within a
// conversation all repeat the same base key, prekey ids and Kyber ciphertext,
// and counters run 0, 1, 2, ... 0.90.0 Alice offers SPQR, so her inner
// SignalMessages carry field 5 (pq_ratchet) with SPQR index 0: their message
// keys are not salted, and a receiver without SPQR ignores the field. In the
// reply exchange no message carries field 5 (Bob falls back to no SPQR);
// Alice's answer is on a new sending chain (a DH ratchet step after Bob's
// reply).

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as L90 from '@signalapp/libsignal-client';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, '..', '..', 'vectors', 'libsignal_v4_fixture.json');
const require = createRequire(import.meta.url);
const V90 = require('@signalapp/libsignal-client/package.json').version;
const require072 = createRequire(path.join(HERE, '..', 'libsignal-peer', 'package.json'));

function load072() {
  let L72;
  try {
    L72 = require072('@signalapp/libsignal-client');
  } catch (e) {
    throw new Error(`cannot load libsignal-client 0.72.1 from ../libsignal-peer (run npm ci there): ${e.message}`);
  }
  const v = require072('@signalapp/libsignal-client/package.json').version;
  if (v !== '0.72.1') throw new Error(`expected libsignal-client 0.72.1 in ../libsignal-peer, found ${v}`);
  return L72;
}

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (h) => Buffer.from(h, 'hex');

// --- a minimal protobuf reader (varint and length-delimited fields) ----------

function readVarint(buf, i) {
  let value = 0;
  let mul = 1;
  for (;;) {
    const b = buf[i];
    if (b === undefined) throw new Error('truncated varint');
    i += 1;
    value += (b & 0x7f) * mul;
    mul *= 128;
    if (!(b & 0x80)) return [value, i];
  }
}

// field number -> list of values (numbers or Buffers)
function pb(buf) {
  const out = new Map();
  let i = 0;
  while (i < buf.length) {
    const [key, j] = readVarint(buf, i);
    const num = Math.floor(key / 8);
    const wt = key % 8;
    let value;
    if (wt === 0) {
      [value, i] = readVarint(buf, j);
    } else if (wt === 2) {
      const [n, k] = readVarint(buf, j);
      value = buf.subarray(k, k + n);
      i = k + n;
    } else {
      throw new Error(`unsupported wire type ${wt}`);
    }
    if (!out.has(num)) out.set(num, []);
    out.get(num).push(value);
  }
  return out;
}
const first = (m, n) => (m.has(n) ? m.get(n)[0] : undefined);

function parseSignalMessage(body) {
  const f = pb(body.subarray(1, body.length - 8));
  return {
    version: body[0],
    ratchetKey: Buffer.from(first(f, 1)),
    counter: first(f, 2) ?? 0,
    hasPq: f.has(5),
  };
}

function parsePreKeyMessage(body) {
  const f = pb(body.subarray(1));
  return {
    version: body[0],
    preKeyId: first(f, 1) ?? null,
    baseKey: Buffer.from(first(f, 2)),
    signedPreKeyId: first(f, 6),
    kyberPreKeyId: first(f, 7),
    kyberCiphertext: first(f, 8) ? Buffer.from(first(f, 8)) : undefined,
    inner: parseSignalMessage(Buffer.from(first(f, 4))),
  };
}

// Bob's sending ratchet private key from a serialized SessionRecord:
// RecordStructure.current_session (1) -> SessionStructure.sender_chain (6)
// -> Chain.sender_ratchet_key_private (2). Test data only; the layout is the
// library's own.
function senderRatchetPrivate(recordBytes) {
  const session = first(pb(Buffer.from(recordBytes)), 1);
  const chain = first(pb(session), 6);
  return Buffer.from(first(pb(chain), 2));
}

// --- in-memory stores over either library --------------------------------------

function makeStores(L, who) {
  const m = { sessions: new Map(), ids: new Map(), pre: new Map(), spk: new Map(), kyber: new Map() };
  const key = (a) => `${a.name()}.${a.deviceId()}`;
  class S extends L.SessionStore {
    async saveSession(a, r) { m.sessions.set(key(a), Buffer.from(r.serialize())); }
    async getSession(a) { const b = m.sessions.get(key(a)); return b ? L.SessionRecord.deserialize(b) : null; }
    async getExistingSessions(as) { return as.map((a) => L.SessionRecord.deserialize(m.sessions.get(key(a)))); }
  }
  class I extends L.IdentityKeyStore {
    async getIdentityKey() { return who.identity.privateKey; }
    async getLocalRegistrationId() { return who.registrationId; }
    async saveIdentity(a, k) { m.ids.set(a.name(), k); return L.IdentityChange.NewOrUnchanged; }
    async isTrustedIdentity() { return true; }
    async getIdentity(a) { return m.ids.get(a.name()) ?? null; }
  }
  class P extends L.PreKeyStore {
    async savePreKey(id, r) { m.pre.set(id, r); }
    async getPreKey(id) { const r = m.pre.get(id); if (!r) throw new Error(`no prekey ${id}`); return r; }
    async removePreKey(id) { m.pre.delete(id); }
  }
  class SP extends L.SignedPreKeyStore {
    async saveSignedPreKey(id, r) { m.spk.set(id, r); }
    async getSignedPreKey(id) { const r = m.spk.get(id); if (!r) throw new Error(`no signed prekey ${id}`); return r; }
  }
  class K extends L.KyberPreKeyStore {
    async saveKyberPreKey(id, r) { m.kyber.set(id, r); }
    async getKyberPreKey(id) { const r = m.kyber.get(id); if (!r) throw new Error(`no kyber prekey ${id}`); return r; }
    async markKyberPreKeyUsed(id) { if (!who.lastResort || !who.lastResort.has(id)) m.kyber.delete(id); }
  }
  return { mem: m, s: new S(), i: new I(), p: new P(), sp: new SP(), k: new K() };
}

const ADDR = (L, name) => L.ProtocolAddress.new(name, 1);

async function decryptAtBob(bob, fromName, type, body) {
  const addr = ADDR(L90, fromName);
  const st = bob.stores;
  if (type === 'prekey') {
    return Buffer.from(await L90.signalDecryptPreKey(
      L90.PreKeySignalMessage.deserialize(body), addr, st.s, st.i, st.p, st.sp, st.k,
    ));
  }
  return Buffer.from(await L90.signalDecrypt(L90.SignalMessage.deserialize(body), addr, st.s, st.i));
}

// --- Bob ---------------------------------------------------------------------

const IDS = { signed: 22, oneTimeA: 101, oneTimeB: 102, kyberOneTime: 301, kyberLastResort: 302, kyberReply: 303 };
const TS = 1700000000000; // fixed record timestamps (ms)

function newBob() {
  const identity = L90.IdentityKeyPair.generate();
  const bob = { name: 'bob', registrationId: 4242, identity, lastResort: new Set([IDS.kyberLastResort]) };
  const spkPriv = L90.PrivateKey.generate();
  const spkSig = identity.privateKey.sign(spkPriv.getPublicKey().serialize());
  bob.signed = L90.SignedPreKeyRecord.new(IDS.signed, TS, spkPriv.getPublicKey(), spkPriv, spkSig);
  bob.oneTime = [IDS.oneTimeA, IDS.oneTimeB].map((id) => {
    const k = L90.PrivateKey.generate();
    return L90.PreKeyRecord.new(id, k.getPublicKey(), k);
  });
  bob.kyber = [IDS.kyberOneTime, IDS.kyberLastResort, IDS.kyberReply].map((id) => {
    const kp = L90.KEMKeyPair.generate();
    return L90.KyberPreKeyRecord.new(id, TS, kp, identity.privateKey.sign(kp.getPublicKey().serialize()));
  });
  return bob;
}

function bobFromFixture(doc) {
  const b = doc.bob;
  const priv = L90.PrivateKey.deserialize(unhex(b.identity_private_key));
  const identity = new L90.IdentityKeyPair(priv.getPublicKey(), priv);
  const bob = { name: b.name, registrationId: b.registration_id, identity };
  const s = b.signed_prekey;
  bob.signed = L90.SignedPreKeyRecord.new(s.id, s.timestamp, L90.PublicKey.deserialize(unhex(s.public_key)),
    L90.PrivateKey.deserialize(unhex(s.private_key)), unhex(s.signature));
  bob.oneTime = b.one_time_prekeys.map((p) => L90.PreKeyRecord.new(p.id,
    L90.PublicKey.deserialize(unhex(p.public_key)), L90.PrivateKey.deserialize(unhex(p.private_key))));
  bob.kyber = b.kyber_prekeys.map((k) => L90.KyberPreKeyRecord.deserialize(unhex(k.record)));
  bob.lastResort = new Set(b.kyber_prekeys.filter((k) => k.last_resort).map((k) => k.id));
  return bob;
}

function installBob(bob) {
  bob.stores = makeStores(L90, bob);
  const m = bob.stores.mem;
  m.spk.set(bob.signed.id(), bob.signed);
  for (const r of bob.oneTime) m.pre.set(r.id(), r);
  for (const r of bob.kyber) m.kyber.set(r.id(), r);
}

function bundleFor(L, bob, preKeyId, kyberId) {
  const pre = preKeyId === null ? null : bob.oneTime.find((r) => r.id() === preKeyId);
  const k = bob.kyber.find((r) => r.id() === kyberId);
  const pub = (bytes) => L.PublicKey.deserialize(Buffer.from(bytes));
  return L.PreKeyBundle.new(
    bob.registrationId, 1,
    pre ? pre.id() : null, pre ? pub(pre.publicKey().serialize()) : null,
    bob.signed.id(), pub(bob.signed.publicKey().serialize()), Buffer.from(bob.signed.signature()),
    pub(bob.identity.publicKey.serialize()),
    k.id(), L.KEMPublicKey.deserialize(Buffer.from(k.publicKey().serialize())), Buffer.from(k.signature()),
  );
}

function newAlice(L, library) {
  return { name: 'alice', registrationId: library === '0.90.0' ? 1717 : 1818, identity: L.IdentityKeyPair.generate(), library };
}

function plaintexts(label, n) {
  const out = [];
  for (let i = 0; i < n; i += 1) {
    let p;
    if (i === 2) p = Buffer.alloc(0);
    else if (i === 3) p = Buffer.from(Array.from({ length: 200 }, (_, j) => (j * 31 + 7) & 0xff));
    else p = Buffer.from(`${label} message ${i}: hello bob`, 'utf8');
    out.push(p);
  }
  return out;
}

// --- recording ---------------------------------------------------------------------

async function recordConversation(bob, alice, name, preKeyId, kyberId, count, description) {
  const st = makeStores(L90, alice);
  await L90.processPreKeyBundle(bundleFor(L90, bob, preKeyId, kyberId), ADDR(L90, 'bob'), st.s, st.i);
  const messages = [];
  for (const pt of plaintexts(name, count)) {
    const ct = await L90.signalEncrypt(pt, ADDR(L90, 'bob'), st.s, st.i);
    if (ct.type() !== L90.CiphertextMessageType.PreKey) throw new Error(`${name}: not a prekey message`);
    const body = Buffer.from(ct.serialize());
    messages.push({ type: 'prekey', counter: parsePreKeyMessage(body).inner.counter, body: hex(body), plaintext: hex(pt) });
  }
  // Bob decrypts them all before answering (they must decrypt in order).
  for (const m of messages) {
    const pt = await decryptAtBob(bob, 'alice', m.type, unhex(m.body));
    if (hex(pt) !== m.plaintext) throw new Error(`${name}: plaintext mismatch at Bob`);
  }
  const p0 = parsePreKeyMessage(unhex(messages[0].body));
  return {
    name,
    description,
    bundle: { prekey_id: preKeyId, signed_prekey_id: bob.signed.id(), kyber_prekey_id: kyberId },
    base_key: hex(p0.baseKey),
    kyber_pre_key_id: p0.kyberPreKeyId,
    kyber_ciphertext: hex(p0.kyberCiphertext),
    messages,
  };
}

async function recordReply(bob, L72) {
  const alice = newAlice(L72, '0.72.1');
  const st = makeStores(L72, alice);
  await L72.processPreKeyBundle(bundleFor(L72, bob, IDS.oneTimeB, IDS.kyberReply), ADDR(L72, 'bob'), st.s, st.i);
  const messages = [];
  const push = (from, type, body, pt) => {
    const inner = type === 'prekey' ? parsePreKeyMessage(body).inner : parseSignalMessage(body);
    messages.push({ from, type, counter: inner.counter, ratchet_key: hex(inner.ratchetKey), body: hex(body), plaintext: hex(pt) });
  };
  // alice -> bob (prekey)
  const pt1 = Buffer.from('reply exchange: alice to bob, first message', 'utf8');
  const m1 = Buffer.from((await L72.signalEncrypt(pt1, ADDR(L72, 'bob'), st.s, st.i)).serialize());
  push('alice', 'prekey', m1, pt1);
  if (hex(await decryptAtBob(bob, 'alice', 'prekey', m1)) !== hex(pt1)) throw new Error('reply: first message');
  // bob -> alice (whisper)
  const pt2 = Buffer.from('reply exchange: bob answers alice', 'utf8');
  const bst = bob.stores;
  const c2 = await L90.signalEncrypt(pt2, ADDR(L90, 'alice'), bst.s, bst.i);
  if (c2.type() !== L90.CiphertextMessageType.Whisper) throw new Error('reply: Bob did not send a whisper message');
  const m2 = Buffer.from(c2.serialize());
  push('bob', 'whisper', m2, pt2);
  const bobRecord = bst.mem.sessions.get('alice.1');
  const ratchetPriv = senderRatchetPrivate(bobRecord);
  const got = L72.signalDecrypt(L72.SignalMessage.deserialize(m2), ADDR(L72, 'bob'), st.s, st.i);
  if (hex(await got) !== hex(pt2)) throw new Error('reply: Alice could not read Bob\'s reply');
  // alice -> bob (whisper, after her DH ratchet step)
  const pt3 = Buffer.from('reply exchange: alice answers after the DH turn', 'utf8');
  const c3 = await L72.signalEncrypt(pt3, ADDR(L72, 'bob'), st.s, st.i);
  if (c3.type() !== L72.CiphertextMessageType.Whisper) throw new Error('reply: Alice did not send a whisper message');
  const m3 = Buffer.from(c3.serialize());
  push('alice', 'whisper', m3, pt3);
  if (hex(await decryptAtBob(bob, 'alice', 'whisper', m3)) !== hex(pt3)) throw new Error('reply: answer');
  return {
    description: 'Alice (libsignal-client 0.72.1: PQXDH without SPQR) starts a session with Bob (0.90.0) using the '
      + 'one-time prekey and the one-time Kyber prekey named in `bundle`; Bob replies once; Alice answers on a new '
      + 'sending chain (her DH ratchet step). Bob falls back to no SPQR, so no message carries field 5 and every '
      + 'message key is unsalted. bob_reply_ratchet_private_key is the private half of the ratchet key in Bob\'s '
      + 'reply (needed to decrypt Alice\'s answer as Bob).',
    alice: { name: 'alice', device_id: 1, identity_public_key: hex(alice.identity.publicKey.serialize()),
      registration_id: alice.registrationId, library: '0.72.1' },
    bundle: { prekey_id: IDS.oneTimeB, signed_prekey_id: bob.signed.id(), kyber_prekey_id: IDS.kyberReply },
    messages,
    bob_reply_ratchet_private_key: hex(ratchetPriv),
    bob_session_after_reply: hex(bobRecord),
  };
}

async function build() {
  if (V90 !== '0.90.0') throw new Error(`expected libsignal-client 0.90.0, found ${V90}`);
  const L72 = load072();
  const bob = newBob();
  installBob(bob);
  const alice = newAlice(L90, '0.90.0');
  const conversations = [
    await recordConversation(bob, alice, 'one_time', IDS.oneTimeA, IDS.kyberOneTime, 5,
      'Alice used the one-time prekey and the one-time Kyber prekey named in `bundle`. All messages were sent '
      + 'before Bob answered, so all are PreKeySignalMessages repeating one base key and one Kyber ciphertext.'),
    await recordConversation(bob, alice, 'last_resort', null, IDS.kyberLastResort, 4,
      'A second session from Alice (a new base key): no one-time prekey, the last-resort Kyber prekey. '
      + 'Independent of the first conversation (Bob\'s prekeys named here are not used by it).'),
  ];
  const reply = await recordReply(bob, L72);
  const b = bob;
  return {
    note: 'Generated by `node make-v4-fixture.js --write` (tests/interop/libsignal-peer-090) with '
      + '@signalapp/libsignal-client 0.90.0 (and 0.72.1 for the reply exchange\'s initiator). Keys and messages are '
      + 'random and were captured once; `node make-v4-fixture.js` re-verifies the file with 0.90.0. '
      + 'All byte strings are lowercase hex. The shape is documented at the top of the script.',
    generator: { library: '@signalapp/libsignal-client', version: V90, reply_initiator_version: '0.72.1', node: process.version },
    bob: {
      name: 'bob',
      device_id: 1,
      registration_id: b.registrationId,
      identity_private_key: hex(b.identity.privateKey.serialize()),
      identity_public_key: hex(b.identity.publicKey.serialize()),
      signed_prekey: {
        id: b.signed.id(),
        timestamp: b.signed.timestamp(),
        private_key: hex(b.signed.privateKey().serialize()),
        public_key: hex(b.signed.publicKey().serialize()),
        signature: hex(b.signed.signature()),
      },
      one_time_prekeys: b.oneTime.map((r) => ({
        id: r.id(), private_key: hex(r.privateKey().serialize()), public_key: hex(r.publicKey().serialize()),
      })),
      kyber_prekeys: b.kyber.map((r) => ({
        id: r.id(),
        last_resort: b.lastResort.has(r.id()),
        timestamp: r.timestamp(),
        secret_key: hex(r.secretKey().serialize()),
        public_key: hex(r.publicKey().serialize()),
        signature: hex(r.signature()),
        record: hex(r.serialize()),
      })),
    },
    alice: { name: 'alice', device_id: 1, identity_public_key: hex(alice.identity.publicKey.serialize()),
      registration_id: alice.registrationId, library: '0.90.0' },
    conversations,
    reply_exchange: reply,
  };
}

// Structural checks that hold for any recording, then a fresh 0.90.0 Bob
// rebuilt from the file decrypts every recorded message.
async function verify(doc) {
  const problems = [];
  const expect = (cond, what) => { if (!cond) problems.push(what); };
  const b = doc.bob;
  const idPriv = L90.PrivateKey.deserialize(unhex(b.identity_private_key));
  expect(hex(idPriv.getPublicKey().serialize()) === b.identity_public_key, 'bob identity public key');
  const idPub = idPriv.getPublicKey();
  const s = b.signed_prekey;
  expect(hex(L90.PrivateKey.deserialize(unhex(s.private_key)).getPublicKey().serialize()) === s.public_key, 'signed prekey pair');
  expect(idPub.verify(unhex(s.public_key), unhex(s.signature)), 'signed prekey signature');
  for (const p of b.one_time_prekeys) {
    expect(hex(L90.PrivateKey.deserialize(unhex(p.private_key)).getPublicKey().serialize()) === p.public_key, `prekey ${p.id}`);
  }
  for (const k of b.kyber_prekeys) {
    const rec = L90.KyberPreKeyRecord.deserialize(unhex(k.record));
    expect(rec.id() === k.id, `kyber ${k.id}: record id`);
    expect(hex(rec.secretKey().serialize()) === k.secret_key && unhex(k.secret_key).length === 3169
      && unhex(k.secret_key)[0] === 0x08, `kyber ${k.id}: secret key`);
    expect(hex(rec.publicKey().serialize()) === k.public_key && unhex(k.public_key).length === 1569, `kyber ${k.id}: public key`);
    expect(idPub.verify(unhex(k.public_key), unhex(k.signature)), `kyber ${k.id}: signature over the 1569-byte key`);
    expect(!idPub.verify(unhex(k.public_key).subarray(1), unhex(k.signature)), `kyber ${k.id}: signature also verifies without the type byte`);
  }
  const bob = bobFromFixture(doc);
  installBob(bob);
  for (const c of doc.conversations) {
    const infos = c.messages.map((m) => parsePreKeyMessage(unhex(m.body)));
    infos.forEach((inf, i) => {
      expect(inf.version === 0x44 && inf.inner.version === 0x44, `${c.name} #${i}: version byte`);
      expect(inf.kyberPreKeyId === c.kyber_pre_key_id && hex(inf.kyberCiphertext) === c.kyber_ciphertext
        && inf.kyberCiphertext.length === 1569, `${c.name} #${i}: Kyber fields`);
      expect(hex(inf.baseKey) === c.base_key, `${c.name} #${i}: base key`);
      expect(inf.preKeyId === c.bundle.prekey_id && inf.signedPreKeyId === c.bundle.signed_prekey_id, `${c.name} #${i}: prekey ids`);
      expect(inf.inner.counter === i && c.messages[i].counter === i, `${c.name} #${i}: counter`);
    });
    for (const [i, m] of c.messages.entries()) {
      try {
        const pt = await decryptAtBob(bob, doc.alice.name, m.type, unhex(m.body));
        expect(hex(pt) === m.plaintext, `${c.name} #${i}: plaintext`);
      } catch (e) {
        problems.push(`${c.name} #${i}: ${e.message}`);
      }
    }
    // the next conversation is a new session from the same Alice
    bob.stores.mem.sessions.delete(`${doc.alice.name}.1`);
  }
  const r = doc.reply_exchange;
  const [m1, m2, m3] = r.messages;
  expect(r.messages.length === 3 && m1.type === 'prekey' && m2.type === 'whisper' && m3.type === 'whisper', 'reply: message types');
  bob.stores.mem.ids.delete('alice');
  try {
    expect(hex(await decryptAtBob(bob, 'alice', 'prekey', unhex(m1.body))) === m1.plaintext, 'reply: first message plaintext');
  } catch (e) {
    problems.push(`reply: first message: ${e.message}`);
  }
  const ratchetPub = hex(L90.PrivateKey.deserialize(unhex(r.bob_reply_ratchet_private_key)).getPublicKey().serialize());
  expect(ratchetPub === m2.ratchet_key && hex(parseSignalMessage(unhex(m2.body)).ratchetKey) === m2.ratchet_key,
    'reply: bob_reply_ratchet_private_key does not match the ratchet key of Bob\'s reply');
  expect(m3.ratchet_key !== m1.ratchet_key, 'reply: Alice\'s answer is not on a new sending chain');
  for (const m of r.messages) {
    const inner = m.type === 'prekey' ? parsePreKeyMessage(unhex(m.body)).inner : parseSignalMessage(unhex(m.body));
    expect(!inner.hasPq, `reply: a ${m.from} message carries field 5 (pq_ratchet)`);
  }
  bob.stores.mem.sessions.set('alice.1', unhex(r.bob_session_after_reply));
  try {
    expect(hex(await decryptAtBob(bob, 'alice', 'whisper', unhex(m3.body))) === m3.plaintext, 'reply: answer plaintext');
  } catch (e) {
    problems.push(`reply: answer: ${e.message}`);
  }
  return problems;
}

async function main() {
  if (process.argv.includes('--write')) {
    const doc = await build();
    const problems = await verify(doc);
    if (problems.length) throw new Error(`fresh recording does not verify: ${problems.join('; ')}`);
    fs.mkdirSync(path.dirname(OUT), { recursive: true });
    fs.writeFileSync(OUT, `${JSON.stringify(doc, null, 2)}\n`);
    console.log(`wrote ${path.relative(process.cwd(), OUT)}`);
    return;
  }
  if (V90 !== '0.90.0') throw new Error(`expected libsignal-client 0.90.0, found ${V90}`);
  const doc = JSON.parse(fs.readFileSync(OUT, 'utf8'));
  const problems = await verify(doc);
  if (problems.length) {
    for (const p of problems) console.error(`MISMATCH ${p}`);
    process.exit(1);
  }
  const n = doc.conversations.reduce((a, c) => a + c.messages.length, 0) + doc.reply_exchange.messages.length;
  console.log(`${path.relative(process.cwd(), OUT)}: ${n} messages verified with libsignal-client ${V90}`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});

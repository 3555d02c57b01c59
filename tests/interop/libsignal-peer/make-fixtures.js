#!/usr/bin/env node
// Writes tests/vectors/libsignal_fixtures.json: test vectors produced by the
// official @signalapp/libsignal-client 0.72.1 from fixed key material.
//
//   node tests/interop/libsignal-peer/make-fixtures.js          (re)write the file
//   node tests/interop/libsignal-peer/make-fixtures.js --check  verify the file
//
// Fingerprints are deterministic. XEdDSA signatures are randomized, so each
// run writes new (equally valid) signatures; --check recomputes everything
// deterministic, verifies every signature with libsignal and compares the
// `valid` flags, without writing.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { PrivateKey, PublicKey, Fingerprint, ScannableFingerprint } = require('@signalapp/libsignal-client');

const OUT = path.join(__dirname, '..', '..', 'vectors', 'libsignal_fixtures.json');
const LIB_VERSION = require('@signalapp/libsignal-client/package.json').version;

// Fixed private keys (32 bytes). alice and bob are already clamped; carol
// and dave are given unclamped so that a reader can check that clamping is
// applied (libsignal's PrivateKey.deserialize clamps; serialize() returns
// the clamped bytes, recorded as private_key_clamped).
const PRIVATE_KEYS = {
  alice: '60cb329d9a6c563cb2cdb9fad1e48adcb141e4a3ffc1c49f13626272a1eb5d70',
  bob: 'f07940ca330424493161a5b45d8d3b4db2725570ad1eecc6a948870a7590ce67',
  carol: 'c2831580989474d81e8ee08188019d6fab9da576a8ac6376438a48eb873d1752',
  dave: '4b4064999c4f47806328ecd120cd80020a18e6cd230c5cc45dcf4340789c5fdc',
};

const hex = (b) => Buffer.from(b).toString('hex');
const unhex = (h) => Buffer.from(h, 'hex');

function keyInfo(name) {
  const priv = PrivateKey.deserialize(unhex(PRIVATE_KEYS[name]));
  return {
    name,
    private_key: PRIVATE_KEYS[name],
    private_key_clamped: hex(priv.serialize()),
    public_key: hex(priv.getPublicKey().serialize()),
    priv,
    pub: priv.getPublicKey(),
  };
}

const KEYS = Object.fromEntries(Object.keys(PRIVATE_KEYS).map((n) => [n, keyInfo(n)]));

// --- fingerprints -----------------------------------------------------------

const PHONE = { alice: '+14152222222', bob: '+14153333333' };
const UUID = {
  // 16-byte service ids (raw UUID bytes)
  alice: '9d0652a3dcc34d11975f74d61598733f',
  bob: 'c3f5a1e2b7d84f6a8e0c1d2b3a495867',
};

const FINGERPRINT_CASES = [
  { case: 'v1-phone-5200', version: 1, iterations: 5200, ids: { alice: hex(Buffer.from(PHONE.alice, 'utf8')), bob: hex(Buffer.from(PHONE.bob, 'utf8')) }, text: PHONE },
  { case: 'v2-uuid-5200', version: 2, iterations: 5200, ids: UUID },
  { case: 'v2-uuid-1024', version: 2, iterations: 1024, ids: UUID },
];

function fingerprintVectors() {
  const out = [];
  for (const c of FINGERPRINT_CASES) {
    const sides = {};
    for (const [local, remote] of [['alice', 'bob'], ['bob', 'alice']]) {
      const fp = Fingerprint.new(
        c.iterations, c.version,
        unhex(c.ids[local]), KEYS[local].pub,
        unhex(c.ids[remote]), KEYS[remote].pub,
      );
      const v = {
        case: c.case,
        view: local, // whose point of view: local = this side
        version: c.version,
        iterations: c.iterations,
        local_id: c.ids[local],
        local_identity_key: KEYS[local].public_key,
        remote_id: c.ids[remote],
        remote_identity_key: KEYS[remote].public_key,
        displayable: fp.displayableFingerprint().toString(),
        scannable: hex(fp.scannableFingerprint().toBuffer()),
      };
      if (c.text) {
        v.local_id_text = c.text[local];
        v.remote_id_text = c.text[remote];
      }
      sides[local] = v;
      out.push(v);
    }
    // Sanity: both sides agree, and each side's scannable matches the other.
    if (sides.alice.displayable !== sides.bob.displayable) throw new Error(`${c.case}: displayables differ`);
    const sa = ScannableFingerprint._fromBuffer(unhex(sides.alice.scannable));
    const sb = ScannableFingerprint._fromBuffer(unhex(sides.bob.scannable));
    if (!sa.compare(sb) || !sb.compare(sa)) throw new Error(`${c.case}: scannables do not match`);
    if (sa.compare(sa)) throw new Error(`${c.case}: scannable matches itself`);
  }
  return out;
}

// --- XEdDSA -------------------------------------------------------------------

function xeddsaMessages() {
  const long = Buffer.alloc(200);
  for (let i = 0; i < long.length; i += 1) long[i] = (i * 7 + 3) & 0xff;
  return [
    { signer: 'alice', label: 'empty message', message: Buffer.alloc(0) },
    { signer: 'alice', label: 'a 33-byte public key (bob\'s), as in a signed prekey', message: KEYS.bob.pub.serialize() },
    { signer: 'bob', label: 'a 33-byte public key (carol\'s), as in a signed prekey', message: KEYS.carol.pub.serialize() },
    { signer: 'bob', label: 'ascii text', message: Buffer.from('ratchetkit xeddsa fixture', 'utf8') },
    { signer: 'carol', label: 'unclamped private key input, 33-byte public key message', message: KEYS.dave.pub.serialize() },
    { signer: 'dave', label: 'key whose Edwards sign bit is 0', message: Buffer.from('hello', 'utf8') },
    { signer: 'dave', label: '200 bytes', message: long },
  ];
}

function signVectors() {
  const valid = xeddsaMessages().map((m) => {
    const k = KEYS[m.signer];
    const sig = k.priv.sign(m.message);
    if (!k.pub.verify(m.message, sig)) throw new Error('libsignal rejected its own signature');
    return {
      label: m.label,
      signer: m.signer,
      private_key: k.private_key,
      private_key_clamped: k.private_key_clamped,
      public_key: k.public_key,
      message: hex(m.message),
      signature: hex(sig),
      valid: true,
    };
  });
  return valid.concat(tamperedVectors(valid));
}

// Negative vectors derived from the valid ones; `valid` is what libsignal's
// PublicKey.verify answers.
function tamperedVectors(valid) {
  const out = [];
  const base = valid[1]; // alice over bob's public key
  const mk = (label, fields) => {
    const v = { ...base, label, ...fields };
    v.valid = PublicKey.deserialize(unhex(v.public_key)).verify(unhex(v.message), unhex(v.signature));
    return v;
  };
  const sig = unhex(base.signature);
  const flip = (i, mask) => { const s = Buffer.from(sig); s[i] ^= mask; return hex(s); };
  out.push(mk('tampered: bit flipped in R', { signature: flip(3, 0x10) }));
  out.push(mk('tampered: bit flipped in s', { signature: flip(40, 0x01) }));
  out.push(mk('tampered: sign bit (top bit of byte 63) flipped', { signature: flip(63, 0x80) }));
  out.push(mk('tampered: s has bit 0x20 of byte 63 set (s[31] & 0xE0 != 0)', { signature: flip(63, 0x20) }));
  const msg = unhex(base.message);
  msg[10] ^= 0x01;
  out.push(mk('tampered: message changed (bit flipped in byte 10)', { message: hex(msg) }));
  out.push(mk('wrong public key (bob\'s)', { public_key: KEYS.bob.public_key }));
  out.push(mk('truncated signature (63 bytes)', { signature: base.signature.slice(0, 126) }));
  for (const v of out) {
    if (v.valid) throw new Error(`unexpectedly valid: ${v.label}`);
    delete v.private_key;
    delete v.private_key_clamped;
    delete v.signer;
  }
  return out;
}

// --- document -------------------------------------------------------------------

function build() {
  if (LIB_VERSION !== '0.72.1') throw new Error(`expected libsignal-client 0.72.1, found ${LIB_VERSION}`);
  return {
    note: 'Generated by `node make-fixtures.js` (tests/interop/libsignal-peer) with @signalapp/libsignal-client 0.72.1 '
      + 'from the fixed private keys below. Fingerprints are deterministic; XEdDSA signatures are randomized and were '
      + 'captured once (`node make-fixtures.js --check` re-verifies them). All byte strings are lowercase hex.',
    generator: { library: '@signalapp/libsignal-client', version: LIB_VERSION, node: process.version },
    keys: Object.values(KEYS).map(({ name, private_key, private_key_clamped, public_key }) => ({
      name, private_key, private_key_clamped, public_key,
    })),
    fingerprints: fingerprintVectors(),
    xeddsa: signVectors(),
  };
}

function check() {
  const doc = JSON.parse(fs.readFileSync(OUT, 'utf8'));
  const fresh = build();
  const problems = [];
  if (JSON.stringify(doc.keys) !== JSON.stringify(fresh.keys)) problems.push('keys differ');
  if (JSON.stringify(doc.fingerprints) !== JSON.stringify(fresh.fingerprints)) problems.push('fingerprints differ');
  for (const v of doc.xeddsa) {
    let ok;
    try {
      ok = PublicKey.deserialize(unhex(v.public_key)).verify(unhex(v.message), unhex(v.signature));
    } catch (e) {
      ok = false;
    }
    if (ok !== v.valid) problems.push(`xeddsa "${v.label}": libsignal says ${ok}, file says ${v.valid}`);
    if (v.private_key && hex(PrivateKey.deserialize(unhex(v.private_key)).getPublicKey().serialize()) !== v.public_key) {
      problems.push(`xeddsa "${v.label}": public key does not match private key`);
    }
  }
  if (problems.length) {
    for (const p of problems) console.error(`MISMATCH ${p}`);
    process.exit(1);
  }
  console.log(`${OUT}: ${doc.fingerprints.length} fingerprint and ${doc.xeddsa.length} xeddsa vectors verified`);
}

if (process.argv.includes('--check')) {
  check();
} else {
  const doc = build();
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  fs.writeFileSync(OUT, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`wrote ${OUT}: ${doc.fingerprints.length} fingerprint and ${doc.xeddsa.length} xeddsa vectors`);
}

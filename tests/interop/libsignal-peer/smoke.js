#!/usr/bin/env node
// Smoke test for peer.js: starts two peers (alice and bob), relays messages
// between them and checks the answers, including the error kinds.
// Prints one line per check, then "N passed, N failed", then OK when all
// passed. Exits non-zero on any failure.
//
//   node tests/interop/libsignal-peer/smoke.js

'use strict';

const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const crypto = require('node:crypto');

const PEER = path.join(__dirname, 'peer.js');

class Peer {
  constructor(label) {
    this.label = label;
    this.proc = spawn(process.execPath, [PEER], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.waiting = [];
    this.extraLines = [];
    this.stderr = '';
    this.proc.stderr.on('data', (d) => { this.stderr += d; });
    const rl = readline.createInterface({ input: this.proc.stdout, crlfDelay: Infinity });
    rl.on('line', (line) => {
      const w = this.waiting.shift();
      if (!w) { this.extraLines.push(line); return; }
      try {
        w.resolve(JSON.parse(line));
      } catch (e) {
        w.reject(new Error(`${label}: answer is not JSON: ${line.slice(0, 200)}`));
      }
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
  }

  call(req) {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.proc.stdin.write(`${typeof req === 'string' ? req : JSON.stringify(req)}\n`);
    });
  }

  // A call that must succeed.
  async ok(req) {
    const a = await this.call(req);
    if (a.ok !== true) {
      throw new Error(`${this.label}: ${JSON.stringify(req).slice(0, 120)} failed: ${JSON.stringify(a)}`);
    }
    return a;
  }
}

let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name}${detail !== undefined ? `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}` : ''}`);
  }
}

const hexOf = (s) => Buffer.from(s, 'utf8').toString('hex');

async function sendAndCheck(from, to, fromName, toName, text, label) {
  const e = await from.ok({ op: 'encrypt', peer: toName, plaintext: hexOf(text) });
  const d = await to.call({ op: 'decrypt', peer: fromName, type: e.type, body: e.body });
  check(`${label}: ${fromName} -> ${toName} (${e.type})`, d.ok && d.plaintext === hexOf(text), d);
  return e;
}

function flipBit(bodyHex, byteIndex, bit = 0) {
  const b = Buffer.from(bodyHex, 'hex');
  b[byteIndex] ^= 1 << bit;
  return b.toString('hex');
}

async function main() {
  const alice = new Peer('alice');
  const bob = new Peer('bob');
  try {
    const h = await alice.ok({ op: 'hello' });
    check('hello', h.implementation === 'libsignal-client 0.72.1 (node)' && h.protocol === 2, h);

    const ai = await alice.ok({ op: 'init', name: 'alice' });
    const bi = await bob.ok({ op: 'init', name: 'bob', device_id: 1 });
    check('init identity key is 33 bytes, 0x05', /^05[0-9a-f]{64}$/.test(ai.identity_key), ai);
    check('init registration id in 1..=16380', ai.registration_id >= 1 && ai.registration_id <= 16380, ai);

    // --- errors before any session ---------------------------------------
    let r = await alice.call({ op: 'encrypt', peer: 'bob', plaintext: '00' });
    check('encrypt without session -> no_session', r.error === 'no_session', r);
    r = await alice.call({ op: 'decrypt', peer: 'bob', type: 'whisper', body: '33' + '00'.repeat(60) });
    check('garbage whisper -> invalid_message', r.error === 'invalid_message', r);
    r = await alice.call({ op: 'fingerprint', peer: 'bob', local_id: '00', remote_id: '01' });
    check('fingerprint without trusted identity -> other', r.error === 'other', r);
    r = await alice.call({ op: 'frobnicate' });
    check('unknown op -> unsupported', r.error === 'unsupported', r);
    r = await alice.call('{not json');
    check('malformed request -> other', r.error === 'other', r);

    // --- bundles ------------------------------------------------------------
    const bundle1 = await bob.ok({ op: 'bundle' });
    check('bundle has one-time prekey', typeof bundle1.prekey === 'string' && bundle1.prekey_id >= 1 && bundle1.prekey_id <= 0xffffff, bundle1);
    const bundle2 = await bob.ok({ op: 'bundle' });
    check('one-time prekeys differ per call', bundle2.prekey_id !== bundle1.prekey_id && bundle2.prekey !== bundle1.prekey);
    check('signed prekey kept across calls', bundle2.signed_prekey_id === bundle1.signed_prekey_id);

    r = await alice.call({ op: 'process_bundle', peer: 'bob', bundle: { ...bundle1, signed_prekey_signature: flipBit(bundle1.signed_prekey_signature, 5) } });
    check('bad signed prekey signature -> invalid_signature', r.error === 'invalid_signature', r);
    r = await alice.call({ op: 'process_bundle', peer: 'bob', bundle: { ...bundle1, signed_prekey: bundle1.signed_prekey.slice(0, 40) } });
    check('short signed prekey -> invalid_key', r.error === 'invalid_key', r);
    r = await alice.call({ op: 'process_bundle', peer: 'bob', bundle: { ...bundle1, identity_key: '06' + bundle1.identity_key.slice(2) } });
    check('identity key type 0x06 -> invalid_key', r.error === 'invalid_key', r);
    r = await alice.call({ op: 'has_session', peer: 'bob' });
    check('failed process_bundle leaves no session', r.ok && r.session === false, r);
    r = await alice.call({ op: 'fingerprint', peer: 'bob', local_id: '00', remote_id: '01' });
    check('failed process_bundle trusts nothing', r.error === 'other', r);

    // --- session set-up -----------------------------------------------------
    await alice.ok({ op: 'process_bundle', peer: 'bob', bundle: bundle1 });
    r = await alice.ok({ op: 'has_session', peer: 'bob' });
    check('has_session after process_bundle', r.session === true, r);
    r = await bob.ok({ op: 'has_session', peer: 'alice' });
    check('bob has no session yet', r.session === false, r);

    const first = await sendAndCheck(alice, bob, 'alice', 'bob', 'hello bob', 'first message');
    check('first message is prekey type', first.type === 'prekey', first);
    const v = parseInt(first.body.slice(0, 2), 16);
    console.log(`     (prekey message version byte 0x${first.body.slice(0, 2)})`);
    check('prekey message version high nibble is 3', v >> 4 === 3, first.body.slice(0, 2));

    r = await bob.call({ op: 'decrypt', peer: 'alice', type: 'prekey', body: first.body });
    check('duplicate prekey message -> duplicate_message', r.error === 'duplicate_message', r);

    // The used one-time prekey is gone: a fresh session on it must fail.
    const carol = new Peer('carol');
    await carol.ok({ op: 'init', name: 'carol' });
    await carol.ok({ op: 'process_bundle', peer: 'bob', bundle: bundle1 });
    const ce = await carol.ok({ op: 'encrypt', peer: 'bob', plaintext: '01' });
    r = await bob.call({ op: 'decrypt', peer: 'carol', type: ce.type, body: ce.body });
    check('prekey message on a used one-time prekey -> missing_prekey', r.error === 'missing_prekey', r);
    r = await bob.ok({ op: 'has_session', peer: 'carol' });
    check('failed prekey decrypt leaves no session', r.session === false, r);
    // A prekey message naming a signed prekey id bob never had (the
    // signature covers only the key, so the bundle still verifies).
    await carol.ok({ op: 'init', name: 'carol' });
    const badSpk = { ...(await bob.ok({ op: 'bundle', one_time_prekey: false })) };
    badSpk.signed_prekey_id = badSpk.signed_prekey_id === 1 ? 2 : badSpk.signed_prekey_id - 1;
    await carol.ok({ op: 'process_bundle', peer: 'bob', bundle: badSpk });
    const ce2 = await carol.ok({ op: 'encrypt', peer: 'bob', plaintext: '02' });
    r = await bob.call({ op: 'decrypt', peer: 'carol', type: ce2.type, body: ce2.body });
    check('prekey message on an unknown signed prekey -> missing_prekey', r.error === 'missing_prekey', r);
    await carol.ok({ op: 'quit' });

    const reply = await sendAndCheck(bob, alice, 'bob', 'alice', 'hi alice', 'reply');
    check('reply is whisper type', reply.type === 'whisper', reply);
    console.log(`     (whisper message version byte 0x${reply.body.slice(0, 2)})`);

    r = await alice.call({ op: 'decrypt', peer: 'bob', type: 'whisper', body: reply.body });
    check('duplicate whisper -> duplicate_message', r.error === 'duplicate_message', r);
    r = await alice.call({ op: 'decrypt', peer: 'mallory', type: 'whisper', body: reply.body });
    check('whisper from a name without session -> no_session', r.error === 'no_session', r);
    r = await alice.call({ op: 'decrypt', peer: 'bob', type: 'whisper', body: '22' + reply.body.slice(2) });
    check('whisper with version byte 0x22 -> invalid_message', r.error === 'invalid_message', r);
    r = await alice.call({ op: 'decrypt', peer: 'bob', type: 'prekey', body: reply.body });
    check('whisper body sent as prekey -> invalid_message', r.error === 'invalid_message', r);
    r = await alice.call({ op: 'decrypt', peer: 'bob', type: 'whisper', body: 'zz' });
    check('non-hex body -> other', r.error === 'other', r);

    const next = await alice.ok({ op: 'encrypt', peer: 'bob', plaintext: hexOf('after reply') });
    check('alice sends whisper after reply', next.type === 'whisper', next);
    const ctOffset = Buffer.from(next.body, 'hex').length - 12; // inside the ciphertext
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: 'whisper', body: flipBit(next.body, ctOffset, 3) });
    check('flipped ciphertext bit -> invalid_message', r.error === 'invalid_message', r);
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: 'whisper', body: flipBit(next.body, Buffer.from(next.body, 'hex').length - 1, 0) });
    check('flipped MAC bit -> invalid_message', r.error === 'invalid_message', r);
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: 'whisper', body: next.body.slice(0, 20) });
    check('truncated whisper -> invalid_message', r.error === 'invalid_message', r);
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: 'whisper', body: next.body });
    check('intact message still decrypts after failures', r.ok && r.plaintext === hexOf('after reply'), r);

    // Out of order delivery.
    const m1 = await alice.ok({ op: 'encrypt', peer: 'bob', plaintext: hexOf('m1') });
    const m2 = await alice.ok({ op: 'encrypt', peer: 'bob', plaintext: hexOf('m2') });
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: m2.type, body: m2.body });
    check('out of order: m2 first', r.ok && r.plaintext === hexOf('m2'), r);
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: m1.type, body: m1.body });
    check('out of order: then m1', r.ok && r.plaintext === hexOf('m1'), r);

    // --- save / restore -----------------------------------------------------
    await alice.ok({ op: 'save' });
    await bob.ok({ op: 'save' });
    for (let i = 0; i < 3; i += 1) {
      await sendAndCheck(alice, bob, 'alice', 'bob', `after save ${i}`, 'after save');
      await sendAndCheck(bob, alice, 'bob', 'alice', `after save back ${i}`, 'after save');
    }

    // Large message (1 MiB plaintext = 2 MiB of hex on one line).
    const big = crypto.randomBytes(1 << 20).toString('hex');
    const be = await alice.ok({ op: 'encrypt', peer: 'bob', plaintext: big });
    r = await bob.call({ op: 'decrypt', peer: 'alice', type: be.type, body: be.body });
    check('1 MiB message', r.ok && r.plaintext === big, r.ok ? 'plaintext differs' : r);

    // --- fingerprints ---------------------------------------------------------
    const aliceId = hexOf('+14152222222');
    const bobId = hexOf('+14153333333');
    const fa = await alice.ok({ op: 'fingerprint', peer: 'bob', local_id: aliceId, remote_id: bobId });
    const fb = await bob.ok({ op: 'fingerprint', peer: 'alice', local_id: bobId, remote_id: aliceId });
    check('displayable fingerprints are 60 digits and equal', /^[0-9]{60}$/.test(fa.displayable) && fa.displayable === fb.displayable, [fa, fb]);
    r = await alice.ok({ op: 'compare_scannable', peer: 'bob', local_id: aliceId, remote_id: bobId, scannable: fb.scannable });
    check('compare_scannable match', r.match === true, r);
    r = await alice.ok({ op: 'compare_scannable', peer: 'bob', local_id: aliceId, remote_id: bobId, scannable: fa.scannable });
    check('compare_scannable with own scannable -> no match', r.match === false, r);
    const fb1 = await bob.ok({ op: 'fingerprint', peer: 'alice', local_id: bobId, remote_id: aliceId, version: 1 });
    check('displayable does not depend on version', fb1.displayable === fb.displayable, fb1);
    r = await alice.call({ op: 'compare_scannable', peer: 'bob', local_id: aliceId, remote_id: bobId, scannable: fb1.scannable });
    check('compare_scannable version mismatch -> error other', r.ok === false && r.error === 'other', r);
    const f1024 = await alice.ok({ op: 'fingerprint', peer: 'bob', local_id: aliceId, remote_id: bobId, iterations: 1024 });
    check('iterations change the fingerprint', f1024.displayable !== fa.displayable, f1024);

    // --- identity change --------------------------------------------------------
    const bobIdentityHex = bi.identity_key;
    const bob2 = new Peer('bob2');
    const b2i = await bob2.ok({ op: 'init', name: 'bob' });
    const b2bundle = await bob2.ok({ op: 'bundle' });
    r = await alice.call({ op: 'process_bundle', peer: 'bob', bundle: b2bundle });
    check('bundle with new identity -> untrusted_identity', r.error === 'untrusted_identity', r);
    // The old session must be untouched.
    await sendAndCheck(alice, bob, 'alice', 'bob', 'still the old bob', 'after untrusted bundle');
    // A prekey message from a new identity for a known name.
    await bob2.ok({ op: 'process_bundle', peer: 'alice', bundle: await alice.ok({ op: 'bundle' }) });
    const b2e = await bob2.ok({ op: 'encrypt', peer: 'alice', plaintext: hexOf('I am bob, really') });
    r = await alice.call({ op: 'decrypt', peer: 'bob', type: b2e.type, body: b2e.body });
    check('prekey message from new identity -> untrusted_identity', r.error === 'untrusted_identity', r);
    const fa2 = await alice.ok({ op: 'fingerprint', peer: 'bob', local_id: aliceId, remote_id: bobId });
    check('trusted key unchanged after untrusted_identity', fa2.displayable === fa.displayable, fa2);

    await alice.ok({ op: 'trust', peer: 'bob', identity_key: b2i.identity_key });
    r = await alice.call({ op: 'decrypt', peer: 'bob', type: b2e.type, body: b2e.body });
    check('after trust, prekey message from new identity decrypts', r.ok && r.plaintext === hexOf('I am bob, really'), r);
    await sendAndCheck(alice, bob2, 'alice', 'bob', 'hello new bob', 'after trust');
    r = await alice.call({ op: 'trust', peer: 'bob', identity_key: bobIdentityHex.slice(0, 10) });
    check('trust with a short key -> invalid_key', r.error === 'invalid_key', r);

    // Signed prekey rotation: an in-flight message on the old signed prekey
    // still decrypts.
    const dave = new Peer('dave');
    await dave.ok({ op: 'init', name: 'dave' });
    const oldBundle = await bob.ok({ op: 'bundle', one_time_prekey: false });
    check('bundle without one-time prekey', oldBundle.prekey === undefined && oldBundle.prekey_id === undefined, oldBundle);
    await dave.ok({ op: 'process_bundle', peer: 'bob', bundle: oldBundle });
    const de = await dave.ok({ op: 'encrypt', peer: 'bob', plaintext: hexOf('from dave') });
    const newBundle = await bob.ok({ op: 'bundle', new_signed_prekey: true });
    check('new_signed_prekey replaces the signed prekey', newBundle.signed_prekey_id !== oldBundle.signed_prekey_id && newBundle.signed_prekey !== oldBundle.signed_prekey, newBundle);
    await bob.ok({ op: 'save' });
    r = await bob.call({ op: 'decrypt', peer: 'dave', type: de.type, body: de.body });
    check('message on an old signed prekey still decrypts (no one-time prekey)', r.ok && r.plaintext === hexOf('from dave'), r);
    await sendAndCheck(bob, dave, 'bob', 'dave', 'hi dave', 'dave reply');
    await dave.ok({ op: 'quit' });

    // A device id from the bundle is used for the address.
    const eve = new Peer('eve');
    await eve.ok({ op: 'init', name: 'eve', device_id: 7 });
    const eb = await eve.ok({ op: 'bundle' });
    check('bundle carries the device id', eb.device_id === 7, eb);
    await alice.ok({ op: 'process_bundle', peer: 'eve', bundle: eb });
    await alice.ok({ op: 'save' });
    await sendAndCheck(alice, eve, 'alice', 'eve', 'hi eve', 'device 7');
    await sendAndCheck(eve, alice, 'eve', 'alice', 'hi alice from eve', 'device 7');
    await eve.ok({ op: 'quit' });

    // Second init discards all state.
    await bob2.ok({ op: 'init', name: 'bob' });
    r = await bob2.ok({ op: 'has_session', peer: 'alice' });
    check('second init discards sessions', r.session === false, r);
    await bob2.ok({ op: 'quit' });

    r = await alice.ok({ op: 'quit' });
    await bob.ok({ op: 'quit' });
    const [ac, bc] = await Promise.all([alice.exited, bob.exited]);
    check('peers exit 0 on quit', ac === 0 && bc === 0, [ac, bc]);
    check('no stray stdout lines', alice.extraLines.length === 0 && bob.extraLines.length === 0, [alice.extraLines, bob.extraLines]);
  } catch (e) {
    failed += 1;
    console.log(`FAIL exception: ${e && e.stack ? e.stack : e}`);
    console.log('--- alice stderr ---\n' + alice.stderr + '--- bob stderr ---\n' + bob.stderr);
    alice.proc.kill();
    bob.proc.kill();
  }

  if (process.env.SMOKE_VERBOSE) {
    console.log(`--- alice stderr ---\n${alice.stderr}--- bob stderr ---\n${bob.stderr}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  if (failed === 0) console.log('OK');
  process.exit(failed === 0 ? 0 : 1);
}

main();

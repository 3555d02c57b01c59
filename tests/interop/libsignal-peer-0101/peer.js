#!/usr/bin/env node
// Reference peer for ratchetkit's interoperability tests: the official
// @signalapp/libsignal-client pinned to 0.101.0 (package.json and
// package-lock.json here) behind the JSON-lines "peer protocol, version 2"
// (PEER_PROTOCOL.md).
//
// 0.101.0 speaks session version 4 (PQXDH) with SPQR required, as every
// official release since 0.92 (observed black-box, see SPQR.md §2.9):
// - every new session speaks SPQR and requires it of the peer: a peer
//   without SPQR fails with "decryption failed" in both directions; its
//   API has no switch, so spqr "required" is the default and
//   "offered"/"off" answer `unsupported`;
// - it cannot start a version-3 session (a bundle without Kyber fields
//   answers `unsupported`) and refuses incoming version-3 prekey messages
//   that would start a session, so accept_v3 is false;
// - device ids are 1..=127;
// - processPreKeyBundle, signalEncrypt, signalDecrypt and
//   signalDecryptPreKey take the local address as a new third argument
//   (each gained one parameter over 0.90.0; the position was found by
//   calling signalEncrypt both ways and seeing which address it looked up).
//
//   node tests/interop/libsignal-peer-0101/peer.js

import { createRequire } from 'node:module';
import * as lib from '@signalapp/libsignal-client';
import core from '../libsignal-common/peer-core.cjs';

const require = createRequire(import.meta.url);
const VERSION = require('@signalapp/libsignal-client/package.json').version;
if (VERSION !== '0.101.0') {
  process.stderr.write(`[libsignal-peer-0101] expected libsignal-client 0.101.0, found ${VERSION}: run npm ci\n`);
  process.exit(1);
}

core.run(lib, {
  implementation: 'libsignal-client 0.101.0 (node)',
  logName: 'libsignal-peer-0101',
  versions: [4],
  canStartV3: false,
  acceptV3: { dflt: false, allowed: [false], why: 'libsignal-client 0.101.0 refuses version-3 prekey messages' },
  emulateRefuseV3: false, // the library refuses them itself
  spqr: {
    dflt: 'required',
    allowed: ['required'],
    why: 'libsignal-client 0.101.0 always requires SPQR of new sessions; its API has no switch',
  },
  maxDeviceId: 127,
  localAddress: true,
});

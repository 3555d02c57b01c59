#!/usr/bin/env node
// Reference peer for ratchetkit's interoperability tests: the official
// @signalapp/libsignal-client pinned to 0.72.1 (package.json here) behind
// the JSON-lines "peer protocol, version 2" (PEER_PROTOCOL.md).
//
// 0.72.1 starts and accepts both session versions: 3 (X3DH, a bundle without
// a Kyber prekey) and 4 (PQXDH). It has no SPQR. It always accepts incoming
// version-3 prekey messages itself; `accept_v3: false` is emulated in the
// peer's stores (see ../libsignal-common/peer-core.cjs).
//
//   node tests/interop/libsignal-peer/peer.js

'use strict';

const lib = require('@signalapp/libsignal-client');
const { run } = require('../libsignal-common/peer-core.cjs');

const VERSION = require('@signalapp/libsignal-client/package.json').version;
if (VERSION !== '0.72.1') {
  process.stderr.write(`[libsignal-peer] expected libsignal-client 0.72.1, found ${VERSION}: run npm ci\n`);
  process.exit(1);
}

run(lib, {
  implementation: 'libsignal-client 0.72.1 (node)',
  logName: 'libsignal-peer',
  versions: [3, 4],
  canStartV3: true,
  // The library itself accepts version-3 prekey messages; the peer refuses
  // new version-3 sessions in its stores when accept_v3 is false.
  acceptV3: { dflt: true, allowed: [true, false] },
  emulateRefuseV3: true,
  spqr: { dflt: 'off', allowed: ['off'], why: 'libsignal-client 0.72.1 has no SPQR ratchet' },
  maxDeviceId: 0x7fffffff,
});

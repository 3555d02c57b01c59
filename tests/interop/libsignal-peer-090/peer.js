#!/usr/bin/env node
// Reference peer for ratchetkit's interoperability tests: the official
// @signalapp/libsignal-client pinned to 0.90.0 (package.json here) behind
// the JSON-lines "peer protocol, version 2" (PEER_PROTOCOL.md).
//
// 0.90.0 speaks session version 4 (PQXDH) only:
// - it cannot start a version-3 session: process_bundle with a bundle
//   without Kyber fields answers `unsupported`;
// - it refuses every incoming version-3 prekey message that would start a
//   session ("X3DH no longer supported"), so accept_v3 is false and
//   `accept_v3: true` answers `unsupported`;
// - `bundle` with kyber "none" still answers (a bundle without Kyber
//   fields, as a server would hand out for a device that uploaded no Kyber
//   prekey); a session started from it is version 3 and is refused here;
// - SPQR is offered and falls back to none (the API has no switch), so
//   spqr "offered" is the default and "off"/"required" answer `unsupported`;
// - device ids are 1..=127.
//
//   node tests/interop/libsignal-peer-090/peer.js

import { createRequire } from 'node:module';
import * as lib from '@signalapp/libsignal-client';
import core from '../libsignal-common/peer-core.cjs';

const require = createRequire(import.meta.url);
const VERSION = require('@signalapp/libsignal-client/package.json').version;
if (VERSION !== '0.90.0') {
  process.stderr.write(`[libsignal-peer-090] expected libsignal-client 0.90.0, found ${VERSION}: run npm ci\n`);
  process.exit(1);
}

core.run(lib, {
  implementation: 'libsignal-client 0.90.0 (node)',
  logName: 'libsignal-peer-090',
  versions: [4],
  canStartV3: false,
  acceptV3: { dflt: false, allowed: [false], why: 'libsignal-client 0.90.0 refuses version-3 prekey messages' },
  emulateRefuseV3: false, // the library refuses them itself
  spqr: {
    dflt: 'offered',
    allowed: ['offered'],
    why: 'libsignal-client 0.90.0 always offers SPQR and falls back to none; its API has no switch',
  },
  maxDeviceId: 127,
});

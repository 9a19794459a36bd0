/**
 * Director metadata on the device: made and signed as the control plane does, then refused for
 * each way it can be wrong (signature, threshold, rollback, expiry, another device, a malformed
 * wrapped key, size), and the agreement check against the repository's target. The parser of
 * these outside bytes fails only with a typed refusal, whatever the bytes (fast-check).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { TargetFile } from '@tufjs/models';
import { generateContentKey } from '../../src/crypto/index.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { wrapContentKey } from '../../src/keystore/index.ts';
import {
  MAX_DIRECTOR_METADATA_BYTES,
  buildDirectorTargets,
  checkAgreement,
  generateRoleKey,
  signDirectorTargets,
  verifyDirectorMetadata,
  type RoleKey,
} from '../../src/release/index.ts';

const binding = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
const repositoryTarget = new TargetFile({
  path: 'mnist/3/mnist.egm',
  length: 1234,
  hashes: { sha256: 'a'.repeat(64) },
  unrecognizedFields: { custom: { edgeguard: { kind: 'model', name: 'mnist', version: 3 } } } as never,
});
const DEVICE = 'dev-0123456789abcdef';
const key = generateRoleKey();

function issue(o: { version?: number; expires?: string; deviceId?: string; keys?: RoleKey[] } = {}): Buffer {
  const md = buildDirectorTargets({
    deviceId: o.deviceId ?? DEVICE,
    version: o.version ?? 5,
    expires: o.expires ?? new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    assignments: [{ repositoryTarget, assignmentId: 'a1', wrappedKey: wrapContentKey(generateContentKey(), binding) }],
  });
  return Buffer.from(JSON.stringify(signDirectorTargets(md, o.keys ?? [key]).toJSON()));
}

const trust = { keys: [key.key], deviceId: DEVICE, lastVersion: 0 };

function refused(bytes: Uint8Array, reason: string, t: Partial<typeof trust> & { threshold?: number } = {}) {
  assert.throws(
    () => verifyDirectorMetadata(bytes, { ...trust, ...t }),
    (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === reason,
  );
}

test('director metadata made for this device verifies, with the repository facts and the wrapped key', () => {
  const v = verifyDirectorMetadata(issue(), trust);
  assert.equal(v.version, 5);
  assert.equal(v.targets.length, 1);
  const [t] = v.targets;
  assert.equal(t!.target.path, 'mnist/3/mnist.egm');
  assert.deepEqual((t!.target.custom as { edgeguard: unknown }).edgeguard, {
    kind: 'model',
    name: 'mnist',
    version: 3,
  });
  assert.equal(t!.director.assignment, 'a1');
  assert.equal(JSON.parse(t!.wrappedKeyText).type, 'edgeguard-wrapped-key');
  checkAgreement(t!.target, repositoryTarget);
});

test('refused: another signer, below threshold, rollback, expired, another device, oversized', () => {
  refused(issue({ keys: [generateRoleKey()] }), 'signature');
  refused(issue(), 'signature', { keys: [key.key, generateRoleKey().key], threshold: 2 });
  refused(issue({ version: 4 }), 'rollback', { lastVersion: 5 });
  assert.equal(verifyDirectorMetadata(issue({ version: 5 }), { ...trust, lastVersion: 5 }).version, 5);
  refused(issue({ expires: '2020-01-01T00:00:00Z' }), 'expired');
  refused(issue({ deviceId: 'dev-ffffffffffffffff' }), 'not-assigned');
  refused(Buffer.alloc(MAX_DIRECTOR_METADATA_BYTES + 1, 0x20), 'too-large');
});

test('a signed body changed afterwards no longer verifies', () => {
  const json = JSON.parse(issue().toString('utf8'));
  json.signed.targets['mnist/3/mnist.egm'].hashes.sha256 = 'b'.repeat(64);
  refused(Buffer.from(JSON.stringify(json)), 'signature');
});

test('agreement: other length, other hash, an extra repository hash or no entry are refused', () => {
  const other = (o: Partial<{ length: number; hashes: Record<string, string> }>) =>
    new TargetFile({
      path: repositoryTarget.path,
      length: o.length ?? 1234,
      hashes: o.hashes ?? { sha256: 'a'.repeat(64) },
    });
  const director = verifyDirectorMetadata(issue(), trust).targets[0]!.target;
  const mismatch = (e: unknown) =>
    isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'director-mismatch';
  assert.throws(() => checkAgreement(director, other({ length: 1235 })), mismatch);
  assert.throws(() => checkAgreement(director, other({ hashes: { sha256: 'c'.repeat(64) } })), mismatch);
  assert.throws(
    () => checkAgreement(director, other({ hashes: { sha256: 'a'.repeat(64), sha512: 'd'.repeat(128) } })),
    mismatch,
  );
  assert.throws(
    () => checkAgreement(director, undefined),
    (e) => isEdgeguardError(e, 'EG_RELEASE_REFUSED') && e.details?.reason === 'unknown-target',
  );
});

test('property: any bytes, or any change to a valid document, fail only with a typed refusal', () => {
  const valid = issue();
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 512 }),
        fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
          const b = Buffer.from(valid);
          b[i] = b[i]! ^ x;
          return b;
        }),
        fc.json().map((j) => Buffer.from(j)),
      ),
      (bytes) => {
        try {
          verifyDirectorMetadata(bytes, trust);
        } catch (e) {
          assert.ok(isEdgeguardError(e, 'EG_RELEASE_REFUSED'), String(e));
        }
      },
    ),
    { numRuns: 300 },
  );
});

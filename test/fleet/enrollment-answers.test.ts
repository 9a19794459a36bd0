/**
 * The control plane's enrollment answers are outside input to the device: a malformed one (a member
 * of the wrong type, such as `[{"toString":0}]`, which String() and template literals cannot
 * convert) is refused with EG_SERVER before any member is used, not a TypeError or a ZodError.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { enrollDevice } from '../../src/fleet/index.ts';
import { initDevice } from '../../src/keystore/index.ts';
import { json, startFakeControlPlane } from '../helpers/fake-control-plane.ts';
import { tempDir } from '../helpers/workspace.ts';

const HOSTILE = [{ toString: 0 }];
const NONCE = { nonce: 'n'.repeat(43), expiresAt: new Date(Date.now() + 60_000).toISOString() };
const FINISHED = {
  deviceId: 'dev-0123456789abcdef',
  status: 'pending',
  keyProvider: 'software',
  pollToken: 't'.repeat(43),
};

/** Enroll a fresh software device against a control plane answering `answers[path]`. */
async function enrollAgainst(t: TestContext, answers: Record<string, unknown>) {
  const dir = await tempDir(t, 'eg-enroll-answers-');
  await initDevice({ dir: join(dir, 'device') });
  const cp = await startFakeControlPlane(t, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://x').pathname;
    req.resume();
    req.on('end', () => (path in answers ? json(res, 200, answers[path]) : json(res, 404, {})));
  });
  return enrollDevice({ deviceDir: join(dir, 'device'), server: cp.url, caPem: cp.caPem, poll: { timeoutMs: 1 } });
}

const cases: Array<[string, Record<string, unknown>]> = [
  ['a nonce that is not a string', { '/v1/enroll/nonce': { ...NONCE, nonce: HOSTILE } }],
  ['a nonce answer that is not an object', { '/v1/enroll/nonce': HOSTILE }],
  [
    'a device id that is not a string',
    { '/v1/enroll/nonce': NONCE, '/v1/enroll/start': { ...FINISHED, deviceId: HOSTILE } },
  ],
  [
    'a device id with path characters',
    { '/v1/enroll/nonce': NONCE, '/v1/enroll/start': { ...FINISHED, deviceId: 'dev-0123456789abcdef/../x' } },
  ],
  ['an unknown status', { '/v1/enroll/nonce': NONCE, '/v1/enroll/start': { ...FINISHED, status: 'revoked' } }],
  [
    'a certificate answer without its chain',
    {
      '/v1/enroll/nonce': NONCE,
      '/v1/enroll/start': FINISHED,
      '/v1/enroll/dev-0123456789abcdef/certificate': {
        deviceId: 'dev-0123456789abcdef',
        certificateChain: HOSTILE,
        fleetCa: '',
        notAfter: '',
      },
    },
  ],
];

for (const [what, answers] of cases) {
  test(`enrollment: ${what} from the control plane is EG_SERVER`, async (t) => {
    await assert.rejects(enrollAgainst(t, answers), (e: unknown) => {
      assert.ok(isEdgeguardError(e, 'EG_SERVER'), String(e));
      assert.match(e.message, /answer is malformed/);
      return true;
    });
  });
}

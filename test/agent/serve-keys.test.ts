/**
 * The service's content key from the device key store: a content key wrapped to a real (software)
 * TPM's binding key under its PCR policy (swtpm, started by the test), and the labelled software
 * provider; plus the guard's squeezing stage at the service level on the stored FGSM example.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodeWrappedKeyFile, initDevice, parseBindingPublicKey, wrapContentKey } from '../../src/keystore/index.ts';
import { readContentKeyFile } from '../../src/crypto/index.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { TPM_SKIP, startTestTpm, stopTestTpm } from '../helpers/swtpm.ts';
import { serveFixture, startService, infer } from './serve-fixture.ts';

async function wrapTo(dir: string, contentKeyPath: string, deviceDir: string): Promise<string> {
  const key = await readContentKeyFile(contentKeyPath);
  const text = encodeWrappedKeyFile(
    wrapContentKey(key, parseBindingPublicKey(await readFile(join(deviceDir, 'binding.pub'), 'utf8'))),
  );
  const path = join(dir, 'model.key.wrapped');
  await writeFile(path, text);
  return path;
}

test(
  'content key wrapped to the TPM (swtpm): the service loads and answers; healthz says hardware-bound',
  { skip: TPM_SKIP },
  async (t) => {
    const tpm = await startTestTpm();
    t.after(() => stopTestTpm(tpm));
    const f = await serveFixture(t);
    const deviceDir = join(f.dir, 'device');
    await initDevice({ dir: deviceDir, tcti: tpm.tcti });
    const wrapped = await wrapTo(f.dir, join(f.dir, 'publisher-model.key'), deviceDir);
    const s = await startService(t, f.config({ contentKey: { wrapped, device: deviceDir } }));
    const r = await infer(s.url, await readFile(join(FIXTURES, 'digits', '9-0.png')), 'image/png');
    assert.equal(r.body.label, '9');
    const health = (await (await fetch(`${s.url}/healthz`)).json()) as {
      key: { provider: string; hardwareBound: boolean };
    };
    assert.deepEqual([health.key.provider, health.key.hardwareBound], ['tpm', true]);
  },
);

test('content key through the software key store: served, and labelled not hardware-bound', async (t) => {
  const f = await serveFixture(t);
  const deviceDir = join(f.dir, 'device');
  await initDevice({ dir: deviceDir });
  const wrapped = await wrapTo(f.dir, join(f.dir, 'publisher-model.key'), deviceDir);
  const s = await startService(t, f.config({ contentKey: { wrapped, device: deviceDir } }));
  assert.equal((await infer(s.url, await readFile(join(FIXTURES, 'digits', '0-1.png')), 'image/png')).body.label, '0');
  const health = (await (await fetch(`${s.url}/healthz`)).json()) as {
    key: { provider: string; hardwareBound: boolean; label: string };
  };
  assert.equal(health.key.provider, 'software');
  assert.equal(health.key.hardwareBound, false);
});

test('the stored FGSM example is flagged by feature squeezing at the service (validation off) and sealed for review', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(
    t,
    f.config({
      guard: {
        profile: join(FIXTURES, 'guard', 'mnist-cnn.profile.json'),
        validation: { enabled: false },
        confidence: { enabled: false },
        ensemble: { enabled: false },
      },
    }),
  );
  const r = await infer(s.url, await readFile(join(FIXTURES, 'guard', 'fgsm-4-as-8.png')), 'image/png');
  assert.equal(r.body.verdict, 'flag', JSON.stringify(r.body));
  assert.deepEqual(
    (r.body.reasons as Array<{ code: string }>).map((x) => x.code),
    ['squeeze-distance'],
  );
  assert.equal((r.body.review as { queued: boolean }).queued, true);
});

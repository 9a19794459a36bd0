/**
 * The anti-rollback floor on a TPM (swtpm; counters and baselines: tpm-floor.test.ts) and releases of kind firmware and agent handed to a fake installer that records its args.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startTestTpm, stopTestTpm, TPM_SKIP, type Swtpm } from '../helpers/swtpm.ts';
import { SoftwareFloor, updateDevice } from '../../src/release/index.ts';
import { provisionedTpmFloor } from '../helpers/floor.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { abFixture } from './ab-fixture.ts';

describe('TPM NV counter floor', { skip: TPM_SKIP }, () => {
  let tpm: Swtpm | undefined;
  before(async () => {
    tpm = await startTestTpm();
  });
  after(() => stopTestTpm(tpm));

  test('an A/B install on a TPM device: content key unwrapped in the TPM, floor in the NV counter', async (t) => {
    const f = await abFixture(t, { tcti: tpm!.tcti });
    const floor = await provisionedTpmFloor(f.store, 0x01800200);
    // Another kind's counter on this TPM went to 3 first: the model floor stays its own.
    assert.equal(await floor.raise('firmware', 3), 3);
    const options = (target: string) => ({
      install: {
        dataDir: f.dataDir,
        publicKeys: [f.keys.signer.publicKey],
        contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
        floor,
      },
      metadataDir: f.metadataDir,
      metadataBaseUrl: `${f.server.url}/metadata`,
      targetBaseUrl: `${f.server.url}/targets`,
      downloadDir: join(f.dataDir, 'download'),
      target,
    });
    const v2 = await updateDevice(options(f.targets[2]!));
    assert.equal(v2.ok, true, JSON.stringify(v2.error));
    assert.equal(v2.floor.provider, 'tpm');
    assert.equal(v2.floor.value, 2);
    const v1 = await updateDevice(options(f.targets[1]!));
    assert.equal(v1.error?.reason, 'below-minimum');
    assert.equal(await floor.read('model'), 2);
  });
});

test('the software floor is a labelled file that only grows', async (t) => {
  const f = await abFixture(t, { releases: [] });
  const floor = new SoftwareFloor(f.dataDir);
  await floor.raise('agent', 4);
  await floor.raise('agent', 2);
  assert.equal(await floor.read('agent'), 4);
  const file = JSON.parse(await readFile(join(f.dataDir, 'anti-rollback.json'), 'utf8'));
  assert.equal(file.label, 'software floor: a file, not hardware-protected');
});

for (const kind of ['firmware', 'agent'] as const) {
  test(`kind ${kind}: verified, decrypted, handed to the configured installer as argv, then removed`, async (t) => {
    const f = await abFixture(t, { releases: [{ version: 1, kind, minVersion: 1 }] });
    const record = join(f.tmp, 'record');
    const installer = join(f.tmp, 'installer.sh');
    await writeFile(
      installer,
      `#!/bin/sh\nprintf '%s\\n' "$@" > "${record}.args"\nstat -c %a "$(dirname "$2")" > "${record}.mode"\ncp "$2" "${record}.payload"\n`,
    );
    await chmod(installer, 0o755);
    const out = await updateDevice({
      install: {
        dataDir: f.dataDir,
        publicKeys: [f.keys.signer.publicKey],
        contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
        floor: new SoftwareFloor(f.dataDir),
        installers: { [kind]: [installer, 'install', '{path}', 'a b; rm -rf /'] },
      },
      metadataDir: f.metadataDir,
      metadataBaseUrl: `${f.server.url}/metadata`,
      targetBaseUrl: `${f.server.url}/targets`,
      downloadDir: join(f.dataDir, 'download'),
      target: f.targets[1]!,
    });
    assert.equal(out.ok, true, JSON.stringify(out.error));
    const args = (await readFile(`${record}.args`, 'utf8')).trimEnd().split('\n');
    assert.equal(args[0], 'install');
    assert.match(args[1]!, /handoff-[^/]+\/payload$/);
    assert.equal(args[2], 'a b; rm -rf /', 'passed as one argument, no shell');
    assert.equal((await readFile(`${record}.mode`, 'utf8')).trim(), '700');
    // The payload is the plaintext the publisher packed.
    assert.deepEqual(await readFile(`${record}.payload`), await readFile(join(FIXTURES, 'models', 'mnist-cnn.onnx')));
    assert.deepEqual(
      (await readdir(f.dataDir)).filter((n) => n.startsWith('handoff-')),
      [],
      'hand-off dir removed',
    );
    assert.equal(await new SoftwareFloor(f.dataDir).read(kind), 1);
  });
}

test('a failing installer leaves the floor and reports EG_INSTALL_FAILED; no installer configured is EG_CONFIG', async (t) => {
  const f = await abFixture(t, { releases: [{ version: 2, kind: 'firmware', minVersion: 2 }] });
  const base = {
    dataDir: f.dataDir,
    publicKeys: [f.keys.signer.publicKey],
    contentKey: { wrapped: f.wrappedKeyPath, device: f.deviceDir, store: f.store },
    floor: new SoftwareFloor(f.dataDir),
  };
  const opts = {
    metadataDir: f.metadataDir,
    metadataBaseUrl: `${f.server.url}/metadata`,
    targetBaseUrl: `${f.server.url}/targets`,
    downloadDir: join(f.dataDir, 'download'),
    target: f.targets[2]!,
  };
  const failed = await updateDevice({
    ...opts,
    install: { ...base, installers: { firmware: ['/bin/false', '{path}'] } },
  });
  assert.equal(failed.error?.code, 'EG_INSTALL_FAILED');
  const none = await updateDevice({ ...opts, install: base });
  assert.equal(none.error?.code, 'EG_CONFIG');
  assert.equal(await new SoftwareFloor(f.dataDir).read('firmware'), 0);
  assert.deepEqual(
    (await readdir(f.dataDir)).filter((n) => n.startsWith('handoff-')),
    [],
  );
});

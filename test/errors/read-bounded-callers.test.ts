/**
 * The files the domain modules, the server and the agent read whole, each read with a cap: a file
 * far past its kind (made sparse, so it costs no disk) is refused with EG_FILE_TOO_LARGE, or, for
 * the tamper lock, treated as locked, without buffering it. Absent files keep their meaning.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { isEdgeguardError } from '../../src/errors/index.ts';
import { agentConfig } from '../../src/agent/config.ts';
import { runAgentUpdate } from '../../src/agent/update.ts';
import { loadOrCreateLogSigner, readLogVerifierKey, Witness } from '../../src/audit/index.ts';
import { FleetCa, resolveCaPassphrase } from '../../src/pki/index.ts';
import { readCurrentMetadata, readPointer } from '../../src/release/index.ts';
import { readSettings } from '../../src/release/settings.ts';
import { openServerStore, readAutoApproveList, SERVER_CONFIG_FILE } from '../../src/server/index.ts';
import { lockStatePath, readLockState } from '../../src/tamper/index.ts';
import { tempDir } from '../helpers/workspace.ts';

const GiB = 1024 * 1024 * 1024;

/** A sparse file of `size` bytes (0600, as a key file must be). */
async function sparseFile(path: string, size = GiB): Promise<string> {
  const h = await open(path, 'w', 0o600);
  await h.truncate(size);
  await h.close();
  return path;
}

/** `run` refuses with `code` and buffers nothing close to the file's size. */
async function refusedWithoutReading(run: () => unknown, code = 'EG_FILE_TOO_LARGE' as const): Promise<void> {
  const before = process.memoryUsage().arrayBuffers;
  await assert.rejects(
    async () => run(),
    (e) => isEdgeguardError(e, code),
  );
  assert.ok(process.memoryUsage().arrayBuffers - before < 64 * 1024 * 1024);
}

test('server: the auto-approve list and server.json', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-server-');
  assert.equal(readAutoApproveList(join(dir, 'absent.txt')).size, 0);
  const list = await sparseFile(join(dir, 'auto-approve.txt'));
  await refusedWithoutReading(() => readAutoApproveList(list));
  await sparseFile(join(dir, SERVER_CONFIG_FILE));
  await refusedWithoutReading(() => openServerStore({ dataDir: dir }));
});

test('audit: the log key, a verifier key and the witness state', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-audit-');
  await loadOrCreateLogSigner(join(dir, 'fresh'), 'edgeguard.test/log');
  const verifier = await readLogVerifierKey(join(dir, 'fresh', 'audit-log.pub'));
  const state = join(dir, 'witness.json');
  assert.equal((await Witness.load(verifier, state)).last, undefined);
  await sparseFile(state);
  await refusedWithoutReading(() => Witness.load(verifier, state));
  await refusedWithoutReading(async () => readLogVerifierKey(await sparseFile(join(dir, 'audit-log.pub'))));
  await mkdir(join(dir, 'big'), { mode: 0o700 });
  await sparseFile(join(dir, 'big', 'audit-log.key'));
  await refusedWithoutReading(() => loadOrCreateLogSigner(join(dir, 'big'), 'edgeguard.test/log'));
});

test('pki: the CA passphrase file and the fleet CA files', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-pki-');
  const passphrase = await sparseFile(join(dir, 'passphrase'));
  await refusedWithoutReading(() => resolveCaPassphrase({ file: passphrase }));
  await mkdir(join(dir, 'pki'), { mode: 0o700 });
  for (const f of ['root-ca.crt', 'issuing-ca.crt', 'issuing-ca.key']) await sparseFile(join(dir, 'pki', f));
  await refusedWithoutReading(() => FleetCa.load(dir, 'a passphrase'));
});

test('release: settings, repository metadata, the slot pointer, and the agent update trusted root', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-release-');
  await refusedWithoutReading(async () => readSettings(await sparseFile(join(dir, 'release.json'))));
  const metadata = join(dir, 'metadata');
  await mkdir(metadata);
  await sparseFile(join(metadata, 'root.json'));
  await refusedWithoutReading(() => readCurrentMetadata(metadata));
  assert.equal(await readPointer(dir), undefined);
  await mkdir(join(dir, 'releases'));
  await sparseFile(join(dir, 'releases', 'active'));
  await refusedWithoutReading(() => readPointer(dir));
  await sparseFile(join(dir, 'root.json'));
  const config = agentConfig(
    {
      trust: { publicKeys: ['publisher.pub'] },
      contentKey: { file: 'model.key' },
      models: { primary: 'm.egm' },
      review: { enabled: false },
      update: {
        metadataUrl: 'https://127.0.0.1:9/v1/tuf/metadata',
        targetsUrl: 'https://127.0.0.1:9/v1/tuf/targets',
        target: 'm.egm',
        dir: 'device',
        trustedRoot: 'root.json',
      },
    },
    dir,
  );
  await mkdir(join(dir, 'device'), { mode: 0o700 });
  await refusedWithoutReading(() => runAgentUpdate(config));
});

test('tamper: a lock state past the cap is treated as locked; an absent one is not locked', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-tamper-');
  assert.equal(await readLockState(dir), undefined);
  await sparseFile(lockStatePath(dir));
  await assert.rejects(readLockState(dir), (e) => {
    assert.ok(isEdgeguardError(e, 'EG_LOCKED'), String(e));
    assert.ok(isEdgeguardError((e as Error).cause, 'EG_FILE_TOO_LARGE'), String((e as Error).cause));
    return true;
  });
});

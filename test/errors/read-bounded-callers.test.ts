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
import { FleetCa, resolveCaPassphrase } from '../../src/pki/index.ts';
import { openServerStore, readAutoApproveList, SERVER_CONFIG_FILE } from '../../src/server/index.ts';
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

test('pki: the CA passphrase file and the fleet CA files', async (t) => {
  const dir = await tempDir(t, 'eg-bounded-pki-');
  const passphrase = await sparseFile(join(dir, 'passphrase'));
  await refusedWithoutReading(() => resolveCaPassphrase({ file: passphrase }));
  await mkdir(join(dir, 'pki'), { mode: 0o700 });
  for (const f of ['root-ca.crt', 'issuing-ca.crt', 'issuing-ca.key']) await sparseFile(join(dir, 'pki', f));
  await refusedWithoutReading(() => FleetCa.load(dir, 'a passphrase'));
});

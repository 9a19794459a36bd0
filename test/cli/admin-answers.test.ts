/**
 * The control plane's answers to the operator's CLI are checked before any member is used: a
 * broken or compromised control plane (or a mismatched release) gives EG_SERVER (exit 7) with a
 * sentence naming the answer, never a TypeError, an attestation gate passed on a truthy string,
 * or a review item written under a file name the server chose.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { json, startFakeControlPlane } from '../helpers/fake-control-plane.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/workspace.ts';

const DEVICE = {
  id: 'dev-0123456789abcdef',
  status: 'approved',
  keyProvider: 'tpm',
  softwareBound: false,
  label: null,
  ekPubSha256: 'ab'.repeat(32),
  ekCertificate: true,
  akName: '000b' + 'cd'.repeat(32),
  createdAt: '2026-12-01T00:00:00.000Z',
  approvedAt: '2026-12-01T00:00:01.000Z',
  approvedBy: 'admin',
  revokedAt: null,
  tamperedAt: null,
  lastSeenAt: null,
};

/** A control plane answering `answers[path]` (200) or 404, and the connection flags for the CLI. */
async function serve(t: TestContext, answers: Record<string, unknown>) {
  const dir = await tempDir(t, 'eg-admin-answers-');
  const cp = await startFakeControlPlane(t, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://x').pathname;
    req.resume();
    req.on('end', () =>
      path in answers
        ? json(res, 200, answers[path])
        : json(res, 404, { error: { code: 'EG_NOT_FOUND', message: 'no.' } }),
    );
  });
  await writeFile(join(dir, 'ca.pem'), cp.caPem);
  await writeFile(join(dir, 'cert.pem'), cp.client.cert);
  await writeFile(join(dir, 'key.pem'), cp.client.key, { mode: 0o600 });
  const flags = ['--server', cp.url, '--ca', join(dir, 'ca.pem'), '--client-cert', join(dir, 'cert.pem')];
  return { dir, flags: [...flags, '--client-key', join(dir, 'key.pem')] };
}

function assertMalformed(r: { code: number; stdout: string; stderr: string }, what: string): void {
  assert.equal(r.code, 7, `${r.stdout}\n${r.stderr}`);
  const out = `${r.stdout}${r.stderr}`;
  assert.match(out, /EG_SERVER/);
  assert.match(out, new RegExp(`control plane's ${what} answer is malformed`));
  assert.doesNotMatch(out, /TypeError|ZodError|\n\s+at /);
}

test('device list and show: answers of the wrong shape are EG_SERVER, well-formed ones print', async (t) => {
  const good = await serve(t, { '/v1/devices': { devices: [DEVICE] } });
  const ok = await runCli(['device', 'list', ...good.flags]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /dev-0123456789abcdef {2}approved/);

  for (const body of [{ devices: null }, { devices: [{ ...DEVICE, label: [{ toString: 0 }] }] }, [{ toString: 0 }]]) {
    const bad = await serve(t, { '/v1/devices': body });
    assertMalformed(await runCli(['device', 'list', ...bad.flags]), 'device list');
  }
  const traversal = await serve(t, { '/v1/devices/dev-0123456789abcdef': { ...DEVICE, id: '../dev' } });
  assertMalformed(await runCli(['device', 'show', DEVICE.id, ...traversal.flags]), 'device');
});

test('attest-status: a "trusted" that is not the boolean true never passes the gate', async (t) => {
  const path = `/v1/devices/${DEVICE.id}/attestation`;
  const status = { deviceId: DEVICE.id, state: 'trusted', trusted: true, codes: [], reasons: [] };
  const good = await serve(t, { [path]: status });
  const ok = await runCli(['device', 'attest-status', DEVICE.id, ...good.flags, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).attestation.trusted, true);

  for (const trusted of ['false', 1, [true], { toString: 0 }]) {
    const bad = await serve(t, { [path]: { ...status, trusted } });
    assertMalformed(await runCli(['device', 'attest-status', DEVICE.id, ...bad.flags]), 'attestation status');
  }
});

test('review fetch: an item id the server chose is never a path, and an item answer of the wrong shape is refused', async (t) => {
  const page = (id: string) => ({
    items: [{ id, createdMs: 1, deviceId: DEVICE.id, receivedAt: '2026-12-01T00:00:00.000Z' }],
  });
  for (const id of ['../../escaped', '0123456789abcdef0123456789abcdef/../../x', 'ABCDEF0123456789ABCDEF0123456789']) {
    const bad = await serve(t, { '/v1/review/items': page(id) });
    const outDir = join(bad.dir, 'items');
    assertMalformed(await runCli(['review', 'fetch', '--out', outDir, ...bad.flags]), 'review items');
    assert.deepEqual(
      (await readdir(bad.dir)).sort(),
      ['ca.pem', 'cert.pem', 'items', 'key.pem'],
      'nothing was written beside the output directory',
    );
    assert.deepEqual(await readdir(outDir), []);
  }
  // An item answer whose id is not the one asked for, or whose item is not a string, is refused too.
  const id = '0123456789abcdef0123456789abcdef';
  const wrongItem = await serve(t, {
    '/v1/review/items': page(id),
    [`/v1/review/items/${id}`]: { id, item: [{ toString: 0 }] },
  });
  assertMalformed(
    await runCli(['review', 'fetch', '--out', join(wrongItem.dir, 'items'), ...wrongItem.flags]),
    'review item',
  );
});

test('audit list and append, release status, director keys: malformed answers are EG_SERVER', async (t) => {
  const cp = await serve(t, {
    '/v1/audit/entries': { entries: [{ index: -1, event: {} }], next: null },
    '/v1/audit/events': { index: 'seven' },
    '/v1/releases/status': { assignments: null, devices: [] },
    '/v1/director/keys': { threshold: 1, keys: [{ keyId: 'k', pem: 'not a key' }] },
  });
  assertMalformed(await runCli(['audit', 'list', ...cp.flags]), 'audit entries');
  const eventFile = join(cp.dir, 'event.json');
  await writeFile(
    eventFile,
    JSON.stringify({
      type: 'admin.action',
      time: new Date().toISOString(),
      outcome: 'success',
      details: { action: 'rotate-keys' },
    }),
  );
  assertMalformed(await runCli(['audit', 'append', eventFile, ...cp.flags]), 'audit append');
  assertMalformed(await runCli(['release', 'status', ...cp.flags]), 'release status');
  const keyOut = join(cp.dir, 'director.pem');
  assertMalformed(await runCli(['release', 'director-keys', '--out', keyOut, ...cp.flags]), 'director keys');
  assert.ok(
    !(await readdir(cp.dir)).includes('director.pem'),
    'a key that is not one was not written for devices to pin',
  );
});

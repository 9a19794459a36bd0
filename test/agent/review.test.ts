/**
 * The review queue: delivery to a real control plane over mutual TLS: items wait sealed while the
 * server is unreachable, arrive still sealed, and only the review private key opens them. The item
 * format and the spool are tested in test/fleet/review-item.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSealKeyPair } from '../../src/crypto/index.ts';
import { openReviewItem, parseReviewItem, sealReviewItem, REVIEW_HEADER_BYTES } from '../../src/fleet/index.ts';
import { reviewServerPlugin } from '../../src/server/routes/review.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestFleet } from '../server/fleet-helpers.ts';
import { serveFixture, startService, infer } from './serve-fixture.ts';
import { eventually } from '../helpers/wait.ts';

const META = {
  contentType: 'image/png',
  verdict: 'flag' as const,
  reasons: [{ stage: 'ensemble', code: 'ensemble-disagreement', message: 'x' }],
};

test('delivery to the control plane: items wait sealed while it is unreachable, then arrive sealed', async (t) => {
  const fleet = await startTestFleet({ plugins: [reviewServerPlugin()] });
  t.after(() => fleet.stop());
  const f = await serveFixture(t);
  const device = await fleet.deviceCredential();
  const admin = await fleet.adminCredential();
  await writeFile(join(f.dir, 'fleet-ca.pem'), fleet.ca.rootPem);
  await writeFile(join(f.dir, 'device.crt'), device.cert);
  await writeFile(join(f.dir, 'device.key'), device.key, { mode: 0o600 });
  const png = await readFile(join(FIXTURES, 'digits', '3-1.png'));

  // 1. Nothing listens at the configured server: the flagged input waits, sealed, in the spool.
  const offline = await startService(
    t,
    f.config({
      upload: {
        server: 'https://127.0.0.1:9',
        ca: 'fleet-ca.pem',
        cert: 'device.crt',
        key: 'device.key',
        intervalMs: 60_000,
      },
    }),
  );
  const r1 = await infer(offline.url, png, 'image/png');
  assert.equal(r1.body.verdict, 'flag');
  const flush1 = await offline.review!.flush();
  assert.deepEqual(flush1, { sent: 0, failed: true });
  assert.equal(offline.review!.spool.items, 1);
  assert.match(await (await fetch(`${offline.url}/metrics`)).text(), /edgeguard_review_upload_failures_total [1-9]/);
  await offline.close();

  // 2. The same spool with the real control plane: delivered, then removed from the device.
  const online = await startService(
    t,
    f.config({
      upload: {
        server: fleet.server.url,
        ca: 'fleet-ca.pem',
        cert: 'device.crt',
        key: 'device.key',
        intervalMs: 60_000,
      },
    }),
  );
  assert.equal(online.review!.spool.items, 1, 'the spooled item survived the restart');
  const r2 = await infer(online.url, png, 'image/png');
  const id2 = (r2.body.review as { id: string }).id;
  let flushed = await online.review!.flush();
  if (online.review!.spool.items > 0) flushed = await online.review!.flush();
  assert.equal(online.review!.spool.items, 0, JSON.stringify(flushed));
  assert.deepEqual(
    (await readdir(f.spoolDir)).filter((n) => n.endsWith('.egr')),
    [],
  );

  const client = fleet.client(admin);
  const list = await client.call<{ items: Array<{ id: string; deviceId: string; keyId: string }> }>(
    'GET',
    '/v1/review/items',
  );
  assert.equal(list.body.items.length, 2);
  assert.ok(list.body.items.every((i) => i.deviceId === device.deviceId));
  const stored = await client.call<{ item: string }>('GET', `/v1/review/items/${id2}`);
  const sealed = Buffer.from(stored.body.item, 'base64');
  assert.equal(sealed.includes(png.subarray(40, 80)), false, 'the server holds plaintext');
  assert.deepEqual(openReviewItem(sealed, f.review.privateKey).input, png);
  // A device cannot list items; an admin cannot deliver; a forged item is refused.
  const dev = fleet.client(device);
  assert.equal((await dev.send('GET', '/v1/review/items')).status, 403);
  assert.equal((await client.send('POST', '/v1/review/items', { id: id2, item: stored.body.item })).status, 403);
  const forged = Buffer.from(sealed);
  forged.writeUInt32BE(5, 75);
  assert.equal((await dev.send('POST', '/v1/review/items', { id: id2, item: forged.toString('base64') })).status, 400);
  assert.equal(sealed.length > REVIEW_HEADER_BYTES, true);

  // 3. The operator fetches them (still sealed) and opens them with the review key.
  const credDir = join(f.dir, 'admin');
  await mkdir(credDir);
  await writeFile(join(credDir, 'admin.crt'), admin.cert);
  await writeFile(join(credDir, 'admin.key'), admin.key, { mode: 0o600 });
  const out = join(f.dir, 'fetched');
  const fetched = await runCli([
    'review',
    'fetch',
    '--server',
    fleet.server.url,
    '--cert',
    join(credDir, 'admin.crt'),
    '--key',
    join(credDir, 'admin.key'),
    '--ca',
    join(f.dir, 'fleet-ca.pem'),
    '--out',
    out,
    '--json',
  ]);
  assert.equal(fetched.code, 0, fetched.stderr + fetched.stdout);
  assert.equal(JSON.parse(fetched.stdout).fetched, 2);
  const listed = await runCli(['review', 'list', '--dir', out, '--key', f.reviewKeyPath, '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  assert.deepEqual(
    JSON.parse(listed.stdout).items.map((i: { metadata: { verdict: string } }) => i.metadata.verdict),
    ['flag', 'flag'],
  );
  // The device the server recorded (from its certificate) stays with each fetched item.
  assert.deepEqual(
    JSON.parse(listed.stdout).items.map((i: { deviceId: string }) => i.deviceId),
    [device.deviceId, device.deviceId],
  );
  // 4. Acknowledged items leave the control plane.
  const acked = await runCli([
    'review',
    'ack',
    id2,
    '--server',
    fleet.server.url,
    '--client-cert',
    join(credDir, 'admin.crt'),
    '--client-key',
    join(credDir, 'admin.key'),
    '--ca',
    join(f.dir, 'fleet-ca.pem'),
  ]);
  assert.equal(acked.code, 0, acked.stderr);
  const left = await client.call<{ items: Array<{ id: string }> }>('GET', '/v1/review/items');
  assert.deepEqual(left.body.items.map((i) => i.id).includes(id2), false);
  assert.equal(left.body.items.length, 1);
});

test('the control plane keeps review items sealed on PostgreSQL too', async (t) => {
  const { createTempDatabase } = await import('../helpers/postgres.ts');
  const db = await createTempDatabase('eg_review');
  t.after(() => db.drop());
  const fleet = await startTestFleet({ dbUrl: db.url, plugins: [reviewServerPlugin()] });
  t.after(() => fleet.stop());
  const device = await fleet.deviceCredential();
  const admin = await fleet.adminCredential();
  const k = generateSealKeyPair();
  const input = Buffer.from('a flagged frame');
  const { id, bytes } = sealReviewItem(k.publicKey, META, input);
  const dev = fleet.client(device);
  const first = await dev.call<{ stored: boolean }>('POST', '/v1/review/items', { id, item: bytes.toString('base64') });
  assert.equal(first.body.stored, true);
  const again = await dev.call<{ stored: boolean }>('POST', '/v1/review/items', { id, item: bytes.toString('base64') });
  assert.equal(again.body.stored, false, 'delivery is idempotent');
  const client = fleet.client(admin);
  const list = await client.call<{ items: Array<{ id: string; createdMs: number }> }>(
    'GET',
    '/v1/review/items?limit=10',
  );
  assert.deepEqual(
    list.body.items.map((i) => i.id),
    [id],
  );
  assert.equal(list.body.items[0]!.createdMs, parseReviewItem(bytes).createdMs);
  const got = await client.call<{ item: string }>('GET', `/v1/review/items/${id}`);
  assert.deepEqual(openReviewItem(Buffer.from(got.body.item, 'base64'), k.privateKey).input, input);
  assert.equal((await client.send('GET', `/v1/review/items/${'0'.repeat(32)}`)).status, 404);
});

test('upload through an enrolled device directory (software key store): the TLS key is unwrapped, items delivered', async (t) => {
  const { initDevice } = await import('../../src/keystore/index.ts');
  const { enrollDevice } = await import('../../src/fleet/index.ts');
  const fleet = await startTestFleet({ policy: { allowSoftwareDevices: true }, plugins: [reviewServerPlugin()] });
  t.after(() => fleet.stop());
  const f = await serveFixture(t);
  const deviceDir = join(f.dir, 'device');
  await initDevice({ dir: deviceDir });
  const enrolling = enrollDevice({
    deviceDir,
    server: fleet.server.url,
    caPem: fleet.ca.rootPem,
    poll: { initialMs: 50, maxMs: 200, timeoutMs: 30_000 },
  });
  const pending = await eventually(
    'the device to ask for approval',
    async () => (await fleet.server.ctx.store.listDevices({ status: 'pending' }))[0],
  );
  await fleet.server.ctx.store.approveDevice(pending.id, 'test');
  const enrolled = await enrolling;
  const s = await startService(t, f.config({ upload: { device: deviceDir, intervalMs: 60_000 } }));
  const r = await infer(s.url, await readFile(join(FIXTURES, 'digits', '3-1.png')), 'image/png');
  assert.equal(r.body.verdict, 'flag');
  await s.review!.flush();
  if (s.review!.spool.items > 0) await s.review!.flush();
  assert.equal(s.review!.spool.items, 0);
  const admin = fleet.client(await fleet.adminCredential());
  const list = await admin.call<{ items: Array<{ id: string; deviceId: string }> }>('GET', '/v1/review/items');
  assert.deepEqual(
    list.body.items.map((i) => [i.id, i.deviceId]),
    [[(r.body.review as { id: string }).id, enrolled.deviceId]],
  );
});

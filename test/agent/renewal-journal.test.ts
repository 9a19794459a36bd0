/**
 * The running agent against a real control plane (fleet CA, mutual TLS, audit log):
 *   - it renews its device certificate by itself (on start when due, and on the timer after a
 *     clock jump), and the clients it made before the renewal present the new certificate on a
 *     device-only endpoint once the old one has expired;
 *   - its security events go to its signed journal and reach the server's Merkle log, provable by
 *     inclusion proof; with the server down renewals are retried with backoff, the agent keeps
 *     serving, entries wait on disk and arrive later without gaps.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeLogLeaf, verifyInclusion, type LogLeaf } from '../../src/audit/index.ts';
import { startServer, type RunningServer } from '../../src/server/index.ts';
import { auditServerPlugin } from '../../src/server/routes/audit.ts';
import { renewalTime } from '../../src/agent/renewal.ts';
import { backoffDelay } from '../../src/fleet/index.ts';
import { AgentJournal } from '../../src/agent/agent-journal.ts';
import { isEdgeguardError } from '../../src/errors/index.ts';
import type { RunningAgent } from '../../src/agent/serve.ts';
import { FIXTURES, tempDir } from '../helpers/workspace.ts';
import { TEST_PASSPHRASE, startTestFleet, type TestFleet } from '../server/fleet-helpers.ts';
import { serveFixture, startService, infer, pngOf, type ServeFixture } from './serve-fixture.ts';
import { eventually } from '../helpers/wait.ts';

const keyDir = mkdtempSync(join(tmpdir(), 'eg-renewal-logkey-'));
process.on('exit', () => rmSync(keyDir, { recursive: true, force: true }));
// One audit plugin for every server of this file (the log signing key lives in keyDir).
const audit = auditServerPlugin({ dataDir: keyDir, checkpointIntervalMs: 100 });

const DAY = 86_400_000;

/** A condition awaited with the suite's generous deadline (helpers/wait.ts). */
const until = (what: string, cond: () => boolean | Promise<boolean>) => eventually(what, cond, { intervalMs: 25 });

/** Device credential files for `upload:`; the certificate is due for renewal (past 2/3 of its life). */
async function deviceFiles(f: ServeFixture, fleet: TestFleet, notAfterMs: number, issuedAgoMs = 60_000) {
  const now = Date.now();
  const device = await fleet.deviceCredential({
    validity: { notBefore: new Date(now - issuedAgoMs), notAfter: new Date(now + notAfterMs) },
  });
  await writeFile(join(f.dir, 'fleet-ca.pem'), fleet.ca.rootPem);
  await writeFile(join(f.dir, 'device.crt'), device.cert);
  await writeFile(join(f.dir, 'device.key'), device.key, { mode: 0o600 });
  return device;
}

/** Every leaf the device forwarded, with its index, and inclusion proofs checked against a fresh checkpoint. */
async function provenDeviceLeaves(deviceId: string): Promise<Array<{ index: number; leaf: LogLeaf }>> {
  const log = audit.log!;
  await log.flush();
  const cp = await log.publishCheckpoint();
  const out: Array<{ index: number; leaf: LogLeaf }> = [];
  for (let i = 0; i < cp.size; i++) {
    const p = await log.inclusionProof(i, cp.size);
    assert.ok(verifyInclusion(p.leafHash, i, cp.size, p.proof, cp.root), `inclusion proof of entry ${i}`);
    const leaf = decodeLogLeaf(Buffer.from(p.leaf));
    if (leaf.origin.kind === 'device' && leaf.origin.device.deviceId === deviceId) out.push({ index: i, leaf });
  }
  return out;
}

function seqs(leaves: Array<{ leaf: LogLeaf }>): number[] {
  return leaves.map((l) => (l.leaf.origin.kind === 'device' ? l.leaf.origin.device.seq : -1));
}

test('renewal schedule: two thirds of the lifetime, jitter only earlier, backoff capped', () => {
  const nb = new Date(Date.UTC(2026, 0, 1));
  const na = new Date(nb.getTime() + 30 * DAY);
  assert.equal(renewalTime(nb, na, 0), nb.getTime() + 20 * DAY);
  assert.equal(renewalTime(nb, na, 1), nb.getTime() + 19 * DAY);
  assert.equal(renewalTime(nb, na, 7), nb.getTime() + 19 * DAY, 'jitter is clamped to 0..1');
  // A 6-minute certificate: 4 minutes, minus at most 1/30 of the lifetime.
  const short = new Date(nb.getTime() + 360_000);
  assert.equal(renewalTime(nb, short, 0), nb.getTime() + 240_000);
  assert.equal(renewalTime(nb, short, 1), nb.getTime() + 228_000);
  assert.deepEqual(
    [1, 2, 3, 4, 10, 100].map((n) => backoffDelay(n, 1000, 60_000, 0.5)),
    [1000, 2000, 4000, 8000, 60_000, 60_000],
  );
  assert.equal(backoffDelay(3, 1000, 60_000, 0), 3000);
  assert.equal(backoffDelay(3, 1000, 60_000, 1), 5000);
  assert.equal(backoffDelay(20, 1000, 60_000, 1), 60_000, 'never above the cap');
});

test('the running agent renews its certificate by itself and its existing clients use the new one; a guard reject is proven in the Merkle log', async (t) => {
  const fleet = await startTestFleet({ plugins: [audit] });
  t.after(() => fleet.stop());
  const f = await serveFixture(t);
  // Valid for 6 more seconds, issued a minute ago: past two thirds of its life, so due at start.
  const device = await deviceFiles(f, fleet, 6_000);
  const oldNotAfter = new Date(Date.now() + 6_000);
  let offset = 0;
  const s: RunningAgent = await startService(
    t,
    f.config({
      upload: {
        server: fleet.server.url,
        ca: 'fleet-ca.pem',
        cert: 'device.crt',
        key: 'device.key',
        intervalMs: 60_000,
      },
      renewal: { maxSleepMs: 200, backoffInitialMs: 100, backoffMaxMs: 1000 },
      journal: { forwardIntervalMs: 60_000 },
    }),
    { renewalClock: () => Date.now() + offset },
  );
  assert.equal(s.identity!.deviceId, device.deviceId);
  await until('the renewal on start', () => s.renewer!.status().last?.result === 'renewed');
  const first = s.renewer!.status();
  assert.notEqual(first.serial, device.serial.toLowerCase());
  assert.equal(first.consecutiveFailures, 0);
  assert.ok(new Date(first.notAfter).getTime() > Date.now() + 29 * DAY, first.notAfter);
  // Stored atomically where it came from, so a restart uses it too.
  assert.equal(await readFile(join(f.dir, 'device.crt'), 'utf8'), s.identity!.certPem);
  const health = (await (await fetch(`${s.url}/healthz`)).json()) as {
    certificate: { serial: string; last: { result: string } };
    journal: { lastSeq: number };
  };
  assert.equal(health.certificate.serial, first.serial);
  assert.equal(health.certificate.last.result, 'renewed');
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(metrics, /edgeguard_agent_cert_renewals_total\{result="renewed"\} 1\b/);
  assert.match(metrics, /edgeguard_agent_cert_renewal_last_success 1\b/);
  assert.match(
    metrics,
    new RegExp(`edgeguard_agent_cert_not_after_seconds ${Math.floor(new Date(first.notAfter).getTime() / 1000)}\\b`),
  );

  // A guard reject (a blank image), journaled without the input.
  const blank = await pngOf(new Array<number>(784).fill(0));
  const r = await infer(s.url, blank, 'image/png');
  assert.equal(r.body.verdict, 'reject');

  // Once the old certificate has expired the server refuses it...
  await until('the old certificate to expire', () => Date.now() > oldNotAfter.getTime() + 1500);
  const old = fleet.client({ cert: device.cert, key: device.key });
  assert.equal((await old.send('GET', '/v1/device/self')).status, 401);
  // ...and the journal's client, made before the renewal, reaches device-only endpoints with the new one.
  const fwd = await s.journal!.forward();
  assert.ok(fwd && fwd.sent > 0 && fwd.gaps.length === 0, JSON.stringify(fwd));
  assert.equal(fwd.serverSeq, s.journal!.journal.lastSeq);

  const leaves = await provenDeviceLeaves(device.deviceId);
  assert.deepEqual(
    seqs(leaves),
    leaves.map((_, i) => i),
    'every journal entry, in order',
  );
  const types = leaves.map((l) => l.leaf.event.type);
  for (const ty of ['model.loaded', 'agent.started', 'cert.renewed', 'guard.rejected'])
    assert.ok(types.includes(ty as never), `${ty} in ${types.join(', ')}`);
  const rejected = leaves.find((l) => l.leaf.event.type === 'guard.rejected')!.leaf.event;
  assert.equal(rejected.outcome, 'denied');
  assert.ok(rejected.type === 'guard.rejected');
  assert.equal(rejected.details.check, 'out-of-profile');
  assert.equal(rejected.details.model, 'mnist-cnn@1');
  assert.equal(rejected.details.inputSha256, undefined, 'no digest of the input either');
  assert.equal(JSON.stringify(rejected).includes(blank.subarray(0, 16).toString('base64')), false);
  const renewed = leaves.find((l) => l.leaf.event.type === 'cert.renewed')!.leaf.event;
  assert.ok(renewed.type === 'cert.renewed');
  assert.equal(renewed.details.previousSerial, device.serial.toLowerCase());
  assert.equal(renewed.details.serial, first.serial);
  const loaded = leaves.filter((l) => l.leaf.event.type === 'model.loaded').map((l) => l.leaf.event);
  assert.deepEqual(loaded.map((e) => (e.type === 'model.loaded' ? e.details.name : '')).sort(), [
    'mnist-cnn',
    'mnist-mlp',
  ]);

  // The wall clock jumps 21 days ahead (a suspended device, an NTP correction): the next capped
  // wake-up sees the new certificate due and renews again, on the timer.
  offset = 21 * DAY;
  await until('the renewal after the clock jump', () => s.renewer!.status().serial !== first.serial);
  offset = 0;
  const again = await infer(s.url, await readFile(join(FIXTURES, 'digits', '7-0.png')), 'image/png');
  assert.equal(again.body.verdict, 'accept');
});

test('with the control plane down: renewal retried with backoff, the agent keeps serving, journal entries wait and arrive later without gaps', async (t) => {
  const dataDir = await tempDir(t, 'eg-renewal-cp-');
  const fleet = await startTestFleet({ plugins: [audit], dataDir });
  const port = fleet.server.port;
  const f = await serveFixture(t);
  const device = await deviceFiles(f, fleet, DAY, 3 * DAY);
  await fleet.stop();
  let server: RunningServer | undefined;
  t.after(() => server?.close());
  const restart = async () => {
    server = await startServer({
      dataDir,
      listen: `127.0.0.1:${port}`,
      caPassphrase: TEST_PASSPHRASE,
      plugins: [audit],
    });
  };

  // 1. Start with nothing listening: renewal fails and is retried; inference is unaffected.
  const s = await startService(
    t,
    f.config({
      upload: {
        server: `https://127.0.0.1:${port}`,
        ca: 'fleet-ca.pem',
        cert: 'device.crt',
        key: 'device.key',
        intervalMs: 60_000,
      },
      renewal: { maxSleepMs: 1000, backoffInitialMs: 50, backoffMaxMs: 400 },
      journal: { forwardIntervalMs: 100, backoffMaxMs: 400 },
    }),
  );
  await until('two failed renewals', () => s.renewer!.status().consecutiveFailures >= 2);
  const blank = await pngOf(new Array<number>(784).fill(0));
  assert.equal((await infer(s.url, blank, 'image/png')).body.verdict, 'reject');
  assert.equal(
    (await infer(s.url, await readFile(join(FIXTURES, 'digits', '7-0.png')), 'image/png')).body.verdict,
    'accept',
  );
  const down = s.renewer!.status();
  assert.equal(down.last?.result, 'failed');
  assert.equal(down.serial, device.serial.toLowerCase());
  assert.match(
    await (await fetch(`${s.url}/metrics`)).text(),
    /edgeguard_agent_cert_renewals_total\{result="failed"\} [2-9]/,
  );
  await until('a failed forwarding round', () => s.journal!.status().consecutiveFailures >= 1);
  assert.equal(s.journal!.status().forwardedSeq, null);

  // 2. The control plane comes back: the renewal and the waiting entries go through by themselves.
  await restart();
  await until('the renewal', () => s.renewer!.status().last?.result === 'renewed');
  await s.journal!.flush();
  const target = s.journal!.journal.lastSeq;
  await until('the journal to be forwarded', () => (s.journal!.status().forwardedSeq ?? -1) >= target);

  // 3. Down again: more rejects wait on disk.
  await server!.close();
  server = undefined;
  for (let i = 0; i < 3; i++) assert.equal((await infer(s.url, blank, 'image/png')).body.verdict, 'reject');
  await s.journal!.flush();
  const waiting = s.journal!.journal.lastSeq;
  await until('a failed forwarding round', () => s.journal!.status().consecutiveFailures >= 1);
  assert.ok((s.journal!.status().forwardedSeq ?? -1) < waiting);

  // 4. Back: everything arrives, in order, no gaps; each reject is provable.
  await restart();
  await until('the backlog to be forwarded', () => (s.journal!.status().forwardedSeq ?? -1) >= waiting);
  const leaves = await provenDeviceLeaves(device.deviceId);
  assert.deepEqual(
    seqs(leaves),
    Array.from({ length: leaves.length }, (_, i) => i),
    'seq 0.. without gaps',
  );
  assert.equal(leaves.length, waiting + 1);
  const types = leaves.map((l) => l.leaf.event.type);
  assert.equal(types.filter((x) => x === 'guard.rejected').length, 4);
  const renewals = leaves.filter((l) => l.leaf.event.type === 'cert.renewed').map((l) => l.leaf.event.outcome);
  assert.ok(renewals.filter((o) => o === 'failure').length >= 2, renewals.join());
  assert.equal(renewals.at(-1), 'success');
  // The server saw no gap in this device's chain.
  const all = await provenDeviceLeavesAll();
  assert.equal(
    all.some((l) => l.event.type === 'audit.journal_gap'),
    false,
  );
});

async function provenDeviceLeavesAll(): Promise<LogLeaf[]> {
  const log = audit.log!;
  await log.flush();
  const cp = await log.publishCheckpoint();
  const out: LogLeaf[] = [];
  for (let i = 0; i < cp.size; i++) out.push(decodeLogLeaf(Buffer.from((await log.inclusionProof(i, cp.size)).leaf)));
  return out;
}

test('the agent journal: needs a device identity; refuses to continue a journal signed with another key', async (t) => {
  const f = await serveFixture(t);
  assert.throws(
    () => f.config({ journal: { enabled: true } }),
    (e) => isEdgeguardError(e, 'EG_CONFIG') && /journal\.enabled.*upload/.test(e.message),
  );
  const path = join(f.dir, 'audit.journal');
  const open = (key: KeyObject) =>
    AgentJournal.open({
      path,
      privateKey: key,
      publicKey: createPublicKey(key),
      deviceId: 'dev-0123456789abcdef',
      intervalMs: 1000,
      backoffMaxMs: 1000,
      batch: 10,
      maxPending: 100,
    });
  const first = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const j = await open(first);
  j.record('agent.stopped', 'success', { reason: 'test', uptimeS: 1 });
  j.record('review.item', 'success', { itemId: 'a'.repeat(32), action: 'queued' });
  await j.close(0);
  assert.equal(j.journal.lastSeq, 1);
  assert.equal((await open(first)).journal.lastSeq, 1, 'reopened with the same key');
  await assert.rejects(
    open(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey),
    (e) => isEdgeguardError(e, 'EG_TAMPERED') && /move the old journal away/.test(e.message),
  );
});

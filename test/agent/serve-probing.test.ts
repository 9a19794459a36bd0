/**
 * The probing defence of POST /v1/infer over real HTTP, the real models and a real signed journal:
 * a burst of near-duplicate digits (a query attack's traffic) is refused with 429 EG_PROBING and
 * journaled once as guard.probing; varied digits are not; the query budget refuses with 429
 * EG_RATE_LIMITED and refills with time (the app's clock is the test's).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { readPublicSigningKey } from '../../src/crypto/index.ts';
import { parseJournal } from '../../src/audit/index.ts';
import { AgentJournal } from '../../src/agent/agent-journal.ts';
import { buildAgentApp } from '../../src/agent/http-app.ts';
import type { AgentConfigInput } from '../../src/agent/config.ts';
import { openGuardedModel } from '../../src/runtime/index.ts';
import { loadMnist, mnistSplit, digitPixels, mulberry32 } from '../../scripts/lib/mnist-split.ts';
import { serveFixture, pngOf, infer } from './serve-fixture.ts';

interface Served {
  url: string;
  journal: AgentJournal;
  journalPath: string;
  advance(ms: number): void;
}

async function serve(t: TestContext, probing: AgentConfigInput['probing']): Promise<Served> {
  const f = await serveFixture(t);
  const config = f.config({ probing, review: { enabled: false } });
  const runtime = await openGuardedModel({
    models: config.models,
    publicKeys: await Promise.all(config.trust.publicKeys.map((p) => readPublicSigningKey(p))),
    contentKey: config.contentKey,
    guard: config.guard,
    profile: config.guard.profile,
  });
  t.after(() => runtime.release());
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const journalPath = join(f.dir, 'audit.journal');
  const journal = await AgentJournal.open({
    path: journalPath,
    privateKey,
    publicKey,
    deviceId: 'dev-probing-test',
    intervalMs: 3_600_000,
    backoffMaxMs: 3_600_000,
    batch: 100,
    maxPending: 1000,
  });
  t.after(() => journal.close());
  let now = 1_000_000;
  const { app } = await buildAgentApp(config, runtime, { journal, now: () => now });
  t.after(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, journal, journalPath, advance: (ms) => (now += ms) };
}

async function probingEvents(s: Served): Promise<Array<Record<string, unknown>>> {
  await s.journal.flush();
  return parseJournal(await readFile(s.journalPath))
    .entries.map((e) => e.event)
    .filter((e) => e.type === 'guard.probing')
    .map((e) => e.details as Record<string, unknown>);
}

test('a burst of near-duplicates is refused with 429 EG_PROBING and journaled once; varied digits are not', async (t) => {
  const s = await serve(t, { nearDuplicates: { history: 16, neighbours: 4 }, blockMs: 60_000 });
  const data = loadMnist();
  const digits = mnistSplit(data.count).evaluation.slice(0, 24);
  // Ordinary traffic: different digits.
  for (const idx of digits) {
    const r = await infer(s.url, await pngOf(digitPixels(data, idx)), 'image/png');
    assert.equal(r.status, 200, JSON.stringify(r.body));
  }
  assert.deepEqual(await probingEvents(s), []);
  // A query attack's traffic: one digit, a few pixels changed per query.
  const x = Float32Array.from(digitPixels(data, digits[0]!));
  const rand = mulberry32(5);
  let refused: Awaited<ReturnType<typeof infer>> | undefined;
  for (let q = 0; q < 20 && !refused; q++) {
    const y = Float32Array.from(x);
    for (let k = 0; k < 3; k++) y[Math.floor(rand() * 784)] = rand();
    const r = await infer(s.url, await pngOf(y), 'image/png');
    if (r.status !== 200) refused = r;
  }
  assert.equal(refused?.status, 429, JSON.stringify(refused?.body));
  assert.equal(refused?.body.error?.code, 'EG_PROBING');
  // Blocked at the door from now on, even for a different input; one event for the episode.
  const after = await fetch(`${s.url}/v1/infer`, {
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: await pngOf(digitPixels(data, digits[5]!)),
  });
  assert.equal(after.status, 429);
  assert.equal(after.headers.get('retry-after'), '60');
  assert.equal(((await after.json()) as { error: { code: string } }).error.code, 'EG_PROBING');
  const events = await probingEvents(s);
  assert.equal(events.length, 1);
  assert.equal(events[0]!.reason, 'near-duplicates');
  assert.equal(events[0]!.client, 'addr:127.0.0.1');
  assert.ok((events[0]!.neighbours as number) >= 4);
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(metrics, /edgeguard_agent_probing_refused_total\{reason="near-duplicates"\} 2/);
  // After the block the client is served again.
  s.advance(60_001);
  assert.equal((await infer(s.url, await pngOf(digitPixels(data, digits[6]!)), 'image/png')).status, 200);
});

test('the query budget refuses with 429 EG_RATE_LIMITED and refills with time', async (t) => {
  const s = await serve(t, { budget: { capacity: 3, refillPerSecond: 0.5 }, nearDuplicates: { enabled: false } });
  const png = await pngOf(digitPixels(loadMnist(), mnistSplit().evaluation[0]!));
  for (let i = 0; i < 3; i++) assert.equal((await infer(s.url, png, 'image/png')).status, 200);
  const r = await fetch(`${s.url}/v1/infer`, { method: 'POST', headers: { 'content-type': 'image/png' }, body: png });
  assert.equal(r.status, 429);
  assert.equal(r.headers.get('retry-after'), '2');
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'EG_RATE_LIMITED');
  s.advance(2_000);
  assert.equal((await infer(s.url, png, 'image/png')).status, 200);
  assert.equal((await infer(s.url, png, 'image/png')).status, 429);
  const events = await probingEvents(s);
  assert.equal(events.length, 1, JSON.stringify(events));
  assert.equal(events[0]!.reason, 'budget');
});

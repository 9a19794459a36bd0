/**
 * Overload: ten times the concurrency limit at once gives 429s with a typed code (checked once
 * the body is in), no crash, the service keeps answering, and memory stays bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FIXTURES } from '../helpers/workspace.ts';
import { serveFixture, startService, infer, postFresh } from './serve-fixture.ts';
import { eventually } from '../helpers/wait.ts';

test('ten times the concurrency limit: 429s, no crash, bounded memory', async (t) => {
  const f = await serveFixture(t);
  const limit = 4;
  // The probing defence off: 420 queries of one digit from one client would spend its query budget.
  const s = await startService(t, f.config({ limits: { concurrency: limit }, probing: { enabled: false } }));
  const png = await readFile(join(FIXTURES, 'digits', '8-0.png'));
  // A fresh connection for every request, so all of them reach the server at once.
  const fire = () => postFresh(s.url, png, 'image/png');
  // Warm up, then measure.
  for (let i = 0; i < 20; i++) await fire();
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let ok = 0;
  let overloaded = 0;
  for (let round = 0; round < 10; round++) {
    const results = await Promise.all(Array.from({ length: limit * 10 }, fire));
    for (const r of results) {
      if (r.status === 200) {
        ok++;
        assert.equal(r.body.label, '8');
      } else {
        assert.equal(r.status, 429);
        assert.equal(r.body.error?.code, 'EG_OVERLOADED');
        assert.equal(r.retryAfter, '1');
        overloaded++;
      }
    }
  }
  global.gc?.();
  const rssAfter = process.memoryUsage().rss;
  t.diagnostic(
    `served ${ok}, refused ${overloaded} with 429; RSS ${Math.round(rssBefore / 1048576)} -> ${Math.round(rssAfter / 1048576)} MiB`,
  );
  assert.ok(overloaded > 0, 'no request was refused with 429');
  assert.ok(ok >= 10, `only ${ok} requests were served`);
  // 400 requests in flight bursts: memory must not grow with the load (generous bound).
  assert.ok(
    rssAfter - rssBefore < 256 * 1024 * 1024,
    `RSS grew by ${Math.round((rssAfter - rssBefore) / 1048576)} MiB`,
  );
  // Still healthy and serving; the in-flight count is back to zero.
  const health = (await (await fetch(`${s.url}/healthz`)).json()) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(health.status, 'ok');
  assert.equal(health.inflight, 0);
  assert.equal((await infer(s.url, png, 'image/png')).body.label, '8');
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  const m = /edgeguard_agent_overload_total (\d+)/.exec(metrics);
  assert.equal(Number(m?.[1]), overloaded);
});

test('a client that disconnects mid-body does not keep its slot', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config({ limits: { concurrency: 1 } }));
  const { request } = await import('node:http');
  for (let i = 0; i < 3; i++) {
    await new Promise<void>((resolve) => {
      const req = request(`${s.url}/v1/infer`, {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'image/png', 'content-length': 100_000 },
      });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(1000, 1), () =>
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 100),
      );
    });
  }
  await eventually(
    'every slot to be released',
    async () => ((await (await fetch(`${s.url}/healthz`)).json()) as { inflight: number }).inflight === 0,
  );
  const png = await readFile(join(FIXTURES, 'digits', '8-1.png'));
  assert.equal((await infer(s.url, png, 'image/png')).body.label, '8');
});

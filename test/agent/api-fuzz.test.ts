/**
 * The agent's API fuzzer: every route of its own OpenAPI document gets valid-shaped and hostile
 * requests (test/helpers/openapi-fuzz.ts). The agent takes no client credentials (it binds
 * loopback or a unix socket), so the invariants are: never a 5xx, never a non-EG error body.
 * EDGEGUARD_FUZZ_LONG=1 runs >= 10,000 requests per route.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import fc from 'fast-check';
import {
  bodyFor,
  invariantBroken,
  operationsOf,
  pathFor,
  queryFor,
  rawRequest,
  runsPerRoute,
} from '../helpers/openapi-fuzz.ts';
import { serveFixture, startService } from './serve-fixture.ts';

test('every agent route, valid-shaped and hostile requests: no 5xx, every error an EG_* body', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config({ limits: { concurrency: 4, bodyBytes: 64 * 1024 } }));
  const doc = (await (await fetch(`${s.url}/openapi.json`)).json()) as unknown;
  const ops = operationsOf(doc);
  assert.ok(
    ops.some((o) => o.path === '/v1/infer' && o.method === 'POST'),
    'the document lists /v1/infer',
  );
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  for (const op of ops) {
    // Every method on every path, not only the documented one.
    const method = fc.oneof(fc.constant(op.method), fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'));
    await fc.assert(
      fc.asyncProperty(method, pathFor(op, []), queryFor(op), bodyFor(op), async (m, path, query, body) => {
        const r = await rawRequest(s.url, agent, m, path + query, m === 'GET' ? { ...body, bytes: undefined } : body);
        const broken = invariantBroken(r);
        assert.equal(broken, undefined, `${m} ${path}${query}: ${broken}`);
      }),
      { numRuns: runsPerRoute(1) },
    );
  }
  const health = (await (await fetch(`${s.url}/healthz`)).json()) as { status: string; inflight: number };
  assert.equal(health.status, 'ok');
  assert.equal(health.inflight, 0);
});

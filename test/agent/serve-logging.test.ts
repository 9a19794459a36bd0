/**
 * What the agent logs per request at `info`: one line when a request is answered, and none for a
 * 4xx (a refused input, overload, a client's budget), which the metrics count; the reason of a
 * refusal is logged at debug. A client flooding refused requests cannot turn them into log I/O.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { FIXTURES } from '../helpers/workspace.ts';
import { infer, serveFixture, startService } from './serve-fixture.ts';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _e, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean))
        lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, logger: pino({ level }, sink) };
}

/** The lines logged for request `reqId`. */
const of = (lines: Array<Record<string, unknown>>, reqId: unknown) => lines.filter((l) => l['reqId'] === reqId);

test('one info line per answered request, none for a refused one; the reason at debug', async (t) => {
  const f = await serveFixture(t);
  const info = capture('info');
  const s = await startService(t, f.config({ log: { level: 'info' } }), { logger: info.logger });
  const png = await readFile(join(FIXTURES, 'digits', '2-0.png'));
  const ok = await infer(s.url, png, 'image/png');
  assert.equal(ok.status, 200);
  const served = of(info.lines, ok.body['requestId']);
  assert.deepEqual(
    served.map((l) => l['msg']),
    ['request completed'],
  );
  assert.equal((served[0]!['res'] as { statusCode: number }).statusCode, 200);
  const before = info.lines.length;
  for (let i = 0; i < 5; i++) {
    const refused = await infer(s.url, Buffer.concat([png.subarray(0, 8), Buffer.alloc(64, 'x')]), 'image/png');
    assert.equal(refused.status, 422);
    assert.equal(refused.body.error?.code, 'EG_INPUT');
  }
  assert.equal((await infer(s.url, 'x', 'text/plain')).status, 415);
  assert.deepEqual(info.lines.slice(before), [], 'no line for a refused request at info');
  // The metrics count them.
  const metrics = await (await fetch(`${s.url}/metrics`)).text();
  assert.match(metrics, /edgeguard_agent_requests_total\{route="\/v1\/infer",status="422"\} 5/);
  // At debug, the reason of each refusal.
  const debug = capture('debug');
  const d = await startService(t, f.config({ log: { level: 'debug' } }), { logger: debug.logger });
  assert.equal((await infer(d.url, Buffer.alloc(64, 'x'), 'image/png')).status, 422);
  assert.ok(
    debug.lines.some((l) => l['code'] === 'EG_INPUT' && /not a PNG image/.test(String(l['msg']))),
    JSON.stringify(debug.lines.slice(-3)),
  );
});

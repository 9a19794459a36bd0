/**
 * Slow bodies: a client that trickles its body holds no inference slot while it does, and is cut
 * off with 408 EG_TIMEOUT once limits.requestTimeoutMs has passed, so a handful of slow clients
 * cannot starve real requests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { FIXTURES } from '../helpers/workspace.ts';
import { serveFixture, startService, infer } from './serve-fixture.ts';

interface SlowClient {
  socket: Socket;
  /** The whole answer the server sent before closing, as text. */
  answer: Promise<string>;
}

/**
 * A client that sends headers for a 1000-byte PNG body, the PNG signature (a body that does not
 * start like its type is refused at once), and then one byte at a time, until the server ends it.
 */
async function slowClient(url: string, trickle: (send: () => void) => NodeJS.Timeout): Promise<SlowClient> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(
    `POST /v1/infer HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: image/png\r\ncontent-length: 1000\r\n\r\n`,
  );
  socket.write(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  const timer = trickle(() => socket.write('x'));
  const answer = new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => {
      clearInterval(timer);
      resolve(text);
    });
  });
  return { socket, answer };
}

test('four slow bodies hold no slot; real requests are served; the slow ones get 408 EG_TIMEOUT', async (t) => {
  const f = await serveFixture(t);
  const s = await startService(t, f.config({ limits: { concurrency: 4, requestTimeoutMs: 1500 } }));
  const clients = await Promise.all(
    Array.from({ length: 4 }, () => slowClient(s.url, (send) => setInterval(send, 200))),
  );
  t.after(() => clients.forEach((c) => c.socket.destroy()));
  const png = await readFile(join(FIXTURES, 'digits', '8-0.png'));
  // While all four trickle, a real request gets its answer.
  const real = await infer(s.url, png, 'image/png');
  assert.equal(real.status, 200, JSON.stringify(real.body));
  assert.equal(real.body.label, '8');
  for (const c of clients) {
    const answer = await c.answer;
    assert.match(answer, /^HTTP\/1\.1 408 /, answer.slice(0, 200));
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
    assert.equal(body.error.code, 'EG_TIMEOUT');
  }
  const health = (await (await fetch(`${s.url}/healthz`)).json()) as { inflight: number };
  assert.equal(health.inflight, 0);
});

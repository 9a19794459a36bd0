/**
 * The budget of large bodies being read (limits.bodyBytesInFlight): while large bodies fill it, a
 * further large request waits unread (its client held by backpressure, not refused into a
 * reconnect loop), small requests are still answered at once, and the waiting one goes in when
 * room comes. The queue's own rules (first come first served, a wait limit, a queue limit) are
 * checked on BodyBudget itself.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { BodyBudget } from '../../src/agent/body-budget.ts';
import { eventually } from '../helpers/wait.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { serveFixture, startService, infer } from './serve-fixture.ts';

interface Announced {
  socket: Socket;
  /** Everything the server sent before closing. */
  answer: Promise<string>;
  /** Whether any answer byte has arrived yet. */
  answered(): boolean;
}

/** Headers announcing a `length`-byte PNG body, and nothing more (until `socket.write`). */
async function announce(url: string, length: number): Promise<Announced> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(
    `POST /v1/infer HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: image/png\r\ncontent-length: ${length}\r\nconnection: close\r\n\r\n`,
  );
  let text = '';
  const answer = new Promise<string>((resolve) => {
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text));
  });
  return { socket, answer, answered: () => text.length > 0 };
}

/**
 * A megabyte announced as a PNG of which only `first` is sent: the answer must be 422 EG_INPUT
 * with the connection closed; its message.
 */
async function refusedUnread(t: TestContext, url: string, first: Buffer): Promise<string> {
  const client = await announce(url, 1_000_000);
  t.after(() => client.socket.destroy());
  client.socket.write(first);
  const answer = await client.answer;
  assert.match(answer, /^HTTP\/1\.1 422 /, answer.slice(0, 200));
  assert.match(answer, /\r\nconnection: close\r\n/i);
  const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as {
    error: { code: string; message: string };
  };
  assert.equal(body.error.code, 'EG_INPUT');
  return body.error.message;
}

describe('large bodies share a budget', () => {
  test('a large request waits unread while the budget is full; small ones pass; room admits it', async (t) => {
    const f = await serveFixture(t);
    const s = await startService(
      t,
      f.config({ limits: { bodyBytes: 256 * 1024, bodyBytesInFlight: 200 * 1024, requestTimeoutMs: 60_000 } }),
    );
    // Two bodies of 100 KiB announced, not sent: they hold the whole budget.
    const holders = [await announce(s.url, 100 * 1024), await announce(s.url, 100 * 1024)];
    t.after(() => holders.forEach((h) => h.socket.destroy()));
    const png = await readFile(join(FIXTURES, 'digits', '3-0.png'));
    const third = await announce(s.url, 100 * 1024);
    t.after(() => third.socket.destroy());
    // A small request is answered while the budget is full and the third waits.
    const small = await infer(s.url, png, 'image/png');
    assert.equal(small.status, 200, JSON.stringify(small.body));
    assert.equal(small.body.label, '3');
    const health = (await (await fetch(`${s.url}/healthz`)).json()) as { inflight: number };
    assert.equal(health.inflight, 0);
    assert.equal(third.answered(), false, 'the third large request is held, not answered');
    await eventually('the third counted as waiting', async () =>
      /edgeguard_agent_large_bodies_waiting 1\b/.test(await (await fetch(`${s.url}/metrics`)).text()),
    );
    // The holders go away: the third goes in, its body is read and judged on its content.
    holders.forEach((h) => h.socket.destroy());
    third.socket.write(Buffer.concat([png, Buffer.alloc(100 * 1024 - png.length)]));
    const answer = await third.answer;
    assert.match(await (await fetch(`${s.url}/metrics`)).text(), /edgeguard_agent_large_bodies_waiting 0\b/);
    assert.doesNotMatch(answer, /^HTTP\/1\.1 429 /);
    assert.match(answer, /^HTTP\/1\.1 [24]\d\d /);
  });

  test(
    'a large body whose first bytes are not its declared image type is refused unread (422, closed)',
    { timeout: 30_000 },
    async (t) => {
      const f = await serveFixture(t);
      const s = await startService(t, f.config({ limits: { requestTimeoutMs: 60_000 } }));
      // A megabyte announced as a PNG; only its first 64 bytes, not a PNG signature, are ever sent.
      assert.match(await refusedUnread(t, s.url, Buffer.alloc(64, 'x')), /not a PNG image/);
      // A PNG whose bytes arrive one at a time is still read and judged on its content.
      const png = await readFile(join(FIXTURES, 'digits', '5-0.png'));
      const slow = await announce(s.url, png.length);
      t.after(() => slow.socket.destroy());
      for (const byte of png.subarray(0, 12)) slow.socket.write(Buffer.from([byte]));
      slow.socket.write(png.subarray(12));
      const served = await slow.answer;
      assert.match(served, /^HTTP\/1\.1 200 /, served.slice(0, 200));
    },
  );

  test(
    'a large body with the PNG signature and garbage after it is refused at its first chunk (422, closed)',
    { timeout: 30_000 },
    async (t) => {
      const f = await serveFixture(t);
      // Before the structure check the rest was awaited, and the answer was 408 after this long.
      const s = await startService(t, f.config({ limits: { requestTimeoutMs: 5_000 } }));
      const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      // A megabyte announced as a PNG; its signature, and a first chunk that is not IHDR, are all that is sent.
      const first = Buffer.concat([signature, Buffer.from('\x00\x00\x00\x0dtEXt', 'latin1'), randomBytes(48)]);
      assert.match(await refusedUnread(t, s.url, first), /not a valid PNG image: its first chunk is not an IHDR chunk/);
      // A real PNG announced with more bytes than it has (padding after IEND) is still judged on its content.
      const png = await readFile(join(FIXTURES, 'digits', '4-0.png'));
      const padded = await announce(s.url, png.length + 1000);
      t.after(() => padded.socket.destroy());
      padded.socket.write(Buffer.concat([png, Buffer.alloc(1000)]));
      const served = await padded.answer;
      assert.match(served, /^HTTP\/1\.1 200 /, served.slice(0, 200));
      assert.match(served, /"label":"4"/);
    },
  );

  test('BodyBudget: first come first served, a wait limit and a queue limit, small bodies never counted', async () => {
    let refused = 0;
    const b = new BodyBudget({
      limitBytes: 100,
      smallBytes: 10,
      waitMs: 200,
      maxWaiting: 2,
      onRefused: () => refused++,
    });
    const r1 = await b.reserve(60, 1000);
    assert.equal(b.bytesInFlight, 60);
    // Small bodies pass whatever the budget holds, and are not counted.
    (await b.reserve(5, 1000))();
    assert.equal(b.bytesInFlight, 60);
    const order: string[] = [];
    const w1 = b.reserve(50, 1000).then((rel) => (order.push('w1'), rel));
    const w2 = b.reserve(30, 1000).then((rel) => (order.push('w2'), rel));
    // A third waiter is over the queue limit: refused at once.
    await assert.rejects(b.reserve(30, 1000), { code: 'EG_OVERLOADED' });
    assert.equal(b.waiting, 2);
    r1();
    // w1 (50) goes in first; w2 (30) fits beside it; both admitted in order.
    const [rel1, rel2] = await Promise.all([w1, w2]);
    assert.deepEqual(order, ['w1', 'w2']);
    assert.equal(b.bytesInFlight, 80);
    // A body without a Content-Length is counted at the body limit; it waits, and times out.
    await assert.rejects(b.reserve(undefined, 90), { code: 'EG_OVERLOADED', message: /200 ms/ });
    assert.equal(b.waiting, 0);
    rel1();
    rel2();
    rel2();
    assert.equal(b.bytesInFlight, 0);
    assert.equal(refused, 2);
  });
});

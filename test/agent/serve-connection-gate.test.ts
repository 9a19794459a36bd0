/**
 * New connections are admitted at limits.connectionRate (a token bucket of limits.connectionBurst):
 * more wait, accepted but unread, and are served in turn; a keep-alive client's connection, once
 * open, is never held back by them. The gate's own rules (a queue limit, a wait limit, clients
 * that give up, shutdown) are checked on ConnectionGate in front of a plain net.Server.
 */
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { ConnectionGate, gateConnections, type ConnectionGateOptions } from '../../src/net/index.ts';
import { eventually } from '../helpers/wait.ts';
import { FIXTURES } from '../helpers/workspace.ts';
import { serveFixture, startService } from './serve-fixture.ts';

/** A POST of `png` on a connection of its own; `answer` is all the server sent before closing. */
async function rawPost(
  url: string,
  png: Buffer,
): Promise<{ socket: Socket; answer: Promise<string>; answered(): boolean }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await once(socket, 'connect');
  socket.write(
    `POST /v1/infer HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: image/png\r\ncontent-length: ${png.length}\r\nconnection: close\r\n\r\n`,
  );
  socket.write(png);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => undefined);
  const answer = new Promise<string>((resolve) => socket.once('close', () => resolve(text)));
  return { socket, answer, answered: () => text.length > 0 };
}

/** One request on the keep-alive agent: status and body. */
function keepAlive(agent: Agent, url: string, path: string, png?: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      new URL(path, url),
      { agent, method: png ? 'POST' : 'GET', headers: png ? { 'content-type': 'image/png' } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(png);
  });
}

/** A connection to `server`; `closed` resolves with all it was sent once it closes. */
async function openTo(server: Server): Promise<{ socket: Socket; closed: Promise<string> }> {
  const socket = connect((server.address() as { port: number }).port, '127.0.0.1');
  socket.on('error', () => undefined);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  const closed = once(socket, 'close').then(() => text);
  await once(socket, 'connect');
  return { socket, closed };
}

/** A net.Server behind a gate of one token a second (burst one) that greets each admitted connection. */
async function gatedServer(
  t: TestContext,
  greeting: string,
  o: Omit<ConnectionGateOptions, 'ratePerSecond' | 'burst'>,
): Promise<{ gate: ConnectionGate; server: Server }> {
  const gate = new ConnectionGate({ ratePerSecond: 1, burst: 1, ...o });
  const server = createServer((socket) => socket.end(greeting));
  gateConnections(server, gate);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return { gate, server };
}

describe('new connections at a bounded rate', () => {
  test('new connections beyond the rate wait unread and are served in turn; a keep-alive client is not held back', async (t) => {
    const f = await serveFixture(t);
    // One new connection a second, two at once: the keep-alive client's and one more.
    const s = await startService(
      t,
      f.config({ limits: { connectionRate: 1, connectionBurst: 2, requestTimeoutMs: 60_000 } }),
    );
    const png = await readFile(join(FIXTURES, 'digits', '3-0.png'));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    t.after(() => agent.destroy());
    assert.equal((await keepAlive(agent, s.url, '/healthz')).status, 200);
    // A crowd of new connections, each with a whole request.
    const crowd = await Promise.all(Array.from({ length: 8 }, () => rawPost(s.url, png)));
    t.after(() => crowd.forEach((c) => c.socket.destroy()));
    // The keep-alive client's requests are answered while most of the crowd still waits.
    for (let i = 0; i < 3; i++) {
      const r = await keepAlive(agent, s.url, '/v1/infer', png);
      assert.equal(r.status, 200, r.text);
      assert.match(r.text, /"label":"3"/);
    }
    const metrics = (await keepAlive(agent, s.url, '/metrics')).text;
    const waiting = Number(/^edgeguard_agent_connections_waiting (\d+)$/m.exec(metrics)?.[1]);
    assert.ok(waiting >= 1, `connections waiting: ${waiting}`);
    assert.ok(crowd.filter((c) => !c.answered()).length >= 1, 'some of the crowd are not answered yet');
    // Every one of the crowd is served in turn, none refused.
    for (const c of crowd) assert.match(await c.answer, /^HTTP\/1\.1 200 /);
    await eventually('none waiting', async () =>
      /^edgeguard_agent_connections_waiting 0$/m.test((await keepAlive(agent, s.url, '/metrics')).text),
    );
    assert.match((await keepAlive(agent, s.url, '/metrics')).text, /^edgeguard_agent_connections_refused_total 0$/m);
  });

  test('listen.host localhost is bound as 127.0.0.1 alone: no second server on ::1 outside the gate', async (t) => {
    const f = await serveFixture(t);
    const s = await startService(t, f.config({ listen: { host: 'localhost', port: 0 } }));
    const port = Number(new URL(s.url).port);
    assert.equal(new URL(s.url).hostname, '127.0.0.1');
    // Fastify would also bind ::1 with a server of its own, which the gate would not see.
    const v6 = connect(port, '::1');
    const outcome = await new Promise<string>((resolve) => {
      v6.once('connect', () => resolve('connected'));
      v6.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    v6.destroy();
    assert.notEqual(outcome, 'connected');
  });

  test('ConnectionGate: a queue limit, a wait limit, clients that give up, and shutdown', async (t) => {
    let refused = 0;
    const waiting: number[] = [];
    // Effectively no refill during the test: one token, then everything waits.
    const { gate, server } = await gatedServer(t, 'hello', {
      waitMs: 60_000,
      maxWaiting: 2,
      onRefused: () => refused++,
      onWaiting: (n) => waiting.push(n),
    });
    const open = () => openTo(server);
    // The first is admitted at once.
    assert.equal(await (await open()).closed, 'hello');
    // Two wait; a third finds the queue full and is closed unanswered.
    const a = await open();
    const b = await open();
    await eventually('two waiting', async () => gate.waiting === 2);
    const c = await open();
    assert.equal(await c.closed, '');
    assert.equal(refused, 1);
    // A waiting client that gives up leaves the queue.
    a.socket.destroy();
    await eventually('one waiting', async () => gate.waiting === 1);
    // Shutdown closes the rest unanswered, and any new one.
    gate.close();
    assert.equal(await b.closed, '');
    assert.equal(await (await open()).closed, '');
    assert.equal(gate.waiting, 0);
    assert.deepEqual(waiting.slice(0, 2), [1, 2]);

    // A connection that waits longer than waitMs is closed, and counted.
    const { server: server2 } = await gatedServer(t, 'hi', { waitMs: 100, maxWaiting: 10, onRefused: () => refused++ });
    assert.equal(await (await openTo(server2)).closed, 'hi');
    assert.equal(await (await openTo(server2)).closed, '');
    assert.equal(refused, 2);
  });
});

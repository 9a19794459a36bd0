import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlPlanePlugins } from '../../src/server/index.ts';
import { startTestFleet, type TestFleet } from './fleet-helpers.ts';

type ErrBody = { error: { code: string; message: string } };

/** A raw TLS connection to the server, trusting its fleet CA, with no client certificate. */
async function rawConnection(fleet: TestFleet): Promise<TLSSocket> {
  const url = new URL(fleet.server.url);
  const socket = connect({ host: url.hostname, port: Number(url.port), ca: fleet.ca.rootPem, servername: 'localhost' });
  await once(socket, 'secureConnect');
  return socket;
}

/** Reads until the head of an HTTP response and whatever body came with it, or until the socket closes. */
async function readResponse(socket: TLSSocket): Promise<{ status: number; head: string; body: string }> {
  let text = '';
  socket.setEncoding('utf8');
  await new Promise<void>((resolve) => {
    const done = () => resolve();
    socket.on('data', (chunk: string) => {
      text += chunk;
      const headEnd = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text);
      if (headEnd >= 0 && length && text.length >= headEnd + 4 + Number(length[1])) done();
    });
    socket.on('close', done);
    socket.on('error', done);
  });
  const headEnd = text.indexOf('\r\n\r\n');
  return {
    status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
    head: text.slice(0, headEnd),
    body: text.slice(headEnd + 4),
  };
}

describe('control plane under hostile load', () => {
  let fleet: TestFleet;
  const dataDir = mkdtempSync(join(tmpdir(), 'eg-hostile-'));
  const plugins = controlPlanePlugins({ dataDir });
  before(async () => {
    fleet = await startTestFleet({
      dataDir,
      policy: { limits: { connectionsPerAddress: 8 }, challengePruneIntervalMs: 50 },
      plugins: plugins.all,
    });
  });
  after(async () => {
    await fleet.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  // Each length is within the route's own body limit, so only the certificate check can refuse early.
  for (const [path, length] of [
    ['/v1/review/items', 4_000_000],
    ['/v1/audit/journal', 4_000_000],
    ['/v1/devices/dev-x/approve', 60_000],
    ['/v1/attestation/evidence', 1_000_000],
    ['/v1/attestation/policies', 1_000_000],
    ['/v1/checklist/reports', 500_000],
  ] as const) {
    it(`refuses an anonymous POST ${path} before reading its body`, { timeout: 20_000 }, async () => {
      const socket = await rawConnection(fleet);
      // Headers announce a large body; not one byte of the body is sent. A server that reads the body before the
      // certificate check never answers.
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`,
      );
      const r = await readResponse(socket);
      socket.destroy();
      assert.equal(r.status, 401);
      assert.match(r.head, /connection: close/i);
      assert.equal((JSON.parse(r.body) as ErrBody).error.code, 'EG_UNAUTHORIZED');
    });
  }

  it('writes no audit entry for anonymous or uncertified calls to admin routes (a metric counts them)', async () => {
    const log = plugins.audit.log!;
    await log.flush();
    const before = await log.size();
    const client = fleet.client();
    for (const path of ['/v1/devices/dev-0123456789abcdef/approve', '/v1/devices/dev-0123456789abcdef/revoke'])
      assert.equal((await client.send('POST', path)).status, 401);
    client.close();
    await log.flush();
    assert.equal(await log.size(), before);
    const refusals = await fleet.server.ctx.registry.getSingleMetricAsString('edgeguard_auth_refusals_total');
    assert.match(refusals, /reason="no_certificate"\} [1-9]/);
  });

  it('limits anonymous enrollment bodies to a few kilobytes', async () => {
    const client = fleet.client();
    const r = await client.send<ErrBody>('POST', '/v1/enroll/start', { padding: 'x'.repeat(64 * 1024 - 100) } as never);
    client.close();
    assert.equal(r.status, 413);
    assert.equal(r.body.error.code, 'EG_PAYLOAD_TOO_LARGE');
  });

  it('answers framework errors in the EG error shape', async () => {
    const cases = [
      ['POST', '/v1/enroll/finish', 'application/xml', '<x/>', 415, 'EG_UNSUPPORTED_MEDIA_TYPE'],
      ['POST', '/v1/enroll/finish', 'application/json', '{"x":', 400, 'EG_BAD_REQUEST'],
      ['POST', '/v1/enroll/finish', 'application/json', '{"challengeId":5}', 400, 'EG_BAD_REQUEST'],
      ['GET', '/nowhere', undefined, undefined, 404, 'EG_NOT_FOUND'],
    ] as const;
    for (const [method, path, type, body, status, code] of cases) {
      const socket = await rawConnection(fleet);
      const headers = type ? `Content-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` : '';
      socket.write(`${method} ${path} HTTP/1.1\r\nHost: localhost\r\n${headers}\r\n${body ?? ''}`);
      const r = await readResponse(socket);
      socket.destroy();
      assert.equal(r.status, status, `${method} ${path} ${type}`);
      const parsed = JSON.parse(r.body) as ErrBody;
      assert.equal(parsed.error.code, code);
      assert.deepEqual(Object.keys(parsed), ['error']);
      assert.doesNotMatch(parsed.error.message, /FST_|Unsupported Media Type: /);
    }
  });

  it('deletes expired enrollment nonces and challenges on a timer', { timeout: 20_000 }, async () => {
    const store = fleet.server.ctx.store;
    await store.createChallenge({ id: 'expired-long-ago', kind: 'nonce', value: '-', ttlSeconds: -2 * 3600 });
    await store.createChallenge({ id: 'still-valid', kind: 'nonce', value: '-', ttlSeconds: 120 });
    const ids = async () =>
      (await store.db.selectFrom('enrollment_challenges').select('id').execute()).map((r) => r.id);
    while ((await ids()).includes('expired-long-ago')) await new Promise((resolve) => setTimeout(resolve, 25));
    assert.ok((await ids()).includes('still-valid'));
  });

  it('applies request, header and keep-alive timeouts to every connection', () => {
    const server = fleet.server.app.server;
    assert.ok(server.requestTimeout > 0 && server.requestTimeout <= 60_000, `requestTimeout ${server.requestTimeout}`);
    assert.ok(server.headersTimeout > 0 && server.headersTimeout <= 20_000, `headersTimeout ${server.headersTimeout}`);
    assert.ok(server.keepAliveTimeout > 0 && server.keepAliveTimeout <= 30_000);
  });

  it('closes connections from one address beyond its cap, and counts them', async () => {
    const serverSideClosed: Array<Promise<unknown>> = [];
    fleet.server.app.server.on('connection', (s: Socket) => serverSideClosed.push(once(s, 'close')));
    const kept: TLSSocket[] = [];
    for (let i = 0; i < 8; i++) kept.push(await rawConnection(fleet));
    const url = new URL(fleet.server.url);
    const extra = connect({
      host: url.hostname,
      port: Number(url.port),
      ca: fleet.ca.rootPem,
      servername: 'localhost',
    });
    const outcome = await new Promise<string>((resolve) => {
      extra.once('secureConnect', () => resolve('handshake completed'));
      extra.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    });
    extra.destroy();
    for (const s of kept) s.destroy();
    assert.equal(outcome, 'ECONNRESET');
    await Promise.all(serverSideClosed);
    // Once those are gone, the address may connect again.
    const again = await rawConnection(fleet);
    again.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const r = await readResponse(again);
    again.destroy();
    assert.equal(r.status, 200);
    const metrics = await fleet.server.ctx.registry.getSingleMetricAsString('edgeguard_connections_refused_total');
    assert.match(metrics, /edgeguard_connections_refused_total\{reason="per_address"\} [1-9]/);
  });

  /** `n` raw TLS connections from this address; each promise settles with its outcome. */
  function connectMany(f: TestFleet, n: number): { sockets: TLSSocket[]; outcomes: Array<Promise<string>> } {
    const url = new URL(f.server.url);
    const sockets = Array.from({ length: n }, () =>
      connect({ host: url.hostname, port: Number(url.port), ca: f.ca.rootPem, servername: 'localhost' }),
    );
    const outcomes = sockets.map(
      (socket) =>
        new Promise<string>((resolve) => {
          socket.once('secureConnect', () => resolve('handshake completed'));
          socket.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
          socket.once('close', () => resolve('closed'));
        }),
    );
    return { sockets, outcomes };
  }

  it('holds new connections from one address beyond its rate unread, before the TLS handshake, and closes them on stop', async () => {
    // A second server, so that this test's burst is the only traffic its address makes.
    const dir = mkdtempSync(join(tmpdir(), 'eg-hostile-rate-'));
    const limited = await startTestFleet({
      dataDir: dir,
      // A rate this low refills no token within the test: only the burst of 4 is admitted.
      policy: { limits: { connectionRatePerAddress: 0.001, connectionBurstPerAddress: 4, connectionWaitMs: 60_000 } },
    });
    let stopped = false;
    try {
      let handshakes = 0;
      limited.server.app.server.on('secureConnection', () => handshakes++);
      const { sockets, outcomes } = connectMany(limited, 6);
      const settled: string[] = [];
      outcomes.forEach((o) => void o.then((v) => settled.push(v)));
      // The server completes a handshake after its client does: wait for the four it admitted.
      while (handshakes < 4 || settled.length < 4) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The other two wait: accepted, not refused, not a byte of their ClientHello read.
      assert.deepEqual(settled, Array(4).fill('handshake completed'));
      assert.equal(handshakes, 4);
      const waiting = await limited.server.ctx.registry.getSingleMetricAsString('edgeguard_connections_waiting');
      assert.match(waiting, /^edgeguard_connections_waiting 2$/m);
      // Closing the admitted ones frees the cap, not the rate: the two still wait.
      for (const socket of sockets.slice(0, 4)) socket.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(settled.length, 4);
      // Stopping the server closes them (it does not wait the minute they may wait).
      await limited.stop();
      stopped = true;
      const last = await Promise.all(outcomes.slice(4));
      assert.ok(
        last.every((o) => o !== 'handshake completed'),
        last.join(', '),
      );
      assert.equal(handshakes, 4);
    } finally {
      if (!stopped) await limited.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("holds a connection beyond its address's cap unread until its delayed close, a bounded number at a time", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-hostile-cap-'));
    const capped = await startTestFleet({
      dataDir: dir,
      policy: { limits: { connectionsPerAddress: 2, overCapCloseDelayMs: 60_000, overCapHeldMax: 1 } },
    });
    let stopped = false;
    try {
      let handshakes = 0;
      capped.server.app.server.on('secureConnection', () => handshakes++);
      const kept = connectMany(capped, 2);
      assert.deepEqual(await Promise.all(kept.outcomes), ['handshake completed', 'handshake completed']);
      // The third is held: neither served nor reset, so a client in a loop cannot retry at once.
      const third = connectMany(capped, 1);
      let thirdOutcome: string | undefined;
      void third.outcomes[0]!.then((o) => (thirdOutcome = o));
      // The fourth finds the one hold taken: closed at once.
      const fourth = connectMany(capped, 1);
      assert.equal(await fourth.outcomes[0], 'ECONNRESET');
      assert.equal(thirdOutcome, undefined);
      const metrics = await capped.server.ctx.registry.getSingleMetricAsString('edgeguard_connections_refused_total');
      assert.match(metrics, /edgeguard_connections_refused_total\{reason="per_address"\} 2/);
      // Stopping the server closes the held one without a handshake.
      for (const socket of kept.sockets) socket.destroy();
      await capped.stop();
      stopped = true;
      assert.notEqual(await third.outcomes[0], 'handshake completed');
      assert.equal(handshakes, 2);
    } finally {
      if (!stopped) await capped.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('binds --listen localhost as 127.0.0.1 alone: no second server on ::1 outside the per-address limits', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-hostile-localhost-'));
    const local = await startTestFleet({ dataDir: dir, listen: 'localhost:0' });
    try {
      const url = new URL(local.server.url);
      assert.equal(url.hostname, '127.0.0.1');
      const v6 = netConnect(Number(url.port), '::1');
      const outcome = await new Promise<string>((resolve) => {
        v6.once('connect', () => resolve('connected'));
        v6.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      v6.destroy();
      assert.notEqual(outcome, 'connected');
    } finally {
      await local.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("admits waiting connections in turn at the address's rate, and closes one that waited too long (counted)", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-hostile-rate-'));
    const limited = await startTestFleet({
      dataDir: dir,
      policy: { limits: { connectionRatePerAddress: 20, connectionBurstPerAddress: 1, connectionWaitMs: 5_000 } },
    });
    const slow = mkdtempSync(join(tmpdir(), 'eg-hostile-rate-'));
    const strict = await startTestFleet({
      dataDir: slow,
      policy: { limits: { connectionRatePerAddress: 0.001, connectionBurstPerAddress: 1, connectionWaitMs: 200 } },
    });
    try {
      // 5 at once at 20 a second after a burst of 1: all served, none refused.
      const served = connectMany(limited, 5);
      const outcomes = await Promise.all(served.outcomes);
      for (const socket of served.sockets) socket.destroy();
      assert.deepEqual(outcomes, Array(5).fill('handshake completed'));
      const refused = await limited.server.ctx.registry.getSingleMetricAsString('edgeguard_connections_refused_total');
      assert.doesNotMatch(refused, /reason="rate"/);

      // No token in time: the second waits 200 ms and is closed without a handshake.
      let handshakes = 0;
      strict.server.app.server.on('secureConnection', () => handshakes++);
      const first = connectMany(strict, 1);
      assert.equal(await first.outcomes[0], 'handshake completed');
      const second = connectMany(strict, 1);
      assert.notEqual(await second.outcomes[0], 'handshake completed');
      first.sockets[0]!.destroy();
      second.sockets[0]!.destroy();
      assert.equal(handshakes, 1);
      const counted = await strict.server.ctx.registry.getSingleMetricAsString('edgeguard_connections_refused_total');
      assert.match(counted, /edgeguard_connections_refused_total\{reason="rate"\} 1/);
    } finally {
      await limited.stop();
      await strict.stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(slow, { recursive: true, force: true });
    }
  });

  it('logs no line per refused request from a client without a certificate; certified requests one each', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'eg-hostile-log-'));
    const lines: Array<{ msg?: string; req?: { url?: string }; res?: { statusCode?: number } }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const logged = await startTestFleet({ dataDir: dir, logger: pino({ level: 'info' }, sink) });
    try {
      const about = () => lines.filter((l) => l.req?.url === '/v1/devices');
      const anonymous = logged.client();
      for (let i = 0; i < 5; i++) assert.equal((await anonymous.send('GET', '/v1/devices')).status, 401);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(about(), []);
      const admin = logged.client(await logged.adminCredential('log-admin'));
      assert.equal((await admin.send('GET', '/v1/devices')).status, 200);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(about().length, 1, JSON.stringify(about()));
      assert.equal(about()[0]!.msg, 'request completed');
      assert.equal(about()[0]!.res?.statusCode, 200);
      const refused = await logged.server.ctx.registry.getSingleMetricAsString('edgeguard_http_requests_total');
      assert.match(refused, /status="401"\} 5/);
    } finally {
      await logged.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('control plane: a client over a rate limit', () => {
  let fleet: TestFleet;
  before(async () => {
    fleet = await startTestFleet({ policy: { enrollRateLimit: { max: 1, timeWindowMs: 60_000 } } });
  });
  after(async () => fleet.stop());

  it('gets its 429 with Connection: close, and the connection is closed', { timeout: 20_000 }, async () => {
    const socket = await rawConnection(fleet);
    try {
      const ask =
        'POST /v1/enroll/nonce HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}';
      socket.write(ask);
      const first = await readResponse(socket);
      assert.equal(first.status, 200);
      assert.doesNotMatch(first.head, /connection: close/i);
      const closed = once(socket, 'close');
      socket.write(ask);
      const second = await readResponse(socket);
      assert.equal(second.status, 429);
      assert.equal((JSON.parse(second.body) as ErrBody).error.code, 'EG_RATE_LIMITED');
      assert.match(second.head, /connection: close/i);
      // The server ends the connection: further refused requests need a new one.
      await closed;
    } finally {
      socket.destroy();
    }
  });
});

/**
 * Legitimate traffic under hostile load, on the agent and on the control plane, all on 127.0.0.1:
 * p50/p99 latency and success rate of legitimate requests with no attack, then under each attack
 * the outside check used:
 *   - slow bodies x100: connections that send headers and then one body byte a second;
 *   - anonymous large bodies x100: clients without a certificate posting near-limit bodies in a loop;
 *   - enrollment flood (control plane): anonymous nonce and malformed start requests in a loop.
 * Legitimate traffic: two clients one request at a time (agent: POST /v1/infer with a digit;
 * control plane: an admin's GET /v1/devices); both services log as deployed (pino at info, to
 * /dev/null). Goal: >= 99% success and p99 within 3x of the
 * no-attack p99. Each attack runs in a process of its own (this script, `--attacker SPEC`), as
 * it would from another host, but on the same two cores: its CPU still competes with the
 * service. `--in-process` runs the attackers inside the benchmark's own process instead (how the
 * first measurements were made: then the attack's own work blocks the event loop the services and
 * the legitimate clients share). `--pin` models two 1-core hosts instead: this process (the
 * services and the legitimate clients) on CPU 0, the attackers on CPU 1 (taskset, util-linux).
 * After each row the attack runs ALONE_SECONDS more without legitimate traffic: what the attacker
 * did (connections opened, requests sent) and this process's CPU beyond idle, per attack action,
 * is the service's cost of the attack, which depends less on the other work on the machine than
 * p99 does; and the attacker process's own CPU in that window (on shared cores it is taken from
 * the service). `--only TEXT` runs the rows whose "service: attack" contains TEXT (and each
 * service's no-attack row).
 * The large-body attackers write their bodies as curl does, a slice at a time as the connection
 * takes them, so a body the service refuses after its first bytes is not encrypted and buffered
 * whole in the attacker's process; `--eager-bodies` hands Node each body whole (`req.end(body)`:
 * the TLS layer encrypts all of it at once, ~8 ms of the attacker's CPU per 8 MiB request that
 * the service never reads), as every run recorded before this option did.
 *
 *   node --import tsx bench/hostile.ts [--seconds 5] [--in-process | --pin] [--only TEXT] [--eager-bodies]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { startAgent } from '../src/agent/serve.ts';
import { controlPlanePlugins, startServer } from '../src/server/index.ts';
import { generateP256, privateKeyToPkcs8Pem, spkiOf } from '../src/pki/index.ts';
import { benchAgentConfig, FIXTURES } from './lib/agent-fixture.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const SECONDS = Number(args.includes('--seconds') ? args[args.indexOf('--seconds') + 1] : 5);
const IN_PROCESS = args.includes('--in-process');
/** Only the rows whose "service: attack" contains this (and each service's no-attack row). */
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
/**
 * Two 1-core hosts: this process (the services and the legitimate clients) on one core, the
 * attackers on the other, with taskset.
 */
const PIN = args.includes('--pin');
/** Large bodies handed to Node whole instead of written a slice at a time (see above). */
const EAGER_BODIES = args.includes('--eager-bodies');
const SERVICE_CPU = '0';
const ATTACKER_CPU = '1';
const HOST = '127.0.0.1';

interface Target {
  url: URL;
  tls?: { ca: string };
}

/** What an attacker process runs: enough to rebuild the phase there. */
type AttackSpec =
  | { kind: 'none' }
  | { kind: 'slow'; path: string; type: string }
  | { kind: 'large'; path: string; type: string; bytes: number; signed: boolean; eager: boolean }
  | { kind: 'flood' };

/**
 * What an attack has done so far: connections it opened, requests it sent, and the attacker's
 * own CPU time in ms (undefined in the benchmark's process, --in-process).
 */
interface Actions {
  connections: number;
  requests: number;
  cpuMs?: number;
}

interface Phase {
  name: string;
  spec: AttackSpec;
  start(target: Target, actions: Actions): () => void;
}

interface Row {
  service: string;
  attack: string;
  requests: number;
  success: number;
  p50: number;
  p99: number;
  /** CPU time of the benchmark's process, ms, and what the attacker did, with no legitimate traffic. */
  alone: { cpuMs: number; actions: Actions };
}

/** The attack alone (no legitimate traffic) for this long after each row: the service's cost per action. */
const ALONE_SECONDS = 2;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]! : NaN;
}

/** One request, answered or failed; resolves with the status (0 for a connection failure). */
function send(
  target: Target,
  agent: HttpAgent | HttpsAgent | false,
  method: string,
  path: string,
  body?: { type: string; bytes: Buffer; streamed?: boolean },
  actions?: Actions,
): Promise<number> {
  if (actions) actions.requests++;
  const request = target.tls ? httpsRequest : httpRequest;
  return new Promise((resolve) => {
    let answered = false;
    const req = request(
      new URL(path, target.url),
      {
        method,
        agent,
        ...(target.tls && agent === false ? { ca: target.tls.ca } : {}),
        headers: body ? { 'content-type': body.type, 'content-length': String(body.bytes.length) } : {},
      },
      (res) => {
        answered = true;
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve(0));
      },
    );
    req.on('error', () => resolve(0));
    if (!body?.streamed) {
      req.end(body?.bytes);
      return;
    }
    // A slice at a time, as the connection takes them; none more once the service has answered.
    const bytes = body.bytes;
    let offset = 0;
    const pump = () => {
      while (offset < bytes.length) {
        if (answered || req.destroyed) return;
        const slice = bytes.subarray(offset, offset + 65536);
        offset += slice.length;
        if (!req.write(slice)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** Counts the connections an agent opens (each one a TCP connect, and a TLS handshake over TLS). */
function countConnections(agent: HttpAgent | HttpsAgent, actions: Actions): void {
  const create = agent.createConnection.bind(agent) as (...a: unknown[]) => unknown;
  (agent as unknown as { createConnection: (...a: unknown[]) => unknown }).createConnection = (...a) => {
    actions.connections++;
    return create(...a);
  };
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** `n` loops of `once` until stopped. */
function loops(n: number, once: () => Promise<unknown>): () => void {
  let running = true;
  for (let i = 0; i < n; i++)
    void (async () => {
      while (running) await once();
    })();
  return () => (running = false);
}

/** 100 connections that send headers for a large body, then a byte a second; reopened when cut off. */
function slowBodies(path: string, type: string): Phase {
  return {
    name: 'slow bodies x100',
    spec: { kind: 'slow', path, type },
    start(target, actions) {
      const sockets = new Set<Socket>();
      let running = true;
      const open = () => {
        if (!running) return;
        const port = Number(target.url.port);
        const s = target.tls
          ? tlsConnect({ host: HOST, port, ca: target.tls.ca, servername: 'localhost' })
          : netConnect(port, HOST);
        actions.connections++;
        sockets.add(s);
        s.on('error', () => undefined);
        s.once(target.tls ? 'secureConnect' : 'connect', () => {
          actions.requests++;
          s.write(`POST ${path} HTTP/1.1\r\nhost: ${HOST}\r\ncontent-type: ${type}\r\ncontent-length: 1000000\r\n\r\n`);
          // A body that starts like its type: the agent refuses one that does not at its first bytes.
          if (type === 'image/png') s.write(PNG_SIGNATURE);
        });
        s.on('data', () => undefined);
        s.once('close', () => {
          sockets.delete(s);
          setTimeout(open, 100);
        });
      };
      for (let i = 0; i < 100; i++) open();
      const trickle = setInterval(() => sockets.forEach((s) => s.writable && s.write('x')), 1000);
      return () => {
        running = false;
        clearInterval(trickle);
        sockets.forEach((s) => s.destroy());
      };
    },
  };
}

/**
 * 100 clients posting random near-limit bodies in a loop; `signed`: the body starts with the PNG
 * signature, so the agent reads it whole before it fails to decode (random bytes are refused at
 * their first chunk).
 */
function largeBodies(path: string, type: string, bytes: number, signed = false, eager = EAGER_BODIES): Phase {
  const random = randomBytes(bytes);
  if (signed) PNG_SIGNATURE.copy(random);
  const body = { type, bytes: random, streamed: !eager };
  return {
    name: `anonymous large bodies x100 (${(bytes / 1048576).toFixed(1)} MiB${signed ? ', PNG signature' : ''})`,
    spec: { kind: 'large', path, type, bytes, signed, eager },
    start(target, actions) {
      const agent = target.tls
        ? new HttpsAgent({ keepAlive: true, maxSockets: 100, ca: target.tls.ca })
        : new HttpAgent({ keepAlive: true, maxSockets: 100 });
      countConnections(agent, actions);
      const stop = loops(100, () => send(target, agent, 'POST', path, body, actions));
      return () => {
        stop();
        agent.destroy();
      };
    },
  };
}

const enrollmentFlood: Phase = {
  name: 'enrollment flood (32 loops: nonce + malformed start)',
  spec: { kind: 'flood' },
  start(target, actions) {
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 32, ca: target.tls!.ca });
    countConnections(agent, actions);
    const start = { type: 'application/json', bytes: Buffer.from(JSON.stringify({ nonce: 'x', csr: 'y' })) };
    const stop = loops(32, async () => {
      await send(target, agent, 'POST', '/v1/enroll/nonce', undefined, actions);
      await send(target, agent, 'POST', '/v1/enroll/start', start, actions);
    });
    return () => {
      stop();
      agent.destroy();
    };
  },
};

const noAttack: Phase = { name: 'no attack', spec: { kind: 'none' }, start: () => () => undefined };

function phaseOf(spec: AttackSpec): Phase {
  switch (spec.kind) {
    case 'none':
      return noAttack;
    case 'slow':
      return slowBodies(spec.path, spec.type);
    case 'large':
      return largeBodies(spec.path, spec.type, spec.bytes, spec.signed, spec.eager);
    case 'flood':
      return enrollmentFlood;
  }
}

interface RunningAttack {
  /** What the attacker has done so far. */
  actions(): Promise<Actions>;
  stop(): Promise<void>;
}

/** The phase in a process of its own (on the attackers' core with --pin). Resolves once it attacks. */
async function startAttacker(phase: Phase, target: Target): Promise<RunningAttack> {
  if (phase.spec.kind === 'none')
    return { actions: async () => ({ connections: 0, requests: 0 }), stop: async () => {} };
  if (IN_PROCESS) {
    const actions = { connections: 0, requests: 0 };
    const stop = phase.start(target, actions);
    return { actions: async () => ({ ...actions }), stop: async () => stop() };
  }
  const spec = JSON.stringify({ spec: phase.spec, url: target.url.href, ca: target.tls?.ca });
  const node = [process.execPath, '--import', 'tsx', import.meta.filename, '--attacker', spec];
  const [command, ...argv] = PIN ? ['taskset', '-c', ATTACKER_CPU, ...node] : node;
  const child: ChildProcess = spawn(command!, argv, { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const [line] = (await Promise.race([once(child.stdout!, 'data'), once(child, 'exit')])) as [Buffer | number];
  if (!Buffer.isBuffer(line) || !line.toString().startsWith('attacking'))
    throw new Error(`the attacker for "${phase.name}" did not start`);
  return {
    async actions() {
      child.send('actions');
      const [counts] = (await once(child, 'message')) as [Actions];
      return counts;
    },
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** Child mode: run one attack until SIGTERM; answers 'actions' with what it has done so far. */
function runAttacker(json: string): void {
  const { spec, url, ca } = JSON.parse(json) as { spec: AttackSpec; url: string; ca?: string };
  const actions = { connections: 0, requests: 0 };
  const stop = phaseOf(spec).start({ url: new URL(url), ...(ca ? { tls: { ca } } : {}) }, actions);
  process.on('message', () => {
    const cpu = process.cpuUsage();
    process.send!({ ...actions, cpuMs: (cpu.user + cpu.system) / 1000 });
  });
  process.once('SIGTERM', () => {
    stop();
    process.exit(0);
  });
  process.stdout.write('attacking\n');
}

/** Two legitimate clients for SECONDS: latencies and the share answered 200. */
async function legitimate(
  legit: () => Promise<number>,
): Promise<{ latencies: number[]; ok: number; failed: Map<number, number> }> {
  const latencies: number[] = [];
  const failed = new Map<number, number>();
  let ok = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    [0, 1].map(async () => {
      while (performance.now() < end) {
        const t = performance.now();
        const status = await legit();
        latencies.push(performance.now() - t);
        if (status === 200) ok++;
        else failed.set(status, (failed.get(status) ?? 0) + 1);
      }
    }),
  );
  return { latencies, ok, failed };
}

async function measure(service: string, target: Target, phases: Phase[], legit: () => Promise<number>) {
  const rows: Row[] = [];
  for (const phase of phases) {
    if (ONLY && phase !== noAttack && !`${service}: ${phase.name}`.includes(ONLY)) continue;
    const attack = await startAttacker(phase, target);
    // Let the attack reach its steady state.
    await new Promise((r) => setTimeout(r, 1500));
    const { latencies, ok, failed } = await legitimate(legit);
    // Then the attack alone: this process's CPU is the service's (and the idle legitimate clients').
    const before = await attack.actions();
    const cpu = process.cpuUsage();
    await new Promise((r) => setTimeout(r, ALONE_SECONDS * 1000));
    const used = process.cpuUsage(cpu);
    const after = await attack.actions();
    await attack.stop();
    rows.push({
      service,
      attack: phase.name,
      requests: latencies.length,
      success: ok / latencies.length,
      p50: pct(latencies, 0.5),
      p99: pct(latencies, 0.99),
      alone: {
        cpuMs: (used.user + used.system) / 1000,
        actions: {
          connections: after.connections - before.connections,
          requests: after.requests - before.requests,
          ...(after.cpuMs !== undefined && before.cpuMs !== undefined ? { cpuMs: after.cpuMs - before.cpuMs } : {}),
        },
      },
    });
    const statuses = [...failed].map(([status, n]) => `${n} x ${status || 'connection failed'}`).join(', ');
    console.error(`${service}: ${phase.name} done${statuses ? `; legitimate failures: ${statuses}` : ''}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  return rows;
}

/** pino at `info`, as `edgeguard server` and `edgeguard agent serve` log by default, to /dev/null. */
function deployedLogger() {
  return pino({ level: 'info' }, pino.destination({ dest: '/dev/null', sync: true }));
}

async function agentRows(dir: string): Promise<Row[]> {
  const { config } = await benchAgentConfig(dir);
  // Logging as deployed (`edgeguard agent serve`: info), to a sink that costs no disk.
  const agent = await startAgent(config, { logger: deployedLogger() });
  try {
    const png = await readFile(join(FIXTURES, 'digits', '7-0.png'));
    const target = { url: new URL(agent.url) };
    const keepAlive = new HttpAgent({ keepAlive: true, maxSockets: 2 });
    const legit = () => send(target, keepAlive, 'POST', '/v1/infer', { type: 'image/png', bytes: png });
    for (let i = 0; i < 50; i++) await legit();
    const rows = await measure(
      'agent',
      target,
      [
        noAttack,
        slowBodies('/v1/infer', 'image/png'),
        largeBodies('/v1/infer', 'image/png', config.limits.bodyBytes - 1024),
        largeBodies('/v1/infer', 'image/png', config.limits.bodyBytes - 1024, true),
      ],
      legit,
    );
    keepAlive.destroy();
    return rows;
  } finally {
    await agent.close();
  }
}

async function controlPlaneRows(dir: string): Promise<Row[]> {
  const server = await startServer({
    dataDir: dir,
    listen: `${HOST}:0`,
    caPassphrase: 'bench-passphrase',
    // Logging as deployed (`edgeguard server`: info), to a sink that costs no disk.
    logger: deployedLogger(),
    policy: { allowSoftwareDevices: true },
    plugins: controlPlanePlugins({ dataDir: dir }).all,
  });
  try {
    const keys = await generateP256();
    const issued = await server.ctx.ca.issueAdminCertificate({
      name: 'bench',
      publicKey: await spkiOf(keys.publicKey),
    });
    await server.ctx.store.recordCertificate({
      serial: issued.serial,
      device_id: null,
      role: 'admin',
      subject: issued.subject,
      not_before: issued.notBefore.toISOString(),
      not_after: issued.notAfter.toISOString(),
      pem: issued.chainPem,
    });
    const ca = server.ctx.ca.rootPem;
    const target = { url: new URL(server.url), tls: { ca } };
    const admin = new HttpsAgent({
      keepAlive: true,
      maxSockets: 2,
      ca,
      cert: issued.chainPem,
      key: await privateKeyToPkcs8Pem(keys.privateKey),
    });
    const legit = () => send(target, admin, 'GET', '/v1/devices');
    for (let i = 0; i < 50; i++) await legit();
    const rows = await measure(
      'control plane',
      target,
      [
        noAttack,
        slowBodies('/v1/review/items', 'application/json'),
        largeBodies('/v1/review/items', 'application/json', 8 * 1024 * 1024),
        enrollmentFlood,
      ],
      legit,
    );
    admin.destroy();
    return rows;
  } finally {
    await server.close();
  }
}

/** Pins this process, every thread of it, to the service's core (the attackers get the other). */
function pinSelf(): void {
  execFileSync('taskset', ['-a', '-p', '-c', SERVICE_CPU, String(process.pid)], { stdio: 'ignore' });
}

function table(rows: Row[]): string[] {
  const lines = [
    '| service | attack | legitimate requests | success | p50 | p99 | p99 vs no attack | goal met | attack alone: connections / requests per s | service CPU per attack action | attacker CPU (cores) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const base = rows.find((x) => x.service === r.service && x.attack === 'no attack')!;
    const ratio = r.p99 / base.p99;
    const met = r.success >= 0.99 && ratio <= 3 ? 'yes' : 'no';
    // The idle CPU (the no-attack row's quiet window) taken out; an action is a connection opened
    // or a request sent, whichever the attack does more of.
    const { connections, requests } = r.alone.actions;
    const actions = Math.max(connections, requests);
    const perAction = actions ? `${((1000 * (r.alone.cpuMs - base.alone.cpuMs)) / actions).toFixed(0)} µs` : '-';
    const rates = actions
      ? `${(connections / ALONE_SECONDS).toFixed(0)} / ${(requests / ALONE_SECONDS).toFixed(0)}`
      : '-';
    // The attacker process's own CPU while it attacks alone, in cores: on shared cores it is taken
    // from the service (an attacker on another host would not take it).
    const attackerCpu =
      r.alone.actions.cpuMs !== undefined ? (r.alone.actions.cpuMs / 1000 / ALONE_SECONDS).toFixed(2) : '-';
    lines.push(
      `| ${r.service} | ${r.attack} | ${r.requests} | ${(100 * r.success).toFixed(1)}% | ${r.p50.toFixed(1)} ms | ${r.p99.toFixed(1)} ms | ${ratio.toFixed(1)}x | ${met} | ${rates} | ${perAction} | ${attackerCpu} |`,
    );
  }
  return lines;
}

async function main() {
  if (PIN && IN_PROCESS) throw new Error('--pin needs the attackers in their own processes (drop --in-process)');
  if (PIN) pinSelf();
  const dir = await mkdtemp(join(tmpdir(), 'eg-bench-hostile-'));
  try {
    await rm(join(dir, 'cp'), { recursive: true, force: true });
    // `--only "control plane: ..."` skips the agent's rows altogether, and the other way round.
    const skip = (service: string) => ONLY !== undefined && ONLY.includes(':') && !ONLY.startsWith(service);
    const rows = [
      ...(skip('agent') ? [] : await agentRows(dir)),
      ...(skip('control plane') ? [] : await controlPlaneRows(join(dir, 'cp'))),
    ];
    const bodies = EAGER_BODIES ? '; large bodies handed to Node whole (--eager-bodies)' : '';
    const where = IN_PROCESS
      ? 'in the benchmark process'
      : PIN
        ? `in their own processes on CPU ${ATTACKER_CPU}, the services and legitimate clients on CPU ${SERVICE_CPU} (--pin)`
        : 'in their own processes, all sharing the cores';
    console.log(
      `machine: ${machine({ load: true })}; ${SECONDS} s of legitimate traffic per row, 2 clients; attackers ${where}${bodies}`,
    );
    for (const line of table(rows)) console.log(line);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (args[0] === '--attacker') runAttacker(args[1]!);
else await main();

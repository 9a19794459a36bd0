/**
 * Attestation benchmark: full appraisals per second on one control-plane node. One appraisal is
 * what a device does on its schedule in steady state: POST /v1/attestation/evidence with a
 * TPM2_Quote over the nonce its last verdict carried (`nextNonce`; the first round, and every round
 * with --ask-nonce, asks POST /v1/attestation/nonce first) and a real ~100-event crypto-agile
 * measured-boot log; the server checks the quote (AK from enrollment, signature, nonce single use,
 * PCR digest against the log's replay), derives Secure Boot state and boot components from the log,
 * applies the device group's policy, stores the verdict, the device's state and the next nonce, and
 * appends an audit event (one commit for those writes).
 *
 * The server runs as `edgeguard server` (default log level, audit plugin, as shipped) in its own
 * process, on SQLite or on a PostgreSQL database this script creates and drops. The devices are
 * emulated: each has its own RSA-2048 EK (certificate from a bench vendor CA) and its own
 * restricted signing AK (P-256 as `device init` makes it; RSA-2048, tpm2_createak's default, with --ak rsa), enrolled
 * through the full TPM protocol, so the server holds each AK as it would a real one. The device
 * signs its quote in software with that AK (nonces are single use, so quotes cannot be made ahead
 * on a TPM); the verifier's work is the same as for a TPM's quote. The log is a recorded log from
 * real firmware (Ubuntu 21.04 on a shielded VM, 106 events, SHA-1, SHA-256 and SHA-384 banks); the
 * quoted PCR values are its replay, as on the machine that wrote it.
 *
 * Measured: a baseline of GET /healthz over the same mutual-TLS connections, then a closed loop
 * (every device attests again as soon as its verdict arrives: the maximum rate), then an open loop
 * at half that rate (arrivals on a fixed schedule, latency from the scheduled time), p50/p99 of
 * the whole exchange. CPU time per appraisal, of the server (from /proc) and of this load
 * generator (process.cpuUsage), is the steadiest figure on a shared machine.
 *
 * With `--replicas N` (PostgreSQL only) N server processes share the database and the data
 * directory (CA, EK roots, audit key), the devices spread over them round-robin; rates are per
 * machine, server CPU is summed over the replicas.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Agent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  appraiseBootEvidence,
  createBootPolicy,
  formatBootPolicyYaml,
  LogAnalysisCache,
  type BootPolicy,
} from '../src/attest/index.ts';
import { parseEventLog, replayEventLog, replayedPcrsFor } from '../src/eventlog/index.ts';
import { encodeEvidence, EVIDENCE_MEDIA_TYPE, type NonceResponse, type VerdictResponse } from '../src/fleet/index.ts';
import {
  TPM_ALG,
  TpmWriter,
  marshalPcrSelection,
  parsePcrSelection,
  pcrCompositeDigest,
  parseTpm2bPublic,
  type PcrSelection,
  type PcrValues,
} from '../src/tpm/index.ts';
import { createTempDatabase, type TempDatabase } from '../test/helpers/postgres.ts';
import {
  call,
  deviceAgent,
  enrollAll,
  makeBenchVendor,
  makeDevices,
  must,
  percentile,
  signAttestation,
  type AkKind,
  type EmulatedAk,
  type EnrolledDevice,
} from './lib/emulated-fleet.ts';
import { machine } from './lib/machine.ts';

const args = process.argv.slice(2);
const USAGE = `usage: node --import tsx bench/attest.ts [options]     (run \`npm run build\` first: it starts bin/edgeguard.js)
  --db sqlite|postgres   the server's store (default sqlite; postgres: a database on 127.0.0.1:5432, created and dropped)
  --devices N            emulated devices, one mTLS keep-alive connection each (default 100; 40 with --quick)
  --seconds S            length of each phase: baseline, closed loop, open loop at half rate (default 10; 3 with --quick)
  --quick                40 devices, 3 s phases
  --ak ecc|rsa           the devices' attestation keys: P-256 (default, as device init makes them) or RSA-2048
  --ask-nonce            ask /v1/attestation/nonce before every push (two requests per appraisal)
  --evidence binary|json the evidence body: binary (application/vnd.edgeguard.evidence, as the agent sends it; default) or JSON with base64 members
  --log-level LEVEL      the server's log level (default info)
  --replicas N           N server processes on one PostgreSQL database (needs --db postgres)
  --log FILE             the measured-boot log to push (default: the recorded Ubuntu 21.04 log)
  --cli PATH             bin/edgeguard.js of another build, to compare two versions (one older than the binary body needs --evidence json)
With the defaults a run takes under 3 minutes (2 min 38 s at load average 9 on 2 shared cores),\nmost of it making the devices' RSA keys and enrolling them.
Set BENCH_CPU_PROF=DIR to write the server's V8 CPU profile there.`;
if (args.includes('--help') || args.includes('-h')) {
  process.stdout.write(USAGE + '\n');
  process.exit(0);
}
const opt = (name: string, def: string) => (args.includes(name) ? (args[args.indexOf(name) + 1] ?? def) : def);
const quick = args.includes('--quick');
const DB = opt('--db', 'sqlite');
const DEVICES = Number(opt('--devices', quick ? '40' : '100'));
const SECONDS = Number(opt('--seconds', quick ? '3' : '10'));
const LOG_LEVEL = opt('--log-level', 'info');
const LOG_FILE = opt(
  '--log',
  join(import.meta.dirname, '..', 'test', 'eventlog', 'fixtures', 'ubuntu_2104_shielded_vm_no_secure_boot_eventlog'),
);
// --cli: the `edgeguard` of another build (bin/edgeguard.js of a copy), to compare two versions.
const CLI = opt('--cli', join(import.meta.dirname, '..', 'bin', 'edgeguard.js'));
const PASSPHRASE = 'bench-attest-ca-passphrase';
const REPLICAS = Number(opt('--replicas', '1'));
const ASK_NONCE = args.includes('--ask-nonce');
const AK_KIND = opt('--ak', 'ecc') as AkKind;
const EVIDENCE_FORM = opt('--evidence', 'binary');
if (EVIDENCE_FORM !== 'binary' && EVIDENCE_FORM !== 'json') throw new Error('--evidence is binary or json');
if (AK_KIND !== 'rsa' && AK_KIND !== 'ecc') throw new Error('--ak is rsa or ecc');
/** Rounds that asked /v1/attestation/nonce (the others used the nonce their last verdict carried). */
let noncesAsked = 0;
if (DB !== 'sqlite' && DB !== 'postgres') throw new Error('--db is sqlite or postgres');
// SQLite has one writer per file and better-sqlite3 waits for a lock on the event loop: replicas
// are meant to share PostgreSQL (docs/architecture.md).
if (REPLICAS > 1 && DB !== 'postgres') throw new Error('--replicas needs --db postgres');

// ---- the emulated device: a TPM2_Quote over the replayed log, signed by its AK ----

interface Device extends EnrolledDevice {
  ak: EmulatedAk;
  agent: Agent;
  /** TPMS_CLOCK_INFO.clock: milliseconds the emulated TPM has run, growing with each quote. */
  clockStart: number;
  /** The replica this device talks to. */
  url: string;
  /** The nonce the last verdict carried for this device's next round (single use). */
  next?: NonceResponse | undefined;
}

const selections = new Map<string, PcrSelection>();

/** TPMS_ATTEST of a TPM2_Quote (Part 2, 10.12.12 and 10.12.8): the nonce as extraData, PCR digest of the log's replay. */
function quote(device: Device, nonce: Buffer, pcrs: string, replayed: PcrValues): Buffer {
  let sel = selections.get(pcrs);
  if (!sel) selections.set(pcrs, (sel = parsePcrSelection(pcrs)));
  const digest = pcrCompositeDigest(sel, replayedPcrsFor(replayed, sel), TPM_ALG.SHA256);
  const clock = BigInt(Math.round(performance.now() - device.clockStart));
  return new TpmWriter()
    .u32(0xff544347)
    .u16(0x8018)
    .tpm2b(device.ak.name)
    .tpm2b(nonce)
    .u32(Number(clock >> 32n))
    .u32(Number(clock & 0xffffffffn))
    .u32(0) // resetCount
    .u32(0) // restartCount
    .u8(1) // safe
    .u32(0)
    .u32(0x20191023) // firmwareVersion
    .bytes(marshalPcrSelection(sel))
    .tpm2b(digest)
    .toBuffer();
}

interface Setup {
  devices: Device[];
  /** `"eventLog":"<base64>"}`: the log's part of every JSON evidence body, encoded once. */
  eventLogTail: Buffer;
  /** The log's bytes, for the binary body. */
  eventLog: Buffer;
  replayed: PcrValues;
}

/**
 * One appraisal: the nonce the last verdict carried (else one asked for), quote, evidence asking
 * for the next nonce; throws unless the verdict passes. With --ask-nonce every round asks
 * /v1/attestation/nonce first (the two-request exchange of the earlier rounds).
 */
async function appraise(s: Setup, d: Device): Promise<void> {
  const held = d.next;
  d.next = undefined;
  if (!held) noncesAsked++;
  const issued =
    held ??
    (must(await call(d.agent, d.url, 'POST', '/v1/attestation/nonce', {}), 'nonce') as unknown as NonceResponse);
  const nonce = Buffer.from(issued.nonce, 'hex');
  const attest = quote(d, nonce, issued.pcrs, s.replayed);
  const signature = signAttestation(d.ak, attest);
  let body: Buffer;
  let headers: Record<string, string> = {};
  if (EVIDENCE_FORM === 'binary') {
    body = encodeEvidence({
      nonce: issued.nonce,
      quote: attest,
      signature,
      eventLog: s.eventLog,
      nextNonce: !ASK_NONCE,
    });
    headers = { 'content-type': EVIDENCE_MEDIA_TYPE };
  } else {
    // The same JSON as JSON.stringify of { nonce, quote, signature, nextNonce?, eventLog } (hex and
    // base64 need no escaping), without encoding the 51 KB log again for every push.
    const head = {
      nonce: issued.nonce,
      quote: attest.toString('base64'),
      signature: signature.toString('base64'),
      ...(ASK_NONCE ? {} : { nextNonce: true }),
    };
    body = Buffer.concat([Buffer.from(JSON.stringify(head).slice(0, -1) + ','), s.eventLogTail]);
  }
  const verdict = must(
    await call(d.agent, d.url, 'POST', '/v1/attestation/evidence', body, headers),
    'evidence',
  ) as unknown as VerdictResponse;
  if (!verdict.pass) throw new Error(`verdict failed: ${JSON.stringify(verdict.reasons)}`);
  // The bench's rounds follow each other within seconds, well inside the nonce's lifetime.
  d.next = verdict.nextNonce;
}

/**
 * The verifier's pure work on one piece of evidence (quote, log, policy), in this process, no I/O:
 * CPU microseconds each (process.cpuUsage, steadier than the wall clock on a shared machine).
 * `cold` parses, replays and checks the log on every call, as for a device's first push after a
 * boot; `warm` keeps the log's analysis (LogAnalysisCache) as the server does, so only the quote
 * (signature, nonce, clock, PCR digest against the kept replay) is checked again.
 */
function appraisalInProcess(
  d: Device,
  logBytes: Buffer,
  policy: BootPolicy,
  replayed: PcrValues,
): { coldUs: number; warmUs: number } {
  const nonce = Buffer.alloc(32, 7);
  const attest = quote(d, nonce, policy.pcrs, replayed);
  const input = {
    akPublic: parseTpm2bPublic(d.ak.public),
    evidence: { quote: attest, signature: signAttestation(d.ak, attest), eventLog: logBytes },
    nonce,
    policy,
  };
  const n = quick ? 100 : 200;
  const cpuUs = (cache: LogAnalysisCache | undefined) => {
    for (let i = 0; i < 50; i++) appraiseBootEvidence({ ...input, cache });
    const before = process.cpuUsage();
    for (let i = 0; i < n; i++)
      if (!appraiseBootEvidence({ ...input, cache }).pass) throw new Error('the in-process appraisal failed');
    const used = process.cpuUsage(before);
    return (used.user + used.system) / n;
  };
  return { coldUs: cpuUs(undefined), warmUs: cpuUs(new LogAnalysisCache()) };
}

// ---- load ----

interface Figures {
  rate: number;
  p50: number;
  p99: number;
  n: number;
  errors: number;
  serverCpuMs: number;
  benchCpuMs: number;
  /** Rounds that asked for a nonce. */
  asked: number;
}

/** utime + stime of a process, in milliseconds (Linux /proc, clock ticks of 10 ms). */
function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

async function measured(pids: number[], run: () => Promise<number[] & { errors?: number }>): Promise<Figures> {
  const cpu = () => pids.reduce((sum, pid) => sum + processCpuMs(pid), 0);
  const server0 = cpu();
  const asked0 = noncesAsked;
  const bench0 = process.cpuUsage();
  const t0 = performance.now();
  const lat = await run();
  const elapsed = (performance.now() - t0) / 1000;
  const bench = process.cpuUsage(bench0);
  lat.sort((a, b) => a - b);
  return {
    rate: lat.length / elapsed,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    n: lat.length,
    errors: lat.errors ?? 0,
    serverCpuMs: cpu() - server0,
    benchCpuMs: (bench.user + bench.system) / 1000,
    asked: noncesAsked - asked0,
  };
}

let firstError: string | undefined;
function noteError(e: unknown): void {
  firstError ??= (e as Error).message;
}

/** Every device in a loop for `seconds`: the next request as soon as the last one is answered. */
function closedLoop(devices: Device[], seconds: number, one: (d: Device) => Promise<void>) {
  return async () => {
    const lat: number[] & { errors?: number } = [];
    lat.errors = 0;
    const end = performance.now() + seconds * 1000;
    await Promise.all(
      devices.map(async (d) => {
        while (performance.now() < end) {
          const t = performance.now();
          try {
            await one(d);
            lat.push(performance.now() - t);
          } catch (e) {
            noteError(e);
            lat.errors!++;
          }
        }
      }),
    );
    return lat;
  };
}

/**
 * Arrivals every 1/rate s for `seconds`, each served by an idle device (queued when none is idle);
 * latency runs from the scheduled arrival, so a stall is not hidden by the queue (no coordinated omission).
 */
function openLoop(devices: Device[], rate: number, seconds: number, one: (d: Device) => Promise<void>) {
  return async () => {
    const lat: number[] & { errors?: number } = [];
    lat.errors = 0;
    const idle = [...devices];
    const queued: number[] = [];
    const running: Array<Promise<void>> = [];
    const serve = async (d: Device, scheduled: number): Promise<void> => {
      for (let at: number | undefined = scheduled; at !== undefined; at = queued.shift()) {
        try {
          await one(d);
          lat.push(performance.now() - at);
        } catch (e) {
          noteError(e);
          lat.errors!++;
        }
      }
      idle.push(d);
    };
    const t0 = performance.now();
    const total = Math.floor(rate * seconds);
    for (let i = 0; i < total; i++) {
      const scheduled = t0 + (i * 1000) / rate;
      const wait = scheduled - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const d = idle.pop();
      if (d) running.push(serve(d, scheduled));
      else queued.push(scheduled);
    }
    await Promise.all(running);
    return lat;
  };
}

// ---- setup ----

async function startServer(
  dataDir: string,
  dbUrl: string | undefined,
  name = 'server',
): Promise<{ child: ChildProcess; url: string }> {
  const argv = [CLI, '--json', 'server', '--data', dataDir, '--listen', '127.0.0.1:0', '--log-level', LOG_LEVEL];
  argv.push('--enroll-rate', '100000000');
  if (dbUrl) argv.push('--db', dbUrl);
  const prof = process.env.BENCH_CPU_PROF;
  // Its log goes to a file, as to a journal, not through this process.
  const logPath = join(dataDir, '..', `${name}.log`);
  const logFd = openSync(logPath, 'w');
  const child = spawn(process.execPath, [...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof] : []), ...argv], {
    env: { ...process.env, EDGEGUARD_CA_PASSPHRASE: PASSPHRASE },
    stdio: ['ignore', logFd, logFd],
  });
  closeSync(logFd);
  // The start-up result is one pretty-printed JSON object among the server's log lines (JSON, one a line).
  let out = '';
  let url: string | undefined;
  for (let i = 0; i < 600 && url === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    out = readFileSync(logPath, 'utf8');
    const m = /^\{\n[\s\S]*?\n\}$/m.exec(out);
    if (m) url = (JSON.parse(m[0]) as { url: string }).url;
  }
  if (url === undefined) throw new Error(`the server did not start: ${out}`);
  return { child, url };
}

async function adminAgent(dataDir: string, dbUrl: string | undefined, caPem: string): Promise<Agent> {
  const prefix = join(dataDir, '..', 'admin');
  const argv = [CLI, '--json', 'admin', 'cert', '--data', dataDir, '-o', prefix, ...(dbUrl ? ['--db', dbUrl] : [])];
  await new Promise<void>((resolve, reject) => {
    const c = spawn(process.execPath, argv, {
      env: { ...process.env, EDGEGUARD_CA_PASSPHRASE: PASSPHRASE },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`admin cert exited ${code}`))));
  });
  return deviceAgent(
    { cert: readFileSync(`${prefix}.crt`, 'utf8'), key: readFileSync(`${prefix}.key`, 'utf8') },
    caPem,
    250,
  );
}

const fmt = (f: Figures) =>
  `${f.rate.toFixed(0)}/s, ${f.asked} nonces asked, p50 ${f.p50.toFixed(1)} ms, p99 ${f.p99.toFixed(1)} ms (${f.n} done, ${f.errors} errors); ` +
  `server CPU ${(f.serverCpuMs / f.n).toFixed(2)} ms each, bench CPU ${(f.benchCpuMs / f.n).toFixed(2)} ms each`;

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'eg-bench-attest-'));
  const dataDir = join(work, 'server');
  mkdirSync(join(dataDir, 'ek-roots'), { recursive: true });
  const servers: ChildProcess[] = [];
  let pg: TempDatabase | undefined;
  try {
    const loadBefore = machine({ load: true });
    process.stderr.write(`machine: ${loadBefore}\n`);
    const logBytes = readFileSync(LOG_FILE);
    const log = parseEventLog(logBytes);
    const replayed = replayEventLog(log);
    const bootPolicy = createBootPolicy(log);
    const policy = formatBootPolicyYaml(bootPolicy);

    const vendor = await makeBenchVendor();
    writeFileSync(join(dataDir, 'ek-roots', 'vendor.pem'), vendor.certPem);
    process.stderr.write(
      `preparing ${DEVICES} emulated TPM devices (RSA-2048 EK, ${AK_KIND === 'ecc' ? 'P-256' : 'RSA-2048'} AK each)...\n`,
    );
    const emulated = await makeDevices(DEVICES, vendor, 1, AK_KIND);
    writeFileSync(join(dataDir, 'auto-approve.txt'), emulated.map((d) => d.ekHash).join('\n') + '\n');

    pg = DB === 'postgres' ? await createTempDatabase('eg_bench_attest') : undefined;
    const started = await startServer(dataDir, pg?.url);
    servers.push(started.child);
    const { url } = started;
    const caPem = readFileSync(join(dataDir, 'fleet-ca.pem'), 'utf8');
    process.stderr.write(`enrolling them through the TPM protocol...\n`);
    const { enrolled } = await enrollAll(emulated, url, caPem, 16);
    process.stderr.write('admin certificate, policy, group...\n');
    const devices: Device[] = enrolled.map((e, i) => ({
      ...e,
      ak: emulated[i]!.ak,
      agent: deviceAgent(e, caPem, i),
      clockStart: performance.now() - 1e6 * (i + 1),
      url,
    }));

    const admin = await adminAgent(dataDir, pg?.url, caPem);
    must(
      await call(admin, url, 'POST', '/v1/attestation/policies', { policy, label: 'bench golden', group: 'bench' }),
      'policy',
    );
    for (const d of devices)
      must(await call(admin, url, 'PUT', `/v1/attestation/groups/bench/devices/${d.id}`), 'group');
    admin.destroy();

    // The other replicas: same data directory and database, devices spread round-robin.
    const urls = [url];
    for (let r = 1; r < REPLICAS; r++) {
      const replica = await startServer(dataDir, pg?.url, `server-${r}`);
      servers.push(replica.child);
      urls.push(replica.url);
    }
    devices.forEach((d, i) => (d.url = urls[i % urls.length]!));
    const setup: Setup = {
      devices,
      eventLogTail: Buffer.from(`"eventLog":"${logBytes.toString('base64')}"}`),
      eventLog: logBytes,
      replayed,
    };
    const pids = servers.map((c) => c.pid!);
    const healthz = async (d: Device) => {
      must(await call(d.agent, d.url, 'GET', '/healthz'), 'healthz');
    };
    const one = (d: Device) => appraise(setup, d);
    process.stderr.write('warm-up...\n');
    await closedLoop(devices, 2, one)();
    await closedLoop(devices, 1, healthz)();

    const base = await measured(pids, closedLoop(devices, SECONDS, healthz));
    const max = await measured(pids, closedLoop(devices, SECONDS, one));
    const half = await measured(pids, openLoop(devices, max.rate / 2, SECONDS, one));
    for (const d of devices) d.agent.destroy();

    const inProcess = appraisalInProcess(devices[0]!, logBytes, bootPolicy, replayed);
    const store = DB === 'postgres' ? 'PostgreSQL' : 'SQLite';
    const lines = [
      `attestation appraisals, ${store}, ${EVIDENCE_FORM} evidence bodies, server log level ${LOG_LEVEL}; ${REPLICAS} server process(es); ${DEVICES} emulated devices, one mTLS keep-alive connection each; ${SECONDS} s per phase`,
      `event log: ${LOG_FILE.split('/').pop()} (${log.events.length} events, ${logBytes.length} bytes); policy ${policy.length} bytes of YAML`,
      `machine at start: ${loadBefore}`,
      `machine at end:   ${machine({ load: true })}`,
      `baseline GET /healthz, closed loop: ${fmt(base)}`,
      `appraisals (${ASK_NONCE ? 'nonce + evidence' : 'evidence, nonce carried'}), closed loop (max rate): ${fmt(max)}`,
      `appraisals at half that rate (${(max.rate / 2).toFixed(0)}/s offered), open loop: ${fmt(half)}`,
      `appraiseBootEvidence alone, in this process, CPU: ${inProcess.coldUs.toFixed(0)} us each cold (quote, log parse and replay, Secure Boot state, components, policy), ${inProcess.warmUs.toFixed(0)} us warm (the log's analysis kept, as the server keeps it; the quote checked)`,
      `ratio: appraisals / baseline requests = ${(max.rate / base.rate).toFixed(3)}; server CPU per appraisal / per healthz = ${(max.serverCpuMs / max.n / (base.serverCpuMs / base.n)).toFixed(1)}x`,
      ...(REPLICAS > 1
        ? [
            `per replica: ${(max.rate / REPLICAS).toFixed(0)} appraisals/s in the closed loop (rates above are the machine's)`,
          ]
        : []),
      ...(firstError ? [`first error: ${firstError}`] : []),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  } finally {
    for (const server of servers) {
      server.kill('SIGTERM');
      if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    }
    await pg?.drop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
